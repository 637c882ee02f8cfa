//! The checks every [`JobQueue`] must pass, run against the memory and the Redis queue.
//!
//! Owns: one `pub async fn` per promise of the trait (priority order, FIFO within a
//! priority, dedupe of recurring jobs, status through the life cycle, done and failed
//! outcomes, stats, close, the batch methods: `enqueue_many`, `take_many`,
//! `finish_and_take`, and giving back unstarted jobs), and the tests that run each against
//! both implementations.
//! Each check gets a fresh, empty queue whose failed jobs are final (the Redis queue is
//! built with `max_attempts` 1; its retries have their own tests in `redis_tests.rs`).
//!
//! Must never: depend on one implementation's internals, or time anything.

use std::collections::BTreeMap;
use std::time::Duration;

use palisade_proto::{CloudId, HarvestScope, Job, JobId, JobKind, JobPriority, JobState};

use super::{JobOutcome, JobQueue, QueueError, Recurring};

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

/// A harvest job of cloud `cloud` (jobs of one cloud share a dedupe key when recurring).
pub fn job(id: &str, priority: JobPriority, recurring: bool, cloud: &str) -> Job {
    Job {
        id: JobId(id.into()),
        priority,
        kind: JobKind::Harvest(HarvestScope {
            cloud: CloudId(cloud.into()),
            regions: vec!["us-east-1".into()],
            types: vec![],
        }),
        enqueued_at: chrono::Utc::now(),
        recurring,
    }
}

pub fn done() -> JobOutcome {
    JobOutcome::Done {
        counts: BTreeMap::from([("resources".to_string(), 7)]),
    }
}

pub fn failed(error: &str) -> JobOutcome {
    JobOutcome::Failed {
        error: error.to_string(),
        counts: BTreeMap::new(),
    }
}

async fn enqueue(q: &dyn JobQueue, job: Job) -> bool {
    q.enqueue(job).await.expect("enqueue")
}

async fn take_now(q: &dyn JobQueue, node: &str) -> Option<Job> {
    q.take(node, Duration::ZERO).await.expect("take")
}

pub async fn p0_before_p1_before_p2(q: &dyn JobQueue) {
    for (id, p) in [
        ("a", JobPriority::P2),
        ("b", JobPriority::P1),
        ("c", JobPriority::P0),
        ("d", JobPriority::P2),
        ("e", JobPriority::P0),
    ] {
        assert!(enqueue(q, job(id, p, false, "c1")).await);
    }
    let mut order = vec![];
    while let Some(j) = take_now(q, "n").await {
        order.push(j.id.0);
    }
    assert_eq!(order, ["c", "e", "b", "a", "d"]);
}

pub async fn oldest_first_within_a_priority(q: &dyn JobQueue) {
    let ids: Vec<String> = (0..20).map(|i| format!("job-{i:02}")).collect();
    for id in &ids {
        assert!(enqueue(q, job(id, JobPriority::P1, false, "c1")).await);
    }
    let mut order = vec![];
    while let Some(j) = take_now(q, "n").await {
        order.push(j.id.0);
    }
    assert_eq!(order, ids);
}

pub async fn recurring_jobs_are_deduplicated(q: &dyn JobQueue) {
    assert!(enqueue(q, job("r1", JobPriority::P2, true, "c1")).await);
    assert!(!enqueue(q, job("r2", JobPriority::P2, true, "c1")).await);
    // another cloud is another key
    assert!(enqueue(q, job("s1", JobPriority::P2, true, "c2")).await);
    let taken = take_now(q, "n").await.expect("a job");
    assert_eq!(taken.id.as_str(), "r1");
    // still running: still refused
    assert!(!enqueue(q, job("r3", JobPriority::P2, true, "c1")).await);
    q.finish(&taken.id, done()).await.expect("finish");
    assert!(enqueue(q, job("r4", JobPriority::P2, true, "c1")).await);
    // a failed job frees its key too
    let s1 = take_now(q, "n").await.expect("a job");
    assert_eq!(s1.id.as_str(), "s1");
    q.finish(&s1.id, failed("boom")).await.expect("finish");
    assert!(enqueue(q, job("s2", JobPriority::P2, true, "c2")).await);
    // one-off jobs are never de-duplicated
    assert!(enqueue(q, job("o1", JobPriority::P0, false, "c1")).await);
    assert!(enqueue(q, job("o2", JobPriority::P0, false, "c1")).await);
}

