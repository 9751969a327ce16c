//! Reading a canonical entry back: a borrowed, validated view of its bytes ([`EntryView`]), the
//! event it renders to ([`EntryView::to_event`]), and the erasable personal values a store keeps
//! beside it ([`PersonalValues`]).
//!
//! A store that keeps the entry as the event's only copy serves what it sealed and nothing
//! else, and its verify walk hashes stored bytes instead of re-encoding parsed JSON. The
//! decoder accepts exactly what [`crate::entry::encode_entry`] writes (version 1, every length
//! in bounds, UTF-8 strings, object keys strictly ascending, integers in their one canonical
//! tag, nesting at most [`MAX_DEPTH`] deep, nothing after the predecessor hash), so decoding
//! and encoding again gives the same bytes.

use sealtrail_model::{
    Actor, ActorType, Category, Context, Event, Organization, Outcome, OutputChange, Related,
    Target, Timestamp,
};
use serde_json::{Map, Number, Value};
use uuid::Uuid;

use crate::entry::{ENTRY_VERSION, ENTRY_VERSION_2, PERSONAL_CHANGE, PersonalDigests};
use crate::merkle::Hash;
use crate::personal::{Held, MARK, Slot, each_valid, held, held_valid};

mod served;
pub use served::{EncodedJson, Served, ServedChanges};

/// How deep JSON values inside an entry may nest; deeper ones are refused, not recursed into.
pub const MAX_DEPTH: usize = 128;

/// Why bytes are not a canonical entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a canonical entry: {what} at byte {at}")]
pub struct DecodeError {
    /// What was wrong.
    pub what: &'static str,
    /// Where, counted from the first byte.
    pub at: usize,
}

/// An identifier as the entry holds it: in the clear (version 1, or a target that is not a
/// person), or as a personal digest (version 2) whose value is kept beside the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ident<'a> {
    /// In the clear.
    Plain(&'a str),
    /// A personal value: see [`PersonalValues::actor_id`] and [`PersonalValues::target_id`].
    Personal,
}

/// A target's name as the entry holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetName<'a> {
    /// No name.
    None,
    /// A plain name (the target is not a person).
    Plain(&'a str),
    /// A person's name, as its keyed digest.
    Digest,
}

/// The target section of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetView<'a> {
    /// `target.type`.
    pub target_type: &'a str,
    /// `target.id`.
    pub id: Ident<'a>,
    /// `target.name`.
    pub name: TargetName<'a>,
}

/// The context section of an entry, personal fields left out (they are digests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextView<'a> {
    /// `context.session_id`.
    pub session_id: Option<&'a str>,
    /// `context.correlation_id`.
    pub correlation_id: Option<&'a str>,
    /// `context.endpoint`.
    pub endpoint: Option<&'a str>,
    /// `context.method`.
    pub method: Option<&'a str>,
    /// `context.status_code`.
    pub status_code: Option<u16>,
    /// `context.duration_ms`, still encoded (tag and value).
    duration: Option<&'a [u8]>,
}

impl ContextView<'_> {
    /// `context.duration_ms`, the number it holds.
    pub fn duration_ms(&self) -> Option<Number> {
        match json_value(&mut Reader {
            bytes: self.duration?,
            at: 0,
        }) {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }
}

/// A validated canonical entry, borrowing its bytes. Building one checks the whole entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// The encoding version: [`ENTRY_VERSION`] or [`ENTRY_VERSION_2`].
    pub version: u8,
    /// `tenant`.
    pub tenant: &'a str,
    /// `seq`.
    pub seq: u64,
    /// `id`.
    pub id: Uuid,
    /// `recorded_at`, microseconds since the Unix epoch.
    pub recorded_at: i64,
    /// `occurred_at`, microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// `action`.
    pub action: &'a str,
    /// `category`.
    pub category: Category,
    /// `event_type`.
    pub event_type: Option<&'a str>,
    /// `outcome`.
    pub outcome: Outcome,
    /// `error`.
    pub error: Option<&'a str>,
    /// `actor.id`.
    pub actor_id: Ident<'a>,
    /// `actor.type`.
    pub actor_type: ActorType,
    /// The personal digests a version-1 entry holds (a version-2 entry's are read with
    /// [`EntryView::personal_digests`]).
    pub digests: PersonalDigests,
    /// `target`.
    pub target: Option<TargetView<'a>>,
    /// `organization`: id and name.
    pub organization: Option<(&'a str, Option<&'a str>)>,
    /// `context`.
    pub context: Option<ContextView<'a>>,
    /// The predecessor's leaf hash.
    pub prev: Hash,
    /// The encoded `changes`, `related` and `metadata` sections, in that order.
    changes: &'a [u8],
    related: &'a [u8],
    metadata: Option<&'a [u8]>,
    bytes: &'a [u8],
}

