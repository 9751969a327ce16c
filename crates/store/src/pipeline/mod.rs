//! The one write path: group commit, duplicates and conflicts, sequencing, the clock rule,
//! sealing and the sanctioned path, for every backend.
//!
//! A backend implements [`LogBackend`], the narrow part that really differs: how a write
//! transaction starts and ends, how the log ends and stored ids are loaded (and
//! locked, where several processes write), and how a [`SealedBatch`] is written. Everything
//! else happens here, once.
//!
//! **Architecture Invariant:** one [`Writer`] per store process owns the backend's write
//! transactions; sequencing happens in `seal` under the transaction that loaded the log ends,
//! so `seq` is gap-free per tenant and follows queue order.

mod seal;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sealtrail_ledger::LeafHash;
use sealtrail_ledger::entry::GENESIS;
use sealtrail_ledger::merkle::{Frontier, Hash};
use sealtrail_model::{Tenant, Timestamp};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use uuid::Uuid;

use crate::{Appended, PreparedEvent, QueueStatus, StoreError, StoreResult, WriteQueue};

/// Where one tenant's log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEnd {
    /// Events in the log.
    pub size: u64,
    /// The last event's leaf hash (genesis for an empty log).
    pub last: LeafHash,
    /// The right edge of the tree.
    pub frontier: Frontier,
    /// When the last event was recorded, if there is one.
    pub recorded_at: Option<Timestamp>,
}

impl LogEnd {
    /// The end of an empty log.
    pub fn empty() -> Self {
        Self {
            size: 0,
            last: LeafHash(GENESIS),
            frontier: Frontier::new(),
            recorded_at: None,
        }
    }
}

/// An id already stored (or sealed earlier in the same group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownId {
    /// Its tenant.
    pub tenant: Tenant,
    /// The content digest it was stored with.
    pub digest: [u8; 32],
    /// Its position.
    pub seq: u64,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// Its leaf hash.
    pub hash: LeafHash,
}

/// What a group of requests needs loaded, under the write transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Want {
    /// The tenants written to, sorted: lock them in this order.
    pub tenants: Vec<Tenant>,
    /// Client-chosen ids, sorted: which are stored already?
    pub ids: Vec<Uuid>,
}

/// What the backend loaded for a [`Want`].
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Log ends of the wanted tenants; a tenant missing here has an empty log.
    pub ends: HashMap<Tenant, LogEnd>,
    /// The wanted ids that are stored.
    pub known: HashMap<Uuid, KnownId>,
}

/// One sealed event, ready to be written.
#[derive(Debug, Clone)]
pub struct SealedEvent {
    /// Its tenant.
    pub tenant: Tenant,
    /// Its position.
    pub seq: u64,
    /// Its id.
    pub id: Uuid,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// The content digest, to tell a retry from a conflict later.
    pub digest: [u8; 32],
    /// Its leaf hash.
    pub hash: LeafHash,
    /// Its predecessor's leaf hash.
    pub prev: LeafHash,
    /// The canonical entry: the event as sealed, and its only stored copy.
    pub entry: Vec<u8>,
    /// The erasable personal values kept beside the entry, in their stored form.
    pub personal_values: Option<Vec<u8>>,
}

/// A perfect Merkle node above the leaves that a batch completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The tenant's tree.
    pub tenant: Tenant,
    /// Its level (at least 1).
    pub level: u32,
    /// Its index at that level.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

/// Everything one group commit writes.
#[derive(Debug, Clone, Default)]
pub struct SealedBatch {
    /// New events, in seal order (per tenant, ascending `seq`).
    pub events: Vec<SealedEvent>,
    /// Merkle nodes completed by them.
    pub nodes: Vec<Node>,
    /// The new log end of every tenant appended to.
    pub ends: Vec<(Tenant, LogEnd)>,
}

