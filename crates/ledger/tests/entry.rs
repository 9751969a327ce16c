//! The canonical entry encoding is pinned by golden files: any change to the bytes fails here.
//! Regenerate only for a new encoding version: `UPDATE_GOLDEN=1 cargo test -p sealtrail-ledger`.

use sealtrail_ledger::entry::{
    GENESIS, PersonalDigests, digests_for, encode_entry, event_leaf_hash, personal_digest,
};
use sealtrail_ledger::merkle::leaf_hash;
use sealtrail_model::{Event, Redactor, Timestamp, parse_event};
use serde_json::json;

fn event(value: serde_json::Value, seq: u64) -> Event {
    let len = value.to_string().len();
    let now = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").expect("time");
    let new = parse_event(value, len, "", &Redactor::default(), now).expect("valid");
    let id = uuid::Uuid::parse_str("0190a5d2-7a1e-7cc0-8d43-1c2b3a4d5e6f").expect("uuid");
    new.into_event(
        id,
        &sealtrail_model::Tenant::parse("acme").expect("tenant"),
        seq,
        Timestamp::parse_rfc3339("2026-11-23T12:00:01.5Z").expect("time"),
    )
}

fn full() -> Event {
    event(
        json!({
            "action": "asset.transferred", "category": "update", "event_type": "TRANSFERRED",
            "outcome": "failure", "error": "target site closed",
            "occurred_at": "2026-11-23T11:59:59.123456Z",
            "actor": {"id": "u-42", "type": "user", "name": "Ann Example", "email": "ann@example.com"},
            "target": {"type": "user", "id": "u-7", "name": "Bo Person"},
            "organization": {"id": "org-1", "name": "Example Org"},
            "context": {"ip": "2001:db8::1", "user_agent": "curl/8", "session_id": "s-1", "correlation_id": "c-1",
                        "endpoint": "/assets/{id}", "method": "POST", "status_code": 409, "duration_ms": 12.5},
            "changes": [{"field": "site", "old_value": {"b": [1, -2, 3.5], "a": null}, "new_value": true}],
            "related": [{"type": "transfer", "id": "T-1"}],
            "metadata": {"z": "last", "a": {"n": 18446744073709551615u64}}
        }),
        7,
    )
}

fn minimal() -> Event {
    event(json!({"action": "user.login", "actor": {"id": "u-1"}}), 1)
}

const ACTOR_KEY: [u8; 32] = [7; 32];
const TARGET_KEY: [u8; 32] = [9; 32];

fn check_golden(name: &str, bytes: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = format!("{}\n", hex::encode(bytes));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden");
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(
        text, golden,
        "the v1 encoding of {name} changed: every existing hash would break"
    );
}

#[test]
fn the_v1_encoding_is_pinned() {
    let e = full();
    let digests = digests_for(&e, &ACTOR_KEY, Some(&TARGET_KEY));
    let prev = [0xab; 32];
    check_golden("entry-v1-full.hex", &encode_entry(&e, &digests, &prev));
    check_golden("leaf-v1-full.hex", &event_leaf_hash(&e, &digests, &prev));
    let m = minimal();
    check_golden(
        "entry-v1-minimal.hex",
        &encode_entry(&m, &PersonalDigests::default(), &GENESIS),
    );
}

#[test]
fn personal_values_enter_only_as_digests() {
    let e = full();
    let digests = digests_for(&e, &ACTOR_KEY, Some(&TARGET_KEY));
    let bytes = encode_entry(&e, &digests, &GENESIS);
    for secret in [
        "Ann Example",
        "ann@example.com",
        "2001:db8::1",
        "curl/8",
        "Bo Person",
    ] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the leaf"
        );
    }
    // Erasing the values (anonymisation) leaves the leaf as it was, given the stored digests.
    let mut erased = e.clone();
    erased.actor.name = None;
    erased.actor.email = None;
    erased.target.as_mut().expect("target").name = None;
    if let Some(c) = erased.context.as_mut() {
        c.ip = None;
        c.user_agent = None;
    }
    assert_eq!(encode_entry(&erased, &digests, &GENESIS), bytes);
    // Without the key, a guessed value cannot be checked against the digest.
    assert_ne!(
        personal_digest(&[0; 32], "actor.name", "Ann Example"),
        digests.actor_name.expect("digest")
    );
    assert_eq!(
        personal_digest(&ACTOR_KEY, "actor.name", "Ann Example"),
        digests.actor_name.expect("digest")
    );
}

