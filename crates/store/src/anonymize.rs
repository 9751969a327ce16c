//! Anonymisation (SPEC §4.5, §12): erasing a person from a tenant's log while every hash,
//! chain link, checkpoint and proof stays valid. Planned here once for both backends; each
//! backend's [`crate::Store::rewrite_personal`] carries the plan out through its sanctioned path.
//!
//! Every event where the subject is the actor (`actor.id`), or the target when the target is a
//! person, is rewritten beside its entry, never in it:
//! - **entries of version 2** hold every personal value as a digest under an opening kept with
//!   the value (`docs/integrity.md` §3.2): the subject's values and openings are erased, its ids
//!   replaced by a stable pseudonym (`anon_` and 16 hex digits), and a change value of its own
//!   served as `[REDACTED]`;
//! - **entries of version 1** hold the ids and change values in the clear, inside the sealed
//!   bytes: their names, e-mails, ips and user agents are erased (and the subject's key with
//!   them), the id stays;
//! - **rows from before entries** keep their event as JSON: the same values are taken out of it
//!   (they enter the leaf as digests, so the leaf is unchanged).
//!
//! The pseudonym is keyed by a secret the tenant keeps in its settings, so the same person gets
//! the same pseudonym every time (counts by actor stay meaningful) and nobody without the
//! secret can tell whose it is. A second call finds nothing left to erase and changes nothing.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sealtrail_ledger::entry::{DEFAULT_PERSON_TYPES, is_person_type};
use sealtrail_ledger::personal::{Held, Owner, Slot, rewrite};
use sealtrail_ledger::view::{EntryView, Ident, PersonalValues, TargetName};
use sealtrail_model::{Event, Tenant};
use sha2::Sha256;

use crate::fields::{ACTOR_ID, EventFilter, TARGET_ID};
use crate::rows::{LogRow, RowBody};
use crate::{Appended, ListQuery, Order, PreparedEvent, Store, StoreError, StoreResult};

/// The tenant setting that holds the secret pseudonyms are keyed by (hex), made at the first
/// anonymisation.
pub const PSEUDONYM_SETTING: &str = "pseudonym-key";

/// What anonymisation writes for one stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// The new stored form of the personal values beside an entry.
    Values(Vec<u8>),
    /// The new JSON of a row from before entries.
    LegacyBody(String),
}

/// One row to rewrite: its position and what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRewrite {
    /// The position.
    pub seq: u64,
    /// What is written.
    pub rewrite: Rewrite,
}

/// What a backend's [`Store::rewrite_personal`] carries out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The rows to rewrite.
    pub rewrites: Vec<RowRewrite>,
    /// What each rewritten event's terms were and will be, for the derived data.
    pub terms: Vec<crate::derived::TermChange>,
    /// Events that no longer name the subject yet were found by it: the derived data still
    /// holds what they held (an anonymisation cut short after its log was rewritten). Derived
    /// again from the log.
    pub stale: Vec<u64>,
    /// The subjects whose keys (rows of entry version 1) are deleted.
    pub subjects: Vec<String>,
}

/// An anonymisation's plan and its `audit.anonymized` event, once the rows are read: what
/// [`Store::rewrite_personal`] awaits.
pub type Planned<'a> = futures::future::BoxFuture<'a, StoreResult<(Plan, PreparedEvent)>>;

/// A plan made already, as [`Planned`].
pub fn planned(plan: Plan, audit: PreparedEvent) -> Planned<'static> {
    Box::pin(std::future::ready(Ok((plan, audit))))
}

/// What anonymising a subject did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anonymized {
    /// How many events were rewritten (0 when nothing of the subject was left).
    pub events_updated: u64,
    /// The subject's pseudonym.
    pub pseudonym: String,
    /// The `audit.anonymized` event that records the act.
    pub audit: Appended,
}

/// The pseudonym of `subject` under the tenant's secret: `anon_` and the first 8 bytes of
/// HMAC-SHA-256 over the subject's id, in hex.
pub fn pseudonym(secret: &[u8], subject: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"pseudonym\0");
    mac.update(subject.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("anon_{}", hex::encode(&digest[..8]))
}

