//! Cloud credentials sealed at rest: AES-256-GCM under the node's credentials key.
//!
//! Owns: the [`CredentialsCipher`] the stores seal and open the `clouds.credentials` column
//! with (a random 96-bit nonce per seal; the cloud id as associated data, so a blob moved to
//! another cloud's row does not open; stored text `v1:<base64 nonce || ciphertext>`), the
//! credentials key's forms (32 bytes as base64 or 64 hex characters) and where it comes
//! from: `store.credentials_key`, the file `store.credentials_key_file`, or, for an
//! embedded store with neither, a key file generated beside the SQLite database
//! (`credentials.key`, mode 0600, created atomically and reused).
//!
//! Must never: put a key, a plaintext or a sealed blob in an error, a log line or `Debug`
//! output; reuse a nonce on purpose; overwrite an existing key file (that would make every
//! sealed row unreadable); or invent a key for a store that other nodes share.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand_core::{OsRng, RngCore};
use tracing::{info, warn};
use zeroize::{Zeroize, Zeroizing};

use crate::settings::StoreSettings;

/// Bytes of a credentials key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a nonce (96 bits, GCM's own size).
const NONCE_BYTES: usize = 12;
/// Bytes of GCM's authentication tag.
const TAG_BYTES: usize = 16;
/// What a sealed blob starts with: the format version.
const SEALED_PREFIX: &str = "v1:";
/// Associated data of a seal, before the cloud id: binds a blob to this use of the key.
const AAD_CONTEXT: &[u8] = b"palisade/cloud-credentials/v1\0";
/// The key file an embedded store generates beside its database.
pub const GENERATED_KEY_FILE: &str = "credentials.key";

/// Why a key could not be had or a blob not sealed or opened. No variant carries a key,
/// a plaintext or a blob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "the key must be {KEY_BYTES} bytes, as base64 or as 64 hex characters; it is {0} bytes"
    )]
    KeyLength(usize),
    #[error("the key is neither base64 nor hex (expected {KEY_BYTES} bytes as base64, or 64 hex characters)")]
    KeyEncoding,
    #[error("cannot read the key file {path}: {reason}")]
    KeyFileRead { path: String, reason: String },
    #[error("the key file {path}: {reason}")]
    KeyFileContent { path: String, reason: String },
    #[error("cannot create the key file {path}: {reason}")]
    KeyFileCreate { path: String, reason: String },
    #[error(
        "a mysql:// store is shared by a cluster's nodes: set store.credentials_key or \
         store.credentials_key_file (the same key on every node)"
    )]
    SharedStoreNeedsKey,
    #[error("sealing failed")]
    Seal,
    #[error("not a sealed blob of a known version")]
    Malformed,
    #[error("does not open with this key (another key sealed it, or it was changed or moved)")]
    Unauthentic,
}

/// A 32-byte credentials key, wiped from memory when dropped; `Debug` never shows it.
#[derive(Clone)]
pub struct CredentialsKey(Zeroizing<[u8; KEY_BYTES]>);

impl fmt::Debug for CredentialsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialsKey(<redacted>)")
    }
}

impl CredentialsKey {
    /// A fresh key from the operating system's random numbers.
    pub fn random() -> CredentialsKey {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        OsRng.fill_bytes(key.as_mut());
        CredentialsKey(key)
    }

    /// The key in one of its text forms: base64 of 32 bytes (standard or URL-safe
    /// alphabet, padded or not) or 64 hex characters; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<CredentialsKey, CryptoError> {
        let text = text.trim();
        let is_hex = text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit());
        let bytes = Zeroizing::new(if is_hex {
            hex::decode(text).map_err(|_| CryptoError::KeyEncoding)?
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or(CryptoError::KeyEncoding)?
        });
        let array: [u8; KEY_BYTES] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::KeyLength(bytes.len()))?;
        let key = CredentialsKey(Zeroizing::new(array));
        let mut array = array;
        array.zeroize();
        Ok(key)
    }

    /// The key as base64, the form a generated key file holds.
    fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }
}

/// Read a key file (the key in one of [`CredentialsKey::parse`]'s forms). Never quotes
/// the file's content. Warns when the file is readable by others than its owner and group.
pub fn read_key_file(path: &Path) -> Result<CredentialsKey, CryptoError> {
    let shown = path.display().to_string();
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| CryptoError::KeyFileRead {
                path: shown.clone(),
                reason: e.kind().to_string(),
            })?,
        );
    warn_if_world_readable(path);
    CredentialsKey::parse(&text).map_err(|e| CryptoError::KeyFileContent {
        path: shown,
        reason: e.to_string(),
    })
}

