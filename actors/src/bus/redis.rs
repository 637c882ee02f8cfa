//! The clustered bus: cluster events over Redis pub/sub, in signed envelopes.
//!
//! Owns: [`RedisBus`]. `publish` seals each event ([`Envelope::seal`], keyed by the cluster
//! secret, stamped with this node's id, incarnation, next seq and the time) and PUBLISHes
//! it on one channel through a connection pool. A background task holds a dedicated
//! SUBSCRIBE connection, opens every message, drops (and counts) the forged, malformed,
//! stale and replayed ones, and forwards the rest to the local broadcast, so that every
//! subscriber on every node, this one included, sees each event once. When Redis goes
//! away the task logs one line, resubscribes with capped backoff and carries on.
//!
//! Must never: deliver a message that failed a check, panic or stop on anything Redis or a
//! peer sends, log the secret or a URL's password, keep unbounded state per sender, or
//! outlive its `RedisBus` (dropping it ends the task).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::aio::{PubSubSink, PubSubStream};
use deadpool_redis::{redis, Pool, PoolConfig, Runtime, Timeouts};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use palisade_proto::{ClusterEvent, Envelope, WireError};

use super::{Bus, BusError};
use crate::store::mysql::redact_url;

/// Shortest cluster secret a bus accepts.
pub const MIN_SECRET_BYTES: usize = 16;
/// How long one attempt to connect and SUBSCRIBE may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one publish (a pooled connection, then PUBLISH) may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait before resubscribing; doubles per failed attempt up to the cap.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_CAP: Duration = Duration::from_secs(2);
/// A PING on the subscription this often finds a connection that died silently.
const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// While Redis stays away, say so again after this many failed attempts (~1 min).
const STILL_DOWN_EVERY: u32 = 30;
/// At most one warning per drop reason this often; the rest are counted in the next one.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Senders (node, incarnation) remembered for replay checks, at most.
const MAX_SENDERS: usize = 4096;
/// A sender unheard of this long is forgotten (at least; see [`Gate::new`]).
const SENDER_IDLE_MIN: Duration = Duration::from_secs(600);
/// Idle senders are looked for this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Sequence numbers this far below the highest seen of a sender are still taken once
/// (publishes share a pool of connections, so two of them may reach Redis out of order).
const REPLAY_WINDOW: u64 = 128;

/// How a [`RedisBus`] joins the cluster.
#[derive(Clone)]
pub struct RedisBusOptions {
    /// The pub/sub channel every node of the cluster uses.
    pub channel: String,
    /// This node's id, sent in every envelope.
    pub node: String,
    /// The cluster secret that keys every envelope's HMAC; the same on every node.
    pub secret: Vec<u8>,
    /// How far a message's send time may lie from this node's clock, either way.
    pub max_skew: Duration,
    /// Events buffered per local subscriber before a slow one loses the oldest.
    pub capacity: usize,
}