/// The part of the write path that differs per backend. The [`Writer`] calls, for each group:
/// [`begin`](LogBackend::begin), [`load`](LogBackend::load), [`write`](LogBackend::write) and
/// [`commit`](LogBackend::commit), or [`rollback`](LogBackend::rollback) after any failure.
#[async_trait]
pub trait LogBackend: Send + 'static {
    /// A change to stored events run by the sanctioned path, inside its transaction.
    type Job: Send + 'static;
    /// The backend's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether sealing (hashing, HMACs, encoding) must leave the writer's thread: true where
    /// the writer is a task on the shared async runtime.
    const SEAL_OFF_THREAD: bool;

    /// Starts a write transaction.
    async fn begin(&mut self) -> Result<(), Self::Error>;

    /// Inside the transaction: the log ends of `want.tenants` (taking whatever lock keeps other
    /// writers of those tenants out until commit) and the stored ids among `want.ids`.
    async fn load(&mut self, want: &Want) -> Result<Loaded, Self::Error>;

    /// Writes a sealed batch inside the transaction.
    async fn write(&mut self, batch: &SealedBatch) -> Result<(), Self::Error>;

    /// Commits durably: returns only after the transaction is synced.
    async fn commit(&mut self) -> Result<(), Self::Error>;

    /// Writes a sealed batch (unless it holds no event) and commits: what every group ends
    /// with. The default is [`LogBackend::write`] then [`LogBackend::commit`]; a backend whose
    /// every statement is a round trip sends both at once.
    async fn write_and_commit(&mut self, batch: &SealedBatch) -> Result<(), Self::Error> {
        if !batch.events.is_empty() {
            self.write(batch).await?;
        }
        self.commit().await
    }

    /// Abandons the transaction, if one is open, and forgets anything learnt inside it.
    async fn rollback(&mut self);

    /// Inside the transaction, with `tenant` locked against other writers and the
    /// immutability triggers lifted for `reason`, runs `job`.
    async fn sanctioned(
        &mut self,
        tenant: &Tenant,
        reason: &str,
        job: Self::Job,
    ) -> Result<(), Self::Error>;

    /// Upkeep after a group's commits were answered (a write-ahead log's checkpoint): what
    /// need not hold up the answers. The default: nothing.
    async fn after_replies(&mut self) {}

    /// Whether the group that failed with `err` may succeed if tried again (another writer
    /// stored one of its ids meanwhile, a deadlock, a missing partition), after doing what
    /// makes it so. The default: never.
    async fn cure(&mut self, err: &Self::Error) -> bool {
        let _ = err;
        false
    }
}

/// The error the writer answers with when its backend failed.
fn failed<E: std::fmt::Display>(err: &E) -> StoreError {
    StoreError::Database(err.to_string())
}

/// Group-commit limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most events in one commit (at least 1).
    pub max_events: usize,
    /// How long to wait for more requests before committing a group that is not full; zero
    /// commits at once with whatever is queued.
    pub max_wait: Duration,
}

/// A closure run on the backend in queue order (a backend's own writes that must not race
/// the writer).
type Run<B> = Box<dyn FnOnce(&mut B) + Send>;

/// The answer to an append, with the request's events handed back: the caller drops them, so
/// that freeing them costs the writer nothing.
type AppendReply = (StoreResult<Vec<Appended>>, Vec<PreparedEvent>);

/// What the writer is asked to do.
enum Command<B: LogBackend> {
    /// Append the events of one request, all or nothing.
    Append {
        events: Vec<PreparedEvent>,
        reply: oneshot::Sender<AppendReply>,
        /// Held until the request is answered, so the queue's bound counts it.
        _permit: OwnedSemaphorePermit,
    },
    /// Change stored events through the sanctioned path, recording an audit event.
    Sanctioned {
        reason: String,
        job: B::Job,
        audit: Audit,
        reply: oneshot::Sender<StoreResult<Appended>>,
    },
    /// Run a closure on the backend.
    Run(Run<B>),
}

