//! The conformance suite: behaviour every [`Store`] backend must show.
//!
//! A backend instantiates it with [`conformance_suite!`](crate::conformance_suite), passing an
//! async expression that makes a fresh, empty store; each case becomes its own test.

use std::collections::BTreeSet;
use std::sync::Arc;

use sealtrail_model::{NewEvent, Redactor, Timestamp, parse_event};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    Cursor, EventFilter, HistoryQuery, ListQuery, NewKey, Order, PreparedEvent, Relation, Scope,
    Store, StoreError, Tenant, TenantScope, fields,
};

/// Instantiates every conformance case as a `#[tokio::test]` in the calling module.
///
/// `$make` is an expression of type `impl Future<Output = Arc<dyn Store>>` giving a fresh store.
/// With `optional` first, it gives `Option<Arc<dyn Store>>` instead, and a case whose store
/// cannot be had returns at once (the maker is responsible for saying so loudly, or for failing
/// where a skip is not allowed).
#[macro_export]
macro_rules! conformance_suite {
    (optional $make:expr) => {
        $crate::conformance_suite!(@list @optional $make);
    };
    ($make:expr) => {
        $crate::conformance_suite!(@list @required $make);
    };
    (@list @$mode:ident $make:expr) => {
        $crate::conformance_suite!(@cases $mode $make;
            seq_is_gap_free_per_tenant_in_request_order,
            stored_event_is_served_in_full,
            retry_with_the_same_id_is_a_duplicate,
            same_id_with_another_body_conflicts_and_stores_nothing,
            get_is_scoped_to_the_tenant,
            every_filter_selects_exactly_its_events,
            pages_return_every_match_exactly_once,
            history_merges_target_and_related_oldest_first,
            keys_are_stored_hashed_listed_and_revoked,
            settings_are_kept_per_tenant_and_counted,
            concurrent_appends_stay_gap_free,
            the_log_is_a_merkle_tree_with_proofs,
            checkpoints_are_kept_newest_last,
            reindex_rebuilds_the_same_answers,
            every_acknowledged_event_is_read_at_once_while_indexing_races,
            a_long_timeline_pages_in_time_order_across_blocks,
            full_text_finds_what_a_brute_force_search_finds,
            statistics_equal_counts_made_from_the_events,
            statistics_stay_exact_across_chunks_and_reindex,
            a_page_of_many_matches_holds_every_one,
            a_removal_the_derived_data_refuses_leaves_the_log_whole,
            a_streamed_removal_commits_only_once_its_receipt_comes,
            an_export_holds_every_listed_event_once_in_order_across_pages,
        );
    };
    (@cases $mode:ident $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(store) = $crate::conformance_suite!(@make $mode $make) else {
                    return;
                };
                let store: ::std::sync::Arc<dyn $crate::Store> = store;
                $crate::conformance::$case(store.clone()).await;
                store.shutdown().await;
            }
        )*
    };
    (@make required $make:expr) => {
        Some($make.await)
    };
    (@make optional $make:expr) => {
        $make.await
    };
}

/// Parses an event from JSON, panicking on invalid input (test data is valid by construction).
pub fn event(value: Value) -> NewEvent {
    let len = serde_json::to_vec(&value).map(|b| b.len()).unwrap_or(0);
    parse_event(value, len, "", &Redactor::default(), Timestamp::now())
        .unwrap_or_else(|errors| panic!("test event is invalid: {errors:?}"))
}

/// A tenant by name, panicking on an invalid one (test names are valid by construction).
pub fn tenant(name: &str) -> Tenant {
    sealtrail_model::validate_tenant(name)
        .unwrap_or_else(|e| panic!("test tenant {name:?} is invalid: {e}"))
}

/// The positions a list of `tenant` with `filter` answers, oldest first (up to 100).
pub async fn seqs_listed(
    store: &dyn Store,
    tenant: &crate::Tenant,
    filter: EventFilter,
) -> Vec<u64> {
    let page = store
        .list(ListQuery {
            tenant: tenant.clone(),
            filter,
            order: Order::Asc,
            limit: 100,
            cursor: None,
        })
        .await
        .expect("list");
    page.items.iter().map(|e| e.seq).collect()
}

/// Prepares an event for a tenant.
pub fn prepared(tenant_name: &str, value: Value) -> PreparedEvent {
    PreparedEvent::new(tenant(tenant_name), event(value))
}

fn simple(action: &str, actor: &str) -> Value {
    json!({"action": action, "actor": {"id": actor}})
}

fn body(event: &crate::StoredEvent) -> Value {
    serde_json::from_str(event.body.get()).expect("stored body is JSON")
}

fn list_all_query(tenant_name: &str) -> ListQuery {
    ListQuery {
        tenant: tenant(tenant_name),
        filter: EventFilter::default(),
        order: Order::Asc,
        limit: 1000,
        cursor: None,
    }
}

async fn seqs(store: &dyn Store, query: ListQuery) -> Vec<u64> {
    let mut out = Vec::new();
    let mut query = query;
    loop {
        let page = store.list(query.clone()).await.expect("list");
        out.extend(page.items.iter().map(|e| e.seq));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return out,
        }
    }
}

/// Every match of `filter` in tenant `t`, ascending: paged ascending in pages of 1000 and
/// descending in pages of `desc_limit`, the two asserted to agree.
async fn in_both_orders(store: &dyn Store, filter: &EventFilter, desc_limit: usize) -> Vec<u64> {
    let query = |order, limit| ListQuery {
        filter: filter.clone(),
        order,
        limit,
        ..list_all_query("t")
    };
    let asc = seqs(store, query(Order::Asc, 1000)).await;
    let mut desc = seqs(store, query(Order::Desc, desc_limit)).await;
    assert!(
        desc.windows(2).all(|w| w[0] > w[1]),
        "descending for {filter:?}"
    );
    desc.reverse();
    assert_eq!(asc, desc, "both orders for {filter:?}");
    asc
}

/// Each tenant's `seq` starts at 1 and counts up without gaps, in the order of the request.
pub async fn seq_is_gap_free_per_tenant_in_request_order(store: Arc<dyn Store>) {
    let batch: Vec<PreparedEvent> = (0..5)
        .map(|i| {
            prepared(
                if i % 2 == 0 { "a" } else { "b" },
                simple(&format!("act.n{i}"), "u"),
            )
        })
        .collect();
    let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
    let out = store.append(batch).await.expect("append");
    let got: Vec<(Uuid, u64)> = out.iter().map(|a| (a.id, a.seq)).collect();
    assert_eq!(
        got,
        vec![
            (ids[0], 1),
            (ids[1], 1),
            (ids[2], 2),
            (ids[3], 2),
            (ids[4], 3)
        ]
    );
    let out = store
        .append(vec![prepared("a", simple("x", "u"))])
        .await
        .expect("append");
    assert_eq!(out[0].seq, 4);
    assert_eq!(seqs(&*store, list_all_query("a")).await, vec![1, 2, 3, 4]);
    assert_eq!(seqs(&*store, list_all_query("b")).await, vec![1, 2]);
}

