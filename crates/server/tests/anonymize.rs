//! Anonymisation over real HTTP (SPEC §4.5, §12): `POST /api/v1/subjects/{actor_id}/anonymize`
//! erases a person from what readers get — lists, search, an event, statistics — while each
//! event still hashes to the leaf its proof names; a second call answers 0; the act is recorded
//! without the id; bad input and the wrong credential change nothing.

mod common;

use common::spawn_app;
use reqwest::StatusCode;
use sealtrail_ledger::entry::{EntryParts, reencode_v2};
use sealtrail_ledger::leaf_hash;
use sealtrail_ledger::personal::{is_pseudonym, parse_seal_material};
use sealtrail_model::Event;
use serde_json::{Value, json};

fn ann(action: &str) -> Value {
    json!({"action": action,
           "actor": {"id": "ann-42", "name": "Ann Erasable", "email": "ann@example.com"},
           "context": {"ip": "198.51.100.7", "user_agent": "Erasable/2"},
           "target": {"type": "doc", "id": "d1", "name": "Plan"},
           "changes": [{"field": "owner", "old_value": "ann@example.com", "new_value": "bo@example.com"}]})
}

#[tokio::test]
async fn a_person_is_erased_from_every_read_and_every_event_still_proves() {
    let app = spawn_app().await;
    let admin = app.key("acme", &["admin"]).await;
    let writer = app.key("acme", &["ingest", "read"]).await;
    let everywhere = app.key("*", &["admin"]).await;
    let batch = json!([
        ann("doc.edited"),
        ann("doc.shared"),
        {"action": "user.updated", "actor": {"id": "bo-7", "name": "Bo Kept"},
         "target": {"type": "user", "id": "ann-42", "name": "Ann Erasable"}},
        {"action": "doc.read", "actor": {"id": "bo-7", "name": "Bo Kept"}}
    ]);
    let ingested = app.ingest(&writer, &batch).await;
    assert_eq!(ingested.status, StatusCode::CREATED, "{:?}", ingested.body);
    let ids: Vec<String> = ingested.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    let path = "/api/v1/subjects/ann-42/anonymize";

    // Refused, and nothing changes: not an admin, a key for all tenants naming none, unknown
    // parameters and fields, an id too long.
    let before = app.get("/api/v1/audit-logs?actor_id=ann-42", &writer).await;
    assert_eq!(before.body["items"].as_array().expect("items").len(), 2);
    let refused = [
        (
            app.post(path, &writer, &json!({})).await,
            StatusCode::FORBIDDEN,
            vec![],
        ),
        (
            app.post(path, &everywhere, &json!({})).await,
            StatusCode::BAD_REQUEST,
            vec!["tenant"],
        ),
        (
            app.post(&format!("{path}?tenant=acme&dry=1"), &admin, &json!({}))
                .await,
            StatusCode::BAD_REQUEST,
            vec!["dry"],
        ),
        (
            app.post(path, &admin, &json!({"tenant": 7})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["tenant"],
        ),
        (
            app.post(path, &admin, &json!({"subject": "x"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["subject"],
        ),
        (
            app.post(
                &format!("/api/v1/subjects/{}/anonymize", "x".repeat(257)),
                &admin,
                &json!({}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            vec!["actor_id"],
        ),
    ];
    for (answer, status, fields) in refused {
        assert_eq!(answer.status, status, "{:?}", answer.body);
        assert_eq!(answer.fields(), fields, "{:?}", answer.body);
    }
    let after = app.get("/api/v1/audit-logs?actor_id=ann-42", &writer).await;
    assert_eq!(after.body, before.body, "nothing changed");

    // Done: three events held something of Ann (two as actor, one as the person targeted).
    let done = app.post(path, &admin, &json!({})).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(done.body, json!({"events_updated": 3}));
    let again = app
        .post(&format!("{path}?tenant=acme"), &everywhere, &json!({}))
        .await;
    assert_eq!(again.body, json!({"events_updated": 0}), "nothing left");

    let gone = app.get("/api/v1/audit-logs?actor_id=ann-42", &writer).await;
    assert_eq!(gone.body["items"], json!([]));
    for word in ["Erasable", "ann", "198.51.100.7"] {
        let found = app
            .get(&format!("/api/v1/audit-logs?q={word}"), &writer)
            .await;
        assert_eq!(found.status, StatusCode::OK);
        let seqs: Vec<u64> = found.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect();
        assert!(seqs.iter().all(|&s| s > 4), "{word}: {seqs:?}");
    }
    let first = app
        .get(&format!("/api/v1/audit-logs/{}", ids[0]), &writer)
        .await;
    let pseudonym = first.body["actor"]["id"].as_str().expect("id").to_owned();
    assert!(is_pseudonym(&pseudonym), "{pseudonym}");
    assert_eq!(first.body["actor"]["name"], Value::Null);
    assert_eq!(first.body["context"]["ip"], Value::Null);
    assert_eq!(first.body["changes"][0]["old_value"], "[REDACTED]");
    assert_eq!(first.body["changes"][0]["new_value"], "bo@example.com");
    let third = app
        .get(&format!("/api/v1/audit-logs/{}", ids[2]), &writer)
        .await;
    assert_eq!(
        third.body["target"],
        json!({"type": "user", "id": pseudonym, "name": null})
    );
    assert_eq!(third.body["actor"]["name"], "Bo Kept");
    // A pseudonym is nobody's id: anonymising it changes nothing.
    let pseudonymous = app
        .post(
            &format!("/api/v1/subjects/{pseudonym}/anonymize"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(pseudonymous.body, json!({"events_updated": 0}));
    // Counting still works, by the pseudonym.
    let mine = app
        .get(&format!("/api/v1/audit-logs?actor_id={pseudonym}"), &writer)
        .await;
    assert_eq!(mine.body["items"].as_array().expect("items").len(), 2);
    let stats = app.get("/api/v1/audit-logs/statistics", &writer).await;
    let actors = stats.body["top_actors"].to_string();
    assert!(
        actors.contains(&pseudonym) && !actors.contains("ann-42"),
        "{actors}"
    );

    // The act is recorded, with the pseudonym and never the id.
    let audit = app
        .get("/api/v1/audit-logs?action=audit.anonymized", &admin)
        .await;
    let recorded = audit.body["items"].as_array().expect("items");
    assert_eq!(recorded.len(), 3, "every call");
    assert!(!audit.body.to_string().contains("ann-42"));
    let counts: Vec<&Value> = recorded
        .iter()
        .map(|e| &e["metadata"]["events_updated"])
        .collect();
    assert!(counts.contains(&&json!(3)) && counts.contains(&&json!(0)));

    // Every event still hashes, from what is served and its seal material, to its leaf.
    for id in &ids {
        let event = app.get(&format!("/api/v1/audit-logs/{id}"), &writer).await;
        let proof = app
            .get(&format!("/api/v1/integrity/proof/{id}"), &writer)
            .await;
        assert_eq!(proof.status, StatusCode::OK, "{:?}", proof.body);
        let parsed: Event = serde_json::from_value(event.body.clone()).expect("event");
        let seal = &proof.body["seal"];
        let prev: [u8; 32] = hex::decode(seal["prev"].as_str().expect("prev"))
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let slots = parse_seal_material(
            &hex::decode(seal["personal"].as_str().expect("personal")).expect("hex"),
        )
        .expect("version-2 seal material");
        let entry = reencode_v2(&EntryParts::of_event(&parsed), &prev, &slots).expect("entry");
        assert_eq!(
            json!(hex::encode(leaf_hash(&entry))),
            proof.body["leaf_hash"],
            "{id}"
        );
        assert_eq!(event.body["hash"], proof.body["leaf_hash"]);
    }
}

/// An id that is its own word (`cy7`: kept through its field's posting alone, not as a word
/// posting) is found by `q` as a word wherever it stands, and leaves search with the person.
#[tokio::test]
async fn an_id_that_is_its_own_word_is_searched_and_erased_as_a_word() {
    let app = spawn_app().await;
    let admin = app.key("acme", &["admin"]).await;
    let writer = app.key("acme", &["ingest", "read"]).await;
    let batch = json!([
        {"action": "doc.edited", "actor": {"id": "cy7", "name": "Cy"}},
        {"action": "user.updated", "actor": {"id": "bo-7"},
         "target": {"type": "user", "id": "cy7"}},
        {"action": "doc.read", "actor": {"id": "bo-7"}, "metadata": {"note": "asked by CY7"}},
        {"action": "doc.read", "actor": {"id": "cy-7"}}
    ]);
    let ingested = app.ingest(&writer, &batch).await;
    assert_eq!(ingested.status, StatusCode::CREATED, "{:?}", ingested.body);
    let found = |q: &'static str| {
        let (app, writer) = (&app, &writer);
        async move {
            let answer = app.get(&format!("/api/v1/audit-logs?q={q}"), writer).await;
            assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
            let mut seqs: Vec<u64> = answer.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|e| e["seq"].as_u64().expect("seq"))
                .collect();
            seqs.sort_unstable();
            seqs
        }
    };
    assert_eq!(found("cy7").await, [1, 2, 3]);
    assert_eq!(found("CY7%20doc").await, [1, 3]);
    let done = app
        .post("/api/v1/subjects/cy7/anonymize", &admin, &json!({}))
        .await;
    assert_eq!(done.body, json!({"events_updated": 2}), "{:?}", done.body);
    // What is left is the word in a note, which is nobody's personal value.
    assert_eq!(found("cy7").await, [3]);
}
