//! Retention and legal holds over HTTP (SPEC §4.5, §12): a tenant's rules (`PUT/GET
//! /tenants/{tenant}/retention`), its holds (`PUT/GET/DELETE /tenants/{tenant}/legal-holds/
//! {name}`, `GET /tenants/{tenant}/legal-holds`), the synchronous run (`POST
//! /tenants/{tenant}/retention/run`, with `dry_run`) and the daily job, all over
//! [`sealtrail_store::retention`]. Rules and holds are tenant settings; every change and every
//! run is recorded as an event of the tenant (`audit.retention_changed`,
//! `audit.legal_hold_placed`, `audit.legal_hold_removed`, `audit.purged` for a run that removed
//! events, `audit.retention_checked` for one that did not or was dry).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use sealtrail_model::{Actor, ActorType, Category, Timestamp};
use sealtrail_store::retention::{self, Hold, Policy, Rule};
use sealtrail_store::{Scope, Store, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use sealtrail_model::FieldError;

/// The setting that holds a tenant's retention rules.
pub const RETENTION: &str = "retention";
/// The setting that holds a tenant's legal holds.
pub const HOLDS: &str = "legal_holds";
/// Most rules a tenant may have.
pub const MAX_RULES: usize = 100;
/// Most legal holds a tenant may have.
pub const MAX_HOLDS: usize = 100;
/// The longest a rule may keep events: 100 years.
pub const MAX_DAYS: u64 = 36_500;
/// The longest action prefix.
pub const MAX_PREFIX: usize = 256;
/// The longest reason given for a hold.
pub const MAX_REASON: usize = 1_000;

/// A tenant's retention rules, as stored and served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetentionBody {
    /// Days for actions no rule names; `null` keeps them forever.
    pub default_days: Option<u32>,
    /// Rules by action prefix: the longest prefix an action starts with wins (none when left
    /// out).
    #[serde(default)]
    pub rules: Vec<RuleBody>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleBody {
    /// The start of the actions it covers (`auth.` covers `auth.login`).
    pub action_prefix: String,
    /// How many days events of those actions are kept (1–36 500).
    pub days: u32,
}

impl RetentionBody {
    /// The store's form.
    pub fn policy(&self) -> Policy {
        Policy {
            default_days: self.default_days,
            rules: self
                .rules
                .iter()
                .map(|r| Rule {
                    action_prefix: r.action_prefix.clone(),
                    days: r.days,
                })
                .collect(),
        }
    }
}

/// A legal hold, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HoldBody {
    /// Its name.
    pub name: String,
    /// The events it keeps: any filter of `POST /audit-logs/search` (`from` and `to` included),
    /// all of them must match; `{}` keeps every event.
    #[schema(value_type = Object)]
    pub filter: Value,
    /// Why it was placed, if said.
    pub reason: Option<String>,
    /// When it was placed.
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: Timestamp,
    /// The credential that placed it.
    pub placed_by: String,
}

/// The body of `GET /tenants/{tenant}/legal-holds`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldList {
    /// Every hold, by name.
    pub items: Vec<HoldBody>,
}

/// The answer of a retention run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunAnswer {
    /// Events removed (for a dry run: that would be).
    pub purged: u64,
    /// The archive written (a file under `<data-dir>/archive/<tenant>/`), if events were removed.
    pub archive: Option<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Expired events a legal hold kept.
    pub held: u64,
    /// The first position removed.
    pub from_seq: Option<u64>,
    /// The last position removed.
    pub to_seq: Option<u64>,
    /// The size of the checkpoint the run worked against (events after it wait for the next
    /// run).
    pub checkpoint_size: Option<u64>,
    /// The id of the receipt (`audit.purged`), if events were removed.
    pub receipt_id: Option<String>,
}

