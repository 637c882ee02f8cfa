//! The queue port: p0/p1/p2 job queues, job status and queue statistics.
//!
//! Owns: the [`JobQueue`] trait, its in-process implementation ([`memory`]) for a single
//! node and its Redis implementation ([`redis`]) for a cluster; `contract` holds the checks
//! both must pass.
//!
//! Must never: run jobs (workers do), or let a queued p1/p2 job start before a queued p0.

#[cfg(test)]
pub mod contract;
pub mod memory;
pub mod redis;
#[cfg(test)]
pub(crate) mod redis_tests;

use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use palisade_proto::{Job, JobId, JobPriority, JobStatus};

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("job {0} is not known")]
    UnknownJob(JobId),
    #[error("queue is closed")]
    Closed,
}

/// The error a cancelled job is recorded with.
pub const CANCELLED: &str = "cancelled by request";

/// How a taken job ended, or that it is given back unstarted.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    Done {
        counts: BTreeMap<String, u64>,
    },
    Failed {
        error: String,
        counts: BTreeMap<String, u64>,
    },
    /// Cancelled on request while it ran: failed for good, never retried (a queue that
    /// keeps dead letters keeps it there, to be queued again by hand).
    Cancelled,
    /// Never started: the taker gives the job back (a worker's prefetched job that a p0
    /// job overtakes). It goes back to the head of its priority as if never taken: its
    /// lease dropped, the attempt not counted, no outcome recorded. A job whose lease the
    /// taker no longer holds (it lapsed, or the job was finished) is left as it is.
    GivenBack,
}

/// One priority's figures for the queue status view.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PriorityStats {
    /// Jobs waiting.
    pub depth: u64,
    /// Seconds the oldest waiting job has waited.
    pub oldest_wait_secs: f64,
    /// Mean seconds a job waited before it started, over recent jobs.
    pub mean_wait_secs: f64,
    /// Mean seconds a job ran, over recent jobs.
    pub mean_run_secs: f64,
    /// Jobs running now.
    pub running: u64,
    /// Jobs finished since start.
    pub done: u64,
    /// Jobs failed for good since start (a failure that is retried is not counted).
    pub failed: u64,
}

/// The queue status view, per priority.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub p0: PriorityStats,
    pub p1: PriorityStats,
    pub p2: PriorityStats,
    /// Jobs running now, per node that took them.
    pub in_flight_per_node: BTreeMap<String, u64>,
    /// Jobs in the dead-letter list: they failed (or their lease lapsed) too often.
    pub dead_letter: u64,
}

impl QueueStats {
    pub fn get_mut(&mut self, p: JobPriority) -> &mut PriorityStats {
        match p {
            JobPriority::P0 => &mut self.p0,
            JobPriority::P1 => &mut self.p1,
            JobPriority::P2 => &mut self.p2,
        }
    }
}

/// Proof of the scheduler leadership a write is made under: the leader lease's key and the
/// value it must still hold (`<node>|<fencing token>`). A queue that shares the lease's
/// store (Redis) checks it atomically with the write, so a deposed leader's writes are
/// refused; the in-process queue has no rival leaders and ignores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub value: String,
    pub token: u64,
}

/// What [`JobQueue::enqueue_recurring`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recurring {
    Queued,
    /// A job with the same dedupe key is queued or running.
    Busy,
    /// Some node queued it less than its interval ago.
    NotDue,
    /// The fence no longer holds: this node is not the leader any more.
    Deposed,
}

/// What [`JobQueue::finish_and_take`] did: the jobs it took, and the finished ids it did
/// not know (unknown or expired; their outcomes are not recorded).
#[derive(Debug, Default)]
pub struct Batch {
    pub jobs: Vec<Job>,
    pub unknown: Vec<JobId>,
    /// p0 jobs were ready, and not taken, when the call ended: a taker holding jobs it has
    /// not started gives back its p1 and p2 ones. False when the queue cannot tell.
    pub p0_waiting: bool,
}

