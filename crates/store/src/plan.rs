//! Reads, once for every backend: lists, timelines and single events, answered from the
//! derived postings and time blocks up to the tenant's watermark and from the log's tail
//! beyond it, all in one snapshot, so every answer is exact.
//!
//! A backend gives a [`ReadSnapshot`]: a consistent view (one read transaction) with a few
//! primitive reads. The planner combines posting bitmaps chunk by chunk: within a field the
//! alternatives are OR-ed, across fields AND-ed, the time range is a mask from the time blocks,
//! and only the events of the page are read from the log. A query's cost is bounded by the
//! chunks it visits and the page it returns, never by how common one of its terms is.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use roaring::RoaringBitmap;
use sealtrail_model::Tenant;
use uuid::Uuid;

use crate::derived::{
    BLOCK, BLOCK_BITS, CHUNK, CHUNK_BITS, Posting, TimeBlock, chunk_of, decode_bits, gone,
    offset_in_chunk, seq_at,
};
use crate::fields::{EVENT_TYPE, EventFilter, RELATED, TARGET, Term, pair};
use crate::rollup::{Span, StoredRollup};
use crate::rows::{LogRow, RowBody, RowError};
use crate::tail::TailIndex;
use crate::{Cursor, HistoryQuery, ListQuery, Order, Page, Relation, RowPage, StoredEvent};

/// A consistent view of one store for one read: what a backend must answer.
pub trait ReadSnapshot {
    /// The backend's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The tenant's watermark (events `1..=indexed` are in the derived data) and log size.
    fn bounds(&mut self, tenant: &Tenant) -> Result<(u64, u64), Self::Error>;

    /// The stored postings of `terms` in the chunks of `chunks`: `(chunk, term, bitmap)`.
    fn postings(
        &mut self,
        tenant: &Tenant,
        chunks: RangeInclusive<u64>,
        terms: &[Term],
    ) -> Result<Vec<Posting>, Self::Error>;

    /// The time blocks of `blocks`: their least and greatest `occurred_at`, and their values
    /// too when `values` is set (else left empty).
    fn time_blocks(
        &mut self,
        tenant: &Tenant,
        blocks: RangeInclusive<u64>,
        values: bool,
    ) -> Result<Vec<(u64, TimeBlock)>, Self::Error>;

    /// The summary rows (chunk [`crate::rollup::FOLDED`]) of `span` for the periods of
    /// `periods`, as `(period, counts)`; keys are read only when `keys` is set (else left
    /// empty). The newest chunk's counts are in [`ReadSnapshot::open_minutes`].
    fn rollups(
        &mut self,
        tenant: &Tenant,
        span: Span,
        periods: RangeInclusive<i64>,
        keys: bool,
    ) -> Result<Vec<(i64, StoredRollup)>, Self::Error>;

    /// The open rollup rows (those of chunks not yet folded, which count minutes only) for
    /// the minutes of `minutes`, as `(minute, counts)`; keys only when `keys` is set.
    fn open_minutes(
        &mut self,
        tenant: &Tenant,
        minutes: RangeInclusive<i64>,
        keys: bool,
    ) -> Result<Vec<(i64, StoredRollup)>, Self::Error>;

    /// The log's events at these positions (in any order).
    fn rows(&mut self, tenant: &Tenant, seqs: &[u64]) -> Result<Vec<LogRow>, Self::Error>;

    /// At most `limit` of the log's events with `seq` in `range`, ascending or descending.
    fn scan(
        &mut self,
        tenant: &Tenant,
        range: RangeInclusive<u64>,
        desc: bool,
        limit: usize,
    ) -> Result<Vec<LogRow>, Self::Error>;

