//! Walking a tenant's log to check its seal, wherever the log comes from (a store file or an
//! export): every leaf recomputed from its event, the hash chain, the tree against every signed
//! checkpoint, and the newest checkpoint against the tail. Findings name the first event that
//! was altered, removed, inserted or reordered.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sealtrail_model::Timestamp;
use uuid::Uuid;

use crate::checkpoint;
use crate::entry::GENESIS;
use crate::merkle::{Frontier, Hash};

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

/// A signed checkpoint as stored or exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// The tree size.
    pub size: u64,
    /// The root.
    pub root: Hash,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// The key's id.
    pub key_id: String,
    /// The bare signature, base64.
    pub signature: String,
    /// The signed note.
    pub note: String,
}

/// Checks a checkpoint's note and bare signature with the key its id names; says why not.
pub fn check_signature(
    tenant: &str,
    head: &SignedHead,
    keys: &HashMap<String, VerifyingKey>,
) -> Result<(), String> {
    let size = head.size;
    let key = keys.get(&head.key_id).ok_or_else(|| {
        format!(
            "checkpoint of size {size} is signed by unknown key {}",
            head.key_id
        )
    })?;
    let parsed = checkpoint::verify(&head.note, &head.key_id, key)
        .map_err(|e| format!("checkpoint of size {size}: {e}"))?;
    if parsed.size != size
        || parsed.root != head.root
        || parsed.origin != checkpoint::origin(tenant)
    {
        return Err(format!(
            "checkpoint of size {size}: the signed note says something else"
        ));
    }
    let bare = STANDARD
        .decode(&head.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| format!("checkpoint of size {size}: the signature is not base64 Ed25519"))?;
    key.verify(checkpoint::body(&parsed).as_bytes(), &bare)
        .map_err(|_| format!("checkpoint of size {size}: the signature does not verify"))
}

/// One stored event, hashed and checked on its own: everything the walk needs to place it in
/// the log. Making one needs no other event, so a store can make them in parallel.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The position it was found at.
    pub seq: u64,
    /// The id stored beside it, if any.
    pub id: Option<Uuid>,
    /// Its leaf hash, recomputed from what is stored (for an event that cannot be read: the
    /// stored leaf hash, so that the walk goes on).
    pub leaf: Hash,
    /// Whether every leaf hash stored beside it equals [`Sealed::leaf`].
    pub hash_matches: bool,
    /// The leaf hash stored beside it, if any. Where it differs from the recomputed leaf the
    /// successor may name either as its predecessor, so that one altered event is one finding,
    /// not also a broken link at the next.
    pub stored_hash: Option<Hash>,
    /// The predecessor hash stored beside it, if any.
    pub stored_prev: Option<Hash>,
    /// What the sealed event says of itself, or why it cannot be read.
    pub head: Result<Head, String>,
    /// What the store's own checks (indexed columns, personal values) found wrong, if anything;
    /// reported only when the seal itself holds.
    pub problem: Option<String>,
    /// The event was removed by retention: only its place is stored (its id and
    /// [`Sealed::stored_hash`], which stands for the leaf); a purge receipt must account for it.
    pub gone: bool,
    /// What the event says it removed, when it is a purge receipt.
    pub receipt: Option<Receipt>,
}

/// What a purge receipt (`audit.purged`) records: `count` events removed, all with positions
/// in `from..=to`, under the checkpoint of `checkpoint_size` with root `checkpoint_root`. A
/// receipt counts only where that checkpoint is one of the log's own verified checkpoints, so a
/// receipt copied from another log (an import) accounts for nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The size of the checkpoint covering the removed events.
    pub checkpoint_size: u64,
    /// Its root.
    pub checkpoint_root: Hash,
    /// The first position of the range.
    pub from: u64,
    /// The last position of the range.
    pub to: u64,
    /// How many events of the range were removed.
    pub count: u64,
}

/// What a sealed event says of its own place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its `seq`.
    pub seq: u64,
    /// Its tenant, when that is not the tenant being walked.
    pub foreign_tenant: Option<String>,
    /// Its id.
    pub id: Uuid,
    /// The predecessor hash it was sealed with.
    pub prev: Hash,
    /// When it was recorded.
    pub recorded_at: Timestamp,
}

/// The walk of one tenant's log, fed in `seq` order.
pub struct TenantWalk {
    tenant: String,
    expected: u64,
    prev: Hash,
    frontier: Frontier,
    checkpoints: Vec<SignedHead>,
    next_cp: usize,
    /// After a structural break positions no longer line up with the tree: roots are not
    /// compared any more (the first finding already names the place).
    broken: bool,
    /// The stored leaf hash of the previous event where it differs from the recomputed one.
    alt_prev: Option<Hash>,
    findings: Vec<Finding>,
    last_recorded: Option<Timestamp>,
    /// Runs of removed positions, in order.
    gone: Vec<(u64, u64, Option<Uuid>)>,
    /// Purge receipts: their own position and what they record.
    receipts: Vec<(u64, Uuid, Receipt)>,
}

