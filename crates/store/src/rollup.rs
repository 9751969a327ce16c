//! Statistics rollups: derived counts of events per time period, built behind the log by the
//! indexer ([`crate::derived`]) and read by [`crate::stats`].
//!
//! For each *span* (minute, hour, quarter day, day, week of `occurred_at`, UTC) and each period
//! of it, a rollup holds how many events occurred in it, how many failed, and how many named
//! each actor, action and target (their [`Term`]s). A window of time is answered from the
//! fewest rollups that tile it (whole weeks, then whole days, quarter days, hours and minutes
//! toward its edges) and the few events of its sub-minute edges, so statistics over a month
//! read about a hundred rows whatever the number of events.
//!
//! Rows are keyed `(chunk, span, period)`: while a chunk of the log ([`crate::derived::CHUNK`]
//! positions) is being indexed, it has *open* rows for its minutes only, and each pass rewrites
//! just the minutes it touched, bounded by the chunk's size however busy a period is. When the
//! watermark passes the chunk's end, its minutes are *folded* into their summary rows (chunk
//! [`FOLDED`]) and, summed, into their hours', quarter days', days' and weeks' summaries, and
//! the open rows are deleted. A minute is read as its summary and at most one open row; a
//! longer period as its summary and the open minutes inside it.

use std::collections::HashMap;

use crate::fields::{ACTION, ACTOR_ID, OUTCOME, TARGET, Term};

/// The `chunk` of a period's summary row.
pub const FOLDED: i64 = -1;

/// A length of time rollups are kept per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Span {
    /// One UTC minute.
    Minute,
    /// One UTC hour.
    Hour,
    /// Six UTC hours (a quarter of a day, from midnight): a window's partial days are read as
    /// a few of these and at most five hours at each end, rather than up to 23 hours.
    QuarterDay,
    /// One UTC day.
    Day,
    /// Seven UTC days, counted from the epoch (a Thursday): only ever whole inside a window,
    /// so that a month is a few summaries rather than thirty.
    Week,
}

impl Span {
    /// Every span, longest first.
    pub const LONGEST_FIRST: [Span; 5] = [
        Span::Week,
        Span::Day,
        Span::QuarterDay,
        Span::Hour,
        Span::Minute,
    ];

    /// Its length in microseconds.
    pub const fn micros(self) -> i64 {
        match self {
            Span::Minute => 60_000_000,
            Span::Hour => 3_600_000_000,
            Span::QuarterDay => 21_600_000_000,
            Span::Day => 86_400_000_000,
            Span::Week => 604_800_000_000,
        }
    }

    /// The period holding `at` (microseconds since the epoch): periods are counted from the
    /// epoch, so period `p` starts at `p * micros()`.
    pub const fn period_of(self, at: i64) -> i64 {
        at.div_euclid(self.micros())
    }

    /// How it is stored.
    pub const fn code(self) -> i16 {
        match self {
            Span::Minute => 0,
            Span::Hour => 1,
            Span::Day => 2,
            Span::Week => 3,
            Span::QuarterDay => 4,
        }
    }

    /// The span stored as `code`.
    pub const fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(Span::Minute),
            1 => Some(Span::Hour),
            2 => Some(Span::Day),
            3 => Some(Span::Week),
            4 => Some(Span::QuarterDay),
            _ => None,
        }
    }

    /// The next longer span, whose periods each hold a whole number of this one's.
    pub const fn coarser(self) -> Option<Self> {
        match self {
            Span::Minute => Some(Span::Hour),
            Span::Hour => Some(Span::QuarterDay),
            Span::QuarterDay => Some(Span::Day),
            Span::Day => Some(Span::Week),
            Span::Week => None,
        }
    }
}

/// A rollup in its stored form: the keys' counts encoded by [`Rollup::encode_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRollup {
    /// Events in the period.
    pub total: u64,
    /// Of them, failures.
    pub failures: u64,
    /// The keys' counts (empty when not read).
    pub keys: Vec<u8>,
}

/// One stored rollup row: span, period, chunk (or [`FOLDED`]) and counts.
pub type RollupRow = (Span, i64, i64, StoredRollup);

/// The counts of one period (or part of one), in memory.
#[derive(Debug, Clone, Default)]
pub struct Rollup {
    /// Events counted.
    pub total: u64,
    /// Of them, failures.
    pub failures: u64,
    /// Per actor, action and target term: events naming it.
    pub keys: HashMap<Term, u64, foldhash::fast::RandomState>,
}