/// Parses rules: a closed object, every problem named.
pub fn parse_retention(body: Value) -> Result<RetentionBody, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Value::Object(map) = body else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut out = RetentionBody::default();
    for (name, value) in map {
        match name.as_str() {
            "default_days" => match &value {
                Value::Null => {}
                v => match days(v) {
                    Ok(d) => out.default_days = Some(d),
                    Err(msg) => errors.push(FieldError::new("default_days", msg)),
                },
            },
            "rules" => {
                let Value::Array(items) = value else {
                    errors.push(FieldError::new("rules", "must be an array"));
                    continue;
                };
                if items.len() > MAX_RULES {
                    errors.push(FieldError::new(
                        "rules",
                        format!("at most {MAX_RULES} rules"),
                    ));
                    continue;
                }
                for (i, item) in items.into_iter().enumerate() {
                    let at = format!("rules[{i}]");
                    let Value::Object(rule) = item else {
                        errors.push(FieldError::new(&at, "must be an object"));
                        continue;
                    };
                    let (mut prefix, mut kept) = (None, None);
                    let (given_prefix, given_days) = (
                        rule.contains_key("action_prefix"),
                        rule.contains_key("days"),
                    );
                    for (key, v) in rule {
                        match key.as_str() {
                            "action_prefix" => match v.as_str() {
                                Some(p) if p.chars().count() <= MAX_PREFIX => {
                                    prefix = Some(p.to_owned())
                                }
                                Some(_) => errors.push(FieldError::new(
                                    format!("{at}.action_prefix"),
                                    format!("at most {MAX_PREFIX} characters"),
                                )),
                                None => errors.push(FieldError::new(
                                    format!("{at}.action_prefix"),
                                    "must be a string",
                                )),
                            },
                            "days" => match days(&v) {
                                Ok(d) => kept = Some(d),
                                Err(msg) => errors.push(FieldError::new(format!("{at}.days"), msg)),
                            },
                            other => errors.push(FieldError::new(
                                format!("{at}.{other}"),
                                "is not a field of a rule",
                            )),
                        }
                    }
                    match (prefix, kept) {
                        (Some(action_prefix), Some(days)) => {
                            if out.rules.iter().any(|r| r.action_prefix == action_prefix) {
                                errors.push(FieldError::new(
                                    format!("{at}.action_prefix"),
                                    "another rule has this prefix",
                                ));
                            } else {
                                out.rules.push(RuleBody {
                                    action_prefix,
                                    days,
                                });
                            }
                        }
                        _ => {
                            // A field given but invalid is named above already.
                            if !given_prefix {
                                errors.push(FieldError::new(
                                    format!("{at}.action_prefix"),
                                    "is required",
                                ));
                            }
                            if !given_days {
                                errors.push(FieldError::new(format!("{at}.days"), "is required"));
                            }
                        }
                    }
                }
            }
            other => errors.push(FieldError::new(other, "is not a known field")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A number of days: a whole number from 1 to [`MAX_DAYS`].
fn days(v: &Value) -> Result<u32, String> {
    let n = v
        .as_number()
        .and_then(sealtrail_model::json::whole_number)
        .ok_or_else(|| "must be a whole number of days".to_owned())?;
    if (1..=MAX_DAYS).contains(&n) {
        Ok(n as u32)
    } else {
        Err(format!("must be from 1 to {MAX_DAYS}"))
    }
}

/// Parses a hold's body (`filter`, `reason`): the filter as a search body takes it, less
/// paging; every problem named under `filter.`.
fn parse_hold(body: Value) -> Result<(Value, Option<String>), Vec<FieldError>> {
    let Value::Object(map) = body else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let (mut filter, mut reason) = (None, None);
    for (name, value) in map {
        match name.as_str() {
            "filter" => filter = Some(value),
            "reason" => match value {
                Value::Null => {}
                Value::String(r) if r.chars().count() <= MAX_REASON => reason = Some(r),
                Value::String(_) => errors.push(FieldError::new(
                    "reason",
                    format!("at most {MAX_REASON} characters"),
                )),
                _ => errors.push(FieldError::new("reason", "must be a string")),
            },
            other => errors.push(FieldError::new(other, "is not a known field")),
        }
    }
    match &filter {
        None => errors.push(FieldError::new("filter", "is required")),
        Some(f) => {
            if let Err(problems) = hold_filter(f) {
                errors.extend(problems);
            }
        }
    }
    if errors.is_empty() {
        Ok((filter.unwrap_or_default(), reason))
    } else {
        Err(errors)
    }
}

/// A hold's filter as the store matches it.
fn hold_filter(value: &Value) -> Result<sealtrail_store::EventFilter, Vec<FieldError>> {
    let Value::Object(map) = value else {
        return Err(vec![FieldError::new("filter", "must be a JSON object")]);
    };
    let mut errors: Vec<FieldError> = map
        .keys()
        .filter(|k| matches!(k.as_str(), "order" | "limit" | "cursor" | "tenant"))
        .map(|k| FieldError::new(format!("filter.{k}"), "is not a filter"))
        .collect();
    match crate::params::parse_search_body(value.clone()) {
        Ok(params) if errors.is_empty() => return Ok(params.filter),
        Ok(_) => {}
        Err(problems) => errors.extend(problems.into_iter().map(|e| FieldError {
            field: format!("filter.{}", e.field),
            message: e.message,
        })),
    }
    Err(errors)
}

/// A hold's name: 1–128 letters, digits, `.`, `_` or `-`.
fn hold_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_parameter(
            "name",
            "must be 1 to 128 letters, digits, '.', '_' or '-'",
        ))
    }
}

