//! The cluster's queue: p0/p1/p2 job lists in one Redis shared by every node.
//!
//! Owns: the Redis layout under one key prefix (`palisade:` by default), the Lua scripts
//! that change it atomically, the leases of the jobs this process took (renewed by one
//! tokio task per job until `finish`) and the reaper that puts a job whose lease lapsed
//! back at the front of its priority, or into the dead-letter list after `max_attempts`.
//!
//! Layout (`P` is the prefix; times are the Redis server's clock, in ms):
//! - `P ready:p0|p1|p2`: lists of job ids, taken from the left (oldest first); a job whose
//!   lease lapsed goes back on the left, a failed one that is retried on the right.
//! - `P job:<id>`: hash: `body` (the [`Job`] as JSON, readable in redis-cli), `prio`,
//!   `state`, `queued`, `started`, `finished`, `node`, `attempts` (times taken), `lease`
//!   (the taker's token), `error` (the last one), `counts` (JSON), `dkey` (dedupe key).
//!   Finished jobs expire after the history TTL; dead letters do not.
//! - `P leases`: sorted set of running job ids, scored by lease expiry.
//! - `P dedupe`: hash dedupe key -> id of the recurring job that holds it.
//! - `P dead`: list of dead-lettered ids, newest first (capped; the oldest then expire).
//! - `P wake`: wake-up tokens (capped) that idle `take`s wait on with BLPOP.
//! - `P waits:<p>`, `P runs:<p>`: recent wait and run times (means over the last 100);
//!   `P totals`: done and failed counters per priority.
//!
//! Delivery is at least once: a job runs again only when its lease lapsed (its node died
//! or lost Redis for longer than the lease). A job acknowledged with `finish` never runs
//! again.
//!
//! Must never: block a pooled connection (BLPOP runs on connections of its own), panic on
//! a Redis reply or outage (every failure is [`QueueError::Unavailable`]), run jobs, or show
//! a password from the Redis URL.

use async_trait::async_trait;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncConnectionConfig, FromRedisValue, ServerErrorKind};
use deadpool_redis::{Manager, Pool, Runtime};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use palisade_proto::{Job, JobId, JobPriority, JobState, JobStatus, Timestamp};

use super::{
    Fence, JobOutcome, JobQueue, PriorityStats, QueueError, QueueStats, Recurring, CANCELLED,
};

/// How a [`RedisQueue`] is set up.
#[derive(Clone, Debug)]
pub struct RedisQueueOptions {
    /// Prefix of every key the queue uses; nodes that share a prefix share the queue.
    pub prefix: String,
    /// How long a taken job stays leased without a renewal; renewed every third of it.
    /// A job whose node died runs again this long after the last renewal.
    pub lease: Duration,
    /// Runs (failures or lapsed leases) after which a job goes to the dead-letter list.
    pub max_attempts: u32,
    /// How long a failed job waits before its next attempt; doubled per attempt (at most
    /// 32 times). Zero retries at once.
    pub retry_backoff: Duration,
    /// How long a finished job's status is kept.
    pub history_ttl: Duration,
    /// Connections for ordinary commands. Each is multiplexed (any number of commands in
    /// flight), so a few serve many workers; commands are spread over them in turn.
    pub pool_size: usize,
    /// Connections for blocking waits: how many `take`s of this process can wait on Redis
    /// at once; more wait for a free connection, up to their `wait`.
    pub wait_connections: usize,
}

impl Default for RedisQueueOptions {
    fn default() -> Self {
        RedisQueueOptions {
            prefix: "palisade:".to_string(),
            lease: Duration::from_secs(30),
            max_attempts: 3,
            retry_backoff: Duration::from_secs(5),
            history_ttl: Duration::from_secs(24 * 3600),
            pool_size: 4,
            wait_connections: 64,
        }
    }
}

/// Connecting takes at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A command that has no answer after this long fails (Redis hung or the link is dead).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// A blocking wait whose answer is this late past its own timeout is given up.
const WAIT_SLACK: Duration = Duration::from_secs(2);
/// Shorter waits are not worth a blocking call.
const MIN_WAIT: Duration = Duration::from_millis(1);
/// The reaper runs at most this often per process (and at least every third of a lease).
const REAP_EVERY_MAX: Duration = Duration::from_secs(1);
const REAP_EVERY_MIN: Duration = Duration::from_millis(50);

