//! The queue port: p0/p1/p2 job queues, job status and queue statistics.
//!
//! Owns: the [`JobQueue`] trait and its in-process implementation ([`memory`]). The
//! cluster's Redis implementation implements the same trait.
//!
//! Must never: run jobs (workers do), or let a queued p1/p2 job start before a queued p0.

pub mod memory;

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

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    Done {
        counts: BTreeMap<String, u64>,
    },
    Failed {
        error: String,
        counts: BTreeMap<String, u64>,
    },
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
    pub failed: u64,
}

/// The queue status view, per priority.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub p0: PriorityStats,
    pub p1: PriorityStats,
    pub p2: PriorityStats,
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

/// A priority job queue with job status.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Queue a job. Returns false, queueing nothing, when it is recurring and a job with the
    /// same dedupe key is already queued or running.
    async fn enqueue(&self, job: Job) -> Result<bool, QueueError>;
    /// Take the next job for `node`: p0 before p1 before p2, oldest first within a
    /// priority. Waits up to `wait` for one to arrive.
    async fn take(&self, node: &str, wait: Duration) -> Result<Option<Job>, QueueError>;
    /// Record how a taken job ended.
    async fn finish(&self, id: &JobId, outcome: JobOutcome) -> Result<(), QueueError>;
    /// A job's status, while queued, running, or recently finished.
    async fn status(&self, id: &JobId) -> Result<Option<JobStatus>, QueueError>;
    async fn stats(&self) -> Result<QueueStats, QueueError>;
    /// Stop handing out jobs: `take` returns none from now on.
    async fn close(&self);
}

pub type SharedQueue = Arc<dyn JobQueue>;