    /// The event with this id, if it is the tenant's.
    fn by_id(&mut self, tenant: &Tenant, id: Uuid) -> Result<Option<LogRow>, Self::Error>;
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError<E: std::error::Error + 'static> {
    /// The backend failed.
    #[error(transparent)]
    Backend(E),
    /// A stored event cannot be read (verify names it).
    #[error(transparent)]
    Row(#[from] RowError),
}

type PlanResult<T, E> = std::result::Result<T, PlanError<E>>;

/// How many log events a tail scan reads at a time.
const SCAN_PAGE: usize = 512;
/// The largest number of chunks one postings read covers.
const MAX_WINDOW: u64 = 64;

/// One event by id.
pub fn get<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    id: Uuid,
) -> PlanResult<Option<StoredEvent>, S::Error> {
    let Some(row) = snap.by_id(tenant, id).map_err(PlanError::Backend)? else {
        return Ok(None);
    };
    Ok(Some(stored(&row, None)?))
}

fn stored(row: &LogRow, relation: Option<Relation>) -> std::result::Result<StoredEvent, RowError> {
    let body = row.render()?;
    Ok(StoredEvent {
        seq: row.seq,
        body: serde_json::value::RawValue::from_string(body).expect("a rendered event is JSON"),
        relation,
    })
}

/// The page's events, in the order of `seqs`, reading the ones not at hand.
fn page_rows<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    seqs: &[u64],
    mut have: HashMap<u64, LogRow>,
) -> PlanResult<Vec<LogRow>, S::Error> {
    let missing: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|s| !have.contains_key(s))
        .collect();
    // Rows read on the way (a scan's) are not read again.
    if let (Some(&lo), Some(&hi)) = (missing.iter().min(), missing.iter().max()) {
        if hi - lo < 2 * missing.len() as u64 {
            // At least half of the positions between the first and the last are wanted (a
            // time window of a busy log, a retention run's expired events): one range scan
            // reads them, where a lookup each costs a descent of the log's index. What is read
            // beside them is dropped with `have` below.
            let span = (hi - lo + 1) as usize;
            for row in snap
                .scan(tenant, lo..=hi, false, span)
                .map_err(PlanError::Backend)?
            {
                have.entry(row.seq).or_insert(row);
            }
        } else {
            for row in snap.rows(tenant, &missing).map_err(PlanError::Backend)? {
                have.insert(row.seq, row);
            }
        }
    }
    Ok(seqs.iter().filter_map(|s| have.remove(s)).collect())
}

/// What a list collects: the seqs of its page (one more than the limit), and beside each the
/// event if it was already read on the way (a scan's; positions from postings are read after).
struct Collected {
    want: usize,
    seqs: Vec<u64>,
    rows: Vec<Option<LogRow>>,
}

impl Collected {
    fn full(&self) -> bool {
        self.seqs.len() >= self.want
    }

    fn push(&mut self, seq: u64, row: Option<LogRow>) {
        self.seqs.push(seq);
        self.rows.push(row);
    }

    /// The page's events in order, reading those not read on the way.
    fn into_rows<S: ReadSnapshot>(
        mut self,
        snap: &mut S,
        tenant: &Tenant,
    ) -> PlanResult<Vec<LogRow>, S::Error> {
        self.seqs.truncate(self.want);
        self.rows.truncate(self.want);
        if self.rows.iter().all(Option::is_some) {
            // A scan's page (every event of an export): in order already, nothing to look up.
            return Ok(self.rows.into_iter().flatten().collect());
        }
        let have = self
            .seqs
            .iter()
            .zip(self.rows)
            .filter_map(|(seq, row)| row.map(|row| (*seq, row)))
            .collect();
        page_rows(snap, tenant, &self.seqs, have)
    }
}