/// The tenant's pseudonym secret, made and kept in its settings the first time.
pub async fn pseudonym_secret(store: &dyn Store, tenant: &Tenant) -> StoreResult<Vec<u8>> {
    let stored = |setting: Option<crate::Setting>| {
        setting.and_then(|s| s.value.as_str().and_then(|h| hex::decode(h).ok()))
    };
    if let Some(secret) = stored(store.setting(tenant, PSEUDONYM_SETTING).await?) {
        return Ok(secret);
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    store
        .put_setting(
            tenant,
            PSEUDONYM_SETTING,
            Some(serde_json::Value::String(hex::encode(secret))),
        )
        .await?;
    // Read back: of two first anonymisations at once, both use what was stored last.
    stored(store.setting(tenant, PSEUDONYM_SETTING).await?)
        .ok_or_else(|| StoreError::Database("the pseudonym secret was not kept".into()))
}

/// What anonymising `subject` writes for `row`, or `None` when nothing of the subject is left
/// in it (it was never there, or was erased before).
pub fn rewrite_row(row: &LogRow, subject: &str, pseudonym: &str) -> Option<Rewrite> {
    match &row.body {
        RowBody::Entry { entry, values } => {
            let view = EntryView::parse(entry).ok()?;
            let current = match values {
                Some(bytes) => PersonalValues::from_bytes(bytes)?,
                None => PersonalValues::default(),
            };
            // A version-2 id counts only while it is held: a pseudonym is never a subject of
            // its own (anonymising `anon_…` leaves what it stands for as it is).
            let held_is = |slot: Slot| matches!(current.held_for(slot), Some(Held::Open { value, .. }) if value == subject.as_bytes());
            let actor = match view.actor_id {
                Ident::Plain(id) => id == subject,
                Ident::Personal => held_is(Slot::ActorId),
            };
            let target = match view.target {
                Some(_) if view.target_is_person() => held_is(Slot::TargetId),
                Some(t) => t.name == TargetName::Digest && t.id == Ident::Plain(subject),
                None => false,
            };
            if !actor && !target {
                return None;
            }
            let next = match current.held {
                Some(bytes) => {
                    let person = view.target_is_person();
                    rewrite(bytes, |slot, held| {
                        let mine = match slot.owner(person) {
                            Owner::Actor => actor,
                            Owner::Target => target,
                        };
                        match (mine, slot) {
                            (false, _) => held,
                            (true, Slot::ActorId | Slot::TargetId) => Held::Replaced(pseudonym),
                            (true, _) => Held::Erased,
                        }
                    })?
                }
                None => {
                    let mut kept = current;
                    if actor {
                        kept.actor_name = None;
                        kept.actor_email = None;
                        kept.ip = None;
                        kept.user_agent = None;
                    }
                    if target {
                        kept.target_name = None;
                    }
                    kept.to_bytes()
                }
            };
            let before = values.clone().unwrap_or_else(|| current.to_bytes());
            (next != before).then_some(Rewrite::Values(next))
        }
        RowBody::Legacy { json, .. } => {
            let mut event: Event = serde_json::from_str(json).ok()?;
            let actor = event.actor.id == subject;
            let target = event.target.as_ref().is_some_and(|t| {
                t.id == subject && is_person_type(&t.target_type, &DEFAULT_PERSON_TYPES)
            });
            if actor {
                event.actor.name = None;
                event.actor.email = None;
                if let Some(c) = event.context.as_mut() {
                    c.ip = None;
                    c.user_agent = None;
                }
            }
            if target && let Some(t) = event.target.as_mut() {
                t.name = None;
            }
            let next = serde_json::to_string(&event).ok()?;
            let before: Event = serde_json::from_str(json).ok()?;
            (serde_json::to_string(&before).ok()? != next).then_some(Rewrite::LegacyBody(next))
        }
        RowBody::Gone => None,
    }
}

/// Whether `row` names `subject` as it is served: as its actor, or its target.
pub fn names(row: &LogRow, subject: &str) -> bool {
    row.with_source(|s| s.actor_id() == subject || s.target_id() == Some(subject))
        .unwrap_or(false)
}

/// The terms of `row` as the derived data holds them (none when it cannot be read).
fn terms(row: &LogRow) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let _ = row.with_source(|s| crate::fields::terms_of(s, |t| out.push(t.to_vec())));
    out
}

