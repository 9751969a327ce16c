//! Signed checkpoints: tree heads in the C2SP `tlog-checkpoint` text form, signed as a C2SP
//! `signed-note` with Ed25519, so that standard transparency-log tooling can read them.
//!
//! ```text
//! sealtrail/acme            ← origin
//! 1234                      ← tree size
//! 3q2+7w==…                 ← root hash, base64
//! issued_at 2026-11-23T10:00:00.000000Z   ← extension line
//!
//! — sealtrail-1a2b3c4d AAAAAF…   ← key name, base64(key hash ‖ signature)
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sealtrail_model::Timestamp;
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// A tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// `sealtrail/<tenant>`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// When it was signed.
    pub issued_at: Timestamp,
}

/// Why a note did not verify or parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text is not a checkpoint note.
    #[error("malformed checkpoint note: {0}")]
    Malformed(&'static str),
    /// No signature line by the expected key.
    #[error("no signature by key {0}")]
    NoSignature(String),
    /// The signature is wrong.
    #[error("the signature does not verify")]
    BadSignature,
}

/// The origin line of a tenant's log.
pub fn origin(tenant: &str) -> String {
    format!("sealtrail/{tenant}")
}

/// The note body of a tree head (every line ends in a newline).
pub fn body(head: &TreeHead) -> String {
    format!(
        "{}\n{}\n{}\nissued_at {}\n",
        head.origin,
        head.size,
        STANDARD.encode(head.root),
        head.issued_at.to_rfc3339()
    )
}

/// The signed-note key hash: the first four bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key),
/// 0x01 being the Ed25519 signature type.
pub fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([1u8]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A signed checkpoint: the whole note, and the bare signature over its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The note: body, blank line, signature line.
    pub note: String,
    /// The Ed25519 signature over the body, base64.
    pub signature: String,
}

/// Signs a tree head with a named key.
pub fn sign(head: &TreeHead, key_name: &str, key: &SigningKey) -> SignedNote {
    let body = body(head);
    let signature = key.sign(body.as_bytes());
    let mut blob = key_hash(key_name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&signature.to_bytes());
    SignedNote {
        note: format!("{body}\n\u{2014} {key_name} {}\n", STANDARD.encode(blob)),
        signature: STANDARD.encode(signature.to_bytes()),
    }
}

/// Verifies a note's signature by `key_name` and parses its tree head.
pub fn verify(note: &str, key_name: &str, key: &VerifyingKey) -> Result<TreeHead, NoteError> {
    let split = note
        .find("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (body, sigs) = note.split_at(split + 1);
    let prefix = format!("\u{2014} {key_name} ");
    let wanted = key_hash(key_name, key);
    for line in sigs.lines().skip(1).filter(|l| l.starts_with(&prefix)) {
        let blob = STANDARD
            .decode(&line[prefix.len()..])
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if blob.len() != 68 || blob[..4] != wanted {
            continue;
        }
        let signature = Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature)?;
        key.verify(body.as_bytes(), &signature)
            .map_err(|_| NoteError::BadSignature)?;
        return parse_body(body);
    }
    Err(NoteError::NoSignature(key_name.to_owned()))
}

fn parse_body(body: &str) -> Result<TreeHead, NoteError> {
    let mut lines = body.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(NoteError::Malformed("no origin"))?;
    let size = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or(NoteError::Malformed("no tree size"))?;
    let root: Hash = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(NoteError::Malformed("no root hash"))?;
    let issued_at = lines
        .find_map(|l| l.strip_prefix("issued_at "))
        .and_then(Timestamp::parse_rfc3339)
        .ok_or(NoteError::Malformed("no issued_at line"))?;
    Ok(TreeHead {
        origin: origin.to_owned(),
        size,
        root,
        issued_at,
    })
}
