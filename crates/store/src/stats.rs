//! Statistics (SPEC §4.3): counts of a tenant's events in a window of `occurred_at`, per
//! bucket, and its busiest actors, actions and targets, exact at every moment, once for every
//! backend.
//!
//! Indexed events are counted from the rollups ([`crate::rollup`]): the window is tiled with
//! whole weeks and days, then whole hours and whole minutes toward its edges (a partial day
//! whose hours are most of it read as the day less its other hours), and only the events of
//! the sub-minute edges are read one by one (found through the time blocks). Events beyond the
//! watermark are counted from the tail index, or read from the log when it holds none. No
//! query reads the window's events: a month costs about a hundred rollup rows and the keys
//! they hold.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use sealtrail_model::{Tenant, Timestamp};

use crate::derived::{BLOCK, BLOCK_BITS, block_of};
use crate::fields::{ACTION, ACTOR_ID, TARGET, stat_terms_of};
use crate::plan::{PlanError, ReadSnapshot};
use crate::rollup::{KeySums, Span, StoredRollup, is_failure, is_key};
use crate::rows::LogRow;
use crate::tail::TailIndex;

/// Most buckets one answer may hold.
pub const MAX_BUCKETS: i64 = 100_000;

/// Most entries one top list may hold.
pub const MAX_TOP: usize = 1_000;

/// What statistics are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// The tenant.
    pub tenant: Tenant,
    /// Events with `occurred_at` at or after this…
    pub from: Timestamp,
    /// …and before this.
    pub to: Timestamp,
    /// [`Span::Hour`] or [`Span::Day`] buckets.
    pub bucket: Span,
    /// How many actors, actions and targets each top list holds at most.
    pub top: usize,
}

/// How many buckets of `bucket` a window holds: every bucket from the one holding `from` to
/// the one holding the last instant before `to`, empty ones included.
pub fn bucket_count(bucket: Span, from: Timestamp, to: Timestamp) -> i64 {
    let (from, to) = (from.micros(), to.micros());
    if to <= from {
        return 0;
    }
    bucket.period_of(to - 1) - bucket.period_of(from) + 1
}

impl StatsQuery {
    /// How many buckets the answer holds ([`bucket_count`]).
    pub fn bucket_count(&self) -> i64 {
        bucket_count(self.bucket, self.from, self.to)
    }
}

/// One bucket of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCount {
    /// Where the bucket starts (UTC, a whole hour or day).
    pub start: Timestamp,
    /// Events in it (inside the window).
    pub count: u64,
    /// Of them, failures.
    pub failures: u64,
}

/// The answer to a [`StatsQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Events in the window.
    pub total: u64,
    /// Of them, failures.
    pub failures: u64,
    /// Every bucket of the window, ascending.
    pub buckets: Vec<BucketCount>,
    /// `(actor id, events)`, most events first, ties by id.
    pub top_actors: Vec<(String, u64)>,
    /// `(action, events)`, most events first, ties by action.
    pub top_actions: Vec<(String, u64)>,
    /// `(target type, target id, events)`, most events first, ties by type then id.
    pub top_targets: Vec<(String, String, u64)>,
}

type PlanResult<T, E> = std::result::Result<T, PlanError<E>>;

/// What a statistics read adds up.
struct Tally {
    from: i64,
    to: i64,
    bucket: Span,
    first: i64,
    buckets: Vec<(u64, u64)>,
    keys: KeySums,
}

impl Tally {
    fn inside(&self, at: i64) -> bool {
        at >= self.from && at < self.to
    }

    fn slot(&mut self, at: i64) -> Option<&mut (u64, u64)> {
        let i = usize::try_from(self.bucket.period_of(at) - self.first).ok()?;
        self.buckets.get_mut(i)
    }

