//! Viewer tokens (SPEC §10): minted by a read credential, scoped to an organization, an actor
//! or a target, read only their scope on the read endpoints they serve, refused everywhere
//! else, every read recorded as `audit.viewed`; and the per-tenant CORS origins that let a
//! host app's page use them.

mod common;

use std::sync::{Arc, Mutex};

use common::{ADMIN, TestApp, spawn_app, spawn_app_full};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Events of tenant `acme` across actors, organizations, targets and related links.
fn events() -> Value {
    let e = |action: &str, actor: &str, org: &str, target: (&str, &str), related: Value| {
        json!({
            "action": action,
            "actor": {"id": actor},
            "organization": {"id": org},
            "target": {"type": target.0, "id": target.1},
            "related": related,
        })
    };
    json!([
        e("asset.create", "u1", "o1", ("asset", "a1"), json!([])),
        e("asset.update", "u2", "o1", ("asset", "a1"), json!([])),
        e("asset.update", "u1", "o2", ("asset", "a2"), json!([])),
        e(
            "loan.create",
            "u3",
            "o2",
            ("loan", "l1"),
            json!([{"type": "asset", "id": "a1"}])
        ),
        e("user.login", "u2", "o2", ("session", "s1"), json!([])),
        e("asset.delete", "u1", "o1", ("asset", "a2"), json!([])),
    ])
}

