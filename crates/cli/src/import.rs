//! `sealtrail import`: loads NDJSON events into a running server through its normal ingest
//! path (`POST /api/v1/events`: validation, redaction, sealing, the key's tenant rules), in
//! batches, with a progress bar on a terminal.
//!
//! It reads a sealtrail export (its header, checkpoint and node lines are skipped; each
//! event as served is turned back into the event that was sent: `seq`, `recorded_at`, `hash`,
//! `seal` and the changes' `changed_at`/`changed_by` go, the `id` stays) or plain events, one
//! per line. An event without an `id` gets one derived from its line number and content, so
//! running the same import again stores nothing twice: every event comes back a duplicate.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `sealtrail import` options.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// The NDJSON file: a sealtrail export or plain events, one per line (`-` for standard
    /// input)
    file: PathBuf,
    /// The server to import into
    #[arg(
        long,
        env = "SEALTRAIL_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// An API key with the ingest scope
    #[arg(
        long,
        env = "SEALTRAIL_TOKEN",
        value_name = "KEY",
        hide_env_values = true
    )]
    token: String,
    /// Put every event into this tenant (a key bound to all tenants needs it unless the
    /// events name theirs); otherwise an event keeps the tenant it names
    #[arg(long, value_parser = sealtrail_store::Tenant::parse)]
    tenant: Option<sealtrail_store::Tenant>,
    /// Events per request (a request is all or nothing)
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
}

/// What an import did.
#[derive(Debug, Default)]
struct Totals {
    read: u64,
    accepted: u64,
    duplicates: u64,
    skipped: u64,
}

