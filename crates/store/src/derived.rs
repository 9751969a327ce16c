//! Everything derived from the log, and the indexer that builds it behind the log.
//!
//! **The sealed log is the truth; everything here is derived.** The acknowledged write holds
//! only the log. An indexer follows each tenant's log in large batches and, in one
//! transaction, writes what it derived and the tenant's *watermark*: every event up to the
//! watermark is indexed, none after it. Readers use the derived data up to the watermark and
//! read the log's tail beyond it, so every answer is exact at every moment. Derived data is
//! disposable: [`IndexBackend::reset`] drops it and the indexer builds it again from the log.
//!
//! Two structures, the same on every backend:
//!
//! - **Postings**: for each term (a declared field's value, [`crate::fields`]) and each *chunk*
//!   of [`CHUNK`] consecutive positions of a tenant's log, a Roaring bitmap of the positions
//!   whose event has that term. Rows are keyed `(tenant, chunk, term)`: a batch only ever
//!   touches the newest chunks, so writing stays local however large the log grows, and a
//!   query combines bitmaps chunk by chunk (AND across fields, OR within one), whatever the
//!   terms' frequencies.
//! - **Times**: for each *block* of [`BLOCK`] positions, the `occurred_at` of each event and
//!   the block's least and greatest, so a time range is answered block by block.
//! - **Rollups**: per minute, hour, quarter day, day and week of `occurred_at`, the events'
//!   counts by outcome, actor, action and target, for statistics ([`crate::rollup`]).
//!
//! Events removed from the log by retention ([`unindex`]) leave it through the derived data
//! first: their positions are cleared from every posting (a posting left empty is deleted, so
//! no term of a removed event stays behind), their counts are taken out of the rollups, and
//! each chunk's [`gone`] posting lists them, so that reads leave them out of time ranges too.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use roaring::RoaringBitmap;
use sealtrail_model::Tenant;

use crate::fields::{Term, terms_and_texts_of, terms_of};
use crate::rollup::{
    FOLDED, MinuteCounts, Rollup, RollupRow, Span, StoredRollup, TermIds, is_failure, is_key,
    summary_changes,
};
use crate::rows::LogRow;
use crate::{StoreError, StoreResult};

/// Maps keyed by terms: hashed with foldhash, several times cheaper than SipHash on the short
/// byte strings the indexer hashes tens of times per event (no map is keyed by client-chosen
/// values for longer than one batch, and each map's seed is random).
type TermMap<V> = HashMap<Term, V, foldhash::fast::RandomState>;

/// The longest term a [`KeyTerm`] holds in its own bytes: a UUID with its tag fits.
const INLINE_TERM: usize = 38;

/// A term as the key of the map a batch's new positions gather in, its bytes held in the
/// map's slot when short (nearly every word and value): finding a term then compares bytes
/// in the slot just read, where a boxed key sends the comparison to another cache line
/// (`perf` under full-speed ingest: lookups a fifth of the indexer's time, comparing keys
/// three fifths of that).
#[derive(Clone)]
enum KeyTerm {
    Inline(u8, [u8; INLINE_TERM]),
    Heap(Box<[u8]>),
}

impl KeyTerm {
    fn new(term: &[u8]) -> Self {
        match u8::try_from(term.len()) {
            Ok(len) if term.len() <= INLINE_TERM => {
                let mut bytes = [0; INLINE_TERM];
                bytes[..term.len()].copy_from_slice(term);
                Self::Inline(len, bytes)
            }
            _ => Self::Heap(term.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(len, bytes) => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }

    fn into_term(self) -> Term {
        match self {
            Self::Inline(..) => Term(self.as_bytes().into()),
            Self::Heap(bytes) => Term(bytes),
        }
    }
}

impl PartialEq for KeyTerm {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KeyTerm {}

impl std::hash::Hash for KeyTerm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the bytes hash, so that a lookup by `&[u8]` finds it.
        self.as_bytes().hash(state)
    }
}

impl std::borrow::Borrow<[u8]> for KeyTerm {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Most emptied [`FreshTerms`] an indexer keeps for its next passes (a pass spans two chunks
/// at most, unless positions were removed).
const SPARE_MAPS: usize = 2;

/// The newest chunk's postings, by term, as the indexer keeps them between passes: each pass
/// looks up every term it touched (~30 000), so the keys are held in the slots too.
type ChunkBits = HashMap<KeyTerm, Held, foldhash::fast::RandomState>;

/// One posting of the newest chunk as the indexer holds it: while it is short (most are: a
/// word or a value of one event, or a few), the ascending offsets it is stored as
/// ([`encode_bits`]'s list form), a few of them in the map's slot; a Roaring bitmap once it is
/// longer. A pass then adds a term's new offsets to its list by pushing them and writes the
/// list out as it is, where a bitmap built for it would insert each offset, allocate twice
/// and be walked again to be stored (`perf` of `sealtrail reindex`: a tenth of the indexer's
/// time).
#[derive(Debug, Clone, PartialEq)]
enum Held {
    List(smallvec::SmallVec<[u16; 8]>),
    Bits(RoaringBitmap),
}

impl Held {
    /// The posting stored as `bytes`.
    fn from_stored(bytes: &[u8]) -> Self {
        if let Some(offsets) = listed_offsets(bytes) {
            let list: smallvec::SmallVec<[u16; 8]> = offsets.collect();
            if list.len() <= LIST_MAX as usize && list.windows(2).all(|w| w[0] < w[1]) {
                return Self::List(list);
            }
        }
        Self::Bits(decode_bits(bytes))
    }

    /// The posting of `offsets` (ascending, each below [`CHUNK`]).
    fn of(offsets: &[u32]) -> Self {
        let mut held = Self::List(smallvec::SmallVec::new());
        held.extend(offsets);
        held
    }

    /// Adds `offsets` (ascending, each below [`CHUNK`]); an offset already held stays once.
    fn extend(&mut self, offsets: &[u32]) {
        if let Self::List(list) = self {
            if list.len() + offsets.len() <= LIST_MAX as usize {
                for &offset in offsets {
                    let offset = offset as u16;
                    match list.last() {
                        Some(&last) if last >= offset => {
                            // Not after what is held (never so from the indexer's own passes):
                            // put in its place.
                            if let Err(at) = list.binary_search(&offset) {
                                list.insert(at, offset);
                            }
                        }
                        _ => list.push(offset),
                    }
                }
                return;
            }
            let bits: RoaringBitmap = list.iter().map(|&o| u32::from(o)).collect();
            *self = Self::Bits(bits);
        }
        if let Self::Bits(bits) = self {
            bits.extend(offsets.iter().copied());
        }
    }

    /// Its stored form, as [`encode_bits`] writes the same positions.
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::List(list) => list_form(list.len(), list.iter().copied()),
            Self::Bits(bits) => encode_bits(bits),
        }
    }
}

/// A term's new positions in a batch: most terms a batch holds are new in it with one
/// position or a few (identifiers), held in the map's slot without an allocation of their own.
type Offsets = smallvec::SmallVec<[u32; 4]>;

/// Adds `offset` to a slot's positions: a term an event holds twice is one position.
fn add(offsets: &mut [Offsets], slot: u32, offset: u32) {
    let offsets = &mut offsets[slot as usize];
    if offsets.last() != Some(&offset) {
        offsets.push(offset);
    }
}

/// The slots of a text's words in a [`FreshTerms`]: most texts hold a few words.
type TextSlots = smallvec::SmallVec<[u32; 6]>;

/// Byte strings end to end, and where each ends: one event's terms, or its texts, gathered
/// to be looked up together ([`FreshTerms::event`]).
#[derive(Default)]
struct Gathered {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Gathered {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn push(&mut self, piece: &[u8]) {
        self.bytes.extend_from_slice(piece);
        self.ends.push(self.bytes.len());
    }

    /// The `i`th piece.
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.ends.len()).map(|i| self.get(i))
    }
}

/// A batch's new positions per term of one chunk (the indexer's), or of one segment of the
/// unindexed tail ([`crate::tail`]'s: the same terms, derived the same way).
///
/// Each term has a slot, and the words of each text the batch met are remembered as their
/// slots: most texts recur (an action, a name, a reason shared by every event of a kind), and
/// a recurring text then costs one lookup instead of being cut into words and each word
/// looked up (`perf` of `sealtrail reindex`: cutting and looking up words were a fifth of the
/// indexer's time).
#[derive(Default)]
pub(crate) struct FreshTerms {
    /// Each term's slot in `offsets`.
    slots: HashMap<KeyTerm, u32, foldhash::fast::RandomState>,
    /// Each slot's new positions, ascending.
    offsets: Vec<Offsets>,
    /// The slots of each text's words, by text.
    texts: HashMap<KeyTerm, TextSlots, foldhash::fast::RandomState>,
    /// One event's terms and texts ([`FreshTerms::event`]).
    gathered: (Gathered, Gathered),
    /// A word's term, as it is made.
    word: Vec<u8>,
    /// A word, lower-cased.
    lower: String,
}

impl FreshTerms {
    /// The slot of `term`, made if new.
    fn slot(&mut self, term: &[u8]) -> u32 {
        if let Some(&slot) = self.slots.get(term) {
            return slot;
        }
        let slot = u32::try_from(self.offsets.len()).expect("fewer terms than u32::MAX in a batch");
        self.offsets.push(Offsets::new());
        self.slots.insert(KeyTerm::new(term), slot);
        slot
    }

    /// Adds `offset` to the positions of every term of an event ([`terms_and_texts_of`]: each
    /// field's, and the words of its texts through the text cache). `each` sees every term but
    /// the words as well.
    ///
    /// The event's terms and texts are gathered first and each kind looked up together: each
    /// lookup is a cache miss or two in a map larger than the caches (`perf` of `sealtrail
    /// reindex`: probing the maps 10 % of the indexer), and lookups with nothing between them
    /// overlap their misses where lookups each followed by its use wait one after the other.
    pub(crate) fn event(
        &mut self,
        source: crate::fields::Source<'_, '_>,
        offset: u32,
        mut each: impl FnMut(&[u8]),
    ) {
        let (mut terms, mut texts) = std::mem::take(&mut self.gathered);
        terms.clear();
        texts.clear();
        terms_and_texts_of(
            source,
            |term| {
                each(term);
                terms.push(term);
            },
            |text| texts.push(text.as_bytes()),
        );
        let mut unknown = smallvec::SmallVec::<[usize; 8]>::new();
        {
            let FreshTerms { slots, offsets, .. } = &mut *self;
            let known: smallvec::SmallVec<[Option<u32>; 24]> =
                terms.iter().map(|term| slots.get(term).copied()).collect();
            for (i, slot) in known.into_iter().enumerate() {
                match slot {
                    Some(slot) => add(offsets, slot, offset),
                    None => unknown.push(i),
                }
            }
        }
        for i in unknown.drain(..) {
            self.term(terms.get(i), offset);
        }
        {
            let FreshTerms {
                texts: cache,
                offsets,
                ..
            } = &mut *self;
            let known: smallvec::SmallVec<[Option<&TextSlots>; 24]> =
                texts.iter().map(|text| cache.get(text)).collect();
            for (i, slots) in known.into_iter().enumerate() {
                match slots {
                    Some(slots) => {
                        for &slot in slots {
                            add(offsets, slot, offset);
                        }
                    }
                    None => unknown.push(i),
                }
            }
        }
        for i in unknown {
            // Gathered from a `str` whole: always one.
            if let Ok(text) = std::str::from_utf8(texts.get(i)) {
                self.text(text, offset);
            }
        }
        self.gathered = (terms, texts);
    }

