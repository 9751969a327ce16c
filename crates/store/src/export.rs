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

use std::collections::VecDeque;

use sealtrail_model::Timestamp;
use tokio::sync::mpsc;

use crate::cursor::Cursor;
use crate::fields::EventFilter;
use crate::rows::{LogRow, RowBody, RowError, push_hex};
use crate::{Checkpoint, ListQuery, Order, Store, StoreError, Tenant};

/// The version written in an NDJSON export's header.
pub const EXPORT_VERSION: u64 = 2;

/// Events read per page: four list pages' worth, so that the fixed cost of a read (a
/// transaction, its round trips to PostgreSQL) is a small part of it.
pub(crate) const PAGE: usize = 4000;

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
/// events written so far after each. Reading pages and rendering the ones before overlap: the
/// store reads on its threads while blocking tasks render; an export of every event reads two
/// pages at once (on PostgreSQL, two connections: one backend's reading is a page's critical
/// path) and renders the two together.
pub async fn run(
    store: &dyn Store,
    format: Format,
    query: &ExportQuery,
    out: &mpsc::Sender<Vec<u8>>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<ExportSummary, ExportError> {
    run_selected(store, format, query, &|_| Ok(true), out, progress, None).await
}

/// Decides, for each event the filter matched, whether it is exported.
pub type Select<'a> = dyn Fn(&LogRow) -> Result<bool, RowError> + Sync + 'a;

/// [`run`], exporting only the matching events `select` keeps (a retention archive: the expired
/// events no legal hold keeps); in NDJSON the others are covered by nodes like any event the
/// filter left out. The positions of each page exported are given to `selected`, if given,
/// in the export's order, before the page is rendered (an export of any size holds no list of
/// them: its memory stays flat).
pub async fn run_selected(
    store: &dyn Store,
    format: Format,
    query: &ExportQuery,
    select: &Select<'_>,
    out: &mpsc::Sender<Vec<u8>>,
    progress: &mut (dyn FnMut(u64) + Send),
    mut selected: Option<&mut (dyn FnMut(Vec<u64>) + Send)>,
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
    send(out, head(format, query)?).await?;
    let list = |cursor| {
        store.list_rows(ListQuery {
            tenant: query.tenant.clone(),
            filter: query.filter.clone(),
            order: query.order,
            limit: PAGE,
            cursor,
        })
    };
    // An export of every event reads pages of consecutive positions while nothing was removed
    // between them: the page after the next is read at the same time, from the position it
    // would start at, and kept only if the next page ends just before it (else read again).
    let plain = query.filter.is_empty();
    let mut first = true;
    let mut fetched = VecDeque::new();
    if upto > 0 {
        fetched.push_back(list(None).await?);
    }
    while !fetched.is_empty() {
        // The pages held are rendered together (an export of every event reads two at once):
        // reading the next ones goes on beside all of them, never beside rendering alone.
        let mut done = false;
        let mut rows = Vec::new();
        let mut next_cursor = None;
        for page in fetched.drain(..) {
            done = page.next_cursor.is_none();
            next_cursor = page.next_cursor;
            let from = rows.len();
            rows.reserve(page.rows.len());
            for row in page.rows {
                if row.seq > upto {
                    if query.order == Order::Asc {
                        done = true;
                        break;
                    }
                    continue;
                }
                if !select(&row)? {
                    continue;
                }
                rows.push(row);
            }
            if let Some(selected) = selected.as_deref_mut()
                && rows.len() > from
            {
                selected(rows[from..].iter().map(|r| r.seq).collect());
            }
            if done {
                break;
            }
        }
        summary.rows += rows.len() as u64;
        let steps = match format {
            Format::Ndjson => {
                let mut steps = Vec::with_capacity(rows.len() * 2);
                for row in rows {
                    proof.gap_before(row.seq - 1, &mut steps);
                    steps.push(Step::Event(Box::new(row)));
                }
                if done {
                    proof.rest(&mut steps);
                }
                let (steps, nodes) = resolve_nodes(store, &query.tenant, steps).await?;
                summary.nodes += nodes;
                steps
            }
            _ => rows.into_iter().map(|r| Step::Event(Box::new(r))).collect(),
        };
        let leading_comma = !first && !steps.is_empty();
        first &= steps.is_empty();
        let render = render_parallel(format, steps, leading_comma);
        // Read ahead from the last page, while these render: one page, or two at once for an
        // export of every event.
        let ahead = if done { None } else { next_cursor };
        let next = async {
            let Some(cursor) = ahead else {
                return Ok::<_, StoreError>(Vec::new());
            };
            let Some(guess) = plain.then(|| cursor_after(cursor, query.order)).flatten() else {
                return Ok(vec![list(Some(cursor)).await?]);
            };
            let (next, after) = tokio::join!(list(Some(cursor)), list(Some(guess)));
            let next = next?;
            if next.next_cursor == Some(guess) && !ends(&next, query.order, upto) {
                Ok(vec![next, after?])
            } else {
                Ok(vec![next])
            }
        };
        let (parts, next) = tokio::join!(render, next);
        let parts = parts?;
        fetched.extend(next?);
        for part in parts {
            send(out, part).await?;
        }
        progress(summary.rows);
    }
    if format == Format::Json {
        send(
            out,
            if first {
                b"]\n".to_vec()
            } else {
                b"\n]\n".to_vec()
            },
        )
        .await?;
    }
    progress(summary.rows);
    Ok(summary)
}

/// Whether no page follows `page` in an export bounded at `upto`.
fn ends(page: &crate::RowPage, order: Order, upto: u64) -> bool {
    page.next_cursor.is_none()
        || (order == Order::Asc && page.rows.last().is_some_and(|r| r.seq >= upto))
}

/// Where the page after the one that starts at `cursor` starts, if that page holds [`PAGE`]
/// consecutive positions.
fn cursor_after(cursor: Cursor, order: Order) -> Option<Cursor> {
    let Cursor::Seq(seq) = cursor else {
        return None;
    };
    let step = PAGE as u64;
    match order {
        Order::Asc => seq.checked_add(step).map(Cursor::Seq),
        Order::Desc => seq.checked_sub(step).filter(|s| *s > 0).map(Cursor::Seq),
    }
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

/// Appends one event as a CSV row: null is an empty cell, `changes` and `metadata` JSON text.
/// Written field by field from the entry, borrowing its text; `scratch` holds what is printed
/// (numbers, times, JSON) one field at a time.
fn csv_row(
    w: &mut csv::Writer<&mut Vec<u8>>,
    row: &LogRow,
    scratch: &mut Vec<u8>,
) -> Result<(), ExportError> {
    use std::io::Write as _;
    let fail = |err: &dyn std::fmt::Display| ExportError::Render {
        seq: row.seq,
        detail: err.to_string(),
    };
    let hash = match &row.body {
        RowBody::Legacy { .. } => row.event()?.hash,
        _ => row.hash.map(|h| h.to_hex()).unwrap_or_default(),
    };
    row.with_source(|s| -> Result<(), ExportError> {
        let (v, values) = (s.view, s.personal);
        let ctx = v.context.as_ref();
        let field = |w: &mut csv::Writer<&mut Vec<u8>>, text: Option<&str>| {
            w.write_field(text.unwrap_or_default())
                .map_err(|err| fail(&err))
        };
        let mut printed =
            |w: &mut csv::Writer<&mut Vec<u8>>,
             print: &mut dyn FnMut(&mut Vec<u8>) -> std::io::Result<()>| {
                scratch.clear();
                print(scratch).map_err(|err| fail(&err))?;
                w.write_field(&scratch[..]).map_err(|err| fail(&err))
            };
        printed(w, &mut |b| write!(b, "{}", v.id.hyphenated()))?;
        printed(w, &mut |b| write!(b, "{}", v.seq))?;
        for micros in [v.recorded_at, v.occurred_at] {
            printed(w, &mut |b| {
                Timestamp::from_micros(micros).push_rfc3339(b);
                Ok(())
            })?;
        }
        field(w, Some(v.tenant))?;
        field(w, Some(v.action))?;
        field(w, Some(v.category.as_str()))?;
        field(w, v.event_type)?;
        field(w, Some(v.outcome.as_str()))?;
        field(w, v.error)?;
        field(w, Some(v.actor_id(values)))?;
        field(w, Some(v.actor_type.as_str()))?;
        field(w, values.actor_name)?;
        field(w, v.target.map(|t| t.target_type))?;
        field(w, v.target_id(values))?;
        field(w, v.target_name(values))?;
        field(w, v.organization.map(|(id, _)| id))?;
        field(w, ctx.and(values.ip))?;
        field(w, ctx.and(values.user_agent))?;
        field(w, ctx.and_then(|c| c.correlation_id))?;
        field(w, ctx.and_then(|c| c.endpoint))?;
        field(w, ctx.and_then(|c| c.method))?;
        printed(w, &mut |b| match ctx.and_then(|c| c.status_code) {
            Some(code) => write!(b, "{code}"),
            None => Ok(()),
        })?;
        printed(w, &mut |b| match ctx.and_then(|c| c.duration_ms()) {
            Some(ms) => write!(b, "{ms}"),
            None => Ok(()),
        })?;
        printed(w, &mut |b| {
            v.served_changes(values)
                .write_json(b)
                .map_err(std::io::Error::other)
        })?;
        printed(w, &mut |b| match v.served_metadata() {
            Some(m) if !m.is_null() => m.write_json(b).map_err(std::io::Error::other),
            _ => Ok(()),
        })?;
        field(w, Some(hash.as_str()))?;
        w.write_record(None::<&[u8]>).map_err(|err| fail(&err))
    })?
}

/// One line of a verifiable export, in order.
enum Step {
    /// A perfect node covering left-out positions, with its hash once fetched.
    Node(u32, u64, [u8; 32]),
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
                steps.extend(blocks(self.next, index).map(|(l, i)| Step::Node(l, i, [0; 32])));
                self.next = index + 1;
            }
            Order::Desc => {
                let gap: Vec<_> = blocks(index + 1, self.next).collect();
                steps.extend(
                    gap.into_iter()
                        .rev()
                        .map(|(l, i)| Step::Node(l, i, [0; 32])),
                );
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
                steps.extend(
                    gap.into_iter()
                        .rev()
                        .map(|(l, i)| Step::Node(l, i, [0; 32])),
                );
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

/// Fetches the hashes of the nodes a page's lines name, in one call; returns the lines with
/// their hashes and how many nodes there were.
async fn resolve_nodes(
    store: &dyn Store,
    tenant: &Tenant,
    steps: Vec<Step>,
) -> Result<(Vec<Step>, u64), ExportError> {
    let wanted: Vec<(u32, u64)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Node(l, i, _) => Some((*l, *i)),
            Step::Event(_) => None,
        })
        .collect();
    let count = wanted.len() as u64;
    if wanted.is_empty() {
        return Ok((steps, 0));
    }
    let mut hashes = store.tree_nodes(tenant, wanted).await?.into_iter();
    let steps = steps
        .into_iter()
        .map(|step| match step {
            Step::Node(level, index, _) => hashes
                .next()
                .flatten()
                .map(|hash| Step::Node(level, index, hash))
                .ok_or(ExportError::MissingNode { level, index }),
            event => Ok(event),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((steps, count))
}

/// Renders a page's lines on blocking threads, one part per core (rendering events is most
/// of an export's work); the parts come back in order, each to be written as it is (joining
/// them would copy half a page again).
async fn render_parallel(
    format: Format,
    mut steps: Vec<Step>,
    leading_comma: bool,
) -> Result<Vec<Vec<u8>>, ExportError> {
    let parts = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let per = steps.len().div_ceil(parts).max(64);
    let mut tasks = Vec::with_capacity(parts);
    let mut comma = leading_comma;
    while !steps.is_empty() {
        let rest = steps.split_off(per.min(steps.len()));
        let part = std::mem::replace(&mut steps, rest);
        let lead = comma;
        comma = true;
        tasks.push(tokio::task::spawn_blocking(move || {
            render(format, part, lead)
        }));
    }
    let mut rendered = Vec::with_capacity(tasks.len());
    for task in tasks {
        rendered.push(task.await.map_err(|e| ExportError::Render {
            seq: 0,
            detail: format!("the rendering task failed: {e}"),
        })??);
    }
    Ok(rendered)
}

/// Renders a page's lines in the format; `leading_comma` when JSON items came before.
fn render(format: Format, steps: Vec<Step>, leading_comma: bool) -> Result<Vec<u8>, ExportError> {
    // Room for a typical line, so that the buffer rarely grows (and moves) while it fills.
    let per_line = match format {
        Format::Ndjson => 2048,
        _ => 1280,
    };
    let mut out = Vec::with_capacity(steps.len() * per_line);
    if format == Format::Csv {
        let mut scratch = Vec::with_capacity(1024);
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(&mut out);
        for step in &steps {
            if let Step::Event(row) = step {
                csv_row(&mut w, row, &mut scratch)?;
            }
        }
        w.flush().map_err(|e| csv_error(e.into()))?;
        drop(w);
        return Ok(out);
    }
    let mut comma = leading_comma;
    let mut digests = Vec::new();
    for step in steps {
        match (format, step) {
            (_, Step::Node(level, index, hash)) => {
                out.extend_from_slice(
                    format!("{{\"node\":{{\"level\":{level},\"index\":{index},\"hash\":\"")
                        .as_bytes(),
                );
                push_hex(&mut out, &hash);
                out.extend_from_slice(b"\"}}\n");
            }
            (Format::Ndjson, Step::Event(row)) => row.render_sealed_into(&mut out, &mut digests)?,
            (_, Step::Event(row)) => {
                out.extend_from_slice(if comma { b",\n" } else { b"\n" });
                comma = true;
                row.render_into(&mut out)?;
            }
        }
    }
    Ok(out)
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
