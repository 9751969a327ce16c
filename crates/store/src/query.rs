//! What a reader asks for and what it gets back.

use sealtrail_model::Tenant;
use serde_json::value::RawValue;

use crate::cursor::Cursor;
use crate::fields::EventFilter;

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

/// One page of a list as stored rows, before rendering (exports).
#[derive(Debug, Clone)]
pub struct RowPage {
    /// The rows of this page, in list order.
    pub rows: Vec<crate::rows::LogRow>,
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
