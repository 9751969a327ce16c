//! `sealtrail verify`, once for every backend and for exports: the walk of a store's log
//! (or of an export) with the ledger's [`TenantWalk`] — every leaf recomputed from what is
//! stored, the hash chain, every checkpoint's signature and root, the newest checkpoint against
//! the tail — plus what only a store has: the personal values still present against their
//! digests, and each backend's own checks of a row ([`WalkRow::problem`]).
//!
//! Rows are read and checked in parallel: each tenant's `seq` range is cut into chunks; worker
//! threads, each with its own [`WalkReader`], turn a chunk's rows into [`Sealed`] results (the
//! leaf hashed from the stored bytes, the row's own checks done), and the calling thread feeds
//! them to the tenant's walk in order. A row holds its own predecessor hash, so no row needs
//! another to be checked. Derived data is not walked: `sealtrail reindex` rebuilds it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac};
use sealtrail_ledger::entry::{
    EntryParts, GENESIS, PersonalDigests, encode_entry, personal_digest, reencode_v2,
};
use sealtrail_ledger::merkle::node_hash;
use sealtrail_ledger::personal;
use sealtrail_ledger::view::{EntryView, PersonalValues};
pub use sealtrail_ledger::walk::{Finding, Kind};
use sealtrail_ledger::walk::{
    Head, Receipt, Sealed, SignedHead, TenantWalk, Uncovered, check_signature,
};
use sealtrail_ledger::{Hash, LeafHash, leaf_hash};
use sealtrail_model::{Event, Tenant, Timestamp};
use sha2::Sha256;
use uuid::Uuid;

use crate::Checkpoint;
use crate::rows::RowBody;

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

/// One stored event as a walk reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkRow {
    /// The position it was found at.
    pub seq: i64,
    /// The id stored beside it.
    pub id: Option<Uuid>,
    /// The leaf hash stored beside it.
    pub hash: Option<LeafHash>,
    /// The event as stored.
    pub body: RowBody,
    /// What the backend's own checks of the row found wrong (a column that must be empty
    /// holds data, a second row of the event disagrees), if anything.
    pub problem: Option<String>,
}

/// What a walk worker reads, on a connection of its own.
pub trait WalkReader {
    /// The backend's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The rows of `tenant` whose `seq` lies in `lo..=hi`, by `seq` (rows claiming one position
    /// in a fixed order).
    fn rows(&mut self, tenant: &Tenant, lo: i64, hi: i64) -> Result<Vec<WalkRow>, Self::Error>;

    /// A subject's key, `None` when it is erased or was never made.
    fn subject_key(
        &mut self,
        tenant: &Tenant,
        subject: &str,
    ) -> Result<Option<[u8; 32]>, Self::Error>;
}

/// A store, as a walk sees it.
pub trait WalkSource: Sync {
    /// The backend's failure.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A worker's reader.
    type Reader: WalkReader<Error = Self::Error>;

    /// Every tenant with events or checkpoints, by name.
    fn tenants(&self) -> Result<Vec<Tenant>, Self::Error>;
    /// The stored checkpoints of a tenant.
    fn checkpoints(&self, tenant: &Tenant) -> Result<Vec<Checkpoint>, Self::Error>;
    /// How many rows a tenant's log holds (how many chunks to cut it into).
    fn rows_of(&self, tenant: &Tenant) -> Result<u64, Self::Error>;
    /// The size the store recorded for a tenant's log as it wrote it, if it records one: a tail
    /// cut off before any checkpoint covered it shows against it.
    fn recorded_size(&self, tenant: &Tenant) -> Result<Option<u64>, Self::Error>;
    /// A reader for one worker (called on the worker's thread).
    fn reader(&self) -> Result<Self::Reader, Self::Error>;
}

/// How a walk spreads its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkOptions {
    /// How many positions of a tenant's log one worker checks at a time (at least 1).
    pub chunk: u64,
    /// Worker threads (at least 1); the default is one per core.
    pub workers: usize,
}

