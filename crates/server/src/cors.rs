//! Cross-origin reads from a host app's pages (SPEC §10), allowed per tenant.
//!
//! The operator lists, for each tenant, the origins whose pages may call sealtrail
//! (`--cors-origin acme=https://app.acme.example`). A preflight carries no credential, so it
//! is answered for an origin some tenant allows; the real request's answer carries
//! `Access-Control-Allow-Origin` only when the origin is allowed for the tenant its credential
//! is bound to. Credentials bound to every tenant never get one: an admin key does not belong
//! in a browser.

use std::collections::{HashMap, HashSet};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sealtrail_model::Tenant;

use crate::AppState;
use crate::auth::CredentialTenant;
use crate::error::ApiError;

/// How long a browser may keep a preflight's answer, in seconds.
pub const PREFLIGHT_MAX_AGE: &str = "600";
const ALLOW_METHODS: &str = "GET, POST, DELETE";
const ALLOW_HEADERS: &str = "authorization, content-type, x-request-id, x-correlation-id";
const EXPOSE_HEADERS: &str = "x-request-id, retry-after, content-disposition";

/// The origins each tenant allows.
#[derive(Debug, Clone, Default)]
pub struct CorsSettings {
    by_tenant: HashMap<Tenant, HashSet<String>>,
    any: HashSet<String>,
}

impl CorsSettings {
    /// Settings from `tenant=origin` rules ([`parse_rule`]).
    pub fn new(rules: impl IntoIterator<Item = (Tenant, String)>) -> Self {
        let mut settings = Self::default();
        for (tenant, origin) in rules {
            settings.any.insert(origin.clone());
            settings.by_tenant.entry(tenant).or_default().insert(origin);
        }
        settings
    }

    /// Whether `tenant` allows `origin`.
    pub fn allows(&self, tenant: &Tenant, origin: &str) -> bool {
        self.by_tenant
            .get(tenant)
            .is_some_and(|origins| origins.contains(origin))
    }

    /// Every origin some tenant allows.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.any.iter().map(String::as_str)
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.any.is_empty()
    }
}

/// Reads a rule `tenant=origin`, the origin being `http(s)://host[:port]` with nothing after;
/// the origin comes back lower-cased, as browsers send it.
pub fn parse_rule(text: &str) -> Result<(Tenant, String), String> {
    let (tenant, origin) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not tenant=origin"))?;
    let tenant = sealtrail_model::validate_tenant(tenant.trim())
        .map_err(|e| format!("{text:?}: tenant {e}"))?;
    let origin = origin.trim().to_ascii_lowercase();
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?}: the origin must start with http:// or https://"))?;
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Err(format!(
            "{text:?}: the origin is scheme://host[:port], with no path, no trailing slash, no wildcard"
        ));
    }
    Ok((tenant, origin))
}

/// The CORS layer: answers preflights and marks answers a tenant's allowed origin may read.
pub async fn cors(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !state.cors.any.contains(&origin) {
            return ApiError::Forbidden(format!("origin {origin} is not allowed")).into_response();
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        allow_origin(headers, &origin);
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
        return response;
    }
    let slot = CredentialTenant::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if slot.0.get().is_some_and(|t| state.cors.allows(t, &origin)) {
        allow_origin(headers, &origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    response
}

fn allow_origin(headers: &mut axum::http::HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_a_tenant_and_a_bare_origin() {
        let (tenant, origin) = parse_rule("acme=https://App.Acme.example:8443").expect("valid");
        assert_eq!(tenant.as_str(), "acme");
        assert_eq!(origin, "https://app.acme.example:8443");
        for bad in [
            "https://app.example",
            "acme=app.example",
            "acme=https://app.example/",
            "acme=https://app.example/path",
            "acme=https://*.example",
            "acme=https://",
            "=https://app.example",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
        let settings =
            CorsSettings::new([parse_rule("acme=http://localhost:3000").expect("valid")]);
        assert!(settings.allows(&tenant, "http://localhost:3000"));
        assert!(!settings.allows(&tenant, "http://localhost:3001"));
    }
}
