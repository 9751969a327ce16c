//! The derived data of the PostgreSQL store (`postings`, `event_times`, `rollups`,
//! `watermarks`), written
//! behind the log by an indexer thread in every server process ([`sealtrail_store::derived`]).
//!
//! Servers stay stateless: everything derived lives in the database. Exactly one indexer works
//! on a tenant at a time, whichever server it runs in: each indexing transaction first takes the
//! tenant's transaction-scoped advisory lock with `pg_try_advisory_xact_lock`, and a server that
//! finds it taken leaves the tenant to the one holding it. A server that dies mid-batch loses
//! its connection, so its transaction rolls back and its lock is released: the next indexer
//! starts from the watermark that was committed with the last batch, and nothing is counted
//! twice. The indexer commits without waiting for the WAL flush: a crash may lose its last
//! batches, together with their watermark, never one without the other.

use deadpool_postgres::{Object, Pool};
use sealtrail_model::Tenant;
use sealtrail_store::derived::{IndexBackend, Lag, TimeBlock, Update};
use sealtrail_store::fields::{DERIVED_VERSION, Term};
use sealtrail_store::rollup::{FOLDED, Span, StoredRollup};
use sealtrail_store::rows::LogRow;
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;

use crate::PgError;
use crate::read::{ANY_JOINS, KEYED_JOINS, ROW_COLUMNS, ROW_FROM, row_from};

/// The advisory lock namespace of indexers, apart from the writers' tenant locks.
const INDEX_LOCK: &str =
    "SELECT pg_try_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1, 11))";

/// An indexer's connection, used from a thread of its own.
pub(crate) struct PgIndexer {
    pool: Pool,
    runtime: Handle,
    client: Option<Object>,
    open: bool,
}

impl PgIndexer {
    pub(crate) fn new(pool: Pool, runtime: Handle) -> Self {
        Self {
            pool,
            runtime,
            client: None,
            open: false,
        }
    }

