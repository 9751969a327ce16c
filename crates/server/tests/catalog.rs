//! A tenant's catalogue over real HTTP: registered, read, enforced at ingest with every problem
//! named down to the path inside `metadata`, presets adopted with one call, changes recorded,
//! only admins of the tenant allowed, and removed.

mod common;

use common::{ADMIN, TestApp, event, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn catalog() -> Value {
    json!({
        "actions": [
            "asset.create",
            {
                "name": "invoice.paid",
                "description": "An invoice was paid",
                "metadata_schema": {
                    "type": "object",
                    "required": ["amount", "currency"],
                    "properties": {
                        "amount": {"type": "integer", "minimum": 0},
                        "currency": {"enum": ["EUR", "USD"]},
                        "items": {"type": "array", "items": {
                            "type": "object", "required": ["sku"],
                            "properties": {"sku": {"type": "string", "minLength": 3}},
                        }},
                        "payer": {"type": "string", "format": "email"},
                    },
                },
            },
        ],
        "event_types": [{"name": "PAYMENT", "metadata_schema": {"required": ["ref"]}}],
        "presets": ["security"],
    })
}

async fn count(app: &TestApp, key: &str) -> usize {
    app.all_events(key).await.len()
}

#[tokio::test]
async fn a_catalogue_is_enforced_at_ingest_with_every_problem_named() {
    let app = spawn_app().await;
    let admin = app.key("acme", &["admin"]).await;
    // No catalogue: anything goes.
    let a = app.get("/api/v1/tenants/acme/catalog", &admin).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.ingest(&admin, &event("anything.goes", "u1"))
            .await
            .status,
        StatusCode::CREATED
    );

    let put = app
        .raw(
            Method::PUT,
            "/api/v1/tenants/acme/catalog",
            Some(&admin),
            Some("application/json"),
            Some(catalog().to_string().into_bytes()),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    assert_eq!(put.body["presets"], json!(["security"]));
    let names: Vec<&str> = put.body["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert!(names.starts_with(&["asset.create", "invoice.paid"]));
    assert!(names.contains(&"user.login_failed") && names.contains(&"access.role_assigned"));
    let got = app.get("/api/v1/tenants/acme/catalog", &admin).await;
    assert_eq!(got.body, put.body);

    let before = count(&app, &admin).await;
    // A batch with a problem in most events: every one is named, nothing is stored.
    let bad = json!([
        {"action": "invoice.paid", "actor": {"id": "u1"}, "metadata": {"amount": 10, "currency": "EUR"}},
        {"action": "invoice.refunded", "actor": {"id": "u1"}},
        {"action": "invoice.paid", "actor": {"id": "u1"}, "metadata": {
            "amount": -1, "currency": "GBP", "items": [{"sku": "abcd"}, {"sku": "x"}, {}],
            "payer": "not an address",
        }},
        {"action": "invoice.paid", "actor": {"id": "u1"}},
        {"action": "asset.create", "actor": {"id": "u1"}, "event_type": "SHIPPED"},
        {"action": "asset.create", "actor": {"id": "u1"}, "event_type": "PAYMENT", "metadata": {}},
        {"action": "user.login_failed", "actor": {"id": "u1"}, "metadata": {"reason": "bad password"}},
        {"action": "access.role_assigned", "actor": {"id": "u1"}, "metadata": {"role": 7}},
    ]);
    let a = app.ingest(&admin, &bad).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", a.body);
    let mut fields = a.fields();
    fields.sort();
    let mut expected = vec![
        "events[1].action",
        "events[2].metadata.amount",
        "events[2].metadata.currency",
        "events[2].metadata.items[1].sku",
        "events[2].metadata.items[2]",
        "events[2].metadata.payer",
        "events[3].metadata",
        "events[3].metadata",
        "events[4].event_type",
        "events[5].metadata",
        "events[7].metadata.role",
    ];
    expected.sort();
    assert_eq!(fields, expected, "{:#?}", a.body);
    // Messages say what is wrong without repeating the value sent.
    let payer = a.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|e| e["field"] == "events[2].metadata.payer")
        .expect("payer");
    assert!(
        !payer["message"]
            .as_str()
            .expect("message")
            .contains("not an address"),
        "{payer}"
    );
    assert_eq!(count(&app, &admin).await, before, "nothing stored");

    // Each good event alone is accepted; a single event's problems are named without a prefix.
    for good in [0usize, 6] {
        let a = app.ingest(&admin, &bad[good]).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    }
    let a = app.ingest(&admin, &bad[1]).await;
    assert_eq!(a.fields(), ["action"]);
    // Another tenant has no catalogue.
    let globex = app.key("globex", &["ingest"]).await;
    assert_eq!(
        app.ingest(&globex, &event("invoice.refunded", "u1"))
            .await
            .status,
        StatusCode::CREATED
    );

    // The change was recorded in the tenant (sealtrail's own events pass any catalogue).
    let events = app.all_events(&admin).await;
    let changed: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "audit.catalog_changed")
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["metadata"]["event_types"], 1);
    assert_eq!(changed[0]["metadata"]["presets"], json!(["security"]));

    // Removed: anything goes again; removing twice is 404.
    let a = app
        .raw(
            Method::DELETE,
            "/api/v1/tenants/acme/catalog",
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.ingest(&admin, &bad[1]).await.status,
        StatusCode::CREATED
    );
    let a = app
        .raw(
            Method::DELETE,
            "/api/v1/tenants/acme/catalog",
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let removed = app
        .all_events(&admin)
        .await
        .into_iter()
        .filter(|e| e["action"] == "audit.catalog_changed")
        .count();
    assert_eq!(removed, 2);
}