#[cfg(unix)]
fn warn_if_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o007 != 0 {
            warn!(
                path = %path.display(),
                "the credentials key file is readable by other users: chmod 0600 (or 0640 \
                 with group palisade)"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_path: &Path) {}

/// Where a cipher's key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `store.credentials_key`.
    Configured,
    /// `store.credentials_key_file`.
    File(PathBuf),
    /// Generated (now or on an earlier start) beside an embedded store's database.
    Generated(PathBuf),
    /// Made up for this process alone: an in-memory store, a test, a one-off scan. What it
    /// seals does not outlive the process.
    Ephemeral,
}

/// Seals and opens cloud credentials with AES-256-GCM under one key. Cheap to share
/// behind an `Arc`; the key schedule is wiped when it is dropped.
pub struct CredentialsCipher {
    aead: Aes256Gcm,
    origin: KeyOrigin,
}

impl fmt::Debug for CredentialsCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsCipher")
            .field("key", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

impl CredentialsCipher {
    pub fn new(key: &CredentialsKey, origin: KeyOrigin) -> CredentialsCipher {
        CredentialsCipher {
            aead: Aes256Gcm::new(key.0.as_ref().into()),
            origin,
        }
    }

    /// A cipher under a random key of this process alone (see [`KeyOrigin::Ephemeral`]).
    pub fn ephemeral() -> CredentialsCipher {
        CredentialsCipher::new(&CredentialsKey::random(), KeyOrigin::Ephemeral)
    }

    /// The cipher a node's store uses, from its settings: `credentials_key`, else the file
    /// `credentials_key_file`; with neither, an embedded store on a file generates (once)
    /// and then reuses `credentials.key` beside its database, an in-memory one takes an
    /// ephemeral key, and a MySQL store is refused (its nodes must share one key).
    pub fn for_store(store: &StoreSettings) -> Result<CredentialsCipher, CryptoError> {
        if !store.credentials_key.is_empty() {
            let key = CredentialsKey::parse(&store.credentials_key)?;
            return Ok(CredentialsCipher::new(&key, KeyOrigin::Configured));
        }
        if !store.credentials_key_file.is_empty() {
            let path = PathBuf::from(&store.credentials_key_file);
            let key = read_key_file(&path)?;
            return Ok(CredentialsCipher::new(&key, KeyOrigin::File(path)));
        }
        if !store.url.starts_with("sqlite:") {
            return Err(CryptoError::SharedStoreNeedsKey);
        }
        match crate::store::sqlite::database_path(&store.url) {
            None => Ok(CredentialsCipher::ephemeral()),
            Some(db) => {
                let dir = db
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let path = dir.join(GENERATED_KEY_FILE);
                let key = generated_key(&path)?;
                Ok(CredentialsCipher::new(&key, KeyOrigin::Generated(path)))
            }
        }
    }

    pub fn origin(&self) -> &KeyOrigin {
        &self.origin
    }

    /// Whether stored text is a sealed blob (of any version); anything else is a plaintext
    /// row of an earlier version, or garbage.
    pub fn is_sealed(stored: &str) -> bool {
        let mut parts = stored.splitn(2, ':');
        matches!(
            (parts.next(), parts.next()),
            (Some(v), Some(_)) if v.len() >= 2 && v.starts_with('v')
                && v[1..].bytes().all(|b| b.is_ascii_digit())
        )
    }

    /// Seal `plaintext` for the row of cloud `cloud`: `v1:` and the base64 of a fresh
    /// random nonce followed by the ciphertext and its tag.
    pub fn seal(&self, cloud: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(cloud);
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut blob = Vec::with_capacity(NONCE_BYTES + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        ))
    }

    /// Open a blob [`CredentialsCipher::seal`] made for cloud `cloud`. Fails when it was
    /// sealed under another key or for another cloud, or changed since.
    pub fn open(&self, cloud: &str, stored: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let encoded = stored
            .strip_prefix(SEALED_PREFIX)
            .ok_or(CryptoError::Malformed)?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_BYTES + TAG_BYTES {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_BYTES);
        let aad = associated_data(cloud);
        self.aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Unauthentic)
    }
}

fn associated_data(cloud: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + cloud.len());
    aad.extend_from_slice(AAD_CONTEXT);
    aad.extend_from_slice(cloud.as_bytes());
    aad
}

