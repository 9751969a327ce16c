//! Retention's removal of events from the log, inside the sanctioned path's transaction: a
//! past month's partition that holds nothing but events being removed is detached whole (a
//! moment, whatever its size) and renamed `removed_<name>`; its files are released by
//! [`drop_removed`] once the transaction committed (dropping a table takes time in proportion
//! to its size, which the log need not wait for). The other events are deleted row by row.
//! Their `leaves` rows stay: the place of each removed event (id, digest, leaf hash), which
//! keeps the tree, the chain and every proof whole.

use tokio_postgres::Client;

use crate::schema::{month_start, partition_name};

/// Removes the events at `seqs` (ascending) of `tenant` from `events`. Fails, so that the
/// transaction changes nothing, when one of them is not there (another removal took it).
pub(crate) async fn remove_events(
    client: &Client,
    tenant: &str,
    seqs: &[i64],
) -> Result<(), tokio_postgres::Error> {
    let current = partition_name(month_start(time::OffsetDateTime::now_utc().date(), 0));
    let partitions = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass ORDER BY 1",
            &[],
        )
        .await?;
    let mut dropped: Vec<(i64, i64)> = Vec::new();
    for row in partitions {
        let name: String = row.get(0);
        // Names sort as their months do; this month's and later ones take new events.
        if !name.starts_with("events_y") || name >= current {
            continue;
        }
        let others: bool = client
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {name} WHERE tenant <> $1)"),
                &[&tenant],
            )
            .await?
            .get(0);
        if others {
            continue;
        }
        let span = client
            .query_one(
                &format!("SELECT min(seq), max(seq) FROM {name} WHERE tenant = $1"),
                &[&tenant],
            )
            .await?;
        let (Some(lo), Some(hi)) = (span.get::<_, Option<i64>>(0), span.get::<_, Option<i64>>(1))
        else {
            continue;
        };
        // Every position from its least to its greatest is being removed: so is every row.
        let (a, b) = (
            seqs.partition_point(|&s| s < lo),
            seqs.partition_point(|&s| s <= hi),
        );
        if (b - a) as i64 != hi - lo + 1 {
            continue;
        }
        client
            .batch_execute(&format!(
                "ALTER TABLE events DETACH PARTITION {name}; ALTER TABLE {name} RENAME TO removed_{name}"
            ))
            .await?;
        tracing::info!(partition = %name, events = hi - lo + 1, "events partition detached by retention");
        dropped.push((lo, hi));
    }
    let rest: Vec<i64> = seqs
        .iter()
        .copied()
        .filter(|s| !dropped.iter().any(|(lo, hi)| lo <= s && s <= hi))
        .collect();
    if rest.is_empty() {
        return Ok(());
    }
    let removed = client
        .execute(
            "DELETE FROM events e USING leaves l, unnest($2::bigint[]) AS s(seq) \
             WHERE l.tenant = $1 AND l.seq = s.seq \
             AND e.tenant = l.tenant AND e.seq = l.seq AND e.recorded_at = l.recorded_at",
            &[&tenant, &rest],
        )
        .await?;
    if removed != rest.len() as u64 {
        // The transaction must fail: a receipt for events that were not all here would not add up.
        client
            .batch_execute(
                "DO $$ BEGIN RAISE EXCEPTION 'sealtrail: an event to remove is not in the log (removed already?)'; END $$",
            )
            .await?;
    }
    Ok(())
}

/// Drops the partitions retention detached (`removed_events_y…`): after the removal committed,
/// and at start for one a crash left behind. Failures are logged; the next call tries again.
pub(crate) async fn drop_removed(client: &Client) {
    let tables = match client
        .query(
            "SELECT c.relname::text FROM pg_class c \
             WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) \
             AND c.relkind = 'r' AND c.relname LIKE 'removed\\_events\\_y%'",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list the partitions retention detached");
            return;
        }
    };
    for row in tables {
        let name: String = row.get(0);
        match client.batch_execute(&format!("DROP TABLE {name}")).await {
            Ok(()) => tracing::info!(table = %name, "a detached events partition was dropped"),
            Err(err) => {
                tracing::warn!(table = %name, error = %err, "cannot drop a detached partition")
            }
        }
    }
}
