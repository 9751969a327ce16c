//! What the PostgreSQL store does beyond the shared conformance and integrity suites: migrations
//! (a store of schema 1 upgraded), monthly partitions, several writers on one database, reads on
//! a replica, and a tail cut before any checkpoint caught by the recorded size. Each test has
//! its own schema.

use std::collections::HashMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use sealtrail_ledger::walk::Kind;
use sealtrail_model::Timestamp;
use sealtrail_store::conformance::prepared;
use sealtrail_store::{Checkpoint, EventFilter, ListQuery, Order, Store};
use sealtrail_store_postgres::testing::fresh_store_with;
use sealtrail_store_postgres::verify::{Report, WalkOptions, verify_store_with};
use sealtrail_store_postgres::{PgConfig, PgStore, schema};
use serde_json::json;

const KEY_ID: &str = "test-key";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn keys() -> HashMap<String, ed25519_dalek::VerifyingKey> {
    HashMap::from([(KEY_ID.to_owned(), signing_key().verifying_key())])
}

fn event(i: usize) -> serde_json::Value {
    let mut v = json!({"action": format!("act.n{}", i % 4), "category": "update",
        "actor": {"id": format!("u{}", i % 3), "name": "Ann", "email": "ann@example.com"},
        "target": {"type": "asset", "id": format!("a{i}")},
        "context": {"ip": "10.0.0.1", "correlation_id": format!("c{i}")},
        "related": [{"type": "ticket", "id": format!("k{}", i % 2)}],
        "metadata": {"n": i},
        "changes": [{"field": "n", "old_value": i, "new_value": i + 1}]});
    if i.is_multiple_of(2) {
        v["event_type"] = json!("UPDATED");
        v["organization"] = json!({"id": "o1"});
    }
    v
}

async fn checkpoint_all(store: &PgStore) {
    for head in store.tree_heads().await.expect("heads") {
        let cp = Checkpoint::sign(&head, Timestamp::now(), KEY_ID, &signing_key());
        store.put_checkpoint(cp).await.expect("checkpoint");
    }
}

/// A store with `n` events in tenant `t` (in requests of three), one in `u`, and checkpoints.
async fn build(n: usize) -> Option<(PgStore, PgConfig)> {
    let (store, config) = fresh_store_with(|_| {}).await?;
    let events: Vec<_> = (0..n).map(|i| prepared("t", event(i))).collect();
    for chunk in events.chunks(3) {
        store.append(chunk.to_vec()).await.expect("append");
    }
    store
        .append(vec![prepared(
            "u",
            json!({"action": "x", "actor": {"id": "v"}}),
        )])
        .await
        .expect("append");
    checkpoint_all(&store).await;
    Some((store, config))
}

/// The verify walk, on worker threads as `sealtrail verify` runs it, in chunks of three
/// positions so that every case also crosses chunk boundaries.
async fn verify(store: &PgStore) -> Report {
    let pool = store.write_pool().clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let options = WalkOptions {
            chunk: 3,
            workers: 2,
        };
        verify_store_with(&pool, runtime, &keys(), options, &mut |_| {}).expect("walk")
    })
    .await
    .expect("walk task")
}

/// Runs SQL as someone who holds the database would: with every trigger switched off.
async fn tamper(store: &PgStore, sql: &str) {
    let client = store.write_pool().get().await.expect("client");
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;"
        ))
        .await
        .unwrap_or_else(|e| panic!("tampering with {sql:?} failed: {e}"));
}