    /// Forgets the words of the texts met so far (kept to cut a recurring text once): for a
    /// map that is only read from now on.
    pub(crate) fn forget_texts(&mut self) {
        self.texts = HashMap::default();
    }

    /// The positions of `term`, ascending.
    pub(crate) fn positions(&self, term: &[u8]) -> Option<&[u32]> {
        self.slots
            .get(term)
            .map(|&slot| self.offsets[slot as usize].as_slice())
    }

    /// Every term with its positions, in no order.
    pub(crate) fn each(&self) -> impl Iterator<Item = (&[u8], &[u32])> {
        self.slots
            .iter()
            .map(|(key, &slot)| (key.as_bytes(), self.offsets[slot as usize].as_slice()))
    }

    /// Adds `offset` to `term`'s positions.
    fn term(&mut self, term: &[u8], offset: u32) {
        let slot = self.slot(term);
        add(&mut self.offsets, slot, offset);
    }

    /// Adds `offset` to the positions of each word of `text` ([`crate::text::words`]).
    fn text(&mut self, text: &str, offset: u32) {
        if let Some(slots) = self.texts.get(text.as_bytes()) {
            for &slot in slots {
                add(&mut self.offsets, slot, offset);
            }
            return;
        }
        let (mut word, mut lower) = (
            std::mem::take(&mut self.word),
            std::mem::take(&mut self.lower),
        );
        let mut slots = TextSlots::new();
        crate::text::words(text, &mut lower, &mut |w| {
            crate::fields::WORD.term_into(w, &mut word);
            let slot = self.slot(&word);
            add(&mut self.offsets, slot, offset);
            slots.push(slot);
        });
        (self.word, self.lower) = (word, lower);
        self.texts.insert(KeyTerm::new(text.as_bytes()), slots);
    }

    /// Every term with its new positions, in the terms' byte order; leaves the map empty with
    /// its capacity.
    fn drain_sorted(&mut self) -> Vec<(KeyTerm, Offsets)> {
        let offsets = &mut self.offsets;
        let mut sorted: Vec<(KeyTerm, Offsets)> = self
            .slots
            .drain()
            .map(|(key, slot)| (key, std::mem::take(&mut offsets[slot as usize])))
            .collect();
        offsets.clear();
        self.texts.clear();
        sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        sorted
    }
}

/// log2 of [`CHUNK`].
pub const CHUNK_BITS: u32 = 16;
/// Positions of a log per posting bitmap.
pub const CHUNK: u64 = 1 << CHUNK_BITS;
/// log2 of [`BLOCK`].
pub const BLOCK_BITS: u32 = 12;
/// Positions of a log per time block.
pub const BLOCK: u64 = 1 << BLOCK_BITS;

/// The chunk that holds `seq` (1-based).
pub fn chunk_of(seq: u64) -> u64 {
    (seq - 1) >> CHUNK_BITS
}

/// Where `seq` (1-based) sits inside its chunk.
pub fn offset_in_chunk(seq: u64) -> u32 {
    ((seq - 1) & (CHUNK - 1)) as u32
}

/// The `seq` at `offset` of `chunk`.
pub fn seq_at(chunk: u64, offset: u32) -> u64 {
    (chunk << CHUNK_BITS) + u64::from(offset) + 1
}

/// The time block that holds `seq` (1-based).
pub fn block_of(seq: u64) -> u64 {
    (seq - 1) >> BLOCK_BITS
}

/// The first byte of a posting stored as a plain list of offsets; the portable Roaring format
/// starts with its cookie (`0x3A` or `0x3B`), never with this.
const LIST_FORM: u8 = b'L';
/// Postings of at most this many positions are stored as a plain list.
const LIST_MAX: u64 = 4_096;

/// The stored form of a posting bitmap: a short one (most words name few events of a chunk)
/// as `LIST_FORM` and each offset as two little-endian bytes, three bytes for a posting of
/// one event; a longer one in the portable Roaring format.
pub fn encode_bits(bits: &RoaringBitmap) -> Vec<u8> {
    if bits.len() <= LIST_MAX && bits.max().is_none_or(|m| m < CHUNK as u32) {
        return list_form(bits.len() as usize, bits.iter().map(|o| o as u16));
    }
    let mut out = Vec::with_capacity(bits.serialized_size());
    bits.serialize_into(&mut out)
        .expect("writing into a Vec cannot fail");
    out
}

/// The list form of `len` ascending `offsets`.
fn list_form(len: usize, offsets: impl Iterator<Item = u16>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 * len);
    out.push(LIST_FORM);
    for offset in offsets {
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out
}

/// The offsets of a posting stored in list form, as stored (their order unchecked); `None`
/// for any other form.
fn listed_offsets(bytes: &[u8]) -> Option<impl Iterator<Item = u16> + '_> {
    match bytes.split_first() {
        Some((&LIST_FORM, list)) if list.len() % 2 == 0 => Some(
            list.chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]])),
        ),
        _ => None,
    }
}

/// Reads a stored posting bitmap; a damaged one reads as empty (and `reindex` mends it).
pub fn decode_bits(bytes: &[u8]) -> RoaringBitmap {
    if let Some(offsets) = listed_offsets(bytes)
        && let Ok(bits) = RoaringBitmap::from_sorted_iter(offsets.map(u32::from))
    {
        return bits;
    }
    RoaringBitmap::deserialize_from(bytes).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "a stored posting bitmap is damaged; run sealtrail reindex");
        RoaringBitmap::new()
    })
}

/// The `occurred_at` (microseconds) of the events of one time block, from its first position
/// on, with their least and greatest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeBlock {
    /// The least `occurred_at`.
    pub lo: i64,
    /// The greatest `occurred_at`.
    pub hi: i64,
    /// One per event, in `seq` order from the block's first position.
    pub values: Vec<i64>,
}

impl TimeBlock {
    /// The stored form of the values: little-endian `i64`s.
    pub fn encode_values(&self) -> Vec<u8> {
        self.values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A block from its stored parts.
    pub fn decode(lo: i64, hi: i64, bytes: &[u8]) -> Self {
        let values = bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of eight")))
            .collect();
        Self { lo, hi, values }
    }

    fn push(&mut self, value: i64) {
        if self.values.is_empty() {
            self.lo = value;
            self.hi = value;
        } else {
            self.lo = self.lo.min(value);
            self.hi = self.hi.max(value);
        }
        self.values.push(value);
    }
}

/// A tenant whose log may hold events its derived data does not cover yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    /// The tenant.
    pub tenant: Tenant,
    /// Its watermark: events `1..=indexed` are indexed.
    pub indexed: u64,
    /// The size of its log.
    pub size: u64,
}

/// A stored posting: its chunk, its term, and its bitmap in stored form.
pub type Posting = (u64, Term, Vec<u8>);

/// The tag of [`gone`]: no declared field has it (tested), so no event has its term.
pub const GONE_TAG: u8 = 0;

/// The term whose posting in a chunk lists the positions whose events were removed from the
/// log (retention): the planner subtracts it wherever positions come from the derived data.
pub fn gone() -> Term {
    Term(Box::new([GONE_TAG]))
}

/// What one indexing transaction writes for a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// `(chunk, term, bitmap)`: each replaces what was stored under its key.
    pub postings: Vec<Posting>,
    /// `(chunk, term, bitmap)` under keys that hold nothing: the indexing pass knew every
    /// posting of the chunk (none of its events was indexed before, or it read them back or
    /// remembered them in the pass's transaction). A backend may insert these without looking
    /// for a row to replace; should one be there after all, the write fails, and the
    /// indexer's next pass sends every posting as a replacement.
    pub added: Vec<Posting>,
    /// `(block, block)`: each replaces what was stored under its key.
    pub times: Vec<(u64, TimeBlock)>,
    /// Rollup rows: each replaces what was stored under its `(span, period, chunk)`.
    pub rollups: Vec<RollupRow>,
    /// Open rollup rows `(span, period, chunk)` folded into their summaries: deleted, after
    /// `rollups` are written.
    pub folded: Vec<(Span, i64, i64)>,
    /// `(chunk, term)`: postings left empty by removed events, deleted.
    pub removed: Vec<(u64, Term)>,
    /// Chunks whose every posting is deleted before `postings` are written (a chunk most of
    /// whose events were removed is derived again from what is left).
    pub cleared: Vec<u64>,
    /// The new watermark.
    pub watermark: u64,
}

/// The part of indexing that differs per backend. Calls are synchronous: the indexer runs on
/// a thread of its own.
pub trait IndexBackend: Send {
    /// The backend's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Every tenant with a log, and where its derived data ends.
    fn lagging(&mut self) -> Result<Vec<Lag>, Self::Error>;

    /// Opens the transaction that indexes `tenant`'s next batch and returns its watermark, read
    /// in that transaction; `None` when another indexer is working on the tenant (nothing is
    /// open then).
    fn begin(&mut self, tenant: &Tenant) -> Result<Option<u64>, Self::Error>;

    /// Which write of `tenant`'s derived data is the newest, read in the open transaction: a
    /// value that changes with every committed write, whoever made it (an indexing pass,
    /// a removal, an anonymisation), and is the same for the open transaction's own write
    /// once made. An indexer trusts what it remembers of the newest chunk only while this is
    /// what its own last pass left. `None` (the default) for a backend whose derived data
    /// only one indexer ever writes (it forgets its memory at each write that is not a pass);
    /// both stores override it, since several processes may open one store.
    fn revision(&mut self, _tenant: &Tenant) -> Result<Option<u64>, Self::Error> {
        Ok(None)
    }

    /// The log's events with `seq` in `lo..=hi`, ascending.
    fn log_rows(&mut self, tenant: &Tenant, lo: u64, hi: u64) -> Result<Vec<LogRow>, Self::Error>;

    /// Every stored posting of `chunk`.
    fn chunk_postings(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
    ) -> Result<Vec<(Term, Vec<u8>)>, Self::Error>;

    /// A stored time block.
    fn time_block(&mut self, tenant: &Tenant, block: u64)
    -> Result<Option<TimeBlock>, Self::Error>;

