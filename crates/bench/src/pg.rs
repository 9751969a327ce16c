//! The PostgreSQL figures of BENCHMARKS.md: the ingest curve against a raw binary COPY of the
//! same rows, one server process against two, and list latency at 10M events. Each run works
//! in fresh schemas of the database at `--url`, dropped at the end (unless `--schema` keeps one).

use std::sync::Arc;

use futures::pin_mut;
use sealtrail_store_postgres::{EVENT_COLUMNS, LEAF_COLUMNS};
use time::OffsetDateTime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::load::{Backend, EventSource, Pools, Server};
use crate::{IngestArgs, SEED, ingest_step, print_step, print_step_header};

/// A schema made for this run.
fn schema_name(what: &str) -> String {
    format!("bench_{what}_{}", &Uuid::new_v4().simple().to_string()[..8])
}

async fn client(url: &str, schema: &str) -> anyhow::Result<deadpool_postgres::Object> {
    Ok(sealtrail_store_postgres::pool(url, schema, 1)?
        .get()
        .await?)
}

/// Drops a bench's schema and everything in it.
pub(crate) async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    client(url, schema)
        .await?
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await?;
    Ok(())
}

/// The bytes of every table and index of `schema`, in GiB.
async fn schema_gib(url: &str, schema: &str) -> anyhow::Result<f64> {
    let row = client(url, schema)
        .await?
        .query_one(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::float8 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
            &[&schema],
        )
        .await?;
    Ok(row.get::<_, f64>(0) / (1u64 << 30) as f64)
}

/// Flushes the server's dirty pages, so a measured phase does not pay for the previous one's.
async fn checkpoint(url: &str, schema: &str) -> anyhow::Result<()> {
    client(url, schema)
        .await?
        .batch_execute("CHECKPOINT")
        .await?;
    Ok(())
}

/// One event's rows, as the store wrote them: `events` and `leaves`.
struct Rows {
    seq: i64,
    id: Uuid,
    recorded_at: OffsetDateTime,
    entry: Option<Vec<u8>>,
    values: Option<Vec<u8>>,
    digest: Vec<u8>,
    hash: Vec<u8>,
}

async fn read_rows(url: &str, schema: &str, lo: u64, hi: u64) -> anyhow::Result<Vec<Rows>> {
    let rows = client(url, schema)
        .await?
        .query(
            "SELECT l.seq, l.id, l.recorded_at, e.entry, e.personal_values, l.digest, l.hash \
             FROM leaves l JOIN events e ON e.tenant = l.tenant AND e.seq = l.seq AND e.recorded_at = l.recorded_at \
             WHERE l.tenant = 'bench' AND l.seq BETWEEN $1 AND $2 ORDER BY l.seq",
            &[&(lo as i64), &(hi as i64)],
        )
        .await?;
    anyhow::ensure!(
        rows.len() as u64 == hi - lo + 1,
        "the store holds {} of the step's rows",
        rows.len()
    );
    Ok(rows
        .iter()
        .map(|r| Rows {
            seq: r.get(0),
            id: r.get(1),
            recorded_at: r.get(2),
            entry: r.get(3),
            values: r.get(4),
            digest: r.get(5),
            hash: r.get(6),
        })
        .collect())
}

const TYPES: [Type; 6] = [
    Type::TEXT,
    Type::INT8,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
    Type::BYTEA,
];

