//! What every backend's store walk (`sealtrail verify`) checks beyond the ledger's seal: the
//! indexed columns against the sealed event, and the personal values still present against
//! their digests. Backends read rows their own way and feed them to the ledger's walk; the
//! rules and the report are shared here so that both backends judge a row alike (the SQLite
//! walk compares its columns in place, without building [`IndexColumns`]).

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use sealtrail_ledger::Hash;
use sealtrail_ledger::entry::{PersonalDigests, personal_digest};
use sealtrail_ledger::view::PersonalValues;
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
            root: cp.root.0,
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

/// What checking one personal value against its digest found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestCheck {
    /// The keyed digest of the value is the sealed digest.
    Matches,
    /// It is not.
    Differs,
    /// The subject's key is gone (erased or never there), so the value cannot be checked.
    NoKey,
}

/// One stored personal value to check against its sealed digest.
#[derive(Debug, Clone, Copy)]
pub struct PersonalField<'a> {
    /// Its position in [`PersonalValues::fields`] (0–4).
    pub index: usize,
    /// Whose key digests it: the actor, or for `target.name` the target.
    pub subject: &'a str,
    /// The field name the digest is made over.
    pub field: &'static str,
    /// The stored value.
    pub value: &'a str,
    /// The sealed digest.
    pub digest: &'a Hash,
}

/// The rule every store walk applies to the personal values it keeps: each present value must
/// have its digest in the sealed entry, and its keyed digest under its subject's key (the
/// actor's, or the target's for `target.name`) must be that digest. A value whose subject's key
/// is gone is reported too: anonymisation erases values and key together, so one without the
/// other means the values were put back. `check` computes each comparison, so each backend can
/// key HMAC states its own way.
pub fn personal_mismatch<E>(
    values: &PersonalValues<'_>,
    digests: &PersonalDigests,
    actor_id: &str,
    target_id: Option<&str>,
    mut check: impl FnMut(&PersonalField<'_>) -> Result<DigestCheck, E>,
) -> Result<Option<String>, E> {
    let digests = digests.fields();
    for (i, (field, value)) in values.fields().into_iter().enumerate() {
        let Some(value) = value else { continue };
        let Some(digest) = &digests[i] else {
            return Ok(Some(format!(
                "{field} is stored but the sealed event has no digest of it"
            )));
        };
        let subject = if i == 4 {
            target_id.unwrap_or("")
        } else {
            actor_id
        };
        let checked = PersonalField {
            index: i,
            subject,
            field,
            value,
            digest,
        };
        match check(&checked)? {
            DigestCheck::Matches => {}
            DigestCheck::Differs => {
                return Ok(Some(format!("{field} does not match its sealed digest")));
            }
            DigestCheck::NoKey => {
                return Ok(Some(format!(
                    "{field} is stored but its subject's key is gone"
                )));
            }
        }
    }
    Ok(None)
}

/// [`DigestCheck`] of one value under its subject's key, if the key is there.
pub fn check_digest(key: Option<&[u8; 32]>, f: &PersonalField<'_>) -> DigestCheck {
    match key {
        None => DigestCheck::NoKey,
        Some(key) if personal_digest(key, f.field, f.value) == *f.digest => DigestCheck::Matches,
        Some(_) => DigestCheck::Differs,
    }
}
