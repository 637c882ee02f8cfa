//! `/v2/users`, `/v2/api-keys`, `/v2/audit`: users, their API keys, and the audit log.
//!
//! Owns: adding and listing users (admins), making, listing and revoking API keys (anyone
//! for their own keys, admins for everyone's), and reading the audit log (admins). The
//! guard has checked the route's role; the narrower rule "another user's key needs admin"
//! is checked here.
//!
//! Must never: answer a password hash or a key hash, or show a key's secret after the
//! answer that made it.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::login::principal;
use super::openapi::{schema, ApiKeyList, AuditList, UserList};
use super::paging::{given, ListPage, Paging};
use super::{ApiError, ApiState};
use crate::auth::{bootstrap, token, AuthError, Role};
use crate::store::{StoredApiKey, StoredUser};

/// Longest API key label, in characters.
const KEY_NAME_MAX: usize = 100;

/// A user as answered: no password hash.
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub(super) struct UserView<'a> {
    name: &'a str,
    role: Role,
    #[schema(value_type = String, format = DateTime)]
    created_at: palisade_proto::Timestamp,
}

impl<'a> From<&'a StoredUser> for UserView<'a> {
    fn from(u: &'a StoredUser) -> Self {
        UserView {
            name: &u.name,
            role: u.role,
            created_at: u.created_at,
        }
    }
}

/// An API key as listed: no hash, no secret.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub(super) struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    user: &'a str,
    #[schema(value_type = String, format = DateTime)]
    created_at: palisade_proto::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used: Option<palisade_proto::Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<palisade_proto::Timestamp>,
}

impl<'a> From<&'a StoredApiKey> for KeyView<'a> {
    fn from(k: &'a StoredApiKey) -> Self {
        KeyView {
            id: &k.id,
            name: &k.name,
            user: &k.user,
            created_at: k.created_at,
            last_used: k.last_used,
            revoked_at: k.revoked_at,
        }
    }
}

/// The body of `POST /v2/users`. No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    name: String,
    #[schema(format = Password)]
    password: String,
    role: Role,
}

/// The query string of the lists of users, API keys and the audit log.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageParams {
    #[param(schema_with = schema::limit)]
    limit: Option<String>,
    #[param(schema_with = schema::offset)]
    offset: Option<String>,
}

impl PageParams {
    fn paging(&self) -> Result<Paging, ApiError> {
        Paging::parse(given(&self.limit), given(&self.offset))
    }
}

/// A page of `all`, as every list answers.
fn page_of<T: Serialize>(all: Vec<T>, paging: Paging) -> HttpResponse {
    let total = all.len() as u64;
    HttpResponse::Ok().json(ListPage::new(total, paging.slice(all), paging))
}

/// `GET /v2/users`: the users, by name.
#[utoipa::path(
    get,
    path = "/v2/users",
    operation_id = "list_users",
    tag = "users",
    params(PageParams),
    responses(
        (status = 200, description = "One page of users", body = UserList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`)", body = ErrorBody),
    )
)]
pub(super) async fn list_users(
    state: web::Data<ApiState>,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let paging = params.paging()?;
    let users = state.store.list_users().await?;
    Ok(page_of(users.iter().map(UserView::from).collect(), paging))
}

/// `POST /v2/users` `{"name","password","role"}`: 201 with the user; 409 when the name is
/// taken; 422 for a bad name or a short password.
#[utoipa::path(
    post,
    path = "/v2/users",
    operation_id = "create_user",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user", body = UserView),
        (status = 400, description = "The body is not JSON (`malformed_json`, `malformed_body`)", body = ErrorBody),
        (status = 409, description = "The name is taken (`conflict`)", body = ErrorBody),
        (status = 413, description = "The body is larger than 256 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "A bad name or a weak password (`invalid_body`)", body = ErrorBody),
    )
)]
pub(super) async fn create_user(
    state: web::Data<ApiState>,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    let NewUser {
        name,
        password,
        role,
    } = body.into_inner();
    match bootstrap::add_user(&state.store, &name, role, &password).await {
        Ok(()) => {}
        Err(AuthError::UserExists(n)) => {
            return Err(ApiError::Conflict(format!("user {n} already exists")))
        }
        Err(e @ (AuthError::BadUserName | AuthError::WeakPassword { .. })) => {
            return Err(ApiError::invalid(e.to_string()))
        }
        Err(AuthError::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "adding a user failed");
            return Err(ApiError::Internal);
        }
    }
    let user = state
        .store
        .get_user(&name)
        .await?
        .ok_or(ApiError::Internal)?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

/// The body of `POST /v2/api-keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    name: String,
}

/// A new API key: the only answer that shows its secret.
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedKey {
    id: String,
    name: String,
    user: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: palisade_proto::Timestamp,
    /// The key to send as the `Api-Key` header; never shown again.
    key: String,
}

/// `POST /v2/api-keys` `{"name"}`: a key for the caller, 201 `{"id","name","key",...}`:
/// the only time the key is shown.
#[utoipa::path(
    post,
    path = "/v2/api-keys",
    operation_id = "create_api_key",
    tag = "users",
    request_body = NewKey,
    responses(
        (status = 201, description = "The key, shown this once", body = CreatedKey),
        (status = 400, description = "The body is not JSON (`malformed_json`, `malformed_body`)", body = ErrorBody),
        (status = 409, description = "A key id collided; try again (`conflict`)", body = ErrorBody),
        (status = 413, description = "The body is larger than 256 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "A bad key name (`invalid_body`)", body = ErrorBody),
    )
)]
pub(super) async fn create_key(
    state: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Json<NewKey>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req)?;
    let name = body.into_inner().name.trim().to_string();
    if name.is_empty() || name.chars().count() > KEY_NAME_MAX || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(format!(
            "name must be 1 to {KEY_NAME_MAX} printable characters"
        )));
    }
    let new = token::new_api_key();
    let stored = StoredApiKey {
        id: new.id.clone(),
        user: who.user.clone(),
        name,
        hash: new.hash.clone(),
        created_at: chrono::Utc::now(),
        last_used: None,
        revoked_at: None,
    };
    if !state.store.put_api_key(&stored).await? {
        // 48 random bits of id colliding: vanishingly rare, and safe to retry
        return Err(ApiError::Conflict("api key id taken; try again".into()));
    }
    info!(user = %who.user, key = %stored.id, "api key created");
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(CreatedKey {
            id: stored.id,
            name: stored.name,
            user: stored.user,
            created_at: stored.created_at,
            key: new.secret,
        }))
}

