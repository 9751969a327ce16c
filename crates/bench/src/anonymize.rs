//! Anonymisation (issue #12's target): erasing a person with 10 000 events among 1M, on
//! SQLite or PostgreSQL, while clients keep ingesting. Measures the call, and what ingest did
//! meanwhile against what it did just before (events/s and the slowest append).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sealtrail_store::conformance::{prepared, tenant};
use sealtrail_store::{PreparedEvent, Store};
use serde_json::{Value, json};

/// Event `n`: every `every`-th one by the person erased (`person-0`, with a name, e-mail, ip and
/// user agent, and a change carrying the e-mail), the others by 5 000 other users; 40 actions,
/// 50 000 targets.
fn event(n: u64, every: u64) -> Value {
    let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let person = n.is_multiple_of(every);
    let actor = if person {
        json!({"id": "person-0", "name": "Pat Erasable", "email": "pat@example.com"})
    } else {
        let a = mix % 5_000;
        json!({"id": format!("user-{a}"), "name": format!("User {a}"), "email": format!("user{a}@example.com")})
    };
    let mut v = json!({
        "action": format!("{}.{}", ["auth", "invoice", "doc", "user"][(mix % 4) as usize], ["created", "updated", "read", "deleted", "login", "paid", "sent", "viewed", "exported", "shared"][(mix / 4 % 10) as usize]),
        "actor": actor,
        "target": {"type": "document", "id": format!("doc-{}", mix % 50_000)},
        "context": {"ip": format!("10.{}.{}.{}", mix % 256, (mix >> 8) % 256, n % 256), "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "correlation_id": format!("c-{n}")},
    });
    if person {
        v["changes"] = json!([{"field": "owner", "old_value": "pat@example.com", "new_value": "it@example.com"}]);
    } else if n.is_multiple_of(3) {
        v["changes"] = json!([{"field": "status", "old_value": "draft", "new_value": "final"}]);
    }
    v
}

async fn append(store: &dyn Store, batch: Vec<PreparedEvent>) -> anyhow::Result<()> {
    loop {
        match store.append(batch.clone()).await {
            Ok(_) => return Ok(()),
            Err(sealtrail_store::StoreError::Overloaded) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(err) => return Err(err).context("append"),
        }
    }
}

/// What ingest did over a stretch: events appended and the slowest append.
#[derive(Debug, Default, Clone, Copy)]
struct Ingest {
    events: u64,
    slowest: Duration,
    took: Duration,
}

/// Appends batches of 100 events (by other users) until `stop`, counting.
async fn feed(store: Arc<dyn Store>, stop: Arc<AtomicBool>, start: u64) -> anyhow::Result<Ingest> {
    let began = Instant::now();
    let mut done = Ingest::default();
    let mut n = start;
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<PreparedEvent> = (0..100)
            .map(|i| prepared("t", event(n + i, u64::MAX)))
            .collect();
        n += 100;
        let at = Instant::now();
        append(store.as_ref(), batch).await?;
        done.slowest = done.slowest.max(at.elapsed());
        done.events += 100;
    }
    done.took = began.elapsed();
    Ok(done)
}

/// Seeds `total` events (every `every`-th by the person), then measures ingest alone for as
/// long as anonymisation will take, then anonymisation with ingest going on.
pub(crate) async fn run(store: Arc<dyn Store>, total: u64, every: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut batch: Vec<PreparedEvent> = Vec::with_capacity(5_000);
    for n in 0..total {
        batch.push(prepared("t", event(n, every)));
        if batch.len() == 5_000 {
            append(store.as_ref(), std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        append(store.as_ref(), batch).await?;
    }
    store.settle().await.context("settle")?;
    let person = total.div_ceil(every);
    println!(
        "seeded {total} events ({person} by the person) and indexed them in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Ingest alone, for a baseline.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = tokio::spawn(feed(store.clone(), stop.clone(), total));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let alone = feeder.await??;
    store.settle().await?;

    let erase = |store: Arc<dyn Store>| async move {
        sealtrail_store::anonymize::anonymize(store.as_ref(), &tenant("t"), "person-0", |n, p| {
            Ok(prepared(
                "t",
                json!({"action": "audit.anonymized", "actor": {"id": "bench", "type": "system"},
                   "metadata": {"events_updated": n, "pseudonym": p}}),
            ))
        })
        .await
    };
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = tokio::spawn(feed(store.clone(), stop.clone(), total + 10_000_000));
    // Let ingest get going before the call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = Instant::now();
    let done = erase(store.clone()).await?;
    let took = at.elapsed();
    stop.store(true, Ordering::Relaxed);
    let beside = feeder.await??;
    anyhow::ensure!(
        done.events_updated == person,
        "{} events rewritten of {person}",
        done.events_updated
    );
    let rate = |i: Ingest| i.events as f64 / i.took.as_secs_f64();
    println!(
        "anonymised {} events of the person among {total}: {:.2} s",
        done.events_updated,
        took.as_secs_f64()
    );
    println!(
        "ingest alone: {:.0} events/s (slowest append {:.0} ms); beside the anonymisation: {:.0} events/s (slowest append {:.0} ms), {} events appended while it ran",
        rate(alone),
        alone.slowest.as_secs_f64() * 1e3,
        rate(beside),
        beside.slowest.as_secs_f64() * 1e3,
        beside.events
    );
    let again = Instant::now();
    let second = erase(store.clone()).await?;
    anyhow::ensure!(
        second.events_updated == 0,
        "the second call rewrote {}",
        second.events_updated
    );
    println!(
        "the second call (nothing left): {:.2} s",
        again.elapsed().as_secs_f64()
    );
    store.shutdown().await;
    Ok(())
}
