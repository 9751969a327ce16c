//! The seal as the writer keeps it: per tenant the last `seq`, the last leaf hash and the
//! Merkle frontier; subject keys for personal digests; and perfect tree nodes read from and
//! written to the database.

use std::collections::HashMap;

use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_ledger::merkle::{Frontier, Hash, NodeSource, ProofError};

/// Where one tenant's log ends.
#[derive(Debug, Clone)]
pub(crate) struct TenantLog {
    pub(crate) seq: u64,
    pub(crate) prev: Hash,
    pub(crate) frontier: Frontier,
}

/// Perfect nodes of one tenant's tree, read from the database: level 0 from `events.hash`,
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
                .prepare_cached("SELECT hash FROM events WHERE tenant = ?1 AND seq = ?2")
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
pub(crate) fn load_tenant(conn: &Connection, tenant: &str) -> rusqlite::Result<TenantLog> {
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM events WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((seq, hash)) = last else {
        return Ok(TenantLog {
            seq: 0,
            prev: sealtrail_ledger::entry::GENESIS,
            frontier: Frontier::new(),
        });
    };
    let frontier = Frontier::at(&DbNodes { conn, tenant }, seq as u64).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(TenantLog {
        seq: seq as u64,
        prev: hash.try_into().unwrap_or([0; 32]),
        frontier,
    })
}

/// A subject's key in a tenant, created on first use (and anew for a subject whose key was
/// erased: its old digests stay unlinkable).
pub(crate) fn subject_key(
    conn: &Connection,
    cache: &mut HashMap<(String, String), [u8; 32]>,
    tenant: &str,
    subject: &str,
) -> rusqlite::Result<[u8; 32]> {
    if let Some(key) = cache.get(&(tenant.to_owned(), subject.to_owned())) {
        return Ok(*key);
    }
    let stored: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT key FROM subject_keys WHERE tenant = ?1 AND subject = ?2")?
        .query_row(params![tenant, subject], |r| r.get(0))
        .optional()?;
    let key = match stored.flatten().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(key) => key,
        None => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            conn.prepare_cached(
                "INSERT INTO subject_keys (tenant, subject, key) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant, subject) DO UPDATE SET key = excluded.key",
            )?
            .execute(params![tenant, subject, key.as_slice()])?;
            key
        }
    };
    cache.insert((tenant.to_owned(), subject.to_owned()), key);
    Ok(key)
}
