//! `bench export`: export speed and memory as the store grows. At each size the same
//! exports run over HTTP (CSV, NDJSON, and a filtered NDJSON export with its Merkle nodes),
//! downloaded by this process, and through `sealtrail export` as a separate process, whose
//! peak resident memory is its own: flat memory shows as the same peak at 100k and at 10M.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::load::{Backend, EventIds, EventSource, Pools, Server};

/// The action the filtered export keeps (about one event in twelve).
const FILTERED_ACTION: &str = "asset.created";

/// `bench export`, on SQLite or, given `database_url`, on PostgreSQL.
pub(crate) async fn export(steps: &[u64], database_url: Option<&str>) -> anyhow::Result<()> {
    let last = steps.iter().copied().max().unwrap_or(0);
    println!(
        "export ({}): events of ~1 KB, sizes {steps:?}; rows/s = rows / wall time from request to last byte",
        if database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let dir = tempfile::tempdir()?;
    // BENCH_EXPORT_DIR keeps the store (to profile an export of it afterwards).
    let kept = std::env::var_os("BENCH_EXPORT_DIR").map(std::path::PathBuf::from);
    let data = kept.clone().unwrap_or_else(|| dir.path().to_owned());
    let backend = match database_url {
        Some(url) => Backend::Postgres {
            url: url.to_owned(),
            // BENCH_EXPORT_SCHEMA names the schema and keeps it, as BENCH_EXPORT_DIR keeps a
            // SQLite store.
            schema: std::env::var("BENCH_EXPORT_SCHEMA")
                .unwrap_or_else(|_| format!("bench_export_{}", std::process::id())),
        },
        None => Backend::Sqlite,
    };
    let server = Server::start(&backend, &data, &[]).await?;
    let pools = Pools::new(crate::SEED);
    let source = Arc::new(EventSource::new(
        &pools,
        20_000,
        EventIds::Server,
        crate::SEED,
    ));
    let http = reqwest::Client::new();
    let mut stored = 0;
    println!(
        "{:>10}  {:<26} {:>10} {:>12} {:>10}  peak RSS",
        "events", "export", "rows", "rows/s", "MB/s"
    );
    for &size in steps {
        crate::load::ingest(
            &http,
            std::slice::from_ref(&server.base),
            &server.key,
            &source,
            stored..size,
            500,
            4,
        )
        .await?;
        stored = size;
        server.wait_indexed(&http).await?;
        for (name, query) in [
            ("HTTP csv", "format=csv".to_owned()),
            ("HTTP ndjson", "format=ndjson".to_owned()),
            (
                "HTTP ndjson, one action",
                format!("format=ndjson&action={FILTERED_ACTION}"),
            ),
        ] {
            let (rows, bytes, seconds, rss) = over_http(&http, &server, &query).await?;
            println!(
                "{size:>10}  {name:<26} {rows:>10} {:>12.0} {:>10.1}  server heap +{rss:.0} MiB",
                rows as f64 / seconds,
                bytes as f64 / seconds / 1e6
            );
        }
        for (name, args) in [
            ("CLI csv", vec!["--format", "csv"]),
            ("CLI ndjson", vec!["--format", "ndjson"]),
        ] {
            let (rows, bytes, seconds, (anon, file)) = cli(&data, &backend, &args).await?;
            println!(
                "{size:>10}  {name:<26} {rows:>10} {:>12.0} {:>10.1}  process heap {anon:.0} MiB, mapped file {file:.0} MiB",
                rows as f64 / seconds,
                bytes as f64 / seconds / 1e6
            );
        }
    }
    anyhow::ensure!(stored == last, "every step ran");
    server.stop().await?;
    if let Backend::Postgres { url, schema } = &backend
        && std::env::var_os("BENCH_EXPORT_SCHEMA").is_none()
    {
        crate::pg::drop_schema(url, schema).await?;
    }
    Ok(())
}

/// One HTTP export downloaded and counted: rows (event lines), bytes, seconds, and how far the
/// server's anonymous resident memory (its heap) rose above where it was when the export
/// began.
async fn over_http(
    http: &reqwest::Client,
    server: &Server,
    query: &str,
) -> anyhow::Result<(u64, u64, f64, f64)> {
    let pid = server
        .pid()
        .ok_or_else(|| anyhow::anyhow!("no server pid"))?;
    let before = rss_mib(pid, "RssAnon:").unwrap_or(0.0);
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let now = rss_mib(pid, "RssAnon:").unwrap_or(0.0);
                peak.fetch_max(now.to_bits(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let response = http
        .get(format!("{}/api/v1/audit-logs/export?{query}", server.base))
        .bearer_auth(&server.key)
        .send()
        .await?
        .error_for_status()?;
    let csv = query.contains("format=csv");
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    // CSV: a header row; NDJSON: a header, the checkpoint, and for a filtered export its node
    // lines (counted as rows here would flatter it, so count events exactly below).
    let rows = if csv {
        lines.saturating_sub(1)
    } else if query.contains("action=") {
        count_events(http, server, query).await?
    } else {
        lines.saturating_sub(2)
    };
    let peak = f64::from_bits(peak.load(Ordering::Relaxed));
    Ok((rows, bytes, seconds, (peak - before).max(0.0)))
}

/// The rows of the last export, as its `audit.exported` event recorded them.
async fn count_events(
    http: &reqwest::Client,
    server: &Server,
    _query: &str,
) -> anyhow::Result<u64> {
    let page: serde_json::Value = http
        .get(format!(
            "{}/api/v1/audit-logs?action=audit.exported&limit=1",
            server.base
        ))
        .bearer_auth(&server.key)
        .send()
        .await?
        .json()
        .await?;
    page["items"][0]["metadata"]["rows"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no audit.exported event"))
}

/// `sealtrail export` of tenant `bench` into a file: rows, bytes, seconds and the process's
/// peak resident memory, anonymous (heap) and file-backed (the store's memory-mapped pages,
/// which the kernel may take back), sampled until it exits.
async fn cli(
    data_dir: &std::path::Path,
    backend: &Backend,
    args: &[&str],
) -> anyhow::Result<(u64, u64, f64, (f64, f64))> {
    let out = data_dir.join("bench-export.out");
    let started = Instant::now();
    let mut command = tokio::process::Command::new(crate::client::sibling("sealtrail")?);
    command.arg("export");
    match backend {
        Backend::Sqlite => command.arg("--data-dir").arg(data_dir),
        Backend::Postgres { url, schema } => {
            command.args(["--database-url", url, "--database-schema", schema])
        }
    };
    let mut child = command
        .args(["--tenant", "bench", "--out"])
        .arg(&out)
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let mut peak = (0f64, 0f64);
    let status = loop {
        if let (Some(anon), Some(file)) = (rss_mib(pid, "RssAnon:"), rss_mib(pid, "RssFile:")) {
            peak = (peak.0.max(anon), peak.1.max(file));
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "sealtrail export failed");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        tokio::io::AsyncReadExt::read_to_string(&mut e, &mut stderr).await?;
    }
    // "sealtrail export: N events of tenant …"
    let rows = stderr
        .split("sealtrail export: ")
        .last()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let bytes = std::fs::metadata(&out)?.len();
    std::fs::remove_file(&out)?;
    Ok((rows, bytes, seconds, peak))
}

/// A `/proc/<pid>/status` memory line, in MiB.
fn rss_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `bench metrics`: `GET /metrics` with `tenants` tenants that each have events and a
/// checkpoint, against `GET /healthz` in the same run.
pub(crate) async fn scrape(tenants: usize, requests: usize) -> anyhow::Result<()> {
    println!(
        "metrics: {tenants} tenants with events and checkpoints, {requests} sequential scrapes"
    );
    let dir = tempfile::tempdir()?;
    let server = Server::start(
        &Backend::Sqlite,
        dir.path(),
        &["--checkpoint-every", "100ms"],
    )
    .await?;
    let http = reqwest::Client::new();
    // One event per tenant through the bootstrap admin key (bound to every tenant), with a
    // few requests so each tenant has ingest counters and HTTP series to show.
    for chunk in (0..tenants).collect::<Vec<_>>().chunks(200) {
        let batch: Vec<serde_json::Value> = chunk
            .iter()
            .map(|t| {
                serde_json::json!({"tenant": format!("tenant-{t:04}"), "action": "bench.metrics",
                                   "actor": {"id": "u"}})
            })
            .collect();
        http.post(format!("{}/api/v1/events", server.base))
            .bearer_auth(crate::ADMIN)
            .json(&batch)
            .send()
            .await?
            .error_for_status()?;
    }
    // Until the checkpoint gauges of every tenant are there.
    let deadline = Instant::now() + Duration::from_secs(120);
    let series = loop {
        let text = http
            .get(format!("{}/metrics", server.base))
            .send()
            .await?
            .text()
            .await?;
        let n = text
            .lines()
            .filter(|l| l.starts_with("sealtrail_checkpoint_age_seconds{"))
            .count();
        if n >= tenants {
            break text.lines().filter(|l| !l.starts_with('#')).count();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {n} tenants have checkpoints"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let times = |path: &'static str| {
        let (http, base) = (http.clone(), server.base.clone());
        async move {
            let mut all = Vec::with_capacity(requests);
            let mut bytes = 0;
            for _ in 0..requests {
                let started = Instant::now();
                let body = http
                    .get(format!("{base}{path}"))
                    .send()
                    .await?
                    .bytes()
                    .await?;
                all.push(started.elapsed());
                bytes = body.len();
            }
            all.sort();
            anyhow::Ok((all, bytes))
        }
    };
    let (health, _) = times("/healthz").await?;
    let (scrapes, bytes) = times("/metrics").await?;
    for (name, all) in [("/healthz (baseline)", &health), ("/metrics", &scrapes)] {
        println!(
            "  {name:<20} p50 {}  p95 {}  p99 {}",
            crate::ms(crate::percentile(all, 0.50)),
            crate::ms(crate::percentile(all, 0.95)),
            crate::ms(crate::percentile(all, 0.99)),
        );
    }
    println!("  /metrics: {series} series, {bytes} bytes per scrape");
    server.stop().await
}