/// Events at the end of a log that no verified checkpoint covers yet: chained, but not vouched
/// for by a signature. Normal for a few seconds after a write; suspicious when the newest
/// checkpoint is far older than the newest event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    /// How many events.
    pub events: u64,
    /// When the newest verified checkpoint was signed, if any.
    pub newest_checkpoint_at: Option<Timestamp>,
    /// When the newest event was recorded.
    pub last_event_at: Timestamp,
}

impl TenantWalk {
    /// Starts a walk; `checkpoints` must already have verified signatures.
    pub fn new(tenant: &str, mut checkpoints: Vec<SignedHead>) -> Self {
        checkpoints.sort_by_key(|c| (c.size, c.issued_at));
        Self {
            tenant: tenant.to_owned(),
            expected: 1,
            prev: GENESIS,
            frontier: Frontier::new(),
            checkpoints,
            next_cp: 0,
            broken: false,
            alt_prev: None,
            findings: Vec::new(),
            last_recorded: None,
            gone: Vec::new(),
            receipts: Vec::new(),
        }
    }

    /// The events after the newest verified checkpoint, if there are any.
    pub fn uncovered(&self) -> Option<Uncovered> {
        let newest = self
            .checkpoints
            .iter()
            .max_by_key(|cp| (cp.size, cp.issued_at));
        let covered = newest.map_or(0, |cp| cp.size);
        let events = self.frontier.size().saturating_sub(covered);
        (events > 0).then(|| Uncovered {
            events,
            newest_checkpoint_at: newest.map(|cp| cp.issued_at),
            last_event_at: self.last_recorded.unwrap_or(Timestamp::from_micros(0)),
        })
    }

    fn push_finding(&mut self, seq: u64, id: Option<Uuid>, kind: Kind, detail: String) {
        self.findings.push(Finding {
            tenant: self.tenant.clone(),
            seq,
            id,
            kind,
            detail,
        });
    }

    /// Checks the next stored event, already hashed and checked where it was read (which may
    /// be another thread: a [`Sealed`] needs nothing from the walk).
    pub fn push_sealed(&mut self, item: Sealed) {
        let seq = item.seq;
        if seq < self.expected {
            self.broken = true;
            let kind = match &item.head {
                Ok(h) if h.seq != seq => Kind::Reordered,
                _ => Kind::Inserted,
            };
            self.push_finding(
                seq,
                item.id,
                kind,
                format!("a second event claims seq {seq}"),
            );
            return;
        }
        if seq > self.expected {
            self.broken = true;
            let detail = format!("the log skips from seq {} to {seq}", self.expected - 1);
            self.push_finding(self.expected, None, Kind::Missing, detail);
            self.alt_prev = None;
            self.prev = item
                .stored_prev
                .or(item.head.as_ref().ok().map(|h| h.prev))
                .unwrap_or(GENESIS);
        }
        self.expected = seq + 1;
        if item.gone {
            // Only the place of a removed event is stored: its leaf hash stands in for the
            // leaf (the chain and the tree check it from both sides), and a receipt must name it.
            let Some(leaf) = item.stored_hash else {
                self.push_finding(
                    seq,
                    item.id,
                    Kind::Altered,
                    "a removed event's place has no leaf hash".into(),
                );
                self.advance(GENESIS, seq, item.id);
                return;
            };
            if let Some(problem) = item.problem {
                self.push_finding(seq, item.id, Kind::Altered, problem);
            }
            match self.gone.last_mut() {
                Some(run) if run.1 + 1 == seq => run.1 = seq,
                _ => self.gone.push((seq, seq, item.id)),
            }
            self.advance(leaf, seq, item.id);
            return;
        }
        let head = match item.head {
            Ok(head) => head,
            Err(detail) => {
                self.push_finding(seq, item.id, Kind::Altered, detail);
                self.advance(item.leaf, seq, item.id);
                return;
            }
        };
        if head.seq != seq || head.foreign_tenant.is_some() {
            self.broken = true;
            let tenant = head.foreign_tenant.as_deref().unwrap_or(&self.tenant);
            let kind = if head.foreign_tenant.is_none() {
                Kind::Reordered
            } else {
                Kind::Altered
            };
            let detail = format!(
                "the event at seq {seq} is the sealed event of seq {} of tenant {tenant}",
                head.seq
            );
            self.push_finding(seq, item.id, kind, detail);
            self.advance(item.leaf, seq, item.id);
            return;
        }
        // Where the content does not match its leaf, the id beside it names the event; where it
        // does, the sealed id does.
        let problem = if !item.hash_matches {
            Some((
                item.id.unwrap_or(head.id),
                "the event's content does not match its leaf hash".to_owned(),
            ))
        } else if item.id.is_some_and(|id| id != head.id) {
            Some((
                head.id,
                format!(
                    "the stored id says {} but the sealed event is {}",
                    item.id.map_or("-".into(), |i| i.to_string()),
                    head.id
                ),
            ))
        } else if !self.follows(head.prev) {
            Some((
                head.id,
                "the event does not follow its predecessor in the chain".to_owned(),
            ))
        } else if item.stored_prev.is_some_and(|p| !self.follows(p)) {
            Some((
                head.id,
                "the stored predecessor hash is not the previous event's leaf".into(),
            ))
        } else {
            item.problem.map(|p| (head.id, p))
        };
        if let Some((id, detail)) = problem {
            self.push_finding(seq, Some(id), Kind::Altered, detail);
        }
        if let Some(receipt) = item.receipt {
            self.receipts.push((seq, head.id, receipt));
        }
        self.last_recorded = Some(head.recorded_at);
        self.advance(item.leaf, seq, Some(head.id));
        self.alt_prev = item.stored_hash.filter(|_| !item.hash_matches);
    }

