//! Tests of the real `sealtrail` binary: help, first start, SIGTERM, and `kill -9` in the
//! middle of concurrent ingestion.

use std::path::Path;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;

use common::{BIN, Running, all_events};

const ADMIN: &str = "st_binarytestbinarytestbinarytestbinarytest01";

/// Starts `sealtrail serve` with its embedded store in `data_dir` on a free port.
async fn start(data_dir: &Path, admin_token: Option<&str>) -> Running {
    let args = vec!["--data-dir".into(), data_dir.as_os_str().to_owned()];
    common::start(&args, admin_token, data_dir.parent().expect("parent")).await
}

async fn make_key(http: &reqwest::Client, base: &str, admin: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth(admin)
        .json(&json!({"tenant": "t", "scopes": ["ingest", "read"], "name": "test"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// Runs clients that ingest until their requests fail, recording every acknowledged id.
fn spawn_clients(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    acked: &Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|c| {
            let (http, url, token, acked) = (http.clone(), format!("{base}/api/v1/events"), token.to_owned(), acked.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    // Alternate single events and batches of 10.
                    let body = if i % 2 == 0 {
                        json!({"action": "crash.test", "actor": {"id": format!("c{c}")}})
                    } else {
                        Value::Array((0..10).map(|j| json!({"action": "crash.test", "actor": {"id": format!("c{c}-{j}")}})).collect())
                    };
                    let Ok(r) = http.post(&url).bearer_auth(&token).json(&body).send().await else { break };
                    if r.status() != StatusCode::CREATED {
                        break;
                    }
                    let Ok(v) = r.json::<Value>().await else { break };
                    let mut acked = acked.lock().expect("lock");
                    for e in v["events"].as_array().expect("events") {
                        acked.push(e["id"].as_str().expect("id").to_owned());
                    }
                }
            })
        })
        .collect()
}

/// Starts the server and clients that ingest into it, and waits for `n` acknowledged events.
async fn ingest_concurrently(
    data: &Path,
    n: usize,
) -> (
    Running,
    Arc<Mutex<Vec<String>>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let server = start(data, Some(ADMIN)).await;
    let http = reqwest::Client::new();
    let key = make_key(&http, &server.base, ADMIN).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients = spawn_clients(&http, &server.base, &key, &acked);
    wait_for_acks(&acked, n).await;
    (server, acked, clients)
}

async fn wait_for_acks(acked: &Arc<Mutex<Vec<String>>>, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().expect("lock").len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "ingest made no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn assert_all_acked_present_and_gap_free(data_dir: &Path, acked: &[String]) {
    let server = start(data_dir, Some(ADMIN)).await;
    let http = reqwest::Client::new();
    let events = all_events(&http, &server.base, ADMIN, "t").await;
    // Reading through the global admin key records one audit event after the read; ignore it.
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    for id in acked {
        assert!(
            ids.contains(id.as_str()),
            "acknowledged event {id} is stored"
        );
    }
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq is gap-free"
    );
}

#[test]
fn help_is_clear_for_every_command() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["verify", "--help"],
    ] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        assert!(text.contains("Usage: sealtrail"), "{text}");
        if args[0] == "serve" {
            for needle in [
                "--listen",
                "--data-dir",
                "--database-url",
                "--read-database-url",
                "--database-schema",
                "--no-migrate",
                "--config",
                "SEALTRAIL_LISTEN",
                "SEALTRAIL_DATABASE_URL",
                "127.0.0.1:8080",
                "./sealtrail-data",
            ] {
                assert!(
                    text.contains(needle),
                    "serve --help mentions {needle}:\n{text}"
                );
            }
        } else if args[0] == "migrate" || args[0] == "verify" {
            assert!(text.contains("--database-url"), "{args:?}:\n{text}");
            assert!(text.contains("--database-schema"), "{args:?}:\n{text}");
        } else {
            for command in ["serve", "verify", "export", "migrate"] {
                assert!(text.contains(command), "--help lists {command}:\n{text}");
            }
        }
    }
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "nowhere"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "bad flags are a usage error");
}