/// The tenant named by a path, for a credential with `scope`: 400 for a malformed name, 403
/// for another tenant's key or a missing scope.
fn admin_tenant(principal: &Principal, tenant: &str, scope: Scope) -> Result<Tenant, ApiError> {
    principal.require(scope)?;
    crate::catalog::path_tenant(principal, tenant)
}

/// The rules stored for a tenant (none: keep everything forever).
pub async fn stored_rules(store: &dyn Store, tenant: &Tenant) -> Result<RetentionBody, ApiError> {
    Ok(match store.setting(tenant, RETENTION).await? {
        Some(s) => serde_json::from_value(s.value).unwrap_or_default(),
        None => RetentionBody::default(),
    })
}

/// The holds stored for a tenant, by name.
async fn stored_holds(
    store: &dyn Store,
    tenant: &Tenant,
) -> Result<BTreeMap<String, HoldBody>, ApiError> {
    Ok(match store.setting(tenant, HOLDS).await? {
        Some(s) => serde_json::from_value(s.value).unwrap_or_default(),
        None => BTreeMap::new(),
    })
}

/// Serialises changes to each tenant's holds and runs of its retention within this process.
#[derive(Default)]
pub struct Locks {
    tenants: Mutex<HashMap<Tenant, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    fn of(&self, tenant: &Tenant) -> Arc<tokio::sync::Mutex<()>> {
        self.tenants
            .lock()
            .expect("the lifecycle lock is never poisoned")
            .entry(tenant.clone())
            .or_default()
            .clone()
    }
}

/// A tenant's retention rules (none: every event is kept forever).
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/retention",
    tag = "lifecycle",
    params(("tenant" = String, Path, description = "The tenant")),
    responses((status = 200, description = "The rules", body = RetentionBody)),
    security(("bearer" = []))
)]
pub async fn get_retention(
    State(state): State<AppState>,
    principal: Principal,
    uri: axum::extract::OriginalUri,
    UrlPath(tenant): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RetentionBody>, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = admin_tenant(&principal, &tenant, Scope::Read)?;
    let rules = stored_rules(state.store.as_ref(), &tenant).await?;
    state
        .audit_cross_tenant_read(&principal, &tenant, &uri)
        .await?;
    Ok(Json(rules))
}

