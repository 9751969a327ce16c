//! The writer: one task per process that takes append requests from a bounded queue and
//! commits them in groups, sealing every event in the transaction that stores it.
//!
//! Several processes may write into one database. Within a transaction the writer takes a
//! transaction-scoped advisory lock per tenant it touches (in a fixed order, so two writers
//! never wait on each other in a cycle), then reads where each tenant's log ends from
//! `tenant_logs`: no process trusts a log end it remembers. Sequencing, chaining and the Merkle
//! frontier therefore advance one transaction at a time per tenant, whichever process commits
//! it; `leaves` (unique `(tenant, seq)` and `id`) makes the database refuse anything else.
//!
//! Rows go in by binary COPY (measured against multi-row INSERT in BENCHMARKS.md).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use rand::RngCore;
use sealtrail_ledger::entry::{DEFAULT_PERSON_TYPES, GENESIS, digests_with, event_leaf_hash};
use sealtrail_ledger::merkle::{Frontier, Hash};
use sealtrail_model::Timestamp;
use sealtrail_store::{Appended, PreparedEvent, StoreError, StoreResult};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::PgError;
use crate::nodes::{frontier_from_bytes, frontier_to_bytes};

/// A change to stored events, run inside the sanctioned path's transaction.
pub type SanctionedJob = Box<
    dyn for<'a> FnOnce(&'a Transaction<'_>) -> BoxFuture<'a, Result<(), tokio_postgres::Error>>
        + Send,
>;

/// What the writer is asked to do.
pub(crate) enum Command {
    /// Append the events of one request, all or nothing.
    Append {
        events: Vec<PreparedEvent>,
        reply: oneshot::Sender<StoreResult<Vec<Appended>>>,
        /// Held until the request is answered, so the queue's bound counts it.
        _permit: OwnedSemaphorePermit,
    },
    /// Change stored events through the sanctioned path, recording an audit event.
    Sanctioned {
        reason: String,
        job: SanctionedJob,
        audit: Box<PreparedEvent>,
        reply: oneshot::Sender<StoreResult<Appended>>,
    },
}

/// Group-commit limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub(crate) max_events: usize,
    pub(crate) max_wait: Duration,
}

struct PendingAppend {
    events: Vec<PreparedEvent>,
    reply: oneshot::Sender<StoreResult<Vec<Appended>>>,
    _permit: OwnedSemaphorePermit,
}

/// How often a group is tried again after a failure that another attempt can cure (a client
/// id stored by another process meanwhile, a missing partition).
const ATTEMPTS: usize = 4;

pub(crate) struct Writer {
    pub(crate) pool: Pool,
    pub(crate) limits: BatchLimits,
}