pub async fn status_follows_the_life_cycle(q: &dyn JobQueue) {
    let j = job("life", JobPriority::P1, false, "c1");
    assert!(q.status(&j.id).await.expect("status").is_none());
    assert!(enqueue(q, j.clone()).await);
    let st = q.status(&j.id).await.expect("status").expect("known");
    assert_eq!(st.job, j);
    assert_eq!(st.state, JobState::Queued);
    assert_eq!((st.node, st.started_at, st.finished_at), (None, None, None));

    let taken = take_now(q, "node-a").await.expect("a job");
    assert_eq!(taken, j);
    let st = q.status(&j.id).await.expect("status").expect("known");
    assert_eq!(st.state, JobState::Running);
    assert_eq!(st.node.as_deref(), Some("node-a"));
    assert!(st.started_at.is_some() && st.finished_at.is_none());

    q.finish(&j.id, done()).await.expect("finish");
    let st = q.status(&j.id).await.expect("status").expect("known");
    assert_eq!(st.state, JobState::Done);
    assert_eq!(st.node.as_deref(), Some("node-a"));
    assert_eq!(st.error, None);
    assert_eq!(st.counts.get("resources"), Some(&7));
    let (started, finished) = (st.started_at.expect("start"), st.finished_at.expect("end"));
    assert!(finished >= started);
}

pub async fn finish_records_done_and_failed(q: &dyn JobQueue) {
    assert!(enqueue(q, job("ok", JobPriority::P0, false, "c1")).await);
    assert!(enqueue(q, job("bad", JobPriority::P0, false, "c1")).await);
    let ok = take_now(q, "n").await.expect("a job");
    let bad = take_now(q, "n").await.expect("a job");
    q.finish(&ok.id, done()).await.expect("finish");
    q.finish(&bad.id, failed("access denied"))
        .await
        .expect("finish");
    let st = q.status(&bad.id).await.expect("status").expect("known");
    assert_eq!(
        (st.state, st.error.as_deref()),
        (JobState::Failed, Some("access denied"))
    );
    let st = q.status(&ok.id).await.expect("status").expect("known");
    assert_eq!(st.state, JobState::Done);
    // a finished job is not handed out again
    assert!(take_now(q, "n").await.is_none());
    let unknown = q.finish(&JobId("nope".into()), done()).await;
    assert!(
        matches!(unknown, Err(QueueError::UnknownJob(_))),
        "{unknown:?}"
    );
}

pub async fn stats_report_depth_running_and_outcomes(q: &dyn JobQueue) {
    let empty = q.stats().await.expect("stats");
    assert_eq!((empty.p0.depth, empty.p1.depth, empty.p2.depth), (0, 0, 0));
    assert!(empty.in_flight_per_node.is_empty());

    let mut old = job("old", JobPriority::P2, false, "c1");
    old.enqueued_at = chrono::Utc::now() - chrono::Duration::seconds(30);
    assert!(enqueue(q, old).await);
    assert!(enqueue(q, job("new", JobPriority::P2, false, "c1")).await);
    assert!(enqueue(q, job("x", JobPriority::P0, false, "c1")).await);
    assert!(enqueue(q, job("y", JobPriority::P0, false, "c1")).await);
    let x = take_now(q, "node-a").await.expect("a job");
    let y = take_now(q, "node-b").await.expect("a job");
    let s = q.stats().await.expect("stats");
    assert_eq!((s.p0.depth, s.p0.running), (0, 2));
    assert_eq!((s.p2.depth, s.p2.running), (2, 0));
    assert!(s.p2.oldest_wait_secs >= 29.0, "{}", s.p2.oldest_wait_secs);
    assert_eq!(
        s.in_flight_per_node,
        BTreeMap::from([("node-a".to_string(), 1), ("node-b".to_string(), 1)])
    );

    q.finish(&x.id, done()).await.expect("finish");
    q.finish(&y.id, failed("boom")).await.expect("finish");
    let s = q.stats().await.expect("stats");
    assert_eq!((s.p0.running, s.p0.done, s.p0.failed), (0, 1, 1));
    assert!(s.in_flight_per_node.is_empty());
    assert!(s.p0.mean_wait_secs >= 0.0 && s.p0.mean_run_secs >= 0.0);
}