/// Set a tenant's retention rules (replacing the earlier ones). Recorded as
/// `audit.retention_changed`.
#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant}/retention",
    tag = "lifecycle",
    params(("tenant" = String, Path, description = "The tenant")),
    request_body(content = RetentionBody, content_type = "application/json"),
    responses((status = 200, description = "The rules as stored", body = RetentionBody)),
    security(("bearer" = []))
)]
pub async fn put_retention(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(tenant): UrlPath<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RetentionBody>, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = admin_tenant(&principal, &tenant, Scope::Admin)?;
    let value = crate::json_body(&headers, &body)?;
    let rules = parse_retention(value).map_err(ApiError::Invalid)?;
    let stored = serde_json::to_value(&rules).expect("rules serialise");
    state
        .store
        .put_setting(&tenant, RETENTION, Some(stored.clone()))
        .await?;
    state
        .audit_self(
            &tenant,
            "audit.retention_changed",
            Category::Update,
            &principal,
            None,
            stored,
        )
        .await?;
    Ok(Json(rules))
}

/// A tenant's legal holds.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/legal-holds",
    tag = "lifecycle",
    params(("tenant" = String, Path, description = "The tenant")),
    responses((status = 200, description = "The holds, by name", body = HoldList)),
    security(("bearer" = []))
)]
pub async fn list_holds(
    State(state): State<AppState>,
    principal: Principal,
    uri: axum::extract::OriginalUri,
    UrlPath(tenant): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HoldList>, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = admin_tenant(&principal, &tenant, Scope::Read)?;
    let holds = stored_holds(state.store.as_ref(), &tenant).await?;
    state
        .audit_cross_tenant_read(&principal, &tenant, &uri)
        .await?;
    Ok(Json(HoldList {
        items: holds.into_values().collect(),
    }))
}

/// One legal hold.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/legal-holds/{name}",
    tag = "lifecycle",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("name" = String, Path, description = "The hold's name"),
    ),
    responses(
        (status = 200, description = "The hold", body = HoldBody),
        (status = 404, description = "No hold of that name", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_hold(
    State(state): State<AppState>,
    principal: Principal,
    uri: axum::extract::OriginalUri,
    UrlPath((tenant, name)): UrlPath<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HoldBody>, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = admin_tenant(&principal, &tenant, Scope::Read)?;
    hold_name(&name)?;
    let hold = stored_holds(state.store.as_ref(), &tenant)
        .await?
        .remove(&name)
        .ok_or_else(|| ApiError::NotFound(format!("tenant {tenant} has no hold {name}")))?;
    state
        .audit_cross_tenant_read(&principal, &tenant, &uri)
        .await?;
    Ok(Json(hold))
}

/// Place (or replace) a legal hold: events matching its filter are kept whatever the retention
/// rules say, until it is removed. Recorded as `audit.legal_hold_placed`.
#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant}/legal-holds/{name}",
    tag = "lifecycle",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("name" = String, Path, description = "The hold's name: 1–128 letters, digits, '.', '_' or '-'"),
    ),
    request_body(content = Object, content_type = "application/json", description = "`filter` (any filter of `POST /audit-logs/search`, without paging) and an optional `reason`"),
    responses((status = 200, description = "The hold as stored", body = HoldBody)),
    security(("bearer" = []))
)]
pub async fn put_hold(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath((tenant, name)): UrlPath<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<HoldBody>, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = admin_tenant(&principal, &tenant, Scope::Admin)?;
    hold_name(&name)?;
    let value = crate::json_body(&headers, &body)?;
    let (filter, reason) = parse_hold(value).map_err(ApiError::Invalid)?;
    let lock = state.lifecycle.of(&tenant);
    let _held = lock.lock().await;
    let mut holds = stored_holds(state.store.as_ref(), &tenant).await?;
    if !holds.contains_key(&name) && holds.len() >= MAX_HOLDS {
        return Err(ApiError::invalid(
            "name",
            format!("a tenant has at most {MAX_HOLDS} holds"),
        ));
    }
    let hold = HoldBody {
        name: name.clone(),
        filter,
        reason,
        placed_at: Timestamp::now(),
        placed_by: principal.actor().id,
    };
    holds.insert(name.clone(), hold.clone());
    state
        .store
        .put_setting(
            &tenant,
            HOLDS,
            Some(serde_json::to_value(&holds).expect("holds serialise")),
        )
        .await?;
    state
        .audit_self(
            &tenant,
            "audit.legal_hold_placed",
            Category::Create,
            &principal,
            None,
            json!({"name": name, "filter": hold.filter, "reason": hold.reason}),
        )
        .await?;
    Ok(Json(hold))
}

