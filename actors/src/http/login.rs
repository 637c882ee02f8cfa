//! `/v2/public/user/login`, `/v2/user/logout`, `/v2/user/me`: login sessions.
//!
//! Owns: checking a user name and password (argon2id, rate-limited per user name and per
//! client address), starting a session (an HttpOnly, SameSite=Strict cookie and a CSRF
//! token for the client to send back), ending one, and saying who the caller is.
//!
//! Must never: say whether a user name exists, log or answer a password, or log a token.

use std::time::Instant;

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::guard::{self, client_addr, cookie, SESSION_COOKIE};
use super::{ApiError, ApiState};
use crate::auth::{check_user_name, password, token, Principal, Role, Via, MAX_PASSWORD_BYTES};
use crate::store::StoredSession;

/// The audit action of a login.
const LOGIN_ACTION: &str = "POST /v2/public/user/login";

/// The body of `POST /v2/public/user/login`. No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    username: String,
    #[schema(format = Password)]
    password: String,
}

/// A successful login: who, with which role, and the token every mutating request of the
/// session must carry in `X-CSRF-Token`.
#[derive(Serialize, ToSchema)]
pub(super) struct LoginAnswer {
    user: String,
    role: Role,
    csrf_token: String,
}

/// Who the caller is.
#[derive(Serialize, ToSchema)]
pub(super) struct Me {
    user: String,
    role: Role,
    /// `session` or `api_key`.
    via: String,
    /// The API key's public id, when the caller used one.
    api_key: Option<String>,
}

/// The principal the guard put on the request.
pub(super) fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(ApiError::Unauthenticated("authentication required"))
}

fn session_cookie(req: &HttpRequest, value: &str, max_age_secs: u64) -> String {
    let secure = if guard::is_https(req) { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// `POST /v2/public/user/login`: 200 `{"user","role","csrf_token"}` with the session
/// cookie; 401 `invalid_credentials`; 429 with `Retry-After` after too many failures of
/// this user name or from this address.
#[utoipa::path(
    post,
    path = "/v2/public/user/login",
    operation_id = "login",
    tag = "users",
    security(()),
    request_body = Login,
    responses(
        (status = 200, description = "Signed in: the session cookie is set", body = LoginAnswer,
            headers(("Set-Cookie" = String, description = "`palisade_session`, HttpOnly, SameSite=Strict"))),
        (status = 400, description = "The body is not JSON (`malformed_json`, `malformed_body`)", body = ErrorBody),
        (status = 401, description = "Wrong user name or password (`invalid_credentials`)", body = ErrorBody),
        (status = 413, description = "The body is larger than 256 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "The body's content is not acceptable (`invalid_body`)", body = ErrorBody),
        (status = 429, description = "Too many failed logins (`too_many_requests`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(super) async fn login(
    state: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { username, password } = body.into_inner();
    let client = client_addr(&req);
    let shown: String = username.chars().take(64).collect();
    let keys = [format!("user:{shown}"), format!("addr:{client}")];
    let keys = [keys[0].as_str(), keys[1].as_str()];
    let limiter = &state.login.limiter;

    if let Some(wait) = limiter.blocked_for(&keys, Instant::now()) {
        crate::metrics::inc("palisade_auth_login_refusals_total", &[]);
        warn!(user = %shown, client = %client, "login refused: too many failures");
        let err = ApiError::TooManyRequests {
            retry_after: wait.as_secs().max(1),
        };
        guard::audit(&state, shown, LOGIN_ACTION.into(), &req, 429).await;
        return Err(err);
    }

    let stored = if check_user_name(&username).is_ok() && password.len() <= MAX_PASSWORD_BYTES {
        state.store.get_user(&username).await?
    } else {
        None
    };
    let hash = stored
        .as_ref()
        .map(|u| u.password_hash.clone())
        .filter(|h| !h.is_empty());
    let ok = password::verify(password, hash).await;
    let Some(user) = stored.filter(|_| ok) else {
        limiter.record_failure(&keys, Instant::now());
        crate::metrics::inc("palisade_auth_login_failures_total", &[]);
        warn!(user = %shown, client = %client, "login failed");
        guard::audit(&state, shown, LOGIN_ACTION.into(), &req, 401).await;
        return Err(ApiError::InvalidCredentials);
    };

    limiter.clear(keys[0]);
    let now = chrono::Utc::now();
    let ttl = state.login.session_ttl;
    let expires_at = now + chrono::Duration::from_std(ttl).map_err(|_| ApiError::Internal)?;
    let session = token::random_token();
    let csrf = token::random_token();
    state
        .store
        .put_session(&StoredSession {
            hash: token::hash_secret(&session),
            user: user.name.clone(),
            csrf_hash: token::hash_secret(&csrf),
            expires_at,
        })
        .await?;
    if let Err(e) = state.store.purge_sessions(now).await {
        warn!(error = %e, "purging expired sessions failed");
    }
    info!(user = %user.name, role = %user.role, client = %client, "login");
    guard::audit(&state, user.name.clone(), LOGIN_ACTION.into(), &req, 200).await;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::SET_COOKIE,
            session_cookie(&req, &session, ttl.as_secs()),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(LoginAnswer {
            user: user.name,
            role: user.role,
            csrf_token: csrf,
        }))
}

/// `POST /v2/user/logout`: end the session of the cookie (204, the cookie cleared).
/// With an API key there is no session: 204 and nothing changes.
#[utoipa::path(
    post,
    path = "/v2/user/logout",
    operation_id = "logout",
    tag = "users",
    responses((status = 204, description = "Signed out; the session cookie is cleared"))
)]
pub(super) async fn logout(
    state: web::Data<ApiState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req)?;
    if who.via == Via::Session {
        if let Some(session) = cookie(&req, SESSION_COOKIE) {
            state
                .store
                .delete_session(&token::hash_secret(&session))
                .await?;
            info!(user = %who.user, "logout");
        }
    }
    Ok(HttpResponse::NoContent()
        .insert_header((header::SET_COOKIE, session_cookie(&req, "", 0)))
        .finish())
}

/// `GET /v2/user/me`: who the caller is, with which role, and how it authenticated.
#[utoipa::path(
    get,
    path = "/v2/user/me",
    operation_id = "me",
    tag = "users",
    responses((status = 200, description = "The caller", body = Me))
)]
pub(super) async fn me(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let who = principal(&req)?;
    let (via, key) = match &who.via {
        Via::Session => ("session", None),
        Via::ApiKey { id } => ("api_key", Some(id.clone())),
    };
    Ok(HttpResponse::Ok().json(Me {
        user: who.user,
        role: who.role,
        via: via.to_string(),
        api_key: key,
    }))
}
