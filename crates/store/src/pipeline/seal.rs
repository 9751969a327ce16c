//! Sealing a group of append requests: pure work on what the backend loaded, no I/O.
//!
//! Each request is all or nothing. Requests are sealed in queue order against the group's state
//! (log ends, ids already stored or stored earlier in the group); a request that
//! conflicts leaves no trace in that state or in the batch, and the requests after it go on as
//! if it had never been queued.

use std::collections::{BTreeSet, HashMap};

use rand::RngCore;
use sealtrail_ledger::entry::{DEFAULT_PERSON_TYPES, EntryParts, encode_new_v2};
use sealtrail_ledger::{LeafHash, leaf_hash};
use sealtrail_model::{Tenant, Timestamp};
use uuid::Uuid;

use super::{KnownId, Loaded, LogEnd, Node, SealedBatch, SealedEvent, Want};
use crate::{Appended, PreparedEvent, StoreError, StoreResult};

/// What the backend must load for a group of requests.
pub(crate) fn want(requests: &[Vec<PreparedEvent>]) -> Want {
    let mut tenants = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for e in requests.iter().flatten() {
        tenants.insert(e.tenant.clone());
        if e.client_id {
            ids.insert(e.id);
        }
    }
    Want {
        tenants: tenants.into_iter().collect(),
        ids: ids.into_iter().collect(),
        // Entries of version 2 need no subject key: nothing to load.
    }
}

/// The group's state while it is sealed.
struct State {
    ends: HashMap<Tenant, LogEnd>,
    known: HashMap<Uuid, KnownId>,
    touched: BTreeSet<Tenant>,
}

/// Seals every request of a group at `recorded_at`; returns each request's answer and the
/// batch to write. A request whose events conflict is answered with the conflict and adds
/// nothing to the batch.
pub(crate) fn seal_group(
    requests: &[Vec<PreparedEvent>],
    recorded_at: Timestamp,
    loaded: Loaded,
) -> (Vec<StoreResult<Vec<Appended>>>, SealedBatch) {
    let mut state = State {
        ends: loaded.ends,
        known: loaded.known,
        touched: BTreeSet::new(),
    };
    let mut batch = SealedBatch::default();
    let mut results = Vec::with_capacity(requests.len());
    for events in requests {
        let marks = (batch.events.len(), batch.nodes.len());
        let saved: Vec<(Tenant, Option<LogEnd>)> = events
            .iter()
            .map(|e| &e.tenant)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|t| (t.clone(), state.ends.get(t).cloned()))
            .collect();
        let touched_before = state.touched.clone();
        match seal_request(events, recorded_at, &mut state, &mut batch) {
            Ok(done) => results.push(Ok(done)),
            Err(conflict) => {
                // Undo what the request did to the group's state and the batch.
                for e in batch.events.drain(marks.0..) {
                    state.known.remove(&e.id);
                }
                batch.nodes.truncate(marks.1);
                for (tenant, end) in saved {
                    match end {
                        Some(end) => state.ends.insert(tenant, end),
                        None => state.ends.remove(&tenant),
                    };
                }
                state.touched = touched_before;
                results.push(Err(conflict));
            }
        }
    }
    batch.ends = state
        .touched
        .into_iter()
        .filter_map(|t| state.ends.remove(&t).map(|end| (t, end)))
        .collect();
    (results, batch)
}

