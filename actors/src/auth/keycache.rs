//! The API key cache: which live key (and its user's role) a key hash names, remembered for
//! a short time so that an authenticated request does not ask the store every time.
//!
//! Owns: a map from the SHA-256 hex of a key to the stored key and role, each entry at
//! most `ttl` old, at most [`MAX_KEYS`] entries; forgetting a key revoked on this node at
//! once; and the generation count that keeps a lookup which raced a revocation from putting
//! the revoked key back.
//!
//! Revocation on *another* node (or any change to the key's user made elsewhere) takes
//! effect here when the entry expires: within `auth.api_key_cache_secs` (0 turns the cache
//! off, and every request asks the store).
//!
//! Must never: hold a key itself (only its hash), remember a hash the store did not know
//! (an unknown key always asks the store), or answer with an entry older than `ttl`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Role;
use crate::store::StoredApiKey;

/// The most keys remembered at once; past it, expired entries go, then all of them.
pub const MAX_KEYS: usize = 10_000;

/// A remembered key.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedKey {
    pub key: StoredApiKey,
    pub role: Role,
}

struct Entry {
    cached: CachedKey,
    fetched: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Bumped by every [`ApiKeyCache::forget`]: a lookup started before it may have read
    /// the key before it was revoked, so its answer is not remembered.
    generation: u64,
}

/// Key hash -> stored key and role, for `ttl`.
pub struct ApiKeyCache {
    ttl: Duration,
    state: Mutex<State>,
}

/// What [`ApiKeyCache::get`] found: the entry, or the generation to hand back to
/// [`ApiKeyCache::put`] with what the store said.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    Hit(CachedKey),
    Miss { generation: u64 },
}

impl ApiKeyCache {
    /// A cache whose entries live `ttl`; zero remembers nothing.
    pub fn new(ttl: Duration) -> ApiKeyCache {
        ApiKeyCache {
            ttl,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry of `hash` if it is younger than the ttl at `now`.
    pub fn get(&self, hash: &str, now: Instant) -> Lookup {
        let state = self.state();
        match state.entries.get(hash) {
            Some(e) if now.saturating_duration_since(e.fetched) < self.ttl => {
                Lookup::Hit(e.cached.clone())
            }
            _ => Lookup::Miss {
                generation: state.generation,
            },
        }
    }

    /// Remember what the store said of `hash` at `now`, unless a key was forgotten since
    /// the lookup that returned `generation` began.
    pub fn put(&self, hash: &str, cached: CachedKey, generation: u64, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if state.entries.len() >= MAX_KEYS && !state.entries.contains_key(hash) {
            let ttl = self.ttl;
            state
                .entries
                .retain(|_, e| now.saturating_duration_since(e.fetched) < ttl);
            if state.entries.len() >= MAX_KEYS {
                state.entries.clear();
            }
        }
        state.entries.insert(
            hash.to_owned(),
            Entry {
                cached,
                fetched: now,
            },
        );
    }

    /// Record that the key of `hash` was used at `at` (so that its last use is not written
    /// again on the next request); its entry keeps its age.
    pub fn touched(&self, hash: &str, at: palisade_proto::Timestamp) {
        if let Some(e) = self.state().entries.get_mut(hash) {
            e.cached.key.last_used = Some(at);
        }
    }

    /// Forget the key of `hash` (revoked on this node): the next request asks the store.
    pub fn forget(&self, hash: &str) {
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        state.entries.remove(hash);
    }

    /// Entries remembered (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> CachedKey {
        CachedKey {
            key: StoredApiKey {
                id: id.into(),
                user: "alice".into(),
                name: "ci".into(),
                hash: format!("hash-{id}"),
                created_at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
                    .expect("a valid instant"),
                last_used: None,
                revoked_at: None,
            },
            role: Role::Viewer,
        }
    }

    fn generation(l: Lookup) -> u64 {
        match l {
            Lookup::Miss { generation } => generation,
            Lookup::Hit(k) => panic!("expected a miss, got {k:?}"),
        }
    }

    #[test]
    fn an_entry_is_answered_until_its_ttl_then_asked_again() {
        let cache = ApiKeyCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let g = generation(cache.get("h1", t0));
        cache.put("h1", key("k1"), g, t0);
        assert_eq!(
            cache.get("h1", t0 + Duration::from_millis(4999)),
            Lookup::Hit(key("k1"))
        );
        assert!(matches!(
            cache.get("h1", t0 + Duration::from_secs(5)),
            Lookup::Miss { .. }
        ));
        assert!(matches!(cache.get("other", t0), Lookup::Miss { .. }));
    }

    #[test]
    fn a_zero_ttl_remembers_nothing() {
        let cache = ApiKeyCache::new(Duration::ZERO);
        let t0 = Instant::now();
        let g = generation(cache.get("h1", t0));
        cache.put("h1", key("k1"), g, t0);
        assert!(cache.is_empty());
        assert!(matches!(cache.get("h1", t0), Lookup::Miss { .. }));
    }

    #[test]
    fn a_forgotten_key_is_asked_again_and_a_racing_lookup_is_not_remembered() {
        let cache = ApiKeyCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let g = generation(cache.get("h1", t0));
        cache.put("h1", key("k1"), g, t0);
        // a lookup starts, the key is revoked, the lookup's (stale) answer arrives
        let racing = generation(cache.get("h2", t0));
        cache.forget("h1");
        assert!(matches!(cache.get("h1", t0), Lookup::Miss { .. }));
        cache.put("h2", key("k2"), racing, t0);
        assert!(matches!(cache.get("h2", t0), Lookup::Miss { .. }));
        // a lookup after the revocation is remembered again
        let fresh = generation(cache.get("h2", t0));
        cache.put("h2", key("k2"), fresh, t0);
        assert_eq!(cache.get("h2", t0), Lookup::Hit(key("k2")));
    }

    #[test]
    fn a_touch_updates_the_last_use_but_not_the_age() {
        let cache = ApiKeyCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        cache.put("h1", key("k1"), 0, t0);
        let at = chrono::Utc::now();
        cache.touched("h1", at);
        match cache.get("h1", t0 + Duration::from_secs(1)) {
            Lookup::Hit(k) => assert_eq!(k.key.last_used, Some(at)),
            other => panic!("expected a hit, got {other:?}"),
        }
        assert!(matches!(
            cache.get("h1", t0 + Duration::from_secs(5)),
            Lookup::Miss { .. }
        ));
    }

    #[test]
    fn memory_is_bounded() {
        let cache = ApiKeyCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        for n in 0..MAX_KEYS {
            cache.put(&format!("h{n}"), key("k"), 0, t0);
        }
        assert_eq!(cache.len(), MAX_KEYS);
        // all live: the cache starts over rather than grow
        cache.put("one-more", key("k"), 0, t0);
        assert_eq!(cache.len(), 1);
        for n in 0..MAX_KEYS - 1 {
            cache.put(&format!("h{n}"), key("k"), 0, t0);
        }
        // the old ones expired: only they go
        let later = t0 + Duration::from_secs(6);
        cache.put("fresh", key("k"), 0, later);
        assert_eq!(cache.len(), 1);
        assert!(matches!(cache.get("fresh", later), Lookup::Hit(_)));
    }
}
