//! `/v2/jobs`: one job's status, the queue status view per priority, and the dead letters
//! (jobs that failed too often), which can be queued again.
//!
//! Must never: change a job other than by asking the queue to re-queue a dead letter; the
//! queue and the workers own job state.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use palisade_proto::{JobId, JobKind, JobPriority, JobState, JobStatus, Timestamp};

use super::error::ErrorBody;
use super::openapi::{schema, JobList, QueueStatsDoc};
use super::paging::{given, parse_sort, ListPage, Paging, LIMIT_MAX};
use super::{ApiError, ApiState};

/// A job as `GET /v2/jobs/{id}` shows it: the kind's own fields sit beside `kind`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Job)]
pub(super) struct JobView<'a> {
    #[schema(value_type = String)]
    id: &'a JobId,
    state: JobState,
    priority: JobPriority,
    #[serde(flatten)]
    kind: &'a JobKind,
    /// Queued by the cadence (de-duplicated) rather than on request.
    recurring: bool,
    #[schema(value_type = String, format = DateTime)]
    enqueued_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<Timestamp>,
    /// The node running (or that ran) it.
    node: Option<&'a str>,
    /// The last error of a failed job.
    error: Option<&'a str>,
    /// Counters the job reported (`resources`, `api_calls`, ...).
    counts: &'a BTreeMap<String, u64>,
}

/// A queued job's id: the answer to queueing one.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct JobRef {
    #[schema(value_type = String)]
    pub job_id: JobId,
}

/// The answer to a cancel request.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CancelReply {
    #[schema(value_type = String)]
    job_id: JobId,
    /// The node running the job, which stops it.
    node: Option<String>,
}

/// The only order of the dead letters: newest first (`-finished_at`), as the queue keeps
/// them.
pub(super) const DEAD_SORT_FIELDS: &[(&str, ())] = &[("finished_at", ())];

/// The most dead letters a listing reaches into (`offset + limit`); the Redis queue keeps
/// 10000.
pub(super) const DEAD_WINDOW: u64 = 11_000;

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

/// A queued, running or recently finished job.
#[utoipa::path(
    get,
    path = "/v2/jobs/{id}",
    operation_id = "get_job",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job, or one finished long ago (`not_found`)", body = ErrorBody),
    )
)]
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

/// The queue status view: per priority, depth, oldest wait, mean wait and run times.
#[utoipa::path(
    get,
    path = "/v2/jobs/queues",
    operation_id = "queue_status",
    tag = "jobs",
    responses((status = 200, description = "The queue's figures", body = QueueStatsDoc))
)]
pub(super) async fn queues(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let stats = state.queue.stats().await?;
    Ok(HttpResponse::Ok().json(stats))
}

/// Dead-lettered jobs (they failed too often), newest first, each with its last error.
#[utoipa::path(
    get,
    path = "/v2/jobs/dead",
    operation_id = "list_dead_letters",
    tag = "jobs",
    params(DeadParams),
    responses(
        (status = 200, description = "One page of dead letters", body = JobList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`, `bad_sort`)", body = ErrorBody),
    )
)]
pub(super) async fn dead(
    state: web::Data<ApiState>,
    params: web::Query<DeadParams>,
) -> Result<HttpResponse, ApiError> {
    let paging = Paging::parse(given(&params.limit), given(&params.offset))?;
    if let Some(sort) = parse_sort(given(&params.sort), DEAD_SORT_FIELDS)? {
        if !sort.descending {
            return Err(ApiError::BadRequest {
                code: "bad_sort",
                message: "query parameter \"sort\": dead letters are listed newest first \
                          (-finished_at) only"
                    .into(),
            });
        }
    }
    // the queue answers a prefix of its newest-first list: read up to the page's end
    let end = paging.offset.saturating_add(u64::from(paging.limit));
    if paging.offset >= DEAD_WINDOW {
        return Err(ApiError::bad_param(
            "offset",
            format!("dead letters are listed up to offset {}", DEAD_WINDOW - 1),
        ));
    }
    let want = usize::try_from(end.min(DEAD_WINDOW)).unwrap_or(usize::MAX);
    let (jobs, stats) = futures::try_join!(state.queue.dead_letters(want), state.queue.stats())?;
    let total = stats.dead_letter.max(jobs.len() as u64);
    let jobs = paging.slice(jobs);
    let items: Vec<JobView<'_>> = jobs.iter().map(JobView::from).collect();
    Ok(HttpResponse::Ok().json(ListPage::new(total, items, paging)))
}

/// The query string of `GET /v2/jobs/dead`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeadParams {
    #[param(schema_with = schema::limit)]
    limit: Option<String>,
    #[param(schema_with = schema::dead_offset)]
    offset: Option<String>,
    #[param(schema_with = schema::dead_sort)]
    sort: Option<String>,
}

// The dead-letter window covers at least one full page past any offset accepted.
const _: () = assert!(DEAD_WINDOW > LIMIT_MAX as u64);

/// Put a dead letter back in its queue.
#[utoipa::path(
    post,
    path = "/v2/jobs/{id}/requeue",
    operation_id = "requeue_dead_letter",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id of a dead letter")),
    responses(
        (status = 202, description = "Queued again", body = JobRef),
        (status = 404, description = "Not a dead letter, or a job with its dedupe key is active again (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn requeue(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = JobId(id.into_inner());
    if state.queue.requeue_dead(&id).await? {
        tracing::info!(job = %id, "dead letter queued again");
        Ok(HttpResponse::Accepted().json(JobRef { job_id: id }))
    } else {
        let shown: String = id.as_str().chars().take(64).collect();
        Err(ApiError::NotFound(format!("dead letter {shown}")))
    }
}

/// Cancel a running job wherever it runs: the node running it stops it and records it
/// failed, "cancelled by request", without retrying it.
#[utoipa::path(
    post,
    path = "/v2/jobs/{id}/cancel",
    operation_id = "cancel_job",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Cancel sent to the node running it", body = CancelReply),
        (status = 404, description = "No such job (`not_found`)", body = ErrorBody),
        (status = 409, description = "The job is not running (`conflict`)", body = ErrorBody),
    )
)]
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
    Ok(HttpResponse::Accepted().json(CancelReply {
        job_id: id,
        node: status.node,
    }))
}
