//! The background sender: batches buffered events, retries, spools, replays the spool in order,
//! and dead-letters what the server refuses.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use tokio::sync::{mpsc, oneshot};

use crate::{Msg, Shared, line_of, metric};

/// What the server made of a batch.
enum Answer {
    /// Stored (or already stored): delivered.
    Stored,
    /// A 4xx: never retried. `bad` are the indexes its problem names (`events[3]…`); none
    /// named means the whole batch.
    Refused {
        status: u16,
        problem: serde_json::Value,
        bad: Vec<usize>,
    },
    /// Worth trying again, not before `after` when the server said so.
    Retry { after: Option<Duration> },
}

pub(crate) async fn run(mut rx: mpsc::Receiver<Msg>, shared: Arc<Shared>, http: reqwest::Client) {
    let url = format!("{}/api/v1/events", shared.config.url);
    // Consecutive failed replays, for the back-off.
    let mut failures = 0u32;
    loop {
        let closing = shared.closing.load(Ordering::SeqCst);
        if !spool_is_empty(&shared) {
            // Keep order: whatever is buffered queues behind the spool.
            if !drain_into_spool(&mut rx, &shared).await {
                return;
            }
            if closing {
                continue;
            }
            match replay_once(&http, &url, &shared).await {
                None => failures = 0,
                Some(after) => {
                    failures += 1;
                    let wait = backoff(&shared.config, failures, after);
                    // While waiting, buffered events still move into the spool, a batch (one
                    // sync) at a time.
                    let deadline = tokio::time::Instant::now() + wait;
                    let mut pending = Vec::new();
                    loop {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Err(_) => break,
                            Ok(None) => {
                                spool_off_runtime(&shared, pending).await;
                                return;
                            }
                            Ok(Some(Msg::Event(event))) => {
                                pending.push(line_of(&event));
                                if pending.len() >= shared.config.batch_max_events {
                                    spool_off_runtime(&shared, std::mem::take(&mut pending)).await;
                                }
                            }
                            Ok(Some(Msg::Flush(done))) => {
                                spool_off_runtime(&shared, std::mem::take(&mut pending)).await;
                                let _ = done.send(());
                            }
                        }
                    }
                    spool_off_runtime(&shared, pending).await;
                }
            }
            continue;
        }
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        take(first, &mut batch, &mut flushes);
        let deadline = tokio::time::Instant::now() + shared.config.batch_max_wait;
        while batch.len() < shared.config.batch_max_events && flushes.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => take(msg, &mut batch, &mut flushes),
                Ok(None) | Err(_) => break,
            }
        }
        if !batch.is_empty() {
            deliver(&http, &url, &shared, batch).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn take(msg: Msg, batch: &mut Vec<String>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match msg {
        Msg::Event(event) => batch.push(line_of(&event)),
        Msg::Flush(done) => flushes.push(done),
    }
}

fn spool_is_empty(shared: &Shared) -> bool {
    shared
        .spool
        .lock()
        .expect("spool lock is never poisoned")
        .is_empty()
}

/// Appends to the spool on a blocking thread: the file write and its sync stay off the async
/// runtime that serves the host app's requests.
async fn spool_off_runtime(shared: &Arc<Shared>, lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    let shared = shared.clone();
    let count = lines.len();
    if tokio::task::spawn_blocking(move || shared.spool(&lines))
        .await
        .is_err()
    {
        metrics::counter!(metric::DROPPED).increment(count as u64);
        tracing::error!(
            events = count,
            "audit events dropped: the spool task failed"
        );
    }
}

/// Moves everything buffered into the spool; answers flushes (their events are now durable).
/// `false` once the buffer is closed and empty.
async fn drain_into_spool(rx: &mut mpsc::Receiver<Msg>, shared: &Arc<Shared>) -> bool {
    let mut lines = Vec::new();
    let open = loop {
        match rx.try_recv() {
            Ok(Msg::Event(event)) => lines.push(line_of(&event)),
            Ok(Msg::Flush(done)) => {
                spool_off_runtime(shared, std::mem::take(&mut lines)).await;
                let _ = done.send(());
            }
            Err(mpsc::error::TryRecvError::Empty) => break true,
            Err(mpsc::error::TryRecvError::Disconnected) => break false,
        }
    };
    spool_off_runtime(shared, lines).await;
    open
}

/// Sends one batch, retrying; spools it after the last attempt (at once when closing).
async fn deliver(http: &reqwest::Client, url: &str, shared: &Arc<Shared>, mut lines: Vec<String>) {
    let mut attempt = 0u32;
    loop {
        match post(http, url, shared, &lines).await {
            Answer::Stored => {
                metrics::counter!(metric::SENT).increment(lines.len() as u64);
                return;
            }
            Answer::Refused {
                status,
                problem,
                bad,
            } => {
                lines = dead_letter(shared, lines, status, &problem, &bad);
                if lines.is_empty() {
                    return;
                }
            }
            Answer::Retry { after } => {
                attempt += 1;
                if attempt >= shared.config.attempts || shared.closing.load(Ordering::SeqCst) {
                    spool_off_runtime(shared, lines).await;
                    return;
                }
                metrics::counter!(metric::RETRIED).increment(1);
                tokio::time::sleep(backoff(&shared.config, attempt, after)).await;
            }
        }
    }
}

/// Sends the spool's head once. `None` when it made progress; `Some(after)` when the server is
/// still not taking events.
async fn replay_once(
    http: &reqwest::Client,
    url: &str,
    shared: &Shared,
) -> Option<Option<Duration>> {
    let head = shared
        .spool
        .lock()
        .expect("spool lock is never poisoned")
        .peek(shared.config.batch_max_events);
    let (mut lines, end) = match head {
        Ok(head) => head,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the spool");
            return Some(None);
        }
    };
    let count = lines.len();
    loop {
        if lines.is_empty() {
            break;
        }
        match post(http, url, shared, &lines).await {
            Answer::Stored => {
                metrics::counter!(metric::SENT).increment(lines.len() as u64);
                break;
            }
            Answer::Refused {
                status,
                problem,
                bad,
            } => lines = dead_letter(shared, lines, status, &problem, &bad),
            Answer::Retry { after } => return Some(after),
        }
    }
    let consumed = shared
        .spool
        .lock()
        .expect("spool lock is never poisoned")
        .consume(end);
    if let Err(err) = consumed {
        // The events were delivered; sending them again later is answered as duplicates.
        tracing::warn!(error = %err, events = count, "cannot record spool progress");
    }
    None
}