    /// The stored postings of `chunk` whose terms start with one of `tags`.
    fn tagged_postings(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
        tags: &[u8],
    ) -> Result<Vec<(Term, Vec<u8>)>, Self::Error>;

    /// One stored posting of `chunk`, in stored form.
    fn posting(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
        term: &Term,
    ) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The stored postings of `chunk` for `terms`, in stored form (terms without one left
    /// out). One [`IndexBackend::posting`] after another unless the backend reads them at once.
    fn postings(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
        terms: &[Term],
    ) -> Result<Vec<(Term, Vec<u8>)>, Self::Error> {
        let mut found = Vec::with_capacity(terms.len());
        for term in terms {
            if let Some(bits) = self.posting(tenant, chunk, term)? {
                found.push((term.clone(), bits));
            }
        }
        Ok(found)
    }

    /// Every open rollup row of `chunk` (the rows of a chunk not yet folded).
    fn chunk_rollups(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
    ) -> Result<Vec<(Span, i64, StoredRollup)>, Self::Error>;

    /// The summary row of one period (chunk [`FOLDED`]), keys included.
    fn folded_rollup(
        &mut self,
        tenant: &Tenant,
        span: Span,
        period: i64,
    ) -> Result<Option<StoredRollup>, Self::Error>;

    /// Writes an update inside the open transaction.
    fn write(&mut self, tenant: &Tenant, update: &Update) -> Result<(), Self::Error>;

    /// Commits the open transaction.
    fn commit(&mut self) -> Result<(), Self::Error>;

    /// Abandons the open transaction, if any.
    fn rollback(&mut self);

    /// Drops every piece of derived data: every tenant's watermark goes back to zero.
    fn reset(&mut self) -> Result<(), Self::Error>;

    /// Makes what was committed durable before the caller goes on (a removal from the
    /// derived data must not be lost while the log's removal that follows it is kept).
    fn sync(&mut self) -> Result<(), Self::Error>;

    /// Commits and makes the commit durable before the caller goes on: what retention's and
    /// anonymisation's changes end with. The default: [`IndexBackend::commit`], then
    /// [`IndexBackend::sync`].
    fn commit_synced(&mut self) -> Result<(), Self::Error> {
        self.commit()?;
        self.sync()
    }
}

/// An indexer: its backend, and what it remembers of each tenant's newest chunk.
///
/// Every batch adds to the newest chunk of a tenant's log, and rewriting a posting means
/// reading it first. The indexer keeps the whole newest chunk's postings (and its newest time
/// block) as of the watermark it committed, so the next batch reads nothing. The memory is
/// trusted only while the watermark it was made at is the one stored: if another indexer
/// (another server) moved it, it is read again.
pub struct Indexer<B> {
    backend: B,
    newest: HashMap<Tenant, Newest>,
    /// Emptied maps of earlier passes' new positions, kept for the next pass with their
    /// capacity: a pass of ~16 000 events gathers ~30 000 terms, and growing a fresh map to
    /// that size (rehashing, and faulting in new pages) was a tenth of the indexer's time
    /// under full-speed ingest.
    spare: Vec<FreshTerms>,
    /// After a pass failed to write, the next pass of each tenant sends every posting as a
    /// replacement ([`Update::added`] stays empty): a row that was there after all (derived
    /// data this indexer could not know of) then cannot fail pass after pass.
    cautious: bool,
}

/// An indexer shared by a store's background thread and its one-off updates (settling,
/// removal, anonymisation). The background thread hands the lock over fairly after each pass
/// (`unlock_fair`): under full-speed ingest it would otherwise take the lock straight back,
/// and a one-off update could wait for many passes.
pub type SharedIndexer<B> = Arc<parking_lot::Mutex<Indexer<B>>>;

/// Shares `indexer` between a background thread and one-off updates.
pub fn shared<B>(indexer: Indexer<B>) -> SharedIndexer<B> {
    Arc::new(parking_lot::Mutex::new(indexer))
}

/// Most tenants whose newest chunk an indexer remembers.
const REMEMBERED_TENANTS: usize = 16;

/// A tenant's newest chunk and block, as of a watermark.
struct Newest {
    watermark: u64,
    chunk: u64,
    /// The derived data's revision after the pass ([`IndexBackend::revision`]): another
    /// process's write since (a removal or an anonymisation, which leave the watermark as it
    /// was) makes the memory stale.
    revision: Option<u64>,
    postings: ChunkBits,
    block: Option<(u64, TimeBlock)>,
    /// The chunk's open rollups, every one of them.
    rollups: HashMap<(Span, i64), Rollup>,
}

impl<B: IndexBackend> Indexer<B> {
    /// An indexer over a backend.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            newest: HashMap::new(),
            spare: Vec::new(),
            cautious: false,
        }
    }

    /// The backend.
    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Forgets everything remembered (after derived data was dropped).
    pub fn forget(&mut self) {
        self.newest.clear();
    }
}

/// A stage of an indexing pass, as [`crate::metrics::INDEX_STAGE_DURATION`] names it: each
/// variant's number is its name's place in [`crate::metrics::INDEX_STAGES`].
#[derive(Clone, Copy)]
enum Stage {
    Read,
    Derive,
    Merge,
    Write,
    Commit,
}

/// Where one pass's time went, stage by stage: each [`PassClock::lap`] ends the stage running
/// since the one before.
struct PassClock {
    spent: [Duration; crate::metrics::INDEX_STAGES.len()],
    since: std::time::Instant,
}

impl PassClock {
    fn start() -> Self {
        Self {
            spent: Default::default(),
            since: std::time::Instant::now(),
        }
    }

    /// Ends `stage` now: the time since the last lap is its.
    fn lap(&mut self, stage: Stage) {
        let now = std::time::Instant::now();
        self.spent[stage as usize] += now - self.since;
        self.since = now;
    }

    /// Records the pass: `events` positions of `tenant` indexed, and each stage's time.
    fn record(&self, tenant: &Tenant, events: u64) {
        metrics::counter!(crate::metrics::INDEX_EVENTS, "tenant" => tenant.to_string())
            .increment(events);
        for (stage, spent) in crate::metrics::INDEX_STAGES.iter().zip(self.spent) {
            metrics::histogram!(crate::metrics::INDEX_STAGE_DURATION, "stage" => *stage)
                .record(spent.as_secs_f64());
        }
    }
}

/// Indexes the next batch of at most `max` events of `tenant`, whose log holds `size`
/// positions, in one transaction. Returns how many positions it indexed, or `None` when
/// another indexer holds the tenant. A pass that indexed something is recorded in
/// [`crate::metrics::INDEX_EVENTS`] and, stage by stage, [`crate::metrics::INDEX_STAGE_DURATION`].
pub fn index_next<B: IndexBackend>(
    indexer: &mut Indexer<B>,
    tenant: &Tenant,
    max: u64,
    size: u64,
) -> Result<Option<u64>, B::Error> {
    let mut clock = PassClock::start();
    let Some(watermark) = indexer.backend.begin(tenant)? else {
        return Ok(None);
    };
    let mut remembered = indexer
        .newest
        .remove(tenant)
        .filter(|n| n.watermark == watermark);
    if let Some(n) = &remembered {
        // Another process's write since the pass that left the memory (a removal or an
        // anonymisation leaves the watermark as it was) changes the revision; this process's
        // own such writes forget the memory.
        match indexer.backend.revision(tenant) {
            Ok(revision) if revision == n.revision => {}
            Ok(_) => remembered = None,
            Err(err) => {
                indexer.backend.rollback();
                return Err(err);
            }
        }
    }
    let result = build(
        &mut indexer.backend,
        &mut indexer.spare,
        tenant,
        watermark,
        watermark.saturating_add(max.max(1)).min(size),
        remembered,
        indexer.cautious,
        &mut clock,
    );
    match result {
        Ok(Some((update, mut newest))) => {
            let indexed = update.watermark - watermark;
            let written = indexer.backend.write(tenant, &update).and_then(|()| {
                clock.lap(Stage::Write);
                newest.revision = indexer.backend.revision(tenant)?;
                indexer.backend.commit()
            });
            if let Err(err) = written {
                indexer.backend.rollback();
                indexer.cautious = true;
                return Err(err);
            }
            indexer.cautious = false;
            if indexer.newest.len() >= REMEMBERED_TENANTS {
                indexer.newest.clear();
            }
            indexer.newest.insert(tenant.clone(), newest);
            clock.lap(Stage::Commit);
            clock.record(tenant, indexed);
            Ok(Some(indexed))
        }
        Ok(None) => {
            indexer.backend.rollback();
            Ok(Some(0))
        }
        Err(err) => {
            indexer.backend.rollback();
            Err(err)
        }
    }
}

