//! Exports end to end on both backends: `GET /audit-logs/export` as CSV, JSON and NDJSON read
//! back by real parsers (Rust's `csv`, Python's `csv` and `json`), a filtered NDJSON export
//! verified offline by `sealtrail verify --export` and its tampering caught, the export's own
//! `audit.exported` event recorded after it, tenant isolation, bad parameters, and `sealtrail
//! export` on the store beside the running server.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::{BIN, Running, all_events};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "st_exporttestexporttestexporttestexporttest01";

fn signing_key_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("signing.key");
    std::fs::write(&path, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").expect("key");
    path
}

/// Where the server under test keeps its events.
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

impl Backend {
    fn store_args(&self) -> Vec<OsString> {
        match self {
            Self::Sqlite(dir) => vec!["--data-dir".into(), dir.clone().into_os_string()],
            Self::Postgres { url, schema } => vec![
                "--database-url".into(),
                url.into(),
                "--database-schema".into(),
                schema.into(),
            ],
        }
    }
}

async fn start(root: &Path, backend: &Backend) -> Running {
    let mut args = backend.store_args();
    if let Backend::Postgres { .. } = backend {
        args.push("--data-dir".into());
        args.push(root.join("pg-data").into_os_string());
    }
    args.extend([
        "--signing-key".into(),
        signing_key_file(root).into_os_string(),
        // Long: the export itself must sign the checkpoint that covers it.
        "--checkpoint-every".into(),
        "1h".into(),
    ]);
    common::start(&args, Some(ADMIN), root).await
}

async fn key(http: &reqwest::Client, base: &str, tenant: &str, scopes: &[&str]) -> String {
    let r: Value = http
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": tenant, "scopes": scopes, "name": format!("{tenant} exporter")}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    r["token"].as_str().expect("token").to_owned()
}

/// Events with everything CSV must quote: commas, quotes, line breaks, non-ASCII text.
fn events() -> Vec<Value> {
    (0..120)
        .map(|i| {
            let action = ["doc.update", "doc.read", "user.login"][i % 3];
            json!({
                "action": action,
                "event_type": if i % 2 == 0 { json!("Document") } else { Value::Null },
                "outcome": if i % 7 == 0 { "failure" } else { "success" },
                "error": if i % 7 == 0 { json!("denied, \"really\"\nsecond line") } else { Value::Null },
                "actor": {"id": format!("u{}", i % 5), "name": format!("Zoë \"{}\", Ltd", i % 5), "email": "z@example.com"},
                "target": {"type": "document", "id": format!("d{}", i % 11), "name": "Q3, plan"},
                "organization": {"id": "acme"},
                "context": {"ip": "2001:db8::1", "user_agent": "curl/8", "method": "PATCH", "status_code": 200, "duration_ms": 12.5, "endpoint": "/docs/{id}"},
                "changes": if i % 3 == 0 { json!([{"field": "title", "old_value": "a", "new_value": format!("b{i}")}]) } else { json!([]) },
                "metadata": {"n": i, "note": "x,y"},
            })
        })
        .collect()
}

async fn get(http: &reqwest::Client, base: &str, path: &str, token: &str) -> reqwest::Response {
    http.get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("send")
}

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run sealtrail")
}

