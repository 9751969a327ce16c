//! The sealtrail HTTP server.
//!
//! [`app`] builds the axum router over a [`Store`]; [`serve`] runs it on a listener until a
//! shutdown signal, then drains the store's write queue. Tests drive the same router in-process
//! and over a real socket on port 0.
//!
//! **Architecture Invariant:** handlers never touch a database directly; everything goes through
//! the [`Store`] trait, so every backend serves the same API.

pub mod auth;
pub mod catalog;
pub mod checkpointer;
pub mod cors;
mod docs;
pub mod error;
pub mod export;
pub mod graphql;
pub mod ingest;
pub mod integrity;
pub mod jwt;
pub mod keys;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod params;
pub mod read;
pub mod remembered;
pub mod signing;
pub mod ui;
pub mod viewer;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, OriginalUri, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{delete, get, post};
use sealtrail_model::limits::{MAX_JSON_DEPTH, MAX_REQUEST_BYTES};
use sealtrail_model::{Actor, Category, NewEvent, Outcome, Redactor, Target, Timestamp};
use sealtrail_store::{
    ApiKey, NewKey, PreparedEvent, Scope, Store, StoreError, Tenant, TenantScope,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use uuid::Uuid;

use crate::auth::{BOOTSTRAP_KEY_ID, Principal, generate_token, hash_token};
use crate::error::{ApiError, PROBLEM_JSON, problem_response};

/// The header carrying the request id on every response.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The redaction rules for ingested events.
    pub redactor: Arc<Redactor>,
    /// The checkpoint signing keys.
    pub keys: Arc<signing::KeyRing>,
    /// When checkpoints are signed.
    pub checkpoints: checkpointer::CheckpointPolicy,
    /// Rate limits and the request timeout.
    pub limits: Arc<limits::Limits>,
    /// JWT readers (none accepted unless configured).
    pub jwt: Arc<jwt::JwtVerifier>,
    /// Tenants' catalogues, compiled.
    pub catalogs: Arc<catalog::Catalogs>,
    /// Viewer tokens verified already.
    pub viewer_tokens: Arc<remembered::Remembered<Arc<viewer::Grant>>>,
    /// The origins whose pages may read each tenant's data from a browser.
    pub cors: Arc<cors::CorsSettings>,
    /// The newest checkpoint the checkpointer knows of each tenant, for `/metrics`.
    pub newest_checkpoints: checkpointer::Newest,
    /// Where retention archives go: `<archive_dir>/<tenant>/` (the binary: `<data-dir>/archive`).
    pub archive_dir: Arc<std::path::PathBuf>,
    /// How often the retention job runs (zero: never; runs by API or CLI only).
    pub retention_every: std::time::Duration,
    /// One retention run, and one change of legal holds, at a time per tenant.
    pub lifecycle: Arc<lifecycle::Locks>,
    openapi: Arc<str>,
    docs_html: Arc<str>,
}