/// A page of a tenant's events matching a filter, in `seq` order. `tail` holds what earlier
/// reads learnt of the log beyond the watermark.
pub fn list<S: ReadSnapshot>(
    snap: &mut S,
    q: &ListQuery,
    tail: &TailIndex,
) -> PlanResult<Page, S::Error> {
    let page = list_rows(snap, q, tail)?;
    let items = page
        .rows
        .iter()
        .map(|r| stored(r, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// A page of a list as stored rows, not yet rendered: for exports, which render them
/// themselves (and need their seal material).
pub fn list_rows<S: ReadSnapshot>(
    snap: &mut S,
    q: &ListQuery,
    tail: &TailIndex,
) -> PlanResult<RowPage, S::Error> {
    let (indexed, size) = snap.bounds(&q.tenant).map_err(PlanError::Backend)?;
    let desc = q.order == Order::Desc;
    // The positions the page may come from: after (or before) the cursor.
    let (lo, hi) = match (q.cursor, desc) {
        (Some(Cursor::Seq(c)), true) => (1, c.saturating_sub(1).min(size)),
        (Some(Cursor::Seq(c)), false) => (c.saturating_add(1), size),
        (_, true) => (1, size),
        (_, false) => (1, size),
    };
    let mut got = Collected {
        want: q.limit + 1,
        seqs: Vec::with_capacity(q.limit + 1),
        rows: Vec::with_capacity(q.limit + 1),
    };
    if lo <= hi {
        let f = &q.filter;
        // The log's tail, beyond the derived data, from the tail index (or event by event).
        let beyond = indexed.max(lo - 1) + 1..=hi;
        let head = lo..=hi.min(indexed);
        let bounds = (indexed, size);
        if desc {
            tail_matching(snap, tail, &q.tenant, f, beyond, true, bounds, &mut got)?;
            indexed_matching(snap, &q.tenant, f, head, true, &mut got)?;
        } else {
            indexed_matching(snap, &q.tenant, f, head, false, &mut got)?;
            tail_matching(snap, tail, &q.tenant, f, beyond, false, bounds, &mut got)?;
        }
    }
    let mut rows = got.into_rows(snap, &q.tenant)?;
    let next_cursor = if rows.len() > q.limit {
        rows.truncate(q.limit);
        rows.last().map(|r| Cursor::Seq(r.seq))
    } else {
        None
    };
    Ok(RowPage { rows, next_cursor })
}

/// Reads the log over `range` and keeps the events that match, until the page is full.
fn scan_matching<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    f: &EventFilter,
    range: RangeInclusive<u64>,
    desc: bool,
    got: &mut Collected,
) -> PlanResult<(), S::Error> {
    // An empty filter matches every event: nothing of it needs reading here (a row that
    // cannot be read fails where it is rendered).
    let everything = f.is_empty();
    let (mut lo, mut hi) = (*range.start(), *range.end());
    while lo <= hi && !got.full() {
        // Every event read is the page's when nothing filters them: one read for the rest of
        // the page (an export's page of thousands was eight round trips of `SCAN_PAGE`).
        let limit = if everything {
            got.want - got.seqs.len()
        } else {
            SCAN_PAGE
        };
        let rows = snap
            .scan(tenant, lo..=hi, desc, limit)
            .map_err(PlanError::Backend)?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        let exhausted = rows.len() < limit;
        for row in rows {
            if got.full() {
                break;
            }
            let keep = match row.body {
                RowBody::Entry { .. } | RowBody::Legacy { .. } if everything => true,
                _ => row.with_source(|s| f.matches(s))?,
            };
            if keep {
                got.push(row.seq, Some(row));
            }
        }
        if exhausted {
            break;
        }
        if desc {
            if last <= lo {
                break;
            }
            hi = last - 1;
        } else {
            lo = last + 1;
        }
    }
    Ok(())
}

/// Finds the matching events of the unindexed `range` through the tail index: held positions
/// by lookup, the rest (an older snapshot's, or a tail too long to hold) event by event.
#[allow(clippy::too_many_arguments)] // The list's state, passed through as it is.
fn tail_matching<S: ReadSnapshot>(
    snap: &mut S,
    tail: &TailIndex,
    tenant: &Tenant,
    f: &EventFilter,
    range: RangeInclusive<u64>,
    desc: bool,
    (indexed, size): (u64, u64),
    got: &mut Collected,
) -> PlanResult<(), S::Error> {
    let (lo, hi) = (*range.start(), *range.end());
    if lo > hi || got.full() {
        return Ok(());
    }
    let groups = f.groups();
    let timed = f.from.is_some() || f.to.is_some();
    if groups.is_empty() && !timed {
        // Nothing to look up: the first events read are the page's.
        return scan_matching(snap, tenant, f, range, desc, got);
    }
    let cell = tail.tenant(tenant);
    let (seqs, held) = {
        let mut held = cell.lock().expect("the tail lock is never poisoned");
        let Some(covered) = held.cover(snap, tenant, indexed, size)? else {
            drop(held);
            return scan_matching(snap, tenant, f, range, desc, got);
        };
        let (a, b) = (lo.max(*covered.start()), hi.min(*covered.end()));
        let mut seqs = held.matching(&groups, a..=b);
        if timed {
            seqs.retain(|s| held.time(*s).is_some_and(|at| f.in_time(at)));
        }
        (seqs, a..=b)
    };
    let below = lo..=held.start().saturating_sub(1);
    let above = held.end().saturating_add(1)..=hi;
    if desc {
        scan_matching(snap, tenant, f, above, true, got)?;
        push_candidates(snap, tenant, f, seqs.into_iter().rev(), got)?;
        scan_matching(snap, tenant, f, below, true, got)?;
    } else {
        scan_matching(snap, tenant, f, below, false, got)?;
        push_candidates(snap, tenant, f, seqs.into_iter(), got)?;
        scan_matching(snap, tenant, f, above, false, got)?;
    }
    Ok(())
}

/// Adds positions whose terms and time match to the page; with a metadata filter, each is
/// decided on its event, read a batch at a time.
fn push_candidates<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    f: &EventFilter,
    seqs: impl Iterator<Item = u64>,
    got: &mut Collected,
) -> PlanResult<(), S::Error> {
    if f.metadata.is_none() {
        for seq in seqs {
            if got.full() {
                break;
            }
            got.push(seq, None);
        }
        return Ok(());
    }
    let mut seqs = seqs.peekable();
    while seqs.peek().is_some() && !got.full() {
        let batch: Vec<u64> = seqs.by_ref().take(256).collect();
        let mut rows: HashMap<u64, LogRow> = snap
            .rows(tenant, &batch)
            .map_err(PlanError::Backend)?
            .into_iter()
            .map(|r| (r.seq, r))
            .collect();
        for seq in batch {
            if got.full() {
                break;
            }
            let Some(row) = rows.remove(&seq) else {
                continue;
            };
            if row.with_source(|s| f.matches(s))? {
                got.push(seq, Some(row));
            }
        }
    }
    Ok(())
}

/// The positions of one chunk that match the filter's terms and time range, as offsets in
/// the chunk, before any cut to a range.
struct ChunkPlan {
    groups: Vec<Vec<Term>>,
    timed: bool,
}

/// Finds the matching events among the indexed positions of `range` through the postings.
fn indexed_matching<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    f: &EventFilter,
    range: RangeInclusive<u64>,
    desc: bool,
    got: &mut Collected,
) -> PlanResult<(), S::Error> {
    let (lo, hi) = (*range.start(), *range.end());
    if lo > hi || got.full() {
        return Ok(());
    }
    let plan = ChunkPlan {
        groups: f.groups(),
        timed: f.from.is_some() || f.to.is_some(),
    };
    if plan.groups.is_empty() && !plan.timed {
        // Nothing the derived data can narrow: read the log itself.
        return scan_matching(snap, tenant, f, range, desc, got);
    }
    // The chunk's removed positions (retention) come along, to be left out.
    let gone_term = gone();
    let terms: Vec<Term> = plan
        .groups
        .iter()
        .flatten()
        .cloned()
        .chain([gone_term.clone()])
        .collect();
    let (first, last) = (chunk_of(lo), chunk_of(hi));
    let mut window = 1u64;
    let mut next = if desc { last } else { first };
    loop {
        let (a, b) = if desc {
            (next.saturating_sub(window - 1).max(first), next)
        } else {
            (next, (next + window - 1).min(last))
        };
        let mut by_chunk: HashMap<u64, HashMap<Term, RoaringBitmap>> = HashMap::new();
        for (chunk, term, bits) in snap
            .postings(tenant, a..=b, &terms)
            .map_err(PlanError::Backend)?
        {
            by_chunk
                .entry(chunk)
                .or_default()
                .insert(term, decode_bits(&bits));
        }
        let zones = if plan.timed {
            let blocks =
                (a << (CHUNK_BITS - BLOCK_BITS))..=((b + 1) << (CHUNK_BITS - BLOCK_BITS)) - 1;
            snap.time_blocks(tenant, blocks, false)
                .map_err(PlanError::Backend)?
                .into_iter()
                .collect::<HashMap<u64, TimeBlock>>()
        } else {
            HashMap::new()
        };
        let chunks: Vec<u64> = if desc {
            (a..=b).rev().collect()
        } else {
            (a..=b).collect()
        };
        for chunk in chunks {
            if got.full() {
                return Ok(());
            }
            let mut stored = by_chunk.remove(&chunk).unwrap_or_default();
            let gone_bits = stored.remove(&gone_term);
            let Some(mut bits) = combine(&plan.groups, &stored) else {
                continue;
            };
            // Only the positions of the range.
            let from = if chunk == chunk_of(lo) {
                offset_in_chunk(lo)
            } else {
                0
            };
            let to = if chunk == chunk_of(hi) {
                offset_in_chunk(hi)
            } else {
                (CHUNK - 1) as u32
            };
            if plan.groups.is_empty() {
                bits.insert_range(from..=to);
            }
            if plan.timed {
                let mask = time_mask(snap, tenant, f, chunk, &zones)?;
                bits &= mask;
            }
            if let Some(gone_bits) = gone_bits {
                bits -= gone_bits;
            }
            let offsets = bits.range(from..=to);
            let seqs: Box<dyn Iterator<Item = u64>> = if desc {
                Box::new(offsets.rev().map(|o| seq_at(chunk, o)))
            } else {
                Box::new(offsets.map(|o| seq_at(chunk, o)))
            };
            // With a metadata filter, decided on the events themselves.
            push_candidates(snap, tenant, f, seqs, got)?;
        }
        let done = if desc { a == first } else { b == last };
        if done || got.full() {
            return Ok(());
        }
        next = if desc { a - 1 } else { b + 1 };
        window = (window * 2).min(MAX_WINDOW);
    }
}