/// Remove a legal hold: the events it kept are subject to the rules again. Recorded as
/// `audit.legal_hold_removed`.
#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}/legal-holds/{name}",
    tag = "lifecycle",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("name" = String, Path, description = "The hold's name"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No hold of that name", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_hold(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath((tenant, name)): UrlPath<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = admin_tenant(&principal, &tenant, Scope::Admin)?;
    hold_name(&name)?;
    let lock = state.lifecycle.of(&tenant);
    let _held = lock.lock().await;
    let mut holds = stored_holds(state.store.as_ref(), &tenant).await?;
    let Some(hold) = holds.remove(&name) else {
        return Err(ApiError::NotFound(format!(
            "tenant {tenant} has no hold {name}"
        )));
    };
    let value = (!holds.is_empty()).then(|| serde_json::to_value(&holds).expect("holds serialise"));
    state.store.put_setting(&tenant, HOLDS, value).await?;
    state
        .audit_self(
            &tenant,
            "audit.legal_hold_removed",
            Category::Delete,
            &principal,
            None,
            json!({"name": name, "filter": hold.filter}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run a tenant's retention now: the expired events of its latest checkpoint that no legal
/// hold keeps are written to a verifiable archive, then removed, with an `audit.purged`
/// receipt. `{"dry_run": true}` only counts. Synchronous.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/retention/run",
    tag = "lifecycle",
    params(("tenant" = String, Path, description = "The tenant")),
    request_body(content = Object, content_type = "application/json", description = "`{\"dry_run\": true}` to only count; an empty body runs"),
    responses((status = 200, description = "What the run did", body = RunAnswer)),
    security(("bearer" = []))
)]
pub async fn run(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(tenant): UrlPath<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RunAnswer>, ApiError> {
    crate::params::no_parameters(raw.as_deref())?;
    let tenant = admin_tenant(&principal, &tenant, Scope::Admin)?;
    let dry_run = if body.is_empty() {
        false
    } else {
        match crate::json_body(&headers, &body)? {
            Value::Object(map) => {
                let mut dry = false;
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("dry_run", Value::Bool(b)) => dry = b,
                        ("dry_run", Value::Null) => {}
                        ("dry_run", _) => {
                            return Err(ApiError::invalid("dry_run", "must be true or false"));
                        }
                        (other, _) => return Err(ApiError::invalid(other, "is not a known field")),
                    }
                }
                dry
            }
            _ => return Err(ApiError::invalid("$", "must be a JSON object")),
        }
    };
    let (store, locks, archive_dir) = (
        state.store.clone(),
        state.lifecycle.clone(),
        state.archive_dir.clone(),
    );
    let actor = principal.actor();
    let answer = to_the_end(async move {
        run_tenant(
            store.as_ref(),
            &locks,
            &tenant,
            &archive_dir,
            dry_run,
            actor,
            "api",
        )
        .await
    })
    .await?;
    Ok(Json(answer))
}

/// Runs a lifecycle change on a task of its own and waits for it: a client that goes away
/// (which drops its handler's future) does not cut the change short between the log's part
/// and the derived data's, or between an archive and the removal it was written for.
async fn to_the_end<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the change stopped: {e}")))?
}

/// The answer of an anonymisation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnonymizeAnswer {
    /// Events whose personal data of the subject was erased (0 when nothing was left).
    pub events_updated: u64,
}

