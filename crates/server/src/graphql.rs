//! `/graphql`: the read API as GraphQL (SPEC §4.7), read-only.
//!
//! Every resolver goes through the same functions as its REST twin (`read::list_page`,
//! `read::history_page`, `read::statistics_body`): the same parameter parsing, credential and
//! tenant rules, cross-tenant audit and store calls, so the answers are the same events. Items
//! are the served JSON of each event read into the GraphQL types, field names in camelCase,
//! free JSON (`metadata`, change values) as the `JSON` scalar.
//!
//! Queries are limited to a depth of [`MAX_DEPTH`] and a complexity of [`MAX_COMPLEXITY`]: a
//! list field costs its page size times what is selected of each item, so a query cannot ask
//! for more than about that many values in one request.

use std::sync::OnceLock;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, ErrorExtensions, InputObject, InputValueError,
    InputValueResult, Object, Scalar, ScalarType, Schema, SimpleObject,
};
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sealtrail_model::{FieldError, Timestamp};
use sealtrail_store::Page;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// Deepest selection a query may make (the schema's own deepest is 4).
pub const MAX_DEPTH: usize = 8;
/// Most a query may cost: each field 1, a list field its page size times its selection.
pub const MAX_COMPLEXITY: usize = 50_000;

/// The schema.
pub type ApiSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema, built once.
pub fn schema() -> &'static ApiSchema {
    static SCHEMA: OnceLock<ApiSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .limit_depth(MAX_DEPTH)
            .limit_complexity(MAX_COMPLEXITY)
            .finish()
    })
}

/// The schema in GraphQL SDL, as `docs/schema.graphql` holds it.
pub fn sdl() -> String {
    schema().sdl()
}

/// An RFC 3339 date-time, as the REST API writes them (`2026-03-01T10:00:00.000000Z`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DateTime(String);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: async_graphql::Value) -> InputValueResult<Self> {
        match &value {
            async_graphql::Value::String(s) if Timestamp::parse_rfc3339(s).is_some() => {
                Ok(DateTime(s.clone()))
            }
            _ => Err(InputValueError::custom("must be an RFC 3339 date-time")),
        }
    }

    fn to_value(&self) -> async_graphql::Value {
        async_graphql::Value::String(self.0.clone())
    }
}

/// Any JSON value (`metadata`, change values).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Json(Value);

#[Scalar(name = "JSON")]
impl ScalarType for Json {
    fn parse(value: async_graphql::Value) -> InputValueResult<Self> {
        value
            .into_json()
            .map(Json)
            .map_err(|e| InputValueError::custom(e.to_string()))
    }

    fn to_value(&self) -> async_graphql::Value {
        async_graphql::Value::from_json(self.0.clone()).unwrap_or(async_graphql::Value::Null)
    }
}

/// List order, by `seq`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first (the default).
    Desc,
}

/// Statistics bucket size.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Bucket {
    /// UTC hours.
    Hour,
    /// UTC days (the default).
    Day,
}

/// The filters of `auditLogs` and `userActivity`: each list holds alternatives (any of them),
/// different fields all apply; exactly the REST list filters and `POST /audit-logs/search`.
#[derive(InputObject, Default, Debug)]
pub struct AuditLogFilter {
    /// `actor.id`.
    actor_id: Option<Vec<String>>,
    /// `action`.
    action: Option<Vec<String>>,
    /// `category`: auth, data, admin, security, system.
    category: Option<Vec<String>>,
    /// `event_type`.
    event_type: Option<Vec<String>>,
    /// `target.type`.
    target_type: Option<Vec<String>>,
    /// `target.id`.
    target_id: Option<Vec<String>>,
    /// `organization.id`.
    organization_id: Option<Vec<String>>,
    /// `outcome`: success or failure.
    outcome: Option<Vec<String>>,
    /// `context.correlation_id`.
    correlation_id: Option<Vec<String>>,
    /// `context.ip` (matched in canonical form).
    ip: Option<Vec<String>>,
    /// A changed field, or a field inside it.
    changed_field: Option<Vec<String>>,
    /// `occurred_at` at or after.
    from: Option<DateTime>,
    /// `occurred_at` before.
    to: Option<DateTime>,
    /// `metadata` contains this JSON object.
    metadata: Option<Json>,
}

