//! The integrity conformance suite: what every backend's seal must withstand, written once.
//!
//! A backend gives a [`Harness`]: its store, its verify walk, and a way in as an attacker who
//! holds the database (the immutability triggers switched off) to change what is stored in the
//! backend's own terms. Every case then builds a log through the store, tampers, and checks
//! that the walk names the right event with the right kind; and that the database refuses
//! direct changes, that the sanctioned path changes rows and records itself or does nothing,
//! that shutdown writes every queued event and that a full queue refuses without losing one.
//!
//! A backend instantiates it with [`integrity_suite!`](crate::integrity_suite).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sealtrail_ledger::view::PersonalValues;
use sealtrail_model::Timestamp;
use serde_json::json;
use uuid::Uuid;

use crate::conformance::{prepared, tenant};
use crate::verify::{Kind, Report, WalkOptions};
use crate::{Appended, Checkpoint, EventFilter, ListQuery, Order, Store, StoreError, StoreResult};

/// A backend as the suite drives it.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;

    /// The store opened again on the same data (after [`Store::shutdown`] of the first).
    async fn reopen(&self) -> Arc<dyn Store>;

    /// The backend's verify walk over everything stored, trusting `keys`.
    async fn verify(&self, keys: HashMap<String, VerifyingKey>, options: WalkOptions) -> Report;

    /// Makes one change as an attacker holding the database would: past the triggers, and
    /// past any key that would keep two rows from claiming one position.
    async fn attack(&self, attack: Attack<'_>);

    /// The statements that change sealed data directly, each of which the database must refuse
    /// (they run with the triggers on); returns each one's error text, or `None` if it ran.
    async fn direct_changes(&self) -> Vec<(String, Option<String>)>;

    /// Through the sanctioned path: erases the personal values of `seq` of tenant `t` and
    /// records `audit`; with `fail`, the job then fails (and nothing must remain of it).
    async fn sanctioned(&self, seq: u64, fail: bool) -> StoreResult<Appended>;

    /// The stored personal values of `seq` of tenant `t`.
    async fn personal_values(&self, seq: u64) -> Option<Vec<u8>>;

    /// Where `needle` (as text, any case, or as its UTF-8 bytes) is found in what the backend
    /// keeps: for SQLite every byte of every file of the data directory, free pages and
    /// write-ahead logs included; for PostgreSQL every row of every table of the schema.
    /// Empty when it is nowhere.
    async fn traces(&self, needle: &str) -> Vec<String>;
}

/// A change an attacker makes to one tenant's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack<'a> {
    /// Replaces bytes inside the stored entry of `seq`.
    EntryBytes {
        /// The tenant.
        tenant: &'a str,
        /// The position.
        seq: u64,
        /// The bytes to find.
        from: &'a [u8],
        /// What to put instead (the same length).
        to: &'a [u8],
    },
    /// Cuts the stored entry of `seq` short.
    EntryCut {
        /// The tenant.
        tenant: &'a str,
        /// The position.
        seq: u64,
    },
    /// Replaces bytes inside the stored personal values of `seq`.
    PersonalBytes {
        /// The tenant.
        tenant: &'a str,
        /// The position.
        seq: u64,
        /// The bytes to find.
        from: &'a [u8],
        /// What to put instead (the same length).
        to: &'a [u8],
    },
    /// Replaces the leaf hash stored beside `seq`.
    LeafHash {
        /// The tenant.
        tenant: &'a str,
        /// The position.
        seq: u64,
    },
    /// Gives `seq` the value of a column that rows with an entry leave empty.
    Leftover {
        /// The tenant.
        tenant: &'a str,
        /// The position.
        seq: u64,
    },
    /// Deletes positions `from..=to`.
    Delete {
        /// The tenant.
        tenant: &'a str,
        /// The first position.
        from: u64,
        /// The last position.
        to: u64,
    },
    /// Swaps the positions of two events.
    Swap {
        /// The tenant.
        tenant: &'a str,
        /// One position.
        a: u64,
        /// The other.
        b: u64,
    },
    /// Adds a second event claiming `seq`: a copy of it with id `id` and `act.n` in its entry
    /// changed to `forge`.
    Duplicate {
        /// The tenant.
        tenant: &'a str,
        /// The position claimed.
        seq: u64,
        /// The forged event's id.
        id: Uuid,
    },
    /// Replaces the signature of a tenant's checkpoints.
    CheckpointSignature {
        /// The tenant.
        tenant: &'a str,
    },
    /// Drops the personal values stored beside `seq` (outside the sanctioned path).
    DropPersonal {
        /// The tenant.
        tenant: &'a str,
        /// The position.
        seq: u64,
    },
    /// Removes the content of `seq` as retention does, keeping its place, but with no receipt.
    RemoveContent {
        /// The tenant.
        tenant: &'a str,
        /// The position.
        seq: u64,
    },
}