/// The personal values of an event, kept beside its entry and erasable: each present value
/// has its digest in the entry. Stored form for a version-1 entry: one byte whose bits 0–4 say
/// which of actor name, actor e-mail, ip, user agent and target name are present, then each
/// present value as a 4-byte big-endian length and its UTF-8 bytes, in that order. For a
/// version-2 entry: the form of [`crate::personal`], openings included, which this keeps as
/// [`PersonalValues::held`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersonalValues<'a> {
    /// `actor.name`.
    pub actor_name: Option<&'a str>,
    /// `actor.email`.
    pub actor_email: Option<&'a str>,
    /// `context.ip`.
    pub ip: Option<&'a str>,
    /// `context.user_agent`.
    pub user_agent: Option<&'a str>,
    /// `target.name`, when the target is a person.
    pub target_name: Option<&'a str>,
    /// `actor.id` of a version-2 entry: the value, or the pseudonym that replaced it.
    pub actor_id: Option<&'a str>,
    /// `target.id` of a version-2 entry whose target is a person: the value, or its pseudonym.
    pub target_id: Option<&'a str>,
    /// The whole version-2 form (openings and change values included).
    pub held: Option<&'a [u8]>,
}

impl<'a> PersonalValues<'a> {
    /// The personal values of `event`: every actor value present, and the target's name when
    /// the target is a person (when `digests` holds a digest for it; any other name is plain
    /// text inside the entry).
    pub fn of(event: &'a Event, digests: &PersonalDigests) -> Self {
        Self::of_parts(&crate::entry::EntryParts::of_event(event), digests)
    }

    /// [`PersonalValues::of`] an event's parts.
    pub fn of_parts(event: &crate::entry::EntryParts<'a>, digests: &PersonalDigests) -> Self {
        let ctx = event.context;
        Self {
            actor_name: event.actor.name.as_deref(),
            actor_email: event.actor.email.as_deref(),
            ip: ctx.and_then(|c| c.ip.as_deref()),
            user_agent: ctx.and_then(|c| c.user_agent.as_deref()),
            target_name: digests
                .target_name
                .and(event.target.and_then(|t| t.name.as_deref())),
            ..Self::default()
        }
    }

