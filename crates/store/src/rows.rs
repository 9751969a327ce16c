//! A stored event of the log, as every backend reads it back, and what can be made of it: the
//! fields the declarations read ([`LogRow::with_source`]) and the JSON served
//! ([`LogRow::render`]).

use sealtrail_ledger::LeafHash;
use sealtrail_ledger::entry::{GENESIS, PersonalDigests, encode_entry};
use sealtrail_ledger::merkle::Hash;
use sealtrail_ledger::personal::Slot;
use sealtrail_ledger::view::{EntryView, PersonalValues};
use sealtrail_model::Event;

use crate::fields::Source;

/// How one event is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowBody {
    /// The sealed entry (the event's only copy) and the erasable personal values beside it.
    Entry {
        /// The canonical entry.
        entry: Vec<u8>,
        /// The personal values in their stored form, if any.
        values: Option<Vec<u8>>,
    },
    /// An event written before entries were stored: its served JSON, the stored form of its
    /// personal digests and its predecessor's leaf hash.
    Legacy {
        /// The event as served.
        json: String,
        /// [`PersonalDigests::to_bytes`].
        digests: Option<Vec<u8>>,
        /// The predecessor's leaf hash.
        prev: Option<Vec<u8>>,
    },
    /// An event removed by retention: its place (position, id, leaf hash) is kept, its content
    /// is not. Only the verify walk reads such rows; every read of events leaves them out.
    Gone,
}

/// One event of a tenant's log as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Its position.
    pub seq: u64,
    /// The leaf hash stored beside it.
    pub hash: Option<LeafHash>,
    /// The event.
    pub body: RowBody,
}

/// Why a stored row cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored event at seq {seq} cannot be read: {what}")]
pub struct RowError {
    /// Its position.
    pub seq: u64,
    /// What is wrong.
    pub what: String,
}

impl LogRow {
    fn error(&self, what: impl std::fmt::Display) -> RowError {
        RowError {
            seq: self.seq,
            what: what.to_string(),
        }
    }

    /// Calls `f` with the event as the field declarations read it. A row written before entries
    /// were stored is encoded again from its JSON first.
    pub fn with_source<T>(&self, f: impl FnOnce(Source<'_, '_>) -> T) -> Result<T, RowError> {
        match &self.body {
            RowBody::Entry { entry, values } => {
                let view = EntryView::parse(entry).map_err(|e| self.error(e))?;
                let personal = self.personal(values.as_deref())?;
                Ok(f(Source {
                    view: &view,
                    personal: &personal,
                }))
            }
            RowBody::Legacy {
                json,
                digests,
                prev,
            } => {
                let event: Event = serde_json::from_str(json).map_err(|e| self.error(e))?;
                let digests = digests
                    .as_deref()
                    .and_then(PersonalDigests::from_bytes)
                    .unwrap_or_default();
                let prev = prev
                    .as_deref()
                    .and_then(|p| p.try_into().ok())
                    .unwrap_or(GENESIS);
                let entry = encode_entry(&event, &digests, &prev);
                let view = EntryView::parse(&entry).map_err(|e| self.error(e))?;
                let personal = PersonalValues::of(&event, &digests);
                Ok(f(Source {
                    view: &view,
                    personal: &personal,
                }))
            }
            RowBody::Gone => Err(self.error("the event was removed by retention")),
        }
    }

