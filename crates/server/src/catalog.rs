//! A tenant's catalogue (SPEC §4.5): the actions and event types it allows, each optionally
//! with a JSON Schema for `metadata`, and built-in presets for common security events.
//!
//! Stored as the tenant's `catalog` setting ([`sealtrail_store::Store::setting`]), in the form
//! `GET` answers: presets expanded into actions, so a later change of a preset never changes a
//! tenant's catalogue behind its back. Ingest checks every event against its tenant's
//! catalogue, compiled once per version of it: with actions registered, an unknown `action` is
//! refused; with event types registered, an unknown `event_type`; and `metadata` (absent counts
//! as `{}`) must satisfy the schema of its action and of its event type, as stored (a
//! sensitive key's value is checked as the `[REDACTED]` that is kept). Errors name the path
//! inside `metadata`. Events sealtrail records about itself are never checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sealtrail_model::validate::is_valid_name;
use sealtrail_model::{Category, FieldError, NewEvent, Tenant};
use sealtrail_store::Scope;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// The setting a catalogue is stored under.
pub const SETTING: &str = "catalog";
/// Most actions, and most event types, a catalogue may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest description of an entry, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;

/// An allowed action or event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// The action or event type (the rules of `action`: 1–128 characters of
    /// `[A-Za-z0-9_.:-]`, starting with a letter).
    pub name: String,
    /// What it records, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema (2020-12; formats checked) that `metadata` must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata_schema: Option<Value>,
}

/// A tenant's catalogue, as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Catalog {
    /// The allowed actions; when empty, any action is allowed.
    pub actions: Vec<Entry>,
    /// The allowed event types; when empty, any event type is allowed.
    pub event_types: Vec<Entry>,
    /// The presets adopted (their actions are in `actions`).
    pub presets: Vec<String>,
}

/// A built-in preset: actions a tenant adopts with one call.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Preset {
    /// Its name, as `presets` in a catalogue names it.
    pub name: &'static str,
    /// What it covers.
    pub description: &'static str,
    /// Its actions.
    pub actions: Vec<Entry>,
}

fn entry(name: &str, description: &str, metadata_schema: Value) -> Entry {
    Entry {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        metadata_schema: Some(metadata_schema),
    }
}

/// An object schema: these properties (each a string unless said), `required` among them.
fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

/// The built-in presets.
pub fn presets() -> Vec<Preset> {
    let text = json!({"type": "string", "minLength": 1});
    let method = json!({"type": "string", "enum": ["password", "sso", "passkey", "totp", "sms", "email", "api_key", "other"]});
    vec![Preset {
        name: "security",
        description: "The common security events: sign-in and sign-out, failed sign-ins, password \
                      changes and resets, MFA on and off, permission denials, role changes, API \
                      keys, data exports and settings changes",
        actions: vec![
            entry(
                "user.login",
                "A user signed in",
                object(json!({"method": method}), &[]),
            ),
            entry("user.logout", "A user signed out", object(json!({}), &[])),
            entry(
                "user.login_failed",
                "A sign-in was refused",
                object(json!({"reason": text, "method": method}), &["reason"]),
            ),
            entry(
                "user.password_changed",
                "A user changed their password",
                object(json!({}), &[]),
            ),
            entry(
                "user.password_reset",
                "A password was reset",
                object(json!({"requested_by": text}), &[]),
            ),
            entry(
                "user.mfa_enabled",
                "Multi-factor authentication was turned on",
                object(json!({"method": method}), &["method"]),
            ),
            entry(
                "user.mfa_disabled",
                "Multi-factor authentication was turned off",
                object(json!({"method": method}), &[]),
            ),
            entry(
                "access.permission_denied",
                "An action was refused for lack of a permission",
                object(
                    json!({"permission": text, "resource": text}),
                    &["permission"],
                ),
            ),
            entry(
                "access.role_assigned",
                "A role was given",
                object(json!({"role": text, "scope": text}), &["role"]),
            ),
            entry(
                "access.role_removed",
                "A role was taken away",
                object(json!({"role": text, "scope": text}), &["role"]),
            ),
            entry(
                "api_key.created",
                "An API key was made",
                object(
                    json!({"key_id": text, "scopes": {"type": "array", "items": text}}),
                    &[],
                ),
            ),
            entry(
                "api_key.revoked",
                "An API key was revoked",
                object(json!({"key_id": text}), &[]),
            ),
            entry(
                "data.exported",
                "Data was exported",
                object(
                    json!({"format": text, "rows": {"type": "integer", "minimum": 0}}),
                    &[],
                ),
            ),
            entry(
                "settings.changed",
                "A setting was changed (the change itself in `changes`)",
                object(json!({"setting": text}), &[]),
            ),
        ],
    }]
}

