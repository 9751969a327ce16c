//! Operations: liveness, readiness, the OpenAPI document and the offline API reference.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::problem_response;

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
    /// Events waiting in the write queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<usize>,
    /// Most events the write queue holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<usize>,
    /// Events in the log that the derived data (filters, timelines) does not cover yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_lag: Option<u64>,
    /// Unindexed events of one tenant beyond which ingest into it answers 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_max_lag: Option<u64>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        queue_depth: None,
        queue_capacity: None,
        index_lag: None,
        index_max_lag: None,
    })
}

/// The store answers and the write queue is not saturated (below 90 %); the answer also says
/// how far the derived data lags behind the log.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "Why the server is not ready", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(err) = state.store.ping().await {
        return problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!("the store is unreachable: {err}"),
            Vec::new(),
        );
    }
    let queue = state.store.queue_status();
    if queue.depth * 10 >= queue.capacity * 9 {
        return problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!(
                "the write queue is saturated ({} of {} events)",
                queue.depth, queue.capacity
            ),
            Vec::new(),
        );
    }
    Json(Health {
        status: "ready",
        queue_depth: Some(queue.depth),
        queue_capacity: Some(queue.capacity),
        index_lag: Some(queue.index_lag),
        index_max_lag: Some(queue.index_max_lag),
    })
    .into_response()
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let mut response = state.openapi.to_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /docs`: the API reference, rendered on the server from the OpenAPI document, with no
/// script and no asset from anywhere else.
pub async fn docs(State(state): State<AppState>) -> Html<String> {
    Html(state.docs_html.to_string())
}
