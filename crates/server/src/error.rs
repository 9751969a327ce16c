//! The one API error type. Every failure leaves the server as RFC 9457 problem+json naming
//! each bad field; internal causes go to the log, never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealtrail_model::FieldError;
use sealtrail_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Each bad field or parameter, by JSON path or parameter name.
    pub errors: Vec<FieldError>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not well-formed JSON (400).
    #[error("{0}")]
    MalformedJson(String),
    /// JSON nested too deeply (400).
    #[error("JSON is nested deeper than {0} levels")]
    TooDeep(usize),
    /// Bad query or path parameters (400).
    #[error("invalid parameters")]
    BadParameters(Vec<FieldError>),
    /// Well-formed but invalid body (422).
    #[error("invalid request body")]
    Invalid(Vec<FieldError>),
    /// No or bad credential (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A credential without the scope or tenant (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing at this path (404).
    #[error("{0}")]
    NotFound(String),
    /// The same id with another body (409).
    #[error("event id {id} is already stored with a different body")]
    Conflict {
        /// JSON path of the id.
        field: String,
        /// The id.
        id: String,
    },
    /// Body too large (413).
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Wrong content type (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The write queue is full (503 with `Retry-After`).
    #[error("the write queue is full; retry later")]
    Overloaded,
    /// Over a rate limit (429; the limiter sets `Retry-After`).
    #[error("{0}")]
    TooManyRequests(String),
    /// The store cannot take the request now (503 with `Retry-After`).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// A single bad parameter (400).
    pub fn bad_parameter(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadParameters(vec![FieldError::new(field, message)])
    }

    /// A body that does not parse as JSON (400).
    pub fn malformed(err: serde_json::Error) -> Self {
        Self::MalformedJson(format!("the body is not valid JSON: {err}"))
    }

    /// A single invalid body field (422).
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::TooDeep(_) | Self::BadParameters(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed-json",
            Self::TooDeep(_) => "too-deep",
            Self::BadParameters(_) => "bad-parameters",
            Self::Invalid(_) => "validation",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::Conflict { .. } => "conflict",
            Self::TooLarge(_) => "too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::TooManyRequests(_) => "rate-limited",
            Self::Overloaded => "overloaded",
            Self::Unavailable(_) => "unavailable",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::BadParameters(errors) | Self::Invalid(errors) => {
                let n = errors.len();
                format!(
                    "{n} problem{} with the request; see errors",
                    if n == 1 { "" } else { "s" }
                )
            }
            other => other.to_string(),
        }
    }

    fn into_errors(self) -> Vec<FieldError> {
        match self {
            Self::BadParameters(errors) | Self::Invalid(errors) => errors,
            Self::Conflict { field, .. } => vec![FieldError::new(
                field,
                "is already stored with a different body",
            )],
            _ => Vec::new(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { id, index } => Self::Conflict {
                field: format!("events[{index}].id"),
                id: id.to_string(),
            },
            StoreError::Overloaded => Self::Overloaded,
            StoreError::Closed => Self::Unavailable("the server is shutting down".into()),
            StoreError::Database(cause) => {
                tracing::error!(error = %cause, "store failure");
                Self::Unavailable("the database did not answer".into())
            }
        }
    }
}

/// Builds a problem+json response.
pub fn problem_response(
    status: StatusCode,
    slug: &str,
    detail: String,
    errors: Vec<FieldError>,
) -> Response {
    let problem = Problem {
        problem_type: format!("https://sealtrail.dev/problems/{slug}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        errors,
    };
    let body = serde_json::to_vec(&problem).expect("problem serialises");
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = matches!(self, Self::Overloaded | Self::Unavailable(_));
        let slug = self.slug();
        let detail = self.detail();
        let mut response = problem_response(status, slug, detail, self.into_errors());
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
