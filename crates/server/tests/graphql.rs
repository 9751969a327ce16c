//! `/graphql` against a real server: its answers equal the REST API's, it keeps the REST
//! credential and tenant rules, it refuses queries too deep or too costly, and its schema is
//! the one in the docs.

mod common;

use common::{ADMIN, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// Every field of an event, as a fragment.
const EVENT: &str = "fragment E on AuditLog { id tenant seq recordedAt occurredAt action category
  eventType outcome error actor { id type name email } target { type id name }
  organization { id name }
  context { ip userAgent sessionId correlationId endpoint method statusCode durationMs }
  changes { field oldValue newValue changedAt changedBy } related { type id } metadata hash }";

fn camel(s: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// An object's keys in camelCase, its values as they are.
fn shallow(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (camel(k), v.clone())).collect()),
        other => other.clone(),
    }
}

/// A REST event as GraphQL names it: structural keys in camelCase, free JSON (metadata,
/// change values) untouched.
fn as_graphql(event: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in event.as_object().expect("an event object") {
        let v = match k.as_str() {
            "actor" | "target" | "organization" | "context" => shallow(v),
            "changes" | "related" => Value::Array(
                v.as_array()
                    .expect("an array")
                    .iter()
                    .map(shallow)
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(camel(k), v);
    }
    Value::Object(out)
}

async fn graphql(app: &common::TestApp, token: &str, query: &str, variables: Value) -> Value {
    let a = app
        .post(
            "/graphql",
            token,
            &json!({"query": query, "variables": variables}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{query}: {:?}", a.body);
    a.body
}

fn seed() -> Value {
    json!([
        {"action": "invoice.paid", "actor": {"id": "u1", "type": "user", "name": "Alice Martin", "email": "a@x.io"},
         "target": {"type": "invoice", "id": "INV-1", "name": "First"}, "organization": {"id": "o1", "name": "Org"},
         "context": {"ip": "2001:DB8::1", "user_agent": "curl/8", "session_id": "s1", "correlation_id": "c1",
                     "endpoint": "/invoices/1", "method": "POST", "status_code": 200, "duration_ms": 12.5},
         "metadata": {"note": "urgent refund", "nested": {"snake_case": [1, null, "x"]}},
         "occurred_at": "2026-03-01T10:00:00Z"},
        {"action": "invoice.voided", "actor": {"id": "u2"}, "outcome": "failure", "error": "Card declined",
         "target": {"type": "invoice", "id": "INV-1"}, "event_type": "STATUS_CHANGED",
         "before": {"status": "open", "lines": [1, 2]}, "after": {"status": "void", "lines": [1]},
         "related": [{"type": "customer", "id": "C-9"}], "occurred_at": "2026-03-01T11:30:00Z"},
        {"action": "user.login", "actor": {"id": "u1", "name": "Alice Martin"}, "category": "auth",
         "related": [{"type": "invoice", "id": "INV-1"}], "occurred_at": "2026-03-02T09:00:00Z"},
        {"action": "invoice.paid", "actor": {"id": "u3"}, "target": {"type": "invoice", "id": "INV-2"},
         "occurred_at": "2026-03-03T00:00:00Z"}
    ])
}

#[tokio::test]
async fn graphql_answers_equal_rest_answers() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    assert_eq!(app.ingest(&key, &seed()).await.status, StatusCode::CREATED);

    // Lists: the same filters, words, order and paging give the same events.
    let cases: [(&str, Value, &str); 6] = [
        ("{}", json!({}), ""),
        (
            "{filter: {actorId: [\"u1\"]}, order: ASC}",
            json!({}),
            "actor_id=u1&order=asc",
        ),
        (
            "{filter: {action: [\"invoice.paid\", \"invoice.voided\"], from: \"2026-03-01T11:00:00Z\"}}",
            json!({}),
            "action=invoice.paid&action=invoice.voided&from=2026-03-01T11:00:00Z",
        ),
        ("{q: \"alice refund\"}", json!({}), "q=alice+refund"),
        (
            "{filter: {outcome: [\"failure\"], ip: []}, limit: 1}",
            json!({}),
            "outcome=failure&limit=1",
        ),
        (
            "{filter: {ip: [\"2001:db8:0::1\"]}}",
            json!({}),
            "ip=2001:db8:0::1",
        ),
    ];
    for (args, vars, rest) in cases {
        let args = args
            .strip_prefix('{')
            .and_then(|a| a.strip_suffix('}'))
            .expect("braced arguments");
        let query = if args.is_empty() {
            format!("{{ auditLogs {{ items {{ ...E }} nextCursor }} }} {EVENT}")
        } else {
            format!("{{ auditLogs({args}) {{ items {{ ...E }} nextCursor }} }} {EVENT}")
        };
        let g = graphql(&app, &key, &query, vars).await;
        assert!(g.get("errors").is_none(), "{query}: {g}");
        let r = app.get(&format!("/api/v1/audit-logs?{rest}"), &key).await;
        assert_eq!(r.status, StatusCode::OK);
        let rest_items: Vec<Value> = r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(as_graphql)
            .collect();
        assert!(!rest_items.is_empty(), "{rest}");
        assert_eq!(
            g["data"]["auditLogs"]["items"],
            Value::Array(rest_items),
            "{query}"
        );
        assert_eq!(
            g["data"]["auditLogs"]["nextCursor"].is_null(),
            r.body["next_cursor"].is_null()
        );
    }

    // Paging with variables follows the same cursors to the same events.
    let paged = "query($c: String) { auditLogs(limit: 1, order: ASC, cursor: $c) { items { seq } nextCursor } }";
    let (mut cursor, mut seqs) = (Value::Null, Vec::new());
    loop {
        let g = graphql(&app, &key, paged, json!({"c": cursor})).await;
        let page = &g["data"]["auditLogs"];
        seqs.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["seq"].as_u64().expect("seq")),
        );
        cursor = page["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seqs, [1, 2, 3, 4]);

    // A timeline, with its relations.
    let g = graphql(
        &app,
        &key,
        &format!("{{ entityHistory(type: \"invoice\", id: \"INV-1\") {{ items {{ ...E relation }} nextCursor }} }} {EVENT}"),
        json!({}),
    )
    .await;
    let r = app
        .get("/api/v1/entities/invoice/INV-1/history", &key)
        .await;
    let rest_items: Vec<Value> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(as_graphql)
        .collect();
    assert_eq!(rest_items.len(), 3);
    assert_eq!(
        g["data"]["entityHistory"]["items"],
        Value::Array(rest_items)
    );
    let g = graphql(
        &app,
        &key,
        "{ entityHistory(type: \"invoice\", id: \"INV-1\", eventType: \"STATUS_CHANGED\") { items { seq relation } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        g["data"]["entityHistory"]["items"],
        json!([{"seq": 2, "relation": "target"}])
    );

    // One actor's activity.
    let g = graphql(
        &app,
        &key,
        &format!("{{ userActivity(actorId: \"u1\", filter: {{category: [\"auth\"]}}) {{ items {{ ...E }} }} }} {EVENT}"),
        json!({}),
    )
    .await;
    let r = app
        .get("/api/v1/audit-logs/user/u1?category=auth", &key)
        .await;
    let rest_items: Vec<Value> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(as_graphql)
        .collect();
    assert_eq!(rest_items.len(), 1);
    assert_eq!(g["data"]["userActivity"]["items"], Value::Array(rest_items));

    // Statistics.
    let g = graphql(
        &app,
        &key,
        "{ statistics(from: \"2026-03-01T00:00:00Z\", to: \"2026-03-04T00:00:00Z\", bucket: HOUR, top: 2) {
            from to bucket total failures buckets { start count failures }
            topActors { id count } topActions { action count } topTargets { type id count } } }",
        json!({}),
    )
    .await;
    let r = app
        .get(
            "/api/v1/audit-logs/statistics?from=2026-03-01T00:00:00Z&to=2026-03-04T00:00:00Z&bucket=hour&top=2",
            &key,
        )
        .await;
    let mut rest = shallow(&r.body);
    rest["bucket"] = json!("HOUR");
    assert!(rest["topTargets"].as_array().is_some_and(|l| !l.is_empty()));
    assert_eq!(rest["total"], 4);
    assert_eq!(g["data"]["statistics"], rest);
}

#[tokio::test]
async fn graphql_keeps_the_rest_rules_and_its_limits() {
    let app = spawn_app().await;
    let key = app.key("t", &["ingest", "read"]).await;
    let other = app.key("o", &["ingest", "read"]).await;
    let ingest_only = app.key("t", &["ingest"]).await;
    assert_eq!(app.ingest(&key, &seed()).await.status, StatusCode::CREATED);
    let count = "{ auditLogs(limit: 1000) { items { seq tenant } } }";

    // Credentials: none is 401, no read scope 403, as problems; another tenant's events are
    // never seen, and naming another tenant is an error.
    let a = app
        .raw(
            Method::POST,
            "/graphql",
            None,
            Some("application/json"),
            Some(json!({"query": count}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.is_problem());
    let a = app
        .post("/graphql", &ingest_only, &json!({"query": count}))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let g = graphql(&app, &other, count, json!({})).await;
    assert_eq!(g["data"]["auditLogs"]["items"], json!([]));
    let g = graphql(
        &app,
        &other,
        "{ auditLogs(tenant: \"t\") { items { seq } } }",
        json!({}),
    )
    .await;
    assert_eq!(g["errors"][0]["extensions"]["code"], "FORBIDDEN", "{g}");
    assert!(g["data"].is_null());
    let g = graphql(
        &app,
        &other,
        "{ statistics(tenant: \"t\") { total } }",
        json!({}),
    )
    .await;
    assert_eq!(g["errors"][0]["extensions"]["status"], 403, "{g}");
    // A global admin names the tenant, and the read is audited like a REST one.
    let g = graphql(
        &app,
        ADMIN,
        "{ auditLogs(tenant: \"t\") { items { seq } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        g["data"]["auditLogs"]["items"].as_array().map(Vec::len),
        Some(4)
    );
    let events = app.all_events(&key).await;
    let last = events.last().expect("an audit event");
    assert_eq!(last["action"], "audit.read_cross_tenant");
    assert_eq!(last["metadata"]["path"], "/graphql");

    // Bad arguments are errors naming them, as REST names its fields.
    for (query, field) in [
        (
            "{ auditLogs(filter: {outcome: [\"maybe\"]}) { items { seq } } }",
            "filter.outcome",
        ),
        ("{ auditLogs(limit: 0) { items { seq } } }", "limit"),
        (
            "{ auditLogs(cursor: \"nope\") { items { seq } } }",
            "cursor",
        ),
        (
            "{ auditLogs(filter: {ip: [\"1.2.3\"]}) { items { seq } } }",
            "filter.ip",
        ),
        (
            "{ entityHistory(type: \"a\", id: \"b\", limit: 5000) { items { seq } } }",
            "limit",
        ),
        (
            "{ userActivity(actorId: \"u1\", filter: {actorId: [\"u2\"]}) { items { seq } } }",
            "filter.actorId",
        ),
        ("{ statistics(top: 5000) { total } }", "top"),
    ] {
        let g = graphql(&app, &key, query, json!({})).await;
        let ext = &g["errors"][0]["extensions"];
        assert_eq!(ext["code"], "BAD_USER_INPUT", "{query}: {g}");
        assert_eq!(ext["errors"][0]["field"], field, "{query}: {g}");
    }
    // Malformed dates and unknown fields fail validation, before any read.
    for query in [
        "{ statistics(from: \"yesterday\") { total } }",
        "{ auditLogs { items { password } } }",
        "{ auditLogs(filter: {colour: [\"red\"]}) { items { seq } } }",
        "mutation { auditLogs { items { seq } } }",
    ] {
        let g = graphql(&app, &key, query, json!({})).await;
        assert!(
            g["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{query}: {g}"
        );
        assert!(g["data"].is_null(), "{query}: {g}");
    }

    // Depth and complexity limits.
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }";
    let g = graphql(&app, &key, deep, json!({})).await;
    assert!(
        g["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nested too deep")),
        "{g}"
    );
    let fields = "items { id seq action actor { id name } target { type id } changes { field oldValue newValue } metadata }";
    let costly: String = (0..6)
        .map(|i| format!("a{i}: auditLogs(limit: 1000) {{ {fields} }} "))
        .collect();
    let g = graphql(&app, &key, &format!("{{ {costly} }}"), json!({})).await;
    assert!(
        g["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too complex")),
        "{g}"
    );
    let g = graphql(
        &app,
        &key,
        &format!("{{ auditLogs(limit: 1000) {{ {fields} }} }}"),
        json!({}),
    )
    .await;
    assert!(g.get("errors").is_none(), "one full page is allowed: {g}");

    // GET takes the query (and variables) in the query string.
    let path = format!(
        "/graphql?query={}&variables={}",
        urlencode("query($a: String!) { userActivity(actorId: $a) { items { seq } } }"),
        urlencode(r#"{"a": "u1"}"#)
    );
    let a = app.get(&path, &key).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body["data"]["userActivity"]["items"],
        json!([{"seq": 3}, {"seq": 1}])
    );
    let a = app.get("/graphql", &key).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.fields(), ["query"]);
    let a = app
        .raw(
            Method::POST,
            "/graphql",
            Some(&key),
            Some("application/json"),
            Some(b"{\"query\": ".to_vec()),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.is_problem());
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `docs/schema.graphql` is the schema the server serves (`UPDATE_SCHEMA=1` rewrites it).
#[test]
fn the_documented_schema_is_the_served_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema.graphql");
    let served = sealtrail_server::graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &served).expect("write the schema");
    }
    let documented = std::fs::read_to_string(&path).expect("docs/schema.graphql");
    assert_eq!(
        documented, served,
        "run with UPDATE_SCHEMA=1 to rewrite the docs"
    );
    // Every filter a REST list or search takes is a field of AuditLogFilter.
    let filter = served
        .split("input AuditLogFilter {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("AuditLogFilter");
    for field in sealtrail_store::Field::all() {
        let spec = field.spec();
        if spec.exposure == sealtrail_store::fields::Exposure::Internal {
            continue;
        }
        let name = camel(spec.name);
        assert!(
            filter.contains(&format!("\t{name}: ")) || filter.contains(&format!(" {name}: ")),
            "AuditLogFilter lacks {name}"
        );
    }
}
