//! The scheduler actor: queues recurring work on a cadence.
//!
//! Owns: when recurring jobs are due: a p2 harvest per (cloud, region, resource type) every
//! `scheduler.harvest_interval_secs`, a p1 compliance run every
//! `scheduler.compliance_interval_secs`. The queue de-duplicates recurring jobs, so a job
//! still queued or running is never queued twice.
//!
//! Must never: run jobs, or queue anything at p0 (p0 is for people).

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_proto::{HarvestScope, Job, JobKind, JobPriority, ResourceType, Scope};

use super::{new_job, submit};
use crate::bus::SharedBus;
use crate::queue::SharedQueue;
use crate::store::SharedStore;

/// How often the scheduler looks for due work.
const TICK: Duration = Duration::from_secs(1);

pub struct SchedulerActor {
    store: SharedStore,
    queue: SharedQueue,
    bus: SharedBus,
    harvest_every: Option<Duration>,
    compliance_every: Option<Duration>,
    /// When each recurring job was last queued, by dedupe key.
    last: Arc<Mutex<HashMap<String, Instant>>>,
    busy: bool,
}

impl SchedulerActor {
    pub fn new(
        store: SharedStore,
        queue: SharedQueue,
        bus: SharedBus,
        harvest_interval_secs: u64,
        compliance_interval_secs: u64,
    ) -> Self {
        let every = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        SchedulerActor {
            store,
            queue,
            bus,
            harvest_every: every(harvest_interval_secs),
            compliance_every: every(compliance_interval_secs),
            last: Arc::new(Mutex::new(HashMap::new())),
            busy: false,
        }
    }
}

/// Every recurring harvest job of one cloud: one per regional type and region, one per
/// global type.
pub fn recurring_harvests(cloud: &palisade_proto::CloudAccount) -> Vec<Job> {
    let mut jobs = Vec::new();
    for t in ResourceType::of_provider(cloud.provider) {
        let regions: Vec<Vec<String>> = match t.scope() {
            Scope::Regional => cloud.regions.iter().map(|r| vec![r.clone()]).collect(),
            Scope::Global => vec![vec![]],
        };
        for regions in regions {
            let mut job = new_job(
                JobPriority::P2,
                JobKind::Harvest(HarvestScope {
                    cloud: cloud.id.clone(),
                    regions,
                    types: vec![t],
                }),
            );
            job.recurring = true;
            jobs.push(job);
        }
    }
    jobs
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(
            harvest_every = ?self.harvest_every,
            compliance_every = ?self.compliance_every,
            "scheduler started"
        );
        ctx.run_interval(TICK, |act, ctx| {
            if act.busy {
                return;
            }
            act.busy = true;
            let (store, queue, bus) = (act.store.clone(), act.queue.clone(), act.bus.clone());
            let (harvest_every, compliance_every) = (act.harvest_every, act.compliance_every);
            let last = act.last.clone();
            let tick = async move {
                let due = |key: &str, every: Duration| -> bool {
                    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                    let now = Instant::now();
                    match last.get(key) {
                        Some(t) if now.duration_since(*t) < every => false,
                        _ => {
                            last.insert(key.to_string(), now);
                            true
                        }
                    }
                };
                let mut candidates = Vec::new();
                if let Some(every) = harvest_every {
                    match store.list_clouds().await {
                        Ok(clouds) => {
                            for cloud in &clouds {
                                candidates.extend(
                                    recurring_harvests(cloud).into_iter().map(|j| (j, every)),
                                );
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "scheduler cannot list clouds"),
                    }
                }
                if let Some(every) = compliance_every {
                    let mut job = new_job(JobPriority::P1, JobKind::Compliance { cloud: None });
                    job.recurring = true;
                    candidates.push((job, every));
                }
                for (job, every) in candidates {
                    let Some(key) = job.dedupe_key() else {
                        continue;
                    };
                    if !due(&key, every) {
                        continue;
                    }
                    match submit(queue.as_ref(), bus.as_ref(), job).await {
                        Ok(true) => tracing::debug!(key, "recurring job queued"),
                        Ok(false) => tracing::debug!(key, "recurring job still queued or running"),
                        Err(e) => tracing::warn!(key, error = %e, "recurring job not queued"),
                    }
                }
            };
            ctx.spawn(tick.into_actor(act).map(|_, act, _| act.busy = false));
        });
    }
}