fn verify_file(file: &Path, key_file: &Path) -> std::process::Output {
    run(&[
        "verify".as_ref(),
        "--export".as_ref(),
        file.as_os_str(),
        "--public-key".as_ref(),
        key_file.as_os_str(),
    ])
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The CSV cell an event's JSON value becomes: null is empty, objects and arrays JSON text.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn exports_end_to_end(root: &Path, backend: Backend) {
    let server = start(root, &backend).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let t = key(&http, &base, "t", &["ingest", "read"]).await;
    let u = key(&http, &base, "u", &["ingest", "read"]).await;
    for chunk in events().chunks(40) {
        let r = http
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(&t)
            .json(&chunk)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = http
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(&u)
        .json(&json!([{"action": "other.tenant", "actor": {"id": "x"}}]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let listed = all_events(&http, &base, &t, "t").await;
    assert_eq!(
        listed.len(),
        121,
        "120 events and the key's audit.key_created"
    );

    // CSV, read back by the Rust csv crate: the header, and every cell from the list's JSON.
    let r = get(&http, &base, "/api/v1/audit-logs/export?format=csv", &t).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = r.headers()["content-disposition"].to_str().expect("ascii");
    assert!(
        disposition.starts_with("attachment; filename=\"sealtrail-t-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let csv_bytes = r.bytes().await.expect("body");
    let mut reader = csv::Reader::from_reader(csv_bytes.as_ref());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, sealtrail_store::export::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(
        rows.len(),
        listed.len(),
        "every event, and only this tenant's"
    );
    for (row, e) in rows.iter().zip(&listed) {
        let expected = [
            cell(&e["id"]),
            cell(&e["seq"]),
            cell(&e["recorded_at"]),
            cell(&e["occurred_at"]),
            cell(&e["tenant"]),
            cell(&e["action"]),
            cell(&e["category"]),
            cell(&e["event_type"]),
            cell(&e["outcome"]),
            cell(&e["error"]),
            cell(&e["actor"]["id"]),
            cell(&e["actor"]["type"]),
            cell(&e["actor"]["name"]),
            cell(&e["target"]["type"]),
            cell(&e["target"]["id"]),
            cell(&e["target"]["name"]),
            cell(&e["organization"]["id"]),
            cell(&e["context"]["ip"]),
            cell(&e["context"]["user_agent"]),
            cell(&e["context"]["correlation_id"]),
            cell(&e["context"]["endpoint"]),
            cell(&e["context"]["method"]),
            cell(&e["context"]["status_code"]),
            cell(&e["context"]["duration_ms"]),
        ];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(&row[i], want, "column {} of seq {}", header[i], e["seq"]);
        }
        let changes: Value = serde_json::from_str(&row[24]).expect("changes as JSON");
        assert_eq!(changes, e["changes"]);
        let metadata: Value = serde_json::from_str(&row[25]).expect("metadata as JSON");
        assert_eq!(metadata, e["metadata"]);
        assert_eq!(&row[26], e["hash"].as_str().expect("hash"));
    }

    // JSON: a bare array equal to the list, oldest first; desc on request.
    let r = get(&http, &base, "/api/v1/audit-logs/export?format=json", &t).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    let array: Vec<Value> = r.json().await.expect("a JSON array");
    assert!(
        array[..listed.len()] == listed[..],
        "the list, oldest first"
    );
    let since: Vec<&Value> = array[listed.len()..].iter().map(|e| &e["action"]).collect();
    assert_eq!(since, ["audit.exported"], "and the CSV export's own event");
    let r = get(
        &http,
        &base,
        "/api/v1/audit-logs/export?format=json&order=desc&action=user.login",
        &t,
    )
    .await;
    let desc: Vec<Value> = r.json().await.expect("array");
    let mut want: Vec<Value> = listed
        .iter()
        .filter(|e| e["action"] == "user.login")
        .cloned()
        .collect();
    want.reverse();
    assert!(desc == want, "user.login events, newest first");
    let r = get(
        &http,
        &base,
        "/api/v1/audit-logs/export?format=json&action=nothing.matches",
        &t,
    )
    .await;
    assert_eq!(
        r.json::<Vec<Value>>().await.expect("array"),
        Vec::<Value>::new()
    );

    // Each export was recorded after it, in the tenant, by the key that exported.
    let after = all_events(&http, &base, &t, "t").await;
    let exported: Vec<&Value> = after
        .iter()
        .filter(|e| e["action"] == "audit.exported")
        .collect();
    assert_eq!(exported.len(), 4, "four exports so far");
    assert_eq!(exported[0]["metadata"]["format"], "csv");
    assert_eq!(exported[0]["metadata"]["rows"], 121);
    assert_eq!(exported[0]["metadata"]["complete"], true);
    assert_eq!(exported[0]["actor"]["type"], "service");
    assert_eq!(exported[0]["actor"]["name"], "t exporter");
    assert!(exported[0]["seq"].as_u64() > listed.last().expect("events")["seq"].as_u64());

    // A filtered NDJSON export verifies offline with the public key alone.
    let keys: Value = get(&http, &base, "/api/v1/integrity/public-keys", &t)
        .await
        .json()
        .await
        .expect("keys");
    let key_file = root.join("public.key");
    std::fs::write(
        &key_file,
        keys["keys"][0]["public_key"].as_str().expect("key"),
    )
    .expect("write");
    for (name, query) in [
        ("filtered", "action=doc.update&outcome=success"),
        (
            "filtered-desc",
            "action=doc.update&outcome=success&order=desc",
        ),
        ("whole", ""),
        ("nothing", "action=nothing.matches"),
    ] {
        let r = get(
            &http,
            &base,
            &format!("/api/v1/audit-logs/export?format=ndjson&{query}"),
            &t,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        let body = r.text().await.expect("body");
        let file = root.join(format!("{name}.ndjson"));
        std::fs::write(&file, &body).expect("write");
        let out = verify_file(&file, &key_file);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        let events: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
            .filter(|v| v.get("seq").is_some())
            .collect();
        if name == "filtered" {
            assert!(!events.is_empty());
            assert!(
                events
                    .iter()
                    .all(|e| e["action"] == "doc.update" && e["outcome"] == "success")
            );
        }
        if name == "nothing" {
            assert!(events.is_empty());
        }
    }

    // Tampering with the filtered export is caught.
    let filtered = std::fs::read_to_string(root.join("filtered.ndjson")).expect("read");
    let lines: Vec<&str> = filtered.lines().collect();
    let at = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"seal\""))
        .nth(2)
        .expect("a third event line")
        .0;
    let target: Value = serde_json::from_str(lines[at]).expect("json");
    let write = |name: &str, lines: Vec<String>| {
        let file = root.join(name);
        std::fs::write(&file, lines.join("\n")).expect("write");
        verify_file(&file, &key_file)
    };
    let edit = |f: &dyn Fn(usize, &str) -> Option<String>| -> Vec<String> {
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| f(i, l))
            .collect()
    };
    // An event changed: named by seq and id.
    let out = write(
        "altered.ndjson",
        edit(&|i, l| {
            Some(if i == at {
                l.replace("doc.update", "doc.delete")
            } else {
                l.to_owned()
            })
        }),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).starts_with(&format!(
            "FAIL seq={} id={}: altered",
            target["seq"],
            target["id"].as_str().expect("id")
        )),
        "{}",
        text(&out)
    );
    // An event changed together with its hash: the root no longer matches.
    let out = write(
        "rehashed.ndjson",
        edit(&|i, l| {
            Some(if i == at {
                let mut v: Value = serde_json::from_str(l).expect("json");
                v["action"] = json!("doc.delete");
                v["hash"] = json!("00".repeat(32));
                v.to_string()
            } else {
                l.to_owned()
            })
        }),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("altered"), "{}", text(&out));
    // Gzip'd (as retention archives are), the same file verifies the same way, whatever its
    // name; a gzip stream cut short is an error, never a pass.
    let gzip = |from: &str, to: &str| {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(&std::fs::read(root.join(from)).expect("read"))
            .expect("gzip");
        let bytes = encoder.finish().expect("gzip");
        std::fs::write(root.join(to), &bytes).expect("write");
        bytes
    };
    gzip("filtered.ndjson", "filtered.ndjson.gz");
    let out = verify_file(&root.join("filtered.ndjson.gz"), &key_file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let bytes = gzip("altered.ndjson", "altered.archive");
    let out = verify_file(&root.join("altered.archive"), &key_file);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(": altered"), "{}", text(&out));
    std::fs::write(root.join("cut.ndjson.gz"), &bytes[..bytes.len() / 2]).expect("write");
    let out = verify_file(&root.join("cut.ndjson.gz"), &key_file);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("cut.ndjson.gz"), "{}", text(&out));
    // An event dropped, or a node dropped: missing.
    for (name, drop_at) in [
        ("dropped-event.ndjson", at),
        (
            "dropped-node.ndjson",
            lines
                .iter()
                .position(|l| l.starts_with("{\"node\""))
                .expect("a node line"),
        ),
    ] {
        let out = write(name, edit(&|i, l| (i != drop_at).then(|| l.to_owned())));
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(text(&out).contains(": missing "), "{name}: {}", text(&out));
    }
    // The checkpoint signed by another key proves nothing.
    let other = root.join("other.key");
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
    std::fs::write(
        &other,
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            other_key.as_bytes(),
        ),
    )
    .expect("write");
    let out = verify_file(&root.join("filtered.ndjson"), &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("bad-signature"), "{}", text(&out));

    // Python's csv and json modules read the same exports.
    std::fs::write(root.join("export.csv"), &csv_bytes).expect("write");
    let json_body = get(&http, &base, "/api/v1/audit-logs/export?format=json", &t)
        .await
        .bytes()
        .await
        .expect("body");
    std::fs::write(root.join("export.json"), &json_body).expect("write");
    let script = r#"
