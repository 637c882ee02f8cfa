//! The worker actor: takes jobs from the queue in priority order and runs them.
//!
//! Owns: `scheduler.workers` job slots on this node ([`run_slots`]: one loop that takes
//! jobs for all free slots in one queue call and acknowledges finished ones in the same
//! call), the count of running jobs, and acknowledging every job it takes (done, failed,
//! or given back unstarted; never silently dropped). After a harvest it queues the p1
//! compliance run for that cloud.
//!
//! The prefetch rule: while the pool's jobs are short (the last run and the moving mean
//! under [`PREFETCH_RUN_MAX`], 1 ms), each slot may hold up to [`PREFETCH_PER_SLOT`] (8)
//! more jobs, taken under lease in the same queue call that acknowledges the previous
//! ones, and started without a round trip when the slot frees. A p0 job queued meanwhile
//! waits for at most the short job running and one round trip: a prefetched p1/p2 job is given back (to the head of its priority, lease
//! dropped, attempt not counted; `palisade_jobs_given_back_total{reason="p0"}`) as soon
//! as a call's answer says p0 jobs wait or the bus brings a p0 `JobEnqueued` wake-up, and
//! after a job that ran long the prefetched ones wait for the next call's answer before
//! it starts. Long jobs: no prefetch. A draining pool gives back every prefetched job
//! (`reason="drain"`); one that dies leaves them leased, and they run elsewhere once
//! their leases lapse (at least once).
//!
//! Must never: run more jobs at once than it has slots, hold more than
//! [`PREFETCH_PER_SLOT`] unstarted jobs a slot, or take any ahead while its jobs run long (a p0 job queued meanwhile would wait
//! behind it), start a prefetched p1/p2 job once it knows a p0 job waits, or run a harvest
//! or an evaluation itself: it sends them to the harvester and compliance actors, so that
//! a crash there fails one job and not the worker.

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            p0_queued: Arc::new(Notify::new()),
            running: deps.running.clone(),
        };
        // p0 wake-ups from the bus: the pool gives back prefetched p1/p2 jobs
        let mut events = deps.bus.subscribe();
        let p0_queued = control.p0_queued.clone();
        let wake_ups = async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(ClusterEvent::JobEnqueued {
                        priority: JobPriority::P0,
                        ..
                    }) => p0_queued.notify_waiters(),
                    Ok(_) => {}
                    // events were lost, a p0 wake-up maybe among them
                    Err(RecvError::Lagged(_)) => p0_queued.notify_waiters(),
                    Err(RecvError::Closed) => return,
                }
            }
        };
        ctx.spawn(wake_ups.into_actor(self));
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

/// What stops a slot pool, what wakes it, and what it reports.
#[derive(Clone, Default)]
pub struct SlotControl {
    /// Set when the node drains: running jobs finish, and no more are taken.
    pub draining: Arc<AtomicBool>,
    /// Notified when `draining` is set, so that a pool waiting for a job stops waiting.
    pub drained: Arc<Notify>,
    /// Notified (`notify_waiters`) when a p0 job is queued anywhere (the bus's
    /// `JobEnqueued` wake-up): a pool holding prefetched p1/p2 jobs gives them back. A lost
    /// wake-up costs latency only: the pool's next queue call says whether p0 jobs wait.
    pub p0_queued: Arc<Notify>,
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

/// A pool prefetches (holds taken, unstarted jobs) only while its jobs run shorter than
/// this: a p0 job queued meanwhile then waits at most one short job and a round trip.
pub const PREFETCH_RUN_MAX: Duration = Duration::from_millis(1);

/// Jobs a slot may hold ahead while its jobs are short. One queue call then feeds several
/// jobs a slot (a 1-slot pool of no-op jobs: ~13k jobs/s with one ahead, ~20k with four,
/// ~26k with eight); a pool that dies leaves at most this many a slot to lapse with their
/// leases.
pub const PREFETCH_PER_SLOT: usize = 8;

/// The recent run times of a pool's jobs: the last one, and a moving mean (weight 1/8).
#[derive(Default)]
struct RunTimes {
    last: Option<Duration>,
    mean_secs: f64,
}

impl RunTimes {
    fn record(&mut self, ran: Duration) {
        self.mean_secs = match self.last {
            None => ran.as_secs_f64(),
            Some(_) => self.mean_secs + (ran.as_secs_f64() - self.mean_secs) / 8.0,
        };
        self.last = Some(ran);
    }