/// A priority job queue with job status.
///
/// The batch methods (`enqueue_many`, `take_many`, `finish_and_take`) have defaults in
/// terms of the single ones; a queue across a network implements them natively, so that a
/// batch costs one round trip.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Queue a job. Returns false, queueing nothing, when it is recurring and a job with the
    /// same dedupe key is already queued or running.
    async fn enqueue(&self, job: Job) -> Result<bool, QueueError>;
    /// Queue a recurring job (one with a dedupe key) when it is due: no job with its key
    /// queued or running, and none queued by any node in the last `every`. With `fence`,
    /// only while the fence holds. The time of the last enqueue is kept by the queue, so a
    /// new leader neither repeats nor skips what the old one queued.
    async fn enqueue_recurring(
        &self,
        job: Job,
        every: Duration,
        fence: Option<&Fence>,
    ) -> Result<Recurring, QueueError>;
    /// Take the next job for `node`: p0 before p1 before p2, oldest first within a
    /// priority. Waits up to `wait` for one to arrive.
    async fn take(&self, node: &str, wait: Duration) -> Result<Option<Job>, QueueError>;
    /// Record how a taken job ended, or give it back unstarted ([`JobOutcome::GivenBack`]).
    async fn finish(&self, id: &JobId, outcome: JobOutcome) -> Result<(), QueueError>;
    /// A job's status, while queued, running, or recently finished.
    async fn status(&self, id: &JobId) -> Result<Option<JobStatus>, QueueError>;
    async fn stats(&self) -> Result<QueueStats, QueueError>;
    /// Up to `limit` dead-lettered jobs, newest first, each with its last error.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobStatus>, QueueError>;
    /// Put a dead-lettered job back at the end of its priority's queue, its attempts reset.
    /// Returns false when `id` is not a dead letter, or when a recurring job with the same
    /// dedupe key is queued or running.
    async fn requeue_dead(&self, id: &JobId) -> Result<bool, QueueError>;
    /// Stop handing out jobs: `take` returns none from now on.
    async fn close(&self);

    /// Queue several jobs, in order; one answer per job, as [`JobQueue::enqueue`] gives it.
    async fn enqueue_many(&self, jobs: Vec<Job>) -> Result<Vec<bool>, QueueError> {
        let mut queued = Vec::with_capacity(jobs.len());
        for job in jobs {
            queued.push(self.enqueue(job).await?);
        }
        Ok(queued)
    }

    /// Take up to `max` jobs for `node`, as [`JobQueue::take`] takes one: p0 before p1
    /// before p2, oldest first, each leased to `node`. Waits up to `wait` for the first one
    /// when none is ready; never waits for more. `max` 0 takes nothing and does not wait.
    async fn take_many(
        &self,
        node: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let mut jobs = Vec::new();
        if max == 0 {
            return Ok(jobs);
        }
        let Some(first) = self.take(node, wait).await? else {
            return Ok(jobs);
        };
        jobs.push(first);
        while jobs.len() < max {
            match self.take(node, Duration::ZERO).await? {
                Some(job) => jobs.push(job),
                None => break,
            }
        }
        Ok(jobs)
    }

    /// Record how taken jobs ended (as [`JobQueue::finish`] does, in order; given-back jobs
    /// go back before anything is taken), then take up to `max` more as
    /// [`JobQueue::take_many`] does: a worker pool's one call per turn, which also says
    /// whether p0 jobs are left waiting ([`Batch::p0_waiting`]).
    /// An error means some outcomes may not be recorded: their jobs run again once their
    /// leases lapse.
    async fn finish_and_take(
        &self,
        finished: Vec<(JobId, JobOutcome)>,
        node: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Batch, QueueError> {
        let mut batch = Batch::default();
        for (id, outcome) in finished {
            match self.finish(&id, outcome).await {
                Ok(()) => {}
                Err(QueueError::UnknownJob(id)) => batch.unknown.push(id),
                Err(e) => return Err(e),
            }
        }
        batch.jobs = self.take_many(node, max, wait).await?;
        Ok(batch)
    }
}

pub type SharedQueue = Arc<dyn JobQueue>;