pub async fn take_waits_for_an_enqueue(q: &dyn JobQueue) {
    let (taken, queued) = tokio::join!(q.take("n", Duration::from_secs(10)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        enqueue(q, job("late", JobPriority::P1, false, "c1")).await
    });
    assert!(queued);
    let taken = taken
        .expect("take")
        .expect("the job enqueued while waiting");
    assert_eq!(taken.id.as_str(), "late");
    // nothing left: a short wait ends empty
    let none = q.take("n", Duration::from_millis(20)).await.expect("take");
    assert!(none.is_none());
}

pub async fn closed_queue_hands_out_nothing(q: &dyn JobQueue) {
    assert!(enqueue(q, job("a", JobPriority::P0, false, "c1")).await);
    // a take that is waiting when the queue closes ends empty
    let (waiting, ()) = tokio::join!(q.take("n", Duration::from_secs(10)), async {
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
    assert!(waiting.expect("take").is_some());
    let (waiting, ()) = tokio::join!(q.take("n", Duration::from_secs(10)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.close().await;
    });
    assert!(waiting.expect("take").is_none());
    let refused = q.enqueue(job("b", JobPriority::P0, false, "c1")).await;
    assert!(matches!(refused, Err(QueueError::Closed)), "{refused:?}");
    assert!(q
        .take("n", Duration::from_millis(10))
        .await
        .expect("take")
        .is_none());
}

/// A recurring job is queued when due, refused while one with its key is queued or
/// running, and not again within its interval of the last enqueue, even once finished.
pub async fn recurring_jobs_keep_their_cadence(q: &dyn JobQueue) {
    let every = Duration::from_secs(3600);
    let r = |id: &str| job(id, JobPriority::P2, true, "cadence");
    assert_eq!(
        q.enqueue_recurring(r("a"), every, None)
            .await
            .expect("enqueue"),
        Recurring::Queued
    );
    assert_eq!(
        q.enqueue_recurring(r("b"), every, None)
            .await
            .expect("enqueue"),
        Recurring::Busy
    );
    let taken = take_now(q, "n").await.expect("a job");
    q.finish(&taken.id, done()).await.expect("finish");
    assert_eq!(
        q.enqueue_recurring(r("c"), every, None)
            .await
            .expect("enqueue"),
        Recurring::NotDue,
        "queued an hour's cadence twice"
    );
    // a zero interval is always due once the last run finished
    assert_eq!(
        q.enqueue_recurring(r("d"), Duration::ZERO, None)
            .await
            .expect("enqueue"),
        Recurring::Queued
    );
    // another key has its own cadence
    assert_eq!(
        q.enqueue_recurring(job("e", JobPriority::P2, true, "other"), every, None)
            .await
            .expect("enqueue"),
        Recurring::Queued
    );
}

/// A batch take hands out up to `max` jobs in the order single takes would (p0 first,
/// oldest first within a priority), each running on the taker's node; never more.
pub async fn take_many_keeps_priority_order_and_max(q: &dyn JobQueue) {
    for (id, p) in [
        ("a", JobPriority::P2),
        ("b", JobPriority::P1),
        ("c", JobPriority::P0),
        ("d", JobPriority::P0),
        ("e", JobPriority::P2),
    ] {
        assert!(enqueue(q, job(id, p, false, "c1")).await);
    }
    // nothing asked, nothing taken, even with jobs ready
    let none = q.take_many("n", 0, Duration::from_secs(10)).await;
    assert!(none.expect("take").is_empty());
    let first = q
        .take_many("node-a", 3, Duration::ZERO)
        .await
        .expect("take");
    assert_eq!(ids(&first), ["c", "d", "b"]);
    for j in &first {
        let st = q.status(&j.id).await.expect("status").expect("known");
        assert_eq!(st.state, JobState::Running);
        assert_eq!(st.node.as_deref(), Some("node-a"));
    }
    let s = q.stats().await.expect("stats");
    assert_eq!((s.p0.running, s.p1.running, s.p2.depth), (2, 1, 2));
    let rest = q
        .take_many("node-b", 10, Duration::ZERO)
        .await
        .expect("take");
    assert_eq!(ids(&rest), ["a", "e"]);
    let empty = q
        .take_many("node-b", 10, Duration::ZERO)
        .await
        .expect("take");
    assert!(empty.is_empty());
}

/// A batch take on an empty queue waits for the first job, and returns it without waiting
/// for more.
pub async fn take_many_waits_for_the_first_job(q: &dyn JobQueue) {
    let (taken, queued) = tokio::join!(q.take_many("n", 4, Duration::from_secs(10)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        enqueue(q, job("late", JobPriority::P2, false, "c1")).await
    });
    assert!(queued);
    assert_eq!(ids(&taken.expect("take")), ["late"]);
    let st = q
        .status(&JobId("late".into()))
        .await
        .expect("status")
        .expect("known");
    assert_eq!(
        (st.state, st.node.as_deref()),
        (JobState::Running, Some("n"))
    );
    let none = q.take_many("n", 4, Duration::from_millis(20)).await;
    assert!(none.expect("take").is_empty());
}

/// `finish_and_take` records every outcome first (an unknown id is named, not an error),
/// then takes in priority order; acknowledged jobs are never handed out again.
pub async fn finish_and_take_acknowledges_then_takes(q: &dyn JobQueue) {
    for (id, p) in [
        ("x", JobPriority::P1),
        ("y", JobPriority::P1),
        ("z", JobPriority::P2),
        ("w", JobPriority::P2),
    ] {
        assert!(enqueue(q, job(id, p, false, "c1")).await);
    }
    let taken = q.take_many("n", 2, Duration::ZERO).await.expect("take");
    assert_eq!(ids(&taken), ["x", "y"]);
    let finished = vec![
        (JobId("x".into()), done()),
        (JobId("y".into()), failed("boom")),
        (JobId("ghost".into()), done()),
    ];
    let batch = q
        .finish_and_take(finished, "n", 1, Duration::ZERO)
        .await
        .expect("finish and take");
    assert_eq!(ids(&batch.jobs), ["z"]);
    assert_eq!(batch.unknown, [JobId("ghost".into())]);
    let x = q.status(&JobId("x".into())).await.expect("status");
    assert_eq!(x.expect("known").state, JobState::Done);
    let y = q.status(&JobId("y".into())).await.expect("status");
    let y = y.expect("known");
    assert_eq!(
        (y.state, y.error.as_deref()),
        (JobState::Failed, Some("boom"))
    );
    let s = q.stats().await.expect("stats");
    assert_eq!((s.p1.done, s.p1.failed, s.p1.running), (1, 1, 0));
    assert_eq!((s.p2.running, s.p2.depth), (1, 1));
    // acknowledge only: nothing taken, nothing waited for
    let batch = q
        .finish_and_take(
            vec![(JobId("z".into()), done())],
            "n",
            0,
            Duration::from_secs(10),
        )
        .await
        .expect("finish");
    assert!(batch.jobs.is_empty() && batch.unknown.is_empty());
    let rest = q.take_many("n", 10, Duration::ZERO).await.expect("take");
    assert_eq!(ids(&rest), ["w"]);
    let s = q.stats().await.expect("stats");
    assert_eq!((s.p2.done, s.p2.running, s.p2.depth), (1, 1, 0));
}

/// A taker holding jobs it has not started (a worker's prefetch) learns from its next call
/// that a p0 job waits, gives them back, and then takes the p0 job first: the given-back
/// jobs are at the head of their priority, in the order given, ahead of older queued ones,
/// and not running. Giving back a job that is no longer running changes nothing.
pub async fn given_back_jobs_return_to_the_head_after_a_p0(q: &dyn JobQueue) {
    for id in ["a", "b", "c", "d"] {
        assert!(enqueue(q, job(id, JobPriority::P2, false, "c1")).await);
    }
    // `a` runs; `b` and `c` are prefetched
    let taken = q.take_many("n", 3, Duration::ZERO).await.expect("take");
    assert_eq!(ids(&taken), ["a", "b", "c"]);
    assert!(enqueue(q, job("z", JobPriority::P0, false, "c1")).await);
    let batch = q
        .finish_and_take(vec![(JobId("a".into()), done())], "n", 0, Duration::ZERO)
        .await
        .expect("finish");
    assert!(batch.p0_waiting, "the answer says a p0 job waits");
    assert!(batch.jobs.is_empty());
    let back = vec![
        (JobId("b".into()), JobOutcome::GivenBack),
        (JobId("c".into()), JobOutcome::GivenBack),
    ];
    let batch = q
        .finish_and_take(back, "n", 1, Duration::ZERO)
        .await
        .expect("give back and take");
    assert_eq!(ids(&batch.jobs), ["z"], "the p0 job is taken first");
    assert!(!batch.p0_waiting && batch.unknown.is_empty());
    let b = q.status(&JobId("b".into())).await.expect("status");
    let b = b.expect("known");
    assert_eq!(
        (b.state, b.node, b.started_at),
        (JobState::Queued, None, None)
    );
    let s = q.stats().await.expect("stats");
    assert_eq!((s.p2.depth, s.p2.running, s.p2.done), (3, 0, 1));
    assert_eq!((s.p0.running, s.p0.depth), (1, 0));
    // a finished job given back stays finished
    let batch = q
        .finish_and_take(
            vec![(JobId("a".into()), JobOutcome::GivenBack)],
            "n",
            0,
            Duration::ZERO,
        )
        .await
        .expect("give back a finished job");
    assert!(batch.unknown.is_empty());
    let a = q.status(&JobId("a".into())).await.expect("status");
    assert_eq!(a.expect("known").state, JobState::Done);
    let rest = q.take_many("n2", 10, Duration::ZERO).await.expect("take");
    assert_eq!(ids(&rest), ["b", "c", "d"]);
}

/// `enqueue_many` answers per job as `enqueue` would, and keeps the order given.
pub async fn enqueue_many_answers_per_job_in_order(q: &dyn JobQueue) {
    let queued = q
        .enqueue_many(vec![
            job("m1", JobPriority::P2, false, "c1"),
            job("r1", JobPriority::P2, true, "c1"),
            job("r2", JobPriority::P2, true, "c1"),
            job("m2", JobPriority::P0, false, "c1"),
            job("m3", JobPriority::P2, false, "c1"),
        ])
        .await
        .expect("enqueue many");
    assert_eq!(queued, [true, true, false, true, true]);
    let taken = q.take_many("n", 10, Duration::ZERO).await.expect("take");
    assert_eq!(ids(&taken), ["m2", "m1", "r1", "m3"]);
    assert!(q
        .status(&JobId("r2".into()))
        .await
        .expect("status")
        .is_none());
}

#[cfg(test)]
mod tests {
    /// One test per check and implementation: `memory_queue::<check>`,
    /// `redis_queue::<check>` (a fresh key prefix each, removed afterwards).
    macro_rules! against_both {
        ($($check:ident),* $(,)?) => {
            mod memory_queue {
                $(
                    #[tokio::test]
                    async fn $check() {
                        let q = crate::queue::memory::MemoryQueue::new(100);
                        super::super::$check(&q).await;
                    }
                )*
            }
            mod redis_queue {
                $(
                    #[tokio::test]
                    async fn $check() {
                        let scratch = crate::queue::redis_tests::Scratch::new(stringify!($check));
                        let opts = crate::queue::redis::RedisQueueOptions {
                            max_attempts: 1,
                            ..scratch.options()
                        };
                        let q = scratch.queue(opts).await;
                        super::super::$check(&q).await;
                    }
                )*
            }
        };
    }

    against_both!(
        p0_before_p1_before_p2,
        oldest_first_within_a_priority,
        recurring_jobs_are_deduplicated,
        status_follows_the_life_cycle,
        finish_records_done_and_failed,
        stats_report_depth_running_and_outcomes,
        take_waits_for_an_enqueue,
        closed_queue_hands_out_nothing,
        recurring_jobs_keep_their_cadence,
        take_many_keeps_priority_order_and_max,
        take_many_waits_for_the_first_job,
        finish_and_take_acknowledges_then_takes,
        enqueue_many_answers_per_job_in_order,
        given_back_jobs_return_to_the_head_after_a_p0,
    );
}
