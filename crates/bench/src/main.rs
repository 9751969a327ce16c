//! `bench`: the figures of BENCHMARKS.md, each against a baseline measured in the same run.
//!
//! ```text
//! cargo build --release -p sealtrail -p sealtrail-bench -p asset-service
//! ./target/release/bench ingest      # SQLite: HTTP batch ingest, the curve to --events, vs raw inserts of the same rows
//! ./target/release/bench latency     # SQLite: single durable events, 16 clients
//! ./target/release/bench query       # SQLite: list pages at 1M events, idle and while ingest runs
//! ./target/release/bench verify      # the `sealtrail verify` walk vs reading the same rows
//! ./target/release/bench export      # SQLite: export rows/s and memory at 100k, 1M, 10M events
//! ./target/release/bench metrics     # GET /metrics with 1 000 tenants vs GET /healthz
//! ./target/release/bench auth        # what API-key and JWT authentication add per request
//! ./target/release/bench retention   # SQLite: archive + remove 1M expired events; then the walk
//! ./target/release/bench anonymize   # erase a person with 10 000 events among 1M, ingest going on
//! ./target/release/bench pg-retention # PostgreSQL: a monthly partition drop by size; whole removals
//! ./target/release/bench pg-ingest   # PostgreSQL: HTTP batch ingest curve vs a raw COPY of the same rows
//! ./target/release/bench pg-scale    # PostgreSQL: one server process vs two
//! ./target/release/bench pg-query    # PostgreSQL: list pages at --events (10M), idle and while ingest runs
//! ./target/release/bench layer       # the audit layer's added latency per request
//! ./target/release/bench example     # asset-service throughput, sealtrail down vs up
//! ```
//!
//! Every server is a real `sealtrail serve` process (the release binary beside this one); the
//! load comes from this process over HTTP on loopback, on the same two cores.

#![allow(clippy::print_stdout)] // A benchmark's output is its report.

mod anonymize;
mod auth;
mod client;
mod export;
mod load;
mod pg;
mod retention;
mod sqlite;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sealtrail_model::Timestamp;
use serde_json::Value;

use crate::load::{EventIds, EventSource, Pools};

/// The server's allocator, so that what this process runs of the store (retention) runs as
/// the server runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADMIN: &str = "st_benchbenchbenchbenchbenchbenchbenchbench000";

#[derive(Parser)]
#[command(about = "sealtrail benchmarks")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

/// How an ingest run is loaded.
#[derive(clap::Args, Clone)]
struct IngestArgs {
    /// Events in all.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per step of the curve: each step is timed on its own.
    #[arg(long, default_value_t = 250_000)]
    step: u64,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    batch: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Who chooses event ids.
    #[arg(long, value_enum, default_value_t = EventIds::Server)]
    event_ids: EventIds,
    /// Skip the raw baseline.
    #[arg(long)]
    no_baseline: bool,
}

