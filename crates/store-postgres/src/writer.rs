//! The PostgreSQL side of the write path ([`sealtrail_store::pipeline`]): one writer task per
//! process, each group in one transaction on a pooled connection.
//!
//! Several processes may write into one database. Within a transaction the writer takes a
//! transaction-scoped advisory lock per tenant it touches (in a fixed order, so two writers
//! never wait on each other in a cycle), then reads where each tenant's log ends from
//! `tenant_logs`: no process trusts a log end it remembers. Sequencing, chaining and the Merkle
//! frontier therefore advance one transaction at a time per tenant, whichever process commits
//! it; `leaves` (unique `(tenant, seq)` and `id`) makes the database refuse anything else.
//! The statements that load a group's state are sent together (pipelined), as are those that
//! write it, so a group costs few round trips.

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use futures::future::BoxFuture;
use sealtrail_ledger::LeafHash;
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::pipeline::{
    KnownId, Loaded, LogBackend, LogEnd, SealedBatch, SealedEvent, SubjectKey, Want,
};
use time::OffsetDateTime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::PgError;
use crate::nodes::{frontier_from_bytes, frontier_to_bytes};

/// A change to stored events, run inside the sanctioned path's transaction.
pub type SanctionedJob = Box<
    dyn for<'a> FnOnce(
            &'a tokio_postgres::Client,
        ) -> BoxFuture<'a, Result<(), tokio_postgres::Error>>
        + Send,
>;

/// The writer's connection while a transaction is open.
pub(crate) struct PgLog {
    pool: Pool,
    client: Option<Object>,
}

impl PgLog {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool, client: None }
    }

    fn client(&self) -> Result<&tokio_postgres::Client, PgError> {
        self.client
            .as_ref()
            .map(|c| &***c)
            .ok_or_else(|| PgError::Damaged("no open transaction".into()))
    }
}

/// The advisory lock of each tenant, taken in hash order so that concurrent writers never wait
/// on each other in a cycle. Held until the transaction ends.
const LOCK_TENANTS: &str = "SELECT pg_advisory_xact_lock(h) FROM \
     (SELECT DISTINCT hashtextextended(t, 7) AS h FROM unnest($1::text[]) AS t ORDER BY 1) AS s";

fn corrupt(tenant: &str, err: impl std::fmt::Display) -> PgError {
    PgError::Damaged(format!("the tenant_logs row of {tenant}: {err}"))
}

#[async_trait]
impl LogBackend for PgLog {
    type Job = SanctionedJob;
    type Error = PgError;

    // The writer is a task on the server's runtime: sealing must not run there.
    const SEAL_OFF_THREAD: bool = true;

    async fn begin(&mut self) -> Result<(), PgError> {
        let client = self.pool.get().await?;
        client.batch_execute("BEGIN").await?;
        self.client = Some(client);
        Ok(())
    }

