//! Retention and legal holds over real HTTP: rules and holds set, read, refused by field and
//! by credential, recorded; a dry run that changes nothing; a run that archives and removes
//! exactly the expired events no hold keeps, after which reads, retries and a verifiable
//! export still hold; a second run that removes nothing; and the daily job doing it unasked.

mod common;

use std::collections::HashMap;

use common::{TestApp, spawn_app, spawn_app_full};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DAY: i64 = 86_400;

/// 24 events of tenant `acme`: ages of 1, 10, 40 and 100 days, the actions `auth.login`,
/// `invoice.paid` and `doc.read`, actors u0–u3, each with its own id; with what each is.
fn aged() -> Vec<(Value, i64)> {
    let now = sealtrail_model::Timestamp::now().micros();
    (0..24)
        .map(|i| {
            let age = [1, 10, 40, 100][i % 4];
            let at =
                sealtrail_model::Timestamp::from_micros(now - (age * DAY + i as i64) * 1_000_000)
                    .to_rfc3339();
            let action = ["auth.login", "invoice.paid", "doc.read"][(i / 4) % 3];
            (
                json!({"id": uuid::Uuid::now_v7().to_string(), "action": action,
                    "occurred_at": at, "actor": {"id": format!("u{}", i % 4), "name": "Ann"},
                    "target": {"type": "doc", "id": format!("d{i}")}}),
                age,
            )
        })
        .collect()
}

/// The public keys the server publishes, by id.
async fn public_keys(app: &TestApp, token: &str) -> HashMap<String, ed25519_dalek::VerifyingKey> {
    let keys = app.get("/api/v1/integrity/public-keys", token).await;
    keys.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            let bytes: [u8; 32] = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                k["public_key"].as_str().expect("key"),
            )
            .expect("base64")
            .try_into()
            .expect("32 bytes");
            (
                k["key_id"].as_str().expect("id").to_owned(),
                ed25519_dalek::VerifyingKey::from_bytes(&bytes).expect("a key"),
            )
        })
        .collect()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect()
}

