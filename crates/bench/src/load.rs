//! The load every bench drives: realistic events with random ids, a real `sealtrail serve`
//! process to send them to, and the HTTP clients that send them.
//!
//! Events are drawn the way production traffic looks (and the way `../shared/peers/loadgen.py`
//! draws them): actors, targets and organisations with random UUIDs from pools of realistic
//! size, ip addresses from a pool, and a fresh random correlation id and session per event. A
//! pool of pre-encoded event templates is built once; each sent event is its template with a
//! new correlation id spliced in (and, when asked, a client-chosen event id and a time), so the
//! load generator spends its CPU on sending, not on JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sealtrail_model::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::ADMIN;

/// Who chooses event ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EventIds {
    /// The server assigns them (time-ordered); what the client library does not override.
    Server,
    /// The client sends time-ordered UUIDv7 ids.
    V7,
    /// The client sends random UUIDv4 ids: every insert lands at a random place of the id
    /// index.
    V4,
}

/// Actors, targets, organisations and addresses that events are drawn from.
pub(crate) struct Pools {
    /// `(id, name, email)` of people, then services.
    pub(crate) actors: Vec<(String, String, Option<String>)>,
    /// `(type, id, name)`.
    pub(crate) targets: Vec<(&'static str, String, String)>,
    /// `(id, name)`.
    pub(crate) orgs: Vec<(String, String)>,
    /// Client addresses.
    pub(crate) ips: Vec<String>,
}

const ACTIONS: [(&str, &str, &str, usize); 12] = [
    ("asset.created", "create", "CREATED", 0),
    ("asset.updated", "update", "UPDATED", 0),
    ("asset.assigned", "update", "ASSIGNED", 0),
    ("asset.retired", "delete", "RETIRED", 0),
    ("order.placed", "create", "PLACED", 1),
    ("order.cancelled", "update", "CANCELLED", 1),
    ("invoice.issued", "create", "ISSUED", 2),
    ("invoice.exported", "read", "EXPORTED", 2),
    ("document.viewed", "read", "VIEWED", 3),
    ("document.shared", "update", "SHARED", 3),
    ("user.login", "auth", "LOGIN", 4),
    ("user.role_assigned", "other", "ROLE_ASSIGNED", 4),
];
const TARGET_TYPES: [&str; 5] = ["asset", "order", "invoice", "document", "user"];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "asset-sync/2.4.1 (+https://example.com/bot)",
];

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

impl Pools {
    /// The pools of seed `seed`: 2 000 people, 50 services, 4 000 targets of each type, 50
    /// organisations, 20 000 addresses.
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut actors = Vec::new();
        for i in 0..2_000 {
            actors.push((
                uuid(&mut rng),
                format!("Person {i:04}"),
                Some(format!("person{i}@example.com")),
            ));
        }
        for i in 0..50 {
            actors.push((
                format!("svc-{}", &uuid(&mut rng)[..8]),
                format!("service {i}"),
                None,
            ));
        }
        let mut targets = Vec::new();
        for t in TARGET_TYPES {
            for i in 0..4_000 {
                targets.push((t, uuid(&mut rng), format!("{t}-{i:05}")));
            }
        }
        let orgs = (0..50)
            .map(|i| (uuid(&mut rng), format!("Organisation {i}")))
            .collect();
        let ips = (0..20_000)
            .map(|_| {
                let n: u32 = rng.random();
                format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
            })
            .collect();
        Self {
            actors,
            targets,
            orgs,
            ips,
        }
    }

    /// A target of type `kind` (an index into the action table's types).
    fn target(&self, kind: usize, rng: &mut StdRng) -> &(&'static str, String, String) {
        &self.targets[kind * 4_000 + skewed(rng, 4_000)]
    }
}

/// An index below `n`, the low ones much more likely (a few actors and targets are busy).
fn skewed(rng: &mut StdRng, n: usize) -> usize {
    let u: f64 = rng.random();
    ((u * u * u) * n as f64) as usize % n
}

