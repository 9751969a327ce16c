//! The OpenAPI document is generated from the code and pinned here; `/docs` renders it offline.

mod common;

use common::spawn_app;
use reqwest::{Method, StatusCode};

#[test]
fn openapi_document_is_pinned() {
    insta::assert_snapshot!("openapi", sealtrail_server::openapi::document());
}

#[tokio::test]
async fn the_served_document_is_openapi_3_1_and_lists_every_route() {
    let app = spawn_app().await;
    let a = app
        .raw(Method::GET, "/api/v1/openapi.json", None, None, None)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.1")
    );
    let paths = a.body["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/events",
        "/api/v1/audit-logs",
        "/api/v1/audit-logs/{id}",
        "/api/v1/audit-logs/entity/{type}/{id}",
        "/api/v1/audit-logs/user/{actor_id}",
        "/api/v1/audit-logs/search",
        "/api/v1/entities/{type}/{id}/history",
        "/api/v1/entities/{type}/{id}/history/{event_type}",
        "/api/v1/keys",
        "/api/v1/keys/{id}",
        "/api/v1/integrity/checkpoint",
        "/api/v1/integrity/proof/{id}",
        "/api/v1/integrity/consistency",
        "/api/v1/integrity/public-keys",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    // Each list documents exactly the filters it takes.
    let names = |path: &str| -> Vec<String> {
        paths[path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let entity = names("/api/v1/audit-logs/entity/{type}/{id}");
    assert!(
        entity.contains(&"actor_id".to_owned()) && !entity.contains(&"target_type".to_owned()),
        "{entity:?}"
    );
    let user = names("/api/v1/audit-logs/user/{actor_id}");
    assert!(user.contains(&"target_id".to_owned()), "{user:?}");
    assert_eq!(
        user.iter().filter(|n| *n == "actor_id").count(),
        1,
        "only the path's actor_id: {user:?}"
    );
    let list = names("/api/v1/audit-logs");
    assert_eq!(list.len(), 17, "{list:?}");
    for path in [
        "/api/v1/audit-logs",
        "/api/v1/audit-logs/export",
        "/api/v1/audit-logs/user/{actor_id}",
        "/api/v1/audit-logs/entity/{type}/{id}",
    ] {
        assert!(names(path).contains(&"q".to_owned()), "{path} takes q");
    }
}

#[tokio::test]
async fn docs_are_browsable_offline() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/docs")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
    let policy = header("content-security-policy").expect("a content security policy");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = r.text().await.expect("text");
    assert!(html.contains("/api/v1/audit-logs/search"));
    assert!(html.contains("id=\"schema-Event\""));
    for external in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(external), "/docs must not load {external}");
    }
}

#[tokio::test]
async fn json_answers_are_not_to_be_sniffed_and_carry_no_html_policy() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().get("content-security-policy").is_none());
    // Error answers too.
    let r = app
        .http
        .get(app.url("/no/such/route"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}