/// Derives the update for the positions after `watermark` up to `last`, and what to remember
/// of the newest chunk after it; `None` when there are none. A position with no event in the
/// log was removed from it (retention): it goes into its chunk's [`gone`] posting. `cautious`:
/// every posting goes into [`Update::postings`], none into [`Update::added`]. `clock` is
/// lapped after reading the events, deriving their terms and merging them.
#[allow(clippy::too_many_arguments)]
fn build<B: IndexBackend>(
    backend: &mut B,
    spare: &mut Vec<FreshTerms>,
    tenant: &Tenant,
    watermark: u64,
    last: u64,
    remembered: Option<Newest>,
    cautious: bool,
    clock: &mut PassClock,
) -> Result<Option<(Update, Newest)>, B::Error> {
    if last <= watermark {
        return Ok(None);
    }
    let rows = backend.log_rows(tenant, watermark + 1, last)?;
    clock.lap(Stage::Read);
    // New positions per (chunk, term), and the new times per block.
    let mut fresh: BTreeMap<u64, FreshTerms> = BTreeMap::new();
    let mut times: BTreeMap<u64, Vec<(u64, i64)>> = BTreeMap::new();
    // The new counts per chunk and (span, period).
    let mut tallies: BTreeMap<u64, HashMap<(Span, i64), Rollup>> = BTreeMap::new();
    // One event's key terms, end to end, and where each ends.
    let (mut keys, mut ends) = (Vec::<u8>::new(), Vec::<usize>::new());
    let gone_term = gone();
    let mut expected = watermark + 1;
    let mark_gone = |fresh: &mut BTreeMap<u64, FreshTerms>,
                     spare: &mut Vec<FreshTerms>,
                     until: u64,
                     from: u64| {
        for seq in from..until {
            fresh
                .entry(chunk_of(seq))
                .or_insert_with(|| spare.pop().unwrap_or_default())
                .term(&gone_term.0, offset_in_chunk(seq));
        }
    };
    for row in &rows {
        if row.seq > expected {
            mark_gone(&mut fresh, spare, row.seq, expected);
        }
        expected = row.seq + 1;
        let (chunk, offset) = (chunk_of(row.seq), offset_in_chunk(row.seq));
        let terms = fresh
            .entry(chunk)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        let tally = tallies.entry(chunk).or_default();
        keys.clear();
        ends.clear();
        let mut failed = false;
        let occurred = row.with_source(|source| {
            terms.event(source, offset, |term| {
                if is_key(term) {
                    keys.extend_from_slice(term);
                    ends.push(keys.len());
                } else if is_failure(term) {
                    failed = true;
                }
            });
            source.view.occurred_at
        });
        match occurred {
            Ok(at) => {
                // An open chunk counts minutes only; its hours and days are summed from them
                // when it is folded.
                let key_terms = ends.iter().scan(0, |start, &end| {
                    Some(&keys[std::mem::replace(start, end)..end])
                });
                if !cfg!(feature = "bench-without-words-and-rollups") {
                    tally
                        .entry((Span::Minute, Span::Minute.period_of(at)))
                        .or_default()
                        .count(failed, key_terms);
                }
                times
                    .entry(block_of(row.seq))
                    .or_default()
                    .push((row.seq, at))
            }
            // Verify names a damaged event; the index goes on without it.
            Err(err) => {
                tracing::warn!(tenant = %tenant, error = %err, "an event could not be indexed")
            }
        }
    }
    mark_gone(&mut fresh, spare, last + 1, expected);
    clock.lap(Stage::Derive);
    if cfg!(feature = "bench-without-words-and-rollups") {
        // The measuring baseline keeps no rollups (the feature's note in Cargo.toml): nor
        // does it read a chunk's open ones back.
        tallies.clear();
    }
    let mut update = Update {
        watermark: last,
        ..Update::default()
    };
    let (mut remembered_postings, mut remembered_block, mut remembered_rollups) = match remembered {
        Some(n) => (
            Some((n.chunk, n.postings)),
            n.block,
            Some((n.chunk, n.rollups)),
        ),
        None => (None, None, None),
    };
    let newest_chunk = chunk_of(last);
    let mut newest_postings = ChunkBits::default();
    for (chunk, mut terms) in fresh {
        // What the chunk already holds: nothing, if no event of it was indexed before; else
        // what the indexer remembers of it, or all of it read back once.
        let mut postings: ChunkBits = if watermark <= chunk << CHUNK_BITS {
            ChunkBits::default()
        } else {
            match remembered_postings.take() {
                Some((c, postings)) if c == chunk => postings,
                _ => backend
                    .chunk_postings(tenant, chunk)?
                    .into_iter()
                    .map(|(term, bits)| (KeyTerm::new(&term.0), Held::from_stored(&bits)))
                    .collect(),
            }
        };
        // In key order: the backend's B-tree is written left to right.
        let sorted = terms.drain_sorted();
        if spare.len() < SPARE_MAPS {
            spare.push(terms);
        }
        for (key, offsets) in sorted {
            // Offsets come in ascending order, after anything stored.
            match postings.get_mut(key.as_bytes()) {
                Some(held) => {
                    held.extend(&offsets);
                    let encoded = held.encode();
                    update.postings.push((chunk, key.into_term(), encoded));
                }
                None => {
                    let held = Held::of(&offsets);
                    let encoded = held.encode();
                    postings.insert(key.clone(), held);
                    let list = if cautious {
                        &mut update.postings
                    } else {
                        &mut update.added
                    };
                    list.push((chunk, key.into_term(), encoded));
                }
            }
        }
        if chunk == newest_chunk {
            newest_postings = postings;
        }
    }
    for (block, values) in times {
        let first = block << BLOCK_BITS;
        let mut stored = match remembered_block.take() {
            Some((b, stored)) if b == block => stored,
            _ if watermark <= first => TimeBlock::default(),
            _ => backend.time_block(tenant, block)?.unwrap_or_default(),
        };
        for (seq, at) in values {
            // A damaged event left out above leaves its slot at the block's first time, so
            // positions stay aligned; the slot is never a match on its own.
            let at_index = (seq - 1 - first) as usize;
            while stored.values.len() < at_index {
                let fill = stored.values.first().copied().unwrap_or(at);
                stored.push(fill);
            }
            if stored.values.len() == at_index {
                stored.push(at);
            }
        }
        update.times.push((block, stored));
    }
    let mut newest_rollups = HashMap::new();
    for (chunk, tally) in tallies {
        // The chunk's open rollups: none, if no event of it was indexed before; else what the
        // indexer remembers of them, or all of them read back once.
        let mut open: HashMap<(Span, i64), Rollup> = if watermark <= chunk << CHUNK_BITS {
            HashMap::new()
        } else {
            match remembered_rollups.take() {
                Some((c, rollups)) if c == chunk => rollups,
                _ => backend
                    .chunk_rollups(tenant, chunk)?
                    .into_iter()
                    .map(|(span, period, stored)| ((span, period), Rollup::from_stored(&stored)))
                    .collect(),
            }
        };
        let complete = last >= (chunk + 1) << CHUNK_BITS;
        let mut touched: Vec<(Span, i64)> = tally.keys().copied().collect();
        touched.sort_unstable();
        for (key, counts) in tally {
            open.entry(key).or_default().merge(&counts);
        }
        if complete {
            // The watermark passes the chunk's end: its open minutes go into their summaries,
            // and their sums into their hours' and days'.
            let mut sums: BTreeMap<(Span, i64), Rollup> = BTreeMap::new();
            for (&(span, period), counts) in &open {
                let at = period.saturating_mul(span.micros());
                for whole in Span::LONGEST_FIRST {
                    if whole >= span {
                        sums.entry((whole, whole.period_of(at)))
                            .or_default()
                            .merge(counts);
                    }
                }
                update.folded.push((span, period, chunk as i64));
            }
            update.folded.sort_unstable();
            for ((span, period), counts) in sums {
                let mut summary = backend
                    .folded_rollup(tenant, span, period)?
                    .map(|s| Rollup::from_stored(&s))
                    .unwrap_or_default();
                summary.merge(&counts);
                update
                    .rollups
                    .push((span, period, FOLDED, summary.to_stored()));
            }
        } else {
            for (span, period) in touched {
                let stored = open[&(span, period)].to_stored();
                update.rollups.push((span, period, chunk as i64, stored));
            }
            if chunk == newest_chunk {
                newest_rollups = open;
            }
        }
    }
    clock.lap(Stage::Merge);
    let newest = Newest {
        watermark: last,
        chunk: newest_chunk,
        // Set once the pass's own write is made.
        revision: None,
        postings: newest_postings,
        block: update.times.last().cloned(),
        rollups: newest_rollups,
    };
    Ok(Some((update, newest)))
}

/// What [`unindex`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unindex {
    /// The positions are out of the derived data: `removed` now, the rest by an earlier call.
    Done {
        /// Positions taken out by this call.
        removed: u64,
    },
    /// Another indexer holds the tenant: nothing was done; try again.
    Busy,
    /// A position lies beyond the watermark (not indexed yet): nothing was done.
    Behind {
        /// The watermark.
        watermark: u64,
    },
}

/// Takes positions of `tenant` (ascending, each indexed) out of the derived data, in one
/// transaction, before their events leave the log (retention): each is cleared from every
/// posting of its chunk (a posting left empty is deleted), its counts are taken out of the
/// rollups (the summaries of a folded chunk, the open minutes of the chunk being indexed), and
/// it is added to its chunk's [`gone`] posting. A chunk losing a quarter or more of what it
/// holds is derived again from the events left instead (its postings cleared, theirs written):
/// reading and rewriting every posting would cost more. Positions already gone are left as they are, so
/// a removal cut short (the log's removal never followed) can be run again. What the indexer
/// remembers of the tenant is forgotten.
pub fn unindex<B: IndexBackend>(
    indexer: &mut Indexer<B>,
    tenant: &Tenant,
    seqs: &[u64],
) -> Result<Unindex, B::Error> {
    indexer.newest.remove(tenant);
    let Some(watermark) = indexer.backend.begin(tenant)? else {
        return Ok(Unindex::Busy);
    };
    if seqs.last().is_some_and(|&last| last > watermark) {
        indexer.backend.rollback();
        return Ok(Unindex::Behind { watermark });
    }
    let result = unindex_update(&mut indexer.backend, tenant, watermark, seqs, Mode::Remove);
    let removed = write_synced(&mut indexer.backend, tenant, result)?;
    Ok(Unindex::Done { removed })
}

/// Writes an update made in the tenant's open transaction, commits and syncs it; on any error
/// (making the update included) rolls back. Returns what came with the update.
fn write_synced<B: IndexBackend, T>(
    backend: &mut B,
    tenant: &Tenant,
    made: Result<(Update, T), B::Error>,
) -> Result<T, B::Error> {
    let written = write_gated(backend, tenant, made, &mut || true)?;
    Ok(written.expect("an open gate commits"))
}

/// [`write_synced`], asking `go` between writing the update and committing it: when it says
/// no, rolls back and returns `None`.
fn write_gated<B: IndexBackend, T>(
    backend: &mut B,
    tenant: &Tenant,
    made: Result<(Update, T), B::Error>,
    go: &mut dyn FnMut() -> bool,
) -> Result<Option<T>, B::Error> {
    let written = made.and_then(|(update, done)| {
        backend.write(tenant, &update)?;
        if !go() {
            backend.rollback();
            return Ok(None);
        }
        backend.commit_synced()?;
        Ok(Some(done))
    });
    if written.is_err() {
        backend.rollback();
    }
    written
}

/// [`unindex`] for a store: through the indexer it shares with its background thread (so
/// what that thread remembers is forgotten too), waiting while another process's indexer holds
/// the tenant. Returns how many positions it took out.
pub fn unindex_shared<B: IndexBackend>(
    indexer: &parking_lot::Mutex<Indexer<B>>,
    tenant: &Tenant,
    seqs: &[u64],
) -> StoreResult<u64> {
    let outcome = held(indexer, |indexer| {
        Ok(match unindex(indexer, tenant, seqs)? {
            Unindex::Done { removed } => Some(Ok(removed)),
            Unindex::Behind { watermark } => Some(Err(watermark)),
            Unindex::Busy => None,
        })
    })?;
    outcome.map_err(|watermark| {
        StoreError::Database(format!(
            "events past the derived data's watermark ({watermark}) cannot be removed yet"
        ))
    })
}

