//! The in-process queue: three FIFO lists behind one mutex, for a single node.
//!
//! Jobs live only in memory: a single node that restarts re-creates its recurring jobs
//! from the cadence, and on-demand jobs are re-requested by their users. The Redis queue
//! (`redis.rs`) is the durable one. A failed job is final here: it is not retried, and the
//! dead-letter list stays empty (the Redis queue retries and dead-letters).

use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

use palisade_proto::{Job, JobId, JobPriority, JobState, JobStatus, Timestamp};

use super::{Batch, Fence, JobOutcome, JobQueue, QueueError, QueueStats, Recurring, CANCELLED};

/// How many recent jobs per priority the wait and run means are taken over.
const RECENT: usize = 100;

#[derive(Default)]
struct Recent {
    waits: VecDeque<f64>,
    runs: VecDeque<f64>,
    done: u64,
    failed: u64,
}

fn push_bounded(v: &mut VecDeque<f64>, x: f64) {
    if v.len() == RECENT {
        v.pop_front();
    }
    v.push_back(x);
}

fn mean(v: &VecDeque<f64>) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn secs_between(a: Timestamp, b: Timestamp) -> f64 {
    (b - a).num_milliseconds().max(0) as f64 / 1000.0
}

#[derive(Default)]
struct Inner {
    waiting: [VecDeque<JobId>; 3],
    statuses: HashMap<JobId, JobStatus>,
    /// Dedupe keys of recurring jobs queued or running.
    active_keys: HashMap<String, JobId>,
    /// When each recurring job (by dedupe key) was last queued.
    recurring: HashMap<String, std::time::Instant>,
    /// Finished jobs, oldest first, kept up to the history limit.
    finished: VecDeque<JobId>,
    recent: [Recent; 3],
    closed: bool,
}

/// The in-process [`JobQueue`].
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    wake: Notify,
    history: usize,
}

