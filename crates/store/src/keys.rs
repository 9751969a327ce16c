//! API keys as the store keeps them: only a hash of the token, never the token.

use sealtrail_model::{Tenant, Timestamp};
use serde::Serialize;

/// Which tenants a key is bound to: one, or every tenant (`*`, admin keys only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantScope {
    /// Every tenant: stored and shown as `*`.
    All,
    /// One tenant.
    One(Tenant),
}

impl TenantScope {
    /// How a store keeps it, and how the API shows it: the tenant's name, or `*`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::All => "*",
            Self::One(t) => t.as_str(),
        }
    }

    /// Reads back what [`TenantScope::as_str`] stored.
    pub fn from_store(text: &str) -> Self {
        match text {
            "*" => Self::All,
            name => Self::One(Tenant::from_store(name)),
        }
    }

    /// The one tenant, if bound to one.
    pub fn tenant(&self) -> Option<&Tenant> {
        match self {
            Self::All => None,
            Self::One(t) => Some(t),
        }
    }
}

impl std::fmt::Display for TenantScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TenantScope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Append events.
    Ingest,
    /// Read events.
    Read,
    /// Everything, including managing keys.
    Admin,
}

impl Scope {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ingest" => Some(Self::Ingest),
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's id.
    pub id: String,
    /// The tenant it is bound to, or every tenant (admin keys only).
    pub tenant: TenantScope,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// A human name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Whether the key holds a scope; `admin` holds every scope.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Whether the key is bound to every tenant.
    pub fn is_global(&self) -> bool {
        self.tenant == TenantScope::All
    }
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The key's id.
    pub id: String,
    /// Its tenant, or every tenant.
    pub tenant: TenantScope,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Its name.
    pub name: String,
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
    /// Creation time.
    pub created_at: Timestamp,
}

/// Joins scopes for storage: `ingest,read`.
pub fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits stored scopes, skipping unknown names.
pub fn scopes_from_text(text: &str) -> Vec<Scope> {
    text.split(',').filter_map(Scope::parse).collect()
}
