//! `sealtrail verify --data-dir`: walks the whole store file, read-only, and recomputes the
//! seal — every leaf from its row, the hash chain, every stored checkpoint's root and
//! signature — and compares the newest checkpoint with the tail. Findings come in walk order:
//! tenants by name, events by `seq`.

use std::collections::HashMap;
use std::fmt;

use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, OpenFlags, params};
use sealtrail_ledger::checkpoint;
use sealtrail_ledger::entry::{GENESIS, PersonalDigests, event_leaf_hash, personal_digest};
use sealtrail_ledger::merkle::{Frontier, Hash};
use sealtrail_model::Event;
use uuid::Uuid;

/// What kind of tampering a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stored event differs from what was sealed.
    Altered,
    /// An event is gone from the middle of the log.
    Missing,
    /// An event that was never appended is in the log.
    Inserted,
    /// An event sits at another event's position.
    Reordered,
    /// Events covered by a checkpoint are gone from the end of the log.
    Truncated,
    /// A checkpoint's signature does not verify.
    BadSignature,
}

impl Kind {
    /// The name printed in `FAIL` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Altered => "altered",
            Self::Missing => "missing",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::Truncated => "truncated",
            Self::BadSignature => "bad-signature",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The tenant.
    pub tenant: String,
    /// The position concerned.
    pub seq: u64,
    /// The event concerned, when there is one.
    pub id: Option<Uuid>,
    /// What is wrong.
    pub kind: Kind,
    /// Details, for people.
    pub detail: String,
}

impl fmt::Display for Finding {
    /// `FAIL seq=N id=UUID: KIND detail`, with `id=-` where no event is there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id.map_or_else(|| "-".to_owned(), |id| id.to_string());
        write!(
            f,
            "FAIL seq={} id={}: {} tenant {}: {}",
            self.seq,
            id,
            self.kind.as_str(),
            self.tenant,
            self.detail
        )
    }
}

/// What a walk covered.
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
}

/// Why a walk could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The database could not be read.
    #[error("cannot read the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

struct Row {
    seq: i64,
    id: Vec<u8>,
    hash: Vec<u8>,
    prev_hash: Option<Vec<u8>>,
    personal: Option<Vec<u8>>,
    body: String,
    columns: Columns,
}

/// The filter columns, which must agree with the sealed body.
#[derive(PartialEq, Eq, Debug)]
struct Columns {
    recorded_at: i64,
    occurred_at: i64,
    action: String,
    category: String,
    event_type: Option<String>,
    outcome: String,
    actor_id: String,
    target_type: Option<String>,
    target_id: Option<String>,
    organization_id: Option<String>,
    correlation_id: Option<String>,
    ip: Option<String>,
}

impl Columns {
    fn of(e: &Event) -> Self {
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
}

/// Opens a store file for verification, read-only.
pub fn open_for_verify(path: &std::path::Path) -> Result<Connection, WalkError> {
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?)
}

