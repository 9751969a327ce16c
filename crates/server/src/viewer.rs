//! Viewer tokens (SPEC §10): short-lived, read-only credentials a host app mints for its own
//! end users, each scoped to an organization, an actor or a target.
//!
//! A token is stateless: `stv_`, the base64url JSON of its [`Grant`], `.`, and the base64url
//! Ed25519 signature of the checkpoint signing key over a domain-separated message (so no token
//! is ever a checkpoint note, nor a note a token). Servers sharing a signing key (PostgreSQL
//! deployments behind a balancer) accept each other's tokens; rotating the signing key ends
//! every token it signed. A token cannot be revoked: it lives at most
//! [`MAX_TTL_SECONDS`].

use axum::Json;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ed25519_dalek::{Signature, Signer};
use sealtrail_model::{Actor, ActorType, Category, FieldError, Tenant, Timestamp};
use sealtrail_store::fields::{ACTOR_ID, ORGANIZATION_ID, TARGET_ID, TARGET_TYPE};
use sealtrail_store::{EventFilter, Field, Scope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::signing::KeyRing;

/// The prefix of every viewer token.
pub const VIEWER_PREFIX: &str = "stv_";
/// A token's life when `ttl_seconds` is not given.
pub const DEFAULT_TTL_SECONDS: u64 = 900;
/// The longest life a token may be given: a day.
pub const MAX_TTL_SECONDS: u64 = 86_400;
/// The longest `viewer_id` accepted.
pub const MAX_VIEWER_ID_CHARS: usize = 200;
/// What the signature covers before the claims: no checkpoint note starts like this.
const DOMAIN: &[u8] = b"sealtrail viewer token v1\n";

/// What a viewer token may see: one organization's, one actor's or one target's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViewerScope {
    /// Events whose `organization.id` is this.
    OrganizationId(String),
    /// Events whose `actor.id` is this.
    ActorId(String),
    /// Events whose target is this record; its timeline adds the events naming it in
    /// `related`.
    Target(TargetRef),
}

/// A record, as a target scope names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetRef {
    /// `target.type`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    /// `target.id`.
    pub id: String,
}

impl ViewerScope {
    /// Narrows a list filter to the scope. `false` when what the filter asks lies wholly
    /// outside the scope (the answer is then an empty page).
    pub fn constrain(&self, filter: &mut EventFilter) -> bool {
        let mut pin = |field: Field, value: &str| {
            let wanted = filter.fields.entry(field).or_default();
            if wanted.is_empty() || wanted.iter().any(|w| w == value) {
                *wanted = vec![value.to_owned()];
                true
            } else {
                false
            }
        };
        match self {
            ViewerScope::OrganizationId(id) => pin(ORGANIZATION_ID, id),
            ViewerScope::ActorId(id) => pin(ACTOR_ID, id),
            ViewerScope::Target(t) => pin(TARGET_TYPE, &t.kind) && pin(TARGET_ID, &t.id),
        }
    }

    /// Whether an event (its JSON) lies in the scope. A target scope also takes the events
    /// naming the target in `related`: they are part of its timeline.
    pub fn contains(&self, event: &Value) -> bool {
        let is = |v: &Value, s: &str| v.as_str() == Some(s);
        match self {
            ViewerScope::OrganizationId(id) => is(&event["organization"]["id"], id),
            ViewerScope::ActorId(id) => is(&event["actor"]["id"], id),
            ViewerScope::Target(t) => {
                let names = |v: &Value| is(&v["type"], &t.kind) && is(&v["id"], &t.id);
                names(&event["target"])
                    || event["related"]
                        .as_array()
                        .is_some_and(|related| related.iter().any(names))
            }
        }
    }
}

/// What a viewer token grants, as signed inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The token's id, named in every `audit.viewed` it causes.
    pub token_id: Uuid,
    /// The tenant it reads.
    pub tenant: String,
    /// What it sees.
    pub scope: ViewerScope,
    /// Who the host app minted it for, when it said so: the actor of `audit.viewed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer_id: Option<String>,
    /// The id of the credential that minted it.
    pub minted_by: String,
    /// When it stops working, in microseconds since the epoch.
    pub expires_at: i64,
    /// The signing key.
    pub key_id: String,
}

