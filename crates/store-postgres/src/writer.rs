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
use sealtrail_store::pipeline::{KnownId, Loaded, LogBackend, LogEnd, SealedBatch, Want};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
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
    /// Whether `BEGIN` was sent on `client`: it goes out with the first statements of the
    /// transaction rather than on a round trip of its own.
    begun: bool,
}

impl PgLog {
    pub(crate) fn new(pool: Pool) -> Self {
        Self {
            pool,
            client: None,
            begun: false,
        }
    }

    fn object(&self) -> Result<&Object, PgError> {
        self.client
            .as_ref()
            .ok_or_else(|| PgError::Damaged("no open transaction".into()))
    }

    fn client(&self) -> Result<&tokio_postgres::Client, PgError> {
        Ok(self.object()?)
    }

    /// Sends `BEGIN` now unless it was sent already.
    async fn ensure_begun(&mut self) -> Result<(), PgError> {
        if !self.begun {
            self.client()?.batch_execute("BEGIN").await?;
            self.begun = true;
        }
        Ok(())
    }
}

/// `BEGIN`, unless `begun`: the first future of a pipelined flight.
async fn begin_unless(client: &tokio_postgres::Client, begun: bool) -> Result<(), PgError> {
    if !begun {
        client.batch_execute("BEGIN").await?;
    }
    Ok(())
}

