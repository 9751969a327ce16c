//! Credentials verified already, remembered by the SHA-256 of their text until they expire: a
//! signed token cannot change, so a second signature check would only repeat the first.

use std::collections::HashMap;
use std::sync::Mutex;

/// Verified credentials remembered at most; the memory is emptied when full.
pub const REMEMBERED: usize = 10_000;

/// What verifying a credential gave, by its digest, with the instant (microseconds since the
/// epoch) until which it may be trusted.
#[derive(Debug)]
pub struct Remembered<T> {
    entries: Mutex<HashMap<[u8; 32], (T, i64)>>,
}

impl<T> Default for Remembered<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

/// The digest a credential is remembered by.
pub fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl<T: Clone> Remembered<T> {
    /// What `digest` was verified as, if it is remembered and still trusted at `now`.
    pub fn get(&self, digest: &[u8; 32], now: i64) -> Option<T> {
        let entries = self.entries.lock().ok()?;
        let (value, until) = entries.get(digest)?;
        (now <= *until).then(|| value.clone())
    }

    /// Remembers what `digest` was verified as, trusted until `until`.
    pub fn put(&self, digest: [u8; 32], value: T, until: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= REMEMBERED {
                entries.clear();
            }
            entries.insert(digest, (value, until));
        }
    }

    /// Forgets everything (the keys that verified it changed).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_credential_is_trusted_until_its_deadline_only() {
        let memory = Remembered::default();
        let d = digest("token");
        assert_eq!(memory.get(&d, 0), None);
        memory.put(d, "reader", 10);
        assert_eq!(memory.get(&d, 10), Some("reader"));
        assert_eq!(memory.get(&d, 11), None);
        assert_eq!(memory.get(&digest("other"), 0), None);
        memory.clear();
        assert_eq!(memory.get(&d, 0), None);
    }
}
