//! The sealtrail client for host applications (SPEC §7).
//!
//! [`Client::record`] never waits and never fails the caller: the event goes into a bounded
//! buffer, and a background task sends buffered events in batches (by count and time). Server
//! errors (5xx, 503), 408/429 and connection failures are retried with exponential back-off and
//! full jitter, honouring `Retry-After`; after a few attempts the batch goes to the spool, an
//! append-only file that is synced before it counts and is replayed in order once sealtrail
//! answers again. While anything waits in the spool, newer events queue behind it, so order
//! holds. A 4xx validation answer is never retried: the events it names go to the dead-letter
//! file with the server's problem body, and the rest of the batch is sent again. Every event
//! carries an id made here, so a retry or a replay is answered as a duplicate, never stored
//! twice.
//!
//! Metrics go through the `metrics` facade (names in [`metric`]); install any recorder.
//!
//! What is lost: events still in the in-memory buffer when the process dies without
//! [`Client::flush`] or [`Client::shutdown`]. Events in the spool survive a crash. A full spool
//! (`spool_max_bytes`) drops new events, loudly (the `dropped` metric and an error log).

mod checkpoint;
mod context;
mod diff;
mod event;
pub mod layer;
mod sender;
mod spool;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use crate::checkpoint::{CheckpointError, Seen};
pub use crate::context::{AuditContext, spawn};
pub use crate::diff::{changes, changes_with};
pub use crate::event::AuditEvent;
pub use crate::layer::{Audit, AuditLayer, audited};
pub use crate::spool::SpoolError;
pub use sealtrail_model::event::{ActorType, Context, Organization, Related, Target};
pub use sealtrail_model::{Actor, Category, Change, Outcome, Redactor, Timestamp};

/// The names of the client's metrics (counters, through the `metrics` facade).
pub mod metric {
    /// Events accepted into the buffer.
    pub const QUEUED: &str = "sealtrail_client_events_queued_total";
    /// Events the server acknowledged (new or duplicate).
    pub const SENT: &str = "sealtrail_client_events_sent_total";
    /// Batch sends tried again after a retryable failure.
    pub const RETRIED: &str = "sealtrail_client_retries_total";
    /// Events written to the spool.
    pub const SPOOLED: &str = "sealtrail_client_events_spooled_total";
    /// Events the server refused (4xx), written to the dead-letter file.
    pub const DEAD_LETTERED: &str = "sealtrail_client_events_dead_lettered_total";
    /// Events lost because the spool was full or could not be written.
    pub const DROPPED: &str = "sealtrail_client_events_dropped_total";
}

/// How the client behaves. Its `Debug` output leaves the token out.
#[derive(Clone)]
pub struct ClientConfig {
    /// sealtrail's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// An API key with the `ingest` scope.
    pub token: String,
    /// The tenant to name in every event that names none: needed only with an admin key
    /// bound to every tenant (a tenant's own key implies its tenant).
    pub tenant: Option<String>,
    /// Events the in-memory buffer holds before `record` spools directly.
    pub buffer: usize,
    /// Most events in one request.
    pub batch_max_events: usize,
    /// How long a batch waits to fill before it is sent anyway.
    pub batch_max_wait: Duration,
    /// Where the spool (and the dead-letter file) live.
    pub spool_dir: PathBuf,
    /// The spool's size cap in bytes.
    pub spool_max_bytes: u64,
    /// The first retry's back-off; each retry doubles it, up to `retry_max`.
    pub retry_base: Duration,
    /// The longest back-off.
    pub retry_max: Duration,
    /// Attempts at a batch before it goes to the spool.
    pub attempts: u32,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// Defaults for a server and key: buffer 10 000, batches of 500 or 100 ms, spool in
    /// `./sealtrail-spool` capped at 256 MiB, back-off 100 ms to 30 s, 3 attempts.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            tenant: None,
            buffer: 10_000,
            batch_max_events: 500,
            batch_max_wait: Duration::from_millis(100),
            spool_dir: PathBuf::from("sealtrail-spool"),
            spool_max_bytes: 256 << 20,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            attempts: 3,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("buffer", &self.buffer)
            .field("batch_max_events", &self.batch_max_events)
            .field("batch_max_wait", &self.batch_max_wait)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("retry_base", &self.retry_base)
            .field("retry_max", &self.retry_max)
            .field("attempts", &self.attempts)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Why the client could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The spool could not be opened or written.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// The background sender is gone (after shutdown, or it panicked).
    #[error("the sender task is not running")]
    Stopped,
}

/// What the buffer carries to the sender.
pub(crate) enum Msg {
    /// One event; serialised by the sender, off the caller's path.
    Event(Box<AuditEvent>),
    /// Answer once everything queued before is delivered or spooled.
    Flush(oneshot::Sender<()>),
}