    /// Whether `prev` names the previous event: its recomputed leaf, or (when that event was
    /// already reported altered) the leaf stored beside it.
    fn follows(&self, prev: Hash) -> bool {
        prev == self.prev || self.alt_prev == Some(prev)
    }

    fn advance(&mut self, leaf: Hash, seq: u64, id: Option<Uuid>) {
        self.prev = leaf;
        self.alt_prev = None;
        self.frontier.push(leaf, |_, _, _| {});
        while let Some(cp) = self
            .checkpoints
            .get(self.next_cp)
            .filter(|cp| cp.size <= self.frontier.size())
        {
            if cp.size == self.frontier.size() && !self.broken && self.frontier.root() != cp.root {
                let detail = format!(
                    "the log does not match the checkpoint of size {} signed at {}",
                    cp.size,
                    cp.issued_at.to_rfc3339()
                );
                self.push_finding(seq, id, Kind::Altered, detail);
            }
            self.next_cp += 1;
        }
    }

    /// Ends the walk: checks the tail against the newest checkpoint and returns the findings.
    pub fn finish(mut self) -> Vec<Finding> {
        if let Some(newest) = self.checkpoints.iter().max_by_key(|cp| cp.size).cloned()
            && newest.size > self.frontier.size()
        {
            let detail = format!(
                "the checkpoint signed at {} covers {} events, the log holds {}",
                newest.issued_at.to_rfc3339(),
                newest.size,
                self.frontier.size()
            );
            self.push_finding(self.frontier.size() + 1, None, Kind::Truncated, detail);
        }
        self.account_for_removals();
        self.findings.sort_by_key(|f| f.seq);
        self.findings
    }

    /// Every removed position must lie in the range of a purge receipt written after it, and
    /// the receipts' counts must add up to the positions removed: content deleted any other
    /// way is `missing`.
    fn account_for_removals(&mut self) {
        let checkpoints = &self.checkpoints;
        let own = |r: &Receipt| {
            checkpoints
                .iter()
                .any(|c| c.size == r.checkpoint_size && c.root == r.checkpoint_root)
        };
        self.receipts
            .retain(|(at, _, r)| r.from <= r.to && r.to < *at && own(r));
        let mut ranges: Vec<(u64, u64)> = self
            .receipts
            .iter()
            .map(|(_, _, r)| (r.from, r.to))
            .collect();
        ranges.sort_unstable();
        let mut covered_total = 0u64;
        let runs = std::mem::take(&mut self.gone);
        for (a, b, id) in runs {
            // The parts of a..=b no receipt range covers.
            let mut at = a;
            let mut uncovered: Option<u64> = None;
            for &(from, to) in &ranges {
                if to < at || from > b {
                    continue;
                }
                if from > at && uncovered.is_none() {
                    uncovered = Some(at);
                }
                covered_total += to.min(b) + 1 - from.max(at);
                at = at.max(to.saturating_add(1));
                if at > b {
                    break;
                }
            }
            if at <= b && uncovered.is_none() {
                uncovered = Some(at);
            }
            if let Some(first) = uncovered {
                self.push_finding(
                    first,
                    (first == a).then_some(id).flatten(),
                    Kind::Missing,
                    format!(
                        "the event at seq {first} was removed without a purge receipt naming it"
                    ),
                );
            }
        }
        let counted: u64 = self.receipts.iter().map(|(_, _, r)| r.count).sum();
        if counted != covered_total
            && let Some(&(at, id, _)) = self.receipts.last()
        {
            self.push_finding(
                at,
                Some(id),
                Kind::Altered,
                format!(
                    "purge receipts account for {counted} removed events; the log has {covered_total} removed within their ranges"
                ),
            );
        }
    }

    /// How many events the walk has seen in place.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }
}
