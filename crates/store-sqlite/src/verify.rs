//! `sealtrail verify --data-dir`: the store layer's walk ([`sealtrail_store::verify`]) over the
//! log file, read-only, one connection per worker. What only this store checks of a row: a
//! row with an entry leaves the columns of rows from before entries empty.

use std::collections::HashMap;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sealtrail_model::Tenant;
use sealtrail_store::Checkpoint;
use sealtrail_store::rows::RowBody;
pub use sealtrail_store::verify::{Finding, Kind, Report, WalkOptions};
use sealtrail_store::verify::{WalkReader, WalkRow, WalkSource, walk_store};
use uuid::Uuid;

/// Why a walk could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The database could not be read.
    #[error("cannot read the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
    let source = Source {
        path,
        conn: std::sync::Mutex::new(open_for_verify(path)?),
    };
    walk_store(&source, keys, options, progress)
}

/// The store file as the walk sees it; `conn` answers the questions asked before the walk.
struct Source<'p> {
    path: &'p Path,
    conn: std::sync::Mutex<Connection>,
}

impl Source<'_> {
    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("the source lock is never poisoned")
    }
}

impl WalkSource for Source<'_> {
    type Error = WalkError;
    type Reader = Reader;

    fn tenants(&self) -> Result<Vec<Tenant>, WalkError> {
        let conn = self.conn();
        let mut names: Vec<String> = conn
            .prepare(
                "SELECT DISTINCT tenant FROM log UNION SELECT DISTINCT tenant FROM checkpoints",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(names.into_iter().map(Tenant::from_store).collect())
    }

    fn checkpoints(&self, tenant: &Tenant) -> Result<Vec<Checkpoint>, WalkError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT tenant, size, root, issued_at, key_id, signature, note FROM checkpoints \
             WHERE tenant = ?1 ORDER BY size, issued_at",
        )?;
        Ok(stmt
            .query_map([tenant.as_str()], crate::read::checkpoint_from_row)?
            .collect::<Result<_, _>>()?)
    }

    fn rows_of(&self, tenant: &Tenant) -> Result<u64, WalkError> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM log WHERE tenant = ?1",
            [tenant.as_str()],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    fn recorded_size(&self, _tenant: &Tenant) -> Result<Option<u64>, WalkError> {
        // tree_heads is rewritten with the log by whoever can write the file: it proves
        // nothing a checkpoint does not.
        Ok(None)
    }

    fn reader(&self) -> Result<Reader, WalkError> {
        Ok(Reader {
            conn: open_for_verify(self.path)?,
        })
    }
}

/// A worker's own read-only connection.
struct Reader {
    conn: Connection,
}

const ROWS: &str = "SELECT seq, id, hash, entry, personal_values, legacy_body, legacy_personal, \
     legacy_prev, gone_recorded_at FROM log WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3 \
     ORDER BY seq, id";

impl WalkReader for Reader {
    type Error = WalkError;

    fn rows(&mut self, tenant: &Tenant, lo: i64, hi: i64) -> Result<Vec<WalkRow>, WalkError> {
        let mut stmt = self.conn.prepare_cached(ROWS)?;
        let rows = stmt.query_map(params![tenant.as_str(), lo, hi], |r| {
            let blob = |i: usize| -> rusqlite::Result<Option<Vec<u8>>> {
                Ok(match r.get_ref(i)? {
                    ValueRef::Blob(b) => Some(b.to_vec()),
                    _ => None,
                })
            };
            let id = blob(1)?.and_then(|b| Uuid::from_slice(&b).ok());
            let hash = blob(2)?.and_then(|b| sealtrail_store::LeafHash::from_slice(&b));
            let legacy_body = match r.get_ref(5)? {
                ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                _ => None,
            };
            let (legacy_personal, legacy_prev) = (blob(6)?, blob(7)?);
            let gone_at = crate::seal::gone_recorded_at(r.get_ref(8)?);
            let (body, problem) = match blob(3)? {
                Some(entry) => {
                    let leftover = legacy_body.is_some()
                        || legacy_personal.is_some()
                        || legacy_prev.is_some()
                        || gone_at.is_some();
                    (
                        RowBody::Entry {
                            entry,
                            values: blob(4)?,
                        },
                        leftover.then(|| {
                            "a column that rows with an entry leave empty holds data".to_owned()
                        }),
                    )
                }
                // A removed event's place: nothing but its key, id, digest and leaf hash.
                None if legacy_body.is_none() => (
                    RowBody::Gone,
                    (legacy_personal.is_some() || legacy_prev.is_some() || blob(4)?.is_some())
                        .then(|| "a removed event's row still holds data".to_owned()),
                ),
                None => (
                    RowBody::Legacy {
                        json: legacy_body.unwrap_or_default(),
                        digests: legacy_personal,
                        prev: legacy_prev,
                    },
                    gone_at.is_some().then(|| {
                        "a column that rows with an event leave empty holds data".to_owned()
                    }),
                ),
            };
            Ok(WalkRow {
                seq: r.get(0)?,
                id,
                hash,
                body,
                problem,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn subject_key(
        &mut self,
        tenant: &Tenant,
        subject: &str,
    ) -> Result<Option<[u8; 32]>, WalkError> {
        let key: Option<Option<Vec<u8>>> = self
            .conn
            .prepare_cached("SELECT key FROM subject_keys WHERE tenant = ?1 AND subject = ?2")?
            .query_row(params![tenant.as_str(), subject], |r| r.get(0))
            .optional()?;
        Ok(key.flatten().and_then(|k| k.try_into().ok()))
    }
}
