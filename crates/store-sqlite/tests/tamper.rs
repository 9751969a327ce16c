//! Tampering with a real store file, the way someone holding the file would (dropping the
//! triggers and indexes first), is always caught by the verify walk, which names the right
//! event; an untouched store always verifies.

use std::collections::HashMap;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use sealtrail_model::Timestamp;
use sealtrail_store::conformance::prepared;
use sealtrail_store::{Checkpoint, Store};
use sealtrail_store_sqlite::verify::{Kind, Report, WalkOptions, verify_store, verify_store_with};
use sealtrail_store_sqlite::{SqliteConfig, SqliteStore};
use serde_json::json;

const KEY_ID: &str = "test-key";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// A store with `n` events in tenant `t`, a few in tenant `u`, checkpoints of both tenants at
/// their full size, closed; returns the database path.
fn build(n: usize) -> PathBuf {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("dir").keep();
        let store = SqliteStore::open(&SqliteConfig::new(&dir)).expect("open");
        for i in 0..n {
            let mut v = json!({"action": format!("act.n{}", i % 4), "category": "update",
                "actor": {"id": format!("u{}", i % 3), "name": "Ann", "email": "ann@example.com"},
                "target": {"type": "asset", "id": format!("a{i}")},
                "context": {"ip": "10.0.0.1", "correlation_id": format!("c{i}")},
                "changes": [{"field": "n", "old_value": i, "new_value": i + 1}]});
            if i % 2 == 0 {
                v["event_type"] = json!("UPDATED");
                v["organization"] = json!({"id": "o1"});
            }
            store.append(vec![prepared("t", v)]).await.expect("append");
        }
        store
            .append(vec![prepared(
                "u",
                json!({"action": "x", "actor": {"id": "v"}}),
            )])
            .await
            .expect("append");
        for head in store.tree_heads().await.expect("heads") {
            let cp = Checkpoint::sign(&head, Timestamp::now(), KEY_ID, &signing_key());
            store.put_checkpoint(cp).await.expect("checkpoint");
        }
        store.shutdown().await;
        dir.join(sealtrail_store_sqlite::DB_FILE)
    })
}

fn keys() -> HashMap<String, ed25519_dalek::VerifyingKey> {
    HashMap::from([(KEY_ID.to_owned(), signing_key().verifying_key())])
}

/// Walks with chunks of three positions on three workers, so that every property below also
/// crosses chunk boundaries and merges results that arrive out of order.
fn verify(path: &std::path::Path) -> Report {
    let options = WalkOptions {
        chunk: 3,
        workers: 3,
    };
    verify_store_with(path, &keys(), options, &mut |_| {}).expect("walk")
}

/// Opens the file as an attacker: triggers out of the way, and the log rebuilt without its
/// keys, so that two rows may claim one position.
fn attacker(path: &PathBuf) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open");
    let triggers: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("names");
    for t in triggers {
        conn.execute_batch(&format!("DROP TRIGGER {t}"))
            .expect("drop trigger");
    }
    conn.execute_batch(
        "CREATE TABLE loose AS SELECT * FROM log; DROP TABLE log; ALTER TABLE loose RENAME TO log;",
    )
    .expect("rebuild the log without its keys");
    conn
}