    /// One event read whole (an edge's, or the tail's), counted if it is in the window.
    fn event<'t>(&mut self, at: i64, failed: bool, keys: impl IntoIterator<Item = &'t [u8]>) {
        if !self.inside(at) {
            return;
        }
        if let Some(slot) = self.slot(at) {
            slot.0 += 1;
            slot.1 += u64::from(failed);
        }
        for key in keys {
            self.keys.add(key, 1);
        }
    }

    /// Takes back an event that a rollup of the bucket holding `bucket_at` counted but the
    /// window does not hold.
    fn take_back<'t>(
        &mut self,
        bucket_at: i64,
        failed: bool,
        keys: impl IntoIterator<Item = &'t [u8]>,
    ) {
        if let Some(slot) = self.slot(bucket_at) {
            slot.0 = slot.0.saturating_sub(1);
            slot.1 = slot.1.saturating_sub(u64::from(failed));
        }
        for key in keys {
            self.keys.take(key, 1);
        }
    }

    /// Counts one decoded log row: into the window (`back` is `None`), or taken back from
    /// the bucket holding `back`.
    fn row(&mut self, row: &LogRow, back: Option<i64>) {
        let mut terms: Vec<Vec<u8>> = Vec::new();
        let read = row.with_source(|source| {
            stat_terms_of(source, |t| terms.push(t.to_vec()));
            source.view.occurred_at
        });
        match read {
            Ok(at) => {
                let failed = terms.iter().any(|t| is_failure(t));
                let keys = terms.iter().filter(|t| is_key(t)).map(Vec::as_slice);
                match back {
                    None => self.event(at, failed, keys),
                    Some(bucket_at) => self.take_back(bucket_at, failed, keys),
                }
            }
            // Verify names a damaged event; statistics go on without it, like the index.
            Err(err) => tracing::warn!(error = %err, "an event could not be counted"),
        }
    }
}

/// Whole periods of one span: `(span, first, last)`.
type Periods = (Span, i64, i64);

/// Tiles `[lo, hi)` with whole periods, longest first: `(span, first..=last period)` into
/// `whole`, and what no minute fills (at most one piece at each end) into `edges`.
fn tile(lo: i64, hi: i64, level: usize, whole: &mut Vec<Periods>, edges: &mut Vec<(i64, i64)>) {
    if lo >= hi {
        return;
    }
    let Some(&span) = Span::LONGEST_FIRST.get(level) else {
        edges.push((lo, hi));
        return;
    };
    let len = span.micros();
    // The first period starting at or after `lo`, and the first not ending by `hi`.
    let a = -(lo.saturating_neg().div_euclid(len));
    let b = hi.div_euclid(len);
    if a < b {
        whole.push((span, a, b - 1));
        tile(lo, a.saturating_mul(len), level + 1, whole, edges);
        tile(b.saturating_mul(len), hi, level + 1, whole, edges);
    } else {
        tile(lo, hi, level + 1, whole, edges);
    }
}

/// Whole periods with a sign: `(span, first, last, taken away)`.
type Signed = (Span, i64, i64, bool);

/// The whole periods of a tiling as rollups to add and take away, longest span first: where
/// the periods of one span fill most of the next longer period (hours of a quarter day,
/// quarters of a day, days of a week), that period less its other parts costs fewer rollups
/// (a window's partial days weigh most at 10M events: each hour holds ~12 000 keys, a day
/// ~20 000). Spans are weighed shortest first, so that hours that make a quarter day can make
/// its day with its other quarters. Periods that one part adds and another takes away are not
/// read at all.
fn fewer_rows(whole: &[Periods]) -> Vec<Signed> {
    let mut signs: BTreeMap<(Span, i64), i64> = BTreeMap::new();
    let mut kept = Vec::new();
    for &(span, a, b) in whole {
        if span == Span::Minute {
            // Never more than 59 at each end of a window, and never read as their hour.
            kept.push((span, a, b, false));
        } else {
            for q in a..=b {
                *signs.entry((span, q)).or_default() += 1;
            }
        }
    }
    // Hours into quarter days, quarters into days, days into weeks.
    for span in std::iter::successors(Some(Span::Hour), |s| s.coarser()) {
        let Some(coarser) = span.coarser() else {
            break;
        };
        let per = coarser.micros() / span.micros();
        // Each longer period's parts that are read, with how often and which way.
        let mut parents: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
        for (&(_, q), &n) in signs.range((span, i64::MIN)..=(span, i64::MAX)) {
            parents.entry(q.div_euclid(per)).or_default().push((q, n));
        }
        for (p, parts) in parents {
            // Reading the longer period counts as two: it holds more keys than one part. It
            // then takes each of its parts away once more.
            let now: i64 = parts.iter().map(|(_, n)| n.abs()).sum();
            let held: i64 = parts.iter().map(|(_, n)| (n - 1).abs()).sum();
            // A tie goes to the longer period: its parts are one row fewer, and it may make
            // its own longer period with its neighbours in the next round.
            let instead = 2 + held + (per - parts.len() as i64);
            if instead <= now {
                *signs.entry((coarser, p)).or_default() += 1;
                for q in p * per..(p + 1) * per {
                    *signs.entry((span, q)).or_default() -= 1;
                }
            }
        }
        signs.retain(|_, n| *n != 0);
    }
    for ((span, q), n) in signs {
        for _ in 0..n.unsigned_abs() {
            kept.push((span, q, q, n < 0));
        }
    }
    kept.sort_by_key(|&(span, a, _, _)| (std::cmp::Reverse(span), a));
    let mut out: Vec<Signed> = Vec::with_capacity(kept.len());
    for (span, a, b, negative) in kept {
        match out.last_mut() {
            Some(last) if last.0 == span && last.2 + 1 == a && last.3 == negative => last.2 = b,
            _ => out.push((span, a, b, negative)),
        }
    }
    out
}