/// What every script starts with: helpers and the layout's key names. `ARGV[1]` is the
/// key prefix. The constants are the caps the module header names. Every `redis.call` costs
/// about a microsecond of Redis's one thread, so the hot scripts (enqueue, take, finish)
/// read a job's fields with one HMGET and write them with one HSET.
macro_rules! lua_prelude {
    () => {
        r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local pfx = ARGV[1]
local PRIOS = {'p0', 'p1', 'p2'}
local RECENT = 100
local WAKE_CAP = 16
local DEAD_CAP = 10000
local function int(n) return string.format('%d', n) end
local function job_key(id) return pfx .. 'job:' .. id end
local function ready_key(p) return pfx .. 'ready:' .. p end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function is_active(state) return state == 'queued' or state == 'running' end
-- One token per wake-up, up to WAKE_CAP: a full list already wakes every waiter it can.
local function wake()
  local key = pfx .. 'wake'
  if redis.call('LLEN', key) < WAKE_CAP then redis.call('LPUSH', key, '1') end
end
-- Newest first; trimmed back to RECENT values once it holds twice that.
local function push_recent(key, v)
  if redis.call('LPUSH', key, int(v)) > 2 * RECENT then
    redis.call('LTRIM', key, 0, RECENT - 1)
  end
end
local function release_dedupe(dkey, id)
  if dkey and dkey ~= '' and redis.call('HGET', pfx .. 'dedupe', dkey) == id then
    redis.call('HDEL', pfx .. 'dedupe', dkey)
  end
end
local function dead_letter(id, h, prio, dkey, err, now, ttl)
  redis.call('HSET', h, 'state', 'failed', 'finished', int(now), 'error', err)
  redis.call('HDEL', h, 'lease')
  redis.call('PERSIST', h)
  release_dedupe(dkey, id)
  redis.call('HINCRBY', pfx .. 'totals', 'failed:' .. prio, 1)
  local dead = pfx .. 'dead'
  if redis.call('LPUSH', dead, id) > DEAD_CAP then
    redis.call('EXPIRE', job_key(redis.call('RPOP', dead)), ttl)
  end
end
local function reap(now, max_attempts, ttl)
  local leases = pfx .. 'leases'
  local ids = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 100)
  local n = 0
  for _, id in ipairs(ids) do
    redis.call('ZREM', leases, id)
    local h = job_key(id)
    local f = redis.call('HMGET', h, 'state', 'prio', 'attempts', 'node', 'dkey')
    if f[1] == 'running' then
      local err = 'lease lapsed on node ' .. (f[4] or 'unknown')
      if (tonumber(f[3] or 0) or 0) >= max_attempts then
        dead_letter(id, h, f[2], f[5], err, now, ttl)
      else
        redis.call('HSET', h, 'state', 'queued', 'queued', int(now), 'error', err)
        redis.call('HDEL', h, 'lease', 'started')
        redis.call('LPUSH', ready_key(f[2]), id)
        wake()
      end
      n = n + 1
    end
  end
  -- retries whose backoff is over
  for _, p in ipairs(PRIOS) do
    local delayed = pfx .. 'delayed:' .. p
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 100)) do
      redis.call('ZREM', delayed, id)
      if redis.call('HGET', job_key(id), 'state') == 'queued' then
        redis.call('RPUSH', ready_key(p), id)
        wake()
      end
    end
  end
  return n
end
"#
    };
}

/// ARGV: prefix, id, priority, body, dedupe key ('' for none), queued at (ms), fence key and
/// value ('' for none), recurrence (ms, 0 for none).
/// Returns 1 when queued, 0 when refused (same dedupe key active, or the id is active), -1
/// when a recurring job is not due, -2 when the fence does not hold (a deposed leader).
const ENQUEUE: &str = concat!(
    lua_prelude!(),
    r#"
local id, prio, body, dkey, queued = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local fkey, fval, every = ARGV[7] or '', ARGV[8] or '', tonumber(ARGV[9] or '0') or 0
-- a leader's write: refused unless its lease still holds (a deposed leader)
if fkey ~= '' and redis.call('GET', fkey) ~= fval then return -2 end
local h = job_key(id)
local st = redis.call('HGET', h, 'state')
if is_active(st) then return 0 end
if dkey ~= '' then
  local holder = redis.call('HGET', pfx .. 'dedupe', dkey)
  if holder and is_active(redis.call('HGET', job_key(holder), 'state')) then return 0 end
end
-- a recurring job is due `every` ms after any node last queued it
local now = now_ms()
if every > 0 and dkey ~= '' then
  local last = tonumber(redis.call('HGET', pfx .. 'recurring', dkey) or '0') or 0
  if now - last < every then return -1 end
  redis.call('HSET', pfx .. 'recurring', dkey, int(now))
end
if dkey ~= '' then redis.call('HSET', pfx .. 'dedupe', dkey, id) end
if st then
  -- the id of a finished job, queued again: start afresh
  if st == 'failed' then redis.call('LREM', pfx .. 'dead', 0, id) end
  redis.call('DEL', h)
end
redis.call('HSET', h, 'body', body, 'prio', prio, 'state', 'queued', 'queued', queued,
  'attempts', 0, 'dkey', dkey)
redis.call('RPUSH', ready_key(prio), id)
wake()
return 1
"#
);

/// ARGV: prefix, node, lease ms, lease token, reap first ('1'/'0'), max attempts, TTL s.
/// Returns {id, body} of the job now leased to `node`, or nil when none is ready.
const TAKE: &str = concat!(
    lua_prelude!(),
    r#"
local node, lease, token = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
if ARGV[5] == '1' then reap(now, tonumber(ARGV[6]), tonumber(ARGV[7])) end
for i, p in ipairs(PRIOS) do
  local key = ready_key(p)
  local id = redis.call('LPOP', key)
  while id do
    local h = job_key(id)
    local f = redis.call('HMGET', h, 'state', 'queued', 'attempts', 'body')
    if f[1] == 'queued' then
      local attempts = (tonumber(f[3] or 0) or 0) + 1
      redis.call('HSET', h, 'state', 'running', 'node', node, 'started', int(now),
        'lease', token, 'attempts', int(attempts))
      redis.call('ZADD', pfx .. 'leases', int(now + lease), id)
      local queued = tonumber(f[2] or now) or now
      push_recent(pfx .. 'waits:' .. p, math.max(0, now - queued))
      -- Pass the wake-up on while work is left, so every idle taker gets a turn.
      for j = i, #PRIOS do
        if redis.call('LLEN', ready_key(PRIOS[j])) > 0 then
          wake()
          break
        end
      end
      return {id, f[4]}
    end
    -- an id whose job was acknowledged or expired meanwhile: skip it
    id = redis.call('LPOP', key)
  end
end
return false
"#
);

