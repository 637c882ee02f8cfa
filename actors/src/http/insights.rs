//! `/v2/insights`: the insight catalog with open finding counts, and each insight's
//! findings.
//!
//! Must never: evaluate an insight; the compliance actor records findings, this only
//! reads them.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use palisade_proto::{FindingState, InsightId, ResourceType, Severity};

use super::error::ErrorBody;
use super::openapi::{schema, FindingList, InsightList};
use super::paging::{given, parse_sort, sort_by_key, ListPage, Paging};
use super::resources::parse_type;
use super::{ApiError, ApiState};
use crate::compliance::Insight;
use crate::store::{FindingOrder, FindingQuery};

/// What `GET /v2/insights` may be sorted by (the catalog is small: sorted in memory);
/// natural order: the catalog's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InsightOrder {
    Id,
    Name,
    Severity,
    OpenFindings,
}

pub(super) const SORT_FIELDS: &[(&str, InsightOrder)] = &[
    ("id", InsightOrder::Id),
    ("name", InsightOrder::Name),
    ("severity", InsightOrder::Severity),
    ("open_findings", InsightOrder::OpenFindings),
];

/// What `GET /v2/insights/{id}/findings` may be sorted by; the store orders by these.
/// Natural order: `resource_uid`.
pub(super) const FINDING_SORT_FIELDS: &[(&str, FindingOrder)] = &[
    ("resource_uid", FindingOrder::Insight),
    ("resource", FindingOrder::Resource),
    ("resource_type", FindingOrder::ResourceType),
    ("region", FindingOrder::Region),
    ("state", FindingOrder::State),
    ("first_seen", FindingOrder::FirstSeen),
    ("last_seen", FindingOrder::LastSeen),
];

/// An insight as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Insight)]
pub(super) struct InsightView<'a> {
    #[schema(value_type = String)]
    id: &'a InsightId,
    name: &'a str,
    description: &'a str,
    severity: Severity,
    /// The resource types it evaluates.
    resource_types: &'a [ResourceType],
    /// Its findings that hold now.
    open_findings: u64,
}

impl<'a> InsightView<'a> {
    fn new(insight: &'a Insight, open_findings: u64) -> Self {
        InsightView {
            id: &insight.id,
            name: &insight.name,
            description: &insight.description,
            severity: insight.severity,
            resource_types: &insight.resource_types,
            open_findings,
        }
    }
}

fn find<'a>(state: &'a ApiState, id: &str) -> Result<&'a Insight, ApiError> {
    state.catalog.get(id).ok_or_else(|| {
        let shown: String = id.chars().take(64).collect();
        ApiError::NotFound(format!("insight {shown}"))
    })
}

/// The query string of `GET /v2/insights`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct InsightParams {
    /// Only insights of this severity.
    #[param(value_type = Option<Severity>)]
    severity: Option<String>,
    /// Only insights that evaluate this resource type.
    #[serde(rename = "type")]
    #[param(value_type = Option<ResourceType>)]
    rtype: Option<String>,
    #[param(schema_with = schema::limit)]
    limit: Option<String>,
    #[param(schema_with = schema::offset)]
    offset: Option<String>,
    #[param(schema_with = schema::insight_sort)]
    sort: Option<String>,
}