/// The value a template holds where the correlation id goes.
const CORRELATION_SLOT: &str = "@@correlation@@";
/// The value a template holds where `occurred_at` goes.
const TIME_SLOT: &str = "@@occurred@@";

/// A bijective 64-bit mix (the SplitMix64 finaliser): event numbers to random-looking bits,
/// far cheaper per event than seeding a generator.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One pre-encoded event: its JSON cut where the fresh values go.
struct Template {
    /// Before the correlation id, between it and the time (or the end), and after the time.
    parts: Vec<Vec<u8>>,
}

/// Events to send: a pool of templates and the rule for each event's fresh values.
pub(crate) struct EventSource {
    templates: Vec<Template>,
    ids: EventIds,
    /// `occurred_at` spread evenly over this window before the run's start, by event number.
    spread: Option<(Timestamp, i64, u64)>,
    /// Seeds the templates and every event's correlation id.
    seed: u64,
}

impl EventSource {
    /// `pool` templates drawn from `pools`; event `n` gets correlation id `correlation(n)`.
    pub(crate) fn new(pools: &Pools, pool: usize, ids: EventIds, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let templates = (0..pool)
            .map(|_| Template::draw(pools, &mut rng, false))
            .collect();
        Self {
            templates,
            ids,
            spread: None,
            seed,
        }
    }

    /// Spreads `occurred_at` of events 0..total evenly over `days` days before `now`.
    pub(crate) fn spread_over(
        mut self,
        pools: &Pools,
        now: Timestamp,
        days: i64,
        total: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(self.seed);
        self.templates = (0..self.templates.len())
            .map(|_| Template::draw(pools, &mut rng, true))
            .collect();
        self.spread = Some((now, days, total.max(1)));
        self
    }