/// ARGV: prefix, id, 'done'|'failed', error, counts JSON, node ('' to keep), max attempts,
/// TTL s, retry backoff ms. Returns 'unknown', 'finished' (already), 'done', 'retried' or
/// 'dead'. A retried job waits in its priority's delayed set for the backoff, doubled per
/// attempt (capped at 32 times), before the reaper makes it ready again.
const FINISH: &str = concat!(
    lua_prelude!(),
    r#"
local id, outcome, err, counts, node = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local max_attempts, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()
local h = job_key(id)
local f = redis.call('HMGET', h, 'state', 'prio', 'started', 'attempts', 'dkey')
local st, prio, dkey = f[1], f[2], f[5]
if not st then return 'unknown' end
if not is_active(st) then return 'finished' end
redis.call('ZREM', pfx .. 'leases', id)
if f[3] then push_recent(pfx .. 'runs:' .. prio, math.max(0, now - tonumber(f[3]))) end
local fields = {'counts', counts}
if node ~= '' then
  fields[3] = 'node'
  fields[4] = node
end
if outcome == 'done' then
  -- acknowledged: never run again, even if a lapsed lease queued it meanwhile
  if st == 'queued' then redis.call('LREM', ready_key(prio), 0, id) end
  redis.call('HSET', h, 'state', 'done', 'finished', int(now), unpack(fields))
  redis.call('HDEL', h, 'lease', 'error')
  release_dedupe(dkey, id)
  redis.call('HINCRBY', pfx .. 'totals', 'done:' .. prio, 1)
  redis.call('EXPIRE', h, ttl)
  return 'done'
end
redis.call('HSET', h, 'error', err, unpack(fields))
if (tonumber(f[4] or 0) or 0) >= max_attempts then
  if st == 'queued' then redis.call('LREM', ready_key(prio), 0, id) end
  dead_letter(id, h, prio, dkey, err, now, ttl)
  return 'dead'
end
if st == 'running' then
  local attempts = tonumber(f[4] or 1) or 1
  local delay = (tonumber(ARGV[9] or 0) or 0) * math.min(32, 2 ^ math.max(0, attempts - 1))
  redis.call('HSET', h, 'state', 'queued', 'queued', int(now))
  redis.call('HDEL', h, 'started', 'lease')
  if delay > 0 then
    redis.call('ZADD', pfx .. 'delayed:' .. prio, int(now + delay), id)
  else
    redis.call('RPUSH', ready_key(prio), id)
    wake()
  end
end
return 'retried'
"#
);

/// ARGV: prefix, id, lease token, lease ms. Returns 1 when renewed, 0 when the lease is
/// no longer this taker's (lapsed and reaped, or the job was finished).
const RENEW: &str = concat!(
    lua_prelude!(),
    r#"
local id, token, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('HGET', job_key(id), 'lease') ~= token then return 0 end
if not redis.call('ZSCORE', pfx .. 'leases', id) then return 0 end
redis.call('ZADD', pfx .. 'leases', int(now_ms() + lease), id)
return 1
"#
);

/// ARGV: prefix, max attempts, TTL s. Returns how many lapsed leases it handled.
const REAP: &str = concat!(
    lua_prelude!(),
    r#"
return reap(now_ms(), tonumber(ARGV[2]), tonumber(ARGV[3]))
"#
);

/// ARGV: prefix, reap first ('1'/'0'), max attempts, TTL s. Returns the figures as JSON.
const STATS: &str = concat!(
    lua_prelude!(),
    r#"
local now = now_ms()
if ARGV[2] == '1' then reap(now, tonumber(ARGV[3]), tonumber(ARGV[4])) end
local function mean(key)
  local xs = redis.call('LRANGE', key, 0, RECENT - 1)
  if #xs == 0 then return 0 end
  local sum = 0
  for _, x in ipairs(xs) do sum = sum + tonumber(x) end
  return sum / #xs
end
local out = {prios = {}, nodes = {}, dead = redis.call('LLEN', pfx .. 'dead')}
for _, p in ipairs(PRIOS) do
  local oldest = 0
  local head = redis.call('LINDEX', ready_key(p), 0)
  if head then
    local q = tonumber(redis.call('HGET', job_key(head), 'queued') or now) or now
    oldest = math.max(0, now - q)
  end
  out.prios[p] = {
    depth = redis.call('LLEN', ready_key(p)) + redis.call('ZCARD', pfx .. 'delayed:' .. p),
    oldest_ms = oldest,
    mean_wait_ms = mean(pfx .. 'waits:' .. p),
    mean_run_ms = mean(pfx .. 'runs:' .. p),
    running = 0,
    done = tonumber(redis.call('HGET', pfx .. 'totals', 'done:' .. p) or 0),
    failed = tonumber(redis.call('HGET', pfx .. 'totals', 'failed:' .. p) or 0),
  }
end
for _, id in ipairs(redis.call('ZRANGE', pfx .. 'leases', 0, -1)) do
  local f = redis.call('HMGET', job_key(id), 'prio', 'node')
  local s = f[1] and out.prios[f[1]]
  if s then
    s.running = s.running + 1
    local node = f[2] or 'unknown'
    out.nodes[node] = (out.nodes[node] or 0) + 1
  end
end
return cjson.encode(out)
"#
);