#[test]
fn every_field_and_the_predecessor_change_the_leaf() {
    let base = full();
    let digests = digests_for(&base, &ACTOR_KEY, Some(&TARGET_KEY));
    let leaf = |e: &Event, prev: &[u8; 32]| leaf_hash(&encode_entry(e, &digests, prev));
    let original = leaf(&base, &GENESIS);
    type Mutation = (&'static str, Box<dyn Fn(&mut Event)>);
    let mutations: Vec<Mutation> = vec![
        ("tenant", Box::new(|e| e.tenant.push('x'))),
        ("seq", Box::new(|e| e.seq += 1)),
        ("id", Box::new(|e| e.id = uuid::Uuid::nil())),
        (
            "recorded_at",
            Box::new(|e| e.recorded_at = Timestamp::from_micros(e.recorded_at.micros() + 1)),
        ),
        (
            "occurred_at",
            Box::new(|e| e.occurred_at = Timestamp::from_micros(e.occurred_at.micros() - 1)),
        ),
        ("action", Box::new(|e| e.action.push('x'))),
        (
            "category",
            Box::new(|e| e.category = sealtrail_model::Category::Delete),
        ),
        ("event_type", Box::new(|e| e.event_type = None)),
        (
            "outcome",
            Box::new(|e| e.outcome = sealtrail_model::Outcome::Success),
        ),
        ("error", Box::new(|e| e.error = Some("other".into()))),
        ("actor.id", Box::new(|e| e.actor.id.push('x'))),
        (
            "actor.type",
            Box::new(|e| e.actor.actor_type = sealtrail_model::ActorType::Service),
        ),
        (
            "target.id",
            Box::new(|e| e.target.as_mut().expect("t").id.push('x')),
        ),
        ("organization", Box::new(|e| e.organization = None)),
        (
            "context.method",
            Box::new(|e| e.context.as_mut().expect("c").method = Some("GET".into())),
        ),
        (
            "context.status_code",
            Box::new(|e| e.context.as_mut().expect("c").status_code = Some(200)),
        ),
        (
            "changes",
            Box::new(|e| e.changes[0].new_value = json!(false)),
        ),
        ("related", Box::new(|e| e.related.clear())),
        (
            "metadata",
            Box::new(|e| e.metadata = Some(json!({"z": "last"}))),
        ),
    ];
    for (name, mutate) in mutations {
        let mut e = base.clone();
        mutate(&mut e);
        assert_ne!(
            leaf(&e, &GENESIS),
            original,
            "changing {name} must change the leaf"
        );
    }
    assert_ne!(
        leaf(&base, &[1; 32]),
        original,
        "the predecessor is part of the leaf"
    );
}

/// Sealing a new event where it lies (its parts at its place) writes the very bytes of the
/// stored event it becomes, whatever it holds.
#[test]
fn a_new_event_at_its_place_encodes_as_the_stored_event() {
    use sealtrail_ledger::entry::{DEFAULT_PERSON_TYPES, EntryParts, digests_of, encode_parts};
    use sealtrail_ledger::view::PersonalValues;
    let bodies = [
        json!({"action": "user.login", "actor": {"id": "u-1"}}),
        json!({
            "action": "asset.transferred", "category": "update", "event_type": "TRANSFERRED",
            "outcome": "failure", "error": "closed", "occurred_at": "2026-11-23T11:59:59.123456Z",
            "actor": {"id": "u-42", "name": "Ann", "email": "ann@example.com"},
            "target": {"type": "user", "id": "u-7", "name": "Bo"},
            "organization": {"id": "org-1", "name": "Org"},
            "context": {"ip": "10.0.0.1", "user_agent": "curl/8", "duration_ms": 12.5},
            "before": {"site": "a", "tags": [1, 2]}, "after": {"site": "b", "tags": [1]},
            "related": [{"type": "transfer", "id": "T-1"}],
            "metadata": {"z": "last", "a": {"n": -3}}
        }),
    ];
    let tenant = sealtrail_model::Tenant::parse("acme").expect("tenant");
    let at = Timestamp::parse_rfc3339("2026-11-23T12:00:01.5Z").expect("time");
    let id = uuid::Uuid::now_v7();
    for body in bodies {
        let len = body.to_string().len();
        let new = parse_event(body, len, "", &Redactor::default(), at).expect("valid");
        let key = |_: &str| Ok::<_, std::convert::Infallible>(ACTOR_KEY);
        let parts = EntryParts::of_new(&new, id, tenant.as_str(), 3, at);
        let digests = digests_of(&parts, &DEFAULT_PERSON_TYPES, key).expect("digests");
        let placed = encode_parts(&parts, &digests, &[5; 32]);
        let values = PersonalValues::of_parts(&parts, &digests).to_bytes();
        let stored = new.clone().into_event(id, &tenant, 3, at);
        let stored_digests =
            sealtrail_ledger::entry::digests_with(&stored, &DEFAULT_PERSON_TYPES, key)
                .expect("digests");
        assert_eq!(digests, stored_digests);
        assert_eq!(placed, encode_entry(&stored, &stored_digests, &[5; 32]));
        assert_eq!(
            values,
            PersonalValues::of(&stored, &stored_digests).to_bytes()
        );
    }
}
