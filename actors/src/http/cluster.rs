//! `GET /v2/cluster/nodes`: the nodes of the cluster, from their heartbeats.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde_json::json;

use super::ApiState;

/// Every node heard from lately, by id, with roles, running jobs, last heartbeat and state.
pub(super) async fn nodes(state: web::Data<ApiState>) -> HttpResponse {
    let items = state.registry.nodes(Utc::now());
    HttpResponse::Ok().json(json!({"total": items.len(), "items": items}))
}