/// The key in the generated key file at `path`: read when it exists, else created with a
/// random key, mode 0600, atomically (written to a temporary file, then linked into place,
/// which fails rather than replace a key another process made first) and announced in
/// the log once.
fn generated_key(path: &Path) -> Result<CredentialsKey, CryptoError> {
    match read_key_file(path) {
        Ok(key) => return Ok(key),
        Err(CryptoError::KeyFileRead { .. }) if !path.exists() => {}
        Err(e) => return Err(e),
    }
    let shown = path.display().to_string();
    let create_err = |e: std::io::Error| CryptoError::KeyFileCreate {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(create_err)?;
    let key = CredentialsKey::random();
    let tmp = dir.join(format!(
        ".{GENERATED_KEY_FILE}.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let written = write_private(&tmp, key.to_base64().as_bytes());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            info!(
                path = %shown,
                "generated the credentials key of this node's store: back it up with the \
                 database; without it the stored cloud credentials must be entered again"
            );
            Ok(key)
        }
        // another process made it first: use theirs
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(create_err(e)),
    }
}

/// Write `bytes` and a newline to a new file only its owner may read, and flush it to disk.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn cipher() -> CredentialsCipher {
        CredentialsCipher::new(
            &CredentialsKey::parse(HEX_KEY).expect("key"),
            KeyOrigin::Configured,
        )
    }

    fn store_settings(url: &str) -> StoreSettings {
        let mut s = crate::settings::Settings::defaults()
            .expect("defaults")
            .store;
        s.url = url.to_string();
        s
    }

    #[test]
    fn a_sealed_blob_opens_for_its_cloud_and_hides_the_plaintext() {
        let c = cipher();
        let secret = br#"{"kind":"keys","secret_access_key":"wJalrXUtnFEMI"}"#;
        let a = c.seal("cloud-1", secret).expect("seal");
        let b = c.seal("cloud-1", secret).expect("seal");
        assert!(a.starts_with("v1:"), "{a}");
        assert_ne!(a, b, "a fresh nonce per seal");
        assert!(!a.contains("wJalr"));
        assert!(CredentialsCipher::is_sealed(&a));
        assert_eq!(c.open("cloud-1", &a).expect("open").as_slice(), secret);
        assert_eq!(c.open("cloud-1", &b).expect("open").as_slice(), secret);
    }

    #[test]
    fn another_key_another_cloud_or_a_changed_blob_do_not_open() {
        let c = cipher();
        let sealed = c.seal("cloud-1", b"secret").expect("seal");
        let other = CredentialsCipher::ephemeral();
        assert_eq!(
            other.open("cloud-1", &sealed),
            Err(CryptoError::Unauthentic)
        );
        assert_eq!(c.open("cloud-2", &sealed), Err(CryptoError::Unauthentic));
        // flip one bit of every byte of the blob in turn: none opens
        let blob = base64::engine::general_purpose::STANDARD
            .decode(&sealed[3..])
            .expect("base64");
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            let text = format!(
                "v1:{}",
                base64::engine::general_purpose::STANDARD.encode(&tampered)
            );
            assert_eq!(
                c.open("cloud-1", &text),
                Err(CryptoError::Unauthentic),
                "{i}"
            );
        }
        for bad in [
            "",
            "v1:",
            "v1:!!!",
            "v1:AAAA",
            "v2:AAAA",
            "{\"kind\":\"default\"}",
        ] {
            assert_eq!(c.open("cloud-1", bad), Err(CryptoError::Malformed), "{bad}");
        }
        assert!(!CredentialsCipher::is_sealed("{\"kind\":\"default\"}"));
        assert!(CredentialsCipher::is_sealed("v2:AAAA"));
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_bad_ones_are_clear_errors() {
        let from_hex = CredentialsKey::parse(HEX_KEY).expect("hex");
        let b64 = from_hex.to_base64();
        let from_b64 = CredentialsKey::parse(&format!("  {}\n", b64.as_str())).expect("b64");
        assert_eq!(from_hex.0.as_ref(), from_b64.0.as_ref());
        let upper = CredentialsKey::parse(&HEX_KEY.to_uppercase()).expect("upper hex");
        assert_eq!(upper.0.as_ref(), from_hex.0.as_ref());
        let unpadded = CredentialsKey::parse(b64.trim_end_matches('=')).expect("no padding");
        assert_eq!(unpadded.0.as_ref(), from_hex.0.as_ref());
        let sealed = CredentialsCipher::new(&from_hex, KeyOrigin::Configured)
            .seal("c", b"x")
            .expect("seal");
        let reopened = CredentialsCipher::new(&from_b64, KeyOrigin::Configured)
            .open("c", &sealed)
            .expect("the same key in either form");
        assert_eq!(reopened.as_slice(), b"x");

        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert_eq!(
            CredentialsKey::parse(&short).err(),
            Some(CryptoError::KeyLength(16))
        );
        let long = base64::engine::general_purpose::STANDARD.encode([7u8; 33]);
        assert_eq!(
            CredentialsKey::parse(&long).err(),
            Some(CryptoError::KeyLength(33))
        );
        for bad in ["", "not a key!", "zz", &HEX_KEY[..62], &HEX_KEY[..60]] {
            let e = CredentialsKey::parse(bad).err();
            assert!(
                matches!(
                    e,
                    Some(CryptoError::KeyEncoding | CryptoError::KeyLength(_))
                ),
                "{bad:?}: {e:?}"
            );
        }
        let e = CredentialsKey::parse("hunter2-is-not-a-key").expect_err("bad");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn keys_and_ciphers_never_show_in_debug() {
        let key = CredentialsKey::parse(HEX_KEY).expect("key");
        let shown = format!(
            "{key:?} {:?}",
            CredentialsCipher::new(&key, KeyOrigin::Configured)
        );
        assert!(
            !shown.contains("0001020304") && !shown.contains("AAECAwQF"),
            "{shown}"
        );
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn a_key_file_is_read_and_its_problems_are_named_without_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{HEX_KEY}\n")).expect("write");
        let key = read_key_file(&path).expect("read");
        assert_eq!(
            key.0.as_ref(),
            CredentialsKey::parse(HEX_KEY).expect("k").0.as_ref()
        );

        let mut s = store_settings("mysql://root@127.0.0.1/test");
        assert_eq!(
            CredentialsCipher::for_store(&s).err(),
            Some(CryptoError::SharedStoreNeedsKey)
        );
        s.credentials_key_file = path.display().to_string();
        let c = CredentialsCipher::for_store(&s).expect("from the file");
        assert_eq!(c.origin(), &KeyOrigin::File(path.clone()));

        std::fs::write(&path, "hunter2-short\n").expect("write");
        let e = read_key_file(&path).expect_err("not a key");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = read_key_file(&dir.path().join("missing")).expect_err("missing");
        assert!(matches!(e, CryptoError::KeyFileRead { .. }), "{e:?}");
    }

    #[cfg(unix)]
    #[test]
    fn an_embedded_store_generates_its_key_file_once_mode_0600_and_reuses_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("data/sub/palisade.db");
        let s = store_settings(&format!("sqlite://{}", db.display()));
        let first = CredentialsCipher::for_store(&s).expect("generated");
        let path = dir.path().join("data/sub/credentials.key");
        assert_eq!(first.origin(), &KeyOrigin::Generated(path.clone()));
        let mode = std::fs::metadata(&path)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let text = std::fs::read_to_string(&path).expect("read");
        CredentialsKey::parse(&text).expect("a key in base64");
        let sealed = first.seal("c", b"kept").expect("seal");

        let again = CredentialsCipher::for_store(&s).expect("reused");
        assert_eq!(
            again.open("c", &sealed).expect("same key").as_slice(),
            b"kept"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            text,
            "not rewritten"
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("ls")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // a key file that holds no key is an error, never replaced
        std::fs::write(&path, "garbage\n").expect("write");
        assert!(matches!(
            CredentialsCipher::for_store(&s),
            Err(CryptoError::KeyFileContent { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "garbage\n");

        // an in-memory store takes a key of its own, and writes no file
        let memory =
            CredentialsCipher::for_store(&store_settings("sqlite::memory:")).expect("memory");
        assert_eq!(memory.origin(), &KeyOrigin::Ephemeral);
    }

    #[test]
    fn a_configured_key_wins_and_a_bad_one_is_refused() {
        let mut s = store_settings("mysql://root@127.0.0.1/test");
        s.credentials_key = HEX_KEY.into();
        let c = CredentialsCipher::for_store(&s).expect("configured");
        assert_eq!(c.origin(), &KeyOrigin::Configured);
        s.credentials_key = "dG9vIHNob3J0".into();
        assert_eq!(
            CredentialsCipher::for_store(&s).err(),
            Some(CryptoError::KeyLength(9))
        );
    }
}
