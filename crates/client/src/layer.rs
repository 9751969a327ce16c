//! The tower layer for axum: audits the requests of routes marked with [`audited`] (or every
//! mutating request), filling `actor`, `context` and `outcome` by itself; handlers add target,
//! changes, related and metadata through the [`Audit`] extractor.
//!
//! - **Actor**: an [`Actor`] request extension set by the app's own authentication (before this
//!   layer, or through [`Audit::actor`] in the handler), else the claims of a bearer JWT
//!   (`sub`, `name`, `email`; HS256 or RS256) when one is configured, else `anonymous`.
//! - **IP**: the peer address (`ConnectInfo`); `x-forwarded-for` / `forwarded` are read only
//!   when the peer is a configured trusted proxy, right to left, skipping trusted hops.
//! - **Correlation id**: `x-correlation-id`, else `x-request-id`, else the trace id of
//!   `traceparent`, else a new one; echoed as `x-correlation-id` on the response.
//! - **Endpoint**: the route template (`/api/v1/assets/{id}`), method, status, duration;
//!   `outcome` is failure for 4xx and 5xx, with the handler's error text or the status reason.
//!
//! The handler runs inside an [`AuditContext`], so work it spawns with [`crate::spawn`] is
//! attributed to the same actor and correlation id. Recording never blocks the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response};
use futures::future::BoxFuture;
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sealtrail_model::event::{ActorType, Related, Target};
use sealtrail_model::{Actor, Category, Change, Context as EventContext, Outcome, Timestamp};
use serde_json::Value;
use tower::{Layer, Service};

use crate::{AuditContext, AuditEvent, Client};

/// What a handler or route adds to the request's event.
#[derive(Debug, Default)]
struct Draft {
    action: Option<String>,
    category: Option<Category>,
    event_type: Option<String>,
    actor: Option<Actor>,
    target: Option<Target>,
    changes: Vec<Change>,
    related: Vec<Related>,
    metadata: Option<Value>,
    error: Option<String>,
    skip: bool,
    /// Events to record after the request's own.
    then: Vec<AuditEvent>,
}

/// The handler's handle on the request's audit event (an axum extractor; also a request
/// extension). Calls are cheap and never fail.
#[derive(Clone, Debug)]
pub struct Audit(Arc<Mutex<Draft>>);

impl Audit {
    fn with(&self, f: impl FnOnce(&mut Draft)) {
        f(&mut self.0.lock().expect("audit draft lock is never poisoned"));
    }

    /// Sets the action (overrides the route's).
    pub fn action(&self, action: impl Into<String>) {
        self.with(|d| d.action = Some(action.into()));
    }

    /// Sets the domain event type.
    pub fn event_type(&self, event_type: impl Into<String>) {
        self.with(|d| d.event_type = Some(event_type.into()));
    }

    /// Sets the category.
    pub fn category(&self, category: Category) {
        self.with(|d| d.category = Some(category));
    }

    /// Sets the actor (when the app authenticates inside the handler).
    pub fn actor(&self, actor: Actor) {
        self.with(|d| d.actor = Some(actor));
    }

    /// Sets the target record.
    pub fn target(&self, target_type: impl Into<String>, id: impl Into<String>) {
        self.with(|d| {
            d.target = Some(Target {
                target_type: target_type.into(),
                id: id.into(),
                name: None,
            });
        });
    }

    /// Sets the field-level changes (see [`crate::changes`]).
    pub fn changes(&self, changes: Vec<Change>) {
        self.with(|d| d.changes = changes);
    }

    /// Links another record.
    pub fn related(&self, related_type: impl Into<String>, id: impl Into<String>) {
        self.with(|d| {
            d.related.push(Related {
                related_type: related_type.into(),
                id: id.into(),
            });
        });
    }

    /// Sets the metadata.
    pub fn metadata(&self, metadata: Value) {
        self.with(|d| d.metadata = Some(metadata));
    }

    /// Gives the failure's text (used when the status is 4xx or 5xx).
    pub fn error(&self, error: impl Into<String>) {
        self.with(|d| d.error = Some(error.into()));
    }

    /// Records nothing for this request.
    pub fn skip(&self) {
        self.with(|d| d.skip = true);
    }

    /// Records `event` right after the request's own event: for a change the request causes
    /// (the assignment a transfer makes), so that the log reads cause, then effect.
    pub fn then(&self, event: AuditEvent) {
        self.with(|d| d.then.push(event));
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Audit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Outside an audited stack the handle is a detached draft nobody reads.
        Ok(parts
            .extensions
            .get::<Audit>()
            .cloned()
            .unwrap_or_else(|| Audit(Arc::default())))
    }
}

