//! `/v2/cluster`: the nodes of the cluster, from their heartbeats; draining one; asking every
//! node to reload its configuration.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::openapi::{schema, NodeList};
use super::paging::{given, parse_sort, sort_by_key, ListPage, Paging};
use super::{ApiError, ApiState};

/// What `GET /v2/cluster/nodes` may be sorted by (in memory); natural order: `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NodeOrder {
    Node,
    LastSeen,
    RunningJobs,
}

pub(super) const SORT_FIELDS: &[(&str, NodeOrder)] = &[
    ("node", NodeOrder::Node),
    ("last_seen", NodeOrder::LastSeen),
    ("running_jobs", NodeOrder::RunningJobs),
];

/// The query string of `GET /v2/cluster/nodes`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct NodeParams {
    #[param(schema_with = schema::limit)]
    limit: Option<String>,
    #[param(schema_with = schema::offset)]
    offset: Option<String>,
    #[param(schema_with = schema::node_sort)]
    sort: Option<String>,
}

/// Every node heard from lately, with roles, running jobs, last heartbeat and state.
#[utoipa::path(
    get,
    path = "/v2/cluster/nodes",
    operation_id = "list_nodes",
    tag = "cluster",
    params(NodeParams),
    responses(
        (status = 200, description = "One page of nodes", body = NodeList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`, `bad_sort`)", body = ErrorBody),
    )
)]
pub(super) async fn nodes(
    state: web::Data<ApiState>,
    params: web::Query<NodeParams>,
) -> Result<HttpResponse, ApiError> {
    let paging = Paging::parse(given(&params.limit), given(&params.offset))?;
    let sort = parse_sort(given(&params.sort), SORT_FIELDS)?;
    let mut items = state.registry.nodes(Utc::now());
    if let Some(sort) = sort {
        let desc = sort.descending;
        match sort.field {
            NodeOrder::Node => sort_by_key(&mut items, desc, |n| n.node.clone()),
            NodeOrder::LastSeen => sort_by_key(&mut items, desc, |n| (n.last_seen, n.node.clone())),
            NodeOrder::RunningJobs => {
                sort_by_key(&mut items, desc, |n| (n.running_jobs, n.node.clone()))
            }
        }
    }
    let total = items.len() as u64;
    Ok(HttpResponse::Ok().json(ListPage::new(total, paging.slice(items), paging)))
}

/// The answer to a drain request.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DrainReply {
    node: String,
}

/// The answer to a reload request: `{"reload": "requested"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ReloadReply {
    #[schema(example = "requested")]
    reload: &'static str,
}

/// Ask a node to drain: its workers finish the jobs they run and take no more. The request
/// travels on the bus; the node must be up.
#[utoipa::path(
    post,
    path = "/v2/cluster/nodes/{id}/drain",
    operation_id = "drain_node",
    tag = "cluster",
    params(("id" = String, Path, description = "Node id")),
    responses((status = 202, description = "Drain sent on the bus", body = DrainReply))
)]
pub(super) async fn drain(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let node = id.into_inner();
    state
        .bus
        .publish(palisade_proto::ClusterEvent::DrainNode {
            node: Some(node.clone()),
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "drain not sent");
            ApiError::Unavailable("bus")
        })?;
    tracing::info!(node, "drain requested");
    Ok(HttpResponse::Accepted().json(DrainReply { node }))
}

/// Every node re-reads its configuration, applies what can change while running (the log
/// level) and logs what needs a restart.
#[utoipa::path(
    post,
    path = "/v2/cluster/reload",
    operation_id = "reload_configuration",
    tag = "cluster",
    responses((status = 202, description = "Reload sent on the bus", body = ReloadReply))
)]
pub(super) async fn reload(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    state
        .bus
        .publish(palisade_proto::ClusterEvent::ReloadConfig { node: None })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reload not sent");
            ApiError::Unavailable("bus")
        })?;
    tracing::info!("configuration reload requested");
    Ok(HttpResponse::Accepted().json(ReloadReply {
        reload: "requested",
    }))
}
