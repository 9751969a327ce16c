//! Exports: every event of a tenant matching a filter, as CSV, a JSON array or verifiable
//! NDJSON, written page by page into a bounded channel so that an export of any size runs at
//! constant memory. One implementation over the [`Store`] trait serves `GET
//! /audit-logs/export` and `sealtrail export` on every backend.
//!
//! An export is a snapshot: it holds the matching events with `seq` up to a bound fixed when it
//! starts (the tree head, or for NDJSON the signed checkpoint it is proven against), so events
//! ingested meanwhile, and the export's own `audit.exported` event, are not part of it.
//!
//! **The verifiable NDJSON export** (`docs/integrity.md` §10): a header line, the checkpoint,
//! then, in the export's order, each matching event with its seal material and, for every run
//! of positions the filter left out, the perfect Merkle nodes that cover it
//! (`{"node":{"level","index","hash"}}`). Events and nodes together cover the checkpoint's tree
//! exactly once, so a verifier recomputes each event's leaf, folds leaves and nodes into the
//! root and compares it with the signed checkpoint: a multiproof whose size is that of the gaps
//! (O(k log(n/k)) nodes for k events of n), nothing for an unfiltered export.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::fields::EventFilter;
use crate::rows::{LogRow, RowError};
use crate::{Checkpoint, ListQuery, Order, Store, StoreError, Tenant};

/// The version written in an NDJSON export's header.
pub const EXPORT_VERSION: u64 = 2;

/// Events read per page (the largest list page).
const PAGE: usize = 1000;

/// The CSV columns, in order (SPEC §4.3).
pub const CSV_COLUMNS: [&str; 27] = [
    "id",
    "seq",
    "recorded_at",
    "occurred_at",
    "tenant",
    "action",
    "category",
    "event_type",
    "outcome",
    "error",
    "actor_id",
    "actor_type",
    "actor_name",
    "target_type",
    "target_id",
    "target_name",
    "organization_id",
    "ip",
    "user_agent",
    "correlation_id",
    "endpoint",
    "method",
    "status_code",
    "duration_ms",
    "changes",
    "metadata",
    "hash",
];

/// An export's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON array of events.
    Json,
    /// One event per line, with the proof material offline verification needs.
    Ndjson,
}

impl Format {
    /// Parses `csv`, `json` or `ndjson`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }

