//! Retention (SPEC §4.5, §12), once for every backend: a tenant's rules say how long events
//! are kept, legal holds keep matching events past them, and a run first writes the expired
//! events to a verifiable archive, then removes them from the log ([`Store::purge`]) with a
//! receipt (`audit.purged`) that names what went.
//!
//! A run works against one signed checkpoint, taken when it starts: only events that
//! checkpoint covers are considered, the archive is proven against it (the verifiable NDJSON
//! export, gzip'd: `sealtrail verify --export` reads it offline), and the receipt names it.
//! Receipts themselves are never removed: the walk of `sealtrail verify` accounts for every
//! removed event by them.

use std::io::Write;
use std::path::{Path, PathBuf};

use sealtrail_model::{Tenant, Timestamp};
use tokio::sync::mpsc;

use crate::export::{self, ExportError, ExportQuery, Format};
use crate::fields::EventFilter;
use crate::rows::{LogRow, RowError};
use crate::verify::PURGED;
use crate::{Appended, Checkpoint, ListQuery, Order, PreparedEvent, Store, StoreError};

/// How long a tenant's events are kept: the rule with the longest `action_prefix` that the
/// action starts with, else `default_days`; no rule and no default keeps them forever.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Days for actions no rule names; `None`: forever.
    pub default_days: Option<u32>,
    /// Rules by action prefix.
    pub rules: Vec<Rule>,
}

/// One retention rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The start of the actions it covers (`auth.` covers `auth.login`).
    pub action_prefix: String,
    /// How many days they are kept.
    pub days: u32,
}

impl Policy {
    /// The days an event with `action` is kept, `None` for ever.
    pub fn days_for(&self, action: &str) -> Option<u32> {
        self.rules
            .iter()
            .filter(|r| action.starts_with(&r.action_prefix))
            .max_by_key(|r| r.action_prefix.len())
            .map(|r| r.days)
            .or(self.default_days)
    }

    /// The fewest days any event is kept: nothing younger can expire.
    pub fn shortest(&self) -> Option<u32> {
        self.rules
            .iter()
            .map(|r| r.days)
            .chain(self.default_days)
            .min()
    }

    /// Whether an event of `action` that occurred at `occurred_at` (microseconds) has expired
    /// at `now`. Purge receipts never expire.
    pub fn expired(&self, action: &str, occurred_at: i64, now: Timestamp) -> bool {
        if action == PURGED {
            return false;
        }
        self.days_for(action).is_some_and(|days| {
            occurred_at < now.micros().saturating_sub(i64::from(days) * DAY_MICROS)
        })
    }
}

const DAY_MICROS: i64 = 86_400_000_000;

/// A legal hold: events matching its filter are kept whatever the rules say, until it is
/// removed.
#[derive(Debug, Clone)]
pub struct Hold {
    /// Its name.
    pub name: String,
    /// The events it keeps (any list filter).
    pub filter: EventFilter,
}

/// One retention run of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The tenant.
    pub tenant: &'a Tenant,
    /// Its rules.
    pub policy: &'a Policy,
    /// Its legal holds.
    pub holds: &'a [Hold],
    /// The moment ages are counted from.
    pub now: Timestamp,
    /// Where archives go: each tenant's under `<archive_dir>/<tenant>/`.
    pub archive_dir: &'a Path,
    /// Only count what would be removed.
    pub dry_run: bool,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Events removed (or that would be).
    pub purged: u64,
    /// Expired events a legal hold kept.
    pub held: u64,
    /// The least and greatest position removed.
    pub range: Option<(u64, u64)>,
    /// The archive written, if any: its path and the SHA-256 of its bytes, hex.
    pub archive: Option<(PathBuf, String)>,
    /// The checkpoint the run worked against.
    pub checkpoint: Option<Checkpoint>,
    /// The receipt, when events were removed.
    pub receipt: Option<Appended>,
}

