//! `asset-service`: an example host application — an asset register with assignments,
//! transfers, maintenance, documents and notes — whose every change is audited into sealtrail
//! through `sealtrail-client`'s layer, and which serves each asset's history from sealtrail.
//!
//! ```text
//! ASSET_SERVICE_JWT_SECRET=dev asset-service --listen 127.0.0.1:3000 \
//!     --sealtrail-url http://127.0.0.1:8080 --sealtrail-token st_…
//! ```
//!
//! Requests carry `Authorization: Bearer <JWT>` signed with HS256 and the secret above; its
//! `sub` (and `name`, `email`) is the actor. The register itself lives in memory: this is an
//! example of auditing, not of storage.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use clap::Parser;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sealtrail_client::{
    Actor, ActorType, Audit, AuditEvent, AuditLayer, Category, Client, ClientConfig, audited,
    changes,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An asset register audited into sealtrail.
#[derive(Debug, Parser)]
#[command(name = "asset-service", version)]
struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// sealtrail's base URL
    #[arg(
        long,
        env = "ASSET_SERVICE_SEALTRAIL_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    sealtrail_url: String,
    /// A sealtrail API key with the ingest and read scopes
    #[arg(long, env = "ASSET_SERVICE_SEALTRAIL_TOKEN", hide_env_values = true)]
    sealtrail_token: String,
    /// The sealtrail tenant, when the key is an admin key bound to every tenant (local
    /// development with SEALTRAIL_ADMIN_TOKEN)
    #[arg(long, env = "ASSET_SERVICE_SEALTRAIL_TENANT")]
    sealtrail_tenant: Option<String>,
    /// Where undelivered audit events wait while sealtrail is unreachable
    #[arg(long, default_value = "asset-service-spool")]
    spool_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
struct Asset {
    id: String,
    name: String,
    serial: Option<String>,
    status: Status,
    location: Option<String>,
    assignee: Option<String>,
    documents: Vec<Document>,
    notes: Vec<String>,
}

/// Where an asset is in its life, as the register names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Status {
    /// In stock, ready to be assigned.
    Active,
    /// Assigned to a person.
    Assigned,
    /// Out for maintenance.
    Maintenance,
    /// Taken out of service for good.
    Retired,
    /// Reported lost.
    Lost,
}

impl Status {
    const ALL: [Status; 5] = [
        Status::Active,
        Status::Assigned,
        Status::Maintenance,
        Status::Retired,
        Status::Lost,
    ];

    fn name(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Assigned => "ASSIGNED",
            Status::Maintenance => "MAINTENANCE",
            Status::Retired => "RETIRED",
            Status::Lost => "LOST",
        }
    }

    /// A status sent by a client: refused with 422 (and recorded as the request's error)
    /// unless it is one of the register's.
    fn parse(audit: &Audit, text: &str) -> Result<Status> {
        Status::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Status::ALL.iter().map(|s| s.name()).collect();
                let message = format!("status must be one of {}, not {text:?}", names.join(", "));
                audit.error(message.clone());
                AppError(StatusCode::UNPROCESSABLE_ENTITY, message)
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
struct Document {
    id: String,
    name: String,
}

#[derive(Default)]
struct Register {
    assets: HashMap<String, Asset>,
    /// Open maintenance tickets: ticket id → asset id.
    maintenance: HashMap<String, String>,
}

#[derive(Clone)]
struct AppState {
    register: Arc<Mutex<Register>>,
    client: Arc<Client>,
    http: reqwest::Client,
    sealtrail_url: String,
    sealtrail_token: String,
    sealtrail_tenant: Option<String>,
    jwt: Arc<DecodingKey>,
}

/// An error answer, whose text the audit layer records as the failure.
struct AppError(StatusCode, String);

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
struct ErrorBody {
    /// What went wrong.
    error: String,
}

/// The app's OpenAPI document, served at `/api/v1/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "asset-service", description = "An asset register whose every change is audited into sealtrail."),
    paths(
        create, show, update, remove, assign, transfer, schedule_maintenance,
        complete_maintenance, add_document, remove_document, add_note, retire, history,
        history_of_type
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerJwt)
)]
struct ApiDoc;

/// Declares the bearer JWT every route takes.
struct BearerJwt;