    /// What the version-2 form holds for `slot`, if this is one and holds it.
    pub fn held_for(&self, slot: Slot) -> Option<Held<'a>> {
        held(self.held?).find_map(|(s, h)| (s == slot).then_some(h))
    }

    /// The fields in stored order, with their names as personal digests use them.
    pub fn fields(&self) -> [(&'static str, Option<&'a str>); 5] {
        [
            ("actor.name", self.actor_name),
            ("actor.email", self.actor_email),
            ("context.ip", self.ip),
            ("context.user_agent", self.user_agent),
            ("target.name", self.target_name),
        ]
    }

    /// Whether no value is present (all erased, or none ever given).
    pub fn is_empty(&self) -> bool {
        match self.held {
            Some(bytes) => !held(bytes).any(|(_, h)| matches!(h, Held::Open { .. })),
            None => self.fields().iter().all(|(_, v)| v.is_none()),
        }
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        if let Some(bytes) = self.held {
            return bytes.to_vec();
        }
        let mut out = vec![0u8];
        for (bit, (_, value)) in self.fields().into_iter().enumerate() {
            if let Some(v) = value {
                out[0] |= 1 << bit;
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
        }
        out
    }

    /// Parses the stored form (either version); `None` when it is malformed.
    pub fn from_bytes(bytes: &'a [u8]) -> Option<Self> {
        if bytes.first() == Some(&MARK) {
            return Self::from_held(bytes);
        }
        let (&bits, mut rest) = bytes.split_first()?;
        if bits >> 5 != 0 {
            return None;
        }
        let mut take = |bit: u8| -> Option<Option<&'a str>> {
            if bits & (1 << bit) == 0 {
                return Some(None);
            }
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let (v, tail) = tail.split_at_checked(u32::from_be_bytes(*len) as usize)?;
            rest = tail;
            Some(Some(std::str::from_utf8(v).ok()?))
        };
        let values = Self {
            actor_name: take(0)?,
            actor_email: take(1)?,
            ip: take(2)?,
            user_agent: take(3)?,
            target_name: take(4)?,
            ..Self::default()
        };
        rest.is_empty().then_some(values)
    }

    fn from_held(bytes: &'a [u8]) -> Option<Self> {
        let mut values = Self {
            held: Some(bytes),
            ..Self::default()
        };
        // One walk checks the form and reads it.
        each_valid(bytes, |slot, h, open_text| {
            let text = match h {
                Held::Open { .. } => open_text,
                Held::Replaced(shown) => Some(shown),
                Held::Erased => None,
            };
            let pseudonym_allowed = matches!(slot, Slot::ActorId | Slot::TargetId);
            let text = text.filter(|_| pseudonym_allowed || matches!(h, Held::Open { .. }));
            match slot {
                Slot::ActorId => values.actor_id = text,
                Slot::ActorName => values.actor_name = text,
                Slot::ActorEmail => values.actor_email = text,
                Slot::TargetId => values.target_id = text,
                Slot::TargetName => values.target_name = text,
                Slot::Ip => values.ip = text,
                Slot::UserAgent => values.user_agent = text,
                Slot::ChangeOld(_) | Slot::ChangeNew(_) => {
                    // A change value is served by decoding it: it must be one canonical value.
                    if let Held::Open { value, .. } = h {
                        let mut r = Reader {
                            bytes: value,
                            at: 0,
                        };
                        if r.json(0).is_err() || r.at != value.len() {
                            return None;
                        }
                    }
                }
            }
            Some(())
        })?;
        Some(values)
    }
}

/// What an erased version-2 change value is served as.
pub const REDACTED: &str = "[REDACTED]";

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Read<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: &'static str) -> Read<T> {
        Err(DecodeError { what, at: self.at })
    }
    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        match self.bytes.get(self.at..self.at.saturating_add(n)) {
            Some(s) => {
                self.at += n;
                Ok(s)
            }
            _ => self.fail("the entry ends early"),
        }
    }
    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u8(&mut self) -> Read<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Read<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Read<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Read<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Read<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    /// A string's bytes, not yet checked to be UTF-8.
    fn text(&mut self) -> Read<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn str(&mut self) -> Read<&'a str> {
        let at = self.at + 4;
        let bytes = self.text()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError {
            what: "a string is not UTF-8",
            at,
        })
    }
    fn flag(&mut self) -> Read<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.at -= 1;
                self.fail("a presence byte is neither 0 nor 1")
            }
        }
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Read<T>) -> Read<Option<T>> {
        if self.flag()? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }
    fn opt_str(&mut self) -> Read<Option<&'a str>> {
        self.opt(Self::str)
    }
    fn digest(&mut self) -> Read<Option<Hash>> {
        self.opt(Self::array::<32>)
    }
    /// Checks one encoded JSON value and moves past it; returns its bytes.
    fn json(&mut self, depth: usize) -> Read<&'a [u8]> {
        let start = self.at;
        if depth > MAX_DEPTH {
            return self.fail("JSON nests too deep");
        }
        match self.u8()? {
            0..=2 => {}
            3 => {
                self.i64()?;
            }
            4 => {
                if self.u64()? <= i64::MAX as u64 {
                    return self.fail("an unsigned integer that fits the signed tag");
                }
            }
            5 => {
                let bits = self.u64()?;
                if !f64::from_bits(bits).is_finite() {
                    return self.fail("a number that is not finite");
                }
            }
            6 => {
                self.str()?;
            }
            7 => {
                for _ in 0..self.u32()? {
                    self.json(depth + 1)?;
                }
            }
            8 => {
                let mut last: Option<&str> = None;
                for _ in 0..self.u32()? {
                    let key = self.str()?;
                    if last.is_some_and(|l| l.as_bytes() >= key.as_bytes()) {
                        return self.fail("object keys out of order");
                    }
                    last = Some(key);
                    self.json(depth + 1)?;
                }
            }
            _ => {
                self.at -= 1;
                return self.fail("an unknown JSON tag");
            }
        }
        Ok(&self.bytes[start..self.at])
    }
    /// A change value: JSON, or in a version-2 entry a personal digest (reported to `sink`).
    fn change_value(
        &mut self,
        version: u8,
        slot: Slot,
        sink: &mut dyn FnMut(Slot, Hash),
    ) -> Read<()> {
        if version == ENTRY_VERSION_2 && self.bytes.get(self.at) == Some(&PERSONAL_CHANGE) {
            self.at += 1;
            sink(slot, self.array()?);
            return Ok(());
        }
        self.json(0).map(|_| ())
    }
    /// A counted list whose items `item` checks; returns the list's bytes, count included.
    fn list(&mut self, mut item: impl FnMut(&mut Self) -> Read<()>) -> Read<&'a [u8]> {
        let start = self.at;
        for _ in 0..self.u32()? {
            item(self)?;
        }
        Ok(&self.bytes[start..self.at])
    }
}

