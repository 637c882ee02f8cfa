//! The guard in front of every route: authentication, the role check, CSRF and the audit
//! log, in one middleware.
//!
//! Owns: reading credentials (the `Api-Key` header, else the `palisade_session` cookie),
//! looking them up in the store (an API key through the node's key cache,
//! [`crate::auth::keycache`]), the CSRF check of cookie-authenticated mutating requests,
//! the role check against [`crate::auth::access`] for the route the router will pick,
//! putting the [`Principal`] into the request's extensions for handlers, appending every
//! authenticated mutating request to the audit log, and [`client_addr`], the one place a
//! request's client address is read.
//!
//! Must never: let a route through that the access table does not name (deny by default),
//! answer a credential problem with anything but a JSON 401/403, or log a key, a token or a
//! cookie.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, ResponseError};
use tracing::{error, warn};

use super::{ApiError, ApiState};
use crate::auth::access::{self, Access};
use crate::auth::keycache::{CachedKey, Lookup};
use crate::auth::{token, Principal, Role, Via};
use crate::store::AuditEntry;

/// The header an API key travels in.
pub const API_KEY_HEADER: &str = "Api-Key";
/// The cookie a login session travels in.
pub const SESSION_COOKIE: &str = "palisade_session";
/// The header a cookie-authenticated mutating request carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// A key's last use is written when the stored one is older than this (not on every call).
const TOUCH_AFTER_MS: i64 = 60_000;

/// The client's address, as the audit log records it (see [`super::forwarded`]: the peer,
/// or what trusted proxies say the client was).
pub fn client_addr(req: &HttpRequest) -> String {
    super::forwarded::client_addr(req).to_string()
}

pub use super::forwarded::is_https;

/// The value of cookie `name`, if the request carries it.
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// Whether a method changes something (and so needs CSRF protection and an audit entry).
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A request's credentials, checked.
struct Authenticated {
    principal: Principal,
    /// The session's CSRF hash, for cookie authentication.
    csrf_hash: Option<String>,
}

/// Who the request's credentials name: none without credentials; an error for credentials
/// that name no live key or session (or when the store cannot say).
async fn authenticate(
    state: &ApiState,
    req: &HttpRequest,
) -> Result<Option<Authenticated>, ApiError> {
    let now = chrono::Utc::now();
    if let Some(value) = req.headers().get(API_KEY_HEADER) {
        let key = value
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("invalid api key"))?
            .trim();
        let hash = token::hash_secret(key);
        let keys = &state.login.api_keys;
        let started = std::time::Instant::now();
        let (stored, role) = match keys.get(&hash, started) {
            Lookup::Hit(CachedKey { key, role }) => (key, role),
            Lookup::Miss { generation } => {
                let Some((stored, role)) = state.store.find_api_key(&hash).await? else {
                    crate::metrics::inc(
                        "palisade_auth_rejections_total",
                        &[("reason", "unknown_api_key")],
                    );
                    return Err(ApiError::Unauthenticated("invalid api key"));
                };
                let cached = CachedKey {
                    key: stored.clone(),
                    role,
                };
                keys.put(&hash, cached, generation, started);
                (stored, role)
            }
        };
        let stale = stored
            .last_used
            .is_none_or(|t| now.timestamp_millis() - t.timestamp_millis() > TOUCH_AFTER_MS);
        if stale {
            match state.store.touch_api_key(&stored.id, now).await {
                Ok(()) => keys.touched(&hash, now),
                Err(e) => warn!(key = %stored.id, error = %e, "recording an api key's use failed"),
            }
        }
        return Ok(Some(Authenticated {
            principal: Principal {
                user: stored.user,
                role,
                via: Via::ApiKey { id: stored.id },
            },
            csrf_hash: None,
        }));
    }
    if let Some(session) = cookie(req, SESSION_COOKIE) {
        let Some((stored, role)) = state
            .store
            .find_session(&token::hash_secret(&session), now)
            .await?
        else {
            crate::metrics::inc(
                "palisade_auth_rejections_total",
                &[("reason", "unknown_session")],
            );
            return Err(ApiError::Unauthenticated(
                "session expired or unknown; log in again",
            ));
        };
        return Ok(Some(Authenticated {
            principal: Principal {
                user: stored.user,
                role,
                via: Via::Session,
            },
            csrf_hash: Some(stored.csrf_hash),
        }));
    }
    Ok(None)
}

