//! The PostgreSQL backend of the sealtrail store: the production backend, which several
//! sealtrail server processes may share.
//!
//! Everything lives in its own schema (`sealtrail` by default), brought up to date by versioned
//! migrations ([`schema`]). `events` is range-partitioned by month on `recorded_at`; partitions
//! are made at start and ahead of time by a background job. Each process has one writer task
//! (`writer`) that group-commits append requests from a bounded queue and seals every event
//! in the transaction that stores it, under a per-tenant advisory lock, so any number of
//! processes keep each tenant's `seq` gap-free and its chain and tree valid. Writes and reads
//! use separate connection pools; reads of events may go to a replica.

mod cache;
mod index;
mod nodes;
mod read;
mod removal;
pub mod schema;
pub mod testing;
pub mod verify;
mod writer;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::derived::{IndexGate, IndexerOptions};
use sealtrail_store::pipeline::{self, BatchLimits, WriteHandle};
use sealtrail_store::plan;
use sealtrail_store::{
    ApiKey, Appended, Checkpoint, DatabaseUrl, HistoryQuery, LeafHash, ListQuery, NewKey, Page,
    PreparedEvent, QueueStatus, Setting, Store, StoreError, StoreResult, StoredEvent, TenantScope,
    TreeHead, scopes_to_text,
};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::writer::PgLog;
pub use crate::writer::{EVENT_COLUMNS, LEAF_COLUMNS, SanctionedJob};

/// Months of partitions kept ready beyond the current one.
pub const PARTITIONS_AHEAD: u32 = 3;

/// How often the background job checks that partitions exist ahead.
const PARTITION_UPKEEP_EVERY: Duration = Duration::from_secs(3600);

/// How the PostgreSQL store is set up.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// The primary's URL: writes, keys, checkpoints and proofs.
    pub url: DatabaseUrl,
    /// A read replica's URL for event reads (lists, get, timelines); the primary when `None`.
    pub read_url: Option<DatabaseUrl>,
    /// The schema that holds every table.
    pub schema: String,
    /// Most events in one commit.
    pub batch_max_events: usize,
    /// How long the writer waits for more requests before committing a batch that is not full.
    pub batch_max_wait: Duration,
    /// Most events waiting in the write queue; beyond it appends fail with
    /// [`StoreError::Overloaded`].
    pub queue_capacity: usize,
    /// Connections of the write pool.
    pub write_connections: usize,
    /// Connections of the read pool.
    pub read_connections: usize,
    /// Whether to apply missing migrations at open; when off, an out-of-date schema is an error.
    pub migrate: bool,
    /// How this server's indexer runs, and the lag past which ingest is refused.
    pub indexer: IndexerOptions,
}

impl PgConfig {
    /// Defaults for a database URL.
    pub fn new(url: impl Into<DatabaseUrl>) -> Self {
        Self {
            url: url.into(),
            read_url: None,
            schema: "sealtrail".into(),
            batch_max_events: 5_000,
            batch_max_wait: Duration::ZERO,
            queue_capacity: 50_000,
            write_connections: 4,
            read_connections: 8,
            migrate: true,
            indexer: IndexerOptions::default(),
        }
    }
}

/// Why a PostgreSQL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// PostgreSQL answered with an error, or the connection failed.
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from a pool.
    #[error("no database connection: {0}")]
    Pool(String),
    /// Something stored is not in the shape this build writes.
    #[error("damaged store: {0}")]
    Damaged(String),
    /// The sealing task failed (it panicked).
    #[error("sealing failed: {0}")]
    Seal(String),
    /// The task reading an answer's rows failed (it panicked or the runtime shut down).
    #[error("reading an answer failed: {0}")]
    Read(String),
    /// A Merkle node a proof needs is not stored.
    #[error("proof: {0}")]
    Proof(#[from] sealtrail_ledger::merkle::ProofError),
}

impl PgError {
    /// The SQLSTATE, when PostgreSQL gave one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Self::Postgres(e) => e.code(),
            _ => None,
        }
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => Self::Postgres(e),
            other => Self::Pool(other.to_string()),
        }
    }
}

impl From<PgError> for StoreError {
    fn from(err: PgError) -> Self {
        StoreError::Database(err.to_string())
    }
}