/// An event as one JSON line.
pub(crate) fn line_of(event: &AuditEvent) -> String {
    serde_json::to_string(event).expect("an audit event serialises to JSON")
}

/// State the caller's side and the sender share.
pub(crate) struct Shared {
    pub(crate) spool: Mutex<spool::Spool>,
    pub(crate) config: ClientConfig,
    /// Set by shutdown: no more retries, spool at the first failure.
    pub(crate) closing: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Appends lines to the spool, counting them; a failure drops them loudly.
    pub(crate) fn spool(&self, lines: &[String]) {
        let result = self
            .spool
            .lock()
            .expect("spool lock is never poisoned")
            .append(lines);
        match result {
            Ok(()) => metrics::counter!(metric::SPOOLED).increment(lines.len() as u64),
            Err(err) => {
                metrics::counter!(metric::DROPPED).increment(lines.len() as u64);
                tracing::error!(error = %err, events = lines.len(), "audit events dropped: cannot spool them");
            }
        }
    }
}

/// A sealtrail client. Cheap to share behind an `Arc`; needs a tokio runtime.
pub struct Client {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    http: reqwest::Client,
    /// Checkpoint signing keys, pinned the first time they were listed.
    keys: Mutex<std::collections::HashMap<String, ed25519_dalek::VerifyingKey>>,
    /// The last checkpoint that verified.
    checkpoint: Mutex<Option<Seen>>,
}

impl Client {
    /// A client with default settings (see [`ClientConfig::new`]).
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Result<Self, ClientError> {
        Self::with_config(ClientConfig::new(url, token))
    }

    /// A client with the given settings. Opens the spool (anything left in it from an earlier
    /// run is sent first) and starts the sender on the current tokio runtime.
    pub fn with_config(config: ClientConfig) -> Result<Self, ClientError> {
        let spool = spool::Spool::open(&config.spool_dir, config.spool_max_bytes)?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()?;
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            config,
            closing: std::sync::atomic::AtomicBool::new(false),
        });
        let task = tokio::spawn(sender::run(rx, shared.clone(), http.clone()));
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            shared,
            task: Mutex::new(Some(task)),
            http,
            keys: Mutex::default(),
            checkpoint: Mutex::default(),
        })
    }

    /// Records an event without waiting. When the buffer is full (or the client is shut down)
    /// the event goes straight to the spool.
    pub fn record(&self, mut event: AuditEvent) {
        if event.tenant.is_none() {
            event.tenant.clone_from(&self.shared.config.tenant);
        }
        let sender = self
            .tx
            .lock()
            .expect("sender lock is never poisoned")
            .clone();
        let rejected = match sender {
            Some(tx) => match tx.try_send(Msg::Event(Box::new(event))) {
                Ok(()) => {
                    metrics::counter!(metric::QUEUED).increment(1);
                    return;
                }
                Err(mpsc::error::TrySendError::Full(Msg::Event(event)))
                | Err(mpsc::error::TrySendError::Closed(Msg::Event(event))) => *event,
                Err(_) => unreachable!("record only sends events"),
            },
            None => event,
        };
        self.shared.spool(&[line_of(&rejected)]);
    }

    /// Waits until every event recorded before the call is delivered, dead-lettered or durably
    /// in the spool: afterwards nothing of it lives only in memory.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let sender = self
            .tx
            .lock()
            .expect("sender lock is never poisoned")
            .clone();
        let tx = sender.ok_or(ClientError::Stopped)?;
        let (done, wait) = oneshot::channel();
        tx.send(Msg::Flush(done))
            .await
            .map_err(|_| ClientError::Stopped)?;
        wait.await.map_err(|_| ClientError::Stopped)
    }

    /// Sends what is buffered once more without retrying, spools whatever cannot be sent, and
    /// stops the sender. Later `record` calls go straight to the spool.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.tx
            .lock()
            .expect("sender lock is never poisoned")
            .take();
        let task = self
            .task
            .lock()
            .expect("task lock is never poisoned")
            .take();
        if let Some(task) = task {
            task.await.map_err(|_| ClientError::Stopped)?;
        }
        Ok(())
    }

    /// Bytes waiting in the spool.
    pub fn spooled_bytes(&self) -> u64 {
        self.shared
            .spool
            .lock()
            .expect("spool lock is never poisoned")
            .pending_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::ClientConfig;

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = ClientConfig::new("http://127.0.0.1:1", "st_secretsecretsecret");
        let shown = format!("{config:?}");
        assert!(!shown.contains("st_secretsecretsecret"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:1"), "{shown}");
    }
}
