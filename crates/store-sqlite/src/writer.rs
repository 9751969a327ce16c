//! The single writer: a dedicated thread that owns the only writing connection, takes append
//! requests from a queue and commits them in groups.
//!
//! Group commit: the thread blocks for the first request, then takes whatever else is already
//! queued (and, if `batch_max_wait` is set, waits that long for more) up to `batch_max_events`,
//! and writes all of it in one transaction with one sync. Under light load a batch is one
//! request and commits at once; under heavy load batches grow, so the sync cost is shared.
//! Each request keeps its own all-or-nothing meaning through a savepoint.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_ledger::entry::{DEFAULT_PERSON_TYPES, digests_with, encode_entry};
use sealtrail_ledger::leaf_hash;
use sealtrail_ledger::view::PersonalValues;
use sealtrail_model::Timestamp;
use sealtrail_store::{Appended, PreparedEvent, StoreError, StoreResult};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::seal::{self, TenantLog};

/// A closure run on the writer connection, for writes other than event appends.
pub(crate) type AdminJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// What the writer is asked to do.
pub(crate) enum Command {
    /// Append the events of one request, all or nothing.
    Append {
        events: Vec<PreparedEvent>,
        reply: oneshot::Sender<StoreResult<Vec<Appended>>>,
        /// Held until the request is answered, so the queue's bound counts it.
        _permit: OwnedSemaphorePermit,
    },
    /// Run a closure on the writing connection.
    Admin(AdminJob),
    /// Change stored events through the sanctioned path, recording an audit event.
    Sanctioned {
        reason: String,
        job: SanctionedJob,
        audit: Box<PreparedEvent>,
        reply: oneshot::Sender<StoreResult<Appended>>,
    },
}

/// A change to stored events, run with the immutability triggers lifted.
pub(crate) type SanctionedJob = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

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

pub(crate) struct Writer {
    conn: Connection,
    limits: BatchLimits,
    /// Where each tenant's log ends (seq, last leaf, frontier), for tenants seen so far.
    tenants: HashMap<String, TenantLog>,
    /// Subject keys seen so far.
    subject_keys: HashMap<(String, String), [u8; 32]>,
    /// The last `recorded_at`, so the clock never runs backwards in the log.
    last_recorded: i64,
}

impl Writer {
    pub(crate) fn new(conn: Connection, limits: BatchLimits) -> Self {
        Self {
            conn,
            limits,
            tenants: HashMap::new(),
            subject_keys: HashMap::new(),
            last_recorded: i64::MIN,
        }
    }