/// Erase a person's personal data across the tenant: every event where `actor_id` is the actor,
/// or the target when the target is a person (type `user`), gets a stable pseudonym (`anon_`
/// and 16 hex digits) for the id and loses the person's name, e-mail, ip, user agent and
/// change values (served as `[REDACTED]`); filters, search and statistics are derived again
/// without them. Every hash, chain link, checkpoint and proof stays valid. Recorded as
/// `audit.anonymized` (with the pseudonym, never the id). Calling it again answers 0. An admin
/// key bound to all tenants names the tenant with `tenant` (query or body). Synchronous.
#[utoipa::path(
    post,
    path = "/api/v1/subjects/{actor_id}/anonymize",
    tag = "lifecycle",
    params(
        ("actor_id" = String, Path, description = "The person's id, as events give it in `actor.id` (or `target.id`)"),
        ("tenant" = Option<String>, Query, description = "The tenant (with a key bound to all tenants)"),
    ),
    request_body(content = Object, content_type = "application/json", description = "Optional: `{\"tenant\": \"...\"}`"),
    responses((status = 200, description = "How many events were rewritten", body = AnonymizeAnswer)),
    security(("bearer" = []))
)]
pub async fn anonymize(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(actor_id): UrlPath<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AnonymizeAnswer>, ApiError> {
    principal.require(Scope::Admin)?;
    let mut query = crate::params::split_query(raw.as_deref());
    let mut problems: Vec<FieldError> = query
        .keys()
        .filter(|k| k.as_str() != "tenant")
        .map(|k| FieldError::new(k.as_str(), "is not a known parameter"))
        .collect();
    let from_query = match query.remove("tenant") {
        Some(mut values) if values.len() == 1 => values.pop(),
        Some(_) => {
            problems.push(FieldError::new("tenant", "may be given once"));
            None
        }
        None => None,
    };
    if !problems.is_empty() {
        return Err(ApiError::BadParameters(problems));
    }
    let from_body = if body.is_empty() {
        None
    } else {
        match crate::json_body(&headers, &body)? {
            Value::Object(map) => {
                let mut tenant = None;
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("tenant", Value::String(t)) => tenant = Some(t),
                        ("tenant", Value::Null) => {}
                        ("tenant", _) => {
                            return Err(ApiError::invalid("tenant", "must be a string"));
                        }
                        (other, _) => return Err(ApiError::invalid(other, "is not a known field")),
                    }
                }
                tenant
            }
            _ => return Err(ApiError::invalid("$", "must be a JSON object")),
        }
    };
    let tenant = match (from_query, from_body) {
        (Some(q), Some(b)) if q != b => {
            return Err(ApiError::invalid(
                "tenant",
                "differs from the tenant query parameter",
            ));
        }
        (Some(t), _) => principal.tenant(Some(&t), "tenant", false)?,
        (None, Some(t)) => principal.tenant(Some(&t), "tenant", true)?,
        (None, None) => principal.tenant(None, "tenant", false)?,
    };
    if actor_id.trim().is_empty()
        || actor_id.chars().count() > sealtrail_model::limits::MAX_ID_CHARS
    {
        return Err(ApiError::bad_parameter(
            "actor_id",
            format!(
                "must be an actor id: 1 to {} characters",
                sealtrail_model::limits::MAX_ID_CHARS
            ),
        ));
    }
    let (store, locks, actor) = (
        state.store.clone(),
        state.lifecycle.clone(),
        principal.actor(),
    );
    let answer = to_the_end(async move {
        anonymize_subject(store.as_ref(), &locks, &tenant, &actor_id, actor, "api").await
    })
    .await?;
    Ok(Json(answer))
}

/// Anonymises `subject` in `tenant` as `actor` ([`sealtrail_store::anonymize`]) and records the
/// act as `audit.anonymized` in the same transaction: how many events, the pseudonym, what
/// started it (`api`, `cli`). Waits for a retention run of the tenant under way in this process.
pub async fn anonymize_subject(
    store: &dyn Store,
    locks: &Locks,
    tenant: &Tenant,
    subject: &str,
    actor: Actor,
    trigger: &str,
) -> Result<AnonymizeAnswer, ApiError> {
    let lock = locks.of(tenant);
    let _running = lock.lock().await;
    let done = sealtrail_store::anonymize::anonymize(store, tenant, subject, |n, pseudonym| {
        Ok(crate::self_event(
            tenant,
            "audit.anonymized",
            Category::Update,
            actor.clone(),
            None,
            json!({"events_updated": n, "pseudonym": pseudonym, "trigger": trigger}),
        ))
    })
    .await?;
    Ok(AnonymizeAnswer {
        events_updated: done.events_updated,
    })
}

