//! `GET /audit-logs/export`: every matching event as CSV, a JSON array or verifiable NDJSON,
//! streamed at constant memory as an attachment, then recorded as `audit.exported`.
//!
//! The export runs in its own task, writing page-sized chunks into a bounded channel that the
//! response body drains, so a slow reader slows the export instead of filling memory. The
//! `audit.exported` event is recorded after the last row and before the response ends: should
//! it fail, the response is cut short rather than completed unaudited.

use std::io;

use axum::body::Body;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use sealtrail_model::{Category, Timestamp};
use sealtrail_store::export::{self, ExportError, ExportQuery, ExportSummary, Format};
use sealtrail_store::{Order, Scope};
use tokio::sync::{mpsc, oneshot};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::params::parse_export_query;

/// Chunks (a page of events each) that may wait for the reader.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Export every matching event as an attachment.
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs/export",
    tag = "read",
    params(crate::openapi::ExportDoc),
    responses(
        (status = 200, description = "Every matching event: CSV (RFC 4180, header row), a JSON array, or NDJSON with the proof material `sealtrail verify --export` checks offline", content(
            (String = "text/csv"),
            (Vec<sealtrail_model::Event> = "application/json"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "A bad query parameter, named in errors", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No read scope, or another tenant", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    uri: OriginalUri,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (format, params) = parse_export_query(raw.as_deref()).map_err(ApiError::BadParameters)?;
    principal.require(Scope::Read)?;
    let tenant = principal.tenant(params.tenant.as_deref(), "tenant", false)?;
    let upto = state
        .store
        .tree_heads()
        .await?
        .into_iter()
        .find(|h| h.tenant == tenant)
        .map_or(0, |h| h.size);
    let checkpoint = if format == Format::Ndjson && upto > 0 {
        crate::checkpointer::covering(
            state.store.as_ref(),
            &state.keys,
            &state.checkpoints,
            &tenant,
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot sign a checkpoint: {e}")))?
    } else {
        None
    };
    let query = ExportQuery {
        tenant: tenant.clone(),
        filter: params.filter,
        order: params.order,
        upto,
        checkpoint,
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let (done_tx, done_rx) = oneshot::channel::<Result<(), String>>();
    let filename = format!(
        "sealtrail-{}-{}.{}",
        tenant.as_str(),
        Timestamp::now()
            .to_rfc3339()
            .replace([':', '-'], "")
            .split('.')
            .next()
            .unwrap_or_default(),
        format.as_str()
    );
    let task_state = state.clone();
    let task_principal = principal.clone();
    let filter_text = uri.query().map(str::to_owned);
    tokio::spawn(async move {
        let result = export::run(task_state.store.as_ref(), format, &query, &tx, &mut |_| {}).await;
        drop(tx);
        let outcome = record(
            &task_state,
            &task_principal,
            &query,
            format,
            filter_text,
            &result,
        )
        .await;
        let _ = done_tx.send(match (result, outcome) {
            (Ok(_), Ok(())) => Ok(()),
            (Err(e), _) => Err(e.to_string()),
            (Ok(_), Err(e)) => Err(format!("the export could not be recorded: {e}")),
        });
    });
    // The first chunk (at least the header) is awaited here, so a failure before anything was
    // written is an error answer, not a cut response.
    let Some(first) = rx.recv().await else {
        let detail = done_rx
            .await
            .unwrap_or_else(|_| Err("the export task ended".into()))
            .err()
            .unwrap_or_else(|| "the export wrote nothing".into());
        return Err(ApiError::Unavailable(detail));
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, io::Error>(Bytes::from(chunk)), rx))
    });
    let end = futures::stream::once(done_rx).filter_map(|done| async move {
        match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "export cut short");
                Some(Err(io::Error::other(e)))
            }
            Err(_) => Some(Err(io::Error::other("the export task ended"))),
        }
    });
    let body = futures::stream::once(async move { Ok(Bytes::from(first)) })
        .chain(rest)
        .chain(end);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Records `audit.exported` in the exported tenant: the format, the filter as given, the rows
/// written and whether the export ran to its end.
async fn record(
    state: &AppState,
    principal: &Principal,
    query: &ExportQuery,
    format: Format,
    filter: Option<String>,
    result: &Result<ExportSummary, ExportError>,
) -> Result<(), ApiError> {
    let (rows, complete, error) = match result {
        Ok(summary) => (summary.rows, true, None),
        Err(e) => (0, false, Some(e.to_string())),
    };
    state
        .audit_self(
            &query.tenant,
            "audit.exported",
            Category::Read,
            principal,
            None,
            serde_json::json!({
                "format": format.as_str(),
                "query": filter,
                "order": match query.order { Order::Asc => "asc", Order::Desc => "desc" },
                "rows": rows,
                "upto_seq": query.upto,
                "checkpoint_size": query.checkpoint.as_ref().map(|c| c.size),
                "complete": complete,
                "error": error,
                "cross_tenant": principal.is_global(),
            }),
        )
        .await
}