impl Writer {
    /// Serves commands until every sender is gone, then returns after the last commit.
    pub(crate) async fn run(self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = rx.recv().await {
            let mut events = command_events(&first);
            let mut group = vec![first];
            let deadline = tokio::time::Instant::now() + self.limits.max_wait;
            while events < self.limits.max_events {
                let next = match rx.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(_) if self.limits.max_wait.is_zero() => None,
                    Err(_) => tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                };
                let Some(cmd) = next else { break };
                events += command_events(&cmd);
                group.push(cmd);
            }
            self.process(group).await;
        }
        tracing::debug!("writer queue closed; writer stops");
    }

    async fn process(&self, group: Vec<Command>) {
        let mut appends = Vec::new();
        for cmd in group {
            match cmd {
                Command::Append {
                    events,
                    reply,
                    _permit,
                } => appends.push(PendingAppend {
                    events,
                    reply,
                    _permit,
                }),
                Command::Sanctioned {
                    reason,
                    job,
                    audit,
                    reply,
                } => {
                    // Keep the queue's order: appends queued before this job commit first.
                    self.commit_appends(std::mem::take(&mut appends)).await;
                    let _ = reply.send(self.run_sanctioned(&reason, job, *audit).await);
                }
            }
        }
        self.commit_appends(appends).await;
    }

    async fn commit_appends(&self, appends: Vec<PendingAppend>) {
        if appends.is_empty() {
            return;
        }
        let started = Instant::now();
        let total: usize = appends.iter().map(|a| a.events.len()).sum();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let requests: Vec<Vec<PreparedEvent>> =
                appends.iter().map(|a| a.events.clone()).collect();
            match self.commit_once(requests).await {
                Ok(results) => break Ok(results),
                Err(err) if attempt < ATTEMPTS && self.cure(&err).await => {
                    tracing::debug!(error = %err, attempt, "group commit retried");
                }
                Err(err) => break Err(err),
            }
        };
        match outcome {
            Ok(results) => {
                for (append, result) in appends.into_iter().zip(results) {
                    // A client that went away does not need its answer; the events stay stored.
                    let _ = append.reply.send(result);
                }
                tracing::trace!(
                    events = total,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "batch committed"
                );
            }
            Err(err) => {
                tracing::error!(error = %err, events = total, "batch commit failed");
                let message = err.to_string();
                for append in appends {
                    let _ = append
                        .reply
                        .send(Err(StoreError::Database(message.clone())));
                }
            }
        }
    }

    /// Whether another attempt may succeed, after doing what makes it so.
    async fn cure(&self, err: &PgError) -> bool {
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

    async fn commit_once(
        &self,
        requests: Vec<Vec<PreparedEvent>>,
    ) -> Result<Vec<StoreResult<Vec<Appended>>>, PgError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let results = write_requests(&tx, requests).await?;
        tx.commit().await?;
        Ok(results)
    }

    /// The sanctioned path: in one transaction, lock the audit event's tenant, open the
    /// sanction (which lifts the triggers), run the job, close the sanction, and append the
    /// audit event that records the act. Either all of it commits or none of it does.
    async fn run_sanctioned(
        &self,
        reason: &str,
        job: SanctionedJob,
        audit: PreparedEvent,
    ) -> StoreResult<Appended> {
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            lock_tenants(&tx, std::slice::from_ref(&audit.tenant)).await?;
            tx.execute(
                "INSERT INTO sanction (id, reason) VALUES (1, $1)",
                &[&reason],
            )
            .await?;
            job(&tx).await?;
            tx.execute("DELETE FROM sanction", &[]).await?;
            let mut written = write_requests(&tx, vec![vec![audit]]).await?;
            let written = written.remove(0);
            if written.is_ok() {
                tx.commit().await?;
            }
            Ok::<_, PgError>(written)
        }
        .await;
        match result {
            Ok(Ok(mut appended)) => Ok(appended.remove(0)),
            Ok(Err(err)) => Err(err),
            Err(err) => Err(err.into()),
        }
    }
}

fn command_events(cmd: &Command) -> usize {
    match cmd {
        Command::Append { events, .. } => events.len(),
        Command::Sanctioned { .. } => 1,
    }
}

/// Takes the per-tenant advisory locks, in hash order so that concurrent writers never wait on
/// each other in a cycle. Held until the transaction ends.
async fn lock_tenants(
    tx: &Transaction<'_>,
    tenants: &[String],
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(h) FROM \
         (SELECT DISTINCT hashtextextended(t, 7) AS h FROM unnest($1::text[]) AS t ORDER BY 1) AS s",
        &[&tenants],
    )
    .await?;
    Ok(())
}

/// Where one tenant's log ends, as read under its lock.
#[derive(Clone)]
struct LogEnd {
    size: u64,
    prev: Hash,
    frontier: Frontier,
    /// Whether the group appended to this tenant.
    touched: bool,
}

/// An id already stored, or stored earlier in this group.
#[derive(Clone)]
struct Known {
    tenant: String,
    digest: Vec<u8>,
    seq: u64,
    recorded_at: Timestamp,
    hash: String,
}

/// One `events` row (and its `leaves` row).
struct EventRow {
    tenant: String,
    seq: i64,
    id: Uuid,
    recorded_at: OffsetDateTime,
    occurred_at: OffsetDateTime,
    action: String,
    category: &'static str,
    event_type: Option<String>,
    outcome: &'static str,
    actor_id: String,
    target_type: Option<String>,
    target_id: Option<String>,
    organization_id: Option<String>,
    correlation_id: Option<String>,
    ip: Option<String>,
    hash: Vec<u8>,
    prev_hash: Vec<u8>,
    personal: Vec<u8>,
    metadata: Option<serde_json::Value>,
    body: String,
    digest: Vec<u8>,
}

