//! Credentials: API keys (`st_` + 43 base62 characters), kept only as SHA-256 hashes, with
//! scopes and a tenant (or `*` for every tenant, admin keys only).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rand::Rng;
use rand::distr::Alphanumeric;
use sealtrail_store::{ApiKey, Scope, Tenant, TenantScope};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// The prefix of every API key.
pub const TOKEN_PREFIX: &str = "st_";
/// Random base62 characters after the prefix: 43 of them carry 256 bits.
pub const TOKEN_RANDOM_CHARS: usize = 43;
/// The id of the key given by `SEALTRAIL_ADMIN_TOKEN`.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap";

/// A new random API key.
pub fn generate_token() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(TOKEN_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{TOKEN_PREFIX}{random}")
}

/// The hash under which a token is stored.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The credential a request was made with.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key; for a JWT reader, one made from its token (id and name its `sub`, scope
    /// `read`, its tenant or every tenant).
    pub key: ApiKey,
    /// Whether the credential is a JWT reader rather than an API key.
    pub jwt: bool,
    /// For a viewer token: what it grants. Only handlers taking [`Viewable`] see one; every
    /// other route refuses viewer tokens with 403.
    pub viewer: Option<std::sync::Arc<crate::viewer::Grant>>,
}

/// A credential on a route that also serves viewer tokens (the list, search, by-id, entity,
/// user and history reads); [`Principal`] itself refuses them.
#[derive(Debug, Clone)]
pub struct Viewable(pub Principal);

/// Where a request's credential says which tenant it acts for, for the CORS layer
/// ([`crate::cors`]): filled when the credential is bound to one tenant.
#[derive(Debug, Clone, Default)]
pub struct CredentialTenant(pub std::sync::Arc<std::sync::OnceLock<Tenant>>);

impl Principal {
    /// Fails with 403 unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this key lacks the {} scope",
                scope.as_str()
            )))
        }
    }

    /// Whether the key is bound to every tenant.
    pub fn is_global(&self) -> bool {
        self.key.is_global()
    }

    /// How events sealtrail records about this credential's acts name it.
    pub fn actor(&self) -> sealtrail_model::Actor {
        if let Some(grant) = &self.viewer {
            return grant.actor();
        }
        if self.jwt {
            // SPEC §12: a JWT reader is `{"id": <sub>, "type": "user"}`.
            return sealtrail_model::Actor {
                id: self.key.id.clone(),
                actor_type: sealtrail_model::ActorType::User,
                name: None,
                email: None,
            };
        }
        sealtrail_model::Actor {
            id: self.key.id.clone(),
            actor_type: sealtrail_model::ActorType::Service,
            name: Some(self.key.name.clone()).filter(|n| !n.is_empty()),
            email: None,
        }
    }

    /// The tenant a request concerns: the key's own, or the one it names. A key bound to `*`
    /// must name one; any other key may only name its own (else 403). `field` names where the
    /// tenant was given, for the error.
    pub fn tenant(
        &self,
        requested: Option<&str>,
        field: &str,
        in_body: bool,
    ) -> Result<Tenant, ApiError> {
        let bound = match &self.key.tenant {
            TenantScope::All => None,
            TenantScope::One(t) => Some(t),
        };
        match (bound, requested) {
            (None, Some(t)) => sealtrail_model::validate_tenant(t).map_err(|msg| {
                if in_body {
                    ApiError::invalid(field, msg)
                } else {
                    ApiError::bad_parameter(field, msg)
                }
            }),
            (None, None) => {
                let msg = "is required with a key bound to all tenants";
                Err(if in_body {
                    ApiError::invalid(field, msg)
                } else {
                    ApiError::bad_parameter(field, msg)
                })
            }
            (Some(own), Some(t)) if own.as_str() != t => Err(ApiError::Forbidden(format!(
                "this key is bound to tenant {own} and may not use tenant {t}"
            ))),
            (Some(own), _) => Ok(own.clone()),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, state).await?;
        if principal.viewer.is_some() {
            return Err(ApiError::Forbidden(
                "a viewer token reads only the list, search, by-id, entity, user and history \
                 endpoints"
                    .into(),
            ));
        }
        Ok(principal)
    }
}

impl FromRequestParts<AppState> for Viewable {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state).await.map(Viewable)
    }
}

/// The credential of a request, whatever its kind; the tenant it is bound to is told to the
/// CORS layer.
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
    let principal = credential(parts, state).await?;
    if let (Some(slot), TenantScope::One(tenant)) = (
        parts.extensions.get::<CredentialTenant>(),
        &principal.key.tenant,
    ) {
        let _ = slot.0.set(tenant.clone());
    }
    Ok(principal)
}

async fn credential(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
    {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer credential",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be Bearer <token>",
            ))?;
        if token.starts_with(crate::viewer::VIEWER_PREFIX) {
            let now = sealtrail_model::Timestamp::now();
            let digest = crate::remembered::digest(token);
            let grant = match state.viewer_tokens.get(&digest, now.micros()) {
                Some(grant) => grant,
                None => {
                    let grant =
                        std::sync::Arc::new(crate::viewer::verify(&state.keys, token, now)?);
                    // Trusted while `now < expires_at`, as `verify` says.
                    state
                        .viewer_tokens
                        .put(digest, grant.clone(), grant.expires_at - 1);
                    grant
                }
            };
            let tenant = sealtrail_model::validate_tenant(&grant.tenant)
                .map_err(|_| ApiError::Unauthorized("unknown or revoked credential"))?;
            return Ok(Principal {
                key: ApiKey {
                    id: grant.actor().id,
                    tenant: TenantScope::One(tenant),
                    scopes: vec![Scope::Read],
                    name: String::new(),
                    created_at: sealtrail_model::Timestamp::now(),
                    revoked_at: None,
                },
                jwt: false,
                viewer: Some(grant),
            });
        }
        if !token.starts_with(TOKEN_PREFIX) && state.jwt.enabled() {
            let reader = state.jwt.verify(token)?;
            return Ok(Principal {
                key: ApiKey {
                    id: reader.subject.clone(),
                    tenant: reader.tenant.map_or(TenantScope::All, TenantScope::One),
                    scopes: vec![Scope::Read],
                    name: reader.subject,
                    created_at: sealtrail_model::Timestamp::now(),
                    revoked_at: None,
                },
                jwt: true,
                viewer: None,
            });
        }
        let key = state
            .store
            .key_by_token_hash(hash_token(token))
            .await?
            .filter(|k| k.revoked_at.is_none())
            .ok_or(ApiError::Unauthorized("unknown or revoked credential"))?;
        Ok(Principal {
            key,
            jwt: false,
            viewer: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_base62_and_distinct() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS);
        assert!(a[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
