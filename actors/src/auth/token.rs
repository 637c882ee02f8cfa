//! API keys, session tokens and CSRF tokens: random secrets and the hashes the store keeps.
//!
//! Owns: making a new API key (32 random bytes, shown once as `pal_<base64url>`, with a
//! short random public id for listing and revoking), session and CSRF tokens (32 random
//! bytes, base64url), the SHA-256 hex every one of them is stored and looked up as, and a
//! comparison of hashes whose time does not depend on where they differ.
//!
//! Must never: use a random source other than the operating system's, or keep a secret
//! beyond handing it back to the caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_core::RngCore;
use sha2::{Digest, Sha256};

/// What every Palisade API key starts with (so that secret scanners can find leaked ones).
pub const KEY_PREFIX: &str = "pal_";

/// Random bytes of a key or token.
const SECRET_BYTES: usize = 32;

/// Random bytes of a key's public id (12 hex characters).
const ID_BYTES: usize = 6;

/// A freshly made API key: `secret` goes to its owner once; the store keeps `id` and `hash`.
pub struct NewApiKey {
    pub id: String,
    pub secret: String,
    pub hash: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut buf);
    buf
}

/// 32 random bytes as unpadded base64url: a session token, a CSRF token, a password.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>())
}

/// A random public id for a key.
pub fn random_id() -> String {
    hex::encode(random_bytes::<ID_BYTES>())
}

/// A new API key.
pub fn new_api_key() -> NewApiKey {
    let secret = format!("{KEY_PREFIX}{}", random_token());
    NewApiKey {
        id: random_id(),
        hash: hash_secret(&secret),
        secret,
    }
}

/// The SHA-256 of a key or token as lowercase hex: what the store keeps and looks up.
/// (The secrets are 256 random bits, so a fast unsalted hash is enough: there is nothing
/// to guess. Passwords, which are guessable, go through argon2id instead.)
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether two hashes are equal, in time that depends only on their lengths.
pub fn same_hash(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_random_prefixed_and_stored_as_their_hash() {
        let a = new_api_key();
        let b = new_api_key();
        assert!(a.secret.starts_with(KEY_PREFIX));
        // 32 bytes of base64url without padding: 43 characters
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 43);
        let body = &a.secret[KEY_PREFIX.len()..];
        assert!(body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(a.id.len(), 12);
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.id, b.id);
        assert_eq!(a.hash, hash_secret(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(body));
        assert!(!format!("{a:?}").contains(body), "Debug redacts the secret");
    }

    #[test]
    fn hashes_are_sha256_hex_and_compare_exactly() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let h = hash_secret("token");
        assert!(same_hash(&h, &hash_secret("token")));
        assert!(!same_hash(&h, &hash_secret("tokem")));
        assert!(!same_hash(&h, &h[..63]));
        assert_ne!(random_token(), random_token());
    }
}
