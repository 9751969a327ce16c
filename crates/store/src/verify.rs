//! What every backend's store walk (`sealtrail verify`) checks beyond the ledger's seal: the
//! indexed columns against the sealed event, and the personal values still present against
//! their digests. Backends read rows their own way and feed them to the ledger's walk; the
//! checks and the report are shared here so that both backends judge a row alike.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use sealtrail_ledger::entry::{PersonalDigests, personal_digest};
use sealtrail_ledger::walk::{Finding, Kind, SignedHead, Uncovered, check_signature};
use sealtrail_model::Event;

use crate::Checkpoint;

/// What a store walk covered and found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Tenants walked.
    pub tenants: u64,
    /// Events walked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Problems, first first.
    pub findings: Vec<Finding>,
    /// Per tenant, events after the newest verified checkpoint.
    pub uncovered: Vec<(String, Uncovered)>,
}

/// Checks the signature of each stored checkpoint of a tenant (signatures first: a checkpoint
/// that does not verify proves nothing about the rows). Counts them in `report`, records a
/// `bad-signature` finding for each that fails, and returns those that verify, for the walk.
pub fn signed_heads(
    tenant: &str,
    stored: impl IntoIterator<Item = Checkpoint>,
    keys: &HashMap<String, VerifyingKey>,
    report: &mut Report,
) -> Vec<SignedHead> {
    let mut signed = Vec::new();
    for cp in stored {
        report.checkpoints += 1;
        let head = SignedHead {
            size: cp.size,
            root: cp.root,
            issued_at: cp.issued_at,
            key_id: cp.key_id,
            signature: cp.signature,
            note: cp.note,
        };
        match check_signature(tenant, &head, keys) {
            Ok(()) => signed.push(head),
            Err(detail) => report.findings.push(Finding {
                tenant: tenant.to_owned(),
                seq: head.size,
                id: None,
                kind: Kind::BadSignature,
                detail,
            }),
        }
    }
    signed
}

/// The filter columns a store keeps beside an event, which must agree with the sealed body.
/// Times are microseconds since the Unix epoch.
#[derive(PartialEq, Eq, Debug, Clone)]
pub struct IndexColumns {
    /// `recorded_at`.
    pub recorded_at: i64,
    /// `occurred_at`.
    pub occurred_at: i64,
    /// `action`.
    pub action: String,
    /// `category`, wire name.
    pub category: String,
    /// `event_type`.
    pub event_type: Option<String>,
    /// `outcome`, wire name.
    pub outcome: String,
    /// `actor.id`.
    pub actor_id: String,
    /// `target.type`.
    pub target_type: Option<String>,
    /// `target.id`.
    pub target_id: Option<String>,
    /// `organization.id`.
    pub organization_id: Option<String>,
    /// `context.correlation_id`.
    pub correlation_id: Option<String>,
    /// `context.ip`.
    pub ip: Option<String>,
}

impl IndexColumns {
    /// The columns an event should have.
    pub fn of(e: &Event) -> Self {
        let ctx = e.context.as_ref();
        Self {
            recorded_at: e.recorded_at.micros(),
            occurred_at: e.occurred_at.micros(),
            action: e.action.clone(),
            category: e.category.as_str().to_owned(),
            event_type: e.event_type.clone(),
            outcome: e.outcome.as_str().to_owned(),
            actor_id: e.actor.id.clone(),
            target_type: e.target.as_ref().map(|t| t.target_type.clone()),
            target_id: e.target.as_ref().map(|t| t.id.clone()),
            organization_id: e.organization.as_ref().map(|o| o.id.clone()),
            correlation_id: ctx.and_then(|c| c.correlation_id.clone()),
            ip: ctx.and_then(|c| c.ip.clone()),
        }
    }

    /// What is wrong with a stored row whose columns are `self`, if anything.
    pub fn mismatch(&self, event: &Event) -> Option<String> {
        (Self::of(event) != *self)
            .then(|| "an indexed column disagrees with the sealed event".to_owned())
    }
}

/// Checks the personal values still present in `event` against their sealed digests, where the
/// subject's key still exists (`key_of` answers `None` for an erased or unknown subject).
pub fn personal_mismatch<E>(
    event: &Event,
    digests: &PersonalDigests,
    mut key_of: impl FnMut(&str) -> Result<Option<[u8; 32]>, E>,
) -> Result<Option<String>, E> {
    let ctx = event.context.as_ref();
    let actor_fields = [
        (
            "actor.name",
            event.actor.name.as_deref(),
            digests.actor_name,
        ),
        (
            "actor.email",
            event.actor.email.as_deref(),
            digests.actor_email,
        ),
        ("context.ip", ctx.and_then(|c| c.ip.as_deref()), digests.ip),
        (
            "context.user_agent",
            ctx.and_then(|c| c.user_agent.as_deref()),
            digests.user_agent,
        ),
    ];
    for (field, value, digest) in actor_fields {
        if let (Some(value), Some(key)) = (value, key_of(&event.actor.id)?)
            && digest != Some(personal_digest(&key, field, value))
        {
            return Ok(Some(format!("{field} does not match its sealed digest")));
        }
    }
    if let (Some(t), Some(digest)) = (&event.target, digests.target_name)
        && let (Some(name), Some(key)) = (t.name.as_deref(), key_of(&t.id)?)
        && digest != personal_digest(&key, "target.name", name)
    {
        return Ok(Some("target.name does not match its sealed digest".into()));
    }
    Ok(None)
}
