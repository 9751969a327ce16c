//! `GET /metrics` scraped while ingest runs from several clients, each scrape parsed by a real
//! Prometheus text parser (Python's `prometheus_client.parser`), and the counters checked
//! against what the clients were answered.

mod common;

use std::collections::HashMap;

use common::spawn_app;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Parses scrapes with `prometheus_client.parser`; per scrape, every sample as
/// `{"family", "type", "name", "labels", "value"}`. `None` (after a loud message) when the
/// module is missing outside CI; in CI that fails.
fn parse(scrapes: &[String]) -> Option<Vec<Vec<Value>>> {
    let dir = tempfile::tempdir().expect("dir");
    for (i, text) in scrapes.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i}.txt")), text).expect("write");
    }
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for i in range(int(sys.argv[2])):
    text = open(f"{sys.argv[1]}/{i}.txt", encoding="utf-8").read()
    samples = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.append({"family": family.name, "type": family.type, "help": family.documentation,
                            "name": s.name, "labels": s.labels, "value": s.value})
    out.append(samples)
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .arg(scrapes.len().to_string())
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        assert!(
            !in_ci(),
            "prometheus_client is missing in CI, where this test must run"
        );
        eprintln!(
            "\n*** SKIPPED: Python's prometheus_client is not installed (pip install prometheus_client) ***\n"
        );
        return None;
    }
    assert!(
        out.status.success(),
        "the parser refused a scrape: {stderr}"
    );
    Some(serde_json::from_slice(&out.stdout).expect("json"))
}

fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(v))
        })
        .and_then(|s| s["value"].as_f64())
}

