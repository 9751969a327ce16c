//! Derived data behind the log, with the real binary: an indexer killed in the middle of a
//! batch loses nothing and counts nothing twice once restarted, `sealtrail reindex` rebuilds
//! the same answers, and on PostgreSQL a server that dies while indexing hands its work to
//! another one sharing the schema.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;

use common::{BIN, Running};

const ADMIN: &str = "st_derivedtestderivedtestderivedtestderived0";
const EVENTS: usize = 12_000;

/// Event `i`: its actor, target, related entity and correlation id follow from `i`.
fn event(i: usize) -> Value {
    let action = ["thing.made", "thing.moved", "thing.gone"][i % 3];
    let field = if i.is_multiple_of(4) {
        "status"
    } else {
        "name"
    };
    json!({
        "action": action,
        "actor": {"id": format!("a{}", i % 7), "name": "Ann"},
        "target": {"type": "thing", "id": format!("x{}", i % 13)},
        "related": [{"type": "thing", "id": format!("r{}", i % 5)}],
        "context": {"correlation_id": format!("c{i}"), "ip": format!("10.0.{}.1", i % 3)},
        "changes": [{"field": field, "old_value": 1, "new_value": 2}],
    })
}

/// Ingests every event in batches of 500 from two clients; returns the seq each got.
async fn ingest(http: &reqwest::Client, base: &str) -> Vec<u64> {
    let mut tasks = Vec::new();
    for client in 0..2 {
        let (http, url) = (http.clone(), format!("{base}/api/v1/events?tenant=t"));
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for start in (client * 500..EVENTS).step_by(1000) {
                let body: Vec<Value> = (start..(start + 500).min(EVENTS)).map(event).collect();
                let r = http
                    .post(&url)
                    .bearer_auth(ADMIN)
                    .json(&body)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status(), StatusCode::CREATED);
                let v: Value = r.json().await.expect("json");
                for (k, e) in v["events"].as_array().expect("events").iter().enumerate() {
                    seqs.push((start + k, e["seq"].as_u64().expect("seq")));
                }
            }
            seqs
        }));
    }
    let mut by_index = vec![0; EVENTS];
    for task in tasks {
        for (i, seq) in task.await.expect("client") {
            by_index[i] = seq;
        }
    }
    by_index
}

