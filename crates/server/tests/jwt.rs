//! JWT readers over real HTTP: HS256 and RS256/ES256 from a JWKS file, claim names, roles,
//! tenants, what is refused (401 and 403), a JWKS file rotated while the server runs, and
//! the reader recorded as itself in a cross-tenant read.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{ADMIN, event, spawn_app_full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use sealtrail_server::jwt::{JwtSettings, JwtVerifier};
use serde_json::{Value, json};

const SECRET: &[u8] = b"a shared secret of the identity provider, long enough";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/jwt")
        .join(name)
}

fn now() -> i64 {
    sealtrail_model::Timestamp::now().micros() / 1_000_000
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).expect("secret"),
    )
    .expect("sign")
}

fn signed(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let pem = std::fs::read(data(&format!("{kid}.pem"))).expect("pem");
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("key");
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn write_jwks(path: &Path, kids: &[&str]) {
    let keys: Vec<Value> = kids
        .iter()
        .map(|k| {
            serde_json::from_str(
                &std::fs::read_to_string(data(&format!("{k}.jwk.json"))).expect("jwk"),
            )
            .expect("json")
        })
        .collect();
    // Write then rename, as a deployment would, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json!({ "keys": keys }).to_string()).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

async fn app(settings: JwtSettings) -> common::TestApp {
    spawn_app_full(
        |c| c,
        move |mut s| {
            s.jwt = Arc::new(JwtVerifier::new(settings).expect("settings"));
            s
        },
    )
    .await
}

fn reader(tenant: &str, roles: Value) -> Value {
    json!({"sub": "alice", "tenant": tenant, "roles": roles, "exp": now() + 300})
}

#[tokio::test]
async fn hs256_readers_read_their_tenant_only_and_bad_tokens_are_refused() {
    let app = app(JwtSettings {
        secret: Some(SECRET.to_vec()),
        audience: Some("sealtrail".into()),
        issuer: Some("https://idp.example".into()),
        ..JwtSettings::default()
    })
    .await;
    let key = app.key("acme", &["ingest"]).await;
    let other = app.key("globex", &["ingest"]).await;
    app.ingest(&key, &event("jwt.read", "u1")).await;
    app.ingest(&other, &event("jwt.other", "u2")).await;
    let good = |extra: Value| {
        let mut c = json!({"sub": "alice", "tenant": "acme", "roles": ["audit:read"],
                           "exp": now() + 300, "aud": "sealtrail", "iss": "https://idp.example"});
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        hs256(&c)
    };
    let a = app.get("/api/v1/audit-logs", &good(json!({}))).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let actions: Vec<&str> = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["jwt.read"]);
    // Roles as a space-separated string work too.
    let a = app
        .get(
            "/api/v1/audit-logs",
            &good(json!({"roles": "openid audit:read"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);

    // 401: expired, not yet valid, another audience or issuer, no exp, a forged signature,
    // `none`.
    let forged = {
        let t = good(json!({}));
        let (head, _) = t.rsplit_once('.').expect("jwt");
        format!("{head}.AAAA")
    };
    let unsigned = {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
            b.encode(reader("acme", json!(["audit:read"])).to_string())
        )
    };
    let cases = [
        ("expired", good(json!({"exp": now() - 120}))),
        ("not yet valid", good(json!({"nbf": now() + 120}))),
        ("another audience", good(json!({"aud": "elsewhere"}))),
        (
            "another issuer",
            good(json!({"iss": "https://evil.example"})),
        ),
        (
            "no exp",
            hs256(
                &json!({"sub": "alice", "tenant": "acme", "roles": ["audit:read"],
                          "aud": "sealtrail", "iss": "https://idp.example"}),
            ),
        ),
        ("forged", forged),
        ("alg none", unsigned),
        (
            "RS256 with no JWKS configured",
            signed(
                Algorithm::RS256,
                "rsa-1",
                &reader("acme", json!(["audit:read"])),
            ),
        ),
    ];
    for (what, token) in cases {
        let a = app.get("/api/v1/audit-logs", &token).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", a.body);
        assert!(a.is_problem(), "{what}");
    }
    // 403: no role, another tenant, `*` without audit:admin, and anything but reading.
    let cases = [
        ("no role", good(json!({"roles": ["openid"]}))),
        ("all tenants without admin", good(json!({"tenant": "*"}))),
    ];
    for (what, token) in cases {
        let a = app.get("/api/v1/audit-logs", &token).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {:?}", a.body);
    }
    let token = good(json!({}));
    let a = app.get("/api/v1/audit-logs?tenant=globex", &token).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app.ingest(&token, &event("jwt.write", "u")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "readers do not ingest");
    let a = app.get("/api/v1/keys", &token).await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "readers do not manage keys"
    );
    // API keys go on working beside JWTs.
    let a = app.get("/api/v1/audit-logs?tenant=acme", ADMIN).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn jwks_readers_with_custom_claims_and_a_key_rotated_while_running() {
    let dir = tempfile::tempdir().expect("dir");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &["rsa-1", "ec-1"]);
    let app = app(JwtSettings {
        jwks_file: Some(jwks.clone()),
        tenant_claim: "org".into(),
        roles_claim: "perms".into(),
        ..JwtSettings::default()
    })
    .await;
    let key = app.key("acme", &["ingest"]).await;
    app.ingest(&key, &event("jwks.read", "u1")).await;
    let claims = json!({"sub": "bob", "org": "acme", "perms": ["audit:read"], "exp": now() + 300});
    for (alg, kid) in [(Algorithm::RS256, "rsa-1"), (Algorithm::ES256, "ec-1")] {
        let a = app
            .get("/api/v1/audit-logs", &signed(alg, kid, &claims))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{kid}: {:?}", a.body);
    }
    // The default claim names are not read when others are configured.
    let defaults =
        json!({"sub": "bob", "tenant": "acme", "roles": ["audit:read"], "exp": now() + 300});
    let a = app
        .get(
            "/api/v1/audit-logs",
            &signed(Algorithm::RS256, "rsa-1", &defaults),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // A key of another kind than its token's algorithm: refused.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-1".into());
    let pem = std::fs::read(data("rsa-1.pem")).expect("pem");
    let mismatched = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&pem).expect("key"),
    )
    .expect("sign");
    let a = app.get("/api/v1/audit-logs", &mismatched).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Rotation: rsa-2 is unknown, then accepted once the file names it; rsa-1, gone from
    // the file, is refused.
    let rotated = signed(Algorithm::RS256, "rsa-2", &claims);
    let old = signed(Algorithm::RS256, "rsa-1", &claims);
    let a = app.get("/api/v1/audit-logs", &rotated).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    write_jwks(&jwks, &["rsa-2", "ec-1"]);
    let a = app.get("/api/v1/audit-logs", &rotated).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "an unknown kid reads the file again at once"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = app.get("/api/v1/audit-logs", &old).await;
        if a.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rsa-1 still accepted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_admin_reader_of_every_tenant_is_recorded_as_itself() {
    let app = app(JwtSettings {
        secret: Some(SECRET.to_vec()),
        ..JwtSettings::default()
    })
    .await;
    let key = app.key("acme", &["ingest", "read"]).await;
    app.ingest(&key, &event("jwt.admin", "u1")).await;
    let token = hs256(&reader("*", json!(["audit:admin"])));
    let a = app.get("/api/v1/audit-logs", &token).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "every tenant: name one");
    assert_eq!(a.fields(), ["tenant"]);
    let a = app.get("/api/v1/audit-logs?tenant=acme", &token).await;
    assert_eq!(a.status, StatusCode::OK);
    let events = app.all_events(&key).await;
    let audit = events
        .iter()
        .find(|e| e["action"] == "audit.read_cross_tenant")
        .expect("the cross-tenant read is recorded");
    assert_eq!(
        audit["actor"],
        json!({"id": "alice", "type": "user", "name": null, "email": null})
    );
}