#[derive(Subcommand)]
enum Suite {
    /// SQLite: HTTP batch ingest from empty to `--events`, step by step, each step timed until
    /// its last event is found by a filtered list and until it is indexed; against a raw
    /// insert of the same sealed rows into a table with only the log's own keys.
    Ingest(IngestArgs),
    /// The cost of derived data: HTTP batch ingest into this build and into a baseline build
    /// (e.g. one from before full-text), step by step in turn, in one run.
    Derived {
        /// The baseline's `sealtrail` binary.
        #[arg(long)]
        baseline: std::path::PathBuf,
        /// Run on PostgreSQL at this URL (each server in a schema of its own) instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
        #[command(flatten)]
        load: IngestArgs,
    },
    /// SQLite: single-event durable ingest latency.
    Latency {
        /// Requests per client.
        #[arg(long, default_value_t = 1_000)]
        requests: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Rounds; each prints its own line.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// SQLite: latency of list pages of 50 and the entity timeline over HTTP, with the store
    /// idle and while batch ingest runs at full speed beside the queries.
    Query {
        /// Events to seed.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Requests per query shape.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// HTTP clients ingesting beside the queries.
        #[arg(long, default_value_t = 4)]
        feed_clients: usize,
    },
    /// Speed of the `sealtrail verify` store walk on SQLite, against reading the same rows.
    Verify {
        /// Events to seed.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Measured walks after the warm-up one; the median and the best are printed.
        #[arg(long, default_value_t = 5)]
        walks: usize,
    },
    /// SQLite: exports (HTTP CSV, NDJSON, filtered NDJSON; `sealtrail export` CSV and NDJSON)
    /// at each store size, with rows/s and peak memory.
    Export {
        /// Store sizes at which the exports run, ascending.
        #[arg(long, value_delimiter = ',', default_values_t = [100_000u64, 1_000_000, 10_000_000])]
        steps: Vec<u64>,
        /// PostgreSQL instead of SQLite (a schema of its own, dropped after).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// What authentication (API key, JWT HS256/RS256/ES256) adds to a request, against the
    /// same router's route without it.
    Auth {
        /// Measured requests per credential kind.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Look keys up in PostgreSQL (a schema of its own, dropped after) instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// `GET /metrics` with many tenants (each with events and a checkpoint), against
    /// `GET /healthz`.
    Metrics {
        /// Tenants.
        #[arg(long, default_value_t = 1000)]
        tenants: usize,
        /// Sequential scrapes.
        #[arg(long, default_value_t = 500)]
        requests: usize,
    },
    /// Writes rows for the SQLite driver comparison (`driver-compare.sh`) to an NDJSON file.
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
    /// PostgreSQL: HTTP batch ingest from empty to `--events`, step by step, against a raw
    /// binary COPY of the same rows into the same tables.
    PgIngest {
        /// The database.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        url: String,
        #[command(flatten)]
        load: IngestArgs,
    },
    /// PostgreSQL: the same HTTP load through one real server process, then two.
    PgScale {
        /// The database.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        url: String,
        /// Events per run.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per batch.
        #[arg(long, default_value_t = 500)]
        batch: u64,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
    },
    /// PostgreSQL: latency of list pages and the entity timeline, idle and during ingest.
    PgQuery {
        /// The database.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        url: String,
        /// Events to seed.
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Requests per query shape.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// Seed into (and keep) this schema; when it already holds the events, only query.
        #[arg(long)]
        schema: Option<String>,
        /// HTTP clients ingesting beside the queries (0: idle only).
        #[arg(long, default_value_t = 4)]
        feed_clients: usize,
        /// Only the query shapes whose name holds this.
        #[arg(long)]
        only: Option<String>,
    },
    /// SQLite: retention of `--events` expired events (100 days old) among one in eleven more
    /// a day old: a dry run, the run (archive, derived data, log), then the verify walk.
    Retention {
        /// Expired events.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// Anonymising a person with `--events / --every` events among `--events` (SQLite, or
    /// PostgreSQL with `--database-url`), while clients keep ingesting.
    Anonymize {
        /// Events in the store.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// One event in this many is the person's.
        #[arg(long, default_value_t = 100)]
        every: u64,
        /// PostgreSQL instead of SQLite (a schema of its own, dropped after).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// PostgreSQL: the partition drop on its own at each of `--sizes`, then whole removals
    /// through the store of a month of `--store-sizes` events.
    PgRetention {
        /// The database.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        url: String,
        /// Partition sizes for the drop alone.
        #[arg(long, value_delimiter = ',', default_values_t = [100_000u64, 1_000_000, 10_000_000])]
        sizes: Vec<u64>,
        /// Month sizes removed through the store.
        #[arg(long, value_delimiter = ',', default_values_t = [100_000u64, 1_000_000])]
        store_sizes: Vec<u64>,
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.suite {
            Suite::Ingest(args) => sqlite::ingest(&args).await,
            Suite::Derived {
                baseline,
                database_url,
                load,
            } => derived_cost(&baseline, database_url.as_deref(), &load).await,
            Suite::Latency {
                requests,
                clients,
                rounds,
            } => sqlite::latency(requests, clients, rounds).await,
            Suite::Query {
                events,
                requests,
                feed_clients,
            } => sqlite::query(events, requests, feed_clients).await,
            Suite::Verify { events, walks } => sqlite::verify_walk(events, walks).await,
            Suite::Export {
                steps,
                database_url,
            } => export::export(&steps, database_url.as_deref()).await,
            Suite::Metrics { tenants, requests } => export::scrape(tenants, requests).await,
            Suite::Auth {
                requests,
                database_url,
            } => auth::auth(requests, database_url.as_deref()).await,
            Suite::Rows { events, out } => sqlite::write_rows(events, &out),
            Suite::Raw { rows, batch } => sqlite::raw_from_file(&rows, batch),
            Suite::PgIngest { url, load } => pg::ingest(&url, &load).await,
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
                feed_clients,
                only,
            } => {
                pg::query(
                    &url,
                    events,
                    requests,
                    schema,
                    feed_clients,
                    only.as_deref(),
                )
                .await
            }
            Suite::Retention { events } => retention::sqlite(events).await,
            Suite::Anonymize {
                events,
                every,
                database_url,
            } => {
                let dir = tempfile::tempdir()?;
                let schema = format!("bench_anonymize_{}", std::process::id());
                let store: std::sync::Arc<dyn sealtrail_store::Store> = match &database_url {
                    None => std::sync::Arc::new(sealtrail_store_sqlite::SqliteStore::open(
                        &sealtrail_store_sqlite::SqliteConfig::new(dir.path()),
                    )?),
                    Some(url) => {
                        let mut config = sealtrail_store_postgres::PgConfig::new(url.clone());
                        config.schema = schema.clone();
                        std::sync::Arc::new(sealtrail_store_postgres::PgStore::open(&config).await?)
                    }
                };
                let outcome = anonymize::run(store, events, every).await;
                if let Some(url) = &database_url {
                    pg::drop_schema(url, &schema).await?;
                }
                outcome
            }
            Suite::PgRetention {
                url,
                sizes,
                store_sizes,
            } => retention::pg(&url, &sizes, &store_sizes).await,
            Suite::Layer { requests } => client::layer(requests).await,
            Suite::Example {
                requests,
                clients,
                pin,
            } => client::example(requests, clients, pin).await,
        }
    })
}

/// The seed of every pool and template: runs are repeatable.
const SEED: u64 = 7;

/// The p-th percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The curve of an ingest run: one line per step.
struct Step {
    /// Events stored when the step ended.
    stored: u64,
    /// Events of the step per second, timed until its last event was found by a filtered
    /// list.
    found_rate: f64,
    /// The same, timed until the indexer had caught up.
    indexed_rate: f64,
    /// Requests answered 503 and sent again.
    refused: u64,
    /// The raw baseline over the same rows, events per second.
    raw_rate: Option<f64>,
    /// CPU seconds the server process used (every thread) until the step was indexed.
    server_cpu: Option<f64>,
    /// CPU seconds every `postgres` process used over the same span, when counted.
    database_cpu: Option<f64>,
}

fn print_step_header() {
    println!(
        "  {:>10} {:>14} {:>14} {:>8} {:>12} {:>8} {:>9} {:>9}",
        "stored", "found ev/s", "indexed ev/s", "503s", "raw ev/s", "ratio", "RSS MiB", "disk GiB"
    );
}

fn print_step(step: &Step, rss: Option<f64>, disk: f64) {
    let raw = step.raw_rate.map_or("-".to_owned(), |r| format!("{r:.0}"));
    let ratio = step.raw_rate.map_or("-".to_owned(), |r| {
        format!("{:.1} %", 100.0 * step.found_rate / r)
    });
    println!(
        "  {:>10} {:>14.0} {:>14.0} {:>8} {:>12} {:>8} {:>9} {:>9.2}",
        step.stored,
        step.found_rate,
        step.indexed_rate,
        step.refused,
        raw,
        ratio,
        rss.map_or("-".to_owned(), |r| format!("{r:.0}")),
        disk
    );
}

/// Sends one step of the curve and times it: until its last event is found by a filtered
/// list, then until the indexer has caught up.
async fn ingest_step(
    http: &reqwest::Client,
    server: &load::Server,
    source: &std::sync::Arc<EventSource>,
    range: std::ops::Range<u64>,
    args: &IngestArgs,
    count_database: bool,
) -> anyhow::Result<Step> {
    let n = (range.end - range.start) as f64;
    let last = range.end - 1;
    let cpu_before = server.cpu_seconds();
    let database_before = count_database.then(load::postgres_cpu_seconds).flatten();
    let started = Instant::now();
    let sent = load::ingest(
        http,
        std::slice::from_ref(&server.base),
        &server.key,
        source,
        range.clone(),
        args.batch,
        args.clients,
    )
    .await?;
    load::find(http, &server.base, &server.key, source, last).await?;
    let found = started.elapsed();
    server.wait_indexed(http).await?;
    let indexed = started.elapsed();
    let server_cpu = server
        .cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let database_cpu = count_database
        .then(load::postgres_cpu_seconds)
        .flatten()
        .zip(database_before)
        .map(|(after, before)| after - before);
    let _ = sent.acked;
    Ok(Step {
        stored: range.end,
        found_rate: n / found.as_secs_f64(),
        indexed_rate: n / indexed.as_secs_f64(),
        refused: sent.refused,
        raw_rate: None,
        server_cpu,
        database_cpu,
    })
}

/// `bench derived`: the same steps of the same events into this build and into a baseline
/// build, in turn, each timed until its last event is found and until it is indexed.
async fn derived_cost(
    baseline: &std::path::Path,
    database_url: Option<&str>,
    args: &IngestArgs,
) -> anyhow::Result<()> {
    let pools = Pools::new(SEED);
    let source = std::sync::Arc::new(EventSource::new(&pools, 20_000, args.event_ids, SEED));
    let dir = tempfile::tempdir()?;
    let backend = |name: &str| match database_url {
        Some(url) => load::Backend::Postgres {
            url: url.to_owned(),
            schema: format!("bench_derived_{name}_{}", std::process::id()),
        },
        None => load::Backend::Sqlite,
    };
    let this_dir = dir.path().join("this");
    let base_dir = dir.path().join("baseline");
    let postgres = database_url.is_some();
    let this = load::Server::start(&backend("this"), &this_dir, &[]).await?;
    let base = load::Server::start_binary(baseline, &backend("base"), &base_dir, &[]).await?;
    println!(
        "derived ({}): {} events of ~{} bytes in steps of {}, batches of {}, {} HTTP clients; \
         this build against {}",
        if database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        args.events,
        source.mean_bytes(),
        args.step,
        args.batch,
        args.clients,
        baseline.display()
    );
    println!(
        "  {:>10} {:>12} {:>12} {:>12} {:>12} {:>8} {:>8} {:>9} {:>9} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>11}",
        "stored",
        "this found",
        "this idx",
        "base found",
        "base idx",
        "found %",
        "idx %",
        "this GiB",
        "base GiB",
        "this ms/1k",
        "base ms/1k",
        "cpu %",
        "this db/1k",
        "base db/1k",
        "all %",
        "503s"
    );
    let http = reqwest::Client::new();
    // The indexers' time by stage over the whole run, from each server's `/metrics`.
    let indexer_before = (
        this.indexer_time(&http).await?,
        base.indexer_time(&http).await?,
    );
    let mut at = 0;
    // Each step's found %, for the run's summary.
    let mut ratios = Vec::new();
    while at < args.events {
        let end = (at + args.step).min(args.events);
        let a = ingest_step(&http, &this, &source, at..end, args, postgres).await?;
        let b = ingest_step(&http, &base, &source, at..end, args, postgres).await?;
        ratios.push(100.0 * a.found_rate / b.found_rate);
        let disk = |d: &std::path::Path| {
            if database_url.is_some() {
                "-".to_owned()
            } else {
                format!("{:.2}", load::disk_gib(d))
            }
        };
        // The server's CPU per thousand events of the step (every thread, until indexed):
        // steadier than rates on a machine whose speed drifts, and what the words cost.
        let per_k = |cpu: Option<f64>| cpu.map(|c| 1000.0 * 1000.0 * c / (end - at) as f64);
        let (a_cpu, b_cpu) = (per_k(a.server_cpu), per_k(b.server_cpu));
        // PostgreSQL's CPU over the same span (every `postgres` process), and the two together:
        // on two cores the database's work for the derived data competes with ingest too.
        let (a_db, b_db) = (per_k(a.database_cpu), per_k(b.database_cpu));
        let all = |cpu: Option<f64>, db: Option<f64>| cpu.zip(db).map(|(c, d)| c + d);
        let (a_all, b_all) = (all(a_cpu, a_db), all(b_cpu, b_db));
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        println!(
            "  {:>10} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>7.1}% {:>7.1}% {:>9} {:>9} {:>11} {:>11} {:>6}% {:>11} {:>11} {:>6}% {:>11}",
            end,
            a.found_rate,
            a.indexed_rate,
            b.found_rate,
            b.indexed_rate,
            100.0 * a.found_rate / b.found_rate,
            100.0 * a.indexed_rate / b.indexed_rate,
            disk(&this_dir),
            disk(&base_dir),
            show(a_cpu),
            show(b_cpu),
            show(a_cpu.zip(b_cpu).map(|(a, b)| 100.0 * a / b)),
            show(a_db),
            show(b_db),
            show(a_all.zip(b_all).map(|(a, b)| 100.0 * a / b)),
            // Requests refused while the indexer was too far behind (each waits out its
            // `Retry-After`), this build / the baseline.
            format!("{} / {}", a.refused, b.refused),
        );
        at = end;
    }
    print_ratio_summary(&ratios);
    let indexer_after = (
        this.indexer_time(&http).await?,
        base.indexer_time(&http).await?,
    );
    // Nothing indexed yet at the start is nothing counted.
    print_indexer_time(
        indexer_after
            .0
            .map(|a| a - indexer_before.0.unwrap_or_default()),
        indexer_after
            .1
            .map(|a| a - indexer_before.1.unwrap_or_default()),
    );
    this.stop().await?;
    base.stop().await?;
    // Two schemas of a million events each: not left behind in the shared cluster.
    if let Some(url) = database_url {
        for name in ["this", "base"] {
            if let load::Backend::Postgres { schema, .. } = backend(name) {
                pg::drop_schema(url, &schema).await?;
            }
        }
    }
    Ok(())
}

/// One line over a run's steps: the mean of their found %, its standard error, the lowest
/// and highest, and how many reached the 90 % the issue's target names. One step's ratio
/// moves by several points from run to run on this machine; the mean over many steps is
/// what to compare.
fn print_ratio_summary(ratios: &[f64]) {
    if ratios.is_empty() {
        return;
    }
    let n = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / n;
    let error = if ratios.len() > 1 {
        let variance = ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (variance / n).sqrt()
    } else {
        f64::NAN
    };
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let reached = ratios.iter().filter(|&&r| r >= 90.0).count();
    println!(
        "  found %: mean {mean:.1} (standard error {error:.1}), {low:.1}–{high:.1}, \
         {reached} of {} steps at 90 % or more",
        ratios.len()
    );
}

/// The indexers' wall time per event in each stage of their passes, this build's, the
/// baseline's and the difference: where the derived data's cost lies. A baseline that does
/// not export the stages leaves its rows out.
fn print_indexer_time(this: Option<load::IndexerTime>, base: Option<load::IndexerTime>) {
    use sealtrail_store::metrics::INDEX_STAGES;
    let Some(this) = this else {
        return;
    };
    print!("  indexer, µs per event {:>10}", "");
    for stage in INDEX_STAGES {
        print!(" {stage:>8}");
    }
    println!(" {:>8}", "all");
    let row = |name: &str, micros: [f64; INDEX_STAGES.len()]| {
        print!("  {name:<33}");
        for m in micros {
            print!(" {m:>8.2}");
        }
        println!(" {:>8.2}", micros.iter().sum::<f64>());
    };
    row("this build", this.micros_per_event());
    if let Some(base) = base {
        row("baseline", base.micros_per_event());
        let (a, b) = (this.micros_per_event(), base.micros_per_event());
        row("this − baseline", std::array::from_fn(|i| a[i] - b[i]));
    }
}

/// A list query shape of the query benches: its name and URL path with query.
fn query_shapes(
    pools: &Pools,
    source: &EventSource,
    events: u64,
    now: Timestamp,
) -> Vec<(String, String)> {
    const DAY: i64 = 86_400_000_000;
    let from = Timestamp::from_micros(now.micros() - 7 * DAY).to_rfc3339();
    // A week whose edges fall inside minutes (37 s and 11 s past one), and one whole UTC day.
    let odd_from = Timestamp::from_micros(now.micros() - 9 * DAY - 1_037_000_000).to_rfc3339();
    let odd_to = Timestamp::from_micros(now.micros() - 2 * DAY - 2_011_000_000).to_rfc3339();
    let day = now.micros().div_euclid(DAY) - 4;
    let (day_from, day_to) = (
        Timestamp::from_micros(day * DAY).to_rfc3339(),
        Timestamp::from_micros((day + 1) * DAY).to_rfc3339(),
    );
    // 28 days from noon to noon inside the events' 30: twelve hours of events at each end,
    // the most hours a window's days hold.
    let noon = (now.micros() - DAY / 2).div_euclid(DAY) * DAY - DAY / 2;
    let (noon_from, noon_to) = (
        Timestamp::from_micros(noon - 28 * DAY).to_rfc3339(),
        Timestamp::from_micros(noon).to_rfc3339(),
    );
    let (busy_actor, rare_actor) = (&pools.actors[0].0, &pools.actors[1_999].0);
    let (ttype, tid, _) = &pools.targets[0];
    let list = |q: String| format!("/api/v1/audit-logs?limit=50&{q}");
    vec![
        ("no filter".into(), list(String::new())),
        (
            "actor_id (busiest)".into(),
            list(format!("actor_id={busy_actor}")),
        ),
        (
            "actor_id (rare)".into(),
            list(format!("actor_id={rare_actor}")),
        ),
        ("action".into(), list("action=invoice.exported".into())),
        (
            "target_type + target_id".into(),
            list(format!("target_type={ttype}&target_id={tid}")),
        ),
        ("outcome=failure".into(), list("outcome=failure".into())),
        (
            "actor_id + last 7 days".into(),
            list(format!("actor_id={busy_actor}&from={from}")),
        ),
        ("ip".into(), list(format!("ip={}", pools.ips[42]))),
        (
            "organization_id".into(),
            list(format!("organization_id={}", pools.orgs[3].0)),
        ),
        (
            "order=asc + category".into(),
            list("order=asc&category=auth".into()),
        ),
        ("action (no match)".into(), list("action=none.such".into())),
        // Full-text: `routine` is in every event, `retired` in one of twelve, `1999` in the
        // rare actor's name and a few tickets.
        ("q common word".into(), list("q=routine".into())),
        ("q medium word".into(), list("q=retired".into())),
        ("q rare word".into(), list("q=1999".into())),
        ("q common + rare".into(), list("q=routine+1999".into())),
        (
            "q four words".into(),
            list("q=routine+change+asset+register".into()),
        ),
        ("q no match".into(), list("q=zzyzx".into())),
        (
            "q rare + actor_id".into(),
            list(format!("q=1999&actor_id={rare_actor}")),
        ),
        (
            "correlation_id".into(),
            list(format!("correlation_id={}", source.correlation(events / 2))),
        ),
        (
            "entity timeline".into(),
            format!("/api/v1/entities/{ttype}/{tid}/history?limit=50"),
        ),
        // Statistics over the events' 30 days: rollups, edges and the tail.
        (
            "stats 30 days (default)".into(),
            "/api/v1/audit-logs/statistics".into(),
        ),
        (
            "stats 30 days, hours".into(),
            "/api/v1/audit-logs/statistics?bucket=hour".into(),
        ),
        (
            "stats 28 days, noon to noon".into(),
            format!("/api/v1/audit-logs/statistics?from={noon_from}&to={noon_to}"),
        ),
        (
            "stats 7 days, odd edges".into(),
            format!("/api/v1/audit-logs/statistics?from={odd_from}&to={odd_to}&top=50"),
        ),
        (
            "stats one whole day".into(),
            format!("/api/v1/audit-logs/statistics?from={day_from}&to={day_to}"),
        ),
        // No store work at all: what the machine's load alone adds to a request.
        ("/healthz (baseline)".into(), "/healthz".into()),
    ]
}

/// Times every query shape: p50 and p95 of `requests` requests each, one at a time.
async fn time_queries(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    shapes: &[(String, String)],
    requests: usize,
) -> anyhow::Result<Vec<(Duration, Duration, usize)>> {
    let mut out = Vec::new();
    for (name, path) in shapes {
        let url = format!("{base}{path}");
        let mut times = Vec::with_capacity(requests);
        let mut items = 0;
        for _ in 0..requests {
            let t = Instant::now();
            let r = http.get(&url).bearer_auth(key).send().await?;
            anyhow::ensure!(r.status() == 200, "{name}: {}", r.status());
            let bytes = r.bytes().await?;
            times.push(t.elapsed());
            items = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["items"].as_array().map(Vec::len))
                .unwrap_or(0);
        }
        times.sort_unstable();
        out.push((percentile(&times, 0.50), percentile(&times, 0.95), items));
    }
    Ok(out)
}

/// Prints the query table: idle, and (when measured) during ingest.
fn print_queries(
    shapes: &[(String, String)],
    idle: &[(Duration, Duration, usize)],
    busy: Option<&[(Duration, Duration, usize)]>,
) {
    println!(
        "  {:<26} {:>10} {:>10} {:>6}   {:>14} {:>14}",
        "query", "idle p50", "idle p95", "items", "ingesting p50", "ingesting p95"
    );
    for (i, (name, _)) in shapes.iter().enumerate() {
        let (p50, p95, items) = idle[i];
        let during = busy.map_or(String::new(), |b| {
            format!("{:>14} {:>14}", ms(b[i].0), ms(b[i].1))
        });
        println!(
            "  {name:<26} {:>10} {:>10} {items:>6}   {during}",
            ms(p50),
            ms(p95)
        );
    }
}

/// Seeds `events` events over HTTP (batches of 500, 4 clients) with times spread over 30
/// days, waits until they are indexed, then times the query shapes idle and while batch
/// ingest runs beside them.
async fn query_bench(
    server: &load::Server,
    have: u64,
    events: u64,
    requests: usize,
    feed_clients: usize,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let pools = Pools::new(SEED);
    let now = Timestamp::now();
    let source = std::sync::Arc::new(
        EventSource::new(&pools, 20_000, EventIds::Server, SEED)
            .spread_over(&pools, now, 30, events),
    );
    if have < events {
        let started = Instant::now();
        let step = 500_000;
        let mut at = have;
        while at < events {
            let end = (at + step).min(events);
            load::ingest(
                &http,
                std::slice::from_ref(&server.base),
                &server.key,
                &source,
                at..end,
                500,
                4,
            )
            .await?;
            at = end;
            eprintln!("  … {at} events ({:.0} s)", started.elapsed().as_secs_f64());
        }
        server.wait_indexed(&http).await?;
        println!(
            "  seeded {} events in {:.1} s (indexed)",
            events - have,
            started.elapsed().as_secs_f64()
        );
    }
    // A store reused from an earlier run may still be rebuilding its derived data.
    server.wait_indexed(&http).await?;
    let mut shapes = query_shapes(&pools, &source, events, now);
    if let Some(only) = only {
        shapes.retain(|(name, _)| name.contains(only));
    }
    // Warm-up: one pass, not counted.
    time_queries(&http, &server.base, &server.key, &shapes, 5).await?;
    let idle = time_queries(&http, &server.base, &server.key, &shapes, requests).await?;
    if feed_clients == 0 {
        print_queries(&shapes, &idle, None);
        return Ok(());
    }

    // The same queries while 4 clients ingest batches of 500 as fast as they can, from a
    // separate pool of events (times at `now`).
    let extra = std::sync::Arc::new(EventSource::new(&pools, 20_000, EventIds::Server, SEED + 1));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feed_clients = feed_clients.max(1);
    let feeder = {
        let (http, base, key, extra, stop) = (
            http.clone(),
            server.base.clone(),
            server.key.clone(),
            extra.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                load::ingest(
                    &http,
                    std::slice::from_ref(&base),
                    &key,
                    &extra,
                    sent..sent + 20_000,
                    500,
                    feed_clients,
                )
                .await?;
                sent += 20_000;
            }
            Ok::<_, anyhow::Error>(sent as f64 / started.elapsed().as_secs_f64())
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = time_queries(&http, &server.base, &server.key, &shapes, requests).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rate = feeder.await??;
    let busy = busy?;
    print_queries(&shapes, &idle, Some(&busy));
    println!(
        "  ingest beside the queries: {rate:.0} events/s (batches of 500, {feed_clients} clients)"
    );
    Ok(())
}