async fn id_at(store: &PgStore, seq: i64) -> uuid::Uuid {
    let client = store.write_pool().get().await.expect("client");
    client
        .query_one(
            "SELECT id FROM leaves WHERE tenant = 't' AND seq = $1",
            &[&seq],
        )
        .await
        .expect("id")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_cut_before_any_checkpoint_is_caught_by_the_recorded_size() {
    let Some((store, _)) = fresh_store_with(|_| {}).await else {
        return;
    };
    for i in 0..5 {
        store
            .append(vec![prepared("t", event(i))])
            .await
            .expect("append");
    }
    // The whole place of the last event: its row and its leaf (a row alone gone, with its leaf
    // left, is content removed without a purge receipt: missing).
    tamper(
        &store,
        "DELETE FROM events WHERE tenant = 't' AND seq = 5; \
         DELETE FROM leaves WHERE tenant = 't' AND seq = 5",
    )
    .await;
    let report = verify(&store).await;
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert_eq!(
        (report.findings[0].kind, report.findings[0].seq),
        (Kind::Truncated, 5)
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_partitions_are_made_ahead() {
    let Some((store, config)) = fresh_store_with(|_| {}).await else {
        return;
    };
    let mut client = store.write_pool().get().await.expect("client");
    assert_eq!(
        schema::migrate(&mut client, &config.schema)
            .await
            .expect("again"),
        0
    );
    assert_eq!(
        schema::version(&**client, &config.schema)
            .await
            .expect("version"),
        schema::SCHEMA_VERSION
    );
    // Migration 5: postings leave room on their pages for the indexer's rewrites.
    let options: Option<Vec<String>> = client
        .query_one(
            "SELECT reloptions FROM pg_class \
             WHERE relname = 'postings' AND relnamespace = to_regnamespace($1)::oid",
            &[&config.schema],
        )
        .await
        .expect("postings' options")
        .get(0);
    assert_eq!(options, Some(vec!["fillfactor=50".to_owned()]));
    let partitions: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'events' AND p.relnamespace = to_regnamespace($1)::oid ORDER BY 1",
            &[&config.schema],
        )
        .await
        .expect("partitions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(
        partitions.len(),
        1 + sealtrail_store_postgres::PARTITIONS_AHEAD as usize
    );
    assert_eq!(
        partitions[0],
        format!("events_y{:04}m{:02}", now.year(), u8::from(now.month()))
    );
    // Opening without migrating refuses a schema that is behind.
    let mut fresh = PgConfig::new(config.url.clone());
    fresh.schema = format!("{}_empty", config.schema);
    fresh.migrate = false;
    let err = PgStore::open(&fresh).await.err().expect("refused");
    assert!(err.to_string().contains("sealtrail migrate"), "{err}");
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_partition_is_made_when_a_write_needs_it() {
    let Some((store, config)) = fresh_store_with(|_| {}).await else {
        return;
    };
    let client = store.write_pool().get().await.expect("client");
    let now = time::OffsetDateTime::now_utc();
    client
        .batch_execute(&format!(
            "DROP TABLE \"{}\".events_y{:04}m{:02}",
            config.schema,
            now.year(),
            u8::from(now.month())
        ))
        .await
        .expect("drop the empty current partition");
    let out = store
        .append(vec![prepared("t", event(0))])
        .await
        .expect("append makes the partition");
    assert_eq!(out[0].seq, 1);
    store.shutdown().await;
}

/// Two stores on one schema stand for two processes: writing into the same tenant at once,
/// they keep `seq` gap-free and the chain, tree and checkpoints valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_database_keep_one_log() {
    let Some((first, config)) = fresh_store_with(|_| {}).await else {
        return;
    };
    let second = PgStore::open(&config).await.expect("second store");
    let stores: Vec<Arc<PgStore>> = vec![Arc::new(first), Arc::new(second)];
    let mut tasks = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        for t in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for r in 0..10 {
                    let batch: Vec<_> = (0..(1 + (w + t + r) % 4))
                        .map(|i| prepared("shared", event(i)))
                        .collect();
                    for a in store.append(batch).await.expect("append") {
                        ids.push(a.id);
                    }
                }
                ids
            }));
        }
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("task"));
    }
    let page = stores[0]
        .list(ListQuery {
            tenant: sealtrail_store::conformance::tenant("shared"),
            filter: EventFilter::default(),
            order: Order::Asc,
            limit: 1000,
            cursor: None,
        })
        .await
        .expect("list");
    let seqs: Vec<u64> = page.items.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=acked.len() as u64).collect::<Vec<_>>());
    checkpoint_all(&stores[1]).await;
    let report = verify(&stores[0]).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    assert_eq!(report.events, acked.len() as u64);
    for store in stores {
        store.shutdown().await;
    }
}

