//! The SQLite figures of BENCHMARKS.md: the ingest curve against raw inserts of the same sealed
//! rows, single-event latency, list queries at 1M events, the verify walk, and the driver
//! comparison's rusqlite half.

use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, params};
use sealtrail_model::{Redactor, Timestamp, parse_event};
use sealtrail_store::PreparedEvent;
use serde_json::{Value, json};

use crate::load::{Backend, EventIds, EventSource, Pools, Server, disk_gib};
use crate::{IngestArgs, SEED, ingest_step, ms, percentile, print_step, print_step_header};

/// One row of the `log` table, as the store wrote it.
struct LogRow {
    tenant: String,
    seq: i64,
    id: Vec<u8>,
    digest: Vec<u8>,
    hash: Vec<u8>,
    entry: Option<Vec<u8>>,
    values: Option<Vec<u8>>,
}

/// Reads positions `seqs` of tenant `bench` from a store file (while its server runs: WAL
/// readers do not block the writer).
fn read_log(
    db: &std::path::Path,
    seqs: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<Vec<LogRow>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare(
        "SELECT tenant, seq, id, digest, hash, entry, personal_values FROM log \
         WHERE tenant = 'bench' AND seq BETWEEN ?1 AND ?2 ORDER BY seq",
    )?;
    let rows = stmt
        .query_map(params![*seqs.start() as i64, *seqs.end() as i64], |r| {
            Ok(LogRow {
                tenant: r.get(0)?,
                seq: r.get(1)?,
                id: r.get(2)?,
                digest: r.get(3)?,
                hash: r.get(4)?,
                entry: r.get(5)?,
                values: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(
        rows.len() as u64 == seqs.end() - seqs.start() + 1,
        "the store holds {} of the step's rows",
        rows.len()
    );
    Ok(rows)
}

/// The baseline: the same sealed rows inserted straight into the `log` table of a database
/// with the store's schema and settings (`prepare_writer`) — the log's own keys, `(tenant,
/// seq)` and the unique `id`, and nothing else — one prepared statement, one transaction per
/// batch; no HTTP, no parsing, no sealing, no Merkle nodes, no derived data.
fn raw_insert(conn: &mut Connection, rows: &[LogRow], batch: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO log (tenant, seq, id, digest, hash, entry, personal_values) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in chunk {
                stmt.execute(params![
                    r.tenant, r.seq, r.id, r.digest, r.hash, r.entry, r.values
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

/// `bench ingest`.
pub(crate) async fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    let pools = Pools::new(SEED);
    let source = Arc::new(EventSource::new(&pools, 20_000, args.event_ids, SEED));
    println!(
        "ingest (SQLite): {} events of ~{} bytes in steps of {}, batches of {}, {} HTTP clients, ids: {:?}",
        args.events,
        source.mean_bytes(),
        args.step,
        args.batch,
        args.clients,
        args.event_ids
    );
    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("store");
    let server = Server::start(&Backend::Sqlite, &store_dir, &[]).await?;
    let db = store_dir.join(sealtrail_store_sqlite::DB_FILE);
    let mut raw = Connection::open(dir.path().join("raw.db"))?;
    sealtrail_store_sqlite::schema::prepare_writer(&mut raw)?;
    let http = reqwest::Client::new();
    print_step_header();
    let mut at = 0;
    while at < args.events {
        let end = (at + args.step).min(args.events);
        let mut step = ingest_step(&http, &server, &source, at..end, args, false).await?;
        if !args.no_baseline {
            let (db, batch) = (db.clone(), args.batch as usize);
            let (back, rate) = tokio::task::spawn_blocking(move || {
                let rows = read_log(&db, at + 1..=end)?;
                let rate = raw_insert(&mut raw, &rows, batch)?;
                Ok::<_, anyhow::Error>((raw, rate))
            })
            .await??;
            raw = back;
            step.raw_rate = Some(rate);
        }
        print_step(&step, server.peak_rss_mib(), disk_gib(&store_dir));
        at = end;
    }
    server.stop().await
}

/// `bench latency`.
pub(crate) async fn latency(requests: usize, clients: usize, rounds: usize) -> anyhow::Result<()> {
    let pools = Pools::new(SEED);
    let source = Arc::new(EventSource::new(&pools, 20_000, EventIds::Server, SEED));
    println!(
        "latency (SQLite): {clients} clients × {requests} single-event requests per round, each acknowledged after fsync"
    );
    let dir = tempfile::tempdir()?;
    let server = Server::start(&Backend::Sqlite, dir.path(), &[]).await?;
    let http = reqwest::Client::new();
    crate::load::singles(&http, &server.base, &server.key, &source, 50, clients).await?;
    for round in 1..=rounds {
        let (all, elapsed) =
            crate::load::singles(&http, &server.base, &server.key, &source, requests, clients)
                .await?;
        println!(
            "  round {round}: p50 {}  p99 {}  max {}  ({:.0} events/s)",
            ms(percentile(&all, 0.50)),
            ms(percentile(&all, 0.99)),
            ms(percentile(&all, 1.0)),
            all.len() as f64 / elapsed.as_secs_f64()
        );
    }
    server.stop().await
}

/// `bench query`.
pub(crate) async fn query(events: u64, requests: usize, feed_clients: usize) -> anyhow::Result<()> {
    println!(
        "query (SQLite): {events} stored events, {requests} requests per shape, pages of 50, over HTTP"
    );
    let dir = tempfile::tempdir()?;
    let server = Server::start(&Backend::Sqlite, dir.path(), &[]).await?;
    crate::query_bench(&server, 0, events, requests, feed_clients, None).await?;
    server.stop().await
}

/// `bench verify`.
pub(crate) async fn verify_walk(events: u64, walks: usize) -> anyhow::Result<()> {
    println!("verify (SQLite): seeding {events} events of ~1 KB over HTTP, then walking the store");
    let dir = tempfile::tempdir()?;
    let server = Server::start(&Backend::Sqlite, dir.path(), &[]).await?;
    let pools = Pools::new(SEED);
    let source = Arc::new(EventSource::new(&pools, 20_000, EventIds::Server, SEED));
    let http = reqwest::Client::new();
    crate::load::ingest(
        &http,
        std::slice::from_ref(&server.base),
        &server.key,
        &source,
        0..events,
        500,
        4,
    )
    .await?;
    // The checkpoints the server signed are checked too, with its published keys.
    let published: Value = http
        .get(format!("{}/api/v1/integrity/public-keys", server.base))
        .send()
        .await?
        .json()
        .await?;
    let mut keys = std::collections::HashMap::new();
    for k in published["keys"].as_array().into_iter().flatten() {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(k["public_key"].as_str().unwrap_or_default())?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| anyhow::anyhow!("a public key is 32 bytes"))?;
        keys.insert(
            k["key_id"].as_str().unwrap_or_default().to_owned(),
            ed25519_dalek::VerifyingKey::from_bytes(&raw)?,
        );
    }
    server.stop().await?;
    let db = dir.path().join(sealtrail_store_sqlite::DB_FILE);
    tokio::task::spawn_blocking(move || walks_on(&db, events, walks, &keys)).await?
}

fn walks_on(
    db: &std::path::Path,
    events: u64,
    walks: usize,
    keys: &std::collections::HashMap<String, ed25519_dalek::VerifyingKey>,
) -> anyhow::Result<()> {
    use sealtrail_store_sqlite::verify::{WalkOptions, verify_store_with};
    // Warm-up of both, then alternating measured rounds: the baseline reads every column the
    // walk reads, of every row, with the walk's query, chunks and threads, and checks
    // nothing; the ratio says how close the walk comes to merely reading the store.
    verify_store_with(db, keys, WalkOptions::default(), &mut |_| {})?;
    read_rows(db, events)?;
    let one_worker = WalkOptions {
        workers: 1,
        ..Default::default()
    };
    let (mut walked, mut single, mut read) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..walks.max(1) {
        let started = Instant::now();
        read_rows(db, events)?;
        read.push(events as f64 / started.elapsed().as_secs_f64());
        for (options, rates) in [
            (WalkOptions::default(), &mut walked),
            (one_worker, &mut single),
        ] {
            let started = Instant::now();
            let report = verify_store_with(db, keys, options, &mut |_| {})?;
            // The server's own events (the key's creation) are in the log too.
            anyhow::ensure!(
                report.findings.is_empty() && report.events >= events,
                "an untouched store must verify: {} events, {:?}",
                report.events,
                report.findings.first()
            );
            rates.push(report.events as f64 / started.elapsed().as_secs_f64());
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
/// walk's query, in its chunks, on as many threads, and nothing checked.
fn read_rows(db: &std::path::Path, events: u64) -> anyhow::Result<()> {
    let chunk = sealtrail_store_sqlite::verify::WalkOptions::default().chunk as i64;
    let chunks = events as i64 / chunk + 1;
    let next = std::sync::atomic::AtomicI64::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<usize> {
                    let conn = sealtrail_store_sqlite::verify::open_for_verify(db)?;
                    let mut stmt = conn.prepare(
                        "SELECT seq, id, hash, entry, personal_values, legacy_body, legacy_personal, \
                         legacy_prev FROM log WHERE tenant = 'bench' AND seq BETWEEN ?1 AND ?2 ORDER BY seq, id",
                    )?;
                    let mut bytes = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= chunks {
                            return Ok(bytes);
                        }
                        let mut rows = stmt.query([i * chunk + 1, (i + 1) * chunk])?;
                        while let Some(r) = rows.next()? {
                            for c in 0..8 {
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
    anyhow::ensure!(total as u64 > events, "the baseline read the rows");
    Ok(())
}

/// The driver comparison's schema: the first migration's wide `events` table with its eleven
/// indexes, which is what issue #2 compared the drivers on (the sqlx half uses the same file).
const DRIVER_SCHEMA: &str =
    include_str!("../../store-sqlite/migrations/0001_events_links_keys.sql");

const DRIVER_INSERT: &str = "INSERT INTO events (tenant, seq, id, recorded_at, occurred_at, action, category, event_type, \
     outcome, actor_id, target_type, target_id, organization_id, correlation_id, ip, digest, hash, body) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// `bench rows`: the driver comparison's rows, one JSON array of column values per line.
pub(crate) fn write_rows(events: usize, out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let pools = Pools::new(SEED);
    let source = EventSource::new(&pools, 20_000, EventIds::Server, SEED);
    let tenant = sealtrail_store::Tenant::parse("bench").expect("a valid tenant name");
    let now = Timestamp::now();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    for i in 0..events {
        let bytes = source.single(i as u64);
        let value: Value = serde_json::from_slice(&bytes)?;
        let event = parse_event(value, bytes.len(), "", &Redactor::default(), now)
            .map_err(|e| anyhow::anyhow!("invalid sample: {e:?}"))?;
        let prepared = PreparedEvent::new(tenant.clone(), event);
        let e = &prepared.event;
        let ctx = e.context.as_ref();
        let body = serde_json::to_string(&prepared.event.clone().into_event(
            prepared.id,
            &tenant,
            i as u64 + 1,
            now,
        ))?;
        let row = json!([
            "bench",
            i + 1,
            prepared.id.simple().to_string(),
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
            body
        ]);
        serde_json::to_writer(&mut file, &row)?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    Ok(())
}

/// `bench raw`: the rusqlite half of the driver comparison, with the sqlx half's settings.
pub(crate) fn raw_from_file(path: &std::path::Path, batch: usize) -> anyhow::Result<()> {
    let rows: Vec<Vec<Value>> = std::fs::read_to_string(path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let mut conn = Connection::open(dir.path().join("raw.db"))?;
    conn.pragma_update(None, "page_size", 16_384)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.execute_batch(DRIVER_SCHEMA)?;
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
            let mut stmt = tx.prepare_cached(DRIVER_INSERT)?;
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