impl AuditLogFilter {
    /// The filter as a search body (REST names), for `parse_search_body`.
    fn into_body(self) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        let lists = [
            ("actor_id", self.actor_id),
            ("action", self.action),
            ("category", self.category),
            ("event_type", self.event_type),
            ("target_type", self.target_type),
            ("target_id", self.target_id),
            ("organization_id", self.organization_id),
            ("outcome", self.outcome),
            ("correlation_id", self.correlation_id),
            ("ip", self.ip),
            ("changed_field", self.changed_field),
        ];
        for (name, values) in lists {
            if let Some(values) = values {
                body.insert(name.into(), json!(values));
            }
        }
        if let Some(DateTime(t)) = self.from {
            body.insert("from".into(), json!(t));
        }
        if let Some(DateTime(t)) = self.to {
            body.insert("to".into(), json!(t));
        }
        if let Some(Json(m)) = self.metadata {
            body.insert("metadata".into(), m);
        }
        body
    }
}

/// Who acted.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Actor {
    /// `actor.id`.
    id: String,
    /// `user`, `service`, `system` or `anonymous`.
    #[graphql(name = "type")]
    #[serde(rename = "type")]
    kind: String,
    /// Display name.
    name: Option<String>,
    /// E-mail.
    email: Option<String>,
}

/// What was acted upon.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Target {
    /// `target.type`.
    #[graphql(name = "type")]
    #[serde(rename = "type")]
    kind: String,
    /// `target.id`.
    id: String,
    /// Display name.
    name: Option<String>,
}

/// The customer organisation.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Organization {
    /// `organization.id`.
    id: String,
    /// Its name.
    name: Option<String>,
}

/// Where the event came from.
#[derive(SimpleObject, Deserialize, Debug)]
#[graphql(name = "Context")]
pub struct EventContext {
    /// Client address, canonical.
    ip: Option<String>,
    /// User agent.
    user_agent: Option<String>,
    /// Session id.
    session_id: Option<String>,
    /// Correlation id.
    correlation_id: Option<String>,
    /// Endpoint.
    endpoint: Option<String>,
    /// HTTP method.
    method: Option<String>,
    /// HTTP status code.
    status_code: Option<u16>,
    /// Duration in milliseconds.
    duration_ms: Option<f64>,
}

/// One field's change.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Change {
    /// The field's path (`address.city`, `tags[0]`).
    field: String,
    /// Before (null when added).
    old_value: Option<Json>,
    /// After (null when removed).
    new_value: Option<Json>,
    /// When (the event's `occurred_at`).
    changed_at: DateTime,
    /// Who (the actor's id).
    changed_by: String,
}

/// A record an event links to.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct Related {
    /// Its type.
    #[graphql(name = "type")]
    #[serde(rename = "type")]
    kind: String,
    /// Its id.
    id: String,
}

/// One stored event, as the REST API serves it.
#[derive(SimpleObject, Deserialize, Debug)]
pub struct AuditLog {
    /// The event id.
    id: String,
    /// Its tenant.
    tenant: String,
    /// Its position in the tenant's log.
    seq: u64,
    /// Server time at commit.
    recorded_at: DateTime,
    /// Client time of the action.
    occurred_at: DateTime,
    /// The action.
    action: String,
    /// The category.
    category: String,
    /// The domain event type.
    event_type: Option<String>,
    /// `success` or `failure`.
    outcome: String,
    /// The failure's message.
    error: Option<String>,
    /// Who acted.
    actor: Actor,
    /// What was acted upon.
    target: Option<Target>,
    /// The customer organisation.
    organization: Option<Organization>,
    /// Where it came from.
    context: Option<EventContext>,
    /// What changed.
    changes: Vec<Change>,
    /// Linked records.
    related: Vec<Related>,
    /// Free JSON.
    metadata: Option<Json>,
    /// The leaf hash, lowercase hex.
    hash: String,
    /// In an entity history: `target` or `related`.
    #[serde(default)]
    relation: Option<String>,
}

