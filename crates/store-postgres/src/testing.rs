//! Helpers for tests against a real PostgreSQL server: a fresh schema per test, and the rule
//! for an unreachable server (outside CI: say so loudly and skip; in CI: fail).
//!
//! The server is `SEALTRAIL_TEST_DATABASE_URL`, else the machine's local service
//! ([`DEFAULT_TEST_URL`]). Schemas are named `st_t<unix seconds>_<random>`; each new one also
//! sweeps test schemas older than two hours, so runs that were killed leave nothing for long.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sealtrail_store::Store;

use crate::{PgConfig, PgStore};

/// The PostgreSQL service of a development or CI machine.
pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How old a left-over test schema must be before a new test drops it.
const SWEEP_AFTER_SECS: u64 = 2 * 3600;

/// The URL tests use.
pub fn test_url() -> String {
    std::env::var("SEALTRAIL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh schema in the test database, or `None` (after a loud message) when the server
/// cannot be reached outside CI. In CI an unreachable server fails the test.
pub async fn fresh_schema() -> Option<(String, String)> {
    let url = test_url();
    let client = match connect(&url).await {
        Ok(client) => client,
        Err(err) if in_ci() => {
            panic!("PostgreSQL at {url} is unreachable in CI, where its tests must run: {err}")
        }
        Err(err) => {
            eprintln!(
                "\n*** SKIPPED: PostgreSQL at {url} is unreachable ({err}); the PostgreSQL tests did not run. \
                 Start the server or set SEALTRAIL_TEST_DATABASE_URL. ***\n"
            );
            return None;
        }
    };
    let schema = format!(
        "st_t{}_{}",
        now_secs(),
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    sweep(&client).await;
    Some((url, schema))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Drops test schemas older than [`SWEEP_AFTER_SECS`]; best effort.
async fn sweep(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'st\\_t%\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    let cutoff = now_secs().saturating_sub(SWEEP_AFTER_SECS);
    for row in rows {
        let name: String = row.get(0);
        let born = name
            .strip_prefix("st_t")
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if born.is_some_and(|b| b < cutoff) {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

/// A store in a fresh schema, configured by `tweak`; `None` as for [`fresh_schema`].
pub async fn fresh_store_with(tweak: impl FnOnce(&mut PgConfig)) -> Option<(PgStore, PgConfig)> {
    let (url, schema) = fresh_schema().await?;
    let mut config = PgConfig::new(url);
    config.schema = schema;
    config.write_connections = 2;
    config.read_connections = 2;
    tweak(&mut config);
    let store = PgStore::open(&config)
        .await
        .unwrap_or_else(|e| panic!("cannot open a test store in {}: {e}", config.schema));
    Some((store, config))
}

/// A store in a fresh schema, as the conformance suite takes it: without a background
/// indexer, so that what the log holds beyond the derived data stays in its tail until a case
/// settles it, and both read paths (and their mix) are exercised.
pub async fn fresh_store() -> Option<Arc<dyn Store>> {
    let (store, _) = fresh_store_with(|c| c.indexer.background = false).await?;
    Some(Arc::new(store))
}
