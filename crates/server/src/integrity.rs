//! The integrity API (SPEC §4.4): the latest signed checkpoint, inclusion and consistency
//! proofs, and the signing keys.

use axum::Json;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use sealtrail_store::Scope;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::params::tenant_and_counts;
use crate::signing::PublicKeyInfo;

/// A signed tree head.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// The tenant.
    pub tenant: String,
    /// The tree size.
    pub size: u64,
    /// The root hash, lowercase hex.
    pub root_hash: String,
    /// When it was signed.
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: sealtrail_model::Timestamp,
    /// The signing key's id.
    pub key_id: String,
    /// Ed25519 signature over the note body, base64.
    pub signature: String,
    /// The C2SP signed note.
    pub note: String,
}

/// An inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    /// `seq − 1`.
    pub leaf_index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The event's leaf hash, hex.
    pub leaf_hash: String,
    /// Sibling hashes, innermost first, hex.
    pub audit_path: Vec<String>,
    /// What recomputing the leaf from the event needs besides the event itself
    /// (`docs/integrity.md` §3–4), as the verifiable NDJSON export carries it.
    pub seal: Seal,
}

/// An event's seal material.
#[derive(Debug, Serialize, ToSchema)]
pub struct Seal {
    /// The leaf hash of the event before it in the tenant's log (zeros for the first), hex.
    pub prev: String,
    /// Its personal digests: a bit-mask byte (actor name, actor e-mail, ip, user agent, target
    /// name), then each present 32-byte digest in that order, hex.
    pub personal: String,
}

/// A consistency proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The proof hashes, hex.
    pub proof: Vec<String>,
}

/// The signing keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeys {
    /// Every key that ever signed, oldest first.
    pub keys: Vec<PublicKeyInfo>,
}

/// The latest signed checkpoint of the caller's tenant.
#[utoipa::path(
    get,
    path = "/api/v1/integrity/checkpoint",
    tag = "integrity",
    params(("tenant" = Option<String>, Query, description = "For keys bound to all tenants")),
    responses(
        (status = 200, body = CheckpointView),
        (status = 404, description = "No checkpoint yet", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    principal: Principal,
    uri: OriginalUri,
    RawQuery(raw): RawQuery,
) -> Result<Json<CheckpointView>, ApiError> {
    principal.require(Scope::Read)?;
    let (tenant, _) = tenant_and_counts(raw.as_deref(), &[])?;
    let tenant = principal.tenant(tenant.as_deref(), "tenant", false)?;
    let cp = state
        .store
        .latest_checkpoint(&tenant)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("tenant {tenant} has no checkpoint yet")))?;
    state
        .audit_cross_tenant_read(&principal, &tenant, &uri)
        .await?;
    Ok(Json(CheckpointView {
        tenant: cp.tenant.to_string(),
        size: cp.size,
        root_hash: cp.root.to_hex(),
        issued_at: cp.issued_at,
        key_id: cp.key_id,
        signature: cp.signature,
        note: cp.note,
    }))
}

