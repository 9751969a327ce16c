//! The SQLite side of the write path ([`sealtrail_store::pipeline`]): one connection, owned by
//! one dedicated thread, the only one that ever writes to the database.
//!
//! The backend keeps every tenant's log end it has seen in memory between
//! transactions; what a transaction learns is kept only once it commits, and everything is
//! forgotten after a sanctioned job, which may change anything. Another process may write too
//! (`sealtrail keys` beside a running server): each transaction, once it holds the write lock,
//! compares SQLite's `data_version` with the one after its own last commit, and forgets what it
//! remembered when someone else committed in between.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::pipeline::{KnownId, Loaded, LogBackend, LogEnd, SealedBatch, Want};

use crate::read::{ROW_COLUMNS, damaged, row_at};
use crate::seal;

/// SQLite's default for its automatic checkpoint, which [`SqliteLog`] runs itself.
const AUTOCHECKPOINT_FRAMES: i64 = 1_000;

/// A change to stored events, run by the sanctioned path with the immutability triggers lifted.
pub type SanctionedJob = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

/// The writing connection and what it remembers.
pub(crate) struct SqliteLog {
    conn: Connection,
    wal: crate::schema::WalBound,
    /// The frames in the write-ahead log as of the last commit (its hook sets it).
    wal_frames: std::sync::Arc<std::sync::atomic::AtomicI64>,
    in_transaction: bool,
    /// Log ends as of the last commit, for tenants seen so far.
    ends: HashMap<Tenant, LogEnd>,
    /// The log ends the open transaction wrote, kept once it commits.
    pending_ends: Vec<(Tenant, LogEnd)>,
    /// `PRAGMA data_version` as of this connection's last transaction: it changes only when
    /// another connection commits.
    data_version: Option<i64>,
}

impl SqliteLog {
    pub(crate) fn new(mut conn: Connection) -> rusqlite::Result<Self> {
        // SQLite's automatic checkpoint runs inside the commit, before the writer can answer
        // it (a retention's commit of a million emptied rows waited 0.6 s on it); this hook
        // replaces it and only notes the log's size: the same passive checkpoint runs once
        // the group's answers are sent ([`LogBackend::after_replies`]).
        let wal_frames = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let noted = wal_frames.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames: i32| {
            noted.store(i64::from(frames), std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(Self {
            wal: crate::schema::WalBound::new(&conn)?,
            wal_frames,
            conn,
            in_transaction: false,
            ends: HashMap::new(),
            pending_ends: Vec::new(),
            data_version: None,
        })
    }

    /// The connection, for writes that are not appends (keys, checkpoints), run in queue order.
    pub(crate) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn forget(&mut self) {
        self.ends.clear();
        self.pending_ends.clear();
    }
}

#[async_trait]
impl LogBackend for SqliteLog {
    type Job = SanctionedJob;
    type Error = rusqlite::Error;

    // The writer runs on this backend's own thread: sealing there takes nothing from the runtime.
    const SEAL_OFF_THREAD: bool = false;

    async fn begin(&mut self) -> rusqlite::Result<()> {
        // IMMEDIATE takes the write lock up front, so a busy database is waited for
        // (busy_timeout) instead of failing half-way through the group.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.in_transaction = true;
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version != Some(version) {
            // Another connection committed since: log ends may have moved on.
            self.ends.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    async fn load(&mut self, want: &Want) -> rusqlite::Result<Loaded> {
        let mut loaded = Loaded::default();
        for tenant in &want.tenants {
            let end = match self.ends.get(tenant) {
                Some(end) => end.clone(),
                None => {
                    let end = seal::load_end(&self.conn, tenant)?;
                    self.ends.insert(tenant.clone(), end.clone());
                    end
                }
            };
            loaded.ends.insert(tenant.clone(), end);
        }
        if !want.ids.is_empty() {
            let mut lookup = self.conn.prepare_cached(&format!(
                "SELECT tenant, digest, gone_recorded_at, {ROW_COLUMNS} FROM log WHERE id = ?1"
            ))?;
            for id in &want.ids {
                let found = lookup
                    .query_row([id.as_bytes().as_slice()], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            seal::gone_recorded_at(r.get_ref(2)?),
                            row_at(r, 3)?,
                        ))
                    })
                    .optional()?;
                if let Some((tenant, digest, gone_at, row)) = found {
                    // A removed event is still known: its retry is a duplicate.
                    let recorded = match gone_at {
                        Some(at) => at,
                        None => row.with_source(|s| s.view.recorded_at).map_err(damaged)?,
                    };
                    loaded.known.insert(
                        *id,
                        KnownId {
                            tenant: Tenant::from_store(tenant),
                            digest: digest.try_into().unwrap_or([0; 32]),
                            seq: row.seq,
                            recorded_at: Timestamp::from_micros(recorded),
                            hash: row.hash.unwrap_or_default(),
                        },
                    );
                }
            }
        }
        Ok(loaded)
    }

    async fn write(&mut self, batch: &SealedBatch) -> rusqlite::Result<()> {
        let conn = &self.conn;
        let mut insert = conn.prepare_cached(
            "INSERT INTO log (tenant, seq, id, digest, hash, entry, personal_values) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for e in &batch.events {
            insert.execute(params![
                e.tenant.as_str(),
                e.seq as i64,
                e.id.as_bytes().as_slice(),
                e.digest.as_slice(),
                e.hash.as_bytes().as_slice(),
                e.entry,
                e.personal_values,
            ])?;
        }
        let mut node = conn.prepare_cached(
            "INSERT INTO tree_nodes (tenant, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for n in &batch.nodes {
            node.execute(params![
                n.tenant.as_str(),
                n.level,
                n.index as i64,
                n.hash.as_slice()
            ])?;
        }
        // Keep each tenant's tree head current for the checkpointer.
        let mut head = conn.prepare_cached(
            "INSERT INTO tree_heads (tenant, size, root) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, root = excluded.root",
        )?;
        for (tenant, end) in &batch.ends {
            head.execute(params![
                tenant.as_str(),
                end.size as i64,
                end.frontier.root().as_slice()
            ])?;
        }
        self.pending_ends.clone_from(&batch.ends);
        Ok(())
    }

    async fn commit(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.in_transaction = false;
        self.ends.extend(self.pending_ends.drain(..));
        Ok(())
    }

    async fn after_replies(&mut self) {
        // What SQLite's automatic checkpoint does after a commit of a log past 1 000 frames:
        // copy what no reader still needs back into the database, without waiting for one.
        let frames = self
            .wal_frames
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        if frames >= AUTOCHECKPOINT_FRAMES
            && let Err(err) = self
                .conn
                .query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %err, "write-ahead log checkpoint failed");
        }
        self.wal
            .after_commit(&self.conn, std::time::Duration::from_millis(50));
    }

    async fn rollback(&mut self) {
        if self.in_transaction {
            if let Err(err) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %err, "rollback failed");
            }
            self.in_transaction = false;
        }
        // Rollbacks are rare (failures): start again from what is committed.
        self.forget();
    }

    async fn sanctioned(
        &mut self,
        _tenant: &Tenant,
        reason: &str,
        job: SanctionedJob,
    ) -> rusqlite::Result<()> {
        // The job may change anything: load log ends afresh from here on.
        self.forget();
        self.conn
            .execute("INSERT INTO sanction (id, reason) VALUES (1, ?1)", [reason])?;
        job(&self.conn)?;
        self.conn.execute("DELETE FROM sanction", [])?;
        Ok(())
    }
}
