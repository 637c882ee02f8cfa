//! `/v2/resources`: harvested resources, filtered and paged, and one resource with its
//! findings. Tags and properties are answered as the store holds them, JSON text passed
//! through, not parsed and encoded again: a page as the store writes it
//! ([`crate::store::Store::list_resources_json`]), one resource as a [`StoredResource`].
//!
//! Must never: load more than one page of resources (or [`LIMIT_MAX`] findings) per request.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use palisade_proto::{CloudId, Finding, ResourceType};

use super::error::ErrorBody;
use super::openapi::{schema, ResourceList};
use super::paging::{given, parse_flag, parse_sort, Paging, LIMIT_MAX};
use super::{ApiError, ApiState};
use crate::store::{ResourceOrder, ResourceQuery, StoredResource};

/// What `GET /v2/resources` may be sorted by; the store orders by these (see
/// [`ResourceOrder`]), natural order `type` (then region, id).
pub(super) const SORT_FIELDS: &[(&str, ResourceOrder)] = &[
    ("type", ResourceOrder::Type),
    ("region", ResourceOrder::Region),
    ("cloud", ResourceOrder::Cloud),
    ("id", ResourceOrder::Id),
    ("name", ResourceOrder::Name),
    ("uid", ResourceOrder::Uid),
    ("first_seen", ResourceOrder::FirstSeen),
    ("last_seen", ResourceOrder::LastSeen),
];

/// The query string of `GET /v2/resources`, raw: each value is parsed by hand so that a bad
/// one is answered with a 400 naming it. Unknown parameters are refused.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ResourceParams {
    /// Only this cloud's resources.
    cloud: Option<String>,
    /// Only resources of this type.
    #[serde(rename = "type")]
    #[param(value_type = Option<ResourceType>)]
    rtype: Option<String>,
    /// Only resources of this region (`global` for account-wide ones).
    region: Option<String>,
    /// Only resources with this tag: `KEY` (present) or `KEY=VALUE`.
    tag: Option<String>,
    #[param(schema_with = schema::limit)]
    limit: Option<String>,
    #[param(schema_with = schema::offset)]
    offset: Option<String>,
    /// Include resources a later harvest no longer saw.
    #[param(value_type = Option<bool>)]
    include_deleted: Option<String>,
    #[param(schema_with = schema::resource_sort)]
    sort: Option<String>,
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
        let sort = parse_sort(given(&self.sort), SORT_FIELDS)?;
        Ok(ResourceQuery {
            cloud: given(&self.cloud).map(|c| CloudId(c.to_string())),
            rtype: given(&self.rtype).map(parse_type).transpose()?,
            region: given(&self.region).map(str::to_string),
            tag: given(&self.tag).map(str::to_string),
            include_deleted: parse_flag("include_deleted", given(&self.include_deleted))?,
            order: sort.map(|s| s.field).unwrap_or_default(),
            descending: sort.is_some_and(|s| s.descending),
            limit: paging.limit,
            offset: paging.offset,
        })
    }
}

/// Harvested resources, filtered, sorted and paged.
#[utoipa::path(
    get,
    path = "/v2/resources",
    operation_id = "list_resources",
    tag = "resources",
    params(ResourceParams),
    responses(
        (status = 200, description = "One page of resources", body = ResourceList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`, `bad_sort`)", body = ErrorBody),
    )
)]
pub(super) async fn list(
    state: web::Data<ApiState>,
    params: web::Query<ResourceParams>,
) -> Result<HttpResponse, ApiError> {
    let query = params.query()?;
    let page = state.store.list_resources_json(&query).await?;
    let paging = Paging {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(list_page_json(page.total, &page.json, paging)))
}

/// A [`ListPage`](super::paging::ListPage) as JSON around items that are JSON already (the
/// inside of the array): the same text as serialising the page.
fn list_page_json(total: u64, items: &[u8], paging: Paging) -> Vec<u8> {
    let head = format!("{{\"total\":{total},\"items\":[");
    let tail = format!(
        "],\"limit\":{},\"offset\":{}}}",
        paging.limit, paging.offset
    );
    let mut body = Vec::with_capacity(head.len() + items.len() + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(items);
    body.extend_from_slice(tail.as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::super::paging::ListPage;
    use super::*;

    #[test]
    fn a_page_around_its_json_items_is_the_serialised_list_page() {
        let items = vec![
            serde_json::json!({"uid": "a", "tags": {}}),
            serde_json::json!({"uid": "b\"", "n": [1, null]}),
        ];
        for (total, items, limit, offset) in [
            (0, vec![], 50, 0),
            (2, items.clone(), 2, 0),
            (u64::MAX, items, 1000, u64::MAX),
        ] {
            let paging = Paging { limit, offset };
            let joined = items
                .iter()
                .map(|i| serde_json::to_string(i).expect("item"))
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(
                String::from_utf8(list_page_json(total, joined.as_bytes(), paging)).expect("utf-8"),
                serde_json::to_string(&ListPage::new(total, items, paging)).expect("page"),
            );
        }
    }
}

/// A resource with its findings, open and resolved.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ResourceWithFindings)]
pub(super) struct ResourceWithFindings<'a> {
    #[serde(flatten)]
    #[schema(value_type = palisade_proto::Resource)]
    resource: &'a StoredResource,
    /// Its findings, open and resolved (at most 1000).
    findings: &'a [Finding],
}

/// One resource by Palisade uid, or by the cloud's own id when that is unambiguous, with
/// its findings.
#[utoipa::path(
    get,
    path = "/v2/resources/{id}",
    operation_id = "get_resource",
    tag = "resources",
    params(("id" = String, Path, description = "Palisade uid, or the cloud's own id")),
    responses(
        (status = 200, description = "The resource and its findings", body = ResourceWithFindings),
        (status = 404, description = "No such resource (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn get(
    state: web::Data<ApiState>,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let resource = state
        .store
        .get_stored_resource(&key)
        .await?
        .ok_or_else(|| {
            let shown: String = key.chars().take(64).collect();
            ApiError::NotFound(format!("resource {shown}"))
        })?;
    let findings = state
        .store
        .resource_findings(&resource.uid, LIMIT_MAX)
        .await?;
    Ok(HttpResponse::Ok().json(ResourceWithFindings {
        resource: &resource,
        findings: &findings,
    }))
}