fn category(code: u8) -> Option<Category> {
    Category::ALL
        .into_iter()
        .find(|c| crate::entry::category_code(*c) == code)
}

impl<'a> EntryView<'a> {
    /// Validates `bytes` as a canonical entry of version [`ENTRY_VERSION`] or
    /// [`ENTRY_VERSION_2`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse_with(bytes, &mut |_, _| {})
    }

    /// [`EntryView::parse`], also pushing a version-2 entry's personal digests onto `digests`
    /// in entry order (what [`EntryView::personal_digests`] would read again), for a caller
    /// that needs both, such as an export writing each event's seal material.
    pub fn parse_with_digests(
        bytes: &'a [u8],
        digests: &mut Vec<(Slot, Hash)>,
    ) -> Result<Self, DecodeError> {
        Self::parse_with(bytes, &mut |slot, d| digests.push((slot, d)))
    }

    /// The personal digests of a version-2 entry, in entry order, each with its slot (empty for
    /// version 1, whose digests are [`EntryView::digests`]).
    pub fn personal_digests(&self) -> Vec<(Slot, Hash)> {
        let mut out = Vec::new();
        if self.version == ENTRY_VERSION_2 {
            // Parsed once already, so this cannot fail.
            let _ = Self::parse_with(self.bytes, &mut |slot, d| out.push((slot, d)));
        }
        out
    }

    fn parse_with(bytes: &'a [u8], sink: &mut dyn FnMut(Slot, Hash)) -> Result<Self, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != ENTRY_VERSION && version != ENTRY_VERSION_2 {
            r.at = 0;
            return r.fail("an unknown entry version");
        }
        let v2 = version == ENTRY_VERSION_2;
        let tenant = r.str()?;
        let seq = r.u64()?;
        let id = Uuid::from_bytes(r.array()?);
        let recorded_at = r.i64()?;
        let occurred_at = r.i64()?;
        let action = r.str()?;
        let category = category(r.u8()?).map_or_else(|| r.fail("an unknown category"), Ok)?;
        let event_type = r.opt_str()?;
        let outcome = match r.u8()? {
            0 => Outcome::Success,
            1 => Outcome::Failure,
            _ => return r.fail("an unknown outcome"),
        };
        let error = r.opt_str()?;
        let actor_id = if v2 {
            sink(Slot::ActorId, r.array()?);
            Ident::Personal
        } else {
            Ident::Plain(r.str()?)
        };
        let actor_type = match r.u8()? {
            0 => ActorType::User,
            1 => ActorType::Service,
            2 => ActorType::System,
            3 => ActorType::Anonymous,
            _ => return r.fail("an unknown actor type"),
        };
        let mut digests = PersonalDigests::default();
        let mut digest = |r: &mut Reader<'a>, slot: Slot, into: &mut Option<Hash>| -> Read<()> {
            let d = r.digest()?;
            match (v2, d) {
                (true, Some(d)) => sink(slot, d),
                (false, d) => *into = d,
                (true, None) => {}
            }
            Ok(())
        };
        digest(&mut r, Slot::ActorName, &mut digests.actor_name)?;
        digest(&mut r, Slot::ActorEmail, &mut digests.actor_email)?;
        let mut target_name = None;
        let mut target_id = None;
        let target = r.opt(|r| {
            let target_type = r.str()?;
            let person = if v2 {
                match r.u8()? {
                    1 => false,
                    2 => true,
                    _ => {
                        r.at -= 1;
                        return r.fail("an unknown target id tag");
                    }
                }
            } else {
                false
            };
            let id = if person {
                target_id = Some(r.array()?);
                Ident::Personal
            } else {
                Ident::Plain(r.str()?)
            };
            let name = match r.u8()? {
                0 => TargetName::None,
                1 if !person => TargetName::Plain(r.str()?),
                2 if person || !v2 => {
                    target_name = Some(r.array()?);
                    TargetName::Digest
                }
                _ => {
                    r.at -= 1;
                    return r.fail("an unknown target name tag");
                }
            };
            Ok(TargetView {
                target_type,
                id,
                name,
            })
        })?;
        if let Some(d) = target_id {
            sink(Slot::TargetId, d);
        }
        match (v2, target_name) {
            (true, Some(d)) => sink(Slot::TargetName, d),
            (false, d) => digests.target_name = d,
            (true, None) => {}
        }
        let organization = r.opt(|r| Ok((r.str()?, r.opt_str()?)))?;
        let mut ip = None;
        let mut user_agent = None;
        let context = r.opt(|r| {
            ip = r.digest()?;
            user_agent = r.digest()?;
            Ok(ContextView {
                session_id: r.opt_str()?,
                correlation_id: r.opt_str()?,
                endpoint: r.opt_str()?,
                method: r.opt_str()?,
                status_code: r.opt(Reader::u16)?,
                duration: r.opt(|r| {
                    let at = r.at;
                    let number = r.json(0)?;
                    if !matches!(number[0], 3..=5) {
                        r.at = at;
                        return r.fail("duration_ms is not a number");
                    }
                    Ok(number)
                })?,
            })
        })?;
        if v2 {
            ip.into_iter().for_each(|d| sink(Slot::Ip, d));
            user_agent
                .into_iter()
                .for_each(|d| sink(Slot::UserAgent, d));
        } else {
            digests.ip = ip;
            digests.user_agent = user_agent;
        }
        let mut index = 0u32;
        let changes = r.list(|r| {
            r.str()?;
            r.change_value(version, Slot::ChangeOld(index), sink)?;
            r.change_value(version, Slot::ChangeNew(index), sink)?;
            index += 1;
            Ok(())
        })?;
        let related = r.list(|r| {
            r.str()?;
            r.str().map(|_| ())
        })?;
        let metadata = r.opt(|r| r.json(0))?;
        let prev = r.array()?;
        if r.at != bytes.len() {
            return r.fail("bytes after the predecessor hash");
        }
        Ok(Self {
            version,
            tenant,
            seq,
            id,
            recorded_at,
            occurred_at,
            action,
            category,
            event_type,
            outcome,
            error,
            actor_id,
            actor_type,
            digests,
            target,
            organization,
            context,
            prev,
            changes,
            related,
            metadata,
            bytes,
        })
    }

    /// The actor's id as served: in the clear (version 1), or the personal value kept beside a
    /// version-2 entry, or the pseudonym that replaced it ([`REDACTED`] if neither is there).
    pub fn actor_id<'x>(&'x self, values: &PersonalValues<'x>) -> &'x str {
        match self.actor_id {
            Ident::Plain(id) => id,
            Ident::Personal => values.actor_id.unwrap_or(REDACTED),
        }
    }

    /// The target's id as served, as [`EntryView::actor_id`] is.
    pub fn target_id<'x>(&'x self, values: &PersonalValues<'x>) -> Option<&'x str> {
        self.target.map(|t| match t.id {
            Ident::Plain(id) => id,
            Ident::Personal => values.target_id.unwrap_or(REDACTED),
        })
    }

    /// The target's name as served: plain, a person's name `values` still hold, or none.
    pub fn target_name<'x>(&'x self, values: &PersonalValues<'x>) -> Option<&'x str> {
        self.target.and_then(|t| match t.name {
            TargetName::None => None,
            TargetName::Plain(name) => Some(name),
            TargetName::Digest => values.target_name,
        })
    }

    /// Checks the version-2 personal values kept beside this entry against the digests it
    /// seals: every held value must open its digest, every digest must have its value (or the
    /// mark that it was erased), and only ids may be replaced by a pseudonym. Says what is wrong
    /// first, or `None`. A version-1 entry has nothing to check here (its values are checked
    /// under the subject's key) unless version-2 values are stored beside it.
    pub fn held_mismatch(&self, values: &PersonalValues<'_>) -> Option<String> {
        if self.version != ENTRY_VERSION_2 {
            return values
                .held
                .map(|_| "version-2 personal values are stored beside a version-1 entry".into());
        }
        let Some(bytes) = values.held else {
            return Some("the personal values of the sealed event are missing".into());
        };
        let digests = self.personal_digests();
        let mut items = held(bytes);
        for (slot, digest) in &digests {
            let Some((held_slot, h)) = items.next() else {
                return Some(format!(
                    "{} is sealed but its value is missing",
                    slot.name()
                ));
            };
            if held_slot != *slot {
                return Some(format!(
                    "{} is stored where the sealed event has {}",
                    held_slot.name(),
                    slot.name()
                ));
            }
            match h {
                Held::Open { opening, value } => {
                    if crate::personal::opened_digest(&opening, slot.field(), value) != *digest {
                        return Some(format!("{} does not match its sealed digest", slot.name()));
                    }
                }
                Held::Erased => {}
                Held::Replaced(_) if matches!(slot, Slot::ActorId | Slot::TargetId) => {}
                Held::Replaced(_) => {
                    return Some(format!(
                        "{} is replaced, which only an id may be",
                        slot.name()
                    ));
                }
            }
        }
        if let Some((slot, _)) = items.next() {
            return Some(format!(
                "{} is stored but the sealed event has no digest of it",
                slot.name()
            ));
        }
        None
    }

    /// The personal slots of a version-2 entry as a verifier is given them: the opening of each
    /// value `values` holds, the digest of each erased one ([`crate::personal::seal_material`]).
    pub fn sealed_slots(&self, values: &PersonalValues<'_>) -> Vec<crate::personal::SealedSlot> {
        sealed_slots_of(&self.personal_digests(), values)
    }

    /// What offline verification needs beside the served event to encode this entry again
    /// (docs/integrity.md §5): a version-1 entry's stored digests, or a version-2 entry's
    /// [`crate::personal::seal_material`]. `digests` are the entry's personal digests, as
    /// [`EntryView::parse_with_digests`] gave them.
    pub fn seal_material(&self, digests: &[(Slot, Hash)], values: &PersonalValues<'_>) -> Vec<u8> {
        if self.version == ENTRY_VERSION {
            self.digests.to_bytes()
        } else {
            crate::personal::seal_material(&sealed_slots_of(digests, values))
        }
    }

    /// Whether the target is a person whose id is personal (version 2).
    pub fn target_is_person(&self) -> bool {
        self.target.is_some_and(|t| t.id == Ident::Personal)
    }

    /// Each change: its field and its old and new value, a personal one taken from `values`
    /// ([`REDACTED`] once erased). The walk over the encoded section cannot fail: `parse`
    /// validated it.
    fn each_change<'x>(
        &'x self,
        values: &PersonalValues<'x>,
        mut f: impl FnMut(&'x str, ChangeValue<'x>, ChangeValue<'x>),
    ) {
        let mut r = Reader {
            bytes: self.changes,
            at: 0,
        };
        for index in 0..r.u32().unwrap_or(0) {
            let Ok(field) = r.str() else { return };
            let old = change_value(&mut r, values, Slot::ChangeOld(index));
            let new = change_value(&mut r, values, Slot::ChangeNew(index));
            f(field, old, new);
        }
    }

    /// The `field` of every change, in order.
    pub fn change_fields(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut r = Reader {
            bytes: self.changes,
            at: 0,
        };
        // The section was validated by `parse`, so walking it cannot fail.
        let count = r.u32().unwrap_or(0);
        (0..count).map_while(move |_| {
            let field = r.str().ok()?;
            skip_change_value(&mut r)?;
            skip_change_value(&mut r)?;
            Some(field)
        })
    }

    /// Every `related` link as `(type, id)`, in order.
    pub fn related(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut r = Reader {
            bytes: self.related,
            at: 0,
        };
        let count = r.u32().unwrap_or(0);
        (0..count).map_while(move |_| Some((r.str().ok()?, r.str().ok()?)))
    }

    /// Calls `emit` with what full-text search reads of `changes` and `metadata`: each
    /// change's `field`, then every string and number inside its old and new values (a personal
    /// one as `values` holds it; nothing once erased), then every string and number inside
    /// `metadata` (values only, not keys), in order. Numbers are given as JSON writes them
    /// (`42`, `-1.5`); `true`, `false` and `null` are not text.
    pub fn searchable_values(&self, values: &PersonalValues<'_>, emit: &mut dyn FnMut(&str)) {
        let mut number = String::new();
        self.each_change(values, |field, old, new| {
            emit(field);
            for value in [old, new] {
                if let ChangeValue::Encoded(bytes) = value {
                    json_leaves(&mut Reader { bytes, at: 0 }, &mut number, emit);
                }
            }
        });
        if let Some(bytes) = self.metadata {
            json_leaves(&mut Reader { bytes, at: 0 }, &mut number, emit);
        }
    }

    /// The `metadata` object, decoded.
    pub fn metadata(&self) -> Option<Value> {
        self.metadata
            .map(|bytes| json_value(&mut Reader { bytes, at: 0 }))
    }

    /// The event this entry seals, with `values` put back where they belong (an erased value
    /// stays absent) and `hash` as its leaf hash.
    pub fn to_event(&self, values: &PersonalValues<'_>, hash: String) -> Event {
        let own = |s: &str| s.to_owned();
        let occurred_at = Timestamp::from_micros(self.occurred_at);
        // The sections were validated by `parse`, so decoding them cannot fail.
        let actor_id = self.actor_id(values);
        let mut changes = Vec::new();
        let decode_value = |v: ChangeValue<'_>| match v {
            ChangeValue::Encoded(bytes) => json_value(&mut Reader { bytes, at: 0 }),
            ChangeValue::Redacted => Value::String(REDACTED.to_owned()),
        };
        self.each_change(values, |field, old, new| {
            changes.push(OutputChange {
                field: own(field),
                old_value: decode_value(old),
                new_value: decode_value(new),
                changed_at: occurred_at,
                changed_by: own(actor_id),
            })
        });
        let mut r = Reader {
            bytes: self.related,
            at: 0,
        };
        let related = (0..r.u32().unwrap_or(0))
            .map(|_| Related {
                related_type: r.str().map(own).unwrap_or_default(),
                id: r.str().map(own).unwrap_or_default(),
            })
            .collect();
        let decode = |bytes: &[u8]| json_value(&mut Reader { bytes, at: 0 });
        Event {
            id: self.id,
            tenant: own(self.tenant),
            seq: self.seq,
            recorded_at: Timestamp::from_micros(self.recorded_at),
            occurred_at,
            action: own(self.action),
            category: self.category,
            event_type: self.event_type.map(own),
            outcome: self.outcome,
            error: self.error.map(own),
            actor: Actor {
                id: own(actor_id),
                actor_type: self.actor_type,
                name: values.actor_name.map(own),
                email: values.actor_email.map(own),
            },
            target: self.target.map(|t| Target {
                target_type: own(t.target_type),
                id: own(self.target_id(values).unwrap_or(REDACTED)),
                name: self.target_name(values).map(own),
            }),
            organization: self.organization.map(|(id, name)| Organization {
                id: own(id),
                name: name.map(own),
            }),
            context: self.context.map(|c| Context {
                ip: values.ip.map(own),
                user_agent: values.user_agent.map(own),
                session_id: c.session_id.map(own),
                correlation_id: c.correlation_id.map(own),
                endpoint: c.endpoint.map(own),
                method: c.method.map(own),
                status_code: c.status_code,
                duration_ms: c.duration_ms(),
            }),
            changes,
            related,
            metadata: self.metadata.map(decode),
            hash,
        }
    }
}