impl RedisBusOptions {
    pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(60);
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// Options with the default skew and capacity.
    pub fn new(
        channel: impl Into<String>,
        node: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Self {
        RedisBusOptions {
            channel: channel.into(),
            node: node.into(),
            secret: secret.into(),
            max_skew: Self::DEFAULT_MAX_SKEW,
            capacity: Self::DEFAULT_CAPACITY,
        }
    }
}

impl fmt::Debug for RedisBusOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBusOptions")
            .field("channel", &self.channel)
            .field("node", &self.node)
            .field("secret", &"***")
            .field("max_skew", &self.max_skew)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// Counters of one bus, for tests and status pages (the process-wide ones are in
/// [`crate::metrics`]).
#[derive(Default)]
struct BusStats {
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    reconnects: AtomicU64,
}

impl BusStats {
    fn count_drop(&self, reason: &'static str) {
        let mut dropped = self
            .dropped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *dropped.entry(reason).or_insert(0) += 1;
    }
}

/// Cluster events over Redis pub/sub. Dropping it ends its subscription task.
pub struct RedisBus {
    pool: Pool,
    channel: String,
    node: String,
    incarnation: u64,
    next_seq: AtomicU64,
    secret: Arc<[u8]>,
    /// The url with its password redacted, for messages.
    shown_url: String,
    tx: broadcast::Sender<ClusterEvent>,
    stats: Arc<BusStats>,
    task: Option<JoinHandle<()>>,
}

impl RedisBus {
    /// Subscribe to `options.channel` at `url` and start the subscription task. Returns
    /// once the subscription is live, so that this node sees its own first publish.
    pub async fn connect(url: &str, options: RedisBusOptions) -> Result<RedisBus, BusError> {
        let shown_url = redact_url(url);
        if options.channel.is_empty() {
            return Err(BusError::Config("bus channel is empty".into()));
        }
        if options.node.is_empty() {
            return Err(BusError::Config("bus node id is empty".into()));
        }
        if options.secret.len() < MIN_SECRET_BYTES {
            return Err(BusError::Config(format!(
                "cluster secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        let client = redis::Client::open(url)
            .map_err(|e| BusError::Config(format!("invalid redis url {shown_url}: {e}")))?;
        let pool_config = PoolConfig {
            timeouts: Timeouts {
                wait: Some(Duration::from_secs(2)),
                create: Some(Duration::from_secs(2)),
                recycle: Some(Duration::from_secs(2)),
            },
            ..PoolConfig::default()
        };
        let pool = deadpool_redis::Config::from_url(url)
            .builder()
            .map_err(|e| BusError::Config(format!("invalid redis url {shown_url}: {e}")))?
            .config(pool_config)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| BusError::Config(format!("redis pool for {shown_url}: {e}")))?;
        let conn = subscribe(&client, &options.channel).await.map_err(|e| {
            crate::metrics::inc("palisade_bus_errors_total", &[("op", "subscribe")]);
            BusError::Unavailable(format!("redis at {shown_url}: {e}"))
        })?;

        let secret: Arc<[u8]> = options.secret.into();
        let (tx, _) = broadcast::channel(options.capacity.max(1));
        let stats = Arc::new(BusStats::default());
        // From the OS's random source: two starts of one node must not share it.
        let incarnation = uuid::Uuid::new_v4().as_u64_pair().0;
        let subscriber = Subscriber {
            client,
            channel: options.channel.clone(),
            shown_url: shown_url.clone(),
            gate: Gate::new(secret.clone(), options.max_skew, Instant::now()),
            tx: tx.clone(),
            stats: stats.clone(),
            drop_log: DropLog::default(),
        };
        let task = tokio::spawn(subscriber.run(conn));
        info!(
            url = %shown_url,
            channel = %options.channel,
            node = %options.node,
            incarnation,
            "bus subscribed"
        );
        Ok(RedisBus {
            pool,
            channel: options.channel,
            node: options.node,
            incarnation,
            next_seq: AtomicU64::new(0),
            secret,
            shown_url,
            tx,
            stats,
            task: Some(task),
        })
    }

    /// This process's incarnation: random per start, sent in every envelope.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Messages this bus dropped, by reason (`bad_signature`, `truncated`, `oversized`,
    /// `unknown_version`, `undecodable`, `trailing`, `replayed`, `stale`).
    pub fn dropped(&self) -> BTreeMap<&'static str, u64> {
        self.stats
            .dropped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Times the subscription was lost and made again.
    pub fn reconnects(&self) -> u64 {
        self.stats.reconnects.load(Ordering::Relaxed)
    }

    /// End the subscription task and wait for it to be gone (dropping does the same
    /// without waiting).
    pub async fn close(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.pool.close();
    }

    async fn send(&self, bytes: Vec<u8>) -> Result<(), String> {
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(bytes)
            .query_async(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.pool.close();
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, event: ClusterEvent) -> Result<(), BusError> {
        let label = event.label();
        let envelope = Envelope {
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            sent_at_ms: now_ms(),
            event,
        };
        let bytes = envelope.seal(&self.secret).map_err(|e| {
            crate::metrics::inc("palisade_bus_errors_total", &[("op", "publish")]);
            BusError::Encode(e.to_string())
        })?;
        let sent = match timeout(PUBLISH_TIMEOUT, self.send(bytes)).await {
            Ok(sent) => sent,
            Err(_) => Err("timed out".to_string()),
        };
        match sent {
            Ok(()) => {
                crate::metrics::inc("palisade_bus_events_total", &[("event", label)]);
                Ok(())
            }
            Err(e) => {
                crate::metrics::inc("palisade_bus_errors_total", &[("op", "publish")]);
                debug!(url = %self.shown_url, event = label, error = %e, "bus publish failed");
                Err(BusError::Unavailable(format!(
                    "publish to redis at {}: {e}",
                    self.shown_url
                )))
            }
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.tx.subscribe()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One live subscription: the half that sends commands (PING) and the message stream.
type Subscription = (PubSubSink, PubSubStream);

/// Open a pub/sub connection and SUBSCRIBE to `channel`, confirmed by the server.
async fn subscribe(client: &redis::Client, channel: &str) -> Result<Subscription, String> {
    let attempt = async {
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        sink.subscribe(channel).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    match timeout(SUBSCRIBE_TIMEOUT, attempt).await {
        Ok(Ok(subscription)) => Ok(subscription),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// The background task: receives, checks, forwards; resubscribes when the connection is
/// lost.
struct Subscriber {
    client: redis::Client,
    channel: String,
    shown_url: String,
    gate: Gate,
    tx: broadcast::Sender<ClusterEvent>,
    stats: Arc<BusStats>,
    drop_log: DropLog,
}

impl Subscriber {
    async fn run(mut self, mut subscription: Subscription) {
        loop {
            let why = self.receive(&mut subscription).await;
            warn!(
                url = %self.shown_url,
                channel = %self.channel,
                error = %why,
                "bus subscription lost, resubscribing"
            );
            let down_since = Instant::now();
            subscription = self.resubscribe().await;
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            crate::metrics::inc("palisade_bus_reconnects_total", &[]);
            info!(
                url = %self.shown_url,
                channel = %self.channel,
                down_ms = u64::try_from(down_since.elapsed().as_millis()).unwrap_or(u64::MAX),
                "bus resubscribed"
            );
        }
    }

    /// Forward messages until the connection is lost; returns why it was.
    async fn receive(&mut self, subscription: &mut Subscription) -> String {
        let (sink, stream) = subscription;
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.deliver(msg.get_payload_bytes()),
                    None => return "connection closed".to_string(),
                },
                _ = ping.tick() => {
                    match timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return format!("ping failed: {e}"),
                        Err(_) => return "ping timed out".to_string(),
                    }
                }
            }
        }
    }

    /// Try again, with capped and jittered backoff, until a subscription is made.
    async fn resubscribe(&self) -> Subscription {
        let mut delay = RECONNECT_FIRST;
        let mut attempts: u32 = 0;
        let mut since_warned: u32 = 0;
        loop {
            tokio::time::sleep(delay.mul_f64(0.8 + 0.4 * fastrand::f64())).await;
            attempts = attempts.saturating_add(1);
            since_warned += 1;
            match subscribe(&self.client, &self.channel).await {
                Ok(subscription) => return subscription,
                Err(e) if since_warned >= STILL_DOWN_EVERY => {
                    since_warned = 0;
                    crate::metrics::inc("palisade_bus_errors_total", &[("op", "subscribe")]);
                    let url = &self.shown_url;
                    warn!(url = %url, attempts, error = %e, "bus still unavailable");
                }
                Err(e) => {
                    crate::metrics::inc("palisade_bus_errors_total", &[("op", "subscribe")]);
                    let url = &self.shown_url;
                    debug!(url = %url, attempts, error = %e, "bus resubscribe failed");
                }
            }
            delay = (delay * 2).min(RECONNECT_CAP);
        }
    }

    fn deliver(&mut self, payload: &[u8]) {
        let now = Instant::now();
        match self.gate.admit(payload, now_ms(), now) {
            Ok(envelope) => {
                // No local subscriber is not an error: events are notices.
                let _ = self.tx.send(envelope.event);
            }
            Err(refusal) => {
                let reason = refusal.reason();
                crate::metrics::inc("palisade_bus_dropped_total", &[("reason", reason)]);
                self.stats.count_drop(reason);
                self.drop_log.note(&refusal, payload.len(), now);
            }
        }
    }
}

/// Why a message off the channel was not delivered.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// Refused by [`Envelope::open`]: length, version, signature or encoding.
    Wire(WireError),
    /// Sent further from this node's clock than the allowed skew (either way).
    Stale {
        node: String,
        incarnation: u64,
        seq: u64,
        age_ms: i64,
    },
    /// A sequence number of this sender already delivered, or too far behind.
    Replayed {
        node: String,
        incarnation: u64,
        seq: u64,
    },
}

impl Refusal {
    /// The `reason` label of `palisade_bus_dropped_total`.
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Wire(e) => e.label(),
            Refusal::Stale { .. } => "stale",
            Refusal::Replayed { .. } => "replayed",
        }
    }
}

/// The receiving checks: [`Envelope::open`] (signature and form), freshness, replays.
struct Gate {
    key: Arc<[u8]>,
    max_skew_ms: u64,
    /// How long an unheard sender is remembered: long enough that anything it sent
    /// before is stale by the time it is forgotten, so forgetting opens no replay.
    idle_ttl: Duration,
    senders: HashMap<(String, u64), ReplayWindow>,
    next_prune: Instant,
}

impl Gate {
    fn new(key: Arc<[u8]>, max_skew: Duration, now: Instant) -> Self {
        Gate {
            key,
            max_skew_ms: u64::try_from(max_skew.as_millis()).unwrap_or(u64::MAX),
            idle_ttl: SENDER_IDLE_MIN.max(max_skew * 2 + Duration::from_secs(60)),
            senders: HashMap::new(),
            next_prune: now + PRUNE_EVERY,
        }
    }

    fn admit(&mut self, payload: &[u8], now_ms: i64, now: Instant) -> Result<Envelope, Refusal> {
        let envelope = Envelope::open(payload, &self.key).map_err(Refusal::Wire)?;
        let age_ms = now_ms.saturating_sub(envelope.sent_at_ms);
        if age_ms.unsigned_abs() > self.max_skew_ms {
            return Err(Refusal::Stale {
                node: envelope.node,
                incarnation: envelope.incarnation,
                seq: envelope.seq,
                age_ms,
            });
        }
        self.prune(now);
        let sender = (envelope.node.clone(), envelope.incarnation);
        let fresh = match self.senders.get_mut(&sender) {
            Some(window) => window.admit(envelope.seq, now),
            None => {
                self.senders
                    .insert(sender, ReplayWindow::new(envelope.seq, now));
                true
            }
        };
        if !fresh {
            return Err(Refusal::Replayed {
                node: envelope.node,
                incarnation: envelope.incarnation,
                seq: envelope.seq,
            });
        }
        Ok(envelope)
    }

    /// Forget idle senders now and then, and the least recently heard ones when there
    /// are too many (only authenticated senders get in, so that takes a large cluster).
    fn prune(&mut self, now: Instant) {
        if now < self.next_prune && self.senders.len() < MAX_SENDERS {
            return;
        }
        self.next_prune = now + PRUNE_EVERY;
        let ttl = self.idle_ttl;
        self.senders
            .retain(|_, w| now.saturating_duration_since(w.last_seen) < ttl);
        if self.senders.len() >= MAX_SENDERS {
            let mut by_age: Vec<(Instant, (String, u64))> = self
                .senders
                .iter()
                .map(|(k, w)| (w.last_seen, k.clone()))
                .collect();
            by_age.sort_unstable_by_key(|(seen, _)| *seen);
            // Down to 7/8 so that the next few new senders do not sort again.
            let excess = self.senders.len() - MAX_SENDERS * 7 / 8;
            for (_, key) in by_age.into_iter().take(excess) {
                self.senders.remove(&key);
            }
        }
    }
}

/// The sequence numbers seen from one (node, incarnation): the highest, and which of the
/// [`REPLAY_WINDOW`] below it.
struct ReplayWindow {
    highest: u64,
    /// Bit `i` set: `highest - i` was delivered.
    seen: u128,
    last_seen: Instant,
}

impl ReplayWindow {
    fn new(seq: u64, now: Instant) -> Self {
        ReplayWindow {
            highest: seq,
            seen: 1,
            last_seen: now,
        }
    }

    /// Whether `seq` is new; marks it seen when it is.
    fn admit(&mut self, seq: u64, now: Instant) -> bool {
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
        } else {
            let back = self.highest - seq;
            if back >= REPLAY_WINDOW {
                return false;
            }
            let bit = 1u128 << back;
            if self.seen & bit != 0 {
                return false;
            }
            self.seen |= bit;
        }
        self.last_seen = now;
        true
    }
}

/// Rate-limits the warning per drop reason.
#[derive(Default)]
struct DropLog {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl DropLog {
    fn note(&mut self, refusal: &Refusal, bytes: usize, now: Instant) {
        let reason = refusal.reason();
        let suppressed = match self.last.get_mut(reason) {
            Some((at, suppressed)) if now.saturating_duration_since(*at) < DROP_LOG_EVERY => {
                *suppressed += 1;
                return;
            }
            Some((at, suppressed)) => {
                *at = now;
                std::mem::take(suppressed)
            }
            None => {
                self.last.insert(reason, (now, 0));
                0
            }
        };
        match refusal {
            Refusal::Wire(e) => {
                warn!(reason, bytes, suppressed, error = %e, "bus message dropped");
            }
            Refusal::Stale {
                node,
                incarnation,
                seq,
                age_ms,
            } => warn!(
                reason,
                node = %node,
                incarnation,
                seq,
                age_ms,
                suppressed,
                "bus message dropped"
            ),
            Refusal::Replayed {
                node,
                incarnation,
                seq,
            } => warn!(
                reason,
                node = %node,
                incarnation,
                seq,
                suppressed,
                "bus message dropped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use palisade_proto::{JobId, JobPriority, MAC_BYTES, MAX_ENVELOPE_BYTES, WIRE_VERSION};
    use sha2::Sha256;

    const SECRET: &[u8] = b"the test cluster's shared secret";
    const WAIT: Duration = Duration::from_secs(5);

    fn redis_url() -> String {
        std::env::var("PALISADE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
    }

    /// A channel of one test, so tests can run side by side.
    fn channel(label: &str) -> String {
        format!(
            "palisade:test:bus:{label}:{}",
            uuid::Uuid::new_v4().simple()
        )
    }

    async fn bus_at(url: &str, channel: &str, node: &str, secret: &[u8]) -> RedisBus {
        RedisBus::connect(url, RedisBusOptions::new(channel, node, secret))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the Redis bus tests need Redis at {} (PALISADE_TEST_REDIS_URL): {e}",
                    redact_url(url)
                )
            })
    }

    async fn bus(channel: &str, node: &str, secret: &[u8]) -> RedisBus {
        bus_at(&redis_url(), channel, node, secret).await
    }

    fn event(n: u32) -> ClusterEvent {
        ClusterEvent::JobEnqueued {
            job: JobId(format!("job-{n}")),
            priority: JobPriority::P0,
        }
    }

    async fn next(rx: &mut broadcast::Receiver<ClusterEvent>) -> ClusterEvent {
        match timeout(WAIT, rx.recv()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => panic!("subscriber closed or lagged: {e}"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }

    async fn raw_connection() -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("raw redis connection")
    }

    async fn subscribers(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(conn)
            .await
            .expect("pubsub numsub");
        n
    }

    async fn raw_publish(
        conn: &mut redis::aio::MultiplexedConnection,
        channel: &str,
        bytes: &[u8],
    ) {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(bytes)
            .query_async(conn)
            .await
            .expect("raw publish");
    }

    /// Bytes in the sealed layout, signed with `key`, whatever `body` holds.
    fn sign_raw(version: u16, body: &[u8], key: &[u8]) -> Vec<u8> {
        let mut out = version.to_be_bytes().to_vec();
        out.extend_from_slice(body);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac key");
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    fn envelope(node: &str, seq: u64, sent_at_ms: i64, event: ClusterEvent) -> Envelope {
        Envelope {
            node: node.into(),
            incarnation: 42,
            seq,
            sent_at_ms,
            event,
        }
    }

    #[tokio::test]
    async fn an_event_reaches_every_node_the_sender_included() {
        let ch = channel("fanout");
        let a = bus(&ch, "a", SECRET).await;
        let b = bus(&ch, "b", SECRET).await;
        let (mut at_a, mut at_b) = (a.subscribe(), b.subscribe());
        a.publish(event(1)).await.expect("publish from a");
        assert_eq!(next(&mut at_b).await, event(1));
        assert_eq!(next(&mut at_a).await, event(1));
        b.publish(ClusterEvent::ReloadConfig { node: None })
            .await
            .expect("publish from b");
        assert_eq!(
            next(&mut at_a).await,
            ClusterEvent::ReloadConfig { node: None }
        );
        assert_eq!(
            next(&mut at_b).await,
            ClusterEvent::ReloadConfig { node: None }
        );
        assert!(a.dropped().is_empty(), "{:?}", a.dropped());
        assert!(b.dropped().is_empty(), "{:?}", b.dropped());
    }

    #[tokio::test]
    async fn bad_messages_are_dropped_counted_and_the_node_carries_on() {
        let ch = channel("hostile");
        let a = bus(&ch, "a", SECRET).await;
        let b = bus(&ch, "b", SECRET).await;
        let (mut at_a, mut at_b) = (a.subscribe(), b.subscribe());

        // Capture a good message as it goes over the wire.
        let mut tap = redis::Client::open(redis_url())
            .expect("redis url")
            .get_async_pubsub()
            .await
            .expect("raw subscriber");
        tap.subscribe(&ch).await.expect("raw subscribe");
        a.publish(event(1)).await.expect("publish");
        let captured = match timeout(WAIT, tap.on_message().next()).await {
            Ok(Some(msg)) => msg.get_payload_bytes().to_vec(),
            _ => panic!("the raw subscriber saw nothing"),
        };
        assert_eq!(next(&mut at_b).await, event(1));
        assert_eq!(next(&mut at_a).await, event(1));

        let now = now_ms();
        let ten_minutes = 10 * 60 * 1000;
        let body = &captured[2..captured.len() - MAC_BYTES];
        let mut oversized = vec![0u8; MAX_ENVELOPE_BYTES + 1];
        oversized[..2].copy_from_slice(&WIRE_VERSION.to_be_bytes());
        let hostile: Vec<(&str, Vec<u8>)> = vec![
            (
                "forged (another key), posing as a with a high seq",
                Envelope {
                    incarnation: a.incarnation(),
                    ..envelope("a", 1_000, now, event(666))
                }
                .seal(b"somebody else's secret value")
                .expect("seal"),
            ),
            ("truncated", captured[..20].to_vec()),
            ("oversized", oversized),
            ("unknown version", sign_raw(WIRE_VERSION + 1, body, SECRET)),
            ("replay of a captured message", captured.clone()),
            (
                "stale",
                envelope("c", 0, now - ten_minutes, event(667))
                    .seal(SECRET)
                    .expect("seal"),
            ),
            (
                "from the future",
                envelope("c", 1, now + ten_minutes, event(668))
                    .seal(SECRET)
                    .expect("seal"),
            ),
            (
                "signed garbage",
                sign_raw(WIRE_VERSION, &[0xff; 40], SECRET),
            ),
        ];
        let mut raw = raw_connection().await;
        for (_, bytes) in &hostile {
            raw_publish(&mut raw, &ch, bytes).await;
        }
        // Published after the hostile ones: when it arrives, they have all been judged.
        a.publish(event(2)).await.expect("publish after the attack");
        assert_eq!(next(&mut at_b).await, event(2), "b delivered something bad");
        assert_eq!(next(&mut at_a).await, event(2), "a delivered something bad");

        let expected: BTreeMap<&'static str, u64> = [
            ("bad_signature", 1),
            ("truncated", 1),
            ("oversized", 1),
            ("unknown_version", 1),
            ("replayed", 1),
            ("stale", 2),
            ("undecodable", 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(b.dropped(), expected);
        assert_eq!(a.dropped(), expected);
        for reason in expected.keys() {
            assert!(
                crate::metrics::value("palisade_bus_dropped_total", &[("reason", *reason)]) >= 2,
                "metric for {reason}"
            );
        }
        assert!(at_b.is_empty() && at_a.is_empty());
    }

    #[tokio::test]
    async fn a_bus_with_another_secret_receives_nothing() {
        let ch = channel("secret");
        let a = bus(&ch, "a", SECRET).await;
        let c = bus(&ch, "c", b"a different cluster secret!").await;
        let (mut at_a, mut at_c) = (a.subscribe(), c.subscribe());
        a.publish(event(1)).await.expect("publish");
        a.publish(event(2)).await.expect("publish");
        c.publish(event(3)).await.expect("publish");
        // c hears itself, and only itself.
        assert_eq!(next(&mut at_c).await, event(3));
        assert_eq!(c.dropped(), [("bad_signature", 2)].into_iter().collect());
        a.publish(event(4)).await.expect("publish");
        for n in [1, 2, 4] {
            assert_eq!(next(&mut at_a).await, event(n));
        }
        assert_eq!(a.dropped(), [("bad_signature", 1)].into_iter().collect());
    }

    #[tokio::test]
    async fn unreachable_redis_is_unavailable_and_bad_options_are_refused() {
        let ch = channel("unreachable");
        let got = RedisBus::connect(
            "redis://:hunter2@127.0.0.1:1",
            RedisBusOptions::new(&ch, "a", SECRET),
        )
        .await;
        match got {
            Err(BusError::Unavailable(msg)) => {
                assert!(!msg.contains("hunter2"), "password in {msg}");
            }
            Err(e) => panic!("expected unavailable, got {e}"),
            Ok(_) => panic!("connected to nothing"),
        }
        for options in [
            RedisBusOptions::new(&ch, "a", b"short".to_vec()),
            RedisBusOptions::new(&ch, "", SECRET),
            RedisBusOptions::new("", "a", SECRET),
        ] {
            assert!(matches!(
                RedisBus::connect(&redis_url(), options).await,
                Err(BusError::Config(_))
            ));
        }
        assert!(!format!("{:?}", RedisBusOptions::new(&ch, "a", SECRET)).contains("shared secret"));
    }

    #[tokio::test]
    async fn dropping_the_bus_ends_its_subscription() {
        let ch = channel("drop");
        let a = bus(&ch, "a", SECRET).await;
        let mut rx = a.subscribe();
        let mut raw = raw_connection().await;
        assert_eq!(subscribers(&mut raw, &ch).await, 1);
        a.close().await;
        assert!(matches!(
            timeout(WAIT, rx.recv()).await,
            Ok(Err(broadcast::error::RecvError::Closed))
        ));
        let deadline = Instant::now() + WAIT;
        while subscribers(&mut raw, &ch).await != 0 {
            assert!(Instant::now() < deadline, "subscription outlived the bus");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let b = bus(&ch, "b", SECRET).await;
        let mut rx = b.subscribe();
        drop(b);
        assert!(matches!(
            timeout(WAIT, rx.recv()).await,
            Ok(Err(broadcast::error::RecvError::Closed))
        ));
    }

    /// A redis-server of one test, killed when the test ends (even when it fails).
    struct PrivateRedis {
        child: std::process::Child,
        port: u16,
    }

    impl PrivateRedis {
        async fn start(port: Option<u16>) -> PrivateRedis {
            let port = port.unwrap_or_else(|| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("free port")
                    .port()
            });
            let bin = std::env::var("PALISADE_TEST_REDIS_SERVER")
                .unwrap_or_else(|_| "redis-server".to_string());
            let child = std::process::Command::new(&bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(std::env::temp_dir())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("the restart test needs {bin} (PALISADE_TEST_REDIS_SERVER): {e}")
                });
            let server = PrivateRedis { child, port };
            let client = redis::Client::open(server.url()).expect("url");
            let deadline = Instant::now() + WAIT;
            loop {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .is_ok()
                    {
                        return server;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "redis-server on {port} did not start"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn a_redis_restart_is_survived() {
        let server = PrivateRedis::start(None).await;
        let (url, port) = (server.url(), server.port);
        let ch = channel("restart");
        let a = bus_at(&url, &ch, "a", SECRET).await;
        let mut rx = a.subscribe();
        a.publish(event(1)).await.expect("publish");
        assert_eq!(next(&mut rx).await, event(1));

        drop(server);
        match a.publish(event(2)).await {
            Err(BusError::Unavailable(_)) => {}
            other => panic!("publish with redis down: {other:?}"),
        }

        let _server = PrivateRedis::start(Some(port)).await;
        // Publishing may work again a moment before the subscription is back: retry until
        // an event makes the round trip.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 3;
        'recovered: loop {
            assert!(Instant::now() < deadline, "the bus did not recover");
            if a.publish(event(n)).await.is_ok() {
                while let Ok(got) = timeout(Duration::from_millis(300), rx.recv()).await {
                    if matches!(got, Ok(ClusterEvent::JobEnqueued { .. })) {
                        break 'recovered;
                    }
                }
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n += 1;
        }
        assert!(a.reconnects() >= 1);
        assert!(a.dropped().is_empty(), "{:?}", a.dropped());
    }

    // The checks themselves, without Redis.

    fn gate(now: Instant) -> Gate {
        Gate::new(Arc::from(SECRET), Duration::from_secs(60), now)
    }

    fn sealed(node: &str, incarnation: u64, seq: u64, sent_at_ms: i64) -> Vec<u8> {
        Envelope {
            incarnation,
            ..envelope(node, seq, sent_at_ms, event(0))
        }
        .seal(SECRET)
        .expect("seal")
    }

    #[test]
    fn replays_are_refused_and_reordering_within_the_window_is_not() {
        let t0 = Instant::now();
        let now = 1_700_000_000_000;
        let mut g = gate(t0);
        let admit = |g: &mut Gate, seq| g.admit(&sealed("a", 1, seq, now), now, t0).map(|e| e.seq);
        assert_eq!(admit(&mut g, 5), Ok(5));
        assert_eq!(admit(&mut g, 7), Ok(7));
        assert_eq!(admit(&mut g, 6), Ok(6), "reordered within the window");
        for seq in [5, 6, 7] {
            assert!(matches!(admit(&mut g, seq), Err(Refusal::Replayed { .. })));
        }
        assert_eq!(admit(&mut g, 1_000), Ok(1_000));
        assert!(
            matches!(admit(&mut g, 8), Err(Refusal::Replayed { .. })),
            "below the window"
        );
        assert_eq!(
            admit(&mut g, 1_000 - REPLAY_WINDOW + 1),
            Ok(1_000 - REPLAY_WINDOW + 1)
        );
        assert!(matches!(
            admit(&mut g, 1_000 - REPLAY_WINDOW),
            Err(Refusal::Replayed { .. })
        ));
        // A restart (new incarnation) starts again at 0, and so does another node.
        assert!(g.admit(&sealed("a", 2, 0, now), now, t0).is_ok());
        assert!(g.admit(&sealed("b", 1, 0, now), now, t0).is_ok());
    }

    #[test]
    fn messages_beyond_the_skew_either_way_are_stale() {
        let t0 = Instant::now();
        let now = 1_700_000_000_000;
        let mut g = gate(t0);
        for (seq, sent) in [(0, now - 60_000), (1, now + 60_000), (2, now)] {
            assert!(
                g.admit(&sealed("a", 1, seq, sent), now, t0).is_ok(),
                "seq {seq}"
            );
        }
        for (seq, sent) in [
            (3, now - 60_001),
            (4, now + 60_001),
            (5, i64::MIN),
            (6, i64::MAX),
        ] {
            assert!(
                matches!(
                    g.admit(&sealed("a", 1, seq, sent), now, t0),
                    Err(Refusal::Stale { .. })
                ),
                "seq {seq}"
            );
        }
        // A stale message does not move the window: seq 3 is still new.
        assert!(g.admit(&sealed("a", 1, 3, now), now, t0).is_ok());
    }

    #[test]
    fn sender_memory_stays_bounded() {
        let t0 = Instant::now();
        let now = 1_700_000_000_000;
        let mut g = gate(t0);
        for incarnation in 0..(MAX_SENDERS as u64 + 500) {
            assert!(g.admit(&sealed("a", incarnation, 0, now), now, t0).is_ok());
            assert!(g.senders.len() <= MAX_SENDERS);
        }
        // Idle senders are forgotten after the ttl.
        let later = t0 + g.idle_ttl + PRUNE_EVERY;
        assert!(g.admit(&sealed("b", 0, 0, now), now, later).is_ok());
        assert_eq!(g.senders.len(), 1);
    }

    #[test]
    fn drop_warnings_are_rate_limited() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        let refusal = Refusal::Wire(WireError::BadSignature);
        for i in 0..5 {
            log.note(&refusal, 10, t0 + Duration::from_millis(i));
        }
        assert_eq!(log.last.get("bad_signature"), Some(&(t0, 4)));
        log.note(&refusal, 10, t0 + DROP_LOG_EVERY);
        assert_eq!(
            log.last.get("bad_signature"),
            Some(&(t0 + DROP_LOG_EVERY, 0))
        );
    }
}
