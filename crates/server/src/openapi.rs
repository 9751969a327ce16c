//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the types that only
//! exist to describe request shapes in it.

#![allow(dead_code)] // The types below describe shapes for the document; nothing builds them.

use sealtrail_model::{
    Actor, Category, Change, Context, Event, Organization, Outcome, Related, Target,
};
use serde_json::{Value, json};
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
    /// names, `error`, `changes` (fields and values) or `metadata` values. At most 1024
    /// characters; none (empty, or only punctuation) filters nothing.
    #[schema(max_length = 1024)]
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
    /// names, `error`, `changes` (fields and values) or `metadata` values. At most 1024
    /// characters; none (empty, or only punctuation) filters nothing.
    #[param(max_length = 1024)]
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
    /// names, `error`, `changes` (fields and values) or `metadata` values. At most 1024
    /// characters; none (empty, or only punctuation) filters nothing.
    #[param(max_length = 1024)]
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
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                // Every API route reads its query string: an unknown, repeated or bad
                // parameter is 400 naming it.
                responses.entry("400".into()).or_insert_with(|| {
                    problem("A bad, unknown or repeated query parameter (or malformed JSON), named in errors")
                });
                if has_body {
                    responses
                        .entry("415".into())
                        .or_insert_with(|| problem("The body is not sent as application/json"));
                    responses
                        .entry("422".into())
                        .or_insert_with(|| problem("A bad field of the body, named in errors"));
                }
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
        crate::catalog::get,
        crate::catalog::put,
        crate::catalog::delete,
        crate::catalog::list_presets,
        crate::lifecycle::get_retention,
        crate::lifecycle::put_retention,
        crate::lifecycle::run,
        crate::lifecycle::anonymize,
        crate::lifecycle::list_holds,
        crate::lifecycle::get_hold,
        crate::lifecycle::put_hold,
        crate::lifecycle::delete_hold,
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
        (name = "lifecycle", description = "Catalogues of allowed actions and event types"),
        (name = "integrity", description = "Signed checkpoints and Merkle proofs"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON text.
pub fn document() -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
    constrain(&mut doc);
    constrain_lifecycle(&mut doc);
    serde_json::to_string_pretty(&doc).expect("the OpenAPI document serialises")
}

/// What the server accepts of a parameter or body field shared by many operations, by name:
/// the ranges, patterns and choices the derive macros do not state. `None` for names that need
/// nothing more.
fn constraint(name: &str) -> Option<Value> {
    Some(match name {
        "tenant" => json!({
            "type": "string", "minLength": 1, "maxLength": 64,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        }),
        "q" => json!({"type": "string", "maxLength": crate::params::MAX_Q_CHARS}),
        "from" | "to" => json!({"type": "string", "format": "date-time"}),
        "order" => json!({"type": "string", "enum": ["asc", "desc"]}),
        "limit" => json!({
            "type": "integer", "minimum": 1, "maximum": crate::params::MAX_LIMIT,
            "default": crate::params::DEFAULT_LIMIT,
        }),
        // Opaque, but of a plain shape: every text of it is a cursor.
        "cursor" => json!({"type": "string", "pattern": sealtrail_store::Cursor::LIST_PATTERN}),
        _ => return None,
    })
}

/// Merges `extra` into a schema, keeping its type (a nullable field stays nullable) and its
/// default.
fn merge(schema: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (schema.as_object_mut(), extra) {
        for (k, v) in extra {
            if (k == "default" || k == "type") && target.contains_key(&k) {
                continue;
            }
            target.insert(k, v);
        }
    }
}