/// Rows a group writes, buffered until its requests are settled.
#[derive(Default)]
struct Rows {
    events: Vec<EventRow>,
    link_tenant: Vec<String>,
    link_type: Vec<String>,
    link_id: Vec<String>,
    link_seq: Vec<i64>,
    node_tenant: Vec<String>,
    node_level: Vec<i32>,
    node_idx: Vec<i64>,
    node_hash: Vec<Vec<u8>>,
    /// Subject keys made in this group: (tenant, subject, key).
    new_keys: Vec<(String, String, [u8; 32])>,
}

/// How far the buffers had grown, to cut a failed request's rows off again.
struct Mark {
    events: usize,
    links: usize,
    nodes: usize,
    keys: usize,
}

impl Rows {
    fn mark(&self) -> Mark {
        Mark {
            events: self.events.len(),
            links: self.link_seq.len(),
            nodes: self.node_idx.len(),
            keys: self.new_keys.len(),
        }
    }

    fn cut(&mut self, m: &Mark) {
        self.events.truncate(m.events);
        self.link_tenant.truncate(m.links);
        self.link_type.truncate(m.links);
        self.link_id.truncate(m.links);
        self.link_seq.truncate(m.links);
        self.node_tenant.truncate(m.nodes);
        self.node_level.truncate(m.nodes);
        self.node_idx.truncate(m.nodes);
        self.node_hash.truncate(m.nodes);
        self.new_keys.truncate(m.keys);
    }
}