/// Whether a term is one that rollups count: an actor, an action or a target.
pub fn is_key(term: &[u8]) -> bool {
    matches!(term.first(), Some(&t) if t == ACTOR_ID.tag() || t == ACTION.tag() || t == TARGET.tag())
}

/// Whether a term says the event failed.
pub fn is_failure(term: &[u8]) -> bool {
    term.first() == Some(&OUTCOME.tag()) && &term[1..] == b"failure"
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Calls `f` with each `(term, count)` of keys in stored form; `false` when the bytes are
/// damaged (what was read before the damage has been passed on).
pub fn decode_keys<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a [u8], u64)) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        let Some(len) = get_varint(bytes, &mut at) else {
            return false;
        };
        let Some(term) = usize::try_from(len)
            .ok()
            .and_then(|len| bytes.get(at..at.checked_add(len)?))
        else {
            return false;
        };
        at += term.len();
        let Some(count) = get_varint(bytes, &mut at) else {
            return false;
        };
        f(term, count);
    }
    true
}

/// The keys of stored form `bytes` in term order, each once (as stored; damaged ones are
/// ordered here), and whether they were read whole (a warning says when not: what came before
/// the damage is there).
fn ordered_keys(bytes: &[u8]) -> (Vec<(&[u8], u64)>, bool) {
    let mut keys: Vec<(&[u8], u64)> = Vec::new();
    let whole = decode_keys(bytes, |term, n| keys.push((term, n)));
    if !whole {
        tracing::warn!("a stored statistics rollup is damaged; run sealtrail reindex");
    }
    if !keys.is_sorted_by(|a, b| a.0 < b.0) {
        keys.sort_by(|a, b| a.0.cmp(b.0));
        keys.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 = a.1.wrapping_add(b.1);
            }
            same
        });
    }
    (keys, whole)
}

/// Key counts summed, and taken away, across many rollups and single events: what a
/// statistics read adds up.
///
/// Stored rollups hold their keys in term order, so each is merged into a term-ordered run
/// by a walk that gallops over the keys it does not hold: comparisons of neighbouring bytes
/// rather than a hash lookup per key (a month's read merges ~500 000 keys at 10M events).
/// Single events (a window's edges, the unindexed tail) go to a hash map beside it. Counts
/// wrap, so sums and differences may come in any order: only the final count of each key,
/// which is never negative when the rollups agree with each other, is read.
#[derive(Debug, Default)]
pub struct KeySums {
    /// The run's terms, back to back.
    arena: Vec<u8>,
    /// `(start in arena, length, count)`, in term order, each term once.
    run: Vec<(usize, usize, u64)>,
    /// Single events' counts, apart from the run.
    loose: HashMap<Box<[u8]>, u64, foldhash::fast::RandomState>,
}

