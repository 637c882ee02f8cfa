//! The cluster's queue: p0/p1/p2 job lists in one Redis shared by every node.
//!
//! Owns: the Redis layout under one key prefix (`palisade:` by default), the Lua scripts
//! that change it atomically, the leases of the jobs this process took (renewed together
//! by one task until `finish`), the takers it has parked in Redis, and the reaper that
//! puts a job whose lease lapsed back at the front of its priority, or into the
//! dead-letter list after `max_attempts`.
//!
//! Layout (`P` is the prefix; times are the Redis server's clock, in ms):
//! - `P ready:p0|p1|p2`: lists of job ids, taken from the left (oldest first); a job whose
//!   lease lapsed goes back on the left, a failed one that is retried on the right.
//! - `P job:<id>`: hash: `body` (the [`Job`] as JSON, readable in redis-cli), `prio`,
//!   `state`, `queued`, `started`, `finished`, `node`, `attempts` (times taken), `lease`
//!   (the taker's token; '' once done), `error` (the last one), `counts` (JSON), `dkey`
//!   (dedupe key).
//!   Finished jobs expire after the history TTL; dead letters do not.
//! - `P leases`: sorted set of running job ids, scored by lease expiry.
//! - `P dedupe`: hash dedupe key -> id of the recurring job that holds it.
//! - `P dead`: list of dead-lettered ids, newest first (capped; the oldest then expire).
//! - `P waiters`: takers parked because nothing was ready, `<lease ms>:<token>:<node>`,
//!   scored by when they are presumed gone; `P hand:<token>`: what is handed to one (a
//!   job already leased to it, or '' for "look again"), which it waits on with BLPOP.
//! - `P waits:<p>`, `P runs:<p>`: recent wait and run times (means over the last 100);
//!   `P totals`: done and failed counters per priority.
//!
//! One script call does a worker pool's whole turn (`finish_and_take`: acknowledge what
//! finished, give back prefetched jobs it will not start, take up to one job per free
//! slot and one ahead per slot while its jobs are short, and say whether p0 jobs are left
//! waiting), and one queues a batch (`enqueue_many`). A turn's bookkeeping is batched: one
//! ZREM and one ZADD on `P leases`, one LPOP per priority (Redis 6.2+), one push of the
//! recent wait and run times, whatever the number of jobs.
//! An idle taker parks: a job queued while nothing else is ready is leased to it inside the
//! enqueue script and handed over on its BLPOP, one hop instead of a wake-up and a take; a
//! job that becomes ready otherwise nudges one parked taker to look. A hand-off that never
//! reaches its taker costs latency, never the job: a taker that gives up waiting puts back
//! what is handed to it afterwards, and one that died is handed nothing once its park time
//! is over; a job handed to it before that lapses with its lease, like any job of a dead
//! node.
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
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use palisade_proto::{Job, JobId, JobPriority, JobState, JobStatus, Timestamp};

