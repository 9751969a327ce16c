//! Who may call what: every route of the served OpenAPI document, tried with every kind of
//! credential, each allowed or refused as the table below says. The routes come from the
//! document, so a route added without a line in the table fails this test; every answer's
//! status must also be one the document lists for its operation.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{ADMIN, TestApp, spawn_app_full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use sealtrail_server::jwt::{JwtSettings, JwtVerifier};
use serde_json::{Value, json};

const SECRET: &[u8] = b"the identity provider's secret for the access table test";

/// The kinds of credential a request can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cred {
    /// No `Authorization` header.
    Anonymous,
    /// A well-formed key the store does not know.
    Unknown,
    /// A revoked key of the tenant.
    Revoked,
    /// The tenant's ingest-only key.
    Ingest,
    /// The tenant's read key.
    Read,
    /// The tenant's admin key.
    Admin,
    /// An admin key of every tenant, naming the tenant.
    Root,
    /// Another tenant's read and ingest key, naming this tenant.
    Foreign,
    /// A JWT reader of the tenant.
    JwtReader,
    /// A JWT reader of every tenant (`audit:admin`), naming the tenant.
    JwtAdmin,
    /// A viewer token of the tenant, scoped to an actor.
    Viewer,
}

use Cred::*;

const ALL: [Cred; 11] = [
    Anonymous, Unknown, Revoked, Ingest, Read, Admin, Root, Foreign, JwtReader, JwtAdmin, Viewer,
];
const ANYONE: &[Cred] = &ALL;
const READERS: &[Cred] = &[Read, Admin, Root, JwtReader, JwtAdmin];
const VIEWERS: &[Cred] = &[Read, Admin, Root, JwtReader, JwtAdmin, Viewer];
const WRITERS: &[Cred] = &[Ingest, Admin, Root];
const ADMINS: &[Cred] = &[Admin, Root];
/// A read credential of any tenant, on a route no tenant's data is behind.
const ANY_READER: &[Cred] = &[Read, Admin, Root, Foreign, JwtReader, JwtAdmin];

/// Who is allowed on each operation of the document.
const TABLE: &[(&str, &str, &[Cred])] = &[
    ("POST", "/api/v1/events", WRITERS),
    ("GET", "/api/v1/audit-logs", VIEWERS),
    ("GET", "/api/v1/audit-logs/export", READERS),
    ("GET", "/api/v1/audit-logs/statistics", READERS),
    ("GET", "/api/v1/audit-logs/{id}", VIEWERS),
    ("GET", "/api/v1/audit-logs/entity/{type}/{id}", VIEWERS),
    ("GET", "/api/v1/audit-logs/user/{actor_id}", VIEWERS),
    ("POST", "/api/v1/audit-logs/search", VIEWERS),
    ("GET", "/api/v1/entities/{type}/{id}/history", VIEWERS),
    (
        "GET",
        "/api/v1/entities/{type}/{id}/history/{event_type}",
        VIEWERS,
    ),
    ("GET", "/api/v1/keys", ADMINS),
    ("POST", "/api/v1/keys", ADMINS),
    ("DELETE", "/api/v1/keys/{id}", ADMINS),
    ("POST", "/api/v1/viewer-tokens", READERS),
    ("GET", "/api/v1/tenants/{tenant}/catalog", READERS),
    ("PUT", "/api/v1/tenants/{tenant}/catalog", ADMINS),
    ("DELETE", "/api/v1/tenants/{tenant}/catalog", ADMINS),
    ("GET", "/api/v1/tenants/{tenant}/retention", READERS),
    ("PUT", "/api/v1/tenants/{tenant}/retention", ADMINS),
    ("POST", "/api/v1/tenants/{tenant}/retention/run", ADMINS),
    ("POST", "/api/v1/subjects/{actor_id}/anonymize", ADMINS),
    ("GET", "/api/v1/tenants/{tenant}/legal-holds", READERS),
    (
        "GET",
        "/api/v1/tenants/{tenant}/legal-holds/{name}",
        READERS,
    ),
    ("PUT", "/api/v1/tenants/{tenant}/legal-holds/{name}", ADMINS),
    (
        "DELETE",
        "/api/v1/tenants/{tenant}/legal-holds/{name}",
        ADMINS,
    ),
    ("GET", "/api/v1/catalog/presets", ANY_READER),
    ("GET", "/api/v1/integrity/checkpoint", READERS),
    ("GET", "/api/v1/integrity/proof/{id}", READERS),
    ("GET", "/api/v1/integrity/consistency", READERS),
    ("GET", "/api/v1/integrity/public-keys", ANYONE),
    ("GET", "/healthz", ANYONE),
    ("GET", "/readyz", ANYONE),
    ("GET", "/metrics", ANYONE),
    ("GET", "/graphql", READERS),
    ("POST", "/graphql", READERS),
];