impl Default for WalkOptions {
    fn default() -> Self {
        Self {
            chunk: 16_384,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A piece of work: the rows of one tenant whose `seq` lies in `lo..=hi`.
struct Job {
    tenant: usize,
    lo: i64,
    hi: i64,
}

type Chunk<E> = (usize, Result<Vec<Sealed>, E>);

/// Walks a whole store with the given trusted checkpoint keys; `progress` is called with the
/// number of events walked so far, now and then. The report does not depend on `options`.
pub fn walk_store<S: WalkSource>(
    source: &S,
    keys: &HashMap<String, VerifyingKey>,
    options: WalkOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, S::Error> {
    let chunk = i64::try_from(options.chunk.max(1)).unwrap_or(i64::MAX);
    let mut report = Report::default();
    let tenants = source.tenants()?;
    let mut heads = Vec::with_capacity(tenants.len());
    let mut recorded = Vec::with_capacity(tenants.len());
    let mut jobs = Vec::new();
    for (index, tenant) in tenants.iter().enumerate() {
        heads.push(signed_heads(
            tenant.as_str(),
            source.checkpoints(tenant)?,
            keys,
            &mut report,
        ));
        recorded.push(source.recorded_size(tenant)?);
        // Chunks cover every possible seq, so rows with forged positions are read too; the
        // row count only decides how many chunks there are.
        let rows = i64::try_from(source.rows_of(tenant)?).unwrap_or(i64::MAX);
        let pieces = rows / chunk + 1;
        for piece in 0..pieces {
            jobs.push(Job {
                tenant: index,
                lo: if piece == 0 {
                    i64::MIN
                } else {
                    piece * chunk + 1
                },
                hi: if piece == pieces - 1 {
                    i64::MAX
                } else {
                    (piece + 1) * chunk
                },
            });
        }
    }
    let workers = options.workers.clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Chunk<S::Error>>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (jobs, tenants, next) = (&jobs, &tenants, &next);
            scope.spawn(move || {
                let mut worker: Option<Worker<S::Reader>> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let tenant = &tenants[job.tenant];
                    let result = match &mut worker {
                        Some(w) => w.run(tenant, job.lo, job.hi),
                        None => source.reader().and_then(|r| {
                            worker.insert(Worker::new(r)).run(tenant, job.lo, job.hi)
                        }),
                    };
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let outcome = merge(
            &jobs,
            &tenants,
            heads,
            &recorded,
            &rx,
            &mut report,
            progress,
        );
        if outcome.is_err() {
            // Stop handing out work; the workers finish their chunk and see the closed channel.
            next.store(jobs.len(), Ordering::Relaxed);
        }
        drop(rx);
        outcome
    })?;
    progress(report.events);
    Ok(report)
}

/// Feeds the workers' results to each tenant's walk in log order.
fn merge<E>(
    jobs: &[Job],
    tenants: &[Tenant],
    heads: Vec<Vec<SignedHead>>,
    recorded: &[Option<u64>],
    rx: &mpsc::Receiver<Chunk<E>>,
    report: &mut Report,
    progress: &mut dyn FnMut(u64),
) -> Result<(), E> {
    let mut heads = heads.into_iter();
    let mut pending = BTreeMap::new();
    let mut walk: Option<(usize, TenantWalk)> = None;
    let finish = |walk: Option<(usize, TenantWalk)>, report: &mut Report| {
        if let Some((tenant, walk)) = walk {
            report.tenants += 1;
            let name = &tenants[tenant];
            if let Some(uncovered) = walk.uncovered() {
                report.uncovered.push((name.to_string(), uncovered));
            }
            let walked = walk.size();
            let mut findings = walk.finish();
            // The writer records each log's size as it commits: a tail cut off before any
            // checkpoint covered it still shows here, unless the record was rewritten too.
            if let Some(size) = recorded[tenant]
                && size > walked
                && findings
                    .iter()
                    .all(|f| !matches!(f.kind, Kind::Truncated | Kind::Missing))
            {
                findings.push(Finding {
                    tenant: name.to_string(),
                    seq: walked + 1,
                    id: None,
                    kind: Kind::Truncated,
                    detail: format!("the log's recorded size is {size}, the log holds {walked}"),
                });
            }
            report.findings.extend(findings);
        }
    };
    let mut next_job = 0;
    while next_job < jobs.len() {
        let Ok((i, result)) = rx.recv() else { break };
        pending.insert(i, result);
        while let Some(result) = pending.remove(&next_job) {
            let tenant = jobs[next_job].tenant;
            if walk.as_ref().is_none_or(|(t, _)| *t != tenant) {
                finish(walk.take(), report);
                let signed = heads.next().unwrap_or_default();
                walk = Some((tenant, TenantWalk::new(tenants[tenant].as_str(), signed)));
            }
            let (_, current) = walk.as_mut().expect("set above");
            let before = report.events;
            for sealed in result? {
                report.events += 1;
                current.push_sealed(sealed);
            }
            if before >> 16 != report.events >> 16 {
                progress(report.events);
            }
            next_job += 1;
        }
    }
    // Tenants with no rows and no job still get their checkpoints compared with nothing.
    finish(walk, report);
    Ok(())
}

/// The action of the receipt retention writes for each purge.
pub const PURGED: &str = "audit.purged";

/// What a purge receipt says it removed (its `metadata`: `from_seq`, `to_seq`, `count` and
/// `checkpoint: {size, root_hash}`).
fn receipt_of(view: &EntryView<'_>) -> Option<Receipt> {
    if view.action != PURGED {
        return None;
    }
    let metadata = view.metadata()?;
    let number = |name: &str| metadata.get(name).and_then(serde_json::Value::as_u64);
    let checkpoint = metadata.get("checkpoint")?;
    let root = checkpoint.get("root_hash")?.as_str()?;
    Some(Receipt {
        checkpoint_size: checkpoint.get("size")?.as_u64()?,
        checkpoint_root: LeafHash::from_hex(root)?.0,
        from: number("from_seq")?,
        to: number("to_seq")?,
        count: number("count")?,
    })
}

/// A personal value already checked against its digest in this walk.
#[derive(Default)]
struct Checked {
    digest: Hash,
    subject: String,
    value: String,
}

/// What a worker knows of the tenant it is walking: its subjects' keys as HMAC states, and for
/// each personal field the value it checked last. Audit logs repeat the same person's name,
/// e-mail and user agent in event after event; a value equal to the last one checked, with the
/// same digest and subject, needs no second HMAC. (A table of many remembered values was
/// measured slower: its cache misses cost more than the HMACs they saved.)
struct Worker<R> {
    reader: R,
    /// Whether stored personal values are checked (an export's are not: nobody's keys are
    /// in it).
    personal: bool,
    tenant: Option<Tenant>,
    keys: HashMap<String, Option<Hmac<Sha256>>>,
    last: [Checked; 5],
}

impl<R: WalkReader> Worker<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            personal: true,
            tenant: None,
            keys: HashMap::new(),
            last: Default::default(),
        }
    }

    fn run(&mut self, tenant: &Tenant, lo: i64, hi: i64) -> Result<Vec<Sealed>, R::Error> {
        if self.tenant.as_ref() != Some(tenant) {
            self.tenant = Some(tenant.clone());
            self.keys.clear();
            self.last = Default::default();
        }
        let rows = self.reader.rows(tenant, lo, hi)?;
        rows.into_iter()
            .map(|row| self.check(tenant, row))
            .collect()
    }

    /// Checks one row on its own: its leaf, what its event says of its place, the backend's
    /// own checks and its personal values.
    fn check(&mut self, tenant: &Tenant, row: WalkRow) -> Result<Sealed, R::Error> {
        let seq = row.seq.max(0) as u64;
        let stored_hash = row.hash.map(|h| h.0);
        let unreadable = |detail: String, stored_prev: Option<Hash>| Sealed {
            seq,
            id: row.id,
            leaf: stored_hash.unwrap_or(GENESIS),
            hash_matches: true,
            stored_hash,
            stored_prev,
            head: Err(detail),
            problem: None,
            gone: false,
            receipt: None,
        };
        if row.body == RowBody::Gone {
            return Ok(Sealed {
                seq,
                id: row.id,
                leaf: stored_hash.unwrap_or(GENESIS),
                hash_matches: true,
                stored_hash,
                stored_prev: None,
                head: Err("the event was removed".into()),
                problem: row.problem,
                gone: true,
                receipt: None,
            });
        }
        // A row written before entries were stored (or an exported event) keeps its event as
        // JSON: it is encoded again. Its JSON also carries the leaf hash it is served with,
        // which must be the leaf too.
        let legacy: (Vec<u8>, Event, PersonalDigests);
        let (entry, values, served_hash, stored_prev) = match &row.body {
            RowBody::Entry { entry, values } => {
                let values = match values {
                    None => Some(PersonalValues::default()),
                    Some(b) => PersonalValues::from_bytes(b),
                };
                let Some(values) = values else {
                    return Ok(unreadable(
                        "the stored personal values cannot be read".into(),
                        None,
                    ));
                };
                (entry.as_slice(), values, None, None)
            }
            RowBody::Gone => unreachable!("handled above"),
            RowBody::Legacy {
                json,
                digests,
                prev,
            } => {
                let prev: Option<Hash> = prev.as_deref().and_then(|p| p.try_into().ok());
                let event = serde_json::from_str::<Event>(json).ok();
                // An exported event of a version-2 entry carries its seal material instead.
                if let (Some(event), Some(material)) = (
                    &event,
                    digests.as_deref().filter(|d| personal::is_seal_material(d)),
                ) {
                    let entry = personal::parse_seal_material(material).and_then(|slots| {
                        reencode_v2(
                            &EntryParts::of_event(event),
                            &prev.unwrap_or(GENESIS),
                            &slots,
                        )
                    });
                    let Some(entry) = entry else {
                        return Ok(unreadable(
                            "the event does not match its seal material".into(),
                            prev,
                        ));
                    };
                    legacy = (entry, event.clone(), PersonalDigests::default());
                    (
                        legacy.0.as_slice(),
                        PersonalValues::default(),
                        Some(legacy.1.hash.as_str()),
                        prev,
                    )
                } else {
                    let digests = digests.as_deref().and_then(PersonalDigests::from_bytes);
                    let (Some(event), Some(digests)) = (event, digests) else {
                        return Ok(unreadable(
                            "the stored event is not valid JSON of an event".into(),
                            prev,
                        ));
                    };
                    let entry = encode_entry(&event, &digests, &prev.unwrap_or(GENESIS));
                    legacy = (entry, event, digests);
                    let values = PersonalValues::of(&legacy.1, &legacy.2);
                    (
                        legacy.0.as_slice(),
                        values,
                        Some(legacy.1.hash.as_str()),
                        prev,
                    )
                }
            }
        };
        let view = match EntryView::parse(entry) {
            Ok(view) => view,
            Err(e) => {
                return Ok(unreadable(
                    format!("the stored entry cannot be read: {e}"),
                    stored_prev,
                ));
            }
        };
        let leaf = leaf_hash(entry);
        let problem = match row.problem {
            Some(p) => Some(p),
            None if self.personal => self.personal_mismatch(tenant, &view, &values)?,
            None => None,
        };
        Ok(Sealed {
            seq,
            id: row.id,
            leaf,
            hash_matches: stored_hash.is_none_or(|h| h == leaf)
                && served_hash.is_none_or(|served| served == hex::encode(leaf))
                && (stored_hash.is_some() || served_hash.is_some()),
            stored_hash: stored_hash
                .or_else(|| served_hash.and_then(|s| LeafHash::from_hex(s).map(|h| h.0))),
            stored_prev,
            head: Ok(Head {
                seq: view.seq,
                foreign_tenant: (view.tenant != tenant.as_str()).then(|| view.tenant.to_owned()),
                id: view.id,
                prev: view.prev,
                recorded_at: Timestamp::from_micros(view.recorded_at),
            }),
            problem,
            gone: false,
            receipt: receipt_of(&view),
        })
    }

    /// Checks every stored personal value against its sealed digest, by [`personal_mismatch`],
    /// with HMAC states keyed once per subject and each field's last checked value remembered.
    fn personal_mismatch(
        &mut self,
        tenant: &Tenant,
        view: &EntryView<'_>,
        values: &PersonalValues<'_>,
    ) -> Result<Option<String>, R::Error> {
        let Self {
            reader, keys, last, ..
        } = self;
        if view.version != sealtrail_ledger::entry::ENTRY_VERSION || values.held.is_some() {
            return Ok(view.held_mismatch(values));
        }
        let actor_id = view.actor_id(values);
        let target_id = view.target_id(values);
        personal_mismatch(values, &view.digests, actor_id, target_id, |f| {
            let seen = &mut last[f.index];
            if seen.digest == *f.digest && seen.subject == f.subject && seen.value == f.value {
                return Ok(DigestCheck::Matches);
            }
            if !keys.contains_key(f.subject) {
                let mac = reader
                    .subject_key(tenant, f.subject)?
                    .and_then(|k| <Hmac<Sha256> as Mac>::new_from_slice(&k).ok());
                keys.insert(f.subject.to_owned(), mac);
            }
            let Some(mac) = keys.get(f.subject).and_then(Option::as_ref) else {
                return Ok(DigestCheck::NoKey);
            };
            let mut mac = mac.clone();
            mac.update(f.field.as_bytes());
            mac.update(&[0]);
            mac.update(f.value.as_bytes());
            // Nothing secret is compared here, so a plain comparison will do.
            if mac.finalize().into_bytes().as_slice() != f.digest {
                return Ok(DigestCheck::Differs);
            }
            seen.digest = *f.digest;
            seen.subject.clear();
            seen.subject.push_str(f.subject);
            seen.value.clear();
            seen.value.push_str(f.value);
            Ok(DigestCheck::Matches)
        })
    }
}

/// Verifies an NDJSON export (see `docs/integrity.md` §10) with the given trusted keys: each
/// line's event is checked as a stored event of the walk would be. Returns the findings and the
/// number of events read; `Err` when the file is not an export.
pub fn verify_export(
    text: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> Result<(Vec<Finding>, u64), String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).enumerate();
    let (_, header) = lines.next().ok_or("the export is empty")?;
    let header: serde_json::Value =
        serde_json::from_str(header).map_err(|e| format!("line 1 is not JSON: {e}"))?;
    if header["sealtrail_export"] != 1 {
        return Err("line 1 is not a sealtrail export header".into());
    }
    let tenant = header["tenant"]
        .as_str()
        .and_then(|t| Tenant::parse(t).ok())
        .ok_or("the header names no valid tenant")?;
    let mut rows = Vec::new();
    let mut checkpoint = None;
    for (i, line) in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {} is not JSON: {e}", i + 1))?;
        if let Some(cp) = value.get("checkpoint") {
            checkpoint = Some(
                parse_head(cp).ok_or_else(|| format!("line {}: a malformed checkpoint", i + 1))?,
            );
            continue;
        }
        let seal = &value["seal"];
        let hex = |v: &serde_json::Value| v.as_str().and_then(|s| hex::decode(s).ok());
        rows.push(WalkRow {
            seq: value["seq"].as_i64().unwrap_or(0),
            id: None,
            hash: None,
            body: RowBody::Legacy {
                json: line.to_owned(),
                digests: hex(&seal["personal"]),
                prev: hex(&seal["prev"]),
            },
            problem: None,
        });
    }
    let mut findings = Vec::new();
    let signed = match checkpoint {
        None => return Err("the export carries no checkpoint: nothing vouches for it".into()),
        Some(head) => match check_signature(tenant.as_str(), &head, keys) {
            Ok(()) => vec![head],
            Err(detail) => {
                findings.push(Finding {
                    tenant: tenant.to_string(),
                    seq: head.size,
                    id: None,
                    kind: Kind::BadSignature,
                    detail,
                });
                Vec::new()
            }
        },
    };
    let count = rows.len() as u64;
    let mut walk = TenantWalk::new(tenant.as_str(), signed);
    // An export carries no personal values to check: the reader is never asked for a key.
    let mut worker = Worker::new(NoKeys);
    worker.personal = false;
    for row in rows {
        let sealed = worker
            .check(&tenant, row)
            .unwrap_or_else(|never| match never {});
        walk.push_sealed(sealed);
    }
    findings.extend(walk.finish());
    Ok((findings, count))
}