/// The event a sanctioned change records.
enum Audit {
    /// Known when the change is asked for.
    Ready(Box<PreparedEvent>),
    /// Known only once the job (which holds this tenant) is done (retention's receipt names what was
    /// removed while its job ran); the job fails if it never comes.
    Later(Tenant, oneshot::Receiver<PreparedEvent>),
}

impl<B: LogBackend> Command<B> {
    fn events(&self) -> usize {
        match self {
            Self::Append { events, .. } => events.len(),
            Self::Sanctioned { .. } | Self::Run(_) => 1,
        }
    }
}

struct PendingAppend {
    events: Vec<PreparedEvent>,
    reply: oneshot::Sender<AppendReply>,
    _permit: OwnedSemaphorePermit,
}

/// How often a group is tried when [`LogBackend::cure`] says another attempt may succeed.
const ATTEMPTS: usize = 4;

/// The writer: takes commands from the queue and commits appends in groups.
pub struct Writer<B: LogBackend> {
    backend: B,
    limits: BatchLimits,
    receiver: mpsc::UnboundedReceiver<Command<B>>,
    /// The last `recorded_at` this writer gave, so its clock never runs backwards.
    last_recorded: i64,
}

/// The store's end of the write queue.
pub struct WriteHandle<B: LogBackend> {
    sender: Mutex<Option<mpsc::UnboundedSender<Command<B>>>>,
    queue: WriteQueue,
}

/// A write path: the handle a store keeps, and the writer to run on a task or thread.
pub fn channel<B: LogBackend>(
    backend: B,
    limits: BatchLimits,
    queue_capacity: usize,
) -> (WriteHandle<B>, Writer<B>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let handle = WriteHandle {
        sender: Mutex::new(Some(sender)),
        queue: WriteQueue::new(queue_capacity),
    };
    let writer = Writer {
        backend,
        limits: BatchLimits {
            max_events: limits.max_events.max(1),
            ..limits
        },
        receiver,
        last_recorded: i64::MIN,
    };
    (handle, writer)
}

fn stopped() -> StoreError {
    StoreError::Database("the writer stopped".into())
}

impl<B: LogBackend> WriteHandle<B> {
    fn send(&self, cmd: Command<B>) -> StoreResult<()> {
        let guard = self.sender.lock().expect("sender lock is never poisoned");
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender.send(cmd).map_err(|_| stopped())
    }

    /// Appends one request's events, all or nothing, answering once they are durable. Fails at
    /// once with [`StoreError::Overloaded`] when the queue cannot hold them.
    pub async fn append(&self, events: Vec<PreparedEvent>) -> StoreResult<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let permit = self.queue.admit(events.len())?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append {
            events,
            reply,
            _permit: permit,
        })?;
        let (result, events) = answer.await.map_err(|_| stopped())?;
        drop(events);
        result
    }

    /// The sanctioned path: in one transaction, opens the sanction, runs `job`, closes it, and
    /// appends `audit`, the event that records the act. All of it commits or none of it does.
    pub async fn sanctioned(
        &self,
        reason: &str,
        audit: PreparedEvent,
        job: B::Job,
    ) -> StoreResult<Appended> {
        self.send_sanctioned(reason, job, Audit::Ready(Box::new(audit)))
            .await
    }

    /// [`WriteHandle::sanctioned`] for a change whose record is made while its job runs:
    /// `audit` is awaited once the job (which holds `tenant`) is done; if it never comes,
    /// nothing changes.
    pub async fn sanctioned_later(
        &self,
        reason: &str,
        tenant: &Tenant,
        audit: oneshot::Receiver<PreparedEvent>,
        job: B::Job,
    ) -> StoreResult<Appended> {
        self.send_sanctioned(reason, job, Audit::Later(tenant.clone(), audit))
            .await
    }

    async fn send_sanctioned(
        &self,
        reason: &str,
        job: B::Job,
        audit: Audit,
    ) -> StoreResult<Appended> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Sanctioned {
            reason: reason.to_owned(),
            job,
            audit,
            reply,
        })?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `f` on the backend in queue order, after everything queued before it committed.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut B) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Run(Box::new(move |backend| {
            let _ = reply.send(f(backend));
        })))?;
        answer.await.map_err(|_| stopped())
    }

    /// How full the queue is.
    pub fn status(&self) -> QueueStatus {
        self.queue.status()
    }

    /// Takes no more commands; the writer drains what is queued and returns.
    pub fn close(&self) {
        self.sender
            .lock()
            .expect("sender lock is never poisoned")
            .take();
    }
}

