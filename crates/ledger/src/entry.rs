//! The canonical, versioned byte encoding of an event: what a leaf of the log commits to.
//!
//! `docs/integrity.md` specifies it byte by byte; `tests/golden/` pins it. Changing anything here
//! changes every hash ever made, so a new layout is a new version, never an edit.
//!
//! Personal fields (actor name and e-mail, context ip and user agent, and the target's name
//! when the target is a person) enter only as keyed digests ([`personal_digest`]) under a key
//! per subject. Erasing a subject's values and key later leaves every leaf, chain link and
//! proof as it was.

use hmac::{Hmac, Mac};
use sealtrail_model::{
    Actor, Category, Change, Context, Event, NewEvent, Organization, Outcome, OutputChange,
    Related, Target, Timestamp,
};
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use crate::merkle::{Hash, leaf_hash};
use crate::personal::{Held, HeldWriter, Opening, Sealed, Slot, opened_digest};

/// The encoding version this module writes.
pub const ENTRY_VERSION: u8 = 1;

/// The version of entries that hold every personal value, the actor's id among them, only as a
/// digest under an opening ([`crate::personal`], `docs/integrity.md` §4.2).
pub const ENTRY_VERSION_2: u8 = 2;

/// The tag a version-2 change value carries, in place of a JSON tag, when it is personal: the
/// value's digest follows.
pub const PERSONAL_CHANGE: u8 = 9;

/// The hash a first event names as its predecessor.
pub const GENESIS: Hash = [0u8; 32];

/// The changes of an event, as a stored event or a new one holds them.
#[derive(Debug, Clone, Copy)]
pub enum ChangesRef<'a> {
    /// A stored event's changes.
    Stored(&'a [OutputChange]),
    /// A new event's changes.
    New(&'a [Change]),
}

impl<'a> ChangesRef<'a> {
    fn len(&self) -> usize {
        match self {
            Self::Stored(c) => c.len(),
            Self::New(c) => c.len(),
        }
    }

    fn each(&self, mut f: impl FnMut(&'a str, &'a Value, &'a Value)) {
        match *self {
            Self::Stored(c) => c
                .iter()
                .for_each(|c| f(&c.field, &c.old_value, &c.new_value)),
            Self::New(c) => c
                .iter()
                .for_each(|c| f(&c.field, &c.old_value, &c.new_value)),
        }
    }
}

/// Everything an entry is made of, borrowed: from a stored [`Event`], or from a new event and
/// the place the store gave it, so that sealing needs no copy of the event.
#[derive(Debug, Clone, Copy)]
pub struct EntryParts<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The position.
    pub seq: u64,
    /// The id.
    pub id: Uuid,
    /// `recorded_at`.
    pub recorded_at: Timestamp,
    /// `occurred_at` (defaulted to `recorded_at`).
    pub occurred_at: Timestamp,
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
    /// `actor`.
    pub actor: &'a Actor,
    /// `target`.
    pub target: Option<&'a Target>,
    /// `organization`.
    pub organization: Option<&'a Organization>,
    /// `context`.
    pub context: Option<&'a Context>,
    /// `changes`.
    pub changes: ChangesRef<'a>,
    /// `related`.
    pub related: &'a [Related],
    /// `metadata`.
    pub metadata: Option<&'a Value>,
}

impl<'a> EntryParts<'a> {
    /// The parts of a stored event.
    pub fn of_event(event: &'a Event) -> Self {
        Self {
            tenant: &event.tenant,
            seq: event.seq,
            id: event.id,
            recorded_at: event.recorded_at,
            occurred_at: event.occurred_at,
            action: &event.action,
            category: event.category,
            event_type: event.event_type.as_deref(),
            outcome: event.outcome,
            error: event.error.as_deref(),
            actor: &event.actor,
            target: event.target.as_ref(),
            organization: event.organization.as_ref(),
            context: event.context.as_ref(),
            changes: ChangesRef::Stored(&event.changes),
            related: &event.related,
            metadata: event.metadata.as_ref(),
        }
    }

    /// The parts of a new event at its place: exactly the parts of the event
    /// [`NewEvent::into_event`] would make of it.
    pub fn of_new(
        event: &'a NewEvent,
        id: Uuid,
        tenant: &'a str,
        seq: u64,
        recorded_at: Timestamp,
    ) -> Self {
        Self {
            tenant,
            seq,
            id,
            recorded_at,
            occurred_at: event.occurred_at.unwrap_or(recorded_at),
            action: &event.action,
            category: event.category,
            event_type: event.event_type.as_deref(),
            outcome: event.outcome,
            error: event.error.as_deref(),
            actor: &event.actor,
            target: event.target.as_ref(),
            organization: event.organization.as_ref(),
            context: event.context.as_ref(),
            changes: ChangesRef::New(&event.changes),
            related: &event.related,
            metadata: event.metadata.as_ref(),
        }
    }
}

/// The personal fields of an event, each as it enters the leaf: a keyed digest, or absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalDigests {
    /// `actor.name`.
    pub actor_name: Option<Hash>,
    /// `actor.email`.
    pub actor_email: Option<Hash>,
    /// `context.ip`.
    pub ip: Option<Hash>,
    /// `context.user_agent`.
    pub user_agent: Option<Hash>,
    /// `target.name`, when the target is a person.
    pub target_name: Option<Hash>,
}

