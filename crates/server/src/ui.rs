//! The web UI (SPEC §8, §10), served by the binary: one page, its script and its style sheet,
//! embedded at build time (`crates/server/ui/`, plain files, no build step), nothing fetched
//! from elsewhere. The page talks to the API with the credential the reader signs in with.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");
const VERIFY: &str = include_str!("../ui/verify.js");
const VIEWER_PAGE: &str = include_str!("../ui/viewer.html");
const VIEWER_SCRIPT: &str = include_str!("../ui/viewer.js");

/// What the page may load: its own script and style, the API; no inline code, no frames
/// around it.
pub const UI_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the page.
pub async fn index() -> Response {
    let mut response = asset(INDEX, "text/html; charset=utf-8");
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(UI_POLICY),
    );
    response
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /ui/verify.js`: the in-browser check of an event's seal.
pub async fn verify() -> Response {
    asset(VERIFY, "text/javascript; charset=utf-8")
}

/// `GET /viewer`: the embeddable timeline of a viewer token's scope (SPEC §10). It may be
/// framed by the pages of the origins the operator allows for some tenant (`--cors-origin`),
/// and by nothing else.
pub async fn viewer(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> Response {
    let mut response = asset(VIEWER_PAGE, "text/html; charset=utf-8");
    let mut ancestors: Vec<&str> = state.cors.origins().collect();
    ancestors.sort_unstable();
    let ancestors = if ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        ancestors.join(" ")
    };
    let policy = UI_POLICY.replace(
        "frame-ancestors 'none'",
        &format!("frame-ancestors {ancestors}"),
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// `GET /ui/viewer.js`.
pub async fn viewer_script() -> Response {
    asset(VIEWER_SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /ui/app.css`.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