/// Statistics of a tenant's events in `q`'s window: rollups up to the watermark, the tail
/// beyond it, in one snapshot.
pub fn statistics<S: ReadSnapshot>(
    snap: &mut S,
    q: &StatsQuery,
    tail: &TailIndex,
) -> PlanResult<Statistics, S::Error> {
    let (from, to) = (q.from.micros(), q.to.micros());
    let n = q.bucket_count().clamp(0, MAX_BUCKETS) as usize;
    let mut tally = Tally {
        from,
        to,
        bucket: q.bucket,
        first: q.bucket.period_of(from),
        buckets: vec![(0, 0); n],
        keys: KeySums::default(),
    };
    if n > 0 {
        let (indexed, size) = snap.bounds(&q.tenant).map_err(PlanError::Backend)?;
        if indexed > 0 {
            indexed_part(snap, &q.tenant, indexed, &mut tally)?;
        }
        if size > indexed {
            tail_part(snap, tail, &q.tenant, (indexed, size), &mut tally)?;
        }
    }
    Ok(answer(q, tally))
}

/// Counts the indexed events: rollups for whole periods, the time blocks and the log for the
/// sub-minute edges.
fn indexed_part<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    indexed: u64,
    tally: &mut Tally,
) -> PlanResult<(), S::Error> {
    let (from, to) = (tally.from, tally.to);
    let open = OpenMinutes::read(snap, tenant, (from, to))?;
    // Keys: the window tiled as coarsely as it goes.
    let (mut whole, mut edges) = (Vec::new(), Vec::new());
    tile(from, to, 0, &mut whole, &mut edges);
    for (span, a, b, negative) in fewer_rows(&whole) {
        whole_rows(snap, tenant, (span, a, b), true, &open, |_, stored| {
            tally.keys.merge_stored(&stored.keys, negative);
        })?;
    }
    // Buckets: each bucket tiled on its own (its whole periods lie inside it); adjacent
    // pieces of one span are read together.
    let mut pieces: HashMap<Span, Vec<(i64, i64)>> = HashMap::new();
    let blen = tally.bucket.micros();
    for i in 0..tally.buckets.len() as i64 {
        let start = (tally.first + i).saturating_mul(blen);
        let (lo, hi) = (start.max(from), start.saturating_add(blen).min(to));
        let mut bucket_whole = Vec::new();
        tile(lo, hi, 0, &mut bucket_whole, &mut Vec::new());
        for (span, a, b) in bucket_whole {
            let ranges = pieces.entry(span).or_default();
            match ranges.last_mut() {
                Some(last) if last.1 + 1 == a => last.1 = b,
                _ => ranges.push((a, b)),
            }
        }
    }
    for (span, ranges) in pieces {
        for (a, b) in ranges {
            whole_rows(snap, tenant, (span, a, b), false, &open, |start, stored| {
                if let Some(slot) = tally.slot(start) {
                    slot.0 += stored.total;
                    slot.1 += stored.failures;
                }
            })?;
        }
    }
    // The sub-minute edges, each inside one minute: its own events one by one, or, when the
    // rest of its minute holds fewer (the edge at `to` = now holds the whole of the last
    // minute's ingest), the minute's rollup less the rest's events.
    let minute = Span::Minute.micros();
    let mut parts = Vec::new();
    for (lo, hi) in edges {
        let boundary = (Span::Minute.period_of(lo) + 1).saturating_mul(minute);
        if boundary < hi {
            parts.extend([(lo, boundary), (boundary, hi)]);
        } else {
            parts.push((lo, hi));
        }
    }
    for (lo, hi) in parts {
        let period = Span::Minute.period_of(lo);
        let start = period.saturating_mul(minute);
        let (inside, rest) = indexed_seqs_in(snap, tenant, indexed, (lo, hi), start)?;
        let back = if inside.len() <= rest.len() {
            for part in inside.into_seqs().chunks(1_024) {
                for row in snap.rows(tenant, part).map_err(PlanError::Backend)? {
                    tally.row(&row, None);
                }
            }
            continue;
        } else {
            rest.into_seqs()
        };
        whole_rows(
            snap,
            tenant,
            (Span::Minute, period, period),
            true,
            &open,
            |_, stored| {
                if let Some(slot) = tally.slot(start) {
                    slot.0 += stored.total;
                    slot.1 += stored.failures;
                }
                tally.keys.merge_stored(&stored.keys, false);
            },
        )?;
        for part in back.chunks(1_024) {
            for row in snap.rows(tenant, part).map_err(PlanError::Backend)? {
                tally.row(&row, Some(start));
            }
        }
    }
    Ok(())
}

