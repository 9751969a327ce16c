//! `POST /api/v1/events`: one event, an array of events, or NDJSON; all or nothing; answered
//! only once the events are durably committed.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sealtrail_model::limits::{MAX_BATCH_EVENTS, MAX_JSON_DEPTH};
use sealtrail_model::{FieldError, NewEvent, Redactor, Timestamp, json::max_depth, parse_event};
use sealtrail_store::{Appended, PreparedEvent, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// The answer to an ingest request.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// Events newly stored.
    pub accepted: usize,
    /// Events that were already stored (retries).
    pub duplicates: usize,
    /// Where each event of the request landed, in request order.
    pub events: Vec<IngestedEvent>,
}

/// Where one event landed.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestedEvent {
    /// The event id.
    pub id: Uuid,
    /// Its position in the tenant's log.
    pub seq: u64,
    /// When it was committed.
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: Timestamp,
    /// Its leaf hash.
    pub hash: String,
}

impl From<Appended> for IngestedEvent {
    fn from(a: Appended) -> Self {
        Self {
            id: a.id,
            seq: a.seq,
            recorded_at: a.recorded_at,
            hash: a.hash.to_hex(),
        }
    }
}

/// Query parameters of the ingest endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestParams {
    /// For keys bound to all tenants: the tenant of events that do not name one.
    pub tenant: Option<String>,
}

impl IngestParams {
    /// Reads the query string: `tenant` at most once, nothing else (400 naming the
    /// parameter).
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut params = Self { tenant: None };
        let mut problems = Vec::new();
        for (name, values) in crate::params::split_query(raw) {
            match (name.as_str(), values.as_slice()) {
                ("tenant", [one]) => params.tenant = Some(one.clone()),
                ("tenant", _) => problems.push(FieldError::new(name, "may be given only once")),
                _ => problems.push(FieldError::new(name, "is not a known parameter")),
            }
        }
        if problems.is_empty() {
            Ok(params)
        } else {
            Err(ApiError::BadParameters(problems))
        }
    }
}

/// How the body was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Single,
    Batch,
}

/// Bodies larger than this are parsed on a blocking thread, off the async workers.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// Ingest events.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "ingest",
    params(IngestParams),
    request_body(
        description = "One event object, a JSON array of events, or NDJSON (one event per line)",
        content(
            (crate::openapi::EventInput = "application/json"),
            (Vec<crate::openapi::EventInput> = "application/json"),
            (String = "application/x-ndjson"),
        ),
    ),
    responses(
        (status = 201, description = "Something new was stored", body = IngestResponse),
        (status = 200, description = "Every event was already stored", body = IngestResponse),
        (status = 400, description = "Malformed JSON or nesting deeper than 64", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No ingest scope, or another tenant", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An id already stored with a different body", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 MiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON or NDJSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid events; every problem listed", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Write queue full; see Retry-After", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut events_in_request = 1;
    let result = match IngestParams::parse(raw.as_deref()) {
        Ok(params) => {
            ingest_inner(
                &state,
                &principal,
                &params,
                &headers,
                body,
                &mut events_in_request,
            )
            .await
        }
        Err(err) => Err(err),
    };
    if let Err(err) = &result {
        let reason = match err {
            ApiError::Forbidden(_) | ApiError::Unauthorized(_) => "forbidden",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Overloaded => "overloaded",
            ApiError::Unavailable(_) => "unavailable",
            _ => "invalid",
        };
        let tenant = principal.key.tenant.as_str().to_owned();
        metrics::counter!(
            sealtrail_store::metrics::EVENTS_FAILED,
            "tenant" => tenant,
            "reason" => reason,
        )
        .increment(events_in_request);
    }
    result
}

async fn ingest_inner(
    state: &AppState,
    principal: &Principal,
    params: &IngestParams,
    headers: &HeaderMap,
    body: Bytes,
    events_in_request: &mut u64,
) -> Result<Response, ApiError> {
    principal.require(Scope::Ingest)?;
    let ndjson = content_kind(headers)?;
    let redactor = state.redactor.clone();
    let now = Timestamp::now();
    let parsed = if body.len() > INLINE_PARSE_BYTES {
        tokio::task::spawn_blocking(move || parse_body(&body, ndjson, &redactor, now))
            .await
            .map_err(|e| ApiError::Unavailable(format!("parser task failed: {e}")))?
    } else {
        parse_body(&body, ndjson, &redactor, now)
    }?;
    let (shape, events) = parsed;
    *events_in_request = events.len().max(1) as u64;

    let mut prepared = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let field = field_path(shape, i, "tenant");
        let requested = match &event.tenant {
            Some(t) => Some(t.as_str()),
            None => params.tenant.as_deref(),
        };
        let tenant = principal.tenant(requested, &field, true)?;
        prepared.push(PreparedEvent::new(tenant, event));
    }
    check_catalogs(state, shape, &prepared).await?;
    let tenants: Vec<sealtrail_store::Tenant> = prepared.iter().map(|p| p.tenant.clone()).collect();
    let appended = state
        .store
        .append(prepared)
        .await
        .map_err(|err| match ApiError::from(err) {
            ApiError::Conflict { id, .. } if shape == Shape::Single => ApiError::Conflict {
                field: "id".into(),
                id,
            },
            other => other,
        })?;
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    let accepted = appended.len() - duplicates;
    count_per_tenant(&tenants, &appended);
    let status = if accepted > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let response = IngestResponse {
        accepted,
        duplicates,
        events: appended.into_iter().map(IngestedEvent::from).collect(),
    };
    Ok((status, axum::Json(response)).into_response())
}

