//! The integrity conformance suite, run against the SQLite backend: the attacker holds the file
//! (triggers dropped, the log rebuilt without its keys).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ed25519_dalek::VerifyingKey;
use rusqlite::params;
use sealtrail_store::conformance::prepared;
use sealtrail_store::integrity::{Attack, Harness};
use sealtrail_store::verify::{Report, WalkOptions};
use sealtrail_store::{Appended, Store, StoreResult};
use sealtrail_store_sqlite::verify::verify_store_with;
use sealtrail_store_sqlite::{SqliteConfig, SqliteStore};
use serde_json::json;

struct SqliteHarness {
    dir: PathBuf,
    store: Mutex<Arc<SqliteStore>>,
}

fn config(dir: &PathBuf) -> SqliteConfig {
    // A small queue, so that the overload case can fill it.
    SqliteConfig {
        queue_capacity: 200,
        ..SqliteConfig::new(dir)
    }
}

impl SqliteHarness {
    fn path(&self) -> PathBuf {
        self.dir.join(sealtrail_store_sqlite::DB_FILE)
    }

    fn current(&self) -> Arc<SqliteStore> {
        self.store.lock().expect("lock").clone()
    }

    /// The file, opened as someone who holds it: no trigger, and a log without keys.
    fn attacker(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.path()).expect("open");
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
        let keyed: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'log_id'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        if keyed > 0 {
            conn.execute_batch(
                "CREATE TABLE loose AS SELECT * FROM log; DROP TABLE log; ALTER TABLE loose RENAME TO log;",
            )
            .expect("rebuild the log without its keys");
        }
        conn
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.current()
    }

    async fn reopen(&self) -> Arc<dyn Store> {
        let store = Arc::new(SqliteStore::open(&config(&self.dir)).expect("reopen"));
        *self.store.lock().expect("lock") = store.clone();
        store
    }

    async fn verify(&self, keys: HashMap<String, VerifyingKey>, options: WalkOptions) -> Report {
        let path = self.path();
        tokio::task::spawn_blocking(move || {
            verify_store_with(&path, &keys, options, &mut |_| {}).expect("walk")
        })
        .await
        .expect("walk task")
    }

    async fn attack(&self, attack: Attack<'_>) {
        let conn = self.attacker();
        let done = match attack {
            Attack::EntryBytes {
                tenant,
                seq,
                from,
                to,
            } => conn.execute(
                "UPDATE log SET entry = unhex(replace(hex(entry), hex(?1), hex(?2))) WHERE tenant = ?3 AND seq = ?4",
                params![from, to, tenant, seq as i64],
            ),
            Attack::EntryCut { tenant, seq } => conn.execute(
                "UPDATE log SET entry = substr(entry, 1, 60) WHERE tenant = ?1 AND seq = ?2",
                params![tenant, seq as i64],
            ),
            Attack::PersonalBytes {
                tenant,
                seq,
                from,
                to,
            } => conn.execute(
                "UPDATE log SET personal_values = unhex(replace(hex(personal_values), hex(?1), hex(?2))) \
                 WHERE tenant = ?3 AND seq = ?4",
                params![from, to, tenant, seq as i64],
            ),
            Attack::LeafHash { tenant, seq } => conn.execute(
                "UPDATE log SET hash = randomblob(32) WHERE tenant = ?1 AND seq = ?2",
                params![tenant, seq as i64],
            ),
            Attack::Leftover { tenant, seq } => conn.execute(
                "UPDATE log SET legacy_prev = randomblob(32) WHERE tenant = ?1 AND seq = ?2",
                params![tenant, seq as i64],
            ),
            Attack::Delete { tenant, from, to } => conn.execute(
                "DELETE FROM log WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3",
                params![tenant, from as i64, to as i64],
            ),
            Attack::Swap { tenant, a, b } => conn.execute(
                "UPDATE log SET seq = CASE seq WHEN ?2 THEN ?3 ELSE ?2 END WHERE tenant = ?1 AND seq IN (?2, ?3)",
                params![tenant, a as i64, b as i64],
            ),
            Attack::Duplicate { tenant, seq, id } => conn.execute(
                "INSERT INTO log (tenant, seq, id, digest, hash, entry, personal_values) \
                 SELECT tenant, seq, ?3, digest, hash, unhex(replace(hex(entry), hex('act.n'), hex('forge'))), \
                 personal_values FROM log WHERE tenant = ?1 AND seq = ?2",
                params![tenant, seq as i64, id.as_bytes().as_slice()],
            ),
            Attack::CheckpointSignature { tenant } => conn.execute(
                "UPDATE checkpoints SET signature = 'AAAA' WHERE tenant = ?1",
                params![tenant],
            ),
            Attack::DropPersonal { tenant, seq } => conn.execute(
                "UPDATE log SET personal_values = NULL WHERE tenant = ?1 AND seq = ?2",
                params![tenant, seq as i64],
            ),
            Attack::RemoveContent { tenant, seq } => conn.execute(
                "UPDATE log SET entry = NULL, personal_values = NULL WHERE tenant = ?1 AND seq = ?2",
                params![tenant, seq as i64],
            ),
        };
        let changed = done.unwrap_or_else(|e| panic!("{attack:?}: {e}"));
        assert!(changed > 0, "{attack:?} changed nothing");
    }

    async fn direct_changes(&self) -> Vec<(String, Option<String>)> {
        let conn = rusqlite::Connection::open(self.path()).expect("open");
        [
            "UPDATE log SET entry = x'00' WHERE tenant = 't' AND seq = 2",
            "DELETE FROM log WHERE tenant = 't' AND seq = 3",
            "UPDATE tree_nodes SET hash = x'00'",
            "DELETE FROM tree_nodes",
            "UPDATE checkpoints SET size = 1",
            "DELETE FROM checkpoints",
        ]
        .into_iter()
        .map(|sql| {
            (
                sql.to_owned(),
                conn.execute_batch(sql).err().map(|e| e.to_string()),
            )
        })
        .collect()
    }

    async fn sanctioned(&self, seq: u64, fail: bool) -> StoreResult<Appended> {
        let audit = prepared(
            "t",
            json!({"action": "audit.anonymized", "actor": {"id": "admin", "type": "service"}}),
        );
        self.current()
            .sanctioned("test erasure", audit, move |conn| {
                let values: Vec<u8> = conn.query_row(
                    "SELECT personal_values FROM log WHERE tenant = 't' AND seq = ?1",
                    [seq as i64],
                    |r| r.get(0),
                )?;
                conn.execute(
                    "UPDATE log SET personal_values = ?1 WHERE tenant = 't' AND seq = ?2",
                    params![sealtrail_store::integrity::erased(&values), seq as i64],
                )?;
                if fail {
                    conn.execute("SELECT * FROM no_such_table", [])?;
                }
                Ok(())
            })
            .await
    }

    async fn traces(&self, needle: &str) -> Vec<String> {
        let lower = needle.to_lowercase();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).expect("data dir") {
            let path = entry.expect("entry").path();
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            let lowered = bytes.to_ascii_lowercase();
            if lowered.windows(lower.len()).any(|w| w == lower.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
        found
    }

    async fn personal_values(&self, seq: u64) -> Option<Vec<u8>> {
        rusqlite::Connection::open(self.path())
            .expect("open")
            .query_row(
                "SELECT personal_values FROM log WHERE tenant = 't' AND seq = ?1",
                [seq as i64],
                |r| r.get(0),
            )
            .expect("row")
    }
}

async fn harness() -> Option<Arc<dyn Harness>> {
    // The directory lives as long as the test process; each test gets its own.
    let dir = tempfile::tempdir().expect("dir").keep();
    let store = Arc::new(SqliteStore::open(&config(&dir)).expect("open"));
    Some(Arc::new(SqliteHarness {
        dir,
        store: Mutex::new(store),
    }))
}

sealtrail_store::integrity_suite!(harness());