pub(crate) fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| match size {
        Some(size) => {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {msg}",
                )
                .expect("a valid template"),
            );
            bar
        }
        None => indicatif::ProgressBar::new_spinner(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = std::time::Instant::now();
    let result = runtime.block_on(import(args, input, bar.as_ref()));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let totals = result?;
    eprintln!(
        "sealtrail import: {} events read in {:.2} s: {} stored, {} already there{}",
        totals.read,
        started.elapsed().as_secs_f64(),
        totals.accepted,
        totals.duplicates,
        if totals.skipped > 0 {
            format!(
                " ({} export header, checkpoint and node lines skipped)",
                totals.skipped
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

async fn import(
    args: &ImportArgs,
    input: Box<dyn Read + Send>,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<Totals> {
    let http = reqwest::Client::new();
    let endpoint = format!("{}/api/v1/events", args.url.trim_end_matches('/'));
    let mut reader = std::io::BufReader::with_capacity(1 << 20, input);
    let mut totals = Totals::default();
    let mut batch: Vec<Value> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    let mut line = String::new();
    let mut number = 0u64;
    let mut consumed = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .context("cannot read the input")?;
        consumed += n as u64;
        let end = n == 0;
        if !end {
            number += 1;
            if !line.trim().is_empty() {
                let value: Value = serde_json::from_str(&line)
                    .with_context(|| format!("line {number} is not JSON"))?;
                match as_event(value, number, &line, args.tenant.as_ref())
                    .with_context(|| format!("line {number}"))?
                {
                    Some(event) => {
                        batch.push(event);
                        lines.push(number);
                        totals.read += 1;
                    }
                    None => totals.skipped += 1,
                }
            }
        }
        if batch.len() as u64 >= args.batch || (end && !batch.is_empty()) {
            let (accepted, duplicates) =
                send(&http, &endpoint, &args.token, &batch, &lines).await?;
            totals.accepted += accepted;
            totals.duplicates += duplicates;
            batch.clear();
            lines.clear();
            if let Some(bar) = bar {
                bar.set_position(consumed);
                bar.set_message(format!("{} events", totals.read));
            }
        }
        if end {
            return Ok(totals);
        }
    }
}

/// The event a line sends, or `None` for an export's header, checkpoint and node lines.
fn as_event(
    value: Value,
    number: u64,
    line: &str,
    tenant: Option<&sealtrail_store::Tenant>,
) -> anyhow::Result<Option<Value>> {
    let Value::Object(mut event) = value else {
        anyhow::bail!("is not a JSON object");
    };
    if ["sealtrail_export", "checkpoint", "node"]
        .iter()
        .any(|k| event.contains_key(*k))
    {
        return Ok(None);
    }
    // What a server adds to an event it serves; the rest is what was sent.
    for served in ["seq", "recorded_at", "hash", "seal"] {
        event.remove(served);
    }
    if let Some(Value::Array(changes)) = event.get_mut("changes") {
        for change in changes.iter_mut().filter_map(Value::as_object_mut) {
            change.remove("changed_at");
            change.remove("changed_by");
        }
    }
    strip_nulls(&mut event);
    if let Some(tenant) = tenant {
        event.insert("tenant".into(), Value::String(tenant.to_string()));
    }
    if !event.contains_key("id") {
        event.insert(
            "id".into(),
            Value::String(line_id(number, line).to_string()),
        );
    }
    Ok(Some(Value::Object(event)))
}

/// Drops top-level `null`s a served event spells out (`target: null`); absent and `null` mean
/// the same to ingest, and leaving them out keeps the request small.
fn strip_nulls(event: &mut Map<String, Value>) {
    event.retain(|_, v| !v.is_null());
}

/// A stable id for an event given without one: from its line number and its text, so the
/// same file imported again names the same events.
fn line_id(number: u64, line: &str) -> uuid::Uuid {
    let mut hash = Sha256::new();
    hash.update(b"sealtrail import\0");
    hash.update(number.to_be_bytes());
    hash.update(line.trim_end().as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Sends one batch, waiting and sending it again while the server answers 503; returns
/// (stored, duplicates). A refused batch names the input lines of the bad fields.
async fn send(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    batch: &[Value],
    lines: &[u64],
) -> anyhow::Result<(u64, u64)> {
    let mut attempt = 0u32;
    loop {
        let response = http
            .post(endpoint)
            .bearer_auth(token)
            .json(batch)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if attempt < 10 => {
                tracing::warn!(error = %e, "cannot reach the server; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot reach {endpoint}")),
        };
        let status = response.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < 60 {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(wait.clamp(1, 30))).await;
            continue;
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            let accepted = body["accepted"].as_u64().unwrap_or(0);
            let duplicates = body["duplicates"].as_u64().unwrap_or(0);
            return Ok((accepted, duplicates));
        }
        let mut problems = Vec::new();
        for e in body["errors"].as_array().into_iter().flatten() {
            let field = e["field"].as_str().unwrap_or("$");
            let message = e["message"].as_str().unwrap_or("");
            problems.push(format!("{}: {message}", line_field(field, lines)));
        }
        let detail = body["detail"].as_str().unwrap_or_default();
        anyhow::bail!(
            "the server refused a batch ({status}{}{}){}; nothing of that batch was stored, the \
             batches before it were (importing again skips them)",
            if detail.is_empty() { "" } else { ": " },
            detail,
            if problems.is_empty() {
                String::new()
            } else {
                format!(": {}", problems.join("; "))
            }
        );
    }
}

/// `events[3].context.ip` of a batch as `line 1207: context.ip`.
fn line_field(field: &str, lines: &[u64]) -> String {
    let Some(rest) = field.strip_prefix("events[") else {
        return field.to_owned();
    };
    let Some((index, tail)) = rest.split_once(']') else {
        return field.to_owned();
    };
    match index.parse::<usize>().ok().and_then(|i| lines.get(i)) {
        Some(line) => format!("line {line}: {}", tail.trim_start_matches('.')),
        None => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn served_events_become_the_events_that_were_sent() {
        let served = json!({
            "id": "01a243d5-b720-7196-9614-a1fc8d64fc1e", "seq": 4, "tenant": "t",
            "recorded_at": "2026-12-05T01:33:29.252298Z", "occurred_at": "2026-12-05T01:33:29.252298Z",
            "hash": "00", "seal": {"prev": "00", "personal": ""}, "action": "a",
            "target": null, "changes": [{"field": "f", "old_value": 1, "new_value": 2,
            "changed_at": "2026-12-05T01:33:29.252298Z", "changed_by": "u"}],
        });
        let event = as_event(served, 3, "…", None)
            .expect("ok")
            .expect("an event");
        assert_eq!(
            event,
            json!({
                "id": "01a243d5-b720-7196-9614-a1fc8d64fc1e", "tenant": "t",
                "occurred_at": "2026-12-05T01:33:29.252298Z", "action": "a",
                "changes": [{"field": "f", "old_value": 1, "new_value": 2}],
            })
        );
        for skipped in [
            json!({"sealtrail_export": 2}),
            json!({"checkpoint": {}}),
            json!({"node": {}}),
        ] {
            assert_eq!(as_event(skipped, 1, "", None).expect("ok"), None);
        }
        assert!(as_event(json!([1]), 1, "", None).is_err());
    }

    #[test]
    fn plain_events_get_ids_that_a_second_import_repeats() {
        let line = r#"{"action":"a","actor":{"id":"u"}}"#;
        let one = as_event(serde_json::from_str(line).expect("json"), 7, line, None)
            .expect("ok")
            .expect("event");
        let again = as_event(serde_json::from_str(line).expect("json"), 7, line, None)
            .expect("ok")
            .expect("event");
        let elsewhere = as_event(serde_json::from_str(line).expect("json"), 8, line, None)
            .expect("ok")
            .expect("event");
        assert_eq!(one["id"], again["id"]);
        assert_ne!(
            one["id"], elsewhere["id"],
            "the same event twice is two events"
        );
        let tenant = sealtrail_store::Tenant::parse("acme").expect("tenant");
        let moved = as_event(json!({"action": "a", "tenant": "t"}), 1, "x", Some(&tenant))
            .expect("ok")
            .expect("event");
        assert_eq!(moved["tenant"], "acme");
    }

    #[test]
    fn refused_fields_are_named_by_input_line() {
        assert_eq!(
            line_field("events[1].context.ip", &[10, 12]),
            "line 12: context.ip"
        );
        assert_eq!(line_field("events[1]", &[10, 12]), "line 12: ");
        assert_eq!(line_field("$", &[10]), "$");
    }
}
