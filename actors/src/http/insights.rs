//! `/v2/insights`: the insight catalog with open finding counts, and each insight's
//! findings.
//!
//! Must never: evaluate an insight; the compliance actor records findings, this only
//! reads them.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use palisade_proto::{FindingState, InsightId, ResourceType, Severity};

use super::paging::Paging;
use super::{ApiError, ApiState};
use crate::compliance::Insight;
use crate::store::FindingQuery;

/// An insight as the API shows it.
#[derive(Serialize)]
struct InsightView<'a> {
    id: &'a InsightId,
    name: &'a str,
    description: &'a str,
    severity: Severity,
    resource_types: &'a [ResourceType],
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

/// `GET /v2/insights` → `{"total","items"}`, each with its open finding count.
pub(super) async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let open = state.store.count_open_findings().await?;
    let items: Vec<InsightView<'_>> = state
        .catalog
        .list()
        .iter()
        .map(|i| InsightView::new(i, open.get(&i.id).copied().unwrap_or(0)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"total": items.len(), "items": items})))
}

/// `GET /v2/insights/{id}`.
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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FindingParams {
    state: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
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
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let paging = Paging::parse(
            given(&self.limit).as_deref(),
            given(&self.offset).as_deref(),
        )?;
        Ok(FindingQuery {
            insight: Some(insight.clone()),
            state,
            limit: paging.limit,
            offset: paging.offset,
            ..FindingQuery::default()
        })
    }
}

/// `GET /v2/insights/{id}/findings?state=open|resolved|all&limit=&offset=` →
/// `{"total","items"}`; open findings unless asked otherwise.
pub(super) async fn findings(
    state: web::Data<ApiState>,
    id: web::Path<String>,
    params: web::Query<FindingParams>,
) -> Result<HttpResponse, ApiError> {
    let insight = find(&state, &id)?;
    let query = params.query(&insight.id)?;
    let page = state.store.list_findings(&query).await?;
    Ok(HttpResponse::Ok().json(json!({
        "total": page.total,
        "limit": query.limit,
        "offset": query.offset,
        "items": page.items,
    })))
}
