//! The store: one trait that every storage backend implements, the query types it takes, and
//! (in [`conformance`]) the test suite that every backend must pass.
//!
//! **Architecture Invariant:** a store assigns `seq` gap-free per tenant in append order, and
//! acknowledges an append only after it is durable.

pub mod anonymize;
pub mod conformance;
mod cursor;
pub mod derived;
pub mod export;
pub mod fields;
pub mod integrity;
mod keys;
pub mod metrics;
pub mod pipeline;
pub mod plan;
mod query;
mod queue;
pub mod retention;
pub mod rollup;
pub mod rows;
mod secret;
pub mod stats;
pub mod tail;
pub mod text;
pub mod verify;

use async_trait::async_trait;
use sealtrail_model::{NewEvent, Timestamp};
use uuid::Uuid;

pub use cursor::{Cursor, CursorError};
pub use fields::{EventFilter, Field};
pub use keys::{ApiKey, NewKey, Scope, TenantScope, scopes_from_text, scopes_to_text};
pub use query::{HistoryQuery, ListQuery, Order, Page, Relation, RowPage, StoredEvent};
pub use queue::WriteQueue;
pub use sealtrail_ledger::{LeafHash, Root};
pub use sealtrail_model::Tenant;
pub use secret::DatabaseUrl;

/// A validated event with its tenant and id settled, ready to append.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// The log it goes into.
    pub tenant: Tenant,
    /// The event id: the client's, or a fresh UUIDv7.
    pub id: Uuid,
    /// Whether the client chose the id (only then can it be a duplicate).
    pub client_id: bool,
    /// [`NewEvent::content_digest`], to tell a retry from a conflict.
    pub digest: [u8; 32],
    /// The event.
    pub event: NewEvent,
}

impl PreparedEvent {
    /// Settles tenant and id for an event.
    pub fn new(tenant: Tenant, event: NewEvent) -> Self {
        let (id, client_id) = match event.id {
            Some(id) => (id, true),
            None => (Uuid::now_v7(), false),
        };
        let digest = event.content_digest();
        Self {
            tenant,
            id,
            client_id,
            digest,
            event,
        }
    }
}

/// Where an appended event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The event id.
    pub id: Uuid,
    /// Its position in the tenant's log.
    pub seq: u64,
    /// When it was committed.
    pub recorded_at: Timestamp,
    /// Its leaf hash.
    pub hash: LeafHash,
    /// Whether the event was already stored (a retry) and nothing new was written.
    pub duplicate: bool,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An event's id is already stored with a different body; nothing of the request was stored.
    #[error("event {index} has id {id}, which is already stored with a different body")]
    Conflict {
        /// Index of the event in its request.
        index: usize,
        /// The conflicting id.
        id: Uuid,
    },
    /// The write queue is full; the client should retry later.
    #[error("the write queue is full")]
    Overloaded,
    /// The store is shutting down and takes no more writes.
    #[error("the store is shutting down")]
    Closed,
    /// The database could not be reached or failed.
    #[error("database error: {0}")]
    Database(String),
}

/// The result type of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The head of a tenant's tree: its size and root after the last commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// The tenant.
    pub tenant: Tenant,
    /// Number of events (leaves).
    pub size: u64,
    /// The Merkle root.
    pub root: Root,
}

/// A signed tree head, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The tenant.
    pub tenant: Tenant,
    /// The tree size it covers.
    pub size: u64,
    /// The root of that tree.
    pub root: Root,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// The signing key's id.
    pub key_id: String,
    /// The bare Ed25519 signature over the note body, base64.
    pub signature: String,
    /// The whole C2SP signed note.
    pub note: String,
}

impl Checkpoint {
    /// Signs a tenant's tree head as of `issued_at`: a C2SP checkpoint note signed with `key`,
    /// whose key name is `key_id`.
    pub fn sign(
        head: &TreeHead,
        issued_at: Timestamp,
        key_id: &str,
        key: &ed25519_dalek::SigningKey,
    ) -> Self {
        let tree_head = sealtrail_ledger::checkpoint::TreeHead {
            origin: sealtrail_ledger::checkpoint::origin(head.tenant.as_str()),
            size: head.size,
            root: head.root.0,
            issued_at,
        };
        let signed = sealtrail_ledger::checkpoint::sign(&tree_head, key_id, key);
        Self {
            tenant: head.tenant.clone(),
            size: head.size,
            root: head.root,
            issued_at,
            key_id: key_id.to_owned(),
            signature: signed.signature,
            note: signed.note,
        }
    }
}