/// [`unindex_shared`], the positions arriving in ascending batches while they are still being
/// chosen (retention reads and archives them meanwhile): each chunk is taken out as soon as a
/// position past it arrives, so the work is done beside the choosing rather than after it. All
/// of it is one transaction, committed only if `go`, asked once the batches have ended, says
/// yes: `Some(positions taken out)`; `None` when it said no (nothing changed). Positions past
/// the watermark, or not ascending, fail it.
pub fn unindex_streamed<B: IndexBackend>(
    indexer: &parking_lot::Mutex<Indexer<B>>,
    tenant: &Tenant,
    batches: &std::sync::mpsc::Receiver<Vec<u64>>,
    go: &mut dyn FnMut() -> bool,
) -> StoreResult<Option<u64>> {
    held(indexer, |indexer| {
        indexer.newest.remove(tenant);
        let Some(watermark) = indexer.backend.begin(tenant)? else {
            return Ok(None);
        };
        Ok(Some(unindex_stream(
            &mut indexer.backend,
            tenant,
            watermark,
            batches,
            go,
        )))
    })?
}

/// [`unindex_streamed`] in the tenant's open transaction, begun under `watermark`.
fn unindex_stream<B: IndexBackend>(
    backend: &mut B,
    tenant: &Tenant,
    watermark: u64,
    batches: &std::sync::mpsc::Receiver<Vec<u64>>,
    go: &mut dyn FnMut() -> bool,
) -> StoreResult<Option<u64>> {
    let made = (|| {
        let mut unindexing = Unindexing::new(watermark, Mode::Remove);
        let mut current: Option<(u64, RoaringBitmap)> = None;
        let mut last = 0;
        for batch in batches.iter() {
            for seq in batch {
                if seq <= last {
                    return Ok(Err(format!(
                        "positions to remove must ascend: {seq} came after {last}"
                    )));
                }
                if seq > watermark {
                    return Ok(Err(format!(
                        "events past the derived data's watermark ({watermark}) cannot be removed yet"
                    )));
                }
                last = seq;
                let chunk = chunk_of(seq);
                match &mut current {
                    Some((at, bits)) if *at == chunk => {
                        bits.insert(offset_in_chunk(seq));
                    }
                    _ => {
                        if let Some((at, bits)) = current.take() {
                            unindexing.chunk(backend, tenant, at, &bits)?;
                            // Its postings written into the open transaction now, beside the
                            // choosing, rather than all at the end.
                            backend.write(tenant, &unindexing.written())?;
                        }
                        current = Some((chunk, std::iter::once(offset_in_chunk(seq)).collect()));
                    }
                }
            }
        }
        if let Some((at, bits)) = current {
            unindexing.chunk(backend, tenant, at, &bits)?;
        }
        unindexing.finish(backend, tenant).map(Ok)
    })();
    match made {
        Ok(Err(refused)) => {
            backend.rollback();
            Err(StoreError::Database(refused))
        }
        Ok(Ok(update)) => write_gated(backend, tenant, Ok(update), go)
            .map_err(|e| StoreError::Database(e.to_string())),
        Err(err) => {
            backend.rollback();
            Err(StoreError::Database(err.to_string()))
        }
    }
}

/// The tags of the terms rollups count (actors, actions, targets) and of outcomes.
const ROLLUP_TAGS: [u8; 4] = [
    crate::fields::ACTOR_ID.tag(),
    crate::fields::ACTION.tag(),
    crate::fields::TARGET.tag(),
    crate::fields::OUTCOME.tag(),
];

/// [`unindex_shared`] on a blocking thread: what each backend's [`crate::Store::purge`] does
/// before it removes the events from the log.
pub async fn unindex_blocking<B: IndexBackend + 'static>(
    indexer: SharedIndexer<B>,
    tenant: Tenant,
    seqs: Vec<u64>,
) -> StoreResult<u64> {
    tokio::task::spawn_blocking(move || unindex_shared(&indexer, &tenant, &seqs))
        .await
        .map_err(|e| StoreError::Database(format!("unindexing failed: {e}")))?
}

/// Derives the positions `seq` of `tenant` again from the log, in one transaction, after the
/// sanctioned path rewrote their personal values (anonymisation): each is cleared from every
/// posting of its chunk and its counts taken out of the rollups, as [`unindex`] does, then what
/// its event holds now is posted and counted again. Nothing of the values it held before stays
/// in the derived data. Positions beyond the watermark are left to the indexer, which reads
/// them as they are now; positions gone are left as they are. Returns how many it derived.
pub fn rederive<B: IndexBackend>(
    indexer: &mut Indexer<B>,
    tenant: &Tenant,
    seqs: &[u64],
) -> Result<Option<u64>, B::Error> {
    indexer.newest.remove(tenant);
    let Some(watermark) = indexer.backend.begin(tenant)? else {
        return Ok(None);
    };
    let indexed: Vec<u64> = seqs.iter().copied().filter(|&s| s <= watermark).collect();
    let result = unindex_update(
        &mut indexer.backend,
        tenant,
        watermark,
        &indexed,
        Mode::Again,
    );
    write_synced(&mut indexer.backend, tenant, result).map(Some)
}

/// [`rederive`] for a store, on a blocking thread, through the indexer it shares with its
/// background thread, waiting while another process's indexer holds the tenant.
pub async fn rederive_blocking<B: IndexBackend + 'static>(
    indexer: SharedIndexer<B>,
    tenant: Tenant,
    seqs: Vec<u64>,
) -> StoreResult<u64> {
    held_blocking(indexer, move |indexer| rederive(indexer, &tenant, &seqs)).await
}

/// Carries out an anonymisation: awaits `planned`, then `log` (the backend's sanctioned
/// rewrite of the log: the plan's row rewrites, the subjects whose keys go, and the audit
/// event), and what it changes in the derived data: the plan's term changes moved
/// ([`rederive_changes`]) in a transaction made and written while the log is rewritten and
/// committed only once the log's has (rolled back if it failed), then its stale events (found
/// by the subject but no longer naming it) derived again from the log ([`rederive`]). The
/// indexer is held from the start, before the plan's rows are read: waiting for a background
/// pass that holds it (up to a whole batch under full-speed ingest) overlaps the read and the
/// log's own work, the watermark the plan was read under stays put, and no pass reads the log
/// between the two commits. Each backend's `rewrite_personal` calls this.
pub async fn rewrite_then_follow<B, L, F>(
    indexer: SharedIndexer<B>,
    tenant: Tenant,
    planned: crate::anonymize::Planned<'_>,
    log: L,
) -> StoreResult<crate::Appended>
where
    B: IndexBackend + 'static,
    L: FnOnce(Vec<crate::anonymize::RowRewrite>, Vec<String>, crate::PreparedEvent) -> F,
    F: std::future::Future<Output = StoreResult<crate::Appended>>,
{
    let (plan_sent, plan_told) = std::sync::mpsc::channel::<Vec<TermChange>>();
    let (committed, told) = std::sync::mpsc::channel::<bool>();
    let (shared, owner) = (indexer.clone(), tenant.clone());
    let moved = tokio::task::spawn_blocking(move || -> StoreResult<()> {
        let mut held = shared.lock();
        // No plan (its read failed, or the call was abandoned), or nothing to move: let go.
        let changes = match plan_told.recv() {
            Ok(changes) if !changes.is_empty() => changes,
            _ => return Ok(()),
        };
        // Committed only if the log's rewrite did (a failed or abandoned call tells nothing,
        // or false).
        let mut go = || told.recv().unwrap_or(false);
        for attempt in 0u32..200 {
            let done = rederive_changes(&mut held, &owner, &changes, &mut go)
                .map_err(|e| StoreError::Database(e.to_string()))?;
            match done {
                Some(_) => return Ok(()),
                // Another process's indexer has the tenant: let it finish.
                None if attempt < 199 => parking_lot::MutexGuard::unlocked(&mut held, || {
                    std::thread::sleep(Duration::from_millis(25))
                }),
                None => break,
            }
        }
        Err(StoreError::Database(
            "another indexer kept the tenant for too long".into(),
        ))
    });
    // A plan that fails drops `plan_sent` on the way out: the task lets the indexer go.
    let (plan, audit) = planned.await?;
    let crate::anonymize::Plan {
        rewrites,
        terms,
        stale,
        subjects,
    } = plan;
    let appended = if terms.is_empty() {
        // Nothing to move: the indexer is let go as soon as the task gets it, unwaited for.
        drop(plan_sent);
        log(rewrites, subjects, audit).await?
    } else {
        let _ = plan_sent.send(terms);
        let appended = log(rewrites, subjects, audit).await;
        let _ = committed.send(appended.is_ok());
        let moved = moved
            .await
            .map_err(|e| StoreError::Database(format!("deriving again failed: {e}")))?;
        let appended = appended?;
        moved?;
        appended
    };
    if !stale.is_empty() {
        rederive_blocking(indexer, tenant, stale).await?;
    }
    Ok(appended)
}

/// Runs `work` on a blocking thread with the shared indexer until it gets its tenant (`work`
/// answers `None` while another process's indexer holds it), for up to five seconds.
async fn held_blocking<B: IndexBackend + 'static, T: Send + 'static>(
    indexer: SharedIndexer<B>,
    work: impl FnMut(&mut Indexer<B>) -> Result<Option<T>, B::Error> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(move || held(&indexer, work))
        .await
        .map_err(|e| StoreError::Database(format!("deriving again failed: {e}")))?
}

/// Runs `work` with the shared indexer until it gets its tenant (`work` answers `None`, having
/// done nothing, while another process's indexer holds it), for up to five seconds, letting the
/// indexer go between attempts.
fn held<B: IndexBackend, T>(
    indexer: &parking_lot::Mutex<Indexer<B>>,
    mut work: impl FnMut(&mut Indexer<B>) -> Result<Option<T>, B::Error>,
) -> StoreResult<T> {
    for attempt in 0u32..200 {
        let outcome = {
            let mut indexer = indexer.lock();
            work(&mut indexer).map_err(|e| StoreError::Database(e.to_string()))?
        };
        match outcome {
            Some(done) => return Ok(done),
            None if attempt < 199 => std::thread::sleep(Duration::from_millis(25)),
            None => break,
        }
    }
    Err(StoreError::Database(
        "another indexer kept the tenant for too long".into(),
    ))
}

/// What [`unindex_update`] does with the positions it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Take them out for good: retention.
    Remove,
    /// Take out what they held, then post what their events hold now: anonymisation.
    Again,
}

/// The update that takes `seqs` out of the derived data (and, [`Mode::Again`], puts what their
/// events hold now back in), and how many it takes out.
fn unindex_update<B: IndexBackend>(
    backend: &mut B,
    tenant: &Tenant,
    watermark: u64,
    seqs: &[u64],
    mode: Mode,
) -> Result<(Update, u64), B::Error> {
    let mut by_chunk: BTreeMap<u64, RoaringBitmap> = BTreeMap::new();
    for &seq in seqs.iter().filter(|&&s| s >= 1) {
        by_chunk
            .entry(chunk_of(seq))
            .or_default()
            .insert(offset_in_chunk(seq));
    }
    let mut unindexing = Unindexing::new(watermark, mode);
    for (chunk, wanted) in by_chunk {
        unindexing.chunk(backend, tenant, chunk, &wanted)?;
    }
    unindexing.finish(backend, tenant)
}

