//! Password hashes: argon2id with the crate's default cost (19 MiB, 2 passes, 1 lane: the
//! OWASP minimum), in PHC string form (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
//!
//! Owns: hashing a new password with a fresh salt, verifying a password against a stored
//! hash, and a dummy verification for unknown users so that a login for a user who does
//! not exist takes as long as one with a wrong password.
//!
//! Must never: run on an async worker thread (the async functions hash in
//! `spawn_blocking`), or put a password or a hash in an error or a log line.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::AuthError;

/// Hash `password` with a fresh random salt (blocking: tens of milliseconds).
pub fn hash_blocking(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // the error names a parameter, never the input
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `stored` (blocking). An empty or unparsable
/// `stored` (a user who cannot log in with a password) matches nothing, after the same
/// work as a real verification.
pub fn verify_blocking(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => {
            burn(password);
            false
        }
    }
}

/// Verify against a hash of a random password: the time a real verification takes.
fn burn(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_blocking(&super::token::random_token()).ok());
    if let Some(parsed) = dummy.as_deref().and_then(|d| PasswordHash::new(d).ok()) {
        let _ = Argon2::default().verify_password(password.as_bytes(), &parsed);
    }
}

/// [`hash_blocking`] on a blocking thread.
pub async fn hash(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| AuthError::Hash(format!("hashing task failed: {e}")))?
}

/// [`verify_blocking`] on a blocking thread; `None` (no such user) does the same work and
/// answers false.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => verify_blocking(&password, &stored),
        None => {
            burn(&password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify_only_their_password() {
        let a = hash_blocking("correct horse battery").expect("hash");
        let b = hash_blocking("correct horse battery").expect("hash");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "every hash has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(verify_blocking("correct horse battery", &a));
        assert!(verify_blocking("correct horse battery", &b));
        assert!(!verify_blocking("correct horse batterY", &a));
        assert!(!verify_blocking("", &a));
        assert!(!verify_blocking("anything", ""), "no hash, no login");
        assert!(!verify_blocking("anything", "$argon2id$garbage"));
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        assert!(!verify("whatever".into(), None).await);
        let h = hash("s3cret-pass".into()).await.expect("hash");
        assert!(verify("s3cret-pass".into(), Some(h)).await);
    }
}
