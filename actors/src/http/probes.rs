//! Liveness, readiness and metrics: what load balancers and Prometheus poll.
//!
//! Must never: do more than one cheap store round trip per probe.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::error::ErrorBody;
use super::{ApiError, ApiState};

/// The answer of the health probes.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ProbeReply<'a> {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    status: &'static str,
    /// This node's id (`/healthz` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "probes",
    security(()),
    responses((status = 200, description = "Alive", body = ProbeReply))
)]
pub(super) async fn healthz(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(ProbeReply {
        status: "ok",
        node: Some(&state.node_id),
    })
}

/// Readiness: the store answers too.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "probes",
    security(()),
    responses(
        (status = 200, description = "Ready", body = ProbeReply),
        (status = 503, description = "The store does not answer (`unavailable`)", body = ErrorBody),
    )
)]
pub(super) async fn readyz(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    // Any ping failure means "not ready", whatever its kind.
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness probe: store ping failed");
        ApiError::Unavailable("store")
    })?;
    Ok(HttpResponse::Ok().json(ProbeReply {
        status: "ready",
        node: None,
    }))
}

/// Every counter, in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "probes",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub(super) async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render())
}
