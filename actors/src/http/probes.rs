//! Liveness, readiness and metrics: what load balancers and Prometheus poll.
//!
//! Must never: do more than one cheap store round trip per probe.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{ApiError, ApiState};

/// `GET /healthz`: the process answers.
pub(super) async fn healthz(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "node": state.node_id}))
}

/// `GET /readyz`: the store answers too; 503 otherwise.
pub(super) async fn readyz(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    // Any ping failure means "not ready", whatever its kind.
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness probe: store ping failed");
        ApiError::Unavailable("store")
    })?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

/// `GET /metrics`: every counter, in the Prometheus text format.
pub(super) async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render())
}