#[tokio::test]
async fn only_the_tenants_admins_change_it_and_bad_catalogues_are_named() {
    let app = spawn_app().await;
    let reader = app.key("acme", &["read"]).await;
    let other_admin = app.key("globex", &["admin"]).await;
    let put = |token: String, path: &'static str, body: Value| {
        let app = &app;
        async move {
            app.raw(
                Method::PUT,
                path,
                Some(&token),
                Some("application/json"),
                Some(body.to_string().into_bytes()),
            )
            .await
        }
    };
    let body = json!({"actions": ["a.b"]});
    assert_eq!(
        put(reader.clone(), "/api/v1/tenants/acme/catalog", body.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(other_admin, "/api/v1/tenants/acme/catalog", body.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let a = put(
        ADMIN.into(),
        "/api/v1/tenants/Bad name/catalog",
        body.clone(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.fields(), ["tenant"]);
    // A key of every tenant may; a reader of the tenant reads it.
    assert_eq!(
        put(ADMIN.into(), "/api/v1/tenants/acme/catalog", body)
            .await
            .status,
        StatusCode::OK
    );
    let a = app.get("/api/v1/tenants/acme/catalog", &reader).await;
    assert_eq!(a.body["actions"], json!([{"name": "a.b"}]));
    // Read by a key of every tenant: a cross-tenant read, recorded.
    let a = app.get("/api/v1/tenants/acme/catalog", ADMIN).await;
    assert_eq!(a.status, StatusCode::OK);
    let reads = app
        .all_events(&reader)
        .await
        .into_iter()
        .filter(|e| {
            e["action"] == "audit.read_cross_tenant"
                && e["metadata"]["path"] == "/api/v1/tenants/acme/catalog"
        })
        .count();
    assert_eq!(reads, 1);
    let cases: &[(Value, &[&str])] = &[
        (json!([]), &["$"]),
        (json!({"actions": "a.b"}), &["actions"]),
        (json!({"actions": ["a.b", "a.b"]}), &["actions[1].name"]),
        (
            json!({"actions": [{"name": "x", "metadata_schema": 3}]}),
            &["actions[0].metadata_schema"],
        ),
        (
            json!({"actions": [{"name": "x", "metadata_schema": {"type": "no such type"}}]}),
            &["actions[0].metadata_schema"],
        ),
        (json!({"event_types": [{}]}), &["event_types[0].name"]),
        (json!({"presets": ["gdpr"]}), &["presets[0]"]),
        (json!({"actions": [], "colour": 1}), &["colour"]),
    ];
    for (body, fields) in cases {
        let a = put(ADMIN.into(), "/api/v1/tenants/acme/catalog", body.clone()).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            a.body
        );
        assert_eq!(a.fields(), *fields, "{body}");
    }
    // Refused catalogues changed nothing.
    let a = app.get("/api/v1/tenants/acme/catalog", &reader).await;
    assert_eq!(a.body["actions"], json!([{"name": "a.b"}]));
    // A new version is enforced from the next request on.
    let writer = app.key("acme", &["ingest"]).await;
    assert_eq!(
        app.ingest(&writer, &event("a.b", "u")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.ingest(&writer, &event("a.c", "u")).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let a = put(
        ADMIN.into(),
        "/api/v1/tenants/acme/catalog",
        json!({"actions": ["a.c"]}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        app.ingest(&writer, &event("a.c", "u")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.ingest(&writer, &event("a.b", "u")).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The presets are listed for anyone with a credential.
    let a = app.get("/api/v1/catalog/presets", &reader).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["items"][0]["name"], "security");
    assert!(
        a.body["items"][0]["actions"]
            .as_array()
            .expect("actions")
            .len()
            >= 14
    );
}

#[tokio::test]
async fn a_retry_of_an_event_stored_before_the_catalogue_is_a_duplicate() {
    let app = spawn_app().await;
    let admin = app.key("acme", &["admin"]).await;
    let id = "0190a5d2-7a1e-7cc0-8d43-1c2b3a4d5e6f";
    let first = json!({"id": id, "action": "legacy.thing", "actor": {"id": "u1"}});
    let a = app.ingest(&admin, &first).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let put = app
        .raw(
            Method::PUT,
            "/api/v1/tenants/acme/catalog",
            Some(&admin),
            Some("application/json"),
            Some(catalog().to_string().into_bytes()),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let stored = count(&app, &admin).await;

    // The same event again: a retry, answered as the duplicate it is.
    let again = app.ingest(&admin, &first).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["duplicates"], 1);
    assert_eq!(again.body["events"][0]["id"], id);
    // In a batch beside a new event the catalogue allows: both answered, the new one stored.
    let batch = json!([first, {"action": "asset.create", "actor": {"id": "u2"}}]);
    let b = app.ingest(&admin, &batch).await;
    assert_eq!(b.status, StatusCode::CREATED, "{:?}", b.body);
    assert_eq!(
        (b.body["accepted"].clone(), b.body["duplicates"].clone()),
        (json!(1), json!(1))
    );
    // The same id with another body is the conflict it always was, not a catalogue problem.
    let other = json!({"id": id, "action": "legacy.other", "actor": {"id": "u1"}});
    let c = app.ingest(&admin, &other).await;
    assert_eq!(c.status, StatusCode::CONFLICT, "{:?}", c.body);
    // A new id with the unknown action is refused by the catalogue, naming the action.
    let fresh = json!({"id": "0190a5d2-7a1e-7cc0-8d43-1c2b3a4d5e70", "action": "legacy.thing", "actor": {"id": "u1"}});
    let d = app.ingest(&admin, &fresh).await;
    assert_eq!(d.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", d.body);
    assert_eq!(d.fields(), vec!["action"]);
    assert_eq!(count(&app, &admin).await, stored + 1);
}