/// Runs a tenant's retention with its stored rules and holds, as `actor`, and records the run:
/// `audit.purged` (the receipt) when events were removed, else `audit.retention_checked`.
/// `trigger` says what started it (`api`, `schedule`, `cli`). For the HTTP run, the daily job
/// and `sealtrail retention run`.
pub async fn run_tenant(
    store: &dyn Store,
    locks: &Locks,
    tenant: &Tenant,
    archive_dir: &Path,
    dry_run: bool,
    actor: Actor,
    trigger: &str,
) -> Result<RunAnswer, ApiError> {
    let lock = locks.of(tenant);
    let Ok(_running) = lock.try_lock() else {
        return Err(ApiError::Unavailable(format!(
            "a retention run of tenant {tenant} is under way"
        )));
    };
    let rules = stored_rules(store, tenant).await?;
    let holds: Vec<Hold> = stored_holds(store, tenant)
        .await?
        .into_values()
        .map(|h| Hold {
            // Holds are checked when placed; one that no longer parses keeps everything.
            filter: hold_filter(&h.filter).unwrap_or_default(),
            name: h.name,
        })
        .collect();
    let policy = rules.policy();
    let now = Timestamp::now();
    let receipt = |o: &retention::Outcome| {
        let (from, to) = o.range.unwrap_or_default();
        let cp = o.checkpoint.as_ref();
        crate::self_event(
            tenant,
            sealtrail_store::verify::PURGED,
            Category::Delete,
            actor.clone(),
            None,
            json!({
                "from_seq": from,
                "to_seq": to,
                "count": o.purged,
                "held": o.held,
                "checkpoint": cp.map(|c| json!({
                    "size": c.size, "root_hash": c.root.to_hex(),
                    "issued_at": c.issued_at, "key_id": c.key_id,
                })),
                "archive": o.archive.as_ref().and_then(|(p, _)| p.file_name()).map(|n| n.to_string_lossy().into_owned()),
                "archive_sha256": o.archive.as_ref().map(|(_, d)| d.clone()),
                "rules": serde_json::to_value(&rules).unwrap_or_default(),
                "trigger": trigger,
            }),
        )
    };
    let outcome = retention::run(
        store,
        &retention::Run {
            tenant,
            policy: &policy,
            holds: &holds,
            now,
            archive_dir,
            dry_run,
        },
        &receipt,
    )
    .await
    .map_err(|e| match e {
        retention::RetentionError::Store(err) => ApiError::from(err),
        other => ApiError::Unavailable(other.to_string()),
    })?;
    let answer = RunAnswer {
        purged: outcome.purged,
        archive: outcome
            .archive
            .as_ref()
            .map(|(p, _)| p.display().to_string()),
        dry_run,
        held: outcome.held,
        from_seq: outcome.range.map(|r| r.0),
        to_seq: outcome.range.map(|r| r.1),
        checkpoint_size: outcome.checkpoint.as_ref().map(|c| c.size),
        receipt_id: outcome.receipt.as_ref().map(|a| a.id.to_string()),
    };
    if outcome.receipt.is_none() {
        let event = crate::self_event(
            tenant,
            "audit.retention_checked",
            Category::Delete,
            actor,
            None,
            json!({
                "dry_run": dry_run,
                "would_purge": if dry_run { outcome.purged } else { 0 },
                "held": outcome.held,
                "checkpoint_size": answer.checkpoint_size,
                "rules": serde_json::to_value(&rules).unwrap_or_default(),
                "trigger": trigger,
            }),
        );
        store.append(vec![event]).await?;
    }
    Ok(answer)
}

/// The actor of the daily job's runs.
pub fn schedule_actor() -> Actor {
    Actor {
        id: "retention".into(),
        actor_type: ActorType::System,
        name: Some("daily retention".into()),
        email: None,
    }
}