use super::{
    Batch, Fence, JobOutcome, JobQueue, PriorityStats, QueueError, QueueStats, Recurring, CANCELLED,
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
/// Jobs per enqueue script call, and at most this many taken per call: a script holds
/// Redis's one thread while it runs.
const ENQUEUE_CHUNK: usize = 500;
const TAKE_CHUNK: usize = 500;

/// What every script starts with: helpers and the layout's key names. `ARGV[1]` is the
/// key prefix. The constants are the caps the module header names. Every `redis.call` costs
/// about a microsecond of Redis's one thread, so the hot paths read a job's fields with one
/// HMGET, write them with one HSET, and write the recent wait and run times and the totals
/// once per call, not once per job.
macro_rules! lua_prelude {
    () => {
        r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local pfx = ARGV[1]
local PRIOS = {'p0', 'p1', 'p2'}
local RECENT = 100
local DEAD_CAP = 10000
local HAND_TTL = 60
local function int(n) return string.format('%d', n) end
local function job_key(id) return pfx .. 'job:' .. id end
local function ready_key(p) return pfx .. 'ready:' .. p end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function is_active(state) return state == 'queued' or state == 'running' end
local function ready_is_empty()
  for _, p in ipairs(PRIOS) do
    if redis.call('LLEN', ready_key(p)) > 0 then return false end
  end
  return true
end
-- Newest first; trimmed back to RECENT values once it holds twice that.
local function push_recent(key, values)
  if #values == 0 then return end
  if redis.call('LPUSH', key, unpack(values)) > 2 * RECENT then
    redis.call('LTRIM', key, 0, RECENT - 1)
  end
end
-- A parked taker: member '<lease ms>:<token>:<node>' of `waiters`, scored by the time after
-- which it is presumed gone. Removed when handed something, so each gets one hand-off.
local function next_waiter(now)
  local key = pfx .. 'waiters'
  local ws = redis.call('ZRANGEBYSCORE', key, int(now), '+inf', 'LIMIT', 0, 1)
  if #ws == 0 then return nil end
  redis.call('ZREM', key, ws[1])
  local lease, token, node = string.match(ws[1], '^(%d+):([^:]+):(.*)$')
  if not token then return nil end
  return {lease = tonumber(lease), token = token, node = node}
end
-- Hand a waiter a leased job ('<id length>:<id><body>'), or '' for "look again".
local function deliver(token, value)
  local key = pfx .. 'hand:' .. token
  redis.call('LPUSH', key, value)
  redis.call('EXPIRE', key, HAND_TTL)
end
-- Nudge one parked taker, if any, to look at the ready lists. True when one was nudged.
local function wake(now)
  local w = next_waiter(now)
  if not w then return false end
  deliver(w.token, '')
  return true
end
-- Lease queued job `id` (hash `h`, fields read) to `node`; its wait goes into `waits`, its
-- lease expiry and id into `leased` (the caller adds them to `P leases` in one ZADD).
local function lease_job(id, h, queued, attempts, node, token, lease, now, waits, leased)
  redis.call('HSET', h, 'state', 'running', 'node', node, 'started', int(now),
    'lease', token, 'attempts', int(attempts + 1))
  leased[#leased + 1] = int(now + lease)
  leased[#leased + 1] = id
  local q = tonumber(queued or now) or now
  waits[#waits + 1] = int(math.max(0, now - q))
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
        wake(now)
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
        wake(now)
      end
    end
  end
  -- takers that died parked
  redis.call('ZREMRANGEBYSCORE', pfx .. 'waiters', '-inf', int(now - 1))
  return n
end
-- Take up to `max` ready jobs, p0 first, oldest first, leased to `node` under `token`;
-- appends id, body of each to `out`. With `pop_many` (Redis 6.2+), ids are popped several
-- at a time (LPOP with a count). Returns how many it took, and whether p0 jobs are still
-- ready after it.
local function take_jobs(max, node, token, lease, now, out, pop_many)
  local n = 0
  local p0_left = nil
  local leased = {}
  for _, p in ipairs(PRIOS) do
    if n >= max then break end
    local key = ready_key(p)
    local waits = {}
    local emptied = false
    while n < max do
      local ids
      if pop_many then
        local want = max - n
        ids = redis.call('LPOP', key, want)
        if not ids then
          emptied = true
          break
        end
        if #ids < want then emptied = true end
      else
        local id = redis.call('LPOP', key)
        if not id then
          emptied = true
          break
        end
        ids = {id}
      end
      for _, id in ipairs(ids) do
        local h = job_key(id)
        local f = redis.call('HMGET', h, 'state', 'queued', 'attempts', 'body')
        -- an id whose job was acknowledged or expired meanwhile is skipped
        if f[1] == 'queued' then
          lease_job(id, h, f[2], tonumber(f[3] or 0) or 0, node, token, lease, now, waits, leased)
          out[#out + 1] = id
          out[#out + 1] = f[4] or ''
          n = n + 1
        end
      end
      if emptied then break end
    end
    if p == 'p0' and emptied then p0_left = false end
    push_recent(pfx .. 'waits:' .. p, waits)
  end
  if #leased > 0 then redis.call('ZADD', pfx .. 'leases', unpack(leased)) end
  -- Pass the wake-up on while work is left, so every parked taker gets a turn.
  if n > 0 and redis.call('ZCARD', pfx .. 'waiters') > 0 and not ready_is_empty() then
    wake(now)
  end
  if p0_left == nil then p0_left = redis.call('LLEN', ready_key('p0')) > 0 end
  return n, p0_left
end
-- Give back job `id`, taken under `token` and not started: to the head of its priority
-- (the caller pushes the ids in `back`, per priority, in the order given), as if never
-- taken: its lease dropped and the attempt not counted. 'returned', or 'finished' when the
-- job is no longer running under that lease (finished, or lapsed and taken again).
local function give_back(id, token, back)
  local h = job_key(id)
  local f = redis.call('HMGET', h, 'state', 'lease', 'attempts', 'prio')
  if not f[1] then return 'unknown' end
  if f[1] ~= 'running' or f[2] ~= token then return 'finished' end
  redis.call('HSET', h, 'state', 'queued', 'attempts', int(math.max(0, (tonumber(f[3]) or 1) - 1)))
  redis.call('HDEL', h, 'lease', 'started', 'node')
  local ids = back[f[4]]
  if not ids then
    ids = {}
    back[f[4]] = ids
  end
  ids[#ids + 1] = id
  return 'returned'
end
-- Record one outcome; `acc` gathers run times and done counts per priority. Returns
-- 'unknown', 'finished' (already), 'done', 'retried' or 'dead'. A retried job waits in its
-- priority's delayed set for the backoff, doubled per attempt (capped at 32 times), before
-- the reaper makes it ready again.
local function finish_job(id, outcome, err, counts, node, max_attempts, ttl, backoff, now, acc)
  local h = job_key(id)
  local f = redis.call('HMGET', h, 'state', 'prio', 'started', 'attempts', 'dkey', 'error')
  local st, prio, dkey = f[1], f[2], f[5]
  if not st then return 'unknown' end
  if not is_active(st) then return 'finished' end
  acc.unleased[#acc.unleased + 1] = id
  if f[3] then
    local runs = acc.runs[prio]
    runs[#runs + 1] = int(math.max(0, now - tonumber(f[3])))
  end
  local fields = {'counts', counts}
  if node ~= '' then
    fields[3] = 'node'
    fields[4] = node
  end
  if outcome == 'done' then
    -- acknowledged: never run again, even if a lapsed lease queued it meanwhile
    if st == 'queued' then redis.call('LREM', ready_key(prio), 0, id) end
    -- the lease is blanked in the same HSET (a command less than HDEL per job)
    redis.call('HSET', h, 'state', 'done', 'finished', int(now), 'lease', '', unpack(fields))
    if f[6] then redis.call('HDEL', h, 'error') end
    release_dedupe(dkey, id)
    acc.done[prio] = acc.done[prio] + 1
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
    local delay = backoff * math.min(32, 2 ^ math.max(0, attempts - 1))
    redis.call('HSET', h, 'state', 'queued', 'queued', int(now))
    redis.call('HDEL', h, 'started', 'lease')
    if delay > 0 then
      redis.call('ZADD', pfx .. 'delayed:' .. prio, int(now + delay), id)
    else
      redis.call('RPUSH', ready_key(prio), id)
      wake(now)
    end
  end
  return 'retried'
end
"#
    };
}

/// ARGV: prefix, fence key and value ('' for none), recurrence (ms, 0 for none), then per
/// job: id, priority, body, dedupe key ('' for none), queued at (ms).
/// Returns per job 1 when queued, 0 when refused (same dedupe key active, or the id is
/// active), -1 when a recurring job is not due, -2 when the fence does not hold (a deposed
/// leader). A job queued while a taker is parked and nothing else is ready is leased to
/// that taker and handed to it at once (p0 first still holds: nothing else is ready);
/// otherwise it goes on its ready list and parked takers are nudged.
const ENQUEUE: &str = concat!(
    lua_prelude!(),
    r#"
local fkey, fval, every = ARGV[2], ARGV[3], tonumber(ARGV[4]) or 0
local njobs = math.floor((#ARGV - 4) / 5)
local out = {}
-- a leader's write: refused unless its lease still holds (a deposed leader)
if fkey ~= '' and redis.call('GET', fkey) ~= fval then
  for k = 1, njobs do out[k] = -2 end
  return out
end
local now = now_ms()
local parked = redis.call('ZCARD', pfx .. 'waiters') > 0
local empty = nil
local pushed = 0
local function enqueue_one(id, prio, body, dkey, queued)
  local h = job_key(id)
  local st = redis.call('HGET', h, 'state')
  if is_active(st) then return 0 end
  if dkey ~= '' then
    local holder = redis.call('HGET', pfx .. 'dedupe', dkey)
    if holder and is_active(redis.call('HGET', job_key(holder), 'state')) then return 0 end
  end
  -- a recurring job is due `every` ms after any node last queued it
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
  if parked then
    if empty == nil then empty = ready_is_empty() end
    if empty then
      local w = next_waiter(now)
      if w then
        local waits, leased = {}, {}
        lease_job(id, h, queued, 0, w.node, w.token, w.lease, now, waits, leased)
        redis.call('ZADD', pfx .. 'leases', unpack(leased))
        push_recent(pfx .. 'waits:' .. prio, waits)
        deliver(w.token, string.len(id) .. ':' .. id .. body)
        return 1
      end
      parked = false
    end
  end
  redis.call('RPUSH', ready_key(prio), id)
  empty = false
  pushed = pushed + 1
  return 1
end
for k = 0, njobs - 1 do
  local b = 5 + k * 5
  out[k + 1] = enqueue_one(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4])
end
while pushed > 0 and parked do
  parked = wake(now)
  pushed = pushed - 1
end
return out
"#
);

/// ARGV: prefix, node, lease ms, lease token, reap first ('1'/'0'), max attempts, TTL s,
/// retry backoff ms, how many to take, park ms (0: do not park), how many finished, pop
/// several ids a call ('1', Redis 6.2+, else '0'), then per finished job: id,
/// 'done'|'failed'|'back', error (for 'back': the lease token it was taken under), counts
/// JSON, node ('' to keep), max attempts (0 dead-letters a failure at once).
/// Records the outcomes and gives back the 'back' jobs (taken, never started: to the head
/// of their priority, in the order given), then takes up to the number asked, leased to
/// `node` under the token. When it takes none and park ms is not 0, `node` parks as a
/// waiter under the same token for that long: an enqueue hands it a job on `P hand:<token>`.
/// Returns '1' when p0 jobs are ready (not taken) at the end, else '0'; then the outcome of
/// each finished job ('unknown', 'finished', 'done', 'retried', 'dead', 'returned'); then
/// id, body of each job taken.
const FINISH_TAKE: &str = concat!(
    lua_prelude!(),
    r#"
local node, lease, token = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local ttl, backoff = tonumber(ARGV[7]), tonumber(ARGV[8]) or 0
local max, park, nfin = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local pop_many = ARGV[12] == '1'
local now = now_ms()
local out = {'0'}
local acc = {runs = {p0 = {}, p1 = {}, p2 = {}}, done = {p0 = 0, p1 = 0, p2 = 0}, unleased = {}}
local back = {}
local returned = 0
for k = 0, nfin - 1 do
  local b = 13 + k * 6
  if ARGV[b + 1] == 'back' then
    out[k + 2] = give_back(ARGV[b], ARGV[b + 2], back)
    if out[k + 2] == 'returned' then
      acc.unleased[#acc.unleased + 1] = ARGV[b]
      returned = returned + 1
    end
  else
    out[k + 2] = finish_job(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4],
      tonumber(ARGV[b + 5]), ttl, backoff, now, acc)
  end
end
if #acc.unleased > 0 then redis.call('ZREM', pfx .. 'leases', unpack(acc.unleased)) end
for p, ids in pairs(back) do
  -- LPUSH puts the last one first: push in reverse to keep the order given
  local rev = {}
  for i = #ids, 1, -1 do rev[#rev + 1] = ids[i] end
  redis.call('LPUSH', ready_key(p), unpack(rev))
end
for _, p in ipairs(PRIOS) do
  push_recent(pfx .. 'runs:' .. p, acc.runs[p])
  if acc.done[p] > 0 then redis.call('HINCRBY', pfx .. 'totals', 'done:' .. p, acc.done[p]) end
end
if ARGV[5] == '1' then reap(now, tonumber(ARGV[6]), ttl) end
if max > 0 then
  local n, p0_left = take_jobs(max, node, token, lease, now, out, pop_many)
  if p0_left then out[1] = '1' end
  if n == 0 and park > 0 then
    redis.call('ZADD', pfx .. 'waiters', int(now + park), int(lease) .. ':' .. token .. ':' .. node)
  end
else
  if redis.call('LLEN', ready_key('p0')) > 0 then out[1] = '1' end
  -- given-back jobs are ready again: nudge parked takers, one each
  while returned > 0 and wake(now) do returned = returned - 1 end
end
return out
"#
);

/// ARGV: prefix, waiter member, token, 'return'|'requeue', what was handed ('' when not
/// known: then it is taken from `P hand:<token>`). Un-parks a taker. 'return' returns what
/// was handed to it (a leased job, '' for a nudge, nil for nothing); 'requeue', for a taker
/// that gave up waiting, puts a job handed to it back at the front of its priority, as if
/// never taken, and returns nil.
const UNPARK: &str = concat!(
    lua_prelude!(),
    r#"
redis.call('ZREM', pfx .. 'waiters', ARGV[2])
local token = ARGV[3]
local v = ARGV[5]
if not v or v == '' then v = redis.call('LPOP', pfx .. 'hand:' .. token) end
if not v then return false end
if ARGV[4] == 'return' then return v end
local len, rest = string.match(v, '^(%d+):(.*)$')
if not len then return false end
local id = string.sub(rest, 1, tonumber(len))
local h = job_key(id)
local f = redis.call('HMGET', h, 'state', 'lease', 'attempts', 'prio')
if f[1] == 'running' and f[2] == token then
  local now = now_ms()
  redis.call('ZREM', pfx .. 'leases', id)
  redis.call('HSET', h, 'state', 'queued', 'attempts', int(math.max(0, (tonumber(f[3]) or 1) - 1)))
  redis.call('HDEL', h, 'lease', 'started', 'node')
  redis.call('LPUSH', ready_key(f[4]), id)
  wake(now)
end
return false
"#
);

/// ARGV: prefix, lease ms, then id, lease token of each lease this process holds. Renews
/// each that is still this taker's; returns the ids of those that are not (lapsed and
/// reaped, or the job was finished).
const RENEW: &str = concat!(
    lua_prelude!(),
    r#"
local lease = tonumber(ARGV[2])
local now = now_ms()
local lost = {}
for k = 3, #ARGV - 1, 2 do
  local id, token = ARGV[k], ARGV[k + 1]
  if redis.call('HGET', job_key(id), 'lease') == token
    and redis.call('ZSCORE', pfx .. 'leases', id) then
    redis.call('ZADD', pfx .. 'leases', int(now + lease), id)
  else
    lost[#lost + 1] = id
  end
end
return lost
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
local now = now_ms()
redis.call('HSET', h, 'state', 'queued', 'queued', int(now), 'attempts', 0)
redis.call('HDEL', h, 'started', 'finished', 'lease')
redis.call('PERSIST', h)
redis.call('RPUSH', ready_key(f[2]), id)
wake(now)
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
    finish_take: LuaScript,
    unpark: LuaScript,
    renew: LuaScript,
    reap: LuaScript,
    stats: LuaScript,
    requeue_dead: LuaScript,
}

impl Scripts {
    async fn load(conn: &mut deadpool_redis::Connection) -> Result<Scripts, redis::RedisError> {
        Ok(Scripts {
            enqueue: load_script(conn, ENQUEUE).await?,
            finish_take: load_script(conn, FINISH_TAKE).await?,
            unpark: load_script(conn, UNPARK).await?,
            renew: load_script(conn, RENEW).await?,
            reap: load_script(conn, REAP).await?,
            stats: load_script(conn, STATS).await?,
            requeue_dead: load_script(conn, REQUEUE_DEAD).await?,
        })
    }
}

/// A lease this process holds on a job it took; one task renews them all.
struct HeldLease {
    node: String,
    token: Arc<str>,
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

/// What the queue's handle, its lease renewer and its reaper share.
struct Core {
    lanes: Lanes,
    /// Connections for BLPOP only, so a blocked wait never holds up other commands.
    waits: Pool,
    /// Wait connections back from a clean wait, kept checked out of `waits` so that the
    /// next wait skips the pool's PING check (a round trip).
    idle_waits: Mutex<Vec<deadpool_redis::Connection>>,
    scripts: Scripts,
    opts: RedisQueueOptions,
    /// The Redis URL with any password replaced, for messages.
    shown_url: String,
    /// Redis 6+ takes fractional BLPOP timeouts; Redis 5 only whole seconds.
    fractional_waits: bool,
    /// Redis 6.2+ pops several ids with one LPOP.
    pop_many: bool,
    closed: AtomicBool,
    close_signal: Notify,
    born: Instant,
    /// When the reaper last ran, in ms since `born` (plus one, 0 meaning never).
    last_reap: AtomicU64,
    leases: Mutex<HashMap<JobId, HeldLease>>,
    /// Lease tokens are this process's random prefix and a counter: unique, and cheap.
    token_prefix: String,
    tokens: AtomicU64,
}

/// The Redis [`JobQueue`], shared by every node of a cluster.
pub struct RedisQueue {
    core: Arc<Core>,
    reaper: AbortHandle,
    renewer: AbortHandle,
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

/// The major and minor version in an `INFO server` answer.
fn server_version(info: &str) -> Option<(u32, u32)> {
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?;
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
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

/// One outcome on its way to the finish script.
struct Ack {
    id: JobId,
    kind: &'static str,
    error: String,
    counts: String,
    /// The node that ran it ('' to keep the one recorded).
    node: String,
    /// 0 dead-letters a failure whatever its count (a cancelled job).
    max_attempts: u32,
}

/// `<id length>:<id><body>`, as the scripts hand a job to a parked taker, split.
fn split_handed(v: &str) -> Option<(&str, &str)> {
    let (len, rest) = v.split_once(':')?;
    let len: usize = len.parse().ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

impl RedisQueue {
    /// The enqueue script for `jobs`: per job 1 queued, 0 still queued or running, -1 not
    /// due yet (a recurring job queued by some node less than `every` ago), -2 `fence` no
    /// longer holds.
    async fn enqueue_with(
        &self,
        jobs: &[Job],
        fence: Option<&Fence>,
        every: Duration,
    ) -> Result<Vec<i64>, QueueError> {
        let core = &self.core;
        if core.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        let mut bodies = Vec::with_capacity(jobs.len());
        for job in jobs {
            bodies.push(serde_json::to_string(job).map_err(|e| core.unavailable("enqueue", e))?);
        }
        let codes: Vec<i64> = core
            .eval("enqueue", &core.scripts.enqueue, |c| {
                c.arg(fence.map_or("", |f| f.key.as_str()))
                    .arg(fence.map_or("", |f| f.value.as_str()))
                    .arg(millis(every));
                for (job, body) in jobs.iter().zip(&bodies) {
                    c.arg(job.id.as_str())
                        .arg(job.priority.as_str())
                        .arg(body)
                        .arg(job.dedupe_key().unwrap_or_default())
                        .arg(job.enqueued_at.timestamp_millis());
                }
            })
            .await?;
        if codes.len() != jobs.len() {
            return Err(core.unavailable("enqueue", "the enqueue script answered short"));
        }
        Ok(codes)
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
        // A blocking wait answers when its own timeout ends; `wait_for_hand` bounds it.
        let waits = pool(url, opts.wait_connections, None).map_err(|e| fail("bad url", &e))?;
        let mut conn = main.get().await.map_err(|e| fail("not reachable", &e))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| fail("no answer", &e))?;
        let (major, minor) = server_version(&info).unwrap_or((0, 0));
        let scripts = Scripts::load(&mut conn)
            .await
            .map_err(|e| fail("script not loaded", &e))?;
        drop(conn);
        let core = Arc::new(Core {
            lanes: Lanes::new(main, opts.pool_size),
            waits,
            idle_waits: Mutex::new(Vec::new()),
            scripts,
            opts,
            shown_url,
            fractional_waits: major >= 6,
            pop_many: (major, minor) >= (6, 2),
            closed: AtomicBool::new(false),
            close_signal: Notify::new(),
            born: Instant::now(),
            last_reap: AtomicU64::new(0),
            leases: Mutex::new(HashMap::new()),
            token_prefix: uuid::Uuid::new_v4().simple().to_string(),
            tokens: AtomicU64::new(0),
        });
        let reaper = tokio::spawn(reap_loop(core.clone())).abort_handle();
        let renewer = tokio::spawn(renew_loop(core.clone())).abort_handle();
        tracing::info!(redis = %core.shown_url, prefix = %core.opts.prefix, version = major, "redis queue connected");
        Ok(RedisQueue {
            core,
            reaper,
            renewer,
        })
    }

    /// The options this queue runs with.
    pub fn options(&self) -> &RedisQueueOptions {
        &self.core.opts
    }
}

impl Drop for RedisQueue {
    /// Stops the reaper and the lease renewals: the leases of unfinished jobs then lapse,
    /// as if this process had died.
    fn drop(&mut self) {
        self.reaper.abort();
        self.renewer.abort();
        self.core.lock_leases().clear();
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

/// Renews every lease this process holds, in one script call, every third of the lease
/// duration, for as long as the queue handle lives.
async fn renew_loop(core: Arc<Core>) {
    let every = core.opts.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let held: Vec<(JobId, Arc<str>)> = core
            .lock_leases()
            .iter()
            .map(|(id, lease)| (id.clone(), lease.token.clone()))
            .collect();
        if held.is_empty() {
            continue;
        }
        let lost: Result<Vec<String>, QueueError> = core
            .eval("renew", &core.scripts.renew, |c| {
                c.arg(millis(core.opts.lease));
                for (id, token) in &held {
                    c.arg(id.as_str()).arg(&**token);
                }
            })
            .await;
        match lost {
            Ok(lost) => {
                for id in lost {
                    let id = JobId(id);
                    let mut leases = core.lock_leases();
                    let token = held.iter().find(|(h, _)| *h == id).map(|(_, t)| t);
                    // a job finished meanwhile is no longer held: not a lost lease
                    if leases.get(&id).map(|l| &l.token) != token {
                        continue;
                    }
                    leases.remove(&id);
                    drop(leases);
                    crate::metrics::inc("palisade_queue_leases_lost_total", &[]);
                    tracing::warn!(job = %id, "job lease lost: it lapsed and may run again elsewhere");
                }
            }
            // Keep trying: the lease lasts three renewals, Redis may be back in time.
            Err(e) => tracing::warn!(jobs = held.len(), error = %e, "job leases not renewed"),
        }
    }
}

/// A connection from the wait pool. Unless marked clean, it is closed when dropped rather
/// than kept: a BLPOP cancelled mid-way would otherwise still block it.
struct WaitConn<'a> {
    core: &'a Core,
    conn: Option<deadpool_redis::Connection>,
    clean: bool,
}

impl Drop for WaitConn<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.clean {
            self.core.lock_idle_waits().push(conn);
        } else {
            drop(deadpool_redis::Connection::take(conn));
            // the others may be as dead as this one (a Redis restart): open fresh ones
            self.core.lock_idle_waits().clear();
        }
    }
}

/// A taker parked in Redis, waiting for a hand-off on `P hand:<token>`.
struct Parked {
    member: String,
    token: String,
}

type ParkedWaitFuture =
    Pin<Box<dyn Future<Output = (Arc<Core>, Parked, Result<Option<String>, QueueError>)> + Send>>;

/// A parked taker's wait (see [`Core::wait_parked`]); dropped before it ends, it hands the
/// rest of the wait to a task that puts back whatever is handed over.
struct ParkedWait {
    wait: Option<ParkedWaitFuture>,
}

impl Future for ParkedWait {
    type Output = Result<Option<String>, QueueError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(wait) = self.wait.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        match wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((_, _, handed)) => {
                self.wait = None;
                Poll::Ready(handed)
            }
        }
    }
}

impl Drop for ParkedWait {
    fn drop(&mut self) {
        let Some(wait) = self.wait.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime any more: a job handed over lapses with its lease
        };
        runtime.spawn(async move {
            let (core, parked, handed) = wait.await;
            // the taker gave up: put back a job handed to it, and un-park it
            let handed = match handed {
                Ok(Some(v)) => v,
                _ => String::new(),
            };
            if let Err(e) = core.unpark(&parked, "requeue", &handed).await {
                tracing::warn!(error = %e, "a job handed to a taker that gave up waits for its lease to lapse");
            }
        });
    }
}

impl Core {
    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, HeldLease>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_idle_waits(&self) -> std::sync::MutexGuard<'_, Vec<deadpool_redis::Connection>> {
        self.idle_waits.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_token(&self) -> String {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:x}", self.token_prefix)
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

    /// An outcome for the finish script. Stops renewing the job's lease first: if the
    /// outcome does not reach Redis, the lease lapses and the job runs again, rather than
    /// being held for ever by a lease nobody finishes.
    fn ack(&self, id: JobId, outcome: &JobOutcome) -> Result<Ack, QueueError> {
        let held = self.lock_leases().remove(&id);
        if let JobOutcome::GivenBack = outcome {
            // only a job still leased under the token it was taken with goes back
            let token = held
                .map(|lease| lease.token.to_string())
                .unwrap_or_default();
            return Ok(Ack {
                id,
                kind: "back",
                error: token,
                counts: String::new(),
                node: String::new(),
                max_attempts: 0,
            });
        }
        let node = held.map(|lease| lease.node).unwrap_or_default();
        let no_counts = BTreeMap::new();
        let (kind, error, counts, max_attempts) = match outcome {
            JobOutcome::GivenBack => ("back", "", &no_counts, 0),
            JobOutcome::Done { counts } => ("done", "", counts, self.opts.max_attempts),
            JobOutcome::Failed { error, counts } => {
                ("failed", error.as_str(), counts, self.opts.max_attempts)
            }
            // a cancelled job is not retried: straight to the dead letters
            JobOutcome::Cancelled => ("failed", CANCELLED, &no_counts, 0),
        };
        let counts = serde_json::to_string(counts).map_err(|e| self.unavailable("finish", e))?;
        Ok(Ack {
            id,
            kind,
            error: error.to_string(),
            counts,
            node,
            max_attempts,
        })
    }

    /// One run of the finish-and-take script: records `acks`, then takes up to `max` jobs
    /// for `node` under `token`, parking for `park` when there are none.
    async fn finish_take_script(
        &self,
        op: &'static str,
        acks: &[Ack],
        node: &str,
        max: usize,
        token: &str,
        park: Option<Duration>,
    ) -> Result<Vec<String>, QueueError> {
        let reap = max > 0 && self.reap_due();
        let reply: Vec<String> = self
            .eval(op, &self.scripts.finish_take, |c| {
                c.arg(node)
                    .arg(millis(self.opts.lease))
                    .arg(token)
                    .arg(if reap { "1" } else { "0" })
                    .arg(self.opts.max_attempts)
                    .arg(self.ttl_secs())
                    .arg(millis(self.opts.retry_backoff))
                    .arg(max)
                    .arg(park.map_or(0, millis))
                    .arg(acks.len())
                    .arg(if self.pop_many { "1" } else { "0" });
                for a in acks {
                    c.arg(a.id.as_str())
                        .arg(a.kind)
                        .arg(&a.error)
                        .arg(&a.counts)
                        .arg(&a.node)
                        .arg(a.max_attempts);
                }
            })
            .await?;
        let whole_pairs = reply
            .get(1 + acks.len()..)
            .is_some_and(|taken| taken.chunks_exact(2).remainder().is_empty());
        if !whole_pairs {
            return Err(self.unavailable(op, "the finish-and-take script answered short"));
        }
        Ok(reply)
    }

    /// A job taken under `token`: held (its lease renewed) and returned; none when its
    /// body is not a job this build can read, which is dead-lettered instead.
    async fn accept(
        &self,
        id: &str,
        body: &str,
        token: &Arc<str>,
        node: &str,
    ) -> Result<Option<Job>, QueueError> {
        let id = JobId(id.to_string());
        match serde_json::from_str::<Job>(body) {
            Ok(job) => {
                let lease = HeldLease {
                    node: node.to_string(),
                    token: token.clone(),
                };
                self.lock_leases().insert(id, lease);
                Ok(Some(job))
            }
            Err(e) => {
                let error = format!("job body is not readable: {e}");
                tracing::warn!(job = %id, error, "unreadable job dead-lettered");
                crate::metrics::inc("palisade_queue_errors_total", &[("op", "take")]);
                let ack = Ack {
                    id,
                    kind: "failed",
                    error,
                    counts: "{}".to_string(),
                    node: node.to_string(),
                    max_attempts: 0,
                };
                self.finish_take_script("finish", &[ack], node, 0, "", None)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Record `finished`, then take up to `max` jobs for `node`; when none is ready, park
    /// until one is handed over, a nudge says to look again, or `wait` is over.
    async fn finish_and_take(
        self: &Arc<Self>,
        finished: Vec<(JobId, JobOutcome)>,
        node: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Batch, QueueError> {
        let deadline = Instant::now() + wait;
        let mut acks = Vec::with_capacity(finished.len());
        for (id, outcome) in finished {
            acks.push(self.ack(id, &outcome)?);
        }
        let op = if max == 0 { "finish" } else { "take" };
        let mut batch = Batch::default();
        loop {
            // Register for the close signal before looking, so a close in between is seen.
            let closed = self.close_signal.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            let max = if self.closed.load(Ordering::SeqCst) {
                0
            } else {
                max
            };
            if max == 0 && acks.is_empty() {
                return Ok(batch);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let park = (max > 0 && left >= MIN_WAIT).then(|| self.park_time(left));
            let token = self.next_token();
            let reply = self
                .finish_take_script(op, &acks, node, max, &token, park)
                .await?;
            batch.p0_waiting = reply.first().is_some_and(|flag| flag == "1");
            for (ack, outcome) in acks.iter().zip(&reply[1..]) {
                match outcome.as_str() {
                    "unknown" => batch.unknown.push(ack.id.clone()),
                    "finished" if ack.kind == "back" => {
                        tracing::debug!(job = %ack.id, "job not given back: its lease lapsed or it was finished")
                    }
                    "finished" => tracing::debug!(job = %ack.id, "job was already finished"),
                    "dead" => {
                        tracing::warn!(job = %ack.id, "job dead-lettered after its last attempt")
                    }
                    _ => {}
                }
            }
            let taken = &reply[1 + acks.len()..];
            acks.clear();
            let token: Arc<str> = token.into();
            for pair in taken.chunks_exact(2) {
                if let Some(job) = self.accept(&pair[0], &pair[1], &token, node).await? {
                    batch.jobs.push(job);
                }
            }
            if !batch.jobs.is_empty() || !taken.is_empty() {
                // taken, or only unreadable ones (dead-lettered): take again at once
                if batch.jobs.is_empty() {
                    continue;
                }
                return Ok(batch);
            }
            let Some(park) = park else {
                return Ok(batch);
            };
            let parked = Parked {
                member: format!("{}:{token}:{node}", millis(self.opts.lease)),
                token: token.to_string(),
            };
            let handed = tokio::select! {
                handed = self.wait_parked(parked, left, park) => handed?,
                // a job handed over meanwhile is put back by the wait's own task
                _ = &mut closed => return Ok(batch),
            };
            // '' is a nudge: something is ready, look again
            if let Some((id, body)) = handed.as_deref().and_then(split_handed) {
                if let Some(job) = self.accept(id, body, &token, node).await? {
                    batch.jobs.push(job);
                    return Ok(batch);
                }
            }
        }
    }

    /// How long a taker that waits `left` stays parked: until its BLPOP has surely ended
    /// (Redis 5 only waits whole seconds), and a second more; after that a taker that
    /// never un-parked is presumed gone and handed nothing.
    fn park_time(&self, left: Duration) -> Duration {
        let blpop = if self.fractional_waits {
            left
        } else {
            Duration::from_secs_f64(left.as_secs_f64().ceil().max(1.0))
        };
        blpop + Duration::from_secs(1)
    }

    /// Wait up to `left` for what is handed to the parked taker: a leased job, '' (a
    /// nudge), or none. A taker that gives up (a cancelled `take`) loses nothing: the wait
    /// then runs on in a task of its own, which puts back at the front of its priority
    /// whatever reaches the taker afterwards.
    fn wait_parked(self: &Arc<Self>, parked: Parked, left: Duration, park: Duration) -> ParkedWait {
        let core = self.clone();
        let wait = async move {
            let handed = match core.wait_for_hand(&parked.token, left, park).await {
                // the wait ended empty: un-park, taking what was handed in between
                Ok(None) => core.unpark(&parked, "return", "").await,
                other => other,
            };
            (core, parked, handed)
        };
        ParkedWait {
            wait: Some(Box::pin(wait)),
        }
    }

    async fn unpark(
        &self,
        parked: &Parked,
        mode: &str,
        handed: &str,
    ) -> Result<Option<String>, QueueError> {
        self.eval("take", &self.scripts.unpark, |c| {
            c.arg(&parked.member)
                .arg(&parked.token)
                .arg(mode)
                .arg(handed);
        })
        .await
    }

    /// Block up to `left` on the parked taker's hand-off list: what was handed, or none.
    async fn wait_for_hand(
        &self,
        token: &str,
        left: Duration,
        park: Duration,
    ) -> Result<Option<String>, QueueError> {
        let idle = self.lock_idle_waits().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => match tokio::time::timeout(left, self.waits.get()).await {
                Err(_) => return Ok(None), // every wait connection busy for all of `left`
                Ok(conn) => conn.map_err(|e| self.unavailable("take", e))?,
            },
        };
        let mut conn = WaitConn {
            core: self,
            conn: Some(conn),
            clean: false,
        };
        let timeout = if self.fractional_waits {
            format!("{:.3}", left.as_secs_f64().max(0.001))
        } else {
            left.as_secs_f64().ceil().max(1.0).to_string()
        };
        let key = format!("{}hand:{token}", self.opts.prefix);
        let Some(c) = conn.conn.as_mut() else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(&key).arg(&timeout);
        let blpop = cmd.query_async::<Option<(String, String)>>(c);
        match tokio::time::timeout(park + WAIT_SLACK, blpop).await {
            Ok(Ok(got)) => {
                conn.clean = true;
                Ok(got.map(|(_, v)| v))
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
        let codes = self
            .enqueue_with(std::slice::from_ref(&job), None, Duration::ZERO)
            .await?;
        Ok(codes.first() == Some(&1))
    }

    async fn enqueue_recurring(
        &self,
        job: Job,
        every: Duration,
        fence: Option<&Fence>,
    ) -> Result<Recurring, QueueError> {
        let codes = self
            .enqueue_with(std::slice::from_ref(&job), fence, every)
            .await?;
        Ok(match codes.first() {
            Some(1) => Recurring::Queued,
            Some(0) => Recurring::Busy,
            Some(-1) => Recurring::NotDue,
            _ => Recurring::Deposed,
        })
    }

    async fn take(&self, node: &str, wait: Duration) -> Result<Option<Job>, QueueError> {
        let batch = self.core.finish_and_take(Vec::new(), node, 1, wait).await?;
        Ok(batch.jobs.into_iter().next())
    }

    async fn finish(&self, id: &JobId, outcome: JobOutcome) -> Result<(), QueueError> {
        let batch = self
            .core
            .finish_and_take(vec![(id.clone(), outcome)], "", 0, Duration::ZERO)
            .await?;
        if batch.unknown.is_empty() {
            Ok(())
        } else {
            Err(QueueError::UnknownJob(id.clone()))
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

    async fn enqueue_many(&self, jobs: Vec<Job>) -> Result<Vec<bool>, QueueError> {
        let mut queued = Vec::with_capacity(jobs.len());
        // bounded script calls: Redis serves nobody else while one runs
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            let codes = self.enqueue_with(chunk, None, Duration::ZERO).await?;
            queued.extend(codes.into_iter().map(|c| c == 1));
        }
        Ok(queued)
    }

    async fn take_many(
        &self,
        node: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let batch = self
            .core
            .finish_and_take(Vec::new(), node, max.min(TAKE_CHUNK), wait)
            .await?;
        Ok(batch.jobs)
    }

    async fn finish_and_take(
        &self,
        finished: Vec<(JobId, JobOutcome)>,
        node: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Batch, QueueError> {
        self.core
            .finish_and_take(finished, node, max.min(TAKE_CHUNK), wait)
            .await
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
        assert_eq!(server_version(info), Some((7, 0)));
        assert_eq!(server_version("redis_version:6.2.14\r\n"), Some((6, 2)));
        assert_eq!(server_version("nothing"), None);
    }
}