/// Instantiates every integrity case as a `#[tokio::test]` in the calling module. `$make` is an
/// expression of type `impl Future<Output = Option<Arc<dyn Harness>>>` giving a harness over a
/// fresh, empty store (`None` when its database cannot be had; the maker says so or fails).
#[macro_export]
macro_rules! integrity_suite {
    ($make:expr) => {
        $crate::integrity_suite!(@cases $make;
            an_untouched_store_verifies,
            altering_what_is_sealed_is_caught_and_names_the_event,
            deleting_inserting_swapping_and_cutting_are_caught,
            a_forged_checkpoint_signature_is_caught,
            personal_values_dropped_outside_the_sanctioned_path_are_reported,
            the_report_does_not_depend_on_how_the_walk_is_spread,
            the_database_refuses_direct_changes,
            the_sanctioned_path_changes_rows_and_records_itself_or_does_nothing,
            shutdown_writes_every_acknowledged_event,
            a_full_queue_refuses_without_losing_an_acknowledged_event,
            events_after_the_newest_checkpoint_are_reported_as_uncovered,
            retention_archives_removes_and_the_rest_still_reads_and_verifies,
            anonymisation_erases_a_person_everywhere_and_every_proof_still_holds,
            an_anonymisation_cut_short_is_completed_by_the_next_call,
            an_anonymisation_whose_plan_fails_changes_nothing_and_lets_the_indexer_go,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $make.await else {
                    return;
                };
                let harness: ::std::sync::Arc<dyn $crate::integrity::Harness> = harness;
                $crate::integrity::$case(harness.clone()).await;
            }
        )*
    };
}

const KEY_ID: &str = "test-key";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn keys() -> HashMap<String, VerifyingKey> {
    HashMap::from([(KEY_ID.to_owned(), signing_key().verifying_key())])
}

/// Chunks of three positions on three workers: every case also crosses chunk boundaries and
/// merges results that arrive out of order.
fn options() -> WalkOptions {
    WalkOptions {
        chunk: 3,
        workers: 3,
    }
}

fn event(i: usize) -> serde_json::Value {
    let mut v = json!({"action": format!("act.n{}", i % 4), "category": "update",
        "actor": {"id": format!("u{}", i % 3), "name": "Ann", "email": "ann@example.com"},
        "target": {"type": "asset", "id": format!("a{i}")},
        "context": {"ip": "10.0.0.1", "correlation_id": format!("c{i}")},
        "related": [{"type": "ticket", "id": format!("k{}", i % 2)}],
        "changes": [{"field": "n", "old_value": i, "new_value": i + 1}]});
    if i.is_multiple_of(2) {
        v["event_type"] = json!("UPDATED");
        v["organization"] = json!({"id": "o1"});
    }
    v
}

/// `n` events in tenant `t` (in requests of three), one in `u`, checkpoints of both at their
/// full size. Returns the ids of `t`'s events by position (index 0 is seq 1).
async fn build(store: &dyn Store, n: usize) -> Vec<Uuid> {
    build_tenants(store, &["t"], n).await.remove(0)
}

/// `n` events in each tenant (in requests of three, interleaved), one in `u`, checkpoints of
/// every tenant at its full size. Returns each tenant's ids by position.
async fn build_tenants(store: &dyn Store, tenants: &[&str], n: usize) -> Vec<Vec<Uuid>> {
    let mut ids = vec![Vec::new(); tenants.len()];
    for start in (0..n).step_by(3) {
        for (k, t) in tenants.iter().enumerate() {
            let events: Vec<_> = (start..(start + 3).min(n))
                .map(|i| prepared(t, event(i)))
                .collect();
            ids[k].extend(events.iter().map(|e| e.id));
            store.append(events).await.expect("append");
        }
    }
    store
        .append(vec![prepared(
            "u",
            json!({"action": "x", "actor": {"id": "v", "name": "Vi"}}),
        )])
        .await
        .expect("append");
    for head in store.tree_heads().await.expect("heads") {
        let cp = Checkpoint::sign(&head, Timestamp::now(), KEY_ID, &signing_key());
        store.put_checkpoint(cp).await.expect("checkpoint");
    }
    ids
}

/// Builds a log, closes the store, and returns the harness ready for an attack.
async fn built(harness: &Arc<dyn Harness>, n: usize) -> Vec<Uuid> {
    let store = harness.store();
    let ids = build(&*store, n).await;
    store.shutdown().await;
    ids
}

/// An untouched store verifies: every event walked, every checkpoint checked.
pub async fn an_untouched_store_verifies(harness: Arc<dyn Harness>) {
    built(&harness, 13).await;
    let report = harness.verify(keys(), options()).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    assert_eq!(
        (report.tenants, report.events, report.checkpoints),
        (2, 14, 2)
    );
    assert_eq!(report.uncovered, vec![]);
}

/// Changing any byte that is sealed, or anything stored beside it, is caught at the event's
/// own position and names it.
pub async fn altering_what_is_sealed_is_caught_and_names_the_event(harness: Arc<dyn Harness>) {
    let ids = built(&harness, 12).await;
    // Each attack on a different event, so that each is the one named where it is.
    let tenant = "t";
    let attacks = [
        Attack::EntryBytes {
            tenant,
            seq: 2,
            from: b"act.n1",
            to: b"act.x1",
        },
        Attack::EntryCut { tenant, seq: 4 },
        Attack::PersonalBytes {
            tenant,
            seq: 6,
            from: b"Ann",
            to: b"Eve",
        },
        Attack::LeafHash { tenant, seq: 8 },
        Attack::Leftover { tenant, seq: 10 },
        // Another correlation id inside the sealed bytes.
        Attack::EntryBytes {
            tenant,
            seq: 12,
            from: b"c11",
            to: b"c99",
        },
    ];
    for attack in attacks {
        harness.attack(attack).await;
    }
    let report = harness.verify(keys(), options()).await;
    let named: Vec<(u64, Kind, Option<Uuid>)> = report
        .findings
        .iter()
        .map(|f| (f.seq, f.kind, f.id))
        .collect();
    for seq in [2u64, 4, 6, 8, 10, 12] {
        assert!(
            named.contains(&(seq, Kind::Altered, Some(ids[seq as usize - 1]))),
            "seq {seq} is named altered: {named:?}"
        );
    }
    assert_eq!(report.findings[0].seq, 2, "the first one first");
}

