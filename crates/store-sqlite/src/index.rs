//! The derived data of the embedded store, in a file of its own beside the log
//! (`sealtrail-index.db`): posting bitmaps, time blocks and each tenant's watermark, written by
//! the indexer thread ([`sealtrail_store::derived`]).
//!
//! A file of its own, because SQLite lets one connection at a time write a file: the log's
//! writer never waits for the indexer, nor the indexer for the writer. Readers attach it, so
//! one read transaction sees a consistent pair (the watermark first, then the log, which holds
//! at least every event the watermark covers). The file is derived: it is written without a
//! sync on every commit (a crash may lose the last batches, watermark and data together), and
//! a file of another version, or a lost one, is simply built again from the log.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sealtrail_model::Tenant;
use sealtrail_store::derived::{IndexBackend, Lag, TimeBlock, Update};
use sealtrail_store::fields::{DERIVED_VERSION, Term};
use sealtrail_store::rollup::{FOLDED, Span, StoredRollup};
use sealtrail_store::rows::LogRow;

use crate::read::{PRESENT, ROW_COLUMNS, row_from};

/// The file name of the derived data inside the data directory.
pub const INDEX_FILE: &str = "sealtrail-index.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watermarks (
    tenant  TEXT    PRIMARY KEY,
    indexed INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS postings (
    tenant TEXT    NOT NULL,
    chunk  INTEGER NOT NULL,
    term   BLOB    NOT NULL,
    bits   BLOB    NOT NULL,
    PRIMARY KEY (tenant, chunk, term)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS times (
    tenant TEXT    NOT NULL,
    block  INTEGER NOT NULL,
    lo     INTEGER NOT NULL,
    hi     INTEGER NOT NULL,
    vals   BLOB    NOT NULL,
    PRIMARY KEY (tenant, block)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    tenant   TEXT    NOT NULL,
    chunk    INTEGER NOT NULL,
    span     INTEGER NOT NULL,
    period   INTEGER NOT NULL,
    total    INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    keys     BLOB    NOT NULL,
    PRIMARY KEY (tenant, chunk, span, period)
) WITHOUT ROWID;
";

/// Empties every table of derived data.
const CLEAR: &str = "BEGIN; DELETE FROM postings; DELETE FROM times; DELETE FROM rollups; \
                     DELETE FROM watermarks; COMMIT;";

/// A path as a SQLite URI filename (`file:` with every byte that is not plainly safe
/// percent-encoded), so that `?mode=ro` can follow it.
fn uri(path: &Path) -> String {
    let mut out = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Creates the index file when missing and brings it to this build's derived version (an
/// index of another version is emptied, to be built again).
pub(crate) fn prepare(index_path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(index_path)?;
    // Small pages: the indexer rewrites small rows at scattered places of the newest chunks.
    conn.pragma_update(None, "page_size", 4096)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(SCHEMA)?;
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'derived_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if version != Some(i64::from(DERIVED_VERSION)) {
        if version.is_some() {
            tracing::info!(
                found = version,
                wanted = DERIVED_VERSION,
                "derived data of another version: rebuilding it from the log"
            );
        }
        conn.execute_batch(CLEAR)?;
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('derived_version', ?1)",
            [i64::from(DERIVED_VERSION)],
        )?;
    }
    Ok(())
}

/// The index file's automatic checkpoint, in pages of write-ahead log.
const AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// The indexer's connection: the index file, with the log attached read-only as `lg`; and a
/// read-only connection of its own to the log, for a pass's events.
pub(crate) struct SqliteIndexer {
    conn: Connection,
    /// Reads a pass's events, each read its own short transaction: read through `lg`, they
    /// kept a snapshot of the log for the whole pass (half a second and more under ingest),
    /// and the log writer's write-ahead log could seldom start over meanwhile (it grew to
    /// 214 MiB in `bench derived`, against ~50 MiB for a build without full-text).
    log: Connection,
    wal: crate::schema::WalBound,
    open: bool,
}

impl SqliteIndexer {
    /// Checkpoints the index file's write-ahead log and truncates it, so that no page as it
    /// was before the last commits stays in it (anonymisation).
    pub(crate) fn truncate_wal(&mut self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA main.wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }

