//! The event an entry seals, serialised straight from the entry's bytes: the same JSON as
//! [`EntryView::to_event`]'s event, without building it. Exports and archives render millions
//! of events; building each as owned strings and JSON values only to serialise it at once was
//! most of their work.
//!
//! Every type here serialises field for field as its counterpart in `sealtrail_model` does
//! (same names, same order, the same `null`s), so no reader can tell the two apart; the
//! crate's tests compare both renderings over random events.

use std::cell::Cell;

use sealtrail_model::{ActorType, Timestamp};
use serde::ser::{Error as _, SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::Number;

use super::{ChangeValue, EntryView, PersonalValues, REDACTED, Reader};

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

/// One JSON value still in its canonical encoding, serialised as it is read.
#[derive(Debug)]
pub struct EncodedJson<'b> {
    bytes: &'b [u8],
    /// Where the next value starts: containers serialise their items through the same
    /// reader, each moving it past itself.
    at: Cell<usize>,
}

impl<'b> EncodedJson<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Self {
            bytes,
            at: Cell::new(0),
        }
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        matches!(self.bytes.get(self.at.get()), None | Some(0))
    }
}

impl<'a> EntryView<'a> {
    /// The event this entry seals as served, with `values` put back where they belong and
    /// `hash` as its leaf hash: it serialises to exactly the JSON of
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
        self.metadata.map(EncodedJson::new)
    }
}

#[derive(Serialize)]
struct ActorOut<'x> {
    id: &'x str,
    #[serde(rename = "type")]
    actor_type: ActorType,
    name: Option<&'x str>,
    email: Option<&'x str>,
}

#[derive(Serialize)]
struct TargetOut<'x> {
    #[serde(rename = "type")]
    target_type: &'x str,
    id: &'x str,
    name: Option<&'x str>,
}

#[derive(Serialize)]
struct OrganizationOut<'x> {
    id: &'x str,
    name: Option<&'x str>,
}

#[derive(Serialize)]
struct ContextOut<'x> {
    ip: Option<&'x str>,
    user_agent: Option<&'x str>,
    session_id: Option<&'x str>,
    correlation_id: Option<&'x str>,
    endpoint: Option<&'x str>,
    method: Option<&'x str>,
    status_code: Option<u16>,
    duration_ms: Option<Number>,
}

#[derive(Serialize)]
struct RelatedOut<'x> {
    #[serde(rename = "type")]
    related_type: &'x str,
    id: &'x str,
}

#[derive(Serialize)]
struct ChangeOut<'x> {
    field: &'x str,
    old_value: ValueOut<'x>,
    new_value: ValueOut<'x>,
    changed_at: Timestamp,
    changed_by: &'x str,
}

/// A change value: encoded, or erased (served as [`REDACTED`]).
struct ValueOut<'b>(ChangeValue<'b>);

impl Serialize for ValueOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ChangeValue::Encoded(bytes) => EncodedJson::new(bytes).serialize(s),
            ChangeValue::Redacted => s.serialize_str(REDACTED),
        }
    }
}

/// The entry's `related` section.
struct RelatedList<'b>(&'b [u8]);

impl Serialize for RelatedList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut r = Reader {
            bytes: self.0,
            at: 0,
        };
        let count = r.u32().unwrap_or(0);
        let mut seq = s.serialize_seq(Some(count as usize))?;
        for _ in 0..count {
            seq.serialize_element(&RelatedOut {
                related_type: r.str().unwrap_or_default(),
                id: r.str().unwrap_or_default(),
            })?;
        }
        seq.end()
    }
}

impl Serialize for ServedChanges<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let view = self.view;
        let changed_at = Timestamp::from_micros(view.occurred_at);
        let changed_by = view.actor_id(self.values);
        let mut seq = s.serialize_seq(Some(view.change_count()))?;
        let mut failed = None;
        view.each_change(self.values, |field, old, new| {
            if failed.is_none() {
                let change = ChangeOut {
                    field,
                    old_value: ValueOut(old),
                    new_value: ValueOut(new),
                    changed_at,
                    changed_by,
                };
                failed = seq.serialize_element(&change).err();
            }
        });
        match failed {
            Some(e) => Err(e),
            None => seq.end(),
        }
    }
}