/// A row removed from the middle, a second row claiming a position, two rows swapped and a
/// tail cut after the checkpoint are each caught at the right place (each in a log of its own).
pub async fn deleting_inserting_swapping_and_cutting_are_caught(harness: Arc<dyn Harness>) {
    let store = harness.store();
    let ids = build_tenants(&*store, &["d", "i", "s", "c"], 12).await;
    store.shutdown().await;
    let forged = Uuid::new_v4();
    harness
        .attack(Attack::Delete {
            tenant: "d",
            from: 5,
            to: 5,
        })
        .await;
    harness
        .attack(Attack::Duplicate {
            tenant: "i",
            seq: 6,
            id: forged,
        })
        .await;
    harness
        .attack(Attack::Swap {
            tenant: "s",
            a: 3,
            b: 9,
        })
        .await;
    harness
        .attack(Attack::Delete {
            tenant: "c",
            from: 8,
            to: 12,
        })
        .await;
    let report = harness.verify(keys(), options()).await;
    let first = |tenant: &str| {
        report
            .findings
            .iter()
            .find(|f| f.tenant == tenant)
            .map(|f| (f.seq, f.id, f.kind))
            .unwrap_or_else(|| panic!("nothing found in {tenant}: {:?}", report.findings))
    };
    assert_eq!(first("d"), (5, None, Kind::Missing));
    // Whichever of the two rows claiming 6 the walk meets first, the forged one is named there.
    assert!(
        report.findings.iter().any(|f| f.tenant == "i"
            && f.seq == 6
            && f.id == Some(forged)
            && matches!(f.kind, Kind::Inserted | Kind::Altered)),
        "{:?}",
        report.findings
    );
    assert_eq!(first("i").0, 6);
    assert_eq!(first("s"), (3, Some(ids[2][8]), Kind::Reordered));
    assert_eq!(first("c"), (8, None, Kind::Truncated));
}

/// A checkpoint whose signature was replaced proves nothing and is reported at its size.
pub async fn a_forged_checkpoint_signature_is_caught(harness: Arc<dyn Harness>) {
    built(&harness, 6).await;
    harness
        .attack(Attack::CheckpointSignature { tenant: "t" })
        .await;
    let report = harness.verify(keys(), options()).await;
    let f = &report.findings;
    assert_eq!(
        (f[0].seq, f[0].id, f[0].kind),
        (6, None, Kind::BadSignature),
        "{f:?}"
    );
}

/// Anonymisation erases a subject's values and key together; a key erased with the values left
/// (or put back) is caught at the subject's first event.
pub async fn personal_values_dropped_outside_the_sanctioned_path_are_reported(
    harness: Arc<dyn Harness>,
) {
    built(&harness, 4).await;
    harness
        .attack(Attack::DropPersonal {
            tenant: "t",
            seq: 2,
        })
        .await;
    let report = harness.verify(keys(), options()).await;
    let first = report.findings.first().expect("caught");
    assert_eq!((first.seq, first.kind), (2, Kind::Altered), "{first}");
    assert!(first.detail.contains("missing"), "{first}");
}

/// The stored personal values of a version-2 entry with every value erased, as the sanctioned
/// path's test job writes them: ids replaced by a fixed pseudonym, every other value gone.
pub fn erased(values: &[u8]) -> Vec<u8> {
    use sealtrail_ledger::personal::{Held, Slot, rewrite};
    rewrite(values, |slot, _| match slot {
        Slot::ActorId | Slot::TargetId => Held::Replaced("anon_0000000000000000"),
        _ => Held::Erased,
    })
    .expect("version-2 personal values")
}

/// However the walk is cut into chunks and spread over workers, it reports the same.
pub async fn the_report_does_not_depend_on_how_the_walk_is_spread(harness: Arc<dyn Harness>) {
    built(&harness, 12).await;
    harness
        .attack(Attack::EntryBytes {
            tenant: "t",
            seq: 4,
            from: b"act.n3",
            to: b"act.x3",
        })
        .await;
    harness
        .attack(Attack::Delete {
            tenant: "t",
            from: 9,
            to: 9,
        })
        .await;
    let expected = harness.verify(keys(), WalkOptions::default()).await;
    let kinds: Vec<(u64, Kind)> = expected.findings.iter().map(|f| (f.seq, f.kind)).collect();
    assert_eq!(
        kinds[..2],
        [(4, Kind::Altered), (9, Kind::Missing)],
        "{kinds:?}"
    );
    for chunk in [1, 2, 5, 100] {
        for workers in [1, 2, 4] {
            let report = harness.verify(keys(), WalkOptions { chunk, workers }).await;
            assert_eq!(report, expected, "chunk {chunk}, {workers} workers");
        }
    }
}

/// The database itself refuses to change or remove sealed rows outside the sanctioned path.
pub async fn the_database_refuses_direct_changes(harness: Arc<dyn Harness>) {
    built(&harness, 3).await;
    for (sql, refused) in harness.direct_changes().await {
        let message = refused.unwrap_or_else(|| panic!("{sql} was not refused"));
        assert!(message.contains("immutable"), "{sql}: {message}");
    }
    let report = harness.verify(keys(), options()).await;
    assert_eq!(report.findings, vec![], "nothing changed");
}

