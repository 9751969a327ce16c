//! What the binary tests share: starting the real `sealtrail` binary and reading a log back.

#![allow(dead_code)] // Each test binary uses its own part of these helpers.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_sealtrail");

/// The arguments that point a command at a PostgreSQL schema.
pub(crate) fn postgres_args(
    url: impl Into<OsString>,
    schema: impl Into<OsString>,
) -> Vec<OsString> {
    vec![
        "--database-url".into(),
        url.into(),
        "--database-schema".into(),
        schema.into(),
    ]
}

/// A running server.
pub(crate) struct Running {
    /// The process.
    pub(crate) child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// Everything the process wrote to standard error so far.
    pub(crate) stderr: Arc<Mutex<Vec<String>>>,
}

/// Starts `sealtrail serve --listen 127.0.0.1:0` plus `args` in `cwd`, and waits until it
/// listens.
pub(crate) async fn start(args: &[OsString], admin_token: Option<&str>, cwd: &Path) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("SEALTRAIL_LOG", "warn")
        .env_remove("SEALTRAIL_ADMIN_TOKEN")
        .env_remove("SEALTRAIL_CONFIG")
        .env_remove("SEALTRAIL_DATABASE_URL")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(t) = admin_token {
        cmd.env("SEALTRAIL_ADMIN_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("spawn sealtrail");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let base = loop {
        let line = lines
            .next_line()
            .await
            .expect("read stderr")
            .unwrap_or_else(|| {
                panic!(
                    "sealtrail exited before listening: {:?}",
                    stderr.lock().expect("lock")
                )
            });
        stderr.lock().expect("lock").push(line.clone());
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("address").to_owned();
        }
    };
    let sink = stderr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().expect("lock").push(line);
        }
    });
    Running {
        child,
        base,
        stderr,
    }
}

/// Every event of `tenant`, oldest first, paging to the end.
pub(crate) async fn all_events(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/audit-logs?tenant={tenant}&order=asc&limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Runs the binary with `args` (never against a PostgreSQL URL from the environment).
pub(crate) fn run(args: &[OsString]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_remove("SEALTRAIL_DATABASE_URL")
        .output()
        .expect("run sealtrail")
}

/// What a finished command wrote, standard output then standard error.
pub(crate) fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The public key (base64, as `/integrity/public-keys` lists it) of a base64 signing secret.
pub(crate) fn public_key_of(secret: &str) -> String {
    use base64::Engine;
    let secret: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .expect("base64")
        .try_into()
        .expect("32 bytes");
    base64::engine::general_purpose::STANDARD.encode(
        ed25519_dalek::SigningKey::from_bytes(&secret)
            .verifying_key()
            .as_bytes(),
    )
}
