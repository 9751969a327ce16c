//! Reads: a pool of read-only connections, the snapshot the planner reads through
//! ([`sealtrail_store::plan`]), and the queries behind keys, checkpoints and proofs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::ops::RangeInclusive;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::derived::{Posting, TimeBlock};
use sealtrail_store::fields::Term;
use sealtrail_store::plan::ReadSnapshot;
use sealtrail_store::rollup::{Span, StoredRollup};
use sealtrail_store::rows::{LogRow, RowBody};
use sealtrail_store::{
    ApiKey, LeafHash, Root, StoreError, StoreResult, TenantScope, scopes_from_text,
};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::{db_error, open_reader};

/// A fixed set of read connections; a query takes one on a blocking thread.
pub(crate) struct Pool {
    path: PathBuf,
    index_path: PathBuf,
    /// Each connection's page cache per file, in MiB.
    cache_mib: u32,
    conns: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn open(
        path: &Path,
        index_path: &Path,
        size: usize,
        cache_mib: u32,
    ) -> rusqlite::Result<Self> {
        let conns = (0..size)
            .map(|_| open_reader(path, index_path, cache_mib))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self {
            path: path.to_owned(),
            index_path: index_path.to_owned(),
            cache_mib,
            conns: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `f` on a free connection off the async runtime.
    pub(crate) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conns = self.conns.clone();
        let (path, index_path, cache_mib) =
            (self.path.clone(), self.index_path.clone(), self.cache_mib);
        tokio::task::spawn_blocking(move || {
            let pooled = conns.lock().expect("pool lock is never poisoned").pop();
            // A connection lost to a panicking query is replaced.
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&path, &index_path, cache_mib).map_err(db_error)?,
            };
            let result = f(&conn);
            conns
                .lock()
                .expect("pool lock is never poisoned")
                .push(conn);
            drop(permit);
            result.map_err(db_error)
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?
    }
}

impl Pool {
    /// Runs `f` on a free connection on the calling thread, for point reads by key of a few
    /// rows of a small, hot table (API keys on every request): a hop to the blocking pool
    /// costs more than such a read. Falls back to [`Pool::run`] when no connection is free.
    pub(crate) async fn run_inline<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return self.run(f).await;
        };
        let pooled = self
            .conns
            .lock()
            .expect("pool lock is never poisoned")
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path, &self.index_path, self.cache_mib).map_err(db_error)?,
        };
        let result = f(&conn);
        self.conns
            .lock()
            .expect("pool lock is never poisoned")
            .push(conn);
        drop(permit);
        result.map_err(db_error)
    }
}

/// The columns of `log` that [`row_from`] reads, in its order.
/// The rows that hold an event: a row of an event removed by retention keeps only its place.
pub(crate) const PRESENT: &str = "(entry IS NOT NULL OR legacy_body IS NOT NULL)";

pub(crate) const ROW_COLUMNS: &str =
    "seq, hash, entry, personal_values, legacy_body, legacy_personal, legacy_prev";

/// A stored event from the [`ROW_COLUMNS`].
pub(crate) fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogRow> {
    row_at(r, 0)
}

/// A stored event from the [`ROW_COLUMNS`] starting at column `at`.
pub(crate) fn row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<LogRow> {
    let seq = r.get::<_, i64>(at)?.max(0) as u64;
    let hash = match r.get_ref(at + 1)? {
        ValueRef::Blob(b) => LeafHash::from_slice(b),
        _ => None,
    };
    let body = match r.get_ref(at + 2)? {
        ValueRef::Blob(entry) => RowBody::Entry {
            entry: entry.to_vec(),
            values: r.get(at + 3)?,
        },
        _ => RowBody::Legacy {
            json: r.get::<_, Option<String>>(at + 4)?.unwrap_or_default(),
            digests: r.get(at + 5)?,
            prev: r.get(at + 6)?,
        },
    };
    Ok(LogRow { seq, hash, body })
}

/// A row that cannot be decoded, as a database error.
pub(crate) fn damaged(err: sealtrail_store::rows::RowError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(err))
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// One read: a read transaction on a reader connection, which sees the log and, attached as
/// `ix`, the derived data (read first, so the log holds everything it covers).
pub(crate) struct Snapshot<'c> {
    conn: &'c Connection,
}