impl KeySums {
    /// Adds (or, with `negative`, takes away) every key of stored keys `bytes`; `false` when
    /// they are damaged (nothing of them is counted then, and a warning says so).
    pub fn merge_stored(&mut self, bytes: &[u8], negative: bool) -> bool {
        let (decoded, whole) = ordered_keys(bytes);
        if !whole {
            return false;
        }
        let apply = |c: u64, n: u64| {
            if negative {
                c.wrapping_sub(n)
            } else {
                c.wrapping_add(n)
            }
        };
        let Self { arena, run, .. } = self;
        let mut fresh = Vec::new();
        let mut i = 0;
        for (term, n) in decoded {
            let held = |k: usize| {
                let (at, len, _) = run[k];
                &arena[at..at + len]
            };
            // Gallop: probe 1, 2, 4, … ahead, then search between the last two probes.
            let (mut hi, mut step) = (i, 1);
            while hi < run.len() && held(hi) < term {
                i = hi + 1;
                hi += step;
                step *= 2;
            }
            let mut hi = hi.min(run.len());
            while i < hi {
                let mid = i + (hi - i) / 2;
                if held(mid) < term {
                    i = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if i < run.len() && held(i) == term {
                run[i].2 = apply(run[i].2, n);
                i += 1;
            } else {
                fresh.push((arena.len(), term.len(), apply(0, n)));
                arena.extend_from_slice(term);
            }
        }
        if !fresh.is_empty() {
            let held = |e: &(usize, usize, u64)| &arena[e.0..e.0 + e.1];
            let mut merged = Vec::with_capacity(run.len() + fresh.len());
            let (mut a, mut b) = (run.iter().peekable(), fresh.iter().peekable());
            loop {
                let next = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if held(x) < held(y) => a.next(),
                    (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                    (Some(_), None) => a.next(),
                    (None, None) => break,
                };
                merged.extend(next.copied());
            }
            *run = merged;
        }
        true
    }

    /// Adds one event's key.
    pub fn add(&mut self, term: &[u8], n: u64) {
        match self.loose.get_mut(term) {
            Some(c) => *c = c.wrapping_add(n),
            None => {
                self.loose.insert(term.into(), n);
            }
        }
    }

    /// Takes one event's key away.
    pub fn take(&mut self, term: &[u8], n: u64) {
        match self.loose.get_mut(term) {
            Some(c) => *c = c.wrapping_sub(n),
            None => {
                self.loose.insert(term.into(), 0u64.wrapping_sub(n));
            }
        }
    }

    /// Calls `f` with each term whose final count is above zero. A count that came out
    /// negative (rollups that disagree: damage `reindex` mends) is left out with a warning.
    pub fn for_each(mut self, mut f: impl FnMut(&[u8], u64)) {
        let mut damaged = false;
        let mut give = |term: &[u8], n: u64| {
            if n > i64::MAX as u64 {
                damaged = true;
            } else if n > 0 {
                f(term, n);
            }
        };
        for &(at, len, n) in &self.run {
            let term = &self.arena[at..at + len];
            give(term, n.wrapping_add(self.loose.remove(term).unwrap_or(0)));
        }
        for (term, n) in self.loose {
            give(&term, n);
        }
        if damaged {
            tracing::warn!("statistics rollups disagree with each other; run sealtrail reindex");
        }
    }
}

impl Rollup {
    /// Counts one event: whether it failed, and its key terms.
    pub fn count<'t>(&mut self, failed: bool, keys: impl IntoIterator<Item = &'t [u8]>) {
        self.total += 1;
        self.failures += u64::from(failed);
        for key in keys {
            self.add(key, 1);
        }
    }

    /// Adds `n` events to one key's count.
    pub fn add(&mut self, key: &[u8], n: u64) {
        match self.keys.get_mut(key) {
            Some(c) => *c += n,
            None => {
                self.keys.insert(Term(key.into()), n);
            }
        }
    }

    /// Adds another rollup's counts to this one.
    pub fn merge(&mut self, other: &Rollup) {
        self.total += other.total;
        self.failures += other.failures;
        for (key, n) in &other.keys {
            self.add(&key.0, *n);
        }
    }

    /// Takes another rollup's counts out of this one (events removed from the log); a key
    /// whose count reaches zero is dropped, so nothing of a removed event stays in the keys.
    pub fn subtract(&mut self, other: &Rollup) {
        self.total = self.total.saturating_sub(other.total);
        self.failures = self.failures.saturating_sub(other.failures);
        for (key, n) in &other.keys {
            if let Some(c) = self.keys.get_mut(key) {
                *c = c.saturating_sub(*n);
                if *c == 0 {
                    self.keys.remove(key);
                }
            }
        }
    }

    /// The keys' counts in stored form: per key in term order, its length, its bytes and its
    /// count, lengths and counts as LEB128 varints.
    pub fn encode_keys(&self) -> Vec<u8> {
        let mut keys: Vec<(&Term, &u64)> = self.keys.iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(keys.iter().map(|(t, _)| t.0.len() + 3).sum());
        for (term, n) in keys {
            put_varint(&mut out, term.0.len() as u64);
            out.extend_from_slice(&term.0);
            put_varint(&mut out, *n);
        }
        out
    }

    /// The stored form.
    pub fn to_stored(&self) -> StoredRollup {
        StoredRollup {
            total: self.total,
            failures: self.failures,
            keys: self.encode_keys(),
        }
    }

    /// A rollup from its stored form; damaged keys are left out (and `reindex` mends them).
    pub fn from_stored(stored: &StoredRollup) -> Self {
        let mut out = Rollup {
            total: stored.total,
            failures: stored.failures,
            ..Rollup::default()
        };
        if !decode_keys(&stored.keys, |term, n| out.add(term, n)) {
            tracing::warn!("a stored statistics rollup is damaged; run sealtrail reindex");
        }
        out
    }
}

/// Terms numbered as they are first met: counts of many events are keyed by these small
/// numbers while they are counted, and each term's bytes are hashed and copied once.
#[derive(Debug, Default)]
pub(crate) struct TermIds {
    ids: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    terms: Vec<Box<[u8]>>,
}

impl TermIds {
    /// The number of `term`, given it if it is new.
    pub(crate) fn id(&mut self, term: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(term) {
            return id;
        }
        let id = u32::try_from(self.terms.len()).expect("fewer than 2^32 terms");
        self.terms.push(term.into());
        self.ids.insert(term.into(), id);
        id
    }

