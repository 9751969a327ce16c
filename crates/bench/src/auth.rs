//! `bench auth`: what authentication adds to a request. Two routes on one router over a real
//! SQLite store, driven in-process (no sockets, so nothing but the handlers differs): one whose
//! handler takes the credential (the key looked up in the store, the JWT or viewer token
//! verified), one
//! without. Requests alternate between them; the medians' difference is the cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sealtrail_server::AppState;
use sealtrail_server::auth::Viewable;
use sealtrail_server::jwt::{JwtSettings, JwtVerifier};
use serde_json::json;
use tower::ServiceExt;

const SECRET: &[u8] = b"the bench's shared secret, long enough for HS256";

fn jwt_data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../server/tests/data/jwt")
        .join(name)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `bench auth`.
pub(crate) async fn auth(requests: usize, database_url: Option<&str>) -> anyhow::Result<()> {
    let backend = if database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "auth: {requests} requests per credential kind, alternating with an open route, in-process, keys in {backend}"
    );
    let dir = tempfile::tempdir()?;
    let schema = format!("bench_auth_{}", std::process::id());
    let store: Arc<dyn sealtrail_store::Store> = match database_url {
        None => Arc::new(sealtrail_store_sqlite::SqliteStore::open(
            &sealtrail_store_sqlite::SqliteConfig::new(dir.path()),
        )?),
        Some(url) => {
            let mut config = sealtrail_store_postgres::PgConfig::new(url);
            config.schema = schema.clone();
            Arc::new(sealtrail_store_postgres::PgStore::open(&config).await?)
        }
    };
    let jwks = dir.path().join("jwks.json");
    let keys: Vec<serde_json::Value> = ["rsa-1", "ec-1"]
        .iter()
        .map(|k| {
            std::fs::read_to_string(jwt_data(&format!("{k}.jwk.json")))
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(serde_json::from_str(&t)?))
        })
        .collect::<anyhow::Result<_>>()?;
    std::fs::write(&jwks, json!({ "keys": keys }).to_string())?;
    let mut state = AppState::new(store.clone());
    state.jwt = Arc::new(JwtVerifier::new(JwtSettings {
        secret: Some(SECRET.to_vec()),
        jwks_file: Some(jwks),
        ..JwtSettings::default()
    })?);
    let created = sealtrail_server::keys::create_key(
        store.as_ref(),
        sealtrail_store::TenantScope::One(
            sealtrail_store::Tenant::parse("bench").map_err(anyhow::Error::msg)?,
        ),
        vec![sealtrail_store::Scope::Read],
        "bench".into(),
        sealtrail_model::Actor {
            id: "bench".into(),
            actor_type: sealtrail_model::ActorType::System,
            name: None,
            email: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let exp = sealtrail_model::Timestamp::now().micros() / 1_000_000 + 3600;
    let claims = json!({"sub": "bench", "tenant": "bench", "roles": ["audit:read"], "exp": exp});
    let signed = |alg: Algorithm, kid: Option<&str>, key: EncodingKey| -> anyhow::Result<String> {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    };
    let credentials = [
        ("API key (store lookup)", created.token.clone()),
        (
            "JWT HS256",
            signed(Algorithm::HS256, None, EncodingKey::from_secret(SECRET)?)?,
        ),
        (
            "JWT RS256 (JWKS)",
            signed(
                Algorithm::RS256,
                Some("rsa-1"),
                EncodingKey::from_rsa_pem(&std::fs::read(jwt_data("rsa-1.pem"))?)?,
            )?,
        ),
        (
            "JWT ES256 (JWKS)",
            signed(
                Algorithm::ES256,
                Some("ec-1"),
                EncodingKey::from_ec_pem(&std::fs::read(jwt_data("ec-1.pem"))?)?,
            )?,
        ),
    ];
    let viewer = sealtrail_server::viewer::mint(
        &state.keys,
        &sealtrail_server::viewer::Grant {
            token_id: uuid::Uuid::now_v7(),
            tenant: "bench".into(),
            scope: sealtrail_server::viewer::ViewerScope::ActorId("bench".into()),
            viewer_id: None,
            minted_by: "bench".into(),
            expires_at: sealtrail_model::Timestamp::now().micros() + 3_600_000_000,
            key_id: state.keys.active_id().to_owned(),
        },
    );
    let credentials = credentials
        .into_iter()
        .chain([("viewer token (Ed25519)", viewer)]);
    let router: Router = Router::new()
        .route("/open", get(|| async { "ok" }))
        .route("/auth", get(|_p: Viewable| async { "ok" }))
        .with_state(state);
    for (name, token) in credentials {
        let (mut open, mut authed) = (Vec::new(), Vec::new());
        for i in 0..requests + 200 {
            let started = Instant::now();
            let response = router
                .clone()
                .oneshot(Request::get("/open").body(Body::empty())?)
                .await?;
            let t_open = started.elapsed();
            anyhow::ensure!(response.status().is_success());
            let started = Instant::now();
            let response = router
                .clone()
                .oneshot(
                    Request::get("/auth")
                        .header("authorization", format!("Bearer {token}"))
                        .body(Body::empty())?,
                )
                .await?;
            let t_auth = started.elapsed();
            anyhow::ensure!(
                response.status().is_success(),
                "{name}: {}",
                response.status()
            );
            if i >= 200 {
                open.push(t_open);
                authed.push(t_auth);
            }
        }
        let (o, a) = (median(open), median(authed));
        println!(
            "  {name:<26} open route {:>7.1} µs   authenticated {:>7.1} µs   added {:>7.1} µs (medians)",
            o.as_secs_f64() * 1e6,
            a.as_secs_f64() * 1e6,
            a.saturating_sub(o).as_secs_f64() * 1e6
        );
    }
    store.shutdown().await;
    if let Some(url) = database_url {
        crate::pg::drop_schema(url, &schema).await?;
    }
    Ok(())
}