/// A page of events.
#[derive(SimpleObject, Debug)]
pub struct AuditLogPage {
    /// The events.
    items: Vec<AuditLog>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

/// One statistics bucket.
#[derive(SimpleObject, Debug)]
#[graphql(name = "StatisticsBucket")]
pub struct BucketCount {
    /// Where it starts (a whole UTC hour or day).
    start: DateTime,
    /// Events of the window in it.
    count: u64,
    /// Of them, failures.
    failures: u64,
}

/// An actor and its events.
#[derive(SimpleObject, Debug)]
pub struct ActorCount {
    /// `actor.id`.
    id: String,
    /// Events.
    count: u64,
}

/// An action and its events.
#[derive(SimpleObject, Debug)]
pub struct ActionCount {
    /// `action`.
    action: String,
    /// Events.
    count: u64,
}

/// A target and its events.
#[derive(SimpleObject, Debug)]
pub struct TargetCount {
    /// `target.type`.
    #[graphql(name = "type")]
    kind: String,
    /// `target.id`.
    id: String,
    /// Events.
    count: u64,
}

/// Counts of a window, as `GET /audit-logs/statistics` answers them.
#[derive(SimpleObject, Debug)]
pub struct Statistics {
    /// The window's start, as applied.
    from: DateTime,
    /// The window's end (excluded), as applied.
    to: DateTime,
    /// The bucket size.
    bucket: Bucket,
    /// Events in the window.
    total: u64,
    /// Of them, failures.
    failures: u64,
    /// Every bucket, ascending, empty ones included.
    buckets: Vec<BucketCount>,
    /// Most events first, ties by id.
    top_actors: Vec<ActorCount>,
    /// Most events first, ties by action.
    top_actions: Vec<ActionCount>,
    /// Most events first, ties by type then id.
    top_targets: Vec<TargetCount>,
}

/// The GraphQL error for an API error: its message, and in `extensions` the HTTP status the
/// REST API answers, a code, and the bad fields (named as GraphQL arguments).
fn gql_error(err: ApiError) -> async_graphql::Error {
    let status = err.status().as_u16();
    let code = match status {
        400 | 422 => "BAD_USER_INPUT",
        401 => "UNAUTHENTICATED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        429 => "RATE_LIMITED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL_SERVER_ERROR",
    };
    let fields: Vec<Value> = match &err {
        ApiError::BadParameters(errors) | ApiError::Invalid(errors) => errors
            .iter()
            .map(|e| json!({"field": argument_name(&e.field), "message": e.message}))
            .collect(),
        _ => Vec::new(),
    };
    let message = match fields.first() {
        Some(first) => format!(
            "{}: {}",
            first["field"].as_str().unwrap_or(""),
            first["message"].as_str().unwrap_or("")
        ),
        None => err.to_string(),
    };
    async_graphql::Error::new(message).extend_with(|_, e| {
        e.set("code", code);
        e.set("status", status);
        if !fields.is_empty()
            && let Ok(v) = async_graphql::Value::from_json(Value::Array(fields.clone()))
        {
            e.set("errors", v);
        }
    })
}

/// The GraphQL argument a REST field name stands for: list controls are arguments of their
/// own, filters live in `filter`, in camelCase.
fn argument_name(rest: &str) -> String {
    let camel = |s: &str| {
        let mut out = String::new();
        let mut upper = false;
        for c in s.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    let head = rest.split(['.', '[']).next().unwrap_or(rest);
    match head {
        "q" | "order" | "limit" | "cursor" | "tenant" | "bucket" | "top" | "$" => rest.to_owned(),
        _ => format!("filter.{}", camel(rest)),
    }
}

/// What a resolver needs of the request: the state, the credential and the path it came by.
fn request_parts<'a>(
    ctx: &'a Context<'_>,
) -> async_graphql::Result<(&'a AppState, &'a Principal, &'a OriginalUri)> {
    Ok((
        ctx.data::<AppState>()?,
        ctx.data::<Principal>()?,
        ctx.data::<OriginalUri>()?,
    ))
}

/// A store page as GraphQL items.
fn page(page: Page) -> async_graphql::Result<AuditLogPage> {
    let mut items = Vec::with_capacity(page.items.len());
    for e in page.items {
        let mut item: AuditLog = serde_json::from_str(e.body.get())
            .map_err(|err| async_graphql::Error::new(format!("a stored event: {err}")))?;
        item.relation = e.relation.map(|r| r.as_str().to_owned());
        items.push(item);
    }
    Ok(AuditLogPage {
        items,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    })
}

/// The list arguments as a REST search body.
fn list_body(
    filter: Option<AuditLogFilter>,
    q: Option<String>,
    order: Option<Order>,
    limit: Option<i32>,
    cursor: Option<String>,
    tenant: Option<String>,
) -> Value {
    let mut body = filter.unwrap_or_default().into_body();
    if let Some(q) = q {
        body.insert("q".into(), json!(q));
    }
    if let Some(order) = order {
        let order = if order == Order::Asc { "asc" } else { "desc" };
        body.insert("order".into(), json!(order));
    }
    if let Some(limit) = limit {
        body.insert("limit".into(), json!(limit));
    }
    if let Some(cursor) = cursor {
        body.insert("cursor".into(), json!(cursor));
    }
    if let Some(tenant) = tenant {
        body.insert("tenant".into(), json!(tenant));
    }
    Value::Object(body)
}

/// Runs a list for the request from its REST search body: the same parsing, then
/// `read::list_page` (scope, tenant, audit).
async fn list(ctx: &Context<'_>, body: Value) -> async_graphql::Result<AuditLogPage> {
    let (state, principal, uri) = request_parts(ctx)?;
    let params =
        crate::params::parse_search_body(body).map_err(|e| gql_error(ApiError::Invalid(e)))?;
    let found = crate::read::list_page(state, principal, params, uri)
        .await
        .map_err(gql_error)?;
    page(found)
}

/// The read queries.
pub struct Query;

#[Object]
impl Query {
    /// A tenant's events, filtered, newest first by default (`GET /audit-logs`).
    #[graphql(complexity = "limit.unwrap_or(50).clamp(1, 1000) as usize * child_complexity")]
    #[allow(clippy::too_many_arguments)] // The GraphQL arguments, as the spec names them.
    async fn audit_logs(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditLogFilter>,
        q: Option<String>,
        order: Option<Order>,
        limit: Option<i32>,
        cursor: Option<String>,
        #[graphql(desc = "For keys bound to all tenants")] tenant: Option<String>,
    ) -> async_graphql::Result<AuditLogPage> {
        list(ctx, list_body(filter, q, order, limit, cursor, tenant)).await
    }

