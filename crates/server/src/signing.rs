//! Checkpoint signing keys: Ed25519, with ids, kept in the data directory or loaded from
//! configuration, and rotatable — retired keys stay listed so old checkpoints still verify.
//!
//! Layout under `<data-dir>/keys/`: `keyring.json` lists every key's id, public key, creation
//! and retirement time; `<key_id>.key` holds the base64 secret of a key made here (mode 0600).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use sealtrail_model::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why the key ring could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key file does not hold a base64 Ed25519 secret of 32 bytes.
    #[error("{0}: not a base64 Ed25519 secret key of 32 bytes")]
    BadKey(PathBuf),
    /// The key ring file is damaged.
    #[error("{0}: {1}")]
    BadKeyring(PathBuf, String),
}

/// A key as listed by `/integrity/public-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicKeyInfo {
    /// The key id, also the key name in checkpoint notes.
    pub key_id: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// The public key, base64.
    pub public_key: String,
    /// When it became the signing key.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it stopped signing.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<Timestamp>,
}

/// The signing key and every key that ever signed.
pub struct KeyRing {
    active_id: String,
    active: SigningKey,
    keys: Vec<PublicKeyInfo>,
}

/// The id of a public key: `sealtrail-` and the first four bytes of its SHA-256, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("sealtrail-{}", hex::encode(&digest[..4]))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SigningError + '_ {
    move |source| SigningError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_secret(path: &Path) -> Result<SigningKey, SigningError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bytes: [u8; 32] = STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SigningError::BadKey(path.to_owned()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Writes a file only the owner can read.
fn write_private(path: &Path, contents: &str) -> Result<(), SigningError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

impl KeyRing {
    /// A ring with one fresh key held only in memory (tests, benchmarks).
    pub fn ephemeral() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let key = SigningKey::from_bytes(&secret);
        let id = key_id(&key.verifying_key());
        Self {
            keys: vec![info(&id, &key.verifying_key(), Timestamp::now())],
            active_id: id,
            active: key,
        }
    }

    /// Loads the ring from `<data_dir>/keys`, creating the first key at first start. With
    /// `configured` (a file holding a base64 secret) that key signs; when it differs from the
    /// last signing key, the last one is retired and stays listed.
    pub fn load(data_dir: &Path, configured: Option<&Path>) -> Result<Self, SigningError> {
        let dir = data_dir.join("keys");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let ring_path = dir.join("keyring.json");
        let mut keys: Vec<PublicKeyInfo> = match std::fs::read_to_string(&ring_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| SigningError::BadKeyring(ring_path.clone(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&ring_path)(e)),
        };
        let current = keys
            .iter()
            .find(|k| k.retired_at.is_none())
            .map(|k| k.key_id.clone());
        let active = match (configured, &current) {
            (Some(path), _) => read_secret(path)?,
            (None, Some(id)) => read_secret(&dir.join(format!("{id}.key")))?,
            (None, None) => {
                let mut secret = [0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                let key = SigningKey::from_bytes(&secret);
                let id = key_id(&key.verifying_key());
                write_private(&dir.join(format!("{id}.key")), &STANDARD.encode(secret))?;
                key
            }
        };
        let active_id = key_id(&active.verifying_key());
        if current.as_deref() != Some(active_id.as_str()) {
            let now = Timestamp::now();
            for k in keys.iter_mut().filter(|k| k.retired_at.is_none()) {
                k.retired_at = Some(now);
            }
            match keys.iter_mut().find(|k| k.key_id == active_id) {
                Some(k) => k.retired_at = None,
                None => keys.push(info(&active_id, &active.verifying_key(), now)),
            }
            let text = serde_json::to_string_pretty(&keys).expect("key infos serialise");
            let tmp = dir.join("keyring.json.tmp");
            std::fs::write(&tmp, text).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &ring_path).map_err(io(&ring_path))?;
        }
        Ok(Self {
            active_id,
            active,
            keys,
        })
    }

    /// The id of the signing key.
    pub fn active_id(&self) -> &str {
        &self.active_id
    }

    /// The signing key.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// Every key that ever signed, oldest first.
    pub fn keys(&self) -> &[PublicKeyInfo] {
        &self.keys
    }
}

fn info(id: &str, key: &VerifyingKey, created_at: Timestamp) -> PublicKeyInfo {
    PublicKeyInfo {
        key_id: id.to_owned(),
        algorithm: "ed25519".into(),
        public_key: STANDARD.encode(key.as_bytes()),
        created_at,
        retired_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_is_made_once_private_and_a_configured_key_rotates_it() {
        let dir = tempfile::tempdir().expect("dir");
        let first = KeyRing::load(dir.path(), None).expect("load");
        let again = KeyRing::load(dir.path(), None).expect("reload");
        assert_eq!(first.active_id(), again.active_id());
        assert_eq!(again.keys().len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir
                .path()
                .join("keys")
                .join(format!("{}.key", first.active_id()));
            let mode = std::fs::metadata(path)
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let configured = dir.path().join("other.key");
        std::fs::write(&configured, STANDARD.encode([9u8; 32])).expect("write");
        let rotated = KeyRing::load(dir.path(), Some(&configured)).expect("rotate");
        assert_ne!(rotated.active_id(), first.active_id());
        let listed: Vec<(&str, bool)> = rotated
            .keys()
            .iter()
            .map(|k| (k.key_id.as_str(), k.retired_at.is_some()))
            .collect();
        assert_eq!(
            listed,
            vec![(first.active_id(), true), (rotated.active_id(), false)]
        );
        std::fs::write(dir.path().join("bad.key"), "nope").expect("write");
        assert!(matches!(
            KeyRing::load(dir.path(), Some(&dir.path().join("bad.key"))),
            Err(SigningError::BadKey(_))
        ));
    }
}