impl utoipa::Modify for BearerJwt {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 with ASSET_SERVICE_JWT_SECRET; claims sub and exp, optional name and email",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /api/v1/openapi.json`: the document, without a token.
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

type Result<T> = std::result::Result<T, AppError>;

/// The request's JSON body, or a 400/422 answer (recorded as the request's error) when it is
/// not one.
fn json_body<T>(audit: &Audit, body: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    body.map(|Json(value)| value).map_err(|rejection| {
        let message = rejection.body_text();
        audit.error(message.clone());
        AppError(rejection.status(), message)
    })
}

fn not_found(audit: &Audit, what: &str, id: &str) -> AppError {
    let message = format!("{what} {id} does not exist");
    audit.error(message.clone());
    AppError(StatusCode::NOT_FOUND, message)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSET_SERVICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let secret = std::env::var("ASSET_SERVICE_JWT_SECRET")
        .context("set ASSET_SERVICE_JWT_SECRET to the HS256 secret of your tokens")?;
    let client = Arc::new(Client::with_config(ClientConfig {
        spool_dir: args.spool_dir.clone(),
        tenant: args.sealtrail_tenant.clone(),
        ..ClientConfig::new(&args.sealtrail_url, &args.sealtrail_token)
    })?);
    let state = AppState {
        register: Arc::default(),
        client: client.clone(),
        http: reqwest::Client::new(),
        sealtrail_url: args.sealtrail_url.trim_end_matches('/').to_owned(),
        sealtrail_token: args.sealtrail_token.clone(),
        sealtrail_tenant: args.sealtrail_tenant.clone(),
        jwt: Arc::new(DecodingKey::from_secret(secret.as_bytes())?),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "asset-service: listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // Whatever is still buffered is sent or spooled before the process ends.
    client.shutdown().await?;
    Ok(())
}

fn app(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/assets",
            post(create).layer(
                audited("asset.created")
                    .category(Category::Create)
                    .event_type("CREATED"),
            ),
        )
        // One marker per method router: a MethodRouter's layer wraps every method added so far.
        .route(
            "/assets/{id}",
            patch(update).layer(
                audited("asset.updated")
                    .category(Category::Update)
                    .event_type("UPDATED"),
            ),
        )
        .route(
            "/assets/{id}",
            delete(remove).layer(
                audited("asset.deleted")
                    .category(Category::Delete)
                    .event_type("DELETED"),
            ),
        )
        .route(
            "/assets/{id}/assign",
            post(assign).layer(
                audited("asset.assigned")
                    .category(Category::Update)
                    .event_type("ASSIGNED"),
            ),
        )
        .route(
            "/assets/{id}/transfer",
            post(transfer).layer(
                audited("asset.transferred")
                    .category(Category::Update)
                    .event_type("TRANSFERRED"),
            ),
        )
        .route(
            "/assets/{id}/maintenance",
            post(schedule_maintenance).layer(
                audited("asset.maintenance_scheduled")
                    .category(Category::Update)
                    .event_type("MAINTENANCE_SCHEDULED"),
            ),
        )
        .route(
            "/maintenance/{id}/complete",
            post(complete_maintenance).layer(
                audited("asset.maintenance_completed")
                    .category(Category::Update)
                    .event_type("MAINTENANCE_COMPLETED"),
            ),
        )
        .route(
            "/assets/{id}/documents",
            post(add_document).layer(
                audited("asset.document_added")
                    .category(Category::Update)
                    .event_type("DOCUMENT_ADDED"),
            ),
        )
        .route(
            "/assets/{id}/documents/{doc}",
            delete(remove_document).layer(
                audited("asset.document_removed")
                    .category(Category::Update)
                    .event_type("DOCUMENT_REMOVED"),
            ),
        )
        .route(
            "/assets/{id}/notes",
            post(add_note).layer(
                audited("asset.note_added")
                    .category(Category::Update)
                    .event_type("NOTE_ADDED"),
            ),
        )
        .route(
            "/assets/{id}/retire",
            post(retire).layer(
                audited("asset.retired")
                    .category(Category::Update)
                    .event_type("RETIRED"),
            ),
        )
        .route("/assets/{id}", get(show))
        .route("/assets/{id}/history", get(history))
        .route("/assets/{id}/history/{event_type}", get(history_of_type))
        .layer(AuditLayer::new(state.client.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .nest("/api/v1", api)
        .with_state(state)
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    name: Option<String>,
    email: Option<String>,
}

/// Requires a valid HS256 bearer JWT and hands its subject to the audit layer as the actor.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let claims = token.and_then(|t| {
        jsonwebtoken::decode::<Claims>(t.trim(), &state.jwt, &Validation::new(Algorithm::HS256))
            .ok()
    });
    let Some(claims) = claims else {
        return AppError(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required".into(),
        )
        .into_response();
    };
    req.extensions_mut().insert(Actor {
        id: claims.claims.sub,
        actor_type: ActorType::User,
        name: claims.claims.name,
        email: claims.claims.email,
    });
    next.run(req).await
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

/// Applies `change` to asset `id` and tells the audit what changed.
fn change_asset(
    state: &AppState,
    audit: &Audit,
    id: &str,
    change: impl FnOnce(&mut Asset) -> Result<()>,
) -> Result<Asset> {
    audit.target("asset", id);
    let mut register = state
        .register
        .lock()
        .expect("register lock is never poisoned");
    let asset = register
        .assets
        .get_mut(id)
        .ok_or_else(|| not_found(audit, "asset", id))?;
    let before = asset.clone();
    change(asset)?;
    audit.changes(changes(&before, &*asset).expect("an asset serialises"));
    Ok(asset.clone())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewAsset {
    name: String,
    serial: Option<String>,
    /// One of the register's statuses; `ACTIVE` when absent.
    status: Option<String>,
    location: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/assets",
    summary = "Creates an asset (status ACTIVE unless another is given).",
    request_body = NewAsset,
    responses((status = 201, description = "The asset, created", body = Asset), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 400, description = "The body is not JSON", body = ErrorBody), (status = 422, description = "The body or the status is not valid", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    audit: Audit,
    Json(new): Json<NewAsset>,
) -> Result<(StatusCode, Json<Asset>)> {
    let status = match new.status.as_deref() {
        Some(text) => Status::parse(&audit, text)?,
        None => Status::Active,
    };
    let asset = Asset {
        id: new_id("A"),
        name: new.name,
        serial: new.serial,
        status,
        location: new.location,
        assignee: None,
        documents: Vec::new(),
        notes: Vec::new(),
    };
    audit.target("asset", &asset.id);
    audit.changes(changes(&json!({}), &asset).expect("an asset serialises"));
    state
        .register
        .lock()
        .expect("register lock is never poisoned")
        .assets
        .insert(asset.id.clone(), asset.clone());
    Ok((StatusCode::CREATED, Json(asset)))
}

#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}",
    summary = "One asset (a read: not recorded).",
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 200, description = "The asset", body = Asset), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn show(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
) -> Result<Json<Asset>> {
    let register = state
        .register
        .lock()
        .expect("register lock is never poisoned");
    register
        .assets
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| not_found(&audit, "asset", &id))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct AssetPatch {
    name: Option<String>,
    serial: Option<String>,
    status: Option<String>,
    location: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/assets/{id}",
    summary = "Changes an asset; a new status is recorded as asset.status_changed.",
    request_body = AssetPatch,
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 200, description = "The asset, changed", body = Asset), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody), (status = 400, description = "The body is not JSON", body = ErrorBody), (status = 422, description = "The body or a status is not valid", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn update(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
    patch: std::result::Result<Json<AssetPatch>, JsonRejection>,
) -> Result<Json<Asset>> {
    // Whatever fails from here on is recorded against the asset, so it shows in its history.
    audit.target("asset", &id);
    let patch = json_body(&audit, patch)?;
    let status = patch
        .status
        .as_deref()
        .map(|text| Status::parse(&audit, text))
        .transpose()?;
    let asset = change_asset(&state, &audit, &id, |a| {
        if let Some(status) = status
            && status != a.status
        {
            // A status change is its own domain event.
            audit.event_type("STATUS_CHANGED");
            audit.action("asset.status_changed");
            a.status = status;
        }
        a.name = patch.name.unwrap_or(a.name.clone());
        a.serial = patch.serial.or(a.serial.take());
        a.location = patch.location.or(a.location.take());
        Ok(())
    })?;
    Ok(Json(asset))
}

#[utoipa::path(
    delete,
    path = "/api/v1/assets/{id}",
    summary = "Deletes an asset.",
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn remove(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    audit.target("asset", &id);
    let removed = state
        .register
        .lock()
        .expect("register lock is never poisoned")
        .assets
        .remove(&id)
        .ok_or_else(|| not_found(&audit, "asset", &id))?;
    audit.changes(changes(&removed, &json!({})).expect("an asset serialises"));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Assignment {
    user_id: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/assign",
    summary = "Assigns an asset to a user.",
    request_body = Assignment,
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 200, description = "The asset, assigned", body = Asset), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody), (status = 400, description = "The body is not JSON", body = ErrorBody), (status = 422, description = "The body or a status is not valid", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn assign(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
    body: std::result::Result<Json<Assignment>, JsonRejection>,
) -> Result<Json<Asset>> {
    // Whatever fails from here on is recorded against the asset, so it shows in its history.
    audit.target("asset", &id);
    let body = json_body(&audit, body)?;
    let asset = change_asset(&state, &audit, &id, |a| {
        a.assignee = Some(body.user_id);
        a.status = Status::Assigned;
        Ok(())
    })?;
    Ok(Json(asset))
}

#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/transfer",
    summary = "Transfers an asset to another user (recorded as a transfer and the assignment it causes).",
    request_body = Assignment,
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 200, description = "The transfer id and the asset", body = Object), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody), (status = 400, description = "The body is not JSON", body = ErrorBody), (status = 422, description = "The body or a status is not valid", body = ErrorBody), (status = 409, description = "Assigned to that user already", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn transfer(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
    body: std::result::Result<Json<Assignment>, JsonRejection>,
) -> Result<Json<Value>> {
    // Whatever fails from here on is recorded against the asset, so it shows in its history.
    audit.target("asset", &id);
    let body = json_body(&audit, body)?;
    let transfer_id = new_id("T");
    let mut from = None;
    let asset = change_asset(&state, &audit, &id, |a| {
        from = a.assignee.clone();
        if from.as_deref() == Some(body.user_id.as_str()) {
            let message = format!("asset {id} is assigned to {} already", body.user_id);
            audit.error(message.clone());
            return Err(AppError(StatusCode::CONFLICT, message));
        }
        a.assignee = Some(body.user_id.clone());
        a.status = Status::Assigned;
        Ok(())
    })?;
    audit.related("transfer", &transfer_id);
    audit.metadata(json!({"from": from, "to": body.user_id}));
    // The assignment the transfer causes is an event of its own, linked through the transfer.
    let assignment = AuditEvent::in_context("asset.assigned")
        .with_category(Category::Update)
        .with_event_type("ASSIGNED")
        .with_target("asset", &id)
        .with_related("transfer", &transfer_id)
        .with_changes(vec![sealtrail_client::Change {
            field: "assignee".into(),
            old_value: json!(from),
            new_value: json!(body.user_id),
        }]);
    audit.then(assignment);
    Ok(Json(json!({"transfer_id": transfer_id, "asset": asset})))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Maintenance {
    description: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/maintenance",
    summary = "Sends an asset to maintenance.",
    request_body = Maintenance,
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 201, description = "The maintenance id and the asset", body = Object), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody), (status = 400, description = "The body is not JSON", body = ErrorBody), (status = 422, description = "The body or a status is not valid", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn schedule_maintenance(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
    body: std::result::Result<Json<Maintenance>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    // Whatever fails from here on is recorded against the asset, so it shows in its history.
    audit.target("asset", &id);
    let body = json_body(&audit, body)?;
    let ticket = new_id("M");
    let asset = change_asset(&state, &audit, &id, |a| {
        a.status = Status::Maintenance;
        Ok(())
    })?;
    state
        .register
        .lock()
        .expect("register lock is never poisoned")
        .maintenance
        .insert(ticket.clone(), id);
    audit.related("maintenance", &ticket);
    audit.metadata(json!({"description": body.description}));
    Ok((
        StatusCode::CREATED,
        Json(json!({"maintenance_id": ticket, "asset": asset})),
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/maintenance/{id}/complete",
    summary = "Completes a maintenance.",
    params(("id" = String, Path, description = "The maintenance id")),
    responses((status = 200, description = "The asset, back from maintenance", body = Asset), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such maintenance", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn complete_maintenance(
    State(state): State<AppState>,
    audit: Audit,
    Path(ticket): Path<String>,
) -> Result<Json<Asset>> {
    let asset_id = state
        .register
        .lock()
        .expect("register lock is never poisoned")
        .maintenance
        .remove(&ticket)
        .ok_or_else(|| not_found(&audit, "maintenance", &ticket))?;
    audit.related("maintenance", &ticket);
    let asset = change_asset(&state, &audit, &asset_id, |a| {
        a.status = if a.assignee.is_some() {
            Status::Assigned
        } else {
            Status::Active
        };
        Ok(())
    })?;
    Ok(Json(asset))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewDocument {
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/documents",
    summary = "Attaches a document to an asset.",
    request_body = NewDocument,
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 201, description = "The document", body = Document), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody), (status = 400, description = "The body is not JSON", body = ErrorBody), (status = 422, description = "The body or a status is not valid", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn add_document(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
    body: std::result::Result<Json<NewDocument>, JsonRejection>,
) -> Result<(StatusCode, Json<Document>)> {
    // Whatever fails from here on is recorded against the asset, so it shows in its history.
    audit.target("asset", &id);
    let body = json_body(&audit, body)?;
    let document = Document {
        id: new_id("D"),
        name: body.name,
    };
    let doc = document.clone();
    change_asset(&state, &audit, &id, |a| {
        a.documents.push(doc);
        Ok(())
    })?;
    audit.related("document", &document.id);
    Ok((StatusCode::CREATED, Json(document)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/assets/{id}/documents/{doc}",
    summary = "Removes a document from an asset.",
    params(("id" = String, Path, description = "The asset id"), ("doc" = String, Path, description = "The document id")),
    responses((status = 204, description = "Removed"), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset or document", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn remove_document(
    State(state): State<AppState>,
    audit: Audit,
    Path((id, doc)): Path<(String, String)>,
) -> Result<StatusCode> {
    change_asset(&state, &audit, &id, |a| {
        let before = a.documents.len();
        a.documents.retain(|d| d.id != doc);
        if a.documents.len() == before {
            return Err(not_found(&audit, "document", &doc));
        }
        Ok(())
    })?;
    audit.related("document", &doc);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Note {
    text: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/notes",
    summary = "Adds a note to an asset.",
    request_body = Note,
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 201, description = "The asset with its notes", body = Asset), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody), (status = 400, description = "The body is not JSON", body = ErrorBody), (status = 422, description = "The body or a status is not valid", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn add_note(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
    body: std::result::Result<Json<Note>, JsonRejection>,
) -> Result<(StatusCode, Json<Asset>)> {
    // Whatever fails from here on is recorded against the asset, so it shows in its history.
    audit.target("asset", &id);
    let body = json_body(&audit, body)?;
    let asset = change_asset(&state, &audit, &id, |a| {
        a.notes.push(body.text);
        Ok(())
    })?;
    Ok((StatusCode::CREATED, Json(asset)))
}

#[utoipa::path(
    post,
    path = "/api/v1/assets/{id}/retire",
    summary = "Retires an asset.",
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f")),
    responses((status = 200, description = "The asset, retired", body = Asset), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 404, description = "No such asset", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn retire(
    State(state): State<AppState>,
    audit: Audit,
    Path(id): Path<String>,
) -> Result<Json<Asset>> {
    let asset = change_asset(&state, &audit, &id, |a| {
        a.status = Status::Retired;
        a.assignee = None;
        Ok(())
    })?;
    Ok(Json(asset))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct Paging {
    cursor: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}/history",
    summary = "The asset's timeline, served from sealtrail.",
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f"), Paging),
    responses((status = 200, description = "A page of the asset's events from sealtrail, oldest first", body = Object), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 502, description = "sealtrail did not answer", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Response> {
    sealtrail_history(&state, &id, None, paging).await
}

#[utoipa::path(
    get,
    path = "/api/v1/assets/{id}/history/{event_type}",
    summary = "The asset's timeline of one event type, served from sealtrail.",
    params(("id" = String, Path, description = "The asset id, e.g. A-1a2b3c4d5e6f"), ("event_type" = String, Path, description = "An event type, e.g. ASSIGNED"), Paging),
    responses((status = 200, description = "A page of the asset's events of that type, oldest first", body = Object), (status = 401, description = "No valid bearer JWT", body = ErrorBody), (status = 502, description = "sealtrail did not answer", body = ErrorBody)),
    security(("bearer" = []))
)]
async fn history_of_type(
    State(state): State<AppState>,
    Path((id, event_type)): Path<(String, String)>,
    Query(paging): Query<Paging>,
) -> Result<Response> {
    sealtrail_history(&state, &id, Some(event_type), paging).await
}

/// The asset's timeline from sealtrail, oldest first, paginated by sealtrail's cursor.
async fn sealtrail_history(
    state: &AppState,
    id: &str,
    event_type: Option<String>,
    paging: Paging,
) -> Result<Response> {
    let mut query: Vec<(&str, String)> = vec![("limit", paging.limit.unwrap_or(50).to_string())];
    if let Some(c) = paging.cursor {
        query.push(("cursor", c));
    }
    if let Some(t) = event_type {
        query.push(("event_type", t));
    }
    if let Some(t) = &state.sealtrail_tenant {
        query.push(("tenant", t.clone()));
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let answer = state
        .http
        .get(format!(
            "{}/api/v1/entities/asset/{}/history?{query}",
            state.sealtrail_url,
            form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        ))
        .bearer_auth(&state.sealtrail_token)
        .send()
        .await
        .map_err(|e| {
            AppError(
                StatusCode::BAD_GATEWAY,
                format!("sealtrail is unreachable: {e}"),
            )
        })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body: Value = answer.json().await.map_err(|e| {
        AppError(
            StatusCode::BAD_GATEWAY,
            format!("sealtrail answered badly: {e}"),
        )
    })?;
    Ok((status, Json(body)).into_response())
}