/// Event reads go to the read pool (a replica's URL when given); keys, proofs and writes to the
/// primary. With the "replica" unreachable, writes and key lookups work and lists fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_reads_use_the_read_url_and_everything_else_the_primary() {
    let Some((store, _)) = fresh_store_with(|c| {
        c.read_url = Some("postgres://postgres@127.0.0.1:1/test".into());
    })
    .await
    else {
        return;
    };
    let out = store
        .append(vec![prepared("t", event(0))])
        .await
        .expect("writes go to the primary");
    assert!(
        store
            .leaf_of(&sealtrail_store::conformance::tenant("t"), out[0].id)
            .await
            .expect("primary")
            .is_some()
    );
    let err = store
        .list(ListQuery {
            tenant: sealtrail_store::conformance::tenant("t"),
            filter: EventFilter::default(),
            order: Order::Asc,
            limit: 10,
            cursor: None,
        })
        .await
        .expect_err("the replica is unreachable");
    assert!(
        matches!(err, sealtrail_store::StoreError::Database(_)),
        "{err:?}"
    );
    assert!(
        store.ping().await.is_err(),
        "readiness notices the read pool"
    );
    store.shutdown().await;
}

/// What a reader sees of tenant `t`: every event, a filtered list, a timeline, one event.
async fn read_all(store: &PgStore) -> (Vec<String>, Vec<u64>, Vec<u64>, String) {
    let t = sealtrail_store::conformance::tenant("t");
    let all = ListQuery {
        tenant: t.clone(),
        filter: EventFilter::default(),
        order: Order::Asc,
        limit: 100,
        cursor: None,
    };
    let page = store.list(all.clone()).await.expect("list");
    let bodies: Vec<String> = page.items.iter().map(|e| e.body.get().to_owned()).collect();
    let filtered = store
        .list(ListQuery {
            filter: EventFilter::default()
                .with(sealtrail_store::fields::ACTOR_ID, ["u1"])
                .with(sealtrail_store::fields::EVENT_TYPE, ["UPDATED"]),
            ..all
        })
        .await
        .expect("filtered");
    let timeline = store
        .history(sealtrail_store::HistoryQuery {
            tenant: t.clone(),
            entity_type: "ticket".into(),
            entity_id: "k1".into(),
            event_type: vec![],
            limit: 100,
            cursor: None,
        })
        .await
        .expect("history");
    let id = id_at(store, 2).await;
    let one = store.get(&t, id).await.expect("get").expect("found");
    (
        bodies,
        filtered.items.iter().map(|e| e.seq).collect(),
        timeline.items.iter().map(|e| e.seq).collect(),
        one.body.get().to_owned(),
    )
}

