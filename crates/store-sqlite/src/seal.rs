//! Perfect tree nodes read from the database, and where a tenant's log ends.

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_ledger::merkle::{Frontier, Hash, NodeSource, ProofError};
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::pipeline::LogEnd;

use crate::read::{ROW_COLUMNS, damaged, row_from};

/// Perfect nodes of one tenant's tree, read from the database: level 0 from `log.hash`,
/// higher levels from `tree_nodes`.
pub(crate) struct DbNodes<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) tenant: &'a str,
}

impl NodeSource for DbNodes<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let missing = || ProofError::MissingNode { level, index };
        let blob: Option<Vec<u8>> = if level == 0 {
            self.conn
                .prepare_cached("SELECT hash FROM log WHERE tenant = ?1 AND seq = ?2")
                .and_then(|mut s| {
                    s.query_row(params![self.tenant, index as i64 + 1], |r| r.get(0))
                        .optional()
                })
        } else {
            self.conn
                .prepare_cached(
                    "SELECT hash FROM tree_nodes WHERE tenant = ?1 AND level = ?2 AND idx = ?3",
                )
                .and_then(|mut s| {
                    s.query_row(params![self.tenant, level, index as i64], |r| r.get(0))
                        .optional()
                })
        }
        .map_err(|_| missing())?;
        blob.and_then(|b| b.try_into().ok()).ok_or_else(missing)
    }
}

/// Loads where a tenant's log ends.
pub(crate) fn load_end(conn: &Connection, tenant: &Tenant) -> rusqlite::Result<LogEnd> {
    let last = conn
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM log WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1"
        ))?
        .query_row([tenant.as_str()], row_from)
        .optional()?;
    let Some(last) = last else {
        return Ok(LogEnd::empty());
    };
    let recorded_at = last.with_source(|s| s.view.recorded_at).map_err(damaged)?;
    let nodes = DbNodes {
        conn,
        tenant: tenant.as_str(),
    };
    let frontier = Frontier::at(&nodes, last.seq).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(LogEnd {
        size: last.seq,
        last: last.hash.unwrap_or_default(),
        frontier,
        recorded_at: Some(Timestamp::from_micros(recorded_at)),
    })
}