#[tokio::test]
async fn first_start_prints_an_admin_key_once() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    let mut server = start(&data, None).await;
    let token = {
        let lines = server.stderr.lock().expect("lock");
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("st_").map(|t| format!("st_{t}")))
            .expect("the admin token is printed")
    };
    let http = reqwest::Client::new();
    let key = make_key(&http, &server.base, &token).await;
    let r = http
        .post(format!("{}/api/v1/events", server.base))
        .bearer_auth(&key)
        .json(&json!({"action": "a", "actor": {"id": "u"}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    server.child.kill().await.expect("kill");
    let mut again = start(&data, None).await;
    // Give the second process a request to answer, so its start-up output is complete.
    let r = http
        .get(format!("{}/healthz", again.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        !again
            .stderr
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l.trim().starts_with("st_")),
        "printed only once"
    );
    let r = http
        .get(format!("{}/api/v1/keys", again.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK, "the first key still works");
    again.child.kill().await.expect("kill");
}

#[tokio::test]
async fn kill_9_during_concurrent_ingest_loses_no_acknowledged_event() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    let (mut server, acked, clients) = ingest_concurrently(&data, 500).await;
    // SIGKILL: no chance to flush or clean up.
    server.child.start_kill().expect("kill -9");
    server.child.wait().await.expect("wait");
    for c in clients {
        c.await.expect("client");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 500);
    assert_all_acked_present_and_gap_free(&data, &acked).await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_cleanly() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    let (mut server, acked, clients) = ingest_concurrently(&data, 300).await;
    let pid = server.child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = server.child.wait().await.expect("wait");
    assert!(exit.success(), "exits 0 after SIGTERM: {exit:?}");
    for c in clients {
        c.await.expect("client");
    }
    let acked = acked.lock().expect("lock").clone();
    assert_all_acked_present_and_gap_free(&data, &acked).await;
}

#[tokio::test]
async fn verify_passes_a_clean_store_and_names_a_tampered_event() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"action": "verify.test", "actor": {"id": format!("u{i}"), "name": "Ann"}}))
        .collect();
    let (ingested, public) = ingest_then_stop(&data, &batch).await;

    let verify = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("verify")
            .args(args)
            .output()
            .expect("run verify")
    };
    let data_arg = data.to_str().expect("utf-8");
    let clean = verify(&["--data-dir", data_arg]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(clean.stdout.is_empty());
    assert!(String::from_utf8_lossy(&clean.stderr).contains("everything verifies"));
    // Keys given on the command line replace the data directory's own list.
    let right = root.path().join("right.b64");
    std::fs::write(&right, &public).expect("write");
    let wrong = root.path().join("wrong.b64");
    std::fs::write(&wrong, base64_of([5u8; 32])).expect("write");
    let pinned = verify(&[
        "--data-dir",
        data_arg,
        "--public-key",
        right.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        pinned.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pinned.stdout)
    );
    let other = verify(&[
        "--data-dir",
        data_arg,
        "--public-key",
        wrong.to_str().expect("utf-8"),
    ]);
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stdout).contains("bad-signature"));

    // Someone with the file edits an event, past the triggers.
    let conn = rusqlite::Connection::open(data.join("sealtrail.db")).expect("open");
    conn.execute_batch("DROP TRIGGER log_immutable_update")
        .expect("drop");
    conn.execute("UPDATE log SET entry = unhex(replace(hex(entry), hex('verify.test'), hex('verify.tesT'))) WHERE tenant = 't' AND seq = 7", [])
        .expect("tamper");
    let tampered = verify(&["--data-dir", data_arg]);
    assert_eq!(tampered.status.code(), Some(1));
    let out = String::from_utf8(tampered.stdout).expect("utf-8");
    // seq 1 of tenant t is the audit.key_created event, so the 6th ingested event is seq 7.
    let id = ingested["events"][5]["id"].as_str().expect("id");
    assert!(
        out.lines()
            .next()
            .expect("a finding")
            .starts_with(&format!("FAIL seq=7 id={id}: altered")),
        "{out}"
    );

    let missing = verify(&[
        "--data-dir",
        root.path().join("nowhere").to_str().expect("utf-8"),
    ]);
    assert_eq!(missing.status.code(), Some(2));
    let usage = verify(&[]);
    assert_eq!(usage.status.code(), Some(2));
}

