//! Start-up chores of authentication, and adding users from the command line.
//!
//! Owns: [`ensure_bootstrap_key`] (the admin API key `auth.bootstrap_api_key` names, for
//! automated installs), [`ensure_first_admin`] (a first run with no users creates `admin`
//! with a random password written to a 0600 file), and [`add_user`].
//!
//! Must never: log or return a password or a key (the log names the file a password went
//! to, never the password), or replace a user or a key that exists.

use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{check_new_password, check_user_name, password, token, AuthError, Role};
use crate::store::{SharedStore, StoredApiKey, StoredUser};

/// The user that owns the bootstrap API key; it has no password.
pub const BOOTSTRAP_USER: &str = "bootstrap";

/// The label of the bootstrap API key.
const BOOTSTRAP_KEY_NAME: &str = "bootstrap";

/// The user a first run creates.
pub const FIRST_ADMIN: &str = "admin";

/// Make sure an unrevoked admin API key with exactly the value `key` exists, owned by the
/// user `bootstrap` (created as an admin without a password). Its id follows from its hash,
/// so nodes starting at once insert the same row. Bootstrap keys of earlier values are
/// revoked; a bootstrap key an admin revoked stays revoked (with a warning).
pub async fn ensure_bootstrap_key(store: &SharedStore, key: &str) -> Result<(), AuthError> {
    let now = chrono::Utc::now();
    store
        .create_user(&StoredUser {
            name: BOOTSTRAP_USER.into(),
            role: Role::Admin,
            password_hash: String::new(),
            created_at: now,
        })
        .await?;
    let hash = token::hash_secret(key);
    let id = format!("boot-{}", &hash[..12]);
    if store.find_api_key(&hash).await?.is_none() {
        let inserted = store
            .put_api_key(&StoredApiKey {
                id: id.clone(),
                user: BOOTSTRAP_USER.into(),
                name: BOOTSTRAP_KEY_NAME.into(),
                hash: hash.clone(),
                created_at: now,
                last_used: None,
                revoked_at: None,
            })
            .await?;
        if inserted {
            info!(key = %id, "bootstrap api key created");
        } else if store.find_api_key(&hash).await?.is_none() {
            warn!(
                key = %id,
                "the bootstrap api key was revoked through the API and stays revoked; \
                 set a new auth.bootstrap_api_key to replace it"
            );
        }
    }
    for old in store.list_api_keys(Some(BOOTSTRAP_USER)).await? {
        if old.id != id && old.name == BOOTSTRAP_KEY_NAME && old.revoked_at.is_none() {
            store.revoke_api_key(&old.id, now).await?;
            info!(key = %old.id, "bootstrap api key of an earlier value revoked");
        }
    }
    Ok(())
}

/// On a store without users, create `admin` with a random password written to `file`
/// (mode 0600) and log the file's name; returns the file when it did. Nothing happens when
/// any user exists, or when another node created `admin` first (the file is removed).
pub async fn ensure_first_admin(
    store: &SharedStore,
    file: &Path,
) -> Result<Option<PathBuf>, AuthError> {
    if !store.list_users().await?.is_empty() {
        return Ok(None);
    }
    let secret = token::random_token();
    let hash = password::hash(secret.clone()).await?;
    write_private(file, &format!("{secret}\n"))?;
    let created = store
        .create_user(&StoredUser {
            name: FIRST_ADMIN.into(),
            role: Role::Admin,
            password_hash: hash,
            created_at: chrono::Utc::now(),
        })
        .await;
    match created {
        Ok(true) => {
            info!(
                user = FIRST_ADMIN,
                file = %file.display(),
                "first run: created the admin user; its password is in the file (read it, \
                 then delete the file)"
            );
            Ok(Some(file.to_path_buf()))
        }
        other => {
            let _ = std::fs::remove_file(file);
            other.map(|_| None).map_err(AuthError::from)
        }
    }
}

