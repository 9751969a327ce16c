//! The checkpointer: signs each tenant's tree head every `every_events` events or `every`
//! time once something new arrived, and at least every `heartbeat` even when nothing did, so
//! that cutting off the newest events is detectable. Each checkpoint is stored and, when
//! configured, appended to a witness file outside the data directory.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealtrail_model::Timestamp;
use sealtrail_store::{Checkpoint, Store, Tenant};
use tokio::sync::watch;

use crate::signing::KeyRing;

/// When checkpoints are made.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// Sign after this many new events.
    pub every_events: u64,
    /// Sign when this long passed since the last checkpoint and something new arrived.
    pub every: Duration,
    /// Sign at least this often, even when nothing arrived.
    pub heartbeat: Duration,
    /// How often the checkpointer looks.
    pub tick: Duration,
    /// Append every checkpoint, one JSON line each, to this file.
    pub witness_file: Option<PathBuf>,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_events: 1000,
            every: Duration::from_secs(10),
            heartbeat: Duration::from_secs(60),
            tick: Duration::from_millis(500),
            witness_file: None,
        }
    }
}

/// The newest checkpoint known of each tenant: when it was issued and the size it covers.
pub type Newest = Arc<std::sync::RwLock<HashMap<Tenant, (Timestamp, u64)>>>;

/// Runs until `stop` turns true, then signs whatever is not yet covered and returns. After
/// every pass `newest` holds the newest checkpoint of every tenant that has one.
pub async fn run(
    store: Arc<dyn Store>,
    keys: Arc<KeyRing>,
    policy: CheckpointPolicy,
    mut stop: watch::Receiver<bool>,
    newest: Newest,
) {
    let mut last: HashMap<Tenant, Checkpoint> = HashMap::new();
    loop {
        let stopping = *stop.borrow();
        if let Err(err) = pass(store.as_ref(), &keys, &policy, &mut last, stopping).await {
            tracing::warn!(error = %err, "checkpoint pass failed");
        }
        if let Ok(mut board) = newest.write() {
            for (tenant, cp) in &last {
                board.insert(tenant.clone(), (cp.issued_at, cp.size));
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(policy.tick) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn pass(
    store: &dyn Store,
    keys: &KeyRing,
    policy: &CheckpointPolicy,
    last: &mut HashMap<Tenant, Checkpoint>,
    final_pass: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let now = Timestamp::now();
    for head in store.tree_heads().await? {
        if !is_due(last.get(&head.tenant), &head, now, policy, final_pass) {
            continue;
        }
        // The store may hold a newer checkpoint than this process knows (at start, or signed by
        // another server sharing the database): look before signing.
        if let Some(cp) = store.latest_checkpoint(&head.tenant).await?
            && last
                .get(&head.tenant)
                .is_none_or(|known| cp.issued_at > known.issued_at)
        {
            let due = is_due(Some(&cp), &head, now, policy, final_pass);
            last.insert(head.tenant.clone(), cp);
            if !due {
                continue;
            }
        }
        let checkpoint = Checkpoint::sign(&head, now, keys.active_id(), keys.active());
        store.put_checkpoint(checkpoint.clone()).await?;
        if let Some(path) = &policy.witness_file {
            // Appending and syncing a file blocks: not on the runtime's threads.
            let (path, cp) = (path.clone(), checkpoint.clone());
            tokio::task::spawn_blocking(move || witness(&path, &cp)).await??;
        }
        last.insert(head.tenant, checkpoint);
    }
    Ok(())
}

/// A checkpoint covering everything the tenant's log holds now: the newest stored one when it
/// does, else one signed (stored, and appended to the witness file) at once. `None` when the
/// tenant has no events. Exports are proven against it.
pub async fn covering(
    store: &dyn Store,
    keys: &KeyRing,
    policy: &CheckpointPolicy,
    tenant: &Tenant,
) -> Result<Option<Checkpoint>, Box<dyn std::error::Error + Send + Sync>> {
    let Some(head) = store
        .tree_heads()
        .await?
        .into_iter()
        .find(|h| &h.tenant == tenant)
    else {
        return Ok(None);
    };
    if let Some(cp) = store.latest_checkpoint(tenant).await?
        && cp.size >= head.size
    {
        return Ok(Some(cp));
    }
    let checkpoint = Checkpoint::sign(&head, Timestamp::now(), keys.active_id(), keys.active());
    store.put_checkpoint(checkpoint.clone()).await?;
    if let Some(path) = &policy.witness_file {
        let (path, cp) = (path.clone(), checkpoint.clone());
        tokio::task::spawn_blocking(move || witness(&path, &cp)).await??;
    }
    Ok(Some(checkpoint))
}

/// Whether a tenant whose newest checkpoint is `newest` needs a new one now.
fn is_due(
    newest: Option<&Checkpoint>,
    head: &sealtrail_store::TreeHead,
    now: Timestamp,
    policy: &CheckpointPolicy,
    final_pass: bool,
) -> bool {
    let Some(cp) = newest else { return true };
    let age =
        Duration::from_micros(now.micros().saturating_sub(cp.issued_at.micros()).max(0) as u64);
    let new = head.size.saturating_sub(cp.size);
    new >= policy.every_events
        || (new > 0 && (age >= policy.every || final_pass))
        || age >= policy.heartbeat
}

/// Appends a checkpoint to the witness file and syncs it.
fn witness(path: &std::path::Path, cp: &Checkpoint) -> std::io::Result<()> {
    let line = serde_json::json!({
        "tenant": cp.tenant.as_str(), "size": cp.size, "root_hash": cp.root.to_hex(),
        "issued_at": cp.issued_at, "key_id": cp.key_id, "signature": cp.signature, "note": cp.note,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")?;
    file.sync_data()
}
