//! The embedded SQLite backend of the sealtrail store.
//!
//! The sealed log is one file in the data directory (`sealtrail.db`), in WAL mode with
//! `synchronous=FULL`. Exactly one thread writes it (`writer`, driving the store layer's
//! pipeline): it group-commits append requests taken from a bounded queue and answers each only
//! after its transaction is committed and synced. Everything derived from the log (postings,
//! time blocks, watermarks) lives in a second file that one indexer thread writes behind the
//! log ([`index`]). Reads run on a small pool of read-only connections that see both files,
//! on tokio's blocking threads, so they never wait for either writer.

pub mod index;
mod read;
pub mod schema;
mod seal;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, params};
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::derived::{IndexGate, IndexerOptions};
use sealtrail_store::pipeline::{self, BatchLimits, WriteHandle};
use sealtrail_store::plan;
use sealtrail_store::{
    ApiKey, Appended, Checkpoint, HistoryQuery, LeafHash, ListQuery, NewKey, Page, PreparedEvent,
    QueueStatus, Setting, Store, StoreError, StoreResult, StoredEvent, TenantScope, TreeHead,
    scopes_to_text,
};
use uuid::Uuid;

pub use crate::writer::SanctionedJob;
use crate::writer::SqliteLog;

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "sealtrail.db";

/// How the SQLite store is set up.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The data directory; created when missing.
    pub data_dir: PathBuf,
    /// Most events in one commit.
    pub batch_max_events: usize,
    /// How long the writer waits for more requests before committing a batch that is not
    /// full; zero commits at once with whatever is queued.
    pub batch_max_wait: Duration,
    /// Most events waiting in the write queue; beyond it appends fail with
    /// [`StoreError::Overloaded`].
    pub queue_capacity: usize,
    /// Read connections.
    pub readers: usize,
    /// How the indexer runs, and the lag past which ingest is refused.
    pub indexer: IndexerOptions,
}

impl SqliteConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            batch_max_events: 5_000,
            batch_max_wait: Duration::ZERO,
            queue_capacity: 50_000,
            readers: 4,
            indexer: IndexerOptions::default(),
        }
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The schema could not be brought up to date.
    #[error(transparent)]
    Migrate(#[from] schema::MigrateError),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread could not start.
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}

/// The page cache of each query connection, per file (the log and the derived data), in MiB:
/// pages stay until it is full, so queries find their pages warm.
const READER_CACHE_MIB: u32 = 64;
/// Connections of [`SqliteStore`]'s pool for passes over many rows: an export reads two pages
/// at once.
const BULK_READERS: usize = 2;
/// Their page cache per file, in MiB: SQLite's default. Such a pass reads each page once.
const BULK_CACHE_MIB: u32 = 2;

/// The SQLite store.
pub struct SqliteStore {
    write: WriteHandle<SqliteLog>,
    readers: read::Pool,
    /// Connections for passes over many rows ([`Store::list_rows`]: exports, retention,
    /// anonymisation, integrity walks; and an export's Merkle nodes), with small page caches:
    /// such a pass reads each page once, and through the queries' connections it would fill
    /// their caches with pages no query wants (an export's memory then grew with the store:
    /// `sealtrail export` of 1M events peaked at ~290 MiB of heap, of 100k at ~150).
    bulk: read::Pool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    gate: Arc<IndexGate>,
    index: sealtrail_store::derived::SharedIndexer<index::SqliteIndexer>,
    batch: u64,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// What reads learnt of the unindexed tails.
    tail: Arc<sealtrail_store::tail::TailIndex>,
}