    /// Serves commands until every sender is gone, then returns after the last commit.
    pub(crate) fn run(mut self, rx: &Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            let mut events = group_events(&group);
            let deadline = Instant::now() + self.limits.max_wait;
            while events < self.limits.max_events {
                let next = match rx.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(_) if self.limits.max_wait.is_zero() => None,
                    Err(_) => rx
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        .ok(),
                };
                let Some(cmd) = next else { break };
                events += group_events(std::slice::from_ref(&cmd));
                group.push(cmd);
            }
            self.process(group);
        }
        tracing::debug!("writer queue closed; writer stops");
    }

    fn process(&mut self, group: Vec<Command>) {
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
                Command::Admin(job) => {
                    // Keep the queue's order: appends queued before this job commit first.
                    self.commit_appends(std::mem::take(&mut appends));
                    job(&mut self.conn);
                }
                Command::Sanctioned {
                    reason,
                    job,
                    audit,
                    reply,
                } => {
                    self.commit_appends(std::mem::take(&mut appends));
                    let result = self.run_sanctioned(&reason, job, *audit);
                    // The job may have changed anything: reload log ends and keys on next use.
                    self.tenants.clear();
                    self.subject_keys.clear();
                    let _ = reply.send(result);
                }
            }
        }
        self.commit_appends(appends);
    }

    fn commit_appends(&mut self, mut appends: Vec<PendingAppend>) {
        if appends.is_empty() {
            return;
        }
        let started = Instant::now();
        let now = Timestamp::now().micros().max(self.last_recorded);
        let recorded_at = Timestamp::from_micros(now);
        let total: usize = appends.iter().map(|a| a.events.len()).sum();
        match self.write_group(&mut appends, recorded_at) {
            Ok(results) => {
                self.last_recorded = now;
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
                // The transaction rolled back: forget the log ends and keys made in it.
                self.tenants.clear();
                self.subject_keys.clear();
                for append in appends {
                    let _ = append
                        .reply
                        .send(Err(StoreError::Database(err.to_string())));
                }
            }
        }
    }

    /// The sanctioned path: in one transaction, open the sanction (which lifts the triggers),
    /// run the job, close the sanction, and append the audit event that records the act.
    /// Either all of it commits or none of it does.
    fn run_sanctioned(
        &mut self,
        reason: &str,
        job: SanctionedJob,
        audit: PreparedEvent,
    ) -> StoreResult<Appended> {
        let now = Timestamp::from_micros(Timestamp::now().micros().max(self.last_recorded));
        let result = (|| -> rusqlite::Result<StoreResult<Vec<Appended>>> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute("INSERT INTO sanction (id, reason) VALUES (1, ?1)", [reason])?;
            job(&tx)?;
            tx.execute("DELETE FROM sanction", [])?;
            // The job may have changed the log: start from the database's state.
            let mut tenants = HashMap::new();
            let mut keys = HashMap::new();
            let written = write_request(&tx, &mut tenants, &mut keys, vec![audit], now)?;
            if written.is_ok() {
                write_heads(&tx, tenants.iter())?;
                tx.commit()?;
            }
            Ok(written)
        })();
        match result {
            Ok(Ok(mut appended)) => {
                self.last_recorded = now.micros();
                Ok(appended.remove(0))
            }
            Ok(Err(err)) => Err(err),
            Err(err) => Err(StoreError::Database(err.to_string())),
        }
    }

    /// Writes a group in one transaction. The outer error fails the whole group; an inner
    /// error (a conflict) fails only its request, whose savepoint is rolled back.
    fn write_group(
        &mut self,
        appends: &mut [PendingAppend],
        recorded_at: Timestamp,
    ) -> rusqlite::Result<Vec<StoreResult<Vec<Appended>>>> {
        // IMMEDIATE takes the write lock up front, so a busy database is waited for (busy_timeout)
        // instead of failing half-way through the batch.
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(appends.len());
        // The tenants this group writes to; one clone per tenant, not per event.
        let touched: Vec<String> = appends
            .iter()
            .flat_map(|a| a.events.iter().map(|e| e.tenant.as_str()))
            .collect::<std::collections::HashSet<&str>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for append in appends {
            let before: Vec<(String, Option<TenantLog>)> = append
                .events
                .iter()
                .map(|e| (e.tenant.clone(), self.tenants.get(&e.tenant).cloned()))
                .collect();
            let mut sp = tx.savepoint()?;
            // The events move into the rows; a failed request is answered without them.
            let events = std::mem::take(&mut append.events);
            match write_request(
                &sp,
                &mut self.tenants,
                &mut self.subject_keys,
                events,
                recorded_at,
            )? {
                Ok(done) => {
                    sp.commit()?;
                    results.push(Ok(done));
                }
                Err(conflict) => {
                    sp.rollback()?;
                    drop(sp);
                    // Undo the log ends this request moved, in reverse so the oldest state wins,
                    // and forget keys it may have created.
                    for (tenant, log) in before.into_iter().rev() {
                        match log {
                            Some(log) => self.tenants.insert(tenant, log),
                            None => self.tenants.remove(&tenant),
                        };
                    }
                    self.subject_keys.clear();
                    results.push(Err(conflict));
                }
            }
        }
        // Keep each touched tenant's tree head current for the checkpointer.
        let touched_logs = touched.iter().filter_map(|t| self.tenants.get_key_value(t));
        write_heads(&tx, touched_logs)?;
        tx.commit()?;
        Ok(results)
    }
}

/// Records the head (size and root) of each given tenant's tree.
fn write_heads<'a>(
    conn: &Connection,
    logs: impl Iterator<Item = (&'a String, &'a TenantLog)>,
) -> rusqlite::Result<()> {
    let mut head = conn.prepare_cached(
        "INSERT INTO tree_heads (tenant, size, root) VALUES (?1, ?2, ?3) \
         ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, root = excluded.root",
    )?;
    for (tenant, log) in logs.filter(|(_, l)| l.seq > 0) {
        head.execute(params![
            tenant,
            log.seq as i64,
            log.frontier.root().as_slice()
        ])?;
    }
    Ok(())
}

fn group_events(group: &[Command]) -> usize {
    group
        .iter()
        .map(|c| match c {
            Command::Append { events, .. } => events.len(),
            Command::Admin(_) | Command::Sanctioned { .. } => 1,
        })
        .sum()
}

