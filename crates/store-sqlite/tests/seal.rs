//! The seal of the SQLite store, checked in the file itself beyond the shared integrity suite:
//! leaves that recompute from the stored rows, personal values held with their openings and
//! no subject key made, and a store of schema 3 (with rows from before entries, written by an
//! earlier build) upgraded to the log.

use sealtrail_ledger::entry::{EntryParts, GENESIS, reencode_v2};
use sealtrail_ledger::leaf_hash;
use sealtrail_ledger::view::{EntryView, PersonalValues};
use sealtrail_store::Store;
use sealtrail_store::conformance::prepared;
use sealtrail_store_sqlite::{SqliteConfig, SqliteStore};
use serde_json::json;

async fn store_with_events() -> (SqliteStore, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("dir").keep();
    let store = SqliteStore::open(&SqliteConfig::new(&dir)).expect("open");
    for i in 0..5 {
        store
            .append(vec![prepared(
                "t",
                json!({"action": "user.updated", "actor": {"id": "u1", "name": "Ann", "email": "ann@example.com"},
                       "target": {"type": "user", "id": format!("p{i}"), "name": "Bo"},
                       "context": {"ip": "10.0.0.1", "user_agent": "ua"},
                       "changes": [{"field": "n", "old_value": i, "new_value": i + 1}]}),
            )])
            .await
            .expect("append");
    }
    (store, dir.join(sealtrail_store_sqlite::DB_FILE))
}

/// The verify walk over the store file, trusting no checkpoint key (none are stored here).
fn walk(path: &std::path::Path) -> sealtrail_store_sqlite::verify::Report {
    sealtrail_store_sqlite::verify::verify_store(
        path,
        &std::collections::HashMap::new(),
        &mut |_| {},
    )
    .expect("walk")
}

fn raw(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open raw")
}

/// Recomputes every leaf of tenant `t` from its row and checks it against the stored hash and
/// the chain; the stored entry decodes to an event that a verifier, given the event and its
/// seal material alone, encodes to the same bytes, and every stored personal value opens its
/// digest.
fn assert_leaves_recompute(path: &std::path::Path) {
    let conn = raw(path);
    let mut stmt = conn
        .prepare(
            "SELECT seq, hash, entry, personal_values, legacy_body FROM log \
             WHERE tenant = 't' ORDER BY seq",
        )
        .expect("prepare");
    type Row = (i64, Vec<u8>, Vec<u8>, Option<Vec<u8>>, Option<String>);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!rows.is_empty());
    let mut prev = GENESIS;
    for (seq, hash, entry, values, body) in rows {
        assert_eq!(body, None, "seq {seq}: the entry is the only copy");
        let view = EntryView::parse(&entry).expect("entry decodes");
        let values = values.as_deref().map_or_else(PersonalValues::default, |v| {
            PersonalValues::from_bytes(v).expect("values decode")
        });
        let event = view.to_event(&values, hex::encode(&hash));
        assert_eq!(view.prev, prev, "seq {seq} seals its predecessor");
        assert_eq!(view.version, 2, "seq {seq}");
        assert_eq!(view.held_mismatch(&values), None, "seq {seq}");
        assert_eq!(
            reencode_v2(
                &EntryParts::of_event(&event),
                &prev,
                &view.sealed_slots(&values)
            ),
            Some(entry.clone()),
            "seq {seq}"
        );
        let leaf = leaf_hash(&entry);
        assert_eq!(leaf.to_vec(), hash, "seq {seq} recomputes");
        prev = leaf;
    }
}

#[tokio::test]
async fn leaves_recompute_from_the_stored_rows() {
    let (store, path) = store_with_events().await;
    store.shutdown().await;
    assert_leaves_recompute(&path);
}

