//! End-to-end tests of the HTTP API: a real server on port 0 over a real SQLite file.

mod common;

use common::{ADMIN, TestApp, event, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One bad request: what is sent, and the status and field paths that must come back.
struct Bad {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    fields: Vec<&'static str>,
    admin: bool,
}

fn bad(name: &'static str, body: Value, status: u16, fields: &[&'static str]) -> Bad {
    Bad {
        name,
        content_type: Some("application/json"),
        body: body.to_string().into_bytes(),
        status,
        fields: fields.to_vec(),
        admin: false,
    }
}

fn bad_raw(
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    fields: &[&'static str],
) -> Bad {
    Bad {
        name,
        content_type,
        body,
        status,
        fields: fields.to_vec(),
        admin: false,
    }
}

fn with(key: &str, value: Value) -> Value {
    let mut e = event("user.login", "u1");
    e[key] = value;
    e
}

fn bad_inputs() -> Vec<Bad> {
    let ok = event("user.login", "u1");
    let mut deep = String::new();
    for _ in 0..10_000 {
        deep.push('[');
    }
    for _ in 0..10_000 {
        deep.push(']');
    }
    let mut meta65 = json!(1);
    for _ in 0..65 {
        meta65 = json!({"n": meta65});
    }
    let mut batch = vec![
        ok.clone(),
        ok.clone(),
        ok.clone(),
        with("context", json!({"ip": "999.1.1.1"})),
        ok.clone(),
    ];
    batch[1]["category"] = json!("update");
    let id = "0190a5d2-7a1e-7cc0-8d43-1c2b3a4d5e6f";
    let ndjson_bad_line = format!("{ok}\n{ok}\n{ok}\n{}\n", json!({"actor": {"id": "u"}}));
    let mut non_utf8 = br#"{"action":"user.login","actor":{"id":"u"},"metadata":{"k":""#.to_vec();
    non_utf8.extend_from_slice(&[0xff, 0xfe]);
    non_utf8.extend_from_slice(br#""}}"#);
    let mut too_big = Vec::with_capacity(17 * 1024 * 1024);
    too_big.extend_from_slice(br#"{"action":"a","actor":{"id":"u"},"metadata":{"k":""#);
    too_big.resize(17 * 1024 * 1024, b'x');
    too_big.extend_from_slice(br#""}}"#);
    let mut other_tenant = ok.clone();
    other_tenant["tenant"] = json!("someone-else");
    let mut bad_tenant = ok.clone();
    bad_tenant["tenant"] = json!("not a tenant");
    vec![
        bad_raw(
            "malformed json",
            Some("application/json"),
            br#"{"action":"#.to_vec(),
            400,
            &[],
        ),
        bad_raw(
            "trailing garbage",
            Some("application/json"),
            format!("{ok} x").into_bytes(),
            400,
            &[],
        ),
        bad_raw("empty body", Some("application/json"), Vec::new(), 400, &[]),
        bad_raw(
            "text/plain",
            Some("text/plain"),
            ok.to_string().into_bytes(),
            415,
            &[],
        ),
        bad_raw(
            "no content type",
            None,
            ok.to_string().into_bytes(),
            415,
            &[],
        ),
        bad_raw(
            "xml",
            Some("application/xml"),
            b"<event/>".to_vec(),
            415,
            &[],
        ),
        bad_raw("non-utf-8", Some("application/json"), non_utf8, 400, &[]),
        bad_raw(
            "10 000 deep",
            Some("application/json"),
            deep.into_bytes(),
            400,
            &[],
        ),
        bad("65 deep metadata", with("metadata", meta65), 400, &[]),
        bad_raw("over 16 MiB", Some("application/json"), too_big, 413, &[]),
        bad(
            "event over 64 KiB",
            with(
                "metadata",
                json!({"a": "x".repeat(30_000), "b": "y".repeat(30_000), "c": "z".repeat(10_000)}),
            ),
            422,
            &["$"],
        ),
        bad("null", json!(null), 422, &["$"]),
        bad("number", json!(42), 422, &["$"]),
        bad("string", json!("event"), 422, &["$"]),
        bad("empty batch", json!([]), 422, &["events"]),
        bad("no action", json!({"actor": {"id": "u"}}), 422, &["action"]),
        bad("no actor", json!({"action": "a"}), 422, &["actor"]),
        bad(
            "action with space",
            with("action", json!("user login")),
            422,
            &["action"],
        ),
        bad(
            "action too long",
            with("action", json!("a".repeat(129))),
            422,
            &["action"],
        ),
        bad(
            "action starts with digit",
            with("action", json!("1login")),
            422,
            &["action"],
        ),
        bad(
            "action not a string",
            with("action", json!(["a"])),
            422,
            &["action"],
        ),
        bad(
            "bad category",
            with("category", json!("destroy")),
            422,
            &["category"],
        ),
        bad(
            "bad outcome",
            with("outcome", json!("partial")),
            422,
            &["outcome"],
        ),
        bad(
            "error without failure",
            with("error", json!("boom")),
            422,
            &["error"],
        ),
        bad("id not a uuid", with("id", json!("abc")), 422, &["id"]),
        bad(
            "occurred_at not a time",
            with("occurred_at", json!("last tuesday")),
            422,
            &["occurred_at"],
        ),
        bad(
            "occurred_at far future",
            with("occurred_at", json!("2999-01-01T00:00:00Z")),
            422,
            &["occurred_at"],
        ),
        bad(
            "bad event_type",
            with("event_type", json!("STATUS CHANGED")),
            422,
            &["event_type"],
        ),
        bad(
            "actor without id",
            with("actor", json!({"name": "Ann"})),
            422,
            &["actor.id"],
        ),
        bad(
            "bad actor type",
            with("actor", json!({"id": "u", "type": "robot"})),
            422,
            &["actor.type"],
        ),
        bad(
            "bad actor email",
            with("actor", json!({"id": "u", "email": "ann at example"})),
            422,
            &["actor.email"],
        ),
        bad(
            "unknown actor field",
            with("actor", json!({"id": "u", "nick": "a"})),
            422,
            &["actor.nick"],
        ),
        bad(
            "target without id",
            with("target", json!({"type": "asset"})),
            422,
            &["target.id"],
        ),
        bad(
            "target without type",
            with("target", json!({"id": "1"})),
            422,
            &["target.type"],
        ),
        bad(
            "organization without id",
            with("organization", json!({"name": "Acme"})),
            422,
            &["organization.id"],
        ),
        bad(
            "bad ip",
            with("context", json!({"ip": "10.0.0.256"})),
            422,
            &["context.ip"],
        ),
        bad(
            "status code 700",
            with("context", json!({"status_code": 700})),
            422,
            &["context.status_code"],
        ),
        bad(
            "bad method",
            with("context", json!({"method": "FETCH"})),
            422,
            &["context.method"],
        ),
        bad(
            "negative duration",
            with("context", json!({"duration_ms": -3})),
            422,
            &["context.duration_ms"],
        ),
        bad(
            "changes not an array",
            with("changes", json!({"field": "a"})),
            422,
            &["changes"],
        ),
        bad(
            "change without field",
            with("changes", json!([{"old_value": 1, "new_value": 2}])),
            422,
            &["changes[0].field"],
        ),
        bad(
            "related without id",
            with("related", json!([{"type": "transfer"}])),
            422,
            &["related[0].id"],
        ),
        bad(
            "metadata not an object",
            with("metadata", json!("x")),
            422,
            &["metadata"],
        ),
        bad(
            "metadata over 32 KiB",
            with("metadata", json!({"k": "x".repeat(33 * 1024)})),
            422,
            &["metadata"],
        ),
        bad(
            "before not an object",
            with("before", json!([1])),
            422,
            &["before"],
        ),
        bad(
            "unknown field",
            with("colour", json!("red")),
            422,
            &["colour"],
        ),
        bad(
            "many problems at once",
            json!({"action": "", "actor": {"id": "u", "type": "x"}, "context": {"ip": "x"}}),
            422,
            &["action", "actor.type", "context.ip"],
        ),
        bad(
            "bad event at index 3",
            Value::Array(batch),
            422,
            &["events[3].context.ip"],
        ),
        bad(
            "same id twice",
            json!([with("id", json!(id)), with("id", json!(id))]),
            422,
            &["events[1].id"],
        ),
        bad_raw(
            "ndjson bad 4th line",
            Some("application/x-ndjson"),
            ndjson_bad_line.into_bytes(),
            422,
            &["events[3].action"],
        ),
        bad_raw(
            "ndjson malformed line",
            Some("application/x-ndjson"),
            format!("{ok}\n{{nope\n").into_bytes(),
            400,
            &[],
        ),
        bad("tenant of someone else", other_tenant, 403, &[]),
        Bad {
            admin: true,
            ..bad("admin without tenant", ok.clone(), 422, &["tenant"])
        },
        Bad {
            admin: true,
            ..bad("admin with bad tenant", bad_tenant, 422, &["tenant"])
        },
    ]
}

#[tokio::test]
async fn every_bad_input_gets_a_problem_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let ingest = app.key("t", &["ingest"]).await;
    let reader = app.key("t", &["read"]).await;
    let cases = bad_inputs();
    assert!(cases.len() >= 40, "the table holds {} cases", cases.len());
    for case in cases {
        let token = if case.admin { ADMIN } else { ingest.as_str() };
        let a = app
            .raw(
                Method::POST,
                "/api/v1/events",
                Some(token),
                case.content_type,
                Some(case.body),
            )
            .await;
        assert_eq!(
            a.status.as_u16(),
            case.status,
            "{}: {:?}",
            case.name,
            a.body
        );
        assert!(a.is_problem(), "{}: problem+json", case.name);
        assert_eq!(
            a.body["status"].as_u64(),
            Some(u64::from(case.status)),
            "{}",
            case.name
        );
        assert_eq!(a.fields(), case.fields, "{}: {:?}", case.name, a.body);
        assert!(a.headers.contains_key("x-request-id"), "{}", case.name);
    }
    assert!(
        app.all_events(&reader).await.is_empty(),
        "nothing was stored"
    );
    // The store still takes good events, numbered from 1.
    let a = app.ingest(&ingest, &event("user.login", "u1")).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["events"][0]["seq"], 1);
}

#[tokio::test]
async fn bad_query_parameters_and_search_bodies_name_the_parameter() {
    let app = spawn_app().await;
    let reader = app.key("t", &["read"]).await;
    let cases: &[(&str, u16, &[&str])] = &[
        ("/api/v1/audit-logs?limit=0", 400, &["limit"]),
        ("/api/v1/audit-logs?limit=abc", 400, &["limit"]),
        ("/api/v1/audit-logs?order=up", 400, &["order"]),
        ("/api/v1/audit-logs?from=yesterday", 400, &["from"]),
        (
            "/api/v1/audit-logs?category=x&outcome=y",
            400,
            &["category", "outcome"],
        ),
        ("/api/v1/audit-logs?cursor=bogus", 400, &["cursor"]),
        ("/api/v1/audit-logs?colour=red", 400, &["colour"]),
        ("/api/v1/audit-logs/not-a-uuid", 400, &["id"]),
        (
            "/api/v1/audit-logs/entity/asset/1?target_id=2",
            400,
            &["target_id"],
        ),
        (
            "/api/v1/entities/asset/1/history?limit=5000",
            400,
            &["limit"],
        ),
        ("/api/v1/nowhere", 404, &[]),
    ];
    for (path, status, fields) in cases {
        let a = app.get(path, &reader).await;
        assert_eq!(a.status.as_u16(), *status, "{path}: {:?}", a.body);
        assert!(a.is_problem(), "{path}");
        assert_eq!(a.fields(), *fields, "{path}");
    }
    let a = app
        .post(
            "/api/v1/audit-logs/search",
            &reader,
            &json!({"metadata": [1], "limit": 0}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.fields(), ["limit", "metadata"]);
    let a = app
        .raw(
            Method::POST,
            "/api/v1/audit-logs/search",
            Some(&reader),
            Some("text/plain"),
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let a = app
        .raw(
            Method::DELETE,
            "/api/v1/audit-logs",
            Some(&reader),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(a.is_problem());
    assert_eq!(
        a.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET,HEAD")
    );
}

#[tokio::test]
async fn ingest_takes_objects_arrays_and_ndjson_and_serves_them_back() {
    let app = spawn_app().await;
    let key = app.key("acme", &["ingest", "read"]).await;
    let single = app
        .ingest(&key, &json!({
            "action": "asset.updated", "category": "update", "event_type": "UPDATED",
            "actor": {"id": "u1", "name": "Ann", "email": "ann@example.com"},
            "target": {"type": "asset", "id": "A1", "name": "Laptop"},
            "organization": {"id": "org1"},
            "context": {"ip": "2001:DB8::0:1", "method": "patch", "status_code": 200, "duration_ms": 12.5,
                        "correlation_id": "c-1", "user_agent": "curl", "endpoint": "/assets/{id}", "session_id": "s"},
            "before": {"status": "new", "secret": "a", "tags": ["x"]},
            "after": {"status": "used", "secret": "b", "tags": ["x", "y"]},
            "related": [{"type": "ticket", "id": "T9"}],
            "metadata": {"reason": "audit", "password": "hunter2"},
            "occurred_at": "2026-11-20T10:00:00.123456789+01:00"
        }))
        .await;
    assert_eq!(single.status, StatusCode::CREATED, "{:?}", single.body);
    assert_eq!(single.body["accepted"], 1);
    assert_eq!(single.body["duplicates"], 0);
    let id = single.body["events"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let stored = app.get(&format!("/api/v1/audit-logs/{id}"), &key).await;
    assert_eq!(stored.status, StatusCode::OK);
    let e = &stored.body;
    assert_eq!(e["seq"], 1);
    assert_eq!(e["tenant"], "acme");
    assert_eq!(e["occurred_at"], "2026-11-20T09:00:00.123456Z");
    assert_eq!(e["context"]["ip"], "2001:db8::1");
    assert_eq!(e["context"]["method"], "PATCH");
    assert_eq!(
        e["metadata"],
        json!({"reason": "audit", "password": "[REDACTED]"})
    );
    assert_eq!(
        e["changes"],
        json!([
            {"field": "secret", "old_value": "[REDACTED]", "new_value": "[REDACTED]", "changed_at": "2026-11-20T09:00:00.123456Z", "changed_by": "u1"},
            {"field": "status", "old_value": "new", "new_value": "used", "changed_at": "2026-11-20T09:00:00.123456Z", "changed_by": "u1"},
            {"field": "tags[1]", "old_value": null, "new_value": "y", "changed_at": "2026-11-20T09:00:00.123456Z", "changed_by": "u1"},
        ])
    );
    assert_eq!(e["hash"], single.body["events"][0]["hash"]);
    assert!(
        e.get("before").is_none() && e.get("after").is_none(),
        "before/after are not stored"
    );

    let batch = app
        .ingest(&key, &json!([event("a.one", "u1"), event("a.two", "u2")]))
        .await;
    assert_eq!(batch.status, StatusCode::CREATED);
    let seqs: Vec<u64> = batch.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [2, 3], "seq follows request order");

    let ndjson = format!("{}\n\n{}\n", event("b.one", "u3"), event("b.two", "u3"));
    let a = app
        .raw(
            Method::POST,
            "/api/v1/events",
            Some(&key),
            Some("application/x-ndjson"),
            Some(ndjson.into_bytes()),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.body["accepted"], 2);
    let actions: Vec<String> = app
        .all_events(&key)
        .await
        .iter()
        .map(|e| e["action"].as_str().expect("action").to_owned())
        .collect();
    assert_eq!(
        actions,
        ["asset.updated", "a.one", "a.two", "b.one", "b.two"]
    );
}

#[tokio::test]
async fn client_ids_make_retries_idempotent_and_conflicts_409() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut e = event("user.login", "u1");
    e["id"] = json!(id);
    let first = app.ingest(&key, &e).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app.ingest(&key, &e).await;
    assert_eq!(again.status, StatusCode::OK, "all duplicates answer 200");
    assert_eq!(again.body["accepted"], 0);
    assert_eq!(again.body["duplicates"], 1);
    assert_eq!(
        again.body["events"][0], first.body["events"][0],
        "answered with the stored record"
    );
    let mixed = app.ingest(&key, &json!([event("x", "u"), e])).await;
    assert_eq!(mixed.status, StatusCode::CREATED);
    assert_eq!(
        (
            mixed.body["accepted"].as_u64(),
            mixed.body["duplicates"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let mut changed = e.clone();
    changed["action"] = json!("user.logout");
    let conflict = app.ingest(&key, &changed).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.fields(), ["id"]);
    let conflict = app.ingest(&key, &json!([event("y", "u"), changed])).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.fields(), ["events[1].id"]);
    assert_eq!(
        app.all_events(&key).await.len(),
        2,
        "conflicting requests stored nothing"
    );
}

#[tokio::test]
async fn credentials_are_checked_for_presence_scope_and_tenant() {
    let app = spawn_app().await;
    let ingest = app.key("t1", &["ingest"]).await;
    let reader = app.key("t1", &["read"]).await;
    let body = event("a", "u").to_string().into_bytes();
    let post = |token: Option<&'static str>| (token, body.clone());
    let _ = post;
    let none = app
        .raw(
            Method::POST,
            "/api/v1/events",
            None,
            Some("application/json"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.is_problem());
    let wrong = app
        .raw(
            Method::POST,
            "/api/v1/events",
            Some("st_nope"),
            Some("application/json"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let basic = app
        .http
        .get(app.url("/api/v1/audit-logs"))
        .header("authorization", "Basic dTpw")
        .send()
        .await
        .expect("send");
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/v1/audit-logs", &ingest).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.ingest(&reader, &event("a", "u")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/audit-logs?tenant=t2", &reader)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/audit-logs?tenant=t1", &reader)
            .await
            .status,
        StatusCode::OK,
        "naming its own tenant is fine"
    );
    assert_eq!(
        app.get("/api/v1/keys", &reader).await.status,
        StatusCode::FORBIDDEN
    );
    // A key bound to all tenants must name one to read.
    let a = app.get("/api/v1/audit-logs", ADMIN).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.fields(), ["tenant"]);
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_at_once_and_audited() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/api/v1/keys",
            ADMIN,
            &json!({"tenant": "t", "scopes": ["read", "ingest"], "name": "ci"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let token = created.body["token"].as_str().expect("token").to_owned();
    assert!(
        token.starts_with("st_")
            && token.len() >= 46
            && token[3..].chars().all(|c| c.is_ascii_alphanumeric())
    );
    assert_eq!(created.body["scopes"], json!(["ingest", "read"]));
    let key_id = created.body["id"].as_str().expect("id").to_owned();
    let list = app.get("/api/v1/keys?tenant=t", ADMIN).await;
    assert_eq!(list.status, StatusCode::OK);
    let item = &list.body["items"][0];
    assert_eq!(item["id"], json!(key_id));
    assert_eq!(item["revoked_at"], Value::Null);
    assert!(item.get("token").is_none(), "tokens are never listed");
    assert!(!list.body.to_string().contains(&token));
    assert_eq!(
        app.ingest(&token, &event("a", "u")).await.status,
        StatusCode::CREATED
    );

    for (body, field) in [
        (json!({"scopes": ["read"]}), "tenant"),
        (json!({"tenant": "t", "scopes": []}), "scopes"),
        (json!({"tenant": "t", "scopes": ["write"]}), "scopes[0]"),
        (json!({"tenant": "*", "scopes": ["read"]}), "tenant"),
        (
            json!({"tenant": "t", "scopes": ["read"], "owner": "x"}),
            "owner",
        ),
    ] {
        let a = app.post("/api/v1/keys", ADMIN, &body).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(a.fields(), [field], "{body}");
    }
    let tenant_admin = app.key("t", &["admin"]).await;
    let a = app
        .post(
            "/api/v1/keys",
            &tenant_admin,
            &json!({"tenant": "other", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    let revoke = app
        .raw(
            Method::DELETE,
            &format!("/api/v1/keys/{key_id}"),
            Some(ADMIN),
            None,
            None,
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.ingest(&token, &event("a", "u")).await.status,
        StatusCode::UNAUTHORIZED,
        "revoked at once"
    );
    let missing = app
        .raw(Method::DELETE, "/api/v1/keys/nope", Some(ADMIN), None, None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let reader = app.key("t", &["read"]).await;
    let actions: Vec<String> = app
        .all_events(&reader)
        .await
        .iter()
        .map(|e| e["action"].as_str().expect("action").to_owned())
        .collect();
    assert!(
        actions.contains(&"audit.key_created".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"audit.key_revoked".to_owned()),
        "{actions:?}"
    );
    let events = app.all_events(&reader).await;
    let revoked = events
        .iter()
        .find(|e| e["action"] == "audit.key_revoked")
        .expect("revoked event");
    assert_eq!(
        revoked["actor"],
        json!({"id": "bootstrap", "type": "service", "name": "bootstrap", "email": null})
    );
    assert_eq!(revoked["target"]["id"], json!(key_id));
}

async fn seed_two_tenants(app: &TestApp) -> (String, String, String) {
    let k1 = app.key("t1", &["ingest", "read"]).await;
    let k2 = app.key("t2", &["ingest", "read"]).await;
    let shared = json!({
        "action": "asset.updated", "event_type": "UPDATED", "actor": {"id": "shared-user"},
        "target": {"type": "asset", "id": "A1"}, "related": [{"type": "ticket", "id": "T1"}],
        "changes": [{"field": "status", "old_value": 1, "new_value": 2}], "metadata": {"k": 1}
    });
    assert_eq!(app.ingest(&k1, &shared).await.status, StatusCode::CREATED);
    let a = app.ingest(&k2, &shared).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let t2_id = a.body["events"][0]["id"].as_str().expect("id").to_owned();
    (k1, k2, t2_id)
}

#[tokio::test]
async fn every_read_endpoint_is_confined_to_the_tenant() {
    let app = spawn_app().await;
    let (k1, _k2, t2_id) = seed_two_tenants(&app).await;
    let lists = [
        "/api/v1/audit-logs".to_owned(),
        "/api/v1/audit-logs/entity/asset/A1".to_owned(),
        "/api/v1/audit-logs/user/shared-user".to_owned(),
        "/api/v1/entities/asset/A1/history".to_owned(),
        "/api/v1/entities/ticket/T1/history".to_owned(),
        "/api/v1/entities/asset/A1/history/UPDATED".to_owned(),
    ];
    for path in &lists {
        let a = app.get(path, &k1).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let items = a.body["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "{path}: {:?}", a.body);
        assert!(items.iter().all(|e| e["tenant"] == "t1"), "{path}");
        let other = app.get(&format!("{path}?tenant=t2"), &k1).await;
        assert_eq!(other.status, StatusCode::FORBIDDEN, "{path}");
    }
    let search = app
        .post(
            "/api/v1/audit-logs/search",
            &k1,
            &json!({"changed_field": "status", "metadata": {"k": 1}}),
        )
        .await;
    assert_eq!(search.status, StatusCode::OK);
    assert_eq!(search.seqs(), [1]);
    assert_eq!(search.body["items"][0]["tenant"], "t1");
    let search = app
        .post("/api/v1/audit-logs/search", &k1, &json!({"tenant": "t2"}))
        .await;
    assert_eq!(search.status, StatusCode::FORBIDDEN);
    let by_id = app.get(&format!("/api/v1/audit-logs/{t2_id}"), &k1).await;
    assert_eq!(
        by_id.status,
        StatusCode::NOT_FOUND,
        "another tenant's event is not found"
    );
    assert!(by_id.is_problem());
}

#[tokio::test]
async fn cross_tenant_reads_by_global_admins_are_audited() {
    let app = spawn_app().await;
    let (k1, _, _) = seed_two_tenants(&app).await;
    let a = app.get("/api/v1/audit-logs?tenant=t1", ADMIN).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.seqs(), [1]);
    let events = app.all_events(&k1).await;
    let audit = events.last().expect("an audit event");
    assert_eq!(audit["action"], "audit.read_cross_tenant");
    assert_eq!(audit["actor"]["id"], "bootstrap");
    assert_eq!(audit["metadata"]["path"], "/api/v1/audit-logs");

    // The integrity endpoints, read across tenants, are audited too.
    let first = events[0]["id"].as_str().expect("id").to_owned();
    app.checkpoint_at(&k1, events.len() as u64).await;
    for path in [
        "/api/v1/integrity/checkpoint?tenant=t1".to_owned(),
        format!("/api/v1/integrity/proof/{first}?tenant=t1"),
        "/api/v1/integrity/consistency?from=1&to=2&tenant=t1".to_owned(),
    ] {
        let before = app.all_events(&k1).await.len();
        let a = app.get(&path, ADMIN).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.body);
        let after = app.all_events(&k1).await;
        assert_eq!(after.len(), before + 1, "{path}");
        let audit = after.last().expect("event");
        assert_eq!(audit["action"], "audit.read_cross_tenant", "{path}");
        assert_eq!(
            audit["metadata"]["path"],
            path.split('?').next().expect("path"),
            "{path}"
        );
    }
    // A key of the tenant reading its own checkpoint records nothing.
    let before = app.all_events(&k1).await.len();
    let a = app.get("/api/v1/integrity/checkpoint", &k1).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(app.all_events(&k1).await.len(), before);
}

#[tokio::test]
async fn filters_and_history_work_over_http() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    let events = json!([
        {"action": "asset.created", "event_type": "CREATED", "actor": {"id": "u1"}, "occurred_at": "2026-01-01T00:00:03Z",
         "target": {"type": "asset", "id": "A1"}, "context": {"ip": "10.0.0.1", "correlation_id": "c1"}},
        {"action": "transfer.created", "event_type": "TRANSFERRED", "actor": {"id": "u2"}, "occurred_at": "2026-01-01T00:00:02Z",
         "target": {"type": "transfer", "id": "TR1"}, "related": [{"type": "asset", "id": "A1"}], "outcome": "failure", "error": "no"},
        {"action": "asset.updated", "category": "update", "event_type": "UPDATED", "actor": {"id": "u1"}, "occurred_at": "2026-01-01T00:00:04Z",
         "target": {"type": "asset", "id": "A1"}, "context": {"ip": "::ffff:10.0.0.1"}, "organization": {"id": "o1"}}
    ]);
    assert_eq!(app.ingest(&key, &events).await.status, StatusCode::CREATED);
    let cases: &[(&str, &[u64])] = &[
        ("", &[3, 2, 1]),
        ("order=asc", &[1, 2, 3]),
        ("actor_id=u1", &[3, 1]),
        ("action=asset.created&action=asset.updated", &[3, 1]),
        ("category=update", &[3]),
        ("event_type=TRANSFERRED", &[2]),
        ("target_type=asset&target_id=A1", &[3, 1]),
        ("organization_id=o1", &[3]),
        ("outcome=failure", &[2]),
        ("correlation_id=c1", &[1]),
        ("ip=10.0.0.1", &[1]),
        ("from=2026-01-01T00:00:03Z", &[3, 1]),
        ("to=2026-01-01T00:00:03Z", &[2]),
        (
            "from=2026-01-01T00:00:02Z&to=2026-01-01T00:00:04Z&actor_id=u2",
            &[2],
        ),
    ];
    for (query, expected) in cases {
        let a = app.get(&format!("/api/v1/audit-logs?{query}"), &key).await;
        assert_eq!(a.status, StatusCode::OK, "{query}: {:?}", a.body);
        assert_eq!(a.seqs(), *expected, "{query}");
    }
    let h = app.get("/api/v1/entities/asset/A1/history", &key).await;
    assert_eq!(h.seqs(), [2, 1, 3], "oldest first by occurred_at");
    let relations: Vec<&str> = h.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["relation"].as_str().expect("relation"))
        .collect();
    assert_eq!(relations, ["related", "target", "target"]);
    let h = app
        .get("/api/v1/entities/asset/A1/history/UPDATED", &key)
        .await;
    assert_eq!(h.seqs(), [3]);
    let h = app
        .get(
            "/api/v1/entities/asset/A1/history?event_type=CREATED&event_type=TRANSFERRED&limit=1",
            &key,
        )
        .await;
    assert_eq!(h.seqs(), [2]);
    let cursor = h.body["next_cursor"].as_str().expect("cursor");
    let h = app.get(&format!("/api/v1/entities/asset/A1/history?event_type=CREATED&event_type=TRANSFERRED&limit=1&cursor={cursor}"), &key).await;
    assert_eq!(h.seqs(), [1]);
    assert_eq!(h.body["next_cursor"], Value::Null);
    let unknown = app.get("/api/v1/entities/asset/nope/history", &key).await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert_eq!(unknown.body, json!({"items": [], "next_cursor": null}));
}

#[tokio::test]
async fn full_text_q_works_on_every_list_search_and_export() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    let other = app.key("o", &["ingest", "read"]).await;
    let events = json!([
        {"action": "invoice.paid", "actor": {"id": "u1", "name": "Alice Martin"},
         "target": {"type": "invoice", "id": "INV-2024-001"}, "metadata": {"note": "Urgent refund"}},
        {"action": "invoice.voided", "actor": {"id": "u2", "name": "Bob"}, "outcome": "failure",
         "error": "Card declined", "target": {"type": "invoice", "id": "INV-2024-002"},
         "changes": [{"field": "status", "old_value": "open", "new_value": "void"}]},
        {"action": "user.login", "actor": {"id": "u1", "name": "Alice Martin", "email": "hidden@nowhere.io"},
         "metadata": {"refund": "no", "count": 42}}
    ]);
    assert_eq!(app.ingest(&key, &events).await.status, StatusCode::CREATED);
    let elsewhere = json!({"action": "invoice.paid", "actor": {"id": "u1", "name": "Alice"}});
    assert_eq!(
        app.ingest(&other, &elsewhere).await.status,
        StatusCode::CREATED
    );
    let cases: &[(&str, &[u64])] = &[
        ("q=alice", &[3, 1]),
        ("q=ALICE+martin&order=asc", &[1, 3]),
        ("q=invoice.paid", &[1]),
        ("q=paid+invoice", &[1]),
        ("q=2024", &[2, 1]),
        ("q=inv-2024-002", &[2]),
        ("q=declined", &[2]),
        ("q=void", &[2]),
        ("q=status", &[2]),
        ("q=refund", &[1]),
        ("q=42", &[3]),
        ("q=nowhere", &[]),
        ("q=note", &[]),
        ("q=alice&actor_id=u1&action=user.login", &[3]),
        ("q=alice&outcome=failure", &[]),
        ("q=", &[3, 2, 1]),
        ("q=%20--%20", &[3, 2, 1]),
    ];
    for (query, expected) in cases {
        let a = app.get(&format!("/api/v1/audit-logs?{query}"), &key).await;
        assert_eq!(a.status, StatusCode::OK, "{query}: {:?}", a.body);
        assert_eq!(a.seqs(), *expected, "{query}");
    }
    let a = app.get("/api/v1/audit-logs?q=alice&limit=1", &key).await;
    assert_eq!(a.seqs(), [3]);
    let cursor = a.body["next_cursor"].as_str().expect("a next page");
    let a = app
        .get(
            &format!("/api/v1/audit-logs?q=alice&limit=1&cursor={cursor}"),
            &key,
        )
        .await;
    assert_eq!(a.seqs(), [1]);
    let a = app.get("/api/v1/audit-logs/user/u1?q=refund", &key).await;
    assert_eq!(a.seqs(), [1]);
    let a = app
        .get("/api/v1/audit-logs/entity/invoice/INV-2024-002?q=bob", &key)
        .await;
    assert_eq!(a.seqs(), [2]);
    let a = app
        .post(
            "/api/v1/audit-logs/search",
            &key,
            &json!({"q": "Alice", "action": ["invoice.paid", "user.login"], "order": "asc"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.seqs(), [1, 3]);
    let export = app
        .raw(
            Method::GET,
            "/api/v1/audit-logs/export?format=json&q=invoice",
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!(export.status, StatusCode::OK);
    let seqs: Vec<u64> = export
        .body
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2]);
    // Another tenant's identical words are never found.
    let a = app.get("/api/v1/audit-logs?q=alice", &other).await;
    assert_eq!(a.seqs(), [1]);
    for (query, field) in [("q=a&q=b", "q"), ("q=x+y&q=", "q")] {
        let a = app.get(&format!("/api/v1/audit-logs?{query}"), &key).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(a.fields(), [field]);
    }
    // At most 1024 characters, as the document says (and so at most 512 words).
    let many: Vec<String> = (0..512)
        .map(|i| format!("{}", (b'a' + (i % 26) as u8) as char))
        .collect();
    let a = app
        .get(&format!("/api/v1/audit-logs?q={}", many.join("+")), &key)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = app
        .get(&format!("/api/v1/audit-logs?q={}", "x".repeat(1025)), &key)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.fields(), ["q"]);
    let a = app
        .post("/api/v1/audit-logs/search", &key, &json!({"q": 5}))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.fields(), ["q"]);
}

#[tokio::test]
async fn paging_returns_every_match_once_while_another_task_ingests() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    let batch: Vec<Value> = (0..300)
        .map(|i| event("page.test", &format!("u{}", i % 3)))
        .collect();
    assert_eq!(
        app.ingest(&key, &Value::Array(batch)).await.status,
        StatusCode::CREATED
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, url, key, stop) = (
            app.http.clone(),
            app.url("/api/v1/events"),
            key.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!([event("page.test", "u0"), event("page.test", "u1")]);
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status(), StatusCode::CREATED);
                sent += 2;
            }
            sent
        })
    };
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/audit-logs?actor_id=u0&order={order}&limit=7");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let a = app.get(&path, &key).await;
            assert_eq!(a.status, StatusCode::OK);
            seen.extend(a.seqs());
            match a.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            if order == "asc" && seen.len() > 2000 {
                break;
            }
        }
        let unique: std::collections::BTreeSet<u64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{order}: no event served twice");
        let originals: std::collections::BTreeSet<u64> =
            (1..=300).filter(|s| (s - 1) % 3 == 0).collect();
        assert!(
            originals.is_subset(&unique),
            "{order}: every original match served"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = writer.await.expect("writer");
    assert!(sent > 0);
    let all = app.all_events(&key).await;
    let seqs: Vec<u64> = all
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>(), "gap-free");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let r = app
        .http
        .get(app.url("/nope"))
        .header("x-correlation-id", "corr-9")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["x-request-id"], "corr-9");
    let r = app
        .http
        .get(app.url("/api/v1/audit-logs"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let made = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
}

#[tokio::test]
async fn health_readiness_and_back_pressure() {
    let app = spawn_app_with(|mut c| {
        c.queue_capacity = 1;
        c
    })
    .await;
    let key = app.key("t", &["ingest", "read"]).await;
    let h = app.raw(Method::GET, "/healthz", None, None, None).await;
    assert_eq!(
        (h.status, h.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let r = app.raw(Method::GET, "/readyz", None, None, None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );

    // Hold SQLite's write lock from outside so the writer stalls with one request in its queue.
    let lock = rusqlite::Connection::open(app.data_dir.join("sealtrail.db")).expect("open");
    lock.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let stalled = {
        let (http, url, key) = (app.http.clone(), app.url("/api/v1/events"), key.clone());
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&event("first", "u"))
                .send()
                .await
                .expect("send")
                .status()
        })
    };
    // Wait until the stalled request holds the queue's only place.
    let mut full = false;
    // A generous deadline: this waits for a state, it does not time anything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if app.store.queue_status().depth == 1 {
            full = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(full, "the first request reached the queue");
    let a = app.ingest(&key, &event("second", "u")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.is_problem());
    assert_eq!(
        a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let r = app.raw(Method::GET, "/readyz", None, None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.body["detail"]
            .as_str()
            .expect("detail")
            .contains("saturated"),
        "{:?}",
        r.body
    );
    lock.execute_batch("ROLLBACK").expect("unlock");
    assert_eq!(
        stalled.await.expect("task"),
        StatusCode::CREATED,
        "the queued request completes"
    );
    let actions: Vec<String> = app
        .all_events(&key)
        .await
        .iter()
        .map(|e| e["action"].as_str().expect("a").to_owned())
        .collect();
    assert_eq!(actions, ["first"], "the refused event was not stored");
}

#[tokio::test]
async fn graceful_shutdown_loses_no_acknowledged_event() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest"]).await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, url, key, acked) = (
            app.http.clone(),
            app.url("/api/v1/events"),
            key.clone(),
            acked.clone(),
        );
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let body = json!([
                    event("shutdown.test", &format!("c{c}-{i}")),
                    event("shutdown.test", &format!("c{c}-{i}b"))
                ]);
                match http.post(&url).bearer_auth(&key).json(&body).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let v: Value = r.json().await.expect("json");
                        let mut acked = acked.lock().expect("lock");
                        for e in v["events"].as_array().expect("events") {
                            acked.push(e["id"].as_str().expect("id").to_owned());
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    while acked.lock().expect("lock").len() < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let data_dir = app.stop().await;
    for c in clients {
        c.await.expect("client");
    }
    let acked = acked.lock().expect("lock").clone();
    let store = sealtrail_store_sqlite::SqliteStore::open(
        &sealtrail_store_sqlite::SqliteConfig::new(&data_dir),
    )
    .expect("reopen");
    use sealtrail_store::Store;
    for id in &acked {
        let id = uuid::Uuid::parse_str(id).expect("uuid");
        assert!(
            store
                .get(&sealtrail_store::conformance::tenant("t"), id)
                .await
                .expect("get")
                .is_some(),
            "acknowledged event {id} is stored"
        );
    }
    let page = store
        .list(sealtrail_store::ListQuery {
            tenant: sealtrail_store::conformance::tenant("t"),
            filter: Default::default(),
            order: sealtrail_store::Order::Asc,
            limit: 1000,
            cursor: None,
        })
        .await
        .expect("list");
    let seqs: Vec<u64> = page.items.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    store.shutdown().await;
}