import csv, json, sys
root = sys.argv[1]
with open(root + "/export.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
with open(root + "/export.json", encoding="utf-8") as f:
    events = json.load(f)
with open(root + "/filtered.ndjson", encoding="utf-8") as f:
    lines = [json.loads(l) for l in f if l.strip()]
assert len(rows) == 121, len(rows)
assert [r["id"] for r in rows] == [e["id"] for e in events[:121]]
for r, e in zip(rows, events):
    assert r["actor_name"] == (e["actor"]["name"] or ""), (r["actor_name"], e["actor"]["name"])
    assert r["error"] == (e["error"] or "")
    assert json.loads(r["changes"]) == e["changes"]
    assert (json.loads(r["metadata"]) if r["metadata"] else None) == e["metadata"]
assert lines[0]["sealtrail_export"] == 2 and "checkpoint" in lines[1]
print("python read", len(rows), "csv rows,", len(events), "json events,", len(lines), "ndjson lines")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(root)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", text(&out));

    // Tenants stay apart: u's key cannot export t, and u's export holds u's events only.
    let r = get(&http, &base, "/api/v1/audit-logs/export?tenant=t", &u).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = get(&http, &base, "/api/v1/audit-logs/export?format=json", &u).await;
    let theirs: Vec<Value> = r.json().await.expect("array");
    assert!(theirs.iter().all(|e| e["tenant"] == "u"));
    assert!(theirs.iter().any(|e| e["action"] == "other.tenant"));
    // Without a read scope, or a credential, nothing is exported.
    let ingest_only = key(&http, &base, "t", &["ingest"]).await;
    let r = get(&http, &base, "/api/v1/audit-logs/export", &ingest_only).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .get(format!("{base}/api/v1/audit-logs/export"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Bad parameters are 400 naming them, and no export is recorded for them.
    let before = all_events(&http, &base, &t, "t").await.len();
    for (query, field) in [
        ("format=xml", "format"),
        ("limit=5", "limit"),
        ("cursor=abc", "cursor"),
        ("colour=red", "colour"),
        ("format=csv&format=json", "format"),
        ("from=yesterday", "from"),
    ] {
        let r = get(
            &http,
            &base,
            &format!("/api/v1/audit-logs/export?{query}"),
            &t,
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let problem: Value = r.json().await.expect("problem");
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    assert_eq!(all_events(&http, &base, &t, "t").await.len(), before);
    // /audit-logs/export is not taken for an event id.
    let r = get(&http, &base, "/api/v1/audit-logs/export", &t).await;
    assert_eq!(r.status(), StatusCode::OK);

    // `sealtrail export` reads the same store beside the running server, filtered, and its
    // export verifies too.
    let cli_file = root.join("cli.ndjson");
    let mut args: Vec<OsString> = vec!["export".into()];
    args.extend(backend.store_args());
    args.extend([
        "--tenant".into(),
        "t".into(),
        "--filter".into(),
        "action=doc.read".into(),
        "--out".into(),
        cli_file.clone().into_os_string(),
    ]);
    let out = std::process::Command::new(BIN)
        .args(&args)
        .output()
        .expect("export");
    assert!(out.status.success(), "{}", text(&out));
    let out = verify_file(&cli_file, &key_file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let cli_text = std::fs::read_to_string(&cli_file).expect("read");
    let cli_events = cli_text.lines().filter(|l| l.contains("\"seal\"")).count();
    assert_eq!(
        cli_events, 40,
        "the doc.read events the newest checkpoint covers"
    );
    // CSV from the CLI matches the server's.
    let mut args: Vec<OsString> = vec!["export".into()];
    args.extend(backend.store_args());
    args.extend([
        "--tenant".into(),
        "t".into(),
        "--format".into(),
        "csv".into(),
    ]);
    let out = std::process::Command::new(BIN)
        .args(&args)
        .output()
        .expect("export");
    assert!(out.status.success(), "{}", text(&out));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let cli_rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert!(
        cli_rows.len() > rows.len(),
        "it holds the audit events since"
    );
    assert_eq!(&cli_rows[..rows.len()], rows.as_slice());
    drop(server);

    // The whole NDJSON export, imported into a fresh server, gives back the same events; a
    // second import stores nothing.
    let target = match &backend {
        Backend::Sqlite(_) => Backend::Sqlite(root.join("imported")),
        Backend::Postgres { url, .. } => Backend::Postgres {
            url: url.clone(),
            schema: sealtrail_store_postgres::testing::fresh_schema()
                .await
                .expect("the source schema was made, so this one is")
                .1,
        },
    };
    let second_root = root.join("second");
    std::fs::create_dir_all(&second_root).expect("dir");
    let second = start(&second_root, &target).await;
    let importer = key(&http, &second.base, "t", &["ingest", "read"]).await;
    let import = |file: &Path| {
        std::process::Command::new(BIN)
            .args([
                "import",
                "--url",
                &second.base,
                "--token",
                &importer,
                "--batch",
                "7",
            ])
            .arg(file)
            .output()
            .expect("import")
    };
    let whole = root.join("whole.ndjson");
    let out = import(&whole);
    assert!(out.status.success(), "{}", text(&out));
    let exported: Vec<Value> = std::fs::read_to_string(&whole)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .filter(|v| v.get("seal").is_some())
        .collect();
    assert!(
        text(&out).contains(&format!("{} events read", exported.len()))
            && text(&out).contains(&format!("{} stored, 0 already there", exported.len())),
        "{}",
        text(&out)
    );
    let imported = all_events(&http, &second.base, &importer, "t").await;
    let sent = |e: &Value| {
        let changes: Vec<Value> = e["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| json!([c["field"], c["old_value"], c["new_value"]]))
            .collect();
        json!([
            e["id"],
            e["occurred_at"],
            e["action"],
            e["category"],
            e["outcome"],
            e["error"],
            e["actor"],
            e["target"],
            e["organization"],
            e["context"],
            e["metadata"],
            changes
        ])
    };
    let by_id: std::collections::HashMap<&str, &Value> = imported
        .iter()
        .map(|e| (e["id"].as_str().expect("id"), e))
        .collect();
    for e in &exported {
        let copy = by_id
            .get(e["id"].as_str().expect("id"))
            .unwrap_or_else(|| panic!("event {} imported", e["id"]));
        assert_eq!(sent(copy), sent(e));
    }
    let out = import(&whole);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("0 stored, {} already there", exported.len())),
        "{}",
        text(&out)
    );
    // Plain events: ids are derived from their lines, so a second run is all duplicates; a
    // bad line is named, and the batches before it stay stored.
    let plain = root.join("plain.ndjson");
    let mut plain_lines: Vec<String> = (0..20)
        .map(|i| json!({"action": "plain.event", "actor": {"id": format!("p{i}")}}).to_string())
        .collect();
    plain_lines.insert(3, String::new());
    std::fs::write(&plain, plain_lines.join("\n")).expect("write");
    for expected in ["20 stored, 0 already there", "0 stored, 20 already there"] {
        let out = import(&plain);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
    }
    plain_lines
        .push(json!({"action": "plain.event", "actor": {"id": "p", "type": "robot"}}).to_string());
    std::fs::write(&plain, plain_lines.join("\n")).expect("write");
    let out = import(&plain);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("line 22: actor.type"), "{}", text(&out));
    drop(second);
}

#[tokio::test]
async fn exports_on_the_embedded_store() {
    let root = tempfile::tempdir().expect("dir");
    let data = root.path().join("data");
    exports_end_to_end(root.path(), Backend::Sqlite(data)).await;
}

#[tokio::test]
async fn exports_on_postgres() {
    let Some((url, schema)) = sealtrail_store_postgres::testing::fresh_schema().await else {
        return;
    };
    let root = tempfile::tempdir().expect("dir");
    exports_end_to_end(root.path(), Backend::Postgres { url, schema }).await;
}
