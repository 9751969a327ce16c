//! `sealtrail verify --database-url`: the store layer's walk ([`sealtrail_store::verify`]) over
//! the database, one connection per worker. What only this store checks of a row: its `leaves`
//! row (id, partition and leaf hash) agrees with it, a row with an entry leaves the columns of
//! rows from before entries empty, and the size `tenant_logs` recorded at each commit is not
//! larger than the log (a tail cut before any checkpoint covered it).
//!
//! The walk runs on plain threads; each database call waits on the runtime that owns the
//! connections (`runtime`), which must be a multi-threaded one, or be driven meanwhile.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use ed25519_dalek::VerifyingKey;
use sealtrail_model::Tenant;
use sealtrail_store::Checkpoint;
use sealtrail_store::rows::RowBody;
pub use sealtrail_store::verify::{Report, WalkOptions};
use sealtrail_store::verify::{WalkReader, WalkRow, WalkSource, walk_store};
use time::OffsetDateTime;
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::PgError;
use crate::read::{CHECKPOINT_COLUMNS, checkpoint_from_row};

/// The number of events in the store, for a progress bar.
pub async fn count_events(client: &tokio_postgres::Client) -> Result<u64, PgError> {
    let row = client.query_one("SELECT count(*) FROM events", &[]).await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// The public keys the database lists (`signing_keys`), by key id.
pub async fn published_keys(
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, String)>, PgError> {
    Ok(client
        .query(
            "SELECT key_id, public_key FROM signing_keys ORDER BY created_at",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Walks the store with the default [`WalkOptions`]. Call it from a thread that may block (not
/// from inside the runtime); `pool` should hold a connection per worker and one more.
pub fn verify_store(
    pool: &Pool,
    runtime: Handle,
    keys: &HashMap<String, VerifyingKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, PgError> {
    verify_store_with(pool, runtime, keys, WalkOptions::default(), progress)
}

/// Walks the store, spreading the work as `options` say.
pub fn verify_store_with(
    pool: &Pool,
    runtime: Handle,
    keys: &HashMap<String, VerifyingKey>,
    options: WalkOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, PgError> {
    let source = Source { pool, runtime };
    walk_store(&source, keys, options, progress)
}

struct Source<'p> {
    pool: &'p Pool,
    runtime: Handle,
}

impl Source<'_> {
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        self.runtime.block_on(async {
            let client = self.pool.get().await?;
            Ok(client.query(sql, params).await?)
        })
    }
}

impl WalkSource for Source<'_> {
    type Error = PgError;
    type Reader = Reader;

    fn tenants(&self) -> Result<Vec<Tenant>, PgError> {
        Ok(self
            .query(
                "SELECT tenant FROM tenant_logs UNION SELECT tenant FROM checkpoints \
                 UNION SELECT DISTINCT tenant FROM leaves UNION SELECT DISTINCT tenant FROM events ORDER BY 1",
                &[],
            )?
            .into_iter()
            .map(|r| Tenant::from_store(r.get::<_, String>(0)))
            .collect())
    }

    fn checkpoints(&self, tenant: &Tenant) -> Result<Vec<Checkpoint>, PgError> {
        self.query(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant = $1 ORDER BY size, issued_at"
            ),
            &[&tenant.as_str()],
        )?
        .iter()
        .map(checkpoint_from_row)
        .collect()
    }

    fn rows_of(&self, tenant: &Tenant) -> Result<u64, PgError> {
        Ok(self
            .query(
                "SELECT count(*) FROM events WHERE tenant = $1",
                &[&tenant.as_str()],
            )?
            .first()
            .map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    fn recorded_size(&self, tenant: &Tenant) -> Result<Option<u64>, PgError> {
        Ok(self
            .query(
                "SELECT size FROM tenant_logs WHERE tenant = $1",
                &[&tenant.as_str()],
            )?
            .first()
            .map(|r| r.get::<_, i64>(0).max(0) as u64))
    }

    fn reader(&self) -> Result<Reader, PgError> {
        let client = self.runtime.block_on(self.pool.get())?;
        Ok(Reader {
            client,
            runtime: self.runtime.clone(),
        })
    }
}

/// A worker's own connection.
struct Reader {
    client: deadpool_postgres::Object,
    runtime: Handle,
}

const ROWS: &str = "SELECT e.seq, e.id, e.recorded_at, e.entry, e.personal_values, e.body, e.personal, \
     e.prev_hash, e.hash, l.id, l.hash, l.recorded_at, \
     (e.action IS NOT NULL OR e.actor_id IS NOT NULL OR e.category IS NOT NULL \
      OR e.outcome IS NOT NULL OR e.occurred_at IS NOT NULL OR e.metadata IS NOT NULL) \
     FROM events e LEFT JOIN leaves l ON l.tenant = e.tenant AND l.seq = e.seq \
     WHERE e.tenant = $1 AND e.seq BETWEEN $2 AND $3 ORDER BY e.seq, e.id, e.recorded_at";

/// How many leaves a range of a tenant's log holds.
const LEAVES_IN: &str = "SELECT count(*) FROM leaves WHERE tenant = $1 AND seq BETWEEN $2 AND $3";

/// The leaves of a range whose event is gone (removed by retention, or deleted some other way,
/// which the walk tells apart by the purge receipts).
const GONE_IN: &str = "SELECT l.seq, l.id, l.hash FROM leaves l WHERE l.tenant = $1 \
     AND l.seq BETWEEN $2 AND $3 AND NOT EXISTS (SELECT 1 FROM events e \
     WHERE e.tenant = l.tenant AND e.seq = l.seq AND e.recorded_at = l.recorded_at) ORDER BY l.seq";

impl WalkReader for Reader {
    type Error = PgError;

    fn rows(&mut self, tenant: &Tenant, lo: i64, hi: i64) -> Result<Vec<WalkRow>, PgError> {
        let rows = self.runtime.block_on(async {
            let stmt = self.client.prepare_cached(ROWS).await?;
            self.client
                .query(&stmt, &[&tenant.as_str(), &lo, &hi])
                .await
        })?;
        let mut walked: Vec<WalkRow> = rows
            .into_iter()
            .map(|r| {
                let id: Uuid = r.get(1);
                let recorded_at: OffsetDateTime = r.get(2);
                let entry: Option<Vec<u8>> = r.get(3);
                let event_hash: Option<Vec<u8>> = r.get(8);
                let leaf: (Option<Uuid>, Option<Vec<u8>>, Option<OffsetDateTime>) =
                    (r.get(9), r.get(10), r.get(11));
                let hash = leaf
                    .1
                    .as_deref()
                    .and_then(sealtrail_store::LeafHash::from_slice);
                let leaf_agrees = leaf.0 == Some(id) && leaf.2 == Some(recorded_at);
                let (body, leftover) = match entry {
                    Some(entry) => {
                        let leftover = r.get::<_, Option<String>>(5).is_some()
                            || r.get::<_, Option<Vec<u8>>>(6).is_some()
                            || r.get::<_, Option<Vec<u8>>>(7).is_some()
                            || event_hash.is_some()
                            || r.get::<_, bool>(12);
                        (
                            RowBody::Entry {
                                entry,
                                values: r.get(4),
                            },
                            leftover,
                        )
                    }
                    None => (
                        RowBody::Legacy {
                            json: r.get::<_, Option<String>>(5).unwrap_or_default(),
                            digests: r.get(6),
                            prev: r.get(7),
                        },
                        false,
                    ),
                };
                // A row from before entries also keeps its leaf hash beside its JSON.
                let hashes_agree = matches!(body, RowBody::Entry { .. }) || event_hash == leaf.1;
                let problem = if !leaf_agrees || !hashes_agree {
                    Some("the leaves row disagrees with the sealed event".to_owned())
                } else if leftover {
                    Some("a column that rows with an entry leave empty holds data".to_owned())
                } else {
                    None
                };
                WalkRow {
                    seq: r.get(0),
                    id: Some(id),
                    hash,
                    body,
                    problem,
                }
            })
            .collect();
        // The places of events removed by retention: leaves without their event. Looked for
        // only where the leaves outnumber the events found (an index-only count).
        let present: std::collections::BTreeSet<i64> = walked.iter().map(|w| w.seq).collect();
        let leaves: i64 = self
            .runtime
            .block_on(async {
                let stmt = self.client.prepare_cached(LEAVES_IN).await?;
                self.client
                    .query_one(&stmt, &[&tenant.as_str(), &lo, &hi])
                    .await
            })?
            .get(0);
        if leaves > present.len() as i64 {
            let gone = self.runtime.block_on(async {
                let stmt = self.client.prepare_cached(GONE_IN).await?;
                self.client
                    .query(&stmt, &[&tenant.as_str(), &lo, &hi])
                    .await
            })?;
            walked.extend(gone.into_iter().map(|r| {
                WalkRow {
                    seq: r.get(0),
                    id: Some(r.get(1)),
                    hash: r
                        .get::<_, Option<Vec<u8>>>(2)
                        .as_deref()
                        .and_then(sealtrail_store::LeafHash::from_slice),
                    body: RowBody::Gone,
                    problem: None,
                }
            }));
            walked.sort_by_key(|w| w.seq);
        }
        Ok(walked)
    }

    fn subject_key(&mut self, tenant: &Tenant, subject: &str) -> Result<Option<[u8; 32]>, PgError> {
        let row = self.runtime.block_on(self.client.query_opt(
            "SELECT key FROM subject_keys WHERE tenant = $1 AND subject = $2",
            &[&tenant.as_str(), &subject],
        ))?;
        Ok(row
            .and_then(|r| r.get::<_, Option<Vec<u8>>>(0))
            .and_then(|k| k.try_into().ok()))
    }
}