    /// The term numbered `id`.
    pub(crate) fn term(&self, id: u32) -> &[u8] {
        &self.terms[id as usize]
    }

    /// Each number's place in term order.
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.terms.len() as u32).collect();
        order.sort_unstable_by(|a, b| self.terms[*a as usize].cmp(&self.terms[*b as usize]));
        let mut ranks = vec![0; order.len()];
        for (rank, id) in order.into_iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
        ranks
    }
}

/// Events counted per minute, their keys by [`TermIds`]: what leaves the rollups when events
/// are removed (retention), or leaves and comes back when they are derived again
/// (anonymisation). Each minute keeps the numbers of its events' keys as they come, unordered
/// and repeated (a million removed events are three million key counts: a push each, where a
/// map keyed by minute and term would miss the cache at every one), and [`summary_changes`]
/// orders and adds them up once.
#[derive(Debug, Default)]
pub(crate) struct MinuteCounts {
    minutes: HashMap<i64, Minute, foldhash::fast::RandomState>,
}

/// One minute of [`MinuteCounts`].
#[derive(Debug, Default)]
struct Minute {
    total: u64,
    failures: u64,
    /// `(term number, events)`, unordered, a number possibly many times.
    keys: Vec<(u32, u64)>,
}

impl MinuteCounts {
    /// Counts one event of `minute`.
    pub(crate) fn event(&mut self, minute: i64, failed: bool) {
        let counts = self.minutes.entry(minute).or_default();
        counts.total += 1;
        counts.failures += u64::from(failed);
    }

    /// Counts one event of `minute` naming key `id`.
    pub(crate) fn key(&mut self, minute: i64, id: u32) {
        self.minutes.entry(minute).or_default().keys.push((id, 1));
    }

    /// As one rollup per minute: what the open rows of a chunk still being indexed change by.
    pub(crate) fn per_minute(&self, ids: &TermIds) -> HashMap<i64, Rollup> {
        let mut minutes: HashMap<i64, Rollup> = HashMap::new();
        for (&at, minute) in &self.minutes {
            let rollup = minutes.entry(at).or_default();
            rollup.total += minute.total;
            rollup.failures += minute.failures;
            for &(id, n) in &minute.keys {
                rollup.add(ids.term(id), n);
            }
        }
        minutes
    }
}

/// What one summary row changes by: events taken out, and put back in.
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// Events out and back.
    total: (u64, u64),
    /// Failures out and back.
    failures: (u64, u64),
    /// Per key, in term order (once [`Change::settle`]d): its [`TermIds`] rank and number, the
    /// events out and back.
    keys: Vec<(u32, u32, u64, u64)>,
}

impl Change {
    /// Adds `other`'s counts to this one's.
    fn absorb(&mut self, other: &Change) {
        self.total.0 += other.total.0;
        self.total.1 += other.total.1;
        self.failures.0 += other.failures.0;
        self.failures.1 += other.failures.1;
        self.keys.extend_from_slice(&other.keys);
    }

    /// Orders the keys by rank, each once.
    fn settle(&mut self) {
        self.keys.sort_unstable_by_key(|k| k.0);
        self.keys.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.2 += b.2;
                a.3 += b.3;
            }
            same
        });
    }
}

