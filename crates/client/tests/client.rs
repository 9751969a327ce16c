//! The client against a real sealtrail server (in-process, SQLite, real HTTP on a port):
//! batching, the spool while sealtrail is down and its replay in order, dead-lettering of what
//! the server refuses, a restarted client finishing an earlier one's spool, and diffs equal to
//! the server's.

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::{free_addr, start_server, stored};
use proptest::prelude::*;
use sealtrail_client::{AuditEvent, Client, ClientConfig, changes};
use sealtrail_model::{Redactor, Timestamp, parse_event};
use sealtrail_store::Store;
use serde_json::{Value, json};

const TOKEN: &str = "st_clienttestclienttestclienttestclienttest01";

fn config(addr: SocketAddr, spool: &std::path::Path) -> ClientConfig {
    ClientConfig {
        spool_dir: spool.to_owned(),
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        attempts: 2,
        batch_max_wait: Duration::from_millis(5),
        ..ClientConfig::new(format!("http://{addr}"), TOKEN)
    }
}

/// The ids of tenant `t`'s events in `seq` order.
async fn stored_ids(store: &dyn Store) -> Vec<String> {
    stored(store)
        .await
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Waits (bounded) until the store holds `n` events of tenant `t`.
async fn wait_for(store: &dyn Store, n: usize) -> Vec<String> {
    for _ in 0..500 {
        let ids = stored_ids(store).await;
        if ids.len() >= n {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the store never held {n} events");
}

fn event(i: usize) -> AuditEvent {
    AuditEvent::new("asset.updated", format!("u{}", i % 3))
        .with_target("asset", format!("A{}", i % 5))
        .with_metadata(json!({"i": i}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_batches_in_the_order_recorded() {
    let addr = free_addr();
    let server = start_server(Some(addr), TOKEN).await;
    let spool = tempfile::tempdir().expect("spool");
    let client = Client::with_config(config(addr, spool.path())).expect("client");
    let events: Vec<AuditEvent> = (0..700).map(event).collect();
    let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    for e in events {
        client.record(e);
    }
    client.flush().await.expect("flush");
    assert_eq!(stored_ids(server.store.as_ref()).await, ids);
    assert_eq!(client.spooled_bytes(), 0);
    client.shutdown().await.expect("shutdown");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_sealtrail_is_down_events_are_spooled_then_replayed_once_in_order() {
    let addr = free_addr();
    let spool = tempfile::tempdir().expect("spool");
    let client = Client::with_config(config(addr, spool.path())).expect("client");
    let mut ids = Vec::new();
    for i in 0..40 {
        let e = event(i);
        ids.push(e.id.to_string());
        client.record(e);
    }
    // Nobody listens: after its attempts the batch is durably in the spool.
    client.flush().await.expect("flush");
    assert!(client.spooled_bytes() > 0, "the events wait in the spool");
    let server = start_server(Some(addr), TOKEN).await;
    for i in 40..60 {
        let e = event(i);
        ids.push(e.id.to_string());
        client.record(e);
    }
    let stored = wait_for(server.store.as_ref(), ids.len()).await;
    assert_eq!(
        stored, ids,
        "every event exactly once, in the order recorded"
    );
    client.shutdown().await.expect("shutdown");
    assert_eq!(client.spooled_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_dead_lettered_once_and_the_rest_delivered() {
    let addr = free_addr();
    let server = start_server(Some(addr), TOKEN).await;
    let spool = tempfile::tempdir().expect("spool");
    let client = Client::with_config(config(addr, spool.path())).expect("client");
    let good = [event(1), event(2)];
    let bad = AuditEvent::new("1 not an action", "u1");
    client.record(good[0].clone());
    client.record(bad.clone());
    client.record(good[1].clone());
    client.flush().await.expect("flush");
    let ids: Vec<String> = good.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(stored_ids(server.store.as_ref()).await, ids);
    let dead =
        std::fs::read_to_string(spool.path().join("dead-letter.ndjson")).expect("dead letters");
    let lines: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1, "refused once, never retried: {dead}");
    assert_eq!(lines[0]["status"], 422);
    assert_eq!(lines[0]["event"]["id"], bad.id.to_string());
    assert_eq!(
        lines[0]["problem"]["errors"][0]["field"],
        "events[1].action"
    );
    client.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_delivers_what_an_earlier_one_left_in_the_spool() {
    let addr = free_addr();
    let spool = tempfile::tempdir().expect("spool");
    let first = Client::with_config(config(addr, spool.path())).expect("client");
    let ids: Vec<String> = (0..25)
        .map(|i| {
            let e = event(i);
            let id = e.id.to_string();
            first.record(e);
            id
        })
        .collect();
    first
        .shutdown()
        .await
        .expect("shutdown spools what it cannot send");
    assert!(first.spooled_bytes() > 0);
    drop(first);
    let server = start_server(Some(addr), TOKEN).await;
    let second = Client::with_config(config(addr, spool.path())).expect("client");
    assert_eq!(wait_for(server.store.as_ref(), 25).await, ids);
    second.shutdown().await.expect("shutdown");
}

/// JSON objects of a few levels, with keys that collide between the two sides and a sensitive
/// key now and then.
fn object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        "[a-c]{0,2}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("(a|b|c|password|x_token)", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("(a|b|c|password|x_token)", value, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The changes the client computes are the changes the server computes from the same
    /// before and after.
    #[test]
    fn client_changes_equal_the_servers(before in object(), after in object()) {
        let ours = changes(&before, &after).expect("objects serialise");
        let body = json!({"action": "x", "actor": {"id": "u"}, "before": before, "after": after});
        let len = body.to_string().len();
        let server = parse_event(body, len, "", &Redactor::default(), Timestamp::now())
            .expect("a valid event");
        prop_assert_eq!(ours, server.changes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_checks_each_new_checkpoint_against_the_last_one_it_saw() {
    let addr = free_addr();
    let server = start_server(Some(addr), TOKEN).await;
    let spool = tempfile::tempdir().expect("spool");
    let client = Client::with_config(config(addr, spool.path())).expect("client");
    for i in 0..5 {
        client.record(event(i));
    }
    client.flush().await.expect("flush");
    // The server's checkpointer signs the first head within a tick.
    let mut first = None;
    for _ in 0..200 {
        if let Ok(seen) = client.check_checkpoint().await {
            first = Some(seen);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let first = first.expect("a signed checkpoint");
    assert_eq!(client.last_checkpoint(), Some(first.clone()));
    // A thousand more events make the checkpointer sign a larger head.
    for i in 0..1_000 {
        client.record(event(i));
    }
    client.flush().await.expect("flush");
    let mut grown = None;
    for _ in 0..200 {
        let seen = client.check_checkpoint().await.expect("consistent");
        if seen.size > first.size {
            grown = Some(seen);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let grown = grown.expect("a larger checkpoint");
    assert!(grown.size >= 1_005);
    assert_eq!(client.last_checkpoint(), Some(grown));
    client.shutdown().await.expect("shutdown");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_spools_at_once_and_nothing_is_lost() {
    let addr = free_addr();
    let spool = tempfile::tempdir().expect("spool");
    // The sender takes one event at a time and, with no server yet, waits before its retry:
    // it cannot drain the buffer of one as fast as the loop fills it, however loaded the
    // machine (with batches of 500 it could, and nothing was spooled by `record`).
    let client = Client::with_config(ClientConfig {
        buffer: 1,
        batch_max_events: 1,
        retry_base: Duration::from_millis(500),
        retry_max: Duration::from_millis(500),
        ..config(addr, spool.path())
    })
    .expect("client");
    let mut ids = std::collections::HashSet::new();
    for i in 0..30 {
        let e = event(i);
        ids.insert(e.id.to_string());
        client.record(e);
    }
    assert!(
        client.spooled_bytes() > 0,
        "a full buffer spools in record itself"
    );
    client.flush().await.expect("flush");
    let server = start_server(Some(addr), TOKEN).await;
    let stored = wait_for(server.store.as_ref(), 30).await;
    let unique: std::collections::HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), 30, "each once");
    assert_eq!(unique, ids);
    client.shutdown().await.expect("shutdown");
}