/// Each digest with its opening, when `values` still hold it. Held values are kept in the
/// entry's order, each slot at most once, so they are met walking along; a slot out of that
/// order is looked up.
fn sealed_slots_of(
    digests: &[(Slot, Hash)],
    values: &PersonalValues<'_>,
) -> Vec<crate::personal::SealedSlot> {
    let mut items = values.held.map(held_valid).into_iter().flatten().peekable();
    digests
        .iter()
        .map(|&(slot, digest)| {
            let found = match items.peek() {
                Some((next, _)) if *next == slot => items.next().map(|(_, h)| h),
                _ => values.held_for(slot),
            };
            let sealed = match found {
                Some(Held::Open { opening, .. }) => crate::personal::Sealed::Open(opening),
                _ => crate::personal::Sealed::Erased(digest),
            };
            (slot, sealed)
        })
        .collect()
}

/// A change value as served: its canonical JSON encoding, or erased.
#[derive(Debug, Clone, Copy)]
enum ChangeValue<'b> {
    Encoded(&'b [u8]),
    Redacted,
}

/// Reads one change value of a validated entry: in the clear, or a personal digest whose value
/// `values` holds (or held, before it was erased).
fn change_value<'b>(
    r: &mut Reader<'b>,
    values: &PersonalValues<'b>,
    slot: Slot,
) -> ChangeValue<'b> {
    if r.bytes.get(r.at) == Some(&PERSONAL_CHANGE) {
        r.at += 33;
        return match values.held_for(slot) {
            Some(Held::Open { value, .. }) => ChangeValue::Encoded(value),
            _ => ChangeValue::Redacted,
        };
    }
    r.json(0)
        .map_or(ChangeValue::Redacted, ChangeValue::Encoded)
}