    /// The connection, taken from the pool on first use (and again after a failure).
    fn client(&mut self) -> Result<&Object, PgError> {
        if self.client.is_none() {
            let client = self.runtime.block_on(self.pool.get())?;
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("set above"))
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let runtime = self.runtime.clone();
        let client = self.client()?;
        let result = runtime.block_on(async {
            let stmt = client.prepare_cached(sql).await?;
            client.query(&stmt, params).await
        });
        result.map_err(|e| {
            // A broken connection is not reused.
            if e.is_closed() {
                self.client = None;
            }
            PgError::from(e)
        })
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(), PgError> {
        self.query(sql, params).map(|_| ())
    }
}

/// Empties the derived data when it was built by another version (or never recorded one), so
/// that indexers build it again from the log.
pub(crate) async fn check_version(client: &mut Object) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('derived', 11))",
        &[],
    )
    .await?;
    let found: Option<i32> = tx
        .query_opt(
            "SELECT value FROM derived_meta WHERE key = 'derived_version'",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let wanted = DERIVED_VERSION as i32;
    if found != Some(wanted) {
        if found.is_some() {
            tracing::info!(
                found,
                wanted,
                "derived data of another version: rebuilding it from the log"
            );
        }
        tx.batch_execute("TRUNCATE postings, event_times, rollups, watermarks")
            .await?;
        tx.execute(
            "INSERT INTO derived_meta (key, value) VALUES ('derived_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&wanted],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

impl IndexBackend for PgIndexer {
    type Error = PgError;

    fn lagging(&mut self) -> Result<Vec<Lag>, PgError> {
        let rows = self.query(
            "SELECT t.tenant, coalesce(w.indexed, 0), t.size FROM tenant_logs t \
             LEFT JOIN watermarks w ON w.tenant = t.tenant ORDER BY t.tenant",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| Lag {
                tenant: Tenant::from_store(r.get::<_, String>(0)),
                indexed: r.get::<_, i64>(1).max(0) as u64,
                size: r.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    fn begin(&mut self, tenant: &Tenant) -> Result<Option<u64>, PgError> {
        self.execute("BEGIN", &[])?;
        self.open = true;
        self.execute("SET LOCAL synchronous_commit TO OFF", &[])?;
        let locked: bool = self
            .query(INDEX_LOCK, &[&tenant.as_str()])?
            .first()
            .is_some_and(|r| r.get(0));
        if !locked {
            // Another server's indexer has the tenant.
            self.rollback();
            return Ok(None);
        }
        let indexed: i64 = self
            .query(
                "SELECT coalesce((SELECT indexed FROM watermarks WHERE tenant = $1), 0)",
                &[&tenant.as_str()],
            )?
            .first()
            .map_or(0, |r| r.get(0));
        Ok(Some(indexed.max(0) as u64))
    }

    fn revision(&mut self, tenant: &Tenant) -> Result<Option<u64>, PgError> {
        // Every write of the derived data rewrites the tenant's watermark row (its value may
        // stay the same), so the row version's transaction id names the newest write; several
        // servers share these tables, and an anonymisation run by one changes terms another
        // server's indexer remembers.
        let rows = self.query(
            "SELECT xmin::text::bigint FROM watermarks WHERE tenant = $1",
            &[&tenant.as_str()],
        )?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64))
    }

    fn log_rows(&mut self, tenant: &Tenant, lo: u64, hi: u64) -> Result<Vec<LogRow>, PgError> {
        let rows = self.query(
            &format!(
                "SELECT {ROW_COLUMNS} FROM {ROW_FROM} WHERE l.tenant = $1 AND l.seq BETWEEN $2 AND $3 \
                 ORDER BY l.seq"
            ),
            &[
                &tenant.as_str(),
                &(lo.min(i64::MAX as u64) as i64),
                &(hi.min(i64::MAX as u64) as i64),
            ],
        )?;
        Ok(rows.iter().map(row_from).collect())
    }

    fn chunk_postings(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
    ) -> Result<Vec<(Term, Vec<u8>)>, PgError> {
        let rows = self.query(
            "SELECT term, bits FROM postings WHERE tenant = $1 AND chunk = $2",
            &[&tenant.as_str(), &(chunk as i64)],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| (Term(r.get::<_, Vec<u8>>(0).into_boxed_slice()), r.get(1)))
            .collect())
    }

    fn tagged_postings(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
        tags: &[u8],
    ) -> Result<Vec<(Term, Vec<u8>)>, PgError> {
        let mut out = Vec::new();
        for &tag in tags {
            let rows = self.query(
                "SELECT term, bits FROM postings WHERE tenant = $1 AND chunk = $2 \
                 AND term >= $3 AND term < $4",
                &[
                    &tenant.as_str(),
                    &(chunk as i64),
                    &&[tag][..],
                    &&[tag + 1][..],
                ],
            )?;
            out.extend(
                rows.into_iter()
                    .map(|r| (Term(r.get::<_, Vec<u8>>(0).into_boxed_slice()), r.get(1))),
            );
        }
        Ok(out)
    }

    fn posting(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
        term: &Term,
    ) -> Result<Option<Vec<u8>>, PgError> {
        let rows = self.query(
            "SELECT bits FROM postings WHERE tenant = $1 AND chunk = $2 AND term = $3",
            &[&tenant.as_str(), &(chunk as i64), &&*term.0],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn postings(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
        terms: &[Term],
    ) -> Result<Vec<(Term, Vec<u8>)>, PgError> {
        let wanted: Vec<&[u8]> = terms.iter().map(|t| &*t.0).collect();
        // Each term looked up by the primary key, whatever the planner believes of the
        // table's size (a subquery with a LIMIT is never merged into the outer query).
        let rows = self.query(
            "SELECT w.term, p.bits FROM unnest($3::bytea[]) AS w(term) CROSS JOIN LATERAL \
             (SELECT bits FROM postings WHERE tenant = $1 AND chunk = $2 AND term = w.term \
              LIMIT 1) AS p",
            &[&tenant.as_str(), &(chunk as i64), &wanted],
        )?;
        Ok(rows
            .iter()
            .map(|r| (Term(r.get::<_, Vec<u8>>(0).into()), r.get(1)))
            .collect())
    }

    fn time_block(&mut self, tenant: &Tenant, block: u64) -> Result<Option<TimeBlock>, PgError> {
        let rows = self.query(
            "SELECT lo, hi, vals FROM event_times WHERE tenant = $1 AND block = $2",
            &[&tenant.as_str(), &(block as i64)],
        )?;
        Ok(rows
            .first()
            .map(|r| TimeBlock::decode(r.get(0), r.get(1), r.get::<_, &[u8]>(2))))
    }

    fn chunk_rollups(
        &mut self,
        tenant: &Tenant,
        chunk: u64,
    ) -> Result<Vec<(Span, i64, StoredRollup)>, PgError> {
        let rows = self.query(
            "SELECT span, period, total, failures, keys FROM rollups WHERE tenant = $1 AND chunk = $2",
            &[&tenant.as_str(), &(chunk as i64)],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    Span::from_code(r.get(0))?,
                    r.get::<_, i64>(1),
                    stored_rollup(r, 2),
                ))
            })
            .collect())
    }

    fn folded_rollup(
        &mut self,
        tenant: &Tenant,
        span: Span,
        period: i64,
    ) -> Result<Option<StoredRollup>, PgError> {
        let rows = self.query(
            "SELECT total, failures, keys FROM rollups \
             WHERE tenant = $1 AND chunk = $2 AND span = $3 AND period = $4",
            &[&tenant.as_str(), &FOLDED, &span.code(), &period],
        )?;
        Ok(rows.first().map(|r| stored_rollup(r, 0)))
    }

    fn write(&mut self, tenant: &Tenant, update: &Update) -> Result<(), PgError> {
        if !update.cleared.is_empty() {
            let cleared: Vec<i64> = update.cleared.iter().map(|c| *c as i64).collect();
            self.execute(
                "DELETE FROM postings WHERE tenant = $1 AND chunk = ANY($2)",
                &[&tenant.as_str(), &cleared],
            )?;
        }
        // Postings new to their chunk are inserted plainly: an upsert costs each row an
        // index probe and a speculative insertion first (a pass's 30 000 new rows replayed
        // in psql: 217 ms upserted, 134 ms inserted). A row there after all fails the pass,
        // and the indexer's next pass upserts every posting.
        for (postings, upsert) in [(&update.added, false), (&update.postings, true)] {
            if postings.is_empty() {
                continue;
            }
            let chunks: Vec<i64> = postings.iter().map(|p| p.0 as i64).collect();
            let terms: Vec<&[u8]> = postings.iter().map(|p| &*p.1.0).collect();
            let bits: Vec<&[u8]> = postings.iter().map(|p| p.2.as_slice()).collect();
            self.execute(
                if upsert {
                    "INSERT INTO postings (tenant, chunk, term, bits) \
                     SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[]) \
                     ON CONFLICT (tenant, chunk, term) DO UPDATE SET bits = excluded.bits"
                } else {
                    "INSERT INTO postings (tenant, chunk, term, bits) \
                     SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[])"
                },
                &[&tenant.as_str(), &chunks, &terms, &bits],
            )?;
        }
        if !update.removed.is_empty() {
            let chunks: Vec<i64> = update.removed.iter().map(|r| r.0 as i64).collect();
            let terms: Vec<&[u8]> = update.removed.iter().map(|r| &*r.1.0).collect();
            self.execute(KEYED_JOINS, &[])?;
            self.execute(
                "DELETE FROM postings p USING unnest($2::bigint[], $3::bytea[]) AS r(chunk, term) \
                 WHERE p.tenant = $1 AND p.chunk = r.chunk AND p.term = r.term",
                &[&tenant.as_str(), &chunks, &terms],
            )?;
            self.execute(ANY_JOINS, &[])?;
        }
        let blocks: Vec<i64> = update.times.iter().map(|t| t.0 as i64).collect();
        let los: Vec<i64> = update.times.iter().map(|t| t.1.lo).collect();
        let his: Vec<i64> = update.times.iter().map(|t| t.1.hi).collect();
        let vals: Vec<Vec<u8>> = update.times.iter().map(|t| t.1.encode_values()).collect();
        self.execute(
            "INSERT INTO event_times (tenant, block, lo, hi, vals) \
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[]) \
             ON CONFLICT (tenant, block) DO UPDATE SET lo = excluded.lo, hi = excluded.hi, vals = excluded.vals",
            &[&tenant.as_str(), &blocks, &los, &his, &vals],
        )?;
        if !update.rollups.is_empty() {
            let r = &update.rollups;
            let chunks: Vec<i64> = r.iter().map(|r| r.2).collect();
            let spans: Vec<i16> = r.iter().map(|r| r.0.code()).collect();
            let periods: Vec<i64> = r.iter().map(|r| r.1).collect();
            let totals: Vec<i64> = r.iter().map(|r| r.3.total as i64).collect();
            let failures: Vec<i64> = r.iter().map(|r| r.3.failures as i64).collect();
            let keys: Vec<&[u8]> = r.iter().map(|r| r.3.keys.as_slice()).collect();
            self.execute(
                "INSERT INTO rollups (tenant, chunk, span, period, total, failures, keys) \
                 SELECT $1, * FROM unnest($2::bigint[], $3::smallint[], $4::bigint[], \
                                          $5::bigint[], $6::bigint[], $7::bytea[]) \
                 ON CONFLICT (tenant, chunk, span, period) DO UPDATE \
                 SET total = excluded.total, failures = excluded.failures, keys = excluded.keys",
                &[
                    &tenant.as_str(),
                    &chunks,
                    &spans,
                    &periods,
                    &totals,
                    &failures,
                    &keys,
                ],
            )?;
        }
        if !update.folded.is_empty() {
            let f = &update.folded;
            let chunks: Vec<i64> = f.iter().map(|f| f.2).collect();
            let spans: Vec<i16> = f.iter().map(|f| f.0.code()).collect();
            let periods: Vec<i64> = f.iter().map(|f| f.1).collect();
            self.execute(
                "DELETE FROM rollups r USING unnest($2::bigint[], $3::smallint[], $4::bigint[]) \
                 AS f(chunk, span, period) WHERE r.tenant = $1 AND r.chunk = f.chunk \
                 AND r.span = f.span AND r.period = f.period",
                &[&tenant.as_str(), &chunks, &spans, &periods],
            )?;
        }
        self.execute(
            "INSERT INTO watermarks (tenant, indexed) VALUES ($1, $2) \
             ON CONFLICT (tenant) DO UPDATE SET indexed = excluded.indexed",
            &[&tenant.as_str(), &(update.watermark as i64)],
        )
    }

    fn commit(&mut self) -> Result<(), PgError> {
        self.execute("COMMIT", &[])?;
        self.open = false;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), PgError> {
        // The index commits asynchronously, but the log's removal that follows commits
        // synchronously, and its flush of the write-ahead log carries every earlier commit.
        Ok(())
    }

    fn rollback(&mut self) {
        if self.open {
            if let Err(err) = self.execute("ROLLBACK", &[]) {
                tracing::debug!(error = %err, "index rollback failed; the connection is dropped");
                self.client = None;
            }
            self.open = false;
        }
    }

    fn reset(&mut self) -> Result<(), PgError> {
        self.execute("TRUNCATE postings, event_times, rollups, watermarks", &[])
    }
}

/// A rollup's counts from columns `at..at + 3` (total, failures, keys).
pub(crate) fn stored_rollup(r: &tokio_postgres::Row, at: usize) -> StoredRollup {
    StoredRollup {
        total: r.get::<_, i64>(at).max(0) as u64,
        failures: r.get::<_, i64>(at + 1).max(0) as u64,
        keys: r.get(at + 2),
    }
}

/// Shares an indexer between the background thread and `settle`.
pub(crate) type SharedIndexer = sealtrail_store::derived::SharedIndexer<PgIndexer>;
