//! Sealing a group of append requests: pure work on what the backend loaded, no I/O.
//!
//! Each request is all or nothing. Requests are sealed in queue order against the group's state
//! (log ends, ids already stored or stored earlier in the group, subject keys); a request that
//! conflicts leaves no trace in that state or in the batch, and the requests after it go on as
//! if it had never been queued.

use std::collections::{BTreeSet, HashMap};

use rand::RngCore;
use sealtrail_ledger::entry::{
    DEFAULT_PERSON_TYPES, EntryParts, digests_of, encode_parts, is_person_type,
};
use sealtrail_ledger::view::PersonalValues;
use sealtrail_ledger::{LeafHash, leaf_hash};
use sealtrail_model::{Tenant, Timestamp};
use uuid::Uuid;

use super::{KnownId, Loaded, LogEnd, Node, SealedBatch, SealedEvent, SubjectKey, Want};
use crate::{Appended, PreparedEvent, StoreError, StoreResult};

/// What the backend must load for a group of requests.
pub(crate) fn want(requests: &[Vec<PreparedEvent>]) -> Want {
    let mut tenants = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut subjects = BTreeSet::new();
    for e in requests.iter().flatten() {
        tenants.insert(e.tenant.clone());
        if e.client_id {
            ids.insert(e.id);
        }
        let ev = &e.event;
        let ctx = ev.context.as_ref();
        let actor_has_values = ev.actor.name.is_some()
            || ev.actor.email.is_some()
            || ctx.is_some_and(|c| c.ip.is_some() || c.user_agent.is_some());
        if actor_has_values {
            subjects.insert((e.tenant.clone(), ev.actor.id.clone()));
        }
        if let Some(t) = &ev.target
            && t.name.is_some()
            && is_person_type(&t.target_type, &DEFAULT_PERSON_TYPES)
        {
            subjects.insert((e.tenant.clone(), t.id.clone()));
        }
    }
    Want {
        tenants: tenants.into_iter().collect(),
        ids: ids.into_iter().collect(),
        subjects: subjects.into_iter().collect(),
    }
}

/// The group's state while it is sealed.
struct State {
    ends: HashMap<Tenant, LogEnd>,
    known: HashMap<Uuid, KnownId>,
    keys: HashMap<(Tenant, String), SubjectKey>,
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
        keys: loaded.keys,
        touched: BTreeSet::new(),
    };
    let mut batch = SealedBatch::default();
    let mut results = Vec::with_capacity(requests.len());
    for events in requests {
        let marks = (batch.events.len(), batch.nodes.len(), batch.new_keys.len());
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
                for (tenant, subject, _) in batch.new_keys.drain(marks.2..) {
                    state.keys.remove(&(tenant, subject));
                }
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
        // Personal fields enter the leaf as digests under their subject's key; a key is made
        // only for a subject that carries personal data.
        let keys = &mut state.keys;
        let new_keys = &mut batch.new_keys;
        let digests = digests_of(&event, &DEFAULT_PERSON_TYPES, |subject| {
            let slot = (tenant.clone(), subject.to_owned());
            if let Some(key) = keys.get(&slot) {
                return Ok::<_, std::convert::Infallible>(key.0);
            }
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            keys.insert(slot.clone(), SubjectKey(key));
            new_keys.push((slot.0, slot.1, SubjectKey(key)));
            Ok(key)
        })
        .unwrap_or_else(|never| match never {});
        let prev = end.last;
        let entry = encode_parts(&event, &digests, &prev.0);
        let hash = LeafHash(leaf_hash(&entry));
        let values = PersonalValues::of_parts(&event, &digests);
        let personal_values = (!values.is_empty()).then(|| values.to_bytes());
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
        // Only the actor "u" got a key; "v" of the failed request left none behind.
        let subjects: Vec<&str> = batch.new_keys.iter().map(|k| k.1.as_str()).collect();
        assert_eq!(subjects, vec!["u"]);
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
        // No personal values, so no subject key.
        assert!(batch.new_keys.is_empty());
    }
}