/// Verifies an NDJSON export read line by line, at constant memory: a whole-log export
/// (version 1) or a filtered or whole export with its Merkle nodes (version 2, see
/// `docs/integrity.md` §10). Returns the findings and the number of events read; `Err` when
/// the input is not an export or cannot be read.
pub fn verify_export_reader(
    mut input: impl std::io::BufRead,
    keys: &HashMap<String, VerifyingKey>,
) -> Result<(Vec<Finding>, u64), String> {
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the export is empty".into());
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let header: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("line 1 is not JSON: {e}"))?;
    match header["sealtrail_export"].as_u64() {
        Some(1) => {
            let mut text = line.clone();
            input.read_to_string(&mut text).map_err(|e| e.to_string())?;
            verify_export(&text, keys)
        }
        Some(2) => verify_proven_export(&header, input, keys),
        _ => Err("line 1 is not a sealtrail export header".into()),
    }
}

/// A version 2 export: each event checked on its own, then events and nodes folded into the
/// root of the checkpoint the export names.
fn verify_proven_export(
    header: &serde_json::Value,
    input: impl std::io::BufRead,
    keys: &HashMap<String, VerifyingKey>,
) -> Result<(Vec<Finding>, u64), String> {
    let tenant = header["tenant"]
        .as_str()
        .and_then(|t| Tenant::parse(t).ok())
        .ok_or("the header names no valid tenant")?;
    let descending = match header["order"].as_str() {
        Some("asc") => false,
        Some("desc") => true,
        _ => return Err("the header names no order (asc or desc)".into()),
    };
    let mut findings = Vec::new();
    let mut fold: Option<ProofFold> = None;
    let mut worker = Worker::new(NoKeys);
    worker.personal = false;
    let mut events = 0u64;
    let finding = |seq: u64, id: Option<Uuid>, kind: Kind, detail: String| Finding {
        tenant: tenant.to_string(),
        seq,
        id,
        kind,
        detail,
    };
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let number = i + 2;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("line {number} is not JSON: {e}"))?;
        if let Some(cp) = value.get("checkpoint") {
            if fold.is_some() {
                return Err(format!("line {number}: a second checkpoint"));
            }
            let head =
                parse_head(cp).ok_or_else(|| format!("line {number}: a malformed checkpoint"))?;
            if let Err(detail) = check_signature(tenant.as_str(), &head, keys) {
                findings.push(finding(head.size, None, Kind::BadSignature, detail));
            }
            fold = Some(ProofFold::new(head, descending));
            continue;
        }
        let Some(fold) = fold.as_mut() else {
            return Err(format!(
                "line {number} comes before the checkpoint: nothing vouches for it"
            ));
        };
        if let Some(node) = value.get("node") {
            let (Some(level), Some(index), Some(hash)) = (
                node["level"].as_u64().and_then(|l| u32::try_from(l).ok()),
                node["index"].as_u64(),
                node["hash"]
                    .as_str()
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|h| Hash::try_from(h).ok()),
            ) else {
                return Err(format!("line {number}: a malformed node"));
            };
            if let Err((seq, kind, detail)) = fold.push(level, index, hash, None) {
                findings.push(finding(seq, None, kind, detail));
            }
            continue;
        }
        events += 1;
        let seq = value["seq"].as_u64().unwrap_or(0);
        let id = value["id"].as_str().and_then(|t| Uuid::parse_str(t).ok());
        let seal = &value["seal"];
        let hex_of = |v: &serde_json::Value| v.as_str().and_then(|s| hex::decode(s).ok());
        let row = WalkRow {
            seq: seq as i64,
            id,
            hash: None,
            body: RowBody::Legacy {
                json: line.clone(),
                digests: hex_of(&seal["personal"]),
                prev: hex_of(&seal["prev"]),
            },
            problem: None,
        };
        let sealed = worker
            .check(&tenant, row)
            .unwrap_or_else(|never| match never {});
        let problem = match &sealed.head {
            Err(detail) => Some(detail.clone()),
            Ok(_) if seq == 0 => Some("the event has no seq".to_owned()),
            Ok(head) if head.seq != seq => Some(format!("it was sealed at seq {}", head.seq)),
            Ok(head) if head.foreign_tenant.is_some() => Some(format!(
                "it was sealed for tenant {}",
                head.foreign_tenant.as_deref().unwrap_or_default()
            )),
            Ok(_) if !sealed.hash_matches => {
                Some("its content does not match its leaf hash".to_owned())
            }
            Ok(_) => None,
        };
        if let Some(detail) = problem {
            findings.push(finding(seq, id, Kind::Altered, detail));
        }
        // Placed in the tree with the hash it is served with: a change to its content alone
        // is the finding above, not a second one at the root.
        let leaf = sealed.stored_hash.unwrap_or(sealed.leaf);
        let prev = sealed.head.as_ref().map(|h| h.prev).ok();
        match fold.push(
            0,
            seq.saturating_sub(1),
            leaf,
            Some(prev.unwrap_or(GENESIS)),
        ) {
            Ok(()) => {}
            Err((at, kind, detail)) => {
                let id = (kind != Kind::Missing).then_some(id).flatten();
                findings.push(finding(at, id, kind, detail));
            }
        }
    }
    let Some(fold) = fold else {
        return Err("the export carries no checkpoint: nothing vouches for it".into());
    };
    for (seq, kind, detail) in fold.finish() {
        findings.push(finding(seq, None, kind, detail));
    }
    findings.sort_by_key(|f| f.seq);
    Ok((findings, events))
}

