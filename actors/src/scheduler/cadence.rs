//! The scheduler actor: queues recurring work on a cadence.
//!
//! Owns: when recurring jobs are due: a p2 harvest per (cloud, region, resource type) every
//! `scheduler.harvest_interval_secs`, a p1 compliance run every
//! `scheduler.compliance_interval_secs`. The queue keeps when each recurring job was last
//! queued and de-duplicates them, so a job still queued or running is never queued twice,
//! across the whole cluster. In a cluster only the leader (see [`super::leader`]) queues,
//! under its fence; the other schedulers stand by and renew nothing.
//!
//! Must never: run jobs, or queue anything at p0 (p0 is for people).

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_proto::{ClusterEvent, HarvestScope, Job, JobKind, JobPriority, ResourceType, Scope};

use super::leader::LeaderLease;
use super::new_job;
use crate::bus::SharedBus;
use crate::queue::SharedQueue;
use crate::queue::{Fence, Recurring};
use crate::store::SharedStore;

/// How often the scheduler looks for due work.
const TICK: Duration = Duration::from_secs(1);

pub struct SchedulerActor {
    store: SharedStore,
    queue: SharedQueue,
    bus: SharedBus,
    harvest_every: Option<Duration>,
    compliance_every: Option<Duration>,
    /// The cluster's leader lease; none on a single node, which always leads.
    lease: Option<Arc<LeaderLease>>,
    /// The fence this node holds while it leads.
    fence: Arc<Mutex<Option<Fence>>>,
    busy: bool,
}

impl SchedulerActor {
    pub fn new(
        store: SharedStore,
        queue: SharedQueue,
        bus: SharedBus,
        harvest_interval_secs: u64,
        compliance_interval_secs: u64,
        lease: Option<Arc<LeaderLease>>,
    ) -> Self {
        let every = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        SchedulerActor {
            store,
            queue,
            bus,
            harvest_every: every(harvest_interval_secs),
            compliance_every: every(compliance_interval_secs),
            lease,
            fence: Arc::new(Mutex::new(None)),
            busy: false,
        }
    }

    /// How often the scheduler looks for due work (and renews its lease).
    fn tick_every(&self) -> Duration {
        self.lease
            .as_ref()
            .map_or(TICK, |l| l.renew_every().min(TICK))
    }
}

/// Become or stay the leader; returns the fence to write under, or none when another node
/// leads (or leadership cannot be confirmed). Logs each change of leadership once.
async fn lead(lease: &LeaderLease, fence: &Mutex<Option<Fence>>) -> Option<Fence> {
    let held = fence.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let now = match lease.acquire_or_renew(held.as_ref()).await {
        Ok(now) => now,
        Err(e) => {
            // the lease may lapse meanwhile; the queue refuses a lapsed fence anyway
            tracing::warn!(error = %e, "cannot renew the scheduler lease; not queueing");
            crate::metrics::inc("palisade_leader_errors_total", &[]);
            return None;
        }
    };
    match (&held, &now) {
        (None, Some(f)) => {
            tracing::info!(token = f.token, "this node leads the schedulers");
            crate::metrics::inc("palisade_leader_elections_total", &[]);
        }
        (Some(_), None) => tracing::warn!("leadership lost to another scheduler"),
        _ => {}
    }
    *fence.lock().unwrap_or_else(|p| p.into_inner()) = now.clone();
    now
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
            clustered = self.lease.is_some(),
            "scheduler started"
        );
        ctx.run_interval(self.tick_every(), |act, ctx| {
            if act.busy {
                return;
            }
            act.busy = true;
            let (store, queue, bus) = (act.store.clone(), act.queue.clone(), act.bus.clone());
            let (harvest_every, compliance_every) = (act.harvest_every, act.compliance_every);
            let (lease, fence) = (act.lease.clone(), act.fence.clone());
            let tick = async move {
                let fence = match &lease {
                    Some(lease) => match lead(lease, &fence).await {
                        Some(f) => Some(f),
                        None => return,
                    },
                    None => None,
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
                    let key = job.dedupe_key().unwrap_or_default();
                    let (id, priority) = (job.id.clone(), job.priority);
                    match queue.enqueue_recurring(job, every, fence.as_ref()).await {
                        Ok(Recurring::Queued) => {
                            tracing::debug!(key, job = %id, "recurring job queued");
                            let _ = bus
                                .publish(ClusterEvent::JobEnqueued { job: id, priority })
                                .await;
                        }
                        Ok(Recurring::Busy | Recurring::NotDue) => {}
                        Ok(Recurring::Deposed) => {
                            tracing::warn!(key, "recurring job refused: this node no longer leads");
                            crate::metrics::inc("palisade_leader_fenced_writes_total", &[]);
                            return;
                        }
                        Err(e) => tracing::warn!(key, error = %e, "recurring job not queued"),
                    }
                }
            };
            ctx.spawn(tick.into_actor(act).map(|_, act, _| act.busy = false));
        });
    }
}
