//! Reads: the snapshot the planner reads through ([`sealtrail_store::plan`]), and the queries
//! behind keys, checkpoints and proofs.

use std::ops::RangeInclusive;

use futures::TryStreamExt;
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::derived::{Posting, TimeBlock};
use sealtrail_store::fields::Term;
use sealtrail_store::plan::ReadSnapshot;
use sealtrail_store::rollup::{Span, StoredRollup};
use sealtrail_store::rows::{LogRow, RowBody};
use sealtrail_store::{ApiKey, Checkpoint, Root, TenantScope, TreeHead, scopes_from_text};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::PgError;

/// The columns [`row_from`] reads, from `leaves l` joined with `events e`.
pub(crate) const ROW_COLUMNS: &str =
    "l.seq, l.hash, e.entry, e.personal_values, e.body, e.personal, e.prev_hash";

/// `leaves` joined with `events`: the leaf row names the event's partition (`recorded_at`).
pub(crate) const ROW_FROM: &str = "leaves l JOIN events e \
     ON e.tenant = l.tenant AND e.seq = l.seq AND e.recorded_at = l.recorded_at";

/// Planner settings for statements that meet a list of keys (an `unnest` of arrays) with a
/// large table by its key: nested loops only, until [`ANY_JOINS`] or the transaction's end.
/// The planner's estimates for a table that grew fast since it was last analysed can be a
/// hundred times short (a tenant's million events taken for five thousand); it then sorts or
/// hashes the whole table to meet ten thousand keys — seconds where index lookups take tens
/// of milliseconds.
pub(crate) const KEYED_JOINS: &str = "SELECT set_config(name, 'off', true) FROM pg_settings \
     WHERE name IN ('enable_hashjoin', 'enable_mergejoin')";

/// Gives the planner back every join (the session's settings) after [`KEYED_JOINS`].
pub(crate) const ANY_JOINS: &str = "SELECT set_config(name, reset_val, true) FROM pg_settings \
     WHERE name IN ('enable_hashjoin', 'enable_mergejoin')";

/// Most positions read by `= ANY` in one statement; more are looked up one by one.
const KEYED_READ: usize = 64;

/// A stored event from the [`ROW_COLUMNS`].
pub(crate) fn row_from(r: &Row) -> LogRow {
    let body = match r.get::<_, Option<Vec<u8>>>(2) {
        Some(entry) => RowBody::Entry {
            entry,
            values: r.get(3),
        },
        None => RowBody::Legacy {
            json: r.get::<_, Option<String>>(4).unwrap_or_default(),
            digests: r.get(5),
            prev: r.get(6),
        },
    };
    LogRow {
        seq: r.get::<_, i64>(0).max(0) as u64,
        hash: r
            .get::<_, Option<Vec<u8>>>(1)
            .and_then(|h| sealtrail_store::LeafHash::from_slice(&h)),
        body,
    }
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// One read on a blocking thread: a repeatable-read, read-only transaction on one connection,
/// each statement waited for on the runtime that owns the connection. The watermark and the
/// log are read in one snapshot, so the log holds everything the derived data covers.
pub(crate) struct Snapshot<'c> {
    client: &'c deadpool_postgres::Client,
    runtime: tokio::runtime::Handle,
    open: bool,
}