impl MemoryQueue {
    /// A queue that remembers up to `history` finished jobs.
    pub fn new(history: usize) -> Self {
        MemoryQueue {
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            history: history.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_take(&self, node: &str) -> Result<Option<Job>, QueueError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(QueueError::Closed);
        }
        for p in JobPriority::ALL {
            while let Some(id) = inner.waiting[p.index()].pop_front() {
                let now = chrono::Utc::now();
                let Some(status) = inner.statuses.get_mut(&id) else {
                    continue;
                };
                status.state = JobState::Running;
                status.started_at = Some(now);
                status.node = Some(node.to_string());
                let job = status.job.clone();
                let wait = secs_between(job.enqueued_at, now);
                push_bounded(&mut inner.recent[p.index()].waits, wait);
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Put a running job back at the head of its priority, as if never taken; a job that
    /// is not running is left as it is.
    fn give_back(&self, id: &JobId) -> Result<(), QueueError> {
        {
            let mut inner = self.lock();
            let status = inner
                .statuses
                .get_mut(id)
                .ok_or_else(|| QueueError::UnknownJob(id.clone()))?;
            if status.state != JobState::Running {
                return Ok(());
            }
            status.state = JobState::Queued;
            status.started_at = None;
            status.node = None;
            let p = status.job.priority;
            inner.waiting[p.index()].push_front(id.clone());
        }
        self.wake.notify_one();
        Ok(())
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, job: Job) -> Result<bool, QueueError> {
        {
            let mut inner = self.lock();
            if inner.closed {
                return Err(QueueError::Closed);
            }
            if let Some(key) = job.dedupe_key() {
                if inner.active_keys.contains_key(&key) {
                    return Ok(false);
                }
                inner.active_keys.insert(key, job.id.clone());
            }
            inner.waiting[job.priority.index()].push_back(job.id.clone());
            inner
                .statuses
                .insert(job.id.clone(), JobStatus::queued(job));
        }
        self.wake.notify_one();
        Ok(true)
    }

    async fn enqueue_recurring(
        &self,
        job: Job,
        every: Duration,
        _fence: Option<&Fence>,
    ) -> Result<Recurring, QueueError> {
        let Some(key) = job.dedupe_key() else {
            return Ok(if self.enqueue(job).await? {
                Recurring::Queued
            } else {
                Recurring::Busy
            });
        };
        {
            let mut inner = self.lock();
            if inner.closed {
                return Err(QueueError::Closed);
            }
            if inner.active_keys.contains_key(&key) {
                return Ok(Recurring::Busy);
            }
            let now = std::time::Instant::now();
            if inner
                .recurring
                .get(&key)
                .is_some_and(|last| now.duration_since(*last) < every)
            {
                return Ok(Recurring::NotDue);
            }
            inner.recurring.insert(key, now);
        }
        Ok(if self.enqueue(job).await? {
            Recurring::Queued
        } else {
            Recurring::Busy
        })
    }

    async fn take(&self, node: &str, wait: Duration) -> Result<Option<Job>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for a wake-up before looking, so an enqueue in between is not missed.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_take(node) {
                Ok(Some(job)) => return Ok(Some(job)),
                Ok(None) => {}
                Err(QueueError::Closed) => return Ok(None),
                Err(e) => return Err(e),
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn finish(&self, id: &JobId, outcome: JobOutcome) -> Result<(), QueueError> {
        if outcome == JobOutcome::GivenBack {
            return self.give_back(id);
        }
        let mut inner = self.lock();
        let now = chrono::Utc::now();
        let status = inner
            .statuses
            .get_mut(id)
            .ok_or_else(|| QueueError::UnknownJob(id.clone()))?;
        let (state, error, counts) = match outcome {
            JobOutcome::GivenBack => return Ok(()), // given back above
            JobOutcome::Done { counts } => (JobState::Done, None, counts),
            JobOutcome::Failed { error, counts } => (JobState::Failed, Some(error), counts),
            JobOutcome::Cancelled => (
                JobState::Failed,
                Some(CANCELLED.to_string()),
                Default::default(),
            ),
        };
        status.state = state;
        status.error = error;
        status.counts = counts;
        status.finished_at = Some(now);
        let run = status
            .started_at
            .map(|s| secs_between(s, now))
            .unwrap_or(0.0);
        let priority = status.job.priority;
        let key = status.job.dedupe_key();
        if let Some(key) = key {
            if inner.active_keys.get(&key) == Some(id) {
                inner.active_keys.remove(&key);
            }
        }
        let recent = &mut inner.recent[priority.index()];
        push_bounded(&mut recent.runs, run);
        match state {
            JobState::Failed => recent.failed += 1,
            _ => recent.done += 1,
        }
        inner.finished.push_back(id.clone());
        while inner.finished.len() > self.history {
            if let Some(old) = inner.finished.pop_front() {
                inner.statuses.remove(&old);
            }
        }
        Ok(())
    }

    async fn status(&self, id: &JobId) -> Result<Option<JobStatus>, QueueError> {
        Ok(self.lock().statuses.get(id).cloned())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let inner = self.lock();
        let now = chrono::Utc::now();
        let mut stats = QueueStats::default();
        for p in JobPriority::ALL {
            let s = stats.get_mut(p);
            let waiting = &inner.waiting[p.index()];
            s.depth = waiting.len() as u64;
            s.oldest_wait_secs = waiting
                .front()
                .and_then(|id| inner.statuses.get(id))
                .map(|st| secs_between(st.job.enqueued_at, now))
                .unwrap_or(0.0);
            let recent = &inner.recent[p.index()];
            s.mean_wait_secs = mean(&recent.waits);
            s.mean_run_secs = mean(&recent.runs);
            s.done = recent.done;
            s.failed = recent.failed;
        }
        for st in inner.statuses.values() {
            if st.state == JobState::Running {
                stats.get_mut(st.job.priority).running += 1;
                let node = st.node.clone().unwrap_or_default();
                *stats.in_flight_per_node.entry(node).or_insert(0) += 1;
            }
        }
        Ok(stats)
    }

    async fn dead_letters(&self, _limit: usize) -> Result<Vec<JobStatus>, QueueError> {
        Ok(Vec::new())
    }

    async fn requeue_dead(&self, _id: &JobId) -> Result<bool, QueueError> {
        Ok(false)
    }

    async fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_waiters();
    }

    async fn finish_and_take(
        &self,
        finished: Vec<(JobId, JobOutcome)>,
        node: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Batch, QueueError> {
        let mut batch = Batch::default();
        // Outcomes in order; given-back jobs last to first, so the first given back ends
        // up at the head of its priority, as the Redis queue puts them.
        let (back, ended): (Vec<_>, Vec<_>) = finished
            .into_iter()
            .partition(|(_, outcome)| *outcome == JobOutcome::GivenBack);
        for (id, outcome) in ended.into_iter().chain(back.into_iter().rev()) {
            match self.finish(&id, outcome).await {
                Ok(()) => {}
                Err(QueueError::UnknownJob(id)) => batch.unknown.push(id),
                Err(e) => return Err(e),
            }
        }
        batch.jobs = self.take_many(node, max, wait).await?;
        batch.p0_waiting = !self.lock().waiting[JobPriority::P0.index()].is_empty();
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_proto::{CloudId, HarvestScope, JobKind};

    fn job(id: &str, priority: JobPriority, recurring: bool) -> Job {
        Job {
            id: JobId(id.into()),
            priority,
            kind: JobKind::Harvest(HarvestScope {
                cloud: CloudId("c".into()),
                regions: vec!["us-east-1".into()],
                types: vec![],
            }),
            enqueued_at: chrono::Utc::now(),
            recurring,
        }
    }

    #[tokio::test]
    async fn p0_is_taken_before_older_p1_and_p2() {
        let q = MemoryQueue::new(10);
        q.enqueue(job("a", JobPriority::P2, false))
            .await
            .expect("enqueue");
        q.enqueue(job("b", JobPriority::P1, false))
            .await
            .expect("enqueue");
        q.enqueue(job("c", JobPriority::P0, false))
            .await
            .expect("enqueue");
        q.enqueue(job("d", JobPriority::P2, false))
            .await
            .expect("enqueue");
        let mut order = vec![];
        while let Some(j) = q.take("n", Duration::ZERO).await.expect("take") {
            order.push(j.id.0);
        }
        assert_eq!(order, ["c", "b", "a", "d"]);
    }

    #[tokio::test]
    async fn recurring_job_is_never_queued_twice_until_finished() {
        let q = MemoryQueue::new(10);
        assert!(q
            .enqueue(job("r1", JobPriority::P2, true))
            .await
            .expect("enqueue"));
        assert!(!q
            .enqueue(job("r2", JobPriority::P2, true))
            .await
            .expect("enqueue"));
        let taken = q
            .take("n", Duration::ZERO)
            .await
            .expect("take")
            .expect("job");
        // still running: still refused
        assert!(!q
            .enqueue(job("r3", JobPriority::P2, true))
            .await
            .expect("enqueue"));
        let done = JobOutcome::Done {
            counts: Default::default(),
        };
        q.finish(&taken.id, done).await.expect("finish");
        assert!(q
            .enqueue(job("r4", JobPriority::P2, true))
            .await
            .expect("enqueue"));
        // one-off jobs are never de-duplicated
        assert!(q
            .enqueue(job("o1", JobPriority::P0, false))
            .await
            .expect("enqueue"));
        assert!(q
            .enqueue(job("o2", JobPriority::P0, false))
            .await
            .expect("enqueue"));
    }

    #[tokio::test]
    async fn take_waits_for_an_enqueue_and_status_follows_the_job() {
        let q = std::sync::Arc::new(MemoryQueue::new(1));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.take("n1", Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.enqueue(job("w", JobPriority::P1, false))
            .await
            .expect("enqueue");
        let got = waiter.await.expect("join").expect("take").expect("a job");
        let st = q.status(&got.id).await.expect("status").expect("known");
        assert_eq!(st.state, JobState::Running);
        assert_eq!(st.node.as_deref(), Some("n1"));
        let failed = JobOutcome::Failed {
            error: "boom".into(),
            counts: Default::default(),
        };
        q.finish(&got.id, failed).await.expect("finish");
        let st = q.status(&got.id).await.expect("status").expect("known");
        assert_eq!(
            (st.state, st.error.as_deref()),
            (JobState::Failed, Some("boom"))
        );
        let stats = q.stats().await.expect("stats");
        assert_eq!(stats.p1.failed, 1);
        // history of one: the next finished job evicts this one
        q.enqueue(job("x", JobPriority::P0, false))
            .await
            .expect("enqueue");
        let x = q
            .take("n1", Duration::ZERO)
            .await
            .expect("take")
            .expect("job");
        q.finish(
            &x.id,
            JobOutcome::Done {
                counts: Default::default(),
            },
        )
        .await
        .expect("finish");
        assert!(q.status(&got.id).await.expect("status").is_none());
    }

    #[tokio::test]
    async fn stats_report_depth_and_oldest_wait_per_priority() {
        let q = MemoryQueue::new(10);
        let mut old = job("old", JobPriority::P2, false);
        old.enqueued_at = chrono::Utc::now() - chrono::Duration::seconds(30);
        q.enqueue(old).await.expect("enqueue");
        q.enqueue(job("new", JobPriority::P2, false))
            .await
            .expect("enqueue");
        let s = q.stats().await.expect("stats");
        assert_eq!((s.p0.depth, s.p2.depth), (0, 2));
        assert!(s.p2.oldest_wait_secs >= 29.0, "{}", s.p2.oldest_wait_secs);
    }

    #[tokio::test]
    async fn closed_queue_hands_out_nothing() {
        let q = MemoryQueue::new(10);
        q.enqueue(job("a", JobPriority::P0, false))
            .await
            .expect("enqueue");
        q.close().await;
        assert!(q
            .take("n", Duration::from_millis(10))
            .await
            .expect("take")
            .is_none());
    }
}
