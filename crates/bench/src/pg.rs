//! The PostgreSQL figures of BENCHMARKS.md: batch ingest against a raw COPY (and multi-row
//! INSERT) of the same rows, one server process against two, and list latency at 1M and 10M
//! events. Each run works in fresh schemas of the database at `--url`, dropped at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::pin_mut;
use sealtrail_model::Timestamp;
use sealtrail_store::Store;
use sealtrail_store_postgres::{
    EVENT_COLUMNS, EVENT_TYPES, LEAF_COLUMNS, LEAF_TYPES, PgConfig, PgStore,
};
use time::OffsetDateTime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::{
    ADMIN, RawRow, create_key, http_ingest, query_shapes, raw_rows, seed_batch, serve_store,
};

/// A schema made for this run.
fn schema_name(what: &str) -> String {
    format!("bench_{what}_{}", &Uuid::new_v4().simple().to_string()[..8])
}

async fn fresh(url: &str, what: &str) -> anyhow::Result<String> {
    let schema = schema_name(what);
    sealtrail_store_postgres::migrate(url, &schema).await?;
    Ok(schema)
}

async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let pool = sealtrail_store_postgres::pool(url, schema, 1)?;
    pool.get()
        .await?
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    Ok(())
}

/// Flushes the server's dirty pages (`CHECKPOINT`, which needs a superuser), so a measured
/// phase does not pay for the previous one's writes.
async fn settle(url: &str, schema: &str) -> anyhow::Result<()> {
    let pool = sealtrail_store_postgres::pool(url, schema, 1)?;
    pool.get().await?.batch_execute("CHECKPOINT").await?;
    Ok(())
}

/// One raw row's columns, as the store writes them (seal columns filled with stand-ins).
struct Columns {
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
    metadata: Option<serde_json::Value>,
    body: String,
}

fn columns(rows: &[RawRow]) -> Vec<Columns> {
    let now = Timestamp::now().to_datetime();
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let e = &row.prepared.event;
            let ctx = e.context.as_ref();
            Columns {
                seq: i as i64 + 1,
                id: row.prepared.id,
                recorded_at: now,
                occurred_at: now,
                action: e.action.clone(),
                category: e.category.as_str(),
                event_type: e.event_type.clone(),
                outcome: e.outcome.as_str(),
                actor_id: e.actor.id.clone(),
                target_type: e.target.as_ref().map(|t| t.target_type.clone()),
                target_id: e.target.as_ref().map(|t| t.id.clone()),
                organization_id: e.organization.as_ref().map(|o| o.id.clone()),
                correlation_id: ctx.and_then(|c| c.correlation_id.clone()),
                ip: ctx.and_then(|c| c.ip.clone()),
                hash: row.prepared.digest.to_vec(),
                metadata: e.metadata.clone(),
                body: row.body.clone(),
            }
        })
        .collect()
}

/// The raw baseline: each batch in one transaction, `events` and `leaves` rows by binary COPY.
async fn raw_copy(url: &str, schema: &str, rows: &[Columns], batch: usize) -> anyhow::Result<f64> {
    let pool = sealtrail_store_postgres::pool(url, schema, 1)?;
    let mut client = pool.get().await?;
    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        let tx = client.transaction().await?;
        let sink = tx
            .copy_in(&format!("COPY events ({EVENT_COLUMNS}) FROM STDIN BINARY"))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &EVENT_TYPES);
        pin_mut!(writer);
        for r in chunk {
            let row: [&(dyn ToSql + Sync); 20] = [
                &"bench",
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
                &r.hash,
                &r.hash,
                &r.metadata,
                &r.body,
            ];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        let sink = tx
            .copy_in(&format!("COPY leaves ({LEAF_COLUMNS}) FROM STDIN BINARY"))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &LEAF_TYPES);
        pin_mut!(writer);
        for r in chunk {
            writer
                .as_mut()
                .write(&[
                    &"bench",
                    &r.seq,
                    &r.id,
                    &r.recorded_at,
                    &r.occurred_at,
                    &r.hash,
                    &r.hash,
                ])
                .await?;
        }
        writer.finish().await?;
        tx.commit().await?;
    }
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