/// The update [`unindex_update`] makes, made one chunk at a time.
struct Unindexing {
    watermark: u64,
    again: bool,
    gone: Term,
    update: Update,
    removed: u64,
    /// Counts to take out of the rollups (and, deriving again, to put back in) of folded
    /// chunks, for their summaries, gathered over every chunk ([`fold_summaries`]); each open
    /// chunk's go to its own minutes' rows at once.
    ids: TermIds,
    out: MinuteCounts,
    back: MinuteCounts,
}

impl Unindexing {
    fn new(watermark: u64, mode: Mode) -> Self {
        Self {
            watermark,
            again: mode == Mode::Again,
            gone: gone(),
            update: Update {
                watermark,
                ..Update::default()
            },
            removed: 0,
            ids: TermIds::default(),
            out: MinuteCounts::default(),
            back: MinuteCounts::default(),
        }
    }

    /// Takes the positions `wanted` of `chunk` out (and, deriving again, puts what their
    /// events hold now back in).
    fn chunk<B: IndexBackend>(
        &mut self,
        backend: &mut B,
        tenant: &Tenant,
        chunk: u64,
        wanted: &RoaringBitmap,
    ) -> Result<(), B::Error> {
        let first = chunk << CHUNK_BITS;
        let last = (first + CHUNK).min(self.watermark);
        let mut gone_bits = backend
            .posting(tenant, chunk, &self.gone)?
            .map(|b| decode_bits(&b))
            .unwrap_or_default();
        let fresh = wanted - &gone_bits;
        let (Some(lo), Some(hi)) = (fresh.min(), fresh.max()) else {
            return Ok(());
        };
        self.removed += fresh.len();
        let present = (last - first).saturating_sub(gone_bits.len());
        // Most of the chunk going: it is derived again from the events left (its postings
        // cleared, theirs written), which reads the key postings alone rather than every one.
        let rebuild = fresh.len().saturating_mul(4) >= present;
        let postings: TermMap<RoaringBitmap> = if rebuild {
            backend
                .tagged_postings(tenant, chunk, &ROLLUP_TAGS)?
                .into_iter()
                .map(|(term, bits)| (term, decode_bits(&bits)))
                .collect()
        } else {
            let mut all: TermMap<RoaringBitmap> = backend
                .chunk_postings(tenant, chunk)?
                .into_iter()
                .map(|(term, bits)| (term, decode_bits(&bits)))
                .collect();
            all.remove(&self.gone);
            all
        };
        // The minute of each position from the first removed to the last, from the time
        // blocks; a position with none is not counted.
        let mut blocks = HashMap::new();
        let minutes = (lo..=hi)
            .map(|offset| minute_of(backend, tenant, &mut blocks, seq_at(chunk, offset)))
            .collect::<Result<Vec<Option<i64>>, _>>()?;
        let minute = |offset: u32| minutes[(offset - lo) as usize];
        let folded = self.watermark >= (chunk + 1) << CHUNK_BITS;
        let (mut open_out, mut open_back) = (MinuteCounts::default(), MinuteCounts::default());
        let (out, back) = if folded {
            (&mut self.out, &mut self.back)
        } else {
            (&mut open_out, &mut open_back)
        };
        // Each removed position's counts, by the key and failure postings that hold it; a
        // position in no key posting (an event indexing could not read) was never counted.
        let (mut counted, mut failed) = (RoaringBitmap::new(), RoaringBitmap::new());
        for (term, bits) in &postings {
            if is_key(&term.0) {
                let hit = bits & &fresh;
                if hit.is_empty() {
                    continue;
                }
                let id = self.ids.id(&term.0);
                for offset in &hit {
                    if let Some(m) = minute(offset) {
                        out.key(m, id);
                    }
                }
                counted |= hit;
            } else if is_failure(&term.0) {
                failed |= bits & &fresh;
            }
        }
        for offset in &counted {
            if let Some(m) = minute(offset) {
                out.event(m, failed.contains(offset));
            }
        }
        // Deriving again: the terms of the events as they are now, and their counts.
        let mut now: TermMap<RoaringBitmap> = TermMap::default();
        if self.again {
            for row in backend.log_rows(tenant, seq_at(chunk, lo), seq_at(chunk, hi))? {
                let offset = offset_in_chunk(row.seq);
                if !fresh.contains(offset) {
                    continue;
                }
                let at = minute(offset);
                let mut failed = false;
                let read = row.with_source(|source| {
                    terms_of(source, |term| {
                        if is_key(term) {
                            if let Some(m) = at {
                                back.key(m, self.ids.id(term));
                            }
                        } else if is_failure(term) {
                            failed = true;
                        }
                        match now.get_mut(term) {
                            Some(bits) => {
                                bits.insert(offset);
                            }
                            None => {
                                now.insert(Term(term.into()), std::iter::once(offset).collect());
                            }
                        }
                    })
                });
                if let Err(err) = read {
                    tracing::warn!(tenant = %tenant, error = %err, "an event could not be indexed");
                    continue;
                }
                if let Some(m) = at {
                    back.event(m, failed);
                }
            }
        }
        if rebuild {
            // Every posting of the chunk goes; those of the events left are written again.
            let rows = backend.log_rows(tenant, first + 1, last)?;
            let mut kept: TermMap<RoaringBitmap> = TermMap::default();
            for row in rows
                .iter()
                .filter(|r| self.again || !fresh.contains(offset_in_chunk(r.seq)))
            {
                let offset = offset_in_chunk(row.seq);
                let read = row.with_source(|source| {
                    terms_of(source, |term| match kept.get_mut(term) {
                        Some(bits) => {
                            bits.insert(offset);
                        }
                        None => {
                            kept.insert(Term(term.into()), std::iter::once(offset).collect());
                        }
                    })
                });
                if let Err(err) = read {
                    tracing::warn!(tenant = %tenant, error = %err, "an event could not be indexed");
                }
            }
            let mut kept: Vec<(Term, RoaringBitmap)> = kept.into_iter().collect();
            kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            self.update.cleared.push(chunk);
            self.update.postings.extend(
                kept.into_iter()
                    .map(|(term, bits)| (chunk, term, encode_bits(&bits))),
            );
        } else {
            // Postings without the removed positions (and, deriving again, with what their
            // events hold now); the empty ones deleted.
            let mut changed: Vec<(Term, RoaringBitmap)> = Vec::new();
            for (term, bits) in postings {
                let posted_now = now.remove(&term);
                if bits.is_disjoint(&fresh) && posted_now.is_none() {
                    continue;
                }
                let mut bits = bits - &fresh;
                if let Some(posted) = posted_now {
                    bits |= posted;
                }
                changed.push((term, bits));
            }
            changed.extend(now.drain());
            changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (term, bits) in changed {
                if bits.is_empty() {
                    self.update.removed.push((chunk, term));
                } else {
                    self.update.postings.push((chunk, term, encode_bits(&bits)));
                }
            }
        }
        if !self.again {
            gone_bits |= fresh;
            self.update
                .postings
                .push((chunk, self.gone.clone(), encode_bits(&gone_bits)));
        }
        if !folded {
            let (out, back) = (
                open_out.per_minute(&self.ids),
                open_back.per_minute(&self.ids),
            );
            adjust_open_rollups(backend, tenant, chunk, (&out, &back), &mut self.update)?;
        }
        Ok(())
    }

    /// The postings changed so far, taken out of the update (the rollups stay: the summaries
    /// are made at the end), to be written into the open transaction before the rest.
    fn written(&mut self) -> Update {
        Update {
            postings: std::mem::take(&mut self.update.postings),
            removed: std::mem::take(&mut self.update.removed),
            cleared: std::mem::take(&mut self.update.cleared),
            watermark: self.watermark,
            ..Update::default()
        }
    }

    /// The whole update, with the summaries of folded chunks, and how many positions it takes
    /// out.
    fn finish<B: IndexBackend>(
        mut self,
        backend: &mut B,
        tenant: &Tenant,
    ) -> Result<(Update, u64), B::Error> {
        fold_summaries(
            backend,
            tenant,
            &self.out,
            &self.back,
            &self.ids,
            &mut self.update,
        )?;
        Ok((self.update, self.removed))
    }
}

/// Takes the counts `out` (per minute) out of the open rows of a chunk still being indexed and
/// puts `back` in: each minute touched is rewritten in `update`.
fn adjust_open_rollups<B: IndexBackend>(
    backend: &mut B,
    tenant: &Tenant,
    chunk: u64,
    (out, back): (&HashMap<i64, Rollup>, &HashMap<i64, Rollup>),
    update: &mut Update,
) -> Result<(), B::Error> {
    let mut open: HashMap<i64, Rollup> = backend
        .chunk_rollups(tenant, chunk)?
        .into_iter()
        .filter(|(span, _, _)| *span == Span::Minute)
        .map(|(_, period, stored)| (period, Rollup::from_stored(&stored)))
        .collect();
    let mut touched: Vec<i64> = out.keys().chain(back.keys()).copied().collect();
    touched.sort_unstable();
    touched.dedup();
    for minute in touched {
        let row = open.entry(minute).or_default();
        if let Some(old) = out.get(&minute) {
            row.subtract(old);
        }
        if let Some(new) = back.get(&minute) {
            row.merge(new);
        }
        update
            .rollups
            .push((Span::Minute, minute, chunk as i64, row.to_stored()));
    }
    Ok(())
}

/// Rewrites the summaries (minute, hour, quarter day, day and week) of folded chunks that the
/// counts `out` leave and `back` come into.
fn fold_summaries<B: IndexBackend>(
    backend: &mut B,
    tenant: &Tenant,
    out: &MinuteCounts,
    back: &MinuteCounts,
    ids: &TermIds,
    update: &mut Update,
) -> Result<(), B::Error> {
    for ((span, period), change) in summary_changes(out, back, ids) {
        let summary = backend
            .folded_rollup(tenant, span, period)?
            .unwrap_or_default();
        update
            .rollups
            .push((span, period, FOLDED, summary.changed(&change, ids)));
    }
    Ok(())
}

/// The minute of position `seq`, from its time block (read once per block into `blocks`).
fn minute_of<B: IndexBackend>(
    backend: &mut B,
    tenant: &Tenant,
    blocks: &mut HashMap<u64, Option<TimeBlock>>,
    seq: u64,
) -> Result<Option<i64>, B::Error> {
    let block = block_of(seq);
    let stored = match blocks.entry(block) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(backend.time_block(tenant, block)?)
        }
    };
    Ok(stored
        .as_ref()
        .and_then(|b| b.values.get((seq - 1 - (block << BLOCK_BITS)) as usize))
        .copied()
        .map(|at| Span::Minute.period_of(at)))
}