    /// An entity's timeline, oldest first by `occurred_at`: events targeting it and events
    /// naming it in `related` (`GET /entities/{type}/{id}/history`).
    #[graphql(complexity = "limit.unwrap_or(50).clamp(1, 1000) as usize * child_complexity")]
    #[allow(clippy::too_many_arguments)] // The GraphQL arguments, as the spec names them.
    async fn entity_history(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type")] kind: String,
        id: String,
        event_type: Option<String>,
        limit: Option<i32>,
        cursor: Option<String>,
        #[graphql(desc = "For keys bound to all tenants")] tenant: Option<String>,
    ) -> async_graphql::Result<AuditLogPage> {
        let (state, principal, uri) = request_parts(ctx)?;
        // Paging and tenant parsed as a search body parses them.
        let paging = list_body(None, None, None, limit, cursor, tenant);
        let params = crate::params::parse_search_body(paging)
            .map_err(|e| gql_error(ApiError::Invalid(e)))?;
        let timeline = crate::read::Timeline {
            entity_type: kind,
            entity_id: id,
            event_types: event_type.into_iter().collect(),
            limit: params.limit,
            cursor: params.cursor,
            tenant: params.tenant,
        };
        let found = crate::read::history_page(state, principal, uri, timeline)
            .await
            .map_err(gql_error)?;
        page(found)
    }