/// The same rows by one multi-row INSERT per table and batch (`INSERT … SELECT unnest(…)`).
async fn raw_insert(
    url: &str,
    schema: &str,
    rows: &[Columns],
    batch: usize,
) -> anyhow::Result<f64> {
    let pool = sealtrail_store_postgres::pool(url, schema, 1)?;
    let mut client = pool.get().await?;
    let insert = format!(
        "INSERT INTO events ({EVENT_COLUMNS}) SELECT 'bench', * FROM unnest($1::bigint[], $2::uuid[], \
         $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
         $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::bytea[], $15::bytea[], \
         $15::bytea[], $16::jsonb[], $17::text[])"
    );
    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        let col = |f: fn(&Columns) -> Option<String>| chunk.iter().map(f).collect::<Vec<_>>();
        let seqs: Vec<i64> = chunk.iter().map(|r| r.seq).collect();
        let ids: Vec<Uuid> = chunk.iter().map(|r| r.id).collect();
        let recorded: Vec<OffsetDateTime> = chunk.iter().map(|r| r.recorded_at).collect();
        let occurred: Vec<OffsetDateTime> = chunk.iter().map(|r| r.occurred_at).collect();
        let actions = col(|r| Some(r.action.clone()));
        let categories = col(|r| Some(r.category.to_owned()));
        let types = col(|r| r.event_type.clone());
        let outcomes = col(|r| Some(r.outcome.to_owned()));
        let actors = col(|r| Some(r.actor_id.clone()));
        let target_types = col(|r| r.target_type.clone());
        let target_ids = col(|r| r.target_id.clone());
        let orgs = col(|r| r.organization_id.clone());
        let corrs = col(|r| r.correlation_id.clone());
        let ips = col(|r| r.ip.clone());
        let hashes: Vec<&[u8]> = chunk.iter().map(|r| r.hash.as_slice()).collect();
        let metadata: Vec<Option<serde_json::Value>> =
            chunk.iter().map(|r| r.metadata.clone()).collect();
        let bodies = col(|r| Some(r.body.clone()));
        let tx = client.transaction().await?;
        tx.execute(
            &insert,
            &[
                &seqs,
                &ids,
                &recorded,
                &occurred,
                &actions,
                &categories,
                &types,
                &outcomes,
                &actors,
                &target_types,
                &target_ids,
                &orgs,
                &corrs,
                &ips,
                &hashes,
                &metadata,
                &bodies,
            ],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO leaves ({LEAF_COLUMNS}) SELECT 'bench', * FROM unnest($1::bigint[], $2::uuid[], \
                 $3::timestamptz[], $4::timestamptz[], $5::bytea[], $5::bytea[])"
            ),
            &[&seqs, &ids, &recorded, &occurred, &hashes],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

/// `bench pg-ingest`.
pub(crate) async fn ingest(
    url: &str,
    events: usize,
    batch: usize,
    clients: usize,
) -> anyhow::Result<()> {
    println!(
        "pg-ingest: {events} events of ~{} bytes, batches of {batch}, {clients} HTTP clients, {url}",
        crate::sample_event(1).to_string().len()
    );
    let rows = tokio::task::spawn_blocking(move || columns(&raw_rows(events))).await?;
    // Two rounds in alternating order, each phase after a CHECKPOINT, so neither method is
    // always the one that meets the server's periodic checkpoint or the other's leftovers.
    let (mut copy_rates, mut insert_rates) = (Vec::new(), Vec::new());
    for round in 0..2 {
        for copy in [round == 0, round == 1] {
            let schema = fresh(url, if copy { "copy" } else { "insert" }).await?;
            settle(url, &schema).await?;
            let rate = if copy {
                raw_copy(url, &schema, &rows, batch).await?
            } else {
                raw_insert(url, &schema, &rows, batch).await?
            };
            drop_schema(url, &schema).await?;
            println!(
                "  round {} raw {:<20}: {rate:>10.0} events/s",
                round + 1,
                if copy { "COPY" } else { "multi-row INSERT" }
            );
            if copy {
                &mut copy_rates
            } else {
                &mut insert_rates
            }
            .push(rate);
        }
    }
    drop(rows);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let copy_rate = mean(&copy_rates);
    println!("  raw COPY baseline (mean)   : {copy_rate:>10.0} events/s");
    println!(
        "  raw multi-row INSERT (mean): {:>10.0} events/s ({:.0} % of COPY)",
        mean(&insert_rates),
        100.0 * mean(&insert_rates) / copy_rate
    );

    let schema = schema_name("http");
    let store = PgStore::open(&PgConfig {
        schema: schema.clone(),
        ..PgConfig::new(url)
    })
    .await?;
    settle(url, &schema).await?;
    let server = serve_store(Arc::new(store), None).await?;
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
    server.stop().await?;
    drop_schema(url, &schema).await?;
    println!("  HTTP batch ingest (sealed) : {http_rate:>10.0} events/s");
    println!(
        "  ratio HTTP / raw COPY      : {:>10.1} %",
        100.0 * http_rate / copy_rate
    );
    Ok(())
}

