//! Tests of what only the Redis queue promises: leases that lapse when a node dies, retries
//! and dead letters, dedupe across nodes, wake-ups, and outages; plus the scratch key
//! prefix the Redis tests (and the contract suite) run under.
//!
//! Redis comes from `PALISADE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); a test
//! fails, never skips, when it is not there. The outage test starts a Redis of its own
//! (`PALISADE_TEST_REDIS_SERVER`, default `redis-server`), so the shared one is never
//! stopped.
//!
//! Must never: touch keys outside its own unique prefix, or assert on timings.

use std::collections::BTreeMap;
use std::time::Duration;

use palisade_proto::{JobId, JobPriority, JobState};

use super::contract::{done, failed, job};
use super::redis::{RedisQueue, RedisQueueOptions};
use super::{JobQueue, QueueError};
use deadpool_redis::redis;

fn redis_url() -> String {
    std::env::var("PALISADE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A unique key prefix; its keys are deleted (SCAN + DEL) when it is dropped, even after a
/// failed assertion.
pub struct Scratch {
    url: String,
    prefix: String,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        Scratch {
            url: redis_url(),
            prefix: format!("palisade-test:{test}:{}:", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn options(&self) -> RedisQueueOptions {
        RedisQueueOptions {
            prefix: self.prefix.clone(),
            // retries at once, unless a test is about the backoff
            retry_backoff: Duration::ZERO,
            ..RedisQueueOptions::default()
        }
    }

    pub async fn queue(&self, opts: RedisQueueOptions) -> RedisQueue {
        match RedisQueue::connect(&self.url, opts).await {
            Ok(q) => q,
            Err(e) => panic!(
                "the Redis tests need Redis at {} (set PALISADE_TEST_REDIS_URL): {e}",
                self.url
            ),
        }
    }

    /// A plain connection, to look at (or age) the queue's keys directly.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .expect("redis connection")
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query::<(u64, Vec<String>)>(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<u64> = redis::cmd("DEL").arg(&keys).query(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// A lease short enough for a test to outlive, long enough that its renewals (every
/// 200 ms) keep it on a loaded machine.
fn short_lease(scratch: &Scratch) -> RedisQueueOptions {
    RedisQueueOptions {
        lease: Duration::from_millis(600),
        ..scratch.options()
    }
}

/// Wait (up to 10 s) until the job is in `state`.
async fn until_state(q: &RedisQueue, id: &str, state: JobState) {
    let id = JobId(id.into());
    for _ in 0..100 {
        let st = q.status(&id).await.expect("status").expect("known");
        if st.state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} never became {state:?}");
}

/// Make a running job's lease lapse now, as if its node had stalled.
fn age_lease(scratch: &Scratch, id: &str) {
    let _: i64 = redis::cmd("ZADD")
        .arg(scratch.key("leases"))
        .arg(0)
        .arg(id)
        .query(&mut scratch.raw())
        .expect("age the lease");
}

#[tokio::test]
async fn a_lapsed_lease_hands_the_job_to_another_node() {
    let scratch = Scratch::new("lease_lapse");
    let node_a = scratch.queue(short_lease(&scratch)).await;
    let node_b = scratch.queue(short_lease(&scratch)).await;
    assert!(node_a
        .enqueue(job("j", JobPriority::P1, false, "c1"))
        .await
        .expect("enqueue"));
    let taken = node_a.take("node-a", Duration::ZERO).await.expect("take");
    assert_eq!(taken.expect("a job").id.as_str(), "j");

    // Renewed every 200 ms: three lease lengths later it is still node-a's.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let stats = node_b.stats().await.expect("stats");
    assert_eq!(stats.p1.running, 1);
    assert!(node_b
        .take("node-b", Duration::ZERO)
        .await
        .expect("take")
        .is_none());

    // node-a dies without finishing: its renewals stop, the lease lapses.
    drop(node_a);
    let again = node_b.take("node-b", Duration::from_secs(10)).await;
    let again = again.expect("take").expect("the lapsed job");
    assert_eq!(again.id.as_str(), "j");
    let st = node_b
        .status(&again.id)
        .await
        .expect("status")
        .expect("known");
    assert_eq!(st.state, JobState::Running);
    assert_eq!(st.node.as_deref(), Some("node-b"));
    assert_eq!(st.error.as_deref(), Some("lease lapsed on node node-a"));
    node_b.finish(&again.id, done()).await.expect("finish");
    let st = node_b
        .status(&again.id)
        .await
        .expect("status")
        .expect("known");
    assert_eq!((st.state, st.error), (JobState::Done, None));
}

/// A worker pool prefetches while its jobs are short: its node dies while `hold` runs and
/// `next` is leased to it, not started. Both leases lapse and another node runs both
/// (at least once), `next` for the first time.
#[tokio::test]
async fn a_dead_pools_prefetched_job_runs_elsewhere_once_its_lease_lapses() {
    use crate::scheduler::worker::{run_slots, SlotControl};
    use palisade_proto::Job;
    use std::sync::{Arc, Mutex};

    let scratch = Scratch::new("prefetch_lapse");
    let node_a = Arc::new(scratch.queue(short_lease(&scratch)).await);
    let node_b = scratch.queue(short_lease(&scratch)).await;
    let mut jobs: Vec<Job> = (0..8)
        .map(|k| job(&format!("s{k}"), JobPriority::P2, false, "c1"))
        .collect();
    jobs.push(job("hold", JobPriority::P2, false, "c1"));
    jobs.push(job("next", JobPriority::P2, false, "c1"));
    let queued = node_a.enqueue_many(jobs).await.expect("enqueue");
    assert!(queued.iter().all(|q| *q));
    let started = Arc::new(Mutex::new(Vec::<String>::new()));
    let runner = {
        let started = started.clone();
        move |job: Job| {
            started.lock().expect("lock").push(job.id.0.clone());
            let hold = job.id.as_str() == "hold";
            async move {
                if hold {
                    // node-a dies before this job ends
                    std::future::pending::<()>().await;
                }
                done()
            }
        }
    };
    let shared: super::SharedQueue = node_a.clone();
    let pool = run_slots(shared, "node-a".into(), 1, SlotControl::default(), runner);
    let prefetched = async {
        until_state(&node_b, "hold", JobState::Running).await;
        until_state(&node_b, "next", JobState::Running).await;
    };
    tokio::select! {
        () = pool => panic!("the pool stopped by itself"),
        () = prefetched => {}
    }
    // the pool is dropped with the select: node-a is dead, its leases are not renewed
    assert!(!started.lock().expect("lock").iter().any(|id| id == "next"));
    drop(node_a);
    let mut rerun = Vec::new();
    while rerun.len() < 2 {
        let again = node_b.take("node-b", Duration::from_secs(10)).await;
        let again = again.expect("take").expect("a lapsed job");
        node_b.finish(&again.id, done()).await.expect("finish");
        rerun.push(again.id.0);
    }
    rerun.sort();
    assert_eq!(rerun, ["hold", "next"]);
    let st = node_b
        .status(&JobId("next".into()))
        .await
        .expect("status")
        .expect("known");
    assert_eq!(
        (st.state, st.node.as_deref(), st.error),
        (JobState::Done, Some("node-b"), None)
    );
    let stats = node_b.stats().await.expect("stats");
    assert_eq!(
        (stats.p2.done, stats.p2.running, stats.p2.depth),
        (10, 0, 0)
    );
}

#[tokio::test]
async fn a_lapsed_job_goes_back_to_the_front_of_its_priority() {
    let scratch = Scratch::new("lapse_front");
    let node_a = scratch.queue(short_lease(&scratch)).await;
    let node_b = scratch.queue(short_lease(&scratch)).await;
    for id in ["first", "second", "third"] {
        assert!(node_a
            .enqueue(job(id, JobPriority::P2, false, "c1"))
            .await
            .expect("enqueue"));
    }
    let first = node_a.take("node-a", Duration::ZERO).await.expect("take");
    assert_eq!(first.expect("a job").id.as_str(), "first");
    drop(node_a);
    until_state(&node_b, "first", JobState::Queued).await;
    let mut order = vec![];
    while let Some(j) = node_b.take("node-b", Duration::ZERO).await.expect("take") {
        order.push(j.id.0);
    }
    assert_eq!(order, ["first", "second", "third"]);
}

#[tokio::test]
async fn lapsed_leases_count_as_attempts() {
    let scratch = Scratch::new("lapse_attempts");
    let opts = RedisQueueOptions {
        max_attempts: 2,
        ..short_lease(&scratch)
    };
    let watcher = scratch.queue(opts.clone()).await;
    assert!(watcher
        .enqueue(job("crashy", JobPriority::P0, false, "c1"))
        .await
        .expect("enqueue"));
    for node in ["node-a", "node-b"] {
        let q = scratch.queue(opts.clone()).await;
        let taken = q.take(node, Duration::from_secs(10)).await.expect("take");
        assert_eq!(taken.expect("a job").id.as_str(), "crashy");
        drop(q);
    }
    // The second lapse is the last attempt: dead letter, not a third run.
    let mut dead = vec![];
    for _ in 0..50 {
        dead = watcher.dead_letters(10).await.expect("dead letters");
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1, "the job should be dead-lettered");
    assert_eq!(dead[0].state, JobState::Failed);
    assert_eq!(
        dead[0].error.as_deref(),
        Some("lease lapsed on node node-b")
    );
    assert!(watcher
        .take("node-c", Duration::ZERO)
        .await
        .expect("take")
        .is_none());
    assert_eq!(watcher.stats().await.expect("stats").p0.failed, 1);
}

#[tokio::test]
async fn an_acknowledged_job_never_runs_again() {
    let scratch = Scratch::new("ack");
    // node-a's lease is long, so that its renewals do not undo the ageing below.
    let node_a = scratch.queue(scratch.options()).await;
    let node_b = scratch.queue(short_lease(&scratch)).await;
    let id = JobId("acked".into());
    assert!(node_a
        .enqueue(job("acked", JobPriority::P1, false, "c1"))
        .await
        .expect("enqueue"));
    assert!(node_a
        .take("node-a", Duration::ZERO)
        .await
        .expect("take")
        .is_some());

    // node-a stalls past its lease (aged by hand here); a reaper re-queues the job.
    age_lease(&scratch, "acked");
    until_state(&node_b, "acked", JobState::Queued).await;
    let stats = node_b.stats().await.expect("stats");
    assert_eq!((stats.p1.depth, stats.p1.running), (1, 0));

    // node-a comes back and acknowledges it: it leaves the ready list and never runs again.
    node_a.finish(&id, done()).await.expect("finish");
    assert!(node_b
        .take("node-b", Duration::ZERO)
        .await
        .expect("take")
        .is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(node_b
        .take("node-b", Duration::ZERO)
        .await
        .expect("take")
        .is_none());
    let st = node_b.status(&id).await.expect("status").expect("known");
    assert_eq!(
        (st.state, st.node.as_deref()),
        (JobState::Done, Some("node-a"))
    );

    // When another node already took it again, the first acknowledgement still wins and
    // the second finish is a no-op.
    assert!(node_a
        .enqueue(job("twice", JobPriority::P1, false, "c1"))
        .await
        .expect("enqueue"));
    let twice = JobId("twice".into());
    assert!(node_a
        .take("node-a", Duration::ZERO)
        .await
        .expect("take")
        .is_some());
    age_lease(&scratch, "twice");
    until_state(&node_b, "twice", JobState::Queued).await;
    let taken = node_b.take("node-b", Duration::from_secs(5)).await;
    assert_eq!(taken.expect("take").expect("a job").id, twice);
    node_a.finish(&twice, done()).await.expect("finish");
    node_b
        .finish(&twice, failed("late failure"))
        .await
        .expect("finish");
    let st = node_b.status(&twice).await.expect("status").expect("known");
    assert_eq!((st.state, st.error), (JobState::Done, None));
    let stats = node_b.stats().await.expect("stats");
    assert_eq!(
        (stats.p1.done, stats.p1.failed, stats.p1.running),
        (2, 0, 0)
    );
}

#[tokio::test]
async fn repeated_failures_dead_letter_the_job_until_requeued() {
    let scratch = Scratch::new("dead_letter");
    let q = scratch.queue(scratch.options()).await;
    let id = JobId("flaky".into());
    assert!(q
        .enqueue(job("flaky", JobPriority::P2, true, "c1"))
        .await
        .expect("enqueue"));
    for attempt in 1..=3 {
        let taken = q.take("node-a", Duration::ZERO).await.expect("take");
        assert_eq!(taken.expect("a job").id, id, "attempt {attempt}");
        q.finish(&id, failed(&format!("boom {attempt}")))
            .await
            .expect("finish");
        let st = q.status(&id).await.expect("status").expect("known");
        let expected = if attempt < 3 {
            JobState::Queued
        } else {
            JobState::Failed
        };
        assert_eq!(st.state, expected, "attempt {attempt}");
        assert_eq!(st.error, Some(format!("boom {attempt}")));
    }
    assert!(q
        .take("node-a", Duration::ZERO)
        .await
        .expect("take")
        .is_none());
    let dead = q.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (&dead[0].job.id, dead[0].error.as_deref()),
        (&id, Some("boom 3"))
    );
    let stats = q.stats().await.expect("stats");
    assert_eq!(
        (stats.dead_letter, stats.p2.failed, stats.p2.depth),
        (1, 1, 0)
    );
    // a dead letter no longer holds its dedupe key
    assert!(q
        .enqueue(job("flaky-2", JobPriority::P2, true, "c1"))
        .await
        .expect("enqueue"));
    // ... so it cannot come back while that one is queued
    assert!(!q.requeue_dead(&id).await.expect("requeue"));
    let other = q.take("node-a", Duration::ZERO).await.expect("take");
    q.finish(&other.expect("a job").id, done())
        .await
        .expect("finish");

    assert!(q.requeue_dead(&id).await.expect("requeue"));
    assert!(!q.requeue_dead(&id).await.expect("requeue twice"));
    assert!(!q
        .requeue_dead(&JobId("nope".into()))
        .await
        .expect("requeue unknown"));
    assert!(q.dead_letters(10).await.expect("dead letters").is_empty());
    let st = q.status(&id).await.expect("status").expect("known");
    assert_eq!(
        (st.state, st.error.as_deref()),
        (JobState::Queued, Some("boom 3"))
    );
    let taken = q.take("node-b", Duration::ZERO).await.expect("take");
    assert_eq!(taken.expect("the requeued job").id, id);
    q.finish(&id, done()).await.expect("finish");
    assert_eq!(q.stats().await.expect("stats").dead_letter, 0);
}

#[tokio::test]
async fn recurring_jobs_are_deduplicated_across_nodes() {
    let scratch = Scratch::new("dedupe_nodes");
    let node_a = scratch.queue(scratch.options()).await;
    let node_b = scratch.queue(scratch.options()).await;
    // Twenty enqueues of one recurring job race from two nodes: exactly one is queued.
    let enqueues = (0..20).map(|i| {
        let q = if i % 2 == 0 { &node_a } else { &node_b };
        q.enqueue(job(&format!("r{i}"), JobPriority::P2, true, "c1"))
    });
    let results = futures::future::join_all(enqueues).await;
    let queued = results
        .into_iter()
        .map(|r| r.expect("enqueue"))
        .filter(|q| *q)
        .count();
    assert_eq!(queued, 1);

    let taken = node_b.take("node-b", Duration::ZERO).await.expect("take");
    let taken = taken.expect("the one job");
    assert!(!node_a
        .enqueue(job("again", JobPriority::P2, true, "c1"))
        .await
        .expect("enqueue"));
    node_b.finish(&taken.id, done()).await.expect("finish");
    assert!(node_a
        .enqueue(job("again", JobPriority::P2, true, "c1"))
        .await
        .expect("enqueue"));
}

/// Keys under the scratch prefix that match `pattern` (after the prefix).
fn keys(scratch: &Scratch, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(scratch.key(pattern))
        .query(&mut scratch.raw())
        .expect("keys")
}

fn parked(scratch: &Scratch) -> u64 {
    redis::cmd("ZCARD")
        .arg(scratch.key("waiters"))
        .query(&mut scratch.raw())
        .expect("zcard")
}

/// Wait (up to 10 s) until `n` takers are parked.
async fn until_parked(scratch: &Scratch, n: u64) {
    for _ in 0..100 {
        if parked(scratch) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never {n} parked takers");
}

#[tokio::test]
async fn an_idle_take_is_handed_a_just_enqueued_p0_job() {
    let scratch = Scratch::new("wake_up");
    let worker = scratch.queue(scratch.options()).await;
    let producer = scratch.queue(scratch.options()).await;
    let (taken, queued) = tokio::join!(worker.take("idle", Duration::from_secs(10)), async {
        // let the worker find nothing and park first
        until_parked(&scratch, 1).await;
        producer
            .enqueue(job("urgent", JobPriority::P0, false, "c1"))
            .await
    });
    assert!(queued.expect("enqueue"));
    let taken = taken.expect("take").expect("the p0 job");
    assert_eq!(taken.id.as_str(), "urgent");
    // handed over already leased to the parked node, which holds and renews it
    let st = producer
        .status(&taken.id)
        .await
        .expect("status")
        .expect("known");
    assert_eq!(
        (st.state, st.node.as_deref()),
        (JobState::Running, Some("idle"))
    );
    let stats = producer.stats().await.expect("stats");
    assert_eq!(
        (
            stats.p0.running,
            stats.p0.depth,
            stats.in_flight_per_node.get("idle")
        ),
        (1, 0, Some(&1))
    );
    // nothing left behind: no parked taker, no hand-off list
    assert_eq!(parked(&scratch), 0);
    assert!(keys(&scratch, "hand:*").is_empty());
    worker.finish(&taken.id, done()).await.expect("finish");
    // with nobody parked, jobs go to the ready lists and leave nothing else behind
    for i in 0..100 {
        let j = job(&format!("bulk-{i}"), JobPriority::P2, false, "c1");
        assert!(producer.enqueue(j).await.expect("enqueue"));
    }
    assert!(keys(&scratch, "hand:*").is_empty());
    assert_eq!(producer.stats().await.expect("stats").p2.depth, 100);
}

/// A parked taker is handed a job only while nothing else is ready: a p2 job queued while a
/// p0 waits goes to the ready list, and the parked taker is nudged to take the p0 first.
#[tokio::test]
async fn a_parked_taker_is_nudged_when_jobs_become_ready() {
    let scratch = Scratch::new("nudge");
    let opts = RedisQueueOptions {
        max_attempts: 3,
        ..scratch.options()
    };
    let node_a = scratch.queue(opts.clone()).await;
    let node_b = scratch.queue(opts).await;
    assert!(node_a
        .enqueue(job("retry", JobPriority::P0, false, "c1"))
        .await
        .expect("enqueue"));
    let first = node_a.take("node-a", Duration::ZERO).await.expect("take");
    assert_eq!(first.expect("a job").id.as_str(), "retry");
    // node-b parks; node-a's failure is retried at once (no backoff here): ready, not
    // handed, and node-b is nudged to take it
    let waiting = tokio::time::timeout(
        Duration::from_secs(10),
        node_b.take("node-b", Duration::from_secs(60)),
    );
    let (taken, ()) = tokio::join!(waiting, async {
        until_parked(&scratch, 1).await;
        node_a
            .finish(&JobId("retry".into()), failed("flaky"))
            .await
            .expect("finish");
    });
    let taken = taken
        .expect("nudged well before its wait ends")
        .expect("take");
    assert_eq!(taken.expect("the retry").id.as_str(), "retry");
    assert_eq!(parked(&scratch), 0);
}

/// A take that gives up while parked (cancelled, as a draining worker's is) loses no job:
/// one handed to it afterwards goes back to the front of its priority at once, rather than
/// waiting for its lease to lapse.
#[tokio::test]
async fn a_cancelled_parked_take_loses_no_job() {
    let scratch = Scratch::new("cancelled_park");
    // a long lease: only the hand-back, not a lapse, can free the job within the test
    let opts = RedisQueueOptions {
        lease: Duration::from_secs(120),
        ..scratch.options()
    };
    let node_a = scratch.queue(opts.clone()).await;
    let node_b = scratch.queue(opts).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        node_a.take("node-a", Duration::from_secs(5)),
    )
    .await;
    assert!(gave_up.is_err(), "nothing to take: the wait is cut short");
    // node-a's wait still lingers in Redis, so the job is handed to it ...
    assert_eq!(parked(&scratch), 1);
    assert!(node_b
        .enqueue(job("orphan", JobPriority::P1, false, "c1"))
        .await
        .expect("enqueue"));
    // ... and handed back: node-b takes it
    let taken = node_b.take("node-b", Duration::from_secs(10)).await;
    assert_eq!(taken.expect("take").expect("the job").id.as_str(), "orphan");
    let st = node_b
        .status(&JobId("orphan".into()))
        .await
        .expect("status")
        .expect("known");
    assert_eq!(
        (st.state, st.node.as_deref()),
        (JobState::Running, Some("node-b"))
    );
    let stats = node_b.stats().await.expect("stats");
    assert_eq!(
        stats.in_flight_per_node,
        BTreeMap::from([("node-b".to_string(), 1)])
    );
}

/// Every job of a batch take is leased: when the taker dies they all lapse and go back to
/// the front, before jobs that were queued behind them.
#[tokio::test]
async fn a_batch_take_leases_every_job() {
    let scratch = Scratch::new("batch_lease");
    let node_a = scratch.queue(short_lease(&scratch)).await;
    let node_b = scratch.queue(short_lease(&scratch)).await;
    let jobs = ["b1", "b2", "b3", "later"]
        .map(|id| job(id, JobPriority::P2, false, "c1"))
        .to_vec();
    let queued = node_a.enqueue_many(jobs).await.expect("enqueue many");
    assert_eq!(queued, [true; 4]);
    let taken = node_a
        .take_many("node-a", 3, Duration::ZERO)
        .await
        .expect("take");
    assert_eq!(taken.len(), 3);
    // renewed together: after three lease lengths they are still node-a's
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let stats = node_b.stats().await.expect("stats");
    assert_eq!((stats.p2.running, stats.p2.depth), (3, 1));
    drop(node_a);
    for id in ["b1", "b2", "b3"] {
        until_state(&node_b, id, JobState::Queued).await;
    }
    let again = node_b
        .take_many("node-b", 10, Duration::ZERO)
        .await
        .expect("take");
    let mut first_three: Vec<&str> = again.iter().take(3).map(|j| j.id.as_str()).collect();
    first_three.sort_unstable();
    assert_eq!(first_three, ["b1", "b2", "b3"]);
    assert_eq!(again.get(3).map(|j| j.id.as_str()), Some("later"));
    let st = node_b
        .status(&JobId("b2".into()))
        .await
        .expect("status")
        .expect("known");
    assert_eq!(st.error.as_deref(), Some("lease lapsed on node node-a"));
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_not_a_panic() {
    let before = crate::metrics::value("palisade_queue_errors_total", &[("op", "connect")]);
    let scratch = Scratch::new("unreachable");
    let opts = scratch.options();
    let err = RedisQueue::connect("redis://user:s3cret@127.0.0.1:1", opts)
        .await
        .expect_err("nothing listens on port 1");
    let QueueError::Unavailable(message) = &err else {
        panic!("expected unavailable, got {err:?}");
    };
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    let after = crate::metrics::value("palisade_queue_errors_total", &[("op", "connect")]);
    assert!(after > before);
}

/// A Redis server of this test's own, on a free port, killed when dropped.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let bin =
            std::env::var("PALISADE_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = tempfile::tempdir().expect("temp dir");
        let child = std::process::Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("the outage test starts {bin} (PALISADE_TEST_REDIS_SERVER): {e}")
            });
        let server = OwnRedis {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{bin} did not listen on port {port}");
    }

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_redis_restart_is_unavailable_then_recovers() {
    let port = OwnRedis::free_port();
    let server = OwnRedis::start(port);
    let url = server.url();
    let opts = RedisQueueOptions {
        prefix: "outage:".into(),
        ..RedisQueueOptions::default()
    };
    let q = RedisQueue::connect(&url, opts).await.expect("connect");
    assert!(q
        .enqueue(job("before", JobPriority::P0, false, "c1"))
        .await
        .expect("enqueue"));

    drop(server);
    let errors_before = crate::metrics::value("palisade_queue_errors_total", &[("op", "enqueue")]);
    let enqueued = q.enqueue(job("during", JobPriority::P0, false, "c1")).await;
    assert!(
        matches!(enqueued, Err(QueueError::Unavailable(_))),
        "{enqueued:?}"
    );
    let taken = q.take("n", Duration::from_millis(200)).await;
    assert!(
        matches!(taken, Err(QueueError::Unavailable(_))),
        "{taken:?}"
    );
    let stats = q.stats().await;
    assert!(
        matches!(stats, Err(QueueError::Unavailable(_))),
        "{stats:?}"
    );
    let status = q.status(&JobId("before".into())).await;
    assert!(
        matches!(status, Err(QueueError::Unavailable(_))),
        "{status:?}"
    );
    let errors_after = crate::metrics::value("palisade_queue_errors_total", &[("op", "enqueue")]);
    assert!(errors_after > errors_before);

    // Back (empty, and without the scripts): the pool reconnects, the scripts are loaded
    // again, and the same handle works.
    let _server = OwnRedis::start(port);
    let mut enqueued = Err(QueueError::Closed);
    for _ in 0..50 {
        enqueued = q.enqueue(job("after", JobPriority::P0, false, "c1")).await;
        if enqueued.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(enqueued.expect("enqueue once redis is back"));
    let taken = q.take("n", Duration::ZERO).await.expect("take");
    assert_eq!(taken.expect("a job").id.as_str(), "after");
    let stats = q.stats().await.expect("stats");
    assert_eq!(
        stats.in_flight_per_node,
        BTreeMap::from([("n".to_string(), 1)])
    );
}

/// A leader's recurring enqueue carries its fence: once another node holds the lease (the
/// leader was deposed while it stalled), the old leader's enqueue is refused and queues
/// nothing; the new leader's goes through, and the cadence is shared between them.
#[tokio::test]
async fn a_deposed_leaders_enqueue_is_refused() {
    use super::Recurring;
    use crate::scheduler::leader::LeaderLease;
    let scratch = Scratch::new("fence");
    let q = scratch.queue(scratch.options()).await;
    let lease = Duration::from_secs(30);
    let url = redis_url();
    let prefix = scratch.key("");
    let a = LeaderLease::new(&url, &prefix, "a", lease).expect("lease a");
    let b = LeaderLease::new(&url, &prefix, "b", lease).expect("lease b");
    let fa = a
        .acquire_or_renew(None)
        .await
        .expect("redis")
        .expect("a leads");
    let every = Duration::from_secs(3600);
    let r = |id: &str, cloud: &str| job(id, JobPriority::P2, true, cloud);
    assert_eq!(
        q.enqueue_recurring(r("a1", "c1"), every, Some(&fa))
            .await
            .expect("enqueue"),
        Recurring::Queued
    );
    // a's lease lapses (simulated: it is deleted) and b takes over
    let _: i64 = redis::cmd("DEL")
        .arg(&fa.key)
        .query(&mut scratch.raw())
        .expect("del");
    let fb = b
        .acquire_or_renew(None)
        .await
        .expect("redis")
        .expect("b leads");
    assert!(fb.token > fa.token);
    assert_eq!(
        q.enqueue_recurring(r("a2", "c2"), every, Some(&fa))
            .await
            .expect("enqueue"),
        Recurring::Deposed
    );
    assert!(q
        .status(&JobId("a2".into()))
        .await
        .expect("status")
        .is_none());
    // b continues a's cadence: c1 is not due again, c2 is
    assert_eq!(
        q.enqueue_recurring(r("b1", "c1"), every, Some(&fb))
            .await
            .expect("enqueue"),
        Recurring::Busy
    );
    let taken = q
        .take("w", Duration::ZERO)
        .await
        .expect("take")
        .expect("a1");
    q.finish(&taken.id, done()).await.expect("finish");
    assert_eq!(
        q.enqueue_recurring(r("b2", "c1"), every, Some(&fb))
            .await
            .expect("enqueue"),
        Recurring::NotDue
    );
    assert_eq!(
        q.enqueue_recurring(r("b3", "c2"), every, Some(&fb))
            .await
            .expect("enqueue"),
        Recurring::Queued
    );
}

/// A failed job is retried only after its backoff (doubling per attempt), and counts in its
/// priority's depth meanwhile; it runs again once the backoff is over.
#[tokio::test]
async fn a_failed_job_waits_out_its_backoff_before_the_retry() {
    let scratch = Scratch::new("backoff");
    let q = scratch
        .queue(RedisQueueOptions {
            retry_backoff: Duration::from_millis(400),
            max_attempts: 3,
            ..scratch.options()
        })
        .await;
    assert!(q
        .enqueue(job("j", JobPriority::P1, false, "c"))
        .await
        .expect("enqueue"));
    let taken = q
        .take("n", Duration::ZERO)
        .await
        .expect("take")
        .expect("the job");
    q.finish(&taken.id, failed("store unavailable"))
        .await
        .expect("finish");
    // waiting out the backoff: not ready, but still counted as queued
    assert!(q.take("n", Duration::ZERO).await.expect("take").is_none());
    assert_eq!(q.stats().await.expect("stats").p1.depth, 1);
    let status = q
        .status(&JobId("j".into()))
        .await
        .expect("status")
        .expect("known");
    assert_eq!(status.state, JobState::Queued);
    assert_eq!(status.error.as_deref(), Some("store unavailable"));
    // then it runs again
    let again = q
        .take("n", Duration::from_secs(10))
        .await
        .expect("take")
        .expect("the retry");
    assert_eq!(again.id, taken.id);
    q.finish(&again.id, done()).await.expect("finish");
    assert_eq!(
        q.status(&again.id)
            .await
            .expect("status")
            .expect("known")
            .state,
        JobState::Done
    );
}