/// The open rollup rows (a chunk being indexed counts minutes only, and adds them to its
/// periods' summaries when it is folded) of a window's minutes, in minute order: read once per
/// request. Every piece of the window reads the ones inside it from here: asked of the store
/// piece by piece, each asking walked every open row of the tenant (a chunk's worth, ~700
/// minutes at 1M events over 30 days), a fifth of a month's statistics on SQLite.
struct OpenMinutes(Vec<(i64, StoredRollup)>);

impl OpenMinutes {
    /// The open rows of the minutes `[from, to)` touches.
    fn read<S: ReadSnapshot>(
        snap: &mut S,
        tenant: &Tenant,
        (from, to): (i64, i64),
    ) -> PlanResult<Self, S::Error> {
        if from >= to {
            return Ok(Self(Vec::new()));
        }
        let minutes = Span::Minute.period_of(from)..=Span::Minute.period_of(to - 1);
        let mut rows = snap
            .open_minutes(tenant, minutes, true)
            .map_err(PlanError::Backend)?;
        rows.sort_by_key(|(minute, _)| *minute);
        Ok(Self(rows))
    }

    /// The rows of the minutes `first..=last`.
    fn inside(&self, first: i64, last: i64) -> &[(i64, StoredRollup)] {
        let lo = self.0.partition_point(|(m, _)| *m < first);
        let hi = self.0.partition_point(|(m, _)| *m <= last);
        &self.0[lo..hi.max(lo)]
    }
}

/// Calls `each` with the rollup rows of whole periods `a..=b` of `span`, as `(start, counts)`:
/// their summaries (keys read only when `keys` is set), and the open minutes inside them.
fn whole_rows<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    (span, a, b): Periods,
    keys: bool,
    open: &OpenMinutes,
    mut each: impl FnMut(i64, &StoredRollup),
) -> PlanResult<(), S::Error> {
    for (p, r) in snap
        .rollups(tenant, span, a..=b, keys)
        .map_err(PlanError::Backend)?
    {
        each(p.saturating_mul(span.micros()), &r);
    }
    let per = span.micros() / Span::Minute.micros();
    let (first, last) = (
        a.saturating_mul(per),
        b.saturating_add(1).saturating_mul(per) - 1,
    );
    for (m, r) in open.inside(first, last) {
        each(m.saturating_mul(Span::Minute.micros()), r);
    }
    Ok(())
}

/// Indexed positions, as whole runs and single ones.
#[derive(Default)]
struct Positions {
    runs: Vec<RangeInclusive<u64>>,
    single: Vec<u64>,
}

impl Positions {
    fn len(&self) -> u64 {
        self.single.len() as u64
            + self
                .runs
                .iter()
                .map(|r| r.end() - r.start() + 1)
                .sum::<u64>()
    }

    fn into_seqs(self) -> Vec<u64> {
        let mut out = self.single;
        for r in self.runs {
            out.extend(r);
        }
        out
    }
}