#[tokio::test]
async fn rules_and_holds_are_set_read_refused_by_field_and_recorded() {
    let app = spawn_app().await;
    let admin = app.key("acme", &["admin"]).await;
    let reader = app.key("acme", &["read"]).await;
    let other = app.key("globex", &["admin"]).await;
    let path = "/api/v1/tenants/acme/retention";

    // None set: everything is kept forever.
    let a = app.get(path, &reader).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, json!({"default_days": null, "rules": []}));
    let rules = json!({"default_days": 30, "rules": [{"action_prefix": "auth.", "days": 365}]});
    let a = app.put(path, &admin, &rules).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body, rules);
    assert_eq!(app.get(path, &reader).await.body, rules);
    // Every problem named, nothing stored.
    let a = app
        .put(
            path,
            &admin,
            &json!({"default_days": -1, "rules": [{"action_prefix": "x", "days": 0}, {"days": 2}], "keep": 1}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.is_problem());
    let mut fields = a.fields();
    fields.sort();
    assert_eq!(
        fields,
        [
            "default_days",
            "keep",
            "rules[0].days",
            "rules[1].action_prefix"
        ]
    );
    assert_eq!(app.get(path, &reader).await.body, rules);
    // Only the tenant's admins change them.
    assert_eq!(
        app.put(path, &reader, &rules).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.put(path, &other, &rules).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.get(path, &other).await.status, StatusCode::FORBIDDEN);

    // Holds.
    let hold = "/api/v1/tenants/acme/legal-holds/case-42";
    let a = app
        .put(
            hold,
            &admin,
            &json!({"filter": {"actor_id": "u3"}, "reason": "litigation 42"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["name"], "case-42");
    assert_eq!(a.body["filter"], json!({"actor_id": "u3"}));
    assert_eq!(app.get(hold, &reader).await.body, a.body);
    let list = app.get("/api/v1/tenants/acme/legal-holds", &reader).await;
    assert_eq!(list.body["items"], json!([a.body]));
    let bad = app
        .put(
            hold,
            &admin,
            &json!({"filter": {"outcome": "meh", "limit": 3}, "why": 1}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = bad.fields();
    fields.sort();
    assert_eq!(fields, ["filter.limit", "filter.outcome", "why"]);
    let a = app
        .put(
            "/api/v1/tenants/acme/legal-holds/a%2Fb",
            &admin,
            &json!({"filter": {}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.fields(), ["name"]);
    assert_eq!(
        app.put(hold, &reader, &json!({"filter": {}})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(hold, &reader).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(hold, &admin).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.delete(hold, &admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(hold, &reader).await.status, StatusCode::NOT_FOUND);

    // Each change is an event of the tenant.
    let events = app.all_events(&reader).await;
    assert_eq!(
        actions(&events),
        [
            "audit.retention_changed",
            "audit.legal_hold_placed",
            "audit.legal_hold_removed"
        ]
    );
    assert_eq!(events[0]["metadata"], rules);
    assert_eq!(events[1]["metadata"]["reason"], "litigation 42");
}

#[tokio::test]
async fn a_run_archives_and_removes_exactly_the_expired_events_no_hold_keeps() {
    let app = spawn_app().await;
    let admin = app.key("acme", &["admin", "ingest", "read"]).await;
    let reader = app.key("acme", &["read"]).await;
    let events = aged();
    let a = app
        .ingest(
            &admin,
            &Value::Array(events.iter().map(|(e, _)| e.clone()).collect()),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let rules = json!({"default_days": 30, "rules": [{"action_prefix": "auth.", "days": 7}]});
    assert_eq!(
        app.put("/api/v1/tenants/acme/retention", &admin, &rules)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.put(
            "/api/v1/tenants/acme/legal-holds/keep-u3",
            &admin,
            &json!({"filter": {"actor_id": ["u3"]}})
        )
        .await
        .status,
        StatusCode::OK
    );
    // 24 events, the rules and the hold: the run's checkpoint covers them.
    app.checkpoint_at(&reader, 26).await;
    // Expected by hand: auth.* older than 7 days, the rest older than 30, unless u3 did it.
    let expired = |(e, age): &(Value, i64)| {
        let days = if e["action"].as_str().expect("action").starts_with("auth.") {
            7
        } else {
            30
        };
        *age > days
    };
    let gone: Vec<&Value> = events
        .iter()
        .filter(|e| expired(e) && e.0["actor"]["id"] != "u3")
        .map(|(e, _)| e)
        .collect();
    let held = events
        .iter()
        .filter(|e| expired(e) && e.0["actor"]["id"] == "u3")
        .count();
    assert!(gone.len() >= 8 && held >= 2);

    let run = "/api/v1/tenants/acme/retention/run";
    assert_eq!(
        app.post(run, &reader, &json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    let a = app.post(run, &admin, &json!({"dry_run": "yes"})).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.fields(), ["dry_run"]);
    // A dry run counts and removes nothing.
    let before = app.all_events(&reader).await.len();
    let dry = app.post(run, &admin, &json!({"dry_run": true})).await;
    assert_eq!(dry.status, StatusCode::OK, "{:?}", dry.body);
    assert_eq!(dry.body["purged"], gone.len());
    assert_eq!(dry.body["held"], held);
    assert_eq!(dry.body["archive"], Value::Null);
    assert_eq!(
        app.all_events(&reader).await.len(),
        before + 1,
        "only its record"
    );

    // The run: archived, then removed.
    let done = app.post(run, &admin, &json!({})).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(done.body["purged"], gone.len());
    assert_eq!(done.body["held"], held);
    let archive = std::path::PathBuf::from(done.body["archive"].as_str().expect("an archive"));
    assert!(
        archive.starts_with(app.data_dir.join("archive").join("acme")),
        "{archive:?}"
    );
    let left = app.all_events(&reader).await;
    for g in &gone {
        let id = g["id"].as_str().expect("id");
        assert!(left.iter().all(|e| e["id"] != id), "{id} is gone");
        assert_eq!(
            app.get(&format!("/api/v1/audit-logs/{id}"), &reader)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
    for (e, _) in events.iter().filter(|e| !gone.contains(&&e.0)) {
        assert!(
            left.iter().any(|l| l["id"] == e["id"]),
            "{} is kept",
            e["id"]
        );
    }
    // The receipt names what went.
    let receipt = left
        .iter()
        .find(|e| e["action"] == "audit.purged")
        .expect("a receipt");
    assert_eq!(receipt["id"], done.body["receipt_id"]);
    assert_eq!(receipt["metadata"]["count"], gone.len());
    assert_eq!(receipt["metadata"]["from_seq"], done.body["from_seq"]);
    assert_eq!(receipt["metadata"]["to_seq"], done.body["to_seq"]);
    assert_eq!(
        receipt["metadata"]["archive"],
        archive
            .file_name()
            .expect("name")
            .to_string_lossy()
            .as_ref()
    );
    assert_eq!(receipt["actor"]["type"], "service");
    // Statistics count what is left.
    let stats = app
        .get(
            "/api/v1/audit-logs/statistics?from=2020-01-01T00:00:00Z",
            &reader,
        )
        .await;
    assert_eq!(stats.body["total"].as_u64(), Some(left.len() as u64));
    // A retry of a removed event is still a duplicate.
    let retry = app.ingest(&admin, gone[0]).await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    assert_eq!(retry.body["duplicates"], 1);

    // The archive verifies offline against the checkpoint it names; so does a full export of
    // what is left, its removed positions covered by tree nodes.
    let keys = public_keys(&app, &reader).await;
    let bytes = std::fs::read(&archive).expect("archive");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .expect("gzip");
    let (findings, count) =
        sealtrail_store::verify::verify_export_reader(text.as_bytes(), &keys).expect("reads");
    assert_eq!((findings, count), (vec![], gone.len() as u64));
    let size = app.get("/api/v1/integrity/checkpoint", &reader).await.body["size"]
        .as_u64()
        .expect("size");
    let export_text = app
        .http
        .get(app.url("/api/v1/audit-logs/export?format=ndjson"))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    let (findings, exported) =
        sealtrail_store::verify::verify_export_reader(export_text.as_bytes(), &keys)
            .expect("reads");
    assert_eq!(findings, vec![]);
    assert!(exported > 0 && exported < size);

    // A second run finds nothing more, and says so in the log.
    let again = app.post(run, &admin, &json!({})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["purged"], 0);
    assert_eq!(again.body["archive"], Value::Null);
    let last = app.all_events(&reader).await;
    assert_eq!(
        last.last().expect("one")["action"],
        "audit.retention_checked"
    );
}

#[tokio::test]
async fn the_daily_job_runs_retention_for_tenants_with_rules() {
    let app = spawn_app_full(
        |c| c,
        |mut state| {
            state.retention_every = std::time::Duration::from_millis(200);
            state
        },
    )
    .await;
    let admin = app.key("acme", &["admin", "ingest", "read"]).await;
    let events = aged();
    app.ingest(
        &admin,
        &Value::Array(events.iter().map(|(e, _)| e.clone()).collect()),
    )
    .await;
    app.put(
        "/api/v1/tenants/acme/retention",
        &admin,
        &json!({"default_days": 5}),
    )
    .await;
    // Everything older than 5 days goes, three of every four events, in one run or more (a
    // run takes what its checkpoint covers).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let receipts = loop {
        let found = app
            .get("/api/v1/audit-logs?action=audit.purged", &admin)
            .await;
        let receipts = found.body["items"].as_array().cloned().unwrap_or_default();
        let removed: u64 = receipts
            .iter()
            .map(|r| r["metadata"]["count"].as_u64().expect("count"))
            .sum();
        if removed == 18 {
            break receipts;
        }
        assert!(removed < 18, "{receipts:?}");
        assert!(std::time::Instant::now() < deadline, "no run within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for receipt in &receipts {
        assert_eq!(receipt["actor"]["id"], "retention");
        assert_eq!(receipt["actor"]["type"], "system");
        assert_eq!(receipt["metadata"]["trigger"], "schedule");
    }
    assert_eq!(
        app.all_events(&admin)
            .await
            .iter()
            .filter(|e| e["action"] == "doc.read"
                || e["action"] == "auth.login"
                || e["action"] == "invoice.paid")
            .count(),
        6
    );
}
