//! The audit layer in a real axum app over a real socket, recording into a real sealtrail
//! server: actor from HS256 and RS256 JWTs, every mutating request in the catch-all mode, the
//! correlation id echoed, the route template, failures, and the context carried into spawned
//! work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use common::{start_server, stored};
use sealtrail_client::{Audit, AuditEvent, AuditLayer, Client, ClientConfig, audited};
use sealtrail_store::Store;
use serde_json::{Value, json};

const TOKEN: &str = "st_layertestlayertestlayertestlayertestlayer01";
const SECRET: &[u8] = b"layer-test-secret";

/// Serves `router` with peer addresses on a free port.
async fn serve_app(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    base
}

fn client(addr: SocketAddr, spool: &std::path::Path) -> Arc<Client> {
    Arc::new(
        Client::with_config(ClientConfig {
            spool_dir: spool.to_owned(),
            batch_max_wait: Duration::from_millis(2),
            ..ClientConfig::new(format!("http://{addr}"), TOKEN)
        })
        .expect("client"),
    )
}

fn routes() -> Router {
    Router::new()
        .route(
            "/things/{id}",
            post(
                |audit: Audit, axum::extract::Path(id): axum::extract::Path<String>| async move {
                    audit.target("thing", &id);
                    // Work spawned from the handler keeps the request's actor and correlation id.
                    let done =
                        sealtrail_client::spawn(async { AuditEvent::in_context("thing.indexed") })
                            .await
                            .expect("task");
                    audit.then(done);
                    StatusCode::CREATED
                },
            )
            .layer(audited("thing.created").event_type("CREATED")),
        )
        .route(
            "/broken",
            post(|audit: Audit| async move {
                audit.error("the thing is broken");
                StatusCode::UNPROCESSABLE_ENTITY
            }),
        )
        .route(
            "/plain",
            get(|| async { "ok" }).delete(|| async { StatusCode::NO_CONTENT }),
        )
}

fn hs256(sub: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "name": "Ann", "email": "ann@example.com", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET).expect("key"),
    )
    .expect("jwt")
}

async fn wait_for(store: &dyn Store, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let e = stored(store).await;
        if e.len() >= n {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sealtrail never held {n} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_routes_are_audited_with_the_jwt_actor_and_the_request_context() {
    let server = start_server(None, TOKEN).await;
    let (store, addr) = (server.store.clone(), server.addr);
    let spool = tempfile::tempdir().expect("spool");
    let layer = AuditLayer::new(client(addr, spool.path()))
        .jwt_hs256(SECRET)
        .expect("secret");
    let base = serve_app(routes().layer(layer)).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/things/T-1"))
        .bearer_auth(hs256("u-9"))
        .header("x-request-id", "req-77")
        .header("user-agent", "layer-test/1")
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-correlation-id"], "req-77", "echoed");
    // Unmarked routes are not audited in the default mode.
    http.get(format!("{base}/plain"))
        .send()
        .await
        .expect("send");
    let stored = wait_for(store.as_ref(), 2).await;
    let e = &stored[0];
    assert_eq!(e["action"], "thing.created");
    assert_eq!(e["event_type"], "CREATED");
    assert_eq!(e["actor"]["id"], "u-9");
    assert_eq!(e["actor"]["name"], "Ann");
    assert_eq!(
        e["target"],
        json!({"type": "thing", "id": "T-1", "name": null})
    );
    let ctx = &e["context"];
    assert_eq!(ctx["correlation_id"], "req-77");
    assert_eq!(ctx["endpoint"], "/things/{id}");
    assert_eq!(ctx["method"], "POST");
    assert_eq!(ctx["status_code"], 201);
    assert_eq!(ctx["user_agent"], "layer-test/1");
    assert_eq!(
        ctx["ip"], "127.0.0.1",
        "x-forwarded-for from an untrusted peer is ignored"
    );
    assert!(ctx["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    assert_eq!(e["outcome"], "success");
    let follow = &stored[1];
    assert_eq!(follow["action"], "thing.indexed");
    assert_eq!(
        follow["actor"]["id"], "u-9",
        "the spawned task kept the actor"
    );
    assert_eq!(follow["context"]["correlation_id"], "req-77");
    assert_eq!(stored.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_request_is_audited_in_the_catch_all_mode_with_rs256() {
    let server = start_server(None, TOKEN).await;
    let (store, addr) = (server.store.clone(), server.addr);
    let spool = tempfile::tempdir().expect("spool");
    let public = include_bytes!("data/rs256-test-public.pem");
    let private = include_bytes!("data/rs256-test-private.pem");
    let layer = AuditLayer::new(client(addr, spool.path()))
        .audit_all_mutating()
        .jwt_rs256_pem(public)
        .expect("public key")
        .trusted_proxies(["127.0.0.0/8".parse().expect("net")]);
    let base = serve_app(routes().layer(layer)).await;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"sub": "svc-1", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(private).expect("private key"),
    )
    .expect("jwt");
    let http = reqwest::Client::new();
    let r = http
        .delete(format!("{base}/plain"))
        .bearer_auth(&token)
        .header("x-forwarded-for", "203.0.113.5, 127.0.0.9")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let made = r.headers()["x-correlation-id"]
        .to_str()
        .expect("id")
        .to_owned();
    http.get(format!("{base}/plain"))
        .send()
        .await
        .expect("send");
    let r = http
        .post(format!("{base}/broken"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let stored = wait_for(store.as_ref(), 2).await;
    assert_eq!(stored.len(), 2, "the GET is not audited");
    assert_eq!(stored[0]["action"], "http.delete");
    assert_eq!(stored[0]["actor"]["id"], "svc-1");
    assert_eq!(
        stored[0]["context"]["ip"], "203.0.113.5",
        "a trusted proxy's header is read"
    );
    assert_eq!(
        stored[0]["context"]["correlation_id"], made,
        "created when absent"
    );
    assert_eq!(made.len(), 32);
    assert_eq!(stored[1]["action"], "http.post");
    assert_eq!(stored[1]["actor"]["id"], "anonymous");
    assert_eq!(stored[1]["outcome"], "failure");
    assert_eq!(stored[1]["error"], "the thing is broken");
    assert_eq!(
        stored[1]["context"]["correlation_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}
