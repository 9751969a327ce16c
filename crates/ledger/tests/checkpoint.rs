//! Checkpoints are C2SP signed notes that verify with the public key and nothing else.

use ed25519_dalek::SigningKey;
use sealtrail_ledger::checkpoint::{NoteError, TreeHead, origin, sign, verify};
use sealtrail_model::Timestamp;

fn head() -> TreeHead {
    TreeHead {
        origin: origin("acme"),
        size: 1234,
        root: [0x5a; 32],
        issued_at: Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").expect("time"),
    }
}

#[test]
fn a_signed_checkpoint_verifies_and_round_trips() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let signed = sign(&head(), "sealtrail-k1", &key);
    assert!(signed.note.starts_with("sealtrail/acme\n1234\nWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\nissued_at 2026-11-23T10:00:00.000000Z\n\n\u{2014} sealtrail-k1 "), "{}", signed.note);
    assert_eq!(
        verify(&signed.note, "sealtrail-k1", &key.verifying_key()),
        Ok(head())
    );
}

#[test]
fn tampered_notes_and_wrong_keys_are_refused() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let other = SigningKey::from_bytes(&[4; 32]);
    let signed = sign(&head(), "sealtrail-k1", &key);
    let grown = signed.note.replacen("1234", "1235", 1);
    assert_eq!(
        verify(&grown, "sealtrail-k1", &key.verifying_key()),
        Err(NoteError::BadSignature)
    );
    assert_eq!(
        verify(&signed.note, "sealtrail-k1", &other.verifying_key()),
        Err(NoteError::NoSignature("sealtrail-k1".into())),
        "another key's hash does not match the signature line"
    );
    assert_eq!(
        verify(&signed.note, "sealtrail-k2", &key.verifying_key()),
        Err(NoteError::NoSignature("sealtrail-k2".into()))
    );
    assert!(matches!(
        verify("no blank line", "k", &key.verifying_key()),
        Err(NoteError::Malformed(_))
    ));
}
