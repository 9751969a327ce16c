//! The store conformance suite, run against the SQLite backend.

use std::sync::Arc;

use sealtrail_store::Store;
use sealtrail_store_sqlite::{SqliteConfig, SqliteStore};

async fn fresh_store() -> Arc<dyn Store> {
    // The directory lives as long as the test process; each test gets its own.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    // No background indexer: what the log holds beyond the derived data stays in its tail
    // until a case settles it, so both read paths are exercised, and their mix.
    let mut config = SqliteConfig::new(dir);
    config.indexer.background = false;
    Arc::new(SqliteStore::open(&config).expect("open store"))
}

sealtrail_store::conformance_suite!(fresh_store());
