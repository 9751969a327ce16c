//! The client-side figures of BENCHMARKS.md: what the audit layer adds to a request, and the
//! example app's throughput with sealtrail down against up.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use sealtrail_client::{Audit, AuditLayer, Client, ClientConfig, audited};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tower::{Service, ServiceExt};

use crate::percentile;

/// The route both variants serve; the layered one is marked and audited.
fn route(layered: Option<AuditLayer>) -> Router {
    let handler = |audit: Audit| async move {
        audit.target("thing", "T-1");
        StatusCode::CREATED
    };
    match layered {
        Some(layer) => Router::new()
            .route(
                "/things/{id}",
                post(handler).layer(audited("thing.updated")),
            )
            .layer(layer),
        None => Router::new().route("/things/{id}", post(handler)),
    }
}

async fn time_requests(
    router: &mut Router,
    n: usize,
    into: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    for _ in 0..n {
        let req = Request::post("/things/T-1")
            .header("user-agent", "bench/1")
            .header("x-request-id", "bench-request")
            .body(Body::empty())?;
        let t = Instant::now();
        let svc = <Router as ServiceExt<Request<Body>>>::ready(router).await?;
        let r = svc.call(req).await?;
        into.push(t.elapsed());
        anyhow::ensure!(r.status() == StatusCode::CREATED, "{}", r.status());
    }
    Ok(())
}

/// `bench layer`: the same route with and without the audit layer, called in-process in
/// alternating rounds; per-request median and p99 of each.
pub(crate) async fn layer(requests: usize) -> anyhow::Result<()> {
    println!(
        "layer: {requests} requests per variant in 20 alternating rounds, in-process (no network)"
    );
    // The client's sender talks to a peer that accepts and never answers, so what is measured
    // is the request path only: building the event and handing it to the buffer.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = sink.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = sink.accept().await {
            held.push(conn);
        }
    });
    let spool = tempfile::tempdir()?;
    let client = Arc::new(Client::with_config(ClientConfig {
        buffer: requests * 2,
        spool_dir: spool.path().to_owned(),
        request_timeout: Duration::from_secs(3600),
        ..ClientConfig::new(format!("http://{addr}"), "st_bench")
    })?);
    let mut plain = route(None);
    let mut layered = route(Some(AuditLayer::new(client.clone())));
    // Warm-up.
    time_requests(&mut plain, 2_000, &mut Vec::new()).await?;
    time_requests(&mut layered, 2_000, &mut Vec::new()).await?;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let rounds = 20;
    for _ in 0..rounds {
        time_requests(&mut plain, requests / rounds, &mut without).await?;
        time_requests(&mut layered, requests / rounds, &mut with).await?;
    }
    without.sort_unstable();
    with.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "  without the layer : median {:>7.2} µs   p99 {:>7.2} µs",
        us(percentile(&without, 0.5)),
        us(percentile(&without, 0.99))
    );
    println!(
        "  with the layer    : median {:>7.2} µs   p99 {:>7.2} µs",
        us(percentile(&with, 0.5)),
        us(percentile(&with, 0.99))
    );
    println!(
        "  added             : median {:>7.2} µs   p99 {:>7.2} µs",
        us(percentile(&with, 0.5)) - us(percentile(&without, 0.5)),
        us(percentile(&with, 0.99)) - us(percentile(&without, 0.99))
    );
    Ok(())
}

/// A binary built beside this one.
pub(crate) fn sibling(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::current_exe()?
        .parent()
        .context("the bench binary has a folder")?
        .join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p sealtrail -p asset-service -p sealtrail-bench`",
        path.display()
    );
    Ok(path)
}

/// Spawns a server and waits for its "listening on" line; returns it and its base URL.
pub(crate) async fn spawn(
    mut cmd: tokio::process::Command,
) -> anyhow::Result<(tokio::process::Child, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let base = loop {
        let line = lines
            .next_line()
            .await?
            .context("exited before listening")?;
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .context("address")?
                .to_owned();
        }
    };
    // BENCH_SERVER_STDERR=1 passes the server's log through (with SEALTRAIL_LOG set to taste).
    let echo = std::env::var_os("BENCH_SERVER_STDERR").is_some();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("server: {line}");
            }
        }
    });
    Ok((child, base))
}

/// Creates `requests` assets through the app from `clients` concurrent clients; events/s.
async fn drive(base: &str, jwt: &str, requests: usize, clients: usize) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, jwt, next) = (
                http.clone(),
                format!("{base}/api/v1/assets"),
                jwt.to_owned(),
                next.clone(),
            );
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    let r = http
                        .post(&url)
                        .bearer_auth(&jwt)
                        .json(&json!({"name": "Laptop", "serial": "S-1", "location": "HQ"}))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status() == 201, "the app answered {}", r.status());
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

/// A command for `program`, pinned to `core` with `taskset` when `pin` is set.
fn pinned(program: std::path::PathBuf, pin: bool, core: &str) -> tokio::process::Command {
    if pin {
        let mut cmd = tokio::process::Command::new("taskset");
        cmd.args(["-c", core]).arg(program);
        cmd
    } else {
        tokio::process::Command::new(program)
    }
}

/// `bench example`: the asset-service's write throughput with sealtrail up, then down. With
/// `pin`, the app runs on core 0 and sealtrail on core 1 (run the bench itself on core 1 too),
/// so that sealtrail's own work does not take the app's CPU when it is up.
pub(crate) async fn example(requests: usize, clients: usize, pin: bool) -> anyhow::Result<()> {
    println!(
        "example: {requests} asset creations from {clients} clients, sealtrail up then down (release binaries{})",
        if pin {
            "; app on core 0, sealtrail and load on core 1"
        } else {
            ""
        }
    );
    let dir = tempfile::tempdir()?;
    const ADMIN: &str = "st_benchexamplebenchexamplebenchexample00001";
    let mut sealtrail = pinned(sibling("sealtrail")?, pin, "1");
    sealtrail
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SEALTRAIL_ADMIN_TOKEN", ADMIN)
        .env("SEALTRAIL_LOG", "warn");
    let (mut sealtrail, sealtrail_base) = spawn(sealtrail).await?;
    let http = reqwest::Client::new();
    let token = crate::load::create_key(&http, &sealtrail_base, "assets").await?;
    let secret = "bench-secret";
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "u-1", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())?,
    )?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut rates = Vec::new();
    for (name, url) in [
        ("up", sealtrail_base.clone()),
        ("down", format!("http://{dead}")),
    ] {
        let mut app = pinned(sibling("asset-service")?, pin, "0");
        app.args([
            "--listen",
            "127.0.0.1:0",
            "--sealtrail-url",
            &url,
            "--sealtrail-token",
            &token,
            "--spool-dir",
        ])
        .arg(dir.path().join(format!("spool-{name}")))
        .env("ASSET_SERVICE_JWT_SECRET", secret)
        .env("ASSET_SERVICE_LOG", "error");
        let (mut child, base) = spawn(app).await?;
        drive(&base, &jwt, 2_000, clients).await?; // warm-up
        let rate = drive(&base, &jwt, requests, clients).await?;
        println!("  sealtrail {name:<4}: {rate:>9.0} requests/s");
        rates.push(rate);
        child.kill().await?;
    }
    println!("  down / up       : {:>9.1} %", 100.0 * rates[1] / rates[0]);
    sealtrail.kill().await?;
    Ok(())
}
