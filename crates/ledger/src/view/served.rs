//! The event an entry seals, written as JSON straight from the entry's bytes: the same text
//! `serde_json` writes for [`EntryView::to_event`]'s event, without building it. Exports and
//! archives render millions of events; building each as owned strings and JSON values only to
//! serialise it at once was most of their work, and serialising through serde's generic
//! machinery most of the rest (a call per fragment of every string, each byte of it looked up
//! to see whether it needs escaping).
//!
//! Every part is written field for field as its counterpart in `sealtrail_model` serialises
//! (same names, same order, the same `null`s, strings escaped as `serde_json` escapes them), so
//! no reader can tell the two apart; the crate's tests compare both renderings over random
//! events.

use std::io::Write as _;

use sealtrail_model::Timestamp;
use sealtrail_model::json::{push_str, push_utf8};
use serde_json::Number;
use uuid::Uuid;

use super::{ChangeValue, DecodeError, EntryView, MAX_DEPTH, PersonalValues, REDACTED, Reader};

/// The event an entry seals, as served; see [`EntryView::served`].
#[derive(Debug, Clone, Copy)]
pub struct Served<'v, 'a> {
    view: &'v EntryView<'a>,
    values: &'v PersonalValues<'v>,
    hash: &'v str,
}

/// The `changes` of an entry as served; see [`EntryView::served_changes`].
#[derive(Debug, Clone, Copy)]
pub struct ServedChanges<'v, 'a> {
    view: &'v EntryView<'a>,
    values: &'v PersonalValues<'v>,
}

/// One JSON value still in its canonical encoding, written as it is read.
#[derive(Debug, Clone, Copy)]
pub struct EncodedJson<'b> {
    bytes: &'b [u8],
}

impl EncodedJson<'_> {
    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        matches!(self.bytes.first(), None | Some(0))
    }

    /// Appends the value's JSON text to `out`, as `serde_json` writes the value.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        write_value(
            &mut Reader {
                bytes: self.bytes,
                at: 0,
            },
            out,
            0,
        )
    }
}

impl<'a> EntryView<'a> {
    /// The event this entry seals as served, with `values` put back where they belong and
    /// `hash` as its leaf hash: [`Served::write_json`] writes exactly the JSON of
    /// [`EntryView::to_event`]'s event, borrowing instead of copying.
    pub fn served<'v>(&'v self, values: &'v PersonalValues<'v>, hash: &'v str) -> Served<'v, 'a> {
        Served {
            view: self,
            values,
            hash,
        }
    }

    /// The event's `changes` as served (what [`EntryView::served`] writes for them).
    pub fn served_changes<'v>(&'v self, values: &'v PersonalValues<'v>) -> ServedChanges<'v, 'a> {
        ServedChanges { view: self, values }
    }

    /// The event's `metadata` as served, if it has any.
    pub fn served_metadata(&self) -> Option<EncodedJson<'a>> {
        self.metadata.map(|bytes| EncodedJson { bytes })
    }
}

impl Served<'_, '_> {
    /// The event's JSON as a string ([`Served::write_json`]).
    pub fn to_json(&self) -> Result<String, DecodeError> {
        let mut out = Vec::with_capacity(1024);
        self.write_json(&mut out)?;
        Ok(String::from_utf8(out).expect("every string written was checked to be UTF-8"))
    }

    /// Appends the event's JSON to `out`. An error means a value kept beside the entry is not
    /// what it must be (an entry's own values were checked when it was parsed); `out` then
    /// holds part of the event.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let (v, values) = (self.view, self.values);
        out.extend_from_slice(b"{\"id\":\"");
        let mut id = Uuid::encode_buffer();
        out.extend_from_slice(v.id.hyphenated().encode_lower(&mut id).as_bytes());
        out.extend_from_slice(b"\",\"tenant\":");
        push_str(out, v.tenant);
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(v.seq).as_bytes());
        out.extend_from_slice(b",\"recorded_at\":");
        time(out, v.recorded_at);
        out.extend_from_slice(b",\"occurred_at\":");
        time(out, v.occurred_at);
        out.extend_from_slice(b",\"action\":");
        push_str(out, v.action);
        out.extend_from_slice(b",\"category\":\"");
        out.extend_from_slice(v.category.as_str().as_bytes());
        out.extend_from_slice(b"\",\"event_type\":");
        opt_str(out, v.event_type);
        out.extend_from_slice(b",\"outcome\":\"");
        out.extend_from_slice(v.outcome.as_str().as_bytes());
        out.extend_from_slice(b"\",\"error\":");
        opt_str(out, v.error);
        out.extend_from_slice(b",\"actor\":{\"id\":");
        push_str(out, v.actor_id(values));
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(v.actor_type.as_str().as_bytes());
        out.extend_from_slice(b"\",\"name\":");
        opt_str(out, values.actor_name);
        out.extend_from_slice(b",\"email\":");
        opt_str(out, values.actor_email);
        out.extend_from_slice(b"},\"target\":");
        match v.target {
            None => out.extend_from_slice(b"null"),
            Some(t) => {
                out.extend_from_slice(b"{\"type\":");
                push_str(out, t.target_type);
                out.extend_from_slice(b",\"id\":");
                push_str(out, v.target_id(values).unwrap_or(REDACTED));
                out.extend_from_slice(b",\"name\":");
                opt_str(out, v.target_name(values));
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"organization\":");
        match v.organization {
            None => out.extend_from_slice(b"null"),
            Some((id, name)) => {
                out.extend_from_slice(b"{\"id\":");
                push_str(out, id);
                out.extend_from_slice(b",\"name\":");
                opt_str(out, name);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"context\":");
        match v.context {
            None => out.extend_from_slice(b"null"),
            Some(c) => {
                let fields = [
                    ("{\"ip\":", values.ip),
                    (",\"user_agent\":", values.user_agent),
                    (",\"session_id\":", c.session_id),
                    (",\"correlation_id\":", c.correlation_id),
                    (",\"endpoint\":", c.endpoint),
                    (",\"method\":", c.method),
                ];
                for (name, value) in fields {
                    out.extend_from_slice(name.as_bytes());
                    opt_str(out, value);
                }
                out.extend_from_slice(b",\"status_code\":");
                match c.status_code {
                    Some(code) => {
                        out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes())
                    }
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"duration_ms\":");
                match c.duration.filter(|d| matches!(d.first(), Some(3..=5))) {
                    Some(bytes) => EncodedJson { bytes }.write_json(out)?,
                    None => out.extend_from_slice(b"null"),
                }
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"changes\":");
        v.served_changes(values).write_json(out)?;
        out.extend_from_slice(b",\"related\":");
        related(out, v.related)?;
        out.extend_from_slice(b",\"metadata\":");
        match v.served_metadata() {
            Some(metadata) => metadata.write_json(out)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"hash\":");
        push_str(out, self.hash);
        out.push(b'}');
        Ok(())
    }
}