fn id_at(conn: &rusqlite::Connection, seq: usize) -> uuid::Uuid {
    let blob: Vec<u8> = conn
        .query_row(
            "SELECT id FROM log WHERE tenant = 't' AND seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .expect("row");
    uuid::Uuid::from_slice(&blob).expect("uuid")
}

const COLUMNS: [(&str, &str); 14] = [
    ("tenant", "'t2'"),
    ("seq", "seq + 1000"),
    ("id", "randomblob(16)"),
    ("hash", "randomblob(32)"),
    // Columns that rows with an entry leave empty.
    ("legacy_body", "'{\"action\":\"forged\"}'"),
    ("legacy_personal", "x'00'"),
    ("legacy_prev", "randomblob(32)"),
    // The sealed entry: another action, another id byte, cut short, gone.
    (
        "entry",
        "unhex(replace(hex(entry), hex('act.n'), hex('act.x')))",
    ),
    (
        "entry",
        "unhex(substr(hex(entry), 1, 40) || 'FF' || substr(hex(entry), 43))",
    ),
    ("entry", "substr(entry, 1, 60)"),
    ("entry", "NULL"),
    // The personal values beside it: another name, unreadable, one the entry has no digest of.
    (
        "personal_values",
        "unhex(replace(hex(personal_values), hex('Ann'), hex('Eve')))",
    ),
    ("personal_values", "x'ff'"),
    ("personal_values", "x'1000000003457665'"),
];

#[test]
fn an_untouched_store_verifies() {
    for n in [1, 2, 7, 33] {
        let path = build(n);
        let report = verify(&path);
        assert_eq!(report.findings, vec![], "{n} events");
        assert_eq!(report.events, n as u64 + 1);
        assert_eq!(report.checkpoints, 2);
        assert_eq!(report.tenants, 2);
        assert_eq!(
            verify_store(&path, &keys(), &mut |_| {}).expect("walk"),
            report
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn altering_any_column_of_any_row_is_caught(n in 2usize..20, pick in any::<usize>(), column in 0usize..COLUMNS.len()) {
        let k = pick % n + 1;
        let path = build(n);
        let conn = attacker(&path);
        let id = id_at(&conn, k);
        let (name, value) = COLUMNS[column];
        conn.execute(&format!("UPDATE log SET {name} = {value} WHERE tenant = 't' AND seq = ?1"), [k as i64]).expect("tamper");
        let report = verify(&path);
        let first = report.findings.first().unwrap_or_else(|| panic!("altering {name} of seq {k} went unnoticed"));
        prop_assert_eq!(first.seq, k as u64, "{} of seq {}: {:?}", name, k, report.findings);
        match name {
            // The row left its place: the place is reported empty (at the end: truncated).
            "tenant" | "seq" => prop_assert!(
                matches!(first.kind, Kind::Missing | Kind::Truncated) || first.id == Some(id),
                "{:?}",
                first
            ),
            _ => {
                prop_assert_eq!(first.kind, Kind::Altered, "{}: {:?}", name, first);
                prop_assert_eq!(first.id, Some(id), "{}: {:?}", name, first);
            }
        }
    }

    #[test]
    fn deleting_inserting_swapping_and_cutting_are_caught(n in 3usize..20, a in any::<usize>(), b in any::<usize>()) {
        // Delete a row in the middle.
        let k = a % (n - 1) + 1;
        let path = build(n);
        attacker(&path).execute("DELETE FROM log WHERE tenant = 't' AND seq = ?1", [k as i64]).expect("delete");
        let f = verify(&path).findings;
        prop_assert_eq!((f[0].seq, f[0].id, f[0].kind), (k as u64, None, Kind::Missing), "{:?}", f);

        // Insert a forged row that claims an existing position.
        let path = build(n);
        let conn = attacker(&path);
        let forged = uuid::Uuid::new_v4();
        conn.execute(
            "INSERT INTO log (tenant, seq, id, digest, hash, entry, personal_values) \
             SELECT tenant, seq, ?2, digest, hash, unhex(replace(hex(entry), hex('act.n'), hex('forge'))), personal_values \
             FROM log WHERE tenant = 't' AND seq = ?1",
            rusqlite::params![k as i64, forged.as_bytes().as_slice()],
        ).expect("insert");
        // Whichever of the two the walk meets first, the forged one is named at its place.
        let f = verify(&path).findings;
        prop_assert!(
            f.iter().any(|f| (f.seq, f.id, f.kind) == (k as u64, Some(forged), Kind::Inserted))
                || (f[0].seq, f[0].id, f[0].kind) == (k as u64, Some(forged), Kind::Altered),
            "{:?}", f
        );
        prop_assert_eq!(f[0].seq, k as u64, "{:?}", f);

        // Swap two rows' positions.
        let (i, j) = { let i = a % n + 1; let j = b % n + 1; (i.min(j), i.max(j)) };
        if i != j {
            let path = build(n);
            let conn = attacker(&path);
            let moved = id_at(&conn, j);
            conn.execute_batch(&format!(
                "UPDATE log SET seq = -1 WHERE tenant = 't' AND seq = {i}; \
                 UPDATE log SET seq = {i} WHERE tenant = 't' AND seq = {j}; \
                 UPDATE log SET seq = {j} WHERE tenant = 't' AND seq = -1;"
            )).expect("swap");
            let f = verify(&path).findings;
            prop_assert_eq!((f[0].seq, f[0].id, f[0].kind), (i as u64, Some(moved), Kind::Reordered), "{:?}", f);
        }

        // Cut the tail after the checkpoint.
        let cut = a % n + 1;
        let path = build(n);
        attacker(&path).execute("DELETE FROM log WHERE tenant = 't' AND seq >= ?1", [cut as i64]).expect("cut");
        let f = verify(&path).findings;
        prop_assert_eq!((f[0].seq, f[0].id, f[0].kind), (cut as u64, None, Kind::Truncated), "{:?}", f);

        // Replace a checkpoint's signature.
        let path = build(n);
        let conn = attacker(&path);
        let forged_sig = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 64]);
        let column = if b % 2 == 0 { "signature" } else { "note" };
        let value = if column == "signature" { format!("'{forged_sig}'") } else { "replace(note, substr(note, -20, 8), 'AAAAAAAA')".into() };
        conn.execute_batch(&format!("UPDATE checkpoints SET {column} = {value} WHERE tenant = 't'")).expect("forge");
        let f = verify(&path).findings;
        prop_assert_eq!((f[0].seq, f[0].id, f[0].kind), (n as u64, None, Kind::BadSignature), "{:?}", f);
    }
}

#[test]
fn events_after_the_newest_checkpoint_are_reported_as_uncovered() {
    let path = build(5);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store =
            SqliteStore::open(&SqliteConfig::new(path.parent().expect("dir"))).expect("open");
        let more = vec![
            prepared("t", json!({"action": "late", "actor": {"id": "x"}})),
            prepared("t", json!({"action": "later", "actor": {"id": "x"}})),
        ];
        store.append(more).await.expect("append");
        store.shutdown().await;
    });
    let report = verify(&path);
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