/// A store of schema version 1 (each event as its served JSON with its version-1 digests beside
/// it, the filter columns and their indexes, `event_links`), as sealtrail wrote it before entries
/// were stored, is migrated to the log: its events read, filter, form timelines and verify as
/// before, an edited JSON body is still caught, and new events (entry version 2) chain onto it.
///
/// `fixtures/schema1/dump.sql` is that store, dumped (`pg_dump --inserts`, schema name replaced
/// by `__SCHEMA__`) from the build before entry version 2 (commit 9332f7a), and
/// `expected.json` what it served then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_schema_1_migrates_to_the_log_and_reads_and_verifies_as_before() {
    let Some((url, schema)) = sealtrail_store_postgres::testing::fresh_schema().await else {
        return;
    };
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema1");
    let dump = std::fs::read_to_string(fixtures.join("dump.sql")).expect("dump");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("expected.json")).expect("json"),
    )
    .expect("expected");
    let seqs = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .expect("seqs")
            .iter()
            .map(|s| s.as_u64().expect("seq"))
            .collect()
    };
    let before = (
        expected["bodies"]
            .as_array()
            .expect("bodies")
            .iter()
            .map(|b| b.as_str().expect("body").to_owned())
            .collect::<Vec<_>>(),
        seqs(&expected["filtered"]),
        seqs(&expected["timeline"]),
        expected["one"].as_str().expect("one").to_owned(),
    );
    assert_eq!(before.0.len(), 7);
    {
        // Its own connection: the dump empties the search path of the session it runs in.
        let pool = sealtrail_store_postgres::pool(&url, &schema, 1).expect("pool");
        let client = pool.get().await.expect("client");
        client
            .batch_execute(&dump.replace("__SCHEMA__", &schema))
            .await
            .expect("the old store loads");
    }
    // Opening the old schema migrates it; reads are what they were.
    let mut config = PgConfig::new(url);
    config.schema = schema;
    let migrated = PgStore::open(&config).await.expect("open and migrate");
    assert_eq!(read_all(&migrated).await, before, "before indexing");
    migrated.settle().await.expect("index");
    assert_eq!(read_all(&migrated).await, before, "from the derived data");
    let report = verify(&migrated).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    assert_eq!(report.events, 8);
    // New events are sealed as version 2 and chain onto the old ones.
    migrated
        .append(vec![prepared("t", event(7)), prepared("t", event(8))])
        .await
        .expect("append");
    checkpoint_all(&migrated).await;
    let report = verify(&migrated).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    assert_eq!(report.events, 10);
    let client = migrated.write_pool().get().await.expect("client");
    let versions: Vec<Option<Vec<u8>>> = client
        .query(
            "SELECT substr(entry, 1, 1) FROM events WHERE tenant = 't' ORDER BY seq",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    assert_eq!(
        versions,
        [vec![None; 7], vec![Some(vec![2]); 2]].concat(),
        "old rows keep their JSON; new ones are entries of version 2"
    );
    // An edited JSON body of an old row is caught and named.
    tamper(
        &migrated,
        "UPDATE events SET body = replace(body, '\"act.n2\"', '\"act.n9\"') WHERE tenant = 't' AND seq = 3",
    )
    .await;
    let first = verify(&migrated).await.findings.remove(0);
    assert_eq!((first.kind, first.seq), (Kind::Altered, 3), "{first}");
    migrated.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_connections_plan_neither_parallel_nor_compiled_queries() {
    // Page reads by key are what sealtrail sends; a parallel plan's worker start-up cost more
    // than the read itself (BENCHMARKS.md, list queries at 10M events on PostgreSQL).
    let Some((store, config)) = fresh_store_with(|_| {}).await else {
        return;
    };
    // The store's own pool, and one built as the readers' pool is.
    let readers = sealtrail_store_postgres::pool(config.url.expose(), &config.schema, 1)
        .expect("reader pool");
    for pool in [store.write_pool(), &readers] {
        let client = pool.get().await.expect("client");
        let show = async |setting: &str| -> String {
            client
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .expect("show")
                .get(0)
        };
        assert_eq!(show("max_parallel_workers_per_gather").await, "0");
        assert_eq!(show("jit").await, "off");
        let path = show("search_path").await;
        assert_eq!(path.trim_matches('"'), config.schema);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_settings_changed_through_another_store_are_seen_here_at_once() {
    let Some((a, config)) = fresh_store_with(|_| {}).await else {
        return;
    };
    let b = PgStore::open(&config).await.expect("a second store");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(a.remembers() && b.remembers()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the key change listeners never came up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let new_key = |id: &str, hash: u8| sealtrail_store::NewKey {
        id: id.into(),
        tenant: sealtrail_store::TenantScope::All,
        scopes: vec![sealtrail_store::Scope::Read],
        name: id.into(),
        token_hash: [hash; 32],
        created_at: Timestamp::now(),
    };
    a.create_key(new_key("k1", 1)).await.expect("create");
    // Looked up through `a` again and again: kept in its memory.
    for _ in 0..3 {
        let key = a.key_by_token_hash([1; 32]).await.expect("lookup");
        assert!(key.expect("found").revoked_at.is_none());
    }
    // Revoked through `b`: `a` learns of it by notification and stops trusting what it kept.
    b.revoke_key("k1".into(), Timestamp::now())
        .await
        .expect("revoke")
        .expect("the key");
    loop {
        let key = a.key_by_token_hash([1; 32]).await.expect("lookup");
        if key.expect("found").revoked_at.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a key revoked elsewhere is still trusted here"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // Revoked through `a` itself: at once, with no wait at all.
    a.create_key(new_key("k2", 2)).await.expect("create");
    assert!(
        a.key_by_token_hash([2; 32])
            .await
            .expect("lookup")
            .is_some()
    );
    a.revoke_key("k2".into(), Timestamp::now())
        .await
        .expect("revoke");
    let key = a.key_by_token_hash([2; 32]).await.expect("lookup");
    assert!(key.expect("found").revoked_at.is_some());
    // A key made through `b` works through `a` at once: unknown tokens are never kept.
    assert!(
        a.key_by_token_hash([3; 32])
            .await
            .expect("lookup")
            .is_none()
    );
    b.create_key(new_key("k3", 3)).await.expect("create");
    assert!(
        a.key_by_token_hash([3; 32])
            .await
            .expect("lookup")
            .is_some()
    );
    // Settings likewise: read (and kept) through `a`, changed through `b`.
    let tenant = sealtrail_store::conformance::tenant("acme");
    assert_eq!(a.setting(&tenant, "catalog").await.expect("read"), None);
    b.put_setting(&tenant, "catalog", Some(json!({"v": 1})))
        .await
        .expect("set");
    loop {
        let got = a.setting(&tenant, "catalog").await.expect("read");
        if got.is_some_and(|s| s.value == json!({"v": 1})) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a setting changed elsewhere is still read as it was here"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    b.shutdown().await;
    a.shutdown().await;
}

/// The names of the events partitions.
async fn partitions(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass ORDER BY 1",
            &[],
        )
        .await
        .expect("partitions")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// A past month's partition that holds nothing but events retention removes is detached and
/// dropped whole; one that also holds a kept event has its removed rows deleted; the leaves of
/// both stay, reads leave the removed events out, and the walk accounts for them by the receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_a_past_partition_holding_only_removed_events() {
    let Some((store, _)) = build(10).await else {
        return;
    };
    let client = store.write_pool().get().await.expect("client");
    // Two past months, as if the events had been recorded then: seqs 1–4 alone in the month
    // before last, 5–7 beside 8 (kept) in last month.
    let now = time::OffsetDateTime::now_utc();
    let month = |back: i32| schema::month_start(now.date(), -back);
    for back in [1, 2] {
        let (start, end) = (month(back), month(back - 1));
        let name = schema::partition_name(start);
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ('{start} 00:00:00+00') TO ('{end} 00:00:00+00')"
            ))
            .await
            .expect("partition");
    }
    let moved = |seqs: &str, back: i32| {
        format!(
            "UPDATE events SET recorded_at = '{} 12:00:00+00' WHERE tenant = 't' AND seq IN ({seqs}); \
             UPDATE leaves SET recorded_at = '{} 12:00:00+00' WHERE tenant = 't' AND seq IN ({seqs})",
            month(back),
            month(back)
        )
    };
    tamper(
        &store,
        &format!("{}; {}", moved("1,2,3,4", 2), moved("5,6,7,8", 1)),
    )
    .await;
    checkpoint_all(&store).await;
    let before = partitions(&client).await;
    let oldest = schema::partition_name(month(2));
    let older = schema::partition_name(month(1));
    assert!(
        before.contains(&oldest) && before.contains(&older),
        "{before:?}"
    );

    let cp = store
        .latest_checkpoint(&sealtrail_store::conformance::tenant("t"))
        .await
        .expect("checkpoint")
        .expect("one");
    let receipt = prepared(
        "t",
        json!({"action": "audit.purged", "actor": {"id": "retention", "type": "system"},
            "metadata": {"from_seq": 1, "to_seq": 7, "count": 7,
                "checkpoint": {"size": cp.size, "root_hash": cp.root.to_hex()}}}),
    );
    store.settle().await.expect("settle");
    store
        .purge(
            &sealtrail_store::conformance::tenant("t"),
            (1..=7).collect(),
            receipt,
        )
        .await
        .expect("purge");
    let after = partitions(&client).await;
    assert!(!after.contains(&oldest), "detached whole: {after:?}");
    let left: bool = client
        .query_one(
            "SELECT to_regclass($1::text) IS NOT NULL",
            &[&format!("removed_{oldest}")],
        )
        .await
        .expect("regclass")
        .get(0);
    assert!(!left, "and dropped once the removal committed");
    assert!(
        after.contains(&older),
        "kept, its removed rows deleted: {after:?}"
    );
    let leaves: i64 = client
        .query_one("SELECT count(*) FROM leaves WHERE tenant = 't'", &[])
        .await
        .expect("leaves")
        .get(0);
    assert_eq!(leaves, 11, "every place is kept");
    let page = store
        .list(ListQuery {
            tenant: sealtrail_store::conformance::tenant("t"),
            filter: EventFilter::default(),
            order: Order::Asc,
            limit: 100,
            cursor: None,
        })
        .await
        .expect("list");
    let seqs: Vec<u64> = page.items.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![8, 9, 10, 11]);
    checkpoint_all(&store).await;
    let report = verify(&store).await;
    assert_eq!(report.findings, vec![], "{report:?}");
    store.shutdown().await;
}

/// Another server's anonymisation is not written back by this server's indexer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_servers_anonymisation_is_not_written_back_by_this_indexer() {
    let Some((a, config)) = fresh_store_with(|_| {}).await else {
        return;
    };
    let b = PgStore::open(&config).await.expect("second store");
    let (a, b) = (Arc::new(a), Arc::new(b));
    sealtrail_store::conformance::another_stores_anonymisation_is_not_written_back(
        a.clone(),
        b.clone(),
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A posting already there when the indexer inserts one new to its chunk (derived data it
/// could not know of; here planted) fails that pass, and the next pass replaces it: the
/// indexer does not fail pass after pass, and the filter's answer is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posting_already_there_fails_one_pass_and_the_next_replaces_it() {
    let Some((store, _)) = fresh_store_with(|c| c.indexer.background = false).await else {
        return;
    };
    let events: Vec<_> = (0..3)
        .map(|i| {
            prepared(
                "t",
                json!({"action": "x.planted", "actor": {"id": format!("a{i}")}}),
            )
        })
        .collect();
    store.append(events).await.expect("append");
    let term = "convert_to('ax.planted', 'UTF8')";
    let client = store.write_pool().get().await.expect("client");
    client
        .execute(
            &format!(
                "INSERT INTO postings (tenant, chunk, term, bits) VALUES ('t', 0, {term}, '\\x4c0000'::bytea)"
            ),
            &[],
        )
        .await
        .expect("planted: the first event only");
    assert!(
        store.settle().await.is_err(),
        "the plain insert meets the planted row"
    );
    store.settle().await.expect("the next pass replaces it");
    let seqs = sealtrail_store::conformance::seqs_listed(
        &store,
        &sealtrail_store::conformance::tenant("t"),
        EventFilter::default().with(sealtrail_store::fields::ACTION, ["x.planted"]),
    )
    .await;
    assert_eq!(seqs, vec![1, 2, 3]);
    let bits: Vec<u8> = client
        .query_one(
            &format!(
                "SELECT bits FROM postings WHERE tenant = 't' AND chunk = 0 AND term = {term}"
            ),
            &[],
        )
        .await
        .expect("posting")
        .get(0);
    assert_eq!(
        bits, b"L\x00\x00\x01\x00\x02\x00",
        "every position, as a list"
    );
    // The pass after a successful one inserts plainly again: a row planted for it fails it.
    store
        .append(vec![prepared(
            "t",
            json!({"action": "x.later", "actor": {"id": "b"}}),
        )])
        .await
        .expect("append");
    client
        .execute(
            "INSERT INTO postings (tenant, chunk, term, bits) \
             VALUES ('t', 0, convert_to('ax.later', 'UTF8'), '\\x4c0300'::bytea)",
            &[],
        )
        .await
        .expect("planted");
    assert!(store.settle().await.is_err(), "plain inserts again");
    store.settle().await.expect("replaced again");
    store.shutdown().await;
}
