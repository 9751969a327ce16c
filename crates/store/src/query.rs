//! What a reader asks for and what it gets back.

use sealtrail_model::{Category, Outcome, Tenant, Timestamp};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::cursor::Cursor;

/// Filters of SPEC §4.3. Each list holds alternatives (OR); different filters combine with AND;
/// an empty list does not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// `actor.id` is one of these.
    pub actor_id: Vec<String>,
    /// `action` is one of these.
    pub action: Vec<String>,
    /// `category` is one of these.
    pub category: Vec<Category>,
    /// `event_type` is one of these.
    pub event_type: Vec<String>,
    /// `target.type` is one of these.
    pub target_type: Vec<String>,
    /// `target.id` is one of these.
    pub target_id: Vec<String>,
    /// `organization.id` is one of these.
    pub organization_id: Vec<String>,
    /// `outcome` is one of these.
    pub outcome: Vec<Outcome>,
    /// `context.correlation_id` is one of these.
    pub correlation_id: Vec<String>,
    /// `context.ip` is one of these (canonical form).
    pub ip: Vec<String>,
    /// `occurred_at` at or after this.
    pub from: Option<Timestamp>,
    /// `occurred_at` before this.
    pub to: Option<Timestamp>,
    /// Some change's field is one of these, or lies inside one (`address` matches
    /// `address.city`).
    pub changed_field: Vec<String>,
    /// `metadata` contains this JSON (PostgreSQL `@>` semantics).
    pub metadata: Option<Value>,
}

impl EventFilter {
    /// Whether the filter needs the event body to decide (no index can answer it).
    pub fn needs_body(&self) -> bool {
        !self.changed_field.is_empty() || self.metadata.is_some()
    }

    /// Decides the body-only filters for one stored event body.
    pub fn matches_body(&self, body: &str) -> bool {
        if !self.needs_body() {
            return true;
        }
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(default)]
            changes: Vec<ProbeChange>,
            metadata: Option<Value>,
        }
        #[derive(serde::Deserialize)]
        struct ProbeChange {
            field: String,
        }
        let Ok(probe) = serde_json::from_str::<Probe>(body) else {
            return false;
        };
        let fields_ok = self.changed_field.is_empty()
            || probe.changes.iter().any(|c| {
                self.changed_field
                    .iter()
                    .any(|wanted| sealtrail_model::json::field_matches(&c.field, wanted))
            });
        let metadata_ok = match &self.metadata {
            None => true,
            Some(needle) => probe
                .metadata
                .as_ref()
                .is_some_and(|m| sealtrail_model::json::contains(m, needle)),
        };
        fields_ok && metadata_ok
    }
}

/// List direction by `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Newest first (the default).
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// A list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// The tenant.
    pub tenant: Tenant,
    /// The filters.
    pub filter: EventFilter,
    /// The direction.
    pub order: Order,
    /// Page size, 1–1000.
    pub limit: usize,
    /// Where the page starts.
    pub cursor: Option<Cursor>,
}

/// An entity timeline request.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    /// The tenant.
    pub tenant: Tenant,
    /// The entity's type.
    pub entity_type: String,
    /// The entity's id.
    pub entity_id: String,
    /// Only these event types, when not empty.
    pub event_type: Vec<String>,
    /// Page size, 1–1000.
    pub limit: usize,
    /// Where the page starts.
    pub cursor: Option<Cursor>,
}

/// How a timeline item relates to the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The entity is the event's target.
    Target,
    /// The entity is named in the event's `related`.
    Related,
}

impl Relation {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Target => "target",
            Self::Related => "related",
        }
    }
}

/// A stored event: its seq and its serialised JSON as served.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Position in the tenant's log.
    pub seq: u64,
    /// The event as served, JSON text.
    pub body: Box<RawValue>,
    /// In a timeline, how the event relates to the entity.
    pub relation: Option<Relation>,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page {
    /// The events of this page.
    pub items: Vec<StoredEvent>,
    /// Where the next page starts; `None` at the end.
    pub next_cursor: Option<Cursor>,
}

impl Page {
    /// A page from items fetched one beyond `limit`: the extra item, when there, proves that a
    /// next page exists, and the next cursor (made by `cursor`) names the last item kept.
    pub fn from_overfetch(
        mut items: Vec<StoredEvent>,
        limit: usize,
        cursor: impl Fn(&StoredEvent) -> Cursor,
    ) -> Self {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor)
        } else {
            None
        };
        Self { items, next_cursor }
    }
}
