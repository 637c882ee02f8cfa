//! The failed-login limiter: a sliding window of failures per user name and per client
//! address, in this process.
//!
//! Owns: counting failed logins under keys (`user:NAME`, `addr:IP`), saying how long a key
//! that reached `max` failures within `window` must wait, and forgetting failures that left
//! the window. Memory is bounded: at most [`MAX_KEYS`] keys of at most `max` instants each.
//!
//! Must never: hold a password, or share state between nodes (each interface node limits
//! what it sees; a cluster's limit is per node).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most keys tracked at once; past it, the key whose last failure is oldest goes.
pub const MAX_KEYS: usize = 10_000;

/// Failed logins per key within a sliding window.
pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max: usize::try_from(max_failures).unwrap_or(usize::MAX).max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long to wait before the next attempt when any of `keys` has `max` failures in
    /// the window (the time until its oldest one leaves it, at least a second); none when
    /// the attempt may go ahead.
    pub fn blocked_for(&self, keys: &[&str], now: Instant) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| map.get(*k))
            .filter_map(|times| {
                let recent: Vec<&Instant> = times
                    .iter()
                    .filter(|t| now.saturating_duration_since(**t) < self.window)
                    .collect();
                if recent.len() < self.max {
                    return None;
                }
                let oldest = **recent.first()?;
                let left = self
                    .window
                    .saturating_sub(now.saturating_duration_since(oldest));
                Some(left.max(Duration::from_secs(1)))
            })
            .max()
    }

    /// Count a failed login against every one of `keys`.
    pub fn record_failure(&self, keys: &[&str], now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if !map.contains_key(*key) && map.len() >= MAX_KEYS {
                self.make_room(&mut map, now);
            }
            let times = map.entry((*key).to_string()).or_default();
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
            {
                times.pop_front();
            }
            if times.len() >= self.max {
                times.pop_front();
            }
            times.push_back(now);
        }
    }

    /// Forget the failures of `key` (a user who logged in).
    pub fn clear(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }

    /// Keys tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn make_room(&self, map: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
        map.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) < self.window)
        });
        if map.len() >= MAX_KEYS {
            let oldest = map
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_max_failures_until_the_oldest_leaves_the_window() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let keys = ["user:alice", "addr:10.0.0.1"];
        for i in 0..3 {
            assert_eq!(limiter.blocked_for(&keys, t0), None, "attempt {i}");
            limiter.record_failure(&keys, t0 + Duration::from_secs(i * 10));
        }
        let now = t0 + Duration::from_secs(25);
        // the oldest failure (t0) leaves the window at t0 + 60: 35 s from now
        assert_eq!(
            limiter.blocked_for(&keys, now),
            Some(Duration::from_secs(35))
        );
        // either key alone blocks
        assert!(limiter.blocked_for(&["user:alice"], now).is_some());
        assert!(limiter
            .blocked_for(&["user:bob", "addr:10.0.0.1"], now)
            .is_some());
        assert_eq!(
            limiter.blocked_for(&["user:bob", "addr:10.0.0.2"], now),
            None
        );
        // the window slides
        assert_eq!(
            limiter.blocked_for(&keys, t0 + Duration::from_secs(60)),
            None
        );
        limiter.clear("user:alice");
        assert_eq!(limiter.blocked_for(&["user:alice"], now), None);
        assert!(limiter.blocked_for(&["addr:10.0.0.1"], now).is_some());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..(MAX_KEYS + 50) {
            limiter.record_failure(&[&format!("addr:{i}")], now);
        }
        assert!(limiter.tracked() <= MAX_KEYS);
        // repeated failures of one key keep at most `max` instants
        for _ in 0..100 {
            limiter.record_failure(&["user:x"], now);
        }
        let map = limiter.failures.lock().expect("lock");
        assert_eq!(map.get("user:x").map(VecDeque::len), Some(2));
    }
}