impl Grant {
    /// How `audit.viewed` names the person (or, unnamed, the token) that viewed.
    pub fn actor(&self) -> Actor {
        match &self.viewer_id {
            Some(id) => Actor {
                id: id.clone(),
                actor_type: ActorType::User,
                name: None,
                email: None,
            },
            None => Actor {
                id: format!("viewer-token:{}", self.token_id),
                actor_type: ActorType::Service,
                name: None,
                email: None,
            },
        }
    }
}

fn signed_message(claims: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + claims.len());
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(claims);
    message
}

/// A token carrying `grant`, signed by the ring's signing key (whose id `grant.key_id`
/// should hold).
pub fn mint(keys: &KeyRing, grant: &Grant) -> String {
    let claims = serde_json::to_vec(grant).expect("a grant serialises");
    let signature = keys.active().sign(&signed_message(&claims));
    format!(
        "{VIEWER_PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(&claims),
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// The grant of a token the ring's signing key signed and that has not expired; 401 for
/// anything else.
pub fn verify(keys: &KeyRing, token: &str, now: Timestamp) -> Result<Grant, ApiError> {
    const BAD: ApiError = ApiError::Unauthorized("unknown or revoked credential");
    let body = token.strip_prefix(VIEWER_PREFIX).ok_or(BAD)?;
    let (claims, signature) = body.split_once('.').ok_or(BAD)?;
    let claims = URL_SAFE_NO_PAD.decode(claims).map_err(|_| BAD)?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or(BAD)?;
    keys.active()
        .verifying_key()
        .verify_strict(&signed_message(&claims), &Signature::from_bytes(&signature))
        .map_err(|_| BAD)?;
    let grant: Grant = serde_json::from_slice(&claims).map_err(|_| BAD)?;
    if grant.key_id != keys.active_id() {
        return Err(BAD);
    }
    if grant.expires_at <= now.micros() {
        return Err(ApiError::Unauthorized("the viewer token has expired"));
    }
    Ok(grant)
}

/// The body of `POST /viewer-tokens`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only: the body is parsed by hand for field-named errors.
pub struct ViewerTokenRequest {
    /// Exactly one of `{"organization_id": …}`, `{"actor_id": …}`, `{"target": {"type", "id"}}`.
    scope: ViewerScope,
    /// The token's life in seconds, 1–86 400 (default 900).
    #[schema(minimum = 1, maximum = 86400)]
    ttl_seconds: Option<u64>,
    /// Who the host app mints it for (at most 200 characters): recorded as the actor of each
    /// `audit.viewed`; without it the actor is `viewer-token:<token_id>`.
    viewer_id: Option<String>,
    /// The tenant, for credentials bound to all tenants (others may only name their own).
    tenant: Option<String>,
}

/// A minted viewer token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ViewerTokenBody {
    /// The token (`stv_…`): send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Its id, named in the `audit.viewed` events it causes.
    pub token_id: Uuid,
    /// The tenant it reads.
    pub tenant: String,
    /// What it sees.
    pub scope: ViewerScope,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// Reads one scope value, checked as the list filter of that field checks it.
fn scope_value(field: Field, value: &Value, path: &str) -> Result<String, FieldError> {
    let text = value
        .as_str()
        .ok_or_else(|| FieldError::new(path, "must be a string"))?;
    if text.is_empty() {
        return Err(FieldError::new(path, "must not be empty"));
    }
    (field.spec().parse)(text).map_err(|msg| FieldError::new(path, msg))
}

fn parse_scope(value: Option<&Value>) -> Result<ViewerScope, FieldError> {
    const ONE_OF: &str = "must be exactly one of {\"organization_id\": …}, {\"actor_id\": …}, \
                          {\"target\": {\"type\", \"id\"}}";
    let object = match value {
        None => return Err(FieldError::new("scope", "is required")),
        Some(Value::Object(o)) if o.len() == 1 => o,
        Some(_) => return Err(FieldError::new("scope", ONE_OF)),
    };
    let (name, inner) = object.iter().next().expect("one member");
    match name.as_str() {
        "organization_id" => Ok(ViewerScope::OrganizationId(scope_value(
            ORGANIZATION_ID,
            inner,
            "scope.organization_id",
        )?)),
        "actor_id" => Ok(ViewerScope::ActorId(scope_value(
            ACTOR_ID,
            inner,
            "scope.actor_id",
        )?)),
        "target" => {
            let target = inner
                .as_object()
                .ok_or_else(|| FieldError::new("scope.target", "must be {\"type\", \"id\"}"))?;
            if let Some(extra) = target.keys().find(|k| *k != "type" && *k != "id") {
                return Err(FieldError::new(
                    format!("scope.target.{extra}"),
                    "is not a field of a target scope",
                ));
            }
            let null = Value::Null;
            let kind = target.get("type").unwrap_or(&null);
            let id = target.get("id").unwrap_or(&null);
            Ok(ViewerScope::Target(TargetRef {
                kind: scope_value(TARGET_TYPE, kind, "scope.target.type")?,
                id: scope_value(TARGET_ID, id, "scope.target.id")?,
            }))
        }
        other => Err(FieldError::new(
            format!("scope.{other}"),
            "is not a scope: use organization_id, actor_id or target",
        )),
    }
}

/// What `POST /viewer-tokens` asks, checked; every bad field is named.
struct MintRequest {
    scope: ViewerScope,
    ttl_seconds: u64,
    viewer_id: Option<String>,
    tenant: Option<String>,
}

fn parse_request(value: Value) -> Result<MintRequest, Vec<FieldError>> {
    let Value::Object(mut body) = value else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let scope = parse_scope(body.remove("scope").as_ref()).map_err(|e| errors.push(e));
    let ttl_seconds = match body.remove("ttl_seconds") {
        None | Some(Value::Null) => DEFAULT_TTL_SECONDS,
        Some(v) => match v.as_number().and_then(sealtrail_model::json::whole_number) {
            Some(n) if (1..=MAX_TTL_SECONDS).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "ttl_seconds",
                    format!("must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}"),
                ));
                0
            }
        },
    };
    let mut text = |name: &str, max: usize| match body.remove(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => Some(s),
        Some(_) => {
            errors.push(FieldError::new(
                name,
                format!("must be a non-empty string of at most {max} characters"),
            ));
            None
        }
    };
    let viewer_id = text("viewer_id", MAX_VIEWER_ID_CHARS);
    let tenant = text("tenant", 256);
    for name in body.keys() {
        errors.push(FieldError::new(name.clone(), "is not a field of this body"));
    }
    match scope {
        Ok(scope) if errors.is_empty() => Ok(MintRequest {
            scope,
            ttl_seconds,
            viewer_id,
            tenant,
        }),
        _ => Err(errors),
    }
}

