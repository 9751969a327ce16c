//! Reads: a pool of read-only connections, and the queries behind list, get, history and keys.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, params_from_iter};
use sealtrail_ledger::view::{EntryView, PersonalValues};
use sealtrail_model::{Tenant, Timestamp};
use sealtrail_store::{
    ApiKey, Cursor, HistoryQuery, LeafHash, ListQuery, Order, Page, Relation, Root, StoreError,
    StoreResult, StoredEvent, TenantScope, scopes_from_text,
};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::{db_error, open_reader};

/// A fixed set of read connections; a query takes one on a blocking thread.
pub(crate) struct Pool {
    path: PathBuf,
    conns: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn open(path: &Path, size: usize) -> rusqlite::Result<Self> {
        let conns = (0..size)
            .map(|_| open_reader(path))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self {
            path: path.to_owned(),
            conns: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `f` on a free connection off the async runtime.
    pub(crate) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conns = self.conns.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = conns.lock().expect("pool lock is never poisoned").pop();
            // A connection lost to a panicking query is replaced.
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&path).map_err(db_error)?,
            };
            let result = f(&conn);
            conns
                .lock()
                .expect("pool lock is never poisoned")
                .push(conn);
            drop(permit);
            result.map_err(db_error)
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?
    }
}

fn raw(body: String) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The columns [`body_at`] reads, in its order.
pub(crate) const BODY_COLUMNS: &str = "body, entry, personal_values, hash";

/// The event's JSON from the [`BODY_COLUMNS`] starting at column `at`: rendered from its
/// sealed entry and personal values, or, for a row written before entries were stored, its
/// JSON body as written.
pub(crate) fn body_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<String> {
    let bad = |column: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, e)
    };
    let entry = match row.get_ref(at + 1)? {
        ValueRef::Null => return row.get(at),
        ValueRef::Blob(entry) => entry,
        other => {
            return Err(bad(
                at + 1,
                format!("entry is {:?}", other.data_type()).into(),
            ));
        }
    };
    let view = EntryView::parse(entry).map_err(|e| bad(at + 1, e.into()))?;
    let values = match row.get_ref(at + 2)? {
        ValueRef::Null => PersonalValues::default(),
        other => PersonalValues::from_bytes(other.as_blob()?)
            .ok_or_else(|| bad(at + 2, "malformed personal values".into()))?,
    };
    let hash = hex::encode(row.get_ref(at + 3)?.as_blob()?);
    Ok(serde_json::to_string(&view.to_event(&values, hash)).expect("events serialise to JSON"))
}

pub(crate) fn get(
    conn: &Connection,
    tenant: &Tenant,
    id: Uuid,
) -> rusqlite::Result<Option<StoredEvent>> {
    conn.prepare_cached(&format!(
        "SELECT seq, {BODY_COLUMNS} FROM events WHERE id = ?1 AND tenant = ?2"
    ))?
    .query_row(
        rusqlite::params![id.as_bytes().as_slice(), tenant.as_str()],
        |row| Ok((row.get::<_, i64>(0)?, body_at(row, 1)?)),
    )
    .optional()?
    .map(|(seq, body)| {
        Ok(StoredEvent {
            seq: seq as u64,
            body: raw(body)?,
            relation: None,
        })
    })
    .transpose()
}

/// Appends `AND column IN (?, …)` for a non-empty list.
fn push_in(sql: &mut String, args: &mut Vec<SqlValue>, column: &str, values: &[String]) {
    match values {
        [] => {}
        [one] => {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(SqlValue::Text(one.clone()));
        }
        many => {
            let marks = vec!["?"; many.len()].join(", ");
            sql.push_str(&format!(" AND {column} IN ({marks})"));
            args.extend(many.iter().cloned().map(SqlValue::Text));
        }
    }
}