/// Every page of a list, as seqs.
async fn list(http: &reqwest::Client, base: &str, query: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!(
                "{base}/api/v1/audit-logs?tenant=t&order=asc&limit=1000&{query}{cursor}"
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        out.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|e| e["seq"].as_u64().expect("seq")),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Every page of an entity's timeline, as (seq, relation).
async fn timeline(http: &reqwest::Client, base: &str, id: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!(
                "{base}/api/v1/entities/thing/{id}/history?tenant=t&limit=1000{cursor}"
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        out.extend(page["items"].as_array().expect("items").iter().map(|e| {
            (
                e["seq"].as_u64().expect("seq"),
                e["relation"].as_str().expect("relation").to_owned(),
            )
        }));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// What the answers must be, from the events as sent: per query, the seqs in order.
fn expected(seqs: &[u64]) -> BTreeMap<String, Value> {
    let pick = |f: &dyn Fn(usize) -> bool| -> Vec<u64> {
        let mut s: Vec<u64> = (0..EVENTS).filter(|i| f(*i)).map(|i| seqs[i]).collect();
        s.sort_unstable();
        s
    };
    let mut out = BTreeMap::new();
    out.insert("actor_id=a3".into(), json!(pick(&|i| i % 7 == 3)));
    out.insert(
        "action=thing.gone&actor_id=a1".into(),
        json!(pick(&|i| i % 3 == 2 && i % 7 == 1)),
    );
    out.insert("correlation_id=c4321".into(), json!(pick(&|i| i == 4321)));
    out.insert("ip=10.0.2.1".into(), json!(pick(&|i| i % 3 == 2)));
    // An event names x5 as its target, r2 in related: the timeline holds both, in seq order
    // (one batch shares a recorded_at, and occurred_at defaulted to it).
    let history = |id: &str| -> Value {
        let mut items: Vec<(u64, &str)> = (0..EVENTS)
            .filter_map(|i| {
                if format!("x{}", i % 13) == id {
                    Some((seqs[i], "target"))
                } else if format!("r{}", i % 5) == id {
                    Some((seqs[i], "related"))
                } else {
                    None
                }
            })
            .collect();
        items.sort_unstable();
        json!(items)
    };
    out.insert("history x5".into(), history("x5"));
    out.insert("history r2".into(), history("r2"));
    out
}

async fn answers(http: &reqwest::Client, base: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for query in [
        "actor_id=a3",
        "action=thing.gone&actor_id=a1",
        "correlation_id=c4321",
        "ip=10.0.2.1",
    ] {
        out.insert(query.to_owned(), json!(list(http, base, query).await));
    }
    for id in ["x5", "r2"] {
        out.insert(
            format!("history {id}"),
            json!(timeline(http, base, id).await),
        );
    }
    out
}

/// The index lag /readyz reports.
async fn lag(http: &reqwest::Client, base: &str) -> u64 {
    let v: Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    v["index_lag"].as_u64().unwrap_or(u64::MAX)
}

async fn wait_indexed(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while lag(http, base).await > 0 {
        assert!(Instant::now() < deadline, "the indexer never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_sqlite(data: &Path) -> Running {
    let args = vec!["--data-dir".into(), data.as_os_str().to_owned()];
    common::start(&args, Some(ADMIN), data.parent().expect("parent")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexer_killed_mid_batch_loses_nothing_and_reindex_gives_the_same_answers() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let http = reqwest::Client::new();
    let mut server = start_sqlite(&data).await;
    let seqs = ingest(&http, &server.base).await;
    let want = expected(&seqs);
    // Exact at once, whatever the indexer has done so far.
    assert_eq!(answers(&http, &server.base).await, want, "before indexing");
    let behind = lag(&http, &server.base).await;
    // Killed while the indexer is (most likely) in the middle of a batch.
    server.child.kill().await.expect("kill -9");
    let mut server = start_sqlite(&data).await;
    assert_eq!(answers(&http, &server.base).await, want, "after the crash");
    wait_indexed(&http, &server.base).await;
    assert_eq!(
        answers(&http, &server.base).await,
        want,
        "from the derived data, which was {behind} events behind at the crash"
    );
    // Stopped, rebuilt from scratch offline, started again: the same answers.
    let pid = server.child.id().expect("pid") as i32;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    server.child.wait().await.expect("stopped");
    let out = std::process::Command::new(BIN)
        .args(["reindex", "--data-dir"])
        .arg(&data)
        .env("SEALTRAIL_LOG", "warn")
        .output()
        .expect("reindex");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The events, and the audit.read_cross_tenant events the admin key's reads recorded.
    let indexed: usize = stderr
        .split("reindex: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(indexed > EVENTS, "{stderr}");
    let server = start_sqlite(&data).await;
    wait_indexed(&http, &server.base).await;
    assert_eq!(answers(&http, &server.base).await, want, "after reindex");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_mid_index_hands_its_work_to_another_on_postgres() {
    let Some((url, schema)) = sealtrail_store_postgres::testing::fresh_schema().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let start = |name: &str| {
        let args: Vec<std::ffi::OsString> = vec![
            "--database-url".into(),
            url.clone().into(),
            "--database-schema".into(),
            schema.clone().into(),
            "--data-dir".into(),
            dir.path().join(name).into(),
        ];
        let cwd = dir.path().to_owned();
        async move { common::start(&args, Some(ADMIN), &cwd).await }
    };
    let http = reqwest::Client::new();
    let first = start("a").await;
    let second = start("b").await;
    let seqs = ingest(&http, &first.base).await;
    let want = expected(&seqs);
    assert_eq!(
        answers(&http, &second.base).await,
        want,
        "exact on both servers"
    );
    let mut first = first;
    first.child.kill().await.expect("kill -9");
    // The database says when every event is indexed, whichever server did it.
    let pool = sealtrail_store_postgres::pool(&url, &schema, 1).expect("pool");
    let client = pool.get().await.expect("client");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let lag: i64 = client
            .query_one(
                "SELECT coalesce(sum(t.size - coalesce(w.indexed, 0)), 0)::bigint FROM tenant_logs t \
                 LEFT JOIN watermarks w ON w.tenant = t.tenant",
                &[],
            )
            .await
            .expect("lag")
            .get(0);
        if lag == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor never indexed the log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        answers(&http, &second.base).await,
        want,
        "indexed by the survivor"
    );
    let out = std::process::Command::new(BIN)
        .args([
            "verify",
            "--database-url",
            &url,
            "--database-schema",
            &schema,
        ])
        .env("SEALTRAIL_LOG", "warn")
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
