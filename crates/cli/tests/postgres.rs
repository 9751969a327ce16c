//! The real binary on PostgreSQL: two servers sharing one database, and a private PostgreSQL
//! cluster stopped and started again in the middle of ingestion.

mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{BIN, Running, all_events};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "st_postgrestestpostgrestestpostgrestest000001";

/// A shared signing key, as servers sharing a database should have.
fn signing_key_file(dir: &Path) -> PathBuf {
    let path = dir.join("signing.key");
    // base64 of 32 bytes of 7.
    std::fs::write(&path, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").expect("key");
    path
}

async fn start_pg(dir: &Path, url: &str, schema: &str, extra: &[&str]) -> Running {
    let data = dir.join(format!("data-{}", uuid::Uuid::new_v4().simple()));
    let mut args: Vec<OsString> = vec![
        "--database-url".into(),
        url.into(),
        "--database-schema".into(),
        schema.into(),
        "--data-dir".into(),
        data.into_os_string(),
        "--signing-key".into(),
        signing_key_file(dir).into_os_string(),
        "--checkpoint-every".into(),
        "200ms".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    common::start(&args, Some(ADMIN), dir).await
}

/// One client: sends batches of 1–5 events with client-chosen ids into tenant `shared`; on a
/// 503 or a lost connection it sends the same batch again (same ids, so a commit whose answer
/// was lost is a duplicate, not a second copy). Stops after `requests` answered requests or
/// when `stop` is set. Returns acknowledged ids and how many 503s it saw.
async fn client(
    http: reqwest::Client,
    base: String,
    c: usize,
    requests: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, usize) {
    let mut acked = Vec::new();
    let mut unavailable = 0;
    let mut i = 0;
    let mut pending: Option<Value> = None;
    let mut answered = 0;
    while answered < requests && !stop.load(Ordering::Relaxed) {
        let batch = pending.take().unwrap_or_else(|| {
            i += 1;
            Value::Array(
                (0..(1 + (c + i) % 5))
                    .map(|j| {
                        json!({"id": uuid::Uuid::new_v4(), "action": "pg.test", "tenant": "shared",
                               "actor": {"id": format!("c{c}"), "name": "Client"},
                               "target": {"type": "item", "id": format!("i{}", (i + j) % 7)},
                               "metadata": {"client": c, "i": i}})
                    })
                    .collect(),
            )
        });
        let sent = http
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(ADMIN)
            .json(&batch)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.expect("json");
                for e in v["events"].as_array().expect("events") {
                    acked.push(e["id"].as_str().expect("id").to_owned());
                }
                answered += 1;
            }
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                let ct = r.headers()["content-type"]
                    .to_str()
                    .unwrap_or("")
                    .to_owned();
                assert_eq!(ct, "application/problem+json");
                unavailable += 1;
                pending = Some(batch);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(r) => panic!("unexpected answer {}: {:?}", r.status(), r.text().await),
            Err(_) => {
                pending = Some(batch);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    (acked, unavailable)
}

fn verify_db(url: &str, schema: &str) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["verify", "--database-url", url, "--database-schema", schema])
        .output()
        .expect("run verify")
}

/// Every acknowledged id is stored exactly once and `seq` runs 1..=n without a gap.
async fn assert_log_holds(base: &str, acked: &[String]) {
    let http = reqwest::Client::new();
    let events = all_events(&http, base, ADMIN, "shared").await;
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let stored: HashSet<&str> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(stored.len(), events.len(), "no id is stored twice");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
}

async fn stop(mut server: Running) {
    let pid = server.child.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let status = server.child.wait().await.expect("wait");
    assert!(
        status.success(),
        "{status:?}: {:?}",
        server.stderr.lock().expect("lock")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_keep_each_log_gap_free_and_valid() {
    let Some((url, schema)) = sealtrail_store_postgres::testing::fresh_schema().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    // Both start at once: the migration runs once, under its lock.
    let (a, b) = tokio::join!(
        start_pg(dir.path(), &url, &schema, &[]),
        start_pg(dir.path(), &url, &schema, &[])
    );
    let http = reqwest::Client::new();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|c| {
            let base = if c % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            tokio::spawn(client(http.clone(), base, c, 25, stop_flag.clone()))
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        let (ids, unavailable) = t.await.expect("client");
        assert_eq!(unavailable, 0, "no 503 while the database is up");
        acked.extend(ids);
    }
    assert_log_holds(&a.base, &acked).await;
    assert_log_holds(&b.base, &acked).await;
    stop(a).await;
    stop(b).await;
    let out = verify_db(&url, &schema);
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private PostgreSQL cluster, so that stopping it disturbs nobody else.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// Creates and starts one, or `None` (loudly) where PostgreSQL's server programs are not
    /// installed outside CI.
    fn create(dir: &Path) -> Option<Self> {
        let bin = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.join("initdb").exists())
            .or_else(|| {
                std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .flatten()
                    .map(|e| e.path().join("bin"))
                    .find(|p| p.join("initdb").exists())
            });
        let Some(bin) = bin else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("initdb is not installed; CI must run the PostgreSQL fault test");
            }
            eprintln!(
                "\n*** SKIPPED: initdb is not installed; the PostgreSQL fault test did not run ***\n"
            );
            return None;
        };
        // initdb refuses to run as root: run the cluster as the postgres user then.
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("id");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data).expect("pgdata");
        if as_postgres {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let cluster = Self {
            bin,
            data,
            port,
            as_postgres,
        };
        cluster.run(
            "initdb",
            &["-A", "trust", "-U", "postgres", "--no-sync", "-D"],
            true,
        );
        cluster.start();
        Some(cluster)
    }

    fn run(&self, program: &str, args: &[&str], with_data: bool) {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        cmd.args(args);
        if with_data {
            cmd.arg(&self.data);
        }
        let out = cmd.output().expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=on",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "start",
                "-D",
            ],
            true,
        );
    }

    /// Stops it the hard way: no shutdown checkpoint, recovery at the next start.
    fn crash(&self) {
        self.run("pg_ctl", &["-w", "-m", "immediate", "stop", "-D"], true);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(if self.as_postgres { "runuser" } else { "true" })
            .args(if self.as_postgres {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "stop", "-D"])
            .arg(&self.data)
            .output();
    }
}