/// How full the write path is, for readiness checks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    /// Events waiting to be written.
    pub depth: usize,
    /// Most events that may wait.
    pub capacity: usize,
    /// Events in the log that the derived data does not cover yet, over every tenant.
    pub index_lag: u64,
    /// Unindexed events of one tenant beyond which ingest into it is refused.
    pub index_max_lag: u64,
}

/// A storage backend.
///
/// A tenant's setting as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The setting, as given.
    pub value: serde_json::Value,
    /// Counts the times it was set: a reader that compiled an earlier version knows to do it
    /// again.
    pub version: i64,
}

/// Implementations must pass [`conformance`]. Appends of one call are all or nothing; events
/// are given `seq` in the order of the slice.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends events durably, returning where each landed, in order. A client-chosen id that
    /// is stored already with the same digest is a duplicate; with another digest the whole call
    /// fails with [`StoreError::Conflict`] and nothing is stored.
    async fn append(&self, events: Vec<PreparedEvent>) -> StoreResult<Vec<Appended>>;

    /// One event of a tenant by id.
    async fn get(&self, tenant: &Tenant, id: Uuid) -> StoreResult<Option<StoredEvent>>;

    /// A page of a tenant's events matching a filter, in `seq` order.
    async fn list(&self, query: ListQuery) -> StoreResult<Page>;

    /// A page of an entity's timeline: events targeting it or naming it in `related`, ordered
    /// by `occurred_at` then `seq`, oldest first.
    async fn history(&self, query: HistoryQuery) -> StoreResult<Page>;

    /// Counts of a tenant's events in a window of `occurred_at`: per bucket, and per actor,
    /// action and target, exact.
    async fn statistics(&self, query: stats::StatsQuery) -> StoreResult<stats::Statistics>;

    /// Stores a new API key.
    async fn create_key(&self, key: NewKey) -> StoreResult<ApiKey>;

    /// Lists keys: every key for [`TenantScope::All`], else those bound to the one tenant.
    async fn list_keys(&self, scope: TenantScope) -> StoreResult<Vec<ApiKey>>;

    /// Revokes a key; `None` when no such key exists. Revoking twice keeps the first time.
    async fn revoke_key(&self, id: String, at: Timestamp) -> StoreResult<Option<ApiKey>>;

    /// The key whose token hashes to `token_hash`, revoked or not.
    async fn key_by_token_hash(&self, token_hash: [u8; 32]) -> StoreResult<Option<ApiKey>>;

    /// Creates or replaces a key with a fixed id (the bootstrap admin key).
    async fn put_key(&self, key: NewKey) -> StoreResult<ApiKey>;

    /// How many keys exist, revoked ones included.
    async fn count_keys(&self) -> StoreResult<u64>;

    /// A tenant's setting by name (its catalogue; retention rules and legal holds later), or
    /// `None` when it has none. Read on hot paths (every ingest asks for the catalogue), so a
    /// backend answers it without a round trip where it can.
    async fn setting(&self, tenant: &Tenant, name: &str) -> StoreResult<Option<Setting>>;

    /// Sets a tenant's setting, or removes it (`None`); every store sharing the database sees
    /// the change at its next read of it.
    async fn put_setting(
        &self,
        tenant: &Tenant,
        name: &str,
        value: Option<serde_json::Value>,
    ) -> StoreResult<()>;

    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// The current tree head of every tenant that has events.
    async fn tree_heads(&self) -> StoreResult<Vec<TreeHead>>;

    /// Stores a signed checkpoint.
    async fn put_checkpoint(&self, checkpoint: Checkpoint) -> StoreResult<()>;

    /// The newest checkpoint of a tenant.
    async fn latest_checkpoint(&self, tenant: &Tenant) -> StoreResult<Option<Checkpoint>>;

    /// An event's `seq` and leaf hash, by id within a tenant.
    async fn leaf_of(&self, tenant: &Tenant, id: Uuid) -> StoreResult<Option<(u64, LeafHash)>>;

    /// The inclusion proof of leaf `index` in the tenant's tree of `size` leaves; `Ok(None)`
    /// when `size` is larger than the tree or `index` not below it.
    async fn inclusion_proof(
        &self,
        tenant: &Tenant,
        index: u64,
        size: u64,
    ) -> StoreResult<Option<Vec<[u8; 32]>>>;

    /// The consistency proof between two sizes of a tenant's tree; `Ok(None)` when the sizes
    /// are not `0 < from <= to <= tree size`.
    async fn consistency_proof(
        &self,
        tenant: &Tenant,
        from: u64,
        to: u64,
    ) -> StoreResult<Option<Vec<[u8; 32]>>>;

    /// A page of [`Store::list`] as stored rows, not rendered: exports render them themselves
    /// and need their seal material.
    async fn list_rows(&self, query: ListQuery) -> StoreResult<RowPage>;

    /// Perfect nodes of a tenant's tree by `(level, index)` (level 0: leaf hashes), in the
    /// order asked, `None` where no such node is stored: the hashes an export carries for
    /// the events it leaves out.
    async fn tree_nodes(
        &self,
        tenant: &Tenant,
        wanted: Vec<(u32, u64)>,
    ) -> StoreResult<Vec<Option<[u8; 32]>>>;

    /// How full the write queue is, and how far derived data lags behind the log.
    fn queue_status(&self) -> QueueStatus;

    /// Brings the derived data (filter postings, time blocks) up to every event appended
    /// before the call, indexing in this process now if need be. Reads never need it (they
    /// are exact at every moment); tests use it to reach the indexed path, `reindex` to build.
    async fn settle(&self) -> StoreResult<()>;

    /// Drops every piece of derived data and builds it again from the log (`sealtrail
    /// reindex`), calling `progress` with the events indexed so far and the total; returns how
    /// many events were indexed. Reads stay exact meanwhile.
    async fn reindex(&self, progress: Box<dyn FnMut(u64, u64) + Send>) -> StoreResult<u64>;

    /// Retention's removal (SPEC §4.5): takes the events at `seqs` (ascending, every one
    /// indexed and still in the log) out of the derived data, then, through the sanctioned
    /// path, removes them from the log and appends `receipt` (`audit.purged`) in the same
    /// transaction. Each removed event keeps its place: position, id, idempotency digest and
    /// leaf hash, so the tree, the chain and every proof of the rest stay whole, and a retry
    /// of a removed event is still a duplicate. Reads leave removed events out.
    async fn purge(
        &self,
        tenant: &Tenant,
        seqs: Vec<u64>,
        receipt: PreparedEvent,
    ) -> StoreResult<Appended>;

    /// [`Store::purge`], the positions arriving in ascending batches on `seqs` while they are
    /// still being chosen (retention writes its archive meanwhile), and the receipt on
    /// `receipt` once every batch was sent and the removal may commit. `None`, with nothing
    /// changed, when the receipt never comes (the archive failed) or no position came. The
    /// default gathers the positions and then calls [`Store::purge`]; a backend may take them
    /// out of its derived data and its log as they arrive, committing only once the receipt
    /// is there.
    async fn purge_streamed(
        &self,
        tenant: &Tenant,
        mut seqs: tokio::sync::mpsc::UnboundedReceiver<Vec<u64>>,
        receipt: tokio::sync::oneshot::Receiver<PreparedEvent>,
    ) -> StoreResult<Option<Appended>> {
        let mut all = Vec::new();
        while let Some(batch) = seqs.recv().await {
            all.extend(batch);
        }
        if let Some(pair) = all.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(StoreError::Database(format!(
                "positions to remove must ascend: {} came after {}",
                pair[1], pair[0]
            )));
        }
        match receipt.await {
            Ok(receipt) if !all.is_empty() => self.purge(tenant, all, receipt).await.map(Some),
            _ => Ok(None),
        }
    }

    /// Anonymisation's rewrite ([`anonymize`]): awaits `planned` (the plan and its audit event,
    /// read and made while the store already holds its indexer, so that waiting for a
    /// background pass overlaps the read), then, through the sanctioned path, writes each row's
    /// new personal values (or new JSON, for a row from before entries), deletes the subject
    /// keys of the plan's subjects, and appends `audit` (`audit.anonymized`) in the same
    /// transaction; then moves those events' changed terms in the derived data
    /// ([`derived::rederive_changes`], and [`derived::rederive`] for stale ones), so that no
    /// posting or rollup keeps what they held, and
    /// scrubs what was rewritten (SQLite: secure delete and truncated write-ahead logs;
    /// PostgreSQL: VACUUM of the tables touched). Entries, hashes and the chain are not touched.
    async fn rewrite_personal(
        &self,
        tenant: &Tenant,
        planned: anonymize::Planned<'_>,
    ) -> StoreResult<Appended>;

    /// Stops taking writes, writes everything queued, and closes.
    async fn shutdown(&self);
}
