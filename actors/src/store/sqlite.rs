//! The embedded store: SQLite through rusqlite, for a single node.
//!
//! Owns: the SQLite schema and its versioned migrations (`sqlite/migrations/*.sql`), the
//! connections (one writer behind a mutex, a small pool of readers; one connection for
//! `sqlite::memory:`), and the mapping between rows and `palisade-proto` types.
//!
//! Cloud credentials are stored sealed (see [`crate::crypto`]); opening a file seals the
//! plaintext rows of earlier versions in one transaction.
//!
//! Must never: run SQLite on an async worker thread (every call goes through
//! `spawn_blocking`), hold a result set that grows with the estate (scans are keyset pages),
//! panic on anything the database returns, or put credentials in an error or a log line.
//!
//! Timestamps are stored as integer milliseconds: what comes back is truncated to the
//! millisecond.

use super::*;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, OpenFlags, Row, TransactionBehavior,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The migrations this build knows, in order; the last one's version is the schema version.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("sqlite/migrations/0001_init.sql")),
    (2, include_str!("sqlite/migrations/0002_facts.sql")),
    (3, include_str!("sqlite/migrations/0003_auth.sql")),
    (
        4,
        include_str!("sqlite/migrations/0004_findings_resource.sql"),
    ),
    (
        5,
        include_str!("sqlite/migrations/0005_findings_by_resource.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 5;

/// How long a connection waits for a lock before it reports the store busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle reader connections kept open. The interface server reads on as many connections
/// as it has requests in flight (16 with `wrk -c16`, the API bench): a pool smaller than
/// that closed a connection after most reads and opened one for the next, which then
/// parsed the schema again and prepared every statement anew (no cache to hit). A reader's
/// page cache only grows as far as it is used (a few pages for an API read).
const MAX_IDLE_READERS: usize = 32;

/// Page cache of the writer, in KiB. Harvest batches insert at random uids all over the
/// table; a cache that holds the hot b-tree pages keeps each batch from re-reading them.
/// It only grows as far as the database does.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// WAL pages between automatic checkpoints (the default is 1000). A harvest batch dirties
/// pages all over the uid-ordered table; checkpointing rarely writes each page back once
/// for many batches instead of once per batch, and fsyncs far less often.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16 * 1024;

/// The size the WAL file is truncated to after a checkpoint, in bytes.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Page cache of each reader, in KiB: the upper levels of the b-trees a keyset scan walks.
const READER_CACHE_KIB: i64 = 8 * 1024;

/// Page size of a new database file, in bytes. Resources are clustered by uid in a
/// `WITHOUT ROWID` table, whose rows are stored whole in the b-tree pages up to about a
/// quarter of a page: 16 KiB pages keep rows of a few KiB of properties out of overflow
/// pages, and a keyset scan reads a quarter of the pages (one `pread` each) that 4 KiB
/// pages would take: a full scan of 1M synthetic resources takes ~40% less time.
/// Readers do not `mmap` the file: mapped pages count as the process's resident memory
/// (a 256 MiB map alone breaks the compliance run's 256 MB budget) for ~10% of a scan.
const PAGE_SIZE: i64 = 16 * 1024;

/// Prepared statements cached per connection.
const STATEMENT_CACHE: usize = 64;

/// A resource's properties, which live in their own table (see `0002_facts.sql`).
macro_rules! properties_column {
    () => {
        "(SELECT properties FROM resource_properties AS p WHERE p.uid = resources.uid)"
    };
}

/// A resource's columns, in the order [`resource_from_row`] reads them.
const RESOURCE_COLUMNS: &str = concat!(
    "uid, cloud, provider, account, region, rtype, id, name, first_seen, last_seen, ",
    "deleted_at, tags, ",
    properties_column!()
);

/// The first ten columns of a listed resource (see [`ListedColumns`]).
const LISTED_COLUMNS: &str = concat!(
    "uid, cloud, account, id, name, first_seen, last_seen, deleted_at, tags, ",
    properties_column!()
);

/// The columns of [`Store::scan_raw`]: text columns in [`RawField::ORDER`], with the type
/// at 4 (the provider follows from it); the last is the facts written under `facts` where
/// there are such, else the properties (read from their table only for those rows).
fn raw_columns(facts: Option<i64>) -> String {
    let columns = "uid, cloud, account, region, rtype, id, name, tags";
    match facts {
        Some(fp) => format!(
            "{columns}, CASE WHEN facts_fp = {fp} THEN facts ELSE {} END",
            properties_column!()
        ),
        None => format!("{columns}, {}", properties_column!()),
    }
}

/// The `now` of the latest completed compliance run covering a finding's cloud (a run of
/// that cloud, or of every cloud, scope `''`), or NULL; correlated on `findings.cloud`.
const CONFIRMED_AT: &str = "(SELECT MAX(finished_at) FROM compliance_runs \
     WHERE scope IN ('', findings.cloud))";

/// A finding's columns as listed: an open finding's `last_seen` is at least the latest
/// completed run covering it, which confirmed it without rewriting it.
fn listed_finding_columns() -> String {
    format!(
        "insight, resource_uid, resource, resource_type, region, cloud, state, first_seen, \
         CASE WHEN state = 'open' THEN MAX(last_seen, COALESCE({CONFIRMED_AT}, last_seen)) \
         ELSE last_seen END AS {REPORTED_LAST_SEEN}, resolved_at"
    )
}

/// Resolve one open finding; `last_seen` takes the time the latest run confirmed it.
const RESOLVE_FINDING: &str = "UPDATE findings SET state = 'resolved', resolved_at = ?1, \
     last_seen = MAX(last_seen, ?2) WHERE insight = ?3 AND resource_uid = ?4 AND state = 'open'";

/// Record a completed compliance run of a scope (a cloud id, or `''` for every cloud).
const RECORD_RUN: &str = "INSERT INTO compliance_runs (scope, finished_at) VALUES (?1, ?2) \
     ON CONFLICT (scope) DO UPDATE SET finished_at = MAX(finished_at, excluded.finished_at)";

/// Insert a resource, or refresh a known uid. The uid fixes cloud, type, region and id, so
/// they are not rewritten, and `deleted_at` is cleared by [`REVIVE_RESOURCE`] only where it
/// is set: refreshing a known resource changes no secondary index, only the table's page.
/// (No `RETURNING`: SQLite buffers its rows in a temp file, which triples the bytes written.)
const UPSERT_RESOURCE: &str = "INSERT INTO resources (uid, cloud, provider, account, region, \
     rtype, id, name, first_seen, last_seen, deleted_at, tags, facts_fp, facts) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11, ?12, ?13) \
     ON CONFLICT (uid) DO UPDATE SET provider = excluded.provider, \
     account = excluded.account, name = excluded.name, last_seen = excluded.last_seen, \
     tags = excluded.tags, facts_fp = excluded.facts_fp, facts = excluded.facts";

/// Insert or replace a resource's properties.
const UPSERT_PROPERTIES: &str = "INSERT INTO resource_properties (uid, properties) \
     VALUES (?1, ?2) ON CONFLICT (uid) DO UPDATE SET properties = excluded.properties";

/// Bring back a resource a sweep had marked deleted; a no-op for a live one.
const REVIVE_RESOURCE: &str =
    "UPDATE resources SET deleted_at = NULL WHERE uid = ?1 AND deleted_at IS NOT NULL";

const UPSERT_FINDING: &str = "INSERT INTO findings (insight, resource_uid, resource, \
     resource_type, region, cloud, state, first_seen, last_seen, resolved_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?8, NULL) \
     ON CONFLICT (insight, resource_uid) DO UPDATE SET resource = excluded.resource, \
     resource_type = excluded.resource_type, region = excluded.region, cloud = excluded.cloud, \
     state = 'open', last_seen = excluded.last_seen, resolved_at = NULL";

/// Where a `sqlite:` url points.
#[derive(Clone, Debug, PartialEq)]
enum Location {
    Memory,
    File(PathBuf),
}

/// Parse `sqlite://relative/path`, `sqlite:///absolute/path` or `sqlite::memory:`.
fn parse_url(url: &str) -> Result<Location, StoreError> {
    if url == "sqlite::memory:" {
        return Ok(Location::Memory);
    }
    match url.strip_prefix("sqlite://") {
        // `sqlite:///abs` leaves `/abs`; `sqlite://rel` leaves `rel`.
        Some(path) if !path.is_empty() && !path.ends_with('/') && !path.contains('?') => {
            Ok(Location::File(PathBuf::from(path)))
        }
        _ => Err(StoreError::UnsupportedUrl(url.to_string())),
    }
}

/// The database file a `sqlite:` url names; none for `sqlite::memory:` or a bad url.
pub fn database_path(url: &str) -> Option<PathBuf> {
    match parse_url(url) {
        Ok(Location::File(path)) => Some(path),
        _ => None,
    }
}

/// Open (creating and migrating) the SQLite database a `sqlite:` url names, with the
/// cipher of its cloud credentials.
pub async fn open(
    url: &str,
    cipher: Arc<crate::crypto::CredentialsCipher>,
) -> Result<SharedStore, StoreError> {
    let location = parse_url(url)?;
    let store = tokio::task::spawn_blocking(move || SqliteStore::open_blocking(location, cipher))
        .await
        .map_err(|e| StoreError::Unavailable(format!("opening the store failed: {e}")))??;
    Ok(Arc::new(store))
}

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The only connection that writes (and, in memory, the only connection).
    writer: Mutex<Connection>,
    /// Reader connections to the same file; none for an in-memory database.
    readers: Option<ReaderPool>,
    /// What [`Store::keep_facts`] named: written with each resource from then on.
    facts: std::sync::RwLock<Option<Arc<dyn Facts>>>,
    /// Seals and opens the credentials of clouds.
    cipher: Arc<crate::crypto::CredentialsCipher>,
    /// The store's generation for the [`CountCache`]s: advanced after every write of this
    /// process (in [`SqliteStore::write`], before the writer is released) and whenever a
    /// reader finds that the file changed since it last looked, which is how the commits
    /// of another process show (see [`SqliteStore::read_listing`]).
    generation: AtomicU64,
    /// Totals of resource listings, per filter, for one generation.
    resource_counts: CountCache,
    /// Totals of finding listings, per filter, for one generation.
    finding_counts: CountCache,
}

/// Reader connections to a WAL database, opened on demand, a few kept idle.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

/// A reader connection and the `PRAGMA data_version` it last read, none before its first
/// listing: the value changes when another connection (this process's writer, or another
/// process) has committed since.
struct Reader {
    conn: Connection,
    data_version: Option<i64>,
}

impl ReaderPool {
    fn take(&self) -> Result<Reader, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(reader) => Ok(reader),
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| unavailable("open reader", e))?;
                configure(&conn, false).map_err(|e| unavailable("configure reader", e))?;
                conn.pragma_update(None, "query_only", true)
                    .map_err(|e| unavailable("configure reader", e))?;
                conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
                    .map_err(|e| unavailable("configure reader", e))?;
                Ok(Reader {
                    conn,
                    data_version: None,
                })
            }
        }
    }

    fn give(&self, reader: Reader) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(reader);
        }
    }
}

