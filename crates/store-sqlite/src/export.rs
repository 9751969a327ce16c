//! The verifiable NDJSON export of a tenant's log (`sealtrail export`): a header line, every
//! event as served in `seq` order with a `seal` member carrying what offline verification needs
//! (its predecessor's leaf hash and its personal digests), and the newest signed checkpoint as
//! the last line. `docs/integrity.md` §10 specifies it; `sealtrail verify --export` reads it.

use std::io::Write;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};
use sealtrail_ledger::view::EntryView;

use crate::read::{BODY_COLUMNS, body_at};

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Events written.
    pub events: u64,
    /// The size of the checkpoint written last, if the tenant has one.
    pub checkpoint_size: Option<u64>,
}

/// Writes tenant `tenant`'s whole log, streaming at constant memory.
pub fn export_tenant(
    conn: &Connection,
    tenant: &sealtrail_model::Tenant,
    out: &mut dyn Write,
) -> std::io::Result<ExportSummary> {
    let db = |e: rusqlite::Error| std::io::Error::other(e);
    writeln!(
        out,
        "{}",
        serde_json::json!({"sealtrail_export": 1, "tenant": tenant.as_str(), "entry_version": 1})
    )?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT prev_hash, personal, {BODY_COLUMNS} FROM events WHERE tenant = ?1 ORDER BY seq"
        ))
        .map_err(db)?;
    let mut rows = stmt.query(params![tenant.as_str()]).map_err(db)?;
    let mut events = 0;
    while let Some(r) = rows.next().map_err(db)? {
        let prev: Option<Vec<u8>> = r.get(0).map_err(db)?;
        let body = body_at(r, 2).map_err(db)?;
        // Rows with an entry carry their digests inside it; older rows beside it.
        let personal: Option<Vec<u8>> = match r.get_ref(3).map_err(db)? {
            ValueRef::Blob(entry) => EntryView::parse(entry).ok().map(|v| v.digests.to_bytes()),
            _ => r.get(1).map_err(db)?,
        };
        let open = body.trim_end().strip_suffix('}').unwrap_or(&body);
        writeln!(
            out,
            "{open},\"seal\":{{\"prev\":\"{}\",\"personal\":\"{}\"}}}}",
            hex::encode(prev.unwrap_or_default()),
            hex::encode(personal.unwrap_or_default())
        )?;
        events += 1;
    }
    let checkpoint = crate::read::latest_checkpoint(conn, tenant).map_err(db)?;
    if let Some(cp) = &checkpoint {
        let line = serde_json::json!({"checkpoint": {
            "tenant": cp.tenant.as_str(), "size": cp.size, "root_hash": cp.root.to_hex(), "issued_at": cp.issued_at,
            "key_id": cp.key_id, "signature": cp.signature, "note": cp.note,
        }});
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(ExportSummary {
        events,
        checkpoint_size: checkpoint.map(|c| c.size),
    })
}