    /// The correlation id of event `n`: derived from `n`, so a bench can ask for it later.
    pub(crate) fn correlation(&self, n: u64) -> Uuid {
        let hi = mix(self.seed ^ mix(n));
        let lo = mix(hi ^ n);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_le_bytes());
        bytes[8..].copy_from_slice(&lo.to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// Appends event `n`, encoded, to `out`.
    pub(crate) fn write(&self, n: u64, out: &mut Vec<u8>) {
        let t = &self.templates[(n % self.templates.len() as u64) as usize];
        let first = &t.parts[0];
        match self.ids {
            EventIds::Server => out.extend_from_slice(first),
            EventIds::V7 | EventIds::V4 => {
                let id = if self.ids == EventIds::V7 {
                    Uuid::now_v7()
                } else {
                    Uuid::new_v4()
                };
                out.extend_from_slice(b"{\"id\":\"");
                out.extend_from_slice(
                    id.hyphenated()
                        .encode_lower(&mut Uuid::encode_buffer())
                        .as_bytes(),
                );
                out.extend_from_slice(b"\",");
                out.extend_from_slice(&first[1..]);
            }
        }
        out.extend_from_slice(
            self.correlation(n)
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(&t.parts[1]);
        if let Some((now, days, total)) = self.spread {
            let window = days * 86_400_000_000;
            let at = now.micros() - window + (window / total as i64) * (n.min(total) as i64);
            out.extend_from_slice(Timestamp::from_micros(at).to_rfc3339().as_bytes());
            out.extend_from_slice(&t.parts[2]);
        }
    }

    /// A JSON array of events `range`.
    pub(crate) fn batch(&self, range: std::ops::Range<u64>) -> Vec<u8> {
        let mut out = Vec::with_capacity(1_200 * (range.end - range.start) as usize + 2);
        out.push(b'[');
        for n in range {
            if out.len() > 1 {
                out.push(b',');
            }
            self.write(n, &mut out);
        }
        out.push(b']');
        out
    }

    /// Event `n` alone.
    pub(crate) fn single(&self, n: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(1_200);
        self.write(n, &mut out);
        out
    }

    /// The mean size of an encoded event.
    pub(crate) fn mean_bytes(&self) -> usize {
        let n = self.templates.len().min(1_000) as u64;
        (0..n).map(|i| self.single(i).len()).sum::<usize>() / n as usize
    }
}

impl Template {
    fn draw(pools: &Pools, rng: &mut StdRng, timed: bool) -> Self {
        let (action, category, event_type, kind) = ACTIONS[rng.random_range(0..ACTIONS.len())];
        let (actor_id, name, email) = &pools.actors[skewed(rng, pools.actors.len())];
        let (target_type, target_id, target_name) = pools.target(kind, rng);
        let (org_id, org_name) = &pools.orgs[skewed(rng, pools.orgs.len())];
        let changes: Vec<Value> = (0..rng.random_range(1..=3))
            .map(|i| {
                let field = ["status", "assignee.id", "location.building"][i];
                json!({"field": field, "old_value": format!("old-{}", rng.random_range(0..100)),
                       "new_value": format!("new-{}", rng.random_range(0..100))})
            })
            .collect();
        let mut actor = json!({"id": actor_id, "name": name,
                               "type": if email.is_some() { "user" } else { "service" }});
        if let Some(email) = email {
            actor["email"] = json!(email);
        }
        let method = ["POST", "PATCH", "GET", "DELETE"][rng.random_range(0..4)];
        let mut event = json!({
            "action": action,
            "category": category,
            "event_type": event_type,
            "outcome": if rng.random_range(0..50) == 0 { "failure" } else { "success" },
            "actor": actor,
            "target": {"type": target_type, "id": target_id, "name": target_name},
            "organization": {"id": org_id, "name": org_name},
            "context": {
                "ip": pools.ips[rng.random_range(0..pools.ips.len())],
                "user_agent": AGENTS[rng.random_range(0..AGENTS.len())],
                "session_id": format!("sess_{}", &uuid(rng).replace('-', "")[..24]),
                "correlation_id": CORRELATION_SLOT,
                "endpoint": format!("/api/v1/{target_type}s/{target_id}"),
                "method": method,
                "status_code": 200, "duration_ms": rng.random_range(1..400)
            },
            "changes": changes,
            "metadata": {"reason": "routine change made through the asset register",
                         "ticket": format!("T-{}", rng.random_range(0..100_000)),
                         "source": "bench", "requestId": uuid(rng)}
        });
        if timed {
            event["occurred_at"] = json!(TIME_SLOT);
        }
        let text = event.to_string();
        let mut parts = Vec::new();
        let (head, rest) = text
            .split_once(CORRELATION_SLOT)
            .expect("the template holds the slot");
        parts.push(head.as_bytes().to_vec());
        if timed {
            let (mid, tail) = rest
                .split_once(TIME_SLOT)
                .expect("the template holds the slot");
            parts.push(mid.as_bytes().to_vec());
            parts.push(tail.as_bytes().to_vec());
        } else {
            parts.push(rest.as_bytes().to_vec());
        }
        Self { parts }
    }
}

/// Where a spawned server keeps its events.
#[derive(Clone)]
pub(crate) enum Backend {
    /// The embedded store in this directory.
    Sqlite,
    /// PostgreSQL at this URL, in this schema.
    Postgres { url: String, schema: String },
}

/// A real `sealtrail serve` process.
pub(crate) struct Server {
    child: tokio::process::Child,
    /// `http://host:port`.
    pub(crate) base: String,
    /// A key of tenant `bench` with ingest and read scopes.
    pub(crate) key: String,
}

impl Server {
    /// Starts `sealtrail serve` (the release binary beside this one) on a free port.
    pub(crate) async fn start(
        backend: &Backend,
        data_dir: &std::path::Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_binary(
            &crate::client::sibling("sealtrail")?,
            backend,
            data_dir,
            extra,
        )
        .await
    }

    /// Starts `serve` of another `sealtrail` binary (a baseline build) on a free port.
    pub(crate) async fn start_binary(
        binary: &std::path::Path,
        backend: &Backend,
        data_dir: &std::path::Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("SEALTRAIL_ADMIN_TOKEN", ADMIN)
            .env(
                "SEALTRAIL_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            );
        if let Backend::Postgres { url, schema } = backend {
            cmd.args(["--database-url", url, "--database-schema", schema]);
        }
        let (child, base) = crate::client::spawn(cmd).await?;
        let key = create_key(&reqwest::Client::new(), &base, "bench").await?;
        Ok(Self { child, base, key })
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// CPU seconds the process has used so far, user and system, every thread.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(&format!("/proc/{}/stat", self.child.id()?))
    }

    /// The process's peak resident memory, in MiB.
    pub(crate) fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// Unindexed events, from `/readyz`.
    pub(crate) async fn index_lag(&self, http: &reqwest::Client) -> anyhow::Result<u64> {
        let v: Value = http
            .get(format!("{}/readyz", self.base))
            .send()
            .await?
            .json()
            .await?;
        v["index_lag"].as_u64().context("readyz without index_lag")
    }

    /// Waits until the indexer has caught up with the log.
    pub(crate) async fn wait_indexed(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        while self.index_lag(http).await? > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// What `/metrics` says of the indexer so far: positions indexed (every tenant) and the
    /// seconds its passes spent in each stage (`sealtrail_store::metrics::INDEX_STAGES`).
    /// `None` from a build that does not export them.
    pub(crate) async fn indexer_time(
        &self,
        http: &reqwest::Client,
    ) -> anyhow::Result<Option<IndexerTime>> {
        use sealtrail_store::metrics::{INDEX_EVENTS, INDEX_STAGE_DURATION, INDEX_STAGES};
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let mut time = IndexerTime::default();
        let mut seen = false;
        let sum = format!("{INDEX_STAGE_DURATION}_sum{{stage=\"");
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if name.starts_with(INDEX_EVENTS) {
                time.events += value;
                seen = true;
            } else if let Some(stage) = name.strip_prefix(&sum) {
                let stage = stage.trim_end_matches("\"}");
                if let Some(at) = INDEX_STAGES.iter().position(|s| *s == stage) {
                    time.seconds[at] += value;
                }
            }
        }
        Ok(seen.then_some(time))
    }

    /// Stops the process (SIGTERM) and waits for it.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        Ok(())
    }
}

/// The indexer's work as `/metrics` counts it ([`Server::indexer_time`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IndexerTime {
    /// Positions indexed.
    pub(crate) events: f64,
    /// Seconds spent in each stage of the passes.
    pub(crate) seconds: [f64; sealtrail_store::metrics::INDEX_STAGES.len()],
}

impl std::ops::Sub for IndexerTime {
    type Output = Self;