/// Reads a list of entries (`field` is `actions` or `event_types`): each a name, or an object
/// with `name`, `description` and `metadata_schema`.
fn parse_entries(value: Option<Value>, field: &str, errors: &mut Vec<FieldError>) -> Vec<Entry> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_ENTRIES => items,
        Some(Value::Array(_)) => {
            errors.push(FieldError::new(
                field,
                format!("must hold at most {MAX_ENTRIES} entries"),
            ));
            return Vec::new();
        }
        Some(_) => {
            errors.push(FieldError::new(field, "must be an array"));
            return Vec::new();
        }
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        let entry = match item {
            Value::String(name) => Entry {
                name,
                description: None,
                metadata_schema: None,
            },
            Value::Object(mut object) => {
                if let Some(extra) = object
                    .keys()
                    .find(|k| !["name", "description", "metadata_schema"].contains(&k.as_str()))
                {
                    errors.push(FieldError::new(format!("{at}.{extra}"), "unknown field"));
                }
                let name = match object.remove("name") {
                    Some(Value::String(name)) => name,
                    _ => {
                        errors.push(FieldError::new(
                            format!("{at}.name"),
                            "is required: a string",
                        ));
                        continue;
                    }
                };
                let description = match object.remove("description") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(d)) if d.chars().count() <= MAX_DESCRIPTION_CHARS => Some(d),
                    Some(_) => {
                        errors.push(FieldError::new(
                            format!("{at}.description"),
                            format!(
                                "must be a string of at most {MAX_DESCRIPTION_CHARS} characters"
                            ),
                        ));
                        None
                    }
                };
                let metadata_schema = match object.remove("metadata_schema") {
                    None | Some(Value::Null) => None,
                    Some(schema) => match compile(&schema) {
                        Ok(_) => Some(schema),
                        Err(message) => {
                            errors.push(FieldError::new(format!("{at}.metadata_schema"), message));
                            None
                        }
                    },
                };
                Entry {
                    name,
                    description,
                    metadata_schema,
                }
            }
            _ => {
                errors.push(FieldError::new(
                    at,
                    "must be a name or an object with a name",
                ));
                continue;
            }
        };
        if !is_valid_name(&entry.name) {
            errors.push(FieldError::new(
                format!("{at}.name"),
                "must be 1 to 128 characters of letters, digits, '_', '.', ':' or '-', starting with a letter",
            ));
        } else if entries.iter().any(|e| e.name == entry.name) {
            errors.push(FieldError::new(format!("{at}.name"), "is listed twice"));
        } else {
            entries.push(entry);
        }
    }
    entries
}

/// Reads a `PUT /tenants/{tenant}/catalog` body into the catalogue to store; every bad field
/// is named.
pub fn parse_catalog(body: Value) -> Result<Catalog, Vec<FieldError>> {
    let Value::Object(mut body) = body else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut actions = parse_entries(body.remove("actions"), "actions", &mut errors);
    let event_types = parse_entries(body.remove("event_types"), "event_types", &mut errors);
    let mut adopted = Vec::new();
    match body.remove("presets") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) => {
            let known = presets();
            for (i, name) in names.iter().enumerate() {
                match known.iter().find(|p| Some(p.name) == name.as_str()) {
                    Some(preset) if !adopted.contains(&preset.name.to_owned()) => {
                        adopted.push(preset.name.to_owned());
                        // An action the body defines itself wins over the preset's.
                        for action in &preset.actions {
                            if !actions.iter().any(|a| a.name == action.name) {
                                actions.push(action.clone());
                            }
                        }
                    }
                    Some(_) => {}
                    None => errors.push(FieldError::new(
                        format!("presets[{i}]"),
                        format!(
                            "must be one of {}",
                            known.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            "presets",
            "must be an array of preset names",
        )),
    }
    if actions.len() > MAX_ENTRIES {
        errors.push(FieldError::new(
            "actions",
            format!("must hold at most {MAX_ENTRIES} entries, presets included"),
        ));
    }
    for name in body.keys() {
        errors.push(FieldError::new(name.clone(), "unknown field"));
    }
    if errors.is_empty() {
        Ok(Catalog {
            actions,
            event_types,
            presets: adopted,
        })
    } else {
        Err(errors)
    }
}

/// Compiles a metadata schema, or says why it is not one.
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err("must be a JSON Schema (an object or a boolean)".into());
    }
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| format!("is not a usable JSON Schema: {e}"))
}

