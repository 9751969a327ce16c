//! Entries of version 2: every personal value, the actor's id among them, enters the leaf only
//! as a digest under an opening kept beside it. The bytes are pinned; a stored event renders
//! back exactly; erasing values (anonymisation) leaves every byte of the entry as it was and
//! still checks; a verifier holding only the event and its seal material encodes the same bytes.

use proptest::prelude::*;
use sealtrail_ledger::entry::{
    DEFAULT_PERSON_TYPES, EntryParts, GENESIS, encode_new_v2, json_bytes, reencode_v2,
};
use sealtrail_ledger::leaf_hash;
use sealtrail_ledger::personal::{
    Held, Opening, SEAL_MARK, SEAL_MARK_WITH_DIGESTS, Slot, held, is_seal_material,
    parse_seal_material, rewrite, seal_material,
};
use sealtrail_ledger::view::{EntryView, Ident, PersonalValues, REDACTED};
use sealtrail_model::{Event, Redactor, Timestamp, parse_event};
use serde_json::{Value, json};

fn event(value: Value, seq: u64) -> Event {
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

/// A person (`u-42`) changes another person's (`u-7`) record.
fn about_a_person() -> Event {
    event(
        json!({
            "action": "user.updated", "category": "update", "event_type": "PROFILE",
            "outcome": "failure", "error": "locked",
            "occurred_at": "2026-11-23T11:59:59.123456Z",
            "actor": {"id": "u-42", "type": "user", "name": "Ann Example", "email": "ann@example.com"},
            "target": {"type": "User", "id": "u-7", "name": "Bo Person"},
            "organization": {"id": "org-1", "name": "Example Org"},
            "context": {"ip": "2001:db8::1", "user_agent": "curl/8", "session_id": "s-1",
                        "method": "POST", "status_code": 409, "duration_ms": 12.5},
            "changes": [{"field": "email", "old_value": "bo@old.example", "new_value": "bo@new.example"},
                        {"field": "tags", "old_value": null, "new_value": ["a", 1]}],
            "related": [{"type": "team", "id": "T-1"}],
            "metadata": {"z": "last", "a": {"n": -7}}
        }),
        7,
    )
}

/// A person changes an asset: only a change value equal to one of the event's personal values
/// (here the actor's e-mail) is personal.
fn about_an_asset() -> Event {
    event(
        json!({
            "action": "asset.updated",
            "actor": {"id": "u-42", "email": "ann@example.com"},
            "target": {"type": "asset", "id": "a-1", "name": "Laptop"},
            "changes": [{"field": "owner", "old_value": "ann@example.com", "new_value": "it@example.com"},
                        {"field": "site", "old_value": null, "new_value": "u-42"}]
        }),
        1,
    )
}

fn counter() -> impl FnMut() -> Opening {
    let mut n = 0u8;
    move || {
        n += 1;
        [n; 16]
    }
}

fn seal(e: &Event, prev: &[u8; 32]) -> (Vec<u8>, Vec<u8>) {
    encode_new_v2(
        &EntryParts::of_event(e),
        &DEFAULT_PERSON_TYPES,
        prev,
        counter(),
    )
}

fn render(entry: &[u8], held: &[u8]) -> Event {
    let view = EntryView::parse(entry).expect("a version-2 entry parses");
    let values = PersonalValues::from_bytes(held).expect("held values parse");
    view.to_event(&values, hex::encode(leaf_hash(entry)))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn check_golden(name: &str, bytes: &[u8]) {
    check_golden_text(name, &format!("{}\n", hex::encode(bytes)));
}

fn check_golden_text(name: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).expect("write golden");
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(
        text, golden,
        "the v2 encoding of {name} changed: every existing hash would break"
    );
}

#[test]
fn the_v2_encoding_is_pinned() {
    let (entry, held) = seal(&about_a_person(), &[0xab; 32]);
    check_golden("entry-v2-person.hex", &entry);
    check_golden("held-v2-person.hex", &held);
    check_golden("leaf-v2-person.hex", &leaf_hash(&entry));
    let (entry, held) = seal(&about_an_asset(), &GENESIS);
    check_golden("entry-v2-asset.hex", &entry);
    check_golden("held-v2-asset.hex", &held);
}

#[test]
fn a_v2_entry_renders_the_event_it_seals_and_holds_no_personal_value() {
    for original in [about_a_person(), about_an_asset()] {
        let (entry, held) = seal(&original, &[0xab; 32]);
        let mut expected = original.clone();
        expected.hash = hex::encode(leaf_hash(&entry));
        assert_eq!(render(&entry, &held), expected);
        assert_eq!(entry[0], 2);
        let view = EntryView::parse(&entry).expect("parse");
        assert_eq!(view.actor_id, Ident::Personal);
        assert_eq!(
            view.held_mismatch(&PersonalValues::from_bytes(&held).expect("held")),
            None
        );
    }
    let (entry, _) = seal(&about_a_person(), &GENESIS);
    for secret in [
        "u-42",
        "Ann Example",
        "ann@example.com",
        "2001:db8::1",
        "curl/8",
        "u-7",
        "Bo Person",
        "bo@old.example",
        "bo@new.example",
    ] {
        assert!(!contains(&entry, secret), "{secret} is in the leaf");
    }
    // What is not personal stays in the clear: the target's type, the context's method.
    assert!(contains(&entry, "User") && contains(&entry, "POST"));
    let (entry, stored) = seal(&about_an_asset(), &GENESIS);
    assert!(!contains(&entry, "ann@example.com") && !contains(&entry, "u-42"));
    // An asset is not a person: its id and name, and the other change value, are in the clear.
    assert!(contains(&entry, "a-1") && contains(&entry, "Laptop"));
    assert!(contains(&entry, "it@example.com"));
    let slots: Vec<Slot> = held(&stored).map(|(s, _)| s).collect();
    assert_eq!(
        slots,
        [
            Slot::ActorId,
            Slot::ActorEmail,
            Slot::ChangeOld(0),
            Slot::ChangeNew(1)
        ]
    );
}

/// Anonymises `subject` in a stored form as the store will: its ids become `pseudonym`, every
/// other value of its own is erased.
fn anonymise(entry: &[u8], stored: &[u8], subject_is_actor: bool, pseudonym: &str) -> Vec<u8> {
    use sealtrail_ledger::personal::Owner;
    let view = EntryView::parse(entry).expect("parse");
    let person = view.target_is_person();
    let mine = if subject_is_actor {
        Owner::Actor
    } else {
        Owner::Target
    };
    rewrite(stored, |slot, h| {
        if slot.owner(person) != mine {
            return h;
        }
        match slot {
            Slot::ActorId | Slot::TargetId => Held::Replaced(pseudonym),
            _ => Held::Erased,
        }
    })
    .expect("well formed")
}

#[test]
fn erasing_values_keeps_every_byte_of_the_entry_and_still_checks() {
    let original = about_a_person();
    let (entry, stored) = seal(&original, &[0xab; 32]);
    let pseudonym = "anon_0123456789abcdef";
    let erased = anonymise(&entry, &stored, false, pseudonym);
    for secret in ["u-7", "Bo Person", "bo@old.example", "bo@new.example"] {
        assert!(!contains(&erased, secret), "{secret} survived erasure");
    }
    // The actor's values stay: only the target was anonymised.
    assert!(contains(&erased, "Ann Example"));
    let view = EntryView::parse(&entry).expect("parse");
    let values = PersonalValues::from_bytes(&erased).expect("held");
    assert_eq!(view.held_mismatch(&values), None);
    let shown = render(&entry, &erased);
    let target = shown.target.as_ref().expect("target");
    assert_eq!(
        (target.id.as_str(), target.name.as_deref()),
        (pseudonym, None)
    );
    assert_eq!(shown.changes[0].old_value, json!(REDACTED));
    assert_eq!(
        shown.changes[1].old_value,
        Value::Null,
        "null was never personal"
    );
    assert_eq!(shown.changes[1].new_value, json!(REDACTED));
    assert_eq!(shown.actor.id, "u-42");
    assert_eq!(shown.hash, original_hash(&entry));

    // Then the actor: its id becomes its pseudonym, in `changed_by` too.
    let both = anonymise(&entry, &erased, true, "anon_fedcba9876543210");
    let shown = render(&entry, &both);
    assert_eq!(shown.actor.id, "anon_fedcba9876543210");
    assert_eq!(shown.changes[0].changed_by, "anon_fedcba9876543210");
    assert_eq!(
        (shown.actor.name.as_deref(), shown.actor.email.as_deref()),
        (None, None)
    );
    let context = shown.context.as_ref().expect("context");
    assert_eq!(
        (context.ip.as_deref(), context.user_agent.as_deref()),
        (None, None)
    );
    assert_eq!(context.method.as_deref(), Some("POST"));
    assert_eq!(
        view.held_mismatch(&PersonalValues::from_bytes(&both).expect("held")),
        None
    );
    assert!(PersonalValues::from_bytes(&both).expect("held").is_empty());
}

fn original_hash(entry: &[u8]) -> String {
    hex::encode(leaf_hash(entry))
}

#[test]
fn an_altered_value_or_a_moved_one_is_caught() {
    let (entry, stored) = seal(&about_a_person(), &GENESIS);
    let view = EntryView::parse(&entry).expect("parse");
    // A different e-mail under the same opening.
    let altered = rewrite(&stored, |slot, h| match (slot, h) {
        (Slot::ActorEmail, Held::Open { opening, .. }) => Held::Open {
            opening,
            value: b"eve@example.com",
        },
        (_, h) => h,
    })
    .expect("well formed");
    let problem = view
        .held_mismatch(&PersonalValues::from_bytes(&altered).expect("held"))
        .expect("caught");
    assert!(problem.contains("actor.email"), "{problem}");
    // A pseudonym in place of a name: only ids may be replaced.
    let renamed = rewrite(&stored, |slot, h| match slot {
        Slot::ActorName => Held::Replaced("someone"),
        _ => h,
    })
    .expect("well formed");
    assert!(
        view.held_mismatch(&PersonalValues::from_bytes(&renamed).expect("held"))
            .expect("caught")
            .contains("only an id")
    );
    // Values dropped altogether, or version-1 values beside a version-2 entry.
    let mut short = stored.clone();
    short.truncate(1);
    assert!(
        view.held_mismatch(&PersonalValues::from_bytes(&short).expect("held"))
            .expect("caught")
            .contains("missing")
    );
    assert!(view.held_mismatch(&PersonalValues::default()).is_some());
    // A stored form that does not parse is refused, not guessed at.
    let mut broken = stored.clone();
    broken.push(0xff);
    assert!(PersonalValues::from_bytes(&broken).is_none());
}

/// What an offline verifier holds: the event as served and the seal material (digests, and
/// openings while the values are held), carried as bytes. It encodes the entry again from those.
fn reencode(shown: &Event, prev: &[u8; 32], material: &[u8]) -> Option<Vec<u8>> {
    let slots = parse_seal_material(material).expect("seal material parses");
    reencode_v2(&EntryParts::of_event(shown), prev, &slots)
}

fn material(entry: &[u8], stored: &[u8]) -> Vec<u8> {
    let view = EntryView::parse(entry).expect("parse");
    let values = PersonalValues::from_bytes(stored).expect("held");
    seal_material(&view.sealed_slots(&values))
}

#[test]
fn a_verifier_encodes_the_same_bytes_from_the_event_and_its_seal() {
    let prev = [0x5a; 32];
    for original in [about_a_person(), about_an_asset()] {
        let (entry, stored) = seal(&original, &prev);
        let seal = material(&entry, &stored);
        assert_eq!(
            reencode(&original, &prev, &seal).as_deref(),
            Some(&entry[..])
        );
        // After anonymisation, as served: still the same bytes.
        let erased = anonymise(&entry, &stored, true, "anon_0000000000000001");
        let shown = render(&entry, &erased);
        let erased_seal = material(&entry, &erased);
        assert_eq!(
            reencode(&shown, &prev, &erased_seal).as_deref(),
            Some(&entry[..])
        );
        // A value altered in what is served changes the bytes, personal or not.
        let differs =
            |e: &Event, seal: &[u8]| reencode(e, &prev, seal).as_deref() != Some(&entry[..]);
        let mut forged = original.clone();
        forged.actor.id = "u-1".into();
        assert!(differs(&forged, &seal));
        let mut forged = original.clone();
        forged.changes[0].old_value = json!("someone@else.example");
        assert!(differs(&forged, &seal));
        let mut forged = original.clone();
        forged.actor.email = None;
        assert!(
            differs(&forged, &seal),
            "a held value taken out of what is shown"
        );
        // What an erased slot shows is fixed: no name, `[REDACTED]`, a pseudonym.
        let mut forged = shown.clone();
        forged.actor.email = Some("made@up.example".into());
        assert!(differs(&forged, &erased_seal));
        let mut forged = shown.clone();
        forged.actor.id = "u-42".into();
        assert!(differs(&forged, &erased_seal));
        let mut forged = shown.clone();
        forged.changes[0].old_value = json!("ann@example.com");
        assert!(differs(&forged, &erased_seal));
    }
    assert!(parse_seal_material(&[0x80, 9]).is_none());
    assert!(parse_seal_material(&[0x00]).is_none());
}

/// The first form of seal material (mark `0x80`, written until 2026-12): every slot's code,
/// its digest, then `1` and the opening or `0`. Built here from the entry's digests, as the
/// first form's writer did.
fn material_with_digests(entry: &[u8], stored: &[u8]) -> Vec<u8> {
    let view = EntryView::parse(entry).expect("parse");
    let values = PersonalValues::from_bytes(stored).expect("held");
    let mut out = vec![SEAL_MARK_WITH_DIGESTS];
    for (slot, digest) in view.personal_digests() {
        let code = slot.code();
        out.push(code.0);
        if let Some(i) = code.1 {
            out.extend_from_slice(&i.to_be_bytes());
        }
        out.extend_from_slice(&digest);
        match values.held_for(slot) {
            Some(Held::Open { opening, .. }) => {
                out.push(1);
                out.extend_from_slice(&opening);
            }
            _ => out.push(0),
        }
    }
    out
}

#[test]
fn seal_material_gives_openings_alone_and_its_first_form_still_verifies() {
    let prev = [0x5a; 32];
    let (entry, stored) = seal(&about_a_person(), &prev);
    let erased = anonymise(&entry, &stored, true, "anon_0000000000000001");
    for (held, shown) in [
        (stored.clone(), about_a_person()),
        (erased.clone(), render(&entry, &erased)),
    ] {
        let compact = material(&entry, &held);
        let first = material_with_digests(&entry, &held);
        assert_eq!(compact[0], SEAL_MARK);
        assert!(compact.len() < first.len());
        for form in [&compact, &first] {
            assert!(is_seal_material(form));
            assert_eq!(
                reencode(&shown, &prev, form).as_deref(),
                Some(&entry[..]),
                "{}",
                hex::encode(form)
            );
        }
        // Both forms name the same slots: an opening where the value is held, else a digest.
        assert_eq!(
            parse_seal_material(&compact),
            parse_seal_material(&first),
            "the two forms differ"
        );
    }
    // A held value's slot is its code (a change value's with its index), a flag and the
    // opening: no digest.
    let view = EntryView::parse(&entry).expect("parse");
    let slots = view.personal_digests();
    let changes = slots
        .iter()
        .filter(|(s, _)| matches!(s, Slot::ChangeOld(_) | Slot::ChangeNew(_)))
        .count();
    assert!(changes > 0);
    let slots = slots.len();
    assert_eq!(
        material(&entry, &stored).len(),
        1 + slots * (1 + 1 + 16) + changes * 4
    );
    // The first form as the web UI's verifier reads it too (crates/server/ui/tests/verify.test.mjs).
    let fixture = json!({
        "event": serde_json::to_value(about_a_person()).expect("json"),
        "seal": {"prev": hex::encode(prev), "personal": hex::encode(material_with_digests(&entry, &stored))},
        "leaf_hash": hex::encode(leaf_hash(&entry)),
    });
    check_golden_text(
        "seal-first-form.json",
        &format!(
            "{}\n",
            serde_json::to_string_pretty(&fixture).expect("json")
        ),
    );
    assert!(parse_seal_material(&[SEAL_MARK, 1, 2]).is_none());
    assert!(parse_seal_material(&[SEAL_MARK, 1, 0, 0]).is_none());
    assert!(!is_seal_material(&[0x1f]));
}

#[test]
fn slot_names_round_trip() {
    for slot in [
        Slot::ActorId,
        Slot::ActorName,
        Slot::ActorEmail,
        Slot::TargetId,
        Slot::TargetName,
        Slot::Ip,
        Slot::UserAgent,
        Slot::ChangeOld(0),
        Slot::ChangeNew(12),
    ] {
        assert_eq!(Slot::from_name(&slot.name()), Some(slot));
    }
    for bad in [
        "changes[01].old_value",
        "changes[].new_value",
        "changes[1].field",
        "actor",
    ] {
        assert_eq!(Slot::from_name(bad), None, "{bad}");
    }
    assert_eq!(json_bytes(&Value::Null), [0]);
}

proptest! {
    /// Any cut or changed byte of a version-2 entry is refused or decodes to something else:
    /// never a panic.
    #[test]
    fn damaged_v2_entries_are_refused_without_panicking(cut in 0usize..400, at in 0usize..400, byte: u8) {
        let (entry, stored) = seal(&about_a_person(), &GENESIS);
        let cut = cut.min(entry.len() - 1);
        prop_assert!(EntryView::parse(&entry[..cut]).is_err());
        let mut changed = entry.clone();
        let at = at.min(changed.len() - 1);
        changed[at] = byte;
        if let Ok(view) = EntryView::parse(&changed) {
            let values = PersonalValues::from_bytes(&stored).expect("held");
            let built = view.to_event(&values, String::new());
            prop_assert_eq!(
                view.served(&values, "").to_json().expect("served"),
                serde_json::to_string(&built).expect("built")
            );
            let _ = view.held_mismatch(&values);
        }
        let mut held_changed = stored.clone();
        let at = at.min(held_changed.len() - 1);
        held_changed[at] = byte;
        if let Some(values) = PersonalValues::from_bytes(&held_changed) {
            let view = EntryView::parse(&entry).expect("parse");
            let built = view.to_event(&values, String::new());
            prop_assert_eq!(
                view.served(&values, "").to_json().expect("served"),
                serde_json::to_string(&built).expect("built")
            );
            let _ = view.held_mismatch(&values);
        }
    }
}