/// The number of events in the store, for a progress bar.
pub fn count_events(conn: &Connection) -> Result<u64, WalkError> {
    Ok(conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
}

/// Walks the store. `keys` maps key ids to public keys; `progress` is called with the number
/// of events walked so far, now and then.
pub fn verify_store(
    conn: &Connection,
    keys: &HashMap<String, VerifyingKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, WalkError> {
    let mut report = Report::default();
    let mut tenants: Vec<String> = conn
        .prepare(
            "SELECT DISTINCT tenant FROM events UNION SELECT DISTINCT tenant FROM checkpoints",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    tenants.sort();
    for tenant in tenants {
        report.tenants += 1;
        walk_tenant(conn, &tenant, keys, &mut report, progress)?;
    }
    progress(report.events);
    Ok(report)
}

fn walk_tenant(
    conn: &Connection,
    tenant: &str,
    keys: &HashMap<String, VerifyingKey>,
    report: &mut Report,
    progress: &mut dyn FnMut(u64),
) -> Result<(), WalkError> {
    let mut checkpoints: Vec<sealtrail_store::Checkpoint> = conn
        .prepare(
            "SELECT tenant, size, root, issued_at, key_id, signature, note FROM checkpoints \
             WHERE tenant = ?1 ORDER BY size, issued_at",
        )?
        .query_map([tenant], crate::read::checkpoint_from_row)?
        .collect::<Result<_, _>>()?;
    // Signatures first: a checkpoint that does not verify proves nothing about the rows.
    checkpoints.retain(|cp| {
        report.checkpoints += 1;
        match check_signature(cp, keys) {
            Ok(()) => true,
            Err(detail) => {
                report.findings.push(Finding {
                    tenant: tenant.to_owned(),
                    seq: cp.size,
                    id: None,
                    kind: Kind::BadSignature,
                    detail,
                });
                false
            }
        }
    });
    let mut subject_keys: HashMap<String, Option<[u8; 32]>> = HashMap::new();
    let mut key_stmt =
        conn.prepare("SELECT key FROM subject_keys WHERE tenant = ?1 AND subject = ?2")?;
    let mut stmt = conn.prepare(
        "SELECT seq, id, hash, prev_hash, personal, body, recorded_at, occurred_at, action, category, event_type, \
         outcome, actor_id, target_type, target_id, organization_id, correlation_id, ip \
         FROM events WHERE tenant = ?1 ORDER BY seq, rowid",
    )?;
    let mut rows = stmt.query(params![tenant])?;
    let mut expected: u64 = 1;
    let mut prev: Hash = GENESIS;
    let mut frontier = Frontier::new();
    let mut next_cp = 0usize;
    // After a structural break, positions no longer line up with the tree: stop comparing roots.
    let mut broken = false;
    let push = |report: &mut Report, seq: u64, id: Option<Uuid>, kind: Kind, detail: String| {
        report.findings.push(Finding {
            tenant: tenant.to_owned(),
            seq,
            id,
            kind,
            detail,
        });
    };
    while let Some(r) = rows.next()? {
        let row = Row {
            seq: r.get(0)?,
            id: r.get(1)?,
            hash: r.get(2)?,
            prev_hash: r.get(3)?,
            personal: r.get(4)?,
            body: r.get(5)?,
            columns: Columns {
                recorded_at: r.get(6)?,
                occurred_at: r.get(7)?,
                action: r.get(8)?,
                category: r.get(9)?,
                event_type: r.get(10)?,
                outcome: r.get(11)?,
                actor_id: r.get(12)?,
                target_type: r.get(13)?,
                target_id: r.get(14)?,
                organization_id: r.get(15)?,
                correlation_id: r.get(16)?,
                ip: r.get(17)?,
            },
        };
        report.events += 1;
        if report.events.is_multiple_of(65_536) {
            progress(report.events);
        }
        let seq = row.seq.max(0) as u64;
        let id = Uuid::from_slice(&row.id).ok();
        let event: Option<Event> = serde_json::from_str(&row.body).ok();
        if seq < expected {
            broken = true;
            let kind = match &event {
                Some(e) if e.seq != seq => Kind::Reordered,
                _ => Kind::Inserted,
            };
            push(
                report,
                seq,
                id,
                kind,
                format!("a second event claims seq {seq}"),
            );
            continue;
        }
        if seq > expected {
            broken = true;
            push(
                report,
                expected,
                None,
                Kind::Missing,
                format!("the log skips from seq {} to {seq}", expected - 1),
            );
            prev = row
                .prev_hash
                .as_deref()
                .and_then(|p| p.try_into().ok())
                .unwrap_or(GENESIS);
        }
        expected = seq + 1;
        let Some(event) = event else {
            push(
                report,
                seq,
                id,
                Kind::Altered,
                "the stored event is not valid JSON of an event".into(),
            );
            prev = row.hash.as_slice().try_into().unwrap_or(GENESIS);
            frontier.push(prev, |_, _, _| {});
            continue;
        };
        if event.seq != seq || event.tenant != tenant {
            broken = true;
            let kind = if event.tenant == tenant {
                Kind::Reordered
            } else {
                Kind::Altered
            };
            push(
                report,
                seq,
                id,
                kind,
                format!(
                    "the event at seq {seq} is the sealed event of seq {} of tenant {}",
                    event.seq, event.tenant
                ),
            );
            prev = row.hash.as_slice().try_into().unwrap_or(GENESIS);
            frontier.push(prev, |_, _, _| {});
            continue;
        }
        let digests = row
            .personal
            .as_deref()
            .and_then(PersonalDigests::from_bytes)
            .unwrap_or_default();
        let leaf = event_leaf_hash(&event, &digests, &prev);
        let problem = if Some(event.id) != id {
            Some(format!(
                "the id column says {} but the sealed event is {}",
                id.map_or("-".into(), |i| i.to_string()),
                event.id
            ))
        } else if leaf.as_slice() != row.hash.as_slice() || event.hash != hex::encode(leaf) {
            let own_prev: Option<Hash> = row.prev_hash.as_deref().and_then(|p| p.try_into().ok());
            let chained = own_prev.is_some_and(|p| {
                p != prev && event_leaf_hash(&event, &digests, &p).as_slice() == row.hash.as_slice()
            });
            Some(if chained {
                "the event does not follow its predecessor in the chain".to_owned()
            } else {
                "the event's content does not match its leaf hash".to_owned()
            })
        } else if row.prev_hash.as_deref() != Some(prev.as_slice()) {
            Some("the stored predecessor hash is not the previous event's leaf".into())
        } else if Columns::of(&event) != row.columns {
            Some("an indexed column disagrees with the sealed event".into())
        } else {
            personal_mismatch(&event, &digests, tenant, &mut subject_keys, &mut key_stmt)?
        };
        if let Some(detail) = problem {
            push(report, seq, Some(event.id), Kind::Altered, detail);
        }
        prev = leaf;
        frontier.push(leaf, |_, _, _| {});
        while let Some(cp) = checkpoints
            .get(next_cp)
            .filter(|cp| cp.size == frontier.size())
        {
            if !broken && frontier.root() != cp.root {
                push(
                    report,
                    seq,
                    Some(event.id),
                    Kind::Altered,
                    format!(
                        "the log does not match the checkpoint of size {} signed at {}",
                        cp.size,
                        cp.issued_at.to_rfc3339()
                    ),
                );
            }
            next_cp += 1;
        }
        while checkpoints
            .get(next_cp)
            .is_some_and(|cp| cp.size < frontier.size())
        {
            next_cp += 1;
        }
    }
    if let Some(newest) = checkpoints.iter().max_by_key(|cp| cp.size)
        && newest.size > frontier.size()
    {
        push(
            report,
            frontier.size() + 1,
            None,
            Kind::Truncated,
            format!(
                "the checkpoint signed at {} covers {} events, the log holds {}",
                newest.issued_at.to_rfc3339(),
                newest.size,
                frontier.size()
            ),
        );
    }
    Ok(())
}

fn check_signature(
    cp: &sealtrail_store::Checkpoint,
    keys: &HashMap<String, VerifyingKey>,
) -> Result<(), String> {
    let key = keys.get(&cp.key_id).ok_or_else(|| {
        format!(
            "checkpoint of size {} is signed by unknown key {}",
            cp.size, cp.key_id
        )
    })?;
    let head = checkpoint::verify(&cp.note, &cp.key_id, key)
        .map_err(|e| format!("checkpoint of size {}: {e}", cp.size))?;
    if head.size != cp.size || head.root != cp.root || head.origin != checkpoint::origin(&cp.tenant)
    {
        return Err(format!(
            "checkpoint of size {}: the signed note says something else",
            cp.size
        ));
    }
    // The bare signature served by the API must be the note's.
    let bare = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &cp.signature)
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .ok_or_else(|| {
            format!(
                "checkpoint of size {}: the signature is not base64 Ed25519",
                cp.size
            )
        })?;
    ed25519_dalek::Verifier::verify(key, checkpoint::body(&head).as_bytes(), &bare).map_err(|_| {
        format!(
            "checkpoint of size {}: the signature does not verify",
            cp.size
        )
    })
}

/// Checks the personal values still present against their digests, where the key still exists.
fn personal_mismatch(
    event: &Event,
    digests: &PersonalDigests,
    tenant: &str,
    cache: &mut HashMap<String, Option<[u8; 32]>>,
    stmt: &mut rusqlite::Statement<'_>,
) -> Result<Option<String>, WalkError> {
    let mut key_of = |subject: &str| -> Result<Option<[u8; 32]>, WalkError> {
        if let Some(k) = cache.get(subject) {
            return Ok(*k);
        }
        let key: Option<[u8; 32]> = stmt
            .query_row(params![tenant, subject], |r| r.get::<_, Option<Vec<u8>>>(0))
            .ok()
            .flatten()
            .and_then(|b| b.try_into().ok());
        cache.insert(subject.to_owned(), key);
        Ok(key)
    };
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