impl Serialize for Served<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (v, values) = (self.view, self.values);
        let mut st = s.serialize_struct("Event", 17)?;
        st.serialize_field("id", &v.id)?;
        st.serialize_field("tenant", v.tenant)?;
        st.serialize_field("seq", &v.seq)?;
        st.serialize_field("recorded_at", &Timestamp::from_micros(v.recorded_at))?;
        st.serialize_field("occurred_at", &Timestamp::from_micros(v.occurred_at))?;
        st.serialize_field("action", v.action)?;
        st.serialize_field("category", &v.category)?;
        st.serialize_field("event_type", &v.event_type)?;
        st.serialize_field("outcome", &v.outcome)?;
        st.serialize_field("error", &v.error)?;
        st.serialize_field(
            "actor",
            &ActorOut {
                id: v.actor_id(values),
                actor_type: v.actor_type,
                name: values.actor_name,
                email: values.actor_email,
            },
        )?;
        st.serialize_field(
            "target",
            &v.target.map(|t| TargetOut {
                target_type: t.target_type,
                id: v.target_id(values).unwrap_or(REDACTED),
                name: v.target_name(values),
            }),
        )?;
        st.serialize_field(
            "organization",
            &v.organization
                .map(|(id, name)| OrganizationOut { id, name }),
        )?;
        st.serialize_field(
            "context",
            &v.context.map(|c| ContextOut {
                ip: values.ip,
                user_agent: values.user_agent,
                session_id: c.session_id,
                correlation_id: c.correlation_id,
                endpoint: c.endpoint,
                method: c.method,
                status_code: c.status_code,
                duration_ms: c.duration_ms(),
            }),
        )?;
        st.serialize_field("changes", &v.served_changes(values))?;
        st.serialize_field("related", &RelatedList(v.related))?;
        st.serialize_field("metadata", &v.served_metadata())?;
        st.serialize_field("hash", self.hash)?;
        st.end()
    }
}

impl Serialize for EncodedJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut r = Reader {
            bytes: self.bytes,
            at: self.at.get(),
        };
        // The value was validated when the entry was parsed: tags, lengths and UTF-8 hold,
        // numbers are finite and object keys ascend (the order a JSON map keeps them in).
        let tag = r.u8().map_err(S::Error::custom)?;
        let step = |r: &Reader<'_>| self.at.set(r.at);
        match tag {
            1 | 2 => {
                step(&r);
                s.serialize_bool(tag == 2)
            }
            3 => {
                let n = r.i64().map_err(S::Error::custom)?;
                step(&r);
                s.serialize_i64(n)
            }
            4 => {
                let n = r.u64().map_err(S::Error::custom)?;
                step(&r);
                s.serialize_u64(n)
            }
            5 => {
                let bits = r.u64().map_err(S::Error::custom)?;
                step(&r);
                match Number::from_f64(f64::from_bits(bits)) {
                    Some(n) => n.serialize(s),
                    None => s.serialize_unit(),
                }
            }
            6 => {
                let text = r.str().map_err(S::Error::custom)?;
                step(&r);
                s.serialize_str(text)
            }
            7 => {
                let count = r.u32().map_err(S::Error::custom)?;
                step(&r);
                let mut seq = s.serialize_seq(Some(count as usize))?;
                for _ in 0..count {
                    seq.serialize_element(self)?;
                }
                seq.end()
            }
            8 => {
                let count = r.u32().map_err(S::Error::custom)?;
                step(&r);
                let mut map = s.serialize_map(Some(count as usize))?;
                for _ in 0..count {
                    let mut r = Reader {
                        bytes: self.bytes,
                        at: self.at.get(),
                    };
                    let key = r.str().map_err(S::Error::custom)?;
                    step(&r);
                    map.serialize_entry(key, self)?;
                }
                map.end()
            }
            _ => {
                step(&r);
                s.serialize_unit()
            }
        }
    }
}
