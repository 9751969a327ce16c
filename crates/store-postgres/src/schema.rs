//! The schema: versioned migrations (files under `migrations/`, applied in order and recorded in
//! `schema_migrations`) and the monthly partitions of `events`, made ahead of time.
//!
//! Both run under a transaction-scoped advisory lock, so several processes starting at once
//! against one database apply each migration once and create each partition once.

use time::{Date, Month, OffsetDateTime};
use tokio_postgres::{Client, GenericClient};

/// The migrations, in order. Version `n` is the `n`-th entry.
const MIGRATIONS: &[(&str, &str)] = &[
    ("init", include_str!("../migrations/0001_init.sql")),
    ("log", include_str!("../migrations/0002_log.sql")),
    ("rollups", include_str!("../migrations/0003_rollups.sql")),
    ("settings", include_str!("../migrations/0004_settings.sql")),
    (
        "postings_room",
        include_str!("../migrations/0005_postings_room.sql"),
    ),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Advisory lock keys (arbitrary, fixed): one for migrations, one for partition upkeep.
const MIGRATE_LOCK: i64 = 0x5ea1_7a11_0001;
const PARTITION_LOCK: i64 = 0x5ea1_7a11_0002;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema name is not a plain identifier.
    #[error("schema name {0:?} must be 1-63 characters of [a-z0-9_], starting with a letter or _")]
    BadName(String),
    /// The database is at a version this build does not know (a newer sealtrail migrated it).
    #[error("the database schema is at version {found}, newer than this build's {known}")]
    TooNew {
        /// The version found.
        found: i32,
        /// The newest version this build knows.
        known: i32,
    },
    /// The database has not been migrated and automatic migration is off.
    #[error(
        "the database schema is at version {found}, this build needs {needed}: run `sealtrail migrate`"
    )]
    Behind {
        /// The version found.
        found: i32,
        /// The version needed.
        needed: i32,
    },
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Checks that a schema name is a plain lowercase identifier, so it can be spliced into SQL.
pub fn check_name(name: &str) -> Result<(), SchemaError> {
    let mut chars = name.chars();
    let ok = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SchemaError::BadName(name.to_owned()))
    }
}

/// The schema's current version; 0 when it has never been migrated.
pub async fn version(client: &impl GenericClient, schema: &str) -> Result<i32, SchemaError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM \"{schema}\".schema_migrations"),
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Applies every migration the schema lacks; returns how many were applied.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<u32, SchemaError> {
    migrate_to(client, schema, SCHEMA_VERSION).await
}

/// Applies the migrations the schema lacks up to version `target` (for tests of upgrades:
/// a store of an older version); returns how many were applied.
pub async fn migrate_to(
    client: &mut Client,
    schema: &str,
    target: i32,
) -> Result<u32, SchemaError> {
    check_name(schema)?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET LOCAL search_path = \"{schema}\"; \
         CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    let current = version(&tx, schema).await?;
    if current > SCHEMA_VERSION {
        return Err(SchemaError::TooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    let mut applied = 0;
    for (version, (name, sql)) in (1..).zip(MIGRATIONS) {
        if version <= current || version > target {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, name],
        )
        .await?;
        tracing::info!(schema, version, name, "migration applied");
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}

/// Fails unless the schema is exactly at this build's version.
pub async fn require_current(client: &Client, schema: &str) -> Result<(), SchemaError> {
    let found = version(client, schema).await?;
    if found > SCHEMA_VERSION {
        return Err(SchemaError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(SchemaError::Behind {
            found,
            needed: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The first day of the month `offset` months after the month of `date`.
pub fn month_start(date: Date, offset: i32) -> Date {
    let index = date.year() * 12 + (u8::from(date.month()) as i32 - 1) + offset;
    let month = Month::try_from((index.rem_euclid(12) + 1) as u8).expect("1..=12 is a month");
    Date::from_calendar_date(index.div_euclid(12), month, 1).expect("the first of a month exists")
}

/// The partition name for the month starting at `start`: `events_y2026m12`.
pub fn partition_name(start: Date) -> String {
    format!("events_y{:04}m{:02}", start.year(), u8::from(start.month()))
}

/// Makes sure a partition exists for every month from `months_back` months before `around` to
/// `months_ahead` months after it. Each new partition also refuses TRUNCATE (a partition's own
/// TRUNCATE does not pass through the parent's trigger). Returns how many were created.
pub async fn ensure_partitions(
    client: &mut Client,
    around: OffsetDateTime,
    months_back: u32,
    months_ahead: u32,
) -> Result<u32, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await?;
    let mut created = 0;
    for offset in -(months_back as i32)..=(months_ahead as i32) {
        let start = month_start(around.date(), offset);
        let end = month_start(start, 1);
        let name = partition_name(start);
        let exists: bool = tx
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&name])
            .await?
            .get(0);
        if exists {
            continue;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ('{start}') TO ('{end}'); \
             CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} \
             FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();"
        ))
        .await?;
        tracing::info!(partition = %name, "events partition created");
        created += 1;
    }
    tx.commit().await?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn months_roll_over_years_both_ways() {
        let cases = [
            (date!(2026 - 12 - 03), 0, date!(2026 - 12 - 01)),
            (date!(2026 - 12 - 03), 1, date!(2027 - 01 - 01)),
            (date!(2026 - 12 - 03), 14, date!(2028 - 02 - 01)),
            (date!(2026 - 01 - 31), -1, date!(2025 - 12 - 01)),
            (date!(2026 - 03 - 15), -27, date!(2023 - 12 - 01)),
        ];
        for (day, offset, want) in cases {
            assert_eq!(month_start(day, offset), want, "{day} {offset:+}");
        }
        assert_eq!(partition_name(date!(2027 - 01 - 01)), "events_y2027m01");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["sealtrail", "_x", "st_1a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Sealtrail",
            "a-b",
            "a\"b",
            "a;drop",
            &"a".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