/// A stored event comes back with every field, defaults applied and server fields filled in.
pub async fn stored_event_is_served_in_full(store: Arc<dyn Store>) {
    let e = prepared(
        "t",
        json!({"action": "asset.updated", "actor": {"id": "u1", "name": "Ann"},
               "before": {"status": "new"}, "after": {"status": "used"}}),
    );
    let id = e.id;
    let a = store.append(vec![e]).await.expect("append").remove(0);
    let stored = store
        .get(&tenant("t"), id)
        .await
        .expect("get")
        .expect("present");
    let v = body(&stored);
    assert_eq!(v["id"], json!(id.to_string()));
    assert_eq!(v["tenant"], json!("t"));
    assert_eq!(v["seq"], json!(1));
    assert_eq!(v["recorded_at"], json!(a.recorded_at.to_rfc3339()));
    assert_eq!(
        v["occurred_at"], v["recorded_at"],
        "occurred_at defaults to recorded_at"
    );
    assert_eq!(v["category"], json!("other"));
    assert_eq!(v["outcome"], json!("success"));
    assert_eq!(
        v["actor"],
        json!({"id": "u1", "type": "user", "name": "Ann", "email": null})
    );
    for key in [
        "event_type",
        "error",
        "target",
        "organization",
        "context",
        "metadata",
    ] {
        assert_eq!(v[key], Value::Null, "{key} present and null");
        assert!(
            v.as_object().expect("object").contains_key(key),
            "{key} present"
        );
    }
    assert_eq!(v["related"], json!([]));
    assert_eq!(
        v["changes"],
        json!([{"field": "status", "old_value": "new", "new_value": "used",
                "changed_at": v["occurred_at"], "changed_by": "u1"}])
    );
    assert_eq!(v["hash"], json!(a.hash.to_hex()));
    assert_eq!(a.hash.to_hex().len(), 64);
    assert!(
        a.hash
            .to_hex()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
}

/// Sending an event again with its id stores nothing and answers with the stored record.
pub async fn retry_with_the_same_id_is_a_duplicate(store: Arc<dyn Store>) {
    let id = Uuid::new_v4();
    let v = json!({"id": id, "action": "a", "actor": {"id": "u"}});
    let first = store
        .append(vec![prepared("t", v.clone())])
        .await
        .expect("append");
    let again = store
        .append(vec![prepared("t", simple("b", "u")), prepared("t", v)])
        .await
        .expect("append");
    assert!(!first[0].duplicate);
    assert!(!again[0].duplicate);
    assert_eq!(again[0].seq, 2);
    assert!(again[1].duplicate);
    assert_eq!(again[1].seq, first[0].seq);
    assert_eq!(again[1].hash, first[0].hash);
    assert_eq!(again[1].recorded_at, first[0].recorded_at);
    assert_eq!(seqs(&*store, list_all_query("t")).await, vec![1, 2]);
}

/// The same id with a different body fails the whole request and stores none of it.
pub async fn same_id_with_another_body_conflicts_and_stores_nothing(store: Arc<dyn Store>) {
    let id = Uuid::new_v4();
    store
        .append(vec![prepared(
            "t",
            json!({"id": id, "action": "a", "actor": {"id": "u"}}),
        )])
        .await
        .expect("append");
    let err = store
        .append(vec![
            prepared("t", simple("fresh", "u")),
            prepared(
                "t",
                json!({"id": id, "action": "other", "actor": {"id": "u"}}),
            ),
        ])
        .await
        .expect_err("conflict");
    assert!(
        matches!(err, StoreError::Conflict { index: 1, id: got } if got == id),
        "{err:?}"
    );
    // The same id in another tenant is also a conflict: ids are global.
    let err = store
        .append(vec![prepared(
            "other",
            json!({"id": id, "action": "a", "actor": {"id": "u"}}),
        )])
        .await
        .expect_err("conflict");
    assert!(
        matches!(err, StoreError::Conflict { index: 0, .. }),
        "{err:?}"
    );
    assert_eq!(seqs(&*store, list_all_query("t")).await, vec![1]);
    let next = store
        .append(vec![prepared("t", simple("x", "u"))])
        .await
        .expect("append");
    assert_eq!(next[0].seq, 2, "a failed request leaves no gap");
}

/// An event is invisible from every other tenant.
pub async fn get_is_scoped_to_the_tenant(store: Arc<dyn Store>) {
    let e = prepared("t1", simple("a", "u"));
    let id = e.id;
    store.append(vec![e]).await.expect("append");
    assert!(store.get(&tenant("t1"), id).await.expect("get").is_some());
    assert!(store.get(&tenant("t2"), id).await.expect("get").is_none());
    assert!(
        store
            .get(&tenant("t1"), Uuid::new_v4())
            .await
            .expect("get")
            .is_none()
    );
    assert!(seqs(&*store, list_all_query("t2")).await.is_empty());
}

/// Every filter of SPEC §4.3 selects exactly the events it describes, alone and combined.
pub async fn every_filter_selects_exactly_its_events(store: Arc<dyn Store>) {
    let base = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
    let day = 86_400_000_000i64;
    let mut batch = Vec::new();
    for i in 0..24i64 {
        let at = Timestamp::from_micros(base.micros() + i * day);
        let action = ["user.login", "asset.update", "asset.delete"][i as usize % 3];
        let category = ["auth", "update", "delete", "other"][i as usize % 4];
        let mut v = json!({
            "action": action,
            "category": category,
            "actor": {"id": format!("u{}", i % 4)},
            "occurred_at": at.to_rfc3339(),
            "outcome": if i % 5 == 0 { "failure" } else { "success" },
            "target": {"type": if i % 2 == 0 { "asset" } else { "user" }, "id": format!("{}", i % 6)},
            "context": {"ip": format!("10.0.0.{}", i % 3), "correlation_id": format!("c{}", i % 7)},
            "metadata": {"n": i % 4, "tags": ["x", format!("t{}", i % 2)]},
            "changes": [{"field": format!("f{}.sub", i % 3), "old_value": 1, "new_value": 2}],
        });
        if i % 3 == 0 {
            v["event_type"] = json!("STATUS_CHANGED");
        }
        if i % 4 != 3 {
            v["organization"] = json!({"id": format!("o{}", i % 2)});
        }
        batch.push(prepared("t", v));
    }
    // Half the log indexed, half in its tail; then all of it indexed.
    let rest = batch.split_off(12);
    store.append(batch).await.expect("append");
    store.settle().await.expect("settle");
    store.append(rest).await.expect("append");
    store
        .append(vec![prepared("noise", simple("user.login", "u0"))])
        .await
        .expect("append");
    let all: Vec<u64> = (1..=24).collect();
    let pick = |f: &dyn Fn(i64) -> bool| -> Vec<u64> {
        all.iter().copied().filter(|s| f(*s as i64 - 1)).collect()
    };
    let cases: Vec<(EventFilter, Vec<u64>)> = vec![
        (EventFilter::default(), all.clone()),
        (
            EventFilter::default().with(fields::ACTOR_ID, ["u1"]),
            pick(&|i| i % 4 == 1),
        ),
        (
            EventFilter::default().with(fields::ACTION, ["user.login", "asset.delete"]),
            pick(&|i| i % 3 != 1),
        ),
        (
            EventFilter::default().with(fields::CATEGORY, ["delete"]),
            pick(&|i| i % 4 == 2),
        ),
        (
            EventFilter::default().with(fields::EVENT_TYPE, ["STATUS_CHANGED"]),
            pick(&|i| i % 3 == 0),
        ),
        (
            EventFilter::default().with(fields::TARGET_TYPE, ["user"]),
            pick(&|i| i % 2 == 1),
        ),
        (
            EventFilter::default()
                .with(fields::TARGET_TYPE, ["asset"])
                .with(fields::TARGET_ID, ["2"]),
            pick(&|i| i % 2 == 0 && i % 6 == 2),
        ),
        (
            EventFilter::default().with(fields::ORGANIZATION_ID, ["o1"]),
            pick(&|i| i % 4 != 3 && i % 2 == 1),
        ),
        (
            EventFilter::default().with(fields::OUTCOME, ["failure"]),
            pick(&|i| i % 5 == 0),
        ),
        (
            EventFilter::default().with(fields::OUTCOME, ["success"]),
            pick(&|i| i % 5 != 0),
        ),
        (
            EventFilter::default().with(fields::CORRELATION_ID, ["c3"]),
            pick(&|i| i % 7 == 3),
        ),
        (
            EventFilter::default().with(fields::IP, ["10.0.0.2"]),
            pick(&|i| i % 3 == 2),
        ),
        (
            EventFilter {
                from: Some(Timestamp::from_micros(base.micros() + 5 * day)),
                to: Some(Timestamp::from_micros(base.micros() + 9 * day)),
                ..Default::default()
            },
            pick(&|i| (5..9).contains(&i)),
        ),
        (
            EventFilter::default().with(fields::CHANGED_FIELD, ["f1"]),
            pick(&|i| i % 3 == 1),
        ),
        (
            EventFilter::default().with(fields::CHANGED_FIELD, ["f1.sub"]),
            pick(&|i| i % 3 == 1),
        ),
        (
            EventFilter::default().with(fields::CHANGED_FIELD, ["f1.su"]),
            vec![],
        ),
        (
            EventFilter {
                metadata: Some(json!({"n": 2})),
                ..Default::default()
            },
            pick(&|i| i % 4 == 2),
        ),
        (
            EventFilter {
                metadata: Some(json!({"tags": ["t1"]})),
                ..Default::default()
            },
            pick(&|i| i % 2 == 1),
        ),
        (
            EventFilter {
                metadata: Some(json!({"n": 0})),
                ..Default::default()
            }
            .with(fields::ACTOR_ID, ["u0", "u2"])
            .with(fields::OUTCOME, ["failure"]),
            pick(&|i| i % 2 == 0 && i % 5 == 0 && i % 4 == 0),
        ),
    ];
    for settled in [false, true] {
        if settled {
            store.settle().await.expect("settle");
        }
        for (filter, expected) in &cases {
            let got = in_both_orders(&*store, filter, 3).await;
            assert_eq!(&got, expected, "filter {filter:?} (settled {settled})");
        }
    }
}

/// Paging to the end in either order returns every event once, even while events arrive.
pub async fn pages_return_every_match_exactly_once(store: Arc<dyn Store>) {
    let batch: Vec<PreparedEvent> = (0..37)
        .map(|i| prepared("t", simple("a", &format!("u{}", i % 2))))
        .collect();
    store.append(batch).await.expect("append");
    for order in [Order::Desc, Order::Asc] {
        let mut query = ListQuery {
            filter: EventFilter::default().with(fields::ACTOR_ID, ["u0"]),
            order,
            limit: 5,
            ..list_all_query("t")
        };
        let mut seen = Vec::new();
        let mut extra = 0;
        loop {
            let page = store.list(query.clone()).await.expect("list");
            assert!(page.items.len() <= 5);
            seen.extend(page.items.iter().map(|e| e.seq));
            // Events arriving between pages must not disturb the walk, nor the derived data
            // catching up with them.
            store
                .append(vec![prepared("t", simple("a", "u0"))])
                .await
                .expect("append");
            if extra % 2 == 1 {
                store.settle().await.expect("settle");
            }
            extra += 1;
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => break,
            }
        }
        let unique: BTreeSet<u64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no event twice ({order:?})");
        let originals: BTreeSet<u64> = (1..=37).filter(|s| (s - 1) % 2 == 0).collect();
        assert!(
            originals.is_subset(&unique),
            "every original match served ({order:?})"
        );
        if order == Order::Desc {
            assert_eq!(unique, originals, "descending walks never see newer events");
        }
        assert!(extra > 1);
    }
}

