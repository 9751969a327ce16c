//! The event types: [`NewEvent`] is a validated event as received, [`Event`] is a stored event as
//! served. Field order here is the field order on the wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::timestamp::Timestamp;

/// What kind of operation an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A record was created.
    Create,
    /// A record was read.
    Read,
    /// A record was changed.
    Update,
    /// A record was deleted.
    Delete,
    /// A sign-in, sign-out or credential event.
    Auth,
    /// Anything else (the default).
    #[default]
    Other,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 6] = [
        Self::Create,
        Self::Read,
        Self::Update,
        Self::Delete,
        Self::Auth,
        Self::Other,
    ];

    /// The wire name (`create`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Auth => "auth",
            Self::Other => "other",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Whether the recorded action worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked (the default).
    #[default]
    Success,
    /// It failed; `error` may say why.
    Failure,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            _ => None,
        }
    }
}

/// What kind of party acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    /// A person (the default).
    #[default]
    User,
    /// Another program.
    Service,
    /// The system itself (a scheduled job, a migration).
    System,
    /// Nobody identified.
    Anonymous,
}

impl ActorType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Service => "service",
            Self::System => "system",
            Self::Anonymous => "anonymous",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Self::User),
            "service" => Some(Self::Service),
            "system" => Some(Self::System),
            "anonymous" => Some(Self::Anonymous),
            _ => None,
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    /// The actor's stable id in the host application.
    pub id: String,
    /// What kind of party the actor is.
    #[serde(rename = "type")]
    pub actor_type: ActorType,
    /// Display name (personal data).
    pub name: Option<String>,
    /// E-mail address (personal data).
    pub email: Option<String>,
}

/// The record acted upon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Target {
    /// The record's type, e.g. `asset`.
    #[serde(rename = "type")]
    pub target_type: String,
    /// The record's id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
}

/// The customer organisation inside the tenant's application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    /// The organisation's id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
}

/// Where the action came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Context {
    /// Client IP in canonical form (IPv6 compressed, lowercase).
    pub ip: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// The host application's session id.
    pub session_id: Option<String>,
    /// Correlation id tying events of one request or job together.
    pub correlation_id: Option<String>,
    /// The endpoint (route template) that was called.
    pub endpoint: Option<String>,
    /// The HTTP method, upper case.
    pub method: Option<String>,
    /// The HTTP status code answered, 100–599.
    pub status_code: Option<u16>,
    /// How long the action took, in milliseconds.
    #[schema(value_type = Option<f64>)]
    pub duration_ms: Option<serde_json::Number>,
}

/// One field-level change as received or computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// Dotted path of the field (`address.city`, `tags[2]`).
    pub field: String,
    /// The value before, `null` when the field was added.
    #[schema(value_type = Object)]
    pub old_value: Value,
    /// The value after, `null` when the field was removed.
    #[schema(value_type = Object)]
    pub new_value: Value,
}

/// One field-level change as served: [`Change`] plus when and by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutputChange {
    /// Dotted path of the field.
    pub field: String,
    /// The value before.
    #[schema(value_type = Object)]
    pub old_value: Value,
    /// The value after.
    #[schema(value_type = Object)]
    pub new_value: Value,
    /// Equal to the event's `occurred_at`.
    #[schema(value_type = String, format = DateTime)]
    pub changed_at: Timestamp,
    /// Equal to the event's `actor.id`.
    pub changed_by: String,
}

/// A link to another record, and through it to that record's events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Related {
    /// The linked record's type.
    #[serde(rename = "type")]
    pub related_type: String,
    /// The linked record's id.
    pub id: String,
}

