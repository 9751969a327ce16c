//! Validation of a received event: every rule of SPEC §3, collecting every problem of the event
//! with the JSON path of the field at fault, never stopping at the first.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::diff::diff;
use crate::event::{
    Actor, ActorType, Category, Change, Context, NewEvent, Organization, Outcome, Related, Target,
};
use crate::limits::*;
use crate::redact::Redactor;
use crate::timestamp::Timestamp;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field (`events[3].context.ip`), or a query parameter's name.
    pub field: String,
    /// What is wrong, lower case.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The HTTP methods accepted in `context.method`.
pub const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// A tenant name: 1–64 characters of `[A-Za-z0-9_.-]`, starting with a letter or digit.
///
/// Made only by [`validate_tenant`] (or [`Tenant::from_store`] for names a store wrote), so
/// holding one means the name is valid. Clones are cheap: the name is shared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(std::sync::Arc<str>);

impl Tenant {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a tenant name, or says what is wrong with it ([`validate_tenant`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        validate_tenant(text)
    }

    /// A name read back from a store, which only ever stores validated names.
    pub fn from_store(name: impl Into<std::sync::Arc<str>>) -> Self {
        Self(name.into())
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Tenant {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Tenant {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Tenant {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Tenant {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Serialize for Tenant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Parses a tenant name, or says what is wrong with it.
pub fn validate_tenant(text: &str) -> Result<Tenant, String> {
    let valid_start = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if text.is_empty() || text.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !valid_start
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(
            "must be letters, digits, '_', '.' or '-', starting with a letter or digit".into(),
        );
    }
    Ok(Tenant(text.into()))
}

/// Whether `text` is a valid action or event type: 1–128 characters of `[A-Za-z0-9_.:-]`
/// starting with a letter.
pub fn is_valid_name(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= MAX_NAME_CHARS
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// Parses and canonicalises an IP address (IPv6 compressed and lower case).
pub fn canonical_ip(text: &str) -> Option<String> {
    text.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// Validates one received event.
///
/// `raw_len` is the event's size as received, `path` the JSON path prefix of the event in its
/// request (empty for a single event, `events[3]` in a batch), `now` the server's clock. On
/// success the event is redacted and its `changes` computed; on failure every problem is listed.
pub fn parse_event(
    value: Value,
    raw_len: usize,
    path: &str,
    redactor: &Redactor,
    now: Timestamp,
) -> Result<NewEvent, Vec<FieldError>> {
    let mut v = Validator {
        prefix: path,
        errors: Vec::new(),
    };
    let root = if path.is_empty() { "$" } else { path };
    if raw_len > MAX_EVENT_BYTES {
        v.errors.push(FieldError::new(
            root,
            format!("event is {raw_len} bytes, more than the limit of {MAX_EVENT_BYTES}"),
        ));
        return Err(v.errors);
    }
    let Value::Object(mut map) = value else {
        v.errors
            .push(FieldError::new(root, "an event must be a JSON object"));
        return Err(v.errors);
    };

    const KNOWN: [&str; 17] = [
        "id",
        "tenant",
        "occurred_at",
        "action",
        "category",
        "event_type",
        "outcome",
        "error",
        "actor",
        "target",
        "organization",
        "context",
        "changes",
        "before",
        "after",
        "related",
        "metadata",
    ];
    v.reject_unknown(&map, "", &KNOWN);

    let id = v.opt_string(&mut map, "", "id", 64).and_then(|text| {
        Uuid::parse_str(&text)
            .map_err(|_| v.push("id", "must be a UUID"))
            .ok()
    });
    let tenant = v
        .opt_string(&mut map, "", "tenant", 64)
        .and_then(|t| match validate_tenant(&t) {
            Ok(t) => Some(t),
            Err(msg) => {
                v.push("tenant", msg);
                None
            }
        });
    let occurred_at = v
        .opt_string(&mut map, "", "occurred_at", 64)
        .and_then(|text| match Timestamp::parse_rfc3339(&text) {
            None => {
                v.push("occurred_at", "must be an RFC 3339 date-time");
                None
            }
            Some(t) if t.micros() > now.micros() + MAX_FUTURE_SECS * 1_000_000 => {
                v.push(
                    "occurred_at",
                    "must not be more than 24 hours in the future",
                );
                None
            }
            Some(t) if t.micros() < 0 => {
                v.push("occurred_at", "must not be before 1970-01-01");
                None
            }
            Some(t) => Some(t),
        });
    let action = match map.remove("action") {
        None | Some(Value::Null) => {
            v.push("action", "is required");
            String::new()
        }
        Some(Value::String(s)) if is_valid_name(&s) => s,
        Some(Value::String(_)) => {
            v.push(
                "action",
                "must be 1 to 128 characters of letters, digits, '_', '.', ':' or '-', starting with a letter",
            );
            String::new()
        }
        Some(_) => {
            v.push("action", "must be a string");
            String::new()
        }
    };
    let category = v
        .opt_enum(
            &mut map,
            "",
            "category",
            Category::parse,
            "create, read, update, delete, auth or other",
        )
        .unwrap_or_default();
    let event_type = v.opt_string(&mut map, "", "event_type", MAX_NAME_CHARS).and_then(|s| {
        if is_valid_name(&s) {
            Some(s)
        } else {
            v.push(
                "event_type",
                "must be 1 to 128 characters of letters, digits, '_', '.', ':' or '-', starting with a letter",
            );
            None
        }
    });
    let outcome = v
        .opt_enum(
            &mut map,
            "",
            "outcome",
            Outcome::parse,
            "success or failure",
        )
        .unwrap_or_default();
    let error = v.opt_string(&mut map, "", "error", MAX_ERROR_CHARS);
    if error.is_some() && outcome != Outcome::Failure {
        v.push("error", "is only allowed with outcome failure");
    }

    let actor = match map.remove("actor") {
        None | Some(Value::Null) => {
            v.push("actor", "is required");
            None
        }
        Some(Value::Object(obj)) => v.actor(obj),
        Some(_) => {
            v.push("actor", "must be an object");
            None
        }
    };
    let target = v
        .opt_object(&mut map, "target")
        .and_then(|obj| v.target(obj));
    let organization = v
        .opt_object(&mut map, "organization")
        .and_then(|obj| v.organization(obj));
    let context = v
        .opt_object(&mut map, "context")
        .and_then(|obj| v.context(obj));

    let given_changes = match map.remove("changes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(v.changes(items)),
        Some(_) => {
            v.push("changes", "must be an array");
            Some(Vec::new())
        }
    };
    let before = v.opt_object(&mut map, "before");
    let after = v.opt_object(&mut map, "after");
    let mut changes = match given_changes {
        Some(changes) => changes,
        None if before.is_some() || after.is_some() => {
            let computed = diff(
                &Value::Object(before.unwrap_or_default()),
                &Value::Object(after.unwrap_or_default()),
            );
            if computed.len() > MAX_CHANGES {
                v.push(
                    "after",
                    format!(
                        "the diff has {} changes, more than {MAX_CHANGES}",
                        computed.len()
                    ),
                );
            }
            computed
        }
        None => Vec::new(),
    };
    redactor.redact_changes(&mut changes);

    let related = match map.remove("related") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => v.related(items),
        Some(_) => {
            v.push("related", "must be an array");
            Vec::new()
        }
    };

    let metadata = v.opt_object(&mut map, "metadata").map(|obj| {
        let mut value = Value::Object(obj);
        let size = serde_json::to_vec(&value)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > MAX_METADATA_BYTES {
            v.push(
                "metadata",
                format!("is {size} bytes serialised, more than the limit of {MAX_METADATA_BYTES}"),
            );
        }
        redactor.redact_value(&mut value);
        value
    });

    match actor {
        Some(actor) if v.errors.is_empty() => Ok(NewEvent {
            id,
            tenant,
            occurred_at,
            action,
            category,
            event_type,
            outcome,
            error,
            actor,
            target,
            organization,
            context,
            changes,
            related,
            metadata,
        }),
        _ => Err(v.errors),
    }
}

struct Validator<'a> {
    prefix: &'a str,
    errors: Vec<FieldError>,
}

impl Validator<'_> {
    fn path(&self, field: &str) -> String {
        match (self.prefix.is_empty(), field.is_empty()) {
            (true, true) => "$".to_owned(),
            (true, false) => field.to_owned(),
            (false, true) => self.prefix.to_owned(),
            (false, false) if field.starts_with('[') => format!("{}{field}", self.prefix),
            (false, false) => format!("{}.{field}", self.prefix),
        }
    }

    fn push(&mut self, field: &str, message: impl Into<String>) {
        let field = self.path(field);
        self.errors.push(FieldError::new(field, message));
    }

    fn reject_unknown(&mut self, map: &Map<String, Value>, at: &str, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.push(&join(at, key), "unknown field");
            }
        }
    }

    /// Removes an optional string; absent and null are `None`. Empty strings are refused.
    fn opt_string(
        &mut self,
        map: &mut Map<String, Value>,
        at: &str,
        key: &str,
        max_chars: usize,
    ) -> Option<String> {
        // The path is only spelled out for an error: valid events never pay for it.
        let field = || join(at, key);
        match map.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                if s.is_empty() {
                    self.push(&field(), "must not be empty");
                    None
                } else if s.chars().count() > max_chars {
                    self.push(&field(), format!("must be at most {max_chars} characters"));
                    None
                } else {
                    Some(s)
                }
            }
            Some(_) => {
                self.push(&field(), "must be a string");
                None
            }
        }
    }

    fn req_string(
        &mut self,
        map: &mut Map<String, Value>,
        at: &str,
        key: &str,
        max_chars: usize,
    ) -> Option<String> {
        let present = !matches!(map.get(key), None | Some(Value::Null));
        let value = self.opt_string(map, at, key, max_chars);
        if !present {
            self.push(&join(at, key), "is required");
        }
        value
    }

    fn opt_enum<T>(
        &mut self,
        map: &mut Map<String, Value>,
        at: &str,
        key: &str,
        parse: fn(&str) -> Option<T>,
        allowed: &str,
    ) -> Option<T> {
        // The path is only spelled out for an error: valid events never pay for it.
        let field = || join(at, key);
        match map.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let parsed = parse(&s);
                if parsed.is_none() {
                    self.push(&field(), format!("must be one of {allowed}"));
                }
                parsed
            }
            Some(_) => {
                self.push(&field(), format!("must be one of {allowed}"));
                None
            }
        }
    }

    fn opt_object(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
    ) -> Option<Map<String, Value>> {
        match map.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(obj)) => Some(obj),
            Some(_) => {
                self.push(key, "must be an object");
                None
            }
        }
    }

    fn actor(&mut self, mut obj: Map<String, Value>) -> Option<Actor> {
        self.reject_unknown(&obj, "actor", &["id", "type", "name", "email"]);
        let id = self.req_string(&mut obj, "actor", "id", MAX_ID_CHARS);
        let actor_type = self
            .opt_enum(
                &mut obj,
                "actor",
                "type",
                ActorType::parse,
                "user, service, system or anonymous",
            )
            .unwrap_or_default();
        let name = self.opt_string(&mut obj, "actor", "name", MAX_DISPLAY_CHARS);
        let email = self
            .opt_string(&mut obj, "actor", "email", MAX_EMAIL_CHARS)
            .and_then(|e| {
                if is_plausible_email(&e) {
                    Some(e)
                } else {
                    self.push("actor.email", "must be an e-mail address");
                    None
                }
            });
        Some(Actor {
            id: id?,
            actor_type,
            name,
            email,
        })
    }

    fn target(&mut self, mut obj: Map<String, Value>) -> Option<Target> {
        self.reject_unknown(&obj, "target", &["type", "id", "name"]);
        let target_type = self.req_string(&mut obj, "target", "type", MAX_ID_CHARS);
        let id = self.req_string(&mut obj, "target", "id", MAX_ID_CHARS);
        let name = self.opt_string(&mut obj, "target", "name", MAX_DISPLAY_CHARS);
        Some(Target {
            target_type: target_type?,
            id: id?,
            name,
        })
    }

    fn organization(&mut self, mut obj: Map<String, Value>) -> Option<Organization> {
        self.reject_unknown(&obj, "organization", &["id", "name"]);
        let id = self.req_string(&mut obj, "organization", "id", MAX_ID_CHARS);
        let name = self.opt_string(&mut obj, "organization", "name", MAX_DISPLAY_CHARS);
        Some(Organization { id: id?, name })
    }

    fn context(&mut self, mut obj: Map<String, Value>) -> Option<Context> {
        const KNOWN: [&str; 8] = [
            "ip",
            "user_agent",
            "session_id",
            "correlation_id",
            "endpoint",
            "method",
            "status_code",
            "duration_ms",
        ];
        self.reject_unknown(&obj, "context", &KNOWN);
        let ip = self
            .opt_string(&mut obj, "context", "ip", 64)
            .and_then(|ip| {
                let canonical = canonical_ip(&ip);
                if canonical.is_none() {
                    self.push("context.ip", "must be an IPv4 or IPv6 address");
                }
                canonical
            });
        let user_agent = self.opt_string(&mut obj, "context", "user_agent", MAX_TEXT_CHARS);
        let session_id = self.opt_string(&mut obj, "context", "session_id", MAX_ID_CHARS);
        let correlation_id = self.opt_string(&mut obj, "context", "correlation_id", MAX_ID_CHARS);
        let endpoint = self.opt_string(&mut obj, "context", "endpoint", MAX_TEXT_CHARS);
        let method = self
            .opt_string(&mut obj, "context", "method", 16)
            .and_then(|m| {
                let upper = m.to_ascii_uppercase();
                if HTTP_METHODS.contains(&upper.as_str()) {
                    Some(upper)
                } else {
                    self.push(
                        "context.method",
                        format!("must be one of {}", HTTP_METHODS.join(", ")),
                    );
                    None
                }
            });
        let status_code = match obj.remove("status_code") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match crate::json::whole_number(&n) {
                Some(code @ 100..=599) => Some(code as u16),
                _ => {
                    self.push("context.status_code", "must be an integer from 100 to 599");
                    None
                }
            },
            Some(_) => {
                self.push("context.status_code", "must be an integer from 100 to 599");
                None
            }
        };
        let duration_ms = match obj.remove("duration_ms") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_f64().is_some_and(|d| d >= 0.0) => Some(n),
            Some(_) => {
                self.push("context.duration_ms", "must be a non-negative number");
                None
            }
        };
        Some(Context {
            ip,
            user_agent,
            session_id,
            correlation_id,
            endpoint,
            method,
            status_code,
            duration_ms,
        })
    }

    fn changes(&mut self, items: Vec<Value>) -> Vec<Change> {
        if items.len() > MAX_CHANGES {
            self.push(
                "changes",
                format!("must have at most {MAX_CHANGES} entries"),
            );
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("changes[{i}]");
            let Value::Object(mut obj) = item else {
                self.push(&at, "must be an object");
                continue;
            };
            self.reject_unknown(&obj, &at, &["field", "old_value", "new_value"]);
            let field = self.req_string(&mut obj, &at, "field", MAX_FIELD_CHARS);
            let old_value = obj.remove("old_value").unwrap_or(Value::Null);
            let new_value = obj.remove("new_value").unwrap_or(Value::Null);
            if let Some(field) = field {
                out.push(Change {
                    field,
                    old_value,
                    new_value,
                });
            }
        }
        out
    }

    fn related(&mut self, items: Vec<Value>) -> Vec<Related> {
        if items.len() > MAX_RELATED {
            self.push(
                "related",
                format!("must have at most {MAX_RELATED} entries"),
            );
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("related[{i}]");
            let Value::Object(mut obj) = item else {
                self.push(&at, "must be an object");
                continue;
            };
            self.reject_unknown(&obj, &at, &["type", "id"]);
            let related_type = self.req_string(&mut obj, &at, "type", MAX_ID_CHARS);
            let id = self.req_string(&mut obj, &at, "id", MAX_ID_CHARS);
            if let (Some(related_type), Some(id)) = (related_type, id) {
                out.push(Related { related_type, id });
            }
        }
        out
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn is_plausible_email(text: &str) -> bool {
    let mut parts = text.split('@');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty()
    ) && !text.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").expect("valid")
    }

    fn parse(value: Value) -> Result<NewEvent, Vec<FieldError>> {
        let len = serde_json::to_vec(&value).expect("json").len();
        parse_event(value, len, "", &Redactor::default(), now())
    }

    /// Each case: an event, and the fields the validator must name (empty: valid).
    fn check(event: Value, expected_fields: &[&str]) {
        let got: Vec<String> = match parse(event.clone()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        };
        assert_eq!(got, expected_fields, "event {event}");
    }

    fn minimal() -> Value {
        json!({"action": "user.login", "actor": {"id": "u1"}})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut event = minimal();
        event[key] = value;
        event
    }

    #[test]
    fn validation_table() {
        check(minimal(), &[]);
        check(json!({"actor": {"id": "u1"}}), &["action"]);
        check(json!({"action": "a"}), &["actor"]);
        check(json!({}), &["action", "actor"]);
        check(with("action", json!("1abc")), &["action"]);
        check(with("action", json!("a b")), &["action"]);
        check(with("action", json!("a".repeat(129))), &["action"]);
        check(with("action", json!("asset.status_changed:v2-x")), &[]);
        check(with("action", json!(7)), &["action"]);
        check(with("category", json!("destroy")), &["category"]);
        check(with("category", json!("delete")), &[]);
        check(with("outcome", json!("maybe")), &["outcome"]);
        check(with("error", json!("boom")), &["error"]);
        check(
            json!({"action": "a", "actor": {"id": "u"}, "outcome": "failure", "error": "boom"}),
            &[],
        );
        check(with("id", json!("not-a-uuid")), &["id"]);
        check(
            with("id", json!("0190a5d2-7a1e-7cc0-8d43-1c2b3a4d5e6f")),
            &[],
        );
        check(with("occurred_at", json!("yesterday")), &["occurred_at"]);
        check(
            with("occurred_at", json!("2026-11-25T12:00:01Z")),
            &["occurred_at"],
        );
        check(with("occurred_at", json!("2026-11-24T11:59:59Z")), &[]);
        check(with("actor", json!({"type": "user"})), &["actor.id"]);
        check(
            with("actor", json!({"id": "u", "type": "robot"})),
            &["actor.type"],
        );
        check(
            with("actor", json!({"id": "u", "email": "nope"})),
            &["actor.email"],
        );
        check(
            with("actor", json!({"id": "", "extra": 1})),
            &["actor.extra", "actor.id"],
        );
        check(with("actor", json!("u1")), &["actor"]);
        check(with("target", json!({"id": "1"})), &["target.type"]);
        check(
            with(
                "target",
                json!({"type": "asset", "id": "1", "name": "Laptop"}),
            ),
            &[],
        );
        check(
            with("organization", json!({"name": "Acme"})),
            &["organization.id"],
        );
        check(with("context", json!({"ip": "300.1.1.1"})), &["context.ip"]);
        check(
            with("context", json!({"status_code": 600})),
            &["context.status_code"],
        );
        check(
            with("context", json!({"status_code": 99})),
            &["context.status_code"],
        );
        check(
            with("context", json!({"method": "FETCH"})),
            &["context.method"],
        );
        check(
            with("context", json!({"duration_ms": -1})),
            &["context.duration_ms"],
        );
        check(
            with(
                "context",
                json!({"ip": "2001:DB8::0:1", "method": "post", "status_code": 201}),
            ),
            &[],
        );
        check(
            with("changes", json!([{"old_value": 1}])),
            &["changes[0].field"],
        );
        check(
            with("changes", json!([{"field": "a", "changed_by": "x"}])),
            &["changes[0].changed_by"],
        );
        check(with("changes", json!({"field": "a"})), &["changes"]);
        check(
            with("related", json!([{"type": "transfer"}])),
            &["related[0].id"],
        );
        check(with("metadata", json!([1, 2])), &["metadata"]);
        check(
            with("metadata", json!({"blob": "x".repeat(33 * 1024)})),
            &["metadata"],
        );
        check(with("before", json!("x")), &["before"]);
        check(with("colour", json!("red")), &["colour"]);
        check(with("tenant", json!("has space")), &["tenant"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = parse(json!({
            "action": "", "actor": {"id": "u", "type": "x"},
            "context": {"ip": "nope", "status_code": "200"}, "surprise": true
        }))
        .expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "surprise",
                "action",
                "actor.type",
                "context.ip",
                "context.status_code"
            ]
        );
    }

    #[test]
    fn batch_paths_carry_the_index() {
        let event = json!({"action": "a", "actor": {"id": "u"}, "context": {"ip": "x"}});
        let errors =
            parse_event(event, 10, "events[3]", &Redactor::default(), now()).expect_err("invalid");
        assert_eq!(errors[0].field, "events[3].context.ip");
    }

    #[test]
    fn oversized_events_are_refused_before_parsing() {
        let errors = parse_event(
            minimal(),
            MAX_EVENT_BYTES + 1,
            "",
            &Redactor::default(),
            now(),
        )
        .expect_err("too big");
        assert_eq!(errors[0].field, "$");
    }

    #[test]
    fn ips_are_canonical_and_changes_computed_then_redacted() {
        let event = parse(json!({
            "action": "user.update", "actor": {"id": "u"},
            "context": {"ip": "2001:0DB8:0000:0000:0000:0000:0000:0001"},
            "before": {"name": "a", "password": "old"},
            "after": {"name": "b", "password": "new", "api-key": "k"},
            "metadata": {"nested": {"user_token": "t"}}
        }))
        .expect("valid");
        assert_eq!(
            event.context.expect("context").ip.as_deref(),
            Some("2001:db8::1")
        );
        let changes: Vec<(String, Value, Value)> = event
            .changes
            .into_iter()
            .map(|c| (c.field, c.old_value, c.new_value))
            .collect();
        assert_eq!(
            changes,
            vec![
                ("api-key".into(), json!(null), json!("[REDACTED]")),
                ("name".into(), json!("a"), json!("b")),
                ("password".into(), json!("[REDACTED]"), json!("[REDACTED]")),
            ]
        );
        assert_eq!(
            event.metadata,
            Some(json!({"nested": {"user_token": "[REDACTED]"}}))
        );
    }

    #[test]
    fn given_changes_win_over_before_and_after() {
        let event = parse(json!({
            "action": "a", "actor": {"id": "u"},
            "changes": [{"field": "x", "old_value": 1, "new_value": 2}],
            "before": {"y": 1}, "after": {"y": 2}
        }))
        .expect("valid");
        assert_eq!(event.changes.len(), 1);
        assert_eq!(event.changes[0].field, "x");
    }

    #[test]
    fn digest_ignores_the_tenant_but_not_the_content() {
        let a = parse(with("tenant", json!("t1"))).expect("valid");
        let b = parse(with("tenant", json!("t2"))).expect("valid");
        let c = parse(with("category", json!("auth"))).expect("valid");
        assert_eq!(a.content_digest(), b.content_digest());
        assert_ne!(a.content_digest(), c.content_digest());
    }

    #[test]
    fn tenants_are_checked() {
        assert!(validate_tenant("acme-prod.eu_1").is_ok());
        for bad in ["", "-x", "_system", "a b", "*", &"a".repeat(65)] {
            assert!(validate_tenant(bad).is_err(), "{bad}");
        }
    }
}
