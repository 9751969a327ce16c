//! Reading entries back: every entry decodes to the event it seals and encodes again to the
//! same bytes; personal values round-trip through their stored form; anything else is refused
//! with an error, never a panic.

use proptest::prelude::*;
use sealtrail_ledger::entry::{GENESIS, PersonalDigests, digests_for, encode_entry};
use sealtrail_ledger::leaf_hash;
use sealtrail_ledger::view::{EntryView, MAX_DEPTH, PersonalValues, TargetName};
use sealtrail_model::{Event, Redactor, Timestamp, parse_event};
use serde_json::{Value, json};

fn event(value: Value, seq: u64) -> Event {
    let len = value.to_string().len();
    let now = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").expect("time");
    let new = parse_event(value, len, "", &Redactor::default(), now).expect("valid");
    new.into_event(
        uuid::Uuid::now_v7(),
        &sealtrail_model::Tenant::parse("acme").expect("tenant"),
        seq,
        now,
    )
}

fn full() -> Event {
    event(
        json!({
            "action": "asset.transferred", "category": "update", "event_type": "TRANSFERRED",
            "outcome": "failure", "error": "target site closed",
            "occurred_at": "2026-11-23T11:59:59.123456Z",
            "actor": {"id": "u-42", "type": "service", "name": "Ann Example", "email": "ann@example.com"},
            "target": {"type": "user", "id": "u-7", "name": "Bo Person"},
            "organization": {"id": "org-1", "name": "Example Org"},
            "context": {"ip": "2001:db8::1", "user_agent": "curl/8", "session_id": "s-1", "correlation_id": "c-1",
                        "endpoint": "/assets/{id}", "method": "POST", "status_code": 409, "duration_ms": 12.5},
            "changes": [{"field": "site", "old_value": {"b": [1, -2, 3.5], "a": null}, "new_value": true},
                        {"field": "n", "old_value": "x", "new_value": 18446744073709551615u64}],
            "related": [{"type": "transfer", "id": "T-1"}, {"type": "site", "id": "S-9"}],
            "metadata": {"z": "last", "a": {"n": -7, "f": 1.0, "e": [], "o": {}}, "ü": "é"}
        }),
        7,
    )
}

/// Seals `e` as a store does and reads it back the way a store's reads do.
fn round_trip(e: &Event, digests: &PersonalDigests) -> (Vec<u8>, Event) {
    let bytes = encode_entry(e, digests, &[0xab; 32]);
    let view = EntryView::parse(&bytes).expect("a fresh entry parses");
    let stored = PersonalValues::of(e, digests).to_bytes();
    let values = PersonalValues::from_bytes(&stored).expect("values parse");
    let back = view.to_event(&values, hex::encode(leaf_hash(&bytes)));
    (bytes, back)
}

#[test]
fn an_entry_renders_the_event_it_seals_byte_for_byte() {
    let mut e = full();
    let digests = digests_for(&e, &[7; 32], Some(&[9; 32]));
    let (bytes, back) = round_trip(&e, &digests);
    e.hash = hex::encode(leaf_hash(&bytes));
    assert_eq!(back, e);
    // What readers get is exactly the JSON the event serialised to before entries were kept.
    assert_eq!(
        serde_json::to_string(&back).expect("json"),
        serde_json::to_string(&e).expect("json")
    );
    assert_eq!(encode_entry(&back, &digests, &[0xab; 32]), bytes);
    let view = EntryView::parse(&bytes).expect("parse");
    assert_eq!(view.prev, [0xab; 32]);
    assert_eq!(view.digests, digests);
    assert_eq!(view.target.expect("target").name, TargetName::Digest);
}

#[test]
fn a_minimal_event_and_a_plain_target_name_round_trip() {
    for value in [
        json!({"action": "user.login", "actor": {"id": "u-1"}}),
        json!({"action": "a.b", "actor": {"id": "u"}, "target": {"type": "asset", "id": "a1", "name": "Laptop"},
               "context": {}}),
    ] {
        let mut e = event(value, 1);
        let (bytes, back) = round_trip(&e, &PersonalDigests::default());
        e.hash = hex::encode(leaf_hash(&bytes));
        assert_eq!(back, e);
    }
}