/// A filter value (a query parameter's item, a search body's string): never empty; an `ip`
/// is an address.
fn constrain_filter(name: &str, item: &mut Value) {
    if item.get("enum").is_some() {
        return;
    }
    if name == "ip" {
        merge(
            item,
            json!({"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
        );
    }
    merge(item, json!({"minLength": 1}));
}

/// States in the document every constraint the server applies that the derive macros leave
/// out, so that a request the document allows is a request the server accepts.
fn constrain(doc: &mut Value) {
    let filters: Vec<&str> = sealtrail_store::Field::all()
        .map(|f| f.spec().name)
        .collect();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for parameter in parameters {
                    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                    let in_query = parameter["in"] == "query";
                    if path == "/graphql" && name == "variables" {
                        // JSON text: described by its content, not as any string.
                        if let Some(p) = parameter.as_object_mut() {
                            p.remove("schema");
                            p.insert(
                                "content".into(),
                                json!({"application/json": {"schema": {"type": "object"}}}),
                            );
                        }
                        continue;
                    }
                    let schema = &mut parameter["schema"];
                    if path.starts_with("/api/v1/entities/") && name == "cursor" {
                        merge(
                            schema,
                            json!({"pattern": sealtrail_store::Cursor::TIMELINE_PATTERN}),
                        );
                    } else if path == "/api/v1/integrity/consistency"
                        || (path == "/api/v1/integrity/proof/{id}" && name == "size")
                    {
                        // Tree sizes and positions count from 1.
                        merge(schema, json!({"minimum": 1}));
                    } else if (in_query || name == "tenant")
                        && let Some(extra) = constraint(&name)
                    {
                        merge(schema, extra);
                    } else if schema["type"] == "array" && filters.contains(&name.as_str()) {
                        constrain_filter(&name, &mut schema["items"]);
                    }
                }
            }
        }
    }
    // A catalogue as sent: each entry a name or an object; presets by name.
    let name = json!({
        "type": "string",
        "maxLength": sealtrail_model::limits::MAX_NAME_CHARS,
        "pattern": format!(
            "^[A-Za-z][A-Za-z0-9_.:-]{{0,{}}}$",
            sealtrail_model::limits::MAX_NAME_CHARS - 1
        ),
    });
    let entries = json!({
        "type": ["array", "null"],
        "maxItems": crate::catalog::MAX_ENTRIES,
        "items": {"anyOf": [
            name.clone(),
            {
                "type": "object", "additionalProperties": false, "required": ["name"],
                "properties": {
                    "name": name,
                    "description": {
                        "type": ["string", "null"],
                        "maxLength": crate::catalog::MAX_DESCRIPTION_CHARS,
                    },
                    "metadata_schema": {
                        "type": ["object", "boolean", "null"],
                        "description": "A JSON Schema (2020-12) for `metadata`",
                    },
                },
            },
        ]},
    });
    let presets: Vec<&str> = crate::catalog::presets().iter().map(|p| p.name).collect();
    doc["paths"]["/api/v1/tenants/{tenant}/catalog"]["put"]["requestBody"]["content"]["application/json"]
        ["schema"] = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "actions": entries.clone(),
            "event_types": entries,
            "presets": {"type": ["array", "null"], "items": {"type": "string", "enum": presets}},
        },
    });
    // One event, or a batch of 1 to MAX_BATCH_EVENTS.
    let event = json!({"$ref": "#/components/schemas/EventInput"});
    doc["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"] = json!({"oneOf": [
        event.clone(),
        {
            "type": "array", "items": event, "minItems": 1,
            "maxItems": sealtrail_model::limits::MAX_BATCH_EVENTS,
        },
    ]});
    let Some(schemas) = doc["components"]["schemas"].as_object_mut() else {
        return;
    };
    constrain_inputs(schemas);
    if let Some(properties) = schemas
        .get_mut("SearchBody")
        .and_then(|s| s["properties"].as_object_mut())
    {
        for (name, schema) in properties.iter_mut() {
            if let Some(mut extra) = constraint(name) {
                // A body field may be null: the same as leaving it out.
                let kind = extra["type"].clone();
                extra["type"] = json!([kind, "null"]);
                if let Some(choices) = extra.get_mut("enum").and_then(Value::as_array_mut) {
                    choices.push(Value::Null);
                }
                merge(schema, extra);
            } else if filters.contains(&name.as_str()) && schema["type"] == "array" {
                // One value, a list of them, or null (no filter).
                let mut item = schema["items"].clone();
                constrain_filter(name, &mut item);
                let description = schema["description"].clone();
                *schema = json!({
                    "description": description,
                    "anyOf": [item.clone(), {"type": "array", "items": item}, {"type": "null"}],
                });
            }
        }
    }
}

/// Merges `extra` into property `property` of component `component` (or into the component
/// itself when `property` is empty); for a property that is a `$ref` or a `oneOf` with null,
/// the rule goes beside it.
fn rule(
    schemas: &mut serde_json::Map<String, Value>,
    component: &str,
    property: &str,
    extra: Value,
) {
    let Some(schema) = schemas.get_mut(component) else {
        panic!("the OpenAPI document has no component {component}");
    };
    if property.is_empty() {
        merge(schema, extra);
        return;
    }
    let Some(target) = schema["properties"].get_mut(property) else {
        panic!("component {component} has no property {property}");
    };
    merge(target, extra);
}

