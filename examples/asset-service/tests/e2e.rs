//! End to end with the real binaries: `sealtrail` and `asset-service`, over real HTTP. sealtrail
//! stops while the app keeps serving writes and comes back; the app is killed with `kill -9`
//! while events wait in its spool; a refused event is never retried.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ADMIN: &str = "st_assete2eassete2eassete2eassete2eassete2e01";
const SECRET: &str = "e2e-secret";

/// A binary of this workspace, built beside the test (the workspace test command builds all).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the workspace test command (cargo nextest run --workspace)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Spawns a program and waits for its "listening on" line.
async fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .expect("stderr")
            .expect("exited before listening");
        if line.contains("listening on") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

async fn start_sealtrail(data: &Path, port: u16) -> Child {
    let mut cmd = Command::new(bin("sealtrail"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data)
    .env("SEALTRAIL_ADMIN_TOKEN", ADMIN)
    .env("SEALTRAIL_LOG", "warn")
    .env_remove("SEALTRAIL_DATABASE_URL")
    .env_remove("SEALTRAIL_CONFIG")
    .current_dir(data.parent().expect("parent"));
    spawn(cmd).await
}

async fn start_app(port: u16, sealtrail_port: u16, token: &str, spool: &Path) -> Child {
    let mut cmd = Command::new(bin("asset-service"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--sealtrail-url",
            &format!("http://127.0.0.1:{sealtrail_port}"),
        ])
        .args(["--sealtrail-token", token, "--spool-dir"])
        .arg(spool)
        .env("ASSET_SERVICE_JWT_SECRET", SECRET)
        .env("ASSET_SERVICE_LOG", "warn");
    spawn(cmd).await
}

async fn stop(mut child: Child, signal: &str) {
    let pid = child.id().expect("pid");
    std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    child.wait().await.expect("wait");
}

/// An ingest-and-read key of tenant `assets`.
async fn make_key(http: &reqwest::Client, sealtrail: u16) -> String {
    let v: Value = http
        .post(format!("http://127.0.0.1:{sealtrail}/api/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"tenant": "assets", "scopes": ["ingest", "read"], "name": "asset-service"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    v["token"].as_str().expect("token").to_owned()
}

fn jwt(sub: &str) -> String {
    let claims = json!({"sub": sub, "name": "Ann Example", "exp": 4_000_000_000u64});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
    )
    .expect("jwt")
}

struct App {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl App {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The app's events of tenant `assets` in sealtrail, in seq order (as the admin; the
/// `audit.*` events sealtrail records about keys and these very reads are left out).
async fn sealtrail_events(http: &reqwest::Client, sealtrail: u16) -> Vec<Value> {
    let r = http
        .get(format!(
            "http://127.0.0.1:{sealtrail}/api/v1/audit-logs?tenant=assets&order=asc&limit=1000"
        ))
        .bearer_auth(ADMIN)
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.expect("json")["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                !e["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("audit."))
            })
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// Waits (bounded) until sealtrail holds `n` events of tenant `assets`.
async fn wait_for_events(http: &reqwest::Client, sealtrail: u16, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let events = sealtrail_events(http, sealtrail).await;
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sealtrail never held {n} events of tenant assets");
}

fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or("-").to_owned())
        .collect()
}

/// One sealtrail (running, with an ingest-and-read key of tenant `assets`) and the places
/// an app beside it uses.
struct World {
    _dir: tempfile::TempDir,
    data: PathBuf,
    spool: PathBuf,
    sealtrail_port: u16,
    app_port: u16,
    http: reqwest::Client,
    token: String,
}

impl World {
    async fn start() -> (Self, Child) {
        let dir = tempfile::tempdir().expect("dir");
        let (sealtrail_port, app_port) = (free_port(), free_port());
        let data = dir.path().join("data");
        let spool = dir.path().join("spool");
        let sealtrail = start_sealtrail(&data, sealtrail_port).await;
        let http = reqwest::Client::new();
        let token = make_key(&http, sealtrail_port).await;
        let world = Self {
            _dir: dir,
            data,
            spool,
            sealtrail_port,
            app_port,
            http,
            token,
        };
        (world, sealtrail)
    }

    /// Starts the app, and a client for it acting as `user`.
    async fn app(&self, user: &str) -> (Child, App) {
        let child = start_app(self.app_port, self.sealtrail_port, &self.token, &self.spool).await;
        let client = App {
            http: self.http.clone(),
            base: format!("http://127.0.0.1:{}/api/v1", self.app_port),
            token: jwt(user),
        };
        (child, client)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealtrail_down_and_back_every_event_arrives_once_in_order() {
    let (w, sealtrail) = World::start().await;
    let (app, app_client) = w.app("u-42").await;
    use reqwest::Method;
    let (status, asset) = app_client
        .call(
            Method::POST,
            "/assets",
            json!({"name": "Laptop", "serial": "S-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = asset["id"].as_str().expect("id").to_owned();
    let (status, _) = app_client
        .call(
            Method::POST,
            &format!("/assets/{id}/assign"),
            json!({"user_id": "u-7"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_events(&w.http, w.sealtrail_port, 2).await; // CREATED, ASSIGNED
    stop(sealtrail, "-TERM").await;
    // sealtrail is down: the app answers as before.
    let (status, transfer) = app_client
        .call(
            Method::POST,
            &format!("/assets/{id}/transfer"),
            json!({"user_id": "u-8"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let transfer_id = transfer["transfer_id"]
        .as_str()
        .expect("transfer")
        .to_owned();
    let (status, _) = app_client
        .call(
            Method::POST,
            &format!("/assets/{id}/notes"),
            json!({"text": "dent on the lid"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app_client
        .call(
            Method::PATCH,
            &format!("/assets/{id}"),
            json!({"status": "MAINTENANCE"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sealtrail = start_sealtrail(&w.data, w.sealtrail_port).await;
    let (status, _) = app_client
        .call(Method::POST, &format!("/assets/{id}/retire"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = wait_for_events(&w.http, w.sealtrail_port, 7).await;
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), events.len(), "no event twice");
    assert_eq!(
        event_types(&events),
        [
            "CREATED",
            "ASSIGNED",
            "TRANSFERRED",
            "ASSIGNED",
            "NOTE_ADDED",
            "STATUS_CHANGED",
            "RETIRED"
        ],
        "every event once, in order"
    );
    // The layer filled actor and context; the transfer links its assignment through related.
    let transferred = &events[2];
    assert_eq!(transferred["actor"]["id"], "u-42");
    assert_eq!(
        transferred["context"]["endpoint"],
        "/api/v1/assets/{id}/transfer"
    );
    assert_eq!(transferred["context"]["method"], "POST");
    assert_eq!(transferred["context"]["status_code"], 200);
    assert_eq!(transferred["related"][0]["id"], transfer_id);
    assert_eq!(events[3]["related"][0]["id"], transfer_id);
    assert_eq!(
        events[3]["actor"]["id"], "u-42",
        "the follow-up event keeps the actor"
    );
    // The app serves the history from sealtrail, oldest first, by event type too.
    let (status, history) = app_client
        .call(Method::GET, &format!("/assets/{id}/history"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "CREATED",
            "ASSIGNED",
            "TRANSFERRED",
            "ASSIGNED",
            "NOTE_ADDED",
            "STATUS_CHANGED",
            "RETIRED"
        ]
    );
    let (_, assigned) = app_client
        .call(
            Method::GET,
            &format!("/assets/{id}/history/ASSIGNED?limit=1"),
            Value::Null,
        )
        .await;
    assert_eq!(assigned["items"].as_array().map(Vec::len), Some(1));
    assert!(assigned["next_cursor"].is_string(), "paginated");
    stop(app, "-TERM").await;
    stop(sealtrail, "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_the_spool_survive_kill_9_and_arrive_after_restart() {
    let (w, sealtrail) = World::start().await;
    stop(sealtrail, "-TERM").await;
    let (app, app_client) = w.app("u-1").await;
    for i in 0..5 {
        let (status, _) = app_client
            .call(
                reqwest::Method::POST,
                "/assets",
                json!({"name": format!("Chair {i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // Wait until all five are in the spool, synced, then kill the app without warning.
    let spool_file = w.spool.join("spool.ndjson");
    for _ in 0..300 {
        let lines = std::fs::read_to_string(&spool_file).map_or(0, |t| t.lines().count());
        if lines == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spooled = std::fs::read_to_string(&spool_file).expect("spool");
    assert_eq!(spooled.lines().count(), 5, "{spooled}");
    stop(app, "-KILL").await;
    let sealtrail = start_sealtrail(&w.data, w.sealtrail_port).await;
    let app = start_app(w.app_port, w.sealtrail_port, &w.token, &w.spool).await;
    let events = wait_for_events(&w.http, w.sealtrail_port, 5).await;
    assert_eq!(event_types(&events), ["CREATED"; 5]);
    stop(app, "-TERM").await;
    stop(sealtrail, "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sealtrail_refuses_is_dead_lettered_and_never_retried() {
    let (w, sealtrail) = World::start().await;
    let (app, app_client) = w.app("u-1").await;
    let (_, asset) = app_client
        .call(reqwest::Method::POST, "/assets", json!({"name": "Desk"}))
        .await;
    let id = asset["id"].as_str().expect("id").to_owned();
    // A note of 70 KB makes an event over sealtrail's 64 KiB limit: a 422.
    let (status, _) = app_client
        .call(
            reqwest::Method::POST,
            &format!("/assets/{id}/notes"),
            json!({"text": "x".repeat(70_000)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "the app answers normally");
    let (status, _) = app_client
        .call(
            reqwest::Method::POST,
            &format!("/assets/{id}/retire"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = wait_for_events(&w.http, w.sealtrail_port, 2).await;
    assert_eq!(event_types(&events), ["CREATED", "RETIRED"]);
    let dead = std::fs::read_to_string(w.spool.join("dead-letter.ndjson")).expect("dead letters");
    assert_eq!(dead.lines().count(), 1, "refused once and never sent again");
    let entry: Value = serde_json::from_str(dead.lines().next().expect("line")).expect("json");
    assert_eq!(entry["status"], 422);
    assert_eq!(entry["event"]["event_type"], "NOTE_ADDED");
    stop(app, "-TERM").await;
    stop(sealtrail, "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_records_its_event_type_with_changes_and_links() {
    use reqwest::Method;
    let (w, sealtrail) = World::start().await;
    let (app, c) = w.app("u-3").await;
    let (_, asset) = c
        .call(Method::POST, "/assets", json!({"name": "Printer"}))
        .await;
    let id = asset["id"].as_str().expect("id").to_owned();
    let (status, _) = c
        .call(
            Method::PATCH,
            &format!("/assets/{id}"),
            json!({"location": "Floor 2"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, m) = c
        .call(
            Method::POST,
            &format!("/assets/{id}/maintenance"),
            json!({"description": "toner"}),
        )
        .await;
    let ticket = m["maintenance_id"].as_str().expect("ticket").to_owned();
    let (status, _) = c
        .call(
            Method::POST,
            &format!("/maintenance/{ticket}/complete"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, doc) = c
        .call(
            Method::POST,
            &format!("/assets/{id}/documents"),
            json!({"name": "manual.pdf"}),
        )
        .await;
    let doc_id = doc["id"].as_str().expect("doc").to_owned();
    let (status, _) = c
        .call(
            Method::DELETE,
            &format!("/assets/{id}/documents/{doc_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = c
        .call(
            Method::DELETE,
            &format!("/assets/{id}/documents/D-none"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = c
        .call(Method::DELETE, &format!("/assets/{id}"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let events = wait_for_events(&w.http, w.sealtrail_port, 8).await;
    assert_eq!(
        event_types(&events),
        [
            "CREATED",
            "UPDATED",
            "MAINTENANCE_SCHEDULED",
            "MAINTENANCE_COMPLETED",
            "DOCUMENT_ADDED",
            "DOCUMENT_REMOVED",
            "DOCUMENT_REMOVED",
            "DELETED"
        ]
    );
    assert_eq!(events[1]["changes"][0]["field"], "location");
    assert_eq!(events[1]["changes"][0]["new_value"], "Floor 2");
    assert_eq!(
        events[2]["related"][0],
        json!({"type": "maintenance", "id": ticket})
    );
    assert_eq!(
        events[3]["related"][0],
        json!({"type": "maintenance", "id": ticket})
    );
    assert_eq!(
        events[4]["related"][0],
        json!({"type": "document", "id": doc_id})
    );
    assert_eq!(
        events[6]["outcome"], "failure",
        "a failed request is audited as a failure"
    );
    assert_eq!(events[6]["context"]["status_code"], 404);
    assert_eq!(events[7]["category"], "delete");
    // A maintenance ticket's own timeline holds both of its events.
    let r: Value = w
        .http
        .get(format!(
            "http://127.0.0.1:{}/api/v1/entities/maintenance/{ticket}/history",
            w.sealtrail_port
        ))
        .bearer_auth(&w.token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        event_types(r["items"].as_array().expect("items")),
        ["MAINTENANCE_SCHEDULED", "MAINTENANCE_COMPLETED"]
    );
    stop(app, "-TERM").await;
    stop(sealtrail, "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_status_is_kept_and_an_unknown_one_refused_and_recorded() {
    use reqwest::Method;
    let (w, sealtrail) = World::start().await;
    let (app, c) = w.app("u-5").await;
    let (status, asset) = c
        .call(
            Method::POST,
            "/assets",
            json!({"name": "Projector", "status": "MAINTENANCE"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(asset["status"], "MAINTENANCE", "the status it was given");
    let id = asset["id"].as_str().expect("id").to_owned();
    let (_, plain) = c
        .call(Method::POST, "/assets", json!({"name": "Chair"}))
        .await;
    assert_eq!(plain["status"], "ACTIVE", "ACTIVE when none is given");
    let (status, refused) = c
        .call(
            Method::POST,
            "/assets",
            json!({"name": "Desk", "status": "in_stock"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = refused["error"].as_str().expect("error");
    assert!(
        message.contains("ACTIVE, ASSIGNED, MAINTENANCE, RETIRED, LOST"),
        "{message}"
    );
    let (status, _) = c
        .call(
            Method::PATCH,
            &format!("/assets/{id}"),
            json!({"status": "broken", "location": "Room 4"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, unchanged) = c
        .call(Method::GET, &format!("/assets/{id}"), Value::Null)
        .await;
    assert_eq!(unchanged["status"], "MAINTENANCE");
    assert_eq!(
        unchanged["location"],
        Value::Null,
        "a refused patch changes nothing"
    );
    // A body that is not a note, on the asset's route.
    let (status, _) = c
        .call(
            Method::POST,
            &format!("/assets/{id}/notes"),
            json!({"txt": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Two creations and three refusals, each recorded, the refusals as failures; those on the
    // asset's routes name the asset, so its history shows them.
    let events = wait_for_events(&w.http, w.sealtrail_port, 5).await;
    let failures: Vec<&Value> = events
        .iter()
        .filter(|e| e["outcome"] == "failure")
        .collect();
    assert_eq!(failures.len(), 3, "{events:?}");
    assert!(
        failures.iter().take(2).all(|f| f["error"]
            .as_str()
            .is_some_and(|e| e.contains("status must be one of"))),
        "{failures:?}"
    );
    let on_the_asset: Vec<&&Value> = failures
        .iter()
        .filter(|f| f["target"]["id"] == id.as_str())
        .collect();
    assert_eq!(on_the_asset.len(), 2, "{failures:?}");
    let (status, history) = c
        .call(Method::GET, &format!("/assets/{id}/history"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    let outcomes: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["success", "failure", "failure"], "{history}");
    stop(app, "-TERM").await;
    stop(sealtrail, "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_serves_its_own_openapi_document() {
    let (w, sealtrail) = World::start().await;
    let (app, _) = w.app("u-9").await;
    let r = w
        .http
        .get(format!(
            "http://127.0.0.1:{}/api/v1/openapi.json",
            w.app_port
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK, "no token needed");
    let doc: Value = r.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for (path, method) in [
        ("/api/v1/assets", "post"),
        ("/api/v1/assets/{id}", "get"),
        ("/api/v1/assets/{id}", "patch"),
        ("/api/v1/assets/{id}", "delete"),
        ("/api/v1/assets/{id}/assign", "post"),
        ("/api/v1/assets/{id}/transfer", "post"),
        ("/api/v1/assets/{id}/maintenance", "post"),
        ("/api/v1/maintenance/{id}/complete", "post"),
        ("/api/v1/assets/{id}/documents", "post"),
        ("/api/v1/assets/{id}/documents/{doc}", "delete"),
        ("/api/v1/assets/{id}/notes", "post"),
        ("/api/v1/assets/{id}/retire", "post"),
        ("/api/v1/assets/{id}/history", "get"),
        ("/api/v1/assets/{id}/history/{event_type}", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} says 401"
        );
    }
    let create = &doc["paths"]["/api/v1/assets"]["post"];
    assert!(create["requestBody"].is_object(), "the body of a creation");
    assert_eq!(
        doc["components"]["schemas"]["Status"]["enum"],
        json!(["ACTIVE", "ASSIGNED", "MAINTENANCE", "RETIRED", "LOST"])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    stop(app, "-TERM").await;
    stop(sealtrail, "-TERM").await;
}
