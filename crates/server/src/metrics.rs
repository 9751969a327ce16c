//! `GET /metrics` in the Prometheus text format: the process-wide recorder behind the
//! `metrics` facade, the HTTP latency middleware, and the gauges read when scraped (queue
//! depth, indexer lag, checkpoint age). The names are in `sealtrail_store::metrics`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sealtrail_model::Timestamp;
use sealtrail_store::metrics as names;

use crate::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The Prometheus recorder, installed as the process's global recorder on first use. `None`
/// when another recorder was installed first (an embedding program's own): sealtrail's metrics
/// then go to that one, and `/metrics` answers 503.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(names::BATCH_SIZE.to_owned()),
                    &names::BATCH_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_owned()),
                    &names::DURATION_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// The `# HELP` text of every metric.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::EVENTS_INGESTED,
        Unit::Count,
        "Events stored by ingest, by tenant."
    );
    describe_counter!(
        names::EVENTS_DUPLICATE,
        Unit::Count,
        "Events sent again that were already stored, by tenant."
    );
    describe_counter!(
        names::EVENTS_FAILED,
        Unit::Count,
        "Events of ingest requests that stored nothing, by the credential's tenant and reason."
    );
    describe_gauge!(
        names::QUEUE_DEPTH,
        Unit::Count,
        "Events waiting in the write queue."
    );
    describe_gauge!(
        names::QUEUE_CAPACITY,
        Unit::Count,
        "Events the write queue holds before ingest answers 503."
    );
    describe_histogram!(names::BATCH_SIZE, Unit::Count, "Events per group commit.");
    describe_histogram!(
        names::COMMIT_DURATION,
        Unit::Seconds,
        "Time from taking a group off the queue to its durable commit."
    );
    describe_counter!(
        names::COMMITS_FAILED,
        Unit::Count,
        "Group commits that failed."
    );
    describe_histogram!(
        names::HTTP_DURATION,
        Unit::Seconds,
        "HTTP request duration until the answer's headers, by route pattern, method and status."
    );
    describe_gauge!(
        names::INDEX_LAG,
        Unit::Count,
        "Events in the log not yet covered by the indexes, over every tenant."
    );
    describe_counter!(
        names::INDEX_EVENTS,
        Unit::Count,
        "Log positions the indexer has covered with derived data, by tenant."
    );
    describe_histogram!(
        names::INDEX_STAGE_DURATION,
        Unit::Seconds,
        "Time each indexing pass spent in each stage (read, derive, merge, write, commit)."
    );
}

/// The metrics, Prometheus text format 0.0.4.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Every metric in the Prometheus text format", content_type = "text/plain", body = String),
        (status = 503, description = "Another metrics recorder owns this process", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn scrape(State(state): State<AppState>) -> Response {
    let Some(handle) = recorder() else {
        return crate::error::ApiError::Unavailable(
            "metrics go to another recorder in this process".into(),
        )
        .into_response();
    };
    let status = state.store.queue_status();
    metrics::gauge!(names::QUEUE_DEPTH).set(status.depth as f64);
    metrics::gauge!(names::QUEUE_CAPACITY).set(status.capacity as f64);
    metrics::gauge!(names::INDEX_LAG).set(status.index_lag as f64);
    let mut text = handle.render();
    checkpoint_gauges(&state, &mut text);
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Appends the checkpoint gauges of every tenant. Written here rather than set in the
/// recorder at each scrape: with a thousand tenants, two thousand registry updates per scrape
/// cost more than the rest of it.
fn checkpoint_gauges(state: &AppState, text: &mut String) {
    use std::fmt::Write;
    let newest = match state.newest_checkpoints.read() {
        Ok(map) => map.clone(),
        Err(_) => return,
    };
    if newest.is_empty() {
        return;
    }
    let mut newest: Vec<_> = newest.into_iter().collect();
    newest.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let now = Timestamp::now().micros();
    let label = |t: &sealtrail_store::Tenant| t.as_str().replace('\\', "\\\\").replace('"', "\\\"");
    let _ = writeln!(
        text,
        "# HELP {} Seconds since the newest signed checkpoint of the tenant was issued.\n# TYPE {} gauge",
        names::CHECKPOINT_AGE,
        names::CHECKPOINT_AGE
    );
    for (tenant, (issued_at, _)) in &newest {
        let age = (now - issued_at.micros()).max(0) as f64 / 1e6;
        let _ = writeln!(
            text,
            "{}{{tenant=\"{}\"}} {age}",
            names::CHECKPOINT_AGE,
            label(tenant)
        );
    }
    let _ = writeln!(
        text,
        "\n# HELP {} Events the newest signed checkpoint of the tenant covers.\n# TYPE {} gauge",
        names::CHECKPOINT_SIZE,
        names::CHECKPOINT_SIZE
    );
    for (tenant, (_, size)) in &newest {
        let _ = writeln!(
            text,
            "{}{{tenant=\"{}\"}} {size}",
            names::CHECKPOINT_SIZE,
            label(tenant)
        );
    }
}

/// Records every request's duration by matched route pattern (`unmatched` for a 404), method
/// and status. A streamed answer (an export) counts until its headers are sent.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        names::HTTP_DURATION,
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}
