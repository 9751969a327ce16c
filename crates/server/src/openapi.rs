//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the types that only
//! exist to describe request shapes in it.

#![allow(dead_code)] // The types below describe shapes for the document; nothing builds them.

use sealtrail_model::{
    Actor, Category, Change, Context, Event, Organization, Outcome, Related, Target,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// An event as sent to `POST /events` (SPEC §3). Unknown fields are rejected.
#[derive(ToSchema)]
pub struct EventInput {
    /// Client-chosen idempotency key; a UUIDv7 is assigned when absent.
    id: Option<uuid::Uuid>,
    /// Only for admin keys bound to all tenants.
    tenant: Option<String>,
    /// Client time of the action; at most 24 h in the future; defaults to `recorded_at`.
    #[schema(format = DateTime)]
    occurred_at: Option<String>,
    /// 1–128 characters of `[A-Za-z0-9_.:-]`, starting with a letter.
    action: String,
    /// Defaults to `other`.
    category: Option<Category>,
    /// A domain event type, same character rules as `action`.
    event_type: Option<String>,
    /// Defaults to `success`.
    outcome: Option<Outcome>,
    /// Only with `outcome: failure`.
    error: Option<String>,
    /// Who acted; `id` required, `type` defaults to `user`.
    actor: Actor,
    /// What was acted upon; `type` and `id` required.
    target: Option<Target>,
    /// The customer organisation; `id` required.
    organization: Option<Organization>,
    /// Where it came from.
    context: Option<Context>,
    /// Field-level changes; computed from `before`/`after` when absent.
    changes: Option<Vec<Change>>,
    /// The record before the action (not stored).
    #[schema(value_type = Option<Object>)]
    before: Option<serde_json::Value>,
    /// The record after the action (not stored).
    #[schema(value_type = Option<Object>)]
    after: Option<serde_json::Value>,
    /// Links to other records.
    related: Option<Vec<Related>>,
    /// Free JSON, at most 32 KiB serialised.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// Full-text search: only events holding every word of it (case-insensitive; a word is a
    /// run of letters and digits; a UUID is one word) in `action`, `event_type`, the actor's and target's ids and
    /// names, `error`, `changes` (fields and values) or `metadata` values. At most 32
    /// distinct words; none (empty, or only punctuation) filters nothing.
    #[schema(max_length = 4096)]
    q: Option<String>,
}

/// A page of events.
#[derive(ToSchema)]
pub struct EventPage {
    /// The events (timeline items also carry `relation`: `target` or `related`).
    items: Vec<Event>,
    /// Pass as `cursor` for the next page; `null` at the end.
    next_cursor: Option<String>,
}

/// The body of `POST /audit-logs/search`: each filter a string or a list of strings.
// The filters themselves are added from their declaration by `FilterDocs`.
#[derive(ToSchema)]
pub struct SearchBody {
    /// JSON containment on `metadata`.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// Full-text search: only events holding every word of it (case-insensitive; a word is a
    /// run of letters and digits; a UUID is one word) in `action`, `event_type`, the actor's and target's ids and
    /// names, `error`, `changes` (fields and values) or `metadata` values. At most 32
    /// distinct words; none (empty, or only punctuation) filters nothing.
    #[schema(max_length = 4096)]
    q: Option<String>,
    #[schema(format = DateTime)]
    from: Option<String>,
    #[schema(format = DateTime)]
    to: Option<String>,
    /// `desc` (default) or `asc`, by `seq`.
    order: Option<String>,
    /// 1–1000, default 50.
    limit: Option<usize>,
    cursor: Option<String>,
    /// For keys bound to all tenants.
    tenant: Option<String>,
}

/// Documents every declared filter (`sealtrail_store::fields`): as query parameters of each
/// list, but those its path fixes, and as fields of the search body.
struct FilterDocs;

impl Modify for FilterDocs {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
        use utoipa::openapi::{RefOr, Required};
        let strings = |spec: &sealtrail_store::fields::FieldSpec, description: Option<String>| {
            let mut item = ObjectBuilder::new().schema_type(Type::String);
            if !spec.choices.is_empty() {
                item = item.enum_values(Some(spec.choices.iter().copied()));
            }
            ArrayBuilder::new()
                .items(item)
                .description(description)
                .build()
        };
        let lists: [(&str, &[sealtrail_store::Field]); 4] = [
            ("/api/v1/audit-logs", &[]),
            ("/api/v1/audit-logs/export", &[]),
            (
                "/api/v1/audit-logs/entity/{type}/{id}",
                &crate::params::ENTITY_FIXED,
            ),
            (
                "/api/v1/audit-logs/user/{actor_id}",
                &crate::params::USER_FIXED,
            ),
        ];
        for (path, fixed) in lists {
            let Some(operation) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.get.as_mut())
            else {
                continue;
            };
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            // After the path's own parameters, before time range and paging.
            let at = parameters
                .iter()
                .take_while(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path))
                .count();
            let filters = crate::params::list_filters(fixed).map(|f| {
                let spec = f.spec();
                RefOr::T(
                    ParameterBuilder::new()
                        .name(spec.name)
                        .parameter_in(ParameterIn::Query)
                        .required(Required::False)
                        .description(Some(format!("{}; repeat it for any of several.", spec.doc)))
                        .schema(Some(Schema::Array(strings(spec, None))))
                        .build(),
                )
            });
            let filters: Vec<_> = filters.collect();
            parameters.splice(at..at, filters);
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut("SearchBody") {
            let searchable: Vec<_> = sealtrail_store::Field::all()
                .filter(|f| f.spec().exposure != sealtrail_store::fields::Exposure::Internal)
                .collect();
            for (at, f) in searchable.into_iter().enumerate() {
                let spec = f.spec();
                let description = format!("{}; a string or a list of strings.", spec.doc);
                let schema = strings(spec, Some(description));
                body.properties.shift_insert(
                    at,
                    spec.name.to_owned(),
                    RefOr::T(Schema::Array(schema)),
                );
            }
        }
    }
}

