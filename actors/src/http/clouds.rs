//! `/v2/clouds`: register, list, show and remove cloud accounts, and ask for a harvest.
//!
//! Must never: answer with a [`CloudAccount`] itself (its credentials hold secrets); only
//! [`CloudAccount::view`] leaves this file.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;
use tracing::info;

use palisade_proto::{
    CloudAccount, CloudId, CloudView, Credentials, HarvestScope, JobKind, JobPriority, Provider,
    ResourceType,
};

use super::error::ErrorBody;
use super::jobs::JobRef;
use super::openapi::{schema, CloudList};
use super::paging::{given, parse_sort, sort_by_key, ListPage, Paging};
use super::{ApiError, ApiState};
use crate::scheduler;

/// What `GET /v2/clouds` may be sorted by (clouds are few: sorted in memory); natural
/// order: `created_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CloudOrder {
    CreatedAt,
    Name,
    Id,
    Provider,
}

pub(super) const SORT_FIELDS: &[(&str, CloudOrder)] = &[
    ("created_at", CloudOrder::CreatedAt),
    ("name", CloudOrder::Name),
    ("id", CloudOrder::Id),
    ("provider", CloudOrder::Provider),
];

/// The query string of `GET /v2/clouds`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CloudParams {
    #[param(schema_with = schema::limit)]
    limit: Option<String>,
    #[param(schema_with = schema::offset)]
    offset: Option<String>,
    #[param(schema_with = schema::cloud_sort)]
    sort: Option<String>,
}

/// Longest cloud name, in characters.
const NAME_MAX: usize = 200;
/// Most regions one cloud may list.
const REGIONS_MAX: usize = 64;
/// Longest credential field, in characters (AWS's own limits are lower).
const SECRET_FIELD_MAX: usize = 2048;

/// The body of `POST /v2/clouds`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCloud {
    /// Only `aws` has a harvester so far.
    #[schema(value_type = Provider)]
    provider: String,
    /// 1 to 200 characters, no control characters.
    name: String,
    /// 1 to 64 region names like `us-east-1`.
    regions: Vec<String>,
    credentials: Credentials,
}

/// The optional body of `POST /v2/clouds/{id}/harvest`. Empty lists mean "all".
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HarvestRequest {
    /// Some of the cloud's regions; empty or absent: all of them.
    #[serde(default)]
    regions: Vec<String>,
    /// Some of the provider's resource types; empty or absent: all of them.
    #[serde(default)]
    types: Vec<ResourceType>,
}

/// Whether `s` looks like an AWS region name: `us-east-1`, `us-gov-west-1`, `cn-north-1`.
fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let Some((last, head)) = parts.split_last() else {
        return false;
    };
    parts.len() >= 3
        && parts[0].len() == 2
        && head
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 16 && p.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit())
}

fn check_field(name: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(format!(
            "credentials.{name} must not be empty"
        )));
    }
    if value.chars().count() > SECRET_FIELD_MAX {
        return Err(ApiError::invalid(format!(
            "credentials.{name} is longer than {SECRET_FIELD_MAX} characters"
        )));
    }
    Ok(())
}

/// Check the credentials' fields; messages name fields, never values.
fn check_credentials(c: &Credentials) -> Result<(), ApiError> {
    match c {
        Credentials::Default => Ok(()),
        Credentials::Keys {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            check_field("access_key_id", access_key_id)?;
            check_field("secret_access_key", secret_access_key)?;
            match session_token {
                Some(t) => check_field("session_token", t),
                None => Ok(()),
            }
        }
        Credentials::AssumeRole {
            role_arn,
            external_id,
        } => {
            check_field("role_arn", role_arn)?;
            if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
                return Err(ApiError::invalid(
                    "credentials.role_arn must be an iam role arn (arn:aws:iam::ACCOUNT:role/NAME)",
                ));
            }
            match external_id {
                Some(x) => check_field("external_id", x),
                None => Ok(()),
            }
        }
    }
}