/// Connection settings every connection gets: WAL (files only), NORMAL sync, busy timeout.
fn configure(conn: &Connection, file_writer: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if file_writer {
        // only takes effect on a new, empty file: before the first table and WAL mode
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(mode, "sqlite refused WAL mode");
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// Apply the migrations the database lacks; refuse a database newer than this build.
fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version INTEGER PRIMARY KEY NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(|e| query("create schema_version", e))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| query("begin migration", e))?;
    let found: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(|e| query("read schema version", e))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::UnknownSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    let now = chrono::Utc::now().timestamp_millis();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        debug!(version, "applying store migration");
        tx.execute_batch(sql)
            .map_err(|e| query(&format!("migration {version}"), e))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            params![version, now],
        )
        .map_err(|e| query("record schema version", e))?;
    }
    tx.commit().map_err(|e| query("commit migration", e))?;
    Ok(found.max(SCHEMA_VERSION))
}

/// Check the stored credentials against `cipher` and seal the plaintext rows of earlier
/// versions, in one transaction (see [`upgrade_credentials`]).
fn seal_plaintext_credentials(
    conn: &mut Connection,
    cipher: &crate::crypto::CredentialsCipher,
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| query("begin sealing credentials", e))?;
    let rows = collect(&tx, "SELECT id, credentials FROM clouds", [], 0, |r| {
        Ok((text(r, 0)?.to_owned(), text(r, 1)?.to_owned()))
    })?;
    let mut sealed = 0u64;
    for (id, stored, text) in upgrade_credentials(cipher, rows)? {
        sealed += tx
            .execute(
                "UPDATE clouds SET credentials = ?1 WHERE id = ?2 AND credentials = ?3",
                params![text, id, stored],
            )
            .map_err(|e| query("seal credentials", e))? as u64;
    }
    tx.commit()
        .map_err(|e| query("commit sealing credentials", e))?;
    report_resealed(sealed);
    Ok(())
}

impl SqliteStore {
    /// A resource listing by `q`, each row of [`ListedColumns::columns`] decoded by
    /// `decode`.
    async fn listed_page<T: Send + 'static>(
        &self,
        q: &ResourceQuery,
        decode: fn(&Row<'_>, &ListedColumns) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let (filter, args) = resource_filter(q);
        let (limit, offset, order) = (q.limit, q.offset, q.order_by());
        let page_filter = resource_page_filter(q, &filter);
        let key = q.count_key();
        let listed = ListedColumns::of(q);
        let columns = listed.columns(LISTED_COLUMNS);
        self.read_listing("list_resources", move |conn, inner, generation| {
            let listing = Listing {
                table: "resources",
                columns: &columns,
                order: &order,
                key: Some("uid"),
                page_filter: page_filter.as_deref(),
                totals: Some((&inner.resource_counts, key, generation)),
            };
            listing.page(conn, &filter, args, limit, offset, |r| decode(r, &listed))
        })
        .await
    }

    fn open_blocking(
        location: Location,
        cipher: Arc<crate::crypto::CredentialsCipher>,
    ) -> Result<SqliteStore, StoreError> {
        let (mut writer, readers) = match &location {
            Location::Memory => {
                let conn = Connection::open_in_memory().map_err(|e| unavailable("open", e))?;
                configure(&conn, false).map_err(|e| unavailable("configure", e))?;
                (conn, None)
            }
            Location::File(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot create directory {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                let conn = Connection::open(path)
                    .map_err(|e| unavailable(&format!("open {}", path.display()), e))?;
                configure(&conn, true).map_err(|e| unavailable("configure", e))?;
                let pool = ReaderPool {
                    path: path.clone(),
                    idle: Mutex::new(Vec::new()),
                };
                (conn, Some(pool))
            }
        };
        let version = migrate(&mut writer)?;
        seal_plaintext_credentials(&mut writer, &cipher)?;
        match &location {
            Location::Memory => info!(schema = version, "store open in memory"),
            Location::File(path) => {
                info!(path = %path.display(), schema = version, "store open")
            }
        }
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                facts: std::sync::RwLock::new(None),
                cipher,
                generation: AtomicU64::new(0),
                resource_counts: CountCache::new(COUNT_CACHE_ENTRIES),
                finding_counts: CountCache::new(COUNT_CACHE_ENTRIES),
            }),
        })
    }

    /// Run `f` on a reader connection in a blocking task.
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || match &inner.readers {
            Some(pool) => {
                let reader = pool.take()?;
                let out = f(&reader.conn);
                pool.give(reader);
                out
            }
            None => {
                let conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
                f(&conn)
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Unavailable(format!(
                "{op}: store task failed: {e}"
            )))
        });
        count_error(op, result)
    }

    /// Run a listing `f` on a reader connection in a blocking task, with the generation
    /// whose [`CountCache`] entries it may use and fill: none when totals must be counted.
    ///
    /// The generation is read before the listing's snapshot begins, so a total counted
    /// under it includes every write that had advanced it. A reader whose `data_version`
    /// moved since its last listing has seen a commit that no generation may cover yet (one
    /// of another process): it advances the generation and counts. Every commit is thus
    /// seen by each reader's next listing, and by the generation before any later reader
    /// of the same connection relies on it.
    async fn read_listing<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Inner, Option<u64>) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || match &inner.readers {
            Some(pool) => {
                let mut reader = pool.take()?;
                let generation = inner.generation.load(Ordering::SeqCst);
                let out = data_version(&reader.conn).and_then(|version| {
                    let unchanged = reader.data_version.replace(version) == Some(version);
                    if !unchanged {
                        inner.generation.fetch_add(1, Ordering::SeqCst);
                    }
                    f(&reader.conn, &inner, unchanged.then_some(generation))
                });
                pool.give(reader);
                out
            }
            None => {
                // in memory: one connection, and every write advances the generation
                // before it lets go of it
                let conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
                let generation = inner.generation.load(Ordering::SeqCst);
                f(&conn, &inner, Some(generation))
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Unavailable(format!(
                "{op}: store task failed: {e}"
            )))
        });
        count_error(op, result)
    }

    /// Run `f` on the writer connection in a blocking task; then advance the generation
    /// (see [`Inner::generation`]), whatever `f` did, before the writer is released.
    async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut conn);
            inner.generation.fetch_add(1, Ordering::SeqCst);
            out
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Unavailable(format!(
                "{op}: store task failed: {e}"
            )))
        });
        count_error(op, result)
    }
}

fn count_error<T>(op: &'static str, result: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(e) = &result {
        crate::metrics::inc("palisade_store_errors_total", &[("op", op)]);
        warn!(op, error = %e, "store operation failed");
    }
    result
}

/// A rusqlite error as a store error: lock, I/O and open failures say the store is
/// unavailable; anything else is a failed query.
fn query(context: &str, e: rusqlite::Error) -> StoreError {
    let transient = matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::NotADatabase
        )
    );
    if transient {
        StoreError::Unavailable(format!("{context}: {e}"))
    } else {
        StoreError::Query(format!("{context}: {e}"))
    }
}

fn unavailable(context: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {e}"))
}

fn ms(ts: Timestamp) -> i64 {
    ts.timestamp_millis()
}

fn text<'r>(row: &'r Row<'_>, idx: usize) -> Result<&'r str, StoreError> {
    std::str::from_utf8(text_bytes(row, idx)?)
        .map_err(|_| StoreError::Corrupt(format!("column {idx} is not utf-8")))
}

/// A text column's bytes, not yet checked as UTF-8 (see [`RawPage::push_bytes`]).
fn text_bytes<'r>(row: &'r Row<'_>, idx: usize) -> Result<&'r [u8], StoreError> {
    match row.get_ref(idx) {
        Ok(ValueRef::Text(bytes)) => Ok(bytes),
        Ok(other) => Err(StoreError::Corrupt(format!(
            "column {idx} is {:?}, not text",
            other.data_type()
        ))),
        Err(e) => Err(query("read column", e)),
    }
}

fn int(row: &Row<'_>, idx: usize) -> Result<i64, StoreError> {
    match row.get_ref(idx) {
        Ok(ValueRef::Integer(i)) => Ok(i),
        Ok(other) => Err(StoreError::Corrupt(format!(
            "column {idx} is {:?}, not an integer",
            other.data_type()
        ))),
        Err(e) => Err(query("read column", e)),
    }
}

fn opt_int(row: &Row<'_>, idx: usize) -> Result<Option<i64>, StoreError> {
    match row.get_ref(idx) {
        Ok(ValueRef::Null) => Ok(None),
        Ok(_) => int(row, idx).map(Some),
        Err(e) => Err(query("read column", e)),
    }
}

impl StoredRow for Row<'_> {
    fn text(&self, idx: usize) -> Result<&str, StoreError> {
        text(self, idx)
    }

    fn int(&self, idx: usize) -> Result<i64, StoreError> {
        int(self, idx)
    }

    fn opt_int(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        opt_int(self, idx)
    }
}

