//! `bench`: the figures of BENCHMARKS.md, each against a baseline measured in the same run.
//!
//! ```text
//! cargo run --release -p sealtrail-bench --bin bench -- ingest   # HTTP batch ingest vs raw SQLite inserts
//! cargo run --release -p sealtrail-bench --bin bench -- latency  # single-event durable ingest, 16 clients
//! cargo run --release -p sealtrail-bench --bin bench -- query    # list pages at 1M stored events
//! cargo run --release -p sealtrail-bench --bin bench -- layer      # the audit layer's added latency per request
//! cargo run --release -p sealtrail-bench --bin bench -- example    # asset-service throughput, sealtrail down vs up
//! cargo run --release -p sealtrail-bench --bin bench -- pg-ingest  # PostgreSQL: HTTP ingest vs raw COPY and INSERT
//! cargo run --release -p sealtrail-bench --bin bench -- pg-scale   # PostgreSQL: one server process vs two
//! cargo run --release -p sealtrail-bench --bin bench -- pg-query   # PostgreSQL: list pages at 1M (and --events 10000000)
//! ```

#![allow(clippy::print_stdout)] // A benchmark's output is its report.

mod client;
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rusqlite::params;
use sealtrail_model::{Redactor, Timestamp, parse_event};
use sealtrail_server::{AppState, bootstrap_admin, serve};
use sealtrail_store::{PreparedEvent, Store};
use sealtrail_store_sqlite::{SqliteConfig, SqliteStore};
use serde_json::{Value, json};

const ADMIN: &str = "st_benchbenchbenchbenchbenchbenchbenchbench000";

/// The tenant every bench writes to.
fn bench_tenant() -> sealtrail_store::Tenant {
    sealtrail_store::Tenant::parse("bench").expect("a valid tenant name")
}

