//! `sealtrail verify --database-url`: walks every tenant's log in the database with the
//! ledger's [`TenantWalk`] — every leaf recomputed from its row, the chain, every stored
//! checkpoint's signature and root, the newest checkpoint against the tail — and checks what
//! only this store has: the indexed columns and the `leaves` row against the sealed event, the
//! personal values against their digests, and the size `tenant_logs` recorded against the log.
//! Rows are streamed, so memory stays flat however large the log.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use futures::{StreamExt, pin_mut};
use sealtrail_ledger::entry::PersonalDigests;
use sealtrail_ledger::view::PersonalValues;
use sealtrail_ledger::walk::{Finding, Item, Kind, TenantWalk};
use sealtrail_model::Timestamp;
pub use sealtrail_store::verify::Report;
use sealtrail_store::verify::{
    IndexColumns, PersonalField, check_digest, personal_mismatch, signed_heads,
};
use time::OffsetDateTime;
use tokio_postgres::Row;
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

/// Walks the store. `keys` maps key ids to trusted public keys; `progress` is called with the
/// number of events walked so far, now and then.
pub async fn verify_store(
    client: &tokio_postgres::Client,
    keys: &HashMap<String, VerifyingKey>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Report, PgError> {
    let mut report = Report::default();
    let tenants: Vec<String> = client
        .query(
            "SELECT tenant FROM tenant_logs UNION SELECT tenant FROM checkpoints \
             UNION SELECT DISTINCT tenant FROM leaves UNION SELECT DISTINCT tenant FROM events ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for tenant in tenants {
        report.tenants += 1;
        walk_tenant(client, &tenant, keys, &mut report, progress).await?;
    }
    progress(report.events);
    Ok(report)
}

fn hash(blob: Option<Vec<u8>>) -> Option<[u8; 32]> {
    blob.and_then(|b| b.try_into().ok())
}

fn columns_from_row(r: &Row) -> IndexColumns {
    let micros = |i: usize| Timestamp::from_datetime(r.get::<_, OffsetDateTime>(i)).micros();
    IndexColumns {
        recorded_at: micros(6),
        occurred_at: micros(7),
        action: r.get(8),
        category: r.get(9),
        event_type: r.get(10),
        outcome: r.get(11),
        actor_id: r.get(12),
        target_type: r.get(13),
        target_id: r.get(14),
        organization_id: r.get(15),
        correlation_id: r.get(16),
        ip: r.get(17),
    }
}

async fn walk_tenant(
    client: &tokio_postgres::Client,
    tenant: &str,
    keys: &HashMap<String, VerifyingKey>,
    report: &mut Report,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(), PgError> {
    let stored = client
        .query(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant = $1 ORDER BY size, issued_at"
            ),
            &[&tenant],
        )
        .await?;
    let stored = stored
        .iter()
        .map(checkpoint_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let signed = signed_heads(tenant, stored, keys, report);
    let subject_keys: HashMap<String, Option<[u8; 32]>> = client
        .query(
            "SELECT subject, key FROM subject_keys WHERE tenant = $1",
            &[&tenant],
        )
        .await?
        .into_iter()
        .map(|r| (r.get(0), hash(r.get(1))))
        .collect();
    let recorded_size: Option<i64> = client
        .query_opt("SELECT size FROM tenant_logs WHERE tenant = $1", &[&tenant])
        .await?
        .map(|r| r.get(0));

    let mut walk = TenantWalk::new(tenant, signed);
    let params: [&(dyn ToSql + Sync); 1] = [&tenant];
    let rows = client
        .query_raw(
            "SELECT e.seq, e.id, e.hash, e.prev_hash, e.personal, e.body, e.recorded_at, e.occurred_at, \
             e.action, e.category, e.event_type, e.outcome, e.actor_id, e.target_type, e.target_id, \
             e.organization_id, e.correlation_id, e.ip, l.id, l.hash, l.recorded_at, l.occurred_at \
             FROM events e LEFT JOIN leaves l ON l.tenant = e.tenant AND l.seq = e.seq \
             WHERE e.tenant = $1 ORDER BY e.seq, e.id",
            params,
        )
        .await?;
    pin_mut!(rows);
    while let Some(row) = rows.next().await {
        let r = row?;
        report.events += 1;
        if report.events.is_multiple_of(65_536) {
            progress(report.events);
        }
        let id: Uuid = r.get(1);
        let event_hash = hash(r.get(2));
        let recorded_at: OffsetDateTime = r.get(6);
        let leaf: (Option<Uuid>, Option<Vec<u8>>, Option<OffsetDateTime>) =
            (r.get(18), r.get(19), r.get(20));
        let leaf_agrees =
            leaf.0 == Some(id) && hash(leaf.1) == event_hash && leaf.2 == Some(recorded_at);
        let columns = columns_from_row(&r);
        let item = Item {
            seq: r.get::<_, i64>(0).max(0) as u64,
            id: Some(id),
            hash: event_hash,
            prev_hash: hash(r.get(3)),
            digests: r
                .get::<_, Option<Vec<u8>>>(4)
                .as_deref()
                .and_then(PersonalDigests::from_bytes)
                .unwrap_or_default(),
            event: serde_json::from_str(r.get::<_, &str>(5)).ok(),
        };
        let digests = item.digests.clone();
        walk.push(item, |event| {
            if let Some(problem) = columns.mismatch(event) {
                return Some(problem);
            }
            if !leaf_agrees {
                return Some("the leaves row disagrees with the sealed event".into());
            }
            let values = PersonalValues::of(event, &digests);
            let target_id = event.target.as_ref().map(|t| t.id.as_str());
            let check = |f: &PersonalField<'_>| {
                let key = subject_keys.get(f.subject).copied().flatten();
                Ok::<_, std::convert::Infallible>(check_digest(key.as_ref(), f))
            };
            personal_mismatch(&values, &digests, &event.actor.id, target_id, check)
                .unwrap_or_else(|never| match never {})
        });
    }
    if let Some(uncovered) = walk.uncovered() {
        report.uncovered.push((tenant.to_owned(), uncovered));
    }
    let walked = walk.size();
    let mut findings = walk.finish();
    // The writer records each log's size as it commits: a tail cut off before any checkpoint
    // covered it still shows here, unless tenant_logs was rewritten too.
    if let Some(size) = recorded_size
        && size as u64 > walked
        && findings
            .iter()
            .all(|f| !matches!(f.kind, Kind::Truncated | Kind::Missing))
    {
        findings.push(Finding {
            tenant: tenant.to_owned(),
            seq: walked + 1,
            id: None,
            kind: Kind::Truncated,
            detail: format!("the log's recorded size is {size}, the log holds {walked}"),
        });
    }
    report.findings.extend(findings);
    Ok(())
}