/// The change each summary `(span, period)` undergoes when the minute counts `out` leave the
/// rollups and `back` come into them, in `(span, period)` order: each minute's, then each
/// hour's from its minutes', each day's from its hours', each week's from its days' (the
/// spans nest: all are counted from the epoch).
pub(crate) fn summary_changes(
    out: &MinuteCounts,
    back: &MinuteCounts,
    ids: &TermIds,
) -> Vec<((Span, i64), Change)> {
    let ranks = ids.ranks();
    let mut level: HashMap<i64, Change, foldhash::fast::RandomState> = HashMap::default();
    for (into_back, counts) in [(false, out), (true, back)] {
        for (&at, minute) in &counts.minutes {
            let change = level.entry(at).or_default();
            let pick = |(o, b): (u64, u64)| if into_back { (0, b) } else { (o, 0) };
            let (total_out, total_back) = pick((minute.total, minute.total));
            let (failed_out, failed_back) = pick((minute.failures, minute.failures));
            change.total.0 += total_out;
            change.total.1 += total_back;
            change.failures.0 += failed_out;
            change.failures.1 += failed_back;
            change.keys.extend(minute.keys.iter().map(|&(id, n)| {
                let (o, b) = pick((n, n));
                (ranks[id as usize], id, o, b)
            }));
        }
    }
    let mut changes = Vec::new();
    let mut span = Span::Minute;
    loop {
        let mut this: Vec<(i64, Change)> = level.into_iter().collect();
        // Ordering each period's keys is most of the work: on two threads when there is much
        // of it (retention's summaries run after the archive, when the other core is free).
        let keys: usize = this.iter().map(|(_, c)| c.keys.len()).sum();
        let half = this.len() / 2;
        let (left, right) = this.split_at_mut(half);
        let settle = |part: &mut [(i64, Change)]| part.iter_mut().for_each(|(_, c)| c.settle());
        if keys > 100_000 {
            std::thread::scope(|scope| {
                scope.spawn(|| settle(left));
                settle(right);
            });
        } else {
            settle(left);
            settle(right);
        }
        this.sort_unstable_by_key(|(period, _)| *period);
        let coarser = span.coarser();
        level = HashMap::default();
        if let Some(coarser) = coarser {
            for (period, change) in &this {
                let at = period.saturating_mul(span.micros());
                level
                    .entry(coarser.period_of(at))
                    .or_default()
                    .absorb(change);
            }
        }
        changes.extend(this.into_iter().map(|(period, c)| ((span, period), c)));
        match coarser {
            Some(next) => span = next,
            None => break,
        }
    }
    changes.sort_unstable_by_key(|(at, _)| *at);
    changes
}

