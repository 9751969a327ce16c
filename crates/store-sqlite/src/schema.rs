//! The SQLite schema, its migrations and the connection settings.

use rusqlite::Connection;

/// The migrations, in order (files under `migrations/`); `PRAGMA user_version` records how many
/// have run. A migration file never changes once released: add a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_events_links_keys.sql"),
    include_str!("../migrations/0002_seal.sql"),
    include_str!("../migrations/0003_entries.sql"),
    include_str!("../migrations/0004_log.sql"),
    include_str!("../migrations/0005_settings.sql"),
    include_str!("../migrations/0006_removed.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Settings for the writer connection: WAL, and a commit is only done once synced.
pub(crate) fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // What is deleted or overwritten is zeroed where it lay, so an erased value (anonymisation,
    // retention) leaves no copy in free space. The log is appended to, so this costs nothing
    // on the ingest path.
    conn.pragma_update(None, "secure_delete", true)?;
    // 256 MiB of page cache keeps the indexes' hot pages in memory while ingesting.
    conn.pragma_update(None, "cache_size", -262_144)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Syncs the write-ahead log of `conn`'s main database to disk, as a commit under synchronous
/// FULL does: what it holds (committed or, after `cache_flush`, written for the open
/// transaction) is then on disk. Nothing for a database without a file or a log yet.
pub(crate) fn sync_wal(conn: &Connection) -> rusqlite::Result<()> {
    let Some(db) = conn.path().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    match std::fs::File::open(format!("{db}-wal")).and_then(|f| f.sync_data()) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(rusqlite::Error::ToSqlConversionFailure(Box::new(err)))
        }
        _ => Ok(()),
    }
}

/// How large a write-ahead log may grow before its writer makes it start over.
const WAL_LIMIT: u64 = 64 << 20;

/// Keeps a write-ahead log bounded while readers come and go.
///
/// SQLite's automatic checkpoints are passive: they copy back what no reader still needs, but
/// the log only starts over once a checkpoint has copied *everything* back, which never
/// happens while some reader is always on a snapshot a few commits old. Under ingest with
/// queries and the indexer reading beside it, the log grew by gigabytes a minute (measured:
/// 4.3 GB in 80 s) and slowed every read that searched it. After a commit, at most once a
/// second, the writer looks at the log's size and, past [`WAL_LIMIT`], runs a `RESTART`
/// checkpoint: it waits (briefly) for the readers of older snapshots, copies the rest back and
/// starts the log over; `journal_size_limit` then trims the file.
pub(crate) struct WalBound {
    wal: Option<std::path::PathBuf>,
    limit: u64,
    every: std::time::Duration,
    next_look: std::time::Instant,
}

impl WalBound {
    /// The bound of `conn`'s main database (none for a database without a file).
    pub(crate) fn new(conn: &Connection) -> rusqlite::Result<Self> {
        Self::with(conn, WAL_LIMIT, std::time::Duration::from_secs(1))
    }

    /// A bound of `limit` bytes, looked at every `every`.
    fn with(conn: &Connection, limit: u64, every: std::time::Duration) -> rusqlite::Result<Self> {
        conn.pragma_update(Some("main"), "journal_size_limit", limit as i64)?;
        let wal = conn
            .path()
            .filter(|p| !p.is_empty())
            .map(|p| std::path::PathBuf::from(format!("{p}-wal")));
        Ok(Self {
            wal,
            limit,
            every,
            next_look: std::time::Instant::now(),
        })
    }

    /// Called after each commit on `conn`, which must be the database's only writer.
    pub(crate) fn after_commit(&mut self, conn: &Connection, busy: std::time::Duration) {
        let now = std::time::Instant::now();
        if now < self.next_look {
            return;
        }
        self.next_look = now + self.every;
        let Some(len) = self
            .wal
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
        else {
            return;
        };
        if len <= self.limit {
            return;
        }
        match restart(conn, busy) {
            Ok((blocked, frames, copied)) => tracing::debug!(
                wal_bytes = len,
                blocked,
                frames,
                copied,
                "write-ahead log restarted"
            ),
            Err(err) => tracing::warn!(error = %err, "write-ahead log checkpoint failed"),
        }
    }
}

