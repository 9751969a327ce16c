//! The seal of the SQLite store, checked in the file itself: immutability enforced by the
//! database, the sanctioned path, and leaves that recompute from the stored rows.

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
            "SELECT seq, hash, prev_hash, entry, personal_values, body FROM events \
             WHERE tenant = 't' ORDER BY seq",
        )
        .expect("prepare");
    type Row = (i64, Vec<u8>, Vec<u8>, Vec<u8>, Option<Vec<u8>>, String);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!rows.is_empty());
    let mut prev = GENESIS;
    for (seq, hash, prev_hash, entry, values, body) in rows {
        assert_eq!(body, "", "seq {seq}: the entry is the only copy");
        let view = EntryView::parse(&entry).expect("entry decodes");
        let values = values.as_deref().map_or_else(PersonalValues::default, |v| {
            PersonalValues::from_bytes(v).expect("values decode")
        });
        let event = view.to_event(&values, hex::encode(&hash));
        assert_eq!(prev_hash, prev.to_vec(), "seq {seq} names its predecessor");
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
async fn the_database_refuses_direct_updates_and_deletes() {
    let (store, path) = store_with_events().await;
    let conn = raw(&path);
    for sql in [
        "UPDATE events SET action = 'forged' WHERE seq = 2",
        "DELETE FROM events WHERE seq = 5",
        "UPDATE event_links SET id = 'x'",
        "DELETE FROM tree_nodes",
        "INSERT INTO checkpoints VALUES ('t', 1, x'00', 1, 'k', 's', 'n')",
    ] {
        let _ = conn.execute_batch(sql);
    }
    let err = conn
        .execute("UPDATE events SET action = 'forged' WHERE seq = 2", [])
        .expect_err("refused");
    assert!(err.to_string().contains("immutable"), "{err}");
    let err = conn
        .execute("DELETE FROM events WHERE seq = 5", [])
        .expect_err("refused");
    assert!(err.to_string().contains("immutable"), "{err}");
    let err = conn
        .execute("DELETE FROM tree_nodes", [])
        .expect_err("refused");
    assert!(err.to_string().contains("immutable"), "{err}");
    let err = conn
        .execute("UPDATE checkpoints SET size = 2", [])
        .expect_err("refused");
    assert!(err.to_string().contains("immutable"), "{err}");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM events WHERE tenant = 't'", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(n, 5);
    store.shutdown().await;
    assert_leaves_recompute(&path);
}

#[tokio::test]
async fn the_sanctioned_path_changes_rows_records_itself_and_keeps_every_leaf() {
    let (store, path) = store_with_events().await;
    let audit = prepared(
        "t",
        json!({"action": "audit.anonymized", "actor": {"id": "bootstrap", "type": "service"},
                                      "metadata": {"subject": "u1"}}),
    );
    // Erase the subject's personal values and key, as anonymisation does.
    let appended = store
        .sanctioned("anonymize u1", audit, |conn| {
            conn.execute(
                "UPDATE events SET personal_values = NULL, ip = NULL WHERE tenant = 't' AND actor_id = 'u1'",
                [],
            )?;
            conn.execute("UPDATE subject_keys SET key = NULL WHERE tenant = 't' AND subject = 'u1'", [])?;
            Ok(())
        })
        .await
        .expect("sanctioned");
    assert_eq!(appended.seq, 6, "the act is the next event of the log");
    let conn = raw(&path);
    let erased: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE tenant = 't' AND personal_values IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(erased, 0);
    let open: i64 = conn
        .query_row("SELECT count(*) FROM sanction", [], |r| r.get(0))
        .expect("count");
    assert_eq!(open, 0, "the sanction closes with its transaction");
    assert!(
        conn.execute("UPDATE events SET action = 'x'", []).is_err(),
        "and the triggers are back"
    );
    // A failing job leaves nothing behind: no change, no audit event.
    let failed = store
        .sanctioned(
            "broken",
            prepared("t", json!({"action": "audit.purged", "actor": {"id": "x"}})),
            |conn| {
                conn.execute("UPDATE events SET action = 'gone' WHERE seq = 1", [])?;
                conn.execute("SELECT * FROM no_such_table", [])?;
                Ok(())
            },
        )
        .await;
    assert!(failed.is_err());
    let action: String = conn
        .query_row(
            "SELECT action FROM events WHERE tenant = 't' AND seq = 1",
            [],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(action, "user.updated");
    let next = store
        .append(vec![prepared(
            "t",
            json!({"action": "a", "actor": {"id": "u2"}}),
        )])
        .await
        .expect("append");
    assert_eq!(next[0].seq, 7);
    store.shutdown().await;
    assert_leaves_recompute(&path);
    // The erased values are gone, their digests and every hash remain: the walk finds nothing.
    let report = walk(&path);
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.events, 7);
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

/// Rows written before migration 3 keep their event as a JSON body (and their digests beside
/// it) instead of an entry. Turns seq 1..=3 of tenant `t` back into that form, as a store that
/// was upgraded would hold them.
fn rewind_to_json_bodies(path: &std::path::Path) {
    let conn = raw(path);
    conn.execute_batch("DROP TRIGGER events_immutable_update")
        .expect("drop trigger");
    type Row = (i64, Vec<u8>, Vec<u8>, Option<Vec<u8>>);
    let rows: Vec<Row> = conn
        .prepare(
            "SELECT seq, hash, entry, personal_values FROM events WHERE tenant = 't' AND seq <= 3",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (seq, hash, entry, values) in rows {
        let view = EntryView::parse(&entry).expect("entry");
        let values = values.as_deref().map_or_else(PersonalValues::default, |v| {
            PersonalValues::from_bytes(v).expect("values")
        });
        let body =
            serde_json::to_string(&view.to_event(&values, hex::encode(&hash))).expect("json");
        conn.execute(
            "UPDATE events SET body = ?1, personal = ?2, entry = NULL, personal_values = NULL \
             WHERE tenant = 't' AND seq = ?3",
            rusqlite::params![body, view.digests.to_bytes(), seq],
        )
        .expect("rewind");
    }
}

#[tokio::test]
async fn rows_written_before_entries_read_and_verify_as_before() {
    let (store, path) = store_with_events().await;
    let id: uuid::Uuid = store
        .append(vec![prepared(
            "t",
            json!({"action": "a", "actor": {"id": "u2"}}),
        )])
        .await
        .expect("append")
        .first()
        .expect("appended")
        .id;
    let page = move |store: SqliteStore| async move {
        let query = sealtrail_store::ListQuery {
            tenant: sealtrail_store::conformance::tenant("t"),
            filter: sealtrail_store::EventFilter::default(),
            order: sealtrail_store::Order::Asc,
            limit: 100,
            cursor: None,
        };
        let page = store.list(query).await.expect("list");
        let bodies: Vec<String> = page.items.iter().map(|e| e.body.get().to_owned()).collect();
        let one = store
            .get(&sealtrail_store::conformance::tenant("t"), id)
            .await
            .expect("get")
            .expect("found");
        store.shutdown().await;
        (bodies, one.body.get().to_owned())
    };
    let before = page(store).await;
    assert_eq!(before.0.len(), 6);
    rewind_to_json_bodies(&path);
    let legacy: i64 = raw(&path)
        .query_row("SELECT count(*) FROM events WHERE entry IS NULL", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(legacy, 3);
    let store = SqliteStore::open(&SqliteConfig::new(path.parent().expect("dir"))).expect("open");
    assert_eq!(page(store).await, before, "readers see the same events");
    let report = walk(&path);
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.events, 6);
    // An edited JSON body of such a row is still caught, and named.
    raw(&path)
        .execute(
            "UPDATE events SET body = replace(body, '\"n\"', '\"m\"') WHERE tenant = 't' AND seq = 2",
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