/// Mint a viewer token: read-only, short-lived, scoped to an organization, an actor or a
/// target. It reads only the list, search, by-id, entity, user and history endpoints, and only
/// its scope's events there; each of its reads is recorded as `audit.viewed`.
#[utoipa::path(
    post,
    path = "/api/v1/viewer-tokens",
    tag = "access",
    request_body(content = ViewerTokenRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The token", body = ViewerTokenBody),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad credential", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No read scope, another tenant, or a viewer token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad field, named in errors", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    crate::params::no_parameters(raw.as_deref())?;
    let value = crate::json_body(&headers, &body)?;
    let request = parse_request(value).map_err(ApiError::Invalid)?;
    let tenant: Tenant = principal.tenant(request.tenant.as_deref(), "tenant", true)?;
    let expires_at =
        Timestamp::from_micros(Timestamp::now().micros() + request.ttl_seconds as i64 * 1_000_000);
    let grant = Grant {
        token_id: Uuid::now_v7(),
        tenant: tenant.to_string(),
        scope: request.scope,
        viewer_id: request.viewer_id,
        minted_by: principal.key.id.clone(),
        expires_at: expires_at.micros(),
        key_id: state.keys.active_id().to_owned(),
    };
    let token = mint(&state.keys, &grant);
    let body = ViewerTokenBody {
        token,
        token_id: grant.token_id,
        tenant: grant.tenant,
        scope: grant.scope,
        expires_at: expires_at.to_rfc3339(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

impl AppState {
    /// Records `audit.viewed` when a viewer token read: its viewer (or the token) as actor,
    /// the token, its scope and what was read in `metadata`.
    pub(crate) async fn audit_viewed(
        &self,
        principal: &Principal,
        tenant: &Tenant,
        uri: &OriginalUri,
    ) -> Result<(), ApiError> {
        let Some(grant) = &principal.viewer else {
            return Ok(());
        };
        crate::record_self(
            self.store.as_ref(),
            tenant,
            "audit.viewed",
            Category::Read,
            grant.actor(),
            None,
            json!({
                "token_id": grant.token_id,
                "scope": grant.scope,
                "minted_by": grant.minted_by,
                "path": uri.path(),
                "query": uri.query(),
            }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_at: i64) -> Grant {
        Grant {
            token_id: Uuid::now_v7(),
            tenant: "acme".into(),
            scope: ViewerScope::ActorId("u1".into()),
            viewer_id: None,
            minted_by: "k".into(),
            expires_at,
            key_id: String::new(),
        }
    }

    #[test]
    fn a_token_verifies_only_unaltered_unexpired_and_under_the_same_key() {
        let keys = KeyRing::ephemeral();
        let now = Timestamp::now();
        let mut g = grant(now.micros() + 1_000_000);
        g.key_id = keys.active_id().to_owned();
        let token = mint(&keys, &g);
        assert_eq!(verify(&keys, &token, now).expect("valid"), g);
        // Expired a microsecond ago.
        let late = Timestamp::from_micros(g.expires_at);
        assert!(verify(&keys, &token, late).is_err());
        // Another ring's key.
        assert!(verify(&KeyRing::ephemeral(), &token, now).is_err());
        // Claims changed under the signature: another scope.
        let (claims, signature) = token[VIEWER_PREFIX.len()..].split_once('.').expect("valid");
        let mut other = g.clone();
        other.scope = ViewerScope::ActorId("u2".into());
        let forged = format!(
            "{VIEWER_PREFIX}{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).expect("valid"))
        );
        assert!(verify(&keys, &forged, now).is_err());
        // Truncated or garbled.
        assert!(verify(&keys, &format!("{VIEWER_PREFIX}{claims}"), now).is_err());
        assert!(verify(&keys, &token[..token.len() - 2], now).is_err());
    }

    #[test]
    fn scopes_pin_filters_and_refuse_what_lies_outside() {
        let scope = ViewerScope::Target(TargetRef {
            kind: "asset".into(),
            id: "a1".into(),
        });
        let mut open = EventFilter::default();
        assert!(scope.constrain(&mut open));
        assert_eq!(open.values(TARGET_ID), ["a1"]);
        assert_eq!(open.values(TARGET_TYPE), ["asset"]);
        let mut inside = EventFilter::default().with(TARGET_ID, ["a1", "a2"]);
        assert!(scope.constrain(&mut inside));
        assert_eq!(inside.values(TARGET_ID), ["a1"]);
        let mut outside = EventFilter::default().with(TARGET_ID, ["a2"]);
        assert!(!scope.constrain(&mut outside));
        let event = json!({"target": {"type": "user", "id": "u"}, "related": [{"type": "asset", "id": "a1"}]});
        assert!(scope.contains(&event));
        assert!(!scope.contains(&json!({"target": {"type": "asset", "id": "a2"}})));
        let org = ViewerScope::OrganizationId("o".into());
        assert!(org.contains(&json!({"organization": {"id": "o"}})));
        assert!(!org.contains(&json!({"actor": {"id": "o"}})));
    }

    #[test]
    fn requests_name_every_bad_field() {
        let fields = |v: Value| -> Vec<String> {
            parse_request(v)
                .err()
                .expect("refused")
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(json!({})), ["scope"]);
        assert_eq!(
            fields(json!({"scope": {"actor_id": "a", "organization_id": "o"}})),
            ["scope"]
        );
        assert_eq!(
            fields(json!({"scope": {"actor_id": 3}})),
            ["scope.actor_id"]
        );
        assert_eq!(
            fields(json!({"scope": {"target": {"type": "t"}}})),
            ["scope.target.id"]
        );
        assert_eq!(
            fields(json!({"scope": {"actor_id": "a"}, "ttl_seconds": 86401, "extra": 1})),
            ["ttl_seconds", "extra"]
        );
        assert_eq!(
            fields(json!({"scope": {"actor_id": "a"}, "ttl_seconds": 0})),
            ["ttl_seconds"]
        );
        let ok = parse_request(json!({"scope": {"actor_id": "a"}})).expect("valid");
        assert_eq!(ok.ttl_seconds, DEFAULT_TTL_SECONDS);
    }
}