/// A timeline holds events targeting the entity and those naming it in `related`, by time.
pub async fn history_merges_target_and_related_oldest_first(store: Arc<dyn Store>) {
    let t = |s: &str| format!("2026-03-01T00:00:0{s}Z");
    let events = vec![
        json!({"action": "asset.created", "actor": {"id": "u"}, "occurred_at": t("5"),
               "target": {"type": "asset", "id": "A1"}, "event_type": "CREATED"}),
        json!({"action": "transfer.done", "actor": {"id": "u"}, "occurred_at": t("2"),
               "target": {"type": "transfer", "id": "T1"}, "related": [{"type": "asset", "id": "A1"}],
               "event_type": "TRANSFERRED"}),
        json!({"action": "asset.updated", "actor": {"id": "u"}, "occurred_at": t("2"),
               "target": {"type": "asset", "id": "A1"}, "related": [{"type": "asset", "id": "A1"}],
               "event_type": "UPDATED"}),
        json!({"action": "asset.updated", "actor": {"id": "u"}, "occurred_at": t("1"),
               "target": {"type": "asset", "id": "A2"}}),
        json!({"action": "asset.noted", "actor": {"id": "u"}, "occurred_at": t("9"),
               "target": {"type": "asset", "id": "A1"}, "event_type": "NOTE_ADDED"}),
    ];
    store
        .append(events.into_iter().map(|v| prepared("t", v)).collect())
        .await
        .expect("append");
    let query = |event_type: Vec<String>, cursor: Option<Cursor>, limit: usize| HistoryQuery {
        tenant: tenant("t"),
        entity_type: "asset".into(),
        entity_id: "A1".into(),
        event_type,
        limit,
        cursor,
    };
    for settled in [false, true] {
        if settled {
            store.settle().await.expect("settle");
        }
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .history(query(vec![], cursor, 2))
                .await
                .expect("history");
            got.extend(page.items.iter().map(|e| (e.seq, e.relation)));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(
            got,
            vec![
                (2, Some(Relation::Related)),
                (3, Some(Relation::Target)),
                (1, Some(Relation::Target)),
                (5, Some(Relation::Target)),
            ],
            "settled {settled}"
        );
        let page = store
            .history(query(
                vec!["TRANSFERRED".into(), "NOTE_ADDED".into()],
                None,
                10,
            ))
            .await
            .expect("history");
        assert_eq!(
            page.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 5],
            "settled {settled}"
        );
    }
    let mut unknown = query(vec![], None, 10);
    unknown.entity_id = "nope".into();
    assert!(
        store
            .history(unknown)
            .await
            .expect("history")
            .items
            .is_empty()
    );
}

/// Keys are found by token hash, listed per tenant and revoked at once.
pub async fn keys_are_stored_hashed_listed_and_revoked(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let key = |id: &str, tenant: &str, hash: u8| NewKey {
        id: id.into(),
        tenant: match tenant {
            "*" => TenantScope::All,
            name => TenantScope::One(crate::conformance::tenant(name)),
        },
        scopes: vec![Scope::Ingest, Scope::Read],
        name: format!("key {id}"),
        token_hash: [hash; 32],
        created_at: now,
    };
    assert_eq!(store.count_keys().await.expect("count"), 0);
    let k1 = store.create_key(key("k1", "t1", 1)).await.expect("create");
    store.create_key(key("k2", "t2", 2)).await.expect("create");
    assert_eq!(k1.scopes, vec![Scope::Ingest, Scope::Read]);
    assert_eq!(store.count_keys().await.expect("count"), 2);
    let found = store
        .key_by_token_hash([1; 32])
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found, k1);
    assert!(
        store
            .key_by_token_hash([9; 32])
            .await
            .expect("lookup")
            .is_none()
    );
    let t1: Vec<String> = store
        .list_keys(TenantScope::One(tenant("t1")))
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(t1, vec!["k1"]);
    assert_eq!(
        store.list_keys(TenantScope::All).await.expect("list").len(),
        2
    );
    let later = Timestamp::from_micros(now.micros() + 5);
    let revoked = store
        .revoke_key("k1".into(), later)
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(revoked.revoked_at, Some(later));
    let again = store
        .revoke_key("k1".into(), Timestamp::from_micros(later.micros() + 5))
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(
        again.revoked_at,
        Some(later),
        "first revocation time is kept"
    );
    assert!(
        store
            .revoke_key("nope".into(), later)
            .await
            .expect("revoke")
            .is_none()
    );
    let found = store
        .key_by_token_hash([1; 32])
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.revoked_at, Some(later));
    // put_key replaces a fixed-id key, e.g. the bootstrap admin key when its token changes.
    let mut boot = key("bootstrap", "*", 3);
    boot.scopes = vec![Scope::Admin];
    store.put_key(boot.clone()).await.expect("put");
    boot.token_hash = [4; 32];
    store.put_key(boot).await.expect("put");
    assert!(
        store
            .key_by_token_hash([3; 32])
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(
        store
            .key_by_token_hash([4; 32])
            .await
            .expect("lookup")
            .expect("found")
            .id,
        "bootstrap"
    );
}

/// Tenant settings: absent until set, replaced whole, versions counting the sets, scoped to
/// their tenant and name, removed by `None`.
pub async fn settings_are_kept_per_tenant_and_counted(store: Arc<dyn Store>) {
    let (a, b) = (tenant("settings-a"), tenant("settings-b"));
    let first = serde_json::json!({"actions": [{"name": "x.y"}], "n": 1.5, "s": "é"});
    let second = serde_json::json!({"actions": []});
    assert_eq!(store.setting(&a, "catalog").await.expect("read"), None);
    store
        .put_setting(&a, "catalog", Some(first.clone()))
        .await
        .expect("set");
    let got = store
        .setting(&a, "catalog")
        .await
        .expect("read")
        .expect("set");
    assert_eq!((got.value, got.version), (first.clone(), 1));
    assert_eq!(store.setting(&b, "catalog").await.expect("read"), None);
    assert_eq!(store.setting(&a, "retention").await.expect("read"), None);
    store
        .put_setting(&a, "catalog", Some(second.clone()))
        .await
        .expect("set");
    let got = store
        .setting(&a, "catalog")
        .await
        .expect("read")
        .expect("set");
    assert_eq!((got.value, got.version), (second, 2));
    store
        .put_setting(&a, "catalog", None)
        .await
        .expect("remove");
    assert_eq!(store.setting(&a, "catalog").await.expect("read"), None);
    store
        .put_setting(&a, "catalog", Some(first.clone()))
        .await
        .expect("set");
    let got = store
        .setting(&a, "catalog")
        .await
        .expect("read")
        .expect("set");
    assert_eq!((got.value, got.version), (first, 1));
}

/// Many concurrent writers into one tenant still produce 1..=N with no gap or repeat.
pub async fn concurrent_appends_stay_gap_free(store: Arc<dyn Store>) {
    let writers = (0..8).map(|w| {
        let store = store.clone();
        async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let batch = (0..=(i % 3))
                    .map(|_| prepared("t", simple("a", &format!("w{w}"))))
                    .collect();
                seqs.extend(
                    store
                        .append(batch)
                        .await
                        .expect("append")
                        .iter()
                        .map(|a| a.seq),
                );
            }
            seqs
        }
    });
    let mut all: Vec<u64> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort_unstable();
    let n = all.len() as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    assert_eq!(
        seqs(&*store, list_all_query("t")).await,
        (1..=n).collect::<Vec<_>>()
    );
}