/// The daily job: every `every`, runs retention for each tenant that has rules, until `stop`.
pub async fn run_daily(
    store: Arc<dyn Store>,
    locks: Arc<Locks>,
    archive_dir: PathBuf,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let tenants = match store.tree_heads().await {
            Ok(heads) => heads.into_iter().map(|h| h.tenant).collect::<Vec<_>>(),
            Err(err) => {
                tracing::warn!(error = %err, "the retention job could not list tenants");
                continue;
            }
        };
        for tenant in tenants {
            if *stop.borrow() {
                return;
            }
            match store.setting(&tenant, RETENTION).await {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(tenant = %tenant, error = %err, "retention rules unreadable");
                    continue;
                }
            }
            match run_tenant(
                store.as_ref(),
                &locks,
                &tenant,
                &archive_dir,
                false,
                schedule_actor(),
                "schedule",
            )
            .await
            {
                Ok(a) => {
                    tracing::info!(tenant = %tenant, purged = a.purged, held = a.held, archive = ?a.archive, "retention ran")
                }
                Err(err) => tracing::warn!(tenant = %tenant, error = %err, "retention failed"),
            }
        }
    }
}

/// The problem answered for a store error; used by the CLI too.
pub fn describe(err: &ApiError) -> String {
    match err {
        ApiError::Invalid(errors) | ApiError::BadParameters(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_runs_to_its_end_when_its_caller_goes_away() {
        let (go, going) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel::<()>();
        let call = to_the_end(async move {
            let _ = going.await;
            let _ = finished.send(());
            Ok(())
        });
        // Polled once (the change starts), then dropped, as axum drops the handler of a
        // client that went away.
        let cut = tokio::time::timeout(Duration::ZERO, call).await;
        assert!(cut.is_err(), "the change was still under way");
        go.send(())
            .expect("the change is still there to be let go on");
        done.await.expect("the change ran to its end");
    }

    #[test]
    fn rules_name_every_problem() {
        let ok = parse_retention(json!({"default_days": 30.0, "rules": [
            {"action_prefix": "auth.", "days": 365}, {"action_prefix": "", "days": 1}]}))
        .expect("valid");
        assert_eq!(ok.default_days, Some(30));
        assert_eq!(ok.rules.len(), 2);
        assert_eq!(ok.policy().days_for("auth.login"), Some(365));
        let errors = parse_retention(json!({"default_days": 0, "rules": [
            {"action_prefix": "a.", "days": 1.5}, {"action_prefix": 7, "days": 40000},
            {"action_prefix": "b.", "days": 2, "x": 1}, {"days": 3}, 5,
            {"action_prefix": "b.", "days": 9}], "extra": true}))
        .expect_err("invalid");
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "default_days",
                "extra",
                "rules[0].days",
                "rules[1].action_prefix",
                "rules[1].days",
                "rules[2].x",
                "rules[3].action_prefix",
                "rules[4]",
                "rules[5].action_prefix",
            ]
        );
        assert!(parse_retention(json!([])).is_err());
        assert_eq!(
            parse_retention(json!({})).expect("empty"),
            RetentionBody::default()
        );
    }

    #[test]
    fn holds_take_list_filters_only() {
        let (filter, reason) = parse_hold(json!({"filter": {"actor_id": ["u1", "u2"],
            "from": "2026-01-01T00:00:00Z"}, "reason": "case 7"}))
        .expect("valid");
        assert_eq!(reason.as_deref(), Some("case 7"));
        assert!(hold_filter(&filter).is_ok());
        let errors = parse_hold(json!({"filter": {"limit": 5, "outcome": "meh", "nope": 1},
            "reason": 3, "x": 1}))
        .expect_err("invalid");
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "filter.limit",
                "filter.nope",
                "filter.outcome",
                "reason",
                "x"
            ]
        );
        assert!(parse_hold(json!({})).is_err());
        assert!(hold_name("case-42.v_1").is_ok());
        assert!(hold_name("").is_err() && hold_name("a/b").is_err());
    }
}