/// A validated, redacted event as received, before the store gives it a place in a log.
///
/// Produced only by [`crate::parse_event`], so holding one means every rule of SPEC §3 held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewEvent {
    /// The client's idempotency key, if it chose one.
    pub id: Option<Uuid>,
    /// The tenant named in the body (admin credentials only). Not part of the digest.
    #[serde(skip)]
    pub tenant: Option<crate::Tenant>,
    /// The client's time of the action.
    pub occurred_at: Option<Timestamp>,
    /// The action name.
    pub action: String,
    /// The category.
    pub category: Category,
    /// The domain event type.
    pub event_type: Option<String>,
    /// The outcome.
    pub outcome: Outcome,
    /// The failure's message.
    pub error: Option<String>,
    /// Who acted.
    pub actor: Actor,
    /// What was acted upon.
    pub target: Option<Target>,
    /// The customer organisation.
    pub organization: Option<Organization>,
    /// Where it came from.
    pub context: Option<Context>,
    /// What changed, given or computed from `before`/`after`, already redacted.
    pub changes: Vec<Change>,
    /// Links to other records.
    pub related: Vec<Related>,
    /// Free JSON, already redacted.
    pub metadata: Option<Value>,
}

impl NewEvent {
    /// SHA-256 over the event's canonical JSON (object keys sorted), with the tenant left out.
    ///
    /// Two requests carrying the same `id` are the same event exactly when their digests agree;
    /// the store keeps the digest to tell a retry (200) from a conflict (409).
    pub fn content_digest(&self) -> [u8; 32] {
        // Struct fields serialise in declaration order and serde_json's map keeps keys sorted
        // (no `preserve_order`), so this text is canonical.
        let bytes = serde_json::to_vec(self).expect("event serialises to JSON");
        Sha256::digest(&bytes).into()
    }

    /// Builds the stored event, once the store has chosen its place in the log.
    ///
    /// `hash` is left empty; the store fills it after hashing the rest.
    pub fn into_event(
        self,
        id: Uuid,
        tenant: &crate::Tenant,
        seq: u64,
        recorded_at: Timestamp,
    ) -> Event {
        let occurred_at = self.occurred_at.unwrap_or(recorded_at);
        let changes = self
            .changes
            .into_iter()
            .map(|c| OutputChange {
                field: c.field,
                old_value: c.old_value,
                new_value: c.new_value,
                changed_at: occurred_at,
                changed_by: self.actor.id.clone(),
            })
            .collect();
        Event {
            id,
            tenant: tenant.to_string(),
            seq,
            recorded_at,
            occurred_at,
            action: self.action,
            category: self.category,
            event_type: self.event_type,
            outcome: self.outcome,
            error: self.error,
            actor: self.actor,
            target: self.target,
            organization: self.organization,
            context: self.context,
            changes,
            related: self.related,
            metadata: self.metadata,
            hash: String::new(),
        }
    }
}

/// A stored event as served by every read endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// The event id (UUIDv7 unless the client chose one).
    pub id: Uuid,
    /// The log the event belongs to.
    pub tenant: String,
    /// Position in the tenant's log: 1, 2, 3, … with no gaps.
    pub seq: u64,
    /// Server time at commit.
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: Timestamp,
    /// Client time of the action (defaults to `recorded_at`).
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    /// The action name.
    pub action: String,
    /// The category.
    pub category: Category,
    /// The domain event type.
    pub event_type: Option<String>,
    /// The outcome.
    pub outcome: Outcome,
    /// The failure's message.
    pub error: Option<String>,
    /// Who acted.
    pub actor: Actor,
    /// What was acted upon.
    pub target: Option<Target>,
    /// The customer organisation.
    pub organization: Option<Organization>,
    /// Where it came from.
    pub context: Option<Context>,
    /// What changed.
    pub changes: Vec<OutputChange>,
    /// Links to other records.
    pub related: Vec<Related>,
    /// Free JSON.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// The event's leaf hash in the tenant's log, lowercase hex.
    pub hash: String,
}

#[cfg(test)]
mod tests {
    /// The content digest relies on serde_json sorting object keys. If any crate in the build
    /// turns on serde_json's `preserve_order`, this fails before digests start to differ.
    #[test]
    fn serde_json_maps_sort_their_keys() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":1,"c":2}}"#).expect("json");
        assert_eq!(v.to_string(), r#"{"a":{"c":2,"d":1},"b":1}"#);
    }
}