/// Validate a new cloud and give it a fresh id.
fn account_from(new: NewCloud) -> Result<CloudAccount, ApiError> {
    let provider: Provider = new
        .provider
        .parse()
        .map_err(|_| ApiError::invalid("provider must be \"aws\""))?;
    if provider != Provider::Aws {
        return Err(ApiError::Invalid {
            code: "unsupported_provider",
            message: format!("provider {provider} has no harvester yet; only \"aws\" is supported"),
        });
    }
    let name = new.name.trim().to_string();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(ApiError::invalid(format!(
            "name must be 1 to {NAME_MAX} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name must not contain control characters",
        ));
    }
    if new.regions.is_empty() {
        return Err(ApiError::invalid("regions must list at least one region"));
    }
    if new.regions.len() > REGIONS_MAX {
        return Err(ApiError::invalid(format!(
            "regions must list at most {REGIONS_MAX} regions"
        )));
    }
    let mut regions: Vec<String> = Vec::with_capacity(new.regions.len());
    for r in new.regions {
        if !is_region_name(&r) {
            let shown: String = r.chars().take(40).collect();
            return Err(ApiError::invalid(format!(
                "region {shown:?} is not a region name like \"us-east-1\""
            )));
        }
        if !regions.contains(&r) {
            regions.push(r);
        }
    }
    check_credentials(&new.credentials)?;
    Ok(CloudAccount {
        id: CloudId(uuid::Uuid::new_v4().to_string()),
        provider,
        name,
        regions,
        credentials: new.credentials,
        created_at: chrono::Utc::now(),
    })
}

/// Register a cloud account. The answer shows its credentials' kind and public parts only.
#[utoipa::path(
    post,
    path = "/v2/clouds",
    operation_id = "create_cloud",
    tag = "clouds",
    request_body = NewCloud,
    responses(
        (status = 201, description = "Registered; `Location` names it", body = CloudView,
            headers(("Location" = String, description = "/v2/clouds/{id}"))),
        (status = 400, description = "The body is not JSON (`malformed_json`, `malformed_body`)", body = ErrorBody),
        (status = 413, description = "The body is larger than 256 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "The body's content is not acceptable (`invalid_body`, `unsupported_provider`)", body = ErrorBody),
    )
)]
pub(super) async fn create(
    state: web::Data<ApiState>,
    body: web::Json<NewCloud>,
) -> Result<HttpResponse, ApiError> {
    let account = account_from(body.into_inner())?;
    state.store.put_cloud(&account).await?;
    info!(cloud = %account.id, provider = %account.provider, regions = account.regions.len(), "cloud registered");
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/v2/clouds/{}", account.id),
        ))
        .json(account.view()))
}