/// The baseline: the same `events` and `leaves` rows by binary COPY into a schema migrated like
/// the store's, one transaction per batch; no HTTP, parsing, sealing, nodes or derived data.
async fn raw_copy(url: &str, schema: &str, rows: &[Rows], batch: usize) -> anyhow::Result<f64> {
    let mut client = client(url, schema).await?;
    let started = std::time::Instant::now();
    for chunk in rows.chunks(batch) {
        let tx = client.transaction().await?;
        let sink = tx
            .copy_in(&format!("COPY events ({EVENT_COLUMNS}) FROM STDIN BINARY"))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &TYPES);
        pin_mut!(writer);
        for r in chunk {
            let row: [&(dyn ToSql + Sync); 6] =
                [&"bench", &r.seq, &r.id, &r.recorded_at, &r.entry, &r.values];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        let sink = tx
            .copy_in(&format!("COPY leaves ({LEAF_COLUMNS}) FROM STDIN BINARY"))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &TYPES);
        pin_mut!(writer);
        for r in chunk {
            let row: [&(dyn ToSql + Sync); 6] =
                [&"bench", &r.seq, &r.id, &r.recorded_at, &r.digest, &r.hash];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        tx.commit().await?;
    }
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

/// `bench pg-ingest`.
pub(crate) async fn ingest(url: &str, args: &IngestArgs) -> anyhow::Result<()> {
    let pools = Pools::new(SEED);
    let source = Arc::new(EventSource::new(&pools, 20_000, args.event_ids, SEED));
    println!(
        "pg-ingest: {} events of ~{} bytes in steps of {}, batches of {}, {} HTTP clients, ids: {:?}, {url}",
        args.events,
        source.mean_bytes(),
        args.step,
        args.batch,
        args.clients,
        args.event_ids
    );
    let (schema, raw) = (schema_name("http"), schema_name("raw"));
    sealtrail_store_postgres::migrate(url, &raw).await?;
    let dir = tempfile::tempdir()?;
    let backend = Backend::Postgres {
        url: url.to_owned(),
        schema: schema.clone(),
    };
    let outcome = async {
        let server = Server::start(&backend, dir.path(), &[]).await?;
        checkpoint(url, &schema).await?;
        let http = reqwest::Client::new();
        print_step_header();
        let mut at = 0;
        while at < args.events {
            let end = (at + args.step).min(args.events);
            let mut step = ingest_step(&http, &server, &source, at..end, args, false).await?;
            if !args.no_baseline {
                let rows = read_rows(url, &schema, at + 1, end).await?;
                checkpoint(url, &raw).await?;
                step.raw_rate = Some(raw_copy(url, &raw, &rows, args.batch as usize).await?);
                checkpoint(url, &schema).await?;
            }
            print_step(
                &step,
                server.peak_rss_mib(),
                schema_gib(url, &schema).await?,
            );
            at = end;
        }
        server.stop().await
    }
    .await;
    drop_schema(url, &schema).await?;
    drop_schema(url, &raw).await?;
    outcome
}

/// `bench pg-scale`: the same load through one server process, then through two.
pub(crate) async fn scale(
    url: &str,
    events: u64,
    batch: u64,
    clients: usize,
) -> anyhow::Result<()> {
    println!(
        "pg-scale: {events} events, batches of {batch}, {clients} HTTP clients, real sealtrail processes on {url}"
    );
    let pools = Pools::new(SEED);
    let source = Arc::new(EventSource::new(
        &pools,
        20_000,
        crate::load::EventIds::Server,
        SEED,
    ));
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::new();
    let mut rates = Vec::new();
    for processes in [1usize, 2] {
        let schema = schema_name(&format!("scale{processes}"));
        sealtrail_store_postgres::migrate(url, &schema).await?;
        let backend = Backend::Postgres {
            url: url.to_owned(),
            schema: schema.clone(),
        };
        let mut servers = Vec::new();
        for p in 0..processes {
            servers.push(Server::start(&backend, &dir.path().join(p.to_string()), &[]).await?);
        }
        let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
        checkpoint(url, &schema).await?;
        let sent = crate::load::ingest(
            &http,
            &bases,
            &servers[0].key,
            &source,
            0..events,
            batch,
            clients,
        )
        .await?;
        for s in &servers {
            s.wait_indexed(&http).await?;
        }
        for s in servers {
            s.stop().await?;
        }
        drop_schema(url, &schema).await?;
        let rate = events as f64 / sent.acked.as_secs_f64();
        println!(
            "  {processes} process{}: {rate:>10.0} events/s ({} answered 503)",
            if processes == 1 { "  " } else { "es" },
            sent.refused
        );
        rates.push(rate);
    }
    println!("  two / one        : {:>10.2} ×", rates[1] / rates[0]);
    Ok(())
}

/// `bench pg-query`: seeds `events` events (or reuses `--schema` when it holds them already),
/// then times list pages and the entity timeline over HTTP, idle and during ingest.
pub(crate) async fn query(
    url: &str,
    events: u64,
    requests: usize,
    schema: Option<String>,
    feed_clients: usize,
    only: Option<&str>,
) -> anyhow::Result<()> {
    println!(
        "pg-query: {events} stored events, {requests} requests per shape, pages of 50, over HTTP, {url}"
    );
    let keep = schema.is_some();
    let schema = schema.unwrap_or_else(|| schema_name("query"));
    sealtrail_store_postgres::migrate(url, &schema).await?;
    let have = client(url, &schema)
        .await?
        .query_opt("SELECT size FROM tenant_logs WHERE tenant = 'bench'", &[])
        .await?
        .map_or(0, |r| r.get::<_, i64>(0) as u64);
    anyhow::ensure!(
        have == 0 || have >= events,
        "schema {schema} holds {have} events, not 0 or at least {events}"
    );
    if have > 0 {
        println!("  reusing schema {schema} with {have} events");
    }
    let dir = tempfile::tempdir()?;
    let backend = Backend::Postgres {
        url: url.to_owned(),
        schema: schema.clone(),
    };
    let server = Server::start(&backend, dir.path(), &[]).await?;
    let outcome = crate::query_bench(&server, have, events, requests, feed_clients, only).await;
    server.stop().await?;
    println!("  {:.1} GiB in the schema", schema_gib(url, &schema).await?);
    if keep {
        println!("  kept schema {schema}");
    } else {
        drop_schema(url, &schema).await?;
    }
    outcome
}
