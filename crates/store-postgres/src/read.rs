//! The queries behind list, get, history, keys, checkpoints and proofs, on the read pool.

use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::{
    ApiKey, Checkpoint, Cursor, HistoryQuery, ListQuery, Order, Page, Relation, Root, StoredEvent,
    TenantScope, TreeHead, scopes_from_text,
};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::PgError;

type Arg = Box<dyn ToSql + Sync + Send>;

fn raw(body: String) -> Result<Box<RawValue>, PgError> {
    RawValue::from_string(body).map_err(|e| PgError::Damaged(format!("a stored body: {e}")))
}

fn time_of(micros: i64) -> OffsetDateTime {
    Timestamp::from_micros(micros).to_datetime()
}

pub(crate) async fn get(
    client: &impl GenericClient,
    tenant: &str,
    id: Uuid,
) -> Result<Option<StoredEvent>, PgError> {
    // The leaf row names the partition (recorded_at), so only one partition is searched.
    let row = client
        .query_opt(
            "SELECT e.seq, e.body FROM leaves l JOIN events e \
             ON e.tenant = l.tenant AND e.seq = l.seq AND e.recorded_at = l.recorded_at \
             WHERE l.id = $1 AND l.tenant = $2",
            &[&id, &tenant],
        )
        .await?;
    row.map(|r| {
        Ok(StoredEvent {
            seq: r.get::<_, i64>(0) as u64,
            body: raw(r.get(1))?,
            relation: None,
        })
    })
    .transpose()
}

/// Appends the condition for a non-empty list: `column = $n` for one value, so that the
/// planner can walk the index in `seq` order and stop after a page (an `= ANY` scan cannot
/// promise that order, and would fetch and sort every match); `column = ANY($n)` for several.
fn push_any(sql: &mut String, args: &mut Vec<Arg>, column: &str, values: &[String]) {
    let condition = match values {
        [] => return,
        [one] => {
            args.push(Box::new(one.clone()));
            format!(" AND {column} = ${}", args.len())
        }
        many => {
            args.push(Box::new(many.to_vec()));
            format!(" AND {column} = ANY(${})", args.len())
        }
    };
    sql.push_str(&condition);
}

fn refs(args: &[Arg]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

pub(crate) async fn list(
    client: &deadpool_postgres::Client,
    q: &ListQuery,
) -> Result<Page, PgError> {
    let f = &q.filter;
    let mut sql = String::from("SELECT seq, body FROM events WHERE tenant = $1");
    let mut args: Vec<Arg> = vec![Box::new(q.tenant.to_string())];
    for (field, values) in &f.fields {
        match legacy_column(*field) {
            // Outcome is written as a literal so the partial index on failures can serve it.
            Some("outcome") => match values.as_slice() {
                [one] if one == "failure" => sql.push_str(" AND outcome = 'failure'"),
                [one] if one == "success" => sql.push_str(" AND outcome = 'success'"),
                _ => {}
            },
            Some(column) => push_any(&mut sql, &mut args, column, values),
            None => {}
        }
    }
    if let Some(from) = f.from {
        args.push(Box::new(from.to_datetime()));
        sql.push_str(&format!(" AND occurred_at >= ${}", args.len()));
    }
    if let Some(to) = f.to {
        args.push(Box::new(to.to_datetime()));
        sql.push_str(&format!(" AND occurred_at < ${}", args.len()));
    }
    // Containment is answered by the GIN index; the changed-field filter by the body.
    if let Some(needle) = &f.metadata {
        args.push(Box::new(needle.clone()));
        sql.push_str(&format!(" AND metadata @> ${}::jsonb", args.len()));
    }
    let body_filter = sealtrail_store::EventFilter::default().with(
        sealtrail_store::fields::CHANGED_FIELD,
        f.values(sealtrail_store::fields::CHANGED_FIELD),
    );
    let (cmp, dir) = match q.order {
        Order::Desc => ("<", "DESC"),
        Order::Asc => (">", "ASC"),
    };
    let position_arg = args.len() + 1;
    sql.push_str(&format!(
        " AND seq {cmp} ${position_arg} ORDER BY seq {dir} LIMIT ${}",
        position_arg + 1
    ));
    let start = match (q.cursor, q.order) {
        (Some(Cursor::Seq(seq)), _) => seq.min(i64::MAX as u64) as i64,
        (_, Order::Desc) => i64::MAX,
        (_, Order::Asc) => 0,
    };
    let wanted = q.limit + 1;
    // Without a changed-field filter one query answers; with it, scan on in chunks.
    let chunk = if !body_filter.fields.is_empty() {
        wanted.max(256)
    } else {
        wanted
    };
    let stmt = client.prepare_cached(&sql).await?;
    let mut items = Vec::with_capacity(wanted);
    let mut position = start;
    loop {
        let chunk_i64 = chunk as i64;
        let mut bound = refs(&args);
        bound.push(&position);
        bound.push(&chunk_i64);
        let rows = client.query(&stmt, &bound).await?;
        let scanned = rows.len();
        let mut last = position;
        for row in rows {
            let seq: i64 = row.get(0);
            last = seq;
            let body: String = row.get(1);
            if changed_field_matches(&body_filter, &body) {
                items.push(StoredEvent {
                    seq: seq as u64,
                    body: raw(body)?,
                    relation: None,
                });
                if items.len() == wanted {
                    break;
                }
            }
        }
        if items.len() == wanted || scanned < chunk {
            break;
        }
        position = last;
    }
    Ok(Page::from_overfetch(items, q.limit, |e| Cursor::Seq(e.seq)))
}

/// The column of a filter, in the schema this store writes until derived indexes replace it.
fn legacy_column(field: sealtrail_store::Field) -> Option<&'static str> {
    use sealtrail_store::fields::*;
    Some(match field {
        ACTOR_ID => "actor_id",
        ACTION => "action",
        CATEGORY => "category",
        EVENT_TYPE => "event_type",
        TARGET_TYPE => "target_type",
        TARGET_ID => "target_id",
        ORGANIZATION_ID => "organization_id",
        OUTCOME => "outcome",
        CORRELATION_ID => "correlation_id",
        IP => "ip",
        _ => return None,
    })
}