/// Writes the requests of a group inside `tx`; the caller commits. `Ok(Err(_))` for a request
/// is a conflict that stored nothing of that request; the others are unaffected.
async fn write_requests(
    tx: &Transaction<'_>,
    requests: Vec<Vec<PreparedEvent>>,
) -> Result<Vec<StoreResult<Vec<Appended>>>, PgError> {
    let tenants: Vec<String> = requests
        .iter()
        .flatten()
        .map(|e| e.tenant.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    lock_tenants(tx, &tenants).await?;
    tx.execute(
        "INSERT INTO tenant_logs (tenant) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        &[&tenants],
    )
    .await?;
    let mut logs: HashMap<String, LogEnd> = HashMap::with_capacity(tenants.len());
    let mut last_recorded = i64::MIN;
    for row in tx
        .query(
            "SELECT tenant, size, last_hash, frontier, last_recorded_at FROM tenant_logs WHERE tenant = ANY($1)",
            &[&tenants],
        )
        .await?
    {
        let tenant: String = row.get(0);
        let size = row.get::<_, i64>(1) as u64;
        let prev = row
            .get::<_, Option<Vec<u8>>>(2)
            .and_then(|h| Hash::try_from(h).ok())
            .unwrap_or(GENESIS);
        let frontier = frontier_from_bytes(size, &row.get::<_, Vec<u8>>(3))
            .map_err(|e| corrupt(&tenant, e))?;
        if let Some(at) = row.get::<_, Option<OffsetDateTime>>(4) {
            last_recorded = last_recorded.max(Timestamp::from_datetime(at).micros());
        }
        logs.insert(
            tenant,
            LogEnd {
                size,
                prev,
                frontier,
                touched: false,
            },
        );
    }
    // The clock never runs backwards within a tenant's log, whichever process writes.
    let recorded_at = Timestamp::from_micros(Timestamp::now().micros().max(last_recorded));

    let client_ids: Vec<Uuid> = requests
        .iter()
        .flatten()
        .filter(|e| e.client_id)
        .map(|e| e.id)
        .collect();
    let mut known: HashMap<Uuid, Known> = HashMap::new();
    if !client_ids.is_empty() {
        for row in tx
            .query(
                "SELECT id, tenant, digest, seq, recorded_at, hash FROM leaves WHERE id = ANY($1)",
                &[&client_ids],
            )
            .await?
        {
            known.insert(
                row.get(0),
                Known {
                    tenant: row.get(1),
                    digest: row.get(2),
                    seq: row.get::<_, i64>(3) as u64,
                    recorded_at: Timestamp::from_datetime(row.get(4)),
                    hash: hex::encode(row.get::<_, Vec<u8>>(5)),
                },
            );
        }
    }

    let keys = subject_keys(tx, &requests).await?;
    // Sealing is CPU work (JSON, SHA-256, HMACs): it runs off the async runtime.
    let (results, rows, logs) =
        tokio::task::spawn_blocking(move || seal_group(requests, recorded_at, logs, known, keys))
            .await
            .map_err(|e| PgError::Seal(e.to_string()))?;
    write_rows(tx, &rows, &logs, recorded_at.to_datetime()).await?;
    Ok(results)
}

/// Seals a group's requests in order into rows; a request that conflicts leaves no trace in
/// the rows or the group's state.
fn seal_group(
    requests: Vec<Vec<PreparedEvent>>,
    recorded_at: Timestamp,
    mut logs: HashMap<String, LogEnd>,
    mut known: HashMap<Uuid, Known>,
    mut keys: HashMap<(String, String), [u8; 32]>,
) -> (
    Vec<StoreResult<Vec<Appended>>>,
    Rows,
    HashMap<String, LogEnd>,
) {
    let recorded_dt = recorded_at.to_datetime();
    let mut rows = Rows::default();
    let mut results = Vec::with_capacity(requests.len());
    for events in requests {
        let mark = rows.mark();
        let saved: Vec<(String, LogEnd)> = events
            .iter()
            .map(|e| e.tenant.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|t| logs.get_key_value(t).map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        let mut added_ids = Vec::new();
        match seal_request(
            events,
            recorded_at,
            recorded_dt,
            &mut logs,
            &mut known,
            &mut added_ids,
            &mut keys,
            &mut rows,
        ) {
            Ok(done) => results.push(Ok(done)),
            Err(conflict) => {
                // Undo what the request did to the group's state.
                for (tenant, subject, _) in rows.new_keys.drain(mark.keys..) {
                    keys.remove(&(tenant, subject));
                }
                rows.cut(&mark);
                for id in added_ids {
                    known.remove(&id);
                }
                for (tenant, log) in saved {
                    logs.insert(tenant, log);
                }
                results.push(Err(conflict));
            }
        }
    }
    (results, rows, logs)
}

fn corrupt(tenant: &str, err: impl std::fmt::Display) -> PgError {
    PgError::Damaged(format!("the tenant_logs row of {tenant}: {err}"))
}

/// Loads the subject keys the group's events may need, in one query.
async fn subject_keys(
    tx: &Transaction<'_>,
    requests: &[Vec<PreparedEvent>],
) -> Result<HashMap<(String, String), [u8; 32]>, tokio_postgres::Error> {
    let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for e in requests.iter().flatten() {
        pairs.insert((&e.tenant, &e.event.actor.id));
        if let Some(t) = &e.event.target
            && sealtrail_ledger::entry::is_person_type(&t.target_type, &DEFAULT_PERSON_TYPES)
        {
            pairs.insert((&e.tenant, &t.id));
        }
    }
    let (tenants, subjects): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
    let mut keys = HashMap::with_capacity(tenants.len());
    for row in tx
        .query(
            "SELECT k.tenant, k.subject, k.key FROM subject_keys k \
             JOIN unnest($1::text[], $2::text[]) AS w(tenant, subject) USING (tenant, subject) \
             WHERE k.key IS NOT NULL",
            &[&tenants, &subjects],
        )
        .await?
    {
        if let Ok(key) = <[u8; 32]>::try_from(row.get::<_, Vec<u8>>(2)) {
            keys.insert((row.get(0), row.get(1)), key);
        }
    }
    Ok(keys)
}

/// Seals one request's events into the group's buffers; a conflict fails the request.
#[allow(clippy::too_many_arguments)] // The group's state, passed apart so each piece is borrowed once.
fn seal_request(
    events: Vec<PreparedEvent>,
    recorded_at: Timestamp,
    recorded_dt: OffsetDateTime,
    logs: &mut HashMap<String, LogEnd>,
    known: &mut HashMap<Uuid, Known>,
    added_ids: &mut Vec<Uuid>,
    keys: &mut HashMap<(String, String), [u8; 32]>,
    rows: &mut Rows,
) -> StoreResult<Vec<Appended>> {
    let mut out = Vec::with_capacity(events.len());
    for (index, prepared) in events.into_iter().enumerate() {
        if prepared.client_id
            && let Some(k) = known.get(&prepared.id)
        {
            if k.tenant != prepared.tenant || k.digest != prepared.digest {
                return Err(StoreError::Conflict {
                    index,
                    id: prepared.id,
                });
            }
            out.push(Appended {
                id: prepared.id,
                seq: k.seq,
                recorded_at: k.recorded_at,
                hash: k.hash.clone(),
                duplicate: true,
            });
            continue;
        }
        let log = logs
            .get_mut(&prepared.tenant)
            .expect("every tenant of the group was loaded");
        let seq = log.size + 1;
        let digest = prepared.digest.to_vec();
        let mut stored = prepared
            .event
            .into_event(prepared.id, prepared.tenant, seq, recorded_at);
        // Personal fields enter the leaf as digests under their subject's key; a key is made
        // only for a subject that carries personal data.
        let digests = digests_with(&stored, &DEFAULT_PERSON_TYPES, |subject| {
            let slot = (stored.tenant.clone(), subject.to_owned());
            if let Some(key) = keys.get(&slot) {
                return Ok::<_, std::convert::Infallible>(*key);
            }
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            keys.insert(slot.clone(), key);
            rows.new_keys.push((slot.0, slot.1, key));
            Ok(key)
        })
        .unwrap_or_else(|never| match never {});
        let prev = log.prev;
        let hash = event_leaf_hash(&stored, &digests, &prev);
        let hex_hash = hex::encode(hash);
        stored.hash.clone_from(&hex_hash);
        let body = serde_json::to_string(&stored).expect("an event serialises to JSON");
        let tenant = &stored.tenant;
        log.frontier.push(hash, |level, idx, h| {
            if level > 0 {
                rows.node_tenant.push(tenant.clone());
                rows.node_level.push(level as i32);
                rows.node_idx.push(idx as i64);
                rows.node_hash.push(h.to_vec());
            }
        });
        log.size = seq;
        log.prev = hash;
        log.touched = true;
        for related in &stored.related {
            rows.link_tenant.push(stored.tenant.clone());
            rows.link_type.push(related.related_type.clone());
            rows.link_id.push(related.id.clone());
            rows.link_seq.push(seq as i64);
        }
        known.insert(
            stored.id,
            Known {
                tenant: stored.tenant.clone(),
                digest: digest.clone(),
                seq,
                recorded_at,
                hash: hex_hash.clone(),
            },
        );
        added_ids.push(stored.id);
        out.push(Appended {
            id: stored.id,
            seq,
            recorded_at,
            hash: hex_hash,
            duplicate: false,
        });
        let context = stored.context.take();
        let (correlation_id, ip) = match context {
            Some(c) => (c.correlation_id, c.ip),
            None => (None, None),
        };
        let target = stored.target.take();
        rows.events.push(EventRow {
            seq: seq as i64,
            id: stored.id,
            recorded_at: recorded_dt,
            occurred_at: stored.occurred_at.to_datetime(),
            category: stored.category.as_str(),
            outcome: stored.outcome.as_str(),
            actor_id: std::mem::take(&mut stored.actor.id),
            target_type: target.as_ref().map(|t| t.target_type.clone()),
            target_id: target.map(|t| t.id),
            organization_id: stored.organization.take().map(|o| o.id),
            correlation_id,
            ip,
            hash: hash.to_vec(),
            prev_hash: prev.to_vec(),
            personal: digests.to_bytes(),
            metadata: stored.metadata.take(),
            body,
            digest,
            action: std::mem::take(&mut stored.action),
            event_type: stored.event_type.take(),
            tenant: std::mem::take(&mut stored.tenant),
        });
    }
    Ok(out)
}

/// Writes the buffered rows and the new log ends.
async fn write_rows(
    tx: &Transaction<'_>,
    rows: &Rows,
    logs: &HashMap<String, LogEnd>,
    recorded_at: OffsetDateTime,
) -> Result<(), tokio_postgres::Error> {
    if !rows.new_keys.is_empty() {
        let tenants: Vec<&str> = rows.new_keys.iter().map(|k| k.0.as_str()).collect();
        let subjects: Vec<&str> = rows.new_keys.iter().map(|k| k.1.as_str()).collect();
        let keys: Vec<&[u8]> = rows.new_keys.iter().map(|k| k.2.as_slice()).collect();
        tx.execute(
            "INSERT INTO subject_keys (tenant, subject, key) SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
             ON CONFLICT (tenant, subject) DO UPDATE SET key = excluded.key",
            &[&tenants, &subjects, &keys],
        )
        .await?;
    }
    if !rows.events.is_empty() {
        copy_events(tx, &rows.events).await?;
        copy_leaves(tx, &rows.events).await?;
    }
    if !rows.link_seq.is_empty() {
        tx.execute(
            "INSERT INTO event_links (tenant, type, id, seq) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) ON CONFLICT DO NOTHING",
            &[&rows.link_tenant, &rows.link_type, &rows.link_id, &rows.link_seq],
        )
        .await?;
    }
    if !rows.node_idx.is_empty() {
        tx.execute(
            "INSERT INTO tree_nodes (tenant, level, idx, hash) \
             SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[])",
            &[
                &rows.node_tenant,
                &rows.node_level,
                &rows.node_idx,
                &rows.node_hash,
            ],
        )
        .await?;
    }
    let touched: Vec<(&String, &LogEnd)> = logs.iter().filter(|(_, l)| l.touched).collect();
    if !touched.is_empty() {
        let tenants: Vec<&str> = touched.iter().map(|(t, _)| t.as_str()).collect();
        let sizes: Vec<i64> = touched.iter().map(|(_, l)| l.size as i64).collect();
        let lasts: Vec<&[u8]> = touched.iter().map(|(_, l)| l.prev.as_slice()).collect();
        let frontiers: Vec<Vec<u8>> = touched
            .iter()
            .map(|(_, l)| frontier_to_bytes(&l.frontier))
            .collect();
        let roots: Vec<Vec<u8>> = touched
            .iter()
            .map(|(_, l)| l.frontier.root().to_vec())
            .collect();
        tx.execute(
            "UPDATE tenant_logs t SET size = u.size, last_hash = u.last_hash, frontier = u.frontier, \
             root = u.root, last_recorded_at = $6 \
             FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[]) \
             AS u(tenant, size, last_hash, frontier, root) WHERE t.tenant = u.tenant",
            &[&tenants, &sizes, &lasts, &frontiers, &roots, &recorded_at],
        )
        .await?;
    }
    Ok(())
}

/// The columns of `events` in COPY order.
pub const EVENT_COLUMNS: &str = "tenant, seq, id, recorded_at, occurred_at, action, category, event_type, outcome, \
     actor_id, target_type, target_id, organization_id, correlation_id, ip, hash, prev_hash, personal, metadata, body";

/// The types of [`EVENT_COLUMNS`], for a binary COPY.
pub const EVENT_TYPES: [Type; 20] = [
    Type::TEXT,
    Type::INT8,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::JSONB,
    Type::TEXT,
];

/// The columns of `leaves` in COPY order.
pub const LEAF_COLUMNS: &str = "tenant, seq, id, recorded_at, occurred_at, digest, hash";

/// The types of [`LEAF_COLUMNS`], for a binary COPY.
pub const LEAF_TYPES: [Type; 7] = [
    Type::TEXT,
    Type::INT8,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
    Type::BYTEA,
];

async fn copy_events(
    tx: &Transaction<'_>,
    events: &[EventRow],
) -> Result<(), tokio_postgres::Error> {
    let sink = tx
        .copy_in(&format!("COPY events ({EVENT_COLUMNS}) FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &EVENT_TYPES);
    futures::pin_mut!(writer);
    for r in events {
        let row: [&(dyn ToSql + Sync); 20] = [
            &r.tenant,
            &r.seq,
            &r.id,
            &r.recorded_at,
            &r.occurred_at,
            &r.action,
            &r.category,
            &r.event_type,
            &r.outcome,
            &r.actor_id,
            &r.target_type,
            &r.target_id,
            &r.organization_id,
            &r.correlation_id,
            &r.ip,
            &r.hash,
            &r.prev_hash,
            &r.personal,
            &r.metadata,
            &r.body,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

async fn copy_leaves(
    tx: &Transaction<'_>,
    events: &[EventRow],
) -> Result<(), tokio_postgres::Error> {
    let sink = tx
        .copy_in(&format!("COPY leaves ({LEAF_COLUMNS}) FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &LEAF_TYPES);
    futures::pin_mut!(writer);
    for r in events {
        writer
            .as_mut()
            .write(&[
                &r.tenant,
                &r.seq,
                &r.id,
                &r.recorded_at,
                &r.occurred_at,
                &r.digest,
                &r.hash,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}
