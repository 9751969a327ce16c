//! Serving an event straight from its entry ([`EntryView::served`]) writes exactly the JSON of
//! the event [`EntryView::to_event`] builds, for random events of both entry versions, with
//! their personal values held, erased or never given.

use proptest::prelude::*;
use sealtrail_ledger::entry::{
    DEFAULT_PERSON_TYPES, EntryParts, GENESIS, digests_for, encode_entry, encode_new_v2,
};
use sealtrail_ledger::personal::{Held, rewrite};
use sealtrail_ledger::view::{EntryView, PersonalValues};
use sealtrail_model::{Redactor, Timestamp, parse_event};
use serde_json::{Map, Value, json};

/// Text with what JSON must escape, non-ASCII and nothing at all among it.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        "\\PC{0,12}",
        Just("quote \" back \\ slash / tab \t nl \n cr \r bell \u{7} del \u{7f}".to_owned()),
        Just(String::new()),
    ]
}

/// Any JSON value, numbers of every tag included.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-zé\"]{0,4}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An event as a client sends it, each optional part present or not.
fn new_event() -> impl Strategy<Value = Value> {
    let person = prop_oneof![Just("user"), Just("asset")];
    (
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of("[a-z]{1,6}@example\\.com"),
            any::<bool>(),
            prop::option::of((person, "[a-z0-9-]{1,8}", prop::option::of(text()))),
            prop::option::of(("[a-z0-9-]{1,8}", prop::option::of(text()))),
        ),
        (
            prop::option::of((
                prop::option::of("[0-9.]{7,15}"),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(100u16..600),
                prop::option::of(prop_oneof![
                    any::<u32>().prop_map(Value::from),
                    (0.0f64..1e6).prop_map(Value::from)
                ]),
            )),
            prop::collection::vec(("[a-z]{1,6}", json_value(), json_value()), 0..3),
            prop::collection::vec(("[a-z]{1,6}", "[A-Z0-9-]{1,6}"), 0..3),
            prop::option::of(json_value()),
            -2_000_000_000_000_000i64..4_000_000_000_000_000,
        ),
    )
        .prop_map(
            |(
                (error, name, email, failed, target, org),
                (context, changes, related, metadata, occurred),
            )| {
                let mut e = json!({
                    "action": "record.changed",
                    "outcome": if failed { "failure" } else { "success" },
                    "occurred_at": Timestamp::from_micros(occurred).to_rfc3339(),
                    "actor": {"id": "u-1", "name": name, "email": email},
                });
                let obj = e.as_object_mut().expect("object");
                if let Some(error) = error {
                    obj.insert("error".into(), json!(error));
                }
                if let Some((kind, id, name)) = target {
                    obj.insert(
                        "target".into(),
                        json!({"type": kind, "id": id, "name": name}),
                    );
                }
                if let Some((id, name)) = org {
                    obj.insert("organization".into(), json!({"id": id, "name": name}));
                }
                if let Some((ip, agent, endpoint, status, duration)) = context {
                    obj.insert(
                        "context".into(),
                        json!({"ip": ip, "user_agent": agent, "endpoint": endpoint,
                               "status_code": status, "duration_ms": duration}),
                    );
                }
                let changes: Vec<Value> = changes
                    .into_iter()
                    .map(|(f, old, new)| json!({"field": f, "old_value": old, "new_value": new}))
                    .collect();
                obj.insert("changes".into(), Value::Array(changes));
                let related: Vec<Value> = related
                    .into_iter()
                    .map(|(t, id)| json!({"type": t, "id": id}))
                    .collect();
                obj.insert("related".into(), Value::Array(related));
                if let Some(m) = metadata {
                    obj.insert("metadata".into(), m);
                }
                e
            },
        )
}

fn parsed(value: Value) -> Option<sealtrail_model::Event> {
    let len = value.to_string().len();
    let now = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").expect("time");
    let new = parse_event(value, len, "", &Redactor::default(), now).ok()?;
    Some(new.into_event(
        uuid::Uuid::now_v7(),
        &sealtrail_model::Tenant::parse("acme").expect("tenant"),
        42,
        now,
    ))
}

/// What `write` appends to an empty buffer, as text.
fn written(
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), sealtrail_ledger::view::DecodeError>,
) -> String {
    let mut out = Vec::new();
    write(&mut out).expect("written");
    String::from_utf8(out).expect("UTF-8")
}

/// Both renderings of one stored event.
fn both(entry: &[u8], held: &[u8]) -> (String, String) {
    let view = EntryView::parse(entry).expect("a fresh entry parses");
    let values = PersonalValues::from_bytes(held).expect("held values parse");
    let built = view.to_event(&values, "ab".repeat(32));
    let served = view
        .served(&values, &"ab".repeat(32))
        .to_json()
        .expect("served");
    (serde_json::to_string(&built).expect("built"), served)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_served_event_is_the_json_of_the_event_built(value in new_event()) {
        let Some(event) = parsed(value) else { return Ok(()) };
        // Version 1: the values beside the entry, and none (all erased).
        let digests = digests_for(&event, &[7; 32], Some(&[9; 32]));
        let entry = encode_entry(&event, &digests, &GENESIS);
        for held in [PersonalValues::of(&event, &digests).to_bytes(), PersonalValues::default().to_bytes()] {
            let (built, served) = both(&entry, &held);
            prop_assert_eq!(built, served);
        }
        // Version 2: the values held, then every one erased as anonymisation does.
        let mut n = 0u8;
        let (entry, held) = encode_new_v2(&EntryParts::of_event(&event), &DEFAULT_PERSON_TYPES, &GENESIS, || {
            n = n.wrapping_add(1);
            [n; 16]
        });
        let erased = rewrite(&held, |_, h| match h {
            Held::Open { .. } => Held::Erased,
            other => other,
        })
        .expect("well formed");
        for held in [held, erased] {
            let (built, served) = both(&entry, &held);
            prop_assert_eq!(built, served);
        }
    }
}

#[test]
fn changes_and_metadata_serve_alone_as_inside_the_event() {
    let event = parsed(json!({
        "action": "a.b", "actor": {"id": "u", "email": "u@example.com"},
        "changes": [{"field": "mail", "old_value": "u@example.com", "new_value": {"k": [1, 2.5, null]}}],
        "metadata": {"z": "\u{1}", "a": -1},
    }))
    .expect("valid");
    let mut n = 0u8;
    let (entry, held) = encode_new_v2(
        &EntryParts::of_event(&event),
        &DEFAULT_PERSON_TYPES,
        &GENESIS,
        || {
            n += 1;
            [n; 16]
        },
    );
    let view = EntryView::parse(&entry).expect("parse");
    let values = PersonalValues::from_bytes(&held).expect("held");
    let built = view.to_event(&values, String::new());
    assert_eq!(
        written(|out| view.served_changes(&values).write_json(out)),
        serde_json::to_string(&built.changes).expect("changes")
    );
    let metadata = view.served_metadata().expect("metadata");
    assert!(!metadata.is_null());
    assert_eq!(
        written(|out| metadata.write_json(out)),
        r#"{"a":-1,"z":"\u0001"}"#
    );
    let none = EntryView::parse(&encode_entry(
        &parsed(json!({"action": "a.b", "actor": {"id": "u"}, "metadata": null})).expect("valid"),
        &Default::default(),
        &GENESIS,
    ))
    .expect("parse")
    .served_metadata()
    .is_none_or(|m| m.is_null());
    assert!(none);
}
