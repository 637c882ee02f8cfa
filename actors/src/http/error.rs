//! The HTTP edge's one error type and its JSON body.
//!
//! Owns: [`ApiError`], the status code of each variant (401 `unauthenticated` and
//! `invalid_credentials`, 403 `forbidden` and `csrf_rejected`, 429 `too_many_requests` with
//! `Retry-After` among them), the `{"code","message"}` body every
//! error answer carries, the `palisade_http_errors_total{code}` counter, and the mapping of
//! actix's extractor errors (JSON, query string, path, payload) onto it.
//!
//! Must never: put an internal cause (a SQL error, a queue backend's message) or a secret in
//! a response body. Outages are logged here at warn and answered with a fixed message.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use tracing::warn;

use crate::queue::QueueError;
use crate::store::StoreError;

/// The most a request body may carry, in bytes.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Why a request was not answered with success. Each variant has one status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (JSON syntax, a query parameter, a path segment).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no credentials, or credentials that name no live key or session.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// 401: a login with a wrong user name or password (which of the two is not said).
    #[error("user name or password is wrong")]
    InvalidCredentials,
    /// 403: authenticated, but the principal's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 403: a mutating request authenticated by the session cookie without the session's
    /// CSRF token in `X-CSRF-Token`.
    #[error("missing or wrong X-CSRF-Token header for this session")]
    CsrfRejected,
    /// 429: too many failed logins; retry after this many seconds.
    #[error("too many failed logins; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// 404: the named thing does not exist (`cloud abc`, `route /x`).
    #[error("{0} not found")]
    NotFound(String),
    /// 405: the route exists but not with this method.
    #[error("method not allowed; allowed: {allowed}")]
    MethodNotAllowed { allowed: String },
    /// 409: the request conflicts with work already queued.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than [`BODY_LIMIT`].
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415: a body that is not `application/json`.
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// 422: well-formed JSON whose content is not acceptable.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// 503: a backend (`store`, `queue`) is out; the cause is logged, not returned.
    #[error("{0} is unavailable, retry later")]
    Unavailable(&'static str),
    /// 500: anything else; the cause is logged, not returned.
    #[error("internal error")]
    Internal,
}

/// Every `code` an error body can carry, with what it means: the list clients match on
/// (and the one the OpenAPI document and README show). A test checks that every code the
/// HTTP edge writes is here and that each is snake_case.
pub const ERROR_CODES: &[(&str, &str)] = &[
    ("bad_request", "400: the request could not be understood"),
    (
        "invalid_parameter",
        "400: a query parameter is not valid (the message names it)",
    ),
    (
        "bad_sort",
        "400: `sort` names a field this list cannot be sorted by",
    ),
    ("invalid_path", "400: a path segment is not valid"),
    ("malformed_json", "400: the body is not JSON"),
    ("malformed_body", "400: the body could not be read"),
    (
        "unauthenticated",
        "401: no credentials, or an unknown API key or session (see `WWW-Authenticate`)",
    ),
    (
        "invalid_credentials",
        "401: the user name or password of a login is wrong",
    ),
    (
        "forbidden",
        "403: the credentials lack the role the route needs",
    ),
    (
        "csrf_rejected",
        "403: a session's mutating request lacks its `X-CSRF-Token`",
    ),
    (
        "not_found",
        "404: the route or the named thing does not exist",
    ),
    (
        "method_not_allowed",
        "405: the route exists, not with this method (see `Allow`)",
    ),
    (
        "conflict",
        "409: the request conflicts with work queued or running",
    ),
    ("payload_too_large", "413: the body is larger than 256 KiB"),
    (
        "unsupported_media_type",
        "415: the body is not application/json",
    ),
    (
        "invalid_body",
        "422: the JSON body's content is not acceptable",
    ),
    (
        "unsupported_provider",
        "422: the cloud provider has no harvester yet",
    ),
    (
        "too_many_requests",
        "429: too many failed logins; retry after `Retry-After` seconds",
    ),
    (
        "internal",
        "500: an unexpected failure, logged on the server",
    ),
    (
        "unavailable",
        "503: a backend (store, queue, bus) is out; retry later",
    ),
];

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(super) struct ErrorBody {
    /// A stable snake_case code (see the API description for the list).
    code: &'static str,
    /// What went wrong, for a person.
    message: String,
}

