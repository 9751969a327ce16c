//! The integrity conformance suite, run against a real PostgreSQL server, each case in its own
//! schema: the attacker holds the database (`session_replication_role = replica` switches the
//! triggers off).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use ed25519_dalek::VerifyingKey;
use sealtrail_store::conformance::prepared;
use sealtrail_store::integrity::{Attack, Harness};
use sealtrail_store::verify::{Report, WalkOptions};
use sealtrail_store::{Appended, Store, StoreResult};
use sealtrail_store_postgres::testing::fresh_store_with;
use sealtrail_store_postgres::verify::verify_store_with;
use sealtrail_store_postgres::{PgConfig, PgStore};
use serde_json::json;
use tokio_postgres::types::ToSql;

struct PgHarness {
    config: PgConfig,
    pool: Pool,
    store: Mutex<Arc<PgStore>>,
}

impl PgHarness {
    fn current(&self) -> Arc<PgStore> {
        self.store.lock().expect("lock").clone()
    }

    /// Runs `sql` as someone who holds the database: with every trigger switched off.
    async fn as_attacker(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
        let mut client = self.pool.get().await.expect("client");
        let tx = client.transaction().await.expect("begin");
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .await
            .expect("replica role");
        let changed = tx
            .execute(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        tx.commit().await.expect("commit");
        changed
    }
}

#[async_trait]
impl Harness for PgHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.current()
    }

    async fn reopen(&self) -> Arc<dyn Store> {
        let store = Arc::new(PgStore::open(&self.config).await.expect("reopen"));
        *self.store.lock().expect("lock") = store.clone();
        store
    }

    async fn verify(&self, keys: HashMap<String, VerifyingKey>, options: WalkOptions) -> Report {
        let pool = self.pool.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            verify_store_with(&pool, runtime, &keys, options, &mut |_| {}).expect("walk")
        })
        .await
        .expect("walk task")
    }

    async fn attack(&self, attack: Attack<'_>) {
        let changed = match attack {
            Attack::EntryBytes {
                tenant,
                seq,
                from,
                to,
            } => {
                self.as_attacker(
                    "UPDATE events SET entry = decode(replace(encode(entry, 'hex'), encode($1, 'hex'), \
                     encode($2, 'hex')), 'hex') WHERE tenant = $3 AND seq = $4",
                    &[&from, &to, &tenant, &(seq as i64)],
                )
                .await
            }
            Attack::EntryCut { tenant, seq } => {
                self.as_attacker(
                    "UPDATE events SET entry = substring(entry from 1 for 60) WHERE tenant = $1 AND seq = $2",
                    &[&tenant, &(seq as i64)],
                )
                .await
            }
            Attack::PersonalBytes {
                tenant,
                seq,
                from,
                to,
            } => {
                self.as_attacker(
                    "UPDATE events SET personal_values = decode(replace(encode(personal_values, 'hex'), \
                     encode($1, 'hex'), encode($2, 'hex')), 'hex') WHERE tenant = $3 AND seq = $4",
                    &[&from, &to, &tenant, &(seq as i64)],
                )
                .await
            }
            Attack::LeafHash { tenant, seq } => {
                self.as_attacker(
                    "UPDATE leaves SET hash = decode(md5(random()::text) || md5(random()::text), 'hex') \
                     WHERE tenant = $1 AND seq = $2",
                    &[&tenant, &(seq as i64)],
                )
                .await
            }
            Attack::Leftover { tenant, seq } => {
                self.as_attacker(
                    "UPDATE events SET prev_hash = '\\x01' WHERE tenant = $1 AND seq = $2",
                    &[&tenant, &(seq as i64)],
                )
                .await
            }
            Attack::Delete { tenant, from, to } => {
                self.as_attacker(
                    "WITH gone AS (DELETE FROM leaves WHERE tenant = $1 AND seq BETWEEN $2 AND $3) \
                     DELETE FROM events WHERE tenant = $1 AND seq BETWEEN $2 AND $3",
                    &[&tenant, &(from as i64), &(to as i64)],
                )
                .await
            }
            Attack::Swap { tenant, a, b } => {
                self.as_attacker(
                    "UPDATE events SET seq = CASE seq WHEN $2 THEN $3 ELSE $2 END \
                     WHERE tenant = $1 AND seq IN ($2, $3)",
                    &[&tenant, &(a as i64), &(b as i64)],
                )
                .await
            }
            Attack::Duplicate { tenant, seq, id } => {
                self.as_attacker(
                    "INSERT INTO events (tenant, seq, id, recorded_at, entry, personal_values) \
                     SELECT tenant, seq, $3, recorded_at + interval '1 microsecond', \
                     decode(replace(encode(entry, 'hex'), encode('act.n', 'hex'), encode('forge', 'hex')), 'hex'), \
                     personal_values FROM events WHERE tenant = $1 AND seq = $2",
                    &[&tenant, &(seq as i64), &id],
                )
                .await
            }
            Attack::CheckpointSignature { tenant } => {
                self.as_attacker(
                    "UPDATE checkpoints SET signature = 'AAAA' WHERE tenant = $1",
                    &[&tenant],
                )
                .await
            }
            Attack::DropPersonal { tenant, seq } => {
                self.as_attacker(
                    "UPDATE events SET personal_values = NULL WHERE tenant = $1 AND seq = $2",
                    &[&tenant, &(seq as i64)],
                )
                .await
            }
            Attack::RemoveContent { tenant, seq } => {
                self.as_attacker(
                    "DELETE FROM events WHERE tenant = $1 AND seq = $2",
                    &[&tenant, &(seq as i64)],
                )
                .await
            }
        };
        assert!(changed > 0, "{attack:?} changed nothing");
    }

    async fn direct_changes(&self) -> Vec<(String, Option<String>)> {
        let client = self.pool.get().await.expect("client");
        let mut out = Vec::new();
        for sql in [
            "UPDATE events SET entry = '\\x00' WHERE tenant = 't'",
            "DELETE FROM events WHERE tenant = 't'",
            "TRUNCATE events",
            "UPDATE leaves SET seq = seq + 100",
            "DELETE FROM leaves",
            "TRUNCATE leaves",
            "UPDATE tree_nodes SET hash = '\\x00'",
            "DELETE FROM tree_nodes",
            "UPDATE checkpoints SET size = 1",
            "DELETE FROM checkpoints",
            "TRUNCATE checkpoints",
        ] {
            let refused = client.batch_execute(sql).await.err().map(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            });
            out.push((sql.to_owned(), refused));
        }
        // Truncating a partition directly is refused too.
        let partition: String = client
            .query_one(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events' \
                 AND p.relnamespace = current_schema()::regnamespace ORDER BY 1 LIMIT 1",
                &[],
            )
            .await
            .expect("a partition")
            .get(0);
        let sql = format!("TRUNCATE {partition}");
        let refused = client.batch_execute(&sql).await.err().map(|e| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        });
        out.push((sql, refused));
        out
    }

    async fn sanctioned(&self, seq: u64, fail: bool) -> StoreResult<Appended> {
        let audit = prepared(
            "t",
            json!({"action": "audit.anonymized", "actor": {"id": "admin", "type": "service"}}),
        );
        self.current()
            .sanctioned(
                "test erasure",
                audit,
                Box::new(move |client| {
                    Box::pin(async move {
                        let row = client
                            .query_one(
                                "SELECT personal_values FROM events WHERE tenant = 't' AND seq = $1",
                                &[&(seq as i64)],
                            )
                            .await?;
                        let values: Vec<u8> = row.get(0);
                        client
                            .execute(
                                "UPDATE events SET personal_values = $1 WHERE tenant = 't' AND seq = $2",
                                &[&sealtrail_store::integrity::erased(&values), &(seq as i64)],
                            )
                            .await?;
                        if fail {
                            client.execute("SELECT no_such_column FROM events", &[]).await?;
                        }
                        Ok(())
                    })
                }),
            )
            .await
    }

    async fn traces(&self, needle: &str) -> Vec<String> {
        let client = self.pool.get().await.expect("client");
        let tables: Vec<String> = client
            .query(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                &[],
            )
            .await
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let text = format!("%{needle}%");
        let bytes = format!(
            "%{}%",
            needle
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let mut found = Vec::new();
        for table in tables {
            let n: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM \"{table}\" x WHERE x::text ILIKE $1 OR x::text ILIKE $2"
                    ),
                    &[&text, &bytes],
                )
                .await
                .expect("search")
                .get(0);
            if n > 0 {
                found.push(format!("{table}: {n} rows"));
            }
        }
        found
    }

    async fn personal_values(&self, seq: u64) -> Option<Vec<u8>> {
        let client = self.pool.get().await.expect("client");
        client
            .query_one(
                "SELECT personal_values FROM events WHERE tenant = 't' AND seq = $1",
                &[&(seq as i64)],
            )
            .await
            .expect("row")
            .get(0)
    }
}

async fn harness() -> Option<Arc<dyn Harness>> {
    // A small queue, so that the overload case can fill it.
    let (store, config) = fresh_store_with(|c| c.queue_capacity = 200).await?;
    let pool =
        sealtrail_store_postgres::pool(config.url.expose(), &config.schema, 4).expect("pool");
    Some(Arc::new(PgHarness {
        config,
        pool,
        store: Mutex::new(Arc::new(store)),
    }))
}

sealtrail_store::integrity_suite!(harness());