    async fn load(&mut self, want: &Want) -> Result<Loaded, PgError> {
        let client = self.client()?;
        let tenants: Vec<&str> = want.tenants.iter().map(Tenant::as_str).collect();
        let (subject_tenants, subjects): (Vec<&str>, Vec<&str>) = want
            .subjects
            .iter()
            .map(|(t, s)| (t.as_str(), s.as_str()))
            .unzip();
        // Sent together: the lock, then (once it is held) the log ends, ids and keys.
        let tenants_param: [&(dyn ToSql + Sync); 1] = [&tenants];
        let lock = client.execute(LOCK_TENANTS, &tenants_param);
        let ends = client.query(
            "SELECT tenant, size, last_hash, frontier, last_recorded_at FROM tenant_logs WHERE tenant = ANY($1)",
            &tenants_param,
        );
        let ids = async {
            if want.ids.is_empty() {
                return Ok(Vec::new());
            }
            client
                .query(
                    "SELECT id, tenant, digest, seq, recorded_at, hash FROM leaves WHERE id = ANY($1)",
                    &[&want.ids],
                )
                .await
        };
        let keys = async {
            if subjects.is_empty() {
                return Ok(Vec::new());
            }
            client
                .query(
                    "SELECT k.tenant, k.subject, k.key FROM subject_keys k \
                     JOIN unnest($1::text[], $2::text[]) AS w(tenant, subject) USING (tenant, subject) \
                     WHERE k.key IS NOT NULL",
                    &[&subject_tenants, &subjects],
                )
                .await
        };
        let (_, ends, ids, keys) = futures::try_join!(lock, ends, ids, keys)?;
        let mut loaded = Loaded::default();
        for row in ends {
            let tenant: String = row.get(0);
            let size = row.get::<_, i64>(1) as u64;
            let last = row
                .get::<_, Option<Vec<u8>>>(2)
                .and_then(|h| LeafHash::from_slice(&h))
                .unwrap_or_default();
            let frontier = frontier_from_bytes(size, &row.get::<_, Vec<u8>>(3))
                .map_err(|e| corrupt(&tenant, e))?;
            let recorded_at = row
                .get::<_, Option<OffsetDateTime>>(4)
                .map(Timestamp::from_datetime);
            loaded.ends.insert(
                Tenant::from_store(tenant),
                LogEnd {
                    size,
                    last,
                    frontier,
                    recorded_at,
                },
            );
        }
        for row in ids {
            let id: Uuid = row.get(0);
            loaded.known.insert(
                id,
                KnownId {
                    tenant: Tenant::from_store(row.get::<_, String>(1)),
                    digest: row.get::<_, Vec<u8>>(2).try_into().unwrap_or([0; 32]),
                    seq: row.get::<_, i64>(3) as u64,
                    recorded_at: Timestamp::from_datetime(row.get(4)),
                    hash: LeafHash::from_slice(&row.get::<_, Vec<u8>>(5)).unwrap_or_default(),
                },
            );
        }
        for row in keys {
            if let Ok(key) = <[u8; 32]>::try_from(row.get::<_, Vec<u8>>(2)) {
                loaded.keys.insert(
                    (
                        Tenant::from_store(row.get::<_, String>(0)),
                        row.get::<_, String>(1),
                    ),
                    SubjectKey(key),
                );
            }
        }
        Ok(loaded)
    }

    async fn write(&mut self, batch: &SealedBatch) -> Result<(), PgError> {
        let client = self.client()?;
        write_batch(client, batch).await?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), PgError> {
        let client = self.client()?;
        client.batch_execute("COMMIT").await?;
        self.client = None;
        Ok(())
    }

    async fn rollback(&mut self) {
        if let Some(client) = self.client.take()
            && let Err(err) = client.batch_execute("ROLLBACK").await
        {
            tracing::debug!(error = %err, "rollback failed; the connection is dropped");
            // A connection whose transaction state is unknown must not go back to the pool.
            let _ = Object::take(client);
        }
    }

    async fn sanctioned(
        &mut self,
        tenant: &Tenant,
        reason: &str,
        job: SanctionedJob,
    ) -> Result<(), PgError> {
        let client = self.client()?;
        client
            .execute(LOCK_TENANTS, &[&vec![tenant.as_str()]])
            .await?;
        client
            .execute(
                "INSERT INTO sanction (id, reason) VALUES (1, $1)",
                &[&reason],
            )
            .await?;
        job(client).await?;
        client.execute("DELETE FROM sanction", &[]).await?;
        Ok(())
    }

    async fn cure(&mut self, err: &PgError) -> bool {
        match err.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => true,
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => true,
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE => true,
            // No partition for the row: the upkeep job fell behind (or the clock jumped).
            Some(c) if *c == SqlState::CHECK_VIOLATION => match self.pool.get().await {
                Ok(mut client) => crate::schema::ensure_partitions(
                    &mut client,
                    OffsetDateTime::now_utc(),
                    1,
                    crate::PARTITIONS_AHEAD,
                )
                .await
                .is_ok(),
                Err(_) => false,
            },
            _ => false,
        }
    }
}

