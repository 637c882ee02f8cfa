//! Cluster events: the typed messages nodes exchange over the bus.
//!
//! Every variant must be encodable with bincode (no `serde_json::Value`, no untagged
//! enums), because events travel inside an [`crate::Envelope`].

use serde::{Deserialize, Serialize};

use crate::{CloudId, JobId, JobPriority, ResourceType};

/// A message on the cluster bus. The bus may lose these; nothing that must not be lost
/// travels only as an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClusterEvent {
    /// A job was queued: idle workers should look at the queue now.
    JobEnqueued { job: JobId, priority: JobPriority },
    /// A harvest finished and stored its resources: compliance should run.
    HarvestDone {
        job: JobId,
        cloud: CloudId,
        types: Vec<ResourceType>,
        resources: u64,
        deleted: u64,
    },
    /// A compliance run finished.
    ComplianceDone {
        job: JobId,
        cloud: Option<CloudId>,
        open: u64,
        resolved: u64,
    },
    /// A node is alive.
    Heartbeat {
        node: String,
        roles: Vec<String>,
        running_jobs: u32,
    },
    /// Cancel a running job wherever it runs.
    CancelJob { job: JobId },
    /// Stop taking jobs on a node (or on every node when `node` is none).
    DrainNode { node: Option<String> },
    /// Reload the configuration on a node (or on every node when `node` is none).
    ReloadConfig { node: Option<String> },
}

impl ClusterEvent {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ClusterEvent::JobEnqueued { .. } => "job_enqueued",
            ClusterEvent::HarvestDone { .. } => "harvest_done",
            ClusterEvent::ComplianceDone { .. } => "compliance_done",
            ClusterEvent::Heartbeat { .. } => "heartbeat",
            ClusterEvent::CancelJob { .. } => "cancel_job",
            ClusterEvent::DrainNode { .. } => "drain_node",
            ClusterEvent::ReloadConfig { .. } => "reload_config",
        }
    }
}