impl SqliteStore {
    /// Opens (creating when needed) the store in `config.data_dir` and starts its writer.
    pub fn open(config: &SqliteConfig) -> Result<Self, OpenError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| OpenError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let path = config.data_dir.join(DB_FILE);
        let index_path = config.data_dir.join(index::INDEX_FILE);
        let mut conn = Connection::open(&path)?;
        schema::prepare_writer(&mut conn)?;
        index::prepare(&index_path)?;
        let indexer = index::SqliteIndexer::open(&path, &index_path)?;
        let readers =
            read::Pool::open(&path, &index_path, config.readers.max(1), READER_CACHE_MIB)?;
        let bulk = read::Pool::open(&path, &index_path, BULK_READERS, BULK_CACHE_MIB)?;
        let limits = BatchLimits {
            max_events: config.batch_max_events,
            max_wait: config.batch_max_wait,
        };
        let (write, writer) =
            pipeline::channel(SqliteLog::new(conn)?, limits, config.queue_capacity);
        // The writer owns the only writing connection on a thread of its own; its small runtime
        // only waits for the queue (and the batch timer), so nothing it does blocks the server's.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(OpenError::Thread)?;
        let writer = std::thread::Builder::new()
            .name("sealtrail-writer".into())
            .spawn(move || runtime.block_on(writer.run()))
            .map_err(OpenError::Thread)?;
        let gate = IndexGate::new(config.indexer.max_lag);
        let options = config.indexer;
        let index =
            sealtrail_store::derived::shared(sealtrail_store::derived::Indexer::new(indexer));
        let indexer = if options.background {
            let (index, gate) = (index.clone(), gate.clone());
            Some(
                std::thread::Builder::new()
                    .name("sealtrail-indexer".into())
                    .spawn(move || sealtrail_store::derived::run_indexer(index, gate, options))
                    .map_err(OpenError::Thread)?,
            )
        } else {
            None
        };
        Ok(Self {
            write,
            readers,
            bulk,
            writer: Mutex::new(Some(writer)),
            gate,
            index,
            batch: options.batch,
            indexer: Mutex::new(indexer),
            tail: Arc::default(),
        })
    }

    /// The database file of a data directory.
    pub fn db_path(data_dir: &Path) -> PathBuf {
        data_dir.join(DB_FILE)
    }

    /// [`Store::reindex`]: the rebuild, on a blocking thread.
    async fn rebuild(&self, mut progress: Box<dyn FnMut(u64, u64) + Send>) -> StoreResult<u64> {
        let (index, gate, batch) = (self.index.clone(), self.gate.clone(), self.batch);
        let done = tokio::task::spawn_blocking(move || {
            sealtrail_store::derived::rebuild(&index, &gate, batch, &mut progress)
        })
        .await
        .map_err(|e| StoreError::Database(format!("indexing failed: {e}")))?
        .map_err(db_error)?;
        Ok(done)
    }

    /// Runs `f` on a reader inside one read transaction, off the async runtime.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut read::Snapshot<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        Self::read_on(&self.readers, f).await
    }

    /// [`SqliteStore::read`] on a connection of `pool`.
    async fn read_on<T, F>(pool: &read::Pool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut read::Snapshot<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        pool.run(move |conn| Ok(read::Snapshot::begin(conn).map(|mut snap| f(&mut snap))))
            .await?
            .map_err(db_error)?
    }

    /// The one way past the immutability triggers, for retention and anonymisation: runs `job`
    /// on the writer's connection with the sanction open, then records `audit` (for example
    /// `audit.anonymized` or `audit.purged`) in the same transaction. Direct UPDATE or DELETE
    /// of events outside this path is refused by the database.
    pub async fn sanctioned<F>(
        &self,
        reason: &str,
        audit: PreparedEvent,
        job: F,
    ) -> StoreResult<Appended>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        // Rows change: what reads learnt of the tails may no longer hold.
        self.tail.clear();
        let done = self.write.sanctioned(reason, audit, Box::new(job)).await;
        self.tail.clear();
        done
    }

    /// [`SqliteStore::sanctioned`], the record of the change made while its job runs: `audit`
    /// (an event of `tenant`) is awaited once the job is done; if it never comes, nothing
    /// changes.
    async fn sanctioned_later<F>(
        &self,
        reason: &str,
        tenant: &Tenant,
        audit: tokio::sync::oneshot::Receiver<PreparedEvent>,
        job: F,
    ) -> StoreResult<Appended>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        self.tail.clear();
        let done = self
            .write
            .sanctioned_later(reason, tenant, audit, Box::new(job))
            .await;
        self.tail.clear();
        done
    }

    /// Runs a write on the writer thread, in queue order, and waits for its result.
    async fn admin<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.write
            .run(move |log| job(log.conn()))
            .await?
            .map_err(db_error)
    }
}

pub(crate) fn db_error(err: rusqlite::Error) -> StoreError {
    StoreError::Database(err.to_string())
}

