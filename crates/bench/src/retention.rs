//! Retention (issue #12's targets): on SQLite, archiving and removing 1M expired events among
//! a larger store, in events/s; on PostgreSQL, dropping a monthly partition, timed on its own
//! at several sizes, beside the whole removal (derived data, partition drop, receipt).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sealtrail_model::Timestamp;
use sealtrail_store::conformance::{prepared, tenant};
use sealtrail_store::retention::{Policy, Run};
use sealtrail_store::{Checkpoint, PreparedEvent, Store};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000_000;
const KEY_ID: &str = "bench-key";

fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9; 32])
}

/// Event `n`: one of 40 actions, 5 000 actors with names, e-mails and addresses, 50 000
/// targets, a change in one of three; `age_days` old.
fn event(n: u64, age_days: i64, now: i64) -> Value {
    let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let actor = mix % 5_000;
    let mut v = json!({
        "action": format!("{}.{}", ["auth", "invoice", "doc", "user"][(mix % 4) as usize], ["created", "updated", "read", "deleted", "login", "paid", "sent", "viewed", "exported", "shared"][(mix / 4 % 10) as usize]),
        "occurred_at": Timestamp::from_micros(now - age_days * DAY - (n as i64 % 86_400) * 1_000_000).to_rfc3339(),
        "actor": {"id": format!("user-{actor}"), "name": format!("User {actor}"), "email": format!("user{actor}@example.com")},
        "target": {"type": "document", "id": format!("doc-{}", mix % 50_000)},
        "context": {"ip": format!("10.{}.{}.{}", actor % 256, mix % 256, n % 256), "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "correlation_id": format!("c-{n}")},
    });
    if n.is_multiple_of(3) {
        v["changes"] = json!([{"field": "status", "old_value": "draft", "new_value": "final"}]);
    }
    v
}

/// Appends `total` events to tenant `t`, the `expired` first ones 100 days old and the rest
/// (every eleventh of them, spread among the old) one day old; signs a checkpoint of it all.
async fn seed(store: &dyn Store, total: u64, fresh_every: u64, now: i64) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut batch: Vec<PreparedEvent> = Vec::with_capacity(5_000);
    let mut fresh = 0;
    for n in 0..total {
        let young = fresh_every > 0 && n % fresh_every == fresh_every - 1;
        fresh += u64::from(young);
        batch.push(prepared("t", event(n, if young { 1 } else { 100 }, now)));
        if batch.len() == 5_000 {
            append(store, std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        append(store, batch).await?;
    }
    store.settle().await.context("settle")?;
    for head in store.tree_heads().await? {
        let cp = Checkpoint::sign(&head, Timestamp::now(), KEY_ID, &signing_key());
        store.put_checkpoint(cp).await?;
    }
    println!(
        "seeded {total} events ({fresh} one day old, the rest 100 days) and indexed them in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(total - fresh)
}

/// Appends a batch, letting the indexer catch up whenever the store says it is too far behind.
async fn append(store: &dyn Store, batch: Vec<PreparedEvent>) -> anyhow::Result<()> {
    loop {
        match store.append(batch.clone()).await {
            Ok(_) => return Ok(()),
            Err(sealtrail_store::StoreError::Overloaded) => store.settle().await?,
            Err(err) => return Err(err).context("append"),
        }
    }
}

fn receipt(o: &sealtrail_store::retention::Outcome) -> PreparedEvent {
    let (from, to) = o.range.unwrap_or_default();
    let cp = o.checkpoint.as_ref().expect("a checkpoint");
    prepared(
        "t",
        json!({"action": "audit.purged", "actor": {"id": "bench", "type": "system"},
            "metadata": {"from_seq": from, "to_seq": to, "count": o.purged,
                "checkpoint": {"size": cp.size, "root_hash": cp.root.to_hex()}}}),
    )
}

/// SQLite: a store of `expired` events 100 days old and one in eleven more a day old; a dry
/// run (selection only), then the run (archive, derived data, log), then `sealtrail verify`'s
/// walk of what is left.
pub(crate) async fn sqlite(expired: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(
        sealtrail_store_sqlite::SqliteStore::open(&sealtrail_store_sqlite::SqliteConfig::new(
            dir.path(),
        ))
        .context("open")?,
    );
    let now = Timestamp::now();
    let total = expired + expired / 10;
    let old = seed(store.as_ref(), total, 11, now.micros()).await?;
    let policy = Policy {
        default_days: Some(30),
        rules: Vec::new(),
    };
    let archives = dir.path().join("archive");
    let mut run = Run {
        tenant: &tenant("t"),
        policy: &policy,
        holds: &[],
        now,
        archive_dir: &archives,
        dry_run: true,
    };
    let started = Instant::now();
    let dry = sealtrail_store::retention::run(store.as_ref(), &run, &receipt).await?;
    let dry_time = started.elapsed();
    anyhow::ensure!(
        dry.purged == old,
        "the dry run found {} of {old}",
        dry.purged
    );
    run.dry_run = false;
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let done = sealtrail_store::retention::run(store.as_ref(), &run, &receipt).await?;
    let (took, cpu) = (started.elapsed(), cpu_seconds() - cpu);
    anyhow::ensure!(
        done.purged == old,
        "the run removed {} of {old}",
        done.purged
    );
    let (archive, _) = done.archive.clone().context("an archive")?;
    let size = std::fs::metadata(&archive)?.len();
    println!(
        "dry run (selection only): {:.2} s, {:.0} events/s",
        dry_time.as_secs_f64(),
        old as f64 / dry_time.as_secs_f64()
    );
    println!(
        "retention of {old} expired events (archive {:.1} MiB gzip'd + derived data + log): {:.2} s, {:.0} events/s",
        size as f64 / (1 << 20) as f64,
        took.as_secs_f64(),
        old as f64 / took.as_secs_f64()
    );
    println!(
        "  CPU of the run (every thread of this process): {cpu:.2} s, {:.2} cores busy on average",
        cpu / took.as_secs_f64()
    );
    store.shutdown().await;
    drop(store);
    let started = Instant::now();
    let keys =
        std::collections::HashMap::from([(KEY_ID.to_owned(), signing_key().verifying_key())]);
    let report = sealtrail_store_sqlite::verify::verify_store(
        &dir.path().join(sealtrail_store_sqlite::DB_FILE),
        &keys,
        &mut |_| {},
    )?;
    anyhow::ensure!(
        report.findings.is_empty(),
        "verify found {:?}",
        &report.findings[..report.findings.len().min(3)]
    );
    println!(
        "verify after: {} events walked (removed ones by their receipt), no findings, {:.2} s",
        report.events,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// PostgreSQL: the statements that take a month's partition out of the log (`ALTER TABLE
/// events DETACH PARTITION …` and a rename, in the removal's transaction) and then release its
/// files (`DROP TABLE`), timed on partitions of each size; then the whole removal through the
/// store of a month whose events all expired.
pub(crate) async fn pg(url: &str, sizes: &[u64], store_sizes: &[u64]) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let schema = format!("bench_retention_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path TO {schema}; \
             CREATE TABLE events (tenant text NOT NULL, seq bigint NOT NULL, id uuid NOT NULL, \
               recorded_at timestamptz NOT NULL, entry bytea, personal_values bytea, \
               PRIMARY KEY (tenant, seq, recorded_at)) PARTITION BY RANGE (recorded_at);"
        ))
        .await?;
    for &n in sizes {
        client
            .batch_execute(&format!(
                "CREATE TABLE old PARTITION OF events FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-02-01 00:00:00+00'); \
                 INSERT INTO events SELECT 't', g, gen_random_uuid(), '2020-01-15 00:00:00+00', \
                   decode(repeat('ab', 300), 'hex'), decode(repeat('cd', 60), 'hex') FROM generate_series(1, {n}) g; \
                 ANALYZE old;"
            ))
            .await?;
        // As the store does it: in the removal's transaction, detached and renamed; the files
        // released by a DROP once it committed.
        let started = Instant::now();
        client
            .batch_execute(
                "BEGIN; ALTER TABLE events DETACH PARTITION old; ALTER TABLE old RENAME TO removed_old; COMMIT;",
            )
            .await?;
        let detach = started.elapsed();
        let started = Instant::now();
        client.batch_execute("DROP TABLE removed_old").await?;
        let drop = started.elapsed();
        println!(
            "a partition of {n} events (~400 bytes each): out of the log in {:.1} ms (detach, in the \
             removal's transaction); its files released after in {:.1} ms (drop)",
            detach.as_secs_f64() * 1000.0,
            drop.as_secs_f64() * 1000.0
        );
    }
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await?;

    for &n in store_sizes {
        let schema = format!("bench_retention_store_{}_{n}", std::process::id());
        let mut config = sealtrail_store_postgres::PgConfig::new(url);
        config.schema = schema.clone();
        let store = sealtrail_store_postgres::PgStore::open(&config).await?;
        let now = Timestamp::now();
        seed(&store, n, 0, now.micros()).await?;
        // As if recorded two months ago: the month's partition holds nothing else.
        let write = store.write_pool().get().await?;
        let month = sealtrail_store_postgres::schema::month_start(
            time::OffsetDateTime::now_utc().date(),
            -2,
        );
        let next = sealtrail_store_postgres::schema::month_start(month, 1);
        let name = sealtrail_store_postgres::schema::partition_name(month);
        let moved = Instant::now();
        write
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ('{month} 00:00:00+00') TO ('{next} 00:00:00+00'); \
                 BEGIN; SET LOCAL session_replication_role = replica; \
                 UPDATE events SET recorded_at = '{month} 12:00:00+00' WHERE tenant = 't'; \
                 UPDATE leaves SET recorded_at = '{month} 12:00:00+00' WHERE tenant = 't'; COMMIT;"
            ))
            .await?;
        println!(
            "moved {n} events into {name} in {:.1} s (setup)",
            moved.elapsed().as_secs_f64()
        );
        for head in store.tree_heads().await? {
            let cp = Checkpoint::sign(&head, Timestamp::now(), KEY_ID, &signing_key());
            store.put_checkpoint(cp).await?;
        }
        let cp = store.latest_checkpoint(&tenant("t")).await?.context("cp")?;
        let seqs: Vec<u64> = (1..=n).collect();
        let event = prepared(
            "t",
            json!({"action": "audit.purged", "actor": {"id": "bench", "type": "system"},
                "metadata": {"from_seq": 1, "to_seq": n, "count": n,
                    "checkpoint": {"size": cp.size, "root_hash": cp.root.to_hex()}}}),
        );
        let started = Instant::now();
        store.purge(&tenant("t"), seqs, event).await?;
        let took = started.elapsed();
        let left: bool = write
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&name])
            .await?
            .get(0);
        anyhow::ensure!(!left, "the partition was not dropped");
        println!(
            "removing {n} events through the store (derived data, then the partition dropped, then the receipt): {:.2} s",
            took.as_secs_f64()
        );
        store.shutdown().await;
        write
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await?;
    }
    Ok(())
}

/// CPU seconds this process has used, every thread; 0 where that cannot be read.
fn cpu_seconds() -> f64 {
    crate::load::cpu_seconds_of("/proc/self/stat").unwrap_or(0.0)
}
