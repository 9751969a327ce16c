//! What one process has learnt of each tenant's unindexed tail.
//!
//! Reads are exact: events beyond a tenant's watermark are answered from the log itself
//! ([`crate::plan`]). Checking them one by one on every query costs a read and a decode per
//! event; under full-speed ingest the tail holds tens of thousands of events, and a filtered
//! list would pay that on every request. A [`TailIndex`] reads each tail event once, the first
//! time a query needs it, and keeps its terms (an inverted map) and its `occurred_at` until the
//! watermark passes it; every later query of the tail is a lookup. It is derived data like the
//! postings, held in memory, rebuilt from the log whenever it is missing or cleared.
//!
//! A query's snapshot fixes what it sees: the index is only extended with rows read through
//! the query's own snapshot, and a query only uses the part of it that lies in the snapshot's
//! tail. Rows of the log change only through the sanctioned path, which clears the index
//! ([`TailIndex::clear`]).

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use sealtrail_model::Tenant;

use crate::derived::FreshTerms;
use crate::fields::Term;
use crate::plan::{PlanError, ReadSnapshot};

/// Tails longer than this are not held (they are scanned as before): memory stays bounded
/// whatever the indexer's lag. The ingest bound (`max_lag`) keeps tails well below it.
const MAX_TAIL: u64 = 250_000;
/// Rows read per step while extending.
const STEP: usize = 1_024;

/// Every tenant's `TenantTail`, shared by the reads of one store.
#[derive(Default)]
pub struct TailIndex {
    tenants: Mutex<HashMap<Tenant, Arc<Mutex<TenantTail>>>>,
}

impl std::fmt::Debug for TailIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailIndex").finish_non_exhaustive()
    }
}

impl TailIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (after the sanctioned path changed rows, or derived data was
    /// dropped).
    pub fn clear(&self) {
        self.tenants
            .lock()
            .expect("the tail lock is never poisoned")
            .clear();
    }

    pub(crate) fn tenant(&self, tenant: &Tenant) -> Arc<Mutex<TenantTail>> {
        self.tenants
            .lock()
            .expect("the tail lock is never poisoned")
            .entry(tenant.clone())
            .or_default()
            .clone()
    }
}

/// Positions per [`Segment`]: what is dropped at once when the watermark passes it.
const SEGMENT: u64 = 4_096;

/// One tenant's tail events `from..=to`: their terms and times, in segments of [`SEGMENT`]
/// positions, so that the watermark passing them drops whole segments rather than editing
/// every posting list.
#[derive(Default)]
pub(crate) struct TenantTail {
    from: u64,
    to: u64,
    segments: std::collections::VecDeque<Segment>,
}

/// The terms and times of positions `first..first + times.len()`: each term's positions as
/// offsets from `first`, derived as the indexer derives a batch's (a text many events hold is
/// cut into words once).
struct Segment {
    first: u64,
    terms: FreshTerms,
    times: Vec<i64>,
}

impl Segment {
    fn last(&self) -> u64 {
        self.first + self.times.len() as u64 - 1
    }
}

