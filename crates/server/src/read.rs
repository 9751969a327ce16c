//! Read endpoints: lists with filters and cursors, one event by id, entity and user lists,
//! the search body, and entity timelines.

use axum::Json;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sealtrail_model::FieldError;
use sealtrail_store::{HistoryQuery, ListQuery, Page, Scope};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Principal, Viewable};
use crate::error::ApiError;
use crate::params::{
    ENTITY_FIXED, ListParams, USER_FIXED, list_filters, parse_list_query, parse_search_body,
};

#[derive(Serialize)]
struct PageBody {
    items: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
}

/// Serialises a page; timeline items gain `"relation"`.
fn page_response(page: Page) -> Response {
    let items = page
        .items
        .into_iter()
        .map(|e| match e.relation {
            None => e.body,
            Some(relation) => {
                // The body is an object: put the relation before its closing brace.
                let text = e.body.get();
                let trimmed = text.trim_end().strip_suffix('}').unwrap_or(text);
                let with = format!("{trimmed},\"relation\":\"{}\"}}", relation.as_str());
                RawValue::from_string(with).expect("splicing a field into an object keeps it JSON")
            }
        })
        .collect();
    Json(PageBody {
        items,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    })
    .into_response()
}

/// Runs a list for a principal and answers its page as JSON.
async fn run_list(
    state: &AppState,
    principal: &Principal,
    params: ListParams,
    uri: &OriginalUri,
) -> Result<Response, ApiError> {
    Ok(page_response(
        list_page(state, principal, params, uri).await?,
    ))
}

/// Runs a list for a principal: checks the read scope and tenant, audits cross-tenant reads
/// (REST and GraphQL alike).
pub(crate) async fn list_page(
    state: &AppState,
    principal: &Principal,
    params: ListParams,
    uri: &OriginalUri,
) -> Result<Page, ApiError> {
    principal.require(Scope::Read)?;
    let tenant = principal.tenant(params.tenant.as_deref(), "tenant", false)?;
    let mut query = ListQuery {
        tenant: tenant.clone(),
        filter: params.filter,
        order: params.order,
        limit: params.limit,
        cursor: params.cursor,
    };
    let in_scope = principal
        .viewer
        .as_ref()
        .is_none_or(|v| v.scope.constrain(&mut query.filter));
    let page = if in_scope {
        state.store.list(query).await?
    } else {
        Page {
            items: Vec::new(),
            next_cursor: None,
        }
    };
    state
        .audit_cross_tenant_read(principal, &tenant, uri)
        .await?;
    state.audit_viewed(principal, &tenant, uri).await?;
    Ok(page)
}

