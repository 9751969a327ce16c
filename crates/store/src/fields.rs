//! What an event can be filtered by, declared once.
//!
//! Each [`FieldSpec`] names a filter (its query parameter and search-body field), says how a
//! given value is checked and normalised, how the event's own values are read from its sealed
//! entry, and what the API documentation says of it. The indexer turns those values into
//! [`Term`]s of the derived postings, the reader turns a filter into the same terms (and
//! checks the log's unindexed tail with the same values), the parameter parser and the OpenAPI
//! document are made from this table.
//!
//! Adding a filter is: a [`FieldSpec`] here (with a new, never reused tag), a bump of
//! [`DERIVED_VERSION`] (every store rebuilds its derived data from the log when it next opens),
//! and a test. Nothing is added to the log: a filter never changes what is sealed.

use std::collections::BTreeMap;

use sealtrail_ledger::view::{EntryView, PersonalValues};
use sealtrail_model::{Category, Outcome, Timestamp};
use serde_json::Value;

/// The version of everything derived from the log (terms, their tags, how values are read).
/// A store whose derived data was built by another version rebuilds it from the log.
pub const DERIVED_VERSION: u32 = 7;

/// Where a filter may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A query parameter of every list (repeatable), and a search-body field.
    List,
    /// A search-body field only (`POST /audit-logs/search`).
    Search,
    /// Not given by clients: used by the store itself (entity timelines).
    Internal,
}

/// One event, as the declarations read it: its sealed entry and its personal values.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a, 'b> {
    /// The sealed entry.
    pub view: &'b EntryView<'a>,
    /// The personal values kept beside it (erased ones absent).
    pub personal: &'b PersonalValues<'a>,
}

impl<'b> Source<'_, 'b> {
    /// `actor.id` as served (a version-2 entry keeps it beside the entry; an anonymised one
    /// is its pseudonym).
    pub fn actor_id(&self) -> &'b str {
        self.view.actor_id(self.personal)
    }

    /// `target.id` as served, as [`Source::actor_id`] is.
    pub fn target_id(&self) -> Option<&'b str> {
        self.view.target_id(self.personal)
    }
}

/// Reads an event's values of one field: calls the emitter with each.
pub type Values = fn(Source<'_, '_>, &mut dyn FnMut(&str));

/// The declaration of one filterable field.
pub struct FieldSpec {
    /// The query parameter and search-body field.
    pub name: &'static str,
    /// The byte that starts this field's terms in the derived postings. Never reused.
    pub tag: u8,
    /// What the API documentation says of it.
    pub doc: &'static str,
    /// Where clients may give it.
    pub exposure: Exposure,
    /// The only values it takes, when they are a fixed set (for the documentation).
    pub choices: &'static [&'static str],
    /// Checks a given value and returns it as the event's values are written.
    pub parse: fn(&str) -> Result<String, String>,
    /// Calls `emit` with each of an event's values for this field.
    pub values: Values,
}

impl std::fmt::Debug for FieldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A declared field, by its tag.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Field(u8);

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.spec().name)
    }
}

impl Field {
    /// Its declaration.
    pub fn spec(self) -> &'static FieldSpec {
        FIELDS
            .iter()
            .find(|s| s.tag == self.0)
            .expect("a Field is only made from a declared tag")
    }

    /// The field a client names, if it is declared and exposed to clients.
    pub fn by_name(name: &str) -> Option<Self> {
        FIELDS
            .iter()
            .find(|s| s.name == name && s.exposure != Exposure::Internal)
            .map(|s| Self(s.tag))
    }

    /// Every declared field.
    pub fn all() -> impl Iterator<Item = Self> {
        FIELDS.iter().map(|s| Self(s.tag))
    }

    /// The byte that starts its terms.
    pub const fn tag(self) -> u8 {
        self.0
    }

    /// The term of one of this field's values.
    pub fn term(self, value: &str) -> Term {
        let mut bytes = Vec::with_capacity(1 + value.len());
        self.term_into(value, &mut bytes);
        Term(bytes.into_boxed_slice())
    }

    /// Makes `into` the bytes of the term of one of this field's values, reusing its buffer.
    pub fn term_into(self, value: &str, into: &mut Vec<u8>) {
        into.clear();
        into.push(self.0);
        into.extend_from_slice(value.as_bytes());
    }
}