/// The sanctioned path changes rows (as anonymisation does), records the act as the next event
/// in the same transaction, keeps every seal valid; a job that fails leaves nothing.
pub async fn the_sanctioned_path_changes_rows_and_records_itself_or_does_nothing(
    harness: Arc<dyn Harness>,
) {
    let store = harness.store();
    build(&*store, 3).await;
    let before = harness.personal_values(1).await.expect("values");
    let appended = harness.sanctioned(1, false).await.expect("sanctioned");
    assert_eq!(appended.seq, 4, "the act is the next event of the log");
    let after = harness.personal_values(1).await.expect("the erased form");
    assert_eq!(after, erased(&before), "the job's change");
    let values = PersonalValues::from_bytes(&after).expect("well formed");
    assert!(values.is_empty(), "nothing personal is left");
    let before = harness.personal_values(2).await;
    let failed = harness.sanctioned(2, true).await;
    assert!(failed.is_err(), "the job failed");
    assert_eq!(
        harness.personal_values(2).await,
        before,
        "nothing of a failed job remains"
    );
    let next = store
        .append(vec![prepared("t", event(9))])
        .await
        .expect("append");
    assert_eq!(next[0].seq, 5, "and no audit event of it");
    store.shutdown().await;
    // Values erased, their digests and every hash kept: the walk finds nothing.
    let report = harness.verify(keys(), options()).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    assert_eq!(report.events, 6);
}

/// Shutdown lets queued appends finish: every event acknowledged before it is stored, and the
/// log stays gap-free.
pub async fn shutdown_writes_every_acknowledged_event(harness: Arc<dyn Harness>) {
    let store = harness.store();
    let mut tasks = Vec::new();
    for c in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..200 {
                match store.append(vec![prepared("t", event(c * 1000 + i))]).await {
                    Ok(a) => acked.push(a[0].id),
                    Err(StoreError::Closed) => break,
                    Err(e) => panic!("append: {e}"),
                }
            }
            acked
        }));
    }
    tokio::task::yield_now().await;
    store.shutdown().await;
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("client"));
    }
    let store = harness.reopen().await;
    let t = tenant("t");
    for id in &acked {
        assert!(
            store.get(&t, *id).await.expect("get").is_some(),
            "acknowledged {id} is stored"
        );
    }
    let heads = store.tree_heads().await.expect("heads");
    let size = heads.iter().find(|h| h.tenant == t).map_or(0, |h| h.size);
    assert_eq!(
        size,
        acked.len() as u64,
        "no event that was not acknowledged"
    );
    store.shutdown().await;
    assert_eq!(harness.verify(keys(), options()).await.findings, vec![]);
}

/// A full queue answers at once with `Overloaded`; every event acknowledged is stored, and
/// none that was refused.
pub async fn a_full_queue_refuses_without_losing_an_acknowledged_event(harness: Arc<dyn Harness>) {
    let store = harness.store();
    let mut tasks = Vec::new();
    for c in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0);
            for i in 0..40 {
                let batch: Vec<_> = (0..50)
                    .map(|j| prepared("t", event(c * 10_000 + i * 50 + j)))
                    .collect();
                let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
                match store.append(batch).await {
                    Ok(_) => acked.extend(ids),
                    Err(StoreError::Overloaded) => refused += 1,
                    Err(e) => panic!("append: {e}"),
                }
            }
            (acked, refused)
        }));
    }
    let (mut acked, mut refused) = (Vec::new(), 0);
    for task in tasks {
        let (a, r) = task.await.expect("client");
        acked.extend(a);
        refused += r;
    }
    let seen = store
        .list(ListQuery {
            tenant: tenant("t"),
            filter: EventFilter::default(),
            order: Order::Asc,
            limit: 1000,
            cursor: None,
        })
        .await
        .expect("list");
    assert!(seen.items.len() <= 1000);
    let heads = store.tree_heads().await.expect("heads");
    let size = heads.iter().find(|h| h.tenant == "t").map_or(0, |h| h.size);
    assert_eq!(size, acked.len() as u64, "exactly the acknowledged events");
    assert!(
        refused > 0,
        "the queue of the harness is small enough to fill"
    );
    let t = tenant("t");
    for id in acked.iter().step_by(97) {
        assert!(store.get(&t, *id).await.expect("get").is_some());
    }
    store.shutdown().await;
}

/// Events after the newest checkpoint are not tampering, but the report says how many no
/// signature vouches for yet.
pub async fn events_after_the_newest_checkpoint_are_reported_as_uncovered(
    harness: Arc<dyn Harness>,
) {
    built(&harness, 5).await;
    let store = harness.reopen().await;
    store
        .append(vec![prepared("t", event(20)), prepared("t", event(21))])
        .await
        .expect("append");
    store.shutdown().await;
    let report = harness.verify(keys(), options()).await;
    assert_eq!(
        report.findings,
        vec![],
        "uncovered events are not tampering"
    );
    let uncovered: Vec<(&str, u64)> = report
        .uncovered
        .iter()
        .map(|(t, u)| (t.as_str(), u.events))
        .collect();
    assert_eq!(uncovered, vec![("t", 2)]);
}

/// The events of the retention case: 48 in tenant `r` with ages of 1, 10, 40 and 100 days, the
/// actions `auth.login`, `auth.logout`, `invoice.paid` and `doc.read` and four actors, each
/// with a client id; `(event, age in days)`.
fn aged_events(now: Timestamp) -> Vec<(serde_json::Value, i64)> {
    (0..48)
        .map(|i| {
            let age = [1i64, 10, 40, 100][i % 4];
            let at = now.micros() - age * 86_400_000_000 - i as i64 * 1_000_000;
            let action = ["auth.login", "auth.logout", "invoice.paid", "doc.read"][(i / 4) % 4];
            let mut v = json!({
                "id": Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + i as u128).to_string(),
                "action": action,
                "occurred_at": Timestamp::from_micros(at).to_rfc3339(),
                "actor": {"id": format!("u{}", i % 4), "name": "Ann", "email": "ann@example.com"},
                "target": {"type": "doc", "id": format!("d{}", i % 5)},
                "context": {"ip": "10.0.0.1"},
            });
            if i % 6 == 0 {
                v["outcome"] = json!("failure");
            }
            (v, age)
        })
        .collect()
}

