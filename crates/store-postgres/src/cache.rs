//! API keys and tenant settings remembered between requests, forgotten whenever any process
//! changes one.
//!
//! Every authenticated request looks its key up, and every ingest its tenant's catalogue; on
//! PostgreSQL each is a round trip to the primary (~80 µs here), more than the whole rest of a
//! small request. So what was read is kept in memory while a `LISTEN` connection is up: every
//! change to `api_keys` or `tenant_settings` made through a sealtrail store (this server,
//! another server, `sealtrail keys`) is followed by a `NOTIFY` on the schema's channel, and a
//! notification empties the cache. While the listener is down (not yet connected, or lost),
//! nothing is kept and every lookup reads the primary, so a change is never missed: it takes
//! effect here at once, and elsewhere as soon as its notification arrives (within a
//! millisecond or so). Unknown tokens are never kept, so a key made anywhere works at once, and
//! guessed tokens cannot fill memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sealtrail_store::{ApiKey, Setting};
use tokio::task::JoinHandle;

/// Most entries kept per map; past it the map starts again empty.
const MAX_ENTRIES: usize = 10_000;

/// The channel a schema's changes of keys and settings are announced on.
pub(crate) fn channel(schema: &str) -> String {
    format!("sealtrail_changes_{schema}")
}

/// What lookups found, valid while the listener is live.
#[derive(Default)]
pub(crate) struct StoreCache {
    live: AtomicBool,
    /// Bumped at every invalidation, so a lookup that raced one does not store its result.
    generation: AtomicU64,
    /// Found keys by token hash.
    pub(crate) keys: Map<[u8; 32], ApiKey>,
    /// Settings by tenant and name, absent ones included.
    pub(crate) settings: Map<(String, String), Option<Setting>>,
}

/// One map of a [`StoreCache`].
pub(crate) struct Map<K, V>(RwLock<HashMap<K, V>>);

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Self(RwLock::new(HashMap::new()))
    }
}

impl<K: Eq + Hash, V: Clone> Map<K, V> {
    fn clear(&self) {
        self.0
            .write()
            .expect("cache lock is never poisoned")
            .clear();
    }
}

impl StoreCache {
    /// What `map` holds for `key`, if the cache may be trusted.
    pub(crate) fn get<K: Eq + Hash, V: Clone>(&self, map: &Map<K, V>, key: &K) -> Option<V> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        map.0
            .read()
            .expect("cache lock is never poisoned")
            .get(key)
            .cloned()
    }

    /// Whether anything is being kept (the listener is up).
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The generation to hand back to [`StoreCache::put`] after reading the store.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps what was read from the store, unless the cache was invalidated since
    /// `generation` was taken or the listener is down.
    pub(crate) fn put<K: Eq + Hash, V: Clone>(
        &self,
        map: &Map<K, V>,
        generation: u64,
        key: K,
        value: V,
    ) {
        let mut entries = map.0.write().expect("cache lock is never poisoned");
        // Checked under the write lock: `invalidate` bumps the generation before it clears.
        if !self.live.load(Ordering::Acquire) || self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, value);
    }

    /// Forgets everything (something changed somewhere).
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.keys.clear();
        self.settings.clear();
    }

    fn set_live(&self, live: bool) {
        self.invalidate();
        self.live.store(live, Ordering::Release);
        self.invalidate();
    }
}

/// Keeps a `LISTEN` connection on the schema's channel, emptying the cache at every
/// notification; reconnects when it is lost, trusting the cache only while it is up.
pub(crate) fn listen(
    config: tokio_postgres::Config,
    schema: &str,
    cache: Arc<StoreCache>,
) -> JoinHandle<()> {
    let statement = format!("LISTEN \"{}\"", channel(schema));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match config.connect(tokio_postgres::NoTls).await {
                Ok((client, mut connection)) => {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    let subscribe = client.batch_execute(&statement);
                    tokio::pin!(subscribe);
                    // The connection must be driven while LISTEN runs.
                    let subscribed = loop {
                        tokio::select! {
                            done = &mut subscribe => break done.is_ok(),
                            message = futures::StreamExt::next(&mut messages) => {
                                if !matches!(message, Some(Ok(_))) {
                                    break false;
                                }
                            }
                        }
                    };
                    if subscribed {
                        backoff = Duration::from_millis(100);
                        cache.set_live(true);
                        while let Some(message) = futures::StreamExt::next(&mut messages).await {
                            match message {
                                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                    cache.invalidate()
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    }
                    cache.set_live(false);
                    tracing::warn!("the key and settings change listener was lost; reconnecting");
                }
                Err(e) => {
                    cache.set_live(false);
                    tracing::debug!(error = %e, "cannot connect the key and settings change listener");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ApiKey {
        ApiKey {
            id: id.into(),
            tenant: sealtrail_store::TenantScope::All,
            scopes: vec![],
            name: String::new(),
            created_at: sealtrail_model::Timestamp::now(),
            revoked_at: None,
        }
    }

    #[test]
    fn entries_are_kept_only_while_live_and_not_across_an_invalidation() {
        let cache = StoreCache::default();
        let keys = &cache.keys;
        let g = cache.generation();
        cache.put(keys, g, [1; 32], key("a"));
        assert!(
            cache.get(keys, &[1; 32]).is_none(),
            "nothing is kept while down"
        );
        cache.set_live(true);
        let g = cache.generation();
        cache.put(keys, g, [1; 32], key("a"));
        assert_eq!(cache.get(keys, &[1; 32]).map(|k| k.id), Some("a".into()));
        let setting = ("t".to_owned(), "catalog".to_owned());
        cache.put(&cache.settings, g, setting.clone(), None);
        assert_eq!(cache.get(&cache.settings, &setting), Some(None));
        // A lookup that started before an invalidation does not store what it read.
        let stale = cache.generation();
        cache.invalidate();
        assert!(cache.get(keys, &[1; 32]).is_none());
        assert!(cache.get(&cache.settings, &setting).is_none());
        cache.put(keys, stale, [2; 32], key("b"));
        assert!(cache.get(keys, &[2; 32]).is_none());
        cache.put(keys, cache.generation(), [2; 32], key("b"));
        assert!(cache.get(keys, &[2; 32]).is_some());
        cache.set_live(false);
        assert!(cache.get(keys, &[2; 32]).is_none());
    }
}