async fn post(http: &reqwest::Client, url: &str, shared: &Shared, lines: &[String]) -> Answer {
    let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(line);
    }
    body.push(']');
    let sent = http
        .post(url)
        .bearer_auth(&shared.config.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(err) => {
            tracing::debug!(error = %err, "sealtrail unreachable");
            return Answer::Retry { after: None };
        }
    };
    let status = response.status();
    if status.is_success() {
        return Answer::Stored;
    }
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        let after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Answer::Retry { after };
    }
    let text = response.text().await.unwrap_or_default();
    let problem: serde_json::Value =
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    let bad = bad_indexes(&problem, lines.len());
    Answer::Refused {
        status: status.as_u16(),
        problem,
        bad,
    }
}

/// The event indexes a problem body names (`events[3].context.ip` → 3), in range, sorted.
fn bad_indexes(problem: &serde_json::Value, len: usize) -> Vec<usize> {
    let mut out: Vec<usize> = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .filter_map(|f| f.strip_prefix("events["))
        .filter_map(|rest| rest.split(']').next())
        .filter_map(|n| n.parse().ok())
        .filter(|&i| i < len)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Writes the refused events to the dead-letter file; returns the others, to send again.
fn dead_letter(
    shared: &Shared,
    lines: Vec<String>,
    status: u16,
    problem: &serde_json::Value,
    bad: &[usize],
) -> Vec<String> {
    let (refused, rest): (Vec<_>, Vec<_>) = if bad.is_empty() {
        (lines, Vec::new())
    } else {
        let (r, k): (Vec<_>, Vec<_>) = lines
            .into_iter()
            .enumerate()
            .partition(|(i, _)| bad.binary_search(i).is_ok());
        (
            r.into_iter().map(|(_, l)| l).collect(),
            k.into_iter().map(|(_, l)| l).collect(),
        )
    };
    let path = shared.config.spool_dir.join("dead-letter.ndjson");
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        for line in &refused {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
            let entry = serde_json::json!({"status": status, "problem": problem, "event": event});
            writeln!(file, "{entry}")?;
        }
        file.sync_data()
    })();
    metrics::counter!(metric::DEAD_LETTERED).increment(refused.len() as u64);
    match written {
        Ok(()) => {
            tracing::warn!(status, events = refused.len(), file = %path.display(), "sealtrail refused audit events; dead-lettered")
        }
        Err(err) => {
            tracing::error!(status, events = refused.len(), error = %err, "sealtrail refused audit events and the dead-letter file failed")
        }
    }
    rest
}

/// Exponential back-off with jitter: `retry_base · 2^(attempt−1)`, capped at `retry_max`,
/// drawn from its upper half; never shorter than the server's `Retry-After`.
fn backoff(config: &crate::ClientConfig, attempt: u32, after: Option<Duration>) -> Duration {
    let exp = config
        .retry_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(config.retry_max);
    let jittered = rand::rng().random_range(exp / 2..=exp);
    after.map_or(jittered, |a| a.max(jittered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_with_jitter_is_capped_and_honours_retry_after() {
        let config = crate::ClientConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..crate::ClientConfig::new("http://x", "t")
        };
        for _ in 0..50 {
            let first = backoff(&config, 1, None);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = backoff(&config, 3, None);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            assert!(backoff(&config, 30, None) <= Duration::from_secs(1));
            assert!(backoff(&config, 1, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        }
    }

    #[test]
    fn a_problem_names_the_events_it_refuses() {
        let cases = [
            (
                serde_json::json!({"errors": [{"field": "events[3].context.ip"}, {"field": "events[1].action"}, {"field": "events[3].actor.id"}]}),
                5,
                vec![1, 3],
            ),
            (serde_json::json!({"errors": [{"field": "$"}]}), 5, vec![]),
            (
                serde_json::json!({"errors": [{"field": "events[9].action"}]}),
                5,
                vec![],
            ),
            (serde_json::json!("not json"), 5, vec![]),
        ];
        for (problem, len, want) in cases {
            assert_eq!(bad_indexes(&problem, len), want, "{problem}");
        }
    }
}
