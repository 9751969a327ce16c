//! Inserts the rows of a `bench rows` file with sqlx into the same schema, with the same settings
//! and one transaction per batch of 500, and prints rows per second.

use std::time::Instant;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor};

const SCHEMA: &str = include_str!("../../../store-sqlite/migrations/0001_events_links_keys.sql");
const INSERT_SQL: &str = "INSERT INTO events (tenant, seq, id, recorded_at, occurred_at, action, category, event_type, \
     outcome, actor_id, target_type, target_id, organization_id, correlation_id, ip, digest, hash, body) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: sqlx-driver ROWS_FILE")?;
    let rows: Vec<Vec<Value>> = std::fs::read_to_string(path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let dir = std::env::temp_dir().join(format!("sqlx-driver-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("sqlx.db"))
        .create_if_missing(true)
        .page_size(16_384)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .pragma("cache_size", "-262144")
        .pragma("temp_store", "MEMORY")
        .connect()
        .await?;
    conn.execute(SCHEMA).await?;
    let started = Instant::now();
    for chunk in rows.chunks(500) {
        let mut tx = conn.begin().await?;
        for row in chunk {
            let mut q = sqlx::query(INSERT_SQL);
            for v in row {
                q = match v {
                    Value::Null => q.bind(None::<String>),
                    Value::Number(n) => q.bind(n.as_i64().unwrap_or(0)),
                    Value::String(s) => q.bind(s.clone()),
                    other => q.bind(other.to_string()),
                };
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    println!("sqlx:     {:.0} rows/s", rows.len() as f64 / started.elapsed().as_secs_f64());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