fn now() -> i64 {
    sealtrail_model::Timestamp::now().micros() / 1_000_000
}

fn jwt(tenant: &str, role: &str) -> String {
    let claims = json!({"sub": format!("jwt-{role}"), "exp": now() + 600, "tenant": tenant, "roles": [role]});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).expect("secret"),
    )
    .expect("sign")
}

/// The tokens of every kind, over a tenant `acme` holding a few events.
struct World {
    app: TestApp,
    tokens: Vec<(Cred, Option<String>)>,
    event_id: String,
}

async fn world() -> World {
    let app = spawn_app_full(
        |c| c,
        |mut state| {
            state.jwt = Arc::new(
                JwtVerifier::new(JwtSettings {
                    secret: Some(SECRET.to_vec()),
                    ..JwtSettings::default()
                })
                .expect("jwt settings"),
            );
            state
        },
    )
    .await;
    let ingest = app.key("acme", &["ingest"]).await;
    let read = app.key("acme", &["read"]).await;
    let admin = app.key("acme", &["admin"]).await;
    let foreign = app.key("globex", &["ingest", "read"]).await;
    let revoked = app.key("acme", &["read", "ingest", "admin"]).await;
    let keys = app.get("/api/v1/keys?tenant=acme", ADMIN).await;
    let revoked_id = keys.body["items"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["scopes"].as_array().is_some_and(|s| s.len() == 3))
        .expect("the key to revoke")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let a = app
        .raw(
            Method::DELETE,
            &format!("/api/v1/keys/{revoked_id}"),
            Some(ADMIN),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{:?}", a.body);
    let events = json!([
        {"action": "asset.update", "actor": {"id": "u1"}, "target": {"type": "asset", "id": "a1"}},
        {"action": "asset.update", "actor": {"id": "u2"}, "target": {"type": "asset", "id": "a1"}},
    ]);
    let a = app.ingest(&ingest, &events).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let event_id = a.body["events"][0]["id"].as_str().expect("id").to_owned();
    let size = a.body["events"][1]["seq"].as_u64().expect("seq");
    app.checkpoint_at(&read, size).await;
    let a = app
        .post(
            "/api/v1/viewer-tokens",
            &read,
            &json!({"scope": {"actor_id": "u1"}}),
        )
        .await;
    let viewer = a.body["token"].as_str().expect("viewer token").to_owned();
    let tokens = vec![
        (Anonymous, None),
        (Unknown, Some(sealtrail_server::auth::generate_token())),
        (Revoked, Some(revoked)),
        (Ingest, Some(ingest)),
        (Read, Some(read)),
        (Admin, Some(admin)),
        (Root, Some(ADMIN.to_owned())),
        (Foreign, Some(foreign)),
        (JwtReader, Some(jwt("acme", "audit:read"))),
        (JwtAdmin, Some(jwt("*", "audit:admin"))),
        (Viewer, Some(viewer)),
    ];
    World {
        app,
        tokens,
        event_id,
    }
}

/// Whether a credential names the tenant it reaches for (it is bound to another, or to all).
fn names_tenant(cred: Cred) -> bool {
    matches!(cred, Root | Foreign | JwtAdmin)
}

/// A request for one operation as `cred` would send it: path parameters of tenant `acme`'s
/// data, the tenant named when `cred` must, a valid body.
fn request(
    w: &World,
    cred: Cred,
    method: &str,
    template: &str,
    operation: &Value,
) -> (Method, String, Option<Value>) {
    let takes_tenant = operation["parameters"].as_array().is_some_and(|ps| {
        ps.iter()
            .any(|p| p["name"] == "tenant" && p["in"] == "query")
    });
    let id = if template.contains("{type}") {
        "a1"
    } else if template.starts_with("/api/v1/keys/") {
        "no-such-key"
    } else {
        &w.event_id
    };
    let path = template
        .replace("{tenant}", "acme")
        .replace("{type}", "asset")
        .replace("{id}", id)
        .replace("{actor_id}", "u1")
        .replace("{event_type}", "asset.update")
        .replace("{name}", "case-1");
    let tenant = names_tenant(cred).then_some("acme");
    let gql = match tenant {
        Some(t) => format!("{{ auditLogs(limit: 1, tenant: \"{t}\") {{ items {{ id }} }} }}"),
        None => "{ auditLogs(limit: 1) { items { id } } }".to_owned(),
    };
    let mut body = match (method, path.as_str()) {
        ("POST", "/api/v1/events") => Some(json!({"action": "a.b", "actor": {"id": "u1"}})),
        ("POST", "/api/v1/audit-logs/search") => Some(json!({})),
        ("POST", "/api/v1/keys") => {
            Some(json!({"name": "k", "scopes": ["read"], "tenant": "acme"}))
        }
        ("POST", "/api/v1/viewer-tokens") => Some(json!({"scope": {"actor_id": "u1"}})),
        ("PUT", "/api/v1/tenants/acme/catalog") => Some(json!({"actions": ["a.b"]})),
        ("PUT", "/api/v1/tenants/acme/retention") => Some(json!({"default_days": 3650})),
        ("POST", "/api/v1/tenants/acme/retention/run") => Some(json!({"dry_run": true})),
        ("POST", "/api/v1/subjects/u1/anonymize") => Some(json!({})),
        ("PUT", "/api/v1/tenants/acme/legal-holds/case-1") => {
            Some(json!({"filter": {"actor_id": "u1"}}))
        }
        ("POST", "/graphql") => Some(json!({"query": gql})),
        _ => None,
    };
    let mut query: Vec<String> = Vec::new();
    if path == "/api/v1/integrity/consistency" {
        query.extend(["from=1".to_owned(), "to=2".to_owned()]);
    }
    if method == "GET" && path == "/graphql" {
        let text: String = form_urlencoded::byte_serialize(gql.as_bytes()).collect();
        query.push(format!("query={text}"));
    }
    if let Some(t) = tenant {
        let in_body = body.as_mut().and_then(Value::as_object_mut).filter(|_| {
            matches!(
                path.as_str(),
                "/api/v1/audit-logs/search" | "/api/v1/viewer-tokens"
            )
        });
        match in_body {
            Some(o) => {
                o.insert("tenant".into(), json!(t));
            }
            None if takes_tenant => {
                query.push(format!("tenant={t}"));
            }
            None => {}
        }
    }
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let url = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    (method, url, body)
}

/// The status an answer means: GraphQL answers 200 with the REST status in its error.
fn effective_status(status: StatusCode, body: &Value) -> u16 {
    body["errors"][0]["extensions"]["status"]
        .as_u64()
        .map_or(status.as_u16(), |s| s as u16)
}

#[tokio::test]
async fn every_route_of_the_document_allows_and_refuses_each_credential_as_the_table_says() {
    let w = world().await;
    let doc = w.app.get("/api/v1/openapi.json", ADMIN).await.body;
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let table: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        operations.difference(&table).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes of the document missing from the access table"
    );
    assert_eq!(
        table.difference(&operations).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "access table lines for routes the document does not have"
    );

    let mut wrong = Vec::new();
    for (method, template, allowed) in TABLE {
        let operation = &doc["paths"][*template][method.to_lowercase()];
        let documented: BTreeSet<u16> = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .map(|k| k.parse().expect("a status"))
            .collect();
        for (cred, token) in &w.tokens {
            let (m, url, body) = request(&w, *cred, method, template, operation);
            let a = w
                .app
                .raw(
                    m,
                    &url,
                    token.as_deref(),
                    body.as_ref().map(|_| "application/json"),
                    body.map(|b| b.to_string().into_bytes()),
                )
                .await;
            let status = effective_status(a.status, &a.body);
            let want_allowed = allowed.contains(cred);
            let ok = if want_allowed {
                status < 400 || status == 404
            } else if matches!(cred, Anonymous | Unknown | Revoked) {
                status == 401
            } else {
                status == 403
            };
            if !ok {
                wrong.push(format!(
                    "{method} {url} as {cred:?}: {status} (expected {}) {}",
                    if want_allowed { "allowed" } else { "refused" },
                    a.body
                ));
            }
            if !documented.contains(&a.status.as_u16()) {
                wrong.push(format!(
                    "{method} {url} as {cred:?}: {} is not documented ({documented:?})",
                    a.status
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