#[tokio::test]
async fn personal_values_are_held_with_their_openings_and_no_subject_key_is_made() {
    let (store, path) = store_with_events().await;
    store
        .append(vec![prepared("t", json!({"action": "job.ran", "actor": {"id": "cron", "type": "system"},
                                           "target": {"type": "asset", "id": "A1", "name": "Laptop"}}))])
        .await
        .expect("append");
    store.shutdown().await;
    let conn = raw(&path);
    let keys: i64 = conn
        .query_row("SELECT count(*) FROM subject_keys", [], |r| r.get(0))
        .expect("count");
    assert_eq!(keys, 0, "entries of version 2 need no key per subject");
    // Nothing personal is in the entries: not the actor's id, name, e-mail, ip or user agent,
    // nor a person target's id or name; an asset's id and name are not personal.
    let entries: Vec<Vec<u8>> = conn
        .prepare("SELECT entry FROM log WHERE tenant = 't' ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    // Searched for as the entry would hold them in the clear: length, then bytes (a bare "u1"
    // turns up in random digests now and then).
    let holds = |bytes: &[u8], what: &str| {
        let sealed = [&(what.len() as u32).to_be_bytes()[..], what.as_bytes()].concat();
        bytes.windows(sealed.len()).any(|w| w == sealed)
    };
    for entry in &entries[..5] {
        for secret in [
            "u1",
            "Ann",
            "ann@example.com",
            "10.0.0.1",
            "ua",
            "p0",
            "p1",
            "p4",
            "Bo",
        ] {
            assert!(!holds(entry, secret), "{secret} is in an entry");
        }
    }
    let last = entries.last().expect("the job");
    assert!(holds(last, "A1") && holds(last, "Laptop") && !holds(last, "cron"));
    assert_leaves_recompute(&path);
}

/// A copy of the store of schema 3 an earlier build wrote (`tests/fixtures/schema3`): its
/// directory and its file.
fn old_store() -> (std::path::PathBuf, std::path::PathBuf) {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema3");
    let dir = tempfile::tempdir().expect("dir").keep();
    let path = dir.join(sealtrail_store_sqlite::DB_FILE);
    std::fs::copy(fixtures.join("sealtrail.db"), &path).expect("copy the old store");
    (dir, path)
}

/// Rows of version 1 (JSON rows and entries alike) keep their digests under a key per subject:
/// a value whose subject's key is gone is reported, as before.
#[tokio::test]
async fn an_old_row_whose_subject_key_is_gone_is_reported() {
    let (dir, path) = old_store();
    let store = SqliteStore::open(&SqliteConfig::new(&dir)).expect("open and migrate");
    store.shutdown().await;
    assert_eq!(walk(&path).findings, vec![]);
    let changed = raw(&path)
        .execute(
            "UPDATE subject_keys SET key = NULL WHERE tenant = 't' AND subject = 'p4'",
            [],
        )
        .expect("erase the key");
    assert_eq!(changed, 1);
    let report = walk(&path);
    let first = report.findings.first().expect("caught");
    assert_eq!(
        (first.seq, first.kind),
        (5, sealtrail_store_sqlite::verify::Kind::Altered),
        "{first}"
    );
    assert!(first.detail.contains("key is gone"), "{first}");
}

/// A store of schema version 3, as an earlier build wrote it (commit 9332f7a: rows 1–3 of
/// tenant `t` from before entries, keeping their event as JSON with version-1 digests and
/// predecessor beside it; rows 4–6 entries of version 1; their subject keys), is upgraded to the
/// log: readers see what they saw then (`expected.json`), it verifies, new events (entries of
/// version 2) chain onto it, and retention removes rows of every kind.
#[tokio::test]
async fn a_store_of_schema_3_migrates_to_the_log_and_reads_and_verifies_as_before() {
    let (dir, path) = old_store();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema3");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("expected.json")).expect("expected"),
    )
    .expect("json");
    let seqs = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .expect("seqs")
            .iter()
            .map(|s| s.as_u64().expect("seq"))
            .collect()
    };
    let before = (
        expected["bodies"]
            .as_array()
            .expect("bodies")
            .iter()
            .map(|b| b.as_str().expect("body").to_owned())
            .collect::<Vec<_>>(),
        expected["one"].as_str().expect("one").to_owned(),
        seqs(&expected["filtered"]),
        seqs(&expected["timeline"]),
    );
    let id: uuid::Uuid = serde_json::from_str::<serde_json::Value>(&before.1).expect("one")["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let read = move |store: SqliteStore| async move {
        let t = sealtrail_store::conformance::tenant("t");
        let query = sealtrail_store::ListQuery {
            tenant: t.clone(),
            filter: sealtrail_store::EventFilter::default(),
            order: sealtrail_store::Order::Asc,
            limit: 6,
            cursor: None,
        };
        let page = store.list(query.clone()).await.expect("list");
        let bodies: Vec<String> = page.items.iter().map(|e| e.body.get().to_owned()).collect();
        let one = store.get(&t, id).await.expect("get").expect("found");
        let filtered = store
            .list(sealtrail_store::ListQuery {
                filter: sealtrail_store::EventFilter::default()
                    .with(sealtrail_store::fields::ACTOR_ID, ["u2"]),
                ..query
            })
            .await
            .expect("filtered");
        let timeline = store
            .history(sealtrail_store::HistoryQuery {
                tenant: t,
                entity_type: "user".into(),
                entity_id: "p1".into(),
                event_type: vec![],
                limit: 10,
                cursor: None,
            })
            .await
            .expect("history");
        store.shutdown().await;
        (
            bodies,
            one.body.get().to_owned(),
            filtered.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
            timeline.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        )
    };
    assert_eq!(before.0.len(), 6);
    assert_eq!(before.2, vec![6]);
    assert_eq!(before.3, vec![2, 6], "p1 as target, then in related");
    let store = SqliteStore::open(&SqliteConfig::new(&dir)).expect("open");
    assert_eq!(read(store).await, before, "readers see the same events");
    // New events are entries of version 2, chained onto the old rows; the timeline of p1 now
    // ends with the newest, whose personal values are held with their openings.
    let store = SqliteStore::open(&SqliteConfig::new(&dir)).expect("open");
    store
        .append(vec![prepared(
            "t",
            json!({"action": "user.viewed", "actor": {"id": "u2", "name": "Cy"},
                   "target": {"type": "user", "id": "p1", "name": "Bo"}}),
        )])
        .await
        .expect("append");
    store.settle().await.expect("settle");
    store.shutdown().await;
    let versions: Vec<Option<u8>> = raw(&path)
        .prepare("SELECT substr(entry, 1, 1) FROM log WHERE tenant = 't' ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| Ok(r.get::<_, Option<Vec<u8>>>(0)?.map(|b| b[0])))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        versions,
        [None, None, None, Some(1), Some(1), Some(1), Some(2)],
        "JSON rows, entries of version 1, then of version 2"
    );
    let report = walk(&path);
    assert_eq!(report.findings, vec![], "{report:?}");
    assert_eq!(report.events, 7);
    let store = SqliteStore::open(&SqliteConfig::new(&dir)).expect("open");
    let timeline = store
        .history(sealtrail_store::HistoryQuery {
            tenant: sealtrail_store::conformance::tenant("t"),
            entity_type: "user".into(),
            entity_id: "p1".into(),
            event_type: vec![],
            limit: 10,
            cursor: None,
        })
        .await
        .expect("history");
    assert_eq!(
        timeline.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 6, 7]
    );
    store.shutdown().await;
    let legacy: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM log WHERE entry IS NULL AND legacy_body IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(legacy, 3);
    // Retention removes rows of both kinds in one run of positions (JSON rows are emptied one
    // by one, keeping the recorded_at their JSON says), and refuses a position removed before.
    let store = SqliteStore::open(&SqliteConfig::new(path.parent().expect("dir"))).expect("open");
    store.settle().await.expect("settle");
    let kinds: Vec<(i64, bool)> = raw(&path)
        .prepare("SELECT seq, legacy_body IS NOT NULL FROM log WHERE tenant = 't' ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mixed: Vec<u64> = kinds
        .windows(2)
        .find(|w| w[0].1 != w[1].1)
        .map(|w| vec![w[0].0 as u64, w[1].0 as u64])
        .expect("a JSON row beside an entry row");
    let receipt = || {
        prepared(
            "t",
            json!({"action": "audit.purged", "actor": {"id": "r", "type": "system"}}),
        )
    };
    let served: Vec<serde_json::Value> = before
        .0
        .iter()
        .map(|b| serde_json::from_str(b).expect("json"))
        .collect();
    let t = sealtrail_store::conformance::tenant("t");
    store
        .purge(&t, mixed.clone(), receipt())
        .await
        .expect("purge");
    for &seq in &mixed {
        let body = &served[seq as usize - 1];
        let changes: Vec<serde_json::Value> = body["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"field": c["field"], "old_value": c["old_value"], "new_value": c["new_value"]}))
            .collect();
        let retry = store
            .append(vec![prepared(
                "t",
                json!({"id": body["id"], "action": body["action"],
                "actor": body["actor"], "target": body["target"], "related": body["related"],
                "changes": changes, "metadata": body["metadata"],
                "occurred_at": body["occurred_at"]}),
            )])
            .await;
        // The removed event's place still knows its id: a duplicate answered with the first
        // recorded_at, or (where what was served does not rebuild the input exactly) a
        // conflict; never a new event.
        match retry {
            Ok(a) => {
                assert!(a[0].duplicate, "{a:?}");
                assert_eq!(
                    json!(a[0].recorded_at.to_rfc3339()),
                    body["recorded_at"],
                    "seq {seq}"
                );
            }
            Err(err) => assert!(
                matches!(err, sealtrail_store::StoreError::Conflict { .. }),
                "{err}"
            ),
        }
    }
    assert!(
        store.purge(&t, mixed.clone(), receipt()).await.is_err(),
        "a position removed before"
    );
    store.shutdown().await;
    // An edited JSON body of such a row is still caught, and named.
    let conn = raw(&path);
    conn.execute_batch("DROP TRIGGER log_immutable_update")
        .expect("drop trigger");
    conn.execute(
        "UPDATE log SET legacy_body = replace(legacy_body, '\"n\"', '\"m\"') WHERE tenant = 't' AND seq = 2",
        [],
    )
    .expect("tamper");
    let report = walk(&path);
    let first = report.findings.first().expect("caught");
    assert_eq!(
        (first.seq, first.kind),
        (2, sealtrail_store_sqlite::verify::Kind::Altered),
        "{first}"
    );
}

/// Two stores on one file (a server and `sealtrail keys`, say) append in turns to the same
/// tenants: each notices the other's commits, so seq stays gap-free, every event of both is
/// there, and the log verifies.
#[tokio::test]
async fn two_writers_on_one_file_keep_the_log_gap_free_and_valid() {
    let dir = tempfile::tempdir().expect("dir").keep();
    let one = SqliteStore::open(&SqliteConfig::new(&dir)).expect("open");
    let two = SqliteStore::open(&SqliteConfig::new(&dir)).expect("open again");
    let mut seqs = Vec::new();
    for i in 0..30 {
        let store = if i % 3 == 0 { &two } else { &one };
        let tenant = if i % 2 == 0 { "a" } else { "b" };
        let appended = store
            .append(vec![prepared(
                tenant,
                json!({"action": "turns", "actor": {"id": format!("u{}", i % 4), "name": "Ann"}}),
            )])
            .await
            .expect("append");
        seqs.push((tenant, appended[0].seq));
    }
    for tenant in ["a", "b"] {
        let mine: Vec<u64> = seqs
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(mine, (1..=15).collect::<Vec<u64>>(), "tenant {tenant}");
    }
    one.shutdown().await;
    two.shutdown().await;
    let report = sealtrail_store_sqlite::verify::verify_store(
        &dir.join(sealtrail_store_sqlite::DB_FILE),
        &std::collections::HashMap::new(),
        &mut |_| {},
    )
    .expect("walk");
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events, 30);
}