/// A catalogue ready to check events: names looked up in maps, schemas compiled.
pub struct Compiled {
    version: i64,
    actions: HashMap<String, Option<jsonschema::Validator>>,
    event_types: HashMap<String, Option<jsonschema::Validator>>,
}

impl Compiled {
    fn new(catalog: &Catalog, version: i64) -> Self {
        let compile_all = |entries: &[Entry]| {
            entries
                .iter()
                .map(|e| {
                    let validator = e.metadata_schema.as_ref().and_then(|s| compile(s).ok());
                    (e.name.clone(), validator)
                })
                .collect()
        };
        Self {
            version,
            actions: compile_all(&catalog.actions),
            event_types: compile_all(&catalog.event_types),
        }
    }

    /// Checks one event, naming each problem under `prefix` (`""` or `events[3].`).
    pub fn check(
        &self,
        event: &NewEvent,
        tenant: &Tenant,
        prefix: &str,
        errors: &mut Vec<FieldError>,
    ) {
        let empty = Value::Object(Default::default());
        let metadata = event.metadata.as_ref().unwrap_or(&empty);
        let listed = |names: &HashMap<String, Option<jsonschema::Validator>>,
                      name: &str,
                      field: &str,
                      errors: &mut Vec<FieldError>| {
            match names.get(name) {
                None => errors.push(FieldError::new(
                    format!("{prefix}{field}"),
                    format!("is not in the catalogue of tenant {tenant}"),
                )),
                Some(Some(validator)) => check_metadata(validator, metadata, prefix, errors),
                Some(None) => {}
            }
        };
        if !self.actions.is_empty() {
            listed(&self.actions, &event.action, "action", errors);
        }
        if let Some(event_type) = &event.event_type
            && !self.event_types.is_empty()
        {
            listed(&self.event_types, event_type, "event_type", errors);
        }
    }
}

/// Names every way `metadata` fails `validator`, by its path inside `metadata`; values are
/// not repeated in the messages.
fn check_metadata(
    validator: &jsonschema::Validator,
    metadata: &Value,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) {
    for error in validator.iter_errors(metadata) {
        let mut path = format!("{prefix}metadata");
        for segment in error.instance_path().iter() {
            match segment {
                jsonschema::paths::LocationSegment::Property(name) => {
                    path.push('.');
                    path.push_str(&name);
                }
                jsonschema::paths::LocationSegment::Index(i) => {
                    path.push_str(&format!("[{i}]"));
                }
            }
        }
        errors.push(FieldError::new(path, error.masked().to_string()));
    }
}

/// Compiled catalogues by tenant, each kept until its setting's version changes.
#[derive(Default)]
pub struct Catalogs {
    compiled: Mutex<HashMap<Tenant, Arc<Compiled>>>,
}

impl Catalogs {
    /// The tenant's catalogue, compiled; `None` when it has none (anything goes).
    pub async fn of(
        &self,
        store: &dyn sealtrail_store::Store,
        tenant: &Tenant,
    ) -> Result<Option<Arc<Compiled>>, ApiError> {
        let Some(setting) = store.setting(tenant, SETTING).await? else {
            return Ok(None);
        };
        if let Some(compiled) = self
            .compiled
            .lock()
            .expect("catalogue lock is never poisoned")
            .get(tenant)
            .filter(|c| c.version == setting.version)
        {
            return Ok(Some(compiled.clone()));
        }
        let catalog: Catalog = serde_json::from_value(setting.value)
            .map_err(|e| ApiError::Unavailable(format!("the stored catalogue is damaged: {e}")))?;
        let compiled = Arc::new(Compiled::new(&catalog, setting.version));
        self.compiled
            .lock()
            .expect("catalogue lock is never poisoned")
            .insert(tenant.clone(), compiled.clone());
        Ok(Some(compiled))
    }
}

/// The tenant named by a path, for a credential: 400 for a malformed name, 403 for another
/// tenant's key.
pub(crate) fn path_tenant(principal: &Principal, tenant: &str) -> Result<Tenant, ApiError> {
    sealtrail_model::validate_tenant(tenant)
        .map_err(|msg| ApiError::bad_parameter("tenant", msg))?;
    principal.tenant(Some(tenant), "tenant", false)
}

/// A tenant's catalogue.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/catalog",
    tag = "lifecycle",
    params(("tenant" = String, Path, description = "The tenant")),
    responses(
        (status = 200, description = "The catalogue", body = Catalog),
        (status = 404, description = "The tenant has no catalogue (any action is allowed)", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    uri: axum::extract::OriginalUri,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = path_tenant(&principal, &tenant)?;
    let setting = state
        .store
        .setting(&tenant, SETTING)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("tenant {tenant} has no catalogue")))?;
    state
        .audit_cross_tenant_read(&principal, &tenant, &uri)
        .await?;
    Ok(Json(setting.value).into_response())
}