#[test]
fn the_report_does_not_depend_on_how_the_walk_is_spread() {
    let path = build(12);
    let conn = attacker(&path);
    conn.execute_batch(
        "UPDATE log SET entry = unhex(replace(hex(entry), hex('act.n'), hex('act.x'))) WHERE tenant = 't' AND seq = 4; \
         DELETE FROM log WHERE tenant = 't' AND seq = 9; \
         UPDATE log SET hash = randomblob(32) WHERE tenant = 'u';",
    )
    .expect("tamper");
    let expected = verify_store(&path, &keys(), &mut |_| {}).expect("walk");
    let kinds: Vec<(u64, Kind)> = expected.findings.iter().map(|f| (f.seq, f.kind)).collect();
    assert_eq!(
        kinds[..2],
        [(4, Kind::Altered), (9, Kind::Missing)],
        "{kinds:?}"
    );
    assert!(
        expected.findings.iter().any(|f| f.tenant == "u"),
        "{:?}",
        expected.findings
    );
    for chunk in [1, 2, 5, 100] {
        for workers in [1, 2, 4] {
            let mut seen = Vec::new();
            let options = WalkOptions { chunk, workers };
            let report =
                verify_store_with(&path, &keys(), options, &mut |n| seen.push(n)).expect("walk");
            assert_eq!(report, expected, "chunk {chunk}, {workers} workers");
            assert_eq!(
                seen.last(),
                Some(&report.events),
                "progress ends at the total"
            );
        }
    }
}

#[test]
fn personal_values_whose_subject_key_is_gone_are_reported() {
    // Anonymisation erases a subject's values and key together; a key erased with the values
    // left (or put back) is caught at the subject's first event.
    let path = build(4);
    attacker(&path)
        .execute(
            "UPDATE subject_keys SET key = NULL WHERE tenant = 't' AND subject = 'u1'",
            [],
        )
        .expect("erase the key only");
    let report = verify(&path);
    let first = report.findings.first().expect("caught");
    assert_eq!((first.seq, first.kind), (2, Kind::Altered), "{first}");
    assert!(first.detail.contains("key is gone"), "{first}");
}