impl<'c> Snapshot<'c> {
    /// Starts the read transaction; it ends when the snapshot is dropped.
    pub(crate) fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN")?;
        Ok(Self { conn })
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.conn.execute_batch("COMMIT") {
            tracing::warn!(error = %err, "ending a read transaction failed");
        }
    }
}

impl ReadSnapshot for Snapshot<'_> {
    type Error = rusqlite::Error;

    fn bounds(&mut self, tenant: &Tenant) -> rusqlite::Result<(u64, u64)> {
        let indexed: Option<i64> = self
            .conn
            .prepare_cached("SELECT indexed FROM ix.watermarks WHERE tenant = ?1")?
            .query_row([tenant.as_str()], |r| r.get(0))
            .optional()?;
        let size: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(seq) FROM log WHERE tenant = ?1")?
            .query_row([tenant.as_str()], |r| r.get(0))?;
        let size = size.unwrap_or(0).max(0) as u64;
        Ok(((indexed.unwrap_or(0).max(0) as u64).min(size), size))
    }

    fn postings(
        &mut self,
        tenant: &Tenant,
        chunks: RangeInclusive<u64>,
        terms: &[Term],
    ) -> rusqlite::Result<Vec<Posting>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT bits FROM ix.postings WHERE tenant = ?1 AND chunk = ?2 AND term = ?3",
        )?;
        let mut out = Vec::new();
        for chunk in chunks {
            for term in terms {
                let bits: Option<Vec<u8>> = stmt
                    .query_row(params![tenant.as_str(), clamp(chunk), &*term.0], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(bits) = bits {
                    out.push((chunk, term.clone(), bits));
                }
            }
        }
        Ok(out)
    }

    fn time_blocks(
        &mut self,
        tenant: &Tenant,
        blocks: RangeInclusive<u64>,
        values: bool,
    ) -> rusqlite::Result<Vec<(u64, TimeBlock)>> {
        let sql = if values {
            "SELECT block, lo, hi, vals FROM ix.times WHERE tenant = ?1 AND block BETWEEN ?2 AND ?3"
        } else {
            "SELECT block, lo, hi FROM ix.times WHERE tenant = ?1 AND block BETWEEN ?2 AND ?3"
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        stmt.query_map(
            params![
                tenant.as_str(),
                clamp(*blocks.start()),
                clamp(*blocks.end())
            ],
            |r| {
                let block = TimeBlock::decode(
                    r.get(1)?,
                    r.get(2)?,
                    if values {
                        r.get_ref(3)?.as_blob()?
                    } else {
                        &[]
                    },
                );
                Ok((r.get::<_, i64>(0)? as u64, block))
            },
        )?
        .collect()
    }

    fn rollups(
        &mut self,
        tenant: &Tenant,
        span: Span,
        periods: RangeInclusive<i64>,
        keys: bool,
    ) -> rusqlite::Result<Vec<(i64, StoredRollup)>> {
        let sql = if keys {
            "SELECT period, total, failures, keys FROM ix.rollups \
             WHERE tenant = ?1 AND chunk = -1 AND span = ?2 AND period BETWEEN ?3 AND ?4"
        } else {
            "SELECT period, total, failures, x'' FROM ix.rollups \
             WHERE tenant = ?1 AND chunk = -1 AND span = ?2 AND period BETWEEN ?3 AND ?4"
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        stmt.query_map(
            params![tenant.as_str(), span.code(), periods.start(), periods.end()],
            |r| Ok((r.get::<_, i64>(0)?, crate::index::stored_rollup(r, 1)?)),
        )?
        .collect()
    }

    fn open_minutes(
        &mut self,
        tenant: &Tenant,
        minutes: RangeInclusive<i64>,
        keys: bool,
    ) -> rusqlite::Result<Vec<(i64, StoredRollup)>> {
        let sql = if keys {
            "SELECT period, total, failures, keys FROM ix.rollups \
             WHERE tenant = ?1 AND chunk >= 0 AND span = ?2 AND period BETWEEN ?3 AND ?4"
        } else {
            "SELECT period, total, failures, x'' FROM ix.rollups \
             WHERE tenant = ?1 AND chunk >= 0 AND span = ?2 AND period BETWEEN ?3 AND ?4"
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        stmt.query_map(
            params![
                tenant.as_str(),
                Span::Minute.code(),
                minutes.start(),
                minutes.end()
            ],
            |r| Ok((r.get::<_, i64>(0)?, crate::index::stored_rollup(r, 1)?)),
        )?
        .collect()
    }

    fn rows(&mut self, tenant: &Tenant, seqs: &[u64]) -> rusqlite::Result<Vec<LogRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM log WHERE tenant = ?1 AND seq = ?2 AND {PRESENT}"
        ))?;
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(row) = stmt
                .query_row(params![tenant.as_str(), clamp(seq)], row_from)
                .optional()?
            {
                out.push(row);
            }
        }
        Ok(out)
    }

    fn scan(
        &mut self,
        tenant: &Tenant,
        range: RangeInclusive<u64>,
        desc: bool,
        limit: usize,
    ) -> rusqlite::Result<Vec<LogRow>> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM log WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3 AND {PRESENT} \
             ORDER BY seq {} LIMIT ?4",
            if desc { "DESC" } else { "ASC" }
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        stmt.query_map(
            params![
                tenant.as_str(),
                clamp(*range.start()),
                clamp(*range.end()),
                limit as i64
            ],
            row_from,
        )?
        .collect()
    }

    fn by_id(&mut self, tenant: &Tenant, id: Uuid) -> rusqlite::Result<Option<LogRow>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM log WHERE id = ?1 AND tenant = ?2 AND {PRESENT}"
            ))?
            .query_row(params![id.as_bytes().as_slice(), tenant.as_str()], row_from)
            .optional()
    }
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        tenant: TenantScope::from_store(&row.get::<_, String>(1)?),
        scopes: scopes_from_text(&row.get::<_, String>(2)?),
        name: row.get(3)?,
        created_at: Timestamp::from_micros(row.get(4)?),
        revoked_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_micros),
    })
}