/// Why a run failed. Nothing is removed from the log unless the archive was written whole.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or rendering the expired events failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The archive could not be written.
    #[error("the archive {path} could not be written: {source}")]
    Archive {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs retention: the expired events of the tenant's latest checkpoint that no hold keeps are
/// written to a gzip'd verifiable archive under `<archive_dir>/<tenant>/`, then removed with
/// the receipt `receipt` builds from the outcome. A dry run only counts. A tenant with no
/// rule, no checkpoint or nothing expired is left as it is.
pub async fn run(
    store: &dyn Store,
    run: &Run<'_>,
    receipt: &(dyn Fn(&Outcome) -> PreparedEvent + Sync),
) -> Result<Outcome, RetentionError> {
    let Run {
        tenant,
        policy,
        holds,
        now,
        archive_dir,
        dry_run,
    } = *run;
    let mut outcome = Outcome::default();
    let Some(shortest) = policy.shortest() else {
        return Ok(outcome);
    };
    // The checkpoint first, then the derived data up to it: every event it covers is indexed,
    // so each one can leave the derived data before the log.
    let Some(checkpoint) = store.latest_checkpoint(tenant).await? else {
        return Ok(outcome);
    };
    store.settle().await?;
    let cutoff = Timestamp::from_micros(
        now.micros()
            .saturating_sub(i64::from(shortest) * DAY_MICROS),
    );
    let query = ExportQuery {
        tenant: tenant.clone(),
        filter: EventFilter {
            to: Some(cutoff),
            ..EventFilter::default()
        },
        order: Order::Asc,
        upto: checkpoint.size,
        checkpoint: Some(checkpoint.clone()),
    };
    let held = std::sync::atomic::AtomicU64::new(0);
    let select = |row: &LogRow| -> Result<bool, RowError> {
        row.with_source(|source| {
            if !policy.expired(source.view.action, source.view.occurred_at, now) {
                return false;
            }
            if holds.iter().any(|h| h.filter.matches(source)) {
                held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return false;
            }
            true
        })
    };
    outcome.checkpoint = Some(checkpoint);
    if dry_run {
        let mut seqs = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list_rows(ListQuery {
                    tenant: tenant.clone(),
                    filter: query.filter.clone(),
                    order: Order::Asc,
                    limit: 1000,
                    cursor,
                })
                .await?;
            for row in page.rows.iter().filter(|r| r.seq <= query.upto) {
                if select(row).map_err(ExportError::from)? {
                    seqs.push(row.seq);
                }
            }
            cursor = page.next_cursor;
            if cursor.is_none() || page.rows.last().is_some_and(|r| r.seq > query.upto) {
                break;
            }
        }
        outcome.held = held.into_inner();
        outcome.purged = seqs.len() as u64;
        outcome.range = seqs.first().zip(seqs.last()).map(|(a, b)| (*a, *b));
        return Ok(outcome);
    }
    let dir = archive_dir.join(tenant.as_str());
    let stem = format!(
        "sealtrail-{}-{}",
        tenant.as_str(),
        now.to_rfc3339()
            .replace([':', '-'], "")
            .split('.')
            .next()
            .unwrap_or_default()
    );
    // The events leave the store's derived data and log as the archive is written, in
    // transactions that commit only once it is whole and synced and the receipt is made.
    let (batches, chosen) = mpsc::unbounded_channel::<Vec<u64>>();
    let (made, receipt_told) = tokio::sync::oneshot::channel();
    let removal = store.purge_streamed(tenant, chosen, receipt_told);
    let archive = async {
        let mut choose = |page: Vec<u64>| {
            // A removal that stopped early fails on its own: its error is what is told.
            let _ = batches.send(page);
        };
        let written = write_archive(store, &query, &select, &dir, &stem, &mut choose).await;
        drop(batches);
        outcome.held = held.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(archived) = written? {
            outcome.purged = archived.count;
            outcome.range = Some(archived.range);
            outcome.archive = Some((archived.path, archived.digest));
            // The receipt, and with it the go ahead to commit.
            let _ = made.send(receipt(&outcome));
        }
        Ok::<_, RetentionError>(())
    };
    let (removed, archived) = tokio::join!(removal, archive);
    archived?;
    outcome.receipt = removed?;
    Ok(outcome)
}