/// The indexed positions whose `occurred_at` lies in `[lo, hi)`, and those of the rest of
/// the minute starting at `start` (which holds `[lo, hi)`), from the time blocks: a block
/// whose least and greatest time put it wholly on one side is taken whole, without reading
/// its values (the minute at `to` = now under full-speed ingest spans hundreds of blocks).
fn indexed_seqs_in<S: ReadSnapshot>(
    snap: &mut S,
    tenant: &Tenant,
    indexed: u64,
    (lo, hi): (i64, i64),
    start: i64,
) -> PlanResult<(Positions, Positions), S::Error> {
    let end = start.saturating_add(Span::Minute.micros());
    let headers = snap
        .time_blocks(tenant, 0..=block_of(indexed), false)
        .map_err(PlanError::Backend)?;
    let (mut inside, mut rest) = (Positions::default(), Positions::default());
    let mut mixed: Vec<RangeInclusive<u64>> = Vec::new();
    for (block, t) in headers {
        if t.lo >= end || t.hi < start {
            continue;
        }
        let first = (block << BLOCK_BITS) + 1;
        let run = first..=(first + BLOCK - 1).min(indexed);
        let within = t.lo >= start && t.hi < end;
        if t.lo >= lo && t.hi < hi {
            inside.runs.push(run);
        } else if within && (t.hi < lo || t.lo >= hi) {
            rest.runs.push(run);
        } else {
            match mixed.last_mut() {
                Some(r) if *r.end() + 1 == block => *r = *r.start()..=block,
                _ => mixed.push(block..=block),
            }
        }
    }
    for range in mixed {
        for (block, t) in snap
            .time_blocks(tenant, range, true)
            .map_err(PlanError::Backend)?
        {
            let first = (block << BLOCK_BITS) + 1;
            for (i, at) in t.values.iter().enumerate().take(BLOCK as usize) {
                let seq = first + i as u64;
                if seq > indexed || *at < start || *at >= end {
                    continue;
                }
                if *at >= lo && *at < hi {
                    inside.single.push(seq);
                } else {
                    rest.single.push(seq);
                }
            }
        }
    }
    Ok((inside, rest))
}

/// Counts the events beyond the watermark: through the tail index where it holds them, from
/// the log elsewhere.
fn tail_part<S: ReadSnapshot>(
    snap: &mut S,
    tail: &TailIndex,
    tenant: &Tenant,
    (indexed, size): (u64, u64),
    tally: &mut Tally,
) -> PlanResult<(), S::Error> {
    let cell = tail.tenant(tenant);
    let held = {
        let mut held = cell.lock().expect("the tail lock is never poisoned");
        match held.cover(snap, tenant, indexed, size)? {
            Some(range) => {
                held.tally(
                    range.clone(),
                    |term| is_key(term) || is_failure(term),
                    |at, term| match term {
                        None => {
                            if tally.inside(at)
                                && let Some(slot) = tally.slot(at)
                            {
                                slot.0 += 1;
                            }
                        }
                        Some(term) if tally.inside(at) => {
                            if is_failure(term) {
                                if let Some(slot) = tally.slot(at) {
                                    slot.1 += 1;
                                }
                            } else {
                                tally.keys.add(term, 1);
                            }
                        }
                        Some(_) => {}
                    },
                );
                Some(range)
            }
            None => None,
        }
    };
    let rest: Vec<RangeInclusive<u64>> = match held {
        Some(r) => vec![indexed + 1..=r.start() - 1, r.end() + 1..=size],
        None => vec![indexed + 1..=size],
    };
    for range in rest {
        let (mut lo, hi) = (*range.start(), *range.end());
        while lo <= hi {
            let rows = snap
                .scan(tenant, lo..=hi, false, 512)
                .map_err(PlanError::Backend)?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                break;
            };
            for row in &rows {
                tally.row(row, None);
            }
            lo = last + 1;
        }
    }
    Ok(())
}

