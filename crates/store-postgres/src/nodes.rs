//! Merkle nodes kept in PostgreSQL: the frontier stored in `tenant_logs`, and proofs built from
//! `leaves` (level 0) and `tree_nodes` (higher levels).
//!
//! The ledger's proof code asks a synchronous [`NodeSource`] for nodes one by one. Which nodes a
//! proof needs depends only on positions, never on hash values, so a proof is made in two
//! passes: one with a [`Recorder`] that notes the positions asked for, one query that fetches
//! them all, and the real pass over the fetched map. A proof costs one round trip.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use sealtrail_ledger::merkle::{Frontier, Hash, NodeSource, ProofError};
use tokio_postgres::GenericClient;

use crate::PgError;

/// Notes the positions a computation asks for and answers zeros.
#[derive(Default)]
struct Recorder(RefCell<Vec<(u32, u64)>>);

impl NodeSource for Recorder {
    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        self.0.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// Nodes fetched ahead of time.
struct Fetched(HashMap<(u32, u64), Hash>);

impl NodeSource for Fetched {
    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or(ProofError::MissingNode { level, index })
    }
}

/// Runs `compute` over tenant `tenant`'s stored nodes, fetching all it needs in one query.
pub(crate) async fn with_nodes<T>(
    client: &impl GenericClient,
    tenant: &str,
    compute: impl Fn(&dyn NodeSource) -> Result<T, ProofError>,
) -> Result<T, PgError> {
    let recorder = Recorder::default();
    compute(&recorder)?;
    let fetched = fetch(client, tenant, &recorder.0.into_inner()).await?;
    Ok(compute(&Fetched(fetched))?)
}

/// Fetches stored nodes by `(level, index)` in one query; absent ones are left out. Each
/// position is looked up by its primary key: joined instead, the planner may hash a whole
/// table for a page's few hundred nodes (a filtered export of 1M events took 75 s so).
pub(crate) async fn fetch(
    client: &impl GenericClient,
    tenant: &str,
    wanted: &[(u32, u64)],
) -> Result<HashMap<(u32, u64), Hash>, PgError> {
    let levels: Vec<i32> = wanted.iter().map(|&(l, _)| l as i32).collect();
    let indexes: Vec<i64> = wanted.iter().map(|&(_, i)| i as i64).collect();
    let rows = client
        .query(
            "SELECT w.level, w.idx, CASE WHEN w.level > 0 \
               THEN (SELECT n.hash FROM tree_nodes n \
                     WHERE n.tenant = $1 AND n.level = w.level AND n.idx = w.idx) \
               ELSE (SELECT l.hash FROM leaves l WHERE l.tenant = $1 AND l.seq = w.idx + 1) END \
             FROM unnest($2::int[], $3::bigint[]) AS w(level, idx)",
            &[&tenant, &levels, &indexes],
        )
        .await?;
    let mut fetched = HashMap::with_capacity(rows.len());
    for row in rows {
        let level: i32 = row.get(0);
        let index: i64 = row.get(1);
        let hash: Option<Vec<u8>> = row.get(2);
        if let Some(hash) = hash.and_then(|h| Hash::try_from(h).ok()) {
            fetched.insert((level as u32, index as u64), hash);
        }
    }
    Ok(fetched)
}

/// The stored form of a frontier: its hashes, largest subtree first, 32 bytes each.
pub(crate) fn frontier_to_bytes(frontier: &Frontier) -> Vec<u8> {
    frontier.nodes().iter().flat_map(|(_, h)| *h).collect()
}

/// Serves stored frontier hashes in the order [`Frontier::at`] asks for them.
struct Sequential<'a> {
    bytes: &'a [u8],
    next: Cell<usize>,
}

impl NodeSource for Sequential<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let at = self.next.get();
        self.next.set(at + 32);
        self.bytes
            .get(at..at + 32)
            .and_then(|b| b.try_into().ok())
            .ok_or(ProofError::MissingNode { level, index })
    }
}

/// Rebuilds the frontier of a tree of `size` leaves from its stored form.
pub(crate) fn frontier_from_bytes(size: u64, bytes: &[u8]) -> Result<Frontier, ProofError> {
    let source = Sequential {
        bytes,
        next: Cell::new(0),
    };
    let frontier = Frontier::at(&source, size)?;
    if source.next.get() != bytes.len() {
        return Err(ProofError::Mismatch);
    }
    Ok(frontier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_ledger::merkle::leaf_hash;

    #[test]
    fn a_frontier_survives_its_stored_form_at_every_size() {
        let mut frontier = Frontier::new();
        for i in 0u32..300 {
            let bytes = frontier_to_bytes(&frontier);
            let back = frontier_from_bytes(frontier.size(), &bytes).expect("decodes");
            assert_eq!(back, frontier, "size {}", frontier.size());
            frontier.push(leaf_hash(&i.to_be_bytes()), |_, _, _| {});
        }
    }

    #[test]
    fn a_stored_frontier_of_the_wrong_length_is_refused() {
        let mut frontier = Frontier::new();
        for i in 0u32..5 {
            frontier.push(leaf_hash(&i.to_be_bytes()), |_, _, _| {});
        }
        let mut bytes = frontier_to_bytes(&frontier);
        assert!(frontier_from_bytes(7, &bytes).is_err());
        bytes.push(0);
        assert!(frontier_from_bytes(5, &bytes).is_err());
    }
}