/// The cloud accounts, sorted and paged.
#[utoipa::path(
    get,
    path = "/v2/clouds",
    operation_id = "list_clouds",
    tag = "clouds",
    params(CloudParams),
    responses(
        (status = 200, description = "One page of clouds", body = CloudList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`, `bad_sort`)", body = ErrorBody),
    )
)]
pub(super) async fn list(
    state: web::Data<ApiState>,
    params: web::Query<CloudParams>,
) -> Result<HttpResponse, ApiError> {
    let paging = Paging::parse(given(&params.limit), given(&params.offset))?;
    let sort = parse_sort(given(&params.sort), SORT_FIELDS)?;
    let mut items: Vec<CloudView> = state
        .store
        .list_clouds()
        .await?
        .iter()
        .map(CloudAccount::view)
        .collect();
    if let Some(sort) = sort {
        let desc = sort.descending;
        match sort.field {
            CloudOrder::CreatedAt => {
                sort_by_key(&mut items, desc, |c| (c.created_at, c.id.clone()))
            }
            CloudOrder::Name => sort_by_key(&mut items, desc, |c| (c.name.clone(), c.id.clone())),
            CloudOrder::Id => sort_by_key(&mut items, desc, |c| c.id.clone()),
            CloudOrder::Provider => sort_by_key(&mut items, desc, |c| {
                (c.provider, c.created_at, c.id.clone())
            }),
        }
    }
    let total = items.len() as u64;
    Ok(HttpResponse::Ok().json(ListPage::new(total, paging.slice(items), paging)))
}

async fn find(state: &ApiState, id: &str) -> Result<CloudAccount, ApiError> {
    state
        .store
        .get_cloud(&CloudId(id.to_string()))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("cloud {}", shown(id))))
}

/// A client-supplied id as echoed in a message: capped.
fn shown(id: &str) -> String {
    id.chars().take(64).collect()
}

/// One cloud account.
#[utoipa::path(
    get,
    path = "/v2/clouds/{id}",
    operation_id = "get_cloud",
    tag = "clouds",
    params(("id" = String, Path, description = "Cloud id")),
    responses(
        (status = 200, description = "The cloud", body = CloudView),
        (status = 404, description = "No such cloud (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn get(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account = find(&state, &id).await?;
    Ok(HttpResponse::Ok().json(account.view()))
}

/// Remove a cloud account with its resources and findings.
#[utoipa::path(
    delete,
    path = "/v2/clouds/{id}",
    operation_id = "delete_cloud",
    tag = "clouds",
    params(("id" = String, Path, description = "Cloud id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such cloud (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let cloud = CloudId(id.into_inner());
    if !state.store.delete_cloud(&cloud).await? {
        return Err(ApiError::NotFound(format!(
            "cloud {}",
            shown(cloud.as_str())
        )));
    }
    info!(cloud = %cloud, "cloud removed");
    Ok(HttpResponse::NoContent().finish())
}

/// Parse the optional harvest body: empty means "everything".
fn harvest_request(req: &HttpRequest, body: &[u8]) -> Result<HarvestRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HarvestRequest::default());
    }
    let is_json = match req.mime_type() {
        Ok(Some(m)) => {
            m.subtype() == actix_web::mime::JSON || m.suffix() == Some(actix_web::mime::JSON)
        }
        _ => false,
    };
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::from_serde_json(&e))
}

/// Queue a p0 harvest of a cloud, of some regions and types or of everything.
#[utoipa::path(
    post,
    path = "/v2/clouds/{id}/harvest",
    operation_id = "harvest_cloud",
    tag = "clouds",
    params(("id" = String, Path, description = "Cloud id")),
    request_body(content = Option<HarvestRequest>, description = "Optional; no body harvests everything"),
    responses(
        (status = 202, description = "Queued; `Location` names the job", body = JobRef,
            headers(("Location" = String, description = "/v2/jobs/{job_id}"))),
        (status = 400, description = "The body is not JSON (`malformed_json`, `malformed_body`)", body = ErrorBody),
        (status = 404, description = "No such cloud (`not_found`)", body = ErrorBody),
        (status = 409, description = "The same harvest is already queued or running (`conflict`)", body = ErrorBody),
        (status = 413, description = "The body is larger than 256 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "A body that is not application/json (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "A region or type the cloud does not have (`invalid_body`)", body = ErrorBody),
    )
)]
pub(super) async fn harvest(
    state: web::Data<ApiState>,
    id: web::Path<String>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let body = body.map_err(|e| ApiError::from_status(e.as_response_error().status_code()))?;
    let request = harvest_request(&req, &body)?;
    let account = find(&state, &id).await?;
    for r in &request.regions {
        if !account.regions.contains(r) {
            let shown: String = r.chars().take(40).collect();
            return Err(ApiError::invalid(format!(
                "region {shown:?} is not one of this cloud's regions"
            )));
        }
    }
    for t in &request.types {
        if t.provider() != account.provider {
            return Err(ApiError::invalid(format!(
                "type {t} does not belong to provider {}",
                account.provider
            )));
        }
    }
    let scope = HarvestScope {
        cloud: account.id.clone(),
        regions: request.regions,
        types: request.types,
    };
    let job = scheduler::new_job(JobPriority::P0, JobKind::Harvest(scope));
    let job_id = job.id.clone();
    if !scheduler::submit(state.queue.as_ref(), state.bus.as_ref(), job).await? {
        return Err(ApiError::Conflict(
            "an identical harvest is already queued or running".into(),
        ));
    }
    info!(cloud = %account.id, job = %job_id, "harvest requested");
    Ok(HttpResponse::Accepted()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/v2/jobs/{job_id}"),
        ))
        .json(JobRef { job_id }))
}

#[cfg(test)]
mod tests {
    use super::is_region_name;

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-12",
        ] {
            assert!(is_region_name(ok), "{ok}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "US-EAST-1",
            "us-east-1a",
            "us--1",
            "useast-1-x",
            "u-east-1",
        ] {
            assert!(!is_region_name(bad), "{bad}");
        }
    }
}
