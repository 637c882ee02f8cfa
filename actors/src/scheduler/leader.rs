//! Scheduler leadership: one leader per cluster, elected with a Redis lease that carries a
//! fencing token.
//!
//! Owns: the lease key (`<prefix>leader`, holding `<node>|<token>`, expiring after the lease
//! time) and the fencing counter (`<prefix>leader:fence`), incremented on every change of
//! leader, so that tokens only grow. A leader renews its lease every third of the lease
//! time; a standby that finds the key gone takes it with the next token, so it leads within
//! twice the lease time of the old leader's death. What the leader writes carries its
//! [`Fence`], which the queue checks atomically with the write: a deposed leader (its lease
//! lapsed while it was stalled) has its writes refused.
//!
//! Must never: let two nodes believe they lead with the same token, or renew a lease that
//! another node holds.

use deadpool_redis::redis;
use deadpool_redis::{Pool, Runtime};
use std::time::Duration;

/// Why leadership could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election unavailable: {0}")]
    Unavailable(String),
}

pub use crate::queue::Fence;

/// Take the lease when it is free, renew it when this node holds it with `ARGV[3]`.
/// Returns the token held, or -1 when another node leads.
const ACQUIRE: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  if ARGV[3] ~= '' and v == ARGV[1] .. '|' .. ARGV[3] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(ARGV[3])
  end
  return -1
end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. t, 'PX', ARGV[2])
return t
";

/// Give the lease up if this node holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// One node's view of the cluster's leader lease.
pub struct LeaderLease {
    pool: Pool,
    key: String,
    fence_key: String,
    node: String,
    lease: Duration,
}

impl LeaderLease {
    /// A lease handle for `node` on the Redis at `url`; nothing is taken yet.
    pub fn new(url: &str, prefix: &str, node: &str, lease: Duration) -> Result<Self, LeaderError> {
        let pool = deadpool_redis::Config::from_url(url)
            .builder()
            .map_err(|e| LeaderError::Unavailable(format!("redis url: {e}")))?
            .max_size(2)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| LeaderError::Unavailable(format!("redis pool: {e}")))?;
        Ok(LeaderLease {
            pool,
            key: format!("{prefix}leader"),
            fence_key: format!("{prefix}leader:fence"),
            node: node.to_string(),
            lease: lease.max(Duration::from_millis(100)),
        })
    }

    /// How often a leader renews and a standby tries.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Become or stay leader: with `held` the fence this node holds, renew it; without,
    /// take the lease if it is free. Returns the fence this node now holds, or none when
    /// another node leads (a leader whose lease lapsed and was taken gets none: deposed).
    pub async fn acquire_or_renew(
        &self,
        held: Option<&Fence>,
    ) -> Result<Option<Fence>, LeaderError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| LeaderError::Unavailable(e.to_string()))?;
        // EVAL, not EVALSHA: this runs a few times a lease, and survives a Redis restart
        let token: i64 = redis::cmd("EVAL")
            .arg(ACQUIRE)
            .arg(2)
            .arg(&self.key)
            .arg(&self.fence_key)
            .arg(&self.node)
            .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX))
            .arg(held.map(|f| f.token.to_string()).unwrap_or_default())
            .query_async(&mut *conn)
            .await
            .map_err(|e| LeaderError::Unavailable(e.to_string()))?;
        Ok(u64::try_from(token).ok().map(|token| Fence {
            key: self.key.clone(),
            value: format!("{}|{token}", self.node),
            token,
        }))
    }

    /// Step down (on shutdown), so that a standby need not wait for the lease to lapse.
    pub async fn release(&self, held: &Fence) -> Result<(), LeaderError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| LeaderError::Unavailable(e.to_string()))?;
        let _: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&self.key)
            .arg(&held.value)
            .query_async(&mut *conn)
            .await
            .map_err(|e| LeaderError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// The node leading now, if any.
    pub async fn leader(&self) -> Result<Option<String>, LeaderError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| LeaderError::Unavailable(e.to_string()))?;
        let v: Option<String> = redis::cmd("GET")
            .arg(&self.key)
            .query_async(&mut *conn)
            .await
            .map_err(|e| LeaderError::Unavailable(e.to_string()))?;
        Ok(v.and_then(|v| v.rsplit_once('|').map(|(node, _)| node.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> String {
        std::env::var("PALISADE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn prefix() -> String {
        format!("palisade-test-leader-{}:", uuid::Uuid::new_v4())
    }

    #[tokio::test]
    async fn one_leader_at_a_time_with_growing_tokens() {
        let p = prefix();
        let lease = Duration::from_millis(400);
        let a = LeaderLease::new(&url(), &p, "a", lease).expect("lease a");
        let b = LeaderLease::new(&url(), &p, "b", lease).expect("lease b");

        let fa = a
            .acquire_or_renew(None)
            .await
            .expect("redis")
            .expect("a leads");
        assert!(
            b.acquire_or_renew(None).await.expect("redis").is_none(),
            "b stands by"
        );
        // a renews with its fence; b cannot renew with a forged one
        let again = a
            .acquire_or_renew(Some(&fa))
            .await
            .expect("redis")
            .expect("a renews");
        assert_eq!(again, fa);
        let forged = Fence {
            value: format!("b|{}", fa.token),
            ..fa.clone()
        };
        assert!(b
            .acquire_or_renew(Some(&forged))
            .await
            .expect("redis")
            .is_none());
        assert_eq!(a.leader().await.expect("redis").as_deref(), Some("a"));

        // a stalls past its lease: b takes over with a larger token; a is deposed
        tokio::time::sleep(lease + Duration::from_millis(200)).await;
        let fb = b
            .acquire_or_renew(None)
            .await
            .expect("redis")
            .expect("b leads");
        assert!(fb.token > fa.token);
        assert!(
            a.acquire_or_renew(Some(&fa))
                .await
                .expect("redis")
                .is_none(),
            "a is deposed"
        );
        assert_eq!(a.leader().await.expect("redis").as_deref(), Some("b"));

        // b steps down; a takes over at once, with a larger token still
        b.release(&fb).await.expect("release");
        let fa2 = a
            .acquire_or_renew(None)
            .await
            .expect("redis")
            .expect("a leads again");
        assert!(fa2.token > fb.token);
        a.release(&fa2).await.expect("release");
        // releasing a fence not held does nothing
        a.release(&fb).await.expect("release");
        cleanup(&p).await;
    }

    #[tokio::test]
    async fn unreachable_redis_is_an_error_not_a_panic() {
        let l = LeaderLease::new("redis://127.0.0.1:1", "x:", "a", Duration::from_secs(1))
            .expect("a handle needs no connection");
        assert!(matches!(
            l.acquire_or_renew(None).await,
            Err(LeaderError::Unavailable(_))
        ));
    }

    async fn cleanup(prefix: &str) {
        let client = redis::Client::open(url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
    }
}