    /// The wire name, also the file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Ndjson => "ndjson",
        }
    }

    /// The content type served.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportQuery {
    /// The tenant.
    pub tenant: Tenant,
    /// The list filters.
    pub filter: EventFilter,
    /// Rows by `seq` ascending (the default of exports) or descending.
    pub order: Order,
    /// Only events with `seq` up to this (the tree head when the export starts).
    pub upto: u64,
    /// For NDJSON, the signed checkpoint the export is proven against; events beyond its size
    /// are left out. `None` exports no event (nothing vouches for them).
    pub checkpoint: Option<Checkpoint>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Events written.
    pub rows: u64,
    /// Merkle nodes written (NDJSON).
    pub nodes: u64,
    /// The bound on `seq` the export used.
    pub upto: u64,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event cannot be read (`sealtrail verify` names it).
    #[error(transparent)]
    Row(#[from] RowError),
    /// A node the proof needs is not stored.
    #[error("the tree node at level {level}, index {index} is not stored")]
    MissingNode {
        /// Its level.
        level: u32,
        /// Its index.
        index: u64,
    },
    /// A stored event is not the JSON of an event.
    #[error("the stored event at seq {seq} cannot be rendered: {detail}")]
    Render {
        /// Its position.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
    /// Whoever read the export went away.
    #[error("the export's reader went away")]
    Closed,
}

/// Writes the export into `out` one chunk per page, calling `progress` with the number of
/// events written so far after each.
pub async fn run(
    store: &dyn Store,
    format: Format,
    query: &ExportQuery,
    out: &mpsc::Sender<Vec<u8>>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<ExportSummary, ExportError> {
    let upto = match format {
        Format::Ndjson => query.checkpoint.as_ref().map_or(0, |c| c.size),
        _ => query.upto,
    };
    let mut summary = ExportSummary {
        rows: 0,
        nodes: 0,
        upto,
    };
    let mut proof = Coverage::new(query.order, upto);
    let mut chunk = head(format, query)?;
    let mut cursor = None;
    let mut first = true;
    let mut done = upto == 0;
    while !done {
        let page = store
            .list(ListQuery {
                tenant: query.tenant.clone(),
                filter: query.filter.clone(),
                order: query.order,
                limit: PAGE,
                cursor: cursor.take(),
            })
            .await?;
        done = page.next_cursor.is_none();
        let mut items = Vec::with_capacity(page.items.len());
        for item in page.items {
            if item.seq > upto {
                if query.order == Order::Asc {
                    done = true;
                    break;
                }
                continue;
            }
            items.push(item);
        }
        match format {
            Format::Csv => {
                for item in &items {
                    csv_row(&mut chunk, item.seq, item.body.get())?;
                }
            }
            Format::Json => {
                for item in &items {
                    chunk.extend_from_slice(if first { b"\n" } else { b",\n" });
                    chunk.extend_from_slice(item.body.get().as_bytes());
                    first = false;
                }
            }
            Format::Ndjson => {
                let seqs = items.iter().map(|i| i.seq).collect();
                let rows = store.log_rows(&query.tenant, seqs).await?;
                let mut steps = Vec::with_capacity(rows.len() * 2);
                let ordered: Box<dyn Iterator<Item = LogRow>> = match query.order {
                    Order::Asc => Box::new(rows.into_iter()),
                    Order::Desc => Box::new(rows.into_iter().rev()),
                };
                for row in ordered {
                    proof.gap_before(row.seq - 1, &mut steps);
                    steps.push(Step::Event(Box::new(row)));
                }
                if done {
                    proof.rest(&mut steps);
                }
                summary.nodes += write_steps(store, &query.tenant, steps, &mut chunk).await?;
            }
        }
        summary.rows += items.len() as u64;
        cursor = page.next_cursor;
        if done {
            break;
        }
        send(out, std::mem::take(&mut chunk)).await?;
        progress(summary.rows);
    }
    match format {
        Format::Json => chunk.extend_from_slice(if first { b"]\n" } else { b"\n]\n" }),
        Format::Csv | Format::Ndjson => {}
    }
    send(out, chunk).await?;
    progress(summary.rows);
    Ok(summary)
}

async fn send(out: &mpsc::Sender<Vec<u8>>, chunk: Vec<u8>) -> Result<(), ExportError> {
    if chunk.is_empty() {
        return Ok(());
    }
    out.send(chunk).await.map_err(|_| ExportError::Closed)
}

/// What comes before the first event: the CSV header row, the array's bracket, or the NDJSON
/// header and checkpoint lines.
fn head(format: Format, query: &ExportQuery) -> Result<Vec<u8>, ExportError> {
    let mut out = Vec::with_capacity(1 << 20);
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(CSV_COLUMNS).map_err(csv_error)?;
            w.flush().map_err(|e| csv_error(e.into()))?;
        }
        Format::Json => out.push(b'['),
        Format::Ndjson => {
            let header = serde_json::json!({
                "sealtrail_export": EXPORT_VERSION,
                "tenant": query.tenant.as_str(),
                "entry_version": 1,
                "order": match query.order { Order::Asc => "asc", Order::Desc => "desc" },
                "filtered": !query.filter.is_empty(),
            });
            out.extend_from_slice(header.to_string().as_bytes());
            out.push(b'\n');
            if let Some(cp) = &query.checkpoint {
                out.extend_from_slice(checkpoint_line(cp).as_bytes());
                out.push(b'\n');
            }
        }
    }
    Ok(out)
}

/// A checkpoint as an export (and the witness file) writes it.
pub fn checkpoint_line(cp: &Checkpoint) -> String {
    serde_json::json!({"checkpoint": {
        "tenant": cp.tenant.as_str(), "size": cp.size, "root_hash": cp.root.to_hex(),
        "issued_at": cp.issued_at, "key_id": cp.key_id, "signature": cp.signature, "note": cp.note,
    }})
    .to_string()
}