    /// True while both the last run and the mean are under [`PREFETCH_RUN_MAX`]; false
    /// before any job ran.
    fn short(&self) -> bool {
        self.last.is_some_and(|last| {
            last < PREFETCH_RUN_MAX && self.mean_secs < PREFETCH_RUN_MAX.as_secs_f64()
        })
    }
}

/// Give `job`, taken and not started, back to the queue with the next call.
fn give_back(acks: &mut Vec<(JobId, JobOutcome)>, job: Job, reason: &'static str) {
    tracing::debug!(job = %job.id, priority = %job.priority, reason, "prefetched job given back");
    crate::metrics::inc("palisade_jobs_given_back_total", &[("reason", reason)]);
    acks.push((job.id, JobOutcome::GivenBack));
}

/// Run `slots` jobs at a time from `queue` for `node`, each with `run`, until `control`
/// drains the pool; then let the running jobs finish, acknowledge them and return.
///
/// One queue call per turn acknowledges every job that finished since the last call and
/// takes jobs for every free slot, p0 first; when none is ready, the same call waits for
/// one (the queue records the outcomes before it waits). A waiting call is never cut
/// short by a job finishing: those are acknowledged by a second call alongside. Never more
/// than `slots` jobs run.
///
/// Prefetch: while the pool's jobs are short (last and mean run under
/// [`PREFETCH_RUN_MAX`]), a turn also takes up to [`PREFETCH_PER_SLOT`] jobs a slot ahead, leased like any other
/// but not started; a slot that frees starts the next one at once, without a round trip,
/// while its acknowledgement and the refill travel in the next call. A p0 job therefore
/// waits at most for one short job and a round trip. Prefetched p1/p2 jobs are given back (to the head of
/// their priority, lease dropped, attempt not counted) when a call answers that p0 jobs
/// are waiting or a p0 wake-up arrives (`control.p0_queued`), and every prefetched job is
/// given back when the pool drains. When a job ran long, the prefetched jobs wait for the
/// next call's answer before it starts, so that a p0 queued during the long job goes first.
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
    // taken and leased, not started: at most PREFETCH_PER_SLOT a slot, taken only while
    // jobs are short
    let mut prefetched: VecDeque<Job> = VecDeque::new();
    let mut runs = RunTimes::default();
    // Jobs that ran long so far, and how many of them a call sent after them has answered:
    // prefetched jobs start without asking the queue only while the two are equal.
    let mut long_runs: u64 = 0;
    let mut long_runs_answered: u64 = 0;
    // a p0 job waits: prefetched p1/p2 jobs go back
    let mut p0_waits = false;
    // outcomes (and given-back jobs) not yet sent to the queue
    let mut acks: Vec<(JobId, JobOutcome)> = Vec::new();
    // the call that takes jobs (and carries the acks of its turn), how many acks it
    // carries, whether it may wait for a job, and the long runs it answers for
    let mut take: Option<QueueCall> = None;
    let mut take_acks = 0;
    let mut take_waits = false;
    let mut take_answers = 0;
    // a call that only acknowledges, while `take` waits for a job
    let mut ack: Option<QueueCall> = None;
    let mut ack_count = 0;
    loop {
        // register for the drain signal before looking at the flag, so none is missed
        let drained = control.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        let p0_queued = control.p0_queued.notified();
        tokio::pin!(p0_queued);
        p0_queued.as_mut().enable();
        let draining = control.draining.load(Ordering::SeqCst);
        if draining || p0_waits {
            let mut keep = VecDeque::new();
            for job in prefetched.drain(..) {
                if draining {
                    give_back(&mut acks, job, "drain");
                } else if job.priority == JobPriority::P0 {
                    keep.push_back(job);
                } else {
                    give_back(&mut acks, job, "p0");
                }
            }
            prefetched = keep;
            p0_waits = false;
        }
        // Start prefetched jobs on free slots and collect the jobs done already, until
        // neither moves: a no-op job's outcome then rides in this turn's call.
        let mut ended = 0;
        loop {
            let mut moved = false;
            let may_start = runs.short() || long_runs_answered >= long_runs;
            while may_start && running.len() < slots {
                let Some(job) = prefetched.pop_front() else {
                    break;
                };
                control.running.fetch_add(1, Ordering::SeqCst);
                let id = job.id.clone();
                let started = Instant::now();
                let outcome = run(job);
                running.push(async move { (id, outcome.await, started.elapsed()) });
                moved = true;
            }
            while let Some(Some((id, outcome, ran))) = running.next().now_or_never() {
                runs.record(ran);
                if !runs.short() {
                    long_runs += 1;
                }
                acks.push((id, outcome));
                ended += 1;
                moved = true;
            }
            if !moved {
                break;
            }
        }
        if ended > 0 {
            control.running.fetch_sub(ended, Ordering::SeqCst);
        }
        if take.is_none() {
            let held = running.len() + prefetched.len();
            let (unfilled, want) = if draining {
                (0, 0)
            } else {
                let ahead = if runs.short() {
                    slots * PREFETCH_PER_SLOT
                } else {
                    0
                };
                (
                    slots.saturating_sub(held),
                    (slots + ahead).saturating_sub(held),
                )
            };
            // A refill alone makes no call (a pool would poll an empty queue); it rides
            // with the acknowledgements, or with a take for a slot that has nothing to run.
            if unfilled > 0 || !acks.is_empty() {
                let batch = std::mem::take(&mut acks);
                // wait only when no prefetched job waits for this call's answer
                take_waits = unfilled > 0 && prefetched.is_empty();
                let wait = if take_waits {
                    TAKE_WAIT
                } else {
                    Duration::ZERO
                };
                take_acks = batch.len();
                take_answers = long_runs;
                take = Some(queue_call(&queue, &node, batch, want, wait));
            }
        }
        // while the take waits for a job, outcomes go in a call of their own; otherwise
        // they ride in the next turn's call
        if !acks.is_empty() && ack.is_none() && take_waits {
            let batch = std::mem::take(&mut acks);
            ack_count = batch.len();
            ack = Some(queue_call(&queue, &node, batch, 0, Duration::ZERO));
        }
        if draining
            && take.is_none()
            && ack.is_none()
            && running.is_empty()
            && acks.is_empty()
            && prefetched.is_empty()
        {
            tracing::debug!(node = %node, "worker slots drained");
            return;
        }
        let holds_p1_p2 = prefetched.iter().any(|j| j.priority != JobPriority::P0);
        tokio::select! {
            Some((id, outcome, ran)) = running.next(), if !running.is_empty() => {
                runs.record(ran);
                if !runs.short() {
                    long_runs += 1;
                }
                acks.push((id, outcome));
                control.running.fetch_sub(1, Ordering::SeqCst);
                // every other job done by now is collected at the top of the loop
            }
            result = poll_call(&mut take) => {
                take = None;
                take_waits = false;
                settle(std::mem::take(&mut take_acks), &result);
                if let Ok(batch) = result {
                    long_runs_answered = long_runs_answered.max(take_answers);
                    p0_waits |= batch.p0_waiting;
                    // started at the top of the loop, on free slots, p0 first: a call
                    // sent before a p0 job was queued may answer after one that took it
                    prefetched.extend(batch.jobs);
                    prefetched.make_contiguous().sort_by_key(|job| job.priority);
                }
            }
            result = poll_call(&mut ack) => {
                ack = None;
                settle(std::mem::take(&mut ack_count), &result);
                if let Ok(batch) = result {
                    p0_waits |= batch.p0_waiting;
                }
            }
            // A waiting take that carries no outcomes is cut short: a job handed to it
            // meanwhile goes back to the queue (one whose script call was in flight lapses
            // with its lease). One that carries outcomes ends within its wait.
            () = &mut drained, if take_waits && take_acks == 0 && take.is_some() => {
                take = None;
                take_waits = false;
            }
            () = &mut p0_queued, if holds_p1_p2 => {
                p0_waits = true;
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
        // a job that ran is never given back; the pool gives back only unstarted ones
        JobOutcome::GivenBack => ("given_back", None),
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

    /// Wait until job `id` is in `state`; panics after 30 s (the pool is stuck).
    async fn until_state(queue: &SharedQueue, id: &str, state: JobState) {
        let id = JobId(id.into());
        for _ in 0..3000 {
            let st = queue.status(&id).await.expect("status").expect("known");
            if st.state == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} never became {state:?}");
    }

    /// A one-slot pool whose jobs are short prefetches: while its job `hold` runs, the
    /// jobs after it (`next`, `last`) are leased to the pool and not started. A p0 job
    /// queued then starts before them: they are given back, or the p0 job taken meanwhile
    /// goes ahead of them; the pool learns of the
    /// p0 job from the bus's wake-up (`wake_up`) or else from its next call's answer once
    /// `hold`, a long job (over `PREFETCH_RUN_MAX`), ends.
    async fn prefetched_job_is_given_back_for_a_p0(queue: SharedQueue, wake_up: bool) {
        let mut jobs: Vec<Job> = (0..8)
            .map(|k| job(&format!("s{k}"), JobPriority::P2, false, "c1"))
            .collect();
        for id in ["hold", "next", "last"] {
            jobs.push(job(id, JobPriority::P2, false, "c1"));
        }
        let queued = queue.enqueue_many(jobs).await.expect("enqueue");
        assert!(queued.iter().all(|q| *q));
        let control = SlotControl::default();
        let started = Arc::new(Mutex::new(Vec::<String>::new()));
        let release = Arc::new(Notify::new());
        let runner = {
            let (control, started, release) = (control.clone(), started.clone(), release.clone());
            move |job: Job| {
                let n = {
                    let mut started = started.lock().expect("lock");
                    started.push(job.id.0.clone());
                    started.len()
                };
                if n == 12 {
                    stop(&control);
                }
                let hold = (job.id.as_str() == "hold").then(|| release.clone());
                async move {
                    if let Some(release) = hold {
                        release.notified().await;
                        // a long job, however soon it is released
                        tokio::time::sleep(PREFETCH_RUN_MAX * 2).await;
                    }
                    done()
                }
            }
        };
        let pool = run_slots(queue.clone(), "n1".into(), 1, control.clone(), runner);
        let driver = async {
            until_state(&queue, "hold", JobState::Running).await;
            until_state(&queue, "next", JobState::Running).await;
            assert!(
                !started.lock().expect("lock").iter().any(|id| id == "next"),
                "`next` is prefetched, not started"
            );
            assert!(queue
                .enqueue(job("z", JobPriority::P0, false, "c1"))
                .await
                .expect("enqueue"));
            if wake_up {
                // what the worker actor does on the bus's JobEnqueued { priority: P0 }
                control.p0_queued.notify_waiters();
                // `next` goes back and the pool takes `z` (and may take `next` again
                // behind it in the same call), while `hold` still runs
                until_state(&queue, "z", JobState::Running).await;
            }
            release.notify_one();
        };
        let ((), ()) = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(pool, driver)
        })
        .await
        .expect("the pool runs every job and drains");
        let started = started.lock().expect("lock").clone();
        let at = |id: &str| started.iter().position(|s| s == id).expect("started");
        assert_eq!(started.len(), 12, "{started:?}");
        // the p0 job starts before every p1/p2 job the pool had not started (the order of
        // those among themselves is not kept: one given back may go behind one in flight)
        assert!(
            at("hold") < at("z") && at("z") < at("next") && at("z") < at("last"),
            "{started:?}"
        );
        for id in ["hold", "z", "next", "last"] {
            let st = queue
                .status(&JobId(id.into()))
                .await
                .expect("status")
                .expect("known");
            assert_eq!(
                (st.state, st.node.as_deref()),
                (JobState::Done, Some("n1")),
                "{id}"
            );
        }
        let stats = queue.stats().await.expect("stats");
        assert_eq!((stats.p0.done, stats.p2.done), (1, 11));
        assert_eq!((stats.p2.depth, stats.p2.running), (0, 0));
    }

    #[tokio::test]
    async fn memory_pool_gives_back_a_prefetched_job_on_a_p0_wake_up() {
        prefetched_job_is_given_back_for_a_p0(Arc::new(MemoryQueue::new(100)), true).await;
    }

    #[tokio::test]
    async fn memory_pool_gives_back_a_prefetched_job_when_its_call_says_p0_waits() {
        prefetched_job_is_given_back_for_a_p0(Arc::new(MemoryQueue::new(100)), false).await;
    }

    #[tokio::test]
    async fn redis_pool_gives_back_a_prefetched_job_on_a_p0_wake_up() {
        let scratch = Scratch::new("pool_give_back_bus");
        let queue = scratch.queue(scratch.options()).await;
        prefetched_job_is_given_back_for_a_p0(Arc::new(queue), true).await;
    }

    #[tokio::test]
    async fn redis_pool_gives_back_a_prefetched_job_when_its_call_says_p0_waits() {
        let scratch = Scratch::new("pool_give_back_reply");
        let queue = scratch.queue(scratch.options()).await;
        prefetched_job_is_given_back_for_a_p0(Arc::new(queue), false).await;
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
