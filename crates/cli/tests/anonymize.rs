//! `sealtrail anonymize` on both backends: events with a person's data ingested over HTTP, the
//! person erased from the command line (the embedded store with its server stopped), the
//! answer, a second run that finds nothing, `sealtrail verify` of the store, and (embedded) no
//! byte of the person's name, e-mail, ip or user agent left in the data directory.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::{all_events, public_key_of, run, text};
use serde_json::{Value, json};

const ADMIN: &str = "st_anonymizeanonymizeanonymizeanonymizetes01";
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const SECRETS: [&str; 4] = [
    "Ann Erasable",
    "ann.erasable@example.com",
    "192.0.2.55",
    "ErasableBrowser",
];

/// Which of [`SECRETS`] some file under `dir` holds, as bytes.
fn traces(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            for s in SECRETS {
                if bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
                    found.push(format!("{s} in {}", path.display()));
                }
            }
        }
    }
    found
}

async fn anonymize_from_the_command_line(root: &Path, store: Vec<OsString>, embedded: bool) {
    let key_file = root.join("signing.key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("key");
    let mut args = store.clone();
    if !embedded {
        args.extend(["--data-dir".into(), root.join("pg-data").into_os_string()]);
    }
    args.extend(["--signing-key".into(), key_file.into_os_string()]);
    let mut server = common::start(&args, Some(ADMIN), root).await;
    let http = reqwest::Client::new();
    let ann = json!({"id": "ann-1", "name": "Ann Erasable", "email": "ann.erasable@example.com"});
    let context = json!({"ip": "192.0.2.55", "user_agent": "ErasableBrowser/3"});
    let events = json!([
        {"action": "doc.read", "actor": ann, "context": context},
        {"action": "doc.read", "actor": {"id": "bo-2", "name": "Bo"}, "context": {"ip": "10.1.1.1"}},
        {"action": "doc.edit", "actor": ann, "context": context,
         "changes": [{"field": "author", "old_value": "ann.erasable@example.com", "new_value": "x"}]}
    ]);
    let r = http
        .post(format!("{}/api/v1/events?tenant=acme", server.base))
        .bearer_auth(ADMIN)
        .json(&events)
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), 201);
    if embedded {
        let pid = server.child.id().expect("pid").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        assert!(server.child.wait().await.expect("wait").success());
        assert!(
            !traces(&root.join("data")).is_empty(),
            "the data holds Ann before"
        );
    }

    let anonymize = || {
        let mut a: Vec<OsString> = vec!["anonymize".into()];
        a.extend(store.clone());
        a.extend([
            "--tenant".into(),
            "acme".into(),
            "--subject".into(),
            "ann-1".into(),
        ]);
        run(&a)
    };
    let out = anonymize();
    assert!(out.status.success(), "{}", text(&out));
    let done: Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(done, json!({"events_updated": 2}));
    let out = anonymize();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).expect("json"),
        json!({"events_updated": 0})
    );
    if embedded {
        assert_eq!(traces(&root.join("data")), Vec::<String>::new());
    }
    let public = root.join("public.b64");
    std::fs::write(&public, public_key_of(KEY)).expect("write");
    let mut verify: Vec<OsString> = vec!["verify".into()];
    verify.extend(store.clone());
    verify.extend(["--public-key".into(), public.into_os_string()]);
    let out = run(&verify);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    if embedded {
        server = common::start(&args, Some(ADMIN), root).await;
    }
    let all = all_events(&http, &server.base, ADMIN, "acme").await;
    let served = serde_json::to_string(&all).expect("json");
    for s in SECRETS {
        assert!(!served.contains(s), "{s} is served");
    }
    let audit: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "audit.anonymized")
        .collect();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0]["actor"]["id"], "sealtrail-cli");
    assert_eq!(audit[0]["metadata"]["trigger"], "cli");
    assert_eq!(audit[0]["metadata"]["events_updated"], 2);
    drop(server);
}

#[tokio::test]
async fn anonymize_runs_from_the_command_line_on_the_embedded_store() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    anonymize_from_the_command_line(
        root.path(),
        vec!["--data-dir".into(), data.into_os_string()],
        true,
    )
    .await;
}

#[tokio::test]
async fn anonymize_runs_from_the_command_line_on_postgres() {
    let Some((url, schema)) = sealtrail_store_postgres::testing::fresh_schema().await else {
        return;
    };
    let root = tempfile::tempdir().expect("dir");
    anonymize_from_the_command_line(root.path(), common::postgres_args(url, schema), false).await;
}