/// ARGV: prefix, id. Returns 1 when the dead letter is queued again, else 0.
const REQUEUE_DEAD: &str = concat!(
    lua_prelude!(),
    r#"
local id = ARGV[2]
local h = job_key(id)
local f = redis.call('HMGET', h, 'state', 'prio', 'dkey')
if f[1] ~= 'failed' then return 0 end
local dkey = f[3]
if dkey and dkey ~= '' then
  local holder = redis.call('HGET', pfx .. 'dedupe', dkey)
  if holder and holder ~= id and is_active(redis.call('HGET', job_key(holder), 'state')) then
    return 0
  end
end
if redis.call('LREM', pfx .. 'dead', 0, id) == 0 then return 0 end
if dkey and dkey ~= '' then redis.call('HSET', pfx .. 'dedupe', dkey, id) end
redis.call('HSET', h, 'state', 'queued', 'queued', int(now_ms()), 'attempts', 0)
redis.call('HDEL', h, 'started', 'finished', 'lease')
redis.call('PERSIST', h)
redis.call('RPUSH', ready_key(f[2]), id)
wake()
return 1
"#
);

/// A script and the SHA1 Redis gave it when loaded; run with EVALSHA.
struct LuaScript {
    source: &'static str,
    sha: String,
}

struct Scripts {
    enqueue: LuaScript,
    take: LuaScript,
    finish: LuaScript,
    renew: LuaScript,
    reap: LuaScript,
    stats: LuaScript,
    requeue_dead: LuaScript,
}

impl Scripts {
    async fn load(conn: &mut deadpool_redis::Connection) -> Result<Scripts, redis::RedisError> {
        Ok(Scripts {
            enqueue: load_script(conn, ENQUEUE).await?,
            take: load_script(conn, TAKE).await?,
            finish: load_script(conn, FINISH).await?,
            renew: load_script(conn, RENEW).await?,
            reap: load_script(conn, REAP).await?,
            stats: load_script(conn, STATS).await?,
            requeue_dead: load_script(conn, REQUEUE_DEAD).await?,
        })
    }
}

/// A lease this process holds on a job it took.
struct HeldLease {
    node: String,
    renewal: AbortHandle,
}

/// A connection checked out of the pool for good, and the multiplexed handle to it.
struct Lane {
    /// Held so the pool counts it as in use; detached when the link fails.
    checked_out: deadpool_redis::Connection,
    conn: MultiplexedConnection,
    /// Which connection this is, so a failure on an old one does not drop its successor.
    generation: u64,
}

/// Which lane and connection a command ran on, for [`Lanes::failed`].
#[derive(Clone, Copy)]
struct LaneId {
    index: usize,
    generation: u64,
}

/// The connections for ordinary commands. deadpool checks a connection with a PING each
/// time it hands one out, a round trip per command if taken per command; a multiplexed
/// connection serves any number of concurrent commands, so each lane keeps its connection
/// until a command on it fails at the link level, and only then asks the pool for another.
/// One lane holds at most one connection and the pool has one per lane, so filling a lane
/// never waits for another lane.
struct Lanes {
    pool: Pool,
    lanes: Vec<Mutex<Option<Lane>>>,
    /// One filler per lane at a time: the others wait for it and share its connection.
    fillers: Vec<tokio::sync::Mutex<()>>,
    next: AtomicUsize,
    generations: AtomicU64,
}

impl Lanes {
    fn new(pool: Pool, n: usize) -> Lanes {
        let n = n.max(1);
        Lanes {
            pool,
            lanes: (0..n).map(|_| Mutex::new(None)).collect(),
            fillers: (0..n).map(|_| tokio::sync::Mutex::new(())).collect(),
            next: AtomicUsize::new(0),
            generations: AtomicU64::new(0),
        }
    }

    fn lane(&self, i: usize) -> std::sync::MutexGuard<'_, Option<Lane>> {
        self.lanes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self, i: usize) -> Option<(LaneId, MultiplexedConnection)> {
        self.lane(i).as_ref().map(|l| {
            let id = LaneId {
                index: i,
                generation: l.generation,
            };
            (id, l.conn.clone())
        })
    }

    /// The next lane's connection, opened through the pool when the lane has none.
    async fn get(&self) -> Result<(LaneId, MultiplexedConnection), deadpool_redis::PoolError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        if let Some(current) = self.current(i) {
            return Ok(current);
        }
        let _filling = self.fillers[i].lock().await;
        if let Some(current) = self.current(i) {
            return Ok(current); // filled while this task waited
        }
        let checked_out = self.pool.get().await?;
        let conn = (*checked_out).clone();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        *self.lane(i) = Some(Lane {
            checked_out,
            conn: conn.clone(),
            generation,
        });
        Ok((
            LaneId {
                index: i,
                generation,
            },
            conn,
        ))
    }

    /// Drop the lane's connection after `e`, when `e` says the link itself failed.
    fn failed(&self, id: LaneId, e: &redis::RedisError) {
        if matches!(e.kind(), redis::ErrorKind::Server(_)) {
            return; // an answer from Redis: the link works
        }
        let mut lane = self.lane(id.index);
        if lane.as_ref().is_some_and(|l| l.generation == id.generation) {
            if let Some(l) = lane.take() {
                drop(deadpool_redis::Connection::take(l.checked_out));
            }
        }
    }
}

