//! Authentication and authorisation of the interface server.
//!
//! Owns: the [`Role`]s and the [`Principal`] a request acts as; password hashing
//! ([`password`], argon2id); API keys, session and CSRF tokens and their hashes
//! ([`token`]); the failed-login limiter ([`limiter`]); the API key cache ([`keycache`]);
//! the table of which role each route
//! needs ([`access`], deny by default); and the start-up chores ([`bootstrap`]): the
//! bootstrap API key, the first run's `admin` user, and adding users from the command line.
//!
//! Must never: store or log a password, an API key, a session token or a CSRF token (the
//! store keeps argon2id hashes of passwords and SHA-256 hashes of tokens; a key is shown to
//! its owner once, when it is made), compare a secret in time that depends on its content,
//! or let a route through that [`access`] does not name.

pub mod access;
pub mod bootstrap;
pub mod keycache;
pub mod limiter;
pub mod password;
pub mod token;

use serde::{Deserialize, Serialize};

/// What a user may do. Ordered: `Admin > Operator > Viewer`; a role may do everything a
/// lower one may.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but the audit log and other users' keys.
    Viewer,
    /// Also manages clouds, harvests and jobs.
    Operator,
    /// Also manages users, every API key, the cluster, and reads the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {:?} (admin, operator or viewer)",
                other.chars().take(32).collect::<String>()
            )),
        }
    }
}

/// How a request proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A login session's cookie (mutating requests also carry the CSRF token).
    Session,
    /// An `Api-Key` header; `id` is the key's public id.
    ApiKey { id: String },
}

/// Who a request acts as: set by the interface server's guard on every authenticated
/// request, read by handlers from the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    pub via: Via,
}

impl Principal {
    /// `user` or `user (key ID)`, as the audit log names a principal.
    pub fn describe(&self) -> String {
        match &self.via {
            Via::Session => self.user.clone(),
            Via::ApiKey { id } => format!("{} (key {id})", self.user),
        }
    }
}

/// Why an auth operation failed, outside HTTP (start-up chores and the command line).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("user name must be 1 to 64 characters of letters, digits, '.', '_', '-' or '@'")]
    BadUserName,
    #[error("password must be at least {min} characters")]
    WeakPassword { min: usize },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What the interface server keeps of `[auth]` while it runs: the session lifetime, the
/// failed-login limiter and the API key cache (one per process, shared by its HTTP workers).
pub struct LoginPolicy {
    pub session_ttl: std::time::Duration,
    pub limiter: limiter::LoginLimiter,
    /// Live API keys by hash, for `auth.api_key_cache_secs` (see [`keycache`]).
    pub api_keys: keycache::ApiKeyCache,
}

impl LoginPolicy {
    pub fn new(settings: &crate::settings::AuthSettings) -> LoginPolicy {
        LoginPolicy {
            session_ttl: std::time::Duration::from_secs(settings.session_ttl_secs),
            limiter: limiter::LoginLimiter::new(
                settings.login_max_failures,
                std::time::Duration::from_secs(settings.login_window_secs),
            ),
            api_keys: keycache::ApiKeyCache::new(std::time::Duration::from_secs(
                settings.api_key_cache_secs,
            )),
        }
    }
}

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The longest password accepted, in bytes: argon2 takes any length, but hashing a
/// megabyte on every login attempt is a cheap way to burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Check a user name: 1 to 64 of `[A-Za-z0-9._@-]`.
pub fn check_user_name(name: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadUserName)
    }
}

/// Check a new password's length.
pub fn check_new_password(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::WeakPassword {
            min: MIN_PASSWORD_CHARS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Admin.allows(Role::Viewer));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Operator.allows(Role::Admin));
        assert!(!Role::Viewer.allows(Role::Operator));
        for r in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn user_names_and_passwords_are_checked() {
        for good in ["admin", "a", "ops.team-1_x@corp", &"x".repeat(64)] {
            assert!(check_user_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "name;drop", "é", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
        assert!(check_new_password("1234567").is_err());
        assert!(check_new_password("12345678").is_ok());
        assert!(check_new_password(&"p".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
