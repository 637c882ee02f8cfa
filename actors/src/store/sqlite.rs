//! The embedded store: SQLite through rusqlite. (Being written.)
use super::*;

/// Open (creating and migrating) the SQLite database a `sqlite:` url names.
pub async fn open(_url: &str) -> Result<SharedStore, StoreError> {
    Err(StoreError::Unavailable("not yet implemented".into()))
}