#[test]
fn erased_values_render_absent_and_keep_the_leaf() {
    let e = full();
    let digests = digests_for(&e, &[7; 32], Some(&[9; 32]));
    let bytes = encode_entry(&e, &digests, &GENESIS);
    let view = EntryView::parse(&bytes).expect("parse");
    let back = view.to_event(&PersonalValues::default(), String::new());
    assert_eq!(back.actor.name, None);
    assert_eq!(back.actor.email, None);
    assert_eq!(back.target.as_ref().and_then(|t| t.name.clone()), None);
    let ctx = back.context.as_ref().expect("context");
    assert_eq!((ctx.ip.as_ref(), ctx.user_agent.as_ref()), (None, None));
    assert_eq!(ctx.session_id.as_deref(), Some("s-1"));
    assert_eq!(encode_entry(&back, &digests, &GENESIS), bytes);
}

#[test]
fn personal_values_keep_their_stored_form() {
    let values = PersonalValues {
        actor_name: Some("Ann"),
        ip: Some(""),
        target_name: Some("Bö"),
        ..PersonalValues::default()
    };
    let bytes = values.to_bytes();
    assert_eq!(bytes[0], 0b1_0101);
    assert_eq!(PersonalValues::from_bytes(&bytes), Some(values));
    assert_eq!(
        PersonalValues::from_bytes(&[0]),
        Some(PersonalValues::default())
    );
    for bad in [
        &[][..],
        &[0x20],
        &[1, 0, 0, 0, 9, b'a'],
        &[1, 0, 0, 0, 1, 0xff],
        &[0, 0],
    ] {
        assert_eq!(PersonalValues::from_bytes(bad), None, "{bad:?}");
    }
}

#[test]
fn deep_nesting_is_refused_without_recursing_further() {
    let mut bytes = encode_entry(
        &event(json!({"action": "a", "actor": {"id": "u"}}), 1),
        &PersonalDigests::default(),
        &GENESIS,
    );
    // Replace "no metadata" (0) by MAX_DEPTH + 2 nested one-item arrays around a null.
    let at = bytes.len() - 33;
    assert_eq!(bytes[at], 0);
    let mut nested = vec![1u8];
    for _ in 0..MAX_DEPTH + 2 {
        nested.extend_from_slice(&[7, 0, 0, 0, 1]);
    }
    nested.push(0);
    bytes.splice(at..=at, nested);
    let err = EntryView::parse(&bytes).expect_err("too deep");
    assert_eq!(err.what, "JSON nests too deep");
}

#[test]
fn non_canonical_entries_are_refused() {
    let e = event(
        json!({"action": "a", "actor": {"id": "u"}, "metadata": {"a": 1, "b": 2}}),
        1,
    );
    let bytes = encode_entry(&e, &PersonalDigests::default(), &GENESIS);
    assert!(EntryView::parse(&bytes).is_ok());
    let mut extra = bytes.clone();
    extra.push(0);
    assert_eq!(
        EntryView::parse(&extra).expect_err("trailing").what,
        "bytes after the predecessor hash"
    );
    let mut version = bytes.clone();
    version[0] = 3;
    assert_eq!(
        EntryView::parse(&version).expect_err("v3").what,
        "an unknown entry version"
    );
    // A version-1 entry relabelled as version 2 is not a version-2 entry either.
    version[0] = 2;
    assert!(EntryView::parse(&version).is_err());
    // Swap the two metadata keys' names: "b" then "a" is out of order.
    let text = hex::encode(&bytes);
    let (a, b) = (
        hex::encode(b"\x00\x00\x00\x01a"),
        hex::encode(b"\x00\x00\x00\x01b"),
    );
    let swapped = text
        .replacen(&a, "#", 1)
        .replacen(&b, &a, 1)
        .replacen('#', &b, 1);
    let swapped = hex::decode(swapped).expect("hex");
    assert_eq!(
        EntryView::parse(&swapped).expect_err("order").what,
        "object keys out of order"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any truncation or any changed byte of a real entry is either refused or still encodes
    /// back to exactly its own bytes: nothing panics and nothing decodes ambiguously.
    #[test]
    fn damaged_entries_are_refused_or_decode_faithfully(cut in any::<usize>(), at in any::<usize>(), byte in any::<u8>()) {
        let e = full();
        let digests = digests_for(&e, &[7; 32], Some(&[9; 32]));
        let bytes = encode_entry(&e, &digests, &GENESIS);
        let cut = cut % bytes.len();
        prop_assert!(EntryView::parse(&bytes[..cut]).is_err());
        let mut changed = bytes.clone();
        changed[at % bytes.len()] = byte;
        if let Ok(view) = EntryView::parse(&changed) {
            let names = PersonalValues::default();
            let back = view.to_event(&names, String::new());
            prop_assert_eq!(
                view.served(&names, "").to_json().expect("served"),
                serde_json::to_string(&back).expect("built")
            );
            prop_assert_eq!(encode_entry(&back, &view.digests, &view.prev), changed);
        }
    }
}