/// Time range, order and paging of a list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PagingDoc {
    /// Full-text search: only events holding every word of it (case-insensitive; a word is a
    /// run of letters and digits; a UUID is one word) in `action`, `event_type`, the actor's and target's ids and
    /// names, `error`, `changes` (fields and values) or `metadata` values. At most 32
    /// distinct words; none (empty, or only punctuation) filters nothing.
    #[param(max_length = 4096)]
    q: Option<String>,
    /// `occurred_at` at or after (RFC 3339).
    from: Option<String>,
    /// `occurred_at` before (RFC 3339).
    to: Option<String>,
    /// `desc` (default) or `asc`, by `seq`.
    order: Option<String>,
    /// 1–1000, default 50.
    limit: Option<usize>,
    /// From the previous page's `next_cursor`.
    cursor: Option<String>,
    /// For keys bound to all tenants.
    tenant: Option<String>,
}

/// A statistics window, its buckets and the length of its top lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsDoc {
    /// The window's start: `occurred_at` at or after (RFC 3339); default 30 days before `to`.
    from: Option<String>,
    /// The window's end: `occurred_at` before (RFC 3339); default now.
    to: Option<String>,
    /// `day` (default) or `hour`: UTC buckets. At most 100 000 buckets per answer.
    #[param(inline, schema_with = bucket_sizes)]
    bucket: Option<String>,
    /// Entries per top list, 0–1000, default 10.
    #[param(minimum = 0, maximum = 1000)]
    top: Option<usize>,
    /// For keys bound to all tenants.
    tenant: Option<String>,
}

fn bucket_sizes() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["day", "hour"]))
        .default(Some(serde_json::json!("day")))
        .build()
}

/// An export's format, time range, order and tenant (no paging: an export holds every match).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportDoc {
    /// `csv` (RFC 4180, header row), `json` (one array) or `ndjson` (default; verifiable
    /// offline with `sealtrail verify --export`).
    #[param(inline, schema_with = export_formats)]
    format: Option<String>,
    /// Full-text search: only events holding every word of it (case-insensitive; a word is a
    /// run of letters and digits; a UUID is one word) in `action`, `event_type`, the actor's and target's ids and
    /// names, `error`, `changes` (fields and values) or `metadata` values. At most 32
    /// distinct words; none (empty, or only punctuation) filters nothing.
    #[param(max_length = 4096)]
    q: Option<String>,
    /// `occurred_at` at or after (RFC 3339).
    from: Option<String>,
    /// `occurred_at` before (RFC 3339).
    to: Option<String>,
    /// `asc` (default for exports) or `desc`, by `seq`.
    order: Option<String>,
    /// For keys bound to all tenants.
    tenant: Option<String>,
}

fn export_formats() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["csv", "json", "ndjson"]))
        .default(Some(serde_json::json!("ndjson")))
        .build()
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (st_ followed by 43 base62 characters); where the server is configured for them, a JWT reader token (reads only); or a viewer token (stv_…, from POST /api/v1/viewer-tokens: the list, search, by-id, entity, user and history reads of its scope only)"))
                    .build(),
            ),
        );
    }
}

/// Answers every API route can give whatever it does: 429 from the rate limits (when
/// configured) and 503 with `Retry-After` (the request timeout, an unavailable store).
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !(path.starts_with("/api/v1/") || path == "/graphql")
                || path == "/api/v1/openapi.json"
            {
                continue;
            }
            for operation in [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let responses = &mut operation.responses.responses;
                if secured {
                    responses.entry("401".into()).or_insert_with(|| {
                        problem("Missing, unknown, revoked or expired credential")
                    });
                    responses.entry("403".into()).or_insert_with(|| {
                        problem("The credential lacks the scope, is bound to another tenant, or is a viewer token on a route viewer tokens do not read")
                    });
                }
                responses.entry("429".into()).or_insert_with(|| {
                    problem("Over a configured rate limit (per credential or per client address); see Retry-After")
                });
                responses.entry("503".into()).or_insert_with(|| {
                    problem("Unavailable for now (the store, the write queue or the request timeout); see Retry-After")
                });
            }
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sealtrail",
        description = "A tamper-evident audit trail: ingest, query and verify who did what, to which record, when, from where, and whether it worked.",
        license(name = "Apache-2.0"),
    ),
    paths(
        crate::ingest::ingest,
        crate::read::list,
        crate::export::export,
        crate::read::statistics,
        crate::read::get_one,
        crate::read::by_entity,
        crate::read::by_user,
        crate::read::search,
        crate::read::history,
        crate::read::history_of_type,
        crate::keys::create,
        crate::keys::list,
        crate::keys::revoke,
        crate::viewer::create,
        crate::integrity::checkpoint,
        crate::integrity::proof,
        crate::integrity::consistency,
        crate::integrity::public_keys,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::metrics::scrape,
        crate::graphql::post,
        crate::graphql::get,
    ),
    modifiers(&BearerAuth, &FilterDocs, &SharedAnswers),
    tags(
        (name = "ingest", description = "Record events"),
        (name = "read", description = "Query events and timelines"),
        (name = "keys", description = "Manage API keys"),
        (name = "access", description = "Viewer tokens for a host app's end users"),
        (name = "integrity", description = "Signed checkpoints and Merkle proofs"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON text.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}