/// A term of the derived postings: a field's tag, then one value's UTF-8 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Term(pub Box<[u8]>);

impl std::borrow::Borrow<[u8]> for Term {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (tag, value) = self.0.split_first().unwrap_or((&0, &[]));
        write!(f, "{}:{}", *tag as char, String::from_utf8_lossy(value))
    }
}

fn any_text(value: &str) -> Result<String, String> {
    Ok(value.to_owned())
}

/// `type` and `id` as one value, unambiguous whatever they hold.
pub fn pair(kind: &str, id: &str) -> String {
    format!("{}:{kind}{id}", kind.len())
}

/// The `type` and `id` of a value made by [`pair`].
pub fn unpair(value: &str) -> Option<(&str, &str)> {
    let (len, rest) = value.split_once(':')?;
    let len: usize = len.parse().ok()?;
    (rest.is_char_boundary(len) && len <= rest.len()).then(|| rest.split_at(len))
}

/// `actor_id`.
pub const ACTOR_ID: Field = Field(b'A');
/// `action`.
pub const ACTION: Field = Field(b'a');
/// `category`.
pub const CATEGORY: Field = Field(b'c');
/// `event_type`.
pub const EVENT_TYPE: Field = Field(b'e');
/// `target_type`.
pub const TARGET_TYPE: Field = Field(b'T');
/// `target_id`.
pub const TARGET_ID: Field = Field(b'I');
/// `organization_id`.
pub const ORGANIZATION_ID: Field = Field(b'o');
/// `outcome`.
pub const OUTCOME: Field = Field(b'O');
/// `correlation_id`.
pub const CORRELATION_ID: Field = Field(b'C');
/// `ip`.
pub const IP: Field = Field(b'p');
/// `changed_field`.
pub const CHANGED_FIELD: Field = Field(b'f');
/// The target as a `(type, id)` [`pair`], for entity timelines.
pub const TARGET: Field = Field(b't');
/// Each `related` link as a `(type, id)` [`pair`], for entity timelines.
pub const RELATED: Field = Field(b'r');
/// Each word full-text search reads ([`crate::text`]), for `q`.
pub const WORD: Field = Field(b'w');

/// Calls `emit` with every word of an event that `q` searches ([`crate::text`]); a word the
/// event holds several times comes several times.
pub fn words_of(s: Source<'_, '_>, emit: &mut dyn FnMut(&str)) {
    let mut scratch = String::new();
    texts_of(s, &mut |t| crate::text::words(t, &mut scratch, emit));
}

/// Calls `emit` with every text of an event whose words `q` searches, in order: the words of
/// an event are those of these texts ([`words_of`]).
pub fn texts_of(s: Source<'_, '_>, emit: &mut dyn FnMut(&str)) {
    texts(s, true, emit)
}

/// Calls `emit` with the texts whose words the index keeps as word postings: every text of
/// [`texts_of`] but an `actor.id` or `target.id` that is its own word
/// ([`crate::text::is_own_word`]: a lower-case identifier or UUID). Such an identifier's
/// field posting holds exactly the events its word posting would, so a word is looked up in
/// both ([`EventFilter::groups`]) and the index keeps one posting for it instead of two (a
/// fifth of the word postings of the bench's events).
pub fn indexed_texts_of(s: Source<'_, '_>, emit: &mut dyn FnMut(&str)) {
    texts(s, false, emit)
}

/// The texts of [`texts_of`]; without the identifiers that are their own words unless
/// `own_word_ids`.
fn texts(s: Source<'_, '_>, own_word_ids: bool, emit: &mut dyn FnMut(&str)) {
    use sealtrail_ledger::view::TargetName;
    let mut text = |t: &str| emit(t);
    let id = |t: &str| own_word_ids || !crate::text::is_own_word(t);
    text(s.view.action);
    if let Some(t) = s.view.event_type {
        text(t);
    }
    let actor = s.actor_id();
    if id(actor) {
        text(actor);
    }
    if let Some(n) = s.personal.actor_name {
        text(n);
    }
    if let Some(t) = &s.view.target {
        let target = s.target_id().unwrap_or_default();
        if id(target) {
            text(target);
        }
        match t.name {
            TargetName::Plain(n) => text(n),
            TargetName::Digest => {
                if let Some(n) = s.personal.target_name {
                    text(n)
                }
            }
            TargetName::None => {}
        }
    }
    if let Some(e) = s.view.error {
        text(e);
    }
    s.view.searchable_values(s.personal, &mut |v| text(v));
}

