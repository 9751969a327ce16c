//! `sealtrail verify --data-dir`: walks the whole store file, read-only, with the ledger's
//! [`TenantWalk`]: every leaf recomputed from its row, the hash chain, every stored
//! checkpoint's signature and root, the newest checkpoint against the tail. On top of the seal
//! it checks what only the store has: the indexed columns against the sealed event, and
//! present personal values against their digests where the subject's key remains. Findings
//! come in walk order: tenants by name, events by `seq`.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, OpenFlags, params};
use sealtrail_ledger::entry::PersonalDigests;
pub use sealtrail_ledger::walk::{Finding, Kind};
use sealtrail_ledger::walk::{Item, TenantWalk};
use sealtrail_store::verify::{IndexColumns, personal_mismatch, signed_heads};
use uuid::Uuid;

pub use sealtrail_store::verify::Report;

/// Why a walk could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The database could not be read.
    #[error("cannot read the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Reads the filter columns of a row, starting at column `at`.
fn columns_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<IndexColumns> {
    Ok(IndexColumns {
        recorded_at: r.get(at)?,
        occurred_at: r.get(at + 1)?,
        action: r.get(at + 2)?,
        category: r.get(at + 3)?,
        event_type: r.get(at + 4)?,
        outcome: r.get(at + 5)?,
        actor_id: r.get(at + 6)?,
        target_type: r.get(at + 7)?,
        target_id: r.get(at + 8)?,
        organization_id: r.get(at + 9)?,
        correlation_id: r.get(at + 10)?,
        ip: r.get(at + 11)?,
    })
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

fn hash(blob: Option<Vec<u8>>) -> Option<[u8; 32]> {
    blob.and_then(|b| b.try_into().ok())
}

fn walk_tenant(
    conn: &Connection,
    tenant: &str,
    keys: &HashMap<String, VerifyingKey>,
    report: &mut Report,
    progress: &mut dyn FnMut(u64),
) -> Result<(), WalkError> {
    let stored: Vec<sealtrail_store::Checkpoint> = conn
        .prepare(
            "SELECT tenant, size, root, issued_at, key_id, signature, note FROM checkpoints \
             WHERE tenant = ?1 ORDER BY size, issued_at",
        )?
        .query_map([tenant], crate::read::checkpoint_from_row)?
        .collect::<Result<_, _>>()?;
    let signed = signed_heads(tenant, stored, keys, report);
    let mut walk = TenantWalk::new(tenant, signed);
    let mut subject_keys: HashMap<String, Option<[u8; 32]>> = HashMap::new();
    let mut key_stmt =
        conn.prepare("SELECT key FROM subject_keys WHERE tenant = ?1 AND subject = ?2")?;
    let mut stmt = conn.prepare(
        "SELECT seq, id, hash, prev_hash, personal, body, recorded_at, occurred_at, action, category, event_type, \
         outcome, actor_id, target_type, target_id, organization_id, correlation_id, ip \
         FROM events WHERE tenant = ?1 ORDER BY seq, rowid",
    )?;
    let mut rows = stmt.query(params![tenant])?;
    while let Some(r) = rows.next()? {
        report.events += 1;
        if report.events.is_multiple_of(65_536) {
            progress(report.events);
        }
        let personal: Option<Vec<u8>> = r.get(4)?;
        let body: String = r.get(5)?;
        let columns = columns_from_row(r, 6)?;
        let item = Item {
            seq: r.get::<_, i64>(0)?.max(0) as u64,
            id: Uuid::from_slice(&r.get::<_, Vec<u8>>(1)?).ok(),
            hash: hash(r.get(2)?),
            prev_hash: hash(r.get(3)?),
            digests: personal
                .as_deref()
                .and_then(PersonalDigests::from_bytes)
                .unwrap_or_default(),
            event: serde_json::from_str(&body).ok(),
        };
        let digests = item.digests.clone();
        let mut lookup_error = None;
        walk.push(item, |event| {
            if let Some(problem) = columns.mismatch(event) {
                return Some(problem);
            }
            let key_of =
                |subject: &str| subject_key(&mut subject_keys, &mut key_stmt, tenant, subject);
            match personal_mismatch(event, &digests, key_of) {
                Ok(problem) => problem,
                Err(err) => {
                    lookup_error = Some(err);
                    None
                }
            }
        });
        if let Some(err) = lookup_error {
            return Err(err.into());
        }
    }
    if let Some(uncovered) = walk.uncovered() {
        report.uncovered.push((tenant.to_owned(), uncovered));
    }
    report.findings.extend(walk.finish());
    Ok(())
}

/// A subject's key, `None` when erased or unknown; cached per walk.
fn subject_key(
    cache: &mut HashMap<String, Option<[u8; 32]>>,
    stmt: &mut rusqlite::Statement<'_>,
    tenant: &str,
    subject: &str,
) -> rusqlite::Result<Option<[u8; 32]>> {
    if let Some(k) = cache.get(subject) {
        return Ok(*k);
    }
    let key = match stmt.query_row(params![tenant, subject], |r| r.get::<_, Option<Vec<u8>>>(0)) {
        Ok(blob) => hash(blob),
        Err(rusqlite::Error::QueryReturnedNoRows) => None,
        Err(e) => return Err(e),
    };
    cache.insert(subject.to_owned(), key);
    Ok(key)
}
