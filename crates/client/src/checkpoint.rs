//! The client's own watch over the log: it remembers the last signed checkpoint it saw and
//! proves that the next one extends it (RFC 9162 consistency proof), so a log that was rewritten
//! or cut back between two looks is noticed by the application too, not only by an auditor.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use sealtrail_ledger::merkle::{Hash, verify_consistency};
use serde::Deserialize;

use crate::Client;

/// A checkpoint that verified: signed by a known key and consistent with the one seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
    /// The key that signed it.
    pub key_id: String,
}

/// Why a checkpoint was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// sealtrail could not be asked.
    #[error("sealtrail unreachable: {0}")]
    Http(#[from] reqwest::Error),
    /// sealtrail answered with an error status (the key may lack the `read` scope).
    #[error("sealtrail answered {0}")]
    Status(u16),
    /// The answer is not a checkpoint, or names a key sealtrail does not list.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The note's signature does not verify, or the note says something else than the fields.
    #[error("the checkpoint's signature does not verify: {0}")]
    BadSignature(String),
    /// The new tree does not extend the one seen before: the log was rewritten or cut back.
    #[error("the log of size {new} is not an extension of the size {old} seen before")]
    Inconsistent {
        /// The size seen before.
        old: u64,
        /// The size now.
        new: u64,
    },
}

#[derive(Deserialize)]
struct CheckpointView {
    size: u64,
    root_hash: String,
    key_id: String,
    note: String,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<KeyView>,
}

#[derive(Deserialize)]
struct KeyView {
    key_id: String,
    public_key: String,
}

#[derive(Deserialize)]
struct ConsistencyView {
    proof: Vec<String>,
}

fn hash(hex_text: &str) -> Result<Hash, CheckpointError> {
    hex::decode(hex_text)
        .ok()
        .and_then(|b| Hash::try_from(b).ok())
        .ok_or_else(|| CheckpointError::Malformed(format!("{hex_text:?} is not a hash")))
}

/// Whether `new` extends `old` given the proof: equal sizes need equal roots; a smaller tree
/// never extends a larger one.
pub(crate) fn extends(old: &Seen, new: &Seen, proof: &[Hash]) -> bool {
    match new.size.cmp(&old.size) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => new.root == old.root,
        std::cmp::Ordering::Greater => {
            verify_consistency(old.size, new.size, &old.root, &new.root, proof).is_ok()
        }
    }
}

impl Client {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CheckpointError> {
        let config = &self.shared.config;
        let r = self
            .http
            .get(format!("{}{path}", config.url))
            .bearer_auth(&config.token)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(CheckpointError::Status(r.status().as_u16()));
        }
        r.json()
            .await
            .map_err(|e| CheckpointError::Malformed(e.to_string()))
    }

    /// Fetches the tenant's newest checkpoint, checks its signature with the signing keys
    /// sealtrail listed the first time they were needed (pinned from then on), and — when a
    /// checkpoint was seen before — checks the consistency proof from that one to this one.
    /// Remembers it only when all of that holds. Needs a key with the `read` scope.
    pub async fn check_checkpoint(&self) -> Result<Seen, CheckpointError> {
        let view: CheckpointView = self.get("/api/v1/integrity/checkpoint").await?;
        let seen = Seen {
            size: view.size,
            root: hash(&view.root_hash)?,
            key_id: view.key_id.clone(),
        };
        let key = self.signing_key(&view.key_id).await?;
        let head = sealtrail_ledger::checkpoint::verify(&view.note, &view.key_id, &key)
            .map_err(|e| CheckpointError::BadSignature(e.to_string()))?;
        if head.size != seen.size || head.root != seen.root {
            return Err(CheckpointError::BadSignature(
                "the signed note disagrees with the answer's size or root".into(),
            ));
        }
        let previous = self.last_checkpoint();
        if let Some(old) = previous {
            let proof = if seen.size > old.size {
                let view: ConsistencyView = self
                    .get(&format!(
                        "/api/v1/integrity/consistency?from={}&to={}",
                        old.size, seen.size
                    ))
                    .await?;
                view.proof
                    .iter()
                    .map(|h| hash(h))
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            };
            if !extends(&old, &seen, &proof) {
                return Err(CheckpointError::Inconsistent {
                    old: old.size,
                    new: seen.size,
                });
            }
        }
        *self
            .checkpoint
            .lock()
            .expect("checkpoint lock is never poisoned") = Some(seen.clone());
        Ok(seen)
    }

    /// The last checkpoint that verified, if any.
    pub fn last_checkpoint(&self) -> Option<Seen> {
        self.checkpoint
            .lock()
            .expect("checkpoint lock is never poisoned")
            .clone()
    }

    async fn signing_key(&self, key_id: &str) -> Result<VerifyingKey, CheckpointError> {
        if let Some(key) = self
            .keys
            .lock()
            .expect("keys lock is never poisoned")
            .get(key_id)
        {
            return Ok(*key);
        }
        let listed: Keys = self.get("/api/v1/integrity/public-keys").await?;
        let mut keys: HashMap<String, VerifyingKey> = HashMap::new();
        for k in listed.keys {
            let raw: Option<[u8; 32]> = STANDARD
                .decode(k.public_key.trim())
                .ok()
                .and_then(|b| b.try_into().ok());
            if let Some(key) = raw.and_then(|r| VerifyingKey::from_bytes(&r).ok()) {
                keys.insert(k.key_id, key);
            }
        }
        let mut pinned = self.keys.lock().expect("keys lock is never poisoned");
        for (id, key) in keys {
            // Trust on first sight: a key already pinned is never replaced.
            pinned.entry(id).or_insert(key);
        }
        pinned
            .get(key_id)
            .copied()
            .ok_or_else(|| CheckpointError::Malformed(format!("no signing key {key_id} is listed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_ledger::merkle::{MemoryTree, consistency_proof, leaf_hash};

    fn seen(tree: &MemoryTree, size: u64) -> Seen {
        Seen {
            size,
            root: tree.root_at(size).expect("root"),
            key_id: "k".into(),
        }
    }

    #[test]
    fn only_a_true_extension_is_accepted() {
        let tree = MemoryTree::from_leaves((0u32..20).map(|i| leaf_hash(&i.to_be_bytes())));
        let old = seen(&tree, 7);
        let new = seen(&tree, 20);
        let proof = consistency_proof(&tree, 7, 20).expect("proof");
        assert!(extends(&old, &new, &proof));
        assert!(extends(&old, &old, &[]), "the same head again");
        assert!(!extends(&new, &old, &[]), "a log cut back");
        // The same sizes over a rewritten history.
        let forged = MemoryTree::from_leaves(
            (0u32..20).map(|i| leaf_hash(&(i + u32::from(i == 3)).to_be_bytes())),
        );
        let forged_new = seen(&forged, 20);
        let forged_proof = consistency_proof(&forged, 7, 20).expect("proof");
        assert!(!extends(&old, &forged_new, &forged_proof));
        let mut same_size_other_root = old.clone();
        same_size_other_root.root = forged.root_at(7).expect("root");
        assert!(!extends(&old, &same_size_other_root, &[]));
    }
}