/// `seq 4 is`, `seqs 4..=6 are`.
fn seqs(from: u64, to: u64) -> String {
    if from == to {
        format!("seq {from} is")
    } else {
        format!("seqs {from}..={to} are")
    }
}

/// Folds an export's events and nodes, in the export's order, into its checkpoint's root.
struct ProofFold {
    head: SignedHead,
    descending: bool,
    /// Ascending: positions `[0, next)` are covered; descending: `[next, size)`.
    next: u64,
    /// Perfect nodes not yet merged with their sibling: `(level, index, hash)`.
    stack: Vec<(u32, u64, Hash)>,
    /// The last leaf placed: its position, its hash and, for an event, its predecessor.
    last_leaf: Option<(u64, Hash, Option<Hash>)>,
    /// Set at the first gap or overlap: the root can no longer be folded.
    broken: bool,
}

type FoldProblem = (u64, Kind, String);

impl ProofFold {
    fn new(head: SignedHead, descending: bool) -> Self {
        let next = if descending { head.size } else { 0 };
        Self {
            head,
            descending,
            next,
            stack: Vec::new(),
            last_leaf: None,
            broken: false,
        }
    }

    /// Places perfect node `(level, index)`; `prev` is set for an event (level 0).
    fn push(
        &mut self,
        level: u32,
        index: u64,
        hash: Hash,
        prev: Option<Hash>,
    ) -> Result<(), FoldProblem> {
        let size = self.head.size;
        let what = if prev.is_some() { "event" } else { "node" };
        let (start, end) = match (
            index.checked_shl(level),
            index.checked_add(1).and_then(|i| i.checked_shl(level)),
        ) {
            (Some(s), Some(e)) if level < 64 && e <= size && s >> level == index => (s, e),
            _ => {
                self.broken = true;
                return Err((
                    index.saturating_add(1),
                    Kind::Inserted,
                    format!("an {what} beyond the checkpoint's tree of size {size}"),
                ));
            }
        };
        // The predecessor link, where both neighbours are leaves of this export.
        let link = match (self.descending, self.last_leaf, prev, level) {
            (false, Some((at, left, _)), Some(p), 0) if at + 1 == start && p != left => {
                Some(start + 1)
            }
            (true, Some((at, _, Some(p))), _, 0) if start + 1 == at && p != hash => Some(at + 1),
            _ => None,
        };
        self.last_leaf = (level == 0).then_some((start, hash, prev));
        let gap = if self.descending {
            (end != self.next).then(|| {
                if end < self.next {
                    (
                        end + 1,
                        Kind::Missing,
                        format!(
                            "{} neither exported nor covered by a node",
                            seqs(end + 1, self.next)
                        ),
                    )
                } else {
                    (
                        start + 1,
                        Kind::Reordered,
                        format!("an {what} out of the export's descending order"),
                    )
                }
            })
        } else {
            (start != self.next).then(|| {
                if start > self.next {
                    (
                        self.next + 1,
                        Kind::Missing,
                        format!(
                            "{} neither exported nor covered by a node",
                            seqs(self.next + 1, start)
                        ),
                    )
                } else {
                    (
                        start + 1,
                        if prev.is_some() {
                            Kind::Reordered
                        } else {
                            Kind::Inserted
                        },
                        format!(
                            "an {what} at seq {}, which the export already covered",
                            start + 1
                        ),
                    )
                }
            })
        };
        self.next = if self.descending { start } else { end };
        if let Some(problem) = gap {
            // The root can no longer be folded, but what follows is still checked for gaps
            // of its own.
            self.broken = true;
            return Err(problem);
        }
        if !self.broken {
            self.stack.push((level, index, hash));
            while let [.., a, b] = self.stack.as_slice() {
                let (left, right) = if self.descending { (b, a) } else { (a, b) };
                if left.0 != right.0 || left.1 % 2 != 0 || left.1 + 1 != right.1 {
                    break;
                }
                let merged = (left.0 + 1, left.1 / 2, node_hash(&left.2, &right.2));
                self.stack.truncate(self.stack.len() - 2);
                self.stack.push(merged);
            }
        }
        if let Some(seq) = link {
            return Err((
                seq,
                Kind::Altered,
                "its predecessor hash is not the leaf before it".to_owned(),
            ));
        }
        Ok(())
    }