/// Whether a stored body changed one of the filter's fields (or has no such filter).
fn changed_field_matches(f: &sealtrail_store::EventFilter, body: &str) -> bool {
    let wanted = f.values(sealtrail_store::fields::CHANGED_FIELD);
    if wanted.is_empty() {
        return true;
    }
    serde_json::from_str::<sealtrail_model::Event>(body).is_ok_and(|event| {
        event.changes.iter().any(|c| {
            wanted
                .iter()
                .any(|w| sealtrail_model::json::field_matches(&c.field, w))
        })
    })
}

pub(crate) async fn history(
    client: &deadpool_postgres::Client,
    q: &HistoryQuery,
) -> Result<Page, PgError> {
    // The matching seqs come from two indexes; the narrow leaves rows order them by time and
    // cut the page, and only the page's event rows are read, each from the partition its
    // leaf's recorded_at names. An event-type filter joins the event row before the cut.
    let mut args: Vec<Arg> = vec![
        Box::new(q.tenant.to_string()),
        Box::new(q.entity_type.clone()),
        Box::new(q.entity_id.clone()),
    ];
    let mut filter = String::new();
    push_any(&mut filter, &mut args, "f.event_type", &q.event_type);
    let type_join = if filter.is_empty() {
        String::new()
    } else {
        format!(
            " JOIN events f ON f.tenant = $1 AND f.seq = l.seq AND f.recorded_at = l.recorded_at{filter}"
        )
    };
    let mut cut = String::new();
    if let Some(Cursor::Time(at, seq)) = q.cursor {
        args.push(Box::new(time_of(at)));
        args.push(Box::new(seq.min(i64::MAX as u64) as i64));
        cut = format!(
            " WHERE (l.occurred_at, l.seq) > (${}, ${})",
            args.len() - 1,
            args.len()
        );
    }
    args.push(Box::new(q.limit as i64 + 1));
    let sql = format!(
        "WITH hits(seq) AS ( \
            SELECT seq FROM events WHERE tenant = $1 AND target_type = $2 AND target_id = $3 \
            UNION SELECT seq FROM event_links WHERE tenant = $1 AND type = $2 AND id = $3), \
         page AS (SELECT l.seq, l.occurred_at, l.recorded_at FROM hits \
            JOIN leaves l ON l.tenant = $1 AND l.seq = hits.seq{type_join}{cut} \
            ORDER BY l.occurred_at, l.seq LIMIT ${}) \
         SELECT e.seq, e.occurred_at, e.body, \
                (e.target_type IS NOT DISTINCT FROM $2 AND e.target_id IS NOT DISTINCT FROM $3) \
         FROM page JOIN events e ON e.tenant = $1 AND e.seq = page.seq AND e.recorded_at = page.recorded_at \
         ORDER BY page.occurred_at, page.seq",
        args.len()
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &refs(&args)).await?;
    let mut times = Vec::with_capacity(rows.len());
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        times.push(Timestamp::from_datetime(row.get(1)).micros());
        items.push(StoredEvent {
            seq: row.get::<_, i64>(0) as u64,
            body: raw(row.get(2))?,
            relation: Some(if row.get::<_, bool>(3) {
                Relation::Target
            } else {
                Relation::Related
            }),
        });
    }
    let limit = q.limit;
    let cut_time = times.get(limit.wrapping_sub(1)).copied().unwrap_or(0);
    Ok(Page::from_overfetch(items, limit, |e| {
        Cursor::Time(cut_time, e.seq)
    }))
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