/// A database failure in one line: the server's code and message, or the connection's error
/// with its cause.
fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(err) {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL does not parse.
    #[error("invalid database URL: {0}")]
    Url(tokio_postgres::Error),
    /// The schema could not be brought up to date.
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    /// A pool could not be built or the database could not be reached.
    #[error(transparent)]
    Database(#[from] PgError),
}

/// A public key that signs checkpoints, as published in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id (also the key name in checkpoint notes).
    pub key_id: String,
    /// The Ed25519 public key, base64.
    pub public_key: String,
    /// When it became a signing key.
    pub created_at: Timestamp,
    /// When it stopped signing.
    pub retired_at: Option<Timestamp>,
}

/// Builds a pool of `size` connections whose search path is `schema`.
///
/// Parallel query and JIT compilation are off on these connections: every statement sealtrail
/// sends reads or writes a page's worth of rows by key, and PostgreSQL, misled by the estimates
/// of `= ANY(array)` in generic plans, chose parallel plans whose worker start-up took ≈ 4 ms
/// and compiled the page's row read to machine code (≈ 17 ms) on every list request at 10M
/// events, for a read that takes 0.1 ms.
pub fn pool(url: &str, schema: &str, size: usize) -> Result<Pool, OpenError> {
    schema::check_name(schema)?;
    let mut config: tokio_postgres::Config = url.parse().map_err(OpenError::Url)?;
    config.options(format!(
        "-c search_path={schema} -c max_parallel_workers_per_gather=0 -c jit=off"
    ));
    if config.get_application_name().is_none() {
        config.application_name("sealtrail");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| OpenError::Database(PgError::Pool(e.to_string())))
}

/// Applies missing migrations to the schema at `url` (`sealtrail migrate`); returns how many.
pub async fn migrate(url: &str, schema: &str) -> Result<u32, OpenError> {
    let pool = pool(url, schema, 1)?;
    let mut client = pool.get().await.map_err(PgError::from)?;
    let applied = schema::migrate(&mut client, schema).await?;
    schema::ensure_partitions(&mut client, OffsetDateTime::now_utc(), 0, PARTITIONS_AHEAD)
        .await
        .map_err(PgError::from)?;
    Ok(applied)
}

/// The PostgreSQL store.
pub struct PgStore {
    writes: WriteHandle<PgLog>,
    gate: std::sync::Arc<IndexGate>,
    index: index::SharedIndexer,
    batch: u64,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
    write: Pool,
    read: Pool,
    writer: Mutex<Option<JoinHandle<()>>>,
    upkeep: JoinHandle<()>,
    /// What reads learnt of the unindexed tails.
    tail: std::sync::Arc<sealtrail_store::tail::TailIndex>,
    /// API keys and settings read, kept while the change listener is up.
    cache: std::sync::Arc<cache::StoreCache>,
    /// The channel this schema's changes of keys and settings are announced on.
    change_channel: String,
    change_listener: AbortOnDrop,
    /// Vacuums started after anonymisations, awaited by [`Store::shutdown`].
    vacuums: Mutex<Vec<JoinHandle<()>>>,
}