/// The ids a list of everything in `r` answers, oldest first.
async fn ids_listed(store: &dyn Store, filter: crate::fields::EventFilter) -> Vec<Uuid> {
    let page = store
        .list(ListQuery {
            tenant: tenant("r"),
            filter,
            order: Order::Asc,
            limit: 1000,
            cursor: None,
        })
        .await
        .expect("list");
    page.items
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(e.body.get()).expect("json");
            v["id"].as_str().expect("id").parse().expect("uuid")
        })
        .collect()
}

/// Retention: the expired events no hold keeps are archived (a gzip'd export that verifies
/// offline, its tampering caught) and removed with a receipt naming their range; every read
/// (filters, time ranges, statistics, by id) answers as if they had never been, before and
/// after the derived data is rebuilt; a retry of one is still a duplicate; a second run removes
/// nothing; and the walk verifies what remains, accounting for each removed event by the
/// receipt, while content removed any other way is caught.
pub async fn retention_archives_removes_and_the_rest_still_reads_and_verifies(
    harness: Arc<dyn Harness>,
) {
    use crate::retention::{Hold, Policy, Rule, Run};
    let store = harness.store();
    let now = Timestamp::now();
    let events = aged_events(now);
    let mut recorded = Vec::new();
    for batch in events.chunks(5) {
        let prepared_events = batch
            .iter()
            .map(|(v, _)| prepared("r", v.clone()))
            .collect();
        let appended = store.append(prepared_events).await.expect("append");
        recorded.extend(appended.iter().map(|a| a.recorded_at));
    }
    for head in store.tree_heads().await.expect("heads") {
        let cp = Checkpoint::sign(&head, Timestamp::now(), KEY_ID, &signing_key());
        store.put_checkpoint(cp).await.expect("checkpoint");
    }
    let policy = Policy {
        default_days: Some(30),
        rules: vec![
            Rule {
                action_prefix: "auth.".into(),
                days: 365,
            },
            Rule {
                action_prefix: "auth.login".into(),
                days: 7,
            },
        ],
    };
    let holds = vec![Hold {
        name: "case-42".into(),
        filter: crate::fields::EventFilter::default().with(crate::fields::ACTOR_ID, ["u3"]),
    }];
    // Expected by brute force: seq i + 1 expires by its action's days, unless u3 did it.
    let id_of =
        |v: &serde_json::Value| -> Uuid { v["id"].as_str().expect("id").parse().expect("uuid") };
    let expired: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, (v, age))| {
            policy
                .days_for(v["action"].as_str().expect("action"))
                .is_some_and(|d| *age > i64::from(d))
        })
        .map(|(i, _)| i)
        .collect();
    let held = expired
        .iter()
        .filter(|&&i| events[i].0["actor"]["id"] == "u3")
        .count() as u64;
    let gone: Vec<usize> = expired
        .iter()
        .copied()
        .filter(|&i| events[i].0["actor"]["id"] != "u3")
        .collect();
    assert!(
        gone.len() >= 10 && held > 0,
        "the case removes some and holds some"
    );
    let all_ids: Vec<Uuid> = events.iter().map(|(v, _)| id_of(v)).collect();
    let kept: Vec<Uuid> = (0..events.len())
        .filter(|i| !gone.contains(i))
        .map(|i| all_ids[i])
        .collect();

    let dir = std::env::temp_dir().join(format!("sealtrail-retention-{}", Uuid::new_v4()));
    let receipt = |o: &crate::retention::Outcome| {
        let (from, to) = o.range.expect("a range");
        let cp = o.checkpoint.as_ref().expect("a checkpoint");
        prepared(
            "r",
            json!({"action": crate::verify::PURGED, "actor": {"id": "retention", "type": "system"},
            "metadata": {"from_seq": from, "to_seq": to, "count": o.purged,
                "checkpoint": {"size": cp.size, "root_hash": cp.root.to_hex()}}}),
        )
    };
    let mut run = Run {
        tenant: &tenant("r"),
        policy: &policy,
        holds: &holds,
        now,
        archive_dir: &dir,
        dry_run: true,
    };
    // A dry run counts and changes nothing.
    let dry = crate::retention::run(&*store, &run, &receipt)
        .await
        .expect("dry run");
    assert_eq!(
        (dry.purged, dry.held, dry.archive.clone()),
        (gone.len() as u64, held, None)
    );
    assert_eq!(ids_listed(&*store, Default::default()).await, all_ids);
    run.dry_run = false;
    let done = crate::retention::run(&*store, &run, &receipt)
        .await
        .expect("run");
    assert_eq!((done.purged, done.held), (gone.len() as u64, held));
    assert_eq!(
        done.range,
        Some((gone[0] as u64 + 1, *gone.last().expect("one") as u64 + 1))
    );
    let (archive, _) = done.archive.clone().expect("an archive");
    assert!(archive.starts_with(dir.join("r")), "{archive:?}");

    // Reads answer as if the removed events had never been, on every path.
    let check_reads = |label: &'static str| {
        let store = store.clone();
        let events = events.clone();
        let kept = kept.clone();
        let gone = gone.clone();
        let all_ids = all_ids.clone();
        async move {
            // Everything, less the receipt (written now).
            let listed: Vec<Uuid> = ids_listed(&*store, Default::default())
                .await
                .into_iter()
                .filter(|id| all_ids.contains(id))
                .collect();
            assert_eq!(listed, kept, "{label}: all");
            let logins: Vec<Uuid> = kept
                .iter()
                .copied()
                .filter(|id| {
                    let i = all_ids.iter().position(|x| x == id).expect("known");
                    events[i].0["action"] == "invoice.paid"
                })
                .collect();
            let filter =
                crate::fields::EventFilter::default().with(crate::fields::ACTION, ["invoice.paid"]);
            assert_eq!(
                ids_listed(&*store, filter).await,
                logins,
                "{label}: by action"
            );
            let (from, to) = (
                Timestamp::from_micros(now.micros() - 200 * 86_400_000_000),
                now,
            );
            let timed = crate::fields::EventFilter {
                from: Some(from),
                to: Some(to),
                ..Default::default()
            };
            assert_eq!(ids_listed(&*store, timed).await, kept, "{label}: by time");
            let words = crate::fields::EventFilter {
                words: vec!["ann".into()],
                ..Default::default()
            };
            assert_eq!(ids_listed(&*store, words).await, kept, "{label}: by word");
            for &i in &gone {
                assert!(
                    store
                        .get(&tenant("r"), all_ids[i])
                        .await
                        .expect("get")
                        .is_none(),
                    "{label}: by id"
                );
            }
            let stats = store
                .statistics(crate::stats::StatsQuery {
                    tenant: tenant("r"),
                    from,
                    to,
                    bucket: crate::rollup::Span::Day,
                    top: 10,
                })
                .await
                .expect("statistics");
            let failures = kept
                .iter()
                .filter(|id| {
                    let i = all_ids.iter().position(|x| x == *id).expect("known");
                    events[i].0["outcome"] == "failure"
                })
                .count() as u64;
            assert_eq!(
                (stats.total, stats.failures),
                (kept.len() as u64, failures),
                "{label}: statistics"
            );
            let per_actor: u64 = stats.top_actors.iter().map(|(_, n)| n).sum();
            assert_eq!(per_actor, kept.len() as u64, "{label}: top actors");
        }
    };
    check_reads("after the run").await;
    // A retry of a removed event is still a duplicate, not a new event.
    let retry = store
        .append(vec![prepared("r", events[gone[0]].0.clone())])
        .await
        .expect("retry");
    assert!(retry[0].duplicate, "{retry:?}");
    assert_eq!(retry[0].seq, gone[0] as u64 + 1);
    assert_eq!(
        retry[0].recorded_at, recorded[gone[0]],
        "answered as first stored"
    );
    // The receipt names the range, the count and the checkpoint.
    let receipts = ids_listed(
        &*store,
        crate::fields::EventFilter::default().with(crate::fields::ACTION, [crate::verify::PURGED]),
    )
    .await;
    assert_eq!(receipts.len(), 1);
    // A second run finds nothing more to remove.
    let again = crate::retention::run(&*store, &run, &receipt)
        .await
        .expect("second run");
    assert_eq!((again.purged, again.archive), (0, None));
    // The derived data rebuilt from the log reads the same.
    store.reindex(Box::new(|_, _| {})).await.expect("reindex");
    check_reads("after a reindex").await;

    // The archive verifies offline against the checkpoint; a changed event in it is caught.
    let bytes = std::fs::read(&archive).expect("archive");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .expect("gzip");
    let (findings, count) =
        crate::verify::verify_export_reader(text.as_bytes(), &keys()).expect("archive reads");
    assert_eq!((findings, count), (vec![], gone.len() as u64));
    let altered = text.replacen("\"auth.login\"", "\"auth.logon\"", 1);
    let (findings, _) =
        crate::verify::verify_export_reader(altered.as_bytes(), &keys()).expect("archive reads");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].kind, Kind::Altered);
    let _ = std::fs::remove_dir_all(&dir);

    // The walk verifies what remains.
    store.shutdown().await;
    let report = harness.verify(keys(), options()).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    // Content removed without a receipt: outside every receipt's range, it is missing; inside
    // one, the receipts no longer add up.
    let last = events.len() as u64;
    let inside = (1..=last)
        .find(|s| {
            !gone.contains(&(*s as usize - 1))
                && *s > gone[0] as u64 + 1
                && *s < *gone.last().expect("one") as u64 + 1
        })
        .expect("a kept event inside the range");
    harness
        .attack(Attack::RemoveContent {
            tenant: "r",
            seq: last,
        })
        .await;
    harness
        .attack(Attack::RemoveContent {
            tenant: "r",
            seq: inside,
        })
        .await;
    let report = harness.verify(keys(), options()).await;
    let named: Vec<(u64, Kind)> = report.findings.iter().map(|f| (f.seq, f.kind)).collect();
    assert!(named.contains(&(last, Kind::Missing)), "{named:?}");
    assert!(
        named.contains(&(last + 1, Kind::Altered)),
        "the receipt's count: {named:?}"
    );
}