fn csv_error(e: csv::Error) -> ExportError {
    ExportError::Render {
        seq: 0,
        detail: e.to_string(),
    }
}

/// The fields of a served event a CSV row needs, borrowed from its JSON.
#[derive(Deserialize)]
struct CsvEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    recorded_at: Cow<'a, str>,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    #[serde(borrow)]
    tenant: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    category: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow)]
    actor: CsvParty<'a>,
    #[serde(borrow)]
    target: Option<CsvParty<'a>>,
    #[serde(borrow)]
    organization: Option<CsvParty<'a>>,
    #[serde(borrow)]
    context: Option<CsvContext<'a>>,
    #[serde(borrow)]
    changes: &'a RawValue,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
}

#[derive(Deserialize)]
struct CsvParty<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CsvContext<'a> {
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    correlation_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    endpoint: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    status_code: Option<u16>,
    #[serde(borrow)]
    duration_ms: Option<&'a RawValue>,
}

/// Appends one event as a CSV row: null is an empty cell, `changes` and `metadata` JSON text.
fn csv_row<'a>(out: &mut Vec<u8>, seq: u64, body: &'a str) -> Result<(), ExportError> {
    let e: CsvEvent<'a> = serde_json::from_str(body).map_err(|err| ExportError::Render {
        seq,
        detail: err.to_string(),
    })?;
    let opt = |v: &Option<Cow<'_, str>>| v.as_deref().unwrap_or("").to_owned();
    let seq_text = e.seq.to_string();
    let status = e
        .context
        .as_ref()
        .and_then(|c| c.status_code)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let ctx = |f: for<'c> fn(&'c CsvContext<'a>) -> Option<&'c str>| {
        e.context.as_ref().and_then(f).unwrap_or("").to_owned()
    };
    let metadata = match e.metadata {
        Some(m) if m.get() != "null" => m.get(),
        _ => "",
    };
    let record: [String; 27] = [
        e.id.to_string(),
        seq_text,
        e.recorded_at.to_string(),
        e.occurred_at.to_string(),
        e.tenant.to_string(),
        e.action.to_string(),
        e.category.to_string(),
        opt(&e.event_type),
        e.outcome.to_string(),
        opt(&e.error),
        e.actor.id.to_string(),
        opt(&e.actor.kind),
        opt(&e.actor.name),
        e.target
            .as_ref()
            .and_then(|t| t.kind.as_deref())
            .unwrap_or("")
            .to_owned(),
        e.target
            .as_ref()
            .map_or(String::new(), |t| t.id.to_string()),
        e.target.as_ref().map_or(String::new(), |t| opt(&t.name)),
        e.organization
            .as_ref()
            .map_or(String::new(), |o| o.id.to_string()),
        ctx(|c| c.ip.as_deref()),
        ctx(|c| c.user_agent.as_deref()),
        ctx(|c| c.correlation_id.as_deref()),
        ctx(|c| c.endpoint.as_deref()),
        ctx(|c| c.method.as_deref()),
        status,
        ctx(|c| c.duration_ms.map(RawValue::get).filter(|d| *d != "null")),
        e.changes.get().to_owned(),
        metadata.to_owned(),
        e.hash.to_string(),
    ];
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    w.write_record(&record).map_err(|err| ExportError::Render {
        seq,
        detail: err.to_string(),
    })?;
    w.flush().map_err(|err| ExportError::Render {
        seq,
        detail: err.to_string(),
    })
}

/// One line of a verifiable export, in order.
enum Step {
    /// A perfect node covering left-out positions.
    Node(u32, u64),
    /// An exported event.
    Event(Box<LogRow>),
}

/// Which positions of the checkpoint's tree the lines written so far cover: `[0, next)` in
/// ascending order, `[next, size)` in descending order.
struct Coverage {
    order: Order,
    size: u64,
    next: u64,
}

impl Coverage {
    fn new(order: Order, size: u64) -> Self {
        let next = match order {
            Order::Asc => 0,
            Order::Desc => size,
        };
        Self { order, size, next }
    }

