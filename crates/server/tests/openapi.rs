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

/// What schemathesis found (`.ci/schemathesis`), pinned: every request the document allows is
/// accepted, and what it refuses is refused with the parameter or field named.
#[tokio::test]
async fn requests_the_document_allows_are_accepted_and_others_are_named() {
    let app = spawn_app().await;
    let key = app.key("acme", &["ingest", "read", "admin"]).await;
    // Integers written as 110.0 are integers to JSON Schema.
    let a = app
        .ingest(
            &key,
            &serde_json::json!([
                {"action": "a.b", "actor": {"id": "u"}, "context": {"status_code": 200.0}},
                {"action": "a.c", "actor": {"id": "u"}},
            ]),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = app
        .post(
            "/api/v1/audit-logs/search",
            &key,
            &serde_json::json!({"limit": 2.0, "cursor": null, "actor_id": "u"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = app
        .post(
            "/api/v1/viewer-tokens",
            &key,
            &serde_json::json!({"scope": {"actor_id": "u"}, "ttl_seconds": 110.0}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    // Cursors have the documented plain shape, and every text of it is a cursor.
    let a = app.get("/api/v1/audit-logs?limit=1", &key).await;
    let cursor = a.body["next_cursor"].as_str().expect("a next page");
    assert!(cursor.starts_with("s1."), "{cursor}");
    let a = app
        .get("/api/v1/audit-logs?cursor=s1.9999999999999999999", &key)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = app
        .get("/api/v1/entities/x/y/history?cursor=t1.-5.0", &key)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    // Routes that take no query parameter refuse one, by name.
    for (method, path) in [
        (Method::POST, "/api/v1/keys?x=1"),
        (Method::POST, "/api/v1/viewer-tokens?x=1"),
        (Method::POST, "/api/v1/audit-logs/search?x=1"),
        (Method::POST, "/api/v1/events?x=1"),
        (Method::POST, "/graphql?x=1"),
        (Method::DELETE, "/api/v1/keys/k?x=1"),
        (Method::GET, "/api/v1/integrity/public-keys?x=1"),
    ] {
        let a = app
            .raw(
                method.clone(),
                path,
                Some(&key),
                Some("application/json"),
                Some(b"{}".to_vec()),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {:?}",
            a.body
        );
        assert_eq!(a.fields(), ["x"], "{method} {path}");
    }
    // A GraphQL body without a query is not a GraphQL request.
    let a = app
        .post("/graphql", &key, &serde_json::json!({"operationName": ""}))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.fields(), ["query"]);
    // An empty `variables` on GET is none.
    let a = app
        .get(
            "/graphql?query=%7BauditLogs%7Bitems%7Bid%7D%7D%7D&variables=",
            &key,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert!(a.body["errors"].is_null(), "{:?}", a.body);
}

/// The web UI: a page, its script and style, all served by the binary, nothing from elsewhere,
/// under a policy that allows no inline or foreign code. (Its behaviour is tested in a real
/// browser: `crates/server/ui/tests`.)
#[tokio::test]
async fn the_web_ui_is_served_whole_by_the_binary() {
    let app = spawn_app().await;
    let page = app.raw(Method::GET, "/", None, None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let content_type = page.headers["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let policy = page.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert_eq!(policy, sealtrail_server::ui::UI_POLICY);
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"));
    let html = page.body.as_str().expect("html text");
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/verify.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        assert!(html.contains(path), "the page loads {path}");
        let asset = app.raw(Method::GET, path, None, None, None).await;
        assert_eq!(asset.status, StatusCode::OK, "{path}");
        let served = asset.headers["content-type"].to_str().expect("ascii");
        assert!(served.starts_with(kind), "{path}: {served}");
        let text = asset.body.as_str().expect("text");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} fetches nothing from elsewhere"
        );
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script>"), "no inline script");
    // The embeddable viewer: framed by no one unless origins are configured (tested with
    // them in the browser test).
    let viewer = app.raw(Method::GET, "/viewer", None, None, None).await;
    assert_eq!(viewer.status, StatusCode::OK);
    let policy = viewer.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(policy.ends_with("frame-ancestors 'none'"), "{policy}");
    assert!(viewer.headers.get("x-frame-options").is_none());
    let script = app
        .raw(Method::GET, "/ui/viewer.js", None, None, None)
        .await;
    assert_eq!(script.status, StatusCode::OK);
    // The API reference keeps refusing every frame.
    let docs = app.raw(Method::GET, "/docs", None, None, None).await;
    assert_eq!(docs.headers["x-frame-options"], "DENY");
}
