//! `sealtrail verify --data-dir`: walks the whole log file, read-only, with the ledger's
//! [`TenantWalk`]: every leaf recomputed from its row, the hash chain, every stored
//! checkpoint's signature and root, the newest checkpoint against the tail. On top of the seal
//! it checks what only the store has: the personal values against their digests where the
//! subject's key remains. Derived data (the index file) is not walked: it is rebuilt from the
//! log by `sealtrail reindex`. Findings come in walk order: tenants by name, events by `seq`.
//!
//! Rows are read and checked in parallel: each tenant's `seq` range is cut into chunks, worker
//! threads (one per core, each with its own read-only connection) turn a chunk's rows into
//! [`Sealed`] results (the leaf hashed from the stored entry bytes, the row's own checks done),
//! and the calling thread feeds them to the tenant's walk in order, which links the chain,
//! grows the tree and compares it with the checkpoints. A row holds its own predecessor hash,
//! so no row needs another to be checked.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params};
use sealtrail_ledger::entry::{GENESIS, PersonalDigests, encode_entry};
use sealtrail_ledger::leaf_hash;
use sealtrail_ledger::view::{EntryView, PersonalValues};
pub use sealtrail_ledger::walk::{Finding, Kind};
use sealtrail_ledger::walk::{Head, Sealed, TenantWalk};
use sealtrail_model::{Event, Timestamp};
use sealtrail_store::verify::{DigestCheck, personal_mismatch as rule, signed_heads};
use sha2::Sha256;
use uuid::Uuid;

pub use sealtrail_store::verify::Report;

/// Why a walk could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The database could not be read.
    #[error("cannot read the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

/// Opens a store file for verification, read-only.
pub fn open_for_verify(path: &Path) -> Result<Connection, WalkError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Reading the file through a memory map saves copying every page into SQLite's cache.
    conn.pragma_update(None, "mmap_size", 1i64 << 31)?;
    Ok(conn)
}

/// The number of events in the store, for a progress bar.
pub fn count_events(conn: &Connection) -> Result<u64, WalkError> {
    Ok(conn.query_row("SELECT count(*) FROM log", [], |r| r.get::<_, i64>(0))? as u64)
}

/// A piece of work: the rows of one tenant whose `seq` lies in `lo..=hi`.
struct Job {
    tenant: usize,
    lo: i64,
    hi: i64,
}

