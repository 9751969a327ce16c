//! Personal values of entries of version 2 (`docs/integrity.md` §3.2): each enters the leaf as a
//! digest under an *opening*, 16 random bytes kept beside the value, and nothing else.
//!
//! A verifier given the value and its opening recomputes the digest, so the value is checked as
//! any other field is, offline too; erasing a value erases its opening with it, and what is left
//! in the leaf is a digest nobody can test a guess against. The store keeps the values and
//! openings in the row's `personal_values`, in the self-describing form read and written here,
//! next to the entry; anonymisation rewrites that form and nothing else.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::merkle::Hash;

/// The random key a version-2 personal value is digested under.
pub type Opening = [u8; 16];

/// Where a personal value sits in an entry of version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// `actor.id`: always personal in version 2.
    ActorId,
    /// `actor.name`.
    ActorName,
    /// `actor.email`.
    ActorEmail,
    /// `target.id`, when the target is a person.
    TargetId,
    /// `target.name`, when the target is a person.
    TargetName,
    /// `context.ip`.
    Ip,
    /// `context.user_agent`.
    UserAgent,
    /// The `old_value` of the change at this index.
    ChangeOld(u32),
    /// The `new_value` of the change at this index.
    ChangeNew(u32),
}

/// Whose personal data a value is: the actor's or the (person) target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The actor (`actor.id`).
    Actor,
    /// The target (`target.id`), a person.
    Target,
}

impl Slot {
    /// The field name digests of this slot are made over (§3.2).
    pub fn field(self) -> &'static str {
        match self {
            Self::ActorId => "actor.id",
            Self::ActorName => "actor.name",
            Self::ActorEmail => "actor.email",
            Self::TargetId => "target.id",
            Self::TargetName => "target.name",
            Self::Ip => "context.ip",
            Self::UserAgent => "context.user_agent",
            Self::ChangeOld(_) => "changes.old_value",
            Self::ChangeNew(_) => "changes.new_value",
        }
    }

    /// The slot's name as seal material gives it: the field, with the change's index for a
    /// change value (`changes[2].new_value`).
    pub fn name(self) -> String {
        match self {
            Self::ChangeOld(i) => format!("changes[{i}].old_value"),
            Self::ChangeNew(i) => format!("changes[{i}].new_value"),
            other => other.field().to_owned(),
        }
    }

    /// Parses [`Slot::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        let fixed = [
            Self::ActorId,
            Self::ActorName,
            Self::ActorEmail,
            Self::TargetId,
            Self::TargetName,
            Self::Ip,
            Self::UserAgent,
        ];
        if let Some(slot) = fixed.into_iter().find(|s| s.field() == name) {
            return Some(slot);
        }
        let rest = name.strip_prefix("changes[")?;
        let (index, which) = rest.split_once("].")?;
        if index.is_empty() || (index.len() > 1 && index.starts_with('0')) {
            return None;
        }
        let index: u32 = index.parse().ok()?;
        match which {
            "old_value" => Some(Self::ChangeOld(index)),
            "new_value" => Some(Self::ChangeNew(index)),
            _ => None,
        }
    }

    /// Whose data the value is. A change value belongs to the target when the target is a
    /// person, else to the actor.
    pub fn owner(self, target_is_person: bool) -> Owner {
        match self {
            Self::TargetId | Self::TargetName => Owner::Target,
            Self::ChangeOld(_) | Self::ChangeNew(_) if target_is_person => Owner::Target,
            _ => Owner::Actor,
        }
    }

    /// Its code in the stored form and in seal material, with a change value's index.
    pub fn code(self) -> (u8, Option<u32>) {
        match self {
            Self::ActorId => (0, None),
            Self::ActorName => (1, None),
            Self::ActorEmail => (2, None),
            Self::TargetId => (3, None),
            Self::TargetName => (4, None),
            Self::Ip => (5, None),
            Self::UserAgent => (6, None),
            Self::ChangeOld(i) => (7, Some(i)),
            Self::ChangeNew(i) => (8, Some(i)),
        }
    }
}

/// The digest of a version-2 personal value: HMAC-SHA-256 keyed by its opening over the field
/// name ([`Slot::field`]), a zero byte, and the value's bytes (UTF-8 text, or for a change value
/// its canonical JSON encoding, §2).
pub fn opened_digest(opening: &Opening, field: &str, value: &[u8]) -> Hash {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(opening).expect("HMAC takes any key length");
    mac.update(field.as_bytes());
    mac.update(&[0]);
    mac.update(value);
    mac.finalize().into_bytes().into()
}

/// What the store holds for one personal value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held<'a> {
    /// The value and its opening.
    Open {
        /// The opening its digest was made under.
        opening: Opening,
        /// The value: UTF-8 text, or a change value's canonical JSON encoding.
        value: &'a [u8],
    },
    /// Erased: the value and its opening are gone.
    Erased,
    /// Erased, with a pseudonym shown in its place (an anonymised id); nothing checks it.
    Replaced(&'a str),
}