impl ServedChanges<'_, '_> {
    /// Appends the changes' JSON array to `out`; see [`Served::write_json`] for errors.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let view = self.view;
        let changed_by = view.actor_id(self.values);
        let (mut result, mut first) = (Ok(()), true);
        out.push(b'[');
        view.each_change(self.values, |field, old, new| {
            if result.is_err() {
                return;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"{\"field\":");
            push_str(out, field);
            out.extend_from_slice(b",\"old_value\":");
            result = change_value(out, old);
            out.extend_from_slice(b",\"new_value\":");
            if result.is_ok() {
                result = change_value(out, new);
            }
            out.extend_from_slice(b",\"changed_at\":");
            time(out, view.occurred_at);
            out.extend_from_slice(b",\"changed_by\":");
            push_str(out, changed_by);
            out.push(b'}');
        });
        out.push(b']');
        result
    }
}

/// A timestamp (microseconds since the epoch) as a JSON string.
fn time(out: &mut Vec<u8>, micros: i64) {
    out.push(b'"');
    Timestamp::from_micros(micros).push_rfc3339(out);
    out.push(b'"');
}

/// A string, or `null`.
fn opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => push_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// A change value: encoded, or erased (served as [`REDACTED`]).
fn change_value(out: &mut Vec<u8>, value: ChangeValue<'_>) -> Result<(), DecodeError> {
    match value {
        ChangeValue::Encoded(bytes) => EncodedJson { bytes }.write_json(out),
        ChangeValue::Redacted => {
            push_str(out, REDACTED);
            Ok(())
        }
    }
}

/// The entry's `related` section, as an array of `{"type", "id"}`.
fn related(out: &mut Vec<u8>, section: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader {
        bytes: section,
        at: 0,
    };
    out.push(b'[');
    for index in 0..r.u32()? {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"type\":");
        text(&mut r, out)?;
        out.extend_from_slice(b",\"id\":");
        text(&mut r, out)?;
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

/// Reads a string and writes it as JSON, checking it is UTF-8 (ASCII, nearly all text, is
/// known valid from the scan that escapes it).
fn text(r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let at = r.at;
    if push_utf8(out, r.text()?) {
        Ok(())
    } else {
        Err(DecodeError {
            what: "a string is not UTF-8",
            at,
        })
    }
}

/// Reads one encoded JSON value and writes it. Values a personal form holds were not checked
/// when the entry was parsed, so everything is checked here: tags, lengths, UTF-8, depth.
fn write_value(r: &mut Reader<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return r.fail("JSON nests too deep");
    }
    match r.u8()? {
        1 => out.extend_from_slice(b"false"),
        2 => out.extend_from_slice(b"true"),
        3 => out.extend_from_slice(itoa::Buffer::new().format(r.i64()?).as_bytes()),
        4 => out.extend_from_slice(itoa::Buffer::new().format(r.u64()?).as_bytes()),
        5 => match Number::from_f64(f64::from_bits(r.u64()?)) {
            // serde_json prints a float's shortest round-trip digits, as `Number` displays.
            Some(n) => write!(out, "{n}").expect("writing to memory"),
            None => out.extend_from_slice(b"null"),
        },
        6 => text(r, out)?,
        7 => {
            out.push(b'[');
            for index in 0..r.u32()? {
                if index > 0 {
                    out.push(b',');
                }
                write_value(r, out, depth + 1)?;
            }
            out.push(b']');
        }
        8 => {
            out.push(b'{');
            for index in 0..r.u32()? {
                if index > 0 {
                    out.push(b',');
                }
                text(r, out)?;
                out.push(b':');
                write_value(r, out, depth + 1)?;
            }
            out.push(b'}');
        }
        _ => out.extend_from_slice(b"null"),
    }
    Ok(())
}