/// Walks the store file at `path` with the default [`WalkOptions`]. `keys` maps key ids to
/// public keys; `progress` is called with the number of events walked so far, now and then.
pub fn verify_store(
    path: &Path,
    keys: &HashMap<String, VerifyingKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, WalkError> {
    verify_store_with(path, keys, WalkOptions::default(), progress)
}

/// Walks the store file at `path`, spreading the work as `options` say. The report does not
/// depend on the options.
pub fn verify_store_with(
    path: &Path,
    keys: &HashMap<String, VerifyingKey>,
    options: WalkOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, WalkError> {
    let chunk = i64::try_from(options.chunk.max(1)).unwrap_or(i64::MAX);
    let conn = open_for_verify(path)?;
    let mut report = Report::default();
    let mut tenants: Vec<String> = conn
        .prepare("SELECT DISTINCT tenant FROM log UNION SELECT DISTINCT tenant FROM checkpoints")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    tenants.sort();
    let mut heads = Vec::with_capacity(tenants.len());
    let mut jobs = Vec::new();
    for (index, tenant) in tenants.iter().enumerate() {
        let stored: Vec<sealtrail_store::Checkpoint> = conn
            .prepare(
                "SELECT tenant, size, root, issued_at, key_id, signature, note FROM checkpoints \
                 WHERE tenant = ?1 ORDER BY size, issued_at",
            )?
            .query_map([tenant], crate::read::checkpoint_from_row)?
            .collect::<Result<_, _>>()?;
        heads.push(signed_heads(tenant, stored, keys, &mut report));
        // Chunks cover every possible seq, so rows with forged positions are read too; the
        // row count only decides how many chunks there are.
        let rows: i64 = conn.query_row(
            "SELECT count(*) FROM log WHERE tenant = ?1",
            [tenant],
            |r| r.get(0),
        )?;
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
    drop(conn);
    let workers = options.workers.clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<Vec<Sealed>, WalkError>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (jobs, tenants, next) = (&jobs, &tenants, &next);
            scope.spawn(move || {
                let mut worker: Option<Worker> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let result = match &mut worker {
                        Some(w) => w.run(&tenants[job.tenant], job.lo, job.hi),
                        None => Worker::open(path).and_then(|w| {
                            worker.insert(w).run(&tenants[job.tenant], job.lo, job.hi)
                        }),
                    };
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let outcome = merge(&jobs, &tenants, heads, &rx, &mut report, progress);
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
fn merge(
    jobs: &[Job],
    tenants: &[String],
    heads: Vec<Vec<sealtrail_ledger::walk::SignedHead>>,
    rx: &mpsc::Receiver<(usize, Result<Vec<Sealed>, WalkError>)>,
    report: &mut Report,
    progress: &mut dyn FnMut(u64),
) -> Result<(), WalkError> {
    let mut heads = heads.into_iter();
    let mut pending = BTreeMap::new();
    let mut walk: Option<(usize, TenantWalk)> = None;
    let finish = |walk: Option<(usize, TenantWalk)>, report: &mut Report| {
        if let Some((tenant, walk)) = walk {
            report.tenants += 1;
            if let Some(uncovered) = walk.uncovered() {
                report.uncovered.push((tenants[tenant].clone(), uncovered));
            }
            report.findings.extend(walk.finish());
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
                walk = Some((tenant, TenantWalk::new(&tenants[tenant], signed)));
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
    finish(walk, report);
    Ok(())
}

/// A tenant's subject keys, as HMAC states ready to make digests; `None` for an erased or
/// unknown key.
type SubjectMacs = HashMap<String, Option<Hmac<Sha256>>>;

/// A personal value already checked against its digest in this walk.
#[derive(Default)]
struct Checked {
    digest: [u8; 32],
    subject: String,
    value: String,
}

/// What a worker knows of the tenant it is walking: its subjects' keys, and for each personal
/// field the value it checked last. Audit logs repeat the same person's name, e-mail and user
/// agent in event after event; a value equal to the last one checked, with the same digest and
/// subject, needs no second HMAC. (A table of many remembered values was measured slower: its
/// cache misses cost more than the HMACs they saved.)
struct Personal {
    keys: SubjectMacs,
    last: [Checked; 5],
}

impl Personal {
    fn new() -> Self {
        Self {
            keys: HashMap::new(),
            last: Default::default(),
        }
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.last = Default::default();
    }
}

/// One worker's connection and what it knows of the tenant it is walking.
struct Worker {
    conn: Connection,
    tenant: String,
    personal: Personal,
}

const ROWS: &str = "SELECT seq, id, hash, entry, personal_values, legacy_body, legacy_personal, \
     legacy_prev FROM log WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq, id";

fn hash_of(v: ValueRef<'_>) -> Option<[u8; 32]> {
    match v {
        ValueRef::Blob(b) => b.try_into().ok(),
        _ => None,
    }
}

impl Worker {
    fn open(path: &Path) -> Result<Self, WalkError> {
        Ok(Self {
            conn: open_for_verify(path)?,
            tenant: String::new(),
            personal: Personal::new(),
        })
    }

    fn run(&mut self, tenant: &str, lo: i64, hi: i64) -> Result<Vec<Sealed>, WalkError> {
        if self.tenant != tenant {
            self.tenant = tenant.to_owned();
            self.personal.clear();
        }
        let conn = &self.conn;
        let mut stmt = conn.prepare_cached(ROWS)?;
        let mut rows = stmt.query(params![tenant, lo, hi])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(check_row(conn, &mut self.personal, tenant, r)?);
        }
        Ok(out)
    }
}

/// Checks one row on its own: its leaf, what its entry says of its place, and its personal
/// values.
fn check_row(
    conn: &Connection,
    personal: &mut Personal,
    tenant: &str,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Sealed> {
    let seq = r.get::<_, i64>(0)?.max(0) as u64;
    let id = match r.get_ref(1)? {
        ValueRef::Blob(b) => Uuid::from_slice(b).ok(),
        _ => None,
    };
    let stored_hash = hash_of(r.get_ref(2)?);
    let legacy_prev = hash_of(r.get_ref(7)?);
    let unreadable = |detail: String, stored_prev: Option<[u8; 32]>| Sealed {
        seq,
        id,
        leaf: stored_hash.unwrap_or(GENESIS),
        hash_matches: true,
        stored_hash,
        stored_prev,
        head: Err(detail),
        problem: None,
    };
    // A row written before entries were stored keeps its event as JSON: encode it again.
    // Its JSON also carries the leaf hash it is served with, which must be the leaf too.
    let (legacy_entry, legacy_event): (Vec<u8>, Event);
    let (entry, values, problem, served_hash, stored_prev) = match r.get_ref(3)? {
        ValueRef::Blob(entry) => {
            let values = match r.get_ref(4)? {
                ValueRef::Null => Some(PersonalValues::default()),
                ValueRef::Blob(b) => PersonalValues::from_bytes(b),
                _ => None,
            };
            let Some(values) = values else {
                return Ok(unreadable(
                    "the stored personal values cannot be read".into(),
                    None,
                ));
            };
            let leftover = [5, 6, 7]
                .into_iter()
                .map(|i| r.get_ref(i))
                .collect::<rusqlite::Result<Vec<_>>>()?
                .iter()
                .any(|v| *v != ValueRef::Null);
            let problem = leftover
                .then(|| "a column that rows with an entry leave empty holds data".to_owned());
            (entry, values, problem, None, None)
        }
        _ => {
            let event = match r.get_ref(5)? {
                ValueRef::Text(body) => serde_json::from_slice::<Event>(body).ok(),
                _ => None,
            };
            let digests = match r.get_ref(6)? {
                ValueRef::Blob(b) => PersonalDigests::from_bytes(b),
                _ => None,
            };
            let (Some(event), Some(digests)) = (event, digests) else {
                return Ok(unreadable(
                    "the stored event is not valid JSON of an event".into(),
                    legacy_prev,
                ));
            };
            legacy_entry = encode_entry(&event, &digests, &legacy_prev.unwrap_or(GENESIS));
            legacy_event = event;
            let values = PersonalValues::of(&legacy_event, &digests);
            let served = Some(legacy_event.hash.as_str());
            (legacy_entry.as_slice(), values, None, served, legacy_prev)
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
    let problem = match problem {
        Some(p) => Some(p),
        None => personal_mismatch(conn, personal, tenant, &view, &values)?,
    };
    Ok(Sealed {
        seq,
        id,
        leaf,
        hash_matches: stored_hash == Some(leaf)
            && served_hash.is_none_or(|served| served == hex::encode(leaf)),
        stored_hash,
        stored_prev,
        head: Ok(Head {
            seq: view.seq,
            foreign_tenant: (view.tenant != tenant).then(|| view.tenant.to_owned()),
            id: view.id,
            prev: view.prev,
            recorded_at: Timestamp::from_micros(view.recorded_at),
        }),
        problem,
    })
}

/// Checks every stored personal value against its sealed digest, by the rule every backend
/// applies ([`sealtrail_store::verify::personal_mismatch`]), with HMAC states keyed once per
/// subject and each field's last checked value remembered.
fn personal_mismatch(
    conn: &Connection,
    personal: &mut Personal,
    tenant: &str,
    view: &EntryView<'_>,
    values: &PersonalValues<'_>,
) -> rusqlite::Result<Option<String>> {
    let Personal { keys, last } = personal;
    let target_id = view.target.map(|t| t.id);
    rule(values, &view.digests, view.actor_id, target_id, |f| {
        let seen = &mut last[f.index];
        if seen.digest == *f.digest && seen.subject == f.subject && seen.value == f.value {
            return Ok(DigestCheck::Matches);
        }
        let Some(mac) = subject_mac(conn, keys, tenant, f.subject)? else {
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

/// The HMAC state keyed with a subject's key, `None` when the key is erased or unknown; looked
/// up once per worker, tenant and subject.
fn subject_mac<'k>(
    conn: &Connection,
    keys: &'k mut SubjectMacs,
    tenant: &str,
    subject: &str,
) -> rusqlite::Result<Option<&'k Hmac<Sha256>>> {
    if !keys.contains_key(subject) {
        let key: Option<Vec<u8>> = conn
            .prepare_cached("SELECT key FROM subject_keys WHERE tenant = ?1 AND subject = ?2")?
            .query_row(params![tenant, subject], |r| r.get(0))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let mac = key
            .filter(|k| k.len() == 32)
            .and_then(|k| <Hmac<Sha256> as Mac>::new_from_slice(&k).ok());
        keys.insert(subject.to_owned(), mac);
    }
    Ok(keys.get(subject).and_then(Option::as_ref))
}