/// The chunk's positions whose events have, for every group, one of its terms; `None` when
/// some group has no term in the chunk. With no groups, an empty bitmap to fill.
fn combine(groups: &[Vec<Term>], stored: &HashMap<Term, RoaringBitmap>) -> Option<RoaringBitmap> {
    let mut result: Option<RoaringBitmap> = None;
    for group in groups {
        let mut any = RoaringBitmap::new();
        for term in group {
            if let Some(bits) = stored.get(term) {
                any |= bits;
            }
        }
        if any.is_empty() {
            return None;
        }
        result = Some(match result {
            None => any,
            Some(r) => r & any,
        });
        if result.as_ref().is_some_and(RoaringBitmap::is_empty) {
            return None;
        }
    }
    Some(result.unwrap_or_default())
}

/// The chunk's positions whose `occurred_at` lies in the filter's range: whole blocks where
/// the block's range lies inside, each event where it straddles an edge.
fn time_mask<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    f: &EventFilter,
    chunk: u64,
    zones: &HashMap<u64, TimeBlock>,
) -> PlanResult<RoaringBitmap, S::Error> {
    let from = f.from.map_or(i64::MIN, |t| t.micros());
    let to = f.to.map_or(i64::MAX, |t| t.micros());
    let mut mask = RoaringBitmap::new();
    let per_chunk = 1u64 << (CHUNK_BITS - BLOCK_BITS);
    for i in 0..per_chunk {
        let block = chunk * per_chunk + i;
        let Some(zone) = zones.get(&block) else {
            continue;
        };
        let base = (i * BLOCK) as u32;
        if zone.lo >= from && zone.hi < to {
            mask.insert_range(base..base + BLOCK as u32);
        } else if zone.hi >= from && zone.lo < to {
            let values = snap
                .time_blocks(tenant, block..=block, true)
                .map_err(PlanError::Backend)?;
            for (_, block) in values {
                for (k, at) in block.values.iter().enumerate() {
                    if (from..to).contains(at) {
                        mask.insert(base + k as u32);
                    }
                }
            }
        }
    }
    Ok(mask)
}