/// `row` as it is once `rewrite` is written.
fn rewritten(row: &LogRow, rewrite: &Rewrite) -> LogRow {
    let body = match (&row.body, rewrite) {
        (RowBody::Entry { entry, .. }, Rewrite::Values(values)) => RowBody::Entry {
            entry: entry.clone(),
            values: Some(values.clone()),
        },
        (RowBody::Legacy { digests, prev, .. }, Rewrite::LegacyBody(json)) => RowBody::Legacy {
            json: json.clone(),
            digests: digests.clone(),
            prev: prev.clone(),
        },
        (body, _) => body.clone(),
    };
    LogRow {
        seq: row.seq,
        hash: row.hash,
        body,
    }
}

/// What anonymising `subject` with `pseudonym` does to `rows` (those that name it, by
/// position).
pub fn plan(rows: &BTreeMap<u64, LogRow>, subject: &str, pseudonym: &str) -> Plan {
    let mut plan = Plan {
        subjects: vec![subject.to_owned()],
        ..Plan::default()
    };
    for row in rows.values() {
        match rewrite_row(row, subject, pseudonym) {
            Some(rewrite) => {
                plan.terms.push(crate::derived::TermChange {
                    seq: row.seq,
                    before: terms(row),
                    after: terms(&rewritten(row, &rewrite)),
                });
                plan.rewrites.push(RowRewrite {
                    seq: row.seq,
                    rewrite,
                });
            }
            None if !names(row, subject) => plan.stale.push(row.seq),
            None => {}
        }
    }
    plan
}

/// Every stored row of `tenant` that names `subject` as its actor or its target, by position:
/// both reads at once (each reads the unindexed tail once per page).
async fn rows_naming(
    store: &dyn Store,
    tenant: &Tenant,
    subject: &str,
) -> StoreResult<BTreeMap<u64, LogRow>> {
    let (mut found, by_target) = futures::try_join!(
        rows_with(store, tenant, ACTOR_ID, subject),
        rows_with(store, tenant, TARGET_ID, subject),
    )?;
    found.extend(by_target);
    Ok(found)
}

/// Every stored row of `tenant` whose `field` holds `value`, by position.
async fn rows_with(
    store: &dyn Store,
    tenant: &Tenant,
    field: crate::fields::Field,
    value: &str,
) -> StoreResult<BTreeMap<u64, LogRow>> {
    let mut found = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_rows(ListQuery {
                tenant: tenant.clone(),
                filter: EventFilter::default().with(field, [value]),
                order: Order::Asc,
                // Large pages: each reads the unindexed tail once.
                limit: 10_000,
                cursor,
            })
            .await?;
        found.extend(page.rows.into_iter().map(|row| (row.seq, row)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(found),
        }
    }
}

/// Anonymises `subject` in `tenant`: plans the rewrite of every row that still holds something
/// of it, and has the store carry it out through its sanctioned path with the audit event
/// `audit(events_updated, pseudonym)` makes, in the same transaction.
pub async fn anonymize(
    store: &dyn Store,
    tenant: &Tenant,
    subject: &str,
    audit: impl FnOnce(u64, &str) -> StoreResult<PreparedEvent> + Send,
) -> StoreResult<Anonymized> {
    let secret = pseudonym_secret(store, tenant).await?;
    let pseudonym = pseudonym(&secret, subject);
    let mut events_updated = 0;
    let planned = Box::pin(async {
        let rows = rows_naming(store, tenant, subject).await?;
        let plan = plan(&rows, subject, &pseudonym);
        events_updated = plan.rewrites.len() as u64;
        let audit = audit(events_updated, &pseudonym)?;
        Ok((plan, audit))
    });
    let appended = store.rewrite_personal(tenant, planned).await?;
    Ok(Anonymized {
        events_updated,
        pseudonym,
        audit: appended,
    })
}