/// Every tenant's log is the RFC 9162 tree over its leaf hashes, and the store's proofs are
/// the ones an independent in-memory tree gives.
pub async fn the_log_is_a_merkle_tree_with_proofs(store: Arc<dyn Store>) {
    use sealtrail_ledger::merkle::{
        MemoryTree, consistency_proof, inclusion_proof, verify_inclusion,
    };
    let mut leaves = Vec::new();
    let mut ids = Vec::new();
    for round in 0..9 {
        let batch: Vec<PreparedEvent> = (0..=round % 5)
            .map(|i| {
                prepared(
                    "t",
                    json!({"action": "a", "actor": {"id": format!("u{i}"), "name": "N"}}),
                )
            })
            .collect();
        store
            .append(vec![prepared("other", simple("x", "u"))])
            .await
            .expect("append");
        for a in store.append(batch).await.expect("append") {
            let hash: [u8; 32] = *a.hash.as_bytes();
            leaves.push(hash);
            ids.push(a.id);
        }
    }
    let tree = MemoryTree::from_leaves(leaves.iter().copied());
    let n = tree.size();
    let heads = store.tree_heads().await.expect("heads");
    let head = heads.iter().find(|h| h.tenant == "t").expect("head of t");
    assert_eq!((head.size, head.root), (n, crate::Root(tree.root())));
    assert!(heads.iter().any(|h| h.tenant == "other" && h.size == 9));
    for size in [1, 2, 5, n - 1, n] {
        for index in [0, size / 2, size - 1] {
            let got = store
                .inclusion_proof(&tenant("t"), index, size)
                .await
                .expect("proof")
                .expect("in range");
            assert_eq!(
                got,
                inclusion_proof(&tree, index, size).expect("proof"),
                "inclusion {index} in {size}"
            );
            let root = tree.root_at(size).expect("root");
            verify_inclusion(&leaves[index as usize], index, size, &got, &root).expect("verifies");
        }
        let got = store
            .consistency_proof(&tenant("t"), 1.max(size / 3), size)
            .await
            .expect("proof")
            .expect("in range");
        assert_eq!(
            got,
            consistency_proof(&tree, 1.max(size / 3), size).expect("proof")
        );
    }
    assert_eq!(
        store
            .inclusion_proof(&tenant("t"), n, n)
            .await
            .expect("proof"),
        None
    );
    assert_eq!(
        store
            .inclusion_proof(&tenant("t"), 0, n + 1)
            .await
            .expect("proof"),
        None
    );
    assert_eq!(
        store
            .consistency_proof(&tenant("t"), 0, n)
            .await
            .expect("proof"),
        None
    );
    assert_eq!(
        store
            .consistency_proof(&tenant("t"), 3, n + 1)
            .await
            .expect("proof"),
        None
    );
    // Stored perfect nodes, every one of each level at once (read by ranges), the two ends of
    // the leaves alone (each by its key), and positions past the tree (not there).
    let mut wanted: Vec<(u32, u64)> = (0..5u32)
        .flat_map(|level| (0..n >> level).map(move |index| (level, index)))
        .collect();
    wanted.extend([(0, n), (2, n >> 2), (1, 3)]);
    let sparse = [(0, 0), (0, n - 1), (0, n + 7)];
    for asked in [wanted, sparse.to_vec()] {
        let got = store
            .tree_nodes(&tenant("t"), asked.clone())
            .await
            .expect("nodes");
        let expected: Vec<Option<[u8; 32]>> = asked
            .iter()
            .map(|&(level, index)| {
                ((index + 1) << level <= n).then(|| {
                    sealtrail_ledger::merkle::NodeSource::node(&tree, level, index).expect("node")
                })
            })
            .collect();
        assert_eq!(got, expected, "nodes {asked:?}");
    }
    assert_eq!(
        store.leaf_of(&tenant("t"), ids[4]).await.expect("leaf"),
        Some((5, crate::LeafHash(leaves[4])))
    );
    assert_eq!(
        store.leaf_of(&tenant("other"), ids[4]).await.expect("leaf"),
        None
    );
}

/// Checkpoints are stored once and the newest one is found.
pub async fn checkpoints_are_kept_newest_last(store: Arc<dyn Store>) {
    assert_eq!(
        store.latest_checkpoint(&tenant("t")).await.expect("latest"),
        None
    );
    let cp = |size: u64, at: i64| crate::Checkpoint {
        tenant: tenant("t"),
        size,
        root: crate::Root([size as u8; 32]),
        issued_at: Timestamp::from_micros(at),
        key_id: "k1".into(),
        signature: "c2ln".into(),
        note: format!("note {size}"),
    };
    store.put_checkpoint(cp(3, 10)).await.expect("put");
    store.put_checkpoint(cp(5, 20)).await.expect("put");
    store
        .put_checkpoint(cp(5, 20))
        .await
        .expect("the same checkpoint twice is fine");
    store
        .put_checkpoint(cp(5, 30))
        .await
        .expect("a heartbeat re-signs the same size");
    assert_eq!(
        store.latest_checkpoint(&tenant("t")).await.expect("latest"),
        Some(cp(5, 30))
    );
    assert_eq!(
        store.latest_checkpoint(&tenant("u")).await.expect("latest"),
        None
    );
}

/// Every answer a reader can get about tenant `t`: lists under many filters in both orders
/// (paged), timelines and single events.
async fn answers(store: &dyn Store, ids: &[Uuid]) -> Vec<String> {
    let filters = [
        EventFilter::default(),
        EventFilter::default().with(fields::ACTOR_ID, ["u1"]),
        EventFilter::default().with(fields::ACTION, ["a.two", "a.three"]),
        EventFilter::default()
            .with(fields::CATEGORY, ["update"])
            .with(fields::OUTCOME, ["failure"]),
        EventFilter::default().with(fields::TARGET_ID, ["x3"]),
        EventFilter::default().with(fields::CHANGED_FIELD, ["status"]),
        EventFilter {
            from: Some(Timestamp::from_micros(1_770_000_000_000_000 + 20_000_000)),
            to: Some(Timestamp::from_micros(1_770_000_000_000_000 + 90_000_000)),
            ..Default::default()
        }
        .with(fields::ACTOR_ID, ["u0", "u2"]),
        EventFilter {
            metadata: Some(json!({"k": 1})),
            ..Default::default()
        },
    ];
    let mut out = Vec::new();
    for filter in filters {
        for order in [Order::Asc, Order::Desc] {
            let query = ListQuery {
                filter: filter.clone(),
                order,
                limit: 7,
                ..list_all_query("t")
            };
            out.push(format!(
                "{filter:?} {order:?}: {:?}",
                seqs(store, query).await
            ));
        }
    }
    for entity in ["x1", "x3", "r2"] {
        let page = store
            .history(HistoryQuery {
                tenant: tenant("t"),
                entity_type: "thing".into(),
                entity_id: entity.into(),
                event_type: vec![],
                limit: 1000,
                cursor: None,
            })
            .await
            .expect("history");
        let items: Vec<(u64, Option<Relation>)> =
            page.items.iter().map(|e| (e.seq, e.relation)).collect();
        out.push(format!("history {entity}: {items:?}"));
    }
    for id in ids {
        let one = store.get(&tenant("t"), *id).await.expect("get");
        out.push(one.map_or_else(|| "none".into(), |e| e.body.get().to_owned()));
    }
    out
}

/// Derived data is disposable: answers read from the log's tail, from data built as events
/// came, and from data rebuilt from scratch are the same.
pub async fn reindex_rebuilds_the_same_answers(store: Arc<dyn Store>) {
    let base = 1_770_000_000_000_000i64;
    let mut ids = Vec::new();
    for chunk in 0..6 {
        let batch: Vec<PreparedEvent> = (0..25)
            .map(|j| {
                let i = chunk * 25 + j;
                let action = ["a.one", "a.two", "a.three"][i % 3];
                let category = ["update", "create"][i % 2];
                let field = if i % 4 == 0 { "status" } else { "name" };
                let at = Timestamp::from_micros(base + (i as i64 * 1_000_000) % 120_000_000);
                prepared(
                    if i % 9 == 0 { "other" } else { "t" },
                    json!({
                        "action": action,
                        "category": category,
                        "outcome": if i % 7 == 0 { "failure" } else { "success" },
                        "actor": {"id": format!("u{}", i % 4), "name": "Ann"},
                        "occurred_at": at.to_rfc3339(),
                        "target": {"type": "thing", "id": format!("x{}", i % 5)},
                        "related": [{"type": "thing", "id": format!("r{}", i % 3)}],
                        "changes": [{"field": field, "old_value": 1, "new_value": 2}],
                        "metadata": {"k": i % 3},
                    }),
                )
            })
            .collect();
        ids.extend(batch.iter().map(|e| e.id));
        store.append(batch).await.expect("append");
        if chunk == 2 {
            store.settle().await.expect("settle");
        }
    }
    let mixed = answers(&*store, &ids[..20]).await;
    store.settle().await.expect("settle");
    let indexed = answers(&*store, &ids[..20]).await;
    assert_eq!(mixed, indexed, "the tail and the derived data agree");
    let mut seen = Vec::new();
    let total = store
        .reindex(Box::new(move |done, total| seen.push((done, total))))
        .await
        .expect("reindex");
    assert_eq!(total, 150, "every event of every tenant is indexed again");
    assert_eq!(
        answers(&*store, &ids[..20]).await,
        indexed,
        "after a rebuild"
    );
}

