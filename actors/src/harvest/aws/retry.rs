//! Which AWS answers are worth another attempt, and how long to wait before it.
//!
//! Owns: the retryable classification of AWS errors and the full-jitter backoff.
//!
//! Must never: sleep or do I/O itself (the transport sleeps), or call a client error
//! (bad request, access denied, missing resource) retryable.

use std::time::Duration;

/// AWS error codes that mean "slow down" or "try again".
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// Codes that mean the caller is being throttled (as opposed to a transient fault).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
];

/// Whether an answer with this HTTP status and AWS error code should be retried:
/// every 5xx, 429, and the throttling / transient codes whatever their status.
pub fn is_retryable(status: u16, code: &str) -> bool {
    status >= 500 || status == 429 || RETRYABLE_CODES.contains(&code)
}

/// Whether an answer means throttling (429 or a throttling code).
pub fn is_throttling(status: u16, code: &str) -> bool {
    status == 429 || THROTTLING_CODES.contains(&code)
}

/// Full jitter: a uniform wait in `[0, min(cap, base * 2^attempt)]` milliseconds.
/// `attempt` counts from 0 for the wait after the first failure.
pub fn backoff(attempt: u32, base_ms: u64, cap_ms: u64) -> Duration {
    let ceiling = base_ms.saturating_mul(1u64 << attempt.min(63)).min(cap_ms);
    Duration::from_millis(fastrand::u64(0..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_and_codes() {
        assert!(is_retryable(500, ""));
        assert!(is_retryable(503, "SlowDown"));
        assert!(is_retryable(429, ""));
        assert!(is_retryable(400, "ThrottlingException"));
        assert!(is_retryable(400, "Throttling"));
        assert!(is_retryable(503, "RequestLimitExceeded"));
        assert!(is_retryable(400, "RequestTimeout"));
        assert!(!is_retryable(400, "ValidationError"));
        assert!(!is_retryable(403, "AccessDenied"));
        assert!(!is_retryable(404, "NoSuchBucketPolicy"));
        assert!(is_throttling(400, "Throttling"));
        assert!(is_throttling(429, ""));
        assert!(!is_throttling(500, "InternalError"));
    }

    #[test]
    fn backoff_stays_within_full_jitter_bounds() {
        for attempt in 0..80 {
            let ceiling = (100u64.saturating_mul(1u64 << attempt.min(63))).min(20_000);
            let mut max_seen = Duration::ZERO;
            for _ in 0..200 {
                let d = backoff(attempt, 100, 20_000);
                assert!(
                    d <= Duration::from_millis(ceiling),
                    "attempt {attempt}: {d:?}"
                );
                max_seen = max_seen.max(d);
            }
            // jitter spreads over the range, not pinned at 0
            if ceiling >= 100 {
                assert!(
                    max_seen >= Duration::from_millis(ceiling / 4),
                    "attempt {attempt}"
                );
            }
        }
        assert_eq!(backoff(5, 0, 1000), Duration::ZERO);
        assert!(backoff(u32::MAX, u64::MAX, 50) <= Duration::from_millis(50));
    }
}