fn plan_error(err: plan::PlanError<rusqlite::Error>) -> StoreError {
    StoreError::Database(err.to_string())
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, events: Vec<PreparedEvent>) -> StoreResult<Vec<Appended>> {
        self.gate.admit(events.iter().map(|e| &e.tenant))?;
        let tenants: Vec<Tenant> = events.iter().map(|e| e.tenant.clone()).collect();
        let appended = self.write.append(events).await?;
        for (tenant, a) in tenants.iter().zip(&appended) {
            self.gate.appended(tenant, a.seq);
        }
        Ok(appended)
    }

    async fn get(&self, tenant: &Tenant, id: Uuid) -> StoreResult<Option<StoredEvent>> {
        let tenant = tenant.clone();
        self.read(move |snap| plan::get(snap, &tenant, id).map_err(plan_error))
            .await
    }

    async fn statistics(
        &self,
        query: sealtrail_store::stats::StatsQuery,
    ) -> StoreResult<sealtrail_store::stats::Statistics> {
        let tail = self.tail.clone();
        self.read(move |snap| {
            sealtrail_store::stats::statistics(snap, &query, &tail).map_err(plan_error)
        })
        .await
    }

    async fn list(&self, query: ListQuery) -> StoreResult<Page> {
        let tail = self.tail.clone();
        self.read(move |snap| plan::list(snap, &query, &tail).map_err(plan_error))
            .await
    }

    async fn history(&self, query: HistoryQuery) -> StoreResult<Page> {
        let tail = self.tail.clone();
        self.read(move |snap| plan::history(snap, &query, &tail).map_err(plan_error))
            .await
    }

    async fn create_key(&self, key: NewKey) -> StoreResult<ApiKey> {
        self.admin(move |conn| {
            conn.execute(
                "INSERT INTO api_keys (id, tenant, scopes, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.id, key.tenant.as_str(), scopes_to_text(&key.scopes), key.name, key.token_hash.as_slice(), key.created_at.micros()],
            )?;
            Ok(ApiKey {
                id: key.id,
                tenant: key.tenant,
                scopes: key.scopes,
                name: key.name,
                created_at: key.created_at,
                revoked_at: None,
            })
        })
        .await
    }

    async fn put_key(&self, key: NewKey) -> StoreResult<ApiKey> {
        self.admin(move |conn| {
            conn.execute(
                "INSERT INTO api_keys (id, tenant, scopes, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, scopes = excluded.scopes, \
                 name = excluded.name, token_hash = excluded.token_hash, revoked_at = NULL",
                params![key.id, key.tenant.as_str(), scopes_to_text(&key.scopes), key.name, key.token_hash.as_slice(), key.created_at.micros()],
            )?;
            read::key_by(conn, "id = ?1", key.id.as_str())?.ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
        .await
    }

    async fn list_keys(&self, scope: TenantScope) -> StoreResult<Vec<ApiKey>> {
        self.readers
            .run(move |conn| read::list_keys(conn, scope.tenant().map(Tenant::as_str)))
            .await
    }

    async fn revoke_key(&self, id: String, at: Timestamp) -> StoreResult<Option<ApiKey>> {
        self.admin(move |conn| {
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, at.micros()],
            )?;
            read::key_by(conn, "id = ?1", id.as_str())
        })
        .await
    }

    async fn key_by_token_hash(&self, token_hash: [u8; 32]) -> StoreResult<Option<ApiKey>> {
        // Every authenticated request asks this: one indexed row, read on the calling thread.
        self.readers
            .run_inline(move |conn| read::key_by(conn, "token_hash = ?1", token_hash.as_slice()))
            .await
    }

    async fn setting(&self, tenant: &Tenant, name: &str) -> StoreResult<Option<Setting>> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.to_owned());
        // Every ingest asks for the catalogue: one indexed row, read on the calling thread.
        self.readers
            .run_inline(move |conn| read::setting(conn, &tenant, &name))
            .await
    }

    async fn put_setting(
        &self,
        tenant: &Tenant,
        name: &str,
        value: Option<serde_json::Value>,
    ) -> StoreResult<()> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.to_owned());
        self.admin(move |conn| {
            match value {
                Some(value) => conn.execute(
                    "INSERT INTO tenant_settings (tenant, name, value, version, updated_at) \
                     VALUES (?1, ?2, ?3, 1, ?4) ON CONFLICT (tenant, name) DO UPDATE SET \
                     value = excluded.value, version = tenant_settings.version + 1, \
                     updated_at = excluded.updated_at",
                    params![tenant, name, value.to_string(), Timestamp::now().micros()],
                )?,
                None => conn.execute(
                    "DELETE FROM tenant_settings WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn count_keys(&self) -> StoreResult<u64> {
        self.readers
            .run(|conn| {
                conn.query_row("SELECT count(*) FROM api_keys", [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
            })
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.readers
            .run(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await?;
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
                "the writer thread is not running".into(),
            ))
        }
    }

    async fn tree_heads(&self) -> StoreResult<Vec<TreeHead>> {
        self.readers.run(read::tree_heads).await
    }

    async fn put_checkpoint(&self, cp: Checkpoint) -> StoreResult<()> {
        self.admin(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO checkpoints (tenant, size, root, issued_at, key_id, signature, note) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![cp.tenant.as_str(), cp.size as i64, cp.root.as_bytes().as_slice(), cp.issued_at.micros(), cp.key_id, cp.signature, cp.note],
            )?;
            Ok(())
        })
        .await
    }

    async fn latest_checkpoint(&self, tenant: &Tenant) -> StoreResult<Option<Checkpoint>> {
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| read::latest_checkpoint(conn, &tenant))
            .await
    }

    async fn leaf_of(&self, tenant: &Tenant, id: Uuid) -> StoreResult<Option<(u64, LeafHash)>> {
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| read::leaf_of(conn, &tenant, id))
            .await
    }

    async fn inclusion_proof(
        &self,
        tenant: &Tenant,
        index: u64,
        size: u64,
    ) -> StoreResult<Option<Vec<[u8; 32]>>> {
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| read::inclusion_proof(conn, &tenant, index, size))
            .await
    }

    async fn consistency_proof(
        &self,
        tenant: &Tenant,
        from: u64,
        to: u64,
    ) -> StoreResult<Option<Vec<[u8; 32]>>> {
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| read::consistency_proof(conn, &tenant, from, to))
            .await
    }

    async fn list_rows(&self, query: ListQuery) -> StoreResult<sealtrail_store::RowPage> {
        let tail = self.tail.clone();
        Self::read_on(&self.bulk, move |snap| {
            plan::list_rows(snap, &query, &tail).map_err(plan_error)
        })
        .await
    }

    async fn tree_nodes(
        &self,
        tenant: &Tenant,
        wanted: Vec<(u32, u64)>,
    ) -> StoreResult<Vec<Option<[u8; 32]>>> {
        let tenant = tenant.clone();
        self.bulk
            .run(move |conn| seal::nodes_of(conn, tenant.as_str(), &wanted))
            .await
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
        .map_err(|e| StoreError::Database(format!("indexing failed: {e}")))?
        .map_err(db_error)?;
        Ok(())
    }

    fn queue_status(&self) -> QueueStatus {
        QueueStatus {
            index_lag: self.gate.lag(),
            index_max_lag: self.gate.max_lag(),
            ..self.write.status()
        }
    }

    async fn purge(
        &self,
        tenant: &Tenant,
        seqs: Vec<u64>,
        receipt: PreparedEvent,
    ) -> StoreResult<Appended> {
        // The derived data is a file of its own with its own writer, so the events leave it
        // while the log's transaction empties their rows, on the other core; that transaction
        // commits only once they have left it, as when one ran after the other. (PostgreSQL
        // keeps the two in order: there a partition's detach, whose lock lasts until the
        // commit, would stop the very reads of the unindexing that the commit waits for.)
        let (told, unindexed) = std::sync::mpsc::sync_channel::<bool>(1);
        let unindex = sealtrail_store::derived::unindex_blocking(
            self.index.clone(),
            tenant.clone(),
            seqs.clone(),
        );
        let unindex = async move {
            let done = unindex.await;
            let _ = told.send(done.is_ok());
            done
        };
        let owner = tenant.clone();
        let log = self.sanctioned("retention", receipt, move |conn| {
            seal::remove_events(conn, &owner, &seqs)?;
            conn.cache_flush()?;
            schema::sync_wal(conn)?;
            if unindexed.recv().unwrap_or(false) {
                Ok(())
            } else {
                // Its own error is what the caller is told (below); this one rolls back.
                Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
                    std::io::Error::other("the events could not leave the derived data"),
                )))
            }
        });
        let (unindexed, appended) = tokio::join!(unindex, log);
        unindexed?;
        appended
    }

    async fn purge_streamed(
        &self,
        tenant: &Tenant,
        mut seqs: tokio::sync::mpsc::UnboundedReceiver<Vec<u64>>,
        receipt: tokio::sync::oneshot::Receiver<PreparedEvent>,
    ) -> StoreResult<Option<Appended>> {
        // As `purge`, but each batch leaves the derived data (on a blocking thread) and the log
        // (in the writer's transaction) as it arrives, so both are done by the time the
        // archive is: the derived data's transaction commits once the receipt has come, the
        // log's once that commit is made. The writer is held from the first batch to the
        // commit, as it is while `purge` removes.
        let (to_index, index_batches) = std::sync::mpsc::channel::<Vec<u64>>();
        let (to_log, log_batches) = std::sync::mpsc::channel::<Vec<u64>>();
        let (record, recorded) = tokio::sync::oneshot::channel::<PreparedEvent>();
        let (go, told_go) = std::sync::mpsc::sync_channel::<bool>(1);
        let (unindexed, told_unindexed) = std::sync::mpsc::sync_channel::<bool>(1);
        // The log's rows all emptied (a failure drops the sender): the derived data commits
        // only then, so that it never lets go of events the log keeps.
        let (log_ready, told_log_ready) = std::sync::mpsc::sync_channel::<()>(1);
        let forward = async move {
            let mut any = false;
            while let Some(batch) = seqs.recv().await {
                any |= !batch.is_empty();
                let _ = to_index.send(batch.clone());
                let _ = to_log.send(batch);
            }
            drop((to_index, to_log));
            let receipt = receipt.await.ok().filter(|_| any);
            let going = receipt.is_some();
            if let Some(receipt) = receipt {
                let _ = record.send(receipt);
            }
            let _ = go.send(going);
            going
        };
        let (index, owner) = (self.index.clone(), tenant.clone());
        let unindex = async move {
            let done = tokio::task::spawn_blocking(move || {
                sealtrail_store::derived::unindex_streamed(
                    &index,
                    &owner,
                    &index_batches,
                    &mut || told_go.recv().unwrap_or(false) && told_log_ready.recv().is_ok(),
                )
            })
            .await
            .map_err(|e| StoreError::Database(format!("unindexing failed: {e}")))
            .and_then(|done| done);
            let _ = unindexed.send(matches!(done, Ok(Some(_))));
            done
        };
        let owner = tenant.clone();
        let log = self.sanctioned_later("retention", tenant, recorded, move |conn| {
            for batch in log_batches.iter() {
                seal::remove_events(conn, &owner, &batch)?;
            }
            // The emptied pages go to the write-ahead log, and to disk, now, while the derived
            // data commits, leaving the commit little to write and sync.
            conn.cache_flush()?;
            schema::sync_wal(conn)?;
            let _ = log_ready.send(());
            if told_unindexed.recv().unwrap_or(false) {
                Ok(())
            } else {
                // Abandoned, or the derived data failed (whose error is told): this one rolls
                // back.
                Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
                    std::io::Error::other("the events did not leave the derived data"),
                )))
            }
        });
        let (going, unindexed, appended) = tokio::join!(forward, unindex, log);
        // The derived data's failure first (the log's is only that it was told so); then,
        // abandoned, nothing happened; else the log's outcome, which commits only after the
        // derived data did (and fails, named, when it could not empty its rows).
        unindexed?;
        if !going {
            return Ok(None);
        }
        appended.map(Some)
    }

    async fn rewrite_personal(
        &self,
        tenant: &Tenant,
        planned: sealtrail_store::anonymize::Planned<'_>,
    ) -> StoreResult<Appended> {
        let owner = tenant.clone();
        let log = |rewrites: Vec<_>, subjects: Vec<String>, audit| {
            self.sanctioned("anonymisation", audit, move |conn| {
                seal::rewrite_personal(conn, &owner, &rewrites, &subjects)
            })
        };
        let appended = sealtrail_store::derived::rewrite_then_follow(
            self.index.clone(),
            tenant.clone(),
            planned,
            log,
        )
        .await?;
        // Both files are written with secure_delete on, so what was rewritten is zeroed where it
        // lay; the write-ahead logs still hold the pages as they were until they start over.
        self.admin(|conn| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
            .await?;
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.lock().backend().truncate_wal())
            .await
            .map_err(|e| StoreError::Database(format!("checkpoint failed: {e}")))?
            .map_err(db_error)?;
        Ok(appended)
    }

    async fn shutdown(&self) {
        // The indexer stops after its current transaction; what it has not indexed yet is
        // indexed at the next start.
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
        self.write.close();
        let handle = self
            .writer
            .lock()
            .expect("writer lock is never poisoned")
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// Opens a connection for reading only: the log, with the derived data attached as `ix`.
pub(crate) fn open_reader(
    path: &Path,
    index_path: &Path,
    cache_mib: u32,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.execute(
        "ATTACH DATABASE ?1 AS ix",
        [index_path.to_string_lossy().as_ref()],
    )?;
    schema::configure_reader(&conn, cache_mib)?;
    Ok(conn)
}