    /// The personal values kept beside an entry, in their stored form.
    fn personal<'v>(&self, values: Option<&'v [u8]>) -> Result<PersonalValues<'v>, RowError> {
        match values {
            None => Ok(PersonalValues::default()),
            Some(bytes) => PersonalValues::from_bytes(bytes)
                .ok_or_else(|| self.error("malformed personal values")),
        }
    }

    /// The event's JSON as served: rendered from its entry and personal values (so nothing
    /// served can differ from what was sealed), or, for a row written before entries, as
    /// written.
    pub fn render(&self) -> Result<String, RowError> {
        match &self.body {
            RowBody::Legacy { json, .. } => Ok(json.clone()),
            _ => {
                let mut out = Vec::with_capacity(1024);
                self.render_into(&mut out)?;
                String::from_utf8(out).map_err(|e| self.error(e))
            }
        }
    }

    /// Appends [`LogRow::render`]'s JSON to `out`, written straight from the entry
    /// ([`sealtrail_ledger::view::Served::write_json`]).
    pub fn render_into(&self, out: &mut Vec<u8>) -> Result<(), RowError> {
        match &self.body {
            RowBody::Entry { .. } => {
                let hash = self.hash_hex();
                self.with_source(|s| s.view.served(s.personal, hash.as_str()).write_json(out))?
                    .map_err(|e| self.error(e))
            }
            RowBody::Legacy { json, .. } => {
                out.extend_from_slice(json.as_bytes());
                Ok(())
            }
            RowBody::Gone => Err(self.error("the event was removed by retention")),
        }
    }

    /// Appends the event's line of a verifiable export (`docs/integrity.md` §10): its JSON as
    /// served with `"seal"` as its last member (the predecessor's leaf hash and the personal
    /// seal material, as [`LogRow::seal`] gives them, in hex), then a newline. One parse of
    /// the entry serves both; `digests` is scratch space kept between calls.
    pub fn render_sealed_into(
        &self,
        out: &mut Vec<u8>,
        digests: &mut Vec<(Slot, Hash)>,
    ) -> Result<(), RowError> {
        let (prev, material) = match &self.body {
            RowBody::Entry { entry, values } => {
                digests.clear();
                let view =
                    EntryView::parse_with_digests(entry, digests).map_err(|e| self.error(e))?;
                let personal = self.personal(values.as_deref())?;
                let hash = self.hash_hex();
                view.served(&personal, hash.as_str())
                    .write_json(out)
                    .map_err(|e| self.error(e))?;
                out.pop(); // The closing brace: the seal goes inside.
                (view.prev.to_vec(), view.seal_material(digests, &personal))
            }
            RowBody::Legacy { json, .. } => {
                let json = json.trim_end();
                out.extend_from_slice(json.strip_suffix('}').unwrap_or(json).as_bytes());
                self.seal()?
            }
            RowBody::Gone => return Err(self.error("the event was removed by retention")),
        };
        out.extend_from_slice(b",\"seal\":{\"prev\":\"");
        push_hex(out, &prev);
        out.extend_from_slice(b"\",\"personal\":\"");
        push_hex(out, &material);
        out.extend_from_slice(b"\"}}\n");
        Ok(())
    }

    /// The leaf hash stored beside the event, in hex (empty if none is).
    fn hash_hex(&self) -> HexHash {
        let mut hex = HexHash([0; 64], 0);
        if let Some(h) = self.hash {
            hex::encode_to_slice(h.0, &mut hex.0).expect("64 digits for 32 bytes");
            hex.1 = 64;
        }
        hex
    }

    /// The event as served, as a value (what [`LogRow::render`] writes).
    pub fn event(&self) -> Result<Event, RowError> {
        match &self.body {
            RowBody::Entry { .. } => {
                let hash = self.hash.map(|h| h.to_hex()).unwrap_or_default();
                self.with_source(|s| s.view.to_event(s.personal, hash))
            }
            RowBody::Legacy { json, .. } => serde_json::from_str(json).map_err(|e| self.error(e)),
            RowBody::Gone => Err(self.error("the event was removed by retention")),
        }
    }

    /// What offline verification of an export needs beside the served event: the
    /// predecessor's leaf hash and the personal digests (version 1: their stored form; version
    /// 2: with the openings of the values still held).
    pub fn seal(&self) -> Result<(Vec<u8>, Vec<u8>), RowError> {
        match &self.body {
            RowBody::Entry { entry, values } => {
                // Version 2: the digests with their openings, so a verifier checks the
                // personal values it is shown (docs/integrity.md §5).
                let mut digests = Vec::new();
                let view = EntryView::parse_with_digests(entry, &mut digests)
                    .map_err(|e| self.error(e))?;
                let personal = self.personal(values.as_deref())?;
                Ok((view.prev.to_vec(), view.seal_material(&digests, &personal)))
            }
            RowBody::Legacy { digests, prev, .. } => Ok((
                prev.clone().unwrap_or_default(),
                digests.clone().unwrap_or_default(),
            )),
            RowBody::Gone => Err(self.error("the event was removed by retention")),
        }
    }
}

/// A leaf hash in hex, on the stack: its digits and how many there are (64, or 0 for none).
struct HexHash([u8; 64], usize);

impl HexHash {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[..self.1]).expect("hex digits are ASCII")
    }
}

/// Appends lowercase hex.
pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let at = out.len();
    out.resize(at + bytes.len() * 2, 0);
    hex::encode_to_slice(bytes, &mut out[at..]).expect("two digits per byte");
}

#[cfg(test)]
mod tests {
    use sealtrail_ledger::entry::digests_for;

    use super::*;

    /// An event stored as a version-1 entry and the same event stored as a row from before
    /// entries render the same JSON and the same line of a verifiable export.
    #[test]
    fn an_entry_and_a_row_from_before_entries_render_the_same_lines() {
        let mut event = crate::conformance::event(serde_json::json!({
            "action": "doc.read", "actor": {"id": "u-1", "name": "Zoë", "email": "z@example.com"},
            "target": {"type": "user", "id": "u-2", "name": "Bo"},
            "context": {"ip": "2001:db8::1", "user_agent": "curl/8"},
            "metadata": {"note": "a \"quoted\" line\n"},
        }))
        .into_event(
            uuid::Uuid::now_v7(),
            &crate::conformance::tenant("t"),
            7,
            sealtrail_model::Timestamp::now(),
        );
        let digests = digests_for(&event, &[7; 32], Some(&[9; 32]));
        let prev = [0xab; 32];
        let entry = encode_entry(&event, &digests, &prev);
        let hash = LeafHash::from(sealtrail_ledger::leaf_hash(&entry));
        event.hash = hash.to_hex();
        let entry_row = LogRow {
            seq: 7,
            hash: Some(hash),
            body: RowBody::Entry {
                values: Some(PersonalValues::of(&event, &digests).to_bytes()),
                entry,
            },
        };
        let legacy_row = LogRow {
            seq: 7,
            hash: Some(hash),
            body: RowBody::Legacy {
                json: serde_json::to_string(&event).expect("json"),
                digests: Some(digests.to_bytes()),
                prev: Some(prev.to_vec()),
            },
        };
        let lines = |row: &LogRow| {
            let mut sealed = Vec::new();
            row.render_sealed_into(&mut sealed, &mut Vec::new())
                .expect("sealed line");
            (
                row.render().expect("render"),
                String::from_utf8(sealed).expect("utf-8"),
            )
        };
        let (json, sealed) = lines(&entry_row);
        assert_eq!(lines(&legacy_row), (json.clone(), sealed.clone()));
        assert_eq!(
            json,
            serde_json::to_string(&event).expect("json"),
            "served as the event"
        );
        let line: serde_json::Value = serde_json::from_str(&sealed).expect("a JSON line");
        let (prev_seen, material) = entry_row.seal().expect("seal");
        assert_eq!(line["seal"]["prev"], hex::encode(prev_seen));
        assert_eq!(line["seal"]["personal"], hex::encode(material));
        assert!(sealed.ends_with("}}\n"));
    }
}
