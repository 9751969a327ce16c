//! JWT readers (SPEC §4.1): bearer tokens signed with an HS256 secret, or with RS256/ES256 keys
//! from a JWKS file that is read again when it changes. A valid token is a reader: claim `sub`
//! is who reads, the tenant claim the tenant (`*`, every tenant, only with `audit:admin`), and
//! the roles claim must hold `audit:read` or `audit:admin`. JWT readers only read: they never
//! ingest nor manage keys.
//!
//! Refused with 401: a token that is expired, not valid yet, for another audience or issuer,
//! signed with an algorithm its key does not use (or `none`), signed by an unknown key, or
//! without `exp`. A valid token without either role, or without a tenant, is 403.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::error::ApiError;

/// How JWT readers are checked. The default accepts no JWT.
#[derive(Clone)]
pub struct JwtSettings {
    /// The HS256 secret.
    pub secret: Option<Vec<u8>>,
    /// A JWKS file of RS256 / ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// The required `iss`, if any.
    pub issuer: Option<String>,
    /// The required `aud`, if any.
    pub audience: Option<String>,
    /// The claim naming the tenant (default `tenant`).
    pub tenant_claim: String,
    /// The claim holding the roles (default `roles`).
    pub roles_claim: String,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            secret: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            tenant_claim: "tenant".into(),
            roles_claim: "roles".into(),
        }
    }
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("tenant_claim", &self.tenant_claim)
            .field("roles_claim", &self.roles_claim)
            .finish()
    }
}

/// Why JWT settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The HS256 secret cannot be used.
    #[error("the JWT secret cannot be used: {0}")]
    Secret(String),
    /// The JWKS file cannot be read or holds no usable key.
    #[error("JWKS file {path}: {detail}")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// A verified JWT reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtReader {
    /// `sub`.
    pub subject: String,
    /// The tenant, or `None` for every tenant (`*` with `audit:admin`).
    pub tenant: Option<sealtrail_store::Tenant>,
}