/// Run a prepared (cached) query and decode every row.
fn collect<T>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    capacity: usize,
    decode: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| query("prepare", e))?;
    let mut rows = stmt.query(args).map_err(|e| query("query", e))?;
    let mut out = Vec::with_capacity(capacity);
    while let Some(row) = rows.next().map_err(|e| query("step", e))? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// `PRAGMA data_version` of a connection: it changes when another connection commits.
fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.prepare_cached("PRAGMA data_version")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| query("read data_version", e))
}

fn count(conn: &Connection, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| query("prepare", e))?;
    let n: i64 = stmt
        .query_row(params_from_iter(args.iter()), |r| r.get(0))
        .map_err(|e| query("count", e))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A paged listing of one table: the page and the total of all matches, read in one
/// transaction so that the two agree (or the total from a [`CountCache`] for the
/// generation the listing started at, see [`SqliteStore::read_listing`]).
struct Listing<'a> {
    table: &'a str,
    columns: &'a str,
    order: &'a str,
    /// The table's key, to choose the page on it first (see [`page_sql`]).
    key: Option<&'a str>,
    /// The page's own `WHERE`, when it must steer the planner differently from the
    /// count's (the same conditions and arguments).
    page_filter: Option<&'a str>,
    /// Where totals of this listing are kept, its filter key and the generation it may
    /// use (none: count); none for a listing whose totals are not kept.
    totals: Option<(&'a CountCache, String, Option<u64>)>,
}