/// What one event's terms were and are: what [`rederive_changes`] applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermChange {
    /// The position.
    pub seq: u64,
    /// Its terms before (each a [`Term`]'s bytes).
    pub before: Vec<Vec<u8>>,
    /// Its terms now.
    pub after: Vec<Vec<u8>>,
}

/// Applies what changed of events' terms (anonymisation rewrote their personal values), in one
/// transaction: each term an event lost is cleared from its posting (a posting left empty is
/// deleted), each it gained is set, and its counts move in the rollups. Only the postings of
/// changed terms are read and written. Positions beyond the watermark are left to the indexer
/// (which reads them as they are now), positions gone are left as they are. The update is
/// committed only if `go`, asked once it is written, says yes (else nothing changes, and it
/// answers `Some(0)`). `None` when another indexer holds the tenant (nothing was done); else
/// how many events changed.
pub fn rederive_changes<B: IndexBackend>(
    indexer: &mut Indexer<B>,
    tenant: &Tenant,
    changes: &[TermChange],
    go: &mut dyn FnMut() -> bool,
) -> Result<Option<u64>, B::Error> {
    indexer.newest.remove(tenant);
    let Some(watermark) = indexer.backend.begin(tenant)? else {
        return Ok(None);
    };
    let result = changes_update(&mut indexer.backend, tenant, watermark, changes);
    Ok(Some(
        write_gated(&mut indexer.backend, tenant, result, go)?.unwrap_or(0),
    ))
}

fn changes_update<B: IndexBackend>(
    backend: &mut B,
    tenant: &Tenant,
    watermark: u64,
    changes: &[TermChange],
) -> Result<(Update, u64), B::Error> {
    let mut update = Update {
        watermark,
        ..Update::default()
    };
    let mut by_chunk: BTreeMap<u64, Vec<&TermChange>> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.seq >= 1 && c.seq <= watermark) {
        by_chunk.entry(chunk_of(c.seq)).or_default().push(c);
    }
    let mut ids = TermIds::default();
    let (mut folded_out, mut folded_back) = (MinuteCounts::default(), MinuteCounts::default());
    let mut blocks: HashMap<u64, Option<TimeBlock>> = HashMap::new();
    let mut changed = 0;
    for (chunk, events) in by_chunk {
        let gone_bits = backend
            .posting(tenant, chunk, &gone())?
            .map(|b| decode_bits(&b))
            .unwrap_or_default();
        // Per term, the positions that lost it and those that gained it.
        let mut moves: BTreeMap<&[u8], (RoaringBitmap, RoaringBitmap)> = BTreeMap::new();
        let folded = watermark >= (chunk + 1) << CHUNK_BITS;
        let (mut open_out, mut open_back) = (MinuteCounts::default(), MinuteCounts::default());
        let (out, back) = if folded {
            (&mut folded_out, &mut folded_back)
        } else {
            (&mut open_out, &mut open_back)
        };
        for c in events {
            let offset = offset_in_chunk(c.seq);
            if gone_bits.contains(offset) {
                continue;
            }
            changed += 1;
            let before: std::collections::BTreeSet<&[u8]> =
                c.before.iter().map(Vec::as_slice).collect();
            let after: std::collections::BTreeSet<&[u8]> =
                c.after.iter().map(Vec::as_slice).collect();
            for &term in before.difference(&after) {
                moves.entry(term).or_default().0.insert(offset);
            }
            for &term in after.difference(&before) {
                moves.entry(term).or_default().1.insert(offset);
            }
            fn counted<'t>(terms: &std::collections::BTreeSet<&'t [u8]>) -> (bool, Vec<&'t [u8]>) {
                let keys = terms.iter().copied().filter(|t| is_key(t)).collect();
                (terms.iter().any(|t| is_failure(t)), keys)
            }
            let (old, new) = (counted(&before), counted(&after));
            if old == new {
                continue;
            }
            if let Some(minute) = minute_of(backend, tenant, &mut blocks, c.seq)? {
                // An event is counted once per minute whatever its keys: what moves is the key.
                out.event(minute, old.0);
                for key in old.1 {
                    out.key(minute, ids.id(key));
                }
                back.event(minute, new.0);
                for key in new.1 {
                    back.key(minute, ids.id(key));
                }
            }
        }
        let terms: Vec<Term> = moves.keys().map(|&t| Term(t.into())).collect();
        let mut stored: TermMap<Vec<u8>> = backend
            .postings(tenant, chunk, &terms)?
            .into_iter()
            .collect();
        for (term, (lost, gained)) in moves {
            let term = Term(term.into());
            let stored = stored
                .remove(&term)
                .map(|b| decode_bits(&b))
                .unwrap_or_default();
            let now = &(&stored - &lost) | &gained;
            if now == stored {
                continue;
            }
            if now.is_empty() {
                update.removed.push((chunk, term));
            } else {
                update.postings.push((chunk, term, encode_bits(&now)));
            }
        }
        if !folded {
            let (out, back) = (open_out.per_minute(&ids), open_back.per_minute(&ids));
            adjust_open_rollups(backend, tenant, chunk, (&out, &back), &mut update)?;
        }
    }
    fold_summaries(
        backend,
        tenant,
        &folded_out,
        &folded_back,
        &ids,
        &mut update,
    )?;
    Ok((update, changed))
}

/// Runs indexing passes until every tenant is indexed: for `sealtrail reindex` and tests.
/// Calls `progress` with the number of events indexed so far.
pub fn index_all<B: IndexBackend>(
    backend: &mut Indexer<B>,
    batch: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, B::Error> {
    let mut done = 0;
    // Another process's indexer may hold a tenant for a while: its work is waited for, up to
    // a bound (a stuck one does not hang the caller).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lags = backend.backend.lagging()?;
        let total: u64 = lags.iter().map(|l| l.size).sum();
        let (mut worked, mut held) = (false, false);
        for lag in lags.iter().filter(|l| l.indexed < l.size) {
            match index_next(backend, &lag.tenant, batch, lag.size)? {
                Some(n) if n > 0 => {
                    done += n;
                    worked = true;
                    progress(done, total);
                }
                Some(_) => {}
                None => held = true,
            }
        }
        if !worked {
            if held && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            return Ok(done);
        }
    }
}

/// How an indexer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexerOptions {
    /// Most events per transaction.
    pub batch: u64,
    /// How long to sleep between passes when nothing wakes the indexer (another process's
    /// writes are only found by looking).
    pub poll: Duration,
    /// Unindexed events of a tenant beyond which ingest into it answers 503.
    pub max_lag: u64,
    /// Whether an indexer follows the log in the background. Without one, derived data is
    /// built only when asked (`Store::settle`): for tests that must see the log's tail.
    pub background: bool,
    /// A pass that indexed fewer events than this is followed by a pause of `linger`, so that
    /// a trickle of small commits is indexed in batches: each pass rewrites the newest
    /// chunk's bitmaps of every term it touches, and one pass per event would cost more than
    /// the event. Reads stay exact meanwhile (they scan the log's tail), and the tail stays
    /// at most about `min_batch` events or `linger` of ingest long.
    pub min_batch: u64,
    /// The pause after a small pass; see `min_batch`.
    pub linger: Duration,
}

impl Default for IndexerOptions {
    fn default() -> Self {
        Self {
            batch: 32_768,
            poll: Duration::from_secs(1),
            max_lag: 100_000,
            background: true,
            min_batch: 2_048,
            linger: Duration::from_millis(50),
        }
    }
}

#[derive(Default)]
struct GateState {
    /// Per tenant: (indexed, log size) as last seen.
    tenants: HashMap<Tenant, (u64, u64)>,
    /// Whether something was appended since the indexer last looked.
    pending: bool,
}

/// What the store's write path and its indexer share in one process: each tenant's lag, the
/// bound on it, and the indexer's wake-up.
pub struct IndexGate {
    state: Mutex<GateState>,
    wake: Condvar,
    stopping: AtomicBool,
    max_lag: u64,
}

impl IndexGate {
    /// A gate refusing ingest past `max_lag` unindexed events of a tenant.
    pub fn new(max_lag: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState::default()),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            max_lag: max_lag.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().expect("the gate lock is never poisoned")
    }

    /// Refuses a write into any of `tenants` whose unindexed events are past the bound, with
    /// [`StoreError::Overloaded`] (503 and `Retry-After`): the backlog of derived work never
    /// grows without bound.
    pub fn admit<'a>(&self, tenants: impl IntoIterator<Item = &'a Tenant>) -> StoreResult<()> {
        let state = self.lock();
        for tenant in tenants {
            if let Some((indexed, size)) = state.tenants.get(tenant)
                && size.saturating_sub(*indexed) > self.max_lag
            {
                return Err(StoreError::Overloaded);
            }
        }
        Ok(())
    }

    /// Records that `tenant`'s log has grown to at least `size`, and wakes the indexer.
    pub fn appended(&self, tenant: &Tenant, size: u64) {
        let mut state = self.lock();
        let entry = state.tenants.entry(tenant.clone()).or_insert((0, 0));
        entry.1 = entry.1.max(size);
        state.pending = true;
        self.wake.notify_all();
    }

    /// Records what an indexer saw or did: `tenant` is indexed up to `indexed` of `size`.
    pub fn observed(&self, tenant: &Tenant, indexed: u64, size: u64) {
        let mut state = self.lock();
        let entry = state.tenants.entry(tenant.clone()).or_insert((0, 0));
        entry.0 = entry.0.max(indexed);
        entry.1 = entry.1.max(size);
    }

    /// Forgets every watermark (after derived data was dropped).
    pub fn reset(&self) {
        let mut state = self.lock();
        for entry in state.tenants.values_mut() {
            entry.0 = 0;
        }
        state.pending = true;
        self.wake.notify_all();
    }

    /// Unindexed events, summed over every tenant.
    pub fn lag(&self) -> u64 {
        self.lock()
            .tenants
            .values()
            .map(|(indexed, size)| size.saturating_sub(*indexed))
            .sum()
    }

    /// The bound of [`IndexGate::admit`].
    pub fn max_lag(&self) -> u64 {
        self.max_lag
    }

    /// Waits until something was appended or `timeout` passed; false once stopping.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut state = self.lock();
        if !state.pending && !self.stopping.load(Ordering::Acquire) {
            state = self
                .wake
                .wait_timeout(state, timeout)
                .expect("the gate lock is never poisoned")
                .0;
        }
        state.pending = false;
        !self.stopping.load(Ordering::Acquire)
    }

    /// Waits for `pause` to pass, whatever is appended meanwhile; false once stopping.
    pub fn linger(&self, pause: Duration) -> bool {
        let deadline = std::time::Instant::now() + pause;
        let mut state = self.lock();
        while !self.stopping.load(Ordering::Acquire) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .wake
                .wait_timeout(state, left)
                .expect("the gate lock is never poisoned")
                .0;
        }
        drop(state);
        !self.stopping.load(Ordering::Acquire)
    }

    /// Tells the indexer to stop after its current transaction.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _guard = self.lock();
        self.wake.notify_all();
    }

    /// Whether [`IndexGate::stop`] was called.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// The indexer's loop: index every lagging tenant in batches, then wait for new events (or
