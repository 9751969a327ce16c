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
    assert_eq!(names("/api/v1/audit-logs").len(), 16);
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
    let html = r.text().await.expect("text");
    assert!(html.contains("/api/v1/audit-logs/search"));
    assert!(html.contains("id=\"schema-Event\""));
    for external in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(external), "/docs must not load {external}");
    }
}