/// `GET /v2/api-keys`: the caller's keys; an admin's answer holds everyone's.
#[utoipa::path(
    get,
    path = "/v2/api-keys",
    operation_id = "list_api_keys",
    tag = "users",
    params(PageParams),
    responses(
        (status = 200, description = "One page of API keys (no secrets)", body = ApiKeyList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`)", body = ErrorBody),
    )
)]
pub(super) async fn list_keys(
    state: web::Data<ApiState>,
    req: HttpRequest,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let paging = params.paging()?;
    let who = principal(&req)?;
    let owner = (who.role != Role::Admin).then_some(who.user.as_str());
    let keys = state.store.list_api_keys(owner).await?;
    Ok(page_of(keys.iter().map(KeyView::from).collect(), paging))
}

/// `DELETE /v2/api-keys/{id}`: revoke a key (204; again: 204). Another user's key needs
/// the admin role (403); an unknown id is a 404.
#[utoipa::path(
    delete,
    path = "/v2/api-keys/{id}",
    operation_id = "revoke_api_key",
    tag = "users",
    params(("id" = String, Path, description = "The key's public id")),
    responses(
        (status = 204, description = "Revoked (also when it already was)"),
        (status = 404, description = "No such key (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn revoke_key(
    state: web::Data<ApiState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req)?;
    let id = id.into_inner();
    let shown: String = id.chars().take(64).collect();
    let Some(key) = state.store.get_api_key(&id).await? else {
        return Err(ApiError::NotFound(format!("api key {shown}")));
    };
    if key.user != who.user && who.role != Role::Admin {
        return Err(ApiError::Forbidden(
            "revoking another user's api key needs the admin role".into(),
        ));
    }
    let revoked = state.store.revoke_api_key(&id, chrono::Utc::now()).await?;
    // after the store: a request that read the key before the revocation cannot cache it
    state.login.api_keys.forget(&key.hash);
    if revoked {
        info!(user = %who.user, key = %shown, owner = %key.user, "api key revoked");
    }
    Ok(HttpResponse::NoContent().finish())
}

/// One audit log entry as answered.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub(super) struct AuditView<'a> {
    id: u64,
    #[schema(value_type = String, format = DateTime)]
    at: palisade_proto::Timestamp,
    /// `user`, `user (key ID)`, or for a failed login the name that was tried.
    principal: &'a str,
    /// Method and route pattern: `POST /v2/clouds/{id}/harvest`.
    action: &'a str,
    /// The request's path.
    target: &'a str,
    /// The client's address.
    client: &'a str,
    /// The HTTP status of the answer.
    status: u16,
}

/// `GET /v2/audit?limit=&offset=`: the audit log, newest first.
#[utoipa::path(
    get,
    path = "/v2/audit",
    operation_id = "audit_log",
    tag = "users",
    params(PageParams),
    responses(
        (status = 200, description = "One page of the audit log, newest first", body = AuditList),
        (status = 400, description = "A bad query parameter (`invalid_parameter`)", body = ErrorBody),
    )
)]
pub(super) async fn audit(
    state: web::Data<ApiState>,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let paging = params.paging()?;
    let page = state.store.list_audit(paging.limit, paging.offset).await?;
    let items: Vec<AuditView<'_>> = page
        .items
        .iter()
        .map(|e| AuditView {
            id: e.id,
            at: e.at,
            principal: &e.principal,
            action: &e.action,
            target: &e.target,
            client: &e.client,
            status: e.status,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ListPage::new(page.total, items, paging)))
}