/// The insight catalog, each insight with its open finding count; filtered, sorted, paged.
#[utoipa::path(
    get,
    path = "/v2/insights",
    operation_id = "list_insights",
    tag = "insights",
    params(InsightParams),
    responses(
        (status = 200, description = "One page of insights", body = InsightList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`, `bad_sort`)", body = ErrorBody),
    )
)]
pub(super) async fn list(
    state: web::Data<ApiState>,
    params: web::Query<InsightParams>,
) -> Result<HttpResponse, ApiError> {
    let paging = Paging::parse(given(&params.limit), given(&params.offset))?;
    let sort = parse_sort(given(&params.sort), SORT_FIELDS)?;
    let severity = match given(&params.severity) {
        None => None,
        Some(raw) => Some(
            serde_json::from_value::<Severity>(serde_json::Value::String(raw.to_string()))
                .map_err(|_| {
                    ApiError::bad_param("severity", "must be low, medium, high or critical")
                })?,
        ),
    };
    let rtype = given(&params.rtype).map(parse_type).transpose()?;
    let open = state.store.count_open_findings().await?;
    let mut items: Vec<InsightView<'_>> = state
        .catalog
        .list()
        .iter()
        .filter(|i| severity.is_none_or(|s| i.severity == s))
        .filter(|i| rtype.is_none_or(|t| i.resource_types.contains(&t)))
        .map(|i| InsightView::new(i, open.get(&i.id).copied().unwrap_or(0)))
        .collect();
    if let Some(sort) = sort {
        let desc = sort.descending;
        match sort.field {
            InsightOrder::Id => sort_by_key(&mut items, desc, |i| i.id.clone()),
            InsightOrder::Name => sort_by_key(&mut items, desc, |i| i.name.to_string()),
            InsightOrder::Severity => sort_by_key(&mut items, desc, |i| (i.severity, i.id.clone())),
            InsightOrder::OpenFindings => {
                sort_by_key(&mut items, desc, |i| (i.open_findings, i.id.clone()))
            }
        }
    }
    let total = items.len() as u64;
    Ok(HttpResponse::Ok().json(ListPage::new(total, paging.slice(items), paging)))
}

/// One insight with its open finding count.
#[utoipa::path(
    get,
    path = "/v2/insights/{id}",
    operation_id = "get_insight",
    tag = "insights",
    params(("id" = String, Path, description = "Insight id, e.g. `aws-s3-public-acl`")),
    responses(
        (status = 200, description = "The insight", body = InsightView),
        (status = 404, description = "No such insight (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn get(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let insight = find(&state, &id)?;
    let open = state.store.count_open_findings().await?;
    let count = open.get(&insight.id).copied().unwrap_or(0);
    Ok(HttpResponse::Ok().json(InsightView::new(insight, count)))
}

/// The query string of `GET /v2/insights/{id}/findings`, raw; see [`FindingParams::query`].
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FindingParams {
    /// `open` (the default), `resolved` or `all`.
    #[param(schema_with = schema::finding_state)]
    state: Option<String>,
    #[param(schema_with = schema::limit)]
    limit: Option<String>,
    #[param(schema_with = schema::offset)]
    offset: Option<String>,
    #[param(schema_with = schema::finding_sort)]
    sort: Option<String>,
}

impl FindingParams {
    fn query(&self, insight: &InsightId) -> Result<FindingQuery, ApiError> {
        let state = match self.state.as_deref().filter(|s| !s.is_empty()) {
            None | Some("open") => Some(FindingState::Open),
            Some("resolved") => Some(FindingState::Resolved),
            Some("all") => None,
            Some(_) => {
                return Err(ApiError::bad_param(
                    "state",
                    "must be open, resolved or all",
                ))
            }
        };
        let paging = Paging::parse(given(&self.limit), given(&self.offset))?;
        let sort = parse_sort(given(&self.sort), FINDING_SORT_FIELDS)?;
        Ok(FindingQuery {
            insight: Some(insight.clone()),
            state,
            order: sort.map(|s| s.field).unwrap_or_default(),
            descending: sort.is_some_and(|s| s.descending),
            limit: paging.limit,
            offset: paging.offset,
            ..FindingQuery::default()
        })
    }
}

/// One insight's findings, open unless asked otherwise; sorted and paged.
#[utoipa::path(
    get,
    path = "/v2/insights/{id}/findings",
    operation_id = "list_insight_findings",
    tag = "insights",
    params(("id" = String, Path, description = "Insight id"), FindingParams),
    responses(
        (status = 200, description = "One page of findings", body = FindingList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`, `bad_sort`)", body = ErrorBody),
        (status = 404, description = "No such insight (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn findings(
    state: web::Data<ApiState>,
    id: web::Path<String>,
    params: web::Query<FindingParams>,
) -> Result<HttpResponse, ApiError> {
    let insight = find(&state, &id)?;
    let query = params.query(&insight.id)?;
    let page = state.store.list_findings(&query).await?;
    let paging = Paging {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(HttpResponse::Ok().json(ListPage::new(page.total, page.items, paging)))
}