/// Writes a sealed batch: events and leaves by binary COPY, then the nodes, new subject keys
/// and log ends in one pipelined flight.
async fn write_batch(
    client: &tokio_postgres::Client,
    batch: &SealedBatch,
) -> Result<(), tokio_postgres::Error> {
    copy_events(client, &batch.events).await?;
    copy_leaves(client, &batch.events).await?;
    let node_tenant: Vec<&str> = batch.nodes.iter().map(|n| n.tenant.as_str()).collect();
    let node_level: Vec<i32> = batch.nodes.iter().map(|n| n.level as i32).collect();
    let node_idx: Vec<i64> = batch.nodes.iter().map(|n| n.index as i64).collect();
    let node_hash: Vec<&[u8]> = batch.nodes.iter().map(|n| n.hash.as_slice()).collect();
    let nodes = async {
        if node_idx.is_empty() {
            return Ok(0);
        }
        client
            .execute(
                "INSERT INTO tree_nodes (tenant, level, idx, hash) \
                 SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[])",
                &[&node_tenant, &node_level, &node_idx, &node_hash],
            )
            .await
    };
    let key_tenant: Vec<&str> = batch.new_keys.iter().map(|k| k.0.as_str()).collect();
    let key_subject: Vec<&str> = batch.new_keys.iter().map(|k| k.1.as_str()).collect();
    let key_bytes: Vec<&[u8]> = batch.new_keys.iter().map(|k| k.2.0.as_slice()).collect();
    let keys = async {
        if key_tenant.is_empty() {
            return Ok(0);
        }
        client
            .execute(
                "INSERT INTO subject_keys (tenant, subject, key) SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
                 ON CONFLICT (tenant, subject) DO UPDATE SET key = excluded.key",
                &[&key_tenant, &key_subject, &key_bytes],
            )
            .await
    };
    let end_tenant: Vec<&str> = batch.ends.iter().map(|(t, _)| t.as_str()).collect();
    let end_size: Vec<i64> = batch.ends.iter().map(|(_, e)| e.size as i64).collect();
    let end_last: Vec<&[u8]> = batch
        .ends
        .iter()
        .map(|(_, e)| e.last.0.as_slice())
        .collect();
    let end_frontier: Vec<Vec<u8>> = batch
        .ends
        .iter()
        .map(|(_, e)| frontier_to_bytes(&e.frontier))
        .collect();
    let end_root: Vec<Vec<u8>> = batch
        .ends
        .iter()
        .map(|(_, e)| e.frontier.root().to_vec())
        .collect();
    let end_recorded: Vec<OffsetDateTime> = batch
        .ends
        .iter()
        .map(|(_, e)| {
            e.recorded_at
                .unwrap_or(Timestamp::from_micros(0))
                .to_datetime()
        })
        .collect();
    let end_params: [&(dyn ToSql + Sync); 6] = [
        &end_tenant,
        &end_size,
        &end_last,
        &end_frontier,
        &end_root,
        &end_recorded,
    ];
    let ends = client.execute(
        "INSERT INTO tenant_logs (tenant, size, last_hash, frontier, root, last_recorded_at) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[], $6::timestamptz[]) \
         ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, last_hash = excluded.last_hash, \
         frontier = excluded.frontier, root = excluded.root, last_recorded_at = excluded.last_recorded_at",
        &end_params,
    );
    futures::try_join!(nodes, keys, ends)?;
    Ok(())
}

/// The columns of `events` in COPY order.
pub const EVENT_COLUMNS: &str = "tenant, seq, id, recorded_at, entry, personal_values";

/// The types of [`EVENT_COLUMNS`], for a binary COPY.
pub const EVENT_TYPES: [Type; 6] = [
    Type::TEXT,
    Type::INT8,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
    Type::BYTEA,
];

/// The columns of `leaves` in COPY order.
pub const LEAF_COLUMNS: &str = "tenant, seq, id, recorded_at, digest, hash";

/// The types of [`LEAF_COLUMNS`], for a binary COPY.
pub const LEAF_TYPES: [Type; 6] = [
    Type::TEXT,
    Type::INT8,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
    Type::BYTEA,
];

async fn copy_events(
    client: &tokio_postgres::Client,
    events: &[SealedEvent],
) -> Result<(), tokio_postgres::Error> {
    let sink = client
        .copy_in(&format!("COPY events ({EVENT_COLUMNS}) FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &EVENT_TYPES);
    futures::pin_mut!(writer);
    for e in events {
        let row: [&(dyn ToSql + Sync); 6] = [
            &e.tenant.as_str(),
            &(e.seq as i64),
            &e.id,
            &e.recorded_at.to_datetime(),
            &e.entry,
            &e.personal_values,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

async fn copy_leaves(
    client: &tokio_postgres::Client,
    events: &[SealedEvent],
) -> Result<(), tokio_postgres::Error> {
    let sink = client
        .copy_in(&format!("COPY leaves ({LEAF_COLUMNS}) FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &LEAF_TYPES);
    futures::pin_mut!(writer);
    for e in events {
        writer
            .as_mut()
            .write(&[
                &e.tenant.as_str(),
                &(e.seq as i64),
                &e.id,
                &e.recorded_at.to_datetime(),
                &e.digest.as_slice(),
                &e.hash.0.as_slice(),
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}