#[derive(Clone)]
struct Settings {
    client: Arc<Client>,
    all_mutating: bool,
    jwt: Option<(DecodingKey, Validation)>,
    trusted: Vec<IpNet>,
}

/// The audit layer; add it with `Router::layer` so that it sees the matched route.
#[derive(Clone)]
pub struct AuditLayer(Arc<Settings>);

impl AuditLayer {
    /// A layer recording through `client`, auditing routes marked with [`audited`].
    pub fn new(client: Arc<Client>) -> Self {
        Self(Arc::new(Settings {
            client,
            all_mutating: false,
            jwt: None,
            trusted: Vec::new(),
        }))
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(Arc::make_mut(&mut self.0));
        self
    }

    /// Also audits every POST, PUT, PATCH and DELETE, unmarked ones as `http.<method>`.
    pub fn audit_all_mutating(self) -> Self {
        self.with(|s| s.all_mutating = true)
    }

    /// Takes the actor from bearer JWTs signed with this HS256 secret.
    pub fn jwt_hs256(self, secret: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_secret(secret)?;
        Ok(self.with(|s| s.jwt = Some((key, Validation::new(Algorithm::HS256)))))
    }

    /// Takes the actor from bearer JWTs signed with this RS256 key (PEM public key).
    pub fn jwt_rs256_pem(self, pem: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_rsa_pem(pem)?;
        Ok(self.with(|s| s.jwt = Some((key, Validation::new(Algorithm::RS256)))))
    }

    /// Proxies whose `x-forwarded-for` / `forwarded` headers are believed.
    pub fn trusted_proxies(self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.with(|s| s.trusted = nets.into_iter().collect())
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            settings: self.0.clone(),
        }
    }
}

/// The service [`AuditLayer`] makes.
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    settings: Arc<Settings>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The correlation id of a request: the caller's, else a new one.
fn correlation_id(headers: &HeaderMap) -> String {
    header(headers, "x-correlation-id")
        .or_else(|| header(headers, "x-request-id"))
        .map(|v| v.chars().take(256).collect())
        .or_else(|| {
            // traceparent: version-traceid-parentid-flags
            header(headers, "traceparent")
                .and_then(|t| t.split('-').nth(1))
                .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// The client's address, by the rule the server's rate limits share
/// ([`sealtrail_model::proxy::client_ip`]).
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    sealtrail_model::proxy::client_ip(
        peer,
        header(headers, "x-forwarded-for"),
        header(headers, "forwarded"),
        trusted,
    )
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    name: Option<String>,
    email: Option<String>,
}

fn jwt_actor(headers: &HeaderMap, jwt: &(DecodingKey, Validation)) -> Option<Actor> {
    let token = header(headers, "authorization")?.strip_prefix("Bearer ")?;
    let claims = jsonwebtoken::decode::<Claims>(token.trim(), &jwt.0, &jwt.1)
        .ok()?
        .claims;
    Some(Actor {
        id: claims.sub,
        actor_type: ActorType::User,
        name: claims.name,
        email: claims.email,
    })
}

fn is_mutating(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

impl<S, B, R> Service<Request<B>> for AuditService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let occurred_at = Timestamp::now();
        let settings = self.settings.clone();
        let headers = req.headers();
        let correlation = correlation_id(headers);
        let traceparent = header(headers, "traceparent").map(str::to_owned);
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let ip = client_ip(peer, headers, &settings.trusted).map(|ip| ip.to_string());
        let user_agent = header(headers, "user-agent").map(|u| u.chars().take(2048).collect());
        let actor = req.extensions().get::<Actor>().cloned().or_else(|| {
            settings
                .jwt
                .as_ref()
                .and_then(|jwt| jwt_actor(headers, jwt))
        });
        let method = req.method().clone();
        let endpoint = req
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        let draft = Audit(Arc::default());
        req.extensions_mut().insert(draft.clone());
        let context = AuditContext {
            actor: actor.clone(),
            correlation_id: Some(correlation.clone()),
            traceparent,
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = context.scope(inner.call(req)).await?;
            if let Ok(value) = HeaderValue::from_str(&correlation) {
                response.headers_mut().insert("x-correlation-id", value);
            }
            let d =
                std::mem::take(&mut *draft.0.lock().expect("audit draft lock is never poisoned"));
            let action = d.action.or_else(|| {
                (settings.all_mutating && is_mutating(&method))
                    .then(|| format!("http.{}", method.as_str().to_ascii_lowercase()))
            });
            let Some(action) = action.filter(|_| !d.skip) else {
                for event in d.then {
                    settings.client.record(event);
                }
                return Ok(response);
            };
            let status = response.status();
            let failed = status.is_client_error() || status.is_server_error();
            let mut event = AuditEvent::new(action, String::new());
            event.occurred_at = Some(occurred_at);
            event.actor = d.actor.or(actor).unwrap_or(Actor {
                id: "anonymous".into(),
                actor_type: ActorType::Anonymous,
                name: None,
                email: None,
            });
            event.category = d.category;
            event.event_type = d.event_type;
            event.target = d.target;
            event.changes = d.changes;
            event.related = d.related;
            event.metadata = d.metadata;
            if failed {
                event.outcome = Some(Outcome::Failure);
                event.error = Some(d.error.unwrap_or_else(|| status.to_string()));
            }
            event.context = Some(EventContext {
                ip,
                user_agent,
                session_id: None,
                correlation_id: Some(correlation),
                endpoint: Some(endpoint),
                method: Some(method.as_str().to_owned()),
                status_code: Some(status.as_u16()),
                duration_ms: serde_json::Number::from_f64(
                    (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
                ),
            });
            settings.client.record(event);
            for event in d.then {
                settings.client.record(event);
            }
            Ok(response)
        })
    }
}

/// Marks a route as audited with an action: `post(handler).layer(audited("asset.created"))`.
pub fn audited(action: impl Into<String>) -> AuditedLayer {
    AuditedLayer {
        action: action.into(),
        category: None,
        event_type: None,
    }
}

/// The route marker [`audited`] makes.
#[derive(Clone, Debug)]
pub struct AuditedLayer {
    action: String,
    category: Option<Category>,
    event_type: Option<String>,
}

impl AuditedLayer {
    /// With a category.
    pub fn category(mut self, category: Category) -> Self {
        self.category = Some(category);
        self
    }

    /// With a domain event type.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }
}

impl<S> Layer<S> for AuditedLayer {
    type Service = Audited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audited {
            inner,
            mark: Arc::new(self.clone()),
        }
    }
}