impl StoredRollup {
    /// This rollup with `change` made: its events taken out (no count goes below zero, and a
    /// key whose count reaches zero is dropped, so nothing of a removed event stays in the
    /// keys), then put back in. A walk of the stored keys beside the change's, both in term
    /// order, written straight into the stored form.
    pub(crate) fn changed(&self, change: &Change, ids: &TermIds) -> StoredRollup {
        // Damaged keys: what was read before the damage is kept (`reindex` mends the rest).
        let (stored, _) = ordered_keys(&self.keys);
        let mut keys = Vec::with_capacity(self.keys.len());
        let mut put = |term: &[u8], n: u64| {
            if n > 0 {
                put_varint(&mut keys, term.len() as u64);
                keys.extend_from_slice(term);
                put_varint(&mut keys, n);
            }
        };
        let (mut held, mut changed) =
            (stored.into_iter().peekable(), change.keys.iter().peekable());
        loop {
            match (held.peek(), changed.peek()) {
                (Some(&(term, n)), Some(&&(_, id, out, back))) => {
                    let other = ids.term(id);
                    match term.cmp(other) {
                        std::cmp::Ordering::Less => {
                            put(term, n);
                            held.next();
                        }
                        std::cmp::Ordering::Equal => {
                            put(term, n.saturating_sub(out) + back);
                            held.next();
                            changed.next();
                        }
                        std::cmp::Ordering::Greater => {
                            put(other, back);
                            changed.next();
                        }
                    }
                }
                (Some(&(term, n)), None) => {
                    put(term, n);
                    held.next();
                }
                (None, Some(&&(_, id, _, back))) => {
                    put(ids.term(id), back);
                    changed.next();
                }
                (None, None) => break,
            }
        }
        StoredRollup {
            total: self.total.saturating_sub(change.total.0) + change.total.1,
            failures: self.failures.saturating_sub(change.failures.0) + change.failures.1,
            keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_at_multiples_of_the_span_even_before_the_epoch() {
        assert_eq!(Span::Hour.period_of(0), 0);
        assert_eq!(Span::Hour.period_of(3_599_999_999), 0);
        assert_eq!(Span::Hour.period_of(3_600_000_000), 1);
        assert_eq!(Span::Day.period_of(-1), -1);
        assert_eq!(Span::Minute.period_of(-60_000_000), -1);
        assert_eq!(Span::Minute.period_of(-60_000_001), -2);
        for span in Span::LONGEST_FIRST {
            assert_eq!(Span::from_code(span.code()), Some(span));
        }
        assert_eq!(Span::from_code(7), None);
    }

    #[test]
    fn rollups_survive_their_stored_form_and_merge() {
        let mut a = Rollup::default();
        let actor = ACTOR_ID.term("u-1");
        let long = TARGET.term(&"x".repeat(300));
        a.count(true, [&*actor.0, &*long.0]);
        a.count(false, [&*actor.0]);
        let stored = a.to_stored();
        let back = Rollup::from_stored(&stored);
        assert_eq!((back.total, back.failures), (2, 1));
        assert_eq!(back.keys.get(&actor), Some(&2));
        assert_eq!(back.keys.get(&long), Some(&1));
        let mut sum = back.clone();
        sum.merge(&back);
        assert_eq!((sum.total, sum.failures, sum.keys[&actor]), (4, 2, 4));
        // Taking counts out: keys that reach zero are gone, not kept at zero.
        let mut less = sum.clone();
        less.subtract(&back);
        less.subtract(&back);
        assert_eq!((less.total, less.failures), (0, 0));
        assert!(less.keys.is_empty());
        let mut one = Rollup::default();
        one.count(false, [&*long.0]);
        let mut rest = back.clone();
        rest.subtract(&one);
        assert_eq!(rest.keys.get(&long), None);
        assert_eq!(rest.keys.get(&actor), Some(&2));
        // Damage is detected, not read as something else.
        let mut cut = stored.keys.clone();
        cut.truncate(cut.len() - 1);
        let mut seen = 0;
        assert!(!decode_keys(&cut, |_, _| seen += 1));
        assert!(seen <= 1);
        assert!(decode_keys(&stored.keys, |_, _| seen += 1));
    }

    #[test]
    fn key_sums_equal_counts_added_and_taken_one_by_one() {
        let mut mix = crate::conformance::Mix(0xa11ce);
        let mut next = move |n: u64| mix.next() % n;
        for round in 0..200 {
            let mut sums = KeySums::default();
            let mut want: HashMap<Vec<u8>, i64> = HashMap::new();
            let mut events: Vec<Vec<u8>> = Vec::new();
            for _ in 0..next(12) {
                // A rollup of up to 300 events over up to 80 keys, added whole.
                let mut r = Rollup::default();
                for _ in 0..next(300) {
                    let key = ACTOR_ID.term(&format!("u{}", next(80) * 7));
                    r.count(false, [&*key.0]);
                    events.push(key.0.to_vec());
                }
                let mut bytes = r.encode_keys();
                if round % 7 == 0 {
                    // Out of term order (as damage could leave it): still counted right.
                    let mut pairs = Vec::new();
                    assert!(decode_keys(&bytes, |t, n| pairs.push((t.to_vec(), n))));
                    pairs.reverse();
                    bytes.clear();
                    for (t, n) in pairs {
                        put_varint(&mut bytes, t.len() as u64);
                        bytes.extend_from_slice(&t);
                        put_varint(&mut bytes, n);
                    }
                }
                assert!(sums.merge_stored(&bytes, false));
            }
            // Some events taken back one by one, some added one by one, and a whole rollup
            // of some of them taken away.
            let mut gone = Rollup::default();
            for event in events.iter_mut() {
                if next(3) != 0 {
                    continue;
                }
                if next(2) == 0 {
                    sums.take(event, 1);
                } else {
                    gone.count(false, [&event[..]]);
                }
                event.clear();
            }
            assert!(sums.merge_stored(&gone.encode_keys(), true));
            for _ in 0..next(20) {
                let key = ACTOR_ID.term(&format!("v{}", next(5))).0.to_vec();
                sums.add(&key, 1);
                events.push(key);
            }
            for key in events.iter().filter(|k| !k.is_empty()) {
                *want.entry(key.clone()).or_default() += 1;
            }
            let mut got = HashMap::new();
            sums.for_each(|t, n| {
                assert!(got.insert(t.to_vec(), n as i64).is_none(), "each term once");
            });
            assert_eq!(got, want, "round {round}");
        }
        // Damage is refused whole.
        let mut sums = KeySums::default();
        assert!(!sums.merge_stored(&[5, b'a'], false));
        let mut seen = 0;
        sums.for_each(|_, _| seen += 1);
        assert_eq!(seen, 0);
    }

    #[test]
    fn summary_changes_equal_rollups_subtracted_and_merged_one_minute_at_a_time() {
        let mut mix = crate::conformance::Mix(0x5eed);
        let mut next = move |n: u64| mix.next() % n;
        for round in 0..100 {
            // Events over two days of minutes, keys from small sets so that they meet.
            let event = |next: &mut dyn FnMut(u64) -> u64| {
                let minute = 29_000_000 + next(2 * 1440) as i64;
                let keys = vec![
                    ACTOR_ID.term(&format!("a{}", next(7))).0.to_vec(),
                    ACTION.term(&format!("x.{}", next(3))).0.to_vec(),
                    TARGET.term(&format!("1:t{}", next(11))).0.to_vec(),
                ];
                (minute, next(4) == 0, keys)
            };
            let stored_events: Vec<_> = (0..next(60)).map(|_| event(&mut next)).collect();
            // Out: some of the stored events (and, now and then, one never stored: damage the
            // saturating counts absorb); back: new ones.
            let mut out_events: Vec<_> = stored_events
                .iter()
                .filter(|_| next(2) == 0)
                .cloned()
                .collect();
            if next(5) == 0 {
                out_events.push(event(&mut next));
            }
            let back_events: Vec<_> = (0..next(10)).map(|_| event(&mut next)).collect();
            let mut ids = TermIds::default();
            let (mut out, mut back) = (MinuteCounts::default(), MinuteCounts::default());
            for (counts, events) in [(&mut out, &out_events), (&mut back, &back_events)] {
                for (minute, failed, keys) in events {
                    counts.event(*minute, *failed);
                    for key in keys {
                        counts.key(*minute, ids.id(key));
                    }
                }
            }
            // The old way: one rollup per minute, merged into each span's period.
            let span_rollups = |events: &[(i64, bool, Vec<Vec<u8>>)]| {
                let mut by: HashMap<(Span, i64), Rollup> = HashMap::new();
                for (minute, failed, keys) in events {
                    let mut one = Rollup::default();
                    one.count(*failed, keys.iter().map(Vec::as_slice));
                    for span in Span::LONGEST_FIRST {
                        let at = span.period_of(minute * Span::Minute.micros());
                        by.entry((span, at)).or_default().merge(&one);
                    }
                }
                by
            };
            let (held, gone, new) = (
                span_rollups(&stored_events),
                span_rollups(&out_events),
                span_rollups(&back_events),
            );
            let changes = summary_changes(&out, &back, &ids);
            assert!(changes.is_sorted_by(|a, b| a.0 < b.0), "round {round}");
            let mut periods: Vec<(Span, i64)> = gone.keys().chain(new.keys()).copied().collect();
            periods.sort_unstable();
            periods.dedup();
            assert_eq!(
                changes.iter().map(|c| c.0).collect::<Vec<_>>(),
                periods,
                "round {round}"
            );
            for (at, change) in &changes {
                let stored = held.get(at).map(Rollup::to_stored).unwrap_or_default();
                let mut want = Rollup::from_stored(&stored);
                if let Some(g) = gone.get(at) {
                    want.subtract(g);
                }
                if let Some(n) = new.get(at) {
                    want.merge(n);
                }
                assert_eq!(
                    stored.changed(change, &ids),
                    want.to_stored(),
                    "round {round}, {at:?}"
                );
            }
        }
    }

    #[test]
    fn only_actors_actions_and_targets_are_keys() {
        assert!(is_key(&ACTOR_ID.term("a").0));
        assert!(is_key(&ACTION.term("user.login").0));
        assert!(is_key(&TARGET.term("1:xy").0));
        assert!(!is_key(&OUTCOME.term("failure").0));
        assert!(is_failure(&OUTCOME.term("failure").0));
        assert!(!is_failure(&OUTCOME.term("success").0));
        assert!(!is_key(&[]));
    }
}
