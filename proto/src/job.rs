//! Jobs: units of work the scheduler queues and workers run.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::{CloudId, ResourceType, Timestamp};

crate::id::string_id!(
    /// Identifier of one queued job (a UUID string).
    JobId
);

/// Queue priority. `P0` always starts before any queued `P1` or `P2` job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobPriority {
    /// Immediate, on-demand work (a user enqueueing a harvest).
    P0,
    /// Recurring background work (insight compliance).
    P1,
    /// Regularly scheduled harvesting.
    P2,
}

impl JobPriority {
    pub const ALL: [JobPriority; 3] = [JobPriority::P0, JobPriority::P1, JobPriority::P2];

    pub fn as_str(self) -> &'static str {
        match self {
            JobPriority::P0 => "p0",
            JobPriority::P1 => "p1",
            JobPriority::P2 => "p2",
        }
    }

    /// Position in [`JobPriority::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for JobPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a harvest job covers. Empty lists mean "everything the cloud is configured for".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HarvestScope {
    pub cloud: CloudId,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub types: Vec<ResourceType>,
}

/// What a job does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// Harvest resources of a cloud account.
    Harvest(HarvestScope),
    /// Evaluate insights; over one cloud's resources, or all of them when `cloud` is none.
    Compliance { cloud: Option<CloudId> },
}

impl JobKind {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            JobKind::Harvest(_) => "harvest",
            JobKind::Compliance { .. } => "compliance",
        }
    }
}

/// One unit of queued work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub priority: JobPriority,
    pub kind: JobKind,
    pub enqueued_at: Timestamp,
    /// Recurring jobs are de-duplicated: at most one per [`Job::dedupe_key`] is queued or
    /// running at any time.
    pub recurring: bool,
}

impl Job {
    /// The key under which a recurring job is de-duplicated; none for one-off jobs.
    pub fn dedupe_key(&self) -> Option<String> {
        if !self.recurring {
            return None;
        }
        Some(match &self.kind {
            JobKind::Harvest(s) => {
                let regions = s.regions.join(",");
                let types: Vec<&str> = s.types.iter().map(|t| t.as_str()).collect();
                format!("harvest/{}/{}/{}", s.cloud, regions, types.join(","))
            }
            JobKind::Compliance { cloud } => match cloud {
                Some(c) => format!("compliance/{c}"),
                None => "compliance/*".to_string(),
            },
        })
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
}

/// A job and what has happened to it so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: Job,
    pub state: JobState,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// The node running (or that ran) the job.
    #[serde(default)]
    pub node: Option<String>,
    /// The last error, for a failed job.
    #[serde(default)]
    pub error: Option<String>,
    /// Counters the job reported (`resources`, `api_calls`, `findings_open`, ...).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

impl JobStatus {
    pub fn queued(job: Job) -> Self {
        JobStatus {
            job,
            state: JobState::Queued,
            started_at: None,
            finished_at: None,
            node: None,
            error: None,
            counts: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(recurring: bool, kind: JobKind) -> Job {
        Job {
            id: JobId("j".into()),
            priority: JobPriority::P2,
            kind,
            enqueued_at: chrono::Utc::now(),
            recurring,
        }
    }

    #[test]
    fn only_recurring_jobs_have_dedupe_keys() {
        let scope = HarvestScope {
            cloud: CloudId("c".into()),
            regions: vec!["us-east-1".into()],
            types: vec![ResourceType::AwsEc2Instance],
        };
        let k = job(true, JobKind::Harvest(scope.clone())).dedupe_key();
        assert_eq!(k.as_deref(), Some("harvest/c/us-east-1/aws.ec2.instance"));
        assert_eq!(job(false, JobKind::Harvest(scope)).dedupe_key(), None);
        let c = job(true, JobKind::Compliance { cloud: None }).dedupe_key();
        assert_eq!(c.as_deref(), Some("compliance/*"));
    }

    #[test]
    fn priorities_order_p0_first() {
        let mut p = vec![JobPriority::P2, JobPriority::P0, JobPriority::P1];
        p.sort();
        assert_eq!(p, JobPriority::ALL.to_vec());
    }
}
