//! The verifiable NDJSON export of a tenant's log (`sealtrail export`): a header line, every
//! event as served in `seq` order with a `seal` member carrying what offline verification needs
//! (its predecessor's leaf hash and its personal digests), and the newest signed checkpoint as
//! the last line. `docs/integrity.md` §10 specifies it; `sealtrail verify --export` reads it.

use std::io::Write;

use rusqlite::{Connection, params};

use crate::read::{ROW_COLUMNS, row_from};

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
            "SELECT {ROW_COLUMNS} FROM log WHERE tenant = ?1 ORDER BY seq"
        ))
        .map_err(db)?;
    let mut rows = stmt.query(params![tenant.as_str()]).map_err(db)?;
    let mut events = 0;
    while let Some(r) = rows.next().map_err(db)? {
        let row = row_from(r).map_err(db)?;
        let body = row.render().map_err(std::io::Error::other)?;
        let (prev, personal) = row.seal().map_err(std::io::Error::other)?;
        let open = body.trim_end().strip_suffix('}').unwrap_or(&body);
        writeln!(
            out,
            "{open},\"seal\":{{\"prev\":\"{}\",\"personal\":\"{}\"}}}}",
            hex::encode(prev),
            hex::encode(personal)
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