/// Seals one request's events into the batch; a conflict fails the request.
fn seal_request(
    events: &[PreparedEvent],
    recorded_at: Timestamp,
    state: &mut State,
    batch: &mut SealedBatch,
) -> StoreResult<Vec<Appended>> {
    let mut out = Vec::with_capacity(events.len());
    for (index, prepared) in events.iter().enumerate() {
        if prepared.client_id
            && let Some(k) = state.known.get(&prepared.id)
        {
            if k.tenant != prepared.tenant || k.digest != prepared.digest {
                return Err(StoreError::Conflict {
                    index,
                    id: prepared.id,
                });
            }
            out.push(Appended {
                id: prepared.id,
                seq: k.seq,
                recorded_at: k.recorded_at,
                hash: k.hash,
                duplicate: true,
            });
            continue;
        }
        let tenant = &prepared.tenant;
        let end = state
            .ends
            .entry(tenant.clone())
            .or_insert_with(LogEnd::empty);
        let seq = end.size + 1;
        // The event is sealed where it lies: its parts at the place it gets, no copy.
        let event = EntryParts::of_new(
            &prepared.event,
            prepared.id,
            tenant.as_str(),
            seq,
            recorded_at,
        );
        // Every personal value enters the leaf as a digest under an opening of its own, kept
        // with the value beside the entry (entry version 2, docs/integrity.md §3.2).
        let prev = end.last;
        let (entry, personal_values) =
            encode_new_v2(&event, &DEFAULT_PERSON_TYPES, &prev.0, || {
                let mut opening = [0u8; 16];
                rand::rng().fill_bytes(&mut opening);
                opening
            });
        let hash = LeafHash(leaf_hash(&entry));
        let personal_values = Some(personal_values);
        end.frontier.push(hash.0, |level, idx, h| {
            if level > 0 {
                batch.nodes.push(Node {
                    tenant: tenant.clone(),
                    level,
                    index: idx,
                    hash: *h,
                });
            }
        });
        end.size = seq;
        end.last = hash;
        end.recorded_at = Some(recorded_at);
        state.touched.insert(tenant.clone());
        state.known.insert(
            prepared.id,
            KnownId {
                tenant: tenant.clone(),
                digest: prepared.digest,
                seq,
                recorded_at,
                hash,
            },
        );
        out.push(Appended {
            id: prepared.id,
            seq,
            recorded_at,
            hash,
            duplicate: false,
        });
        batch.events.push(SealedEvent {
            tenant: tenant.clone(),
            seq,
            id: prepared.id,
            recorded_at,
            digest: prepared.digest,
            hash,
            prev,
            entry,
            personal_values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::prepared;
    use serde_json::json;

    fn simple(action: &str) -> serde_json::Value {
        json!({"action": action, "actor": {"id": "u", "name": "Ann"}})
    }

    #[test]
    fn a_conflicting_request_leaves_no_trace_and_the_next_ones_go_on() {
        let stored = Uuid::new_v4();
        let mut loaded = Loaded::default();
        let t = crate::conformance::tenant("t");
        loaded.known.insert(
            stored,
            KnownId {
                tenant: t.clone(),
                digest: [9; 32],
                seq: 7,
                recorded_at: Timestamp::from_micros(5),
                hash: LeafHash([1; 32]),
            },
        );
        let requests = vec![
            vec![prepared("t", simple("a.one"))],
            // A new event, then an id stored with another body: the whole request fails.
            vec![
                prepared("t", simple("a.two")),
                prepared(
                    "t",
                    json!({"id": stored, "action": "x", "actor": {"id": "v", "name": "Bo"}}),
                ),
            ],
            vec![prepared("t", simple("a.three"))],
        ];
        let (results, batch) = seal_group(&requests, Timestamp::from_micros(10), loaded);
        assert_eq!(results[0].as_ref().expect("first")[0].seq, 1);
        assert!(matches!(
            results[1],
            Err(StoreError::Conflict { index: 1, .. })
        ));
        assert_eq!(results[2].as_ref().expect("third")[0].seq, 2);
        let seqs: Vec<u64> = batch.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        // Entries of version 2 need no subject key: none is made.
        // Personal values are kept with their openings beside each entry.
        for e in &batch.events {
            let values = e
                .personal_values
                .as_deref()
                .expect("the actor's id at least");
            assert!(sealtrail_ledger::view::PersonalValues::from_bytes(values).is_some());
        }
        assert_eq!(batch.ends.len(), 1);
        assert_eq!(batch.ends[0].1.size, 2);
        assert_eq!(batch.ends[0].1.last, batch.events[1].hash);
        assert_eq!(batch.events[1].prev, batch.events[0].hash);
    }

    #[test]
    fn the_same_client_id_twice_in_a_group_is_a_duplicate_the_second_time() {
        let id = Uuid::new_v4();
        let v = json!({"id": id, "action": "a", "actor": {"id": "u"}});
        let requests = vec![vec![prepared("t", v.clone())], vec![prepared("t", v)]];
        let (results, batch) = seal_group(&requests, Timestamp::from_micros(10), Loaded::default());
        let first = &results[0].as_ref().expect("first")[0];
        let second = &results[1].as_ref().expect("second")[0];
        assert!(!first.duplicate && second.duplicate);
        assert_eq!((first.seq, first.hash), (second.seq, second.hash));
        assert_eq!(batch.events.len(), 1);
    }
}