/// Writes the archive: the verifiable NDJSON export of the selected events, gzip'd, into a
/// partial file in `dir` that is synced and, when whole, renamed to `<stem>-seq<first>-<last>
/// .ndjson.gz` (the range makes names unique: no two runs remove the same event); each page's
/// selected positions go to `chosen` as they are. `None`, with nothing left behind, when no
/// event was selected.
async fn write_archive(
    store: &dyn Store,
    query: &ExportQuery,
    select: &export::Select<'_>,
    dir: &Path,
    stem: &str,
    chosen: &mut (dyn FnMut(Vec<u64>) + Send),
) -> Result<Option<Archived>, RetentionError> {
    let partial = dir.join(format!(".{stem}.{}.partial", std::process::id()));
    let failed = |source: std::io::Error| RetentionError::Archive {
        path: partial.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let file = std::fs::File::create(&partial).map_err(failed)?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let mut range: Option<(u64, u64)> = None;
    // Compressing and writing on a blocking thread while the next page is read and rendered.
    let writer =
        tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, String)> {
            use sha2::Digest;
            let hashing = HashingWriter {
                inner: std::io::BufWriter::with_capacity(1 << 20, file),
                digest: sha2::Sha256::new(),
            };
            let mut gz = flate2::write::GzEncoder::new(hashing, flate2::Compression::new(2));
            while let Some(chunk) = rx.blocking_recv() {
                gz.write_all(&chunk)?;
            }
            let mut hashing = gz.finish()?;
            hashing.inner.flush()?;
            let file = hashing.inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok((file, hex::encode(hashing.digest.finalize())))
        });
    let summary = export::run_selected(
        store,
        Format::Ndjson,
        query,
        select,
        &tx,
        &mut |_| {},
        Some(&mut |page: Vec<u64>| {
            if let (Some(&first), Some(&last)) = (page.first(), page.last()) {
                range = Some((range.map_or(first, |r: (u64, u64)| r.0), last));
            }
            chosen(page);
        }),
    )
    .await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| failed(std::io::Error::other(e.to_string())))?;
    let summary = match summary {
        Ok(summary) => summary,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err.into());
        }
    };
    let (_, digest) = written.map_err(failed)?;
    let Some((first, last)) = range else {
        let _ = std::fs::remove_file(&partial);
        return Ok(None);
    };
    let path = dir.join(format!("{stem}-seq{first}-{last}.ndjson.gz"));
    std::fs::rename(&partial, &path).map_err(failed)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Some(Archived {
        path,
        digest,
        range: (first, last),
        count: summary.rows,
    }))
}

/// An archive written whole.
struct Archived {
    /// Its file.
    path: PathBuf,
    /// The SHA-256 of its bytes, hex.
    digest: String,
    /// The least and greatest position in it.
    range: (u64, u64),
    /// How many events it holds.
    count: u64,
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    digest: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            default_days: Some(30),
            rules: vec![
                Rule {
                    action_prefix: "auth.".into(),
                    days: 365,
                },
                Rule {
                    action_prefix: "auth.login".into(),
                    days: 7,
                },
                Rule {
                    action_prefix: "".into(),
                    days: 90,
                },
            ],
        }
    }

    #[test]
    fn the_longest_matching_prefix_wins_else_the_default() {
        let p = policy();
        assert_eq!(p.days_for("auth.login"), Some(7));
        assert_eq!(p.days_for("auth.login_failed"), Some(7));
        assert_eq!(p.days_for("auth.logout"), Some(365));
        // The empty prefix matches everything, and is longer than no rule at all.
        assert_eq!(p.days_for("invoice.paid"), Some(90));
        let plain = Policy {
            default_days: Some(30),
            rules: vec![Rule {
                action_prefix: "auth.".into(),
                days: 365,
            }],
        };
        assert_eq!(plain.days_for("invoice.paid"), Some(30));
        assert_eq!(Policy::default().days_for("x"), None);
        assert_eq!(p.shortest(), Some(7));
        assert_eq!(Policy::default().shortest(), None);
    }

    #[test]
    fn expiry_counts_whole_days_back_from_now_and_receipts_never_expire() {
        let p = policy();
        let now = Timestamp::from_micros(1_000 * DAY_MICROS);
        let day = |d: i64| now.micros() - d * DAY_MICROS;
        assert!(p.expired("auth.login", day(7) - 1, now));
        assert!(!p.expired("auth.login", day(7), now));
        assert!(!p.expired("auth.logout", day(300), now));
        assert!(p.expired("auth.logout", day(366), now));
        assert!(!p.expired(PURGED, day(10_000), now));
        assert!(!Policy::default().expired("x", 0, now));
    }
}