    /// What the whole export says of the checkpoint.
    fn finish(mut self) -> Vec<FoldProblem> {
        let size = self.head.size;
        if self.broken {
            return Vec::new();
        }
        let complete = if self.descending {
            self.next == 0
        } else {
            self.next == size
        };
        if !complete {
            let (from, to) = if self.descending {
                (1, self.next)
            } else {
                (self.next + 1, size)
            };
            return vec![(
                from,
                Kind::Truncated,
                format!(
                    "{} of the checkpoint's tree missing from the export",
                    seqs(from, to)
                ),
            )];
        }
        if self.descending {
            self.stack.reverse();
        }
        let root = match self.stack.pop() {
            None => sealtrail_ledger::merkle::empty_root(),
            Some((_, _, mut hash)) => {
                while let Some((_, _, left)) = self.stack.pop() {
                    hash = node_hash(&left, &hash);
                }
                hash
            }
        };
        if root == self.head.root {
            Vec::new()
        } else {
            vec![(
                size,
                Kind::Altered,
                format!(
                    "the exported events and nodes do not hash to the root of the checkpoint of size {size}: \
                     an event was changed together with its hash, or a node was"
                ),
            )]
        }
    }
}

/// The reader of an export's walk: values in an export are checked by nobody's key.
struct NoKeys;