/// Register a tenant's catalogue (replacing any earlier one): allowed actions and event types,
/// each optionally with a JSON Schema for `metadata`, and presets to adopt. Recorded as
/// `audit.catalog_changed`.
#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant}/catalog",
    tag = "lifecycle",
    params(("tenant" = String, Path, description = "The tenant")),
    request_body(content = Catalog, content_type = "application/json", description = "`actions` and `event_types` (each entry a name, or `{name, description, metadata_schema}`) and `presets` (names of built-in presets)"),
    responses(
        (status = 200, description = "The catalogue as stored (presets expanded)", body = Catalog),
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = path_tenant(&principal, &tenant)?;
    let value = crate::json_body(&headers, &body)?;
    let catalog = parse_catalog(value).map_err(ApiError::Invalid)?;
    let stored = serde_json::to_value(&catalog).expect("a catalogue serialises");
    state
        .store
        .put_setting(&tenant, SETTING, Some(stored.clone()))
        .await?;
    state
        .audit_self(
            &tenant,
            "audit.catalog_changed",
            Category::Update,
            &principal,
            None,
            json!({
                "actions": catalog.actions.len(),
                "event_types": catalog.event_types.len(),
                "presets": catalog.presets,
            }),
        )
        .await?;
    Ok(Json(stored).into_response())
}

/// Remove a tenant's catalogue: any action and event type is allowed again. Recorded as
/// `audit.catalog_changed`.
#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}/catalog",
    tag = "lifecycle",
    params(("tenant" = String, Path, description = "The tenant")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The tenant has no catalogue", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Admin)?;
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = path_tenant(&principal, &tenant)?;
    if state.store.setting(&tenant, SETTING).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "tenant {tenant} has no catalogue"
        )));
    }
    state.store.put_setting(&tenant, SETTING, None).await?;
    state
        .audit_self(
            &tenant,
            "audit.catalog_changed",
            Category::Delete,
            &principal,
            None,
            json!({"removed": true}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `GET /catalog/presets`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PresetList {
    /// Every built-in preset.
    pub items: Vec<Preset>,
}

/// The built-in presets a catalogue can adopt (`"presets": ["security"]`).
#[utoipa::path(
    get,
    path = "/api/v1/catalog/presets",
    tag = "lifecycle",
    responses((status = 200, description = "The presets", body = PresetList)),
    security(("bearer" = []))
)]
pub async fn list_presets(
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<PresetList>, ApiError> {
    principal.require(Scope::Read)?;
    crate::params::no_parameters(raw.as_deref())?;
    Ok(Json(PresetList { items: presets() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_schema_compiles_and_names_are_valid() {
        for preset in presets() {
            for action in &preset.actions {
                assert!(is_valid_name(&action.name), "{}", action.name);
                let schema = action.metadata_schema.as_ref().expect("a schema");
                compile(schema).unwrap_or_else(|e| panic!("{}: {e}", action.name));
            }
        }
    }

    #[test]
    fn bodies_name_every_bad_field() {
        let fields = |v: Value| -> Vec<String> {
            parse_catalog(v)
                .expect_err("refused")
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(
            fields(json!({"actions": ["ok", "1bad", "ok"], "presets": ["nope"], "x": 1})),
            ["actions[1].name", "actions[2].name", "presets[0]", "x"]
        );
        assert_eq!(
            fields(json!({"event_types": [{"name": "T", "metadata_schema": {"type": 5}}]})),
            ["event_types[0].metadata_schema"]
        );
        assert_eq!(
            fields(json!({"actions": [{"name": "a", "color": "red"}]})),
            ["actions[0].color"]
        );
        let ok = parse_catalog(json!({
            "actions": ["user.login", {"name": "invoice.paid", "metadata_schema": {"type": "object"}}],
            "presets": ["security"],
        }))
        .expect("valid");
        // The body's own user.login wins; the preset adds the rest.
        assert_eq!(ok.actions[0].name, "user.login");
        assert!(ok.actions[0].metadata_schema.is_none());
        assert_eq!(
            ok.actions.len(),
            2 + presets()[0].actions.len() - 1,
            "{:?}",
            ok.actions.iter().map(|a| &a.name).collect::<Vec<_>>()
        );
        assert_eq!(ok.presets, ["security"]);
    }
}