impl ApiError {
    /// A 400 about one query parameter, naming it.
    pub fn bad_param(name: &str, why: impl std::fmt::Display) -> Self {
        ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("query parameter {name:?}: {why}"),
        }
    }

    /// A 422 about the request body's content.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code: "invalid_body",
            message: message.into(),
        }
    }

    /// The stable, snake_case code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Invalid { code, .. } => code,
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::CsrfRejected => "csrf_rejected",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// An error for a status some other layer produced (an actix extractor, a route miss).
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthenticated("authentication required"),
            StatusCode::FORBIDDEN => ApiError::Forbidden("forbidden".into()),
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests { retry_after: 1 },
            StatusCode::NOT_FOUND => ApiError::NotFound("resource".into()),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed {
                allowed: String::new(),
            },
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable("service"),
            s if s.is_client_error() => ApiError::BadRequest {
                code: "bad_request",
                message: "the request could not be understood".into(),
            },
            _ => ApiError::Internal,
        }
    }

    /// Map a JSON body extractor's error.
    pub fn from_json(err: JsonPayloadError) -> Self {
        match err {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit },
            JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
            JsonPayloadError::Deserialize(e) => ApiError::from_serde_json(&e),
            JsonPayloadError::Payload(e) => ApiError::from_status(ResponseError::status_code(&e)),
            _ => ApiError::BadRequest {
                code: "malformed_body",
                message: "the request body could not be read".into(),
            },
        }
    }

    /// Map a body parse failure: bad syntax is a 400, well-formed but wrong content a 422.
    pub fn from_serde_json(e: &serde_json::Error) -> Self {
        let message = public_serde_message(&e.to_string());
        match e.classify() {
            serde_json::error::Category::Data => ApiError::Invalid {
                code: "invalid_body",
                message: format!("request body: {message}"),
            },
            _ => ApiError::BadRequest {
                code: "malformed_json",
                message: format!("request body is not valid json: {message}"),
            },
        }
    }

    /// Map a query string extractor's error.
    pub fn from_query(err: QueryPayloadError) -> Self {
        let message = match err {
            QueryPayloadError::Deserialize(e) => public_serde_message(&e.to_string()),
            _ => "could not be parsed".to_string(),
        };
        ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("query string: {message}"),
        }
    }

    /// Map a path segment extractor's error.
    pub fn from_path(err: PathError) -> Self {
        let message = match err {
            PathError::Deserialize(e) => public_serde_message(&e.to_string()),
            _ => "could not be parsed".to_string(),
        };
        ApiError::BadRequest {
            code: "invalid_path",
            message: format!("path: {message}"),
        }
    }
}

/// A serde message fit for a response: the offending value is left out (it may be a
/// secret sent in the wrong place), and `EOF` is spelled out.
fn public_serde_message(raw: &str) -> String {
    let mut msg = raw.replace("EOF", "end of input");
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some(cut) = rest.find(", expected") {
                // keep the kind of value ("string", "integer"), drop the value itself
                let kind = rest[..cut].split_whitespace().next().unwrap_or("value");
                msg = format!("{prefix}{kind}{}", &rest[cut..]);
            }
            break;
        }
    }
    msg
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                warn!(error = %e, "store unavailable while answering a request");
                ApiError::Unavailable("store")
            }
            _ => {
                warn!(error = %e, "store failed while answering a request");
                ApiError::Internal
            }
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::UnknownJob(id) => ApiError::NotFound(format!("job {id}")),
            QueueError::Unavailable(_) | QueueError::Closed => {
                warn!(error = %e, "queue unavailable while answering a request");
                ApiError::Unavailable("queue")
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::CsrfRejected => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        crate::metrics::inc("palisade_http_errors_total", &[("code", code)]);
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::MethodNotAllowed { allowed } if !allowed.is_empty() => {
                res.insert_header((header::ALLOW, allowed.as_str()));
            }
            ApiError::TooManyRequests { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::Unauthenticated(_) | ApiError::InvalidCredentials => {
                res.insert_header((header::WWW_AUTHENTICATE, "Api-Key realm=\"palisade\""));
            }
            _ => {}
        }
        res.json(ErrorBody {
            code,
            message: self.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_written_is_listed_and_snake_case() {
        for (code, _) in ERROR_CODES {
            assert!(
                !code.is_empty()
                    && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !code.starts_with('_')
                    && !code.ends_with('_'),
                "{code} is not snake_case"
            );
        }
        let listed = |code: &str| ERROR_CODES.iter().any(|(c, _)| *c == code);
        // codes chosen per variant
        for e in [
            ApiError::NotFound("x".into()),
            ApiError::MethodNotAllowed {
                allowed: String::new(),
            },
            ApiError::Conflict("x".into()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::UnsupportedMediaType,
            ApiError::Unavailable("store"),
            ApiError::Internal,
        ] {
            assert!(listed(e.code()), "{} is not listed", e.code());
        }
        // codes written as literals anywhere in the HTTP edge
        let sources = [
            include_str!("error.rs"),
            include_str!("paging.rs"),
            include_str!("clouds.rs"),
            include_str!("resources.rs"),
            include_str!("insights.rs"),
            include_str!("jobs.rs"),
            include_str!("cluster.rs"),
            include_str!("mod.rs"),
            include_str!("guard.rs"),
            include_str!("login.rs"),
            include_str!("users.rs"),
            include_str!("counts.rs"),
            include_str!("gui.rs"),
        ];
        let mut seen = 0;
        for src in sources {
            for part in src.split("code: \"").skip(1) {
                let code = part.split('"').next().unwrap_or_default();
                assert!(listed(code), "code {code:?} is written but not listed");
                seen += 1;
            }
        }
        assert!(seen >= 8, "the scan found the codes ({seen})");
    }

    #[test]
    fn serde_messages_drop_the_offending_value() {
        let e = serde_json::from_str::<u32>("\"s3cr3t\"").expect_err("a string is no u32");
        let api = ApiError::from_serde_json(&e);
        assert_eq!(api.code(), "invalid_body");
        let text = api.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("invalid type: string, expected u32"),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_are_bad_requests_and_say_end_of_input() {
        let e = serde_json::from_str::<serde_json::Value>("{\"a\":").expect_err("truncated");
        let api = ApiError::from_serde_json(&e);
        assert_eq!(api.status_code(), StatusCode::BAD_REQUEST);
        assert!(api.to_string().contains("end of input"), "{api}");
    }
}