/// The writer checkpoints its write-ahead log as SQLite's automatic checkpoint would, once it
/// has answered each group's commits rather than inside them: twenty thousand events of about
/// a kilobyte (46 MB of frames when nothing is checkpointed, below the 64 MB bound that makes
/// the writer restart the log) leave a log that started over along the way (its file reached
/// 17 MB), not one holding them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_is_checkpointed_after_commits_are_answered() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).expect("open");
    let filler = "x".repeat(900);
    for batch in 0..40 {
        let events = (0..500)
            .map(|i| {
                prepared(
                    "t",
                    json!({"action": "doc.read", "actor": {"id": format!("u{i}")},
                           "metadata": {"batch": batch, "filler": filler}}),
                )
            })
            .collect();
        store.append(events).await.expect("append");
    }
    store.shutdown().await;
    let wal = dir
        .path()
        .join(format!("{}-wal", sealtrail_store_sqlite::DB_FILE));
    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(
        size < 32 << 20,
        "the write-ahead log holds {size} bytes: it was not checkpointed"
    );
}

/// Retention empties exactly the rows of its selection, runs of consecutive positions and
/// single ones, leaving the positions between them whole; a selection holding a row removed
/// before changes nothing and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_empties_exactly_its_rows_and_a_stale_one_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).expect("open");
    let events = (1..=20)
        .map(|n| {
            prepared(
                "t",
                json!({"action": "doc.read", "actor": {"id": "a"}, "metadata": {"n": n}}),
            )
        })
        .collect();
    store.append(events).await.expect("append");
    store.settle().await.expect("settle");
    let receipt = || {
        prepared(
            "t",
            json!({"action": "audit.purged", "actor": {"id": "r", "type": "system"}}),
        )
    };
    let path = dir.path().join(sealtrail_store_sqlite::DB_FILE);
    let emptied = || -> Vec<u64> {
        raw(&path)
            .prepare(
                "SELECT seq FROM log WHERE tenant = 't' AND entry IS NULL \
                 AND gone_recorded_at IS NOT NULL ORDER BY seq",
            )
            .expect("prepare")
            .query_map([], |r| r.get::<_, i64>(0).map(|s| s as u64))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let t = sealtrail_store::conformance::tenant("t");
    let first = vec![2, 3, 4, 6, 7, 9, 10];
    store
        .purge(&t, first.clone(), receipt())
        .await
        .expect("purge");
    assert_eq!(emptied(), first);
    // 9 went before: nothing of this one happens.
    let stale = vec![5, 8, 9, 11, 12];
    assert!(store.purge(&t, stale, receipt()).await.is_err());
    assert_eq!(emptied(), first);
    store.shutdown().await;
}

/// Another process's anonymisation (a second store on the same files) is not written back by
/// this store's indexer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_processs_anonymisation_is_not_written_back_by_this_indexer() {
    let dir = tempfile::tempdir().expect("dir");
    let a = SqliteStore::open(&SqliteConfig::new(dir.path())).expect("open");
    let b = SqliteStore::open(&SqliteConfig::new(dir.path())).expect("open again");
    sealtrail_store::conformance::another_stores_anonymisation_is_not_written_back(
        std::sync::Arc::new(a),
        std::sync::Arc::new(b),
    )
    .await;
}
