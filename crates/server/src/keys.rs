//! Key management: `POST /keys`, `GET /keys`, `DELETE /keys/{id}` (admin scope).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sealtrail_model::{FieldError, Timestamp, validate_tenant};
use sealtrail_store::{ApiKey, NewKey, Scope, TenantScope};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Principal, generate_token, hash_token};
use crate::error::ApiError;
use crate::params::tenant_and_counts;

/// A key as listed (never with its token).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key id.
    pub id: String,
    /// Its tenant, or `*`.
    pub tenant: String,
    /// Its scopes.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// Its name.
    pub name: String,
    /// Creation time.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Revocation time.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            tenant: k.tenant.to_string(),
            scopes: k.scopes,
            name: k.name,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A newly created key: the only time its token is shown.
#[derive(Serialize, ToSchema)]
pub struct KeyCreated {
    /// The key id.
    pub id: String,
    /// The token; store it now, it is never shown again.
    pub token: String,
    /// Its tenant, or `*`.
    pub tenant: String,
    /// Its scopes.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// Its name.
    pub name: String,
    /// Creation time.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Leaves the token out, so that a log line formatting the answer never prints it.
impl std::fmt::Debug for KeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCreated")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .field("name", &self.name)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// The key list.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// The keys.
    pub items: Vec<KeyView>,
}

/// The body of `POST /keys`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Documentation only: the body is validated field by field.
pub struct NewKeyBody {
    /// The tenant, or `*` for an admin key over every tenant.
    tenant: String,
    /// Non-empty subset of `ingest`, `read`, `admin`.
    scopes: Vec<String>,
    /// A human name.
    name: Option<String>,
}

fn parse_new_key(body: Value) -> Result<(TenantScope, Vec<Scope>, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let Value::Object(mut map) = body else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    for key in map.keys() {
        if !["tenant", "scopes", "name"].contains(&key.as_str()) {
            errors.push(FieldError::new(key, "unknown field"));
        }
    }
    let tenant = match map.remove("tenant") {
        Some(Value::String(t)) if t == "*" => Some(TenantScope::All),
        Some(Value::String(t)) => match validate_tenant(&t) {
            Ok(t) => Some(TenantScope::One(t)),
            Err(msg) => {
                errors.push(FieldError::new("tenant", msg));
                None
            }
        },
        None | Some(Value::Null) => {
            errors.push(FieldError::new("tenant", "is required"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("tenant", "must be a string"));
            None
        }
    };
    let mut scopes = Vec::new();
    match map.remove("scopes") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().and_then(Scope::parse) {
                    Some(s) if !scopes.contains(&s) => scopes.push(s),
                    Some(_) => {}
                    None => errors.push(FieldError::new(
                        format!("scopes[{i}]"),
                        "must be ingest, read or admin",
                    )),
                }
            }
        }
        None | Some(Value::Null) => errors.push(FieldError::new("scopes", "is required")),
        Some(_) => errors.push(FieldError::new(
            "scopes",
            "must be a non-empty array of ingest, read, admin",
        )),
    }
    scopes.sort();
    let name = match map.remove("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(n)) if n.chars().count() <= 128 => n,
        Some(_) => {
            errors.push(FieldError::new(
                "name",
                "must be a string of at most 128 characters",
            ));
            String::new()
        }
    };
    if tenant == Some(TenantScope::All) && !scopes.contains(&Scope::Admin) {
        errors.push(FieldError::new(
            "tenant",
            "only admin keys may be bound to all tenants (*)",
        ));
    }
    match tenant {
        Some(tenant) if errors.is_empty() => Ok((tenant, scopes, name)),
        _ => Err(errors),
    }
}

