//! The seal of the SQLite store, checked in the file itself beyond the shared integrity suite:
//! leaves that recompute from the stored rows, subject keys only where personal data is, and a
//! store of schema 3 (with rows from before entries) upgraded to the log.

use sealtrail_ledger::entry::{GENESIS, encode_entry};
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
/// the chain; the stored entry decodes to an event that encodes to the same bytes, and every
/// stored personal value matches its place.
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
        assert_eq!(
            encode_entry(&event, &view.digests, &prev),
            entry,
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
async fn subject_keys_exist_only_for_subjects_with_personal_data() {
    let (store, path) = store_with_events().await;
    store
        .append(vec![prepared("t", json!({"action": "job.ran", "actor": {"id": "cron", "type": "system"},
                                           "target": {"type": "asset", "id": "A1", "name": "Laptop"}}))])
        .await
        .expect("append");
    store.shutdown().await;
    let conn = raw(&path);
    let subjects: Vec<String> = conn
        .prepare("SELECT subject FROM subject_keys WHERE tenant = 't' ORDER BY subject")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    // u1 (named actor) and p0..p4 (named people as targets); not cron, not the asset.
    assert_eq!(subjects, ["p0", "p1", "p2", "p3", "p4", "u1"]);
    assert_leaves_recompute(&path);
}

/// Turns a store file back into the form schema version 3 wrote: one wide `events` table with
/// the filter columns and their indexes' source, `event_links`, and (for seq 1..=3 of tenant
/// `t`) rows from before migration 3, which keep their event as a JSON body with their digests
/// and predecessor beside it instead of an entry. As a store that is upgraded holds them.
fn downgrade_to_version_3(path: &std::path::Path) {
    let conn = raw(path);
    conn.execute_batch(
        "CREATE TABLE events (
            rowid INTEGER PRIMARY KEY, tenant TEXT NOT NULL, seq INTEGER NOT NULL, id BLOB NOT NULL,
            recorded_at INTEGER NOT NULL, occurred_at INTEGER NOT NULL, action TEXT NOT NULL,
            category TEXT NOT NULL, event_type TEXT, outcome TEXT NOT NULL, actor_id TEXT NOT NULL,
            target_type TEXT, target_id TEXT, organization_id TEXT, correlation_id TEXT, ip TEXT,
            digest BLOB NOT NULL, hash BLOB NOT NULL, body TEXT NOT NULL, prev_hash BLOB,
            personal BLOB, entry BLOB, personal_values BLOB);
         CREATE UNIQUE INDEX events_tenant_seq ON events (tenant, seq);
         CREATE TABLE event_links (tenant TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
            seq INTEGER NOT NULL, PRIMARY KEY (tenant, type, id, seq)) WITHOUT ROWID;",
    )
    .expect("old tables");
    type Row = (
        String,
        i64,
        Vec<u8>,
        Vec<u8>,
        Vec<u8>,
        Vec<u8>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = conn
        .prepare("SELECT tenant, seq, id, digest, hash, entry, personal_values FROM log")
        .expect("prepare")
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (tenant, seq, id, digest, hash, entry, values) in rows {
        let view = EntryView::parse(&entry).expect("entry");
        let personal = values.as_deref().map_or_else(PersonalValues::default, |v| {
            PersonalValues::from_bytes(v).expect("values")
        });
        let event = view.to_event(&personal, hex::encode(&hash));
        let old = tenant == "t" && seq <= 3;
        let body = if old {
            serde_json::to_string(&event).expect("json")
        } else {
            String::new()
        };
        conn.execute(
            "INSERT INTO events (tenant, seq, id, recorded_at, occurred_at, action, category, event_type, \
             outcome, actor_id, target_type, target_id, organization_id, correlation_id, ip, digest, hash, \
             body, prev_hash, personal, entry, personal_values) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
            rusqlite::params![
                tenant,
                seq,
                id,
                event.recorded_at.micros(),
                event.occurred_at.micros(),
                event.action,
                event.category.as_str(),
                event.event_type,
                event.outcome.as_str(),
                event.actor.id,
                event.target.as_ref().map(|t| t.target_type.clone()),
                event.target.as_ref().map(|t| t.id.clone()),
                event.organization.as_ref().map(|o| o.id.clone()),
                event.context.as_ref().and_then(|c| c.correlation_id.clone()),
                event.context.as_ref().and_then(|c| c.ip.clone()),
                digest,
                hash,
                body,
                view.prev.to_vec(),
                old.then(|| view.digests.to_bytes()),
                (!old).then_some(entry.clone()),
                if old { None } else { values },
            ],
        )
        .expect("old row");
        for related in &event.related {
            conn.execute(
                "INSERT INTO event_links VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![tenant, related.related_type, related.id, seq],
            )
            .expect("link");
        }
    }
    // Tables of later migrations go too.
    conn.execute_batch("DROP TABLE log; DROP TABLE tenant_settings; PRAGMA user_version = 3;")
        .expect("downgrade");
}

#[tokio::test]
async fn a_store_of_schema_3_migrates_to_the_log_and_reads_and_verifies_as_before() {
    let (store, path) = store_with_events().await;
    let id: uuid::Uuid = store
        .append(vec![prepared(
            "t",
            json!({"action": "a", "actor": {"id": "u2"}, "related": [{"type": "user", "id": "p1"}]}),
        )])
        .await
        .expect("append")
        .first()
        .expect("appended")
        .id;
    let read = move |store: SqliteStore| async move {
        let t = sealtrail_store::conformance::tenant("t");
        let query = sealtrail_store::ListQuery {
            tenant: t.clone(),
            filter: sealtrail_store::EventFilter::default(),
            order: sealtrail_store::Order::Asc,
            limit: 100,
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
    let before = read(store).await;
    assert_eq!(before.0.len(), 6);
    assert_eq!(before.2, vec![6]);
    assert_eq!(before.3, vec![2, 6], "p1 as target, then in related");
    downgrade_to_version_3(&path);
    // The derived data goes too, so the upgraded store must build it again.
    std::fs::remove_file(path.with_file_name(sealtrail_store_sqlite::index::INDEX_FILE))
        .expect("remove index");
    let store = SqliteStore::open(&SqliteConfig::new(path.parent().expect("dir"))).expect("open");
    assert_eq!(read(store).await, before, "readers see the same events");
    let legacy: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM log WHERE entry IS NULL AND legacy_body IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(legacy, 3);
    let report = walk(&path);
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.events, 6);
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