/// The inclusion proof of an event in the tree of size `size` (default: the latest checkpoint).
#[utoipa::path(
    get,
    path = "/api/v1/integrity/proof/{id}",
    tag = "integrity",
    params(
        ("id" = Uuid, Path, description = "The event id"),
        ("size" = Option<u64>, Query, description = "Tree size; default the latest checkpoint's"),
        ("tenant" = Option<String>, Query, description = "For keys bound to all tenants"),
    ),
    responses(
        (status = 200, body = InclusionProof),
        (status = 400, description = "Malformed id, or a size outside the tree", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event, or no checkpoint yet", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn proof(
    State(state): State<AppState>,
    principal: Principal,
    uri: OriginalUri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<InclusionProof>, ApiError> {
    principal.require(Scope::Read)?;
    let (tenant, values) = tenant_and_counts(raw.as_deref(), &["size"])?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad_parameter("id", "must be a UUID"))?;
    let tenant = principal.tenant(tenant.as_deref(), "tenant", false)?;
    let (seq, leaf) = state
        .store
        .leaf_of(&tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event {id} in tenant {tenant}")))?;
    let size = match values[0] {
        Some(size) => size,
        None => state
            .store
            .latest_checkpoint(&tenant)
            .await?
            .map(|cp| cp.size)
            .ok_or_else(|| {
                ApiError::NotFound(format!("tenant {tenant} has no checkpoint yet; pass size"))
            })?,
    };
    if seq > size {
        return Err(ApiError::bad_parameter(
            "size",
            format!("event {id} (seq {seq}) is not in the tree of size {size}"),
        ));
    }
    let path = state
        .store
        .inclusion_proof(&tenant, seq - 1, size)
        .await?
        .ok_or_else(|| {
            ApiError::bad_parameter("size", format!("the tree has fewer than {size} events"))
        })?;
    // The event's row, for its seal material: the one after `seq - 1`.
    let rows = state
        .store
        .list_rows(sealtrail_store::ListQuery {
            tenant: tenant.clone(),
            filter: sealtrail_store::EventFilter::default(),
            order: sealtrail_store::Order::Asc,
            limit: 1,
            cursor: Some(sealtrail_store::Cursor::Seq(seq - 1)),
        })
        .await?;
    let (prev, personal) = rows
        .rows
        .first()
        .filter(|row| row.seq == seq)
        .ok_or_else(|| ApiError::NotFound(format!("no event {id} in tenant {tenant}")))?
        .seal()
        .map_err(|e| ApiError::Unavailable(format!("the stored event is damaged: {e}")))?;
    state
        .audit_cross_tenant_read(&principal, &tenant, &uri)
        .await?;
    Ok(Json(InclusionProof {
        leaf_index: seq - 1,
        tree_size: size,
        leaf_hash: leaf.to_hex(),
        audit_path: path.iter().map(hex::encode).collect(),
        seal: Seal {
            prev: hex::encode(prev),
            personal: hex::encode(personal),
        },
    }))
}

/// The consistency proof between two tree sizes.
#[utoipa::path(
    get,
    path = "/api/v1/integrity/consistency",
    tag = "integrity",
    params(
        ("from" = u64, Query, description = "The older size, at least 1"),
        ("to" = u64, Query, description = "The newer size, at most the tree's"),
        ("tenant" = Option<String>, Query, description = "For keys bound to all tenants"),
    ),
    responses(
        (status = 200, body = ConsistencyProof),
        (status = 400, description = "Sizes missing or outside the tree", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn consistency(
    State(state): State<AppState>,
    principal: Principal,
    uri: OriginalUri,
    RawQuery(raw): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    principal.require(Scope::Read)?;
    let (tenant, values) = tenant_and_counts(raw.as_deref(), &["from", "to"])?;
    let from = values[0].ok_or_else(|| ApiError::bad_parameter("from", "is required"))?;
    let to = values[1].ok_or_else(|| ApiError::bad_parameter("to", "is required"))?;
    let tenant = principal.tenant(tenant.as_deref(), "tenant", false)?;
    if from == 0 || from > to {
        return Err(ApiError::bad_parameter(
            "from",
            "must be at least 1 and at most to",
        ));
    }
    let proof = state
        .store
        .consistency_proof(&tenant, from, to)
        .await?
        .ok_or_else(|| {
            ApiError::bad_parameter("to", format!("the tree has fewer than {to} events"))
        })?;
    state
        .audit_cross_tenant_read(&principal, &tenant, &uri)
        .await?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

/// The checkpoint signing keys, current and retired. Public: verifiers need no credential.
#[utoipa::path(
    get,
    path = "/api/v1/integrity/public-keys",
    tag = "integrity",
    responses(
        (status = 200, body = PublicKeys),
        (status = 400, description = "A query parameter (it takes none)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn public_keys(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<PublicKeys>, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    Ok(Json(PublicKeys {
        keys: state.keys.keys().to_vec(),
    }))
}
