//! Client-side request rate limits: a token bucket per (account, region, service).
//!
//! Owns: [`TokenBucket`] and the lazily filled map of buckets, [`RateLimits`].
//!
//! Must never: hold a lock across an `.await`, or let a caller through without a token.

use crate::settings::AwsSettings;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` stored.
///
/// Callers reserve a token at once (the balance may go negative) and sleep until it is
/// theirs, so waiters are served in arrival order and nobody spins.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

struct BucketState {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive; `burst` is at least 1.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: if rate > 0.0 { rate } else { f64::MIN_POSITIVE },
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// Wait until a token is available and take it.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
            s.tokens = (s.tokens + elapsed * self.rate).min(self.burst);
            s.last = now;
            s.tokens -= 1.0;
            if s.tokens >= 0.0 {
                None
            } else {
                Some(Duration::from_secs_f64((-s.tokens / self.rate).min(3600.0)))
            }
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The buckets of every (account, region, service), made on first use from
/// `aws.requests_per_second` and `aws.burst`.
pub struct RateLimits {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<(String, String, String), Arc<TokenBucket>>>,
}

impl RateLimits {
    pub fn new(settings: &AwsSettings) -> RateLimits {
        RateLimits {
            rate: settings.requests_per_second,
            burst: settings.burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket of one (account, region, service).
    pub fn bucket(&self, account: &str, region: &str, service: &str) -> Arc<TokenBucket> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (account.to_string(), region.to_string(), service.to_string());
        map.entry(key)
            .or_insert_with(|| Arc::new(TokenBucket::new(self.rate, self.burst)))
            .clone()
    }

    /// Wait for a token of (account, region, service).
    pub async fn acquire(&self, account: &str, region: &str, service: &str) {
        self.bucket(account, region, service).acquire().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bucket_allows_burst_then_holds_the_rate() {
        let bucket = TokenBucket::new(50.0, 5);
        let start = std::time::Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "burst is immediate"
        );
        for _ in 0..25 {
            bucket.acquire().await;
        }
        // 25 tokens beyond the burst at 50/s take at least 0.5 s
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(480), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[tokio::test]
    async fn concurrent_waiters_share_the_rate() {
        let bucket = Arc::new(TokenBucket::new(100.0, 1));
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..21)
            .map(|_| {
                let b = bucket.clone();
                tokio::spawn(async move { b.acquire().await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn buckets_are_per_account_region_service() {
        let settings = crate::settings::Settings::defaults().expect("defaults").aws;
        let limits = RateLimits::new(&settings);
        let a = limits.bucket("1", "us-east-1", "ec2");
        assert!(Arc::ptr_eq(&a, &limits.bucket("1", "us-east-1", "ec2")));
        assert!(!Arc::ptr_eq(&a, &limits.bucket("1", "us-west-2", "ec2")));
        assert!(!Arc::ptr_eq(&a, &limits.bucket("2", "us-east-1", "ec2")));
        assert!(!Arc::ptr_eq(&a, &limits.bucket("1", "us-east-1", "s3")));
    }
}