fn skip_change_value(r: &mut Reader<'_>) -> Option<()> {
    if r.bytes.get(r.at) == Some(&PERSONAL_CHANGE) {
        r.at += 33;
        return Some(());
    }
    r.json(0).ok().map(|_| ())
}

/// Decodes a JSON value that [`Reader::json`] already validated.
/// Walks one encoded JSON value, calling `emit` with each string and number inside it.
fn json_leaves(r: &mut Reader<'_>, number: &mut String, emit: &mut dyn FnMut(&str)) {
    let mut as_text = |n: Option<Number>| {
        if let Some(n) = n {
            use std::fmt::Write;
            number.clear();
            let _ = write!(number, "{n}");
            emit(number);
        }
    };
    match r.u8().unwrap_or(0) {
        3 => as_text(Some(Number::from(r.i64().unwrap_or(0)))),
        4 => as_text(Some(Number::from(r.u64().unwrap_or(0)))),
        5 => as_text(Number::from_f64(f64::from_bits(r.u64().unwrap_or(0)))),
        6 => emit(r.str().unwrap_or_default()),
        7 => {
            for _ in 0..r.u32().unwrap_or(0) {
                json_leaves(r, number, emit);
            }
        }
        8 => {
            for _ in 0..r.u32().unwrap_or(0) {
                let _ = r.str();
                json_leaves(r, number, emit);
            }
        }
        _ => {}
    }
}

fn json_value(r: &mut Reader<'_>) -> Value {
    match r.u8().unwrap_or(0) {
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::from(r.i64().unwrap_or(0)),
        4 => Value::from(r.u64().unwrap_or(0)),
        5 => Number::from_f64(f64::from_bits(r.u64().unwrap_or(0)))
            .map_or(Value::Null, Value::Number),
        6 => Value::String(r.str().unwrap_or_default().to_owned()),
        7 => Value::Array((0..r.u32().unwrap_or(0)).map(|_| json_value(r)).collect()),
        8 => {
            let mut map = Map::new();
            for _ in 0..r.u32().unwrap_or(0) {
                let key = r.str().unwrap_or_default().to_owned();
                map.insert(key, json_value(r));
            }
            Value::Object(map)
        }
        _ => Value::Null,
    }
}
