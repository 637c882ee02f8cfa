//! The scheduler and the workers: who queues jobs, and who takes them.
//!
//! Owns: the scheduler actor ([`cadence`]) that queues recurring work, the worker actor
//! ([`worker`]) that runs queued jobs on this node, and [`submit`], the one way anything
//! queues a job.
//!
//! Must never: decide priorities anywhere but here and in the HTTP edge (p0 for people,
//! p1 for compliance, p2 for recurring harvests), or bypass the queue to run work.

pub mod cadence;
pub mod leader;
pub mod worker;

use actix::Addr;
use std::sync::{Arc, RwLock};

use palisade_proto::{ClusterEvent, Job, JobKind, JobPriority};

use crate::compliance::actor::ComplianceActor;
use crate::harvest::actor::HarvesterActor;

use crate::bus::Bus;
use crate::queue::{JobQueue, QueueError};

/// Queue a job and wake idle workers. Returns false when a recurring duplicate was refused.
pub async fn submit(queue: &dyn JobQueue, bus: &dyn Bus, job: Job) -> Result<bool, QueueError> {
    let id = job.id.clone();
    let priority = job.priority;
    let label = job.kind.label();
    let queued = queue.enqueue(job).await?;
    if queued {
        crate::metrics::inc(
            "palisade_jobs_enqueued_total",
            &[("priority", priority.as_str()), ("kind", label)],
        );
        tracing::debug!(job = %id, %priority, kind = label, "job queued");
        // The bus is a wake-up only; workers also poll, so a lost event delays, never loses.
        if let Err(e) = bus
            .publish(ClusterEvent::JobEnqueued { job: id, priority })
            .await
        {
            tracing::warn!(error = %e, "job wake-up not published");
        }
    }
    Ok(queued)
}

/// A new one-off job at `priority`.
pub fn new_job(priority: JobPriority, kind: JobKind) -> Job {
    Job {
        id: palisade_proto::JobId(uuid::Uuid::new_v4().to_string()),
        priority,
        kind,
        enqueued_at: chrono::Utc::now(),
        recurring: false,
    }
}

/// The current addresses of the role actors a worker sends work to. The supervisor
/// replaces an address when it restarts a crashed actor.
#[derive(Clone, Default)]
pub struct RoleAddrs {
    harvester: Arc<RwLock<Option<Addr<HarvesterActor>>>>,
    compliance: Arc<RwLock<Option<Addr<ComplianceActor>>>>,
}

impl RoleAddrs {
    pub fn harvester(&self) -> Option<Addr<HarvesterActor>> {
        self.harvester
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn compliance(&self) -> Option<Addr<ComplianceActor>> {
        self.compliance
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn set_harvester(&self, addr: Option<Addr<HarvesterActor>>) {
        *self.harvester.write().unwrap_or_else(|p| p.into_inner()) = addr;
    }
    pub fn set_compliance(&self, addr: Option<Addr<ComplianceActor>>) {
        *self.compliance.write().unwrap_or_else(|p| p.into_inner()) = addr;
    }
}