/// A page of an entity's timeline: events targeting it or naming it in `related`, ordered by
/// `occurred_at` then `seq`, oldest first.
///
/// Every hit's position comes from the postings (and the tail index), every indexed hit's time
/// from the time blocks, visited in order of their least time until no block left can hold an
/// event of the page: an entity with a long history costs a few blocks, and only the page's
/// events are read.
pub fn history<S: ReadSnapshot>(
    snap: &mut S,
    q: &HistoryQuery,
    tail: &TailIndex,
) -> PlanResult<Page, S::Error> {
    let (indexed, size) = snap.bounds(&q.tenant).map_err(PlanError::Backend)?;
    let entity = pair(&q.entity_type, &q.entity_id);
    let target = TARGET.term(&entity);
    let related = RELATED.term(&entity);
    let types: Vec<Term> = q.event_type.iter().map(|t| EVENT_TYPE.term(t)).collect();
    let after = match q.cursor {
        Some(Cursor::Time(at, seq)) => Some((at, seq)),
        _ => None,
    };
    let mut page = PageHeap {
        want: q.limit + 1,
        after,
        best: std::collections::BinaryHeap::new(),
    };
    if indexed > 0 {
        let mut terms = vec![target.clone(), related.clone()];
        terms.extend(types.iter().cloned());
        // Hits of the derived data: one bitmap per chunk; a block's hits are only spelled out
        // when the block is visited.
        let mut by_chunk: HashMap<u64, HashMap<Term, RoaringBitmap>> = HashMap::new();
        for (chunk, term, bits) in snap
            .postings(&q.tenant, 0..=chunk_of(indexed), &terms)
            .map_err(PlanError::Backend)?
        {
            by_chunk
                .entry(chunk)
                .or_default()
                .insert(term, decode_bits(&bits));
        }
        let top = chunk_of(indexed);
        let mut hits: HashMap<u64, RoaringBitmap> = HashMap::new();
        for (chunk, stored) in by_chunk {
            let mut bits = stored.get(&target).cloned().unwrap_or_default();
            if let Some(r) = stored.get(&related) {
                bits |= r;
            }
            if !types.is_empty() {
                let mut any = RoaringBitmap::new();
                for t in &types {
                    if let Some(b) = stored.get(t) {
                        any |= b;
                    }
                }
                bits &= any;
            }
            if chunk == top {
                bits.remove_range(offset_in_chunk(indexed) + 1..);
            }
            if !bits.is_empty() {
                hits.insert(chunk, bits);
            }
        }
        let per_chunk = 1u64 << (CHUNK_BITS - BLOCK_BITS);
        // The offsets in its chunk of a block's positions.
        let span = |block: u64| {
            let first = ((block % per_chunk) * BLOCK) as u32;
            first..=first + (BLOCK as u32 - 1)
        };
        let mut blocks: Vec<u64> = Vec::new();
        for (&chunk, bits) in &hits {
            for block in chunk * per_chunk..(chunk + 1) * per_chunk {
                if bits.range(span(block)).next().is_some() {
                    blocks.push(block);
                }
            }
        }
        blocks.sort_unstable();
        if let (Some(&first), Some(&last)) = (blocks.first(), blocks.last()) {
            let mut zones: Vec<(u64, TimeBlock)> = snap
                .time_blocks(&q.tenant, first..=last, false)
                .map_err(PlanError::Backend)?
                .into_iter()
                .filter(|(b, _)| blocks.binary_search(b).is_ok())
                .collect();
            zones.sort_by_key(|(b, zone)| (zone.lo, *b));
            for (block, zone) in zones {
                if page.settled_before(zone.lo) {
                    break;
                }
                if after.is_some_and(|(at, _)| zone.hi < at) {
                    continue;
                }
                let values = snap
                    .time_blocks(&q.tenant, block..=block, true)
                    .map_err(PlanError::Backend)?;
                let Some((_, times)) = values.into_iter().next() else {
                    continue;
                };
                let chunk = block / per_chunk;
                let base = *span(block).start();
                for offset in hits[&chunk].range(span(block)) {
                    if let Some(&at) = times.values.get((offset - base) as usize) {
                        page.offer(at, seq_at(chunk, offset));
                    }
                }
            }
        }
    }
    // The tail, beyond the derived data: from the tail index, or event by event.
    let mut have: HashMap<u64, LogRow> = HashMap::new();
    if size > indexed {
        let mut groups = vec![vec![target.clone(), related.clone()]];
        if !types.is_empty() {
            groups.push(types.clone());
        }
        let cell = tail.tenant(&q.tenant);
        let mut held = cell.lock().expect("the tail lock is never poisoned");
        let (from, to) = match held.cover(snap, &q.tenant, indexed, size)? {
            Some(covered) => {
                for seq in held.matching(&groups, covered.clone()) {
                    if let Some(at) = held.time(seq) {
                        page.offer(at, seq);
                    }
                }
                (*covered.start(), *covered.end())
            }
            None => (size + 1, size),
        };
        drop(held);
        for range in [indexed + 1..=from.saturating_sub(1), to + 1..=size] {
            let (mut lo, hi) = (*range.start(), *range.end());
            while lo <= hi {
                let rows = snap
                    .scan(&q.tenant, lo..=hi, false, SCAN_PAGE)
                    .map_err(PlanError::Backend)?;
                let Some(last) = rows.last().map(|r| r.seq) else {
                    break;
                };
                for row in rows {
                    let at = row.with_source(|s| {
                        let mut names = false;
                        let mut typed = q.event_type.is_empty();
                        (TARGET.spec().values)(s, &mut |v| names |= v == entity);
                        (RELATED.spec().values)(s, &mut |v| names |= v == entity);
                        if let Some(t) = s.view.event_type {
                            typed |= q.event_type.iter().any(|w| w == t);
                        }
                        (names && typed).then_some(s.view.occurred_at)
                    })?;
                    if let Some(at) = at {
                        page.offer(at, row.seq);
                        have.insert(row.seq, row);
                    }
                }
                lo = last + 1;
            }
        }
    }
    // Only the page's events are read and rendered.
    let order = page.best.into_sorted_vec();
    let seqs: Vec<u64> = order.iter().map(|(_, seq)| *seq).collect();
    let rows = page_rows(snap, &q.tenant, &seqs, have)?;
    let mut items = Vec::with_capacity(rows.len());
    for ((at, _), row) in order.iter().zip(&rows) {
        let is_target = row.with_source(|s| {
            let mut is_target = false;
            (TARGET.spec().values)(s, &mut |v| is_target |= v == entity);
            is_target
        })?;
        let relation = if is_target {
            Relation::Target
        } else {
            Relation::Related
        };
        items.push((*at, stored(row, Some(relation))?));
    }
    let cut_time = items.get(q.limit.wrapping_sub(1)).map_or(0, |(at, _)| *at);
    let items: Vec<StoredEvent> = items.into_iter().map(|(_, e)| e).collect();
    Ok(Page::from_overfetch(items, q.limit, |e| {
        Cursor::Time(cut_time, e.seq)
    }))
}

/// The `want` least `(occurred_at, seq)` after a cursor, as they are offered.
struct PageHeap {
    want: usize,
    after: Option<(i64, u64)>,
    best: std::collections::BinaryHeap<(i64, u64)>,
}

impl PageHeap {
    fn offer(&mut self, at: i64, seq: u64) {
        if self.after.is_some_and(|cut| (at, seq) <= cut) {
            return;
        }
        if self.best.len() == self.want && self.best.peek().is_some_and(|&top| (at, seq) >= top) {
            return;
        }
        self.best.push((at, seq));
        if self.best.len() > self.want {
            self.best.pop();
        }
    }

    /// Whether nothing at `at` or later can enter the page any more.
    fn settled_before(&self, at: i64) -> bool {
        self.best.len() == self.want && self.best.peek().is_some_and(|&(top, _)| at > top)
    }
}
