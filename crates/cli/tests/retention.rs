//! `sealtrail retention run` on both backends: the rules set over HTTP, the run from the
//! command line (a dry run first), its answer, the archive verified by `sealtrail verify
//! --export` and the store by `sealtrail verify`, the receipt in the log.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::{all_events, public_key_of, run, text};
use serde_json::{Value, json};

const ADMIN: &str = "st_retentionretentionretentionretentiontes01";
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// Sets rules, ingests 40 events of which 20 are older than their rule keeps, runs retention
/// from the command line with `store` (the server stopped first for the embedded store) and
/// checks the answer, the archive, the store and the receipt.
async fn retention_from_the_command_line(root: &Path, store: Vec<OsString>, embedded: bool) {
    let key_file = root.join("signing.key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("key");
    let mut args = store.clone();
    if !embedded {
        args.extend(["--data-dir".into(), root.join("pg-data").into_os_string()]);
    }
    args.extend([
        "--signing-key".into(),
        key_file.into_os_string(),
        "--checkpoint-every-events".into(),
        "1".into(),
    ]);
    let mut server = common::start(&args, Some(ADMIN), root).await;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let now = sealtrail_model::Timestamp::now().micros();
    let events: Vec<Value> = (0..40)
        .map(|i| {
            let days = [2i64, 20, 60, 400][i % 4];
            json!({"action": if i % 2 == 0 { "auth.login" } else { "doc.read" },
                "actor": {"id": format!("u{}", i % 3)},
                "occurred_at": sealtrail_model::Timestamp::from_micros(now - days * 86_400_000_000 - i as i64).to_rfc3339()})
        })
        .collect();
    let r = http
        .post(format!("{base}/api/v1/events?tenant=acme"))
        .bearer_auth(ADMIN)
        .json(&events)
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), 201);
    // auth.* kept 10 days (those 60 days old go), the rest 30 (those 400 days old go): 20 of
    // the 40 have expired.
    let rules = json!({"default_days": 30, "rules": [{"action_prefix": "auth.", "days": 10}]});
    let r = http
        .put(format!("{base}/api/v1/tenants/acme/retention"))
        .bearer_auth(ADMIN)
        .json(&rules)
        .send()
        .await
        .expect("rules");
    assert_eq!(r.status(), 200);
    // Every event is covered by a checkpoint before the run (one per event).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let cp: Value = http
            .get(format!("{base}/api/v1/integrity/checkpoint?tenant=acme"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("checkpoint")
            .json()
            .await
            .expect("json");
        if cp["size"] == 41 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{cp}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if embedded {
        let pid = server.child.id().expect("pid").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        assert!(server.child.wait().await.expect("wait").success());
    }

    let retention = |dry: bool| {
        let mut a: Vec<OsString> = vec!["retention".into(), "run".into()];
        a.extend(store.clone());
        a.extend(["--tenant".into(), "acme".into()]);
        if !embedded {
            a.extend([
                "--archive-dir".into(),
                root.join("archives").into_os_string(),
            ]);
        }
        if dry {
            a.push("--dry-run".into());
        }
        run(&a)
    };
    let out = retention(true);
    assert!(out.status.success(), "{}", text(&out));
    let dry: Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(
        (dry["purged"].clone(), dry["dry_run"].clone()),
        (json!(20), json!(true))
    );
    let out = retention(false);
    assert!(out.status.success(), "{}", text(&out));
    let done: Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(done["purged"], 20);
    let archive = std::path::PathBuf::from(done["archive"].as_str().expect("archive"));
    let expected_dir = if embedded {
        store[1].clone().into_string().expect("utf-8") + "/archive/acme"
    } else {
        root.join("archives/acme").display().to_string()
    };
    assert!(archive.starts_with(&expected_dir), "{archive:?}");

    // The archive verifies offline with the public key alone; the store verifies whole.
    let public = root.join("public.b64");
    std::fs::write(&public, public_key_of(KEY)).expect("write");
    let out = run(&[
        "verify".into(),
        "--export".into(),
        archive.into_os_string(),
        "--public-key".into(),
        public.clone().into_os_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("20 exported events"), "{}", text(&out));
    let mut verify: Vec<OsString> = vec!["verify".into()];
    verify.extend(store.clone());
    verify.extend(["--public-key".into(), public.into_os_string()]);
    let out = run(&verify);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The receipt, recorded by the command line, and the twenty events left.
    if embedded {
        server = common::start(&args, Some(ADMIN), root).await;
    }
    let left = all_events(&http, &server.base, ADMIN, "acme").await;
    let kept = left
        .iter()
        .filter(|e| e["action"] == "auth.login" || e["action"] == "doc.read")
        .count();
    assert_eq!(kept, 20);
    let receipt = left
        .iter()
        .find(|e| e["action"] == "audit.purged")
        .expect("a receipt");
    assert_eq!(receipt["actor"]["id"], "sealtrail-cli");
    assert_eq!(receipt["metadata"]["trigger"], "cli");
    assert_eq!(receipt["metadata"]["count"], 20);
    drop(server);
}

#[tokio::test]
async fn retention_runs_from_the_command_line_on_the_embedded_store() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    retention_from_the_command_line(
        root.path(),
        vec!["--data-dir".into(), data.into_os_string()],
        true,
    )
    .await;
}

#[tokio::test]
async fn retention_runs_from_the_command_line_on_postgres() {
    let Some((url, schema)) = sealtrail_store_postgres::testing::fresh_schema().await else {
        return;
    };
    let root = tempfile::tempdir().expect("dir");
    retention_from_the_command_line(root.path(), common::postgres_args(url, schema), false).await;
}
