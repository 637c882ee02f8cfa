//! `/v2/resource-counts`: live resources per type, for one cloud or the whole estate, in
//! one grouped store query (what the GUI's dashboard shows without listing resources).
//!
//! Must never: read resources themselves; the store counts them.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use palisade_proto::{CloudId, ResourceType};

use super::error::ErrorBody;
use super::{ApiError, ApiState};

/// The query string of `GET /v2/resource-counts`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CountParams {
    /// Only this cloud's resources.
    cloud: Option<String>,
}

/// Live resources per type.
#[derive(Serialize, ToSchema)]
pub(super) struct ResourceCounts {
    /// The cloud counted, or none for every cloud.
    cloud: Option<String>,
    total: u64,
    items: Vec<TypeCount>,
}

/// Live resources of one type.
#[derive(Serialize, ToSchema)]
pub(super) struct TypeCount {
    #[serde(rename = "type")]
    rtype: ResourceType,
    count: u64,
}

/// `GET /v2/resource-counts?cloud=` → `{"cloud","total","items":[{"type","count"}]}`,
/// types in name order; a cloud that is not registered is a 404.
#[utoipa::path(
    get,
    path = "/v2/resource-counts",
    operation_id = "resource_counts",
    tag = "resources",
    params(CountParams),
    responses(
        (status = 200, description = "Live resources per type", body = ResourceCounts),
        (status = 400, description = "A bad query parameter (`invalid_parameter`)", body = ErrorBody),
        (status = 404, description = "No such cloud (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn by_type(
    state: web::Data<ApiState>,
    params: web::Query<CountParams>,
) -> Result<HttpResponse, ApiError> {
    let cloud = params
        .cloud
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| CloudId(c.to_string()));
    if let Some(c) = &cloud {
        if state.store.get_cloud(c).await?.is_none() {
            let shown: String = c.as_str().chars().take(64).collect();
            return Err(ApiError::NotFound(format!("cloud {shown}")));
        }
    }
    let counts = state.store.count_resources_by_type(cloud.as_ref()).await?;
    let total: u64 = counts.values().sum();
    let mut items: Vec<TypeCount> = counts
        .iter()
        .map(|(t, n)| TypeCount {
            rtype: *t,
            count: *n,
        })
        .collect();
    items.sort_by(|a, b| a.rtype.as_str().cmp(b.rtype.as_str()));
    Ok(HttpResponse::Ok().json(ResourceCounts {
        cloud: cloud.map(|c| c.0),
        total,
        items,
    }))
}