/// Create an API key. The token is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    request_body(content = NewKeyBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The key, with its token", body = KeyCreated),
        (status = 403, description = "Not an admin key, or another tenant", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad field", body = crate::error::Problem, content_type = "application/problem+json"),
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
    principal.require(Scope::Admin)?;
    crate::params::no_parameters(raw.as_deref())?;
    let value = crate::json_body(&headers, &body)?;
    let (tenant, scopes, name) = parse_new_key(value).map_err(ApiError::Invalid)?;
    if !principal.is_global() && tenant != principal.key.tenant {
        return Err(ApiError::Forbidden(format!(
            "this key may only create keys for tenant {}",
            principal.key.tenant
        )));
    }
    let created = create_key(
        state.store.as_ref(),
        tenant,
        scopes,
        name,
        principal.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// List keys: all of them for a key bound to `*` (or one tenant's with `?tenant=`), else the
/// key's own tenant's.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    params(("tenant" = Option<String>, Query, description = "Only this tenant's keys")),
    responses(
        (status = 200, description = "The keys, without tokens", body = KeyList),
        (status = 403, description = "Not an admin key", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<KeyList>, ApiError> {
    principal.require(Scope::Admin)?;
    let (requested, _) = tenant_and_counts(raw.as_deref(), &[])?;
    let scope = match (principal.is_global(), requested) {
        (true, None) => TenantScope::All,
        (_, requested) => {
            TenantScope::One(principal.tenant(requested.as_deref(), "tenant", false)?)
        }
    };
    let keys = state.store.list_keys(scope).await?;
    Ok(Json(KeyList {
        items: keys.into_iter().map(KeyView::from).collect(),
    }))
}

/// Revoke a key, at once.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Admin)?;
    crate::params::no_parameters(raw.as_deref())?;
    let not_found = || ApiError::NotFound(format!("no key {id}"));
    // A tenant's admin sees only its tenant's keys; others are simply not found.
    let visible = state
        .store
        .list_keys(principal.key.tenant.clone())
        .await?
        .into_iter()
        .any(|k| k.id == id);
    if !visible {
        return Err(not_found());
    }
    revoke_key(state.store.as_ref(), &id, principal.actor())
        .await?
        .ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a key and records `audit.key_created` in its tenant, by `actor`: the API's and
/// `sealtrail keys create`'s one way to make a key. Only the answer holds the token.
pub async fn create_key(
    store: &dyn sealtrail_store::Store,
    tenant: TenantScope,
    scopes: Vec<Scope>,
    name: String,
    actor: sealtrail_model::Actor,
) -> Result<KeyCreated, ApiError> {
    let token = generate_token();
    let key = store
        .create_key(NewKey {
            id: Uuid::now_v7().to_string(),
            tenant,
            scopes,
            name,
            token_hash: hash_token(&token),
            created_at: Timestamp::now(),
        })
        .await?;
    if let TenantScope::One(tenant) = &key.tenant {
        crate::record_self(
            store,
            tenant,
            "audit.key_created",
            sealtrail_model::Category::Create,
            actor,
            Some(&key),
            json!({"scopes": key.scopes}),
        )
        .await?;
    }
    Ok(KeyCreated {
        id: key.id,
        token,
        tenant: key.tenant.to_string(),
        scopes: key.scopes,
        name: key.name,
        created_at: key.created_at,
    })
}

/// Revokes a key (at once) and records `audit.key_revoked` in its tenant, by `actor`; `None`
/// when there is no such key. Revoking twice keeps the first time.
pub async fn revoke_key(
    store: &dyn sealtrail_store::Store,
    id: &str,
    actor: sealtrail_model::Actor,
) -> Result<Option<ApiKey>, ApiError> {
    let Some(key) = store.revoke_key(id.to_owned(), Timestamp::now()).await? else {
        return Ok(None);
    };
    if let TenantScope::One(tenant) = &key.tenant {
        crate::record_self(
            store,
            tenant,
            "audit.key_revoked",
            sealtrail_model::Category::Delete,
            actor,
            Some(&key),
            json!({}),
        )
        .await?;
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_never_shows_its_token_in_debug_output() {
        let created = KeyCreated {
            id: "k1".into(),
            token: "st_secretsecretsecret".into(),
            tenant: "acme".into(),
            scopes: vec![Scope::Ingest],
            name: "ci".into(),
            created_at: Timestamp::now(),
        };
        let shown = format!("{created:?}");
        assert!(!shown.contains("st_secretsecretsecret"), "{shown}");
        assert!(shown.contains("acme"), "{shown}");
        // The one place the token is meant to appear: the answer's body.
        let body = serde_json::to_string(&created).expect("serialise");
        assert!(body.contains("st_secretsecretsecret"));
    }
}