/// What the anonymisation case erases: a person's id, name, e-mail, ip and user agent, as
/// they are written and as full-text search keeps their words.
const ERASABLE: [&str; 8] = [
    "u-ann-erasable",
    "Ann Erasable",
    "ann.erasable@example.com",
    "ann.new@example.com",
    "203.0.113.77",
    "ErasableAgent",
    "erasable",
    "erasableagent",
];

/// Anonymisation (SPEC §4.5, §12) erases a person — as the actor of some events, as the
/// (person) target of another, in change values — from the log, the derived data (filters,
/// full-text, rollups) and the bytes the backend keeps; leaves every other value, every hash
/// and every proof as it was; gives a stable pseudonym; records itself; and does nothing the
/// second time.
pub async fn anonymisation_erases_a_person_everywhere_and_every_proof_still_holds(
    harness: Arc<dyn Harness>,
) {
    let store = harness.store();
    let ann = json!({"id": "u-ann-erasable", "type": "user", "name": "Ann Erasable",
                     "email": "ann.erasable@example.com"});
    let context =
        json!({"ip": "203.0.113.77", "user_agent": "ErasableAgent/1.0", "method": "POST"});
    let events = [
        json!({"action": "asset.updated", "actor": ann, "context": context,
               "target": {"type": "asset", "id": "a1", "name": "Laptop"},
               "changes": [{"field": "owner", "old_value": "ann.erasable@example.com",
                            "new_value": "it@example.com"}]}),
        json!({"action": "user.updated", "actor": {"id": "u-bo", "name": "Bo Kept"},
               "target": {"type": "user", "id": "u-ann-erasable", "name": "Ann Erasable"},
               "changes": [{"field": "email", "old_value": "ann.erasable@example.com",
                            "new_value": "ann.new@example.com"}]}),
        json!({"action": "report.viewed", "actor": ann, "context": context}),
        json!({"action": "asset.updated", "actor": {"id": "u-bo", "name": "Bo Kept"},
               "target": {"type": "asset", "id": "a2"}}),
    ];
    for e in events {
        store.append(vec![prepared("t", e)]).await.expect("append");
    }
    // Indexed, then one more that is not yet: both paths of the derived data are scrubbed.
    store.settle().await.expect("settle");
    store
        .append(vec![prepared(
            "t",
            json!({"action": "user.login", "actor": ann, "context": context}),
        )])
        .await
        .expect("append");
    // What the backend keeps holds the person now (so that finding nothing below means
    // something).
    for needle in ["Ann Erasable", "ann.erasable@example.com", "203.0.113.77"] {
        assert_ne!(
            harness.traces(needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    let t = crate::conformance::tenant("t");
    let anonymize = |store: Arc<dyn Store>| async move {
        crate::anonymize::anonymize(&*store, &crate::conformance::tenant("t"), "u-ann-erasable", |n, p| {
            Ok(prepared(
                "t",
                json!({"action": "audit.anonymized", "actor": {"id": "admin", "type": "service"},
                       "metadata": {"events_updated": n, "pseudonym": p}}),
            ))
        })
        .await
        .expect("anonymize")
    };
    let done = anonymize(store.clone()).await;
    assert_eq!(done.events_updated, 4, "seq 1, 2, 3 and 5");
    assert_eq!(done.audit.seq, 6, "the act is the next event");
    assert!(sealtrail_ledger::personal::is_pseudonym(&done.pseudonym));
    let again = anonymize(store.clone()).await;
    assert_eq!(again.events_updated, 0, "nothing is left to erase");
    assert_eq!(again.pseudonym, done.pseudonym, "the pseudonym is stable");

    let seqs = |filter: EventFilter| crate::conformance::seqs_listed(&*store, &t, filter);
    let pseudonym = done.pseudonym.as_str();
    for settled in [false, true] {
        if settled {
            store.settle().await.expect("settle");
        }
        let by = |field, value: &str| EventFilter::default().with(field, [value]);
        assert_eq!(
            seqs(by(crate::fields::ACTOR_ID, "u-ann-erasable")).await,
            Vec::<u64>::new()
        );
        assert_eq!(
            seqs(by(crate::fields::ACTOR_ID, pseudonym)).await,
            vec![1, 3, 5]
        );
        assert_eq!(seqs(by(crate::fields::TARGET_ID, pseudonym)).await, vec![2]);
        assert_eq!(seqs(by(crate::fields::ACTOR_ID, "u-bo")).await, vec![2, 4]);
        let words = |w: &str| EventFilter {
            words: vec![w.to_owned()],
            ..EventFilter::default()
        };
        assert_eq!(
            seqs(words("erasable")).await,
            Vec::<u64>::new(),
            "settled: {settled}"
        );
        assert_eq!(seqs(words("laptop")).await, vec![1]);
    }
    let shown = |seq: u64| {
        let (store, t) = (store.clone(), t.clone());
        async move {
            let page = store
                .list(ListQuery {
                    tenant: t,
                    filter: EventFilter::default(),
                    order: Order::Asc,
                    limit: 100,
                    cursor: None,
                })
                .await
                .expect("list");
            let event = page
                .items
                .into_iter()
                .find(|e| e.seq == seq)
                .expect("event");
            serde_json::from_str::<serde_json::Value>(event.body.get()).expect("json")
        }
    };
    let first = shown(1).await;
    assert_eq!(
        first["actor"],
        json!({"id": pseudonym, "type": "user", "name": null, "email": null})
    );
    assert_eq!(
        (&first["context"]["ip"], &first["context"]["user_agent"]),
        (&json!(null), &json!(null))
    );
    assert_eq!(first["context"]["method"], "POST");
    assert_eq!(first["target"]["name"], "Laptop");
    assert_eq!(first["changes"][0]["old_value"], "[REDACTED]");
    assert_eq!(first["changes"][0]["new_value"], "it@example.com");
    assert_eq!(first["changes"][0]["changed_by"], pseudonym);
    let second = shown(2).await;
    assert_eq!(
        second["actor"]["name"], "Bo Kept",
        "only the subject's data goes"
    );
    assert_eq!(
        second["target"],
        json!({"type": "user", "id": pseudonym, "name": null})
    );
    assert_eq!(second["changes"][0]["new_value"], "[REDACTED]");
    store.shutdown().await;
    // Nothing of the person is left anywhere the backend keeps data.
    for needle in ERASABLE {
        assert_eq!(
            harness.traces(needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    // Every seal holds: the walk finds nothing, before and after a new checkpoint.
    let report = harness.verify(keys(), options()).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    assert_eq!(report.events, 7);
}

/// An anonymisation cut short after its log was rewritten (the process died before the derived
/// data followed) leaves filters and search holding what the events held; the next call finds
/// those events by it, derives them again from the log, and answers 0: nothing was left to erase.
pub async fn an_anonymisation_cut_short_is_completed_by_the_next_call(harness: Arc<dyn Harness>) {
    let store = harness.store();
    let t = crate::conformance::tenant("t");
    for i in 0..4 {
        let actor = if i % 2 == 0 {
            json!({"id": "u-cut", "name": "Cut Short"})
        } else {
            json!({"id": "u-other", "name": "Other Person"})
        };
        store
            .append(vec![prepared(
                "t",
                json!({"action": "doc.read", "actor": actor}),
            )])
            .await
            .expect("append");
    }
    store.settle().await.expect("settle");
    let audit = |n: u64, p: &str| {
        prepared(
            "t",
            json!({"action": "audit.anonymized", "actor": {"id": "admin", "type": "service"},
                   "metadata": {"events_updated": n, "pseudonym": p}}),
        )
    };
    // The log's half alone: the rows are rewritten, the derived data is not told.
    let secret = crate::anonymize::pseudonym_secret(&*store, &t)
        .await
        .expect("secret");
    let pseudonym = crate::anonymize::pseudonym(&secret, "u-cut");
    let rows: std::collections::BTreeMap<u64, crate::rows::LogRow> = first_rows(&*store, &t)
        .await
        .expect("rows")
        .into_iter()
        .filter(|r| r.seq == 1 || r.seq == 3)
        .map(|r| (r.seq, r))
        .collect();
    let mut half = crate::anonymize::plan(&rows, "u-cut", &pseudonym);
    assert_eq!(half.rewrites.len(), 2);
    half.terms.clear();
    store
        .rewrite_personal(&t, crate::anonymize::planned(half, audit(2, &pseudonym)))
        .await
        .expect("the log's half");
    let found = |filter: EventFilter| crate::conformance::seqs_listed(&*store, &t, filter);
    let by_id = || EventFilter::default().with(crate::fields::ACTOR_ID, ["u-cut"]);
    assert_eq!(
        found(by_id()).await,
        vec![1, 3],
        "the derived data is stale"
    );
    let done = crate::anonymize::anonymize(&*store, &t, "u-cut", |n, p| Ok(audit(n, p)))
        .await
        .expect("anonymize");
    assert_eq!(done.events_updated, 0, "nothing was left in the log");
    assert_eq!(found(by_id()).await, Vec::<u64>::new());
    assert_eq!(
        found(EventFilter::default().with(crate::fields::ACTOR_ID, [pseudonym.as_str()])).await,
        vec![1, 3]
    );
    let words = EventFilter {
        words: vec!["cut".into()],
        ..EventFilter::default()
    };
    assert_eq!(
        found(words).await,
        Vec::<u64>::new(),
        "the name's words are gone"
    );
    store.shutdown().await;
    for needle in ["u-cut", "Cut Short"] {
        assert_eq!(
            harness.traces(needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
}

/// The first ten stored rows of tenant `t`, oldest first.
async fn first_rows(
    store: &dyn Store,
    t: &sealtrail_model::Tenant,
) -> crate::StoreResult<Vec<crate::rows::LogRow>> {
    let page = store
        .list_rows(ListQuery {
            tenant: t.clone(),
            filter: EventFilter::default(),
            order: Order::Asc,
            limit: 10,
            cursor: None,
        })
        .await?;
    Ok(page.rows)
}

/// The store holds its indexer while an anonymisation's rows are read; a plan that fails
/// leaves the log and the derived data as they were, appends no audit event, and lets the
/// indexer go (new events are still indexed).
pub async fn an_anonymisation_whose_plan_fails_changes_nothing_and_lets_the_indexer_go(
    harness: Arc<dyn Harness>,
) {
    let store = harness.store();
    let t = crate::conformance::tenant("t");
    let event = || prepared("t", json!({"action": "doc.read", "actor": {"id": "u-x"}}));
    store.append(vec![event(), event()]).await.expect("append");
    store.settle().await.expect("settle");
    let failed = store
        .rewrite_personal(
            &t,
            Box::pin(async {
                // Read while the indexer is held: the events are still served.
                assert_eq!(first_rows(&*store, &t).await?.len(), 2);
                Err(crate::StoreError::Database(
                    "the plan could not be made".into(),
                ))
            }),
        )
        .await;
    assert!(
        matches!(&failed, Err(crate::StoreError::Database(m)) if m == "the plan could not be made"),
        "{failed:?}"
    );
    store.append(vec![event()]).await.expect("append");
    tokio::time::timeout(std::time::Duration::from_secs(60), store.settle())
        .await
        .expect("the indexer was let go")
        .expect("settle");
    let by_id = EventFilter::default().with(crate::fields::ACTOR_ID, ["u-x"]);
    assert_eq!(
        crate::conformance::seqs_listed(&*store, &t, by_id).await,
        vec![1, 2, 3]
    );
    let audits = EventFilter::default().with(crate::fields::ACTION, ["audit.anonymized"]);
    assert_eq!(
        crate::conformance::seqs_listed(&*store, &t, audits).await,
        Vec::<u64>::new()
    );
    store.shutdown().await;
    let report = harness.verify(keys(), options()).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    assert_eq!(report.events, 3);
}