/// A task that ends with its owner.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStore {
    /// Connects, brings the schema up to date (or checks it is), makes the partitions of this
    /// month and the next [`PARTITIONS_AHEAD`], and starts the writer and the partition job.
    pub async fn open(config: &PgConfig) -> Result<Self, OpenError> {
        let write = pool(
            config.url.expose(),
            &config.schema,
            config.write_connections,
        )?;
        let read = pool(
            config.read_url.as_ref().unwrap_or(&config.url).expose(),
            &config.schema,
            config.read_connections,
        )?;
        {
            let mut client = write.get().await.map_err(PgError::from)?;
            if config.migrate {
                schema::migrate(&mut client, &config.schema).await?;
            } else {
                schema::require_current(&client, &config.schema).await?;
            }
            schema::ensure_partitions(&mut client, OffsetDateTime::now_utc(), 0, PARTITIONS_AHEAD)
                .await
                .map_err(PgError::from)?;
            index::check_version(&mut client).await?;
            // A partition retention detached, left by a crash before its files were released.
            removal::drop_removed(&client).await;
        }
        let upkeep = tokio::spawn(partition_upkeep(write.clone()));
        // The indexer keeps a connection of its own, so it never takes one the writer waits for.
        let index_pool = pool(config.url.expose(), &config.schema, 1)?;
        let index = sealtrail_store::derived::shared(sealtrail_store::derived::Indexer::new(
            index::PgIndexer::new(index_pool, tokio::runtime::Handle::current()),
        ));
        let gate = IndexGate::new(config.indexer.max_lag);
        let options = config.indexer;
        let indexer = if options.background {
            let (index, gate) = (index.clone(), gate.clone());
            Some(
                std::thread::Builder::new()
                    .name("sealtrail-indexer".into())
                    .spawn(move || sealtrail_store::derived::run_indexer(index, gate, options))
                    .map_err(|e| OpenError::Database(PgError::Seal(e.to_string())))?,
            )
        } else {
            None
        };
        let limits = BatchLimits {
            max_events: config.batch_max_events,
            max_wait: config.batch_max_wait,
        };
        let (writes, writer) =
            pipeline::channel(PgLog::new(write.clone()), limits, config.queue_capacity);
        let writer = tokio::spawn(writer.run());
        let cache = std::sync::Arc::<cache::StoreCache>::default();
        let mut listener_config: tokio_postgres::Config =
            config.url.expose().parse().map_err(OpenError::Url)?;
        listener_config.application_name("sealtrail change listener");
        if listener_config.get_connect_timeout().is_none() {
            listener_config.connect_timeout(Duration::from_secs(5));
        }
        let change_listener = AbortOnDrop(cache::listen(
            listener_config,
            &config.schema,
            cache.clone(),
        ));
        Ok(Self {
            writes,
            gate,
            index,
            batch: options.batch,
            indexer: Mutex::new(indexer),
            write,
            read,
            writer: Mutex::new(Some(writer)),
            upkeep,
            tail: std::sync::Arc::default(),
            cache,
            change_channel: cache::channel(&config.schema),
            change_listener,
            vacuums: Mutex::default(),
        })
    }

    /// The one way past the immutability triggers, for retention and anonymisation: runs `job`
    /// in the writer's transaction with the sanction open and the tenant locked, then records
    /// `audit` (for example `audit.anonymized` or `audit.purged`) in the same transaction.
    /// Direct UPDATE, DELETE or TRUNCATE of events outside this path is refused by the database.
    pub async fn sanctioned(
        &self,
        reason: &str,
        audit: PreparedEvent,
        job: SanctionedJob,
    ) -> StoreResult<Appended> {
        // Rows change: what reads learnt of the tails may no longer hold.
        self.tail.clear();
        let done = self.writes.sanctioned(reason, audit, job).await;
        self.tail.clear();
        done
    }

    /// Whether API keys and settings read are remembered between requests: true while the
    /// connection listening for their changes is up (see the `cache` module).
    pub fn remembers(&self) -> bool {
        self.cache.is_live()
    }

    /// Tells every store on this schema (this one at once) that a key or setting changed, so
    /// that none goes on trusting what it remembered.
    async fn announce_change(
        &self,
        client: &tokio_postgres::Client,
        what: &str,
    ) -> StoreResult<()> {
        self.cache.invalidate();
        client
            .execute("SELECT pg_notify($1, $2)", &[&self.change_channel, &what])
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    /// [`Store::reindex`]: the rebuild, on a blocking thread.
    async fn rebuild(&self, mut progress: Box<dyn FnMut(u64, u64) + Send>) -> StoreResult<u64> {
        let (index, gate, batch) = (self.index.clone(), self.gate.clone(), self.batch);
        let done = tokio::task::spawn_blocking(move || {
            sealtrail_store::derived::rebuild(&index, &gate, batch, &mut progress)
        })
        .await
        .map_err(|e| StoreError::Database(format!("indexing failed: {e}")))??;
        Ok(done)
    }

    /// Publishes checkpoint public keys in the database, so that `sealtrail verify
    /// --database-url` knows every key that signed, whichever server it was. A key already
    /// listed keeps its creation time and takes the given retirement.
    pub async fn publish_signing_keys(&self, keys: &[SigningKeyRecord]) -> StoreResult<()> {
        let client = self.write.get().await.map_err(PgError::from)?;
        for k in keys {
            client
                .execute(
                    "INSERT INTO signing_keys (key_id, public_key, created_at, retired_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key_id) DO UPDATE SET retired_at = excluded.retired_at",
                    &[
                        &k.key_id,
                        &k.public_key,
                        &k.created_at.to_datetime(),
                        &k.retired_at.map(Timestamp::to_datetime),
                    ],
                )
                .await
                .map_err(PgError::from)?;
        }
        Ok(())
    }

    /// The pool of the primary, for tools and tests that query the schema directly.
    pub fn write_pool(&self) -> &Pool {
        &self.write
    }

    async fn primary(&self) -> Result<deadpool_postgres::Object, PgError> {
        Ok(self.write.get().await?)
    }

    /// Runs `f` in one read transaction on a reader connection, on a blocking thread (the
    /// planner's decoding and rendering stay off the runtime).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut read::Snapshot<'_>) -> Result<T, plan::PlanError<PgError>> + Send + 'static,
    {
        let client = self.read.get().await.map_err(PgError::from)?;
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut snap = read::Snapshot::begin(&client, runtime)?;
            f(&mut snap).map_err(|e| match e {
                plan::PlanError::Backend(e) => e,
                plan::PlanError::Row(e) => PgError::Damaged(e.to_string()),
            })
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?
        .map_err(StoreError::from)
    }
}