/// The `RESTART` checkpoint of `conn`'s own database (`main`), waiting `busy` at most: a
/// reader holding an old snapshot for long (an export, a verify walk) must not stall the
/// writer. Only `main`: the indexer's connection has the log attached read-only, and an
/// unqualified checkpoint would also take the log's write lock (stalling its writer) and then
/// fail writing the log through a read-only file (`disk I/O error`, seen under ingest).
fn restart(conn: &Connection, busy: std::time::Duration) -> rusqlite::Result<(i64, i64, i64)> {
    conn.busy_timeout(busy)?;
    let r = conn.query_row("PRAGMA main.wal_checkpoint(RESTART)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    });
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    r
}

/// Settings for reader connections, with the derived data attached as `ix`; `cache_mib` is
/// each file's page cache.
pub(crate) fn configure_reader(conn: &Connection, cache_mib: u32) -> rusqlite::Result<()> {
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // A page cache of each file's own: `cache_size` without a schema sets `main`'s only, and
    // the derived data's 2 MB default held less than one statistics request reads (its
    // rollups' keys, ~7 MB a month at 1M events), so every request read them all again
    // (`mmap_size` applies to both, but pages still in the write-ahead log are read from it).
    let cache_kib = -i64::from(cache_mib.max(1)) * 1024;
    conn.pragma_update(None, "cache_size", cache_kib)?;
    conn.pragma_update(Some("ix"), "cache_size", cache_kib)?;
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Prepares a writing connection exactly as the store does: settings, then migrations. Used by
/// the store itself and by benchmarks that need the same schema without the store around it.
pub fn prepare_writer(conn: &mut Connection) -> Result<(), MigrateError> {
    // 16 KiB pages hold more ~1 KB events and index entries per page than the 4 KiB default:
    // measured 25 % faster ingest. Only takes effect while the file is still empty.
    conn.pragma_update(None, "page_size", 16_384)?;
    configure_writer(conn)?;
    migrate(conn)
}

/// Runs the migrations that have not run yet, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(MigrateError::TooNew {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file was written by a newer sealtrail.
    #[error("the database has schema version {found}, newer than this build's {known}")]
    TooNew {
        /// Version in the file.
        found: usize,
        /// Newest version this build knows.
        known: usize,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 16 KiB pages for a test database, so that commits grow its write-ahead log quickly.
    fn wal_database(dir: &std::path::Path) -> (std::path::PathBuf, Connection) {
        let path = dir.join("w.db");
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch("CREATE TABLE t (v BLOB)")
            .expect("table");
        (path, conn)
    }

    fn commit_one(conn: &mut Connection) {
        let tx = conn.transaction().expect("begin");
        tx.execute("INSERT INTO t VALUES (zeroblob(16384))", [])
            .expect("insert");
        tx.commit().expect("commit");
    }

    fn wal_len(path: &std::path::Path) -> u64 {
        std::fs::metadata(format!("{}-wal", path.display()))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Starts a read transaction on `conn` and reads, so that it holds a snapshot.
    fn hold_snapshot(conn: &Connection) {
        conn.execute_batch("BEGIN").expect("begin read");
        let _: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("read");
    }

    #[test]
    fn the_restart_leaves_a_database_attached_read_only_alone() {
        // The indexer's connection: its own database, and the log attached read-only while
        // another connection writes it and holds its write lock.
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, mut own) = wal_database(dir.path());
        let log_path = dir.path().join("log.db");
        let mut log = Connection::open(&log_path).expect("open log");
        log.pragma_update(None, "journal_mode", "WAL").expect("wal");
        log.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no checkpoints");
        log.execute_batch("CREATE TABLE t (v BLOB)").expect("table");
        for _ in 0..4 {
            commit_one(&mut log);
            commit_one(&mut own);
        }
        own.execute(
            "ATTACH DATABASE ?1 AS lg",
            [format!("file:{}?mode=ro", log_path.display())],
        )
        .expect("attach");
        let _: i64 = own
            .query_row("SELECT count(*) FROM lg.t", [], |r| r.get(0))
            .expect("read the log");
        log.execute_batch("BEGIN IMMEDIATE")
            .expect("the log's writer");
        let (blocked, frames, copied) =
            restart(&own, std::time::Duration::from_millis(200)).expect("restart");
        assert_eq!(blocked, 0);
        assert!(
            frames > 0 && copied == frames,
            "its own log copied back: {frames}, {copied}"
        );
        log.execute_batch("COMMIT")
            .expect("the log's writer goes on");
        assert!(
            wal_len(&log_path) > 0,
            "the log's own write-ahead log untouched"
        );
    }

    #[test]
    fn a_reader_always_holding_a_snapshot_keeps_the_log_from_starting_over() {
        // What the bound is for, made deterministic: two readers relay each other, the next one
        // taking its snapshot before the previous lets go, so some reader always holds a
        // snapshot older than the last commit. Automatic checkpoints then never copy the whole
        // log back and the log never starts over: 400 commits of 16 KiB leave all of it there.
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut conn) = wal_database(dir.path());
        let readers = [
            Connection::open(&path).expect("reader"),
            Connection::open(&path).expect("reader"),
        ];
        hold_snapshot(&readers[0]);
        for i in 0..400 {
            commit_one(&mut conn);
            let (next, previous) = (&readers[(i + 1) % 2], &readers[i % 2]);
            hold_snapshot(next);
            previous.execute_batch("COMMIT").expect("end read");
        }
        let len = wal_len(&path);
        assert!(len > 6 << 20, "the log started over: {len} bytes");
    }

    #[test]
    fn the_write_ahead_log_stays_bounded_while_readers_come_and_go() {
        // The same relay of readers, on threads of their own as queries are: a snapshot is
        // held at every moment, yet each reader lets go soon. The bound's restart waits for
        // them to move past the log and starts it over, so 400 commits of 16 KiB (6.5 MB)
        // leave a log near the 1 MiB limit.
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut conn) = wal_database(dir.path());
        let mut bound = WalBound::with(&conn, 1 << 20, std::time::Duration::ZERO).expect("bound");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relay = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let readers = [
                    Connection::open(&path).expect("reader"),
                    Connection::open(&path).expect("reader"),
                ];
                hold_snapshot(&readers[0]);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_micros(300));
                    hold_snapshot(&readers[(i + 1) % 2]);
                    readers[i % 2].execute_batch("COMMIT").expect("end read");
                    i += 1;
                }
                readers[i % 2].execute_batch("COMMIT").expect("end read");
            })
        };
        for _ in 0..400 {
            commit_one(&mut conn);
            bound.after_commit(&conn, std::time::Duration::from_secs(5));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        relay.join().expect("reader thread");
        let len = wal_len(&path);
        assert!(len <= 3 << 20, "bounded log: {len} bytes");
    }
}
