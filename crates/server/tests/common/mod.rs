//! The test harness: a real server on a random port over a fresh SQLite store, and a typed
//! client for it.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part of the harness.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use sealtrail_server::{AppState, bootstrap_admin, serve};
use sealtrail_store::Store;
use sealtrail_store_sqlite::{SqliteConfig, SqliteStore};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const ADMIN: &str = "st_admintokenadmintokenadmintokenadmintoken00";

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
    pub store: Arc<dyn Store>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `errors[].field` of a problem body.
    pub fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|e| e["field"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_problem(&self) -> bool {
        self.headers.get("content-type").is_some_and(|v| {
            v.to_str()
                .unwrap_or("")
                .starts_with("application/problem+json")
        })
    }

    pub fn seqs(&self) -> Vec<u64> {
        self.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|c| c).await
}

pub async fn spawn_app_with(configure: impl FnOnce(SqliteConfig) -> SqliteConfig) -> TestApp {
    spawn_app_full(configure, |s| s).await
}

/// A server whose state `adjust` changes before it starts (rate limits, timeouts).
pub async fn spawn_app_full(
    configure: impl FnOnce(SqliteConfig) -> SqliteConfig,
    adjust: impl FnOnce(AppState) -> AppState,
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir").keep();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&configure(SqliteConfig::new(&data_dir))).expect("open store"));
    bootstrap_admin(store.as_ref(), Some(ADMIN))
        .await
        .expect("bootstrap");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let mut state = AppState::new(store.clone());
    // Checkpoint after every event, looking often: every test also exercises the checkpointer.
    state.checkpoints = sealtrail_server::checkpointer::CheckpointPolicy {
        every_events: 1,
        every: std::time::Duration::ZERO,
        heartbeat: std::time::Duration::from_secs(3600),
        tick: std::time::Duration::from_millis(20),
        witness_file: Some(data_dir.join("witness.ndjson")),
    };
    state.archive_dir = Arc::new(data_dir.join("archive"));
    let state = adjust(state);
    let server = tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        http: reqwest::Client::new(),
        data_dir,
        store,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request; `body` is sent as-is with `content_type` when given.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.raw(Method::GET, path, Some(token), None, None).await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.raw(
            Method::PUT,
            path,
            Some(token),
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.raw(Method::DELETE, path, Some(token), None, None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.raw(
            Method::POST,
            path,
            Some(token),
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn ingest(&self, token: &str, body: &Value) -> Answer {
        self.post("/api/v1/events", token, body).await
    }

    /// Seeds a key straight into the store (so no `audit.key_created` event lands in the
    /// tenant's log) and returns its token. `POST /keys` itself is tested on its own.
    pub async fn key(&self, tenant: &str, scopes: &[&str]) -> String {
        let token = sealtrail_server::auth::generate_token();
        self.store
            .create_key(sealtrail_store::NewKey {
                id: uuid::Uuid::now_v7().to_string(),
                tenant: match tenant {
                    "*" => sealtrail_store::TenantScope::All,
                    name => sealtrail_store::TenantScope::One(
                        sealtrail_store::conformance::tenant(name),
                    ),
                },
                scopes: scopes
                    .iter()
                    .map(|s| sealtrail_store::Scope::parse(s).expect("scope"))
                    .collect(),
                name: format!("{tenant} key"),
                token_hash: sealtrail_server::auth::hash_token(&token),
                created_at: sealtrail_model::Timestamp::now(),
            })
            .await
            .expect("create key");
        token
    }

    /// Every event of a tenant, oldest first, paging to the end.
    pub async fn all_events(&self, token: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut path = "/api/v1/audit-logs?order=asc&limit=1000".to_owned();
        loop {
            let a = self.get(&path, token).await;
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
            out.extend(a.body["items"].as_array().expect("items").iter().cloned());
            match a.body["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/audit-logs?order=asc&limit=1000&cursor={c}"),
                None => return out,
            }
        }
    }

    /// Stops the server gracefully and waits until the store is drained and closed.
    pub async fn stop(mut self) -> PathBuf {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
        self.data_dir.clone()
    }
}

/// A minimal valid event.
pub fn event(action: &str, actor: &str) -> Value {
    json!({"action": action, "actor": {"id": actor}})
}

impl TestApp {
    /// Waits (up to 30 s) until the tenant's latest checkpoint covers `size` events.
    pub async fn checkpoint_at(&self, token: &str, size: u64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let a = self.get("/api/v1/integrity/checkpoint", token).await;
            if a.status == StatusCode::OK && a.body["size"].as_u64() == Some(size) {
                return a.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint of size {size}: {:?}",
                a.body
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