#[tokio::test]
async fn an_export_verifies_offline_with_only_the_public_key() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    let batch: Vec<Value> = (0..12)
        .map(|i| json!({"action": "export.test", "actor": {"id": format!("u{}", i % 3), "name": "Ann"}, "context": {"ip": "10.0.0.1"}}))
        .collect();
    let (_, public) = ingest_then_stop(&data, &batch).await;

    let export = root.path().join("t.ndjson");
    let key_file = root.path().join("public.key");
    std::fs::write(&key_file, &public).expect("write key");
    let out = std::process::Command::new(BIN)
        .args([
            "export",
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--tenant",
            "t",
            "--out",
            export.to_str().expect("utf-8"),
        ])
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = |file: &std::path::Path| {
        std::process::Command::new(BIN)
            .args([
                "verify",
                "--export",
                file.to_str().expect("utf-8"),
                "--public-key",
                key_file.to_str().expect("utf-8"),
            ])
            .output()
            .expect("verify")
    };
    let clean = verify(&export);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&clean.stdout),
        String::from_utf8_lossy(&clean.stderr)
    );

    // Alter one exported event, and drop another: both are named.
    let text = std::fs::read_to_string(&export).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let fifth: Value = serde_json::from_str(lines[5]).expect("json");
    let altered: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 5 {
                l.replace("export.test", "export.tesT")
            } else {
                (*l).to_owned()
            }
        })
        .collect();
    let tampered = root.path().join("altered.ndjson");
    std::fs::write(&tampered, altered.join("\n")).expect("write");
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    let first = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        first.starts_with(&format!(
            "FAIL seq={} id={}: altered",
            fifth["seq"],
            fifth["id"].as_str().expect("id")
        )),
        "{first}"
    );
    let dropped: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, l)| *l)
        .collect();
    std::fs::write(&tampered, dropped.join("\n")).expect("write");
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    let first = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        first.starts_with(&format!("FAIL seq={} id=-: missing", fifth["seq"])),
        "{first}"
    );
    // Personal values are checked offline too (entry version 2: each is digested again under
    // the opening the export carries): another actor's name, another actor, another ip.
    for (line, from, to) in [
        (7, "\"name\":\"Ann\"", "\"name\":\"Eve\""),
        (8, "\"id\":\"u2\"", "\"id\":\"u9\""),
        (9, "10.0.0.1", "10.0.0.9"),
    ] {
        assert!(lines[line].contains(from), "{}", lines[line]);
        let mut altered: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        altered[line] = altered[line].replace(from, to);
        std::fs::write(&tampered, altered.join("\n")).expect("write");
        let out = verify(&tampered);
        assert_eq!(out.status.code(), Some(1), "{to}");
        let event: Value = serde_json::from_str(lines[line]).expect("json");
        let first = String::from_utf8(out.stdout).expect("utf-8");
        assert!(
            first.starts_with(&format!("FAIL seq={} id=", event["seq"])),
            "{to}: {first}"
        );
    }
    // The wrong key proves nothing.
    std::fs::write(&key_file, base64_of([5u8; 32])).expect("write");
    let out = verify(&export);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .contains("bad-signature")
    );
}

/// Starts the server, ingests `batch` into tenant `t`, and stops it with SIGTERM (which signs a
/// last checkpoint). Returns the ingest answer and the signing public key (base64).
async fn ingest_then_stop(data: &Path, batch: &[Value]) -> (Value, String) {
    let mut server = start(data, Some(ADMIN)).await;
    let http = reqwest::Client::new();
    let key = make_key(&http, &server.base, ADMIN).await;
    let r = http
        .post(format!("{}/api/v1/events", server.base))
        .bearer_auth(&key)
        .json(&batch)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let ingested: Value = r.json().await.expect("json");
    let keys: Value = http
        .get(format!("{}/api/v1/integrity/public-keys", server.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let public = keys["keys"][0]["public_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let pid = server.child.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(
        server.child.wait().await.expect("wait").success(),
        "exits 0 after SIGTERM and signs a last checkpoint"
    );
    (ingested, public)
}

fn base64_of(bytes: [u8; 32]) -> String {
    use base64::Engine;
    let key = ed25519_dalek::SigningKey::from_bytes(&bytes).verifying_key();
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

#[tokio::test]
async fn logs_to_a_pipe_are_plain_and_the_address_is_said_once() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SEALTRAIL_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("SEALTRAIL_ADMIN_TOKEN")
        .env_remove("SEALTRAIL_CONFIG")
        .env_remove("SEALTRAIL_DATABASE_URL")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sealtrail");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    // The info line about signing follows the listening line: read up to it.
    while let Some(line) = lines.next_line().await.expect("read stderr") {
        let done = line.contains("checkpoints are signed");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("checkpoints are signed")),
        "the server stopped early: {seen:?}"
    );
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a piped log: {seen:?}"
    );
    let address = seen
        .iter()
        .find_map(|l| l.split("listening on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the listening line")
        .to_owned();
    let mentions = seen.iter().filter(|l| l.contains(&address)).count();
    assert_eq!(mentions, 1, "the address is said once: {seen:?}");
    child.kill().await.expect("kill");
}