/// Groups of at most this many events are sealed on the writer's own task even when the
/// backend asks for sealing off it ([`LogBackend::SEAL_OFF_THREAD`]): about 10 µs of work per
/// event, short enough not to hold up the runtime.
const SEAL_INLINE_MAX: usize = 8;

impl<B: LogBackend> Writer<B> {
    /// Serves commands until the handle is closed (or dropped), then returns after the last
    /// commit.
    pub async fn run(mut self) {
        while let Some(first) = self.receiver.recv().await {
            let mut events = first.events();
            let mut group = vec![first];
            let deadline = tokio::time::Instant::now() + self.limits.max_wait;
            while events < self.limits.max_events {
                let next = match self.receiver.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(_) if self.limits.max_wait.is_zero() => None,
                    Err(_) => tokio::time::timeout_at(deadline, self.receiver.recv())
                        .await
                        .ok()
                        .flatten(),
                };
                let Some(cmd) = next else { break };
                events += cmd.events();
                group.push(cmd);
            }
            self.process(group).await;
            self.backend.after_replies().await;
        }
        tracing::debug!("write queue closed; writer stops");
    }

    async fn process(&mut self, group: Vec<Command<B>>) {
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
                // Keep the queue's order: appends queued before commit first.
                Command::Run(f) => {
                    self.commit_appends(std::mem::take(&mut appends)).await;
                    f(&mut self.backend);
                }
                Command::Sanctioned {
                    reason,
                    job,
                    audit,
                    reply,
                } => {
                    self.commit_appends(std::mem::take(&mut appends)).await;
                    let _ = reply.send(self.run_sanctioned(&reason, job, audit).await);
                }
            }
        }
        self.commit_appends(appends).await;
    }

    /// The time to record a group at: now, but never before anything already in the logs.
    fn recorded_at(&self, loaded: &Loaded) -> Timestamp {
        let logs = loaded
            .ends
            .values()
            .filter_map(|e| e.recorded_at.map(Timestamp::micros))
            .max()
            .unwrap_or(i64::MIN);
        Timestamp::from_micros(Timestamp::now().micros().max(self.last_recorded).max(logs))
    }

    async fn commit_appends(&mut self, appends: Vec<PendingAppend>) {
        if appends.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let (mut requests, mut replies) = (Vec::new(), Vec::new());
        for a in appends {
            requests.push(a.events);
            replies.push((a.reply, a._permit));
        }
        let total: usize = requests.iter().map(Vec::len).sum();
        let want = seal::want(&requests);
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let (back, result) = self.commit_once(requests, &want).await;
            requests = back;
            match result {
                Ok(results) => break Ok(results),
                Err(err) => {
                    self.backend.rollback().await;
                    if attempt < ATTEMPTS && self.backend.cure(&err).await {
                        tracing::debug!(error = %err, attempt, "group commit retried");
                        continue;
                    }
                    break Err(err);
                }
            }
        };
        match outcome {
            Ok(results) => {
                for (((reply, _permit), result), events) in
                    replies.into_iter().zip(results).zip(requests)
                {
                    // A client that went away does not need its answer; the events stay stored.
                    let _ = reply.send((result, events));
                }
                let elapsed = started.elapsed();
                metrics::histogram!(crate::metrics::BATCH_SIZE).record(total as f64);
                metrics::histogram!(crate::metrics::COMMIT_DURATION).record(elapsed.as_secs_f64());
                tracing::trace!(
                    events = total,
                    elapsed_us = elapsed.as_micros() as u64,
                    "group committed"
                );
            }
            Err(err) => {
                metrics::counter!(crate::metrics::COMMITS_FAILED).increment(1);
                tracing::error!(error = %err, events = total, "group commit failed");
                for ((reply, _permit), events) in replies.into_iter().zip(requests) {
                    let _ = reply.send((Err(failed(&err)), events));
                }
            }
        }
    }

    /// One attempt at a group; hands the requests back for another attempt.
    #[allow(clippy::type_complexity)] // The requests go out and come back with the outcome.
    async fn commit_once(
        &mut self,
        requests: Vec<Vec<PreparedEvent>>,
        want: &Want,
    ) -> (
        Vec<Vec<PreparedEvent>>,
        Result<Vec<StoreResult<Vec<Appended>>>, B::Error>,
    ) {
        if let Err(err) = self.backend.begin().await {
            return (requests, Err(err));
        }
        let loaded = match self.backend.load(want).await {
            Ok(loaded) => loaded,
            Err(err) => return (requests, Err(err)),
        };
        let recorded_at = self.recorded_at(&loaded);
        // A few events seal in tens of microseconds, less than a hand-off to a blocking thread.
        let events: usize = requests.iter().map(Vec::len).sum();
        let (requests, (results, batch)) = if B::SEAL_OFF_THREAD && events > SEAL_INLINE_MAX {
            let sealed = tokio::task::spawn_blocking(move || {
                let out = seal::seal_group(&requests, recorded_at, loaded);
                (requests, out)
            })
            .await;
            match sealed {
                Ok(sealed) => sealed,
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            }
        } else {
            let out = seal::seal_group(&requests, recorded_at, loaded);
            (requests, out)
        };
        if let Err(err) = self.backend.write_and_commit(&batch).await {
            return (requests, Err(err));
        }
        self.last_recorded = recorded_at.micros();
        (requests, Ok(results))
    }

    /// The sanctioned path: in one transaction, run the job with the sanction open, then seal
    /// and append the audit event that records it.
    async fn run_sanctioned(
        &mut self,
        reason: &str,
        job: B::Job,
        audit: Audit,
    ) -> StoreResult<Appended> {
        let tenant = match &audit {
            Audit::Ready(event) => event.tenant.clone(),
            Audit::Later(tenant, _) => tenant.clone(),
        };
        let result = async {
            self.backend.begin().await?;
            self.backend.sanctioned(&tenant, reason, job).await?;
            let audit = match audit {
                Audit::Ready(event) => *event,
                Audit::Later(_, later) => match later.await {
                    Ok(event) => event,
                    Err(_) => {
                        return Ok(Err(StoreError::Database(format!(
                            "the {reason} was abandoned before its record was made"
                        ))));
                    }
                },
            };
            let requests = vec![vec![audit]];
            let want = seal::want(&requests);
            // The job may have changed the log: load its end after it.
            let loaded = self.backend.load(&want).await?;
            let recorded_at = self.recorded_at(&loaded);
            let (mut results, batch) = seal::seal_group(&requests, recorded_at, loaded);
            let written = results.remove(0);
            if written.is_ok() {
                self.backend.write(&batch).await?;
                self.backend.commit().await?;
                self.last_recorded = recorded_at.micros();
            }
            Ok::<_, B::Error>(written)
        }
        .await;
        match result {
            Ok(Ok(mut appended)) => Ok(appended.remove(0)),
            Ok(Err(conflict)) => {
                self.backend.rollback().await;
                Err(conflict)
            }
            Err(err) => {
                self.backend.rollback().await;
                Err(failed(&err))
            }
        }
    }
}