/// Keeps partitions ready ahead, hourly, for as long as the store is open.
async fn partition_upkeep(pool: Pool) {
    let mut tick = tokio::time::interval(PARTITION_UPKEEP_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let outcome = match pool.get().await {
            Ok(mut client) => schema::ensure_partitions(
                &mut client,
                OffsetDateTime::now_utc(),
                0,
                PARTITIONS_AHEAD,
            )
            .await
            .map_err(PgError::from),
            Err(e) => Err(PgError::from(e)),
        };
        if let Err(err) = outcome {
            tracing::warn!(error = %err, "partition upkeep failed; retrying in an hour");
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn append(&self, events: Vec<PreparedEvent>) -> StoreResult<Vec<Appended>> {
        self.gate.admit(events.iter().map(|e| &e.tenant))?;
        let tenants: Vec<Tenant> = events.iter().map(|e| e.tenant.clone()).collect();
        let appended = self.writes.append(events).await?;
        for (tenant, a) in tenants.iter().zip(&appended) {
            self.gate.appended(tenant, a.seq);
        }
        Ok(appended)
    }

    async fn get(&self, tenant: &Tenant, id: Uuid) -> StoreResult<Option<StoredEvent>> {
        let tenant = tenant.clone();
        self.read(move |snap| plan::get(snap, &tenant, id)).await
    }

    async fn statistics(
        &self,
        query: sealtrail_store::stats::StatsQuery,
    ) -> StoreResult<sealtrail_store::stats::Statistics> {
        let tail = self.tail.clone();
        self.read(move |snap| sealtrail_store::stats::statistics(snap, &query, &tail))
            .await
    }

    async fn list(&self, query: ListQuery) -> StoreResult<Page> {
        let tail = self.tail.clone();
        self.read(move |snap| plan::list(snap, &query, &tail)).await
    }

    async fn history(&self, query: HistoryQuery) -> StoreResult<Page> {
        let tail = self.tail.clone();
        self.read(move |snap| plan::history(snap, &query, &tail))
            .await
    }

    async fn create_key(&self, key: NewKey) -> StoreResult<ApiKey> {
        let client = self.primary().await?;
        client
            .execute(
                "INSERT INTO api_keys (id, tenant, scopes, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&key.id, &key.tenant.as_str(), &scopes_to_text(&key.scopes), &key.name, &key.token_hash.as_slice(), &key.created_at.to_datetime()],
            )
            .await
            .map_err(PgError::from)?;
        self.announce_change(&client, &key.id).await?;
        Ok(ApiKey {
            id: key.id,
            tenant: key.tenant,
            scopes: key.scopes,
            name: key.name,
            created_at: key.created_at,
            revoked_at: None,
        })
    }

    async fn put_key(&self, key: NewKey) -> StoreResult<ApiKey> {
        let client = self.primary().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO api_keys (id, tenant, scopes, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, scopes = excluded.scopes, \
                     name = excluded.name, token_hash = excluded.token_hash, revoked_at = NULL \
                     RETURNING {}",
                    read::KEY_COLUMNS
                ),
                &[&key.id, &key.tenant.as_str(), &scopes_to_text(&key.scopes), &key.name, &key.token_hash.as_slice(), &key.created_at.to_datetime()],
            )
            .await
            .map_err(PgError::from)?;
        self.announce_change(&client, &key.id).await?;
        Ok(read::key_from_row(&row))
    }

    async fn list_keys(&self, scope: TenantScope) -> StoreResult<Vec<ApiKey>> {
        let tenant = scope.tenant().map(Tenant::as_str);
        let client = self.primary().await?;
        let sql = format!(
            "SELECT {} FROM api_keys WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at, id",
            read::KEY_COLUMNS
        );
        let rows = client
            .query(&sql, &[&tenant])
            .await
            .map_err(PgError::from)?;
        Ok(rows.iter().map(read::key_from_row).collect())
    }

    async fn revoke_key(&self, id: String, at: Timestamp) -> StoreResult<Option<ApiKey>> {
        let client = self.primary().await?;
        client
            .execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &at.to_datetime()],
            )
            .await
            .map_err(PgError::from)?;
        self.announce_change(&client, &id).await?;
        let row = client
            .query_opt(
                &format!("SELECT {} FROM api_keys WHERE id = $1", read::KEY_COLUMNS),
                &[&id],
            )
            .await
            .map_err(PgError::from)?;
        Ok(row.as_ref().map(read::key_from_row))
    }

    async fn key_by_token_hash(&self, token_hash: [u8; 32]) -> StoreResult<Option<ApiKey>> {
        if let Some(key) = self.cache.get(&self.cache.keys, &token_hash) {
            return Ok(Some(key));
        }
        let generation = self.cache.generation();
        // From the primary, never a replica: a revocation takes effect at once.
        let client = self.primary().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {} FROM api_keys WHERE token_hash = $1",
                read::KEY_COLUMNS
            ))
            .await
            .map_err(PgError::from)?;
        let row = client
            .query_opt(&stmt, &[&token_hash.as_slice()])
            .await
            .map_err(PgError::from)?;
        let key = row.as_ref().map(read::key_from_row);
        if let Some(key) = &key {
            self.cache
                .put(&self.cache.keys, generation, token_hash, key.clone());
        }
        Ok(key)
    }

    async fn setting(&self, tenant: &Tenant, name: &str) -> StoreResult<Option<Setting>> {
        let key = (tenant.as_str().to_owned(), name.to_owned());
        if let Some(setting) = self.cache.get(&self.cache.settings, &key) {
            return Ok(setting);
        }
        let generation = self.cache.generation();
        let client = self.primary().await?;
        let row = client
            .query_opt(
                "SELECT value, version FROM tenant_settings WHERE tenant = $1 AND name = $2",
                &[&key.0, &key.1],
            )
            .await
            .map_err(PgError::from)?;
        let setting = row.map(|r| Setting {
            value: r.get(0),
            version: r.get(1),
        });
        self.cache
            .put(&self.cache.settings, generation, key, setting.clone());
        Ok(setting)
    }

    async fn put_setting(
        &self,
        tenant: &Tenant,
        name: &str,
        value: Option<serde_json::Value>,
    ) -> StoreResult<()> {
        let client = self.primary().await?;
        let tenant_name = tenant.as_str();
        match &value {
            Some(value) => {
                client
                    .execute(
                        "INSERT INTO tenant_settings (tenant, name, value, version) VALUES ($1, $2, $3, 1) \
                         ON CONFLICT (tenant, name) DO UPDATE SET value = excluded.value, \
                         version = tenant_settings.version + 1, updated_at = now()",
                        &[&tenant_name, &name, value],
                    )
                    .await
            }
            None => {
                client
                    .execute(
                        "DELETE FROM tenant_settings WHERE tenant = $1 AND name = $2",
                        &[&tenant_name, &name],
                    )
                    .await
            }
        }
        .map_err(PgError::from)?;
        self.announce_change(&client, &format!("setting:{tenant}:{name}"))
            .await
    }

    async fn count_keys(&self) -> StoreResult<u64> {
        let client = self.primary().await?;
        let row = client
            .query_one("SELECT count(*) FROM api_keys", &[])
            .await
            .map_err(PgError::from)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn ping(&self) -> StoreResult<()> {
        for pool in [&self.write, &self.read] {
            let client = pool.get().await.map_err(PgError::from)?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(PgError::from)?;
        }
        let writer_alive = self
            .writer
            .lock()
            .expect("writer lock is never poisoned")
            .as_ref()
            .is_some_and(|w| !w.is_finished());
        if writer_alive {
            Ok(())
        } else {
            Err(StoreError::Database(
                "the writer task is not running".into(),
            ))
        }
    }

    async fn tree_heads(&self) -> StoreResult<Vec<TreeHead>> {
        Ok(read::tree_heads(&**self.primary().await?).await?)
    }

    async fn put_checkpoint(&self, cp: Checkpoint) -> StoreResult<()> {
        let client = self.primary().await?;
        client
            .execute(
                "INSERT INTO checkpoints (tenant, size, root, issued_at, key_id, signature, note) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &cp.tenant.as_str(),
                    &(cp.size as i64),
                    &cp.root.as_bytes().as_slice(),
                    &cp.issued_at.to_datetime(),
                    &cp.key_id,
                    &cp.signature,
                    &cp.note,
                ],
            )
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    async fn latest_checkpoint(&self, tenant: &Tenant) -> StoreResult<Option<Checkpoint>> {
        Ok(read::latest_checkpoint(&**self.primary().await?, tenant.as_str()).await?)
    }

    async fn leaf_of(&self, tenant: &Tenant, id: Uuid) -> StoreResult<Option<(u64, LeafHash)>> {
        Ok(read::leaf_of(&**self.primary().await?, tenant.as_str(), id)
            .await?
            .map(|(seq, hash)| (seq, LeafHash(hash))))
    }

    async fn inclusion_proof(
        &self,
        tenant: &Tenant,
        index: u64,
        size: u64,
    ) -> StoreResult<Option<Vec<[u8; 32]>>> {
        let client = self.primary().await?;
        if index >= size || size > read::tree_size(&**client, tenant.as_str()).await? {
            return Ok(None);
        }
        let proof = nodes::with_nodes(&**client, tenant.as_str(), |source| {
            sealtrail_ledger::merkle::inclusion_proof(source, index, size)
        })
        .await?;
        Ok(Some(proof))
    }

    async fn consistency_proof(
        &self,
        tenant: &Tenant,
        from: u64,
        to: u64,
    ) -> StoreResult<Option<Vec<[u8; 32]>>> {
        let client = self.primary().await?;
        if from == 0 || from > to || to > read::tree_size(&**client, tenant.as_str()).await? {
            return Ok(None);
        }
        let proof = nodes::with_nodes(&**client, tenant.as_str(), |source| {
            sealtrail_ledger::merkle::consistency_proof(source, from, to)
        })
        .await?;
        Ok(Some(proof))
    }

    async fn list_rows(&self, query: ListQuery) -> StoreResult<sealtrail_store::RowPage> {
        let tail = self.tail.clone();
        self.read(move |snap| plan::list_rows(snap, &query, &tail))
            .await
    }

    async fn tree_nodes(
        &self,
        tenant: &Tenant,
        wanted: Vec<(u32, u64)>,
    ) -> StoreResult<Vec<Option<[u8; 32]>>> {
        let client = self.primary().await?;
        let fetched = nodes::fetch(&**client, tenant.as_str(), &wanted).await?;
        Ok(wanted.iter().map(|w| fetched.get(w).copied()).collect())
    }

    async fn reindex(&self, progress: Box<dyn FnMut(u64, u64) + Send>) -> StoreResult<u64> {
        self.rebuild(progress).await
    }

    async fn settle(&self) -> StoreResult<()> {
        let (index, gate, batch) = (self.index.clone(), self.gate.clone(), self.batch);
        tokio::task::spawn_blocking(move || {
            sealtrail_store::derived::settle(&index, &gate, batch, &mut |_, _| {})
        })
        .await
        .map_err(|e| StoreError::Database(format!("indexing failed: {e}")))??;
        Ok(())
    }

    fn queue_status(&self) -> QueueStatus {
        QueueStatus {
            index_lag: self.gate.lag(),
            index_max_lag: self.gate.max_lag(),
            ..self.writes.status()
        }
    }

    async fn purge(
        &self,
        tenant: &Tenant,
        seqs: Vec<u64>,
        receipt: PreparedEvent,
    ) -> StoreResult<Appended> {
        sealtrail_store::derived::unindex_blocking(
            self.index.clone(),
            tenant.clone(),
            seqs.clone(),
        )
        .await?;
        let tenant = tenant.as_str().to_owned();
        let seqs: Vec<i64> = seqs
            .into_iter()
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX))
            .collect();
        let appended = self
            .sanctioned(
                "retention",
                receipt,
                Box::new(move |client| {
                    Box::pin(async move { removal::remove_events(client, &tenant, &seqs).await })
                }),
            )
            .await?;
        if let Ok(client) = self.write_pool().get().await {
            removal::drop_removed(&client).await;
        }
        Ok(appended)
    }

    async fn rewrite_personal(
        &self,
        tenant: &Tenant,
        planned: sealtrail_store::anonymize::Planned<'_>,
    ) -> StoreResult<Appended> {
        use sealtrail_store::anonymize::Rewrite;
        let owner = tenant.as_str().to_owned();
        let log = move |rewrites: Vec<sealtrail_store::anonymize::RowRewrite>,
                        subjects: Vec<String>,
                        audit| {
            let mut value_seqs: Vec<i64> = Vec::new();
            let mut values: Vec<Vec<u8>> = Vec::new();
            let mut body_seqs: Vec<i64> = Vec::new();
            let mut bodies: Vec<String> = Vec::new();
            for r in rewrites {
                let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
                match r.rewrite {
                    Rewrite::Values(bytes) => {
                        value_seqs.push(seq);
                        values.push(bytes);
                    }
                    Rewrite::LegacyBody(json) => {
                        body_seqs.push(seq);
                        bodies.push(json);
                    }
                }
            }
            self.sanctioned(
                "anonymisation",
                audit,
                Box::new(move |client| {
                    Box::pin(async move {
                        client.execute(read::KEYED_JOINS, &[]).await?;
                        client
                            .execute(
                                "UPDATE events e SET personal_values = v.values \
                                 FROM unnest($2::bigint[], $3::bytea[]) AS v(seq, values) \
                                 WHERE e.tenant = $1 AND e.seq = v.seq AND e.entry IS NOT NULL",
                                &[&owner, &value_seqs, &values],
                            )
                            .await?;
                        client
                            .execute(
                                "UPDATE events e SET body = v.body \
                                 FROM unnest($2::bigint[], $3::text[]) AS v(seq, body) \
                                 WHERE e.tenant = $1 AND e.seq = v.seq AND e.body IS NOT NULL",
                                &[&owner, &body_seqs, &bodies],
                            )
                            .await?;
                        client.execute(read::ANY_JOINS, &[]).await?;
                        client
                            .execute(
                                "DELETE FROM subject_keys WHERE tenant = $1 AND subject = ANY($2)",
                                &[&owner, &subjects],
                            )
                            .await?;
                        Ok(())
                    })
                }),
            )
        };
        let appended = sealtrail_store::derived::rewrite_then_follow(
            self.index.clone(),
            tenant.clone(),
            planned,
            log,
        )
        .await?;
        // The rows rewritten leave dead versions behind: vacuumed right after (not in the
        // call: a vacuum scans whole tables, seconds at millions of events), rather than
        // whenever autovacuum comes by. Shutting the store down waits for it.
        let pool = self.write_pool().clone();
        let vacuum = tokio::spawn(async move {
            let Ok(client) = pool.get().await else {
                tracing::warn!("no connection to vacuum after anonymisation");
                return;
            };
            // One statement each: VACUUM refuses to run inside a multi-statement string.
            for table in ["events", "subject_keys", "postings", "rollups"] {
                if let Err(err) = client.batch_execute(&format!("VACUUM {table}")).await {
                    let detail = err
                        .as_db_error()
                        .map_or(err.to_string(), |d| d.message().to_owned());
                    tracing::warn!(table, error = %detail, "vacuum after anonymisation failed");
                }
            }
        });
        let mut vacuums = self
            .vacuums
            .lock()
            .expect("vacuum list lock is never poisoned");
        vacuums.retain(|v| !v.is_finished());
        vacuums.push(vacuum);
        Ok(appended)
    }

    async fn shutdown(&self) {
        let vacuums = std::mem::take(
            &mut *self
                .vacuums
                .lock()
                .expect("vacuum list lock is never poisoned"),
        );
        for vacuum in vacuums {
            let _ = vacuum.await;
        }
        self.gate.stop();
        let indexer = self
            .indexer
            .lock()
            .expect("indexer lock is never poisoned")
            .take();
        if let Some(indexer) = indexer {
            let _ = tokio::task::spawn_blocking(move || indexer.join()).await;
        }
        // Closing the queue ends the writer's loop once it has drained it.
        self.writes.close();
        let handle = self
            .writer
            .lock()
            .expect("writer lock is never poisoned")
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        self.upkeep.abort();
        self.change_listener.0.abort();
    }
}