impl WalkReader for NoKeys {
    type Error = std::convert::Infallible;

    fn rows(&mut self, _: &Tenant, _: i64, _: i64) -> Result<Vec<WalkRow>, Self::Error> {
        Ok(Vec::new())
    }

    fn subject_key(&mut self, _: &Tenant, _: &str) -> Result<Option<[u8; 32]>, Self::Error> {
        Ok(None)
    }
}

fn parse_head(v: &serde_json::Value) -> Option<SignedHead> {
    Some(SignedHead {
        size: v["size"].as_u64()?,
        root: hex::decode(v["root_hash"].as_str()?)
            .ok()?
            .try_into()
            .ok()?,
        issued_at: Timestamp::parse_rfc3339(v["issued_at"].as_str()?)?,
        key_id: v["key_id"].as_str()?.to_owned(),
        signature: v["signature"].as_str()?.to_owned(),
        note: v["note"].as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_ledger::merkle::{MemoryTree, NodeSource};

    fn head(tree: &MemoryTree) -> SignedHead {
        SignedHead {
            size: tree.size(),
            root: tree.root(),
            issued_at: Timestamp::from_micros(0),
            key_id: String::new(),
            signature: String::new(),
            note: String::new(),
        }
    }

    /// The lines an export of `kept` writes, in its order: `(level, index, is_event)`.
    fn lines(size: u64, kept: &[u64], descending: bool) -> Vec<(u32, u64, bool)> {
        let mut out = Vec::new();
        let mut next = 0;
        for &i in kept {
            out.extend(crate::export::blocks(next, i).map(|(l, x)| (l, x, false)));
            out.push((0, i, true));
            next = i + 1;
        }
        out.extend(crate::export::blocks(next, size).map(|(l, x)| (l, x, false)));
        if descending {
            out.reverse();
        }
        out
    }

    #[test]
    fn any_subset_of_events_with_its_gap_nodes_folds_into_the_root() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for size in 1..=70u64 {
            let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let tree = MemoryTree::from_leaves(leaves.iter().copied());
            for round in 0..6 {
                let kept: Vec<u64> = (0..size)
                    .filter(|_| round == 0 || random() % (round + 1) == 0)
                    .collect();
                for descending in [false, true] {
                    let written = lines(size, &kept, descending);
                    let mut fold = ProofFold::new(head(&tree), descending);
                    for &(level, index, event) in &written {
                        let hash = tree.node(level, index).expect("node");
                        let prev = (event && index > 0).then(|| leaves[index as usize - 1]);
                        fold.push(level, index, hash, prev.or(event.then_some(GENESIS)))
                            .expect("in order");
                    }
                    assert!(fold.finish().is_empty(), "size {size}, kept {kept:?}");
                    // One node or leaf hash changed: the root says so.
                    let bad = (random() % written.len() as u64) as usize;
                    let mut fold = ProofFold::new(head(&tree), descending);
                    for (at, &(level, index, event)) in written.iter().enumerate() {
                        let mut hash = tree.node(level, index).expect("node");
                        if at == bad {
                            hash[0] ^= 1;
                        }
                        let prev = (event && index > 0).then(|| leaves[index as usize - 1]);
                        let _ = fold.push(level, index, hash, prev.or(event.then_some(GENESIS)));
                    }
                    let found = fold.finish();
                    assert_eq!(found.len(), 1, "size {size}, changed line {bad}");
                    assert_eq!(found[0].1, Kind::Altered);
                }
            }
        }
    }

    #[test]
    fn gaps_and_overlaps_are_named() {
        let leaves: Vec<Hash> = (0..10u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        // Leaf 4 left out and not covered: missing at seq 5.
        let mut fold = ProofFold::new(head(&tree), false);
        for i in (0..10u64).filter(|&i| i != 4) {
            let r = fold.push(0, i, leaves[i as usize], None);
            if i == 5 {
                let (seq, kind, _) = r.expect_err("a gap");
                assert_eq!((seq, kind), (5, Kind::Missing));
            }
        }
        // Everything there, but the export stops early: truncated.
        let mut fold = ProofFold::new(head(&tree), false);
        for i in 0..8u64 {
            fold.push(0, i, leaves[i as usize], None).expect("in order");
        }
        let found = fold.finish();
        assert_eq!((found[0].0, found[0].1), (9, Kind::Truncated));
        // A node beyond the tree.
        let mut fold = ProofFold::new(head(&tree), false);
        let (_, kind, _) = fold.push(4, 0, [0; 32], None).expect_err("too big");
        assert_eq!(kind, Kind::Inserted);
    }
}
