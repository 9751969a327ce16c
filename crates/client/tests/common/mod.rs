//! What the client's test binaries share: a real sealtrail server (SQLite, real HTTP) with an
//! ingest-and-read key for tenant `t`.

#![allow(dead_code)] // Each test binary uses its own part.

use std::net::SocketAddr;
use std::sync::Arc;

use sealtrail_model::Timestamp;
use sealtrail_server::{AppState, bootstrap_admin, serve};
use sealtrail_store::{EventFilter, ListQuery, NewKey, Order, Scope, Store};
use sealtrail_store_sqlite::{SqliteConfig, SqliteStore};

/// A running server.
pub(crate) struct Server {
    /// Its store, to look at what arrived.
    pub(crate) store: Arc<dyn Store>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// A free loopback address (bound and released).
pub(crate) fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// A sealtrail server on `addr` (a free port when `None`) where `token` is a key of tenant
/// `t` with the ingest and read scopes. It stops when dropped.
pub(crate) async fn start_server(addr: Option<SocketAddr>, token: &str) -> Server {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&SqliteConfig::new(dir.path())).expect("store"));
    bootstrap_admin(store.as_ref(), None).await.expect("admin");
    store
        .create_key(NewKey {
            id: "client-test".into(),
            tenant: sealtrail_store::TenantScope::One(sealtrail_store::conformance::tenant("t")),
            scopes: vec![Scope::Ingest, Scope::Read],
            name: "client test".into(),
            token_hash: sealtrail_server::auth::hash_token(token),
            created_at: Timestamp::now(),
        })
        .await
        .expect("key");
    let listener = tokio::net::TcpListener::bind(addr.unwrap_or_else(free_addr))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, AppState::new(store.clone()), async move {
        let _ = rx.await;
    }));
    Server {
        store,
        addr,
        _stop: stop,
        _dir: dir,
    }
}

/// Tenant `t`'s events as stored, in `seq` order.
pub(crate) async fn stored(store: &dyn Store) -> Vec<serde_json::Value> {
    let page = store
        .list(ListQuery {
            tenant: sealtrail_store::conformance::tenant("t"),
            filter: EventFilter::default(),
            order: Order::Asc,
            limit: 1000,
            cursor: None,
        })
        .await
        .expect("list");
    page.items
        .iter()
        .map(|e| serde_json::from_str(e.body.get()).expect("stored JSON"))
        .collect()
}