/// The first byte of the version-2 form of `personal_values`. The version-1 form starts with a
/// bit mask whose top three bits are always clear, so the two never look alike.
pub const MARK: u8 = 0x80;

/// Builds the stored form of version-2 personal values, in entry order.
#[derive(Debug, Clone)]
pub struct HeldWriter(Vec<u8>);

impl Default for HeldWriter {
    fn default() -> Self {
        Self(vec![MARK])
    }
}

impl HeldWriter {
    /// Appends what is held for `slot`.
    pub fn push(&mut self, slot: Slot, held: Held<'_>) {
        let (code, index) = slot.code();
        self.0.push(code);
        if let Some(i) = index {
            self.0.extend_from_slice(&i.to_be_bytes());
        }
        match held {
            Held::Erased => self.0.push(0),
            Held::Open { opening, value } => {
                self.0.push(1);
                self.0.extend_from_slice(&opening);
                self.bytes(value);
            }
            Held::Replaced(shown) => {
                self.0.push(2);
                self.bytes(shown.as_bytes());
            }
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
    }

    /// The stored form.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads the stored form of version-2 personal values: each slot with what is held for it, in
/// the order written. Stops at the first malformed item; [`held_is_valid`] says whether there
/// was one.
pub fn held(bytes: &[u8]) -> impl Iterator<Item = (Slot, Held<'_>)> {
    walk(bytes, true)
}

/// [`held`] over a form already found valid ([`PersonalValues::from_bytes`] checks it), without
/// checking the text of each value again.
///
/// [`PersonalValues::from_bytes`]: crate::view::PersonalValues::from_bytes
pub(crate) fn held_valid(bytes: &[u8]) -> impl Iterator<Item = (Slot, Held<'_>)> {
    walk(bytes, false)
}

fn walk(bytes: &[u8], check_text: bool) -> impl Iterator<Item = (Slot, Held<'_>)> {
    let mut rest = match bytes.split_first() {
        Some((&MARK, rest)) => rest,
        _ => &[][..],
    };
    std::iter::from_fn(move || {
        let (item, _, tail) = read_item_text(rest, check_text)?;
        rest = tail;
        Some(item)
    })
}

/// Walks a whole version-2 form, calling `f` with each item and, for a text slot's open value,
/// its text; `None` as soon as an item is malformed, a slot comes twice or `f` says `None`.
/// One walk checks the form and reads it ([`held_is_valid`] then [`held`] would take two).
pub(crate) fn each_valid<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(Slot, Held<'a>, Option<&'a str>) -> Option<()>,
) -> Option<()> {
    let (&MARK, mut rest) = bytes.split_first()? else {
        return None;
    };
    let mut seen = Vec::new();
    while !rest.is_empty() {
        let ((slot, held), text, tail) = read_item_text(rest, true)?;
        if seen.contains(&slot) {
            return None;
        }
        seen.push(slot);
        f(slot, held, text)?;
        rest = tail;
    }
    Some(())
}

/// Whether `bytes` is a well-formed version-2 form, every slot at most once.
pub fn held_is_valid(bytes: &[u8]) -> bool {
    each_valid(bytes, |_, _, _| Some(())).is_some()
}

/// One item of the form, a text slot's open value as text (see [`read_item_text`]), and the
/// bytes after it.
type ItemRead<'a> = ((Slot, Held<'a>), Option<&'a str>, &'a [u8]);

/// One item of the form and the bytes after it. With `check_text`, a text slot's open value
/// must be UTF-8 (else `None`) and comes back as text too; without, no text is checked or
/// given (for a form already checked).
fn read_item_text(bytes: &[u8], check_text: bool) -> Option<ItemRead<'_>> {
    let (&code, mut rest) = bytes.split_first()?;
    let mut index = || -> Option<u32> {
        let (i, tail) = rest.split_first_chunk::<4>()?;
        rest = tail;
        Some(u32::from_be_bytes(*i))
    };
    let slot = match code {
        0 => Slot::ActorId,
        1 => Slot::ActorName,
        2 => Slot::ActorEmail,
        3 => Slot::TargetId,
        4 => Slot::TargetName,
        5 => Slot::Ip,
        6 => Slot::UserAgent,
        7 => Slot::ChangeOld(index()?),
        8 => Slot::ChangeNew(index()?),
        _ => return None,
    };
    let (&state, tail) = rest.split_first()?;
    rest = tail;
    let held = match state {
        0 => Held::Erased,
        1 => {
            let (opening, tail) = rest.split_first_chunk::<16>()?;
            let (value, tail) = sized(tail)?;
            rest = tail;
            Held::Open {
                opening: *opening,
                value,
            }
        }
        2 => {
            let (shown, tail) = sized(rest)?;
            rest = tail;
            Held::Replaced(std::str::from_utf8(shown).ok()?)
        }
        _ => return None,
    };
    // Text slots hold UTF-8; change values hold canonical JSON, checked where it is decoded.
    let mut text = None;
    if let Held::Open { value, .. } = held
        && check_text
        && !matches!(slot, Slot::ChangeOld(_) | Slot::ChangeNew(_))
    {
        text = Some(std::str::from_utf8(value).ok()?);
    }
    Some(((slot, held), text, rest))
}

