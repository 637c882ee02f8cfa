//! The worker actor: takes jobs from the queue in priority order and runs them.
//!
//! Owns: `scheduler.workers` job slots on this node, the count of running jobs, and
//! acknowledging every job it takes (done or failed, never silently dropped). After a
//! harvest it queues the p1 compliance run for that cloud.
//!
//! Must never: run a harvest or an evaluation itself: it sends them to the harvester and
//! compliance actors, so that a crash there fails one job and not the worker.

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use std::collections::BTreeMap;
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
use crate::queue::{JobOutcome, SharedQueue};
use crate::store::SharedStore;

/// How long a slot waits on an empty queue before it looks again.
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
        for slot in 0..self.slots {
            let deps = self.deps.clone();
            ctx.spawn(slot_loop(deps, slot).into_actor(self).map(|_, _, _| ()));
        }
    }
}

async fn slot_loop(deps: WorkerDeps, slot: usize) {
    loop {
        // register for the drain signal before looking at the flag, so none is missed
        let drained = deps.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        if deps.draining.load(Ordering::SeqCst) {
            tracing::debug!(slot, "worker slot drained");
            return;
        }
        let taken = tokio::select! {
            taken = deps.queue.take(&deps.node, TAKE_WAIT) => taken,
            // a take cut short here may have leased a job: its lease lapses and another
            // node runs it
            () = &mut drained => continue,
        };
        match taken {
            Ok(Some(job)) => {
                deps.running.fetch_add(1, Ordering::SeqCst);
                let cancel = deps.running_jobs.start(&job.id);
                let outcome = run_job(&deps, &job, cancel).await;
                deps.running_jobs.end(&job.id);
                if let Err(e) = deps.queue.finish(&job.id, outcome).await {
                    tracing::error!(job = %job.id, error = %e, "job outcome not recorded");
                }
                deps.running.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(slot, error = %e, "queue unavailable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
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