/// The keyed digest of one personal value: HMAC-SHA-256 under the subject's key over the field
/// name, a zero byte, and the value's UTF-8 bytes.
pub fn personal_digest(subject_key: &[u8; 32], field: &str, value: &str) -> Hash {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(subject_key).expect("HMAC takes any key length");
    mac.update(field.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether a target type names a person, whose name is personal data (default: `user`).
pub fn is_person_type(target_type: &str, person_types: &[&str]) -> bool {
    person_types
        .iter()
        .any(|t| t.eq_ignore_ascii_case(target_type))
}

/// Computes the digests of an event's personal fields. `actor_key` is the actor's subject key;
/// `target_key` the target's, when the target is a person (else its name is public).
pub fn digests_for(
    event: &Event,
    actor_key: &[u8; 32],
    target_key: Option<&[u8; 32]>,
) -> PersonalDigests {
    let person_types: &[&str] = if target_key.is_some() {
        &[event_target_type(event)]
    } else {
        &[]
    };
    digests_with(event, person_types, |subject| {
        Ok::<_, std::convert::Infallible>(if subject == event.actor.id {
            *actor_key
        } else {
            *target_key.unwrap_or(actor_key)
        })
    })
    .unwrap_or_else(|never| match never {})
}

fn event_target_type(event: &Event) -> &str {
    event.target.as_ref().map_or("", |t| t.target_type.as_str())
}

/// Computes the digests of an event's personal fields, asking `key_of` for a subject's key only
/// when that subject has a personal value in the event (so no key is made for subjects that
/// never carry personal data). A target whose type is in `person_types` is a person.
pub fn digests_with<E>(
    event: &Event,
    person_types: &[&str],
    key_of: impl FnMut(&str) -> Result<[u8; 32], E>,
) -> Result<PersonalDigests, E> {
    digests_of(&EntryParts::of_event(event), person_types, key_of)
}

/// [`digests_with`] of an event's [`EntryParts`].
pub fn digests_of<E>(
    event: &EntryParts<'_>,
    person_types: &[&str],
    mut key_of: impl FnMut(&str) -> Result<[u8; 32], E>,
) -> Result<PersonalDigests, E> {
    let context = event.context;
    let actor_values = [
        ("actor.name", event.actor.name.as_deref()),
        ("actor.email", event.actor.email.as_deref()),
        ("context.ip", context.and_then(|c| c.ip.as_deref())),
        (
            "context.user_agent",
            context.and_then(|c| c.user_agent.as_deref()),
        ),
    ];
    let mut actor = [None; 4];
    if actor_values.iter().any(|(_, v)| v.is_some()) {
        let key = key_of(&event.actor.id)?;
        for (slot, (field, value)) in actor.iter_mut().zip(actor_values) {
            *slot = value.map(|v| personal_digest(&key, field, v));
        }
    }
    let target_name = match event.target {
        Some(t) if is_person_type(&t.target_type, person_types) => match t.name.as_deref() {
            Some(name) => Some(personal_digest(&key_of(&t.id)?, "target.name", name)),
            None => None,
        },
        _ => None,
    };
    let [actor_name, actor_email, ip, user_agent] = actor;
    Ok(PersonalDigests {
        actor_name,
        actor_email,
        ip,
        user_agent,
        target_name,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.len(v.len());
        self.bytes(v.as_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(
            u32::try_from(n).expect("lengths are bounded far below 4 GiB by the model's limits"),
        );
    }
    fn opt<T>(&mut self, v: Option<T>, mut f: impl FnMut(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
    fn json(&mut self, v: &Value) {
        match v {
            Value::Null => self.u8(0),
            Value::Bool(false) => self.u8(1),
            Value::Bool(true) => self.u8(2),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.u8(3);
                    self.i64(i);
                } else if let Some(u) = n.as_u64() {
                    self.u8(4);
                    self.u64(u);
                } else {
                    self.u8(5);
                    self.u64(n.as_f64().unwrap_or(0.0).to_bits());
                }
            }
            Value::String(s) => {
                self.u8(6);
                self.str(s);
            }
            Value::Array(items) => {
                self.u8(7);
                self.len(items.len());
                items.iter().for_each(|i| self.json(i));
            }
            Value::Object(map) => {
                self.u8(8);
                self.len(map.len());
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                for (k, v) in entries {
                    self.str(k);
                    self.json(v);
                }
            }
        }
    }
}

impl Writer {
    /// Fields 1–11 (§4), the same in every version: the version byte up to `error`.
    fn head(&mut self, version: u8, event: &EntryParts<'_>) {
        self.u8(version);
        self.str(event.tenant);
        self.u64(event.seq);
        self.bytes(event.id.as_bytes());
        self.i64(event.recorded_at.micros());
        self.i64(event.occurred_at.micros());
        self.str(event.action);
        self.u8(category_code(event.category));
        self.opt(event.event_type, |w, v| w.str(v));
        self.u8(match event.outcome {
            Outcome::Success => 0,
            Outcome::Failure => 1,
        });
        self.opt(event.error, |w, v| w.str(v));
    }
}

pub(crate) fn category_code(c: Category) -> u8 {
    match c {
        Category::Create => 0,
        Category::Read => 1,
        Category::Update => 2,
        Category::Delete => 3,
        Category::Auth => 4,
        Category::Other => 5,
    }
}

fn actor_type_code(t: sealtrail_model::ActorType) -> u8 {
    match t {
        sealtrail_model::ActorType::User => 0,
        sealtrail_model::ActorType::Service => 1,
        sealtrail_model::ActorType::System => 2,
        sealtrail_model::ActorType::Anonymous => 3,
    }
}

/// Encodes an event as the leaf entry of version [`ENTRY_VERSION`]. Personal values are taken
/// from `digests`, never from the event, so an anonymised event encodes as it did before.
/// `prev` is the leaf hash of the event before it in the tenant's log ([`GENESIS`] for seq 1).
pub fn encode_entry(event: &Event, digests: &PersonalDigests, prev: &Hash) -> Vec<u8> {
    encode_parts(&EntryParts::of_event(event), digests, prev)
}

/// [`encode_entry`] of an event's [`EntryParts`]: the same bytes.
pub fn encode_parts(event: &EntryParts<'_>, digests: &PersonalDigests, prev: &Hash) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1024));
    w.head(ENTRY_VERSION, event);
    w.str(&event.actor.id);
    w.u8(actor_type_code(event.actor.actor_type));
    w.opt(digests.actor_name.as_ref(), |w, d| w.bytes(d));
    w.opt(digests.actor_email.as_ref(), |w, d| w.bytes(d));
    w.opt(event.target, |w, t| {
        w.str(&t.target_type);
        w.str(&t.id);
        // A person's name is a digest (tag 2); any other name is plain text (tag 1).
        match (&digests.target_name, t.name.as_deref()) {
            (Some(d), _) => {
                w.u8(2);
                w.bytes(d);
            }
            (None, Some(name)) => {
                w.u8(1);
                w.str(name);
            }
            (None, None) => w.u8(0),
        }
    });
    w.opt(event.organization, |w, o| {
        w.str(&o.id);
        w.opt(o.name.as_deref(), |w, v| w.str(v));
    });
    w.opt(event.context, |w, c| {
        w.opt(digests.ip.as_ref(), |w, d| w.bytes(d));
        w.opt(digests.user_agent.as_ref(), |w, d| w.bytes(d));
        w.opt(c.session_id.as_deref(), |w, v| w.str(v));
        w.opt(c.correlation_id.as_deref(), |w, v| w.str(v));
        w.opt(c.endpoint.as_deref(), |w, v| w.str(v));
        w.opt(c.method.as_deref(), |w, v| w.str(v));
        w.opt(c.status_code, |w, v| w.u16(v));
        w.opt(c.duration_ms.as_ref(), |w, n| {
            w.json(&Value::Number(n.clone()))
        });
    });
    w.len(event.changes.len());
    event.changes.each(|field, old, new| {
        w.str(field);
        w.json(old);
        w.json(new);
    });
    w.len(event.related.len());
    for r in event.related {
        w.str(&r.related_type);
        w.str(&r.id);
    }
    w.opt(event.metadata, |w, m| w.json(m));
    w.bytes(prev);
    w.0
}

/// The canonical encoding of one JSON value (§2), as a change value's digest is made over it.
pub fn json_bytes(value: &Value) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(16));
    w.json(value);
    w.0
}

/// What [`encode_v2`] asks for each place a personal value may take.
pub type DigestOf<'f> = dyn FnMut(Slot, Option<&[u8]>) -> Option<Hash> + 'f;

/// Encodes a new event as an entry of version [`ENTRY_VERSION_2`] and the personal values kept
/// beside it ([`crate::personal`]): every personal value gets a fresh opening from `opening`.
///
/// Personal are the actor's id, name and e-mail, the context's ip and user agent, a person
/// target's id and name (its type is one of `person_types`, case-insensitive), and a change value
/// that is not null when the target is a person, or that is a string equal to one of those values.
pub fn encode_new_v2(
    event: &EntryParts<'_>,
    person_types: &[&str],
    prev: &Hash,
    mut opening: impl FnMut() -> Opening,
) -> (Vec<u8>, Vec<u8>) {
    let person = event
        .target
        .filter(|t| is_person_type(&t.target_type, person_types));
    let context = event.context;
    let mut known: Vec<&str> = [
        Some(event.actor.id.as_str()),
        event.actor.name.as_deref(),
        event.actor.email.as_deref(),
        context.and_then(|c| c.ip.as_deref()),
        context.and_then(|c| c.user_agent.as_deref()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(t) = person {
        known.push(&t.id);
        known.extend(t.name.as_deref());
    }
    let mut held = HeldWriter::default();
    let entry = encode_v2(event, prev, &mut |slot, value| {
        let value = value?;
        let personal = match slot {
            Slot::TargetId | Slot::TargetName => person.is_some(),
            Slot::ChangeOld(_) | Slot::ChangeNew(_) => {
                // The canonical encoding: tag 0 is null, tag 6 a string (length, then bytes).
                value != [0]
                    && (person.is_some()
                        || (value[0] == 6 && known.iter().any(|k| k.as_bytes() == &value[5..])))
            }
            _ => true,
        };
        if !personal {
            return None;
        }
        let key = opening();
        held.push(
            slot,
            Held::Open {
                opening: key,
                value,
            },
        );
        Some(opened_digest(&key, slot.field(), value))
    })
    .expect("a new event's actor id is always given a digest");
    (entry, held.finish())
}

/// Encodes an event as an entry of version [`ENTRY_VERSION_2`], asking `digest` for each place a
/// personal value may take, in entry order: given the slot and the event's value there (UTF-8
/// text, or a change value's canonical JSON; `None` when the event has none), it answers the
/// digest to write, or `None` to write the value in the clear (or nothing, when there is none).
/// The actor's id must get a digest, else there is no entry (`None`). A target's name is
/// asked for only when its id got a digest: a person's name is never in the clear.
pub fn encode_v2(
    event: &EntryParts<'_>,
    prev: &Hash,
    digest: &mut DigestOf<'_>,
) -> Option<Vec<u8>> {
    let mut w = Writer(Vec::with_capacity(1024));
    w.head(ENTRY_VERSION_2, event);
    w.bytes(&digest(Slot::ActorId, Some(event.actor.id.as_bytes()))?);
    w.u8(actor_type_code(event.actor.actor_type));
    fn text(v: Option<&String>) -> Option<&[u8]> {
        v.map(|s| s.as_bytes())
    }
    let name = digest(Slot::ActorName, text(event.actor.name.as_ref()));
    w.opt(name.as_ref(), |w, d| w.bytes(d));
    let email = digest(Slot::ActorEmail, text(event.actor.email.as_ref()));
    w.opt(email.as_ref(), |w, d| w.bytes(d));
    w.opt(event.target, |w, t| {
        w.str(&t.target_type);
        match digest(Slot::TargetId, Some(t.id.as_bytes())) {
            Some(d) => {
                w.u8(2);
                w.bytes(&d);
                match digest(Slot::TargetName, text(t.name.as_ref())) {
                    Some(d) => {
                        w.u8(2);
                        w.bytes(&d);
                    }
                    None => w.u8(0),
                }
            }
            None => {
                w.u8(1);
                w.str(&t.id);
                w.opt(t.name.as_deref(), |w, v| w.str(v));
            }
        }
    });
    w.opt(event.organization, |w, o| {
        w.str(&o.id);
        w.opt(o.name.as_deref(), |w, v| w.str(v));
    });
    w.opt(event.context, |w, c| {
        let ip = digest(Slot::Ip, text(c.ip.as_ref()));
        w.opt(ip.as_ref(), |w, d| w.bytes(d));
        let ua = digest(Slot::UserAgent, text(c.user_agent.as_ref()));
        w.opt(ua.as_ref(), |w, d| w.bytes(d));
        w.opt(c.session_id.as_deref(), |w, v| w.str(v));
        w.opt(c.correlation_id.as_deref(), |w, v| w.str(v));
        w.opt(c.endpoint.as_deref(), |w, v| w.str(v));
        w.opt(c.method.as_deref(), |w, v| w.str(v));
        w.opt(c.status_code, |w, v| w.u16(v));
        w.opt(c.duration_ms.as_ref(), |w, n| {
            w.json(&Value::Number(n.clone()))
        });
    });
    w.len(event.changes.len());
    let mut index = 0u32;
    event.changes.each(|field, old, new| {
        w.str(field);
        for (slot, value) in [(Slot::ChangeOld(index), old), (Slot::ChangeNew(index), new)] {
            let bytes = json_bytes(value);
            match digest(slot, Some(&bytes)) {
                Some(d) => {
                    w.u8(PERSONAL_CHANGE);
                    w.bytes(&d);
                }
                None => w.bytes(&bytes),
            }
        }
        index += 1;
    });
    w.len(event.related.len());
    for r in event.related {
        w.str(&r.related_type);
        w.str(&r.id);
    }
    w.opt(event.metadata, |w, m| w.json(m));
    w.bytes(prev);
    Some(w.0)
}

/// Encodes a served event again as the version-2 entry it was sealed as, from the event and its
/// seal material alone ([`crate::personal::seal_material`]), as an offline verifier does: a
/// value whose opening is given is digested again from what is served, so an altered value
/// changes the bytes; a slot without one (erased) takes the given digest and must show what an
/// erased value shows (nothing, [`crate::view::REDACTED`] for a change value, a pseudonym for
/// an id), else the bytes change too. `None` when the seal does not even cover the actor's id.
pub fn reencode_v2(
    event: &EntryParts<'_>,
    prev: &Hash,
    seal: &[crate::personal::SealedSlot],
) -> Option<Vec<u8>> {
    let redacted = json_bytes(&Value::String(crate::view::REDACTED.to_owned()));
    encode_v2(event, prev, &mut |slot, value| {
        let (_, sealed) = seal.iter().find(|(s, _)| *s == slot)?;
        match (sealed, value) {
            (Sealed::Open(o), Some(v)) => Some(opened_digest(o, slot.field(), v)),
            // An opening with nothing served: a value was taken out of what is shown.
            (Sealed::Open(_), None) => None,
            (Sealed::Erased(digest), None) => Some(*digest),
            (Sealed::Erased(digest), Some(v)) => {
                let erased_shows = match slot {
                    Slot::ActorId | Slot::TargetId => {
                        std::str::from_utf8(v).is_ok_and(crate::personal::is_pseudonym)
                    }
                    Slot::ChangeOld(_) | Slot::ChangeNew(_) => v == redacted.as_slice(),
                    _ => false,
                };
                erased_shows.then_some(*digest)
            }
        }
    })
}

/// The leaf hash of an event: RFC 9162 leaf hash of its [`encode_entry`] bytes.
pub fn event_leaf_hash(event: &Event, digests: &PersonalDigests, prev: &Hash) -> Hash {
    leaf_hash(&encode_entry(event, digests, prev))
}

impl PersonalDigests {
    /// The stored form: one byte whose bits 0–4 say which of actor name, actor e-mail, ip,
    /// user agent and target name are present, then those digests in that order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let fields = self.fields();
        let mut out = vec![0u8];
        for (bit, digest) in fields.iter().enumerate() {
            if let Some(d) = digest {
                out[0] |= 1 << bit;
                out.extend_from_slice(d);
            }
        }
        out
    }

    /// Parses the stored form; `None` when it is malformed.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&bits, mut rest) = bytes.split_first()?;
        if bits >> 5 != 0 {
            return None;
        }
        let mut take = |bit: u8| -> Option<Option<Hash>> {
            if bits & (1 << bit) == 0 {
                return Some(None);
            }
            let (d, tail) = rest.split_at_checked(32)?;
            rest = tail;
            Some(Some(d.try_into().ok()?))
        };
        let digests = Self {
            actor_name: take(0)?,
            actor_email: take(1)?,
            ip: take(2)?,
            user_agent: take(3)?,
            target_name: take(4)?,
        };
        rest.is_empty().then_some(digests)
    }

    /// The digests in stored order: actor name, actor e-mail, ip, user agent, target name.
    pub fn fields(&self) -> [Option<Hash>; 5] {
        [
            self.actor_name,
            self.actor_email,
            self.ip,
            self.user_agent,
            self.target_name,
        ]
    }
}

/// The person types of the default configuration: targets of these types are people.
pub const DEFAULT_PERSON_TYPES: [&str; 1] = ["user"];