/// The answer: totals from the buckets, top lists ordered by count then key.
fn answer(q: &StatsQuery, tally: Tally) -> Statistics {
    let blen = q.bucket.micros();
    let buckets: Vec<BucketCount> = tally
        .buckets
        .iter()
        .enumerate()
        .map(|(i, &(count, failures))| BucketCount {
            start: Timestamp::from_micros((tally.first + i as i64).saturating_mul(blen)),
            count,
            failures,
        })
        .collect();
    let mut actors = Vec::new();
    let mut actions = Vec::new();
    let mut targets = Vec::new();
    tally.keys.for_each(|term, count| {
        let Some((&tag, value)) = term.split_first() else {
            return;
        };
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        if tag == ACTOR_ID.tag() {
            actors.push((value.to_owned(), count));
        } else if tag == ACTION.tag() {
            actions.push((value.to_owned(), count));
        } else if tag == TARGET.tag()
            && let Some((kind, id)) = crate::fields::unpair(value)
        {
            targets.push((kind.to_owned(), id.to_owned(), count));
        }
    });
    let top = q.top.min(MAX_TOP);
    actors.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    actors.truncate(top);
    actions.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    actions.truncate(top);
    targets.sort_unstable_by(|a, b| {
        b.2.cmp(&a.2)
            .then_with(|| a.0.cmp(&b.0))
            .then_with(|| a.1.cmp(&b.1))
    });
    targets.truncate(top);
    Statistics {
        total: buckets.iter().map(|b| b.count).sum(),
        failures: buckets.iter().map(|b| b.failures).sum(),
        buckets,
        top_actors: actors,
        top_actions: actions,
        top_targets: targets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000_000;
    const H: i64 = 60 * M;
    const D: i64 = 24 * H;

    fn tiled(lo: i64, hi: i64) -> (Vec<super::Periods>, Vec<(i64, i64)>) {
        let (mut whole, mut edges) = (Vec::new(), Vec::new());
        tile(lo, hi, 0, &mut whole, &mut edges);
        (whole, edges)
    }

    #[test]
    fn windows_are_tiled_longest_first_with_sub_minute_edges() {
        // Two whole days, with hours, minutes and seconds on each side.
        let lo = 10 * D - 2 * H - 3 * M - 5_000_000;
        let hi = 12 * D + H + 2 * M + 7;
        let (whole, edges) = tiled(lo, hi);
        assert_eq!(
            whole,
            vec![
                (Span::Day, 10, 11),
                (Span::Hour, 10 * 24 - 2, 10 * 24 - 1),
                (
                    Span::Minute,
                    (10 * D - 2 * H - 3 * M) / M,
                    (10 * D - 2 * H) / M - 1
                ),
                (Span::Hour, 12 * 24, 12 * 24),
                (Span::Minute, (12 * D + H) / M, (12 * D + H) / M + 1),
            ]
        );
        assert_eq!(
            edges,
            vec![(lo, 10 * D - 2 * H - 3 * M), (12 * D + H + 2 * M, hi)]
        );
        // Every instant of the window is in exactly one piece.
        let covered: i64 = whole
            .iter()
            .map(|(s, a, b)| (b - a + 1) * s.micros())
            .chain(edges.iter().map(|(a, b)| b - a))
            .sum();
        assert_eq!(covered, hi - lo);
        // Whole weeks (from the epoch) first.
        let (whole, edges) = tiled(6 * D + H, 22 * D);
        assert_eq!(
            whole,
            vec![
                (Span::Week, 1, 2),
                (Span::QuarterDay, 6 * 4 + 1, 6 * 4 + 3),
                (Span::Hour, 6 * 24 + 1, 6 * 24 + 5),
                (Span::Day, 21, 21)
            ]
        );
        assert!(edges.is_empty());
        // Before the epoch too, and a window inside one minute.
        let (whole, edges) = tiled(-D - 30_000_000, -D + H);
        assert_eq!(whole, vec![(Span::Hour, -24, -24)]);
        assert_eq!(edges, vec![(-D - 30_000_000, -D)]);
        assert_eq!(tiled(5, 9), (vec![], vec![(5, 9)]));
        assert_eq!(tiled(9, 9), (vec![], vec![]));
    }

    /// How many times each hour is counted by signed whole periods (minutes left out).
    fn hours_counted(periods: &[(Span, i64, i64, bool)]) -> BTreeMap<i64, i64> {
        let mut out = BTreeMap::new();
        for &(span, a, b, negative) in periods {
            if span == Span::Minute {
                continue;
            }
            let per = span.micros() / H;
            for hour in a * per..(b + 1) * per {
                *out.entry(hour).or_insert(0) += if negative { -1 } else { 1 };
            }
        }
        out.retain(|_, n| *n != 0);
        out
    }

    #[test]
    fn partial_days_and_weeks_are_read_as_the_whole_less_the_rest_when_that_is_fewer() {
        // Every window counts each of its hours once, whichever way it is read.
        let mut mix = crate::conformance::Mix(0x5eed);
        let mut next = move |n: i64| (mix.next() % n as u64) as i64;
        for _ in 0..2_000 {
            let lo = next(60 * D) - 20 * D + next(2) * next(M);
            let span = [H, D, 9 * D, 40 * D][next(4) as usize];
            let hi = lo + next(span);
            let (whole, _) = tiled(lo, hi);
            let plain: Vec<(Span, i64, i64, bool)> =
                whole.iter().map(|&(s, a, b)| (s, a, b, false)).collect();
            let signed = fewer_rows(&whole);
            assert_eq!(hours_counted(&signed), hours_counted(&plain), "{lo}..{hi}");
            assert!(hours_counted(&signed).values().all(|n| *n == 1));
            // Longest first, and never more periods read than the plain tiling's.
            assert!(signed.windows(2).all(|w| w[0].0 >= w[1].0));
            let rows = |p: &[(Span, i64, i64, bool)]| p.iter().map(|x| x.2 - x.1 + 1).sum::<i64>();
            assert!(rows(&signed) <= rows(&plain), "{lo}..{hi}");
        }
        // The last 30 days at 04:10 (day 70 opens week 10): the first day's three whole
        // quarters are that day less its first quarter, and the week's 6 other days the week
        // less that day, so the day itself is not read; the last day's 4 hours are its first
        // quarter less its last two.
        let to = 100 * D + 4 * H + 10 * M;
        let (whole, _) = tiled(to - 30 * D, to);
        let signed = fewer_rows(&whole);
        assert!(signed.contains(&(Span::Week, 10, 13, false)), "{signed:?}");
        assert!(signed.contains(&(Span::QuarterDay, 70 * 4, 70 * 4, true)));
        assert!(signed.contains(&(Span::Hour, 70 * 24 + 5, 70 * 24 + 5, false)));
        assert!(signed.contains(&(Span::QuarterDay, 100 * 4, 100 * 4, false)));
        assert!(signed.contains(&(Span::Hour, 100 * 24 + 4, 100 * 24 + 5, true)));
        assert!(
            !signed
                .iter()
                .any(|p| p.0 == Span::Day && p.1 <= 70 && p.2 >= 70)
        );
        let week_days = fewer_rows(&[(Span::Day, 8, 13)]);
        assert_eq!(
            week_days,
            vec![(Span::Week, 1, 1, false), (Span::Day, 7, 7, true)]
        );
        // Noon to noon: two quarters at each end, not twelve hours.
        let (whole, _) = tiled(10 * D + 12 * H, 38 * D + 12 * H);
        let signed = fewer_rows(&whole);
        let edge = |p: &(Span, i64, i64, bool)| p.0 == Span::QuarterDay && !p.3;
        assert_eq!(
            signed
                .iter()
                .filter(|p| edge(p))
                .map(|p| p.2 - p.1 + 1)
                .sum::<i64>(),
            4,
            "{signed:?}"
        );
        assert!(signed.iter().all(|p| p.0 != Span::Hour), "{signed:?}");
        // A few hours of a quarter day, or days of a week, are read as they are.
        assert_eq!(
            fewer_rows(&[(Span::Hour, 1, 3)]),
            vec![(Span::Hour, 1, 3, false)]
        );
        assert_eq!(
            fewer_rows(&[(Span::Day, 8, 10)]),
            vec![(Span::Day, 8, 10, false)]
        );
    }

    #[test]
    fn buckets_run_from_the_one_holding_from_to_the_one_holding_the_last_instant() {
        let q = |from: i64, to: i64, bucket| StatsQuery {
            tenant: Tenant::from_store("t"),
            from: Timestamp::from_micros(from),
            to: Timestamp::from_micros(to),
            bucket,
            top: 10,
        };
        assert_eq!(q(0, D, Span::Day).bucket_count(), 1);
        assert_eq!(q(0, D + 1, Span::Day).bucket_count(), 2);
        assert_eq!(q(H / 2, 3 * H, Span::Hour).bucket_count(), 3);
        assert_eq!(q(5, 5, Span::Hour).bucket_count(), 0);
        assert_eq!(q(30 * D, 0, Span::Day).bucket_count(), 0);
    }
}