impl AppState {
    /// State over a store, with the default redaction list and checkpoint policy and a signing
    /// key held only in memory (tests, benchmarks); the binary uses [`AppState::with_keys`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_keys(
            store,
            signing::KeyRing::ephemeral(),
            checkpointer::CheckpointPolicy::default(),
        )
    }

    /// State over a store with its signing keys and checkpoint policy.
    pub fn with_keys(
        store: Arc<dyn Store>,
        keys: signing::KeyRing,
        checkpoints: checkpointer::CheckpointPolicy,
    ) -> Self {
        let openapi: Arc<str> = openapi::document().into();
        let docs_html = docs::render(&openapi).into();
        Self {
            store,
            redactor: Arc::new(Redactor::default()),
            keys: Arc::new(keys),
            checkpoints,
            limits: limits::Limits::new(limits::LimitSettings::default()),
            jwt: Arc::new(
                jwt::JwtVerifier::new(jwt::JwtSettings::default())
                    .expect("the default JWT settings read no file"),
            ),
            catalogs: Arc::default(),
            viewer_tokens: Arc::default(),
            cors: Arc::default(),
            newest_checkpoints: checkpointer::Newest::default(),
            archive_dir: Arc::new(std::env::temp_dir().join("sealtrail-archive")),
            retention_every: std::time::Duration::ZERO,
            lifecycle: Arc::default(),
            openapi,
            docs_html,
        }
    }

    /// Records an event sealtrail makes about itself, in the tenant whose data was touched,
    /// with the acting key as actor. Fails the request when it cannot be recorded: an action
    /// that must be audited does not happen unaudited.
    pub(crate) async fn audit_self(
        &self,
        tenant: &Tenant,
        action: &str,
        category: Category,
        principal: &Principal,
        key: Option<&ApiKey>,
        metadata: Value,
    ) -> Result<(), ApiError> {
        record_self(
            self.store.as_ref(),
            tenant,
            action,
            category,
            principal.actor(),
            key,
            metadata,
        )
        .await
    }

    /// Records `audit.read_cross_tenant` when a key bound to every tenant read a tenant's data.
    pub(crate) async fn audit_cross_tenant_read(
        &self,
        principal: &Principal,
        tenant: &Tenant,
        uri: &OriginalUri,
    ) -> Result<(), ApiError> {
        if !principal.is_global() {
            return Ok(());
        }
        self.audit_self(
            tenant,
            "audit.read_cross_tenant",
            Category::Read,
            principal,
            None,
            serde_json::json!({"path": uri.path(), "query": uri.query()}),
        )
        .await
    }
}

/// Records an event sealtrail makes about itself in `tenant`: `actor` acted, on `key` when
/// given (else on the tenant). Fails when it cannot be recorded: an action that must be audited
/// does not happen unaudited.
pub async fn record_self(
    store: &dyn Store,
    tenant: &Tenant,
    action: &str,
    category: Category,
    actor: Actor,
    key: Option<&ApiKey>,
    metadata: Value,
) -> Result<(), ApiError> {
    store
        .append(vec![self_event(
            tenant, action, category, actor, key, metadata,
        )])
        .await?;
    Ok(())
}

/// An event sealtrail makes about itself in `tenant`, ready to append (or to record on the
/// sanctioned path, as retention's receipt is): `actor` acted, on `key` when given, else on the
/// tenant.
pub(crate) fn self_event(
    tenant: &Tenant,
    action: &str,
    category: Category,
    actor: Actor,
    key: Option<&ApiKey>,
    metadata: Value,
) -> PreparedEvent {
    let target = match key {
        Some(k) => Target {
            target_type: "api_key".into(),
            id: k.id.clone(),
            name: Some(k.name.clone()).filter(|n| !n.is_empty()),
        },
        None => Target {
            target_type: "tenant".into(),
            id: tenant.to_string(),
            name: None,
        },
    };
    let event = NewEvent {
        id: None,
        tenant: None,
        occurred_at: None,
        action: action.to_owned(),
        category,
        event_type: None,
        outcome: Outcome::Success,
        error: None,
        actor,
        target: Some(target),
        organization: None,
        context: None,
        changes: Vec::new(),
        related: Vec::new(),
        metadata: Some(metadata),
    };
    PreparedEvent::new(tenant.clone(), event)
}

