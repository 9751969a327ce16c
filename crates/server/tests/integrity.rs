//! The integrity API end to end: signed checkpoints that verify with the published key, and
//! inclusion and consistency proofs that verify against them.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{event, spawn_app};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::{Method, StatusCode};
use sealtrail_ledger::checkpoint;
use sealtrail_ledger::merkle::{Hash, verify_consistency, verify_inclusion};
use serde_json::{Value, json};

fn hash(v: &Value) -> Hash {
    hex::decode(v.as_str().expect("hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_with_the_published_key() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    let a = app.get("/api/v1/integrity/checkpoint", &key).await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "no checkpoint before any event"
    );
    let batch: Vec<Value> = (0..5)
        .map(|i| event("proof.test", &format!("u{i}")))
        .collect();
    let ingested = app.ingest(&key, &Value::Array(batch)).await;
    assert_eq!(ingested.status, StatusCode::CREATED);
    let cp = app.checkpoint_at(&key, 5).await;

    let keys = app
        .raw(
            Method::GET,
            "/api/v1/integrity/public-keys",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(
        keys.status,
        StatusCode::OK,
        "public keys need no credential"
    );
    let k = &keys.body["keys"][0];
    assert_eq!(k["algorithm"], "ed25519");
    assert_eq!(k["key_id"], cp["key_id"]);
    let public: [u8; 32] = STANDARD
        .decode(k["public_key"].as_str().expect("b64"))
        .expect("b64")
        .try_into()
        .expect("32");
    let public = VerifyingKey::from_bytes(&public).expect("key");
    let head = checkpoint::verify(
        cp["note"].as_str().expect("note"),
        cp["key_id"].as_str().expect("id"),
        &public,
    )
    .expect("note verifies");
    assert_eq!(head.origin, "sealtrail/t");
    assert_eq!(head.size, 5);
    assert_eq!(head.root, hash(&cp["root_hash"]));
    let body = checkpoint::body(&head);
    let signature = Signature::from_slice(
        &STANDARD
            .decode(cp["signature"].as_str().expect("b64"))
            .expect("b64"),
    )
    .expect("sig");
    public
        .verify(body.as_bytes(), &signature)
        .expect("the bare signature covers the note body");

    for (i, e) in ingested.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .enumerate()
    {
        let id = e["id"].as_str().expect("id");
        let p = app
            .get(&format!("/api/v1/integrity/proof/{id}"), &key)
            .await;
        assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
        assert_eq!(p.body["leaf_index"], i as u64);
        assert_eq!(p.body["tree_size"], 5);
        assert_eq!(p.body["leaf_hash"], e["hash"]);
        let path: Vec<Hash> = p.body["audit_path"]
            .as_array()
            .expect("path")
            .iter()
            .map(hash)
            .collect();
        verify_inclusion(&hash(&e["hash"]), i as u64, 5, &path, &head.root)
            .expect("inclusion verifies");
    }

    let more: Vec<Value> = (0..3)
        .map(|i| event("proof.more", &format!("v{i}")))
        .collect();
    assert_eq!(
        app.ingest(&key, &Value::Array(more)).await.status,
        StatusCode::CREATED
    );
    let cp8 = app.checkpoint_at(&key, 8).await;
    let c = app
        .get("/api/v1/integrity/consistency?from=5&to=8", &key)
        .await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(
        (c.body["from"].as_u64(), c.body["to"].as_u64()),
        (Some(5), Some(8))
    );
    let proof: Vec<Hash> = c.body["proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(hash)
        .collect();
    verify_consistency(5, 8, &head.root, &hash(&cp8["root_hash"]), &proof)
        .expect("consistency verifies");
    // A proof for an older size than the latest checkpoint.
    let first = ingested.body["events"][0]["id"].as_str().expect("id");
    let p = app
        .get(&format!("/api/v1/integrity/proof/{first}?size=8"), &key)
        .await;
    assert_eq!(p.body["tree_size"], 8);

    // The witness file got every checkpoint.
    let witness =
        std::fs::read_to_string(app.data_dir.join("witness.ndjson")).expect("witness file");
    assert!(
        witness
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).expect("json")["size"] == 8)
    );
}

#[tokio::test]
async fn bad_proof_requests_are_4xx() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    let other = app.key("u", &["read"]).await;
    let a = app
        .ingest(
            &key,
            &json!([event("a", "u"), event("b", "u"), event("c", "u")]),
        )
        .await;
    let last = a.body["events"][2]["id"].as_str().expect("id").to_owned();
    app.checkpoint_at(&key, 3).await;
    let cases: Vec<(String, u16, &[&str])> = vec![
        ("/api/v1/integrity/proof/nope".into(), 400, &["id"]),
        (
            format!("/api/v1/integrity/proof/{}", uuid::Uuid::new_v4()),
            404,
            &[],
        ),
        (
            format!("/api/v1/integrity/proof/{last}?size=2"),
            400,
            &["size"],
        ),
        (
            format!("/api/v1/integrity/proof/{last}?size=99"),
            400,
            &["size"],
        ),
        (
            format!("/api/v1/integrity/proof/{last}?size=x"),
            400,
            &["size"],
        ),
        (
            "/api/v1/integrity/consistency?from=0&to=3".into(),
            400,
            &["from"],
        ),
        (
            "/api/v1/integrity/consistency?from=3&to=2".into(),
            400,
            &["from"],
        ),
        (
            "/api/v1/integrity/consistency?from=1&to=99".into(),
            400,
            &["to"],
        ),
        ("/api/v1/integrity/consistency?to=3".into(), 400, &["from"]),
        (
            "/api/v1/integrity/consistency?from=1&to=3&extra=1".into(),
            400,
            &["extra"],
        ),
    ];
    for (path, status, fields) in &cases {
        let r = app.get(path, &key).await;
        assert_eq!(r.status.as_u16(), *status, "{path}: {:?}", r.body);
        assert!(r.is_problem(), "{path}");
        assert_eq!(r.fields(), *fields, "{path}");
    }
    let r = app
        .get(&format!("/api/v1/integrity/proof/{last}"), &other)
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another tenant's event has no proof here"
    );
    let r = app.get("/api/v1/integrity/checkpoint", &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .raw(
            Method::GET,
            "/api/v1/integrity/checkpoint",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
