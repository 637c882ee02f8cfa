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
use serde_json::json;
use tracing::info;

use super::login::principal;
use super::paging::Paging;
use super::{ApiError, ApiState};
use crate::auth::{bootstrap, token, AuthError, Role};
use crate::store::{StoredApiKey, StoredUser};

/// Longest API key label, in characters.
const KEY_NAME_MAX: usize = 100;

/// A user as answered: no password hash.
#[derive(Serialize)]
struct UserView<'a> {
    name: &'a str,
    role: Role,
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
#[derive(Serialize)]
struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    user: &'a str,
    created_at: palisade_proto::Timestamp,
    last_used: Option<palisade_proto::Timestamp>,
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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    name: String,
    password: String,
    role: Role,
}

/// `GET /v2/users`: every user, by name.
pub(super) async fn list_users(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let users = state.store.list_users().await?;
    let items: Vec<UserView<'_>> = users.iter().map(UserView::from).collect();
    Ok(HttpResponse::Ok().json(json!({"total": items.len(), "items": items})))
}

/// `POST /v2/users` `{"name","password","role"}`: 201 with the user; 409 when the name is
/// taken; 422 for a bad name or a short password.
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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    name: String,
}

/// `POST /v2/api-keys` `{"name"}`: a key for the caller, 201 `{"id","name","key",...}`:
/// the only time the key is shown.
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
        .json(json!({
            "id": stored.id,
            "name": stored.name,
            "user": stored.user,
            "created_at": stored.created_at,
            "key": new.secret,
        })))
}

/// `GET /v2/api-keys`: the caller's keys; an admin's answer holds everyone's.
pub(super) async fn list_keys(
    state: web::Data<ApiState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req)?;
    let owner = (who.role != Role::Admin).then_some(who.user.as_str());
    let keys = state.store.list_api_keys(owner).await?;
    let items: Vec<KeyView<'_>> = keys.iter().map(KeyView::from).collect();
    Ok(HttpResponse::Ok().json(json!({"total": items.len(), "items": items})))
}

/// `DELETE /v2/api-keys/{id}`: revoke a key (204; again: 204). Another user's key needs
/// the admin role (403); an unknown id is a 404.
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
    if state.store.revoke_api_key(&id, chrono::Utc::now()).await? {
        info!(user = %who.user, key = %shown, owner = %key.user, "api key revoked");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    limit: Option<String>,
    offset: Option<String>,
}

/// `GET /v2/audit?limit=&offset=`: the audit log, newest first.
pub(super) async fn audit(
    state: web::Data<ApiState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let paging = Paging::parse(query.limit.as_deref(), query.offset.as_deref())?;
    let page = state.store.list_audit(paging.limit, paging.offset).await?;
    let items: Vec<_> = page
        .items
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": e.at,
                "principal": e.principal,
                "action": e.action,
                "target": e.target,
                "client": e.client,
                "status": e.status,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"total": page.total, "items": items})))
}