/// The router with every route and layer.
pub fn app(state: AppState) -> Router {
    // Installed before the first request, so every metric from the start is kept.
    let _ = metrics::recorder();
    let api = Router::new()
        .route("/events", post(ingest::ingest))
        .route("/audit-logs", get(read::list))
        .route("/audit-logs/search", post(read::search))
        .route("/audit-logs/export", get(export::export))
        .route("/audit-logs/statistics", get(read::statistics))
        .route("/audit-logs/entity/{type}/{id}", get(read::by_entity))
        .route("/audit-logs/user/{actor_id}", get(read::by_user))
        .route("/audit-logs/{id}", get(read::get_one))
        .route("/entities/{type}/{id}/history", get(read::history))
        .route(
            "/entities/{type}/{id}/history/{event_type}",
            get(read::history_of_type),
        )
        .route("/keys", post(keys::create).get(keys::list))
        .route("/viewer-tokens", post(viewer::create))
        .route(
            "/tenants/{tenant}/catalog",
            get(catalog::get).put(catalog::put).delete(catalog::delete),
        )
        .route("/catalog/presets", get(catalog::list_presets))
        .route(
            "/tenants/{tenant}/retention",
            get(lifecycle::get_retention).put(lifecycle::put_retention),
        )
        .route("/tenants/{tenant}/retention/run", post(lifecycle::run))
        .route("/subjects/{actor_id}/anonymize", post(lifecycle::anonymize))
        .route("/tenants/{tenant}/legal-holds", get(lifecycle::list_holds))
        .route(
            "/tenants/{tenant}/legal-holds/{name}",
            get(lifecycle::get_hold)
                .put(lifecycle::put_hold)
                .delete(lifecycle::delete_hold),
        )
        .route("/keys/{id}", delete(keys::revoke))
        .route("/integrity/checkpoint", get(integrity::checkpoint))
        .route("/integrity/proof/{id}", get(integrity::proof))
        .route("/integrity/consistency", get(integrity::consistency))
        .route("/integrity/public-keys", get(integrity::public_keys))
        .route("/openapi.json", get(ops::openapi_json));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
        .route("/ui/verify.js", get(ui::verify))
        .route("/viewer", get(ui::viewer))
        .route("/ui/viewer.js", get(ui::viewer_script))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/docs", get(ops::docs))
        .route("/metrics", get(metrics::scrape))
        .route("/graphql", get(graphql::get).post(graphql::post))
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), limits::enforce))
        .layer(from_fn(metrics::track_http))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(from_fn(problem_for_plain_errors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(state.clone(), cors::cors))
        .layer(from_fn(security_headers))
        .layer(from_fn(request_id))
        .with_state(state)
}

/// The policy of HTML answers (the offline API reference): nothing but its own inline style,
/// no scripts, no frames around it, no forms.
const HTML_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every answer says its content type is not to be sniffed; HTML answers also carry a content
/// security policy and refuse to be framed.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if html {
        // A page that states its own policy (the web UI, the embeddable viewer) keeps it: its
        // `frame-ancestors` says who may frame it.
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(HTML_POLICY),
            );
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

async fn not_found(uri: OriginalUri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed to handle this request".into(),
        Vec::new(),
    )
}

/// Echoes the caller's `x-request-id` (or `x-correlation-id`) or makes one, on every response,
/// and opens the request's tracing span.
async fn request_id(mut request: Request, next: Next) -> Response {
    let given = [&X_REQUEST_ID, &X_CORRELATION_ID]
        .into_iter()
        .find_map(|name| {
            request
                .headers()
                .get(name)
                .filter(|v| !v.is_empty() && v.len() <= 200 && v.to_str().is_ok())
                .cloned()
        });
    let id = given.unwrap_or_else(|| {
        HeaderValue::from_str(&Uuid::now_v7().to_string()).expect("a UUID is a valid header value")
    });
    request
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or(""),
        method = %request.method(),
        path = request.uri().path(),
    );
    let started = std::time::Instant::now();
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "answered"
        );
    });
    response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    response
}

/// Turns the plain-text errors of the framework (unknown route, wrong method, body too large,
/// extractor rejections) into problem+json, keeping their status and headers (`Allow`).
async fn problem_for_plain_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let detail = match (status, String::from_utf8_lossy(&text).trim()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            "this route does not take that method; see Allow".to_owned()
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            format!("the request body is larger than {MAX_REQUEST_BYTES} bytes")
        }
        (_, "") => status.canonical_reason().unwrap_or("error").to_lowercase(),
        (_, text) => text.to_owned(),
    };
    let slug = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::NOT_FOUND => "not-found",
        _ if status.is_server_error() => "internal",
        _ => "bad-request",
    };
    let problem = problem_response(status, slug, detail, Vec::new());
    let (_, body) = problem.into_parts();
    let mut response = Response::from_parts(parts, Body::empty());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, body)
}

/// Parses a JSON request body (content type, nesting depth, syntax), for bodies other than
/// ingest.
pub(crate) fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if content_type(headers) != "application/json" {
        return Err(ApiError::UnsupportedMediaType(
            "send the body as application/json".into(),
        ));
    }
    if sealtrail_model::json::max_depth(body) > MAX_JSON_DEPTH {
        return Err(ApiError::TooDeep(MAX_JSON_DEPTH));
    }
    serde_json::from_slice(body).map_err(ApiError::malformed)
}