/// `options.poll`), until the gate stops. Failures are logged and tried again after a pause;
/// they never touch the log. The backend is shared with [`settle`], one user at a time.
pub fn run_indexer<B: IndexBackend>(
    backend: SharedIndexer<B>,
    gate: Arc<IndexGate>,
    options: IndexerOptions,
) {
    let mut failures = 0u32;
    let mut behind = false;
    let mut last_report = std::time::Instant::now();
    while !gate.stopping() {
        // Say when the derived data falls far behind the log, and when it has caught up.
        let lag = gate.lag();
        if lag > gate.max_lag() / 2 && last_report.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(
                lag,
                max_lag = gate.max_lag(),
                "the indexer is behind the log"
            );
            behind = true;
            last_report = std::time::Instant::now();
        } else if behind && lag == 0 {
            tracing::info!("the indexer has caught up with the log");
            behind = false;
        }
        let mut guard = backend.lock();
        let pass = (|| -> Result<u64, B::Error> {
            let backend = &mut *guard;
            let mut indexed = 0;
            for lag in backend.backend.lagging()? {
                gate.observed(&lag.tenant, lag.indexed, lag.size);
                if lag.indexed >= lag.size || gate.stopping() {
                    continue;
                }
                if let Some(n) = index_next(backend, &lag.tenant, options.batch, lag.size)?
                    && n > 0
                {
                    gate.observed(&lag.tenant, lag.indexed + n, lag.size);
                    indexed += n;
                }
            }
            Ok(indexed)
        })();
        // A one-off update waiting for the lock gets it now, before the next pass.
        parking_lot::MutexGuard::unlock_fair(guard);
        match pass {
            Ok(n) if n > 0 => {
                failures = 0;
                if n < options.min_batch && !gate.linger(options.linger) {
                    break;
                }
            }
            Ok(_) => {
                failures = 0;
                if !gate.wait(options.poll) {
                    break;
                }
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(100 << failures.min(6));
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "indexing failed");
                if !gate.wait(pause) {
                    break;
                }
            }
        }
    }
    tracing::debug!("indexer stops");
}

/// Indexes every tenant up to the end of its log now, on the calling thread, and records what
/// it did in the gate: `Store::settle` and `sealtrail reindex`.
pub fn settle<B: IndexBackend>(
    backend: &parking_lot::Mutex<Indexer<B>>,
    gate: &IndexGate,
    batch: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, B::Error> {
    let mut backend = backend.lock();
    let done = index_all(&mut backend, batch, progress)?;
    for lag in backend.backend.lagging()? {
        gate.observed(&lag.tenant, lag.indexed, lag.size);
    }
    Ok(done)
}

/// Drops every piece of derived data and builds it again from the log, now, on the calling
/// thread (`sealtrail reindex`). `progress` gets the events indexed so far and the total.
pub fn rebuild<B: IndexBackend>(
    backend: &parking_lot::Mutex<Indexer<B>>,
    gate: &IndexGate,
    batch: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, B::Error> {
    {
        let mut backend = backend.lock();
        backend.forget();
        backend.backend.reset()?;
    }
    gate.reset();
    settle(backend, gate, batch, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_terms_are_found_by_their_bytes_and_give_them_back() {
        let terms: Vec<Vec<u8>> = [0, 1, INLINE_TERM - 1, INLINE_TERM, INLINE_TERM + 1, 300]
            .iter()
            .map(|&n| (0..n).map(|i| b'a' + (i % 26) as u8).collect())
            .collect();
        let mut map = FreshTerms::default();
        for (i, term) in terms.iter().enumerate() {
            map.term(term, i as u32);
        }
        assert_eq!(map.slots.len(), terms.len(), "no two lengths collide");
        for (i, term) in terms.iter().enumerate() {
            let slot = map.slots.get(term.as_slice()).copied();
            assert_eq!(
                slot.map(|s| map.offsets[s as usize].to_vec()),
                Some(vec![i as u32]),
                "{}",
                term.len()
            );
            assert_eq!(KeyTerm::new(term).into_term().0.as_ref(), term.as_slice());
        }
        assert!(!map.slots.contains_key(&b"zz"[..]));
        let drained = map.drain_sorted();
        assert_eq!(drained.len(), terms.len());
        assert!(
            drained
                .windows(2)
                .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes())
        );
        assert!(map.slots.is_empty() && map.offsets.is_empty());
    }

    #[test]
    fn a_recurring_text_adds_the_positions_its_words_would() {
        use rand::{Rng, SeedableRng};
        let pieces = [
            "Invoice",
            "paid",
            "ÜBER",
            "42",
            "550E8400-E29B-41D4-A716-446655440000",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut cached, mut cut) = (FreshTerms::default(), FreshTerms::default());
        let mut scratch = String::new();
        for offset in 0..500u32 {
            // A few texts per event, drawn from a small set so that most recur, one of them
            // sometimes twice in an event.
            for _ in 0..rng.random_range(1..4) {
                let text: Vec<&str> = (0..rng.random_range(0..4))
                    .map(|_| pieces[rng.random_range(0..pieces.len())])
                    .collect();
                let text = text.join(if rng.random_range(0..2) == 0 {
                    " "
                } else {
                    "."
                });
                cached.text(&text, offset);
                crate::text::words(&text, &mut scratch, &mut |w| {
                    cut.term(&crate::fields::WORD.term(w).0, offset)
                });
            }
            cached.term(b"Aactor", offset);
            cut.term(b"Aactor", offset);
        }
        assert!(!cached.texts.is_empty());
        assert_eq!(
            cached
                .drain_sorted()
                .into_iter()
                .map(|(k, o)| (k.into_term(), o))
                .collect::<Vec<_>>(),
            cut.drain_sorted()
                .into_iter()
                .map(|(k, o)| (k.into_term(), o))
                .collect::<Vec<_>>()
        );
        assert!(
            cached.texts.is_empty(),
            "texts are forgotten with the batch"
        );
    }

    #[test]
    fn positions_map_to_chunks_offsets_and_back() {
        for seq in [1, 2, CHUNK, CHUNK + 1, 5 * CHUNK + 77] {
            assert_eq!(seq_at(chunk_of(seq), offset_in_chunk(seq)), seq);
        }
        assert_eq!(chunk_of(CHUNK), 0);
        assert_eq!(chunk_of(CHUNK + 1), 1);
        assert_eq!(block_of(BLOCK + 1), 1);
    }

    #[test]
    fn bitmaps_and_time_blocks_survive_their_stored_forms() {
        let bits: RoaringBitmap = [0u32, 5, 65_535].into_iter().collect();
        assert_eq!(
            encode_bits(&bits).len(),
            7,
            "a short posting is a plain list"
        );
        assert_eq!(decode_bits(&encode_bits(&bits)), bits);
        let one: RoaringBitmap = [513u32].into_iter().collect();
        assert_eq!(encode_bits(&one), [LIST_FORM, 1, 2]);
        let empty = RoaringBitmap::new();
        assert_eq!(decode_bits(&encode_bits(&empty)), empty);
        let long: RoaringBitmap = (0..LIST_MAX as u32 + 1).map(|i| i * 3).collect();
        assert_ne!(encode_bits(&long)[0], LIST_FORM);
        assert_eq!(decode_bits(&encode_bits(&long)), long);
        let list: RoaringBitmap = (0..LIST_MAX as u32).map(|i| i * 7).collect();
        assert_eq!(decode_bits(&encode_bits(&list)), list);
        assert!(decode_bits(b"garbage").is_empty());
        assert!(
            decode_bits(&[LIST_FORM, 9, 0, 1, 0]).is_empty(),
            "out of order is damage"
        );
        let mut block = TimeBlock::default();
        for v in [5, -3, 9] {
            block.push(v);
        }
        assert_eq!((block.lo, block.hi), (-3, 9));
        assert_eq!(
            TimeBlock::decode(block.lo, block.hi, &block.encode_values()),
            block
        );
    }

    #[test]
    fn held_postings_store_as_their_bitmaps_do() {
        use rand::{Rng, SeedableRng};
        for seed in 0..300u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (mut held, mut reference) = (None::<Held>, RoaringBitmap::new());
            let mut next = rng.random_range(0..1_000u32);
            // Passes of new offsets after the held ones, some long enough to pass the list's
            // bound; sometimes the posting is read back from its stored form between passes.
            for _ in 0..rng.random_range(1..6) {
                let long = rng.random_range(0..4) == 0;
                let n = if long {
                    rng.random_range(1..3_000)
                } else {
                    rng.random_range(1..20)
                };
                let mut offsets = Vec::new();
                for _ in 0..n {
                    if next >= CHUNK as u32 {
                        break;
                    }
                    offsets.push(next);
                    next += rng.random_range(1..if long { 4 } else { 3_000 });
                }
                if offsets.is_empty() {
                    break;
                }
                reference.extend(offsets.iter().copied());
                match &mut held {
                    Some(h) => h.extend(&offsets),
                    None => held = Some(Held::of(&offsets)),
                }
                let h = held.as_mut().expect("set above");
                let stored = h.encode();
                assert_eq!(stored, encode_bits(&reference), "seed {seed}");
                if rng.random_range(0..2) == 0 {
                    *h = Held::from_stored(&stored);
                    assert_eq!(h.encode(), stored, "seed {seed}");
                }
            }
        }
        // An offset not after the held ones (another writer's): put in its place, once.
        let mut held = Held::of(&[10, 20]);
        held.extend(&[15, 20, 30]);
        assert_eq!(
            held.encode(),
            encode_bits(&[10, 15, 20, 30].into_iter().collect())
        );
        // A damaged list is read as the bitmap reader reads it.
        assert_eq!(
            Held::from_stored(&[LIST_FORM, 9, 0, 1, 0]).encode(),
            encode_bits(&RoaringBitmap::new())
        );
    }

    #[test]
    fn the_gate_refuses_a_tenant_past_its_bound_only() {
        let gate = IndexGate::new(10);
        let a = crate::conformance::tenant("a");
        let b = crate::conformance::tenant("b");
        gate.appended(&a, 11);
        gate.appended(&b, 10);
        assert!(matches!(gate.admit([&a]), Err(StoreError::Overloaded)));
        assert!(gate.admit([&b]).is_ok());
        gate.observed(&a, 5, 11);
        assert!(gate.admit([&a]).is_ok());
        assert_eq!(gate.lag(), 16);
    }
}