/// What the queue's handle, its renewal tasks and its reaper share.
struct Core {
    lanes: Lanes,
    /// Connections for BLPOP only, so a blocked wait never holds up other commands.
    waits: Pool,
    scripts: Scripts,
    opts: RedisQueueOptions,
    /// The Redis URL with any password replaced, for messages.
    shown_url: String,
    /// Redis 6+ takes fractional BLPOP timeouts; Redis 5 only whole seconds.
    fractional_waits: bool,
    closed: AtomicBool,
    close_signal: Notify,
    born: Instant,
    /// When the reaper last ran, in ms since `born` (plus one, 0 meaning never).
    last_reap: AtomicU64,
    leases: Mutex<HashMap<JobId, HeldLease>>,
}

/// The Redis [`JobQueue`], shared by every node of a cluster.
pub struct RedisQueue {
    core: Arc<Core>,
    reaper: AbortHandle,
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("url", &self.core.shown_url)
            .field("prefix", &self.core.opts.prefix)
            .finish()
    }
}

/// `url` with the password (and user) of its authority replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A pool of `size` connections to `url`; none is opened yet.
fn pool(url: &str, size: usize, response_timeout: Option<Duration>) -> Result<Pool, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(response_timeout);
    let manager = Manager::new_with_config(url, config).map_err(|e| e.to_string())?;
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_millis(500)))
        .recycle_timeout(Some(RESPONSE_TIMEOUT))
        .wait_timeout(Some(RESPONSE_TIMEOUT))
        .build()
        .map_err(|e| e.to_string())
}

/// The major version in an `INFO server` answer.
fn server_major(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .and_then(|v| v.trim().split('.').next())
        .and_then(|m| m.parse().ok())
}

async fn load_script(
    conn: &mut deadpool_redis::Connection,
    source: &'static str,
) -> Result<LuaScript, redis::RedisError> {
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(source)
        .query_async(conn)
        .await?;
    Ok(LuaScript { source, sha })
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisQueue {
    /// The enqueue script: 1 queued, 0 still queued or running, -1 not due yet (a
    /// recurring job queued by some node less than `every` ago), -2 `fence` no longer holds.
    async fn enqueue_with(
        &self,
        job: Job,
        fence: Option<&Fence>,
        every: Duration,
    ) -> Result<i64, QueueError> {
        let core = &self.core;
        if core.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        let body = serde_json::to_string(&job).map_err(|e| core.unavailable("enqueue", e))?;
        core.eval("enqueue", &core.scripts.enqueue, |c| {
            c.arg(job.id.as_str())
                .arg(job.priority.as_str())
                .arg(&body)
                .arg(job.dedupe_key().unwrap_or_default())
                .arg(job.enqueued_at.timestamp_millis())
                .arg(fence.map_or("", |f| f.key.as_str()))
                .arg(fence.map_or("", |f| f.value.as_str()))
                .arg(u64::try_from(every.as_millis()).unwrap_or(u64::MAX));
        })
        .await
    }

    /// Connect to Redis at `url` and load the queue's scripts. Fails with
    /// [`QueueError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(url: &str, opts: RedisQueueOptions) -> Result<RedisQueue, QueueError> {
        let shown_url = redact_url(url);
        let fail = |what: &str, e: &dyn fmt::Display| {
            crate::metrics::inc("palisade_queue_errors_total", &[("op", "connect")]);
            QueueError::Unavailable(format!("redis at {shown_url}: {what}: {e}"))
        };
        let main =
            pool(url, opts.pool_size, Some(RESPONSE_TIMEOUT)).map_err(|e| fail("bad url", &e))?;
        // A blocking wait answers when its own timeout ends; `wait_for_wake` bounds it.
        let waits = pool(url, opts.wait_connections, None).map_err(|e| fail("bad url", &e))?;
        let mut conn = main.get().await.map_err(|e| fail("not reachable", &e))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| fail("no answer", &e))?;
        let major = server_major(&info).unwrap_or(0);
        let scripts = Scripts::load(&mut conn)
            .await
            .map_err(|e| fail("script not loaded", &e))?;
        drop(conn);
        let core = Arc::new(Core {
            lanes: Lanes::new(main, opts.pool_size),
            waits,
            scripts,
            opts,
            shown_url,
            fractional_waits: major >= 6,
            closed: AtomicBool::new(false),
            close_signal: Notify::new(),
            born: Instant::now(),
            last_reap: AtomicU64::new(0),
            leases: Mutex::new(HashMap::new()),
        });
        let reaper = tokio::spawn(reap_loop(core.clone())).abort_handle();
        tracing::info!(redis = %core.shown_url, prefix = %core.opts.prefix, version = major, "redis queue connected");
        Ok(RedisQueue { core, reaper })
    }

    /// The options this queue runs with.
    pub fn options(&self) -> &RedisQueueOptions {
        &self.core.opts
    }
}