/// The advisory lock of each tenant of this schema (stores in other schemas of the database
/// have tenants of their own), taken in hash order so that concurrent writers never wait on
/// each other in a cycle. Held until the transaction ends.
const LOCK_TENANTS: &str = "SELECT pg_advisory_xact_lock(h) FROM \
     (SELECT DISTINCT hashtextextended(current_schema() || '/' || t, 7) AS h \
      FROM unnest($1::text[]) AS t ORDER BY 1) AS s";

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
        self.client = Some(self.pool.get().await?);
        self.begun = false;
        Ok(())
    }

    async fn load(&mut self, want: &Want) -> Result<Loaded, PgError> {
        let begun = self.begun;
        let client = self.object()?;
        let tenants: Vec<&str> = want.tenants.iter().map(Tenant::as_str).collect();
        // Statements are prepared once per connection; then BEGIN, the lock and (once it is
        // held) the log ends and ids go out together, one round trip.
        let lock_stmt = client.prepare_cached(LOCK_TENANTS).await?;
        let ends_stmt = client
            .prepare_cached(
                "SELECT tenant, size, last_hash, frontier, last_recorded_at FROM tenant_logs WHERE tenant = ANY($1)",
            )
            .await?;
        let ids_stmt = client
            .prepare_cached(
                "SELECT id, tenant, digest, seq, recorded_at, hash FROM leaves WHERE id = ANY($1)",
            )
            .await?;
        let tenants_param: [&(dyn ToSql + Sync); 1] = [&tenants];
        let begin = begin_unless(client, begun);
        let lock = async { Ok::<_, PgError>(client.execute(&lock_stmt, &tenants_param).await?) };
        let ends = async { Ok::<_, PgError>(client.query(&ends_stmt, &tenants_param).await?) };
        let ids = async {
            if want.ids.is_empty() {
                return Ok(Vec::new());
            }
            Ok::<_, PgError>(client.query(&ids_stmt, &[&want.ids]).await?)
        };
        let (_, _, ends, ids) = futures::try_join!(begin, lock, ends, ids)?;
        self.begun = true;
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
        Ok(loaded)
    }

    async fn write(&mut self, batch: &SealedBatch) -> Result<(), PgError> {
        let begun = self.begun;
        let client = self.object()?;
        let statements = WriteStatements::prepare(client).await?;
        write_batch(client, &statements, begun, batch).await?;
        self.begun = true;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), PgError> {
        if self.begun {
            self.client()?.batch_execute("COMMIT").await?;
        }
        self.client = None;
        self.begun = false;
        Ok(())
    }

    async fn write_and_commit(&mut self, batch: &SealedBatch) -> Result<(), PgError> {
        let begun = self.begun;
        let client = self.object()?;
        // COMMIT goes out behind the batch's statements, all sent on the join's first poll
        // (the statements are prepared already): should one of them fail, PostgreSQL turns
        // the COMMIT into a rollback, and the failure is what is reported.
        let statements = WriteStatements::prepare(client).await?;
        let write = write_batch(client, &statements, begun, batch);
        let commit = async {
            client.batch_execute("COMMIT").await?;
            Ok::<_, PgError>(())
        };
        let outcome = futures::try_join!(write, commit).map(|_| ());
        if outcome.is_ok() {
            self.client = None;
            self.begun = false;
        } else {
            self.begun = true;
        }
        outcome
    }

    async fn rollback(&mut self) {
        let begun = std::mem::replace(&mut self.begun, false);
        if let Some(client) = self.client.take()
            && begun
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
        self.ensure_begun().await?;
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

/// Writes a sealed batch in one pipelined flight (after `BEGIN` unless `begun`): events,
/// leaves, nodes and log ends, each one multi-row `INSERT … SELECT
/// unnest(…)` of prepared statements. One round trip whatever the batch's size; a binary COPY
/// would need three per table, which is what a group of a few single events cannot afford.
struct WriteStatements {
    events: tokio_postgres::Statement,
    leaves: tokio_postgres::Statement,
    nodes: tokio_postgres::Statement,
    ends: tokio_postgres::Statement,
}

impl WriteStatements {
    /// Prepares the statements, once per connection (they are cached with it). Done before a
    /// flight is sent, so that nothing in the flight waits on a round trip of its own.
    async fn prepare(client: &Object) -> Result<Self, PgError> {
        const NODES: &str = "INSERT INTO tree_nodes (tenant, level, idx, hash) \
             SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[])";
        const ENDS: &str = "INSERT INTO tenant_logs (tenant, size, last_hash, frontier, root, last_recorded_at) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[], $6::timestamptz[]) \
             ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, last_hash = excluded.last_hash, \
             frontier = excluded.frontier, root = excluded.root, last_recorded_at = excluded.last_recorded_at";
        let rows = |table: &str, columns: &str| {
            format!(
                "INSERT INTO {table} ({columns}) SELECT * FROM unnest($1::text[], $2::bigint[], \
                 $3::uuid[], $4::timestamptz[], $5::bytea[], $6::bytea[])"
            )
        };
        let events_stmt = client
            .prepare_cached(&rows("events", EVENT_COLUMNS))
            .await?;
        let leaves_stmt = client.prepare_cached(&rows("leaves", LEAF_COLUMNS)).await?;
        let nodes_stmt = client.prepare_cached(NODES).await?;
        let ends_stmt = client.prepare_cached(ENDS).await?;
        Ok(Self {
            events: events_stmt,
            leaves: leaves_stmt,
            nodes: nodes_stmt,
            ends: ends_stmt,
        })
    }
}

async fn write_batch(
    client: &Object,
    statements: &WriteStatements,
    begun: bool,
    batch: &SealedBatch,
) -> Result<(), PgError> {
    let ev = &batch.events;
    let tenants: Vec<&str> = ev.iter().map(|e| e.tenant.as_str()).collect();
    let seqs: Vec<i64> = ev.iter().map(|e| e.seq as i64).collect();
    let ids: Vec<Uuid> = ev.iter().map(|e| e.id).collect();
    let recorded: Vec<OffsetDateTime> = ev.iter().map(|e| e.recorded_at.to_datetime()).collect();
    let entries: Vec<&[u8]> = ev.iter().map(|e| e.entry.as_slice()).collect();
    let values: Vec<Option<&[u8]>> = ev.iter().map(|e| e.personal_values.as_deref()).collect();
    let digests: Vec<&[u8]> = ev.iter().map(|e| e.digest.as_slice()).collect();
    let hashes: Vec<&[u8]> = ev.iter().map(|e| e.hash.0.as_slice()).collect();
    let event_params: [&(dyn ToSql + Sync); 6] =
        [&tenants, &seqs, &ids, &recorded, &entries, &values];
    let leaf_params: [&(dyn ToSql + Sync); 6] =
        [&tenants, &seqs, &ids, &recorded, &digests, &hashes];

    let node_tenant: Vec<&str> = batch.nodes.iter().map(|n| n.tenant.as_str()).collect();
    let node_level: Vec<i32> = batch.nodes.iter().map(|n| n.level as i32).collect();
    let node_idx: Vec<i64> = batch.nodes.iter().map(|n| n.index as i64).collect();
    let node_hash: Vec<&[u8]> = batch.nodes.iter().map(|n| n.hash.as_slice()).collect();
    let node_params: [&(dyn ToSql + Sync); 4] = [&node_tenant, &node_level, &node_idx, &node_hash];

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

    // Sent in this order on the first poll; PostgreSQL answers in order, so the first failure
    // is the one reported, and the statements after it fail with the aborted transaction.
    futures::try_join!(
        begin_unless(client, begun),
        execute_unless(client, &statements.events, &event_params, ev.is_empty()),
        execute_unless(client, &statements.leaves, &leaf_params, ev.is_empty()),
        execute_unless(client, &statements.nodes, &node_params, node_idx.is_empty()),
        execute_unless(client, &statements.ends, &end_params, end_tenant.is_empty()),
    )?;
    Ok(())
}

/// Executes `stmt` unless `skip`: one statement of a pipelined flight.
async fn execute_unless(
    client: &tokio_postgres::Client,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn ToSql + Sync)],
    skip: bool,
) -> Result<(), PgError> {
    if !skip {
        client.execute(stmt, params).await?;
    }
    Ok(())
}

/// The columns of `events` the writer fills, in the order of its insert.
pub const EVENT_COLUMNS: &str = "tenant, seq, id, recorded_at, entry, personal_values";

/// The columns of `leaves` the writer fills, in the order of its insert.
pub const LEAF_COLUMNS: &str = "tenant, seq, id, recorded_at, digest, hash";
