//! `sealtrail keys` on the store beside a running server, on both backends: a key created on
//! the command line works over HTTP at once, is listed, is revoked at once, and both acts are
//! recorded in its tenant; the server's own appends and the command line's interleave without
//! a gap in the log.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::{BIN, all_events};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "st_keystestkeystestkeystestkeystestkeystest0001";

fn keys(store: &[OsString], args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("keys")
        .args(args)
        .args(store)
        .output()
        .expect("sealtrail keys")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn keys_beside_a_running_server(root: &Path, store: Vec<OsString>) {
    let mut args = store.clone();
    if !store.iter().any(|a| a == "--data-dir") {
        args.extend(["--data-dir".into(), root.join("data").into_os_string()]);
    }
    let server = common::start(&args, Some(ADMIN), root).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();

    let out = keys(
        &store,
        &[
            "create",
            "--tenant",
            "acme",
            "--scope",
            "ingest,read",
            "--name",
            "ci",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let token = created["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("st_"));
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["scopes"], json!(["ingest", "read"]));

    // It works over HTTP at once, and the server's appends follow the command line's.
    for i in 0..3 {
        let r = http
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(&token)
            .json(&json!({"action": "keys.test", "actor": {"id": format!("u{i}")}}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let out = keys(&store, &["list", "--tenant", "acme", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], created["id"]);
    assert!(items[0].get("token").is_none(), "no token in a list");
    let table = keys(&store, &["list"]);
    assert!(
        text(&table).contains(created["id"].as_str().expect("id")),
        "{}",
        text(&table)
    );

    let out = keys(&store, &["revoke", created["id"].as_str().expect("id")]);
    assert!(out.status.success(), "{}", text(&out));
    let r = http
        .get(format!("{base}/api/v1/audit-logs"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "revoked at once");
    let out = keys(&store, &["revoke", "no-such-key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no key no-such-key"), "{}", text(&out));

    // Both acts are in the tenant's log, by the command line, around the server's events.
    let events = all_events(&http, &base, ADMIN, "acme").await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "audit.key_created",
            "keys.test",
            "keys.test",
            "keys.test",
            "audit.key_revoked"
        ]
    );
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(events[0]["actor"]["id"], "sealtrail-cli");
    assert_eq!(events[0]["actor"]["type"], "system");
    assert_eq!(events[0]["target"]["id"], created["id"]);
    // Bad input is refused before anything is written.
    for bad in [
        vec!["create", "--tenant", "*", "--scope", "read"],
        vec!["create", "--tenant", "acme", "--scope", "write"],
        vec!["create", "--tenant", "bad tenant!", "--scope", "read"],
    ] {
        let out = keys(&store, &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
    }
    drop(server);
}

#[tokio::test]
async fn keys_on_the_embedded_store() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    keys_beside_a_running_server(
        root.path(),
        vec!["--data-dir".into(), data.into_os_string()],
    )
    .await;
}

#[tokio::test]
async fn keys_on_postgres() {
    let Some((url, schema)) = sealtrail_store_postgres::testing::fresh_schema().await else {
        return;
    };
    let root = tempfile::tempdir().expect("dir");
    keys_beside_a_running_server(root.path(), common::postgres_args(url, schema)).await;
}