/// A real `sealtrail serve` process on PostgreSQL.
struct Process {
    child: tokio::process::Child,
    base: String,
}

async fn spawn_server(url: &str, schema: &str, dir: &std::path::Path) -> anyhow::Result<Process> {
    let mut cmd = tokio::process::Command::new(crate::client::sibling("sealtrail")?);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        url,
        "--database-schema",
        schema,
        "--data-dir",
    ])
    .arg(dir.join(Uuid::new_v4().simple().to_string()))
    .env("SEALTRAIL_ADMIN_TOKEN", ADMIN)
    .env("SEALTRAIL_LOG", "warn");
    let (child, base) = crate::client::spawn(cmd).await?;
    Ok(Process { child, base })
}

impl Process {
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok(())
    }
}

/// `bench pg-scale`: the same load through one server process, then through two.
pub(crate) async fn scale(
    url: &str,
    events: usize,
    batch: usize,
    clients: usize,
) -> anyhow::Result<()> {
    println!(
        "pg-scale: {events} events, batches of {batch}, {clients} HTTP clients, real sealtrail processes on {url}"
    );
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::new();
    let mut rates = Vec::new();
    for processes in [1usize, 2] {
        let schema = fresh(url, &format!("scale{processes}")).await?;
        let mut servers = Vec::new();
        for _ in 0..processes {
            servers.push(spawn_server(url, &schema, dir.path()).await?);
        }
        let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
        let key = create_key(&http, &bases[0]).await?;
        settle(url, &schema).await?;
        let rate = http_ingest(&bases, &key, events, batch, clients).await?;
        for s in servers {
            s.stop().await?;
        }
        drop_schema(url, &schema).await?;
        println!(
            "  {processes} process{}: {rate:>10.0} events/s",
            if processes == 1 { "  " } else { "es" }
        );
        rates.push(rate);
    }
    println!("  two / one        : {:>10.2} ×", rates[1] / rates[0]);
    Ok(())
}

/// `bench pg-query`: seeds `events` events (or reuses `--schema` when it holds them already),
/// then times list pages and the entity timeline over HTTP.
pub(crate) async fn query(
    url: &str,
    events: usize,
    requests: usize,
    schema: Option<String>,
) -> anyhow::Result<()> {
    println!(
        "pg-query: {events} stored events, {requests} requests per shape, pages of 50, over HTTP, {url}"
    );
    let keep = schema.is_some();
    let schema = schema.unwrap_or_else(|| schema_name("query"));
    let store = Arc::new(
        PgStore::open(&PgConfig {
            schema: schema.clone(),
            ..PgConfig::new(url)
        })
        .await?,
    );
    let have = store
        .tree_heads()
        .await?
        .into_iter()
        .find(|h| h.tenant == "bench")
        .map_or(0, |h| h.size as usize);
    let now = Timestamp::now();
    if have < events {
        anyhow::ensure!(
            have == 0,
            "schema {schema} holds {have} events, not 0 or {events}"
        );
        let seed_started = Instant::now();
        let chunk = 5_000;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Two loaders keep the writer busy: one builds its next batch while the other's commits.
        let loaders: Vec<_> = (0..2)
            .map(|_| {
                let (store, next) = (store.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let start = next.fetch_add(chunk, std::sync::atomic::Ordering::Relaxed);
                        if start >= events {
                            return Ok::<_, anyhow::Error>(());
                        }
                        let end = (start + chunk).min(events);
                        let batch = tokio::task::spawn_blocking(move || {
                            seed_batch(start, end, events, now)
                        })
                        .await?;
                        store.append(batch).await?;
                        if (end / chunk).is_multiple_of(200) {
                            eprintln!("  … {end} events");
                        }
                    }
                })
            })
            .collect();
        for l in loaders {
            l.await??;
        }
        let seconds = seed_started.elapsed().as_secs_f64();
        println!(
            "  seeded in {seconds:.1} s ({:.0} events/s)",
            events as f64 / seconds
        );
    } else {
        println!("  reusing schema {schema} with {have} events");
    }
    let pool = sealtrail_store_postgres::pool(url, &schema, 1)?;
    pool.get().await?.batch_execute("ANALYZE").await?;
    let server = serve_store(store, None).await?;
    let http = reqwest::Client::new();
    let key = create_key(&http, &server.base).await?;
    query_shapes(&http, &server.base, &key, requests, now).await?;
    server.stop().await?;
    if keep {
        println!("  kept schema {schema}");
    } else {
        drop_schema(url, &schema).await?;
    }
    Ok(())
}