impl<'c> Snapshot<'c> {
    /// Starts the read transaction; it ends when the snapshot is dropped.
    pub(crate) fn begin(
        client: &'c deadpool_postgres::Client,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, PgError> {
        runtime.block_on(
            client.batch_execute("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        )?;
        Ok(Self {
            client,
            runtime,
            open: true,
        })
    }

    /// Runs a statement and collects its rows. The statement is bound and sent from this
    /// thread; its rows are drained by a task on the runtime, beside the connection's task
    /// that receives them: a large answer arrives in many socket reads, and a reader parked
    /// on this blocking thread would be woken across threads for each (an export of 300 000
    /// events cost 120 000 context switches that way).
    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, PgError> {
        let stream = self.runtime.block_on(async {
            let stmt = self.client.prepare_cached(sql).await?;
            self.client
                .query_raw(&stmt, params.iter().map(|p| *p as &dyn ToSql))
                .await
        })?;
        let drained = self
            .runtime
            .spawn(async move { stream.try_collect::<Vec<Row>>().await });
        Ok(self
            .runtime
            .block_on(drained)
            .map_err(|e| PgError::Read(e.to_string()))??)
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        if self.open
            && let Err(err) = self.runtime.block_on(self.client.batch_execute("COMMIT"))
        {
            tracing::debug!(error = %err, "ending a read transaction failed");
        }
    }
}

impl ReadSnapshot for Snapshot<'_> {
    type Error = PgError;

    fn bounds(&mut self, tenant: &Tenant) -> Result<(u64, u64), PgError> {
        let rows = self.query(
            "SELECT coalesce((SELECT indexed FROM watermarks WHERE tenant = $1), 0), \
             coalesce((SELECT size FROM tenant_logs WHERE tenant = $1), 0)",
            &[&tenant.as_str()],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| PgError::Damaged("no bounds".into()))?;
        let size = row.get::<_, i64>(1).max(0) as u64;
        Ok(((row.get::<_, i64>(0).max(0) as u64).min(size), size))
    }

    fn postings(
        &mut self,
        tenant: &Tenant,
        chunks: RangeInclusive<u64>,
        terms: &[Term],
    ) -> Result<Vec<Posting>, PgError> {
        let chunks: Vec<i64> = chunks.map(clamp).collect();
        let terms_param: Vec<&[u8]> = terms.iter().map(|t| &*t.0).collect();
        // Both arrays as index conditions: the B-tree probes every (chunk, term) pair. A join
        // against unnest() instead gets a generic plan, once the statement is cached, that
        // reads every posting of each chunk and hashes the terms (17 ms for one chunk).
        let rows = self.query(
            "SELECT p.chunk, p.term, p.bits FROM postings p \
             WHERE p.tenant = $1 AND p.chunk = ANY($2) AND p.term = ANY($3)",
            &[&tenant.as_str(), &chunks, &terms_param],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0) as u64,
                    Term(r.get::<_, Vec<u8>>(1).into_boxed_slice()),
                    r.get(2),
                )
            })
            .collect())
    }

    fn time_blocks(
        &mut self,
        tenant: &Tenant,
        blocks: RangeInclusive<u64>,
        values: bool,
    ) -> Result<Vec<(u64, TimeBlock)>, PgError> {
        let sql = if values {
            "SELECT block, lo, hi, vals FROM event_times WHERE tenant = $1 AND block BETWEEN $2 AND $3"
        } else {
            "SELECT block, lo, hi FROM event_times WHERE tenant = $1 AND block BETWEEN $2 AND $3"
        };
        let rows = self.query(
            sql,
            &[
                &tenant.as_str(),
                &clamp(*blocks.start()),
                &clamp(*blocks.end()),
            ],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let vals: Vec<u8> = if values { r.get(3) } else { Vec::new() };
                (
                    r.get::<_, i64>(0) as u64,
                    TimeBlock::decode(r.get(1), r.get(2), &vals),
                )
            })
            .collect())
    }

    fn rollups(
        &mut self,
        tenant: &Tenant,
        span: Span,
        periods: RangeInclusive<i64>,
        keys: bool,
    ) -> Result<Vec<(i64, StoredRollup)>, PgError> {
        let sql = if keys {
            "SELECT period, total, failures, keys FROM rollups \
             WHERE tenant = $1 AND chunk = -1 AND span = $2 AND period BETWEEN $3 AND $4"
        } else {
            "SELECT period, total, failures, '\\x'::bytea FROM rollups \
             WHERE tenant = $1 AND chunk = -1 AND span = $2 AND period BETWEEN $3 AND $4"
        };
        let rows = self.query(
            sql,
            &[
                &tenant.as_str(),
                &span.code(),
                periods.start(),
                periods.end(),
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), crate::index::stored_rollup(r, 1)))
            .collect())
    }

    fn open_minutes(
        &mut self,
        tenant: &Tenant,
        minutes: RangeInclusive<i64>,
        keys: bool,
    ) -> Result<Vec<(i64, StoredRollup)>, PgError> {
        let sql = if keys {
            "SELECT period, total, failures, keys FROM rollups \
             WHERE tenant = $1 AND chunk >= 0 AND span = $2 AND period BETWEEN $3 AND $4"
        } else {
            "SELECT period, total, failures, '\\x'::bytea FROM rollups \
             WHERE tenant = $1 AND chunk >= 0 AND span = $2 AND period BETWEEN $3 AND $4"
        };
        let rows = self.query(
            sql,
            &[
                &tenant.as_str(),
                &Span::Minute.code(),
                minutes.start(),
                minutes.end(),
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), crate::index::stored_rollup(r, 1)))
            .collect())
    }

    fn rows(&mut self, tenant: &Tenant, seqs: &[u64]) -> Result<Vec<LogRow>, PgError> {
        let seqs: Vec<i64> = seqs.iter().copied().map(clamp).collect();
        if seqs.len() <= KEYED_READ {
            let rows = self.query(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM {ROW_FROM} WHERE l.tenant = $1 AND l.seq = ANY($2)"
                ),
                &[&tenant.as_str(), &seqs],
            )?;
            return Ok(rows.iter().map(row_from).collect());
        }
        // Many positions (anonymisation's, a large export page): each looked up by its key,
        // whatever the planner believes of the tenant's size. A subquery with a LIMIT is never
        // merged into the outer query, so it runs once per position, by the primary keys.
        let rows = self.query(
            &format!(
                "SELECT r.* FROM unnest($2::bigint[]) AS s(seq) CROSS JOIN LATERAL \
                 (SELECT {ROW_COLUMNS} FROM {ROW_FROM} \
                  WHERE l.tenant = $1 AND l.seq = s.seq LIMIT 1) AS r"
            ),
            &[&tenant.as_str(), &seqs],
        )?;
        Ok(rows.iter().map(row_from).collect())
    }

    fn scan(
        &mut self,
        tenant: &Tenant,
        range: RangeInclusive<u64>,
        desc: bool,
        limit: usize,
    ) -> Result<Vec<LogRow>, PgError> {
        // The events by their own key, then their leaf hashes over the positions they span:
        // two range scans. Joining each event to its leaf instead looks up every event by key
        // (the leaf names its partition): three times the database's work for an export page.
        let sql = format!(
            "SELECT seq, NULL::bytea, entry, personal_values, body, personal, prev_hash \
             FROM events WHERE tenant = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq {} LIMIT $4",
            if desc { "DESC" } else { "ASC" }
        );
        let events = self.query(
            &sql,
            &[
                &tenant.as_str(),
                &clamp(*range.start()),
                &clamp(*range.end()),
                &(limit as i64),
            ],
        )?;
        let mut rows: Vec<LogRow> = events.iter().map(row_from).collect();
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(rows);
        };
        let (lo, hi) = (first.seq.min(last.seq), first.seq.max(last.seq));
        let leaves = self.query(
            "SELECT seq, hash FROM leaves WHERE tenant = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            &[&tenant.as_str(), &clamp(lo), &clamp(hi)],
        )?;
        let mut hashes = leaves
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0).max(0) as u64,
                    r.get::<_, Option<&[u8]>>(1)
                        .and_then(sealtrail_store::LeafHash::from_slice),
                )
            })
            .peekable();
        // Both walked once in ascending order (retention keeps the leaves of the events it
        // removes, so leaves come between them).
        let mut attach = |row: &mut LogRow| {
            while hashes.next_if(|(seq, _)| *seq < row.seq).is_some() {}
            row.hash = hashes
                .next_if(|(seq, _)| *seq == row.seq)
                .and_then(|(_, hash)| hash);
        };
        if desc {
            rows.iter_mut().rev().for_each(&mut attach);
        } else {
            rows.iter_mut().for_each(&mut attach);
        }
        Ok(rows)
    }

    fn by_id(&mut self, tenant: &Tenant, id: Uuid) -> Result<Option<LogRow>, PgError> {
        let rows = self.query(
            &format!("SELECT {ROW_COLUMNS} FROM {ROW_FROM} WHERE l.id = $1 AND l.tenant = $2"),
            &[&id, &tenant.as_str()],
        )?;
        Ok(rows.first().map(row_from))
    }
}