#[derive(Parser)]
#[command(about = "sealtrail benchmarks")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// HTTP batch ingest (batches of 500 × ~1 KB, 4 clients) as a ratio to raw SQLite inserts.
    Ingest {
        /// Events per run.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Single-event durable ingest latency at 16 concurrent clients.
    Latency {
        /// Requests per client.
        #[arg(long, default_value_t = 1_000)]
        requests: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// Speed of the `sealtrail verify` store walk.
    Verify {
        /// Events to seed.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Measured walks after the warm-up one; the median and the best are printed.
        #[arg(long, default_value_t = 5)]
        walks: usize,
    },
    /// Writes the raw baseline's rows to an NDJSON file, for the driver comparison.
    Rows {
        /// Events to write.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Output file.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Inserts rows from a `rows` file with rusqlite, one transaction per batch (the driver
    /// comparison's rusqlite half; the sqlx half is `crates/bench/sqlx-driver`).
    Raw {
        /// The rows file.
        #[arg(long)]
        rows: std::path::PathBuf,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// PostgreSQL: HTTP batch ingest as a ratio to a raw COPY of the same rows (and COPY
    /// against multi-row INSERT).
    PgIngest {
        /// The database.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        url: String,
        /// Events per run.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// PostgreSQL: the same HTTP load through one real server process, then two.
    PgScale {
        /// The database.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        url: String,
        /// Events per run.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
    },
    /// PostgreSQL: latency of filtered list pages of 50 and the entity timeline.
    PgQuery {
        /// The database.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        url: String,
        /// Events to seed.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Requests per query shape.
        #[arg(long, default_value_t = 1_000)]
        requests: usize,
        /// Seed into (and keep) this schema; when it already holds the events, only query.
        #[arg(long)]
        schema: Option<String>,
    },
    /// The audit layer's added latency per request, against the same route without it.
    Layer {
        /// Requests per variant.
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
    },
    /// The asset-service example's throughput with sealtrail down, against up.
    Example {
        /// Requests per run.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Pin the app to core 0 and sealtrail to core 1 (with `taskset`).
        #[arg(long)]
        pin: bool,
    },
    /// Latency of filtered list pages of 50 over HTTP with many stored events.
    Query {
        /// Events to seed.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Requests per query shape.
        #[arg(long, default_value_t = 1_000)]
        requests: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.suite {
            Suite::Ingest {
                events,
                batch,
                clients,
            } => ingest(events, batch, clients).await,
            Suite::Latency { requests, clients } => latency(requests, clients).await,
            Suite::Query { events, requests } => query(events, requests).await,
            Suite::Rows { events, out } => write_rows(events, &out),
            Suite::Verify { events, walks } => verify_walk(events, walks).await,
            Suite::Raw { rows, batch } => raw_from_file(&rows, batch),
            Suite::Layer { requests } => client::layer(requests).await,
            Suite::Example {
                requests,
                clients,
                pin,
            } => client::example(requests, clients, pin).await,
            Suite::PgIngest {
                url,
                events,
                batch,
                clients,
            } => pg::ingest(&url, events, batch, clients).await,
            Suite::PgScale {
                url,
                events,
                batch,
                clients,
            } => pg::scale(&url, events, batch, clients).await,
            Suite::PgQuery {
                url,
                events,
                requests,
                schema,
            } => pg::query(&url, events, requests, schema).await,
        }
    })
}

/// A realistic event of about 1 KB; `i` varies actor, action, target and time.
fn sample_event(i: usize) -> Value {
    let actions = [
        "asset.created",
        "asset.updated",
        "asset.assigned",
        "asset.transferred",
        "user.login",
        "user.logout",
        "document.added",
        "note.added",
    ];
    let category = [
        "create", "update", "update", "update", "auth", "auth", "create", "create",
    ][i % 8];
    let event_type = [
        "CREATED",
        "UPDATED",
        "ASSIGNED",
        "TRANSFERRED",
        "LOGIN",
        "LOGOUT",
        "DOCUMENT_ADDED",
        "NOTE_ADDED",
    ][i % 8];
    json!({
        "action": actions[i % actions.len()],
        "category": category,
        "event_type": event_type,
        "outcome": if i.is_multiple_of(50) { "failure" } else { "success" },
        "actor": {"id": format!("user-{}", i % 1000), "name": format!("User Number {}", i % 1000), "email": format!("user{}@example.com", i % 1000)},
        "target": {"type": "asset", "id": format!("asset-{}", i % 10_000), "name": format!("Laptop {}", i % 10_000)},
        "organization": {"id": format!("org-{}", i % 20), "name": "Example Organisation"},
        "context": {
            "ip": format!("10.{}.{}.{}", i % 200, (i / 200) % 250, i % 250),
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "session_id": format!("sess-{}", i % 5000),
            "correlation_id": format!("corr-{i}"),
            "endpoint": "/api/v1/assets/{id}", "method": "PATCH", "status_code": 200, "duration_ms": 12
        },
        "changes": [
            {"field": "status", "old_value": "in_stock", "new_value": "assigned"},
            {"field": "assignee.id", "old_value": null, "new_value": format!("user-{}", (i + 7) % 1000)},
            {"field": "location.building", "old_value": "HQ", "new_value": "Annex"}
        ],
        "metadata": {"reason": "quarterly reassignment of equipment across departments", "ticket": format!("T-{i}"), "source": "asset-service", "notes": "x".repeat(160)}
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

struct Server {
    base: String,
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_server() -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut config = SqliteConfig::new(dir.path());
    if let Ok(ms) = std::env::var("SEALTRAIL_BATCH_MAX_WAIT_MS") {
        config.batch_max_wait = Duration::from_millis(ms.parse()?);
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config)?);
    serve_store(store, Some(dir)).await
}

/// Serves `store` over HTTP on a free port, with the bench's admin key.
async fn serve_store(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) -> anyhow::Result<Server> {
    bootstrap_admin(store.as_ref(), Some(ADMIN)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, AppState::new(store.clone()), async move {
        let _ = rx.await;
    }));
    Ok(Server {
        base,
        store,
        _dir: dir,
        shutdown,
        task,
    })
}

impl Server {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await??;
        Ok(())
    }
}

/// The rows a raw insert writes: the same columns and bodies the store writes, prepared ahead.
struct RawRow {
    prepared: PreparedEvent,
    body: String,
}

fn raw_rows(n: usize) -> Vec<RawRow> {
    let now = Timestamp::now();
    (0..n)
        .map(|i| {
            let value = sample_event(i);
            let len = value.to_string().len();
            let event =
                parse_event(value, len, "", &Redactor::default(), now).expect("valid sample");
            let prepared = PreparedEvent::new(bench_tenant(), event);
            let stored =
                prepared
                    .event
                    .clone()
                    .into_event(prepared.id, &bench_tenant(), i as u64 + 1, now);
            let body = serde_json::to_string(&stored).expect("json");
            RawRow { prepared, body }
        })
        .collect()
}

/// The columns of one row in the order of the INSERT, as JSON, for the driver comparison.
fn row_json(row: &RawRow, seq: usize) -> Value {
    let e = &row.prepared.event;
    let ctx = e.context.as_ref();
    json!([
        "bench",
        seq,
        row.prepared.id.simple().to_string(),
        0,
        0,
        e.action,
        e.category.as_str(),
        e.event_type,
        e.outcome.as_str(),
        e.actor.id,
        e.target.as_ref().map(|t| &t.target_type),
        e.target.as_ref().map(|t| &t.id),
        e.organization.as_ref().map(|o| &o.id),
        ctx.and_then(|c| c.correlation_id.as_ref()),
        ctx.and_then(|c| c.ip.as_ref()),
        "00".repeat(32),
        "00".repeat(32),
        row.body
    ])
}

fn write_rows(events: usize, out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    for (i, row) in raw_rows(events).iter().enumerate() {
        serde_json::to_writer(&mut file, &row_json(row, i + 1))?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    Ok(())
}

fn raw_from_file(path: &std::path::Path, batch: usize) -> anyhow::Result<()> {
    let rows: Vec<Vec<Value>> = std::fs::read_to_string(path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let mut conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    sealtrail_store_sqlite::schema::prepare_writer(&mut conn)?;
    let to_sql = |v: &Value| -> rusqlite::types::Value {
        match v {
            Value::Null => rusqlite::types::Value::Null,
            Value::Number(n) => rusqlite::types::Value::Integer(n.as_i64().unwrap_or(0)),
            Value::String(s) => rusqlite::types::Value::Text(s.clone()),
            other => rusqlite::types::Value::Text(other.to_string()),
        }
    };
    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(INSERT_SQL)?;
            for row in chunk {
                stmt.execute(rusqlite::params_from_iter(row.iter().map(to_sql)))?;
            }
        }
        tx.commit()?;
    }
    println!(
        "rusqlite: {:.0} rows/s",
        rows.len() as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

const INSERT_SQL: &str = "INSERT INTO events (tenant, seq, id, recorded_at, occurred_at, action, category, event_type, \
     outcome, actor_id, target_type, target_id, organization_id, correlation_id, ip, digest, hash, body) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// The baseline: the same rows straight into SQLite with the store's schema and settings, one
/// prepared statement, one transaction per batch, no HTTP, no validation, no hashing.
fn raw_baseline(rows: &[RawRow], batch: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    sealtrail_store_sqlite::schema::prepare_writer(&mut conn)?;
    // Exploration knob: BENCH_DROP=events_ip,events_correlation measures what indexes cost.
    if let Ok(drop) = std::env::var("BENCH_DROP") {
        for name in drop.split(',').filter(|n| !n.is_empty()) {
            conn.execute_batch(&format!("DROP INDEX {name}"))?;
        }
    }
    let started = Instant::now();
    for (b, chunk) in rows.chunks(batch).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(INSERT_SQL)?;
            for (i, row) in chunk.iter().enumerate() {
                let e = &row.prepared.event;
                let ctx = e.context.as_ref();
                let now = Timestamp::now().micros();
                stmt.execute(params![
                    "bench",
                    (b * batch + i + 1) as i64,
                    row.prepared.id.as_bytes().as_slice(),
                    now,
                    now,
                    e.action,
                    e.category.as_str(),
                    e.event_type,
                    e.outcome.as_str(),
                    e.actor.id,
                    e.target.as_ref().map(|t| t.target_type.as_str()),
                    e.target.as_ref().map(|t| t.id.as_str()),
                    e.organization.as_ref().map(|o| o.id.as_str()),
                    ctx.and_then(|c| c.correlation_id.as_deref()),
                    ctx.and_then(|c| c.ip.as_deref()),
                    row.prepared.digest.as_slice(),
                    row.prepared.digest.as_slice(),
                    row.body,
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

async fn ingest(events: usize, batch: usize, clients: usize) -> anyhow::Result<()> {
    println!(
        "ingest: {events} events of ~{} bytes, batches of {batch}, {clients} HTTP clients",
        sample_event(1).to_string().len()
    );
    let rows = tokio::task::spawn_blocking(move || raw_rows(events)).await?;
    let raw_rate = tokio::task::spawn_blocking(move || raw_baseline(&rows, batch)).await??;
    println!("  raw SQLite baseline : {raw_rate:>10.0} events/s");

    let server = start_server().await?;
    let http = reqwest::Client::new();
    let key = create_key(&http, &server.base).await?;
    let http_rate = http_ingest(
        std::slice::from_ref(&server.base),
        &key,
        events,
        batch,
        clients,
    )
    .await?;
    println!("  HTTP batch ingest   : {http_rate:>10.0} events/s");
    println!(
        "  ratio HTTP / raw    : {:>10.1} %",
        100.0 * http_rate / raw_rate
    );
    server.stop().await
}

/// Sends `events` sample events in batches of `batch` from `clients` concurrent clients, the
/// clients spread over the servers at `bases`; returns events per second.
async fn http_ingest(
    bases: &[String],
    key: &str,
    events: usize,
    batch: usize,
    clients: usize,
) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    // Bodies are serialised before the clock starts: the client's JSON work is not measured.
    let bodies: Vec<Vec<u8>> = (0..events.div_ceil(batch))
        .map(|b| {
            let items: Vec<Value> = (b * batch..((b + 1) * batch).min(events))
                .map(sample_event)
                .collect();
            serde_json::to_vec(&items).expect("json")
        })
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url, key, bodies, next) = (
                http.clone(),
                format!("{}/api/v1/events", bases[c % bases.len()]),
                key.to_owned(),
                bodies.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    let r = http
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    anyhow::ensure!(r.status() == 201, "ingest answered {}", r.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

async fn create_key(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let r: Value = http
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "bench", "scopes": ["ingest", "read"], "name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    Ok(r["token"].as_str().context("no token")?.to_owned())
}

async fn latency(requests: usize, clients: usize) -> anyhow::Result<()> {
    println!(
        "latency: {clients} clients × {requests} single-event requests, each acknowledged after fsync"
    );
    let server = start_server().await?;
    let http = reqwest::Client::new();
    let key = create_key(&http, &server.base).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url, key) = (
                http.clone(),
                format!("{}/api/v1/events", server.base),
                key.clone(),
            );
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(requests);
                for i in 0..requests {
                    let body = serde_json::to_vec(&sample_event(c * requests + i)).expect("json");
                    let t = Instant::now();
                    let r = http
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    anyhow::ensure!(r.status() == 201, "ingest answered {}", r.status());
                    r.bytes().await?;
                    times.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(times)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    println!(
        "  p50 {}  p99 {}  max {}  ({:.0} events/s overall)",
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&all, 1.0)),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    server.stop().await
}

async fn query(events: usize, requests: usize) -> anyhow::Result<()> {
    println!(
        "query: {events} stored events, {requests} requests per shape, pages of 50, over HTTP"
    );
    let server = start_server().await?;
    let http = reqwest::Client::new();
    let key = create_key(&http, &server.base).await?;
    let seed_started = Instant::now();
    let now = Timestamp::now();
    let chunk = 5_000;
    for start in (0..events).step_by(chunk) {
        let end = (start + chunk).min(events);
        let batch =
            tokio::task::spawn_blocking(move || seed_batch(start, end, events, now)).await?;
        server.store.append(batch).await?;
    }
    println!("  seeded in {:.1} s", seed_started.elapsed().as_secs_f64());
    query_shapes(&http, &server.base, &key, requests, now).await?;
    server.stop().await
}

/// Events of tenant `bench` spread over the 30 days before `now`, ready to append.
fn seed_batch(start: usize, end: usize, events: usize, now: Timestamp) -> Vec<PreparedEvent> {
    (start..end)
        .map(|i| {
            let mut v = sample_event(i);
            // Spread events over the last 30 days so time filters have something to cut.
            let at = now.micros() - ((events - i) as i64) * (30 * 86_400_000_000 / events as i64);
            v["occurred_at"] = json!(Timestamp::from_micros(at).to_rfc3339());
            let len = v.to_string().len();
            PreparedEvent::new(
                bench_tenant(),
                parse_event(v, len, "", &Redactor::default(), now).expect("valid"),
            )
        })
        .collect()
}

/// Times every list filter shape and the entity timeline over HTTP: p50 and p95 of pages of 50.
async fn query_shapes(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    requests: usize,
    now: Timestamp,
) -> anyhow::Result<()> {
    let from = Timestamp::from_micros(now.micros() - 7 * 86_400_000_000).to_rfc3339();
    let shapes = [
        ("no filter", "".to_owned()),
        ("actor_id", "actor_id=user-42".to_owned()),
        ("action", "action=asset.transferred".to_owned()),
        (
            "target",
            "target_type=asset&target_id=asset-4242".to_owned(),
        ),
        ("outcome=failure", "outcome=failure".to_owned()),
        (
            "actor + last 7 days",
            format!("actor_id=user-42&from={from}"),
        ),
        ("ip", "ip=10.42.0.42".to_owned()),
        ("order=asc, category", "order=asc&category=auth".to_owned()),
        ("category=delete (none)", "category=delete".to_owned()),
        ("correlation_id", "correlation_id=corr-424242".to_owned()),
    ];
    println!(
        "  {:<22} {:>10} {:>10} {:>8}",
        "filter", "p50", "p95", "items"
    );
    for (name, q) in shapes {
        let url = format!("{base}/api/v1/audit-logs?limit=50&{q}");
        let mut times = Vec::with_capacity(requests);
        let mut items = 0;
        for _ in 0..requests {
            let t = Instant::now();
            let r = http.get(&url).bearer_auth(key).send().await?;
            anyhow::ensure!(r.status() == 200, "{name}: {}", r.status());
            let v: Value = r.json().await?;
            times.push(t.elapsed());
            items = v["items"].as_array().map_or(0, Vec::len);
        }
        times.sort_unstable();
        println!(
            "  {name:<22} {:>10} {:>10} {items:>8}",
            ms(percentile(&times, 0.50)),
            ms(percentile(&times, 0.95))
        );
    }
    let url = format!("{base}/api/v1/entities/asset/asset-4242/history?limit=50");
    let mut times = Vec::new();
    for _ in 0..requests {
        let t = Instant::now();
        let r = http.get(&url).bearer_auth(key).send().await?;
        anyhow::ensure!(r.status() == 200);
        r.bytes().await?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    println!(
        "  {:<22} {:>10} {:>10}",
        "entity history",
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.95))
    );
    Ok(())
}

async fn verify_walk(events: usize, walks: usize) -> anyhow::Result<()> {
    println!("verify: seeding {events} events of ~1 KB, then walking the store");
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&SqliteConfig::new(dir.path()))?;
    let now = Timestamp::now();
    for start in (0..events).step_by(5_000) {
        let batch: Vec<PreparedEvent> = (start..(start + 5_000).min(events))
            .map(|i| {
                let v = sample_event(i);
                let len = v.to_string().len();
                PreparedEvent::new(
                    bench_tenant(),
                    parse_event(v, len, "", &Redactor::default(), now).expect("valid"),
                )
            })
            .collect();
        store.append(batch).await?;
    }
    store.shutdown().await;
    let db = dir.path().join(sealtrail_store_sqlite::DB_FILE);
    // Warm-up rounds, then the measured ones, alternating: the baseline reads every column of
    // every row with the walk's query, chunks and threads and checks nothing, so the ratio says
    // how close the walk comes to the cost of merely reading the store.
    let keys = std::collections::HashMap::new();
    sealtrail_store_sqlite::verify::verify_store(&db, &keys, &mut |_| {})?;
    read_rows(&db, events)?;
    let (mut walked, mut single, mut read) = (Vec::new(), Vec::new(), Vec::new());
    let one_worker = sealtrail_store_sqlite::verify::WalkOptions {
        workers: 1,
        ..Default::default()
    };
    for _ in 0..walks.max(1) {
        let started = Instant::now();
        read_rows(&db, events)?;
        read.push(events as f64 / started.elapsed().as_secs_f64());
        for (options, rates) in [(Default::default(), &mut walked), (one_worker, &mut single)] {
            let started = Instant::now();
            let report = sealtrail_store_sqlite::verify::verify_store_with(
                &db,
                &keys,
                options,
                &mut |_| {},
            )?;
            anyhow::ensure!(
                report.findings.is_empty() && report.events == events as u64,
                "an untouched store must verify: {:?}",
                report.findings.first()
            );
            rates.push(events as f64 / started.elapsed().as_secs_f64());
        }
    }
    for rates in [&mut walked, &mut single, &mut read] {
        rates.sort_by(f64::total_cmp);
    }
    let median = |v: &[f64]| v[v.len() / 2];
    println!(
        "  {} rounds of {events} events; median (best) events/s",
        walked.len()
    );
    println!(
        "  reading the rows only (baseline) {:>9.0} ({:.0})",
        median(&read),
        read[read.len() - 1]
    );
    println!(
        "  verify walk                      {:>9.0} ({:.0}): {:.0} % of the baseline",
        median(&walked),
        walked[walked.len() - 1],
        100.0 * median(&walked) / median(&read)
    );
    println!(
        "  verify walk, one worker          {:>9.0} ({:.0}): all workers are {:.2}x one",
        median(&single),
        single[single.len() - 1],
        median(&walked) / median(&single)
    );
    Ok(())
}

/// The baseline of the verify walk: every column the walk reads, of every row, read with the
/// same query, in the same chunks, on the same number of threads, and nothing checked.
fn read_rows(db: &std::path::Path, events: usize) -> anyhow::Result<()> {
    const CHUNK: i64 = 16_384;
    let chunks = (events as i64 / CHUNK + 1) as usize;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<usize> {
                    let conn = sealtrail_store_sqlite::verify::open_for_verify(db)?;
                    let mut stmt = conn.prepare(
                        "SELECT seq, id, hash, prev_hash, personal, body, entry, personal_values, \
                         recorded_at, occurred_at, action, category, event_type, outcome, actor_id, \
                         target_type, target_id, organization_id, correlation_id, ip \
                         FROM events WHERE tenant = 'bench' AND seq BETWEEN ?1 AND ?2 ORDER BY seq, rowid",
                    )?;
                    let mut bytes = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as i64;
                        if i >= chunks as i64 {
                            return Ok(bytes);
                        }
                        let mut rows = stmt.query([i * CHUNK + 1, (i + 1) * CHUNK])?;
                        while let Some(r) = rows.next()? {
                            for c in 0..20 {
                                bytes += match r.get_ref(c)? {
                                    rusqlite::types::ValueRef::Blob(b)
                                    | rusqlite::types::ValueRef::Text(b) => b.len(),
                                    _ => 1,
                                };
                            }
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .sum::<anyhow::Result<usize>>()
    })?;
    anyhow::ensure!(total > events, "the baseline read the rows");
    Ok(())
}