#[tokio::test]
async fn statistics_count_a_window_with_buckets_and_top_lists() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    let other = app.key("o", &["ingest", "read"]).await;
    let at = |s: &str| format!("2026-03-0{s}");
    let events = json!([
        {"action": "doc.read", "actor": {"id": "bo"}, "occurred_at": at("1T10:00:00Z"),
         "target": {"type": "doc", "id": "d1"}},
        {"action": "doc.read", "actor": {"id": "ana"}, "occurred_at": at("1T10:59:59.999999Z"),
         "target": {"type": "doc", "id": "d1"}},
        {"action": "doc.delete", "actor": {"id": "ana"}, "outcome": "failure",
         "occurred_at": at("1T12:30:00Z"), "target": {"type": "doc", "id": "d2"}},
        {"action": "user.login", "actor": {"id": "cy"}, "occurred_at": at("3T00:00:00Z")},
        {"action": "user.login", "actor": {"id": "cy"}, "occurred_at": at("4T00:00:00Z")}
    ]);
    assert_eq!(app.ingest(&key, &events).await.status, StatusCode::CREATED);
    let noise =
        json!({"action": "doc.read", "actor": {"id": "zed"}, "occurred_at": at("1T10:30:00Z")});
    assert_eq!(app.ingest(&other, &noise).await.status, StatusCode::CREATED);

    let path = "/api/v1/audit-logs/statistics?from=2026-03-01T00:00:00Z&to=2026-03-04T00:00:00Z";
    let a = app.get(path, &key).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(
        a.body,
        json!({
            "from": "2026-03-01T00:00:00.000000Z", "to": "2026-03-04T00:00:00.000000Z",
            "bucket": "day", "total": 4, "failures": 1,
            "buckets": [
                {"start": "2026-03-01T00:00:00.000000Z", "count": 3, "failures": 1},
                {"start": "2026-03-02T00:00:00.000000Z", "count": 0, "failures": 0},
                {"start": "2026-03-03T00:00:00.000000Z", "count": 1, "failures": 0}
            ],
            "top_actors": [{"id": "ana", "count": 2}, {"id": "bo", "count": 1}, {"id": "cy", "count": 1}],
            "top_actions": [{"action": "doc.read", "count": 2}, {"action": "doc.delete", "count": 1},
                            {"action": "user.login", "count": 1}],
            "top_targets": [{"type": "doc", "id": "d1", "count": 2}, {"type": "doc", "id": "d2", "count": 1}]
        })
    );
    // Hour buckets from the one holding `from`, empty ones listed; `top` cuts the lists.
    let a = app
        .get(
            "/api/v1/audit-logs/statistics?from=2026-03-01T10:30:00Z&to=2026-03-01T12:30:00.000001Z&bucket=hour&top=1",
            &key,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let buckets: Vec<(String, u64, u64)> = a.body["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            (
                b["start"].as_str().expect("start").to_owned(),
                b["count"].as_u64().expect("count"),
                b["failures"].as_u64().expect("failures"),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        [
            ("2026-03-01T10:00:00.000000Z".to_owned(), 1, 0),
            ("2026-03-01T11:00:00.000000Z".to_owned(), 0, 0),
            ("2026-03-01T12:00:00.000000Z".to_owned(), 1, 1),
        ]
    );
    assert_eq!(a.body["top_actors"], json!([{"id": "ana", "count": 2}]));
    assert_eq!(
        a.body["top_targets"],
        json!([{"type": "doc", "id": "d1", "count": 1}])
    );
    // By default: the last 30 days, day buckets, 10 of each. The events above are older.
    let a = app.get("/api/v1/audit-logs/statistics", &key).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["bucket"], "day");
    let days = a.body["buckets"].as_array().expect("buckets").len();
    assert!((30..=31).contains(&days), "{days} buckets");
    let now = json!({"action": "fresh", "actor": {"id": "now"}});
    assert_eq!(app.ingest(&key, &now).await.status, StatusCode::CREATED);
    let a = app.get("/api/v1/audit-logs/statistics", &key).await;
    assert_eq!(a.body["total"], 1);
    assert_eq!(
        a.body["top_actions"],
        json!([{"action": "fresh", "count": 1}])
    );
    // Another tenant counts only its own; naming another tenant is 403.
    let a = app.get(path, &other).await;
    assert_eq!(
        (a.body["total"].as_u64(), &a.body["top_actors"]),
        (Some(1), &json!([{"id": "zed", "count": 1}]))
    );
    let a = app.get(&format!("{path}&tenant=t"), &other).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app.get(&format!("{path}&tenant=t"), ADMIN).await;
    assert_eq!(
        (a.status, a.body["total"].as_u64()),
        (StatusCode::OK, Some(4))
    );
    // Bad parameters are 400 naming them, whatever else is right.
    for (query, field) in [
        ("bucket=week", "bucket"),
        ("top=-1", "top"),
        ("top=1001", "top"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "from"),
        (
            "from=1900-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&bucket=hour",
            "bucket",
        ),
        ("bucket=day&bucket=hour", "bucket"),
        ("actor_id=ana", "actor_id"),
    ] {
        let a = app
            .get(&format!("/api/v1/audit-logs/statistics?{query}"), &key)
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(a.is_problem(), "{query}");
        assert_eq!(a.fields(), [field], "{query}");
    }
    let unauthenticated = app
        .raw(
            Method::GET,
            "/api/v1/audit-logs/statistics",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
}