impl TenantTail {
    /// Makes the index hold at least `max(from, indexed + 1)..=size` as seen by `snap`, and
    /// returns the positions it holds of that range; `None` when the tail is too long to hold.
    pub(crate) fn cover<S: ReadSnapshot>(
        &mut self,
        snap: &mut S,
        tenant: &Tenant,
        indexed: u64,
        size: u64,
    ) -> Result<Option<RangeInclusive<u64>>, PlanError<S::Error>> {
        if size <= indexed || size - indexed > MAX_TAIL {
            return Ok(None);
        }
        if self.from == 0 || self.to < indexed {
            self.reset(indexed + 1);
        } else {
            // Segments the watermark has passed entirely.
            while self
                .segments
                .front()
                .is_some_and(|seg| !seg.times.is_empty() && seg.last() <= indexed)
            {
                self.segments.pop_front();
            }
            self.from = self.segments.front().map_or(self.to + 1, |seg| seg.first);
        }
        while self.to < size {
            let rows = snap
                .scan(tenant, self.to + 1..=size, false, STEP)
                .map_err(PlanError::Backend)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                if row.seq != self.to + 1 {
                    // The log has a gap where the snapshot says it has none: start over on
                    // the next query rather than hold a wrong position.
                    self.reset(indexed + 1);
                    return Ok(None);
                }
                if self
                    .segments
                    .back()
                    .is_none_or(|seg| seg.times.len() as u64 >= SEGMENT)
                {
                    if let Some(full) = self.segments.back_mut() {
                        // Only read from now on.
                        full.terms.forget_texts();
                    }
                    self.segments.push_back(Segment {
                        first: row.seq,
                        terms: FreshTerms::default(),
                        times: Vec::with_capacity(SEGMENT as usize),
                    });
                }
                let seg = self
                    .segments
                    .back_mut()
                    .expect("a segment was just ensured");
                let (terms, offset) = (&mut seg.terms, (row.seq - seg.first) as u32);
                let at = row.with_source(|source| {
                    terms.event(source, offset, |_| {});
                    source.view.occurred_at
                })?;
                seg.times.push(at);
                self.to = row.seq;
            }
        }
        if self.from > self.to {
            self.from = self.segments.front().map_or(self.to + 1, |seg| seg.first);
        }
        let lo = self.from.max(indexed + 1);
        let hi = self.to.min(size);
        Ok((lo <= hi).then_some(lo..=hi))
    }

    fn reset(&mut self, from: u64) {
        self.from = from;
        self.to = from - 1;
        self.segments.clear();
    }

    /// The positions of `range` (inside what [`TenantTail::cover`] returned) having, for every
    /// group, one of its terms, ascending. With no groups, every position.
    pub(crate) fn matching(&self, groups: &[Vec<Term>], range: RangeInclusive<u64>) -> Vec<u64> {
        let (lo, hi) = (*range.start(), *range.end());
        let mut out = Vec::new();
        if lo > hi {
            return out;
        }
        for seg in &self.segments {
            if seg.times.is_empty() || seg.last() < lo || seg.first > hi {
                continue;
            }
            if groups.is_empty() {
                out.extend(lo.max(seg.first)..=hi.min(seg.last()));
                continue;
            }
            let mut result: Option<Vec<u64>> = None;
            for group in groups {
                let mut any: Vec<u64> = Vec::new();
                for term in group {
                    if let Some(offsets) = seg.terms.positions(&term.0) {
                        // The segment starts at or before `hi` (it was skipped otherwise).
                        let (from, to) = (lo.saturating_sub(seg.first), hi - seg.first);
                        let a = offsets.partition_point(|&o| u64::from(o) < from);
                        let b = offsets.partition_point(|&o| u64::from(o) <= to);
                        any.extend(offsets[a..b].iter().map(|&o| seg.first + u64::from(o)));
                    }
                }
                if group.len() > 1 {
                    any.sort_unstable();
                    any.dedup();
                }
                let next = match result {
                    None => any,
                    Some(r) => intersect(&r, &any),
                };
                let empty = next.is_empty();
                result = Some(next);
                if empty {
                    break;
                }
            }
            out.extend(result.unwrap_or_default());
        }
        out
    }

    /// Visits the held positions of `range`: `visit(at, None)` once per event, and
    /// `visit(at, Some(term))` for each of its terms that `wanted` accepts.
    pub(crate) fn tally(
        &self,
        range: RangeInclusive<u64>,
        wanted: impl Fn(&[u8]) -> bool,
        mut visit: impl FnMut(i64, Option<&[u8]>),
    ) {
        let (lo, hi) = (*range.start(), *range.end());
        for seg in &self.segments {
            if seg.times.is_empty() || seg.last() < lo || seg.first > hi {
                continue;
            }
            let (a, b) = (lo.max(seg.first), hi.min(seg.last()));
            for seq in a..=b {
                visit(seg.times[(seq - seg.first) as usize], None);
            }
            for (term, offsets) in seg.terms.each() {
                if !wanted(term) {
                    continue;
                }
                let start = offsets.partition_point(|&o| seg.first + u64::from(o) < a);
                for &o in offsets[start..].iter() {
                    if seg.first + u64::from(o) > b {
                        break;
                    }
                    visit(seg.times[o as usize], Some(term));
                }
            }
        }
    }

    /// The `occurred_at` of a held position.
    pub(crate) fn time(&self, seq: u64) -> Option<i64> {
        if seq < self.from || seq > self.to {
            return None;
        }
        let i = self.segments.partition_point(|seg| seg.first <= seq);
        let seg = self.segments.get(i.checked_sub(1)?)?;
        seg.times.get((seq - seg.first) as usize).copied()
    }
}

/// The common elements of two ascending lists.
fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len().min(b.len())));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersections_keep_common_positions_in_order() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[2, 3, 4, 7, 9]), vec![3, 7]);
        assert!(intersect(&[], &[1]).is_empty());
    }
}
