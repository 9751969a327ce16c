//! HTTPS end to end with a real client: `sealtrail serve --tls-cert --tls-key`, then a new
//! certificate put in place and SIGHUP: new connections get it, a connection already open
//! goes on, and nothing restarts.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

/// A self-signed certificate for localhost and 127.0.0.1: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

/// A client that trusts only `cert_pem`.
fn client(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem")])
        .pool_idle_timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

fn put(dir: &Path, (cert, key): &(String, String)) {
    // Key first, then the certificate; each by rename, as certificate tools do.
    for (name, text) in [("key.pem", key), ("cert.pem", cert)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
}

#[tokio::test]
async fn https_serves_and_a_new_certificate_is_taken_on_sighup_without_dropping_connections() {
    let root = tempfile::tempdir().expect("dir");
    let first = certificate();
    put(root.path(), &first);
    let args: Vec<OsString> = vec![
        "--data-dir".into(),
        root.path().join("data").into_os_string(),
        "--tls-cert".into(),
        root.path().join("cert.pem").into_os_string(),
        "--tls-key".into(),
        root.path().join("key.pem").into_os_string(),
    ];
    let server = common::start(&args, None, root.path()).await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let health = format!("{}/healthz", server.base);
    let trusting_first = client(&first.0);
    let r = trusting_first.get(&health).send().await.expect("https");
    assert_eq!(r.status(), StatusCode::OK);
    // Plain HTTP on the same port gets no answer.
    let plain = health.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new().get(&plain).send().await;
    assert!(
        answer.map_or(true, |r| r.status() != StatusCode::OK),
        "plain HTTP must not be served"
    );

    let second = certificate();
    put(root.path(), &second);
    let pid = server.child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let trusting_second = client(&second.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = trusting_second.get(&health).send().await {
            assert_eq!(r.status(), StatusCode::OK);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the reload goes on...
    let r = trusting_first
        .get(&health)
        .send()
        .await
        .expect("the open connection");
    assert_eq!(r.status(), StatusCode::OK);
    // ...while a new connection trusting only the old certificate is refused.
    assert!(client(&first.0).get(&health).send().await.is_err());
    // A broken pair of files on SIGHUP keeps the current certificate.
    std::fs::write(root.path().join("cert.pem"), "not a certificate").expect("write");
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server
        .stderr
        .lock()
        .expect("lock")
        .iter()
        .any(|l| l.contains("the old one stays in use"))
    {
        assert!(
            Instant::now() < deadline,
            "the broken files were never read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client(&second.0)
        .get(&health)
        .send()
        .await
        .expect("still served");
    assert_eq!(r.status(), StatusCode::OK);
}