/// An event is in every list and timeline as soon as its append is answered, however far the
/// derived data has got meanwhile: here it is built concurrently, as fast as it can go.
pub async fn every_acknowledged_event_is_read_at_once_while_indexing_races(store: Arc<dyn Store>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let indexer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.settle().await.expect("settle");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for b in 0..25 {
                let actor = format!("w{w}-b{b}");
                let batch: Vec<PreparedEvent> = (0..5)
                    .map(|i| {
                        prepared(
                            "t",
                            json!({"action": "load.test", "actor": {"id": actor},
                                   "target": {"type": "batch", "id": actor},
                                   "context": {"correlation_id": format!("{actor}-{i}")}}),
                        )
                    })
                    .collect();
                let acked: Vec<u64> = store
                    .append(batch)
                    .await
                    .expect("append")
                    .iter()
                    .map(|a| a.seq)
                    .collect();
                let mut listed = seqs(
                    &*store,
                    ListQuery {
                        filter: EventFilter::default().with(fields::ACTOR_ID, [&actor]),
                        ..list_all_query("t")
                    },
                )
                .await;
                listed.sort_unstable();
                assert_eq!(listed, acked, "{actor}: every acknowledged event is listed");
                let last = seqs(
                    &*store,
                    ListQuery {
                        filter: EventFilter::default()
                            .with(fields::CORRELATION_ID, [format!("{actor}-4")]),
                        ..list_all_query("t")
                    },
                )
                .await;
                assert_eq!(last, vec![acked[4]], "{actor}");
                let timeline = store
                    .history(HistoryQuery {
                        tenant: tenant("t"),
                        entity_type: "batch".into(),
                        entity_id: actor.clone(),
                        event_type: vec![],
                        limit: 100,
                        cursor: None,
                    })
                    .await
                    .expect("history");
                assert_eq!(timeline.items.len(), 5, "{actor}: the whole timeline");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    indexer.await.expect("indexer");
}

/// An entity with thousands of events, whose times run against their positions, spread over
/// several time blocks, part of them beyond the watermark: the timeline is in `occurred_at`
/// order page after page, exactly as a sort of every event would give it.
pub async fn a_long_timeline_pages_in_time_order_across_blocks(store: Arc<dyn Store>) {
    const EVENTS: i64 = 9_000;
    let at = |i: i64| {
        // Times fall as positions rise, with ties every 7 events.
        Timestamp::from_micros(1_760_000_000_000_000 - (i / 7) * 1_000_000).to_rfc3339()
    };
    let event = |i: i64| {
        let target = if i % 3 == 0 { "hot" } else { "cold" };
        prepared(
            "t",
            json!({"action": "asset.touched", "actor": {"id": "u"}, "occurred_at": at(i),
                   "target": {"type": "asset", "id": target}}),
        )
    };
    let mut expected: Vec<(String, u64)> = Vec::new();
    let mut next = 0;
    for (count, settle) in [(8_000, true), (1_000, false)] {
        for chunk in (next..next + count).collect::<Vec<i64>>().chunks(1_000) {
            let appended = store
                .append(chunk.iter().map(|&i| event(i)).collect())
                .await
                .expect("append");
            for (&i, a) in chunk.iter().zip(&appended) {
                if i % 3 == 0 {
                    expected.push((at(i), a.seq));
                }
            }
        }
        next += count;
        if settle {
            store.settle().await.expect("settle");
        }
    }
    assert_eq!(next, EVENTS);
    expected.sort();
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .history(HistoryQuery {
                tenant: tenant("t"),
                entity_type: "asset".into(),
                entity_id: "hot".into(),
                event_type: vec![],
                limit: 64,
                cursor,
            })
            .await
            .expect("history");
        got.extend(page.items.iter().map(|e| e.seq));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<u64> = expected.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(got.len(), want.len(), "every event of the entity, once");
    assert_eq!(got, want, "in time order, page after page");
    // The oldest events come first: they are the tail's, beyond the watermark.
    assert!(got[0] > 8_000, "the tail takes part");
}

/// A small deterministic generator (SplitMix64), so the suite needs no randomness crate and a
/// failure repeats.
pub(crate) struct Mix(pub(crate) u64);

impl Mix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Words of SPEC §12's search, computed independently of the store from a served event: the
/// searched fields' strings and numbers, split at every character that is not a letter or a
/// digit, lower-cased, cut to 64 bytes.
fn brute_force_words(event: &Value) -> BTreeSet<String> {
    fn leaves(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
            Value::Object(map) => map.values().for_each(|i| leaves(i, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    for path in [
        "/action",
        "/event_type",
        "/actor/id",
        "/actor/name",
        "/target/id",
        "/target/name",
        "/error",
    ] {
        if let Some(Value::String(s)) = event.pointer(path) {
            texts.push(s.clone());
        }
    }
    for change in event["changes"].as_array().into_iter().flatten() {
        texts.push(change["field"].as_str().unwrap_or_default().to_owned());
        leaves(&change["old_value"], &mut texts);
        leaves(&change["new_value"], &mut texts);
    }
    if let Some(m) = event.get("metadata") {
        leaves(m, &mut texts);
    }
    // A UUID not inside a longer run of letters and digits is one word: split at everything
    // but letters, digits and `-`, then take the pieces between hyphens left to right, a UUID
    // at once where one starts.
    let is_uuid = |t: &str| {
        t.len() == 36
            && t.bytes().enumerate().all(|(i, b)| {
                if [8, 13, 18, 23].contains(&i) {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    };
    let mut pieces: Vec<String> = Vec::new();
    for token in texts
        .iter()
        .flat_map(|t| t.split(|c: char| !c.is_alphanumeric() && c != '-'))
    {
        let mut rest = token;
        while !rest.is_empty() {
            if rest.len() >= 36
                && rest.is_char_boundary(36)
                && is_uuid(&rest[..36])
                && (rest.len() == 36 || rest[36..].starts_with('-'))
            {
                pieces.push(rest[..36].to_owned());
                rest = &rest[36..];
            } else {
                let end = rest.find('-').unwrap_or(rest.len());
                pieces.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
            rest = rest.strip_prefix('-').unwrap_or(rest);
        }
    }
    pieces
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut w = w.to_lowercase();
            let mut cut = w.len().min(64);
            while !w.is_char_boundary(cut) {
                cut -= 1;
            }
            w.truncate(cut);
            w
        })
        .collect()
}

/// `q` finds exactly the events holding every one of its words in the searched fields (and
/// only there: not in keys, e-mail addresses, organisation names or endpoints), in list order,
/// paged, combined with other filters, over the indexed log and its tail alike, and never in
/// another tenant.
pub async fn full_text_finds_what_a_brute_force_search_finds(store: Arc<dyn Store>) {
    const UUID: &str = "550E8400-E29B-41D4-A716-446655440000";
    // Identifiers that are their own words: the index keeps them through their field's
    // posting alone, and `q` must still find them (and only them) as words.
    const OWN_IDS: [&str; 4] = ["beta", "zeta7", "550e8400-e29b-41d4-a716-446655440000", "x"];
    const WORDS: [&str; 12] = [
        "Alpha",
        "beta",
        "GAMMA",
        "delta",
        "Ünïcode",
        "STRASSE",
        "straße",
        "42",
        "x",
        "invoice",
        "paid",
        "ΟΔΟΣ",
    ];
    let mut rng = Mix(0x5eed);
    let phrase = |rng: &mut Mix| -> String {
        let n = 1 + rng.below(3);
        let seps = [" ", ", ", "-", "/", ".", "_"];
        (0..n)
            .map(|i| {
                let w = rng.pick(&WORDS);
                if i == 0 {
                    w.to_owned()
                } else {
                    format!("{}{w}", rng.pick(&seps))
                }
            })
            .collect()
    };
    let make = |rng: &mut Mix| -> Value {
        let n = [json!(42), json!(3.5), json!(-7)][rng.below(3)].clone();
        let actor_id = if rng.chance(30) {
            rng.pick(&OWN_IDS).to_owned()
        } else {
            format!(
                "{}-{}",
                rng.pick(&["u", "alpha", "Beta_x", UUID]),
                rng.below(5)
            )
        };
        let mut v = json!({
            "action": rng.pick(&["invoice.paid", "user.login", "asset.update", "Alpha.beta"]),
            "actor": {"id": actor_id, "email": "eta@zeta.io"},
            "outcome": if rng.chance(30) { "failure" } else { "success" },
            "organization": {"id": "o1", "name": "Zeta Corp"},
            "context": {"endpoint": "/epsilon/delta", "session_id": "theta"},
            "metadata": {"Delta": phrase(rng), "n": n, "flag": true,
                         "request": format!("req_{}", rng.pick(&[UUID, "7C9E6679-7425-40DE-944B-E07FC1F90AE7x", "none"])),
                         "deep": {"list": [phrase(rng), 1e21]}},
        });
        if rng.chance(50) {
            v["event_type"] = json!(rng.pick(&["STATUS_CHANGED", "gamma-delta"]));
        }
        if rng.chance(70) {
            v["actor"]["name"] = json!(phrase(rng));
        }
        if rng.chance(80) {
            let kind = rng.pick(&["user", "asset"]);
            let id = if rng.chance(30) {
                rng.pick(&OWN_IDS).to_owned()
            } else {
                format!("{}-{}", rng.pick(&WORDS), rng.below(9))
            };
            v["target"] = json!({"type": kind, "id": id});
            if rng.chance(60) {
                v["target"]["name"] = json!(phrase(rng));
            }
        }
        if v["outcome"] == "failure" && rng.chance(70) {
            v["error"] = json!(phrase(rng));
        }
        if rng.chance(60) {
            v["changes"] = json!([{"field": rng.pick(&["profile.Alpha", "status", "gamma"]),
                                    "old_value": phrase(rng),
                                    "new_value": {"k": [rng.below(50), phrase(rng)]}}]);
        }
        v
    };
    let first: Vec<PreparedEvent> = (0..70).map(|_| prepared("t", make(&mut rng))).collect();
    let second: Vec<PreparedEvent> = (0..70).map(|_| prepared("t", make(&mut rng))).collect();
    let elsewhere: Vec<PreparedEvent> = (0..20)
        .map(|_| {
            let mut v = make(&mut rng);
            v["action"] = json!("only.elsewhere");
            prepared("other", v)
        })
        .collect();
    store.append(first).await.expect("append");
    store.settle().await.expect("settle");
    store.append(second).await.expect("append");
    store.append(elsewhere).await.expect("append");
    let served: Vec<(u64, BTreeSet<String>, String)> = {
        let page = store.list(list_all_query("t")).await.expect("list");
        page.items
            .iter()
            .map(|e| {
                let b = body(e);
                (
                    e.seq,
                    brute_force_words(&b),
                    b["outcome"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(served.len(), 140);
    let mut queries: Vec<String> = WORDS.iter().map(|w| (*w).to_owned()).collect();
    for _ in 0..40 {
        queries.push(phrase(&mut rng));
    }
    queries.extend(
        [
            "zeta",
            "zeta7",
            "ZETA7 beta",
            "eta",
            "epsilon",
            "theta",
            "true",
            "flag",
            "nothing-at-all",
            "elsewhere",
            "ALPHA paid",
            "3.5",
            "1e21",
            "100000000000000000000",
            "ΟΔΟΣ",
            "οδος",
            "Beta_x 2",
            UUID,
            "550e8400-e29b-41d4-a716-446655440000 req",
            "550e8400",
            "446655440000",
            "7c9e6679",
            "e07fc1f90ae7x",
            "7C9E6679-7425-40DE-944B-E07FC1F90AE7x",
        ]
        .map(String::from),
    );
    let mut matched_some = 0;
    for settled in [false, true] {
        if settled {
            store.settle().await.expect("settle");
        }
        for q in &queries {
            let words = crate::text::query_words(q).expect("a query with words");
            for failures_only in [false, true] {
                let expected: Vec<u64> = served
                    .iter()
                    .filter(|(_, have, outcome)| {
                        words.iter().all(|w| have.contains(w))
                            && (!failures_only || outcome == "failure")
                    })
                    .map(|(seq, _, _)| *seq)
                    .collect();
                matched_some += usize::from(!expected.is_empty());
                let mut filter = EventFilter {
                    words: words.clone(),
                    ..Default::default()
                };
                if failures_only {
                    filter = filter.with(fields::OUTCOME, ["failure"]);
                }
                let got = in_both_orders(&*store, &filter, 7).await;
                assert_eq!(
                    got, expected,
                    "q={q:?} failures_only={failures_only} settled={settled}"
                );
            }
        }
    }
    assert!(
        matched_some > 60,
        "the queries exercise matches ({matched_some})"
    );
}

/// An event as the statistics oracle sees it: what the test gave, nothing the store computed.
#[derive(Debug, Clone)]
struct Counted {
    at: i64,
    actor: String,
    action: String,
    target: Option<(String, String)>,
    failed: bool,
}

impl Counted {
    fn json(&self) -> Value {
        let mut v = json!({
            "action": self.action,
            "actor": {"id": self.actor},
            "outcome": if self.failed { "failure" } else { "success" },
            "occurred_at": Timestamp::from_micros(self.at).to_rfc3339(),
        });
        if let Some((kind, id)) = &self.target {
            v["target"] = json!({"type": kind, "id": id});
        }
        v
    }
}

/// Statistics of SPEC §4.3 computed from the events themselves, by a route of its own: every
/// bucket from the one holding `from` on, counts of the events in `[from, to)`, top lists by
/// count, ties by key.
fn counted_statistics(
    events: &[Counted],
    from: i64,
    to: i64,
    bucket_micros: i64,
    top: usize,
) -> crate::stats::Statistics {
    use std::collections::BTreeMap;
    let inside: Vec<&Counted> = events
        .iter()
        .filter(|e| e.at >= from && e.at < to)
        .collect();
    let mut buckets = Vec::new();
    if to > from {
        let mut start = from - from.rem_euclid(bucket_micros);
        while start < to {
            let end = start + bucket_micros;
            let here: Vec<&&Counted> = inside
                .iter()
                .filter(|e| e.at >= start && e.at < end)
                .collect();
            buckets.push(crate::stats::BucketCount {
                start: Timestamp::from_micros(start),
                count: here.len() as u64,
                failures: here.iter().filter(|e| e.failed).count() as u64,
            });
            start = end;
        }
    }
    fn ranked<K: Ord + Clone>(counts: BTreeMap<K, u64>, top: usize) -> Vec<(K, u64)> {
        let mut v: Vec<(K, u64)> = counts.into_iter().collect();
        // A stable sort keeps the map's key order among equal counts.
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        v.truncate(top);
        v
    }
    let mut actors = BTreeMap::new();
    let mut actions = BTreeMap::new();
    let mut targets = BTreeMap::new();
    for e in &inside {
        *actors.entry(e.actor.clone()).or_insert(0) += 1;
        *actions.entry(e.action.clone()).or_insert(0) += 1;
        if let Some(t) = &e.target {
            *targets.entry(t.clone()).or_insert(0) += 1;
        }
    }
    crate::stats::Statistics {
        total: inside.len() as u64,
        failures: inside.iter().filter(|e| e.failed).count() as u64,
        buckets,
        top_actors: ranked(actors, top),
        top_actions: ranked(actions, top),
        top_targets: ranked(targets, top)
            .into_iter()
            .map(|((kind, id), n)| (kind, id, n))
            .collect(),
    }
}

/// Random events over `days` days from `base`, at every granularity from days to
/// microseconds, named by a few actors, actions and targets.
fn counted_events(rng: &mut Mix, n: usize, base: i64, days: u64) -> Vec<Counted> {
    const DAY: i64 = 86_400_000_000;
    (0..n)
        .map(|_| {
            let unit = [DAY, 3_600_000_000, 60_000_000, 1_000_000, 1][rng.below(5)];
            let at = base
                + (rng.next() % (days * DAY as u64 / unit as u64)) as i64 * unit
                + if rng.chance(20) {
                    rng.below(1_000) as i64
                } else {
                    0
                };
            Counted {
                at,
                actor: rng
                    .pick(&["ana", "bo", "cy", "dee", "eve-7", "fay:1"])
                    .to_owned(),
                action: rng
                    .pick(&["user.login", "invoice.paid", "doc.read", "doc.delete"])
                    .to_owned(),
                target: (!rng.chance(15)).then(|| {
                    (
                        rng.pick(&["doc", "user", "x:y"]).to_owned(),
                        rng.pick(&["1", "2", "a:b", "z"]).to_owned(),
                    )
                }),
                failed: rng.chance(30),
            }
        })
        .collect()
}

/// Random windows over the events' days: aligned to days, hours, minutes, seconds or
/// nothing, short and long, empty and reversed-to-empty.
fn stats_windows(rng: &mut Mix, base: i64, n: usize) -> Vec<(i64, i64)> {
    const DAY: i64 = 86_400_000_000;
    let mut out = vec![
        (base - 9 * DAY, base + 30 * DAY),
        (base, base),
        (base + 5, base + 5),
    ];
    for _ in 0..n {
        // From a week before the events on; some windows hold whole weeks, days and hours.
        let unit = [DAY, 3_600_000_000, 60_000_000, 1_000_000, 1, 7_777][rng.below(6)];
        let from = base - 8 * DAY + (rng.next() % (12 * DAY as u64 / unit as u64)) as i64 * unit;
        let len_unit = [7 * DAY, DAY, 3_600_000_000, 60_000_000, 1_000_000, 1][rng.below(6)];
        let to = from + (rng.below(80) as i64) * len_unit / 3 + rng.below(3) as i64;
        out.push((from, to));
    }
    out
}

async fn assert_statistics(
    store: &dyn Store,
    events: &[Counted],
    windows: &[(i64, i64)],
    rng: &mut Mix,
    when: &str,
) {
    use crate::rollup::Span;
    for &(from, to) in windows {
        let bucket = if rng.chance(50) {
            Span::Hour
        } else {
            Span::Day
        };
        let top = rng.below(8);
        let got = store
            .statistics(crate::stats::StatsQuery {
                tenant: tenant("t"),
                from: Timestamp::from_micros(from),
                to: Timestamp::from_micros(to),
                bucket,
                top,
            })
            .await
            .expect("statistics");
        let want = counted_statistics(events, from, to, bucket.micros(), top);
        assert_eq!(
            got, want,
            "window {from}..{to}, {bucket:?} buckets, top {top} ({when})"
        );
    }
}

/// Statistics equal counts made independently from the events, over random windows and
/// bucket sizes, over the unindexed tail, the rollups, and both together; other tenants'
/// events never count.
pub async fn statistics_equal_counts_made_from_the_events(store: Arc<dyn Store>) {
    let base = Timestamp::parse_rfc3339("2026-03-01T00:00:00Z")
        .expect("a date")
        .micros();
    let mut rng = Mix(0x57a75);
    let events = counted_events(&mut rng, 400, base, 20);
    let (first, second) = events.split_at(250);
    let prepare = |t: &str, evs: &[Counted]| -> Vec<PreparedEvent> {
        evs.iter().map(|e| prepared(t, e.json())).collect()
    };
    store.append(prepare("t", first)).await.expect("append");
    let elsewhere = counted_events(&mut rng, 60, base, 20);
    store
        .append(prepare("other", &elsewhere))
        .await
        .expect("append");
    let windows = stats_windows(&mut rng, base, 40);
    // All in the tail, then indexed, then indexed with a tail after it.
    assert_statistics(&*store, first, &windows, &mut rng, "tail only").await;
    store.settle().await.expect("settle");
    assert_statistics(&*store, first, &windows, &mut rng, "indexed").await;
    for part in second.chunks(50) {
        store.append(prepare("t", part)).await.expect("append");
    }
    assert_statistics(&*store, &events, &windows, &mut rng, "indexed and tail").await;
    store.settle().await.expect("settle");
    assert_statistics(&*store, &events, &windows, &mut rng, "all indexed").await;
}

/// Rollups stay exact when a chunk of the log fills and its rows are folded into their
/// periods' summaries, and when they are rebuilt from the log.
pub async fn statistics_stay_exact_across_chunks_and_reindex(store: Arc<dyn Store>) {
    let base = Timestamp::parse_rfc3339("2026-03-01T00:00:00Z")
        .expect("a date")
        .micros();
    let mut rng = Mix(0xc4a2);
    let n = crate::derived::CHUNK as usize + 3_000;
    // Times mostly ascending, as clocks run, with some events late by up to a day.
    let mut events = counted_events(&mut rng, n, base, 10);
    events.sort_by_key(|e| e.at);
    for i in (0..n).step_by(97) {
        events[i].at -= (rng.next() % 86_400_000_000) as i64;
    }
    let windows = stats_windows(&mut rng, base, 12);
    let mut appended = 0;
    for (i, part) in events.chunks(5_000).enumerate() {
        let batch: Vec<PreparedEvent> = part.iter().map(|e| prepared("t", e.json())).collect();
        store.append(batch).await.expect("append");
        appended += part.len();
        if i % 3 == 1 {
            store.settle().await.expect("settle");
        }
    }
    assert_eq!(appended, n);
    assert_statistics(&*store, &events, &windows, &mut rng, "across a chunk").await;
    store.settle().await.expect("settle");
    assert_statistics(&*store, &events, &windows, &mut rng, "settled").await;
    store.reindex(Box::new(|_, _| {})).await.expect("reindex");
    assert_statistics(&*store, &events, &windows, &mut rng, "reindexed").await;

    // Retention's removal, from the folded first chunk and the open second one: counts,
    // time-range lists and statistics leave the removed events out, before and after the
    // derived data is rebuilt from the log.
    let removed: std::collections::HashSet<u64> = (1..=n as u64)
        .filter(|s| s % 7 == 3 || (*s > crate::derived::CHUNK && s % 2 == 0))
        .collect();
    let mut seqs: Vec<u64> = removed.iter().copied().collect();
    seqs.sort_unstable();
    let receipt = prepared(
        "receipts",
        json!({"action": "audit.purged", "actor": {"id": "retention", "type": "system"}}),
    );
    store
        .purge(&tenant("t"), seqs, receipt)
        .await
        .expect("purge");
    let kept: Vec<Counted> = events
        .iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(&(*i as u64 + 1)))
        .map(|(_, e)| e.clone())
        .collect();
    let everything = EventFilter {
        from: Some(Timestamp::from_micros(base - 40 * 86_400_000_000)),
        to: Some(Timestamp::from_micros(base + 400 * 86_400_000_000)),
        ..EventFilter::default()
    };
    for when in ["purged", "purged, reindexed"] {
        if when != "purged" {
            store.reindex(Box::new(|_, _| {})).await.expect("reindex");
        }
        assert_statistics(&*store, &kept, &windows, &mut rng, when).await;
        for filter in [EventFilter::default(), everything.clone()] {
            let mut seen = 0;
            let mut cursor = None;
            loop {
                let page = store
                    .list(ListQuery {
                        tenant: tenant("t"),
                        filter: filter.clone(),
                        order: Order::Desc,
                        limit: 1000,
                        cursor,
                    })
                    .await
                    .expect("list");
                seen += page.items.len();
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
            assert_eq!(seen, kept.len(), "{when}: {filter:?}");
        }
    }
}

/// A page of many matches (a backend may read them by another path than a page of 50: the
/// PostgreSQL one looks each up by its key) holds every one, in order, in full: indexed and in
/// the tail, both orders, by a filter and by a word.
pub async fn a_page_of_many_matches_holds_every_one(store: Arc<dyn Store>) {
    let mut wanted = Vec::new();
    let mut batch = Vec::new();
    for n in 1..=600u64 {
        let mine = n % 3 == 0;
        if mine {
            wanted.push(n);
        }
        let actor = if mine { "many" } else { "other" };
        let value = json!({"action": format!("doc.read{}", n % 7), "actor": {"id": actor},
                           "metadata": {"n": n, "word": if mine { "plentiful" } else { "rare" }}});
        batch.push(prepared("t", value));
        if n % 50 == 0 {
            store
                .append(std::mem::take(&mut batch))
                .await
                .expect("append");
        }
        // The first 450 indexed, the rest in the tail.
        if n == 450 {
            store.settle().await.expect("settle");
        }
    }
    let by_actor = EventFilter::default().with(fields::ACTOR_ID, ["many"]);
    let by_word = EventFilter {
        words: vec!["plentiful".to_owned()],
        ..EventFilter::default()
    };
    for filter in [by_actor, by_word] {
        for order in [Order::Asc, Order::Desc] {
            let query = ListQuery {
                tenant: tenant("t"),
                filter: filter.clone(),
                order,
                limit: 1000,
                cursor: None,
            };
            let page = store.list(query.clone()).await.expect("list");
            let mut expected = wanted.clone();
            if order == Order::Desc {
                expected.reverse();
            }
            let got: Vec<u64> = page.items.iter().map(|e| e.seq).collect();
            assert_eq!(got, expected, "{filter:?} {order:?}");
            assert!(page.next_cursor.is_none());
            for item in &page.items {
                let b = body(item);
                assert_eq!(b["actor"]["id"], "many", "seq {}", item.seq);
                assert_eq!(b["metadata"]["n"], item.seq, "seq {}", item.seq);
            }
            let rows = store.list_rows(query).await.expect("list rows");
            let got: Vec<u64> = rows.rows.iter().map(|r| r.seq).collect();
            assert_eq!(got, expected, "rows: {filter:?} {order:?}");
        }
    }
}

/// Retention's removal as it streams ([`Store::purge_streamed`]): positions sent in batches
/// change nothing until the receipt comes: abandoned (no receipt), or refused (positions out of
/// order, or past the watermark), every event is still served, by its id, by a filter the
/// derived data answers and in the statistics; with the receipt, exactly the positions sent go,
/// and the receipt is appended.
pub async fn a_streamed_removal_commits_only_once_its_receipt_comes(store: Arc<dyn Store>) {
    let events: Vec<PreparedEvent> = (1..=40)
        .map(|n| {
            prepared(
                "t",
                json!({"action": "doc.read", "actor": {"id": "a"}, "metadata": {"n": n}}),
            )
        })
        .collect();
    let ids: Vec<Uuid> = store
        .append(events)
        .await
        .expect("append")
        .iter()
        .map(|a| a.id)
        .collect();
    store.settle().await.expect("settle");
    let by_actor = || ListQuery {
        tenant: tenant("t"),
        filter: EventFilter::default().with(fields::ACTOR_ID, ["a"]),
        order: Order::Asc,
        limit: 100,
        cursor: None,
    };
    let totals = || async {
        let window = crate::stats::StatsQuery {
            tenant: tenant("t"),
            from: Timestamp::from_micros(0),
            to: Timestamp::from_micros(Timestamp::now().micros() + 86_400_000_000),
            bucket: crate::rollup::Span::Day,
            top: 5,
        };
        let stats = store.statistics(window).await.expect("statistics");
        (stats.total, stats.top_actors.first().map(|t| t.1))
    };
    let receipt = || {
        prepared(
            "t",
            json!({"action": "audit.purged", "actor": {"id": "retention", "type": "system"}}),
        )
    };
    let stream = |batches: Vec<Vec<u64>>, receipt: Option<PreparedEvent>| {
        let store = store.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (made, told) = tokio::sync::oneshot::channel();
            let sending = async move {
                for batch in batches {
                    tx.send(batch).expect("the removal takes batches");
                    tokio::task::yield_now().await;
                }
                drop(tx);
                if let Some(receipt) = receipt {
                    made.send(receipt)
                        .expect("the removal waits for its receipt");
                }
            };
            let owner = tenant("t");
            let (done, ()) = tokio::join!(store.purge_streamed(&owner, rx, told), sending);
            done
        }
    };
    let untouched = |when: &'static str| {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            assert_eq!(
                seqs(&*store, by_actor()).await,
                (1..=40).collect::<Vec<u64>>(),
                "{when}"
            );
            for id in &ids {
                assert!(
                    store.get(&tenant("t"), *id).await.expect("get").is_some(),
                    "{when}: {id}"
                );
            }
        }
    };
    assert_eq!(totals().await, (40, Some(40)));
    let abandoned = stream(vec![vec![2, 3], vec![7, 30]], None).await;
    assert!(matches!(abandoned, Ok(None)), "{abandoned:?}");
    untouched("abandoned").await;
    assert_eq!(totals().await, (40, Some(40)), "abandoned");
    let unordered = stream(vec![vec![2, 3], vec![3, 30]], Some(receipt())).await;
    assert!(unordered.is_err(), "positions out of order: {unordered:?}");
    untouched("out of order").await;
    let ahead = stream(vec![vec![2, 3], vec![41]], Some(receipt())).await;
    assert!(ahead.is_err(), "a position past the log: {ahead:?}");
    untouched("past the watermark").await;
    assert_eq!(totals().await, (40, Some(40)), "refused");
    let removed = [2u64, 3, 7, 30];
    let done = stream(vec![vec![2, 3], vec![], vec![7, 30]], Some(receipt()))
        .await
        .expect("removal")
        .expect("a receipt");
    assert_eq!(done.seq, 41);
    let left: Vec<u64> = (1..=40).filter(|s| !removed.contains(s)).collect();
    assert_eq!(seqs(&*store, by_actor()).await, left);
    assert!(
        store
            .get(&tenant("t"), ids[6])
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get(&tenant("t"), ids[7])
            .await
            .expect("get")
            .is_some()
    );
    store.settle().await.expect("settle");
    // The receipt's actor is another: the events' actor lost four.
    assert_eq!(totals().await, (37, Some(36)));
}

/// Retention's removal takes events out of the derived data and the log together (on SQLite at
/// the same time): when the derived data refuses (a position it has not indexed yet), the log's
/// transaction does not commit and every event is served as before; once indexed, the same
/// removal goes through.
pub async fn a_removal_the_derived_data_refuses_leaves_the_log_whole(store: Arc<dyn Store>) {
    let batch = |from: u64, to: u64| -> Vec<PreparedEvent> {
        (from..=to)
            .map(|n| {
                prepared(
                    "t",
                    json!({"action": "doc.read", "actor": {"id": "a"}, "metadata": {"n": n}}),
                )
            })
            .collect()
    };
    let mut ids = Vec::new();
    for (from, to) in [(1, 10), (11, 15)] {
        let appended = store.append(batch(from, to)).await.expect("append");
        ids.extend(appended.iter().map(|a| a.id));
        // The first ten indexed, the rest in the tail.
        if to == 10 {
            store.settle().await.expect("settle");
        }
    }
    let receipt = || {
        prepared(
            "t",
            json!({"action": "audit.purged", "actor": {"id": "retention", "type": "system"}}),
        )
    };
    let all = || ListQuery {
        tenant: tenant("t"),
        filter: EventFilter::default().with(fields::ACTOR_ID, ["a"]),
        order: Order::Asc,
        limit: 100,
        cursor: None,
    };
    let refused = store.purge(&tenant("t"), vec![2, 3, 12], receipt()).await;
    assert!(
        refused.is_err(),
        "a position past the watermark: {refused:?}"
    );
    assert_eq!(seqs(&*store, all()).await, (1..=15).collect::<Vec<u64>>());
    for id in &ids {
        assert!(
            store.get(&tenant("t"), *id).await.expect("get").is_some(),
            "{id} still served"
        );
    }
    store.settle().await.expect("settle");
    store
        .purge(&tenant("t"), vec![2, 3, 12], receipt())
        .await
        .expect("purge once indexed");
    let left: Vec<u64> = (1..=15).filter(|s| ![2, 3, 12].contains(s)).collect();
    assert_eq!(seqs(&*store, all()).await, left);
    assert!(
        store
            .get(&tenant("t"), ids[1])
            .await
            .expect("get")
            .is_none()
    );
}

/// The `seq` and `hash` columns of a CSV export of `query`, and what the export said it
/// wrote.
async fn exported_seqs(
    store: &dyn Store,
    query: &crate::export::ExportQuery,
) -> (Vec<(u64, String)>, crate::export::ExportSummary) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let export = async move {
        crate::export::run(store, crate::export::Format::Csv, query, &tx, &mut |_| {}).await
    };
    let collect = async {
        let mut bytes = Vec::new();
        while let Some(chunk) = rx.recv().await {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    };
    let (summary, bytes) = tokio::join!(export, collect);
    let summary = summary.expect("export");
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let seqs = reader
        .records()
        .map(|r| {
            let r = r.expect("a CSV record");
            (r[1].parse().expect("a seq"), r[26].to_owned())
        })
        .collect();
    (seqs, summary)
}

/// In both orders an export holds exactly the events a list pages through, once each and in
/// order with the hash the list serves, up to its bound: across many pages, the indexed part
/// and the tail, and events removed by retention (a page's worth of positions at once, a few
/// around a page's edge).
pub async fn an_export_holds_every_listed_event_once_in_order_across_pages(store: Arc<dyn Store>) {
    let page = crate::export::PAGE as u64;
    // Enough pages that an export reading two at once meets removed positions between
    // pages, with pages after them, in both orders.
    let total = 5 * page + 1_200;
    let mut batch = Vec::new();
    for n in 1..=total {
        let action = if n % 5 == 0 { "doc.shared" } else { "doc.read" };
        batch.push(prepared(
            "t",
            json!({"action": action, "actor": {"id": format!("a{}", n % 13)}, "metadata": {"n": n}}),
        ));
        if n % 400 == 0 {
            store
                .append(std::mem::take(&mut batch))
                .await
                .expect("append");
            // One tenant beside, so that its events are never exported here.
            store
                .append(vec![prepared("u", simple("doc.read", "b"))])
                .await
                .expect("append");
        }
        if n == total - 400 {
            store.settle().await.expect("settle");
        }
    }
    // Removed: a page's worth of positions, a few more just after them, and one in three of
    // a stretch.
    let mut removed: Vec<u64> = (page - 1..=2 * page - 3).collect();
    removed.extend(2 * page - 2..=2 * page + 3);
    removed.extend((2 * page + 100..2 * page + 400).filter(|n| n % 3 == 0));
    removed.sort_unstable();
    removed.dedup();
    let receipt = prepared(
        "t",
        json!({"action": "audit.purged", "actor": {"id": "retention", "type": "system"}}),
    );
    store
        .purge(&tenant("t"), removed.clone(), receipt)
        .await
        .expect("purge");
    let size = total + 1;
    let mut hashes = std::collections::HashMap::new();
    let mut query = list_all_query("t");
    loop {
        let listed = store.list(query.clone()).await.expect("list");
        for event in &listed.items {
            let hash = body(event)["hash"].as_str().expect("a hash").to_owned();
            hashes.insert(event.seq, hash);
        }
        match listed.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    for (filter, upto) in [
        (EventFilter::default(), size),
        (EventFilter::default(), 2 * page + 501),
        (
            EventFilter::default().with(fields::ACTION, ["doc.shared"]),
            size,
        ),
    ] {
        let listed = in_both_orders(&*store, &filter, 1000).await;
        let expected: Vec<u64> = listed.into_iter().filter(|s| *s <= upto).collect();
        for order in [Order::Asc, Order::Desc] {
            let query = crate::export::ExportQuery {
                tenant: tenant("t"),
                filter: filter.clone(),
                order,
                upto,
                checkpoint: None,
            };
            let (got, summary) = exported_seqs(&*store, &query).await;
            let mut want: Vec<(u64, String)> =
                expected.iter().map(|s| (*s, hashes[s].clone())).collect();
            if order == Order::Desc {
                want.reverse();
            }
            assert_eq!(got, want, "{filter:?} up to {upto}, {order:?}");
            assert_eq!(summary.rows, want.len() as u64);
        }
    }
}

/// Two stores on the same data (two servers on one PostgreSQL schema, two processes on one
/// SQLite directory): an indexer remembers the newest chunk's bitmaps between passes, and an
/// anonymisation run through the other store moves terms without moving the watermark. This
/// store's next pass must not write its remembered bitmaps back (the erased name's word
/// pointed at the erased events again).
pub async fn another_stores_anonymisation_is_not_written_back(
    this: Arc<dyn Store>,
    other: Arc<dyn Store>,
) {
    let t = tenant("t");
    let with_word = |store: &Arc<dyn Store>, w: &str| {
        let (store, t, w) = (store.clone(), t.clone(), w.to_owned());
        async move {
            let filter = EventFilter {
                words: vec![w],
                ..EventFilter::default()
            };
            seqs_listed(&*store, &t, filter).await
        }
    };
    let ann = json!({"id": "u-ann", "name": "Ann Erasable", "type": "user"});
    let viewed = || prepared("t", json!({"action": "report.viewed", "actor": ann}));
    for _ in 0..3 {
        this.append(vec![viewed()]).await.expect("append");
    }
    this.settle().await.expect("settle");
    assert_eq!(with_word(&this, "erasable").await, vec![1, 2, 3]);
    let done = crate::anonymize::anonymize(&*other, &t, "u-ann", |n, p| {
        Ok(prepared(
            "t",
            json!({"action": "audit.anonymized", "actor": {"id": "admin", "type": "service"},
                   "metadata": {"events_updated": n, "pseudonym": p}}),
        ))
    })
    .await
    .expect("anonymize");
    assert_eq!(done.events_updated, 3);
    assert_eq!(with_word(&other, "erasable").await, Vec::<u64>::new());
    this.append(vec![viewed()]).await.expect("append");
    this.settle().await.expect("settle");
    assert_eq!(
        with_word(&this, "erasable").await,
        vec![5],
        "the new event only"
    );
}