pub(crate) fn list(conn: &Connection, q: &ListQuery) -> rusqlite::Result<Page> {
    let f = &q.filter;
    let mut sql = format!("SELECT seq, {BODY_COLUMNS} FROM events WHERE tenant = ?");
    let mut args = vec![SqlValue::Text(q.tenant.to_string())];
    for (field, values) in &f.fields {
        match legacy_column(*field) {
            // Outcome is written as a literal so the partial index on failures can serve it.
            Some("outcome") => match values.as_slice() {
                [one] if one == "failure" => sql.push_str(" AND outcome = 'failure'"),
                [one] if one == "success" => sql.push_str(" AND outcome = 'success'"),
                _ => {}
            },
            Some(column) => push_in(&mut sql, &mut args, column, values),
            None => {}
        }
    }
    if let Some(from) = f.from {
        sql.push_str(" AND occurred_at >= ?");
        args.push(SqlValue::Integer(from.micros()));
    }
    if let Some(to) = f.to {
        sql.push_str(" AND occurred_at < ?");
        args.push(SqlValue::Integer(to.micros()));
    }
    let (cmp, dir) = match q.order {
        Order::Desc => ("<", "DESC"),
        Order::Asc => (">", "ASC"),
    };
    sql.push_str(&format!(" AND seq {cmp} ? ORDER BY seq {dir} LIMIT ?"));
    let start = match (q.cursor, q.order) {
        (Some(Cursor::Seq(seq)), _) => seq.min(i64::MAX as u64) as i64,
        (_, Order::Desc) => i64::MAX,
        (_, Order::Asc) => 0,
    };
    let wanted = q.limit + 1;
    // Without body filters one query answers; with them, scan on in chunks until enough match.
    let chunk = if needs_body(f) {
        wanted.max(256)
    } else {
        wanted
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut items = Vec::with_capacity(wanted);
    let mut position = start;
    loop {
        let mut bound: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
        bound.push(&position);
        let chunk_i64 = chunk as i64;
        bound.push(&chunk_i64);
        let mut rows = stmt.query(params_from_iter(bound))?;
        let mut scanned = 0usize;
        let mut last = position;
        while let Some(row) = rows.next()? {
            scanned += 1;
            let seq: i64 = row.get(0)?;
            last = seq;
            let body = body_at(row, 1)?;
            if matches_body(f, &body) {
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

/// Whether a filter needs the event body to decide (no column can answer it).
pub(crate) fn needs_body(f: &sealtrail_store::EventFilter) -> bool {
    !f.values(sealtrail_store::fields::CHANGED_FIELD).is_empty() || f.metadata.is_some()
}

/// Decides the body-only filters for one stored event body.
pub(crate) fn matches_body(f: &sealtrail_store::EventFilter, body: &str) -> bool {
    if !needs_body(f) {
        return true;
    }
    let Ok(event) = serde_json::from_str::<sealtrail_model::Event>(body) else {
        return false;
    };
    let wanted = f.values(sealtrail_store::fields::CHANGED_FIELD);
    let fields_ok = wanted.is_empty()
        || event.changes.iter().any(|c| {
            wanted
                .iter()
                .any(|w| sealtrail_model::json::field_matches(&c.field, w))
        });
    let metadata_ok = match &f.metadata {
        None => true,
        Some(needle) => event
            .metadata
            .as_ref()
            .is_some_and(|m| sealtrail_model::json::contains(m, needle)),
    };
    fields_ok && metadata_ok
}

pub(crate) fn history(conn: &Connection, q: &HistoryQuery) -> rusqlite::Result<Page> {
    // The matching seqs come from two indexes; CROSS JOIN keeps them the outer loop, so each
    // event row is then fetched by (tenant, seq) instead of scanning the tenant.
    let mut sql = String::from(
        "WITH hits(seq) AS ( \
            SELECT seq FROM events WHERE tenant = ?1 AND target_type = ?2 AND target_id = ?3 \
            UNION SELECT seq FROM event_links WHERE tenant = ?1 AND type = ?2 AND id = ?3) \
         SELECT e.seq, e.occurred_at, (e.target_type IS ?2 AND e.target_id IS ?3), \
         e.body, e.entry, e.personal_values, e.hash \
         FROM hits CROSS JOIN events e ON e.tenant = ?1 AND e.seq = hits.seq WHERE 1",
    );
    let mut args = vec![
        SqlValue::Text(q.tenant.to_string()),
        SqlValue::Text(q.entity_type.clone()),
        SqlValue::Text(q.entity_id.clone()),
    ];
    push_in(&mut sql, &mut args, "e.event_type", &q.event_type);
    if let Some(Cursor::Time(at, seq)) = q.cursor {
        sql.push_str(" AND (e.occurred_at, e.seq) > (?, ?)");
        args.push(SqlValue::Integer(at));
        args.push(SqlValue::Integer(seq.min(i64::MAX as u64) as i64));
    }
    sql.push_str(" ORDER BY e.occurred_at, e.seq LIMIT ?");
    args.push(SqlValue::Integer(q.limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut times = Vec::new();
    let items = stmt
        .query_map(params_from_iter(args.iter()), |row| {
            let seq: i64 = row.get(0)?;
            let occurred: i64 = row.get(1)?;
            let is_target: bool = row.get(2)?;
            let body = body_at(row, 3)?;
            Ok((seq, occurred, body, is_target))
        })?
        .map(|row| {
            let (seq, occurred, body, is_target) = row?;
            times.push(occurred);
            Ok(StoredEvent {
                seq: seq as u64,
                body: raw(body)?,
                relation: Some(if is_target {
                    Relation::Target
                } else {
                    Relation::Related
                }),
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let limit = q.limit;
    let cut_time = times.get(limit.wrapping_sub(1)).copied().unwrap_or(0);
    Ok(Page::from_overfetch(items, limit, |e| {
        Cursor::Time(cut_time, e.seq)
    }))
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        tenant: TenantScope::from_store(&row.get::<_, String>(1)?),
        scopes: scopes_from_text(&row.get::<_, String>(2)?),
        name: row.get(3)?,
        created_at: Timestamp::from_micros(row.get(4)?),
        revoked_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_micros),
    })
}

const KEY_COLUMNS: &str = "id, tenant, scopes, name, created_at, revoked_at";

pub(crate) fn key_by(
    conn: &Connection,
    condition: &str,
    arg: impl ToSql,
) -> rusqlite::Result<Option<ApiKey>> {
    conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE {condition}"
    ))?
    .query_row([arg], key_from_row)
    .optional()
}

pub(crate) fn list_keys(conn: &Connection, tenant: Option<&str>) -> rusqlite::Result<Vec<ApiKey>> {
    let sql = match tenant {
        Some(_) => {
            format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = ?1 ORDER BY created_at, id")
        }
        None => format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    match tenant {
        Some(t) => stmt.query_map([t], key_from_row)?.collect(),
        None => stmt.query_map([], key_from_row)?.collect(),
    }
}

pub(crate) fn tree_heads(conn: &Connection) -> rusqlite::Result<Vec<sealtrail_store::TreeHead>> {
    let mut stmt =
        conn.prepare_cached("SELECT tenant, size, root FROM tree_heads ORDER BY tenant")?;
    stmt.query_map([], |r| {
        Ok(sealtrail_store::TreeHead {
            tenant: Tenant::from_store(r.get::<_, String>(0)?),
            size: r.get::<_, i64>(1)? as u64,
            root: Root(hash_column(r, 2)?),
        })
    })?
    .collect()
}

fn hash_column(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let blob: Vec<u8> = row.get(i)?;
    blob.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "a hash is 32 bytes".into(),
        )
    })
}

pub(crate) fn tree_size(conn: &Connection, tenant: &Tenant) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("SELECT size FROM tree_heads WHERE tenant = ?1")?
        .query_row([tenant.as_str()], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

pub(crate) fn latest_checkpoint(
    conn: &Connection,
    tenant: &Tenant,
) -> rusqlite::Result<Option<sealtrail_store::Checkpoint>> {
    conn.prepare_cached(
        "SELECT tenant, size, root, issued_at, key_id, signature, note FROM checkpoints \
         WHERE tenant = ?1 ORDER BY issued_at DESC, size DESC LIMIT 1",
    )?
    .query_row([tenant.as_str()], checkpoint_from_row)
    .optional()
}

pub(crate) fn checkpoint_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<sealtrail_store::Checkpoint> {
    Ok(sealtrail_store::Checkpoint {
        tenant: Tenant::from_store(r.get::<_, String>(0)?),
        size: r.get::<_, i64>(1)? as u64,
        root: Root(hash_column(r, 2)?),
        issued_at: Timestamp::from_micros(r.get(3)?),
        key_id: r.get(4)?,
        signature: r.get(5)?,
        note: r.get(6)?,
    })
}

pub(crate) fn leaf_of(
    conn: &Connection,
    tenant: &Tenant,
    id: Uuid,
) -> rusqlite::Result<Option<(u64, LeafHash)>> {
    conn.prepare_cached("SELECT seq, hash FROM events WHERE id = ?1 AND tenant = ?2")?
        .query_row(
            rusqlite::params![id.as_bytes().as_slice(), tenant.as_str()],
            |r| Ok((r.get::<_, i64>(0)? as u64, LeafHash(hash_column(r, 1)?))),
        )
        .optional()
}

fn proof_error(e: sealtrail_ledger::merkle::ProofError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
}

pub(crate) fn inclusion_proof(
    conn: &Connection,
    tenant: &Tenant,
    index: u64,
    size: u64,
) -> rusqlite::Result<Option<Vec<[u8; 32]>>> {
    if index >= size || size > tree_size(conn, tenant)? {
        return Ok(None);
    }
    let nodes = crate::seal::DbNodes {
        conn,
        tenant: tenant.as_str(),
    };
    sealtrail_ledger::merkle::inclusion_proof(&nodes, index, size)
        .map(Some)
        .map_err(proof_error)
}

pub(crate) fn consistency_proof(
    conn: &Connection,
    tenant: &Tenant,
    from: u64,
    to: u64,
) -> rusqlite::Result<Option<Vec<[u8; 32]>>> {
    if from == 0 || from > to || to > tree_size(conn, tenant)? {
        return Ok(None);
    }
    let nodes = crate::seal::DbNodes {
        conn,
        tenant: tenant.as_str(),
    };
    sealtrail_ledger::merkle::consistency_proof(&nodes, from, to)
        .map(Some)
        .map_err(proof_error)
}