pub(crate) const KEY_COLUMNS: &str = "id, tenant, scopes, name, created_at, revoked_at";

pub(crate) fn key_from_row(row: &Row) -> ApiKey {
    ApiKey {
        id: row.get(0),
        tenant: TenantScope::from_store(row.get(1)),
        scopes: scopes_from_text(row.get(2)),
        name: row.get(3),
        created_at: Timestamp::from_datetime(row.get(4)),
        revoked_at: row
            .get::<_, Option<OffsetDateTime>>(5)
            .map(Timestamp::from_datetime),
    }
}

fn hash_of(row: &Row, i: usize) -> Result<[u8; 32], PgError> {
    <[u8; 32]>::try_from(row.get::<_, Vec<u8>>(i))
        .map_err(|_| PgError::Damaged("a stored hash is not 32 bytes".into()))
}

pub(crate) async fn tree_heads(client: &impl GenericClient) -> Result<Vec<TreeHead>, PgError> {
    client
        .query(
            "SELECT tenant, size, root FROM tenant_logs WHERE size > 0 ORDER BY tenant",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(TreeHead {
                tenant: Tenant::from_store(r.get::<_, String>(0)),
                size: r.get::<_, i64>(1) as u64,
                root: Root(hash_of(r, 2)?),
            })
        })
        .collect()
}