/// A pattern matching `words` whatever their case.
fn any_case(words: &[&str]) -> String {
    let alternatives: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// The rules of request bodies (SPEC §3 for events; keys, viewer tokens, searches) that the
/// derive macros leave out: lengths, patterns, ranges, unknown fields refused, and the rules
/// across fields that JSON Schema can say (`error` only with `outcome: failure`; a key of
/// every tenant is an admin key).
fn constrain_inputs(schemas: &mut serde_json::Map<String, Value>) {
    use sealtrail_model::limits::*;
    let text = |max: usize| json!({"minLength": 1, "maxLength": max});
    let name = json!({
        "maxLength": MAX_NAME_CHARS,
        "pattern": format!("^[A-Za-z][A-Za-z0-9_.:-]{{0,{}}}$", MAX_NAME_CHARS - 1),
    });
    let closed = json!({"additionalProperties": false});
    let tenant = constraint("tenant").expect("a tenant rule");

    rule(schemas, "EventInput", "", closed.clone());
    rule(schemas, "EventInput", "tenant", tenant.clone());
    rule(schemas, "EventInput", "action", name.clone());
    rule(schemas, "EventInput", "event_type", name);
    rule(schemas, "EventInput", "error", text(MAX_ERROR_CHARS));
    rule(
        schemas,
        "EventInput",
        "changes",
        json!({"maxItems": MAX_CHANGES}),
    );
    rule(
        schemas,
        "EventInput",
        "related",
        json!({"maxItems": MAX_RELATED}),
    );
    rule(
        schemas,
        "EventInput",
        "occurred_at",
        json!({"pattern": "^(?:19[7-9][0-9]|[2-9][0-9]{3})-"}),
    );
    rule(
        schemas,
        "EventInput",
        "",
        json!({
            "if": {"required": ["error"], "properties": {"error": {"type": "string"}}},
            "then": {"required": ["outcome"], "properties": {"outcome": {"const": "failure"}}},
        }),
    );
    for component in [
        "Actor",
        "Target",
        "Organization",
        "Context",
        "Change",
        "Related",
    ] {
        rule(schemas, component, "", closed.clone());
    }
    rule(schemas, "Actor", "id", text(MAX_ID_CHARS));
    rule(schemas, "Actor", "name", text(MAX_DISPLAY_CHARS));
    rule(
        schemas,
        "Actor",
        "email",
        json!({"minLength": 3, "maxLength": MAX_EMAIL_CHARS, "pattern": "^[^@\\s]+@[^@\\s]+$"}),
    );
    // `type` defaults to `user` (left out or null).
    if let Some(required) = schemas["Actor"]["required"].as_array_mut() {
        required.retain(|r| r != "type");
    }
    let actor_type = schemas["Actor"]["properties"]["type"].take();
    schemas["Actor"]["properties"]["type"] = json!({
        "description": actor_type["description"].clone(),
        "oneOf": [{"$ref": actor_type["$ref"].clone()}, {"type": "null"}],
    });
    for component in ["Target", "Related"] {
        rule(schemas, component, "type", text(MAX_ID_CHARS));
        rule(schemas, component, "id", text(MAX_ID_CHARS));
    }
    rule(schemas, "Target", "name", text(MAX_DISPLAY_CHARS));
    rule(schemas, "Organization", "id", text(MAX_ID_CHARS));
    rule(schemas, "Organization", "name", text(MAX_DISPLAY_CHARS));
    rule(
        schemas,
        "Context",
        "ip",
        json!({"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}, {"type": "null"}]}),
    );
    rule(schemas, "Context", "user_agent", text(MAX_TEXT_CHARS));
    rule(schemas, "Context", "endpoint", text(MAX_TEXT_CHARS));
    rule(schemas, "Context", "session_id", text(MAX_ID_CHARS));
    rule(schemas, "Context", "correlation_id", text(MAX_ID_CHARS));
    rule(
        schemas,
        "Context",
        "method",
        json!({"pattern": any_case(&sealtrail_model::validate::HTTP_METHODS)}),
    );
    rule(
        schemas,
        "Context",
        "status_code",
        json!({"minimum": 100, "maximum": 599}),
    );
    rule(schemas, "Context", "duration_ms", json!({"minimum": 0}));
    rule(schemas, "Change", "field", text(MAX_FIELD_CHARS));
    // Any JSON value (left out of an input change: null).
    for component in ["Change", "OutputChange"] {
        for side in ["old_value", "new_value"] {
            let description = schemas[component]["properties"][side]["description"].clone();
            schemas[component]["properties"][side] = json!({"description": description});
        }
    }
    schemas["Change"]["required"] = json!(["field"]);

    rule(schemas, "NewKeyBody", "", closed.clone());
    rule(
        schemas,
        "NewKeyBody",
        "tenant",
        json!({"pattern": "^(?:\\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"}),
    );
    rule(
        schemas,
        "NewKeyBody",
        "scopes",
        json!({"minItems": 1, "items": {"type": "string", "enum": ["ingest", "read", "admin"]}}),
    );
    rule(schemas, "NewKeyBody", "name", json!({"maxLength": 128}));
    rule(
        schemas,
        "NewKeyBody",
        "",
        json!({
            "if": {"required": ["tenant"], "properties": {"tenant": {"const": "*"}}},
            "then": {"properties": {"scopes": {"contains": {"const": "admin"}}}},
        }),
    );

    schemas["Entry"]["properties"]["metadata_schema"]["type"] =
        json!(["object", "boolean", "null"]);
    rule(schemas, "ViewerTokenRequest", "", closed.clone());
    rule(schemas, "ViewerTokenRequest", "tenant", tenant);
    rule(
        schemas,
        "ViewerTokenRequest",
        "viewer_id",
        text(crate::viewer::MAX_VIEWER_ID_CHARS),
    );
    rule(schemas, "TargetRef", "", closed.clone());
    rule(schemas, "TargetRef", "type", json!({"minLength": 1}));
    rule(schemas, "TargetRef", "id", json!({"minLength": 1}));
    for variant in schemas["ViewerScope"]["oneOf"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        merge(variant, closed.clone());
        for property in variant["properties"].as_object_mut().into_iter().flatten() {
            if property.1.get("type").is_some_and(|t| t == "string") {
                merge(property.1, json!({"minLength": 1}));
            }
        }
    }
    rule(schemas, "SearchBody", "", closed.clone());

    use crate::lifecycle::{MAX_DAYS, MAX_PREFIX, MAX_RULES};
    let days = json!({"minimum": 1, "maximum": MAX_DAYS});
    rule(schemas, "RetentionBody", "", closed.clone());
    rule(schemas, "RetentionBody", "default_days", days.clone());
    rule(
        schemas,
        "RetentionBody",
        "rules",
        json!({"maxItems": MAX_RULES}),
    );
    rule(schemas, "RuleBody", "", closed);
    rule(schemas, "RuleBody", "days", days);
    rule(
        schemas,
        "RuleBody",
        "action_prefix",
        json!({"maxLength": MAX_PREFIX}),
    );
}

/// The lifecycle bodies the derive macros cannot describe: a hold (its filter is a search
/// body's filters, without paging) and a run (`dry_run` only, the body itself optional); and
/// the rule of a hold's name.
fn constrain_lifecycle(doc: &mut Value) {
    let mut filter = doc["components"]["schemas"]["SearchBody"].clone();
    if let Some(properties) = filter["properties"].as_object_mut() {
        for paging in ["order", "limit", "cursor", "tenant"] {
            properties.remove(paging);
        }
    }
    if let Some(o) = filter.as_object_mut() {
        o.remove("description");
    }
    let hold = "/api/v1/tenants/{tenant}/legal-holds/{name}";
    doc["paths"][hold]["put"]["requestBody"]["content"]["application/json"]["schema"] = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["filter"],
        "properties": {
            "filter": filter,
            "reason": {"type": ["string", "null"], "maxLength": crate::lifecycle::MAX_REASON},
        },
    });
    let run = &mut doc["paths"]["/api/v1/tenants/{tenant}/retention/run"]["post"]["requestBody"];
    run["required"] = json!(false);
    run["content"]["application/json"]["schema"] = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {"dry_run": {"type": ["boolean", "null"]}},
    });
    for method in ["get", "put", "delete"] {
        for parameter in doc["paths"][hold][method]["parameters"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if parameter["name"] == "name" {
                merge(
                    &mut parameter["schema"],
                    json!({"pattern": "^[A-Za-z0-9._-]{1,128}$"}),
                );
            }
        }
    }
}