/// Every filterable field.
pub static FIELDS: [FieldSpec; 14] = [
    FieldSpec {
        name: "actor_id",
        tag: ACTOR_ID.0,
        doc: "Only events by this actor (`actor.id`)",
        exposure: Exposure::List,
        choices: &[],
        parse: any_text,
        values: |s, emit| emit(s.actor_id()),
    },
    FieldSpec {
        name: "action",
        tag: ACTION.0,
        doc: "Only events with this `action`",
        exposure: Exposure::List,
        choices: &[],
        parse: any_text,
        values: |s, emit| emit(s.view.action),
    },
    FieldSpec {
        name: "category",
        tag: CATEGORY.0,
        doc: "Only events of this category: create, read, update, delete, auth or other",
        exposure: Exposure::List,
        choices: &["create", "read", "update", "delete", "auth", "other"],
        parse: |v| {
            Category::parse(v)
                .map(|c| c.as_str().to_owned())
                .ok_or_else(|| "must be one of create, read, update, delete, auth, other".into())
        },
        values: |s, emit| emit(s.view.category.as_str()),
    },
    FieldSpec {
        name: "event_type",
        tag: EVENT_TYPE.0,
        doc: "Only events with this `event_type`",
        exposure: Exposure::List,
        choices: &[],
        parse: any_text,
        values: |s, emit| {
            if let Some(t) = s.view.event_type {
                emit(t)
            }
        },
    },
    FieldSpec {
        name: "target_type",
        tag: TARGET_TYPE.0,
        doc: "Only events whose `target.type` is this",
        exposure: Exposure::List,
        choices: &[],
        parse: any_text,
        values: |s, emit| {
            if let Some(t) = &s.view.target {
                emit(t.target_type)
            }
        },
    },
    FieldSpec {
        name: "target_id",
        tag: TARGET_ID.0,
        doc: "Only events whose `target.id` is this",
        exposure: Exposure::List,
        choices: &[],
        parse: any_text,
        values: |s, emit| {
            if let Some(id) = s.target_id() {
                emit(id)
            }
        },
    },
    FieldSpec {
        name: "organization_id",
        tag: ORGANIZATION_ID.0,
        doc: "Only events of this organisation (`organization.id`)",
        exposure: Exposure::List,
        choices: &[],
        parse: any_text,
        values: |s, emit| {
            if let Some((id, _)) = s.view.organization {
                emit(id)
            }
        },
    },
    FieldSpec {
        name: "outcome",
        tag: OUTCOME.0,
        doc: "Only successes or only failures: success or failure",
        exposure: Exposure::List,
        choices: &["success", "failure"],
        parse: |v| {
            Outcome::parse(v)
                .map(|o| o.as_str().to_owned())
                .ok_or_else(|| "must be success or failure".into())
        },
        values: |s, emit| emit(s.view.outcome.as_str()),
    },
    FieldSpec {
        name: "correlation_id",
        tag: CORRELATION_ID.0,
        doc: "Only events with this `context.correlation_id`",
        exposure: Exposure::List,
        choices: &[],
        parse: any_text,
        values: |s, emit| {
            if let Some(c) = s.view.context.and_then(|c| c.correlation_id) {
                emit(c)
            }
        },
    },
    FieldSpec {
        name: "ip",
        tag: IP.0,
        doc: "Only events from this IP address (`context.ip`, IPv4 or IPv6, matched in canonical form)",
        exposure: Exposure::List,
        choices: &[],
        parse: |v| {
            sealtrail_model::validate::canonical_ip(v)
                .ok_or_else(|| "must be an IPv4 or IPv6 address".into())
        },
        values: |s, emit| {
            if let Some(ip) = s.personal.ip {
                emit(ip)
            }
        },
    },
    FieldSpec {
        name: "changed_field",
        tag: CHANGED_FIELD.0,
        doc: "Only events that changed this field, or a field inside it (`address` matches `address.city`)",
        exposure: Exposure::Search,
        choices: &[],
        parse: any_text,
        values: |s, emit| {
            // A change of `a.b[2]` is a change of `a`, of `a.b` and of `a.b[2]`.
            for field in s.view.change_fields() {
                for (i, b) in field.bytes().enumerate() {
                    if i > 0 && (b == b'.' || b == b'[') {
                        emit(&field[..i]);
                    }
                }
                emit(field);
            }
        },
    },
    FieldSpec {
        name: "target",
        tag: TARGET.0,
        doc: "The target as an entity, for timelines",
        exposure: Exposure::Internal,
        choices: &[],
        parse: any_text,
        values: |s, emit| {
            if let (Some(t), Some(id)) = (&s.view.target, s.target_id()) {
                emit(&pair(t.target_type, id))
            }
        },
    },
    FieldSpec {
        name: "related",
        tag: RELATED.0,
        doc: "The entities an event names in `related`, for timelines",
        exposure: Exposure::Internal,
        choices: &[],
        parse: any_text,
        values: |s, emit| {
            for (kind, id) in s.view.related() {
                emit(&pair(kind, id))
            }
        },
    },
    FieldSpec {
        name: "words",
        tag: WORD.0,
        doc: "The words full-text search (`q`) reads",
        exposure: Exposure::Internal,
        choices: &[],
        parse: any_text,
        values: words_of,
    },
];

