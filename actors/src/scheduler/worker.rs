//! The worker actor: takes jobs from the queue in priority order and runs them.
//!
//! Owns: `scheduler.workers` job slots on this node ([`run_slots`]: one loop that takes
//! jobs for all free slots in one queue call and acknowledges finished ones in the same
//! call), the count of running jobs, and acknowledging every job it takes (done or failed,
//! never silently dropped). After a harvest it queues the p1 compliance run for that cloud.
//!
//! Must never: run more jobs at once than it has slots, take a job for a slot that is not
//! free (a p0 job queued meanwhile would wait behind it), or run a harvest or an evaluation
//! itself: it sends them to the harvester and compliance actors, so that a crash there
//! fails one job and not the worker.

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_proto::{ClusterEvent, Job, JobId, JobKind, JobPriority};
use tokio::sync::Notify;

use super::{submit, RoleAddrs};
use crate::bus::SharedBus;
use crate::compliance::actor::RunCompliance;
use crate::harvest::actor::RunHarvest;
use crate::harvest::HarvestError;
use crate::queue::{Batch, JobOutcome, QueueError, SharedQueue};
use crate::store::SharedStore;

/// How long a pool with free slots waits on an empty queue before it looks again.
const TAKE_WAIT: Duration = Duration::from_millis(500);

/// What a worker needs to run jobs.
#[derive(Clone)]
pub struct WorkerDeps {
    pub node: String,
    pub store: SharedStore,
    pub queue: SharedQueue,
    pub bus: SharedBus,
    pub roles: RoleAddrs,
    /// Jobs running on this node now.
    pub running: Arc<AtomicUsize>,
    /// Set when the node drains: slots finish their job and take no more.
    pub draining: Arc<AtomicBool>,
    /// Notified when `draining` is set, so that slots waiting for a job stop waiting.
    pub drained: Arc<Notify>,
    /// The jobs running here, each with the signal that cancels it.
    pub running_jobs: RunningJobs,
}

/// The jobs a node is running, by id, each with its cancel signal.
#[derive(Clone, Default)]
pub struct RunningJobs(Arc<std::sync::Mutex<std::collections::HashMap<JobId, Arc<Notify>>>>);

impl RunningJobs {
    fn start(&self, id: &JobId) -> Arc<Notify> {
        let signal = Arc::new(Notify::new());
        self.lock().insert(id.clone(), signal.clone());
        signal
    }

    fn end(&self, id: &JobId) {
        self.lock().remove(id);
    }