/// The media type of a request without parameters, lower case (`""` when absent).
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Why the first admin key could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The configured admin token is too short to be safe.
    #[error("SEALTRAIL_ADMIN_TOKEN must be at least 32 characters")]
    WeakToken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes sure an admin key exists. With `admin_token` (from `SEALTRAIL_ADMIN_TOKEN`) that token
/// becomes the key with id `bootstrap`, bound to every tenant. Without it, when the store has
/// no key at all, a new admin key is created and its token returned, to be shown once.
pub async fn bootstrap_admin(
    store: &dyn Store,
    admin_token: Option<&str>,
) -> Result<Option<String>, BootstrapError> {
    if let Some(token) = admin_token {
        if token.len() < 32 {
            return Err(BootstrapError::WeakToken);
        }
        store
            .put_key(NewKey {
                id: BOOTSTRAP_KEY_ID.into(),
                tenant: TenantScope::All,
                scopes: vec![Scope::Admin],
                name: "bootstrap".into(),
                token_hash: hash_token(token),
                created_at: Timestamp::now(),
            })
            .await?;
        return Ok(None);
    }
    if store.count_keys().await? > 0 {
        return Ok(None);
    }
    let token = generate_token();
    store
        .create_key(NewKey {
            id: Uuid::now_v7().to_string(),
            tenant: TenantScope::All,
            scopes: vec![Scope::Admin],
            name: "initial admin".into(),
            token_hash: hash_token(&token),
            created_at: Timestamp::now(),
        })
        .await?;
    Ok(Some(token))
}

/// Serves until `shutdown` resolves, with the checkpointer running beside it; then stops
/// accepting, lets in-flight requests finish, signs a last checkpoint over everything written,
/// and drains the store's write queue before returning.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    with_checkpointer(state, |service| async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
    })
    .await
}

/// The certificate chain and private key files (PEM) of an HTTPS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// The private key.
    pub key: std::path::PathBuf,
}

/// [`serve`] over TLS (rustls). On SIGHUP the certificate and key files are read again: new
/// connections get the new certificate, open ones go on undisturbed; files that do not load
/// leave the old certificate in use (and the log says why).
pub async fn serve_tls<F>(
    listener: TcpListener,
    state: AppState,
    tls: TlsFiles,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key).await?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.graceful_shutdown(None);
    });
    #[cfg(unix)]
    {
        let (config, tls) = (config.clone(), tls.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                return;
            };
            while hangups.recv().await.is_some() {
                match config.reload_from_pem_file(&tls.cert, &tls.key).await {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert.display(), "TLS certificate read again")
                    }
                    Err(err) => tracing::warn!(
                        error = %err,
                        "the TLS certificate or key cannot be read; the old one stays in use"
                    ),
                }
            }
        });
    }
    let listener = listener.into_std()?;
    with_checkpointer(state, |service| async move {
        axum_server::from_tcp_rustls(listener, config)
            .handle(handle)
            .serve(service)
            .await
    })
    .await
}

/// The service every server runs: the router, with the client's address for the rate limits.
type Service =
    axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, std::net::SocketAddr>;

/// Runs `run` over the app with the checkpointer beside it; afterwards signs a last checkpoint
/// and drains the store.
async fn with_checkpointer<R, Fut>(state: AppState, run: R) -> std::io::Result<()>
where
    R: FnOnce(Service) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    let store = state.store.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let retention = tokio::spawn(lifecycle::run_daily(
        store.clone(),
        state.lifecycle.clone(),
        state.archive_dir.to_path_buf(),
        state.retention_every,
        stopped.clone(),
    ));
    let checkpointer = tokio::spawn(checkpointer::run(
        store.clone(),
        state.keys.clone(),
        state.checkpoints.clone(),
        stopped,
        state.newest_checkpoints.clone(),
    ));
    let result =
        run(app(state).into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    let _ = stop.send(true);
    let _ = retention.await;
    let _ = checkpointer.await;
    store.shutdown().await;
    result
}