#[tokio::test]
async fn metrics_parse_and_count_what_ingest_answered_while_load_runs() {
    let app = spawn_app().await;
    let tenants = ["m-one", "m-two", "m-three"];
    let mut keys = Vec::new();
    for t in tenants {
        keys.push(app.key(t, &["ingest", "read"]).await);
    }
    let base = format!("http://{}", app.addr);
    let http = reqwest::Client::new();
    let load: Vec<_> = keys
        .iter()
        .cloned()
        .map(|key| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let (mut stored, mut duplicate, mut refused) = (0u64, 0u64, 0u64);
                for i in 0..40 {
                    let body = if i % 10 == 9 {
                        json!([{"action": ""}])
                    } else {
                        let id = uuid::Uuid::now_v7();
                        json!([
                            {"id": id, "action": "m.test", "actor": {"id": format!("u{i}")}},
                            {"action": "m.test", "actor": {"id": "v"}}
                        ])
                    };
                    let r = http
                        .post(format!("{base}/api/v1/events"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await
                        .expect("send");
                    let status = r.status();
                    let answer: Value = r.json().await.expect("json");
                    if status.is_success() {
                        stored += answer["accepted"].as_u64().expect("accepted");
                        duplicate += answer["duplicates"].as_u64().expect("duplicates");
                        // The same request again: all duplicates... but the event without an
                        // id is new each time.
                        if i % 10 == 3 {
                            let again: Value = http
                                .post(format!("{base}/api/v1/events"))
                                .bearer_auth(&key)
                                .json(&json!([body[0]]))
                                .send()
                                .await
                                .expect("send")
                                .json()
                                .await
                                .expect("json");
                            duplicate += again["duplicates"].as_u64().expect("duplicates");
                        }
                    } else {
                        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
                        refused += 1;
                    }
                }
                (stored, duplicate, refused)
            })
        })
        .collect();
    // Scrapes during the load.
    let mut scrapes = Vec::new();
    while !load.iter().all(tokio::task::JoinHandle::is_finished) || scrapes.len() < 3 {
        let r = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        scrapes.push(r.text().await.expect("text"));
    }
    let mut answered = HashMap::new();
    for (tenant, task) in tenants.iter().zip(load) {
        answered.insert(*tenant, task.await.expect("client"));
    }
    app.checkpoint_at(&keys[0], answered["m-one"].0).await;
    // The checkpointer's pass that signed it also posts it for the gauges, and the indexer
    // catches up with the log behind ingest; wait for both.
    let wanted = format!(
        "sealtrail_checkpoint_size_events{{tenant=\"m-one\"}} {}",
        answered["m-one"].0
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let last = loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        if text.lines().any(|l| l == wanted)
            && text.lines().any(|l| l == "sealtrail_index_lag_events 0")
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {wanted} in {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    scrapes.push(last);
    let Some(parsed) = parse(&scrapes) else {
        return;
    };
    let last = parsed.last().expect("a scrape");

    // Types and help as declared.
    let family = |name: &str| {
        last.iter()
            .find(|s| s["family"] == name)
            .unwrap_or_else(|| panic!("{name} is scraped"))
    };
    for (name, kind) in [
        ("sealtrail_events_ingested", "counter"),
        ("sealtrail_events_duplicate", "counter"),
        ("sealtrail_events_failed", "counter"),
        ("sealtrail_queue_depth_events", "gauge"),
        ("sealtrail_queue_capacity_events", "gauge"),
        ("sealtrail_index_lag_events", "gauge"),
        ("sealtrail_batch_size_events", "histogram"),
        ("sealtrail_commit_duration_seconds", "histogram"),
        ("sealtrail_http_request_duration_seconds", "histogram"),
        ("sealtrail_checkpoint_age_seconds", "gauge"),
        ("sealtrail_checkpoint_size_events", "gauge"),
        ("sealtrail_index_events", "counter"),
        ("sealtrail_index_stage_duration_seconds", "histogram"),
    ] {
        let f = family(name);
        assert_eq!(f["type"], kind, "{name}");
        assert!(
            !f["help"].as_str().unwrap_or("").is_empty(),
            "{name} has help"
        );
    }
    // Counters equal what the clients were answered, per tenant.
    for tenant in tenants {
        let (stored, duplicate, refused) = answered[tenant];
        let t = [("tenant", tenant)];
        assert_eq!(
            value(last, "sealtrail_events_ingested_total", &t),
            Some(stored as f64)
        );
        assert_eq!(
            value(last, "sealtrail_events_duplicate_total", &t),
            Some(duplicate as f64)
        );
        assert_eq!(
            value(
                last,
                "sealtrail_events_failed_total",
                &[("tenant", tenant), ("reason", "invalid")]
            ),
            Some(refused as f64)
        );
    }
    // The indexer has covered every stored event of each tenant (their logs hold nothing
    // else), in passes each timed in every stage.
    for tenant in tenants {
        assert_eq!(
            value(last, "sealtrail_index_events_total", &[("tenant", tenant)]),
            Some(answered[tenant].0 as f64),
            "{tenant}"
        );
    }
    let passes: Vec<f64> = sealtrail_store::metrics::INDEX_STAGES
        .iter()
        .map(|stage| {
            value(
                last,
                "sealtrail_index_stage_duration_seconds_count",
                &[("stage", stage)],
            )
            .unwrap_or_else(|| panic!("stage {stage} is timed"))
        })
        .collect();
    let stored: u64 = answered.values().map(|a| a.0).sum();
    assert!(
        passes[0] >= 1.0 && passes[0] <= stored as f64,
        "{passes:?} passes for {stored} events"
    );
    assert!(passes.iter().all(|&p| p == passes[0]), "{passes:?}");
    // Counters never go down between scrapes; histogram buckets are cumulative.
    for pair in parsed.windows(2) {
        for s in &pair[0] {
            if s["type"] == "counter" {
                let later = value(
                    &pair[1],
                    s["name"].as_str().expect("name"),
                    &s["labels"]
                        .as_object()
                        .expect("labels")
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str().expect("label")))
                        .collect::<Vec<_>>(),
                )
                .expect("still there");
                assert!(later >= s["value"].as_f64().expect("value"), "{s}");
            }
        }
    }
    let buckets: Vec<(f64, f64)> = last
        .iter()
        .filter(|s| {
            s["name"] == "sealtrail_http_request_duration_seconds_bucket"
                && s["labels"]["route"] == "/api/v1/events"
                && s["labels"]["status"] == "201"
        })
        .map(|s| {
            let le = s["labels"]["le"].as_str().expect("le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le")
            };
            (le, s["value"].as_f64().expect("value"))
        })
        .collect();
    assert!(buckets.len() > 5, "{buckets:?}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
    );
    let posts = value(
        last,
        "sealtrail_http_request_duration_seconds_count",
        &[
            ("route", "/api/v1/events"),
            ("method", "POST"),
            ("status", "201"),
        ],
    )
    .expect("posts counted");
    assert_eq!(buckets.last().expect("+Inf").1, posts);
    // Commits: as many events through group commits as were stored (keys add none: they
    // were put straight into the store).
    let committed = value(last, "sealtrail_batch_size_events_sum", &[]).expect("sum");
    assert!(committed >= stored as f64, "{committed} < {stored}");
    // The checkpoint gauges name the tenant's newest checkpoint.
    assert_eq!(
        value(
            last,
            "sealtrail_checkpoint_size_events",
            &[("tenant", "m-one")]
        ),
        Some(answered["m-one"].0 as f64)
    );
    let age = value(
        last,
        "sealtrail_checkpoint_age_seconds",
        &[("tenant", "m-one")],
    )
    .expect("age");
    assert!((0.0..3600.0).contains(&age), "{age}");
    // The scrape is answered without a credential, like health checks.
    assert!(value(last, "sealtrail_queue_capacity_events", &[]).expect("capacity") > 0.0);
}

/// The Grafana dashboard in `deploy/` queries only metrics sealtrail exports, so renaming one
/// cannot leave a panel silently empty.
#[test]
fn the_grafana_dashboard_queries_only_declared_metrics() {
    use sealtrail_store::metrics as m;
    let declared = [
        m::EVENTS_INGESTED,
        m::EVENTS_DUPLICATE,
        m::EVENTS_FAILED,
        m::QUEUE_DEPTH,
        m::QUEUE_CAPACITY,
        m::BATCH_SIZE,
        m::COMMIT_DURATION,
        m::COMMITS_FAILED,
        m::HTTP_DURATION,
        m::INDEX_LAG,
        m::INDEX_EVENTS,
        m::INDEX_STAGE_DURATION,
        m::CHECKPOINT_AGE,
        m::CHECKPOINT_SIZE,
    ];
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/sealtrail.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    let mut used = std::collections::HashSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("sealtrail_"))
                .collect();
            assert!(!names.is_empty(), "{expr} queries no sealtrail metric");
            for name in names {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| declared.contains(b))
                    .unwrap_or(name);
                assert!(
                    declared.contains(&base),
                    "{name} in {expr} is not a declared metric"
                );
                used.insert(base);
            }
        }
    }
    for name in declared {
        assert!(used.contains(name), "no panel shows {name}");
    }
}