    fn sub(self, earlier: Self) -> Self {
        let mut seconds = self.seconds;
        for (s, e) in seconds.iter_mut().zip(earlier.seconds) {
            *s -= e;
        }
        Self {
            events: self.events - earlier.events,
            seconds,
        }
    }
}

impl IndexerTime {
    /// Microseconds per event indexed in each stage.
    pub(crate) fn micros_per_event(&self) -> [f64; sealtrail_store::metrics::INDEX_STAGES.len()] {
        self.seconds.map(|s| 1e6 * s / self.events.max(1.0))
    }
}

/// Creates an ingest-and-read key of `tenant` with the bench's admin token. A store reused
/// while it rebuilds its derived data refuses writes (the key's audit event among them) with
/// 503 until the indexer is near the log: the request is sent again meanwhile.
pub(crate) async fn create_key(
    http: &reqwest::Client,
    base: &str,
    tenant: &str,
) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let answer = http
            .post(format!("{base}/api/v1/keys"))
            .bearer_auth(ADMIN)
            .json(&json!({"tenant": tenant, "scopes": ["ingest", "read"], "name": "bench"}))
            .send()
            .await?;
        let status = answer.status();
        let r: Value = answer.json().await?;
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            && started.elapsed() < Duration::from_secs(3_600)
        {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        return Ok(r["token"]
            .as_str()
            .with_context(|| format!("no token ({status}): {r}"))?
            .to_owned());
    }
}

