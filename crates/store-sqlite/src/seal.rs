//! Perfect tree nodes read from the database, and where a tenant's log ends.

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_ledger::merkle::{Frontier, Hash, NodeSource, ProofError};
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::pipeline::LogEnd;

use crate::read::{PRESENT, ROW_COLUMNS, damaged, row_from};

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

/// The hashes of the perfect nodes `wanted` (level, index) of one tenant's tree, in order,
/// `None` for one not stored. Each level's nodes are read by one range scan when they are
/// dense enough among the positions they span (a filtered export's gaps: thousands of nodes a
/// page, most of them on the lowest levels), else each by its key; level 0 lives in the wide
/// rows of `log`, so it asks for more density before it scans.
pub(crate) fn nodes_of(
    conn: &Connection,
    tenant: &str,
    wanted: &[(u32, u64)],
) -> rusqlite::Result<Vec<Option<Hash>>> {
    let mut out = vec![None; wanted.len()];
    let mut by_level: std::collections::BTreeMap<u32, Vec<(u64, usize)>> = Default::default();
    for (at, &(level, index)) in wanted.iter().enumerate() {
        by_level.entry(level).or_default().push((index, at));
    }
    for (level, mut items) in by_level {
        items.sort_unstable();
        let (lo, hi) = (items[0].0, items[items.len() - 1].0);
        let n = items.len() as u64;
        let dense = if level == 0 {
            hi - lo < 2 * n
        } else {
            hi - lo < 16 * n
        };
        if !dense {
            let nodes = DbNodes { conn, tenant };
            for (index, at) in items {
                out[at] = nodes.node(level, index).ok();
            }
            continue;
        }
        let (mut stmt, from, to) = if level == 0 {
            (
                conn.prepare_cached(
                    "SELECT seq - 1, hash FROM log WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3 \
                     ORDER BY seq",
                )?,
                lo as i64 + 1,
                hi as i64 + 1,
            )
        } else {
            (
                conn.prepare_cached(&format!(
                    "SELECT idx, hash FROM tree_nodes WHERE tenant = ?1 AND level = {level} \
                     AND idx BETWEEN ?2 AND ?3 ORDER BY idx"
                ))?,
                lo as i64,
                hi as i64,
            )
        };
        let mut rows = stmt.query(params![tenant, from, to])?;
        let mut items = items.into_iter().peekable();
        while let Some(row) = rows.next()? {
            let index = row.get::<_, i64>(0)?.max(0) as u64;
            while items.next_if(|(i, _)| *i < index).is_some() {}
            while let Some((_, at)) = items.next_if(|(i, _)| *i == index) {
                out[at] = row
                    .get::<_, Vec<u8>>(1)
                    .ok()
                    .and_then(|b| <Hash>::try_from(b).ok());
            }
        }
    }
    Ok(out)
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

/// Removes events from the log (retention), on the sanctioned path: each row keeps its place
/// (key, id, digest, leaf hash) and the `recorded_at` a retry's answer needs; its entry,
/// personal values and legacy columns are emptied. Fails, changing nothing, if one of them is
/// not in the log any more (another removal took it first): its receipt would not add up.
/// Anonymisation's job (run through the sanctioned path): writes each row's new personal
/// values (or, for a row from before entries, its new JSON), and deletes the subject keys of
/// `subjects` (rows of entry version 1 had them). A row no longer there (removed by retention
/// meanwhile) is left as it is.
pub(crate) fn rewrite_personal(
    conn: &Connection,
    tenant: &Tenant,
    rewrites: &[sealtrail_store::anonymize::RowRewrite],
    subjects: &[String],
) -> rusqlite::Result<()> {
    use sealtrail_store::anonymize::Rewrite;
    let mut values = conn.prepare_cached(
        "UPDATE log SET personal_values = ?3 WHERE tenant = ?1 AND seq = ?2 AND entry IS NOT NULL",
    )?;
    let mut legacy = conn.prepare_cached(
        "UPDATE log SET legacy_body = ?3 WHERE tenant = ?1 AND seq = ?2 AND legacy_body IS NOT NULL",
    )?;
    for r in rewrites {
        let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
        match &r.rewrite {
            Rewrite::Values(bytes) => values.execute(params![tenant.as_str(), seq, bytes])?,
            Rewrite::LegacyBody(json) => legacy.execute(params![tenant.as_str(), seq, json])?,
        };
    }
    let mut keys =
        conn.prepare_cached("DELETE FROM subject_keys WHERE tenant = ?1 AND subject = ?2")?;
    for subject in subjects {
        keys.execute(params![tenant.as_str(), subject])?;
    }
    Ok(())
}

pub(crate) fn remove_events(
    conn: &Connection,
    tenant: &Tenant,
    seqs: &[u64],
) -> rusqlite::Result<()> {
    // A row with an entry: `recorded_at` is the 8 bytes after version, tenant, seq and id
    // (docs/integrity.md §4), kept as they are, without decoding the entry.
    const EMPTY: &str = "UPDATE log SET gone_recorded_at = substr(entry, 30 + length(CAST(tenant AS BLOB)), 8), \
         entry = NULL, personal_values = NULL WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3 AND entry IS NOT NULL";
    let mut empty = conn.prepare_cached(EMPTY)?;
    let mut legacy = conn.prepare_cached(
        "SELECT seq FROM log WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3 AND legacy_body IS NOT NULL",
    )?;
    let mut read = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM log WHERE tenant = ?1 AND seq = ?2 AND {PRESENT}"
    ))?;
    let mut legacy_row = conn.prepare_cached(
        "UPDATE log SET gone_recorded_at = ?3, legacy_body = NULL, legacy_personal = NULL, \
         legacy_prev = NULL WHERE tenant = ?1 AND seq = ?2",
    )?;
    let clamp = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    let mut at = 0;
    while at < seqs.len() {
        // A run of consecutive positions: one statement empties the rows of it that hold an
        // entry; when that is not all of them, the rest must be rows from before entries.
        let mut end = at;
        while end + 1 < seqs.len() && seqs[end + 1] == seqs[end] + 1 {
            end += 1;
        }
        let (lo, hi) = (clamp(seqs[at]), clamp(seqs[end]));
        let emptied = empty.execute(rusqlite::params![tenant.as_str(), lo, hi])?;
        let mut left = (end - at + 1).saturating_sub(emptied);
        if left > 0 {
            // A row from before entries keeps its event as JSON, its `recorded_at` read from
            // it; a row in neither form (not in the log, or removed already) fails the whole
            // removal.
            let old: Vec<i64> = legacy
                .query_map(rusqlite::params![tenant.as_str(), lo, hi], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for pos in old {
                let row = read.query_row(rusqlite::params![tenant.as_str(), pos], row_from)?;
                let recorded = row.with_source(|s| s.view.recorded_at).map_err(damaged)?;
                legacy_row.execute(rusqlite::params![tenant.as_str(), pos, recorded])?;
                left -= 1;
            }
        }
        if left > 0 {
            return Err(damaged(sealtrail_store::rows::RowError {
                seq: seqs[at],
                what: format!(
                    "{left} of the events {lo}..={hi} to remove are not in the log (removed already?)"
                ),
            }));
        }
        at = end + 1;
    }
    Ok(())
}

/// The `recorded_at` kept beside a removed event: the entry's 8 bytes, or (for a row from
/// before entries) the number itself.
pub(crate) fn gone_recorded_at(value: rusqlite::types::ValueRef<'_>) -> Option<i64> {
    match value {
        rusqlite::types::ValueRef::Integer(i) => Some(i),
        rusqlite::types::ValueRef::Blob(b) => b.try_into().ok().map(i64::from_be_bytes),
        _ => None,
    }
}