    /// One actor's events, filtered, newest first by default (`GET /audit-logs/user/{id}`).
    #[graphql(complexity = "limit.unwrap_or(50).clamp(1, 1000) as usize * child_complexity")]
    #[allow(clippy::too_many_arguments)] // The GraphQL arguments, as the spec names them.
    async fn user_activity(
        &self,
        ctx: &Context<'_>,
        actor_id: String,
        filter: Option<AuditLogFilter>,
        q: Option<String>,
        order: Option<Order>,
        limit: Option<i32>,
        cursor: Option<String>,
        #[graphql(desc = "For keys bound to all tenants")] tenant: Option<String>,
    ) -> async_graphql::Result<AuditLogPage> {
        let mut filter = filter.unwrap_or_default();
        if filter.actor_id.is_some() {
            return Err(gql_error(ApiError::BadParameters(vec![FieldError::new(
                "actor_id",
                "is fixed by actorId",
            )])));
        }
        filter.actor_id = Some(vec![actor_id]);
        list(
            ctx,
            list_body(Some(filter), q, order, limit, cursor, tenant),
        )
        .await
    }

    /// Exact counts of a window of `occurred_at` (`GET /audit-logs/statistics`): default the
    /// last 30 days, day buckets, top 10.
    async fn statistics(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime>,
        to: Option<DateTime>,
        bucket: Option<Bucket>,
        top: Option<i32>,
        #[graphql(desc = "For keys bound to all tenants")] tenant: Option<String>,
    ) -> async_graphql::Result<Statistics> {
        let (state, principal, uri) = request_parts(ctx)?;
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(DateTime(t)) = &from {
                query.append_pair("from", t);
            }
            if let Some(DateTime(t)) = &to {
                query.append_pair("to", t);
            }
            if let Some(b) = bucket {
                query.append_pair("bucket", if b == Bucket::Hour { "hour" } else { "day" });
            }
            if let Some(top) = top {
                query.append_pair("top", &top.to_string());
            }
            if let Some(t) = &tenant {
                query.append_pair("tenant", t);
            }
            query.finish()
        };
        let params = crate::params::parse_stats_query(Some(&query), Timestamp::now())
            .map_err(|e| gql_error(ApiError::BadParameters(e)))?;
        let b = crate::read::statistics_body(state, principal, params, uri)
            .await
            .map_err(gql_error)?;
        Ok(Statistics {
            from: DateTime(b.from),
            to: DateTime(b.to),
            bucket: if b.bucket == "hour" {
                Bucket::Hour
            } else {
                Bucket::Day
            },
            total: b.total,
            failures: b.failures,
            buckets: b
                .buckets
                .into_iter()
                .map(|x| BucketCount {
                    start: DateTime(x.start),
                    count: x.count,
                    failures: x.failures,
                })
                .collect(),
            top_actors: b
                .top_actors
                .into_iter()
                .map(|x| ActorCount {
                    id: x.id,
                    count: x.count,
                })
                .collect(),
            top_actions: b
                .top_actions
                .into_iter()
                .map(|x| ActionCount {
                    action: x.action,
                    count: x.count,
                })
                .collect(),
            top_targets: b
                .top_targets
                .into_iter()
                .map(|x| TargetCount {
                    kind: x.kind,
                    id: x.id,
                    count: x.count,
                })
                .collect(),
        })
    }
}

/// Runs one GraphQL request for a credential with read scope.
async fn run(
    state: AppState,
    principal: Principal,
    uri: OriginalUri,
    request: async_graphql::Request,
) -> Result<Response, ApiError> {
    principal.require(sealtrail_store::Scope::Read)?;
    let request = request.data(state).data(principal).data(uri);
    let response = schema().execute(request).await;
    Ok(axum::Json(response).into_response())
}