/// The service [`AuditedLayer`] makes.
#[derive(Clone, Debug)]
pub struct Audited<S> {
    inner: S,
    mark: Arc<AuditedLayer>,
}

impl<S, B> Service<Request<B>> for Audited<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(audit) = req.extensions().get::<Audit>() {
            audit.with(|d| {
                d.action.get_or_insert_with(|| self.mark.action.clone());
                if d.category.is_none() {
                    d.category = self.mark.category;
                }
                if d.event_type.is_none() {
                    d.event_type.clone_from(&self.mark.event_type);
                }
            });
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        /// Peer, headers, the client address expected.
        type Case<'a> = (&'a str, &'a [(&'static str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            // An untrusted peer's header is ignored.
            (
                "203.0.113.9",
                &[("x-forwarded-for", "1.1.1.1")],
                "203.0.113.9",
            ),
            // A trusted proxy: the first untrusted hop from the right.
            (
                "10.0.0.2",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.5")],
                "198.51.100.7",
            ),
            (
                "10.0.0.2",
                &[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")],
                "2001:db8::1",
            ),
            ("10.0.0.2", &[], "10.0.0.2"),
            (
                "10.0.0.2",
                &[("x-forwarded-for", "10.1.1.1, 10.2.2.2")],
                "10.1.1.1",
            ),
        ];
        for (peer, hs, want) in cases {
            let got = client_ip(Some(ip(peer)), &headers(hs), &trusted);
            assert_eq!(got, Some(ip(want)), "{peer} {hs:?}");
        }
    }

    #[test]
    fn the_correlation_id_comes_from_the_caller_when_it_gave_one() {
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            correlation_id(&headers(&[
                ("x-correlation-id", "c-1"),
                ("x-request-id", "r-1")
            ])),
            "c-1"
        );
        assert_eq!(correlation_id(&headers(&[("x-request-id", "r-1")])), "r-1");
        assert_eq!(
            correlation_id(&headers(&[("traceparent", trace)])),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let made = correlation_id(&HeaderMap::new());
        assert_eq!(made.len(), 32);
        assert_ne!(made, correlation_id(&HeaderMap::new()));
    }
}