    /// Opens the indexer's connection.
    pub(crate) fn open(log_path: &Path, index_path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            index_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Derived data: a crash may lose the last commits, never leave half of one.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Postings are rewritten all the time: each old copy (holding its term, which may be a
        // person's name or id) is zeroed, so anonymisation leaves none behind in free space.
        conn.pragma_update(None, "secure_delete", true)?;
        // Fewer, larger checkpoints: a page rewritten by many batches is copied back once.
        conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute(
            "ATTACH DATABASE ?1 AS lg",
            [format!("{}?mode=ro", uri(log_path))],
        )?;
        let log = Connection::open_with_flags(
            format!("{}?mode=ro", uri(log_path)),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        log.busy_timeout(std::time::Duration::from_secs(10))?;
        // The log is read in long runs: through a memory map, not a copy per page.
        log.pragma_update(None, "mmap_size", 1i64 << 30)?;
        Ok(Self {
            wal: crate::schema::WalBound::new(&conn)?,
            conn,
            log,
            open: false,
        })
    }
}

impl IndexBackend for SqliteIndexer {
    type Error = rusqlite::Error;

    fn lagging(&mut self) -> rusqlite::Result<Vec<Lag>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT h.tenant, coalesce(w.indexed, 0), h.size FROM lg.tree_heads h \
             LEFT JOIN watermarks w ON w.tenant = h.tenant ORDER BY h.tenant",
        )?;
        stmt.query_map([], |r| {
            Ok(Lag {
                tenant: Tenant::from_store(r.get::<_, String>(0)?),
                indexed: r.get::<_, i64>(1)? as u64,
                size: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect()
    }

    fn begin(&mut self, tenant: &Tenant) -> rusqlite::Result<Option<u64>> {
        self.conn.execute_batch("BEGIN")?;
        self.open = true;
        let indexed: Option<i64> = self
            .conn
            .prepare_cached("SELECT indexed FROM watermarks WHERE tenant = ?1")?
            .query_row([tenant.as_str()], |r| r.get(0))
            .optional()?;
        Ok(Some(indexed.unwrap_or(0) as u64))
    }

    fn revision(&mut self, _tenant: &Tenant) -> rusqlite::Result<Option<u64>> {
        // Changes whenever another connection commits to the index file (another process's
        // anonymisation or indexer: several processes may open one store), never for this
        // connection's own commits, which are this process's indexer's.
        let version: i64 = self
            .conn
            .pragma_query_value(Some("main"), "data_version", |row| row.get(0))?;
        Ok(Some(version as u64))
    }

    fn log_rows(&mut self, tenant: &Tenant, lo: u64, hi: u64) -> rusqlite::Result<Vec<LogRow>> {
        // On the log's own connection, outside the pass's transaction: the log's rows up to a
        // watermark the pass read are committed, and nothing but retention (which holds the
        // indexer while it takes them out) and anonymisation (which derives its rows again
        // after) changes them, so a snapshot of its own reads them as the pass's would.
        let mut stmt = self.log.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM log WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3 AND {PRESENT} \
             ORDER BY seq"
        ))?;
        stmt.query_map(
            params![
                tenant.as_str(),
                lo.min(i64::MAX as u64) as i64,
                hi.min(i64::MAX as u64) as i64
            ],
            row_from,
        )?
        .collect()
    }

    fn chunk_postings(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
    ) -> rusqlite::Result<Vec<(Term, Vec<u8>)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT term, bits FROM postings WHERE tenant = ?1 AND chunk = ?2")?;
        stmt.query_map(params![tenant.as_str(), chunk as i64], |r| {
            Ok((Term(r.get::<_, Vec<u8>>(0)?.into_boxed_slice()), r.get(1)?))
        })?
        .collect()
    }

    fn tagged_postings(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
        tags: &[u8],
    ) -> rusqlite::Result<Vec<(Term, Vec<u8>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT term, bits FROM postings WHERE tenant = ?1 AND chunk = ?2 \
             AND term >= ?3 AND term < ?4",
        )?;
        let mut out = Vec::new();
        for &tag in tags {
            let rows = stmt.query_map(
                params![tenant.as_str(), chunk as i64, [tag], [tag + 1]],
                |r| Ok((Term(r.get::<_, Vec<u8>>(0)?.into_boxed_slice()), r.get(1)?)),
            )?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn posting(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
        term: &Term,
    ) -> rusqlite::Result<Option<Vec<u8>>> {
        self.conn
            .prepare_cached(
                "SELECT bits FROM postings WHERE tenant = ?1 AND chunk = ?2 AND term = ?3",
            )?
            .query_row(params![tenant.as_str(), chunk as i64, &*term.0], |r| {
                r.get(0)
            })
            .optional()
    }

    fn time_block(&mut self, tenant: &Tenant, block: u64) -> rusqlite::Result<Option<TimeBlock>> {
        self.conn
            .prepare_cached("SELECT lo, hi, vals FROM times WHERE tenant = ?1 AND block = ?2")?
            .query_row(params![tenant.as_str(), block as i64], |r| {
                Ok(TimeBlock::decode(
                    r.get(0)?,
                    r.get(1)?,
                    r.get_ref(2)?.as_blob()?,
                ))
            })
            .optional()
    }

    fn chunk_rollups(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
    ) -> rusqlite::Result<Vec<(Span, i64, StoredRollup)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT span, period, total, failures, keys FROM rollups WHERE tenant = ?1 AND chunk = ?2",
        )?;
        let rows = stmt.query_map(params![tenant.as_str(), chunk as i64], |r| {
            Ok((
                r.get::<_, i16>(0)?,
                r.get::<_, i64>(1)?,
                stored_rollup(r, 2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (code, period, stored) = row?;
            if let Some(span) = Span::from_code(code) {
                out.push((span, period, stored));
            }
        }
        Ok(out)
    }

    fn folded_rollup(
        &mut self,
        tenant: &Tenant,
        span: Span,
        period: i64,
    ) -> rusqlite::Result<Option<StoredRollup>> {
        self.conn
            .prepare_cached(
                "SELECT total, failures, keys FROM rollups \
                 WHERE tenant = ?1 AND chunk = ?2 AND span = ?3 AND period = ?4",
            )?
            .query_row(params![tenant.as_str(), FOLDED, span.code(), period], |r| {
                stored_rollup(r, 0)
            })
            .optional()
    }

    fn write(&mut self, tenant: &Tenant, update: &Update) -> rusqlite::Result<()> {
        let mut cleared = self
            .conn
            .prepare_cached("DELETE FROM postings WHERE tenant = ?1 AND chunk = ?2")?;
        for chunk in &update.cleared {
            cleared.execute(params![tenant.as_str(), *chunk as i64])?;
        }
        // The added postings are replaced too, should one be there after all (each list is in
        // key order: the B-tree is written left to right, twice).
        for postings in [&update.postings, &update.added] {
            write_postings(&self.conn, tenant, postings)?;
        }
        let mut removed = self.conn.prepare_cached(
            "DELETE FROM postings WHERE tenant = ?1 AND chunk = ?2 AND term = ?3",
        )?;
        for (chunk, term) in &update.removed {
            removed.execute(params![tenant.as_str(), *chunk as i64, &*term.0])?;
        }
        let mut time = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO times (tenant, block, lo, hi, vals) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (block, t) in &update.times {
            time.execute(params![
                tenant.as_str(),
                *block as i64,
                t.lo,
                t.hi,
                t.encode_values()
            ])?;
        }
        let mut rollup = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO rollups (tenant, chunk, span, period, total, failures, keys) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (span, period, chunk, r) in &update.rollups {
            rollup.execute(params![
                tenant.as_str(),
                chunk,
                span.code(),
                period,
                r.total as i64,
                r.failures as i64,
                r.keys
            ])?;
        }
        let mut folded = self.conn.prepare_cached(
            "DELETE FROM rollups WHERE tenant = ?1 AND chunk = ?2 AND span = ?3 AND period = ?4",
        )?;
        for (span, period, chunk) in &update.folded {
            folded.execute(params![tenant.as_str(), chunk, span.code(), period])?;
        }
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO watermarks (tenant, indexed) VALUES (?1, ?2)")?
            .execute(params![tenant.as_str(), update.watermark as i64])?;
        Ok(())
    }

    fn commit(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        self.wal
            .after_commit(&self.conn, std::time::Duration::from_millis(200));
        Ok(())
    }

    fn sync(&mut self) -> rusqlite::Result<()> {
        // The index file's commits are synced at checkpoints only (synchronous NORMAL): a
        // full checkpoint makes the last one durable.
        self.conn
            .query_row("PRAGMA main.wal_checkpoint(FULL)", [], |_| Ok(()))
    }

    fn commit_synced(&mut self) -> rusqlite::Result<()> {
        // Made durable by syncing the write-ahead log the commit lies in, as a commit under
        // synchronous FULL is, rather than by copying that log back into the file: a
        // retention's commit holds hundreds of megabytes of it (0.3 s to copy and sync). The
        // copy is left to the indexer's next commit, off the caller's path.
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let committed = self.conn.execute_batch("COMMIT");
        self.conn
            .pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
        committed?;
        self.open = false;
        crate::schema::sync_wal(&self.conn)
    }

    fn rollback(&mut self) {
        if self.open {
            if let Err(err) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %err, "index rollback failed");
            }
            self.open = false;
        }
    }

    fn reset(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch(CLEAR)
    }
}

/// Postings per statement: a statement of many rows pays a statement's own cost (binding the
/// tenant, opening and closing its cursor, ending it) once for them all; in a profile of
/// full-speed ingest that cost was a quarter of writing one row at a time.
const POSTINGS_PER_STATEMENT: usize = 64;

/// `INSERT OR REPLACE` of [`POSTINGS_PER_STATEMENT`] postings: the tenant is `?1`, then each
/// posting's chunk, term and bitmap.
static MANY_POSTINGS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut sql =
        String::from("INSERT OR REPLACE INTO postings (tenant, chunk, term, bits) VALUES ");
    for i in 0..POSTINGS_PER_STATEMENT {
        let at = 2 + 3 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(?1, ?{}, ?{}, ?{})", at, at + 1, at + 2));
    }
    sql
});