impl Drop for RedisQueue {
    /// Stops the reaper and every lease renewal: the leases of unfinished jobs then lapse,
    /// as if this process had died.
    fn drop(&mut self) {
        self.reaper.abort();
        for (_, lease) in self.core.lock_leases().drain() {
            lease.renewal.abort();
        }
    }
}

/// Runs the reaper every `reap_every`, for as long as the queue handle lives.
async fn reap_loop(core: Arc<Core>) {
    let every = core.reap_every();
    loop {
        tokio::time::sleep(every).await;
        if !core.reap_due() {
            continue;
        }
        match core.reap().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, prefix = %core.opts.prefix, "lapsed leases reaped"),
            Err(e) => tracing::debug!(error = %e, "reaper could not run"),
        }
    }
}

/// Renews one lease every third of the lease duration until aborted or lost.
async fn renew_loop(core: Arc<Core>, id: JobId, token: String) {
    let every = core.opts.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let renewed: Result<i64, QueueError> = core
            .eval("renew", &core.scripts.renew, |c| {
                c.arg(id.as_str()).arg(&token).arg(millis(core.opts.lease));
            })
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                crate::metrics::inc("palisade_queue_leases_lost_total", &[]);
                tracing::warn!(job = %id, "job lease lost: it lapsed and may run again elsewhere");
                return;
            }
            // Keep trying: the lease lasts three renewals, Redis may be back in time.
            Err(e) => tracing::warn!(job = %id, error = %e, "job lease not renewed"),
        }
    }
}

/// A connection from the wait pool. Unless marked clean, it is closed when dropped rather
/// than returned: a BLPOP cancelled mid-way would otherwise still block it.
struct WaitConn {
    conn: Option<deadpool_redis::Connection>,
    clean: bool,
}

impl Drop for WaitConn {
    fn drop(&mut self) {
        if !self.clean {
            if let Some(conn) = self.conn.take() {
                drop(deadpool_redis::Connection::take(conn));
            }
        }
    }
}

impl Core {
    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, HeldLease>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unavailable(&self, op: &'static str, e: impl fmt::Display) -> QueueError {
        crate::metrics::inc("palisade_queue_errors_total", &[("op", op)]);
        tracing::debug!(op, error = %e, redis = %self.shown_url, "redis queue operation failed");
        QueueError::Unavailable(format!("redis {op} at {}: {e}", self.shown_url))
    }

    /// A connection for ordinary commands, and its lane for [`Core::command_failed`].
    async fn conn(&self, op: &'static str) -> Result<(LaneId, MultiplexedConnection), QueueError> {
        self.lanes.get().await.map_err(|e| self.unavailable(op, e))
    }

    fn command_failed(&self, op: &'static str, lane: LaneId, e: redis::RedisError) -> QueueError {
        self.lanes.failed(lane, &e);
        self.unavailable(op, e)
    }

    fn reap_every(&self) -> Duration {
        (self.opts.lease / 3).clamp(REAP_EVERY_MIN, REAP_EVERY_MAX)
    }