/// Writes one request's events; `Ok(Err(_))` is a conflict that must roll the request back.
fn write_request(
    conn: &Connection,
    tenants: &mut HashMap<String, TenantLog>,
    subject_keys: &mut HashMap<(String, String), [u8; 32]>,
    events: Vec<PreparedEvent>,
    recorded_at: Timestamp,
) -> rusqlite::Result<StoreResult<Vec<Appended>>> {
    let mut out = Vec::with_capacity(events.len());
    let mut lookup = conn.prepare_cached(
        "SELECT tenant, digest, seq, recorded_at, hash FROM events WHERE id = ?1",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (tenant, seq, id, recorded_at, occurred_at, action, category, event_type, \
         outcome, actor_id, target_type, target_id, organization_id, correlation_id, ip, digest, hash, body, \
         prev_hash, entry, personal_values) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, '', ?18, ?19, ?20)",
    )?;
    let mut link = conn.prepare_cached(
        "INSERT OR IGNORE INTO event_links (tenant, type, id, seq) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut node = conn.prepare_cached(
        "INSERT INTO tree_nodes (tenant, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (index, prepared) in events.into_iter().enumerate() {
        if prepared.client_id {
            let existing = lookup
                .query_row([prepared.id.as_bytes().as_slice()], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, Vec<u8>>(4)?,
                    ))
                })
                .optional()?;
            if let Some((tenant, digest, seq, recorded, hash)) = existing {
                if tenant != prepared.tenant || digest != prepared.digest {
                    return Ok(Err(StoreError::Conflict {
                        index,
                        id: prepared.id,
                    }));
                }
                out.push(Appended {
                    id: prepared.id,
                    seq: seq as u64,
                    recorded_at: Timestamp::from_micros(recorded),
                    hash: hex::encode(hash),
                    duplicate: true,
                });
                continue;
            }
        }
        if !tenants.contains_key(&prepared.tenant) {
            let log = seal::load_tenant(conn, &prepared.tenant)?;
            tenants.insert(prepared.tenant.clone(), log);
        }
        let log = tenants.get_mut(&prepared.tenant).expect("loaded above");
        let seq = log.seq + 1;
        let stored = prepared
            .event
            .into_event(prepared.id, prepared.tenant, seq, recorded_at);
        // Personal fields enter the leaf as digests under their subject's key; a key is made
        // only for a subject that carries personal data.
        let digests = digests_with(&stored, &DEFAULT_PERSON_TYPES, |subject| {
            seal::subject_key(conn, subject_keys, &stored.tenant, subject)
        })?;
        let prev = log.prev;
        // The entry is the event's only stored copy; reads render the event from it.
        let entry = encode_entry(&stored, &digests, &prev);
        let hash = leaf_hash(&entry);
        let values = PersonalValues::of(&stored, &digests);
        let values = (!values.is_empty()).then(|| values.to_bytes());
        let mut node_result = Ok(());
        log.frontier.push(hash, |level, index, h| {
            if level > 0 && node_result.is_ok() {
                node_result = node
                    .execute(params![stored.tenant, level, index as i64, h.as_slice()])
                    .map(|_| ());
            }
        });
        node_result?;
        log.seq = seq;
        log.prev = hash;
        let context = stored.context.as_ref();
        insert.execute(params![
            stored.tenant,
            seq as i64,
            prepared.id.as_bytes().as_slice(),
            recorded_at.micros(),
            stored.occurred_at.micros(),
            stored.action,
            stored.category.as_str(),
            stored.event_type,
            stored.outcome.as_str(),
            stored.actor.id,
            stored.target.as_ref().map(|t| t.target_type.as_str()),
            stored.target.as_ref().map(|t| t.id.as_str()),
            stored.organization.as_ref().map(|o| o.id.as_str()),
            context.and_then(|c| c.correlation_id.as_deref()),
            context.and_then(|c| c.ip.as_deref()),
            prepared.digest.as_slice(),
            hash.as_slice(),
            prev.as_slice(),
            entry,
            values,
        ])?;
        for related in &stored.related {
            link.execute(params![
                stored.tenant,
                related.related_type,
                related.id,
                seq as i64
            ])?;
        }
        out.push(Appended {
            id: prepared.id,
            seq,
            recorded_at,
            hash: hex::encode(hash),
            duplicate: false,
        });
    }
    Ok(Ok(out))
}
