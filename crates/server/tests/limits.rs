//! Rate limits per credential and per client address (behind trusted proxies only), under
//! bursts from several tasks, and the request timeout.

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::spawn_app_full;
use reqwest::StatusCode;
use sealtrail_server::limits::{LimitSettings, Limits, Rate};

fn rate(n: u32) -> Option<Rate> {
    NonZeroU32::new(n).map(Rate)
}

async fn app_with(settings: LimitSettings) -> common::TestApp {
    spawn_app_full(
        |c| c,
        move |mut s| {
            s.limits = Limits::new(settings);
            s
        },
    )
    .await
}

#[tokio::test]
async fn a_burst_over_a_credentials_limit_is_refused_with_retry_after_and_others_go_on() {
    let per_second = 20;
    let app = app_with(LimitSettings {
        per_credential: rate(per_second),
        ..LimitSettings::default()
    })
    .await;
    let busy = app.key("lim-a", &["read"]).await;
    let other = app.key("lim-b", &["read"]).await;
    let url = app.url("/api/v1/audit-logs?limit=1");
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, token) = (app.http.clone(), url.clone(), busy.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..25 {
                    let r = http
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("send");
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().expect("ascii").to_owned());
                    let kind = r
                        .headers()
                        .get("content-type")
                        .map(|v| v.to_str().expect("ascii").to_owned());
                    let status = r.status();
                    let body: serde_json::Value = r.json().await.expect("json");
                    answers.push((status, retry, kind, body));
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    let limited: Vec<_> = answers
        .iter()
        .filter(|a| a.0 == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(ok + limited.len(), 100, "every answer is 200 or 429");
    // The burst allowance, and what refilled while the burst ran; never more.
    let most = per_second as usize + (elapsed * f64::from(per_second)).ceil() as usize + 1;
    assert!(
        ok >= per_second as usize && ok <= most,
        "{ok} allowed, at most {most}"
    );
    assert!(!limited.is_empty());
    for (_, retry, kind, body) in limited {
        let seconds: u64 = retry
            .as_deref()
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!(seconds >= 1);
        assert_eq!(kind.as_deref(), Some("application/problem+json"));
        assert_eq!(body["status"], 429);
        assert!(
            body["detail"]
                .as_str()
                .expect("detail")
                .contains("credential")
        );
    }
    // Another credential has its own bucket; probes are never limited.
    let r = app.get("/api/v1/audit-logs?limit=1", &other).await;
    assert_eq!(r.status, StatusCode::OK);
    for _ in 0..50 {
        let r = app
            .http
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn client_addresses_come_from_forwarded_headers_only_behind_trusted_proxies() {
    // Behind a trusted proxy (this test's loopback peer), each forwarded client has a bucket.
    let app = app_with(LimitSettings {
        per_ip: rate(5),
        trusted_proxies: vec!["127.0.0.1/32".parse().expect("net")],
        ..LimitSettings::default()
    })
    .await;
    let get = |xff: &'static str| {
        let (http, url) = (app.http.clone(), app.url("/api/v1/integrity/public-keys"));
        async move {
            http.get(url)
                .header("x-forwarded-for", xff)
                .send()
                .await
                .expect("send")
                .status()
        }
    };
    let mut first = Vec::new();
    for _ in 0..7 {
        first.push(get("203.0.113.1").await);
    }
    let ok = first.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((5..=6).contains(&ok), "{first:?}");
    assert_eq!(*first.last().expect("seven"), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get("203.0.113.2").await, StatusCode::OK, "another client");
    // Without trusted proxies the header is not believed: one peer, one bucket, whatever
    // address it claims.
    let app = app_with(LimitSettings {
        per_ip: rate(5),
        ..LimitSettings::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let r = app
            .http
            .get(app.url("/api/v1/integrity/public-keys"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .expect("send");
        statuses.push(r.status());
    }
    assert_eq!(
        *statuses.last().expect("seven"),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn slow_requests_time_out_with_503_but_ingest_is_never_cut() {
    use axum::routing::{get, post};
    let state = sealtrail_server::AppState::new(std::sync::Arc::new(
        sealtrail_store_sqlite::SqliteStore::open(&sealtrail_store_sqlite::SqliteConfig::new(
            tempfile::tempdir().expect("dir").keep(),
        ))
        .expect("store"),
    ));
    let mut state = state;
    state.limits = Limits::new(LimitSettings {
        request_timeout: Some(Duration::from_millis(100)),
        ..LimitSettings::default()
    });
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        "done"
    };
    let router = axum::Router::new()
        .route("/api/v1/slow", get(slow))
        .route("/api/v1/events", post(slow))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            sealtrail_server::limits::enforce,
        ))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{addr}/api/v1/slow"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.expect("problem");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("longer than")
    );
    let r = http
        .post(format!("http://{addr}/api/v1/events"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK, "ingest runs to its answer");
}