/// Calls `emit` with the bytes of every term the index keeps of an event (a [`Term`]'s bytes,
/// lent: copy them to keep them): each field's, then the words of [`indexed_texts_of`].
pub fn terms_of(source: Source<'_, '_>, emit: impl FnMut(&[u8])) {
    let emit = std::cell::RefCell::new(emit);
    let (mut lower, mut word) = (String::new(), Vec::with_capacity(64));
    terms_and_texts_of(
        source,
        |term| (emit.borrow_mut())(term),
        |text| {
            crate::text::words(text, &mut lower, &mut |w| {
                WORD.term_into(w, &mut word);
                (emit.borrow_mut())(&word);
            })
        },
    );
}

/// Calls `emit` with the bytes of each term of `specs`' values (lent).
fn field_terms<'s>(
    source: Source<'_, '_>,
    specs: impl IntoIterator<Item = &'s FieldSpec>,
    mut emit: impl FnMut(&[u8]),
) {
    let mut scratch = Vec::with_capacity(64);
    for spec in specs {
        (spec.values)(source, &mut |value| {
            Field(spec.tag).term_into(value, &mut scratch);
            emit(&scratch);
        });
    }
}

/// What [`terms_of`] gives, split for the indexer: `term` gets the bytes of every term but the
/// words (lent, as there), `text` each text the words come from ([`indexed_texts_of`]), so
/// that a text many events hold is cut into words once.
pub fn terms_and_texts_of(
    source: Source<'_, '_>,
    term: impl FnMut(&[u8]),
    mut text: impl FnMut(&str),
) {
    field_terms(source, FIELDS.iter().filter(|s| s.tag != WORD.0), term);
    // The measuring baseline derives no words (the feature's note in Cargo.toml).
    if !cfg!(feature = "bench-without-words-and-rollups") {
        indexed_texts_of(source, &mut text);
    }
}

/// Calls `emit` with the terms statistics count of an event: its actor, action, target and
/// outcome.
pub fn stat_terms_of(source: Source<'_, '_>, emit: impl FnMut(&[u8])) {
    field_terms(
        source,
        FIELDS
            .iter()
            .filter(|s| [ACTOR_ID.0, ACTION.0, TARGET.0, OUTCOME.0].contains(&s.tag)),
        emit,
    );
}

/// Filters of SPEC §4.3. Each declared field holds alternatives (OR); different fields, the
/// time range and `metadata` combine with AND; a field with no values does not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Wanted values per field, as [`FieldSpec::parse`] returned them.
    pub fields: BTreeMap<Field, Vec<String>>,
    /// `occurred_at` at or after this.
    pub from: Option<Timestamp>,
    /// `occurred_at` before this.
    pub to: Option<Timestamp>,
    /// `metadata` contains this JSON (PostgreSQL `@>` semantics).
    pub metadata: Option<Value>,
    /// `q`: words the event must all hold, as [`crate::text::query_words`] returned them.
    pub words: Vec<String>,
}