/// Append one entry to the audit log; a failure is logged and counted, the answer stands.
pub async fn audit(
    state: &ApiState,
    principal: String,
    action: String,
    req: &HttpRequest,
    status: u16,
) {
    let entry = AuditEntry {
        id: 0,
        at: chrono::Utc::now(),
        principal,
        action,
        target: req.path().to_string(),
        client: client_addr(req),
        status,
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        crate::metrics::inc("palisade_auth_audit_failures_total", &[]);
        error!(error = %e, action = %entry.action, "audit log entry lost");
    }
}

/// The middleware: see the module's header.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The pattern the router will match: the same (re-quoted) path it routes on, without
    // the base path every route is served under.
    let state = req.app_data::<web::Data<ApiState>>().cloned();
    let base = state.as_ref().map_or("", |s| s.proxy.base_path.as_str());
    let pattern = req
        .resource_map()
        .match_pattern(req.match_info().as_str())
        .map(|p| match p.strip_prefix(base) {
            Some(rest) if !base.is_empty() && rest.starts_with('/') => rest.to_string(),
            _ => p,
        });
    let method = req.method().clone();
    let needed = match &pattern {
        Some(p) => match access::rule(method.as_str(), p) {
            Some(Access::Open) => {
                return next
                    .call(req)
                    .await
                    .map(ServiceResponse::map_into_left_body)
            }
            Some(Access::Role(role)) => role,
            // a method the route does not serve: its JSON 405, once authenticated
            None if access::knows_pattern(p) => Role::Viewer,
            None => {
                crate::metrics::inc("palisade_auth_unlisted_routes_total", &[]);
                error!(pattern = %p, %method, "route has no access rule; refused");
                return Ok(refuse(
                    req,
                    ApiError::Forbidden("route is not open to anyone".into()),
                ));
            }
        },
        // no route: the JSON 404, once authenticated
        None => Role::Viewer,
    };
    let Some(state) = state else {
        error!("the api state is missing; refusing every request");
        return Ok(refuse(req, ApiError::Internal));
    };
    let authenticated = match authenticate(&state, req.request()).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return Ok(refuse(
                req,
                ApiError::Unauthenticated(
                    "authentication required: an Api-Key header or a session",
                ),
            ))
        }
        Err(e) => return Ok(refuse(req, e)),
    };
    let principal = authenticated.principal;
    let mutating = is_mutating(&method);
    let action = format!("{method} {}", pattern.as_deref().unwrap_or("(no route)"));

    let refusal = if let (true, Some(expected)) = (mutating, &authenticated.csrf_hash) {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| token::hash_secret(v.trim()));
        match sent {
            Some(h) if token::same_hash(&h, expected) => None,
            _ => {
                crate::metrics::inc("palisade_auth_rejections_total", &[("reason", "csrf")]);
                Some(ApiError::CsrfRejected)
            }
        }
    } else {
        None
    };
    let refusal = refusal.or_else(|| {
        (!principal.role.allows(needed)).then(|| {
            crate::metrics::inc("palisade_auth_rejections_total", &[("reason", "role")]);
            ApiError::Forbidden(format!(
                "this needs the {needed} role; {} has {}",
                principal.user, principal.role
            ))
        })
    });
    if let Some(err) = refusal {
        warn!(user = %principal.user, action = %action, code = err.code(), "request refused");
        if mutating {
            let status = err.status_code().as_u16();
            audit(&state, principal.describe(), action, req.request(), status).await;
        }
        return Ok(refuse(req, err));
    }

    let who = principal.describe();
    req.extensions_mut().insert(principal);
    let res = next.call(req).await?;
    if mutating {
        audit(&state, who, action, res.request(), res.status().as_u16()).await;
    }
    Ok(res.map_into_left_body())
}

fn refuse<B>(req: ServiceRequest, err: ApiError) -> ServiceResponse<EitherBody<B>> {
    req.into_response(err.error_response())
        .map_into_right_body()
}
