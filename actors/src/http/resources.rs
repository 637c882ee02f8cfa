//! `/v2/resources`: harvested resources, filtered and paged, and one resource with its
//! findings.
//!
//! Must never: load more than one page of resources (or [`LIMIT_MAX`] findings) per request.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use palisade_proto::{CloudId, Finding, Resource, ResourceType};

use super::paging::{parse_flag, Paging, LIMIT_MAX};
use super::{ApiError, ApiState};
use crate::store::{FindingQuery, ResourceQuery};

/// The query string of `GET /v2/resources`, raw: each value is parsed by hand so that a bad
/// one is answered with a 400 naming it. Unknown parameters are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourceParams {
    cloud: Option<String>,
    #[serde(rename = "type")]
    rtype: Option<String>,
    region: Option<String>,
    tag: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    include_deleted: Option<String>,
}

/// An empty value (`?cloud=`) is the same as an absent one.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Parse a `type` query value.
pub(super) fn parse_type(raw: &str) -> Result<ResourceType, ApiError> {
    raw.parse::<ResourceType>().map_err(|_| {
        let known: Vec<&str> = ResourceType::ALL.iter().map(|t| t.as_str()).collect();
        ApiError::bad_param(
            "type",
            format!("unknown resource type; known: {}", known.join(", ")),
        )
    })
}

impl ResourceParams {
    fn query(&self) -> Result<ResourceQuery, ApiError> {
        let paging = Paging::parse(given(&self.limit), given(&self.offset))?;
        Ok(ResourceQuery {
            cloud: given(&self.cloud).map(|c| CloudId(c.to_string())),
            rtype: given(&self.rtype).map(parse_type).transpose()?,
            region: given(&self.region).map(str::to_string),
            tag: given(&self.tag).map(str::to_string),
            include_deleted: parse_flag("include_deleted", given(&self.include_deleted))?,
            limit: paging.limit,
            offset: paging.offset,
        })
    }
}

/// `GET /v2/resources?cloud=&type=&region=&tag=&limit=&offset=&include_deleted=` →
/// `{"total","items"}`.
pub(super) async fn list(
    state: web::Data<ApiState>,
    params: web::Query<ResourceParams>,
) -> Result<HttpResponse, ApiError> {
    let query = params.query()?;
    let page = state.store.list_resources(&query).await?;
    Ok(HttpResponse::Ok().json(json!({
        "total": page.total,
        "limit": query.limit,
        "offset": query.offset,
        "items": page.items,
    })))
}

/// A resource with its findings, open and resolved.
#[derive(Serialize)]
struct ResourceWithFindings<'a> {
    #[serde(flatten)]
    resource: &'a Resource,
    findings: &'a [Finding],
}

/// `GET /v2/resources/{id}`, by Palisade uid or by the cloud's own id.
pub(super) async fn get(
    state: web::Data<ApiState>,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let resource = state.store.get_resource(&key).await?.ok_or_else(|| {
        let shown: String = key.chars().take(64).collect();
        ApiError::NotFound(format!("resource {shown}"))
    })?;
    let findings = state
        .store
        .list_findings(&FindingQuery {
            resource_uid: Some(resource.uid.clone()),
            limit: LIMIT_MAX,
            ..FindingQuery::default()
        })
        .await?;
    Ok(HttpResponse::Ok().json(ResourceWithFindings {
        resource: &resource,
        findings: &findings.items,
    }))
}