impl EventFilter {
    /// The filter with `values` added to `field`'s alternatives, each normalised by the field's
    /// declaration; panics on a value the declaration refuses (for tests and fixed filters:
    /// parse client input with [`FieldSpec::parse`]).
    pub fn with<I, V>(mut self, field: Field, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: AsRef<str>,
    {
        let spec = field.spec();
        let entry = self.fields.entry(field).or_default();
        for v in values {
            let v = v.as_ref();
            let parsed = (spec.parse)(v)
                .unwrap_or_else(|e| panic!("{v:?} is not a value of {}: {e}", spec.name));
            entry.push(parsed);
        }
        self
    }

    /// The wanted values of `field`.
    pub fn values(&self, field: Field) -> &[String] {
        self.fields.get(&field).map_or(&[], Vec::as_slice)
    }

    /// Whether nothing is filtered at all.
    pub fn is_empty(&self) -> bool {
        self.fields.values().all(Vec::is_empty)
            && self.words.is_empty()
            && self.from.is_none()
            && self.to.is_none()
            && self.metadata.is_none()
    }

    /// The term groups: for each field with values, the terms of its alternatives; for each
    /// word of `q`, its word's term, and when the word could be an identifier kept through its
    /// field alone ([`indexed_texts_of`]), that `actor_id` and `target_id` too.
    pub fn groups(&self) -> Vec<Vec<Term>> {
        self.fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(f, values)| {
                let mut terms: Vec<Term> = values.iter().map(|v| f.term(v)).collect();
                terms.sort();
                terms.dedup();
                terms
            })
            .chain(self.words.iter().map(|w| {
                if crate::text::is_own_word(w) {
                    // In byte order, as the fields' groups are.
                    vec![ACTOR_ID.term(w), TARGET_ID.term(w), WORD.term(w)]
                } else {
                    vec![WORD.term(w)]
                }
            }))
            .collect()
    }

    /// Whether `occurred_at` (microseconds) is inside the time range.
    pub fn in_time(&self, occurred_at: i64) -> bool {
        self.from.is_none_or(|f| occurred_at >= f.micros())
            && self.to.is_none_or(|t| occurred_at < t.micros())
    }

    /// Whether one event matches every part of the filter.
    pub fn matches(&self, source: Source<'_, '_>) -> bool {
        if !self.in_time(source.view.occurred_at) {
            return false;
        }
        for (field, wanted) in &self.fields {
            if wanted.is_empty() {
                continue;
            }
            let mut hit = false;
            (field.spec().values)(source, &mut |v| hit |= wanted.iter().any(|w| w == v));
            if !hit {
                return false;
            }
        }
        if !self.words.is_empty() {
            let mut found = vec![false; self.words.len()];
            words_of(source, &mut |w| {
                if let Some(i) = self.words.iter().position(|x| x == w) {
                    found[i] = true;
                }
            });
            if found.contains(&false) {
                return false;
            }
        }
        self.metadata.as_ref().is_none_or(|needle| {
            source
                .view
                .metadata()
                .is_some_and(|m| sealtrail_model::json::contains(&m, needle))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_unique_and_names_resolve() {
        let mut tags: Vec<u8> = FIELDS.iter().map(|s| s.tag).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), FIELDS.len());
        for f in Field::all() {
            let spec = f.spec();
            let found = Field::by_name(spec.name);
            match spec.exposure {
                Exposure::Internal => assert_eq!(found, None, "{}", spec.name),
                _ => assert_eq!(found, Some(f)),
            }
        }
    }

    #[test]
    fn fixed_choices_are_exactly_what_parses() {
        for f in Field::all() {
            let spec = f.spec();
            for choice in spec.choices {
                assert_eq!(
                    (spec.parse)(choice).as_deref(),
                    Ok(*choice),
                    "{}",
                    spec.name
                );
            }
        }
        assert_eq!(CATEGORY.spec().choices.len(), Category::ALL.len());
    }

    #[test]
    fn pairs_do_not_collide() {
        assert_ne!(pair("ab", "c"), pair("a", "bc"));
        assert_ne!(pair("a:1", "x"), pair("a", ":1x"));
    }

    #[test]
    fn given_values_are_normalised_or_refused() {
        assert_eq!(
            (IP.spec().parse)("2001:DB8::0:1").as_deref(),
            Ok("2001:db8::1")
        );
        assert!((IP.spec().parse)("1.2.3").is_err());
        assert_eq!((CATEGORY.spec().parse)("delete").as_deref(), Ok("delete"));
        assert!((OUTCOME.spec().parse)("meh").is_err());
    }
}
