//! `/v2/cluster`: the nodes of the cluster, from their heartbeats; draining one; asking every
//! node to reload its configuration.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde_json::json;

use super::ApiState;

/// Every node heard from lately, by id, with roles, running jobs, last heartbeat and state.
pub(super) async fn nodes(state: web::Data<ApiState>) -> HttpResponse {
    let items = state.registry.nodes(Utc::now());
    HttpResponse::Ok().json(json!({"total": items.len(), "items": items}))
}

/// `POST /v2/cluster/nodes/{id}/drain`: ask a node to drain: its workers finish the jobs
/// they run and take no more (202). The request travels on the bus; the node must be up.
pub(super) async fn drain(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, super::ApiError> {
    let node = id.into_inner();
    state
        .bus
        .publish(palisade_proto::ClusterEvent::DrainNode {
            node: Some(node.clone()),
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "drain not sent");
            super::ApiError::Unavailable("bus")
        })?;
    tracing::info!(node, "drain requested");
    Ok(HttpResponse::Accepted().json(json!({"node": node})))
}

/// `POST /v2/cluster/reload`: every node re-reads its configuration, applies what can
/// change while running (the log level) and logs what needs a restart (202).
pub(super) async fn reload(state: web::Data<ApiState>) -> Result<HttpResponse, super::ApiError> {
    state
        .bus
        .publish(palisade_proto::ClusterEvent::ReloadConfig { node: None })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reload not sent");
            super::ApiError::Unavailable("bus")
        })?;
    tracing::info!("configuration reload requested");
    Ok(HttpResponse::Accepted().json(json!({"reload": "requested"})))
}