/// Checks every event against its tenant's catalogue (SPEC §4.5), naming every problem.
async fn check_catalogs(
    state: &AppState,
    shape: Shape,
    prepared: &[PreparedEvent],
) -> Result<(), ApiError> {
    let mut catalogs: Vec<(
        &sealtrail_store::Tenant,
        Option<std::sync::Arc<crate::catalog::Compiled>>,
    )> = Vec::new();
    let mut errors = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        let at = match catalogs.iter().position(|(t, _)| *t == &p.tenant) {
            Some(at) => at,
            None => {
                let compiled = state.catalogs.of(state.store.as_ref(), &p.tenant).await?;
                catalogs.push((&p.tenant, compiled));
                catalogs.len() - 1
            }
        };
        if let Some(compiled) = &catalogs[at].1 {
            let prefix = match shape {
                Shape::Single => String::new(),
                Shape::Batch => format!("events[{i}]."),
            };
            let before = errors.len();
            compiled.check(&p.event, &p.tenant, &prefix, &mut errors);
            // An id already stored is a retry (or a conflict the append refuses): the event was
            // judged when it was first stored, perhaps before this catalogue existed, and a
            // retry must keep its answer. Looked up only for events the catalogue refuses.
            if errors.len() > before
                && p.client_id
                && state.store.get(&p.tenant, p.id).await?.is_some()
            {
                errors.truncate(before);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Counts stored and duplicate events per tenant (a request is almost always one tenant).
fn count_per_tenant(tenants: &[sealtrail_store::Tenant], appended: &[sealtrail_store::Appended]) {
    let mut counts: Vec<(&sealtrail_store::Tenant, u64, u64)> = Vec::new();
    for (tenant, a) in tenants.iter().zip(appended) {
        let at = match counts.iter().position(|(t, _, _)| *t == tenant) {
            Some(at) => at,
            None => {
                counts.push((tenant, 0, 0));
                counts.len() - 1
            }
        };
        if a.duplicate {
            counts[at].2 += 1;
        } else {
            counts[at].1 += 1;
        }
    }
    for (tenant, stored, duplicate) in counts {
        if stored > 0 {
            metrics::counter!(sealtrail_store::metrics::EVENTS_INGESTED, "tenant" => tenant.to_string())
                .increment(stored);
        }
        if duplicate > 0 {
            metrics::counter!(sealtrail_store::metrics::EVENTS_DUPLICATE, "tenant" => tenant.to_string())
                .increment(duplicate);
        }
    }
}

/// Whether the body is NDJSON (`true`) or JSON (`false`); anything else is 415.
fn content_kind(headers: &HeaderMap) -> Result<bool, ApiError> {
    match crate::content_type(headers).as_str() {
        "application/json" => Ok(false),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(true),
        "" => Err(ApiError::UnsupportedMediaType(
            "the Content-Type header is missing; send application/json or application/x-ndjson"
                .into(),
        )),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other} is not accepted; send application/json or application/x-ndjson"
        ))),
    }
}

fn field_path(shape: Shape, index: usize, field: &str) -> String {
    match shape {
        Shape::Single => field.to_owned(),
        Shape::Batch => format!("events[{index}].{field}"),
    }
}

/// Parses and validates a whole body, collecting every problem of every event.
fn parse_body(
    body: &[u8],
    ndjson: bool,
    redactor: &Redactor,
    now: Timestamp,
) -> Result<(Shape, Vec<NewEvent>), ApiError> {
    if max_depth(body) > MAX_JSON_DEPTH {
        return Err(ApiError::TooDeep(MAX_JSON_DEPTH));
    }
    let (shape, raws): (Shape, Vec<(Value, usize)>) = if ndjson {
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::MalformedJson(format!("the body is not UTF-8: {e}")))?;
        let mut events = Vec::new();
        for (line_no, line) in text.split('\n').enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line).map_err(|e| {
                ApiError::MalformedJson(format!("line {} is not valid JSON: {e}", line_no + 1))
            })?;
            events.push((value, line.len()));
        }
        (Shape::Batch, events)
    } else {
        let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first == Some(b'[') {
            let raws: Vec<&RawValue> = serde_json::from_slice(body).map_err(ApiError::malformed)?;
            let mut events = Vec::with_capacity(raws.len());
            for raw in raws {
                let value: Value = serde_json::from_str(raw.get()).map_err(ApiError::malformed)?;
                events.push((value, raw.get().len()));
            }
            (Shape::Batch, events)
        } else {
            let value: Value = serde_json::from_slice(body).map_err(ApiError::malformed)?;
            (Shape::Single, vec![(value, body.len())])
        }
    };
    if raws.is_empty() {
        return Err(ApiError::invalid("events", "must hold at least one event"));
    }
    if raws.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::invalid(
            "events",
            format!(
                "must hold at most {MAX_BATCH_EVENTS} events, not {}",
                raws.len()
            ),
        ));
    }
    let mut errors: Vec<FieldError> = Vec::new();
    let mut events = Vec::with_capacity(raws.len());
    for (i, (value, len)) in raws.into_iter().enumerate() {
        let prefix = match shape {
            Shape::Single => String::new(),
            Shape::Batch => format!("events[{i}]"),
        };
        match parse_event(value, len, &prefix, redactor, now) {
            Ok(event) => events.push((i, event)),
            Err(mut problems) => errors.append(&mut problems),
        }
    }
    // The same id twice in one request is a mistake, not a retry.
    let mut seen = std::collections::HashMap::new();
    for (i, event) in &events {
        if let Some(id) = event.id
            && let Some(first) = seen.insert(id, *i)
        {
            errors.push(FieldError::new(
                field_path(shape, *i, "id"),
                format!("repeats the id of events[{first}]"),
            ));
        }
    }
    if errors.is_empty() {
        Ok((shape, events.into_iter().map(|(_, e)| e).collect()))
    } else {
        Err(ApiError::Invalid(errors))
    }
}