/// A GraphQL request (the body of `POST /graphql`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only: async-graphql reads the request itself.
pub struct GraphqlRequest {
    /// The query document (queries only: the schema has no mutations).
    query: String,
    /// Values of the query's variables.
    variables: Option<std::collections::HashMap<String, Value>>,
    /// Which operation of the document to run.
    #[schema(rename = "operationName")]
    operation_name: Option<String>,
}

/// A GraphQL response: `data`, and `errors` (each with `message`, `path` and `extensions`:
/// `code`, the REST `status`, and `errors: [{field, message}]` naming bad arguments).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only: async-graphql writes the response itself.
pub struct GraphqlResponse {
    /// What the query selected; null when it could not run.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
    /// What went wrong, per the GraphQL specification.
    #[schema(value_type = Option<Vec<Object>>)]
    errors: Option<Vec<Value>>,
}

/// Read events, timelines and statistics with GraphQL: `auditLogs`, `entityHistory`,
/// `userActivity`, `statistics` (schema: `docs/schema.graphql`). The same credentials, scopes
/// and tenant rules as REST.
#[utoipa::path(
    post,
    path = "/graphql",
    tag = "read",
    request_body(content = GraphqlRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The GraphQL response (errors included, per the GraphQL spec)", body = GraphqlResponse),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No read scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON that is not a GraphQL request", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn post(
    State(state): State<AppState>,
    principal: Principal,
    uri: OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let value = crate::json_body(&headers, &body)?;
    let Some(fields) = value.as_object() else {
        return Err(ApiError::invalid("$", "must be a JSON object"));
    };
    if !fields.get("query").is_some_and(Value::is_string) {
        return Err(ApiError::invalid(
            "query",
            "is required: the query document, a string",
        ));
    }
    if fields
        .get("variables")
        .is_some_and(|v| !(v.is_null() || v.is_object()))
    {
        return Err(ApiError::invalid(
            "variables",
            "must be a JSON object or null",
        ));
    }
    if fields
        .get("operationName")
        .is_some_and(|v| !(v.is_null() || v.is_string()))
    {
        return Err(ApiError::invalid(
            "operationName",
            "must be a string or null",
        ));
    }
    let request: async_graphql::Request = serde_json::from_value(value)
        .map_err(|e| ApiError::Invalid(vec![FieldError::new("query", e.to_string())]))?;
    run(state, principal, uri, request).await
}

/// GraphQL over GET: the query document and its variables (JSON) in the query string.
#[utoipa::path(
    get,
    path = "/graphql",
    tag = "read",
    params(
        ("query" = String, Query, description = "The query document"),
        ("variables" = Option<String>, Query, description = "The variables, a JSON object (empty: none)"),
        ("operationName" = Option<String>, Query, description = "Which operation to run (empty: the only one)"),
    ),
    responses(
        (status = 200, description = "The GraphQL response", body = GraphqlResponse),
        (status = 400, description = "No query, bad variables or an unknown parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No read scope", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    uri: OriginalUri,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut request = None;
    let mut variables = None;
    let mut operation = None;
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "query" => request = Some(v.into_owned()),
            // An empty value is the same as none.
            "variables" => variables = Some(v.into_owned()).filter(|v| !v.is_empty()),
            "operationName" => operation = Some(v.into_owned()).filter(|v| !v.is_empty()),
            other => return Err(ApiError::bad_parameter(other, "is not a known parameter")),
        }
    }
    let query = request.ok_or_else(|| ApiError::bad_parameter("query", "is required"))?;
    let mut request = async_graphql::Request::new(query);
    if let Some(vars) = variables {
        let vars: Value = serde_json::from_str(&vars)
            .map_err(|_| ApiError::bad_parameter("variables", "must be a JSON object"))?;
        if !vars.is_object() {
            return Err(ApiError::bad_parameter(
                "variables",
                "must be a JSON object",
            ));
        }
        request = request.variables(async_graphql::Variables::from_json(vars));
    }
    if let Some(op) = operation {
        request = request.operation_name(op);
    }
    run(state, principal, uri, request).await
}