pub(crate) async fn tree_size(client: &impl GenericClient, tenant: &str) -> Result<u64, PgError> {
    Ok(client
        .query_opt("SELECT size FROM tenant_logs WHERE tenant = $1", &[&tenant])
        .await?
        .map_or(0, |r| r.get::<_, i64>(0) as u64))
}

pub(crate) const CHECKPOINT_COLUMNS: &str =
    "tenant, size, root, issued_at, key_id, signature, note";

pub(crate) fn checkpoint_from_row(r: &Row) -> Result<Checkpoint, PgError> {
    Ok(Checkpoint {
        tenant: Tenant::from_store(r.get::<_, String>(0)),
        size: r.get::<_, i64>(1) as u64,
        root: Root(hash_of(r, 2)?),
        issued_at: Timestamp::from_datetime(r.get(3)),
        key_id: r.get(4),
        signature: r.get(5),
        note: r.get(6),
    })
}

pub(crate) async fn latest_checkpoint(
    client: &impl GenericClient,
    tenant: &str,
) -> Result<Option<Checkpoint>, PgError> {
    client
        .query_opt(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant = $1 \
                 ORDER BY issued_at DESC, size DESC LIMIT 1"
            ),
            &[&tenant],
        )
        .await?
        .map(|r| checkpoint_from_row(&r))
        .transpose()
}

pub(crate) async fn leaf_of(
    client: &impl GenericClient,
    tenant: &str,
    id: Uuid,
) -> Result<Option<(u64, [u8; 32])>, PgError> {
    client
        .query_opt(
            "SELECT seq, hash FROM leaves WHERE id = $1 AND tenant = $2",
            &[&id, &tenant],
        )
        .await?
        .map(|r| Ok((r.get::<_, i64>(0) as u64, hash_of(&r, 1)?)))
        .transpose()
}