    /// True at most once per `reap_every` in this process: the caller reaps.
    fn reap_due(&self) -> bool {
        let now = millis(self.born.elapsed()) + 1;
        let last = self.last_reap.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < millis(self.reap_every()) {
            return false;
        }
        self.last_reap
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn ttl_secs(&self) -> u64 {
        self.opts.history_ttl.as_secs().max(1)
    }

    /// Run `script` with the prefix and the arguments `args` adds, loading it again when
    /// Redis lost it (a restart or SCRIPT FLUSH).
    async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &LuaScript,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> Result<T, QueueError> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&script.sha).arg(0).arg(&self.opts.prefix);
        args(&mut cmd);
        let (lane, mut conn) = self.conn(op).await?;
        let first = match cmd.query_async(&mut conn).await {
            Err(e) if is_noscript(&e) => {
                tracing::info!(op, "redis lost the queue's scripts; loading them again");
                let loaded = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script.source)
                    .query_async::<String>(&mut conn)
                    .await;
                match loaded {
                    Ok(_) => cmd.query_async(&mut conn).await,
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        first.map_err(|e| self.command_failed(op, lane, e))
    }

    async fn reap(&self) -> Result<u64, QueueError> {
        let n: u64 = self
            .eval("reap", &self.scripts.reap, |c| {
                c.arg(self.opts.max_attempts).arg(self.ttl_secs());
            })
            .await?;
        if n > 0 {
            crate::metrics::count("palisade_queue_lapses_total", &[], n);
        }
        Ok(n)
    }

    /// Run the finish script; `max_attempts` 0 dead-letters a failure whatever its count.
    async fn finish_script(
        &self,
        id: &JobId,
        outcome: &JobOutcome,
        node: &str,
        max_attempts: u32,
    ) -> Result<String, QueueError> {
        let no_counts = BTreeMap::new();
        let (kind, error, counts) = match outcome {
            JobOutcome::Done { counts } => ("done", "", counts),
            JobOutcome::Failed { error, counts } => ("failed", error.as_str(), counts),
            JobOutcome::Cancelled => ("failed", CANCELLED, &no_counts),
        };
        let counts = serde_json::to_string(counts).map_err(|e| self.unavailable("finish", e))?;
        self.eval("finish", &self.scripts.finish, |c| {
            c.arg(id.as_str())
                .arg(kind)
                .arg(error)
                .arg(&counts)
                .arg(node)
                .arg(max_attempts)
                .arg(self.ttl_secs())
                .arg(u64::try_from(self.opts.retry_backoff.as_millis()).unwrap_or(u64::MAX));
        })
        .await
    }

    /// One attempt at taking a job for `node`; none when nothing is ready.
    async fn take_once(self: &Arc<Self>, node: &str) -> Result<Option<Job>, QueueError> {
        loop {
            let token = uuid::Uuid::new_v4().to_string();
            let reap = self.reap_due();
            let taken: Option<(String, String)> = self
                .eval("take", &self.scripts.take, |c| {
                    c.arg(node)
                        .arg(millis(self.opts.lease))
                        .arg(&token)
                        .arg(if reap { "1" } else { "0" })
                        .arg(self.opts.max_attempts)
                        .arg(self.ttl_secs());
                })
                .await?;
            let Some((id, body)) = taken else {
                return Ok(None);
            };
            let id = JobId(id);
            match serde_json::from_str::<Job>(&body) {
                Ok(job) => {
                    self.hold_lease(id, token, node);
                    return Ok(Some(job));
                }
                Err(e) => {
                    // Not a job this build can run: dead-letter it and take the next one.
                    let error = format!("job body is not readable: {e}");
                    tracing::warn!(job = %id, error, "unreadable job dead-lettered");
                    let outcome = JobOutcome::Failed {
                        error,
                        counts: BTreeMap::new(),
                    };
                    self.finish_script(&id, &outcome, node, 0).await?;
                }
            }
        }
    }

    fn hold_lease(self: &Arc<Self>, id: JobId, token: String, node: &str) {
        let renewal = tokio::spawn(renew_loop(self.clone(), id.clone(), token)).abort_handle();
        let lease = HeldLease {
            node: node.to_string(),
            renewal,
        };
        if let Some(old) = self.lock_leases().insert(id, lease) {
            old.renewal.abort();
        }
    }

    /// Block up to `left` for a wake-up token. Returns early on a token; `Ok` either way.
    async fn wait_for_wake(&self, left: Duration) -> Result<(), QueueError> {
        let conn = match tokio::time::timeout(left, self.waits.get()).await {
            Err(_) => return Ok(()), // every wait connection busy for all of `left`
            Ok(conn) => conn.map_err(|e| self.unavailable("take", e))?,
        };
        let mut conn = WaitConn {
            conn: Some(conn),
            clean: false,
        };
        let timeout = if self.fractional_waits {
            format!("{:.3}", left.as_secs_f64().max(0.001))
        } else {
            left.as_secs_f64().ceil().max(1.0).to_string()
        };
        let key = format!("{}wake", self.opts.prefix);
        let Some(c) = conn.conn.as_mut() else {
            return Ok(());
        };
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(&key).arg(&timeout);
        let blpop = cmd.query_async::<Option<(String, String)>>(c);
        match tokio::time::timeout(left + WAIT_SLACK, blpop).await {
            Ok(Ok(_)) => {
                conn.clean = true;
                Ok(())
            }
            Ok(Err(e)) => Err(self.unavailable("take", e)),
            Err(_) => Err(self.unavailable("take", "no answer to a blocking wait")),
        }
    }
}

fn timestamp(ms: Option<&String>) -> Option<Timestamp> {
    ms.and_then(|s| s.parse::<i64>().ok())
        .and_then(chrono::DateTime::from_timestamp_millis)
}

/// A job's status from its hash; none for an empty hash (unknown or expired job).
fn status_from_hash(mut h: HashMap<String, String>) -> Result<Option<JobStatus>, String> {
    let Some(body) = h.get("body") else {
        return Ok(None);
    };
    let job: Job = serde_json::from_str(body).map_err(|e| format!("job body: {e}"))?;
    let state = match h.get("state").map(String::as_str) {
        Some("queued") => JobState::Queued,
        Some("running") => JobState::Running,
        Some("done") => JobState::Done,
        Some("failed") => JobState::Failed,
        other => return Err(format!("job state {other:?}")),
    };
    let counts = match h.get("counts") {
        Some(c) => serde_json::from_str(c).map_err(|e| format!("job counts: {e}"))?,
        None => BTreeMap::new(),
    };
    Ok(Some(JobStatus {
        job,
        state,
        started_at: timestamp(h.get("started")),
        finished_at: timestamp(h.get("finished")),
        node: h.remove("node"),
        error: h.remove("error"),
        counts,
    }))
}

/// The stats script's answer.
#[derive(Deserialize)]
struct StatsReply {
    prios: BTreeMap<String, PriorityReply>,
    #[serde(default)]
    nodes: BTreeMap<String, f64>,
    dead: f64,
}

#[derive(Deserialize)]
struct PriorityReply {
    depth: f64,
    oldest_ms: f64,
    mean_wait_ms: f64,
    mean_run_ms: f64,
    running: f64,
    done: f64,
    failed: f64,
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, job: Job) -> Result<bool, QueueError> {
        Ok(self.enqueue_with(job, None, Duration::ZERO).await? == 1)
    }