    /// Adds the nodes covering the positions between what is covered and leaf `index`.
    fn gap_before(&mut self, index: u64, steps: &mut Vec<Step>) {
        match self.order {
            Order::Asc => {
                steps.extend(blocks(self.next, index).map(|(l, i)| Step::Node(l, i)));
                self.next = index + 1;
            }
            Order::Desc => {
                let gap: Vec<_> = blocks(index + 1, self.next).collect();
                steps.extend(gap.into_iter().rev().map(|(l, i)| Step::Node(l, i)));
                self.next = index;
            }
        }
    }

    /// Adds the nodes covering everything not covered yet.
    fn rest(&mut self, steps: &mut Vec<Step>) {
        match self.order {
            Order::Asc => self.gap_before(self.size, steps),
            Order::Desc => {
                let gap: Vec<_> = blocks(0, self.next).collect();
                steps.extend(gap.into_iter().rev().map(|(l, i)| Step::Node(l, i)));
                self.next = 0;
            }
        }
    }
}

/// The maximal aligned perfect nodes `(level, index)` covering leaves `start..end`, left to
/// right. Every aligned perfect range inside a tree is one of its nodes (RFC 9162 trees are
/// built from the left), so these are nodes of any tree of `end` or more leaves.
pub fn blocks(start: u64, end: u64) -> impl Iterator<Item = (u32, u64)> {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let remaining = end - at;
        let mut level = 63 - remaining.leading_zeros();
        if at != 0 {
            level = level.min(at.trailing_zeros());
        }
        let node = (level, at >> level);
        at += 1u64 << level;
        Some(node)
    })
}

/// Writes a page's lines, fetching the nodes they name in one call; returns how many nodes.
async fn write_steps(
    store: &dyn Store,
    tenant: &Tenant,
    steps: Vec<Step>,
    out: &mut Vec<u8>,
) -> Result<u64, ExportError> {
    let wanted: Vec<(u32, u64)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Node(l, i) => Some((*l, *i)),
            Step::Event(_) => None,
        })
        .collect();
    let count = wanted.len() as u64;
    let hashes = if wanted.is_empty() {
        Vec::new()
    } else {
        store.tree_nodes(tenant, wanted).await?
    };
    let mut hashes = hashes.into_iter();
    for step in steps {
        match step {
            Step::Node(level, index) => {
                let hash = hashes
                    .next()
                    .flatten()
                    .ok_or(ExportError::MissingNode { level, index })?;
                out.extend_from_slice(
                    format!(
                        "{{\"node\":{{\"level\":{level},\"index\":{index},\"hash\":\"{}\"}}}}\n",
                        hex::encode(hash)
                    )
                    .as_bytes(),
                );
            }
            Step::Event(row) => {
                let body = row.render()?;
                let (prev, personal) = row.seal()?;
                let open = body.trim_end().strip_suffix('}').unwrap_or(&body);
                out.extend_from_slice(open.as_bytes());
                out.extend_from_slice(
                    format!(
                        ",\"seal\":{{\"prev\":\"{}\",\"personal\":\"{}\"}}}}\n",
                        hex::encode(prev),
                        hex::encode(personal)
                    )
                    .as_bytes(),
                );
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_a_range_with_aligned_maximal_nodes() {
        assert_eq!(blocks(0, 0).count(), 0);
        assert_eq!(blocks(0, 8).collect::<Vec<_>>(), [(3, 0)]);
        assert_eq!(blocks(0, 7).collect::<Vec<_>>(), [(2, 0), (1, 2), (0, 6)]);
        assert_eq!(blocks(3, 8).collect::<Vec<_>>(), [(0, 3), (2, 1)]);
        assert_eq!(blocks(5, 6).collect::<Vec<_>>(), [(0, 5)]);
        // Every position of every small range is covered exactly once, in order, by nodes
        // inside the range.
        for start in 0..40u64 {
            for end in start..40u64 {
                let mut at = start;
                for (level, index) in blocks(start, end) {
                    assert_eq!(index << level, at, "{start}..{end}");
                    at += 1 << level;
                }
                assert_eq!(at, end, "{start}..{end}");
            }
        }
    }
}