/// Write `text` to `path` readable by its owner only, creating its directory.
fn write_private(path: &Path, text: &str) -> Result<(), AuthError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |e: std::io::Error| AuthError::Write {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    // an existing file keeps its mode on open: narrow it before writing
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(failed)?;
    f.write_all(text.as_bytes()).map_err(failed)?;
    f.sync_all().map_err(failed)
}

/// Add a user with a password (checked, then hashed with argon2id).
pub async fn add_user(
    store: &SharedStore,
    name: &str,
    role: Role,
    password: &str,
) -> Result<(), AuthError> {
    check_user_name(name)?;
    check_new_password(password)?;
    let hash = password::hash(password.to_owned()).await?;
    let created = store
        .create_user(&StoredUser {
            name: name.to_owned(),
            role,
            password_hash: hash,
            created_at: chrono::Utc::now(),
        })
        .await?;
    if !created {
        return Err(AuthError::UserExists(name.to_owned()));
    }
    info!(user = name, %role, "user added");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bootstrap_key_is_ensured_once_and_replaces_an_earlier_one() {
        let store = crate::store::open("sqlite::memory:").await.expect("store");
        let key = "bootstrap-key-0123456789abcdef";
        ensure_bootstrap_key(&store, key).await.expect("first");
        ensure_bootstrap_key(&store, key).await.expect("again");
        let (found, role) = store
            .find_api_key(&token::hash_secret(key))
            .await
            .expect("find")
            .expect("the key works");
        assert_eq!((found.user.as_str(), role), (BOOTSTRAP_USER, Role::Admin));
        assert_eq!(store.list_api_keys(None).await.expect("list").len(), 1);
        let user = store
            .get_user(BOOTSTRAP_USER)
            .await
            .expect("get")
            .expect("user");
        assert!(user.password_hash.is_empty(), "bootstrap cannot log in");

        let next = "bootstrap-key-fedcba9876543210";
        ensure_bootstrap_key(&store, next).await.expect("new value");
        assert!(store
            .find_api_key(&token::hash_secret(next))
            .await
            .expect("find")
            .is_some());
        assert!(
            store
                .find_api_key(&token::hash_secret(key))
                .await
                .expect("find")
                .is_none(),
            "the earlier value is revoked"
        );
    }

    #[tokio::test]
    async fn a_first_run_creates_admin_with_a_private_password_file_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("data/initial-admin-password");
        let store = crate::store::open("sqlite::memory:").await.expect("store");
        let made = ensure_first_admin(&store, &file).await.expect("first run");
        assert_eq!(made.as_deref(), Some(file.as_path()));
        let mode = std::fs::metadata(&file).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let secret = std::fs::read_to_string(&file).expect("read");
        let admin = store
            .get_user(FIRST_ADMIN)
            .await
            .expect("get")
            .expect("admin");
        assert_eq!(admin.role, Role::Admin);
        assert!(password::verify_blocking(
            secret.trim(),
            &admin.password_hash
        ));

        std::fs::remove_file(&file).expect("operator deletes the file");
        assert_eq!(
            ensure_first_admin(&store, &file).await.expect("again"),
            None
        );
        assert!(!file.exists(), "users exist: nothing is written");
    }

    #[tokio::test]
    async fn users_are_added_once_with_checked_names_and_passwords() {
        let store = crate::store::open("sqlite::memory:").await.expect("store");
        add_user(&store, "ops", Role::Operator, "long enough pw")
            .await
            .expect("add");
        assert!(matches!(
            add_user(&store, "ops", Role::Admin, "long enough pw").await,
            Err(AuthError::UserExists(_))
        ));
        assert!(matches!(
            add_user(&store, "bad name", Role::Viewer, "long enough pw").await,
            Err(AuthError::BadUserName)
        ));
        assert!(matches!(
            add_user(&store, "v", Role::Viewer, "short").await,
            Err(AuthError::WeakPassword { .. })
        ));
        let ops = store.get_user("ops").await.expect("get").expect("ops");
        assert_eq!(ops.role, Role::Operator);
        assert!(password::verify_blocking(
            "long enough pw",
            &ops.password_hash
        ));
    }
}