/// List a tenant's events, filtered, newest first by default.
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs",
    tag = "read",
    params(
        crate::openapi::PagingDoc,
    ),
    responses(
        (status = 200, description = "A page of events", body = crate::openapi::EventPage),
        (status = 400, description = "A bad query parameter, named in errors", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No read scope, or another tenant", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Viewable(principal): Viewable,
    uri: OriginalUri,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = parse_list_query(raw.as_deref(), &list_filters(&[]).collect::<Vec<_>>())
        .map_err(ApiError::BadParameters)?;
    run_list(&state, &principal, params, &uri).await
}

/// One event by id.
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs/{id}",
    tag = "read",
    params(
        ("id" = Uuid, Path, description = "The event id"),
        ("tenant" = Option<String>, Query, description = "For keys bound to all tenants"),
    ),
    responses(
        (status = 200, description = "The event", body = sealtrail_model::Event),
        (status = 400, description = "Malformed id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event in this tenant", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_one(
    State(state): State<AppState>,
    Viewable(principal): Viewable,
    uri: OriginalUri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = parse_list_query(raw.as_deref(), &[]).map_err(ApiError::BadParameters)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad_parameter("id", "must be a UUID"))?;
    let tenant = principal.tenant(params.tenant.as_deref(), "tenant", false)?;
    let event = state
        .store
        .get(&tenant, id)
        .await?
        .filter(|e| {
            principal.viewer.as_ref().is_none_or(|v| {
                serde_json::from_str(e.body.get()).is_ok_and(|body| v.scope.contains(&body))
            })
        })
        .ok_or_else(|| ApiError::NotFound(format!("no event {id} in tenant {tenant}")))?;
    state
        .audit_cross_tenant_read(&principal, &tenant, &uri)
        .await?;
    state.audit_viewed(&principal, &tenant, &uri).await?;
    let mut response = Bytes::from(event.body.get().to_owned()).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Events whose target is one entity (the list, fixed to a target).
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs/entity/{type}/{id}",
    tag = "read",
    params(
        ("type" = String, Path, description = "The target type"),
        ("id" = String, Path, description = "The target id"),
        crate::openapi::PagingDoc,
    ),
    responses(
        (status = 200, description = "A page of events", body = crate::openapi::EventPage),
        (status = 400, description = "A bad query parameter", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn by_entity(
    State(state): State<AppState>,
    Viewable(principal): Viewable,
    uri: OriginalUri,
    Path((target_type, target_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut params = parse_list_query(
        raw.as_deref(),
        &list_filters(&ENTITY_FIXED).collect::<Vec<_>>(),
    )
    .map_err(ApiError::BadParameters)?;
    params.filter = params
        .filter
        .with(sealtrail_store::fields::TARGET_TYPE, [target_type])
        .with(sealtrail_store::fields::TARGET_ID, [target_id]);
    run_list(&state, &principal, params, &uri).await
}

/// Events of one actor (the list, fixed to an actor).
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs/user/{actor_id}",
    tag = "read",
    params(
        ("actor_id" = String, Path, description = "The actor id"),
        crate::openapi::PagingDoc,
    ),
    responses(
        (status = 200, description = "A page of events", body = crate::openapi::EventPage),
        (status = 400, description = "A bad query parameter", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn by_user(
    State(state): State<AppState>,
    Viewable(principal): Viewable,
    uri: OriginalUri,
    Path(actor_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut params = parse_list_query(
        raw.as_deref(),
        &list_filters(&USER_FIXED).collect::<Vec<_>>(),
    )
    .map_err(ApiError::BadParameters)?;
    params.filter = params
        .filter
        .with(sealtrail_store::fields::ACTOR_ID, [actor_id]);
    run_list(&state, &principal, params, &uri).await
}

/// Search with a JSON body: every filter may be a list; plus `changed_field` and `metadata`
/// containment; `cursor`, `order` and `limit` in the body.
#[utoipa::path(
    post,
    path = "/api/v1/audit-logs/search",
    tag = "read",
    request_body(content = crate::openapi::SearchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "A page of events", body = crate::openapi::EventPage),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad field, named in errors", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    Viewable(principal): Viewable,
    uri: OriginalUri,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let value = crate::json_body(&headers, &body)?;
    let params = parse_search_body(value).map_err(ApiError::Invalid)?;
    run_list(&state, &principal, params, &uri).await
}

/// An entity's timeline: events targeting it and events naming it in `related`, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/entities/{type}/{id}/history",
    tag = "read",
    params(
        ("type" = String, Path, description = "The entity type"),
        ("id" = String, Path, description = "The entity id"),
        ("event_type" = Option<Vec<String>>, Query, description = "Only these event types (repeatable)"),
        ("limit" = Option<usize>, Query, description = "Page size, 1–1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "From the previous page's next_cursor"),
        ("tenant" = Option<String>, Query, description = "For keys bound to all tenants"),
    ),
    responses(
        (status = 200, description = "A page of the timeline; items carry relation", body = crate::openapi::EventPage),
        (status = 400, description = "A bad query parameter", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    Viewable(principal): Viewable,
    uri: OriginalUri,
    Path((entity_type, entity_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    run_history(
        &state,
        &principal,
        &uri,
        entity_type,
        entity_id,
        None,
        raw.as_deref(),
    )
    .await
}

/// An entity's timeline restricted to one event type.
#[utoipa::path(
    get,
    path = "/api/v1/entities/{type}/{id}/history/{event_type}",
    tag = "read",
    params(
        ("type" = String, Path, description = "The entity type"),
        ("id" = String, Path, description = "The entity id"),
        ("event_type" = String, Path, description = "The event type"),
        ("limit" = Option<usize>, Query, description = "Page size, 1–1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "From the previous page's next_cursor"),
        ("tenant" = Option<String>, Query, description = "For keys bound to all tenants"),
    ),
    responses(
        (status = 200, description = "A page of the timeline", body = crate::openapi::EventPage),
    ),
    security(("bearer" = []))
)]
pub async fn history_of_type(
    State(state): State<AppState>,
    Viewable(principal): Viewable,
    uri: OriginalUri,
    Path((entity_type, entity_id, event_type)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    run_history(
        &state,
        &principal,
        &uri,
        entity_type,
        entity_id,
        Some(event_type),
        raw.as_deref(),
    )
    .await
}

async fn run_history(
    state: &AppState,
    principal: &Principal,
    uri: &OriginalUri,
    entity_type: String,
    entity_id: String,
    event_type: Option<String>,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let allowed: &[sealtrail_store::Field] = if event_type.is_some() {
        &[]
    } else {
        &[sealtrail_store::fields::EVENT_TYPE]
    };
    // A timeline is always oldest first by occurred_at and takes no time range.
    let unsupported: Vec<FieldError> = crate::params::split_query(raw)
        .into_keys()
        .filter(|name| matches!(name.as_str(), "order" | "from" | "to"))
        .map(|name| FieldError::new(name, "is not a parameter of a timeline"))
        .collect();
    if !unsupported.is_empty() {
        return Err(ApiError::BadParameters(unsupported));
    }
    let mut params = parse_list_query(raw, allowed).map_err(ApiError::BadParameters)?;
    let mut event_types = params
        .filter
        .fields
        .remove(&sealtrail_store::fields::EVENT_TYPE)
        .unwrap_or_default();
    event_types.extend(event_type);
    let timeline = Timeline {
        entity_type,
        entity_id,
        event_types,
        limit: params.limit,
        cursor: params.cursor,
        tenant: params.tenant,
    };
    Ok(page_response(
        history_page(state, principal, uri, timeline).await?,
    ))
}

/// What a timeline read asks, parsed.
pub(crate) struct Timeline {
    pub(crate) entity_type: String,
    pub(crate) entity_id: String,
    pub(crate) event_types: Vec<String>,
    pub(crate) limit: usize,
    pub(crate) cursor: Option<sealtrail_store::Cursor>,
    pub(crate) tenant: Option<String>,
}

/// Reads a page of an entity's timeline for a principal: scope, tenant, cursor kind, audit.
pub(crate) async fn history_page(
    state: &AppState,
    principal: &Principal,
    uri: &OriginalUri,
    t: Timeline,
) -> Result<Page, ApiError> {
    principal.require(Scope::Read)?;
    let tenant = principal.tenant(t.tenant.as_deref(), "tenant", false)?;
    let (entity_type, entity_id, event_types) = (t.entity_type, t.entity_id, t.event_types);
    let cursor = match t.cursor {
        None => None,
        Some(c @ sealtrail_store::Cursor::Time(..)) => Some(c),
        Some(_) => {
            return Err(ApiError::bad_parameter(
                "cursor",
                "is not a timeline cursor",
            ));
        }
    };
    let mut page = state
        .store
        .history(HistoryQuery {
            tenant: tenant.clone(),
            entity_type,
            entity_id,
            event_type: event_types,
            limit: t.limit,
            cursor,
        })
        .await?;
    if let Some(viewer) = &principal.viewer {
        // A timeline cannot be narrowed by a filter: its events outside the scope are left
        // out of the page (which may then be short; its cursor still goes on).
        page.items.retain(|e| {
            serde_json::from_str(e.body.get()).is_ok_and(|body| viewer.scope.contains(&body))
        });
    }
    state
        .audit_cross_tenant_read(principal, &tenant, uri)
        .await?;
    state.audit_viewed(principal, &tenant, uri).await?;
    Ok(page)
}

/// One bucket of a statistics answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BucketBody {
    /// Where the bucket starts: a whole UTC hour or day (RFC 3339).
    pub(crate) start: String,
    /// Events of the window in it.
    pub(crate) count: u64,
    /// Of them, failures.
    pub(crate) failures: u64,
}

/// An actor and its events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActorCount {
    /// `actor.id`.
    pub(crate) id: String,
    /// Events in the window.
    pub(crate) count: u64,
}

/// An action and its events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionCount {
    /// `action`.
    pub(crate) action: String,
    /// Events in the window.
    pub(crate) count: u64,
}

/// A target and its events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TargetCount {
    /// `target.type`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub(crate) kind: String,
    /// `target.id`.
    pub(crate) id: String,
    /// Events in the window.
    pub(crate) count: u64,
}

/// Exact counts of a tenant's events whose `occurred_at` lies in `[from, to)`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatisticsBody {
    /// The window's start, as applied (RFC 3339).
    pub(crate) from: String,
    /// The window's end, excluded, as applied (RFC 3339).
    pub(crate) to: String,
    /// `day` or `hour`.
    pub(crate) bucket: &'static str,
    /// Events in the window.
    pub(crate) total: u64,
    /// Of them, failures (`outcome: failure`).
    pub(crate) failures: u64,
    /// Every bucket from the one holding `from` to the one holding the window's last instant,
    /// ascending, empty ones included.
    pub(crate) buckets: Vec<BucketBody>,
    /// Actors with the most events, most first, ties by id ascending.
    pub(crate) top_actors: Vec<ActorCount>,
    /// Actions with the most events, most first, ties by action ascending.
    pub(crate) top_actions: Vec<ActionCount>,
    /// Targets with the most events, most first, ties by type then id ascending.
    pub(crate) top_targets: Vec<TargetCount>,
}

/// Statistics of a tenant's events in a window of `occurred_at` (UTC buckets, empty ones
/// listed), with its busiest actors, actions and targets: exact, from rollups kept behind the
/// log and its unindexed tail.
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs/statistics",
    tag = "read",
    params(crate::openapi::StatsDoc),
    responses(
        (status = 200, description = "The window's counts", body = StatisticsBody),
        (status = 400, description = "A bad query parameter, named in errors", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No read scope, or another tenant", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn statistics(
    State(state): State<AppState>,
    principal: Principal,
    uri: OriginalUri,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params =
        crate::params::parse_stats_query(raw.as_deref(), sealtrail_model::Timestamp::now())
            .map_err(ApiError::BadParameters)?;
    Ok(Json(statistics_body(&state, &principal, params, &uri).await?).into_response())
}

/// Statistics for a principal: scope, tenant, audit (REST and GraphQL alike).
pub(crate) async fn statistics_body(
    state: &AppState,
    principal: &Principal,
    params: crate::params::StatsParams,
    uri: &OriginalUri,
) -> Result<StatisticsBody, ApiError> {
    use sealtrail_store::rollup::Span;
    principal.require(Scope::Read)?;
    let tenant = principal.tenant(params.tenant.as_deref(), "tenant", false)?;
    let stats = state
        .store
        .statistics(sealtrail_store::stats::StatsQuery {
            tenant: tenant.clone(),
            from: params.from,
            to: params.to,
            bucket: params.bucket,
            top: params.top,
        })
        .await?;
    state
        .audit_cross_tenant_read(principal, &tenant, uri)
        .await?;
    Ok(StatisticsBody {
        from: params.from.to_rfc3339(),
        to: params.to.to_rfc3339(),
        bucket: if params.bucket == Span::Hour {
            "hour"
        } else {
            "day"
        },
        total: stats.total,
        failures: stats.failures,
        buckets: stats
            .buckets
            .into_iter()
            .map(|b| BucketBody {
                start: b.start.to_rfc3339(),
                count: b.count,
                failures: b.failures,
            })
            .collect(),
        top_actors: stats
            .top_actors
            .into_iter()
            .map(|(id, count)| ActorCount { id, count })
            .collect(),
        top_actions: stats
            .top_actions
            .into_iter()
            .map(|(action, count)| ActionCount { action, count })
            .collect(),
        top_targets: stats
            .top_targets
            .into_iter()
            .map(|(kind, id, count)| TargetCount { kind, id, count })
            .collect(),
    })
}