async fn seeded(app: &TestApp) -> (String, Vec<Value>) {
    let writer = app.key("acme", &["ingest", "read"]).await;
    let a = app.ingest(&writer, &events()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let all = app.all_events(&writer).await;
    assert_eq!(all.len(), 6);
    (writer, all)
}

async fn mint(app: &TestApp, token: &str, body: Value) -> String {
    let a = app.post("/api/v1/viewer-tokens", token, &body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.body["scope"], body["scope"]);
    a.body["token"].as_str().expect("token").to_owned()
}

fn ids(items: &Value) -> Vec<String> {
    items["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The ids of `all`, newest first, that `keep` takes.
fn expected(all: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<String> {
    all.iter()
        .rev()
        .filter(|e| keep(e))
        .map(|e| e["id"].as_str().expect("present").to_owned())
        .collect()
}

#[tokio::test]
async fn a_viewer_token_reads_only_its_scope_on_every_read_it_serves() {
    let app = spawn_app().await;
    let (writer, all) = seeded(&app).await;
    let actor = mint(
        &app,
        &writer,
        json!({"scope": {"actor_id": "u1"}, "viewer_id": "end-user-7"}),
    )
    .await;
    let org = mint(&app, &writer, json!({"scope": {"organization_id": "o2"}})).await;
    let target = mint(
        &app,
        &writer,
        json!({"scope": {"target": {"type": "asset", "id": "a1"}}, "ttl_seconds": 60}),
    )
    .await;

    // Lists: exactly the scope's events, in list order.
    let u1 = expected(&all, |e| e["actor"]["id"] == "u1");
    assert_eq!(ids(&app.get("/api/v1/audit-logs", &actor).await.body), u1);
    let o2 = expected(&all, |e| e["organization"]["id"] == "o2");
    assert_eq!(ids(&app.get("/api/v1/audit-logs", &org).await.body), o2);
    let a1 = expected(&all, |e| e["target"]["id"] == "a1");
    assert_eq!(ids(&app.get("/api/v1/audit-logs", &target).await.body), a1);

    // A filter inside the scope narrows it; one outside it finds nothing.
    let a = app
        .get("/api/v1/audit-logs?action=asset.update", &actor)
        .await;
    assert_eq!(
        ids(&a.body),
        expected(&all, |e| e["actor"]["id"] == "u1"
            && e["action"] == "asset.update")
    );
    for path in [
        "/api/v1/audit-logs?actor_id=u2",
        "/api/v1/audit-logs/user/u2",
        "/api/v1/audit-logs/entity/asset/a2",
    ] {
        let answer = if path.contains("entity") {
            app.get(path, &target).await
        } else {
            app.get(path, &actor).await
        };
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(ids(&answer.body).is_empty(), "{path}: {:?}", answer.body);
    }
    let a = app
        .get("/api/v1/audit-logs?actor_id=u1&actor_id=u2", &actor)
        .await;
    assert_eq!(ids(&a.body), u1);
    let a = app.get("/api/v1/audit-logs/user/u1", &actor).await;
    assert_eq!(ids(&a.body), u1);
    let a = app.get("/api/v1/audit-logs/entity/asset/a2", &org).await;
    assert_eq!(
        ids(&a.body),
        expected(&all, |e| e["organization"]["id"] == "o2"
            && e["target"]["id"] == "a2")
    );
    let a = app
        .post(
            "/api/v1/audit-logs/search",
            &org,
            &json!({"action": ["asset.update", "user.login"]}),
        )
        .await;
    assert_eq!(
        ids(&a.body),
        expected(&all, |e| e["organization"]["id"] == "o2"
            && (e["action"] == "asset.update" || e["action"] == "user.login"))
    );

    // The target's timeline takes the events naming it in `related`; another entity's timeline
    // shows only what lies in the scope.
    let a = app.get("/api/v1/entities/asset/a1/history", &target).await;
    assert_eq!(a.status, StatusCode::OK);
    let mut timeline = expected(&all, |e| {
        e["target"]["id"] == "a1" || e["related"][0]["id"] == "a1"
    });
    timeline.reverse();
    assert_eq!(ids(&a.body), timeline);
    let a = app.get("/api/v1/entities/asset/a2/history", &actor).await;
    let mut u1_a2 = expected(&all, |e| {
        e["actor"]["id"] == "u1" && e["target"]["id"] == "a2"
    });
    u1_a2.reverse();
    assert_eq!(ids(&a.body), u1_a2);
    let a = app
        .get("/api/v1/entities/asset/a1/history/asset.update", &actor)
        .await;
    assert!(ids(&a.body).is_empty(), "u2 updated a1: {:?}", a.body);

    // By id: in the scope, the event; outside it, 404 as if it were not there.
    for e in &all {
        let path = format!("/api/v1/audit-logs/{}", e["id"].as_str().expect("present"));
        let a = app.get(&path, &target).await;
        let in_scope = e["target"]["id"] == "a1" || e["related"][0]["id"] == "a1";
        let want = if in_scope {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(a.status, want, "{path}: {:?}", a.body);
        if in_scope {
            assert_eq!(&a.body, e);
        } else {
            assert!(a.is_problem());
        }
    }
}

#[tokio::test]
async fn a_viewer_token_is_refused_on_every_other_route() {
    let app = spawn_app().await;
    let (writer, all) = seeded(&app).await;
    let viewer = mint(&app, &writer, json!({"scope": {"actor_id": "u1"}})).await;
    let id = all[0]["id"].as_str().expect("present");
    let gets = [
        "/api/v1/audit-logs/statistics".to_owned(),
        "/api/v1/audit-logs/export?format=csv".to_owned(),
        "/api/v1/keys".to_owned(),
        "/api/v1/integrity/checkpoint".to_owned(),
        format!("/api/v1/integrity/proof/{id}"),
        "/api/v1/integrity/consistency?from=1&to=2".to_owned(),
        "/graphql?query=%7BauditLogs%7Bitems%7Bid%7D%7D%7D".to_owned(),
    ];
    for path in &gets {
        let a = app.get(path, &viewer).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {:?}", a.body);
        assert!(a.is_problem(), "{path}");
    }
    let posts = [
        ("/api/v1/events", json!(common::event("x.y", "u1"))),
        (
            "/api/v1/viewer-tokens",
            json!({"scope": {"actor_id": "u1"}}),
        ),
        ("/api/v1/keys", json!({"name": "k", "scopes": ["read"]})),
        (
            "/graphql",
            json!({"query": "{ auditLogs { items { id } } }"}),
        ),
    ];
    for (path, body) in &posts {
        let a = app.post(path, &viewer, body).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {:?}", a.body);
    }
    let a = app
        .raw(
            Method::DELETE,
            "/api/v1/keys/whatever",
            Some(&viewer),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Nothing was written by any of it.
    assert_eq!(app.all_events(&writer).await.len(), all.len());
}

#[tokio::test]
async fn each_view_is_recorded_with_its_viewer_token_and_scope() {
    let app = spawn_app().await;
    let (writer, all) = seeded(&app).await;
    let named = mint(
        &app,
        &writer,
        json!({"scope": {"organization_id": "o1"}, "viewer_id": "end-user-7"}),
    )
    .await;
    let unnamed = app
        .post(
            "/api/v1/viewer-tokens",
            &writer,
            &json!({"scope": {"target": {"type": "asset", "id": "a1"}}}),
        )
        .await;
    let unnamed_id = unnamed.body["token_id"]
        .as_str()
        .expect("present")
        .to_owned();
    let unnamed = unnamed.body["token"].as_str().expect("present").to_owned();
    assert_eq!(
        app.get("/api/v1/audit-logs?limit=2", &named).await.status,
        StatusCode::OK
    );
    let path = format!(
        "/api/v1/audit-logs/{}",
        all[0]["id"].as_str().expect("present")
    );
    assert_eq!(app.get(&path, &named).await.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/entities/asset/a1/history", &unnamed)
            .await
            .status,
        StatusCode::OK
    );
    // Refused reads are not views.
    let _ = app.get("/api/v1/audit-logs/statistics", &named).await;

    let viewed: Vec<Value> = app
        .all_events(&writer)
        .await
        .into_iter()
        .filter(|e| e["action"] == "audit.viewed")
        .collect();
    assert_eq!(viewed.len(), 3, "{viewed:#?}");
    assert_eq!(viewed[0]["actor"]["id"], "end-user-7");
    assert_eq!(viewed[0]["actor"]["type"], "user");
    assert_eq!(viewed[0]["category"], "read");
    assert_eq!(
        viewed[0]["metadata"]["scope"],
        json!({"organization_id": "o1"})
    );
    assert_eq!(viewed[0]["metadata"]["path"], "/api/v1/audit-logs");
    assert_eq!(viewed[0]["metadata"]["query"], "limit=2");
    assert_eq!(viewed[1]["metadata"]["path"], path);
    assert_eq!(
        viewed[2]["actor"]["id"],
        format!("viewer-token:{unnamed_id}")
    );
    assert_eq!(viewed[2]["actor"]["type"], "service");
    assert_eq!(viewed[2]["metadata"]["token_id"], unnamed_id);
    assert_eq!(
        viewed[2]["metadata"]["scope"],
        json!({"target": {"type": "asset", "id": "a1"}})
    );
}

#[tokio::test]
async fn minting_checks_its_body_the_credential_and_the_tenant() {
    let app = spawn_app().await;
    let (writer, _) = seeded(&app).await;
    let ingest_only = app.key("acme", &["ingest"]).await;
    let cases: &[(Value, &[&str])] = &[
        (json!({}), &["scope"]),
        (json!({"scope": "u1"}), &["scope"]),
        (
            json!({"scope": {"actor_id": "u1", "organization_id": "o"}}),
            &["scope"],
        ),
        (json!({"scope": {"role": "x"}}), &["scope.role"]),
        (json!({"scope": {"actor_id": ""}}), &["scope.actor_id"]),
        (
            json!({"scope": {"target": {"type": "asset"}}}),
            &["scope.target.id"],
        ),
        (
            json!({"scope": {"target": {"type": "asset", "id": "a", "x": 1}}}),
            &["scope.target.x"],
        ),
        (
            json!({"scope": {"actor_id": "u1"}, "ttl_seconds": 86401}),
            &["ttl_seconds"],
        ),
        (
            json!({"scope": {"actor_id": "u1"}, "ttl_seconds": -5}),
            &["ttl_seconds"],
        ),
        (
            json!({"scope": {"actor_id": "u1"}, "viewer_id": 7, "color": "red"}),
            &["viewer_id", "color"],
        ),
    ];
    for (body, fields) in cases {
        let a = app.post("/api/v1/viewer-tokens", &writer, body).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            a.body
        );
        assert_eq!(a.fields(), *fields, "{body}");
    }
    let body = json!({"scope": {"actor_id": "u1"}});
    let a = app.post("/api/v1/viewer-tokens", &ingest_only, &body).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app
        .post(
            "/api/v1/viewer-tokens",
            &writer,
            &json!({"scope": {"actor_id": "u1"}, "tenant": "globex"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // A key of every tenant names one.
    let a = app.post("/api/v1/viewer-tokens", ADMIN, &body).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.fields(), ["tenant"]);
    let a = app
        .post(
            "/api/v1/viewer-tokens",
            ADMIN,
            &json!({"scope": {"actor_id": "u1"}, "tenant": "globex", "ttl_seconds": 30}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["tenant"], "globex");
    let expires =
        sealtrail_model::Timestamp::parse_rfc3339(a.body["expires_at"].as_str().expect("present"))
            .expect("RFC 3339");
    let left = expires.micros() - sealtrail_model::Timestamp::now().micros();
    assert!((0..=30_000_000).contains(&left), "{left}");
    // A globex viewer sees none of acme's events.
    let globex = a.body["token"].as_str().expect("present");
    let a = app.get("/api/v1/audit-logs?tenant=acme", globex).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(ids(&app.get("/api/v1/audit-logs", globex).await.body).is_empty());
}

#[tokio::test]
async fn altered_expired_and_foreign_tokens_are_refused() {
    let keys: Arc<Mutex<Option<Arc<sealtrail_server::signing::KeyRing>>>> = Arc::default();
    let held = keys.clone();
    let app = spawn_app_full(
        |c| c,
        move |state| {
            *held.lock().expect("lock") = Some(state.keys.clone());
            state
        },
    )
    .await;
    let keys = keys.lock().expect("lock").clone().expect("the key ring");
    let (writer, _) = seeded(&app).await;
    let token = mint(&app, &writer, json!({"scope": {"actor_id": "u1"}})).await;
    assert_eq!(
        app.get("/api/v1/audit-logs", &token).await.status,
        StatusCode::OK
    );
    let mut grant = sealtrail_server::viewer::Grant {
        token_id: uuid::Uuid::now_v7(),
        tenant: "acme".into(),
        scope: sealtrail_server::viewer::ViewerScope::ActorId("u1".into()),
        viewer_id: None,
        minted_by: "test".into(),
        expires_at: sealtrail_model::Timestamp::now().micros() - 1,
        key_id: keys.active_id().to_owned(),
    };
    let expired = sealtrail_server::viewer::mint(&keys, &grant);
    let a = app.get("/api/v1/audit-logs", &expired).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.body["detail"]
            .as_str()
            .expect("present")
            .contains("expired")
    );
    grant.expires_at += 60_000_000;
    let foreign =
        sealtrail_server::viewer::mint(&sealtrail_server::signing::KeyRing::ephemeral(), &grant);
    assert_eq!(
        app.get("/api/v1/audit-logs", &foreign).await.status,
        StatusCode::UNAUTHORIZED
    );
    // One character of the signature or of the claims changed.
    for at in [5, token.len() - 3] {
        let mut bytes = token.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).expect("present");
        let a = app.get("/api/v1/audit-logs", &altered).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{altered}");
    }
}

#[tokio::test]
async fn a_tenants_origins_read_with_its_credentials_and_no_other_origin_does() {
    let rule = |text: &str| sealtrail_server::cors::parse_rule(text).expect("rule");
    let app = spawn_app_full(
        |c| c,
        move |mut state| {
            state.cors = Arc::new(sealtrail_server::cors::CorsSettings::new([
                rule("acme=https://host.example"),
                rule("globex=https://globex.example"),
            ]));
            state
        },
    )
    .await;
    let (writer, _) = seeded(&app).await;
    let viewer = mint(&app, &writer, json!({"scope": {"actor_id": "u1"}})).await;
    let send = |method: Method, origin: &str, token: Option<&str>| {
        let mut req = app
            .http
            .request(method.clone(), app.url("/api/v1/audit-logs"))
            .header("origin", origin);
        if method == Method::OPTIONS {
            req = req
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization");
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let allow = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("present").to_owned())
    };

    let pre = send(Method::OPTIONS, "https://host.example", None)
        .await
        .expect("present");
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    assert_eq!(allow(&pre).as_deref(), Some("https://host.example"));
    let headers = pre.headers()["access-control-allow-headers"]
        .to_str()
        .expect("present");
    assert!(headers.contains("authorization"), "{headers}");
    let pre = send(Method::OPTIONS, "https://evil.example", None)
        .await
        .expect("present");
    assert_eq!(pre.status(), StatusCode::FORBIDDEN);
    assert_eq!(allow(&pre), None);

    let ok = send(Method::GET, "https://host.example", Some(&viewer))
        .await
        .expect("present");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(allow(&ok).as_deref(), Some("https://host.example"));
    assert!(
        ok.headers()["access-control-expose-headers"]
            .to_str()
            .expect("present")
            .contains("x-request-id")
    );
    // globex's origin may not read acme's data, nor an unknown one; without Origin, no header.
    for origin in ["https://globex.example", "https://evil.example"] {
        let r = send(Method::GET, origin, Some(&viewer))
            .await
            .expect("present");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(allow(&r), None, "{origin}");
    }
    let plain = app.get("/api/v1/audit-logs", &viewer).await;
    assert!(plain.headers.get("access-control-allow-origin").is_none());
    // A key of every tenant is never given one.
    let r = send(Method::GET, "https://host.example", Some(ADMIN))
        .await
        .expect("present");
    assert_eq!(allow(&r), None);
}