/// Writes `postings`, each replacing what its key held, in their order.
fn write_postings(
    conn: &Connection,
    tenant: &Tenant,
    postings: &[sealtrail_store::derived::Posting],
) -> rusqlite::Result<()> {
    let groups = postings.chunks_exact(POSTINGS_PER_STATEMENT);
    let rest = groups.remainder();
    if postings.len() >= POSTINGS_PER_STATEMENT {
        let mut many = conn.prepare_cached(&MANY_POSTINGS)?;
        let mut chunks = [0i64; POSTINGS_PER_STATEMENT];
        let name = tenant.as_str();
        for group in groups {
            for (at, posting) in chunks.iter_mut().zip(group) {
                *at = posting.0 as i64;
            }
            let mut values: Vec<&dyn rusqlite::ToSql> =
                Vec::with_capacity(1 + 3 * POSTINGS_PER_STATEMENT);
            values.push(&name);
            for (chunk, (_, term, bits)) in chunks.iter().zip(group) {
                values.push(chunk);
                values.push(&term.0);
                values.push(bits);
            }
            many.execute(values.as_slice())?;
        }
    }
    let mut one = conn.prepare_cached(
        "INSERT OR REPLACE INTO postings (tenant, chunk, term, bits) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (chunk, term, bits) in rest {
        one.execute(params![tenant.as_str(), *chunk as i64, &*term.0, bits])?;
    }
    Ok(())
}