const KEY_COLUMNS: &str = "id, tenant, scopes, name, created_at, revoked_at";

pub(crate) fn key_by(
    conn: &Connection,
    condition: &str,
    arg: impl ToSql,
) -> rusqlite::Result<Option<ApiKey>> {
    conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE {condition}"
    ))?
    .query_row([arg], key_from_row)
    .optional()
}

/// A tenant's setting.
pub(crate) fn setting(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> rusqlite::Result<Option<sealtrail_store::Setting>> {
    conn.prepare_cached(
        "SELECT value, version FROM tenant_settings WHERE tenant = ?1 AND name = ?2",
    )?
    .query_row([tenant, name], |r| {
        let text: String = r.get(0)?;
        let value = serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(sealtrail_store::Setting {
            value,
            version: r.get(1)?,
        })
    })
    .optional()
}

pub(crate) fn list_keys(conn: &Connection, tenant: Option<&str>) -> rusqlite::Result<Vec<ApiKey>> {
    let sql = match tenant {
        Some(_) => {
            format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = ?1 ORDER BY created_at, id")
        }
        None => format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    match tenant {
        Some(t) => stmt.query_map([t], key_from_row)?.collect(),
        None => stmt.query_map([], key_from_row)?.collect(),
    }
}

pub(crate) fn tree_heads(conn: &Connection) -> rusqlite::Result<Vec<sealtrail_store::TreeHead>> {
    let mut stmt =
        conn.prepare_cached("SELECT tenant, size, root FROM tree_heads ORDER BY tenant")?;
    stmt.query_map([], |r| {
        Ok(sealtrail_store::TreeHead {
            tenant: Tenant::from_store(r.get::<_, String>(0)?),
            size: r.get::<_, i64>(1)? as u64,
            root: Root(hash_column(r, 2)?),
        })
    })?
    .collect()
}

fn hash_column(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let blob: Vec<u8> = row.get(i)?;
    blob.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "a hash is 32 bytes".into(),
        )
    })
}