/// A key of the JWKS file.
struct Keyed {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// What was read from the JWKS file, and when.
struct Jwks {
    keys: HashMap<String, Keyed>,
    /// The file's modification time and length when read.
    stamp: Option<(SystemTime, u64)>,
}

/// Checks JWT bearer tokens.
pub struct JwtVerifier {
    settings: JwtSettings,
    hs256: Option<DecodingKey>,
    jwks: RwLock<Jwks>,
    /// When the JWKS file was last looked at.
    looked: Mutex<Instant>,
    /// Tokens verified already, by the SHA-256 of their text: a token cannot change, so until
    /// it expires (or the JWKS file changes) it needs no second signature check. An RS256 or
    /// ES256 verification costs 100–250 µs; a lookup here, a few.
    verified: crate::remembered::Remembered<JwtReader>,
}

/// How often the JWKS file is looked at for changes, at most.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;

impl JwtVerifier {
    /// A verifier for these settings; reads the JWKS file now.
    pub fn new(settings: JwtSettings) -> Result<Self, JwtError> {
        let jwks = match &settings.jwks_file {
            Some(path) => read_jwks(path)?,
            None => Jwks {
                keys: HashMap::new(),
                stamp: None,
            },
        };
        let hs256 = match settings.secret.as_deref() {
            Some(secret) => Some(
                DecodingKey::from_secret(secret).map_err(|e| JwtError::Secret(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            hs256,
            settings,
            jwks: RwLock::new(jwks),
            looked: Mutex::new(Instant::now()),
            verified: crate::remembered::Remembered::default(),
        })
    }

    /// Whether any JWT can be accepted.
    pub fn enabled(&self) -> bool {
        self.hs256.is_some() || self.settings.jwks_file.is_some()
    }

    /// Reads the JWKS file again if it changed since it was read (looked at twice a second at
    /// most, or at once when `force`). A file that became unreadable keeps the keys read last.
    fn refresh(&self, force: bool) {
        let Some(path) = &self.settings.jwks_file else {
            return;
        };
        {
            let Ok(mut looked) = self.looked.lock() else {
                return;
            };
            if !force && looked.elapsed() < LOOK_EVERY {
                return;
            }
            *looked = Instant::now();
        }
        let stamp = file_stamp(path);
        let current = self.jwks.read().map(|j| j.stamp).unwrap_or(None);
        if stamp.is_some() && stamp == current {
            return;
        }
        match read_jwks(path) {
            Ok(fresh) => {
                if let Ok(mut jwks) = self.jwks.write() {
                    tracing::info!(keys = fresh.keys.len(), "JWKS file read again");
                    *jwks = fresh;
                }
                // A key may be gone: what it vouched for must be checked again.
                self.verified.clear();
            }
            Err(err) => {
                tracing::warn!(error = %err, "JWKS file unreadable; keeping the keys read before")
            }
        }
    }

    /// Verifies a token and reads its reader.
    pub fn verify(&self, token: &str) -> Result<JwtReader, ApiError> {
        self.refresh(false);
        let digest = crate::remembered::digest(token);
        let now = sealtrail_model::Timestamp::now().micros() / 1_000_000;
        if let Some(reader) = self.verified.get(&digest, now) {
            return Ok(reader);
        }
        let (reader, exp) = self.verify_once(token)?;
        self.verified
            .put(digest, reader.clone(), exp + LEEWAY_SECONDS as i64);
        Ok(reader)
    }

    /// Checks a token's signature and claims; returns its reader and `exp`.
    fn verify_once(&self, token: &str) -> Result<(JwtReader, i64), ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::Unauthorized("the bearer token is neither an API key nor a JWT")
        })?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let key = self
                    .hs256
                    .as_ref()
                    .ok_or(ApiError::Unauthorized("HS256 tokens are not accepted here"))?;
                self.decode(token, key, Algorithm::HS256)?
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let mut found = self.decode_with_jwks(token, header.kid.as_deref(), header.alg);
                if matches!(found, Err(ApiError::Unauthorized(UNKNOWN_KEY))) {
                    // A key added a moment ago: look at the file at once.
                    self.refresh(true);
                    found = self.decode_with_jwks(token, header.kid.as_deref(), header.alg);
                }
                found?
            }
            _ => {
                return Err(ApiError::Unauthorized(
                    "the token's algorithm is not accepted (HS256, RS256 or ES256)",
                ));
            }
        };
        let exp = claims["exp"].as_i64().unwrap_or(0);
        Ok((self.reader(&claims)?, exp))
    }

    fn decode_with_jwks(
        &self,
        token: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Value, ApiError> {
        let jwks = self
            .jwks
            .read()
            .map_err(|_| ApiError::Unavailable("the JWKS keys are unreadable".into()))?;
        let keyed = match kid {
            Some(kid) => jwks.keys.get(kid),
            None if jwks.keys.len() == 1 => jwks.keys.values().next(),
            None => None,
        }
        .ok_or(ApiError::Unauthorized(UNKNOWN_KEY))?;
        if keyed.algorithm != alg {
            return Err(ApiError::Unauthorized(
                "the token's algorithm is not its key's",
            ));
        }
        self.decode(token, &keyed.key, alg)
    }

    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Value, ApiError> {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.settings.issuer {
            validation.set_issuer(&[iss]);
        }
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Value>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                ApiError::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidAudience => "the token is for another audience",
                    ErrorKind::InvalidIssuer => "the token is from another issuer",
                    ErrorKind::InvalidSignature => "the token's signature does not verify",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks exp or sub",
                    ErrorKind::InvalidAlgorithm => "the token's algorithm is not its key's",
                    _ => "the token is not a valid JWT",
                })
            })
    }

    fn reader(&self, claims: &Value) -> Result<JwtReader, ApiError> {
        let subject = claims["sub"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(ApiError::Unauthorized("the token's sub is not a string"))?
            .to_owned();
        let roles: Vec<&str> = match &claims[&self.settings.roles_claim] {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => s.split_whitespace().collect(),
            _ => Vec::new(),
        };
        let admin = roles.contains(&"audit:admin");
        if !admin && !roles.contains(&"audit:read") {
            return Err(ApiError::Forbidden(format!(
                "the token's {} claim holds neither audit:read nor audit:admin",
                self.settings.roles_claim
            )));
        }
        let tenant = match claims[&self.settings.tenant_claim].as_str() {
            Some("*") if admin => None,
            Some("*") => {
                return Err(ApiError::Forbidden(
                    "only audit:admin readers may read every tenant (*)".into(),
                ));
            }
            Some(t) => Some(sealtrail_store::Tenant::parse(t).map_err(|e| {
                ApiError::Forbidden(format!(
                    "the token's {} claim is not a tenant: {e}",
                    self.settings.tenant_claim
                ))
            })?),
            None => {
                return Err(ApiError::Forbidden(format!(
                    "the token names no tenant (claim {})",
                    self.settings.tenant_claim
                )));
            }
        };
        Ok(JwtReader { subject, tenant })
    }
}

const UNKNOWN_KEY: &str = "the token is signed by a key this server does not know";

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads the RS256 and ES256 (P-256) keys of a JWKS file, by `kid`.
fn read_jwks(path: &std::path::Path) -> Result<Jwks, JwtError> {
    let fail = |detail: String| JwtError::Jwks {
        path: path.to_owned(),
        detail,
    };
    let stamp = file_stamp(path);
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let mut keys = HashMap::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => {
                tracing::warn!(
                    key = i,
                    "JWKS key skipped: only RSA and P-256 keys are used"
                );
                continue;
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| fail(format!("key {i}: {e}")))?;
        let kid = jwk.common.key_id.clone().unwrap_or_else(|| i.to_string());
        keys.insert(kid, Keyed { algorithm, key });
    }
    if keys.is_empty() {
        return Err(fail("holds no RSA or P-256 key".into()));
    }
    Ok(Jwks { keys, stamp })
}