impl Listing<'_> {
    fn page<T>(
        &self,
        conn: &Connection,
        filter: &str,
        mut args: Vec<Value>,
        limit: u32,
        offset: u64,
        decode: impl Fn(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let tx = conn
            .unchecked_transaction()
            .map_err(|e| query("begin listing", e))?;
        let page_filter = self.page_filter.unwrap_or(filter);
        let sql = page_sql(self.table, self.columns, page_filter, self.order, self.key);
        let filter_args = args.len();
        args.push(Value::Integer(i64::from(limit)));
        args.push(Value::Integer(to_i64(offset)));
        let cap = usize::try_from(limit).unwrap_or(0).min(1000);
        let items = collect(&tx, &sql, params_from_iter(args.iter()), cap, decode)?;
        args.truncate(filter_args);
        let kept = self
            .totals
            .as_ref()
            .and_then(|(cache, key, generation)| generation.map(|g| (*cache, key.as_str(), g)));
        let (total, source) = match total_of_last_page(offset, limit, items.len()) {
            Some(n) => (n, TotalSource::Page),
            None => match kept.and_then(|(cache, key, g)| cache.get(g, key)) {
                Some(n) => (n, TotalSource::Cache),
                None => {
                    let sql = format!("SELECT COUNT(*) FROM {}{filter}", self.table);
                    (count(&tx, &sql, &args)?, TotalSource::Count)
                }
            },
        };
        if self.totals.is_some() {
            source.record();
        }
        if let (Some((cache, key, g)), TotalSource::Page | TotalSource::Count) = (kept, source) {
            cache.put(g, key, total);
        }
        Ok(Page { total, items })
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `WHERE` clauses and their arguments for a resource listing.
fn resource_filter(q: &ResourceQuery) -> (String, Vec<Value>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args = Vec::new();
    if !q.include_deleted {
        clauses.push("deleted_at IS NULL");
    }
    if let Some(cloud) = &q.cloud {
        clauses.push("cloud = ?");
        args.push(Value::Text(cloud.0.clone()));
    }
    if let Some(rtype) = q.rtype {
        clauses.push("rtype = ?");
        args.push(Value::Text(rtype.as_str().to_owned()));
    }
    if let Some(region) = &q.region {
        clauses.push("region = ?");
        args.push(Value::Text(region.clone()));
    }
    if let Some(tag) = &q.tag {
        match tag.split_once('=') {
            Some((key, value)) => {
                clauses.push(
                    "EXISTS (SELECT 1 FROM json_each(resources.tags) AS t \
                     WHERE t.key = ? AND t.value = ?)",
                );
                args.push(Value::Text(key.to_owned()));
                args.push(Value::Text(value.to_owned()));
            }
            None => {
                clauses
                    .push("EXISTS (SELECT 1 FROM json_each(resources.tags) AS t WHERE t.key = ?)");
                args.push(Value::Text(tag.clone()));
            }
        }
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

/// The `WHERE` of a resource page, when it differs from the total's. An order no index
/// serves is a sort over every match. SQLite (without statistics) would find the matches
/// through an index and look each row up, which for a filter that is not selective (one
/// cloud holding the estate) is many times slower than one pass over the table: `+` keeps
/// it off the indexes, so the worst case is that pass.
fn resource_page_filter(q: &ResourceQuery, filter: &str) -> Option<String> {
    (!matches!(q.order, ResourceOrder::Type | ResourceOrder::Uid)).then(|| {
        filter
            .replacen("deleted_at IS NULL", "+deleted_at IS NULL", 1)
            .replacen("cloud = ?", "+cloud = ?", 1)
            .replacen("rtype = ?", "+rtype = ?", 1)
    })
}

fn finding_filter(q: &FindingQuery) -> (String, Vec<Value>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args = Vec::new();
    if let Some(insight) = &q.insight {
        clauses.push("insight = ?");
        args.push(Value::Text(insight.0.clone()));
    }
    if let Some(uid) = &q.resource_uid {
        clauses.push("resource_uid = ?");
        args.push(Value::Text(uid.0.clone()));
    }
    if let Some(cloud) = &q.cloud {
        clauses.push("cloud = ?");
        args.push(Value::Text(cloud.0.clone()));
    }
    if let Some(state) = q.state {
        clauses.push("state = ?");
        args.push(Value::Text(state.as_str().to_owned()));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

/// The open findings of a uid range `(after, through]` of one cloud or all: a range of the
/// findings table, which is keyed by resource first.
fn open_in_range_sql(has_after: bool, has_through: bool, has_scope: bool) -> String {
    let mut sql =
        String::from("SELECT resource_uid, insight, cloud FROM findings WHERE state = 'open'");
    if has_after {
        sql.push_str(" AND resource_uid > ?");
    }
    if has_through {
        sql.push_str(" AND resource_uid <= ?");
    }
    if has_scope {
        sql.push_str(" AND cloud = ?");
    }
    sql
}

/// The keyset scan's SQL. The `+` before `deleted_at`, `cloud` and `rtype` keeps SQLite
/// from choosing a secondary index: the scan must walk the uid-clustered table in order,
/// not sort.
fn scan_sql(columns: &str, query: &ScanQuery, has_after: bool) -> String {
    let mut sql = format!("SELECT {columns} FROM resources WHERE +deleted_at IS NULL");
    if has_after {
        sql.push_str(" AND uid > ?");
    }
    if query.cloud.is_some() {
        sql.push_str(" AND +cloud = ?");
    }
    if !query.types.is_empty() {
        sql.push_str(" AND +rtype IN (");
        for i in 0..query.types.len() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
        }
        sql.push(')');
    }
    sql.push_str(" ORDER BY uid LIMIT ?");
    sql
}

/// The arguments of [`scan_sql`]'s statement, in its placeholders' order.
fn scan_args(query: &ScanQuery, after: Option<&ResourceUid>, limit: usize) -> Vec<Value> {
    let mut args: Vec<Value> = Vec::with_capacity(query.types.len() + 3);
    if let Some(after) = after {
        args.push(Value::Text(after.0.clone()));
    }
    if let Some(cloud) = &query.cloud {
        args.push(Value::Text(cloud.0.clone()));
    }
    for t in &query.types {
        args.push(Value::Text(t.as_str().to_owned()));
    }
    args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    args
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_cloud(&self, cloud: &CloudAccount) -> Result<(), StoreError> {
        let id = cloud.id.0.clone();
        let provider = cloud.provider.as_str();
        let name = cloud.name.clone();
        let regions = serde_json::to_string(&cloud.regions)
            .map_err(|e| StoreError::Query(format!("encode regions: {e}")))?;
        let credentials = seal_credentials(&self.inner.cipher, cloud)?;
        let created_at = ms(cloud.created_at);
        self.write("put_cloud", move |conn| {
            conn.prepare_cached(
                "INSERT INTO clouds (id, provider, name, regions, credentials, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, \
                 name = excluded.name, regions = excluded.regions, \
                 credentials = excluded.credentials, created_at = excluded.created_at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    provider,
                    name,
                    regions,
                    credentials,
                    created_at
                ])
            })
            .map_err(|e| query("put cloud", e))?;
            Ok(())
        })
        .await
    }

    async fn get_cloud(&self, id: &CloudId) -> Result<Option<CloudAccount>, StoreError> {
        let id = id.0.clone();
        let cipher = Arc::clone(&self.inner.cipher);
        self.read("get_cloud", move |conn| {
            let mut found = collect(
                conn,
                "SELECT id, provider, name, regions, credentials, created_at FROM clouds \
                 WHERE id = ?1",
                params![id],
                1,
                |r| cloud_from_row(r, &cipher),
            )?;
            Ok(found.pop())
        })
        .await
    }

    async fn list_clouds(&self) -> Result<Vec<CloudAccount>, StoreError> {
        let cipher = Arc::clone(&self.inner.cipher);
        self.read("list_clouds", move |conn| {
            collect(
                conn,
                "SELECT id, provider, name, regions, credentials, created_at FROM clouds \
                 ORDER BY created_at, id",
                [],
                0,
                |r| cloud_from_row(r, &cipher),
            )
        })
        .await
    }

    async fn delete_cloud(&self, id: &CloudId) -> Result<bool, StoreError> {
        let id = id.0.clone();
        self.write("delete_cloud", move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| query("begin delete cloud", e))?;
            tx.execute("DELETE FROM findings WHERE cloud = ?1", params![id])
                .map_err(|e| query("delete findings of cloud", e))?;
            tx.execute(
                "DELETE FROM resource_properties WHERE uid IN \
                 (SELECT uid FROM resources WHERE cloud = ?1)",
                params![id],
            )
            .map_err(|e| query("delete properties of cloud", e))?;
            tx.execute("DELETE FROM resources WHERE cloud = ?1", params![id])
                .map_err(|e| query("delete resources of cloud", e))?;
            tx.execute("DELETE FROM compliance_runs WHERE scope = ?1", params![id])
                .map_err(|e| query("delete compliance runs of cloud", e))?;
            let n = tx
                .execute("DELETE FROM clouds WHERE id = ?1", params![id])
                .map_err(|e| query("delete cloud", e))?;
            tx.commit().map_err(|e| query("commit delete cloud", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn upsert_resources(&self, batch: Vec<Resource>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let facts = self
            .inner
            .facts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.write("upsert_resources", move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| query("begin upsert resources", e))?;
            {
                let mut stmt = tx
                    .prepare_cached(UPSERT_RESOURCE)
                    .map_err(|e| query("prepare upsert resources", e))?;
                let mut properties = tx
                    .prepare_cached(UPSERT_PROPERTIES)
                    .map_err(|e| query("prepare upsert properties", e))?;
                let mut revive = tx
                    .prepare_cached(REVIVE_RESOURCE)
                    .map_err(|e| query("prepare revive resources", e))?;
                let mut tags: Vec<u8> = Vec::new();
                let mut props: Vec<u8> = Vec::new();
                for r in &batch {
                    tags.clear();
                    props.clear();
                    serde_json::to_writer(&mut tags, &r.tags)
                        .map_err(|e| StoreError::Query(format!("encode tags of {}: {e}", r.uid)))?;
                    serde_json::to_writer(&mut props, &r.properties).map_err(|e| {
                        StoreError::Query(format!("encode properties of {}: {e}", r.uid))
                    })?;
                    let tags = json_text(&tags)?;
                    let props = json_text(&props)?;
                    // facts that cannot be extracted are not written: the scan then reads
                    // the properties, and evaluates (or reports) them as they are
                    let (facts_fp, extracted) = match &facts {
                        Some(f) => match f.extract(r.rtype, props) {
                            Ok(Some(x)) => (Some(f.fingerprint()), Some(x)),
                            Ok(None) => (None, None),
                            Err(e) => {
                                debug!(uid = %r.uid, error = %e, "no facts for resource");
                                (None, None)
                            }
                        },
                        None => (None, None),
                    };
                    stmt.execute(params![
                        r.uid.0,
                        r.cloud.0,
                        r.provider.as_str(),
                        r.account,
                        r.region,
                        r.rtype.as_str(),
                        r.id,
                        r.name,
                        ms(r.first_seen),
                        ms(r.last_seen),
                        tags,
                        facts_fp,
                        extracted,
                    ])
                    .map_err(|e| query(&format!("upsert resource {}", r.uid), e))?;
                    properties
                        .execute(params![r.uid.0, props])
                        .map_err(|e| query(&format!("upsert properties of {}", r.uid), e))?;
                    revive
                        .execute(params![r.uid.0])
                        .map_err(|e| query(&format!("revive resource {}", r.uid), e))?;
                }
            }
            tx.commit()
                .map_err(|e| query("commit upsert resources", e))?;
            Ok(())
        })
        .await
    }

    async fn mark_deleted(&self, sweep: &DeletionSweep) -> Result<u64, StoreError> {
        let sweep = sweep.clone();
        self.write("mark_deleted", move |conn| {
            let mut sql = String::from(
                "UPDATE resources SET deleted_at = ?1 WHERE cloud = ?2 AND rtype = ?3 \
                 AND deleted_at IS NULL AND last_seen < ?4",
            );
            let mut args = vec![
                Value::Integer(ms(sweep.now)),
                Value::Text(sweep.cloud.0.clone()),
                Value::Text(sweep.rtype.as_str().to_owned()),
                Value::Integer(ms(sweep.seen_before)),
            ];
            if let Some(region) = &sweep.region {
                sql.push_str(" AND region = ?5");
                args.push(Value::Text(region.clone()));
            }
            let n = conn
                .prepare_cached(&sql)
                .and_then(|mut s| s.execute(params_from_iter(args.iter())))
                .map_err(|e| query("mark deleted", e))?;
            Ok(n as u64)
        })
        .await
    }

    async fn list_stored_resources(
        &self,
        q: &ResourceQuery,
    ) -> Result<Page<StoredResource>, StoreError> {
        self.listed_page(q, |row, listed| {
            stored_resource_from_row(&mut { row }, listed)
        })
        .await
    }

    /// Each row written as the API's JSON (see [`write_listed_json`]), its tags and
    /// properties checked to be JSON.
    async fn list_resources_json(&self, q: &ResourceQuery) -> Result<JsonPage, StoreError> {
        let page = self
            .listed_page(q, |row, listed| {
                let mut json = Vec::with_capacity(LISTED_JSON_BYTES_HINT);
                write_listed_json(row, listed, false, &mut json)?;
                Ok(json)
            })
            .await?;
        let mut json = Vec::with_capacity(page.items.iter().map(|r| r.len() + 1).sum());
        for (i, item) in page.items.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(item);
        }
        Ok(JsonPage {
            total: page.total,
            items: page.items.len(),
            json,
        })
    }

    async fn get_stored_resource(&self, key: &str) -> Result<Option<StoredResource>, StoreError> {
        let key = key.to_owned();
        self.read("get_resource", move |conn| {
            let all = ListedColumns::default();
            let columns = all.columns(LISTED_COLUMNS);
            let by_uid = collect(
                conn,
                &format!("SELECT {columns} FROM resources WHERE uid = ?1"),
                params![key],
                1,
                |r| stored_resource_from_row(&mut { r }, &all),
            )?;
            if let Some(r) = by_uid.into_iter().next() {
                return Ok(Some(r));
            }
            let mut by_id = collect(
                conn,
                &format!(
                    "SELECT {columns} FROM resources \
                     WHERE id = ?1 AND +deleted_at IS NULL LIMIT 2"
                ),
                params![key],
                2,
                |r| stored_resource_from_row(&mut { r }, &all),
            )?;
            Ok(if by_id.len() == 1 { by_id.pop() } else { None })
        })
        .await
    }

    async fn scan_resources(
        &self,
        query: &ScanQuery,
        after: Option<&ResourceUid>,
        limit: usize,
    ) -> Result<Vec<Resource>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = scan_sql(RESOURCE_COLUMNS, query, after.is_some());
        let args = scan_args(query, after, limit);
        // Pre-size for a full page, within reason.
        let cap = limit.min(10_000);
        self.read("scan_resources", move |conn| {
            collect(conn, &sql, params_from_iter(args.iter()), cap, |r| {
                resource_from_row(r)
            })
        })
        .await
    }

    async fn scan_raw(
        &self,
        scan: &ScanQuery,
        after: Option<&ResourceUid>,
        limit: usize,
        mut page: RawPage,
    ) -> Result<RawPage, StoreError> {
        page.clear();
        if limit == 0 {
            return Ok(page);
        }
        let sql = scan_sql(&raw_columns(scan.facts), scan, after.is_some());
        let args = scan_args(scan, after, limit);
        self.read("scan_raw", move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(|e| query("prepare", e))?;
            let mut rows = stmt
                .query(params_from_iter(args.iter()))
                .map_err(|e| query("query", e))?;
            while let Some(row) = rows.next().map_err(|e| query("step", e))? {
                let uid = text(row, 0)?;
                let rtype = stored_type(uid, text(row, 4)?)?;
                page.push_bytes(
                    rtype,
                    rtype.provider(),
                    [
                        uid.as_bytes(),
                        text_bytes(row, 1)?,
                        text_bytes(row, 2)?,
                        text_bytes(row, 3)?,
                        text_bytes(row, 5)?,
                        text_bytes(row, 6)?,
                        text_bytes(row, 7)?,
                        text_bytes(row, 8)?,
                    ],
                )?;
            }
            Ok(page)
        })
        .await
    }

    fn keep_facts(&self, facts: Arc<dyn Facts>) {
        info!(
            fingerprint = facts.fingerprint(),
            "store keeps compliance facts"
        );
        *self.inner.facts.write().unwrap_or_else(|p| p.into_inner()) = Some(facts);
    }

    async fn count_resources_by_type(
        &self,
        cloud: Option<&CloudId>,
    ) -> Result<BTreeMap<ResourceType, u64>, StoreError> {
        let cloud = cloud.map(|c| c.0.clone());
        self.read("count_resources_by_type", move |conn| {
            let (sql, args) = match cloud {
                Some(c) => (
                    "SELECT rtype, COUNT(*) FROM resources WHERE deleted_at IS NULL \
                     AND cloud = ?1 GROUP BY rtype",
                    vec![Value::Text(c)],
                ),
                None => (
                    "SELECT rtype, COUNT(*) FROM resources WHERE deleted_at IS NULL \
                     GROUP BY rtype",
                    vec![],
                ),
            };
            let rows = collect(conn, sql, params_from_iter(args.iter()), 16, |row| {
                let rtype: ResourceType = text(row, 0)?
                    .parse()
                    .map_err(|e: String| StoreError::Corrupt(e))?;
                Ok((rtype, u64::try_from(int(row, 1)?).unwrap_or(0)))
            })?;
            Ok(rows.into_iter().collect())
        })
        .await
    }

    async fn upsert_findings(&self, batch: Vec<Finding>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write("upsert_findings", move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| query("begin upsert findings", e))?;
            {
                let mut stmt = tx
                    .prepare_cached(UPSERT_FINDING)
                    .map_err(|e| query("prepare upsert findings", e))?;
                for f in &batch {
                    stmt.execute(params![
                        f.insight.0,
                        f.resource_uid.0,
                        f.resource,
                        f.resource_type.as_str(),
                        f.region,
                        f.cloud.0,
                        ms(f.first_seen),
                        ms(f.last_seen),
                    ])
                    .map_err(|e| {
                        query(
                            &format!("upsert finding {} of {}", f.insight, f.resource_uid),
                            e,
                        )
                    })?;
                }
            }
            tx.commit()
                .map_err(|e| query("commit upsert findings", e))?;
            Ok(())
        })
        .await
    }

    async fn resolve_findings(
        &self,
        cloud: Option<&CloudId>,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let cloud = cloud.map(|c| c.0.clone());
        self.write("resolve_findings", move |conn| {
            let mut sql = format!(
                "UPDATE findings SET state = 'resolved', resolved_at = ?1, \
                 last_seen = MAX(last_seen, COALESCE({CONFIRMED_AT}, last_seen)) \
                 WHERE state = 'open' AND last_seen < ?2 AND COALESCE({CONFIRMED_AT}, 0) < ?2"
            );
            let mut args = vec![Value::Integer(ms(now)), Value::Integer(ms(seen_before))];
            if let Some(cloud) = cloud {
                sql.push_str(" AND cloud = ?3");
                args.push(Value::Text(cloud));
            }
            let n = conn
                .prepare_cached(&sql)
                .and_then(|mut s| s.execute(params_from_iter(args.iter())))
                .map_err(|e| query("resolve findings", e))?;
            Ok(n as u64)
        })
        .await
    }

    async fn sync_findings(
        &self,
        scope: Option<&CloudId>,
        after: Option<&ResourceUid>,
        through: Option<&ResourceUid>,
        holding: Vec<Finding>,
        now: Timestamp,
    ) -> Result<(u64, u64), StoreError> {
        let scope = scope.map(|c| c.0.clone());
        let sql = open_in_range_sql(after.is_some(), through.is_some(), scope.is_some());
        let mut args: Vec<Value> = Vec::with_capacity(3);
        args.extend(after.map(|u| Value::Text(u.0.clone())));
        args.extend(through.map(|u| Value::Text(u.0.clone())));
        args.extend(scope.clone().map(Value::Text));
        let finishes_run = through.is_none();
        let now = ms(now);
        self.write("sync_findings", move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| query("begin sync findings", e))?;
            let (opened, resolved) = {
                // holding findings by (resource_uid, insight), and which of them are open
                let holds: foldhash::HashMap<(&str, &str), usize> = holding
                    .iter()
                    .enumerate()
                    .map(|(i, f)| ((f.resource_uid.as_str(), f.insight.as_str()), i))
                    .collect();
                let mut kept = vec![false; holding.len()];
                // open and holding: untouched; open and not holding: resolved. The open
                // findings of the range are compared in place; only the stale are copied.
                let mut stale: Vec<(String, String, String)> = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(&sql).map_err(|e| query("prepare", e))?;
                    let mut rows = stmt
                        .query(params_from_iter(args.iter()))
                        .map_err(|e| query("query open findings", e))?;
                    while let Some(row) = rows.next().map_err(|e| query("step", e))? {
                        let (uid, insight) = (text(row, 0)?, text(row, 1)?);
                        match holds.get(&(uid, insight)) {
                            Some(&i) => kept[i] = true,
                            None => stale.push((
                                uid.to_owned(),
                                insight.to_owned(),
                                text(row, 2)?.to_owned(),
                            )),
                        }
                    }
                }
                let kept_count = kept.iter().filter(|k| **k).count();
                let mut resolved = 0u64;
                if !stale.is_empty() {
                    let runs = collect(
                        &tx,
                        "SELECT scope, finished_at FROM compliance_runs",
                        [],
                        8,
                        |row| Ok((text(row, 0)?.to_owned(), int(row, 1)?)),
                    )?;
                    let all = runs.iter().find(|(s, _)| s.is_empty()).map(|r| r.1);
                    let confirmed = |cloud: &str| {
                        runs.iter()
                            .find(|(s, _)| s == cloud)
                            .map(|r| r.1)
                            .max(all)
                            .unwrap_or(0)
                    };
                    let mut stmt = tx
                        .prepare_cached(RESOLVE_FINDING)
                        .map_err(|e| query("prepare resolve finding", e))?;
                    for (uid, insight, cloud) in &stale {
                        resolved += stmt
                            .execute(params![now, confirmed(cloud), insight, uid])
                            .map_err(|e| query(&format!("resolve finding {insight} of {uid}"), e))?
                            as u64;
                    }
                }
                let mut opened = 0u64;
                if kept_count < holding.len() {
                    let mut stmt = tx
                        .prepare_cached(UPSERT_FINDING)
                        .map_err(|e| query("prepare upsert findings", e))?;
                    for (f, _) in holding.iter().zip(&kept).filter(|(_, k)| !**k) {
                        stmt.execute(params![
                            f.insight.0,
                            f.resource_uid.0,
                            f.resource,
                            f.resource_type.as_str(),
                            f.region,
                            f.cloud.0,
                            ms(f.first_seen),
                            ms(f.last_seen),
                        ])
                        .map_err(|e| {
                            query(
                                &format!("open finding {} of {}", f.insight, f.resource_uid),
                                e,
                            )
                        })?;
                        opened += 1;
                    }
                }
                if finishes_run {
                    tx.prepare_cached(RECORD_RUN)
                        .and_then(|mut s| s.execute(params![scope.as_deref().unwrap_or(""), now]))
                        .map_err(|e| query("record compliance run", e))?;
                }
                (opened, resolved)
            };
            tx.commit().map_err(|e| query("commit sync findings", e))?;
            Ok((opened, resolved))
        })
        .await
    }

    async fn list_findings(&self, q: &FindingQuery) -> Result<Page<Finding>, StoreError> {
        let (filter, args) = finding_filter(q);
        let (limit, offset, order) = (q.limit, q.offset, q.order_by());
        let key = q.count_key();
        self.read_listing("list_findings", move |conn, inner, generation| {
            let columns = listed_finding_columns();
            let listing = Listing {
                table: "findings",
                columns: &columns,
                order: &order,
                key: None,
                page_filter: None,
                totals: Some((&inner.finding_counts, key, generation)),
            };
            listing.page(conn, &filter, args, limit, offset, |r| finding_from_row(r))
        })
        .await
    }

    async fn resource_findings(
        &self,
        uid: &ResourceUid,
        limit: u32,
    ) -> Result<Vec<Finding>, StoreError> {
        let query = FindingQuery {
            resource_uid: Some(uid.clone()),
            ..FindingQuery::default()
        };
        let (filter, mut args) = finding_filter(&query);
        let columns = listed_finding_columns();
        let sql = page_sql("findings", &columns, &filter, &query.order_by(), None);
        args.push(Value::Integer(i64::from(limit)));
        args.push(Value::Integer(0));
        self.read("resource_findings", move |conn| {
            let cap = usize::try_from(limit).unwrap_or(0).min(16);
            collect(conn, &sql, params_from_iter(args.iter()), cap, |r| {
                finding_from_row(r)
            })
        })
        .await
    }

    fn cache_counts(&self, entries: usize) {
        self.inner.resource_counts.set_capacity(entries);
        self.inner.finding_counts.set_capacity(entries);
    }

    async fn count_open_findings(&self) -> Result<BTreeMap<InsightId, u64>, StoreError> {
        self.read("count_open_findings", |conn| {
            let rows = collect(
                conn,
                "SELECT insight, COUNT(*) FROM findings WHERE state = 'open' GROUP BY insight",
                [],
                32,
                |row| {
                    Ok((
                        InsightId(text(row, 0)?.to_owned()),
                        u64::try_from(int(row, 1)?).unwrap_or(0),
                    ))
                },
            )?;
            Ok(rows.into_iter().collect())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read("ping", |conn| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(|e| query("ping", e))?;
            Ok(())
        })
        .await
    }

    async fn create_user(&self, user: &StoredUser) -> Result<bool, StoreError> {
        let u = user.clone();
        self.write("create_user", move |conn| {
            let n = conn
                .execute(
                    "INSERT INTO users (name, role, password_hash, created_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                    params![u.name, u.role.as_str(), u.password_hash, ms(u.created_at)],
                )
                .map_err(|e| query("create user", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn get_user(&self, name: &str) -> Result<Option<StoredUser>, StoreError> {
        let name = name.to_owned();
        self.read("get_user", move |conn| {
            let mut found = collect(
                conn,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                params![name],
                1,
                |r| user_from_row(r),
            )?;
            Ok(found.pop())
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        self.read("list_users", |conn| {
            collect(
                conn,
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"),
                [],
                0,
                |r| user_from_row(r),
            )
        })
        .await
    }

    async fn put_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError> {
        let k = key.clone();
        self.write("put_api_key", move |conn| {
            let n = conn
                .execute(
                    "INSERT INTO api_keys (id, user_name, name, hash, created_at, last_used, \
                     revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                    params![
                        k.id,
                        k.user,
                        k.name,
                        k.hash,
                        ms(k.created_at),
                        k.last_used.map(ms),
                        k.revoked_at.map(ms)
                    ],
                )
                .map_err(|e| query("put api key", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn find_api_key(
        &self,
        hash: &str,
    ) -> Result<Option<(StoredApiKey, crate::auth::Role)>, StoreError> {
        let hash = hash.to_owned();
        self.read("find_api_key", move |conn| {
            let mut found = collect(
                conn,
                "SELECT k.id, k.user_name, k.name, k.hash, k.created_at, k.last_used, \
                 k.revoked_at, u.role FROM api_keys k JOIN users u ON u.name = k.user_name \
                 WHERE k.hash = ?1 AND k.revoked_at IS NULL",
                params![hash],
                1,
                |r| owned_api_key_from_row(r),
            )?;
            Ok(found.pop())
        })
        .await
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<StoredApiKey>, StoreError> {
        let id = id.to_owned();
        self.read("get_api_key", move |conn| {
            let mut found = collect(
                conn,
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                params![id],
                1,
                |r| api_key_from_row(r),
            )?;
            Ok(found.pop())
        })
        .await
    }

    async fn list_api_keys(&self, user: Option<&str>) -> Result<Vec<StoredApiKey>, StoreError> {
        let user = user.map(str::to_owned);
        self.read("list_api_keys", move |conn| match &user {
            Some(u) => collect(
                conn,
                &format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE user_name = ?1 \
                     ORDER BY created_at, id"
                ),
                params![u],
                0,
                |r| api_key_from_row(r),
            ),
            None => collect(
                conn,
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"),
                [],
                0,
                |r| api_key_from_row(r),
            ),
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write("revoke_api_key", move |conn| {
            let n = conn
                .execute(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                    params![ms(at), id],
                )
                .map_err(|e| query("revoke api key", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn touch_api_key(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write("touch_api_key", move |conn| {
            conn.execute(
                "UPDATE api_keys SET last_used = MAX(COALESCE(last_used, 0), ?1) WHERE id = ?2",
                params![ms(at), id],
            )
            .map_err(|e| query("touch api key", e))?;
            Ok(())
        })
        .await
    }

    async fn put_session(&self, session: &StoredSession) -> Result<(), StoreError> {
        let s = session.clone();
        self.write("put_session", move |conn| {
            conn.execute(
                "INSERT INTO sessions (hash, user_name, csrf_hash, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![s.hash, s.user, s.csrf_hash, ms(s.expires_at)],
            )
            .map_err(|e| query("put session", e))?;
            Ok(())
        })
        .await
    }

    async fn find_session(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<(StoredSession, crate::auth::Role)>, StoreError> {
        let hash = hash.to_owned();
        self.read("find_session", move |conn| {
            let mut found = collect(
                conn,
                "SELECT s.hash, s.user_name, s.csrf_hash, s.expires_at, u.role \
                 FROM sessions s JOIN users u ON u.name = s.user_name \
                 WHERE s.hash = ?1 AND s.expires_at > ?2",
                params![hash, ms(now)],
                1,
                |r| session_from_row(r),
            )?;
            Ok(found.pop())
        })
        .await
    }

    async fn delete_session(&self, hash: &str) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.write("delete_session", move |conn| {
            let n = conn
                .execute("DELETE FROM sessions WHERE hash = ?1", params![hash])
                .map_err(|e| query("delete session", e))?;
            Ok(n > 0)
        })
        .await
    }

    async fn purge_sessions(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write("purge_sessions", move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM sessions WHERE expires_at <= ?1",
                    params![ms(now)],
                )
                .map_err(|e| query("purge sessions", e))?;
            Ok(n as u64)
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let e = entry.clone().bounded();
        self.write("append_audit", move |conn| {
            conn.execute(
                "INSERT INTO audit_log (occurred_at, principal, action, target, client, status) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    ms(e.at),
                    e.principal,
                    e.action,
                    e.target,
                    e.client,
                    i64::from(e.status)
                ],
            )
            .map_err(|e| query("append audit", e))?;
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, limit: u32, offset: u64) -> Result<Page<AuditEntry>, StoreError> {
        self.read("list_audit", move |conn| {
            Listing {
                table: "audit_log",
                columns: AUDIT_COLUMNS,
                order: "id DESC",
                key: None,
                page_filter: None,
                totals: None,
            }
            .page(conn, "", Vec::new(), limit, offset, |r| audit_from_row(r))
        })
        .await
    }
}

/// serde_json's output as text (it is always UTF-8).
fn json_text(buf: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(buf).map_err(|e| StoreError::Query(format!("encoded json: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::{at, aws_keys, fresh_cloud, resource};
    use palisade_proto::Credentials;

    use crate::crypto::{CredentialsCipher, CredentialsKey, KeyOrigin};

    /// The store with an ephemeral credentials key, as `store::open` opens it.
    async fn open(url: &str) -> Result<SharedStore, StoreError> {
        crate::store::open(url).await
    }

    fn configured_cipher(key: &CredentialsKey) -> Arc<CredentialsCipher> {
        Arc::new(CredentialsCipher::new(key, KeyOrigin::Configured))
    }

    fn raw_credentials(path: &std::path::Path, id: &CloudId) -> String {
        Connection::open(path)
            .expect("raw open")
            .query_row(
                "SELECT credentials FROM clouds WHERE id = ?1",
                params![id.0],
                |r| r.get(0),
            )
            .expect("raw credentials")
    }

    /// Every byte of the database's files (the database, its WAL and shared memory).
    fn file_bytes(path: &std::path::Path) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(b) = std::fs::read(format!("{}{suffix}", path.display())) {
                all.extend(b);
            }
        }
        all
    }

    fn holds(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[tokio::test]
    async fn credentials_are_sealed_in_the_file_and_a_moved_blob_does_not_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        let key = CredentialsKey::random();
        let store = crate::store::open_with(&url, configured_cipher(&key))
            .await
            .expect("open");
        let (a, b) = (fresh_cloud("sealed-a"), fresh_cloud("sealed-b"));
        let secret = "wJalrXUtnFEMI-sealed-secret";
        store.put_cloud(&aws_keys(&a, secret)).await.expect("put a");
        store
            .put_cloud(&aws_keys(&b, "another-secret-value"))
            .await
            .expect("put b");
        let raw = raw_credentials(&path, &a);
        assert!(raw.starts_with("v1:"), "{raw}");
        assert!(
            !raw.contains(secret) && !raw.contains("AKIAEXAMPLE"),
            "{raw}"
        );
        assert!(
            !holds(&file_bytes(&path), secret),
            "the secret is in the files"
        );
        assert_eq!(
            store.get_cloud(&a).await.expect("get"),
            Some(aws_keys(&a, secret))
        );

        // a's blob in b's row: authentic bytes, but for another cloud
        let before = crate::metrics::value(
            "palisade_credentials_errors_total",
            &[("kind", "unauthentic")],
        );
        Connection::open(&path)
            .expect("raw open")
            .execute(
                "UPDATE clouds SET credentials = ?1 WHERE id = ?2",
                params![raw, b.0],
            )
            .expect("move the blob");
        let err = store.get_cloud(&b).await.expect_err("a moved blob");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains(b.as_str()), "{err}");
        assert!(!format!("{err} {err:?}").contains(raw.as_str()), "{err:?}");
        assert!(!format!("{err} {err:?}").contains(secret), "{err:?}");
        assert!(
            crate::metrics::value(
                "palisade_credentials_errors_total",
                &[("kind", "unauthentic")]
            ) > before
        );
        assert!(store.list_clouds().await.is_err(), "listing reports it too");
    }

    #[tokio::test]
    async fn plaintext_credentials_of_earlier_versions_are_sealed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        let key = CredentialsKey::random();
        let id = fresh_cloud("legacy");
        let secret = "legacy-plaintext-secret";
        let account = aws_keys(&id, secret);
        drop(
            crate::store::open_with(&url, configured_cipher(&key))
                .await
                .expect("create"),
        );
        // the row as an earlier version wrote it: the credentials as JSON text
        let legacy = serde_json::to_string(&account.credentials).expect("json");
        Connection::open(&path)
            .expect("raw open")
            .execute(
                "INSERT INTO clouds (id, provider, name, regions, credentials, created_at)                  VALUES (?1, 'aws', 'keys', '[\"us-east-1\"]', ?2, ?3)",
                params![id.0, legacy, ms(at(1))],
            )
            .expect("a plaintext row");

        // a store with a throwaway key reads it but never seals it
        let store = open(&url).await.expect("open with an ephemeral key");
        assert_eq!(
            store.get_cloud(&id).await.expect("get"),
            Some(account.clone())
        );
        drop(store);
        assert_eq!(raw_credentials(&path, &id), legacy);

        let store = crate::store::open_with(&url, configured_cipher(&key))
            .await
            .expect("open seals");
        let raw = raw_credentials(&path, &id);
        assert!(raw.starts_with("v1:") && !raw.contains(secret), "{raw}");
        assert_eq!(
            store.get_cloud(&id).await.expect("get"),
            Some(account.clone())
        );
        drop(store);
        // once: the next open has nothing to seal and changes nothing
        let again = crate::store::open_with(&url, configured_cipher(&key))
            .await
            .expect("reopen");
        assert_eq!(raw_credentials(&path, &id), raw);
        assert_eq!(again.get_cloud(&id).await.expect("get"), Some(account));
    }

    fn file_url(dir: &tempfile::TempDir) -> (String, PathBuf) {
        let path = dir.path().join("palisade.db");
        (format!("sqlite://{}", path.display()), path)
    }

    #[test]
    fn urls_parse() {
        assert_eq!(parse_url("sqlite::memory:").ok(), Some(Location::Memory));
        assert_eq!(
            parse_url("sqlite://data/palisade.db").ok(),
            Some(Location::File(PathBuf::from("data/palisade.db")))
        );
        assert_eq!(
            parse_url("sqlite:///var/lib/palisade/p.db").ok(),
            Some(Location::File(PathBuf::from("/var/lib/palisade/p.db")))
        );
        for bad in [
            "sqlite://",
            "sqlite:///",
            "sqlite:foo.db",
            "mysql://x",
            "sqlite://a.db?x=1",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::UnsupportedUrl(_))),
                "{bad} should be refused"
            );
        }
    }

    #[tokio::test]
    async fn a_relative_url_is_relative_to_the_working_directory() {
        // Climb from the working directory to the root with `..`, then down into a temp
        // directory: a relative url that touches nothing but the temp directory.
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = std::env::current_dir().expect("cwd");
        let up = "../".repeat(cwd.components().count().saturating_sub(1));
        let target = dir.path().join("new/sub/p.db");
        let below_root = target.strip_prefix("/").expect("absolute temp dir");
        let rel = format!("{up}{}", below_root.display());
        assert!(!rel.starts_with('/'));
        let store = open(&format!("sqlite://{rel}"))
            .await
            .expect("open relative");
        store.ping().await.expect("ping");
        assert!(target.is_file(), "{} should exist", target.display());
    }

    #[tokio::test]
    async fn a_new_file_is_migrated_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        let _store = open(&url).await.expect("open");
        let conn = Connection::open(&path).expect("raw open");
        let version: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal mode");
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn a_version_1_database_keeps_its_resources_through_the_facts_migration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        {
            let conn = Connection::open(&path).expect("raw open");
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY NOT NULL, \
                 applied_at INTEGER NOT NULL); INSERT INTO schema_version VALUES (1, 0);",
            )
            .expect("version table");
            conn.execute_batch(MIGRATIONS[0].1)
                .expect("version 1 schema");
            conn.execute(
                "INSERT INTO resources VALUES ('u1', 'c', 'aws', '1', 'us-east-1', \
                 'aws.ec2.volume', 'vol-1', 'v', 1000, 2000, NULL, '{\"Owner\":\"me\"}', \
                 '{\"encrypted\":\"false\",\"size\":\"8\"}')",
                [],
            )
            .expect("a version 1 resource");
        }
        let store = open(&url).await.expect("open migrates");
        let r = store.get_resource("u1").await.expect("get").expect("kept");
        assert_eq!(
            r.properties,
            serde_json::json!({"encrypted": "false", "size": "8"})
        );
        assert_eq!(r.tags.get("Owner").map(String::as_str), Some("me"));
        let conn = Connection::open(&path).expect("raw open");
        let version: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_version_4_database_keeps_its_findings_through_the_rekeying_migration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        {
            let mut conn = Connection::open(&path).expect("raw open");
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY NOT NULL, \
                 applied_at INTEGER NOT NULL);",
            )
            .expect("version table");
            let tx = conn.transaction().expect("tx");
            for (version, sql) in &MIGRATIONS[..4] {
                tx.execute_batch(sql).expect("an earlier schema");
                tx.execute("INSERT INTO schema_version VALUES (?1, 0)", [version])
                    .expect("record version");
            }
            tx.commit().expect("commit");
            // version 4 columns: insight first
            conn.execute_batch(
                "INSERT INTO findings VALUES \
                 ('aws-ebs-unencrypted', 'u1', 'c', 'vol-1', 'aws.ec2.volume', 'us-east-1', \
                  'open', 1000, 2000, NULL), \
                 ('aws-ebs-unencrypted', 'u2', 'c', 'vol-2', 'aws.ec2.volume', 'us-east-1', \
                  'resolved', 1000, 1500, 1600), \
                 ('aws-iam-user-no-mfa', 'u3', 'c', 'bob', 'aws.iam.user', 'global', \
                  'open', 1100, 2000, NULL);",
            )
            .expect("version 4 findings");
        }
        let store = open(&url).await.expect("open migrates");
        let all = store
            .list_findings(&FindingQuery {
                limit: 10,
                ..FindingQuery::default()
            })
            .await
            .expect("list");
        assert_eq!(all.total, 3);
        let kept: Vec<(&str, &str, FindingState, i64)> = all
            .items
            .iter()
            .map(|f| {
                (
                    f.insight.as_str(),
                    f.resource_uid.as_str(),
                    f.state,
                    f.first_seen.timestamp_millis(),
                )
            })
            .collect();
        assert_eq!(
            kept,
            [
                ("aws-ebs-unencrypted", "u1", FindingState::Open, 1000),
                ("aws-ebs-unencrypted", "u2", FindingState::Resolved, 1000),
                ("aws-iam-user-no-mfa", "u3", FindingState::Open, 1100),
            ]
        );
        let open = store.count_open_findings().await.expect("count");
        assert_eq!(open.values().sum::<u64>(), 2);
        let of_u2 = store
            .resource_findings(&ResourceUid("u2".into()), 10)
            .await
            .expect("a resource's findings");
        assert_eq!(of_u2.len(), 1);
        assert_eq!(
            of_u2[0].resolved_at.map(|t| t.timestamp_millis()),
            Some(1600)
        );
    }

    #[tokio::test]
    async fn scans_read_facts_in_place_of_properties_under_their_fingerprint() {
        let store = open("sqlite::memory:").await.expect("open");
        let settings = crate::settings::Settings::defaults().expect("defaults");
        let catalog = crate::compliance::Catalog::builtin(&settings.compliance).expect("insights");
        let cloud = CloudId("c".into());
        let mut r = Resource::harvested(
            &cloud,
            "1",
            "us-east-1",
            ResourceType::AwsEc2Volume,
            "vol-1",
            "v",
            BTreeMap::new(),
            serde_json::json!({"encrypted": "false", "attachmentSet": [{"device": "/dev/xvda"}]}),
            chrono::Utc::now(),
        );
        // written before the store knew the catalog: no facts
        store
            .upsert_resources(vec![r.clone()])
            .await
            .expect("upsert");
        let query = ScanQuery {
            cloud: None,
            types: vec![],
            facts: Some(catalog.fingerprint()),
        };
        let scan = |store: SharedStore, query: ScanQuery| async move {
            let page = store
                .scan_raw(&query, None, 10, RawPage::default())
                .await
                .expect("scan");
            page.get(0)
                .map(|r| r.properties.to_owned())
                .expect("one row")
        };
        let full = scan(store.clone(), query.clone()).await;
        assert!(full.contains("attachmentSet"), "no facts yet: {full}");
        store.keep_facts(catalog.facts());
        r.last_seen = chrono::Utc::now();
        store
            .upsert_resources(vec![r.clone()])
            .await
            .expect("upsert");
        let facts = scan(store.clone(), query.clone()).await;
        assert!(
            !facts.contains("attachmentSet"),
            "only what the insights read: {facts}"
        );
        assert!(facts.contains("encrypted"), "{facts}");
        let other = ScanQuery {
            facts: Some(catalog.fingerprint() ^ 1),
            ..query
        };
        assert_eq!(scan(store.clone(), other).await, full);
        // the API still reads the whole properties
        let got = store
            .get_resource(r.uid.as_str())
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.properties, r.properties);
    }

    #[tokio::test]
    async fn a_schema_from_the_future_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        drop(open(&url).await.expect("create"));
        let conn = Connection::open(&path).expect("raw open");
        conn.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, 0)",
            params![SCHEMA_VERSION + 1],
        )
        .expect("pretend a newer build migrated");
        drop(conn);
        match open(&url).await {
            Err(StoreError::UnknownSchema { found, known }) => {
                assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            Err(other) => panic!("expected UnknownSchema, got {other}"),
            Ok(_) => panic!("a newer schema must be refused"),
        }
    }

    #[tokio::test]
    async fn a_failed_batch_leaves_the_previous_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        let store = open(&url).await.expect("open");
        let cloud = fresh_cloud("atomic");
        let rtype = ResourceType::AwsEc2Instance;
        let before = resource(&cloud, rtype, "us-east-1", "i-before", &[], at(1));
        store
            .upsert_resources(vec![before.clone()])
            .await
            .expect("first batch");

        // Make the database refuse one row, as a full disk or a crash would mid-batch.
        let conn = Connection::open(&path).expect("raw open");
        conn.execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON resources WHEN NEW.id = 'i-poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
        )
        .expect("trigger");
        drop(conn);

        let mut changed = before.clone();
        changed.name = "changed".into();
        changed.last_seen = at(2);
        let new = resource(&cloud, rtype, "us-east-1", "i-new", &[], at(2));
        let poison = resource(&cloud, rtype, "us-east-1", "i-poison", &[], at(2));
        let err = store
            .upsert_resources(vec![changed, new.clone(), poison])
            .await
            .expect_err("the batch must fail");
        assert!(err.to_string().contains("poisoned row"), "{err}");

        assert_eq!(
            store.get_resource(before.uid.as_str()).await.expect("get"),
            Some(before)
        );
        assert_eq!(
            store.get_resource(new.uid.as_str()).await.expect("get"),
            None
        );
        // The writer is usable after the failure.
        store
            .upsert_resources(vec![new.clone()])
            .await
            .expect("next batch");
        assert!(store
            .get_resource(new.uid.as_str())
            .await
            .expect("get")
            .is_some());
    }

    #[tokio::test]
    async fn corrupt_credentials_are_reported_without_the_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        let store = open(&url).await.expect("open");
        let id = fresh_cloud("corrupt");
        store
            .put_cloud(&CloudAccount {
                id: id.clone(),
                provider: palisade_proto::Provider::Aws,
                name: "x".into(),
                regions: vec![],
                credentials: Credentials::Default,
                created_at: at(1),
            })
            .await
            .expect("put_cloud");
        let conn = Connection::open(&path).expect("raw open");
        conn.execute(
            "UPDATE clouds SET credentials = ?1 WHERE id = ?2",
            params![
                r#"{"kind":"keys","access_key_id":7,"secret_access_key":"hunter2-secret"}"#,
                id.0
            ],
        )
        .expect("corrupt it");
        drop(conn);
        let err = store.get_cloud(&id).await.expect_err("corrupt credentials");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_and_the_writer_work_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, _) = file_url(&dir);
        let store = open(&url).await.expect("open");
        let cloud = fresh_cloud("concurrent");
        let mut tasks = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            let cloud = cloud.clone();
            tasks.push(tokio::spawn(async move {
                for b in 0..10 {
                    let batch = (0..50)
                        .map(|n| {
                            let id = format!("i-{w}-{b}-{n}");
                            resource(
                                &cloud,
                                ResourceType::AwsEc2Instance,
                                "us-east-1",
                                &id,
                                &[],
                                at(1),
                            )
                        })
                        .collect();
                    store.upsert_resources(batch).await.expect("upsert");
                }
            }));
        }
        for _ in 0..4 {
            let store = store.clone();
            let cloud = cloud.clone();
            tasks.push(tokio::spawn(async move {
                let mut last = 0;
                for _ in 0..20 {
                    let q = ScanQuery {
                        cloud: Some(cloud.clone()),
                        types: vec![],
                        facts: None,
                    };
                    let seen = store
                        .scan_resources(&q, None, 5000)
                        .await
                        .expect("scan")
                        .len();
                    assert!(seen >= last, "committed rows never disappear");
                    last = seen;
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let counts = store
            .count_resources_by_type(Some(&cloud))
            .await
            .expect("count");
        assert_eq!(counts.get(&ResourceType::AwsEc2Instance), Some(&2000));
    }

    /// Another process's commits (here: a second store on the same file, with a writer of
    /// its own) reach listing totals at once, though this store's own writer never saw
    /// them: its readers notice the file changed (`data_version`).
    #[tokio::test]
    async fn totals_see_the_writes_of_another_process_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, _) = file_url(&dir);
        let ours = open(&url).await.expect("open");
        let theirs = open(&url).await.expect("open again");
        let cloud = fresh_cloud("other-process");
        let query = ResourceQuery {
            cloud: Some(cloud.clone()),
            limit: 1,
            ..ResourceQuery::default()
        };
        let batch = |from: u32, to: u32| -> Vec<Resource> {
            (from..to)
                .map(|n| {
                    resource(
                        &cloud,
                        ResourceType::AwsEc2Instance,
                        "us-east-1",
                        &format!("i-{n}"),
                        &[],
                        at(1),
                    )
                })
                .collect()
        };
        ours.upsert_resources(batch(0, 3)).await.expect("upsert");
        for (writer, from, to) in [(&ours, 0, 0), (&theirs, 3, 5), (&theirs, 5, 9)] {
            writer
                .upsert_resources(batch(from, to))
                .await
                .expect("upsert");
            // listings at once, on many readers, each asked twice
            for _ in 0..2 {
                let lists = (0..MAX_IDLE_READERS).map(|_| ours.list_stored_resources(&query));
                for page in futures::future::join_all(lists).await {
                    assert_eq!(page.expect("list").total, u64::from(to.max(3)));
                }
            }
        }
    }

    #[tokio::test]
    async fn in_memory_stores_are_separate_and_keep_their_data() {
        let a = open("sqlite::memory:").await.expect("open a");
        let b = open("sqlite::memory:").await.expect("open b");
        let cloud = fresh_cloud("memory");
        let r = resource(
            &cloud,
            ResourceType::AwsEc2Vpc,
            "us-east-1",
            "vpc-1",
            &[],
            at(1),
        );
        a.upsert_resources(vec![r.clone()]).await.expect("upsert");
        // Reads after writes, from other blocking threads, see the same database.
        for _ in 0..3 {
            assert_eq!(
                a.get_resource(r.uid.as_str()).await.expect("get"),
                Some(r.clone())
            );
        }
        assert_eq!(b.get_resource(r.uid.as_str()).await.expect("get"), None);
    }

    fn plan(conn: &Connection, sql: &str, args: usize) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare");
        let values: Vec<Value> = (0..args).map(|_| Value::Text("x".into())).collect();
        let rows: Vec<String> = stmt
            .query_map(params_from_iter(values.iter()), |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        rows.join(" | ")
    }

    #[test]
    fn live_listings_and_counts_are_answered_in_index_order() {
        let store =
            SqliteStore::open_blocking(Location::Memory, Arc::new(CredentialsCipher::ephemeral()))
                .expect("open");
        let conn = store.inner.writer.lock().expect("lock");
        for q in [
            ResourceQuery {
                cloud: Some(CloudId("c".into())),
                ..ResourceQuery::default()
            },
            ResourceQuery {
                rtype: Some(ResourceType::AwsEc2Volume),
                ..ResourceQuery::default()
            },
            // the natural order reversed walks the same index backwards
            ResourceQuery {
                descending: true,
                ..ResourceQuery::default()
            },
            ResourceQuery {
                cloud: Some(CloudId("c".into())),
                rtype: Some(ResourceType::AwsEc2Volume),
                descending: true,
                ..ResourceQuery::default()
            },
        ] {
            let (filter, args) = resource_filter(&q);
            // the page is chosen from the index alone, then joined to its rows
            let list = format!(
                "SELECT uid FROM resources{filter} ORDER BY {} LIMIT ? OFFSET ?",
                q.order_by()
            );
            let p = plan(&conn, &list, args.len() + 2);
            assert!(!p.contains("TEMP B-TREE"), "listing must not sort: {p}");
            let p = plan(
                &conn,
                &format!("SELECT COUNT(*) FROM resources{filter}"),
                args.len(),
            );
            assert!(
                p.contains("COVERING INDEX"),
                "totals come from an index: {p}"
            );
        }
        // an order no index serves: one pass over the table, never index lookups
        for q in [
            ResourceQuery {
                order: ResourceOrder::Name,
                ..ResourceQuery::default()
            },
            ResourceQuery {
                cloud: Some(CloudId("c".into())),
                rtype: Some(ResourceType::AwsEc2Volume),
                order: ResourceOrder::LastSeen,
                descending: true,
                ..ResourceQuery::default()
            },
        ] {
            let (filter, args) = resource_filter(&q);
            let page_filter = resource_page_filter(&q, &filter).expect("a page filter");
            let list = format!(
                "SELECT uid FROM resources{page_filter} ORDER BY {} LIMIT ? OFFSET ?",
                q.order_by()
            );
            let p = plan(&conn, &list, args.len() + 2);
            assert!(
                p.starts_with("SCAN resources") && !p.contains("INDEX"),
                "{p}"
            );
        }
        let p = plan(
            &conn,
            "SELECT rtype, COUNT(*) FROM resources WHERE deleted_at IS NULL \
             AND cloud = ?1 GROUP BY rtype",
            1,
        );
        assert!(
            p.contains("COVERING INDEX"),
            "live counts come from an index: {p}"
        );
        let p = plan(
            &conn,
            &format!(
                "SELECT {RESOURCE_COLUMNS} FROM resources \
                 WHERE id = ?1 AND +deleted_at IS NULL LIMIT 2"
            ),
            1,
        );
        assert!(p.contains("INDEX resources_native_id"), "by native id: {p}");
        let p = plan(
            &conn,
            "SELECT 1 FROM resources WHERE cloud = ?1 AND rtype = ?2 \
             AND deleted_at IS NULL AND last_seen < ?3 AND region = ?4",
            4,
        );
        let seek = "resources_cloud_live_type_region \
                    (cloud=? AND deleted_at=? AND rtype=? AND region=?)";
        assert!(
            p.contains(seek),
            "sweeps seek their (cloud, type, region): {p}"
        );
    }

    #[tokio::test]
    async fn scans_walk_the_table_in_uid_order_without_sorting() {
        let store =
            SqliteStore::open_blocking(Location::Memory, Arc::new(CredentialsCipher::ephemeral()))
                .expect("open");
        let conn = store.inner.writer.lock().expect("lock");
        let with_types = ScanQuery {
            cloud: Some(CloudId("c".into())),
            types: vec![ResourceType::AwsEc2Instance, ResourceType::AwsEc2Volume],
            facts: None,
        };
        for (q, after) in [(&with_types, true), (&ScanQuery::default(), false)] {
            let sql = format!(
                "EXPLAIN QUERY PLAN {}",
                scan_sql(RESOURCE_COLUMNS, q, after)
            );
            let mut stmt = conn.prepare(&sql).expect("prepare");
            let n = 1 + usize::from(after) + usize::from(q.cloud.is_some()) + q.types.len();
            let values: Vec<Value> = (0..n).map(|_| Value::Text("x".into())).collect();
            let plan: Vec<String> = stmt
                .query_map(params_from_iter(values.iter()), |r| r.get::<_, String>(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("rows");
            let plan = plan.join(" | ");
            assert!(!plan.contains("TEMP B-TREE"), "scan must not sort: {plan}");
            assert!(
                !plan.contains("INDEX resources_"),
                "scan must not use an index: {plan}"
            );
        }
    }

    #[test]
    fn open_findings_of_a_range_are_a_range_of_the_findings_table() {
        let store =
            SqliteStore::open_blocking(Location::Memory, Arc::new(CredentialsCipher::ephemeral()))
                .expect("open");
        let conn = store.inner.writer.lock().expect("lock");
        for (after, through, scope) in [
            (true, true, true),
            (false, true, false),
            (true, false, true),
            (false, false, false),
        ] {
            let sql = open_in_range_sql(after, through, scope);
            let n = usize::from(after) + usize::from(through) + usize::from(scope);
            let p = plan(&conn, &sql, n);
            assert!(!p.contains("INDEX"), "{sql} must walk the table: {p}");
            if after || through {
                assert!(
                    p.contains("PRIMARY KEY (resource_uid>")
                        || p.contains("PRIMARY KEY (resource_uid<"),
                    "{p}"
                );
            }
            assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
        }
    }

    #[test]
    fn finding_listings_in_the_default_order_need_no_sort() {
        let store =
            SqliteStore::open_blocking(Location::Memory, Arc::new(CredentialsCipher::ephemeral()))
                .expect("open");
        let conn = store.inner.writer.lock().expect("lock");
        let insight = Some(InsightId("aws-ebs-unencrypted".into()));
        for query in [
            FindingQuery::default(),
            FindingQuery {
                insight: insight.clone(),
                ..FindingQuery::default()
            },
            FindingQuery {
                insight,
                state: Some(FindingState::Open),
                ..FindingQuery::default()
            },
            FindingQuery {
                resource_uid: Some(ResourceUid("u".into())),
                ..FindingQuery::default()
            },
        ] {
            let (filter, args) = finding_filter(&query);
            let sql = page_sql(
                "findings",
                &listed_finding_columns(),
                &filter,
                &query.order_by(),
                None,
            );
            let p = plan(&conn, &sql, args.len() + 2);
            assert!(!p.contains("TEMP B-TREE"), "{query:?} must not sort: {p}");
        }
    }

    /// The workspace's `.cargo/config.toml` builds the bundled SQLite without the shared
    /// page-cache lock and the allocation counters; a build that lost those settings makes
    /// every reader and the writer contend on global mutexes.
    #[test]
    fn the_bundled_sqlite_takes_no_global_lock_per_page() {
        let conn = Connection::open_in_memory().expect("open");
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("compile options");
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    #[tokio::test]
    async fn a_new_file_gets_the_large_page_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, path) = file_url(&dir);
        drop(open(&url).await.expect("open"));
        let conn = Connection::open(path).expect("reopen");
        let size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        assert_eq!(size, PAGE_SIZE);
    }
}