/// What one run of [`ingest`] did.
pub(crate) struct Ingested {
    /// From the first request to the last answer.
    pub(crate) acked: Duration,
    /// Requests answered 503 (and sent again after `Retry-After`).
    pub(crate) refused: u64,
}

/// Sends events `range` of `source` in batches of `batch` from `clients` concurrent clients
/// (spread over `bases`), each request sent again while it is answered 503.
pub(crate) async fn ingest(
    http: &reqwest::Client,
    bases: &[String],
    key: &str,
    source: &Arc<EventSource>,
    range: std::ops::Range<u64>,
    batch: u64,
    clients: usize,
) -> anyhow::Result<Ingested> {
    let next = Arc::new(AtomicU64::new(range.start));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url, key, source, next, refused) = (
                http.clone(),
                format!("{}/api/v1/events", bases[c % bases.len()]),
                key.to_owned(),
                source.clone(),
                next.clone(),
                refused.clone(),
            );
            let end = range.end;
            tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= end {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let body = if batch == 1 {
                        source.single(first)
                    } else {
                        source.batch(first..(first + batch).min(end))
                    };
                    loop {
                        let r = http
                            .post(&url)
                            .bearer_auth(&key)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await?;
                        match r.status().as_u16() {
                            201 | 200 => {
                                r.bytes().await?;
                                break;
                            }
                            503 => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                let wait = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                                    .unwrap_or(1);
                                tokio::time::sleep(Duration::from_millis(
                                    (wait * 1000).clamp(10, 1000),
                                ))
                                .await;
                            }
                            status => {
                                let text = r.text().await.unwrap_or_default();
                                anyhow::bail!("ingest answered {status}: {text}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(Ingested {
        acked: started.elapsed(),
        refused: refused.load(Ordering::Relaxed),
    })
}

/// Asks for event `n` by its correlation id (a filtered list) until it is answered.
pub(crate) async fn find(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    source: &EventSource,
    n: u64,
) -> anyhow::Result<()> {
    let url = format!(
        "{base}/api/v1/audit-logs?limit=1&correlation_id={}",
        source.correlation(n)
    );
    loop {
        let v: Value = http.get(&url).bearer_auth(key).send().await?.json().await?;
        if v["items"].as_array().is_some_and(|a| a.len() == 1) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Single-event requests from `clients` concurrent clients, `requests` each; the latency of
/// every request, sorted.
pub(crate) async fn singles(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    source: &Arc<EventSource>,
    requests: usize,
    clients: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, key, source, counter) = (
                http.clone(),
                format!("{base}/api/v1/events"),
                key.to_owned(),
                source.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(requests);
                for _ in 0..requests {
                    let n = counter.fetch_add(1, Ordering::Relaxed) as u64;
                    let body = source.single(n);
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
    Ok((all, elapsed))
}

/// The bytes under `path`, in GiB.
pub(crate) fn disk_gib(path: &std::path::Path) -> f64 {
    fn walk(p: &std::path::Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    walk(path) as f64 / (1u64 << 30) as f64
}

/// CPU seconds used so far by every process named `postgres` on this machine (the cluster's
/// backends and its background writers), user and system; `None` when none can be read. A
/// backend that exits takes its seconds with it, so this is for spans where the servers'
/// pooled connections stay open.
pub(crate) fn postgres_cpu_seconds() -> Option<f64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let stat = format!("/proc/{pid}/stat");
        let is_postgres = std::fs::read_to_string(&stat).is_ok_and(|s| {
            s.split_once(" (")
                .is_some_and(|(_, rest)| rest.starts_with("postgres)"))
        });
        if is_postgres && let Some(cpu) = cpu_seconds_of(&stat) {
            *total.get_or_insert(0.0) += cpu;
        }
    }
    total
}

/// CPU seconds a process has used, user and system, every thread, from its `stat` file (in
/// ticks of 1/100 s, Linux's `USER_HZ`); `None` where that cannot be read.
pub(crate) fn cpu_seconds_of(stat: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // After the command name's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}