pub(crate) fn tree_size(conn: &Connection, tenant: &Tenant) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("SELECT size FROM tree_heads WHERE tenant = ?1")?
        .query_row([tenant.as_str()], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

pub(crate) fn latest_checkpoint(
    conn: &Connection,
    tenant: &Tenant,
) -> rusqlite::Result<Option<sealtrail_store::Checkpoint>> {
    conn.prepare_cached(
        "SELECT tenant, size, root, issued_at, key_id, signature, note FROM checkpoints \
         WHERE tenant = ?1 ORDER BY issued_at DESC, size DESC LIMIT 1",
    )?
    .query_row([tenant.as_str()], checkpoint_from_row)
    .optional()
}

pub(crate) fn checkpoint_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<sealtrail_store::Checkpoint> {
    Ok(sealtrail_store::Checkpoint {
        tenant: Tenant::from_store(r.get::<_, String>(0)?),
        size: r.get::<_, i64>(1)? as u64,
        root: Root(hash_column(r, 2)?),
        issued_at: Timestamp::from_micros(r.get(3)?),
        key_id: r.get(4)?,
        signature: r.get(5)?,
        note: r.get(6)?,
    })
}

pub(crate) fn leaf_of(
    conn: &Connection,
    tenant: &Tenant,
    id: Uuid,
) -> rusqlite::Result<Option<(u64, LeafHash)>> {
    conn.prepare_cached("SELECT seq, hash FROM log WHERE id = ?1 AND tenant = ?2")?
        .query_row(
            rusqlite::params![id.as_bytes().as_slice(), tenant.as_str()],
            |r| Ok((r.get::<_, i64>(0)? as u64, LeafHash(hash_column(r, 1)?))),
        )
        .optional()
}

fn proof_error(e: sealtrail_ledger::merkle::ProofError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
}

pub(crate) fn inclusion_proof(
    conn: &Connection,
    tenant: &Tenant,
    index: u64,
    size: u64,
) -> rusqlite::Result<Option<Vec<[u8; 32]>>> {
    if index >= size || size > tree_size(conn, tenant)? {
        return Ok(None);
    }
    let nodes = crate::seal::DbNodes {
        conn,
        tenant: tenant.as_str(),
    };
    sealtrail_ledger::merkle::inclusion_proof(&nodes, index, size)
        .map(Some)
        .map_err(proof_error)
}

pub(crate) fn consistency_proof(
    conn: &Connection,
    tenant: &Tenant,
    from: u64,
    to: u64,
) -> rusqlite::Result<Option<Vec<[u8; 32]>>> {
    if from == 0 || from > to || to > tree_size(conn, tenant)? {
        return Ok(None);
    }
    let nodes = crate::seal::DbNodes {
        conn,
        tenant: tenant.as_str(),
    };
    sealtrail_ledger::merkle::consistency_proof(&nodes, from, to)
        .map(Some)
        .map_err(proof_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cache_size` of `conn`'s `schema`, in KiB (SQLite gives a size in KiB as negative).
    fn cache_kib(conn: &Connection, schema: &str) -> i64 {
        -conn
            .pragma_query_value(Some(schema), "cache_size", |r| r.get::<_, i64>(0))
            .expect("cache_size")
    }

    /// The page caches of `pool`'s connections, the log's and the derived data's, in KiB.
    async fn caches(pool: &Pool) -> (i64, i64) {
        pool.run(|c| Ok((cache_kib(c, "main"), cache_kib(c, "ix"))))
            .await
            .expect("read")
    }

    #[tokio::test]
    async fn queries_and_passes_over_many_rows_have_their_own_page_caches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::SqliteStore::open(&crate::SqliteConfig::new(dir.path())).expect("open");
        let (queries, passes) = (
            i64::from(crate::READER_CACHE_MIB) * 1024,
            i64::from(crate::BULK_CACHE_MIB) * 1024,
        );
        assert_eq!(caches(&store.readers).await, (queries, queries));
        assert_eq!(caches(&store.bulk).await, (passes, passes));
        sealtrail_store::Store::shutdown(&store).await;
    }
}