/// A 4-byte big-endian length, then that many bytes.
fn sized(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, tail) = bytes.split_first_chunk::<4>()?;
    tail.split_at_checked(u32::from_be_bytes(*len) as usize)
}

/// Rewrites a stored version-2 form: `f` answers what each slot holds from now on (it may keep
/// what it is given). Returns `None` when the form is malformed.
pub fn rewrite<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(Slot, Held<'a>) -> Held<'a>,
) -> Option<Vec<u8>> {
    if !held_is_valid(bytes) {
        return None;
    }
    let mut out = HeldWriter::default();
    for (slot, held) in held(bytes) {
        out.push(slot, f(slot, held));
    }
    Some(out.finish())
}

/// What seal material gives a verifier for one personal slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// The value is held: the opening its digest was made under, so that the verifier digests
    /// the value it is shown (an altered value changes the entry's bytes).
    Open(Opening),
    /// The value was erased: the digest that stays in the entry.
    Erased(Hash),
}

/// One personal slot as seal material gives it to a verifier.
pub type SealedSlot = (Slot, Sealed);

/// The first byte of [`seal_material`] as written today: a held value's slot carries only its
/// opening (its digest is made again from the value and the opening).
pub const SEAL_MARK: u8 = 0x81;

/// The first byte of the first form of seal material (written until 2026-12), which carries
/// every slot's digest, the opening beside it while the value is held. Still read: archives
/// and exports written in that form verify for as long as they are kept.
pub const SEAL_MARK_WITH_DIGESTS: u8 = MARK;

/// Whether `bytes` are version-2 seal material (either form) rather than the version-1
/// digests, whose first byte (a bit mask) never has its top bit set.
pub fn is_seal_material(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(&(SEAL_MARK | SEAL_MARK_WITH_DIGESTS)))
}

/// The seal material of a version-2 entry's personal values, as exports and the API give it
/// beside the event (hex, in `seal.personal`): [`SEAL_MARK`], then for each slot in entry
/// order its code (a change value's with its index, as in the stored form), then `1` and the
/// opening while the value is held, else `0` and the digest.
pub fn seal_material(slots: &[SealedSlot]) -> Vec<u8> {
    let mut out = vec![SEAL_MARK];
    for (slot, sealed) in slots {
        let (code, index) = slot.code();
        out.push(code);
        if let Some(i) = index {
            out.extend_from_slice(&i.to_be_bytes());
        }
        match sealed {
            Sealed::Open(o) => {
                out.push(1);
                out.extend_from_slice(o);
            }
            Sealed::Erased(d) => {
                out.push(0);
                out.extend_from_slice(d);
            }
        }
    }
    out
}

/// Parses [`seal_material`], in either form ([`SEAL_MARK`], [`SEAL_MARK_WITH_DIGESTS`]);
/// `None` when it is malformed.
pub fn parse_seal_material(bytes: &[u8]) -> Option<Vec<SealedSlot>> {
    let (&mark, mut rest) = bytes.split_first()?;
    if mark != SEAL_MARK && mark != SEAL_MARK_WITH_DIGESTS {
        return None;
    }
    let mut out: Vec<SealedSlot> = Vec::new();
    while let Some((&code, tail)) = rest.split_first() {
        rest = tail;
        let mut index = || -> Option<u32> {
            let (i, tail) = rest.split_first_chunk::<4>()?;
            rest = tail;
            Some(u32::from_be_bytes(*i))
        };
        let slot = match code {
            0 => Slot::ActorId,
            1 => Slot::ActorName,
            2 => Slot::ActorEmail,
            3 => Slot::TargetId,
            4 => Slot::TargetName,
            5 => Slot::Ip,
            6 => Slot::UserAgent,
            7 => Slot::ChangeOld(index()?),
            8 => Slot::ChangeNew(index()?),
            _ => return None,
        };
        // The first form gives the digest first, whether or not the value is held.
        let mut digest = None;
        if mark == SEAL_MARK_WITH_DIGESTS {
            let (d, tail) = rest.split_first_chunk::<32>()?;
            rest = tail;
            digest = Some(*d);
        }
        let (&has, tail) = rest.split_first()?;
        rest = tail;
        let sealed = match (has, digest) {
            (0, Some(d)) => Sealed::Erased(d),
            (0, None) => {
                let (d, tail) = rest.split_first_chunk::<32>()?;
                rest = tail;
                Sealed::Erased(*d)
            }
            (1, _) => {
                let (o, tail) = rest.split_first_chunk::<16>()?;
                rest = tail;
                Sealed::Open(*o)
            }
            _ => return None,
        };
        if out.iter().any(|(s, _)| *s == slot) {
            return None;
        }
        out.push((slot, sealed));
    }
    Some(out)
}

/// Whether `shown` is a pseudonym as anonymisation makes them: `anon_` and 16 lowercase hex
/// digits.
pub fn is_pseudonym(shown: &str) -> bool {
    shown.strip_prefix("anon_").is_some_and(|h| {
        h.len() == 16
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
