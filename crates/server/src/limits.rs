//! Rate limits and request timeouts.
//!
//! Two token buckets may apply to a request: one per credential (keyed by a hash of the bearer
//! token, so a flood of guessed tokens is limited without a store lookup each) and one per
//! client IP (the peer, or behind a trusted proxy the address it forwards, by the rule the
//! client library uses: `sealtrail_model::proxy`). A request over either limit gets 429
//! problem+json with `Retry-After` and is not processed. Probes and `/metrics` are never
//! limited.
//!
//! Reads (and every route but ingest) answer 503 with `Retry-After` when they take longer than
//! the request timeout. Ingest is left alone: cutting its answer after the commit would invite
//! a retry that stores an id-less event twice; the bounded write queue limits it instead.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
pub use sealtrail_model::proxy::IpNet;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Requests allowed per second, with bursts of as many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub NonZeroU32);

/// How requests are limited. The default limits nothing and times reads out after 30 s.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Per credential (bearer token).
    pub per_credential: Option<Rate>,
    /// Per client IP.
    pub per_ip: Option<Rate>,
    /// Proxies whose forwarded-for headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a request other than ingest may take to answer; `None` for no bound.
    pub request_timeout: Option<Duration>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            per_credential: None,
            per_ip: None,
            trusted_proxies: Vec::new(),
            request_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// The limiters of a running server.
pub struct Limits {
    settings: LimitSettings,
    per_credential: Option<DefaultKeyedRateLimiter<[u8; 16]>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Buckets unused for a while are forgotten every this many checks.
const SWEEP_EVERY: u64 = 16_384;

impl Limits {
    /// Limiters for these settings.
    pub fn new(settings: LimitSettings) -> Arc<Self> {
        let quota = |r: Rate| Quota::per_second(r.0).allow_burst(r.0);
        Arc::new(Self {
            per_credential: settings
                .per_credential
                .map(|r| RateLimiter::keyed(quota(r))),
            per_ip: settings.per_ip.map(|r| RateLimiter::keyed(quota(r))),
            settings,
            checks: AtomicU64::new(0),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// `Err(wait)` when a request of this credential from this address is over a limit.
    fn check(
        &self,
        token: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<(), (Duration, &'static str)> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            if let Some(l) = &self.per_credential {
                l.retain_recent();
            }
            if let Some(l) = &self.per_ip {
                l.retain_recent();
            }
        }
        let now = DefaultClock::default().now();
        if let (Some(limiter), Some(ip)) = (&self.per_ip, ip)
            && let Err(not_until) = limiter.check_key(&ip)
        {
            return Err((not_until.wait_time_from(now), "client address"));
        }
        if let (Some(limiter), Some(token)) = (&self.per_credential, token) {
            let digest = Sha256::digest(token.as_bytes());
            let mut key = [0u8; 16];
            key.copy_from_slice(&digest[..16]);
            if let Err(not_until) = limiter.check_key(&key) {
                return Err((not_until.wait_time_from(now), "credential"));
            }
        }
        Ok(())
    }
}

/// Paths that are never limited nor timed out: probes and metrics.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The rate-limit and timeout middleware.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if exempt(path) {
        return next.run(request).await;
    }
    let limits = state.limits.clone();
    let headers = request.headers();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // The client's address matters only to a per-address limit.
    let ip = if limits.per_ip.is_some() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        sealtrail_model::proxy::client_ip(
            peer,
            header_str("x-forwarded-for"),
            header_str("forwarded"),
            &limits.settings.trusted_proxies,
        )
    } else {
        None
    };
    if let Err((wait, which)) = limits.check(token, ip) {
        return too_many(wait, which);
    }
    let ingest = request.method() == Method::POST && path == "/api/v1/events";
    match limits.settings.request_timeout {
        Some(limit) if !ingest => match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                let mut response = ApiError::Unavailable(format!(
                    "the request took longer than {} s",
                    limit.as_secs_f64()
                ))
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        },
        _ => next.run(request).await,
    }
}

/// 429 problem+json with `Retry-After` in whole seconds (at least 1).
fn too_many(wait: Duration, which: &str) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = ApiError::TooManyRequests(format!(
        "too many requests for this {which}; retry after {seconds} s"
    ))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
