//! `/v2/jobs`: one job's status, the queue status view per priority, and the dead letters
//! (jobs that failed too often), which can be queued again.
//!
//! Must never: change a job other than by asking the queue to re-queue a dead letter; the
//! queue and the workers own job state.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::collections::BTreeMap;

use palisade_proto::{JobId, JobKind, JobPriority, JobState, JobStatus, Timestamp};

use super::{ApiError, ApiState};

/// A job as `GET /v2/jobs/{id}` shows it: the kind's own fields sit beside `kind`.
#[derive(Serialize)]
struct JobView<'a> {
    id: &'a JobId,
    state: JobState,
    priority: JobPriority,
    #[serde(flatten)]
    kind: &'a JobKind,
    recurring: bool,
    enqueued_at: Timestamp,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    node: Option<&'a str>,
    error: Option<&'a str>,
    counts: &'a BTreeMap<String, u64>,
}

impl<'a> From<&'a JobStatus> for JobView<'a> {
    fn from(s: &'a JobStatus) -> Self {
        JobView {
            id: &s.job.id,
            state: s.state,
            priority: s.job.priority,
            kind: &s.job.kind,
            recurring: s.job.recurring,
            enqueued_at: s.job.enqueued_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            node: s.node.as_deref(),
            error: s.error.as_deref(),
            counts: &s.counts,
        }
    }
}

/// `GET /v2/jobs/{id}`: a queued, running or recently finished job.
pub(super) async fn get(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = JobId(id.into_inner());
    let status = state.queue.status(&id).await?.ok_or_else(|| {
        let shown: String = id.as_str().chars().take(64).collect();
        ApiError::NotFound(format!("job {shown}"))
    })?;
    Ok(HttpResponse::Ok().json(JobView::from(&status)))
}

/// `GET /v2/jobs/queues`: per priority, depth, oldest wait, mean wait and run times.
pub(super) async fn queues(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let stats = state.queue.stats().await?;
    Ok(HttpResponse::Ok().json(stats))
}

/// `GET /v2/jobs/dead?limit=`: dead-lettered jobs, newest first, each with its last error.
pub(super) async fn dead(
    state: web::Data<ApiState>,
    query: web::Query<DeadQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_param("limit", "must be between 1 and 1000"));
    }
    let jobs = state.queue.dead_letters(limit).await?;
    let items: Vec<JobView<'_>> = jobs.iter().map(JobView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"total": items.len(), "items": items})))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeadQuery {
    limit: Option<usize>,
}

/// `POST /v2/jobs/{id}/requeue`: put a dead letter back in its queue (202), or 404 when
/// `id` is not a dead letter (or a job with its dedupe key is active again).
pub(super) async fn requeue(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = JobId(id.into_inner());
    if state.queue.requeue_dead(&id).await? {
        tracing::info!(job = %id, "dead letter queued again");
        Ok(HttpResponse::Accepted().json(serde_json::json!({"job_id": id})))
    } else {
        let shown: String = id.as_str().chars().take(64).collect();
        Err(ApiError::NotFound(format!("dead letter {shown}")))
    }
}

/// `POST /v2/jobs/{id}/cancel`: cancel a running job wherever it runs (202; the node running
/// it stops it and records it failed, "cancelled by request", without retrying it). 404 for
/// an unknown job, 409 for one that is not running.
pub(super) async fn cancel(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = JobId(id.into_inner());
    let shown: String = id.as_str().chars().take(64).collect();
    let status = state
        .queue
        .status(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {shown}")))?;
    if status.state != JobState::Running {
        return Err(ApiError::Conflict(format!(
            "job {shown} is {}, not running",
            serde_json::to_value(status.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )));
    }
    state
        .bus
        .publish(palisade_proto::ClusterEvent::CancelJob { job: id.clone() })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cancel not sent");
            ApiError::Unavailable("bus")
        })?;
    tracing::info!(job = %id, node = status.node.as_deref().unwrap_or(""), "cancel requested");
    Ok(HttpResponse::Accepted().json(serde_json::json!({"job_id": id, "node": status.node})))
}