    async fn enqueue_recurring(
        &self,
        job: Job,
        every: Duration,
        fence: Option<&Fence>,
    ) -> Result<Recurring, QueueError> {
        Ok(match self.enqueue_with(job, fence, every).await? {
            1 => Recurring::Queued,
            0 => Recurring::Busy,
            -1 => Recurring::NotDue,
            _ => Recurring::Deposed,
        })
    }

    async fn take(&self, node: &str, wait: Duration) -> Result<Option<Job>, QueueError> {
        let core = &self.core;
        let deadline = Instant::now() + wait;
        loop {
            // Register for the close signal before looking, so a close in between is seen.
            let closed = core.close_signal.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if core.closed.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if let Some(job) = core.take_once(node).await? {
                return Ok(Some(job));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left < MIN_WAIT {
                return Ok(None);
            }
            tokio::select! {
                waited = core.wait_for_wake(left) => waited?,
                _ = &mut closed => return Ok(None),
            }
        }
    }

    async fn finish(&self, id: &JobId, outcome: JobOutcome) -> Result<(), QueueError> {
        let core = &self.core;
        // Stop renewing first: if this finish does not reach Redis, the lease lapses and the
        // job runs again, rather than being held for ever by a lease nobody finishes.
        let node = match core.lock_leases().remove(id) {
            Some(lease) => {
                lease.renewal.abort();
                lease.node
            }
            None => String::new(),
        };
        // a cancelled job is not retried: straight to the dead letters
        let attempts = match outcome {
            JobOutcome::Cancelled => 0,
            _ => core.opts.max_attempts,
        };
        let result = core.finish_script(id, &outcome, &node, attempts).await?;
        match result.as_str() {
            "unknown" => Err(QueueError::UnknownJob(id.clone())),
            "finished" => {
                tracing::debug!(job = %id, "job was already finished");
                Ok(())
            }
            "dead" => {
                tracing::warn!(job = %id, "job dead-lettered after its last attempt");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn status(&self, id: &JobId) -> Result<Option<JobStatus>, QueueError> {
        let core = &self.core;
        let (lane, mut conn) = core.conn("status").await?;
        let hash: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{}job:{}", core.opts.prefix, id))
            .query_async(&mut conn)
            .await
            .map_err(|e| core.command_failed("status", lane, e))?;
        status_from_hash(hash).map_err(|e| core.unavailable("status", e))
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let core = &self.core;
        let reap = core.reap_due();
        let json: String = core
            .eval("stats", &core.scripts.stats, |c| {
                c.arg(if reap { "1" } else { "0" })
                    .arg(core.opts.max_attempts)
                    .arg(core.ttl_secs());
            })
            .await?;
        let reply: StatsReply =
            serde_json::from_str(&json).map_err(|e| core.unavailable("stats", e))?;
        let mut stats = QueueStats {
            dead_letter: reply.dead as u64,
            in_flight_per_node: reply
                .nodes
                .into_iter()
                .map(|(node, n)| (node, n as u64))
                .collect(),
            ..QueueStats::default()
        };
        for p in JobPriority::ALL {
            if let Some(r) = reply.prios.get(p.as_str()) {
                *stats.get_mut(p) = PriorityStats {
                    depth: r.depth as u64,
                    oldest_wait_secs: r.oldest_ms / 1000.0,
                    mean_wait_secs: r.mean_wait_ms / 1000.0,
                    mean_run_secs: r.mean_run_ms / 1000.0,
                    running: r.running as u64,
                    done: r.done as u64,
                    failed: r.failed as u64,
                };
            }
        }
        Ok(stats)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobStatus>, QueueError> {
        let core = &self.core;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (lane, mut conn) = core.conn("dead_letters").await?;
        let ids: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{}dead", core.opts.prefix))
            .arg(0)
            .arg(limit.saturating_sub(1))
            .query_async(&mut conn)
            .await
            .map_err(|e| core.command_failed("dead_letters", lane, e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL")
                .arg(format!("{}job:{}", core.opts.prefix, id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| core.command_failed("dead_letters", lane, e))?;
        let mut out = Vec::with_capacity(hashes.len());
        for hash in hashes {
            if let Some(status) =
                status_from_hash(hash).map_err(|e| core.unavailable("dead_letters", e))?
            {
                out.push(status);
            }
        }
        Ok(out)
    }

    async fn requeue_dead(&self, id: &JobId) -> Result<bool, QueueError> {
        let core = &self.core;
        let n: i64 = core
            .eval("requeue_dead", &core.scripts.requeue_dead, |c| {
                c.arg(id.as_str());
            })
            .await?;
        Ok(n == 1)
    }

    async fn close(&self) {
        self.core.closed.store(true, Ordering::SeqCst);
        self.core.close_signal.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("redis://user:s3cret@redis.internal:6379/0"),
            "redis://***@redis.internal:6379/0"
        );
        assert_eq!(redact_url("redis://:pw@h/1"), "redis://***@h/1");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn server_version_is_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(server_major(info), Some(7));
        assert_eq!(server_major("nothing"), None);
    }
}
