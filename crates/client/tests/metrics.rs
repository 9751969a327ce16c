//! The client's counters reach whatever `metrics` recorder the host app installs: queued, sent,
//! retried, spooled and dead-lettered. Its own test binary, since a recorder is process-wide.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{free_addr, start_server};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use sealtrail_client::{AuditEvent, Client, ClientConfig, metric};

const TOKEN: &str = "st_metricstestmetricstestmetricstestmetrics01";

#[derive(Default)]
struct Counts(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Counts {
    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .expect("lock")
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl Recorder for &'static Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let counter = self
            .0
            .lock()
            .expect("lock")
            .entry(key.name().to_owned())
            .or_default()
            .clone();
        Counter::from_arc(counter)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_counter_moves_when_its_thing_happens() {
    let counts: &'static Counts = Box::leak(Box::default());
    metrics::set_global_recorder(counts).expect("the only recorder");
    let addr = free_addr();
    let spool = tempfile::tempdir().expect("spool");
    let client = Client::with_config(ClientConfig {
        spool_dir: spool.path().to_owned(),
        retry_base: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
        attempts: 3,
        batch_max_wait: Duration::from_millis(2),
        ..ClientConfig::new(format!("http://{addr}"), TOKEN)
    })
    .expect("client");
    for i in 0..4 {
        client.record(AuditEvent::new("thing.done", format!("u{i}")));
    }
    client.flush().await.expect("flush");
    assert_eq!(counts.get(metric::QUEUED), 4);
    assert_eq!(
        counts.get(metric::RETRIED),
        2,
        "three attempts, two of them retries"
    );
    assert_eq!(counts.get(metric::SPOOLED), 4);
    assert_eq!(counts.get(metric::SENT), 0);
    // sealtrail comes up: the spool is replayed, and a refused event is dead-lettered.
    let _server = start_server(Some(addr), TOKEN).await;
    wait_until("the spool is delivered", || counts.get(metric::SENT) == 4).await;
    client.record(AuditEvent::new("1 bad action", "u1"));
    client.flush().await.expect("flush");
    assert_eq!(counts.get(metric::DEAD_LETTERED), 1);
    assert_eq!(counts.get(metric::DROPPED), 0);
    client.shutdown().await.expect("shutdown");
}