/// A rollup's counts from columns `at..at + 3` (total, failures, keys).
pub(crate) fn stored_rollup(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<StoredRollup> {
    Ok(StoredRollup {
        total: r.get::<_, i64>(at)?.max(0) as u64,
        failures: r.get::<_, i64>(at + 1)?.max(0) as u64,
        keys: r.get(at + 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_holds_no_snapshot_of_the_log_once_its_events_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log_path, index_path) = (dir.path().join("log.db"), dir.path().join(INDEX_FILE));
        let mut log = Connection::open(&log_path).expect("open the log");
        crate::schema::prepare_writer(&mut log).expect("log schema");
        prepare(&index_path).expect("index schema");
        // Frames in the log's write-ahead log that no checkpoint has copied back yet, so that
        // a reader's snapshot would be one of them.
        log.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no automatic checkpoint");
        log.execute_batch("CREATE TABLE scratch (x); INSERT INTO scratch VALUES (1);")
            .expect("write");
        let mut indexer = SqliteIndexer::open(&log_path, &index_path).expect("indexer");
        let tenant = Tenant::from_store("t".to_owned());
        assert_eq!(indexer.begin(&tenant).expect("begin"), Some(0));
        assert!(indexer.log_rows(&tenant, 1, 100).expect("read").is_empty());
        log.execute("INSERT INTO scratch VALUES (2)", [])
            .expect("write more");
        // With the pass still open, the log's writer starts its write-ahead log over at once.
        log.busy_timeout(std::time::Duration::ZERO)
            .expect("no wait");
        let busy: i64 = log
            .query_row("PRAGMA main.wal_checkpoint(RESTART)", [], |r| r.get(0))
            .expect("checkpoint");
        assert_eq!(busy, 0, "the open pass keeps no reader on the log");
        indexer.rollback();
    }

    #[test]
    fn paths_become_uri_filenames() {
        assert_eq!(uri(Path::new("/a b/c%d?.db")), "file:/a%20b/c%25d%3F.db");
    }
}