async fn ready(http: &reqwest::Client, base: &str) -> (StatusCode, Value) {
    let r = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = r.status();
    (status, r.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_ingest_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(cluster) = Cluster::create(dir.path()) else {
        return;
    };
    let url = cluster.url();
    let server = start_pg(dir.path(), &url, "sealtrail", &[]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http");
    let stop_flag = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(client(
                http.clone(),
                server.base.clone(),
                c,
                10_000,
                stop_flag.clone(),
            ))
        })
        .collect();
    let count = || async {
        let http = reqwest::Client::new();
        let r = http
            .get(format!(
                "{}/api/v1/audit-logs?tenant=shared&limit=1",
                server.base
            ))
            .bearer_auth(ADMIN)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.expect("json");
                v["items"][0]["seq"].as_u64().unwrap_or(0)
            }
            _ => 0,
        }
    };
    let wait_for = |n: u64| async move {
        for _ in 0..600 {
            if count().await >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ingestion did not reach {n} events");
    };
    wait_for(100).await;
    cluster.crash();
    // While the database is down, readiness says why and ingestion answers 503.
    let mut down = None;
    for _ in 0..100 {
        let (status, body) = ready(&http, &server.base).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            down = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = down.expect("readyz turns 503 while PostgreSQL is down");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("store is unreachable")),
        "{body}"
    );
    let r = http
        .post(format!("{}/api/v1/events", server.base))
        .bearer_auth(ADMIN)
        .json(&json!({"action": "pg.down", "tenant": "shared", "actor": {"id": "x"}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let r = http
        .get(format!("{}/api/v1/audit-logs?tenant=shared", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "reads say the database is down"
    );
    cluster.start();
    // sealtrail reconnects by itself: readiness returns and ingestion carries on.
    let mut up = false;
    for _ in 0..200 {
        if ready(&http, &server.base).await.0 == StatusCode::OK {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "readyz is 200 again after PostgreSQL restarts");
    let after_restart = count().await;
    wait_for(after_restart + 100).await;
    stop_flag.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut unavailable = 0;
    for t in tasks {
        let (ids, u) = t.await.expect("client");
        acked.extend(ids);
        unavailable += u;
    }
    assert!(
        unavailable > 0,
        "clients saw 503 while the database was down"
    );
    assert_log_holds(&server.base, &acked).await;
    // Nothing is half-written: every event has its leaf, and the recorded size is the log's.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM sealtrail.events WHERE tenant = 'shared'), \
                    (SELECT count(*) FROM sealtrail.leaves WHERE tenant = 'shared'), \
                    (SELECT size FROM sealtrail.tenant_logs WHERE tenant = 'shared')",
            &[],
        )
        .await
        .expect("counts");
    let (events, leaves, size): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((events, leaves), (size, size));
    stop(server).await;
    let out = verify_db(&url, "sealtrail");
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_brings_a_schema_up_once_and_serve_can_skip_it() {
    let Some((url, schema)) = sealtrail_store_postgres::testing::fresh_schema().await else {
        return;
    };
    let migrate = || {
        std::process::Command::new(BIN)
            .args([
                "migrate",
                "--database-url",
                &url,
                "--database-schema",
                &schema,
            ])
            .output()
            .expect("run migrate")
    };
    let first = migrate();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let all = sealtrail_store_postgres::schema::SCHEMA_VERSION;
    assert!(
        String::from_utf8_lossy(&first.stderr).contains(&format!("({all} migrations applied)")),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = migrate();
    assert!(String::from_utf8_lossy(&again.stderr).contains("(0 migrations applied)"));
    let dir = tempfile::tempdir().expect("dir");
    let server = start_pg(dir.path(), &url, &schema, &["--no-migrate"]).await;
    let r = reqwest::Client::new()
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), StatusCode::OK);
    stop(server).await;
    // Without migrating, an empty schema is refused with the command to run.
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-migrate",
            "--database-url",
            &url,
        ])
        .args(["--database-schema", &format!("{schema}_none"), "--data-dir"])
        .arg(dir.path().join("none"))
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sealtrail migrate"));
}