    /// Cancel `id` if it runs here; true when it does.
    pub fn cancel(&self, id: &JobId) -> bool {
        match self.lock().get(id) {
            Some(signal) => {
                // a stored permit: the job sees it even if it is not waiting yet
                signal.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<JobId, Arc<Notify>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct WorkerActor {
    deps: WorkerDeps,
    slots: usize,
}

impl WorkerActor {
    pub fn new(deps: WorkerDeps, slots: usize) -> Self {
        WorkerActor { deps, slots }
    }
}

impl Actor for WorkerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(slots = self.slots, node = %self.deps.node, "worker started");
        if self.slots == 0 {
            return;
        }
        let deps = self.deps.clone();
        let control = SlotControl {
            draining: deps.draining.clone(),
            drained: deps.drained.clone(),
            running: deps.running.clone(),
        };
        let slots = run_slots(
            deps.queue.clone(),
            deps.node.clone(),
            self.slots,
            control,
            move |job| {
                let deps = deps.clone();
                async move {
                    let cancel = deps.running_jobs.start(&job.id);
                    let outcome = run_job(&deps, &job, cancel).await;
                    deps.running_jobs.end(&job.id);
                    outcome
                }
            },
        );
        ctx.spawn(slots.into_actor(self).map(|_, _, _| ()));
    }
}

/// What stops a slot pool, and what it reports.
#[derive(Clone, Default)]
pub struct SlotControl {
    /// Set when the node drains: running jobs finish, and no more are taken.
    pub draining: Arc<AtomicBool>,
    /// Notified when `draining` is set, so that a pool waiting for a job stops waiting.
    pub drained: Arc<Notify>,
    /// Jobs running now (started and not yet ended).
    pub running: Arc<AtomicUsize>,
}

type QueueCall = Pin<Box<dyn Future<Output = Result<Batch, QueueError>> + Send>>;

/// Polls a queue call when there is one; pending for ever when there is none.
async fn poll_call(call: &mut Option<QueueCall>) -> Result<Batch, QueueError> {
    match call.as_mut() {
        Some(call) => call.await,
        None => std::future::pending().await,
    }
}

/// One queue call: acknowledge `acks`, then take up to `max` jobs, waiting up to `wait`
/// for the first. A failed call pauses a second before it reports, so that a pool does
/// not spin on a queue that is down.
fn queue_call(
    queue: &SharedQueue,
    node: &str,
    acks: Vec<(JobId, JobOutcome)>,
    max: usize,
    wait: Duration,
) -> QueueCall {
    let (queue, node) = (queue.clone(), node.to_string());
    Box::pin(async move {
        let result = queue.finish_and_take(acks, &node, max, wait).await;
        if result.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        result
    })
}

/// Run `slots` jobs at a time from `queue` for `node`, each with `run`, until `control`
/// drains the pool; then let the running jobs finish, acknowledge them and return.
///
/// One queue call per turn acknowledges every job that finished since the last call and
/// takes jobs for every free slot, p0 first; when none is ready, the same call waits for
/// one (the queue records the outcomes before it waits). A waiting call is never cut
/// short by a job finishing: those are acknowledged by a second call alongside. Never more
/// than `slots` jobs run, and a job is taken only for a free slot.
pub async fn run_slots<F, Fut>(
    queue: SharedQueue,
    node: String,
    slots: usize,
    control: SlotControl,
    mut run: F,
) where
    F: FnMut(Job) -> Fut,
    Fut: Future<Output = JobOutcome>,
{
    let slots = slots.max(1);
    let mut running = FuturesUnordered::new();
    // outcomes not yet sent to the queue
    let mut acks: Vec<(JobId, JobOutcome)> = Vec::new();
    // the call that takes jobs (and carries the acks of its turn), how many acks it
    // carries, and whether it may wait for a job
    let mut take: Option<QueueCall> = None;
    let mut take_acks = 0;
    let mut take_waits = false;
    // a call that only acknowledges, while `take` waits for a job
    let mut ack: Option<QueueCall> = None;
    let mut ack_count = 0;
    loop {
        // register for the drain signal before looking at the flag, so none is missed
        let drained = control.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        let draining = control.draining.load(Ordering::SeqCst);
        if take.is_none() {
            let free = if draining {
                0
            } else {
                slots.saturating_sub(running.len())
            };
            if free > 0 || !acks.is_empty() {
                let batch = std::mem::take(&mut acks);
                take_waits = free > 0;
                let wait = if take_waits {
                    TAKE_WAIT
                } else {
                    Duration::ZERO
                };
                take_acks = batch.len();
                take = Some(queue_call(&queue, &node, batch, free, wait));
            }
        }
        if !acks.is_empty() && ack.is_none() {
            let batch = std::mem::take(&mut acks);
            ack_count = batch.len();
            ack = Some(queue_call(&queue, &node, batch, 0, Duration::ZERO));
        }
        if draining && take.is_none() && ack.is_none() && running.is_empty() && acks.is_empty() {
            tracing::debug!(node = %node, "worker slots drained");
            return;
        }
        tokio::select! {
            Some(done) = running.next(), if !running.is_empty() => {
                acks.push(done);
                let mut ended = 1;
                // every other job done by now goes in the same call
                while let Some(Some(done)) = running.next().now_or_never() {
                    acks.push(done);
                    ended += 1;
                }
                control.running.fetch_sub(ended, Ordering::SeqCst);
            }
            result = poll_call(&mut take) => {
                take = None;
                settle(std::mem::take(&mut take_acks), &result);
                if let Ok(batch) = result {
                    for job in batch.jobs {
                        control.running.fetch_add(1, Ordering::SeqCst);
                        let id = job.id.clone();
                        let outcome = run(job);
                        running.push(async move { (id, outcome.await) });
                    }
                }
            }
            result = poll_call(&mut ack) => {
                ack = None;
                settle(std::mem::take(&mut ack_count), &result);
            }
            // A waiting take that carries no outcomes is cut short: a job handed to it
            // meanwhile goes back to the queue (one whose script call was in flight lapses
            // with its lease). One that carries outcomes ends within its wait.
            () = &mut drained, if take_waits && take_acks == 0 && take.is_some() => {
                take = None;
            }
        }
    }
}

/// Log what went wrong with a queue call that carried `acks` outcomes.
fn settle(acks: usize, result: &Result<Batch, QueueError>) {
    match result {
        Ok(batch) => {
            for id in &batch.unknown {
                tracing::warn!(job = %id, "job outcome not recorded: the queue does not know the job");
            }
        }
        Err(e) => {
            if acks > 0 {
                tracing::error!(jobs = acks, error = %e, "job outcomes not recorded; their leases lapse and they run again");
            } else {
                tracing::warn!(error = %e, "queue unavailable; retrying");
            }
        }
    }
}

fn failed(error: impl ToString) -> JobOutcome {
    JobOutcome::Failed {
        error: error.to_string(),
        counts: BTreeMap::new(),
    }
}

/// Run one job to an outcome. Never panics: a crashed role actor is a failed job.
pub async fn run_job(deps: &WorkerDeps, job: &Job, cancel: Arc<Notify>) -> JobOutcome {
    let started = std::time::Instant::now();
    tracing::info!(job = %job.id, priority = %job.priority, kind = job.kind.label(), "job started");
    let outcome = match &job.kind {
        JobKind::Harvest(scope) => run_harvest_job(deps, job, scope, cancel).await,
        JobKind::Compliance { cloud } => {
            let Some(addr) = deps.roles.compliance() else {
                return failed("compliance actor is not running");
            };
            let msg = RunCompliance {
                cloud: cloud.clone(),
                now: chrono::Utc::now(),
            };
            match addr.send(msg).await {
                Ok(Ok(report)) => {
                    let counts = BTreeMap::from([
                        ("evaluated".to_string(), report.evaluated),
                        ("open".to_string(), report.open),
                        ("resolved".to_string(), report.resolved),
                    ]);
                    let _ = deps
                        .bus
                        .publish(ClusterEvent::ComplianceDone {
                            job: job.id.clone(),
                            cloud: cloud.clone(),
                            open: report.open,
                            resolved: report.resolved,
                        })
                        .await;
                    JobOutcome::Done { counts }
                }
                Ok(Err(e)) => failed(e),
                Err(e) => failed(format!("compliance actor crashed: {e}")),
            }
        }
    };
    let (state, error) = match &outcome {
        JobOutcome::Done { .. } => ("done", None),
        JobOutcome::Failed { error, .. } => ("failed", Some(error.as_str())),
        JobOutcome::Cancelled => ("cancelled", Some(crate::queue::CANCELLED)),
    };
    crate::metrics::inc(
        "palisade_jobs_finished_total",
        &[("kind", job.kind.label()), ("state", state)],
    );
    match error {
        None => {
            tracing::info!(job = %job.id, kind = job.kind.label(), secs = started.elapsed().as_secs_f64(), "job done")
        }
        Some(error) => tracing::warn!(job = %job.id, kind = job.kind.label(), error, "job failed"),
    }
    outcome
}

async fn run_harvest_job(
    deps: &WorkerDeps,
    job: &Job,
    scope: &palisade_proto::HarvestScope,
    cancel: Arc<Notify>,
) -> JobOutcome {
    let cloud = match deps.store.get_cloud(&scope.cloud).await {
        Ok(Some(c)) => c,
        Ok(None) => return failed(format!("cloud {} not found", scope.cloud)),
        Err(e) => return failed(e),
    };
    let Some(addr) = deps.roles.harvester() else {
        return failed("harvester is not running");
    };
    let msg = RunHarvest {
        job: job.id.clone(),
        cloud: cloud.clone(),
        scope: scope.clone(),
        at: chrono::Utc::now(),
        cancel,
    };
    let (outcome, stored) = match addr.send(msg).await {
        Ok(Ok(report)) => {
            let mut counts: BTreeMap<String, u64> = report.per_type.clone();
            counts.insert("resources".into(), report.resources);
            counts.insert("deleted".into(), report.deleted);
            counts.insert("api_calls".into(), report.api_calls);
            let _ = deps
                .bus
                .publish(ClusterEvent::HarvestDone {
                    job: job.id.clone(),
                    cloud: cloud.id.clone(),
                    types: scope.types.clone(),
                    resources: report.resources,
                    deleted: report.deleted,
                })
                .await;
            (JobOutcome::Done { counts }, true)
        }
        Ok(Err(HarvestError::Cancelled)) => (JobOutcome::Cancelled, false),
        Ok(Err(e)) => (failed(e), true),
        Err(e) => (failed(format!("harvester crashed: {e}")), false),
    };
    if stored {
        // Compliance over what was stored goes through the queue, which does not lose it.
        let mut compliance = super::new_job(
            JobPriority::P1,
            JobKind::Compliance {
                cloud: Some(cloud.id.clone()),
            },
        );
        compliance.recurring = true;
        if let Err(e) = submit(deps.queue.as_ref(), deps.bus.as_ref(), compliance).await {
            tracing::warn!(cloud = %cloud.id, error = %e, "compliance run not queued");
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::contract::{done, job};
    use crate::queue::memory::MemoryQueue;
    use crate::queue::redis_tests::Scratch;
    use palisade_proto::JobState;
    use std::sync::Mutex;

    fn stop(control: &SlotControl) {
        control.draining.store(true, Ordering::SeqCst);
        control.drained.notify_waiters();
    }

    /// Twelve jobs queued before the pool starts: never more than three run at once, they
    /// start p0 first, then p1, then p2, and every one is acknowledged.
    async fn runs_at_most_its_slots_p0_first(queue: SharedQueue) {
        let mut jobs = Vec::new();
        for (i, p) in [JobPriority::P2, JobPriority::P1, JobPriority::P0]
            .into_iter()
            .enumerate()
        {
            for k in 0..4 {
                jobs.push(job(&format!("j{i}{k}"), p, false, "c1"));
            }
        }
        let queued = queue.enqueue_many(jobs).await.expect("enqueue");
        assert_eq!(queued, [true; 12]);
        let control = SlotControl::default();
        let started = Arc::new(Mutex::new(Vec::new()));
        let now_running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let runner = {
            let (control, started) = (control.clone(), started.clone());
            let (now_running, most) = (now_running.clone(), most.clone());
            move |job: Job| {
                let n = {
                    let mut started = started.lock().expect("lock");
                    started.push(job.priority);
                    started.len()
                };
                if n == 12 {
                    stop(&control);
                }
                let (now_running, most) = (now_running.clone(), most.clone());
                async move {
                    let running = now_running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(running, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    now_running.fetch_sub(1, Ordering::SeqCst);
                    done()
                }
            }
        };
        let pool = run_slots(queue.clone(), "n1".into(), 3, control.clone(), runner);
        tokio::time::timeout(Duration::from_secs(30), pool)
            .await
            .expect("the pool drains once every job ran");
        let started = started.lock().expect("lock").clone();
        assert_eq!(started.len(), 12);
        assert!(
            started.windows(2).all(|w| w[0] <= w[1]),
            "started out of priority order: {started:?}"
        );
        assert_eq!(most.load(Ordering::SeqCst), 3, "three slots, all used");
        assert_eq!(control.running.load(Ordering::SeqCst), 0);
        let stats = queue.stats().await.expect("stats");
        assert_eq!((stats.p0.done, stats.p1.done, stats.p2.done), (4, 4, 4));
        assert!(stats.in_flight_per_node.is_empty());
        let st = queue
            .status(&JobId("j21".into()))
            .await
            .expect("status")
            .expect("known");
        assert_eq!((st.state, st.node.as_deref()), (JobState::Done, Some("n1")));
    }

    /// An idle pool runs a job queued while it waits, and a drain ends its wait.
    async fn waits_for_work_and_drains(queue: SharedQueue) {
        let control = SlotControl::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let runner = move |job: Job| {
            let _ = tx.send(job.id.clone());
            async { done() }
        };
        let pool = run_slots(queue.clone(), "n1".into(), 2, control.clone(), runner);
        let driver = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(queue
                .enqueue(job("late", JobPriority::P0, false, "c1"))
                .await
                .expect("enqueue"));
            let got = rx.recv().await.expect("the pool ran the job");
            assert_eq!(got.as_str(), "late");
            stop(&control);
        };
        let ((), ()) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(pool, driver)
        })
        .await
        .expect("the pool stops when drained");
        let st = queue
            .status(&JobId("late".into()))
            .await
            .expect("status")
            .expect("known");
        assert_eq!(st.state, JobState::Done);
        assert_eq!(control.running.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn memory_pool_runs_at_most_its_slots_p0_first() {
        runs_at_most_its_slots_p0_first(Arc::new(MemoryQueue::new(100))).await;
    }

    #[tokio::test]
    async fn redis_pool_runs_at_most_its_slots_p0_first() {
        let scratch = Scratch::new("pool_slots");
        let queue = scratch.queue(scratch.options()).await;
        runs_at_most_its_slots_p0_first(Arc::new(queue)).await;
    }

    #[tokio::test]
    async fn memory_pool_waits_for_work_and_drains() {
        waits_for_work_and_drains(Arc::new(MemoryQueue::new(100))).await;
    }

    #[tokio::test]
    async fn redis_pool_waits_for_work_and_drains() {
        let scratch = Scratch::new("pool_wait");
        let queue = scratch.queue(scratch.options()).await;
        waits_for_work_and_drains(Arc::new(queue)).await;
    }
}
