//! The event a host application records: the ingest fields of SPEC §3, with an id chosen here
//! so that a retry or a replay from the spool is a duplicate, never a second copy.

use sealtrail_model::event::{ActorType, Context, Organization, Related, Target};
use sealtrail_model::{Actor, Category, Change, Outcome, Timestamp};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// One audit event, built with [`AuditEvent::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// The idempotency key, a UUIDv7 made at creation.
    pub id: Uuid,
    /// When the action happened (the server's commit time when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Timestamp>,
    /// The action name, e.g. `asset.updated`.
    pub action: String,
    /// The category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The domain event type, e.g. `STATUS_CHANGED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who acted.
    pub actor: Actor,
    /// What was acted upon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The customer organisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    /// Where it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// What changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Links to other records.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
    /// Free JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The tenant, for a client whose key is an admin key bound to every tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl AuditEvent {
    /// An event of `action` by the user `actor_id`, happening now.
    pub fn new(action: impl Into<String>, actor_id: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            occurred_at: Some(Timestamp::now()),
            action: action.into(),
            category: None,
            event_type: None,
            outcome: None,
            error: None,
            actor: Actor {
                id: actor_id.into(),
                actor_type: ActorType::User,
                name: None,
                email: None,
            },
            target: None,
            organization: None,
            context: None,
            changes: Vec::new(),
            related: Vec::new(),
            metadata: None,
            tenant: None,
        }
    }

    /// Sets the actor whole (type, name, e-mail).
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// Sets the category.
    pub fn with_category(mut self, category: Category) -> Self {
        self.category = Some(category);
        self
    }

    /// Sets the domain event type.
    pub fn with_event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Marks the event failed with a message.
    pub fn with_failure(mut self, error: impl Into<String>) -> Self {
        self.outcome = Some(Outcome::Failure);
        self.error = Some(error.into());
        self
    }

    /// Sets the target record.
    pub fn with_target(mut self, target_type: impl Into<String>, id: impl Into<String>) -> Self {
        self.target = Some(Target {
            target_type: target_type.into(),
            id: id.into(),
            name: None,
        });
        self
    }

    /// Sets the context.
    pub fn with_context(mut self, context: Context) -> Self {
        self.context = Some(context);
        self
    }

    /// Sets the changes (see [`crate::changes`] to compute them from two values).
    pub fn with_changes(mut self, changes: Vec<Change>) -> Self {
        self.changes = changes;
        self
    }

    /// Adds a link to another record.
    pub fn with_related(mut self, related_type: impl Into<String>, id: impl Into<String>) -> Self {
        self.related.push(Related {
            related_type: related_type.into(),
            id: id.into(),
        });
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Names the tenant (only for admin keys bound to every tenant).
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}
