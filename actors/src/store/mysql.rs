//! The cluster store: MySQL 5.7+ or MariaDB 10.x through `mysql_async`, shared by every node.
//!
//! Owns: the MySQL schema and its versioned migrations (`mysql/migrations/*.sql`), applied
//! only by [`migrate`] under the server lock `palisade_migrate`; the connection pool; batched
//! multi-row writes, each operation one transaction, retried on deadlocks and lock-wait
//! timeouts; the generations of `resources` and `findings` (`store_generations`), advanced
//! by every transaction that writes them, which key the node's listing totals
//! ([`CountCache`]); and the mapping between rows and `palisade-proto` types.
//!
//! Cloud credentials are stored sealed (see [`crate::crypto`]); [`open`] seals the
//! plaintext rows of earlier versions (each row only if no other node sealed it first).
//!
//! Must never: change the schema from [`open`] (a node refuses a schema it does not know,
//! older or newer), hold a result set that grows with the estate (scans are keyset pages,
//! writes go in bounded chunks), panic on anything the server returns, or put the password
//! of a url in an error or a log line.
//!
//! Timestamps are BIGINT milliseconds: what comes back is truncated to the millisecond.

use super::*;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, IsolationLevel, Opts, OptsBuilder, Pool, Row, TxOpts, Value};
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The migrations this build knows, in order; the last one's version is the schema version.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("mysql/migrations/0001_init.sql")),
    (2, include_str!("mysql/migrations/0002_auth.sql")),
    (3, include_str!("mysql/migrations/0003_generations.sql")),
    (
        4,
        include_str!("mysql/migrations/0004_resources_in_listing_order.sql"),
    ),
    (
        5,
        include_str!("mysql/migrations/0005_resources_json_checked.sql"),
    ),
];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = 5;

/// How many of the CHECK constraints of schema 5 (stored tags and properties are JSON) the
/// server keeps: both, or the store checks that text itself on every read.
const JSON_CHECKS_SQL: &str = "SELECT COUNT(*) FROM information_schema.table_constraints \
     WHERE table_schema = DATABASE() AND table_name = 'resources' \
       AND constraint_type = 'CHECK' \
       AND constraint_name IN ('resources_tags_json', 'resources_properties_json')";

/// The server-wide lock [`migrate`] holds, so that two nodes never migrate at once.
const MIGRATION_LOCK: &str = "palisade_migrate";

/// How long [`migrate`] waits for another node's migration, in seconds.
const MIGRATION_LOCK_WAIT_SECS: i64 = 30;

/// How long a connection beyond the pool's lower bound stays open idle, unless the store
/// url sets `inactive_connection_ttl`.
const POOL_IDLE_TTL: Duration = Duration::from_secs(60);

/// How long an operation waits for a connection (a new one, or a free one of the pool).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The deepest offset of a resource page read straight from the table in its order rather
/// than chosen on keys first (see `list_stored_resources`).
const NEAR_PAGE_OFFSET_MAX: u64 = 2000;

/// The same for a page of one cloud, whose rows come through a secondary index and a lookup
/// each (skipped ones too).
const NEAR_CLOUD_PAGE_OFFSET_MAX: u64 = 200;

/// Rows per multi-row statement.
const CHUNK_ROWS: usize = 500;

/// Upper bound of the parameter bytes of one multi-row statement; the server's
/// `max_allowed_packet` lowers it (to half the packet).
const CHUNK_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Lower bound of the same, whatever the server says: a chunk always holds one row.
const CHUNK_BYTES_MIN: usize = 16 * 1024;

/// Attempts of one transaction that the server aborted for a deadlock or a lock-wait timeout.
const TX_ATTEMPTS: u32 = 5;

/// Server error codes.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
const ER_NO_SUCH_TABLE: u16 = 1146;

/// Server errors that say the server, not the statement, is the trouble: too many
/// connections, access denied, unknown database, shutting down, read-only, killed.
const UNAVAILABLE_CODES: &[u16] = &[
    1040, // too many connections
    1044, // access denied to the database
    1045, // access denied for the user
    1049, // unknown database
    1053, // server shutdown in progress
    ER_LOCK_WAIT_TIMEOUT,
    ER_LOCK_DEADLOCK,
    1290, // --read-only
    1792, // read-only transaction
    1836, // read-only mode
    1927, // connection killed
];

/// Statements every connection runs when it is made: strict mode, so that a value too long
/// for its column fails the statement rather than being cut, whatever the server's default.
const SESSION_SETUP: &[&str] =
    &["SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'"];

/// Longest values, in bytes, of the VARBINARY key columns (see the migration).
const MAX_UID: usize = 64;
const MAX_CLOUD: usize = 255;
const MAX_REGION: usize = 64;
const MAX_NATIVE_ID: usize = 2048;
const MAX_INSIGHT: usize = 255;
const MAX_USER: usize = 64;
const MAX_KEY_ID: usize = 32;
const MAX_HASH: usize = 64;
const MAX_KEY_NAME_CHARS: usize = 255;
/// Server error code of a duplicate key.
const ER_DUP_ENTRY: u16 = 1062;
/// Longest `account`, in characters.
const MAX_ACCOUNT_CHARS: usize = 255;

/// The first ten columns of a listed resource (see [`ListedColumns`]).
const LISTED_COLUMNS: &str =
    "uid, cloud, account, id, name, first_seen, last_seen, deleted_at, tags, properties";

const RESOURCE_COLUMNS: &str = "uid, cloud, provider, account, region, rtype, id, name, \
     first_seen, last_seen, deleted_at, tags, properties";

/// The `now` of the latest completed compliance run covering a finding's cloud (a run of
/// that cloud, or of every cloud, scope `''`), or NULL; correlated on `findings.cloud`.
const CONFIRMED_AT: &str = "(SELECT MAX(finished_at) FROM compliance_runs \
     WHERE scope IN ('', findings.cloud))";

/// A finding's columns as listed: an open finding's `last_seen` is at least the latest
/// completed run covering it, which confirmed it without rewriting it.
fn listed_finding_columns() -> String {
    format!(
        "insight, resource_uid, resource, resource_type, region, cloud, state, first_seen, \
         CASE WHEN state = 'open' THEN GREATEST(last_seen, COALESCE({CONFIRMED_AT}, last_seen)) \
         ELSE last_seen END AS {REPORTED_LAST_SEEN}, resolved_at"
    )
}

/// A table whose listings report a total, and the row of `store_generations` that every
/// transaction writing it advances (see `0003_generations.sql`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counted {
    Resources,
    Findings,
}

impl Counted {
    /// The statement that advances this table's generation: the last of each writing
    /// transaction, so that the row lock is held only while the transaction commits.
    fn advance(self) -> &'static str {
        match self {
            Counted::Resources => {
                "UPDATE store_generations SET generation = generation + 1 \
                 WHERE name = 'resources'"
            }
            Counted::Findings => {
                "UPDATE store_generations SET generation = generation + 1 \
                 WHERE name = 'findings'"
            }
        }
    }

    /// A scalar subquery of this table's generation, read in the statement it is part of.
    fn generation(self) -> &'static str {
        match self {
            Counted::Resources => {
                "(SELECT generation FROM store_generations WHERE name = 'resources')"
            }
            Counted::Findings => {
                "(SELECT generation FROM store_generations WHERE name = 'findings')"
            }
        }
    }
}

/// Advance both generations (deleting a cloud writes both tables); rows in key order.
const ADVANCE_BOTH: &str = "UPDATE store_generations SET generation = generation + 1 \
     WHERE name IN ('findings', 'resources')";

/// Record a completed compliance run of a scope (a cloud id, or `''` for every cloud).
const RECORD_RUN: &str = "INSERT INTO compliance_runs (scope, finished_at) VALUES (?, ?) \
     ON DUPLICATE KEY UPDATE finished_at = GREATEST(finished_at, VALUES(finished_at))";

/// Insert resources, or refresh known uids: `rows` copies of the value tuple. The uid fixes
/// cloud, type, region and id, so they are not rewritten; `first_seen` is kept; a resource a
/// sweep had marked deleted is live again.
fn upsert_resources_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(300 + rows * 40);
    sql.push_str(
        "INSERT INTO resources (uid, cloud, provider, account, region, rtype, id, name, \
         first_seen, last_seen, deleted_at, tags, properties) VALUES ",
    );
    push_tuples(&mut sql, rows, "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)");
    sql.push_str(
        " ON DUPLICATE KEY UPDATE provider = VALUES(provider), account = VALUES(account), \
         name = VALUES(name), last_seen = VALUES(last_seen), deleted_at = NULL, \
         tags = VALUES(tags), properties = VALUES(properties)",
    );
    sql
}

/// Insert findings that hold, or refresh and (re)open known ones keeping `first_seen`.
fn upsert_findings_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(300 + rows * 40);
    sql.push_str(
        "INSERT INTO findings (insight, resource_uid, resource, resource_type, region, cloud, \
         state, first_seen, last_seen, resolved_at) VALUES ",
    );
    push_tuples(&mut sql, rows, "(?, ?, ?, ?, ?, ?, 'open', ?, ?, NULL)");
    sql.push_str(
        " ON DUPLICATE KEY UPDATE resource = VALUES(resource), \
         resource_type = VALUES(resource_type), region = VALUES(region), \
         cloud = VALUES(cloud), state = 'open', last_seen = VALUES(last_seen), \
         resolved_at = NULL",
    );
    sql
}

/// Resolve open findings of one insight on `rows` resources; `last_seen` takes the time
/// the latest run covering each one confirmed it.
fn resolve_findings_sql(rows: usize) -> String {
    let mut sql = format!(
        "UPDATE findings SET state = 'resolved', resolved_at = ?, \
         last_seen = GREATEST(last_seen, COALESCE({CONFIRMED_AT}, 0)) \
         WHERE state = 'open' AND insight = ? AND resource_uid IN ("
    );
    push_tuples(&mut sql, rows, "?");
    sql.push(')');
    sql
}

fn push_tuples(sql: &mut String, rows: usize, tuple: &str) {
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(tuple);
    }
}

/// The open findings of a uid range `(after, through]` of one cloud or all, from the index
/// `findings_state_resource` alone, locked so that the run's writes decide on the latest
/// committed state.
fn open_in_range_sql(has_after: bool, has_through: bool, has_scope: bool) -> String {
    let mut sql = String::from(
        "SELECT resource_uid, insight, cloud FROM findings \
         FORCE INDEX (findings_state_resource) WHERE state = 'open'",
    );
    if has_after {
        sql.push_str(" AND resource_uid > ?");
    }
    if has_through {
        sql.push_str(" AND resource_uid <= ?");
    }
    if has_scope {
        sql.push_str(" AND cloud = ?");
    }
    sql.push_str(" FOR UPDATE");
    sql
}

/// The keyset scan's SQL: it walks the unique uid index in order (the table is clustered in
/// listing order, see `0004_resources_in_listing_order.sql`), never another index that would
/// need a sort per page.
fn scan_sql(query: &ScanQuery, has_after: bool) -> String {
    let mut sql = format!(
        "SELECT {RESOURCE_COLUMNS} FROM resources FORCE INDEX (resources_uid) \
         WHERE deleted_at IS NULL"
    );
    if has_after {
        sql.push_str(" AND uid > ?");
    }
    if query.cloud.is_some() {
        sql.push_str(" AND cloud = ?");
    }
    if !query.types.is_empty() {
        sql.push_str(" AND rtype IN (");
        push_tuples(&mut sql, query.types.len(), "?");
        sql.push(')');
    }
    sql.push_str(" ORDER BY uid LIMIT ?");
    sql
}

/// A url with the password of its `user:password@` replaced by `***`, fit for messages.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    // The userinfo ends at the last `@`: a careless password may hold `@` or `/`.
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// What went wrong in one attempt at a store operation.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{context}: {source}")]
    Db {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AttemptError {
    /// The server gave up on the transaction to let another one through: try again.
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            AttemptError::Db {
                source: mysql_async::Error::Server(e),
                ..
            } if e.code == ER_LOCK_DEADLOCK || e.code == ER_LOCK_WAIT_TIMEOUT
        )
    }

    fn server_code(&self) -> Option<u16> {
        match self {
            AttemptError::Db {
                source: mysql_async::Error::Server(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }
}

/// `.ctx("doing what")` on a driver result.
trait Context<T> {
    fn ctx(self, context: &str) -> Result<T, AttemptError>;
}

impl<T> Context<T> for Result<T, mysql_async::Error> {
    fn ctx(self, context: &str) -> Result<T, AttemptError> {
        self.map_err(|source| AttemptError::Db {
            context: context.to_string(),
            source,
        })
    }
}

/// The MySQL store. Cheap to share behind an `Arc`; every node opens its own.
pub struct MysqlStore {
    pool: Pool,
    /// What the pool was made from: a worker's pool is made the same way (see
    /// [`Store::worker_handle`]).
    opts: Opts,
    /// The url without its password, for messages.
    shown: String,
    /// The password, scrubbed from every message in case a driver error quotes it.
    secret: Option<String>,
    /// Parameter bytes per multi-row statement.
    chunk_bytes: usize,
    /// Seals and opens the credentials of clouds.
    cipher: Arc<crate::crypto::CredentialsCipher>,
    /// Totals of resource listings, per filter, for one generation of `resources`.
    resource_counts: Arc<CountCache>,
    /// Totals of finding listings, per filter, for one generation of `findings`.
    finding_counts: Arc<CountCache>,
    /// The schema's constraints guarantee that stored tags and properties are JSON.
    json_guaranteed: bool,
    /// A worker's handle (see [`Store::worker_handle`]): its pool is closed when it drops.
    worker: bool,
}

impl Drop for MysqlStore {
    /// A worker's pool says goodbye to the server on the worker's runtime, while there is
    /// one (the interface server drops its handles as it stops); the node's own pool is
    /// closed by [`Store::close`].
    fn drop(&mut self) {
        if !self.worker {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            runtime.spawn(async move {
                let _ = pool.disconnect().await;
            });
        }
    }
}

/// A page being read row by row: what the rows were folded into, how many, the table's
/// generation they carried, and the first row that failed to decode.
struct Folded<A> {
    acc: A,
    rows: usize,
    generation: Option<u64>,
    failed: Option<StoreError>,
}

/// Open the MySQL store a `mysql://user:pass@host:port/db` url names. The schema must be
/// this build's: an older one (or none) asks for `palisade migrate`, a newer one is refused.
/// Cloud credentials are sealed and opened with `cipher`.
pub async fn open(
    url: &str,
    cipher: Arc<crate::crypto::CredentialsCipher>,
) -> Result<SharedStore, StoreError> {
    let mut store = MysqlStore::connect(url, cipher)?;
    let s = &store;
    let checked = s
        .run("open", move || async move {
            let mut conn = s.conn().await?;
            let packet = conn
                .exec_first::<Row, _, _>("SELECT @@max_allowed_packet", ())
                .await
                .ctx("read max_allowed_packet")?;
            let version = schema_version(&mut conn).await?;
            let packet = match packet {
                Some(row) => usize::try_from(int(&row, 0)?).unwrap_or(CHUNK_BYTES_MAX),
                None => CHUNK_BYTES_MAX,
            };
            let json_checks = conn
                .exec_first::<Row, _, _>(JSON_CHECKS_SQL, ())
                .await
                .ctx("read the resources' constraints")?;
            let json_guaranteed = match json_checks {
                Some(row) => int(&row, 0)? == 2,
                None => false,
            };
            Ok((version, packet, json_guaranteed))
        })
        .await;
    let (found, packet, json_guaranteed) = match checked {
        Ok(v) => v,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    if found != SCHEMA_VERSION {
        store.close().await;
        return Err(if found > SCHEMA_VERSION {
            StoreError::UnknownSchema {
                found,
                known: SCHEMA_VERSION,
            }
        } else {
            StoreError::Unavailable(format!(
                "schema version {found} is older than this build's {SCHEMA_VERSION}: \
                 run `palisade migrate`"
            ))
        });
    }
    store.chunk_bytes = (packet / 2).clamp(CHUNK_BYTES_MIN, CHUNK_BYTES_MAX);
    store.json_guaranteed = json_guaranteed;
    if !json_guaranteed {
        info!("the server keeps no CHECK constraints: stored tags and properties are checked to be JSON on every read");
    }
    if let Err(e) = store.seal_plaintext_credentials().await {
        store.close().await;
        return Err(e);
    }
    info!(url = %store.shown, schema = found, "store open");
    Ok(Arc::new(store))
}

/// Apply the migrations the database lacks, under the server lock `palisade_migrate` so
/// that nodes migrating at once take turns; returns the schema version. Idempotent;
/// refuses a schema newer than this build.
pub async fn migrate(url: &str) -> Result<i64, StoreError> {
    // migrating touches no credentials
    let store = MysqlStore::connect(url, Arc::new(crate::crypto::CredentialsCipher::ephemeral()))?;
    let s = &store;
    let result = s
        .run("migrate", move || async move {
            let mut conn = s.conn().await?;
            let locked = conn
                .exec_first::<Row, _, _>(
                    "SELECT GET_LOCK(?, ?)",
                    (MIGRATION_LOCK, MIGRATION_LOCK_WAIT_SECS),
                )
                .await
                .ctx("take the migration lock")?;
            if !matches!(locked.as_ref().map(|r| opt_int(r, 0)), Some(Ok(Some(1)))) {
                return Err(StoreError::Unavailable(format!(
                    "another node held the lock {MIGRATION_LOCK} for \
                     {MIGRATION_LOCK_WAIT_SECS}s: try again"
                ))
                .into());
            }
            let applied = apply_migrations(&mut conn).await;
            // The lock goes with the connection too; release it now for the next node.
            if let Err(e) = conn
                .exec_drop("SELECT RELEASE_LOCK(?)", (MIGRATION_LOCK,))
                .await
            {
                warn!(error = %s.scrub(e.to_string()), "releasing the migration lock failed");
            }
            applied
        })
        .await;
    store.close().await;
    let version = result?;
    info!(url = %store.shown, schema = version, "store migrated");
    Ok(version)
}

/// The schema version a database is at: 0 when it has none.
async fn schema_version(conn: &mut Conn) -> Result<i64, AttemptError> {
    match conn
        .exec_first::<Row, _, _>("SELECT COALESCE(MAX(version), 0) FROM schema_version", ())
        .await
    {
        Ok(Some(row)) => Ok(int(&row, 0)?),
        Ok(None) => Ok(0),
        Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE => Ok(0),
        Err(e) => Err(e).ctx("read schema version"),
    }
}

/// The statements of a migration file: comment lines dropped, split at `;`.
fn statements(sql: &str) -> Vec<String> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Apply pending migrations on a connection that holds the migration lock.
async fn apply_migrations(conn: &mut Conn) -> Result<i64, AttemptError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    BIGINT NOT NULL,
             applied_at BIGINT NOT NULL,
             PRIMARY KEY (version)
         ) ENGINE = InnoDB",
    )
    .await
    .ctx("create schema_version")?;
    let found = schema_version(conn).await?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::UnknownSchema {
            found,
            known: SCHEMA_VERSION,
        }
        .into());
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        info!(version, "applying store migration");
        for statement in statements(sql) {
            conn.query_drop(statement)
                .await
                .ctx(&format!("migration {version}"))?;
        }
        conn.exec_drop(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (version, chrono::Utc::now().timestamp_millis()),
        )
        .await
        .ctx("record schema version")?;
    }
    Ok(found.max(SCHEMA_VERSION))
}

/// Options of a listing's transaction: one snapshot for the total and the page.
fn snapshot() -> TxOpts {
    let mut opts = TxOpts::new();
    opts.with_consistent_snapshot(true)
        .with_isolation_level(IsolationLevel::RepeatableRead);
    opts
}

impl MysqlStore {
    /// A store on a new pool; connects on first use.
    fn connect(
        url: &str,
        cipher: Arc<crate::crypto::CredentialsCipher>,
    ) -> Result<MysqlStore, StoreError> {
        let shown = redact_url(url);
        let opts = Opts::from_url(url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("{shown} ({e})")))?;
        if opts.db_name().unwrap_or_default().is_empty() {
            return Err(StoreError::UnsupportedUrl(format!(
                "{shown} (the url names no database)"
            )));
        }
        let secret = opts.pass().filter(|p| !p.is_empty()).map(str::to_owned);
        // Sessions never carry state between operations (no session variables beyond
        // SESSION_SETUP, no user locks on pooled connections), so a connection going back
        // to the pool needs no reset round trip; a dropped transaction is rolled back.
        let mut pool_opts = opts.pool_opts().clone().with_reset_connection(false);
        // mysql_async closes a connection beyond the pool's lower bound the moment it is
        // given back (`inactive_connection_ttl` 0): a node serving more concurrent requests
        // than that bound connected and prepared its statements again about a dozen times a
        // second. An idle connection is kept for a while instead, unless the url says.
        if pool_opts.inactive_connection_ttl().is_zero() {
            pool_opts = pool_opts.with_inactive_connection_ttl(POOL_IDLE_TTL);
        }
        let opts = Opts::from(
            OptsBuilder::from_opts(opts)
                .setup(SESSION_SETUP.to_vec())
                .pool_opts(pool_opts),
        );
        Ok(MysqlStore {
            pool: Pool::new(opts.clone()),
            opts,
            shown,
            secret,
            chunk_bytes: CHUNK_BYTES_MAX,
            cipher,
            resource_counts: Arc::new(CountCache::new(COUNT_CACHE_ENTRIES)),
            finding_counts: Arc::new(CountCache::new(COUNT_CACHE_ENTRIES)),
            json_guaranteed: false,
            worker: false,
        })
    }

    /// Check the stored credentials against the cipher and seal the plaintext rows of
    /// earlier versions (see [`upgrade_credentials`]). Each row is written only where it
    /// still holds the plaintext, so nodes starting at once seal each row once.
    async fn seal_plaintext_credentials(&self) -> Result<(), StoreError> {
        let sealed = self
            .run("seal_credentials", move || async move {
                let mut conn = self.conn().await?;
                let rows = conn
                    .exec_map("SELECT id, credentials FROM clouds", (), |row: Row| {
                        Ok::<_, StoreError>((text(&row, 0)?.to_owned(), text(&row, 1)?.to_owned()))
                    })
                    .await
                    .ctx("read credentials")?
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?;
                let mut sealed = 0u64;
                for (id, stored, text) in upgrade_credentials(&self.cipher, rows)? {
                    conn.exec_drop(
                        "UPDATE clouds SET credentials = ? WHERE id = ? AND credentials = ?",
                        (
                            Value::Bytes(text.into_bytes()),
                            bytes(&id),
                            Value::Bytes(stored.into_bytes()),
                        ),
                    )
                    .await
                    .ctx("seal credentials")?;
                    sealed += conn.affected_rows();
                }
                Ok(sealed)
            })
            .await?;
        report_resealed(sealed);
        Ok(())
    }

    async fn close(&self) {
        if let Err(e) = self.pool.clone().disconnect().await {
            debug!(error = %self.scrub(e.to_string()), "closing the store pool failed");
        }
    }

    /// A connection of the pool (whose idle connections are pinged, and replaced when the
    /// server dropped them), within [`CONNECT_TIMEOUT`].
    async fn conn(&self) -> Result<Conn, AttemptError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.pool.get_conn()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(AttemptError::Db {
                context: format!("cannot connect to {}", self.shown),
                source,
            }),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no connection to {} within {}s",
                self.shown,
                CONNECT_TIMEOUT.as_secs()
            ))
            .into()),
        }
    }

    fn scrub(&self, text: String) -> String {
        match &self.secret {
            Some(secret) if text.contains(secret.as_str()) => text.replace(secret.as_str(), "***"),
            _ => text,
        }
    }

    fn store_error(&self, e: AttemptError) -> StoreError {
        match e {
            AttemptError::Store(e) => e,
            AttemptError::Db { context, source } => {
                let unavailable = match &source {
                    mysql_async::Error::Server(s) => UNAVAILABLE_CODES.contains(&s.code),
                    _ => true,
                };
                let text = self.scrub(format!("{context}: {source}"));
                if unavailable {
                    StoreError::Unavailable(text)
                } else {
                    StoreError::Query(text)
                }
            }
        }
    }

    /// Run one attempt of `op` and, while the server aborts it for a deadlock or a lock-wait
    /// timeout, a few more after a short jittered pause. Each attempt is a whole transaction.
    async fn run<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            match attempt().await {
                Err(e) if tries < TX_ATTEMPTS && e.is_retryable() => {
                    let code = e.server_code().unwrap_or(0);
                    crate::metrics::inc("palisade_store_retries_total", &[("op", op)]);
                    debug!(
                        op,
                        attempt = tries,
                        code,
                        "store transaction aborted, retrying"
                    );
                    let pause = 10u64 << tries;
                    tokio::time::sleep(Duration::from_millis(pause + fastrand::u64(0..=pause)))
                        .await;
                }
                other => break other,
            }
        };
        outcome.map_err(|e| {
            let e = self.store_error(e);
            crate::metrics::inc("palisade_store_errors_total", &[("op", op)]);
            warn!(op, error = %e, "store operation failed");
            e
        })
    }

    /// A paged listing: the total of all matches and one page, from one snapshot.
    async fn page<T>(
        &self,
        listing: &Listing<'_>,
        filter: &str,
        args: &[Value],
        limit: u32,
        offset: u64,
        decode: impl Fn(&mut Row) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<Page<T>, AttemptError>
    where
        T: Send + 'static,
    {
        let count_sql = format!("SELECT COUNT(*) FROM {}{filter}", listing.table);
        let page_sql = page_sql(
            listing.table,
            listing.columns,
            filter,
            listing.order,
            listing.key,
        );
        let mut page_args = args.to_vec();
        page_args.push(Value::Int(i64::from(limit)));
        page_args.push(Value::Int(i64::try_from(offset).unwrap_or(i64::MAX)));

        let mut conn = self.conn().await?;
        let mut tx = conn
            .start_transaction(snapshot())
            .await
            .ctx("begin listing")?;
        let total = match tx
            .exec_first::<Row, _, _>(count_sql, args.to_vec())
            .await
            .ctx("count")?
        {
            Some(row) => u64::try_from(int(&row, 0)?).unwrap_or(0),
            None => 0,
        };
        let items = tx
            .exec_map(page_sql, page_args, |mut row: Row| decode(&mut row))
            .await
            .ctx("list")?
            .into_iter()
            .collect::<Result<Vec<T>, StoreError>>()?;
        tx.commit().await.ctx("end listing")?;
        Ok(Page { total, items })
    }

    /// A paged listing whose total is kept per generation of its table (see
    /// [`MysqlStore::counted_fold`]), its rows decoded one by one into a page.
    #[allow(clippy::too_many_arguments)]
    async fn counted_page<T>(
        &self,
        listing: &Listing<'_>,
        counted: Counted,
        key: &str,
        filter: &str,
        args: &[Value],
        limit: u32,
        offset: u64,
        decode: impl Fn(&mut Row) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<Page<T>, AttemptError>
    where
        T: Send + 'static,
    {
        let (total, items) = self
            .counted_fold(
                listing,
                counted,
                key,
                filter,
                args,
                (limit, offset),
                Vec::new,
                |items: &mut Vec<T>, row: &mut Row| {
                    items.push(decode(row)?);
                    Ok(())
                },
            )
            .await?;
        Ok(Page { total, items })
    }

    /// A paged listing whose total is kept per generation of its table: the page and the
    /// table's generation in one statement (one read view); the total from the
    /// [`CountCache`] for that generation, or implied by a last page, or else counted
    /// with the generation, again in one statement. No transaction: a kept total belongs
    /// to exactly the rows the page was read from; a counted one is read just after the
    /// page, and is the total of that moment. Each row is folded into what `start` makes
    /// (a new one for each attempt); returns the total and the folded page.
    #[allow(clippy::too_many_arguments)]
    async fn counted_fold<A>(
        &self,
        listing: &Listing<'_>,
        counted: Counted,
        key: &str,
        filter: &str,
        args: &[Value],
        (limit, offset): (u32, u64),
        start: impl Fn() -> A,
        fold: impl Fn(&mut A, &mut Row) -> Result<(), StoreError> + Send + Sync,
    ) -> Result<(u64, A), AttemptError>
    where
        A: Send + 'static,
    {
        let cache = match counted {
            Counted::Resources => &self.resource_counts,
            Counted::Findings => &self.finding_counts,
        };
        let columns = format!(
            "{}, {} AS generation",
            listing.columns,
            counted.generation()
        );
        let page_sql = page_sql(listing.table, &columns, filter, listing.order, listing.key);
        let mut page_args = args.to_vec();
        page_args.push(Value::Int(i64::from(limit)));
        page_args.push(Value::Int(i64::try_from(offset).unwrap_or(i64::MAX)));

        let mut conn = self.conn().await?;
        let folded = Folded {
            acc: start(),
            rows: 0,
            generation: None,
            failed: None,
        };
        let Folded {
            acc,
            rows,
            mut generation,
            failed,
        } = conn
            .exec_fold(page_sql, page_args, folded, |mut folded, mut row: Row| {
                if folded.failed.is_none() {
                    let step = opt_int(&row, row.len().saturating_sub(1))
                        .and_then(|g| fold(&mut folded.acc, &mut row).map(|()| g));
                    match step {
                        Ok(g) => {
                            folded.rows += 1;
                            folded.generation = g.and_then(|g| u64::try_from(g).ok());
                        }
                        Err(e) => folded.failed = Some(e),
                    }
                }
                folded
            })
            .await
            .ctx("list")?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        let (total, source) = match total_of_last_page(offset, limit, rows) {
            Some(n) => (n, TotalSource::Page),
            None => match generation.and_then(|g| cache.get(g, key)) {
                Some(n) => (n, TotalSource::Cache),
                None => {
                    let sql = format!(
                        "SELECT COUNT(*), {} FROM {}{filter}",
                        counted.generation(),
                        listing.table
                    );
                    let row = conn
                        .exec_first::<Row, _, _>(sql, args.to_vec())
                        .await
                        .ctx("count")?;
                    let (n, g) = match row {
                        Some(row) => (
                            u64::try_from(int(&row, 0)?).unwrap_or(0),
                            opt_int(&row, 1)?.and_then(|g| u64::try_from(g).ok()),
                        ),
                        None => (0, None),
                    };
                    generation = g;
                    (n, TotalSource::Count)
                }
            },
        };
        source.record();
        if let (Some(g), TotalSource::Page | TotalSource::Count) = (generation, source) {
            cache.put(g, key, total);
        }
        Ok((total, acc))
    }

    async fn try_upsert_resources(&self, chunks: &[Chunk]) -> Result<(), AttemptError> {
        let mut conn = self.conn().await?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .ctx("begin upsert resources")?;
        for chunk in chunks {
            tx.exec_drop(upsert_resources_sql(chunk.rows), chunk.params.clone())
                .await
                .ctx("upsert resources")?;
        }
        tx.exec_drop(Counted::Resources.advance(), ())
            .await
            .ctx("advance the resources generation")?;
        tx.commit().await.ctx("commit upsert resources")
    }

    async fn try_upsert_findings(&self, chunks: &[Chunk]) -> Result<(), AttemptError> {
        let mut conn = self.conn().await?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .ctx("begin upsert findings")?;
        for chunk in chunks {
            tx.exec_drop(upsert_findings_sql(chunk.rows), chunk.params.clone())
                .await
                .ctx("upsert findings")?;
        }
        tx.exec_drop(Counted::Findings.advance(), ())
            .await
            .ctx("advance the findings generation")?;
        tx.commit().await.ctx("commit upsert findings")
    }

    async fn try_sync_findings(&self, sync: &SyncRun<'_>) -> Result<(u64, u64), AttemptError> {
        let mut conn = self.conn().await?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .ctx("begin sync findings")?;
        // (resource_uid, insight) of the open findings in the range
        let open = tx
            .exec_map(
                sync.open_sql.as_str(),
                sync.open_args.clone(),
                |row: Row| {
                    Ok::<_, StoreError>((text(&row, 0)?.to_owned(), text(&row, 1)?.to_owned()))
                },
            )
            .await
            .ctx("read open findings")?
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let holds: HashSet<(&str, &str)> = sync
            .holding
            .iter()
            .map(|f| (f.resource_uid.as_str(), f.insight.as_str()))
            .collect();
        // open and holding: untouched; open and not holding: resolved
        let mut kept: HashSet<(&str, &str)> = HashSet::with_capacity(open.len());
        let mut stale: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (uid, insight) in &open {
            let key = (uid.as_str(), insight.as_str());
            if holds.contains(&key) {
                kept.insert(key);
            } else {
                stale
                    .entry(insight.as_str())
                    .or_default()
                    .push(uid.as_str());
            }
        }

        let mut resolved = 0u64;
        for (insight, uids) in &stale {
            for part in uids.chunks(CHUNK_ROWS) {
                let mut args = Vec::with_capacity(part.len() + 2);
                args.push(Value::Int(sync.now));
                args.push(bytes(insight));
                args.extend(part.iter().map(|uid| bytes(uid)));
                tx.exec_drop(resolve_findings_sql(part.len()), args)
                    .await
                    .ctx("resolve findings")?;
                resolved += tx.affected_rows();
            }
        }

        let fresh: Vec<&Finding> = sync
            .holding
            .iter()
            .filter(|f| !kept.contains(&(f.resource_uid.as_str(), f.insight.as_str())))
            .collect();
        let opened = fresh.len() as u64;
        if !fresh.is_empty() {
            let rows: Vec<EncodedRow> = fresh.into_iter().map(encode_finding).collect();
            for chunk in into_chunks(rows, self.chunk_bytes) {
                tx.exec_drop(upsert_findings_sql(chunk.rows), chunk.params)
                    .await
                    .ctx("open findings")?;
            }
        }

        if sync.finishes_run {
            tx.exec_drop(
                RECORD_RUN,
                (
                    bytes(sync.scope.as_deref().unwrap_or("")),
                    Value::Int(sync.now),
                ),
            )
            .await
            .ctx("record compliance run")?;
        }
        if opened + resolved > 0 {
            tx.exec_drop(Counted::Findings.advance(), ())
                .await
                .ctx("advance the findings generation")?;
        }
        tx.commit().await.ctx("commit sync findings")?;
        Ok((opened, resolved))
    }
}

/// What one `sync_findings` call works on, ready for each attempt.
struct SyncRun<'a> {
    scope: Option<String>,
    open_sql: String,
    open_args: Vec<Value>,
    holding: &'a [Finding],
    now: i64,
    finishes_run: bool,
}

/// A table's listing: its columns and its order.
struct Listing<'a> {
    table: &'a str,
    columns: &'a str,
    order: &'a str,
    /// The table's key, to choose the page on it first (see [`page_sql`]).
    key: Option<&'a str>,
}

/// How a resource listing is read: its filter, order, columns and count-cache key.
struct ResourceListing {
    filter: String,
    args: Vec<Value>,
    order: String,
    columns: String,
    /// Read straight from the table in its order, not chosen on keys first.
    near: bool,
    key: String,
    listed: ListedColumns,
}

impl ResourceListing {
    fn of(q: &ResourceQuery) -> ResourceListing {
        let (filter, args) = resource_filter(q);
        // A near page in an index's own order reads its rows straight from the table
        // (clustered in listing order) or the index: the page chosen on keys first (see
        // `page_sql`) costs the server a temporary table, a sort of the page and a lookup
        // per row, which for the first pages is more than the rows it skips. Measured on
        // MariaDB 10.11, 100k resources, one type and region: the straight read costs 0.28
        // of the key-first form at offset 100, 0.73 at offset 1200, and the same at 2500.
        // A page of one cloud comes through `resources_cloud_live_type_region`, a lookup per
        // row: there the key-first form wins from an offset of about 300.
        let deepest = if q.cloud.is_some() {
            NEAR_CLOUD_PAGE_OFFSET_MAX
        } else {
            NEAR_PAGE_OFFSET_MAX
        };
        let listed = ListedColumns::of(q);
        ResourceListing {
            filter,
            args,
            order: q.order_by(),
            columns: listed.columns(LISTED_COLUMNS),
            near: q.live_in_index_order() && q.offset <= deepest,
            key: q.count_key(),
            listed,
        }
    }

    fn listing(&self) -> Listing<'_> {
        Listing {
            table: "resources",
            columns: &self.columns,
            order: &self.order,
            key: (!self.near).then_some("uid"),
        }
    }
}

/// One row's parameters and their size in bytes.
struct EncodedRow {
    params: Vec<Value>,
    size: usize,
}

/// The parameters of one multi-row statement.
struct Chunk {
    rows: usize,
    params: Vec<Value>,
}

/// Rows grouped into statements of at most [`CHUNK_ROWS`] rows and about `max_bytes` of
/// parameters (a row larger than that goes alone).
fn into_chunks(rows: Vec<EncodedRow>, max_bytes: usize) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        let full = match out.last() {
            Some(c) => c.rows >= CHUNK_ROWS || (bytes + row.size > max_bytes && c.rows > 0),
            None => true,
        };
        if full {
            out.push(Chunk {
                rows: 0,
                params: Vec::new(),
            });
            bytes = 0;
        }
        if let Some(c) = out.last_mut() {
            c.rows += 1;
            c.params.extend(row.params);
            bytes += row.size;
        }
    }
    out
}

/// Run an insert; false (not an error) when a unique key is taken.
async fn insert_unless_taken(
    conn: &mut Conn,
    sql: &str,
    params: Vec<Value>,
    context: &str,
) -> Result<bool, AttemptError> {
    match conn.exec_drop(sql, params).await {
        Ok(()) => Ok(true),
        Err(mysql_async::Error::Server(e)) if e.code == ER_DUP_ENTRY => Ok(false),
        Err(e) => Err(e).ctx(context),
    }
}

fn bytes(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn ms(ts: Timestamp) -> i64 {
    ts.timestamp_millis()
}

/// A key value longer than its column: the statement would fail, so say which and why.
fn check_len(what: &str, owner: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.len() > max {
        Err(StoreError::Query(format!(
            "{owner}: {what} is {} bytes, longer than the {max} the store keeps",
            value.len()
        )))
    } else {
        Ok(())
    }
}

/// A resource as the parameters of one row of [`upsert_resources_sql`].
fn encode_resource(r: &Resource) -> Result<EncodedRow, StoreError> {
    let owner = format!("resource {}", r.uid);
    check_len("uid", &owner, r.uid.as_str(), MAX_UID)?;
    check_len("cloud", &owner, r.cloud.as_str(), MAX_CLOUD)?;
    check_len("region", &owner, &r.region, MAX_REGION)?;
    check_len("id", &owner, &r.id, MAX_NATIVE_ID)?;
    if r.account.chars().count() > MAX_ACCOUNT_CHARS {
        return Err(StoreError::Query(format!(
            "{owner}: account is longer than {MAX_ACCOUNT_CHARS} characters"
        )));
    }
    let tags = serde_json::to_vec(&r.tags)
        .map_err(|e| StoreError::Query(format!("encode tags of {}: {e}", r.uid)))?;
    let props = serde_json::to_vec(&r.properties)
        .map_err(|e| StoreError::Query(format!("encode properties of {}: {e}", r.uid)))?;
    let params = vec![
        bytes(r.uid.as_str()),
        bytes(r.cloud.as_str()),
        bytes(r.provider.as_str()),
        bytes(&r.account),
        bytes(&r.region),
        bytes(r.rtype.as_str()),
        bytes(&r.id),
        bytes(&r.name),
        Value::Int(ms(r.first_seen)),
        Value::Int(ms(r.last_seen)),
        Value::Bytes(tags),
        Value::Bytes(props),
    ];
    Ok(EncodedRow {
        size: value_bytes(&params),
        params,
    })
}

/// A finding as the parameters of one row of [`upsert_findings_sql`].
fn encode_finding(f: &Finding) -> EncodedRow {
    let params = vec![
        bytes(f.insight.as_str()),
        bytes(f.resource_uid.as_str()),
        bytes(&f.resource),
        bytes(f.resource_type.as_str()),
        bytes(&f.region),
        bytes(f.cloud.as_str()),
        Value::Int(ms(f.first_seen)),
        Value::Int(ms(f.last_seen)),
    ];
    EncodedRow {
        size: value_bytes(&params),
        params,
    }
}

fn check_finding(f: &Finding) -> Result<(), StoreError> {
    let owner = format!("finding {} of {}", f.insight, f.resource_uid);
    check_len("insight", &owner, f.insight.as_str(), MAX_INSIGHT)?;
    check_len("resource uid", &owner, f.resource_uid.as_str(), MAX_UID)?;
    check_len("cloud", &owner, f.cloud.as_str(), MAX_CLOUD)?;
    check_len("region", &owner, &f.region, MAX_REGION)
}

fn value_bytes(params: &[Value]) -> usize {
    params
        .iter()
        .map(|v| match v {
            Value::Bytes(b) => b.len() + 9,
            _ => 9,
        })
        .sum()
}

fn col(row: &Row, idx: usize) -> Result<&Value, StoreError> {
    row.as_ref(idx)
        .ok_or_else(|| StoreError::Corrupt(format!("column {idx} is missing")))
}

fn text(row: &Row, idx: usize) -> Result<&str, StoreError> {
    match col(row, idx)? {
        Value::Bytes(b) => std::str::from_utf8(b)
            .map_err(|_| StoreError::Corrupt(format!("column {idx} is not utf-8"))),
        Value::NULL => Err(StoreError::Corrupt(format!("column {idx} is null"))),
        _ => Err(StoreError::Corrupt(format!("column {idx} is not text"))),
    }
}

fn int(row: &Row, idx: usize) -> Result<i64, StoreError> {
    let not_int = || StoreError::Corrupt(format!("column {idx} is not an integer"));
    match col(row, idx)? {
        Value::Int(i) => Ok(*i),
        Value::UInt(u) => i64::try_from(*u).map_err(|_| not_int()),
        // the text protocol sends numbers as digits
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(not_int),
        _ => Err(not_int()),
    }
}

fn opt_int(row: &Row, idx: usize) -> Result<Option<i64>, StoreError> {
    match col(row, idx)? {
        Value::NULL => Ok(None),
        _ => int(row, idx).map(Some),
    }
}

impl StoredRow for Row {
    fn text(&self, idx: usize) -> Result<&str, StoreError> {
        text(self, idx)
    }

    fn take_text(&mut self, idx: usize) -> Result<String, StoreError> {
        match self.take::<Value, usize>(idx) {
            Some(Value::Bytes(b)) => String::from_utf8(b)
                .map_err(|_| StoreError::Corrupt(format!("column {idx} is not utf-8"))),
            Some(Value::NULL) => Err(StoreError::Corrupt(format!("column {idx} is null"))),
            Some(_) => Err(StoreError::Corrupt(format!("column {idx} is not text"))),
            None => Err(StoreError::Corrupt(format!("column {idx} is missing"))),
        }
    }

    fn int(&self, idx: usize) -> Result<i64, StoreError> {
        int(self, idx)
    }

    fn opt_int(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        opt_int(self, idx)
    }
}

const CLOUD_COLUMNS: &str = "id, provider, name, regions, credentials, created_at";

/// `WHERE` clauses and their arguments for a resource listing.
fn resource_filter(q: &ResourceQuery) -> (String, Vec<Value>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args = Vec::new();
    if !q.include_deleted {
        clauses.push("deleted_at IS NULL");
    }
    if let Some(cloud) = &q.cloud {
        clauses.push("cloud = ?");
        args.push(bytes(cloud.as_str()));
    }
    if let Some(rtype) = q.rtype {
        clauses.push("rtype = ?");
        args.push(bytes(rtype.as_str()));
    }
    if let Some(region) = &q.region {
        clauses.push("region = ?");
        args.push(bytes(region));
    }
    if let Some(tag) = &q.tag {
        // JSON containment compares keys and values exactly; serde_json quotes them.
        match tag.split_once('=') {
            Some((key, value)) => {
                clauses.push("JSON_CONTAINS(tags, ?)");
                let mut wanted = serde_json::Map::new();
                wanted.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
                args.push(Value::Bytes(
                    serde_json::Value::Object(wanted).to_string().into_bytes(),
                ));
            }
            None => {
                clauses.push("JSON_CONTAINS(JSON_KEYS(tags), ?)");
                args.push(Value::Bytes(
                    serde_json::Value::String(tag.clone())
                        .to_string()
                        .into_bytes(),
                ));
            }
        }
    }
    (where_clause(&clauses), args)
}

fn finding_filter(q: &FindingQuery) -> (String, Vec<Value>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args = Vec::new();
    if let Some(insight) = &q.insight {
        clauses.push("insight = ?");
        args.push(bytes(insight.as_str()));
    }
    if let Some(uid) = &q.resource_uid {
        clauses.push("resource_uid = ?");
        args.push(bytes(uid.as_str()));
    }
    if let Some(cloud) = &q.cloud {
        clauses.push("cloud = ?");
        args.push(bytes(cloud.as_str()));
    }
    if let Some(state) = q.state {
        clauses.push("state = ?");
        args.push(bytes(state.as_str()));
    }
    (where_clause(&clauses), args)
}

fn where_clause(clauses: &[&str]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    }
}

#[async_trait]
impl Store for MysqlStore {
    async fn put_cloud(&self, cloud: &CloudAccount) -> Result<(), StoreError> {
        check_len("id", "cloud", cloud.id.as_str(), MAX_CLOUD)?;
        let regions = serde_json::to_string(&cloud.regions)
            .map_err(|e| StoreError::Query(format!("encode regions: {e}")))?;
        let credentials = seal_credentials(&self.cipher, cloud)?;
        let params = vec![
            bytes(cloud.id.as_str()),
            bytes(cloud.provider.as_str()),
            bytes(&cloud.name),
            Value::Bytes(regions.into_bytes()),
            Value::Bytes(credentials.into_bytes()),
            Value::Int(ms(cloud.created_at)),
        ];
        let params = &params;
        self.run("put_cloud", move || async move {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "INSERT INTO clouds (id, provider, name, regions, credentials, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE provider = VALUES(provider), name = VALUES(name), \
                 regions = VALUES(regions), credentials = VALUES(credentials), \
                 created_at = VALUES(created_at)",
                params.clone(),
            )
            .await
            .ctx("put cloud")
        })
        .await
    }

    async fn get_cloud(&self, id: &CloudId) -> Result<Option<CloudAccount>, StoreError> {
        self.run("get_cloud", move || async move {
            let mut conn = self.conn().await?;
            let row = conn
                .exec_first::<Row, _, _>(
                    format!("SELECT {CLOUD_COLUMNS} FROM clouds WHERE id = ?"),
                    (bytes(id.as_str()),),
                )
                .await
                .ctx("get cloud")?;
            Ok(row
                .as_ref()
                .map(|r| cloud_from_row(r, &self.cipher))
                .transpose()?)
        })
        .await
    }

    async fn list_clouds(&self) -> Result<Vec<CloudAccount>, StoreError> {
        self.run("list_clouds", move || async move {
            let mut conn = self.conn().await?;
            let clouds = conn
                .exec_map(
                    format!("SELECT {CLOUD_COLUMNS} FROM clouds ORDER BY created_at, id"),
                    (),
                    |row: Row| cloud_from_row(&row, &self.cipher),
                )
                .await
                .ctx("list clouds")?;
            Ok(clouds.into_iter().collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_cloud(&self, id: &CloudId) -> Result<bool, StoreError> {
        let id = &bytes(id.as_str());
        self.run("delete_cloud", move || async move {
            let mut conn = self.conn().await?;
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .await
                .ctx("begin delete cloud")?;
            tx.exec_drop("DELETE FROM findings WHERE cloud = ?", (id.clone(),))
                .await
                .ctx("delete findings of cloud")?;
            tx.exec_drop("DELETE FROM resources WHERE cloud = ?", (id.clone(),))
                .await
                .ctx("delete resources of cloud")?;
            tx.exec_drop("DELETE FROM compliance_runs WHERE scope = ?", (id.clone(),))
                .await
                .ctx("delete compliance runs of cloud")?;
            tx.exec_drop("DELETE FROM clouds WHERE id = ?", (id.clone(),))
                .await
                .ctx("delete cloud")?;
            let deleted = tx.affected_rows() > 0;
            tx.exec_drop(ADVANCE_BOTH, ())
                .await
                .ctx("advance the generations")?;
            tx.commit().await.ctx("commit delete cloud")?;
            Ok(deleted)
        })
        .await
    }

    async fn upsert_resources(&self, mut batch: Vec<Resource>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Rows locked in uid order by every writer: two nodes upserting the same uids wait
        // for each other instead of deadlocking. The sort is stable: of two rows with one
        // uid, the later one wins, as it would row by row.
        batch.sort_by(|a, b| a.uid.cmp(&b.uid));
        let rows = batch
            .iter()
            .map(encode_resource)
            .collect::<Result<Vec<_>, _>>()?;
        drop(batch);
        let chunks = into_chunks(rows, self.chunk_bytes);
        let chunks = &chunks;
        self.run("upsert_resources", move || {
            self.try_upsert_resources(chunks)
        })
        .await
    }

    async fn mark_deleted(&self, sweep: &DeletionSweep) -> Result<u64, StoreError> {
        let mut sql = String::from(
            // The index hint: the optimizer shuns an index that holds a column being updated
            // and would scan the whole table instead.
            "UPDATE resources FORCE INDEX (resources_cloud_live_type_region) \
             SET deleted_at = ? WHERE cloud = ? AND rtype = ? \
             AND deleted_at IS NULL AND last_seen < ?",
        );
        let mut args = vec![
            Value::Int(ms(sweep.now)),
            bytes(sweep.cloud.as_str()),
            bytes(sweep.rtype.as_str()),
            Value::Int(ms(sweep.seen_before)),
        ];
        if let Some(region) = &sweep.region {
            sql.push_str(" AND region = ?");
            args.push(bytes(region));
        }
        let (sql, args) = (&sql, &args);
        self.run("mark_deleted", move || async move {
            let mut conn = self.conn().await?;
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .await
                .ctx("begin mark deleted")?;
            tx.exec_drop(sql.as_str(), args.clone())
                .await
                .ctx("mark deleted")?;
            let marked = tx.affected_rows();
            if marked > 0 {
                tx.exec_drop(Counted::Resources.advance(), ())
                    .await
                    .ctx("advance the resources generation")?;
            }
            tx.commit().await.ctx("commit mark deleted")?;
            Ok(marked)
        })
        .await
    }

    async fn list_stored_resources(
        &self,
        q: &ResourceQuery,
    ) -> Result<Page<StoredResource>, StoreError> {
        let plan = &ResourceListing::of(q);
        let listing = &plan.listing();
        self.run("list_resources", move || {
            self.counted_page(
                listing,
                Counted::Resources,
                &plan.key,
                &plan.filter,
                &plan.args,
                q.limit,
                q.offset,
                |row: &mut Row| stored_resource_from_row(row, &plan.listed),
            )
        })
        .await
    }

    /// Each row written as JSON as it arrives (see [`write_listed_json`]); tags and
    /// properties are not checked again where the schema's constraints guarantee them.
    async fn list_resources_json(&self, q: &ResourceQuery) -> Result<JsonPage, StoreError> {
        let plan = &ResourceListing::of(q);
        let listing = &plan.listing();
        let (total, page) = self
            .run("list_resources", move || {
                self.counted_fold(
                    listing,
                    Counted::Resources,
                    &plan.key,
                    &plan.filter,
                    &plan.args,
                    (q.limit, q.offset),
                    || JsonPage {
                        json: Vec::with_capacity(
                            usize::try_from(q.limit).unwrap_or(0) * LISTED_JSON_BYTES_HINT,
                        ),
                        ..JsonPage::default()
                    },
                    |page: &mut JsonPage, row: &mut Row| {
                        if page.items > 0 {
                            page.json.push(b',');
                        }
                        write_listed_json(
                            &*row,
                            &plan.listed,
                            self.json_guaranteed,
                            &mut page.json,
                        )?;
                        page.items += 1;
                        Ok(())
                    },
                )
            })
            .await?;
        Ok(JsonPage { total, ..page })
    }

    async fn get_stored_resource(&self, key: &str) -> Result<Option<StoredResource>, StoreError> {
        self.run("get_resource", move || async move {
            let mut conn = self.conn().await?;
            let all = ListedColumns::default();
            let columns = all.columns(LISTED_COLUMNS);
            let by_uid = conn
                .exec_first::<Row, _, _>(
                    format!("SELECT {columns} FROM resources WHERE uid = ?"),
                    (bytes(key),),
                )
                .await
                .ctx("get resource by uid")?;
            if let Some(mut row) = by_uid {
                return Ok(Some(stored_resource_from_row(&mut row, &all)?));
            }
            let mut by_id = conn
                .exec_map(
                    format!(
                        "SELECT {columns} FROM resources \
                         WHERE id = ? AND deleted_at IS NULL LIMIT 2"
                    ),
                    (bytes(key),),
                    |mut row: Row| stored_resource_from_row(&mut row, &all),
                )
                .await
                .ctx("get resource by native id")?;
            Ok(if by_id.len() == 1 {
                by_id.pop().transpose()?
            } else {
                None
            })
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
        let sql = scan_sql(query, after.is_some());
        let mut args: Vec<Value> = Vec::with_capacity(query.types.len() + 3);
        if let Some(after) = after {
            args.push(bytes(after.as_str()));
        }
        if let Some(cloud) = &query.cloud {
            args.push(bytes(cloud.as_str()));
        }
        for t in &query.types {
            args.push(bytes(t.as_str()));
        }
        args.push(Value::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        let (sql, args) = (&sql, &args);
        self.run("scan_resources", move || async move {
            let mut conn = self.conn().await?;
            let rows = conn
                .exec_map(sql.as_str(), args.clone(), |row: Row| {
                    resource_from_row(&row)
                })
                .await
                .ctx("scan resources")?;
            Ok(rows.into_iter().collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn count_resources_by_type(
        &self,
        cloud: Option<&CloudId>,
    ) -> Result<BTreeMap<ResourceType, u64>, StoreError> {
        let (sql, args) = match cloud {
            Some(c) => (
                "SELECT rtype, COUNT(*) FROM resources WHERE deleted_at IS NULL \
                 AND cloud = ? GROUP BY rtype",
                vec![bytes(c.as_str())],
            ),
            None => (
                "SELECT rtype, COUNT(*) FROM resources WHERE deleted_at IS NULL \
                 GROUP BY rtype",
                vec![],
            ),
        };
        let args = &args;
        self.run("count_resources_by_type", move || async move {
            let mut conn = self.conn().await?;
            let rows = conn
                .exec_map(sql, args.clone(), |row: Row| {
                    let rtype: ResourceType = text(&row, 0)?
                        .parse()
                        .map_err(|e: String| StoreError::Corrupt(e))?;
                    Ok::<_, StoreError>((rtype, u64::try_from(int(&row, 1)?).unwrap_or(0)))
                })
                .await
                .ctx("count resources by type")?;
            Ok(rows.into_iter().collect::<Result<BTreeMap<_, _>, _>>()?)
        })
        .await
    }

    async fn upsert_findings(&self, batch: Vec<Finding>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut batch: Vec<&Finding> = batch.iter().collect();
        batch.sort_by(|a, b| (&a.insight, &a.resource_uid).cmp(&(&b.insight, &b.resource_uid)));
        for f in &batch {
            check_finding(f)?;
        }
        let rows = batch.into_iter().map(encode_finding).collect();
        let chunks = into_chunks(rows, self.chunk_bytes);
        let chunks = &chunks;
        self.run("upsert_findings", move || self.try_upsert_findings(chunks))
            .await
    }

    async fn resolve_findings(
        &self,
        cloud: Option<&CloudId>,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        // The index hint: the optimizer shuns an index that holds `state`, which this
        // updates, and would scan the whole table instead.
        let index = match cloud {
            Some(_) => "findings_cloud_state",
            None => "findings_state_resource",
        };
        let mut sql = format!(
            "UPDATE findings FORCE INDEX ({index}) SET state = 'resolved', resolved_at = ?, \
             last_seen = GREATEST(last_seen, COALESCE({CONFIRMED_AT}, last_seen)) \
             WHERE state = 'open' AND last_seen < ? AND COALESCE({CONFIRMED_AT}, 0) < ?"
        );
        let mut args = vec![
            Value::Int(ms(now)),
            Value::Int(ms(seen_before)),
            Value::Int(ms(seen_before)),
        ];
        if let Some(cloud) = cloud {
            sql.push_str(" AND cloud = ?");
            args.push(bytes(cloud.as_str()));
        }
        let (sql, args) = (&sql, &args);
        self.run("resolve_findings", move || async move {
            let mut conn = self.conn().await?;
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .await
                .ctx("begin resolve findings")?;
            tx.exec_drop(sql.as_str(), args.clone())
                .await
                .ctx("resolve findings")?;
            let resolved = tx.affected_rows();
            if resolved > 0 {
                tx.exec_drop(Counted::Findings.advance(), ())
                    .await
                    .ctx("advance the findings generation")?;
            }
            tx.commit().await.ctx("commit resolve findings")?;
            Ok(resolved)
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
        for f in &holding {
            check_finding(f)?;
        }
        let mut open_args: Vec<Value> = Vec::with_capacity(3);
        open_args.extend(after.map(|u| bytes(u.as_str())));
        open_args.extend(through.map(|u| bytes(u.as_str())));
        open_args.extend(scope.map(|c| bytes(c.as_str())));
        let sync = SyncRun {
            scope: scope.map(|c| c.0.clone()),
            open_sql: open_in_range_sql(after.is_some(), through.is_some(), scope.is_some()),
            open_args,
            holding: &holding,
            now: ms(now),
            finishes_run: through.is_none(),
        };
        let sync = &sync;
        self.run("sync_findings", move || self.try_sync_findings(sync))
            .await
    }

    async fn list_findings(&self, q: &FindingQuery) -> Result<Page<Finding>, StoreError> {
        let (filter, args) = finding_filter(q);
        let columns = listed_finding_columns();
        let order = q.order_by();
        let listing = Listing {
            table: "findings",
            columns: &columns,
            order: &order,
            key: None,
        };
        let key = q.count_key();
        let (listing, filter, args, key) = (&listing, &filter, &args, &key);
        self.run("list_findings", move || {
            self.counted_page(
                listing,
                Counted::Findings,
                key,
                filter,
                args,
                q.limit,
                q.offset,
                |row: &mut Row| finding_from_row(&*row),
            )
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
        args.push(Value::Int(i64::from(limit)));
        args.push(Value::Int(0));
        let (sql, args) = (&sql, &args);
        self.run("resource_findings", move || async move {
            let mut conn = self.conn().await?;
            let rows = conn
                .exec_map(sql.as_str(), args.clone(), |row: Row| {
                    finding_from_row(&row)
                })
                .await
                .ctx("findings of a resource")?;
            Ok(rows.into_iter().collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    fn cache_counts(&self, entries: usize) {
        self.resource_counts.set_capacity(entries);
        self.finding_counts.set_capacity(entries);
    }

    /// The same store on a pool of the calling thread's own: mysql_async recycles a
    /// connection given back on the runtime that first took one from its pool, so with the
    /// node's one pool every API request woke the main runtime's thread (measured: 3.6
    /// context switches per resource page against 2.1, and 12% more of the node's CPU per
    /// page). The node's pool bound is shared out: at most `pool_max / workers` connections
    /// each (at least one), none kept idle beyond the url's `inactive_connection_ttl`.
    fn worker_handle(&self, workers: usize) -> Option<SharedStore> {
        let base = self.opts.pool_opts();
        let max = base.constraints().max().div_ceil(workers.max(1)).max(1);
        let constraints = mysql_async::PoolConstraints::new(0, max)?;
        let opts = Opts::from(
            OptsBuilder::from_opts(self.opts.clone())
                .pool_opts(base.clone().with_constraints(constraints)),
        );
        Some(Arc::new(MysqlStore {
            pool: Pool::new(opts.clone()),
            opts,
            shown: self.shown.clone(),
            secret: self.secret.clone(),
            chunk_bytes: self.chunk_bytes,
            cipher: self.cipher.clone(),
            resource_counts: self.resource_counts.clone(),
            finding_counts: self.finding_counts.clone(),
            json_guaranteed: self.json_guaranteed,
            worker: true,
        }))
    }

    async fn count_open_findings(&self) -> Result<BTreeMap<InsightId, u64>, StoreError> {
        self.run("count_open_findings", move || async move {
            let mut conn = self.conn().await?;
            let rows = conn
                .exec_map(
                    "SELECT insight, COUNT(*) FROM findings WHERE state = 'open' \
                     GROUP BY insight",
                    (),
                    |row: Row| {
                        Ok::<_, StoreError>((
                            InsightId(text(&row, 0)?.to_owned()),
                            u64::try_from(int(&row, 1)?).unwrap_or(0),
                        ))
                    },
                )
                .await
                .ctx("count open findings")?;
            Ok(rows.into_iter().collect::<Result<BTreeMap<_, _>, _>>()?)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", move || async move {
            let mut conn = self.conn().await?;
            conn.ping().await.ctx("ping")
        })
        .await
    }

    async fn create_user(&self, user: &StoredUser) -> Result<bool, StoreError> {
        check_len("name", "user", &user.name, MAX_USER)?;
        let params = vec![
            bytes(&user.name),
            bytes(user.role.as_str()),
            bytes(&user.password_hash),
            Value::Int(ms(user.created_at)),
        ];
        let params = &params;
        self.run("create_user", move || async move {
            let mut conn = self.conn().await?;
            insert_unless_taken(
                &mut conn,
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                params.clone(),
                "create user",
            )
            .await
        })
        .await
    }

    async fn get_user(&self, name: &str) -> Result<Option<StoredUser>, StoreError> {
        self.run("get_user", move || async move {
            let mut conn = self.conn().await?;
            let row = conn
                .exec_first::<Row, _, _>(
                    format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?"),
                    (bytes(name),),
                )
                .await
                .ctx("get user")?;
            Ok(row.as_ref().map(user_from_row).transpose()?)
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        self.run("list_users", move || async move {
            let mut conn = self.conn().await?;
            let users = conn
                .exec_map(
                    format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"),
                    (),
                    |row: Row| user_from_row(&row),
                )
                .await
                .ctx("list users")?;
            Ok(users.into_iter().collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn put_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError> {
        let owner = format!("api key {}", key.id);
        check_len("id", &owner, &key.id, MAX_KEY_ID)?;
        check_len("user", &owner, &key.user, MAX_USER)?;
        check_len("hash", &owner, &key.hash, MAX_HASH)?;
        if key.name.chars().count() > MAX_KEY_NAME_CHARS {
            return Err(StoreError::Query(format!(
                "{owner}: name is longer than {MAX_KEY_NAME_CHARS} characters"
            )));
        }
        let opt_ms = |t: Option<Timestamp>| t.map_or(Value::NULL, |t| Value::Int(ms(t)));
        let params = vec![
            bytes(&key.id),
            bytes(&key.user),
            bytes(&key.name),
            bytes(&key.hash),
            Value::Int(ms(key.created_at)),
            opt_ms(key.last_used),
            opt_ms(key.revoked_at),
        ];
        let params = &params;
        self.run("put_api_key", move || async move {
            let mut conn = self.conn().await?;
            insert_unless_taken(
                &mut conn,
                "INSERT INTO api_keys (id, user_name, name, hash, created_at, last_used, \
                 revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                params.clone(),
                "put api key",
            )
            .await
        })
        .await
    }

    async fn find_api_key(
        &self,
        hash: &str,
    ) -> Result<Option<(StoredApiKey, crate::auth::Role)>, StoreError> {
        self.run("find_api_key", move || async move {
            let mut conn = self.conn().await?;
            let row = conn
                .exec_first::<Row, _, _>(
                    "SELECT k.id, k.user_name, k.name, k.hash, k.created_at, k.last_used, \
                     k.revoked_at, u.role FROM api_keys k JOIN users u ON u.name = k.user_name \
                     WHERE k.hash = ? AND k.revoked_at IS NULL",
                    (bytes(hash),),
                )
                .await
                .ctx("find api key")?;
            Ok(row.as_ref().map(owned_api_key_from_row).transpose()?)
        })
        .await
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<StoredApiKey>, StoreError> {
        self.run("get_api_key", move || async move {
            let mut conn = self.conn().await?;
            let row = conn
                .exec_first::<Row, _, _>(
                    format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?"),
                    (bytes(id),),
                )
                .await
                .ctx("get api key")?;
            Ok(row.as_ref().map(api_key_from_row).transpose()?)
        })
        .await
    }

    async fn list_api_keys(&self, user: Option<&str>) -> Result<Vec<StoredApiKey>, StoreError> {
        let (sql, params) = match user {
            Some(u) => (
                format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE user_name = ? \
                     ORDER BY created_at, id"
                ),
                vec![bytes(u)],
            ),
            None => (
                format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"),
                Vec::new(),
            ),
        };
        let (sql, params) = (&sql, &params);
        self.run("list_api_keys", move || async move {
            let mut conn = self.conn().await?;
            let keys = conn
                .exec_map(sql.as_str(), params.clone(), |row: Row| {
                    api_key_from_row(&row)
                })
                .await
                .ctx("list api keys")?;
            Ok(keys.into_iter().collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        self.run("revoke_api_key", move || async move {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (Value::Int(ms(at)), bytes(id)),
            )
            .await
            .ctx("revoke api key")?;
            Ok(conn.affected_rows() > 0)
        })
        .await
    }

    async fn touch_api_key(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        self.run("touch_api_key", move || async move {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "UPDATE api_keys SET last_used = GREATEST(COALESCE(last_used, 0), ?) \
                 WHERE id = ?",
                (Value::Int(ms(at)), bytes(id)),
            )
            .await
            .ctx("touch api key")
        })
        .await
    }

    async fn put_session(&self, session: &StoredSession) -> Result<(), StoreError> {
        check_len("user", "session", &session.user, MAX_USER)?;
        let params = vec![
            bytes(&session.hash),
            bytes(&session.user),
            bytes(&session.csrf_hash),
            Value::Int(ms(session.expires_at)),
        ];
        let params = &params;
        self.run("put_session", move || async move {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "INSERT INTO sessions (hash, user_name, csrf_hash, expires_at) \
                 VALUES (?, ?, ?, ?)",
                params.clone(),
            )
            .await
            .ctx("put session")
        })
        .await
    }

    async fn find_session(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<(StoredSession, crate::auth::Role)>, StoreError> {
        self.run("find_session", move || async move {
            let mut conn = self.conn().await?;
            let row = conn
                .exec_first::<Row, _, _>(
                    "SELECT s.hash, s.user_name, s.csrf_hash, s.expires_at, u.role \
                     FROM sessions s JOIN users u ON u.name = s.user_name \
                     WHERE s.hash = ? AND s.expires_at > ?",
                    (bytes(hash), Value::Int(ms(now))),
                )
                .await
                .ctx("find session")?;
            Ok(row.as_ref().map(session_from_row).transpose()?)
        })
        .await
    }

    async fn delete_session(&self, hash: &str) -> Result<bool, StoreError> {
        self.run("delete_session", move || async move {
            let mut conn = self.conn().await?;
            conn.exec_drop("DELETE FROM sessions WHERE hash = ?", (bytes(hash),))
                .await
                .ctx("delete session")?;
            Ok(conn.affected_rows() > 0)
        })
        .await
    }

    async fn purge_sessions(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.run("purge_sessions", move || async move {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "DELETE FROM sessions WHERE expires_at <= ?",
                (Value::Int(ms(now)),),
            )
            .await
            .ctx("purge sessions")?;
            Ok(conn.affected_rows())
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let e = entry.clone().bounded();
        let params = vec![
            Value::Int(ms(e.at)),
            bytes(&e.principal),
            bytes(&e.action),
            bytes(&e.target),
            bytes(&e.client),
            Value::Int(i64::from(e.status)),
        ];
        let params = &params;
        self.run("append_audit", move || async move {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "INSERT INTO audit_log (occurred_at, principal, action, target, client, status) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                params.clone(),
            )
            .await
            .ctx("append audit")
        })
        .await
    }

    async fn list_audit(&self, limit: u32, offset: u64) -> Result<Page<AuditEntry>, StoreError> {
        let listing = Listing {
            table: "audit_log",
            columns: AUDIT_COLUMNS,
            order: "id DESC",
            key: None,
        };
        let listing = &listing;
        self.run("list_audit", move || async move {
            self.page(listing, "", &[], limit, offset, |row: &mut Row| {
                audit_from_row(&*row)
            })
            .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{CredentialsCipher, CredentialsKey, KeyOrigin};
    use crate::store::contract::{self, at, aws_keys, fresh_cloud, resource};

    /// The store with an ephemeral credentials key, as `store::open` opens it.
    async fn open(url: &str) -> Result<SharedStore, StoreError> {
        crate::store::open(url).await
    }

    async fn raw_credentials(admin: &mut Conn, id: &CloudId) -> String {
        let raw: Option<String> = admin
            .exec_first(
                "SELECT credentials FROM clouds WHERE id = ?",
                (id.as_str(),),
            )
            .await
            .expect("raw credentials");
        raw.expect("a row")
    }

    #[tokio::test]
    async fn credentials_are_sealed_in_the_table_and_plaintext_rows_are_sealed_on_open() {
        let db = TestDb::migrated("sealed").await;
        let key = CredentialsKey::random();
        let cipher = || Arc::new(CredentialsCipher::new(&key, KeyOrigin::Configured));
        let store = crate::store::open_with(&db.url, cipher())
            .await
            .expect("open");
        let (a, b) = (fresh_cloud("sealed-a"), fresh_cloud("sealed-b"));
        let secret = "wJalrXUtnFEMI-sealed-secret";
        store.put_cloud(&aws_keys(&a, secret)).await.expect("put a");
        store
            .put_cloud(&aws_keys(&b, "another-secret-value"))
            .await
            .expect("put b");
        let mut admin = db.admin().await;
        let raw = raw_credentials(&mut admin, &a).await;
        assert!(raw.starts_with("v1:"), "{raw}");
        assert!(
            !raw.contains(secret) && !raw.contains("AKIAEXAMPLE"),
            "{raw}"
        );
        assert_eq!(
            store.get_cloud(&a).await.expect("get"),
            Some(aws_keys(&a, secret))
        );

        // a's blob in b's row does not open, and the error names b, not the contents
        admin
            .exec_drop(
                "UPDATE clouds SET credentials = ? WHERE id = ?",
                (raw.as_str(), b.as_str()),
            )
            .await
            .expect("move the blob");
        let err = store.get_cloud(&b).await.expect_err("a moved blob");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains(b.as_str()), "{err}");
        assert!(!format!("{err} {err:?}").contains(secret), "{err:?}");
        assert!(store.delete_cloud(&b).await.expect("delete b"));
        drop(store);

        // a row as an earlier version wrote it is sealed when a node opens the store
        let legacy_id = fresh_cloud("legacy");
        let legacy = aws_keys(&legacy_id, "legacy-plaintext-secret");
        let json = serde_json::to_string(&legacy.credentials).expect("json");
        admin
            .exec_drop(
                "INSERT INTO clouds (id, provider, name, regions, credentials, created_at) \
                 VALUES (?, 'aws', 'keys', '[\"us-east-1\"]', ?, ?)",
                (legacy_id.as_str(), json.as_str(), ms(at(1))),
            )
            .await
            .expect("a plaintext row");
        // two nodes starting at once: each row sealed once, both read it
        let (n1, n2) = tokio::join!(
            crate::store::open_with(&db.url, cipher()),
            crate::store::open_with(&db.url, cipher())
        );
        let (n1, n2) = (n1.expect("node 1"), n2.expect("node 2"));
        let raw = raw_credentials(&mut admin, &legacy_id).await;
        assert!(
            raw.starts_with("v1:") && !raw.contains("legacy-plaintext"),
            "{raw}"
        );
        for node in [&n1, &n2] {
            assert_eq!(
                node.get_cloud(&legacy_id).await.expect("get"),
                Some(legacy.clone())
            );
        }
        // and a node with another key refuses to start
        let other = CredentialsCipher::new(&CredentialsKey::random(), KeyOrigin::Configured);
        assert!(matches!(
            crate::store::open_with(&db.url, Arc::new(other))
                .await
                .map(drop),
            Err(StoreError::CredentialsKey(_))
        ));
        admin.disconnect().await.expect("disconnect");
    }

    /// The server the tests use; each test works in a database of its own.
    fn server_url() -> String {
        std::env::var("PALISADE_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
    }

    /// `url` naming database `db` instead of its own.
    fn with_database(url: &str, db: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (url, String::new()),
        };
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        let authority_end = base[authority_start..]
            .find('/')
            .map_or(base.len(), |i| authority_start + i);
        format!("{}/{db}{query}", &base[..authority_end])
    }

    /// A database of one test, dropped when the test ends (even when it fails).
    struct TestDb {
        name: String,
        url: String,
    }

    impl TestDb {
        /// Create an empty database on the test server; fails loudly when there is none.
        async fn create(label: &str) -> TestDb {
            let server = server_url();
            let name = format!(
                "palisade_test_{label}_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            let mut conn = Conn::new(Opts::from_url(&server).expect("test mysql url"))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "the MySQL/MariaDB tests need a server at {} \
                         (PALISADE_TEST_MYSQL_URL): {e}",
                        redact_url(&server)
                    )
                });
            conn.query_drop(format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .await
            .expect("create test database");
            conn.disconnect().await.expect("disconnect");
            TestDb {
                url: with_database(&server, &name),
                name,
            }
        }

        /// A database created and migrated.
        async fn migrated(label: &str) -> TestDb {
            let db = TestDb::create(label).await;
            assert_eq!(migrate(&db.url).await.expect("migrate"), SCHEMA_VERSION);
            db
        }

        /// A connection of the test's own, outside any store.
        async fn admin(&self) -> Conn {
            Conn::new(Opts::from_url(&self.url).expect("url"))
                .await
                .expect("admin connection")
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            // Drop runs inside the test's runtime: drop the database from a thread of its own.
            let server = server_url();
            let name = self.name.clone();
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let mut conn = Conn::new(Opts::from_url(&server)?).await?;
                    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await?;
                    conn.disconnect().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {}", self.name);
            }
        }
    }

    #[test]
    fn urls_are_redacted() {
        for (url, shown) in [
            (
                "mysql://root:hunter2@db:3306/palisade",
                "mysql://root:***@db:3306/palisade",
            ),
            (
                "mysql://root:p@ss/w:rd@db/palisade?pool_max=4",
                "mysql://root:***@db/palisade?pool_max=4",
            ),
            ("mysql://root@db/palisade", "mysql://root@db/palisade"),
            ("mysql://db/palisade", "mysql://db/palisade"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306/test?a=b", "x"),
            "mysql://root@127.0.0.1:3306/x?a=b"
        );
        assert_eq!(with_database("mysql://h", "x"), "mysql://h/x");
    }

    #[test]
    fn migrations_split_into_statements() {
        let per_migration: Vec<usize> = MIGRATIONS
            .iter()
            .map(|(_, sql)| statements(sql).len())
            .collect();
        // 0001: clouds, resources, findings, compliance_runs;
        // 0002: users, api_keys, sessions, audit_log;
        // 0003: store_generations and its two rows;
        // 0004: the rebuild of resources, chosen, prepared, run and released;
        // 0005: the JSON checks of resources, the same way
        assert_eq!(per_migration, vec![4, 4, 2, 4, 4]);
        let all: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|(_, sql)| statements(sql))
            .collect();
        // every statement can run again after a crash half way: it creates only what is
        // missing, or it runs the one statement chosen by what the database holds
        assert!(all
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")
                || s.starts_with("INSERT IGNORE INTO")
                || s.starts_with("SET @palisade_")
                || s.starts_with("PREPARE palisade_")
                || s.starts_with("EXECUTE palisade_")
                || s.starts_with("DEALLOCATE PREPARE palisade_")));
        assert_eq!(
            MIGRATIONS.last().map(|(v, _)| *v),
            Some(SCHEMA_VERSION),
            "the last migration is this build's schema"
        );
    }

    #[test]
    fn rows_are_chunked_by_count_and_size() {
        let row = |size: usize| EncodedRow {
            params: vec![Value::Int(0)],
            size,
        };
        let sizes = |chunks: Vec<Chunk>| chunks.iter().map(|c| c.rows).collect::<Vec<_>>();
        assert_eq!(
            sizes(into_chunks((0..1201).map(|_| row(10)).collect(), 1 << 20)),
            [500, 500, 201]
        );
        assert_eq!(
            sizes(into_chunks(vec![row(60), row(60), row(200), row(10)], 100)),
            [1, 1, 1, 1]
        );
        assert_eq!(
            sizes(into_chunks(vec![row(40), row(40), row(40)], 100)),
            [2, 1]
        );
        assert!(into_chunks(Vec::new(), 100).is_empty());
    }

    #[tokio::test]
    async fn aborted_transactions_are_retried_a_few_times_other_errors_never() {
        use std::sync::atomic::{AtomicU32, Ordering};
        // No server needed: the attempts below never connect.
        let store = MysqlStore::connect(
            "mysql://root@127.0.0.1:1/test",
            Arc::new(crate::crypto::CredentialsCipher::ephemeral()),
        )
        .expect("url");
        let server = |code: u16| AttemptError::Db {
            context: "upsert resources".into(),
            source: mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "from the test".into(),
                state: "40001".into(),
            }),
        };
        let tries = &AtomicU32::new(0);
        let twice_then_ok = store
            .run("test", move || async move {
                match tries.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(server(ER_LOCK_DEADLOCK)),
                    1 => Err(server(ER_LOCK_WAIT_TIMEOUT)),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(twice_then_ok.expect("third attempt"), 2);

        tries.store(0, Ordering::SeqCst);
        let always = store
            .run("test", move || async move {
                tries.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(server(ER_LOCK_DEADLOCK))
            })
            .await;
        assert!(
            matches!(always, Err(StoreError::Unavailable(_))),
            "{always:?}"
        );
        assert_eq!(tries.load(Ordering::SeqCst), TX_ATTEMPTS);

        tries.store(0, Ordering::SeqCst);
        let syntax = store
            .run("test", move || async move {
                tries.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(server(1064))
            })
            .await;
        assert!(matches!(syntax, Err(StoreError::Query(_))), "{syntax:?}");
        assert_eq!(
            tries.load(Ordering::SeqCst),
            1,
            "a bad statement is not retried"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_store_passes_the_contract() {
        let db = TestDb::migrated("contract").await;
        contract::all(crate::store::open(&db.url).await.expect("open")).await;
        // in a database of its own: the one above keeps clouds sealed with another key
        let db = TestDb::migrated("reopen").await;
        contract::reopen_keeps_data(&db.url).await;
    }

    #[tokio::test]
    async fn open_asks_for_migrate_and_migrate_is_idempotent() {
        let db = TestDb::create("migrate").await;
        match open(&db.url).await {
            Err(StoreError::Unavailable(msg)) => assert_eq!(
                msg,
                format!(
                    "schema version 0 is older than this build's {SCHEMA_VERSION}: \
                     run `palisade migrate`"
                )
            ),
            Err(other) => panic!("expected a request to migrate, got {other:?}"),
            Ok(_) => panic!("an empty database must not open"),
        }
        // Two nodes migrating at once take turns; both report the version.
        let (a, b) = tokio::join!(migrate(&db.url), migrate(&db.url));
        assert_eq!(
            (a.expect("a"), b.expect("b")),
            (SCHEMA_VERSION, SCHEMA_VERSION)
        );
        assert_eq!(
            crate::store::migrate(&db.url).await.expect("again"),
            SCHEMA_VERSION
        );
        let mut admin = db.admin().await;
        let versions: Vec<i64> = admin
            .query("SELECT version FROM schema_version ORDER BY version")
            .await
            .expect("versions");
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        admin.disconnect().await.expect("disconnect");
        let store = crate::store::open(&db.url)
            .await
            .expect("open after migrate");
        store.ping().await.expect("ping");
    }

    /// The columns of `index` of table `resources`, in order.
    async fn index_columns(admin: &mut Conn, index: &str) -> Vec<String> {
        admin
            .exec(
                "SELECT column_name FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = 'resources' \
                 AND index_name = ? ORDER BY seq_in_index",
                (index,),
            )
            .await
            .expect("index columns")
    }

    #[tokio::test]
    async fn a_version_3_database_keeps_its_resources_through_migration_4() {
        let db = TestDb::create("v3").await;
        let mut admin = db.admin().await;
        admin
            .query_drop(
                "CREATE TABLE schema_version (version BIGINT NOT NULL, \
                 applied_at BIGINT NOT NULL, PRIMARY KEY (version)) ENGINE = InnoDB",
            )
            .await
            .expect("schema_version");
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 3) {
            for statement in statements(sql) {
                admin
                    .query_drop(statement)
                    .await
                    .expect("migration up to 3");
            }
            admin
                .exec_drop(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, 0)",
                    (version,),
                )
                .await
                .expect("record version");
        }
        assert_eq!(index_columns(&mut admin, "PRIMARY").await, ["uid"]);
        // two live resources and a deleted one, written as version 3 wrote them
        for (uid, id, deleted) in [
            ("u2", "i-b", None),
            ("u1", "i-a", None),
            ("u3", "i-c", Some(5)),
        ] {
            admin
                .exec_drop(
                    "INSERT INTO resources (uid, cloud, provider, account, region, rtype, id, \
                     name, first_seen, last_seen, deleted_at, tags, properties) \
                     VALUES (?, 'c1', 'aws', '123456789012', 'us-east-1', 'aws.ec2.instance', \
                     ?, 'n', 1, 2, ?, '{\"env\":\"prod\"}', '{\"size\":1}')",
                    (uid, id, deleted),
                )
                .await
                .expect("version 3 resource");
        }

        assert_eq!(migrate(&db.url).await.expect("migrate"), SCHEMA_VERSION);
        assert_eq!(
            index_columns(&mut admin, "PRIMARY").await,
            ["rtype", "region", "id", "uid"]
        );
        assert_eq!(index_columns(&mut admin, "resources_uid").await, ["uid"]);
        // the rebuild runs once: its statements again change nothing
        for statement in statements(MIGRATIONS[3].1) {
            admin.query_drop(statement).await.expect("0004 again");
        }
        assert_eq!(
            index_columns(&mut admin, "PRIMARY").await,
            ["rtype", "region", "id", "uid"]
        );
        // 0005's checks are in place, once: its statements again change nothing
        for statement in statements(MIGRATIONS[4].1) {
            admin.query_drop(statement).await.expect("0005 again");
        }
        let checks: Option<u64> = admin
            .query_first(JSON_CHECKS_SQL)
            .await
            .expect("count the checks");
        assert_eq!(checks, Some(2));
        admin.disconnect().await.expect("disconnect");

        let store = crate::store::open(&db.url).await.expect("open");
        let page = store
            .list_stored_resources(&ResourceQuery {
                rtype: Some(ResourceType::AwsEc2Instance),
                region: Some("us-east-1".into()),
                limit: 10,
                ..ResourceQuery::default()
            })
            .await
            .expect("list");
        let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
        assert_eq!((page.total, ids), (2, vec!["i-a", "i-b"]));
        let deleted = store
            .get_stored_resource("u3")
            .await
            .expect("get")
            .expect("the deleted resource is kept");
        assert_eq!(deleted.deleted_at.map(|t| t.timestamp_millis()), Some(5));
        assert_eq!(deleted.properties.get(), r#"{"size":1}"#);
        // a known uid is refreshed in place, not added beside its old row
        let again = store.get_resource("u1").await.expect("get u1").expect("u1");
        store.upsert_resources(vec![again]).await.expect("upsert");
        let n: Option<u64> = db
            .admin()
            .await
            .query_first("SELECT COUNT(*) FROM resources")
            .await
            .expect("count");
        assert_eq!(n, Some(3));
    }

    #[tokio::test]
    async fn a_worker_handle_reads_and_writes_the_same_store_with_exact_totals() {
        let db = TestDb::migrated("worker").await;
        let store = open(&db.url).await.expect("open");
        let handle = crate::store::for_worker(&store, 2);
        assert!(!Arc::ptr_eq(&store, &handle), "a pool of the thread's own");
        let cloud = fresh_cloud("worker");
        let query = ResourceQuery {
            cloud: Some(cloud.clone()),
            limit: 1,
            ..ResourceQuery::default()
        };
        let r = |n: u32| {
            resource(
                &cloud,
                ResourceType::AwsEc2Instance,
                "us-east-1",
                &format!("i-{n}"),
                &[],
                at(1),
            )
        };
        // totals counted by one are kept for both, and a write through either moves them
        store
            .upsert_resources(vec![r(1), r(2)])
            .await
            .expect("upsert");
        for s in [&handle, &store] {
            assert_eq!(s.list_resources_json(&query).await.expect("list").total, 2);
        }
        handle
            .upsert_resources(vec![r(3)])
            .await
            .expect("upsert through the handle");
        for s in [&store, &handle] {
            assert_eq!(s.list_resources_json(&query).await.expect("list").total, 3);
        }
        store.upsert_resources(vec![r(4)]).await.expect("upsert");
        assert_eq!(
            handle
                .list_resources_json(&query)
                .await
                .expect("list")
                .total,
            4
        );
        drop(handle);
    }

    /// Set resource `uid`'s properties to `text` behind the store's back.
    async fn set_properties(admin: &mut Conn, uid: &str, text: &str) -> mysql_async::Result<()> {
        admin
            .exec_drop(
                "UPDATE resources SET properties = ? WHERE uid = ?",
                (text, uid),
            )
            .await
    }

    #[tokio::test]
    async fn stored_json_is_checked_by_the_server_or_else_on_every_read() {
        let db = TestDb::migrated("jsoncheck").await;
        let cloud = fresh_cloud("jsoncheck");
        let r = resource(
            &cloud,
            ResourceType::AwsEc2Instance,
            "us-east-1",
            "i-json",
            &[("env", "prod")],
            at(1),
        );
        let query = ResourceQuery {
            cloud: Some(cloud.clone()),
            limit: 10,
            ..ResourceQuery::default()
        };
        let store = open(&db.url).await.expect("open");
        store
            .upsert_resources(vec![r.clone()])
            .await
            .expect("upsert");
        let good = store.list_resources_json(&query).await.expect("list");
        assert_eq!(good.items, 1);

        // schema 5: the server refuses text that is not JSON, and the row stays as it was
        let mut admin = db.admin().await;
        let refused = set_properties(&mut admin, r.uid.as_str(), r#"{"cut": "#).await;
        assert!(
            refused.is_err(),
            "the server took properties that are not JSON"
        );
        assert_eq!(store.list_resources_json(&query).await.expect("list"), good);

        // a server that keeps no such constraint (MySQL before 8.0.16): the store finds
        // none when it opens, and a row that is not JSON is refused on read, by its uid
        admin
            .query_drop(
                "ALTER TABLE resources DROP CONSTRAINT resources_tags_json, \
                 DROP CONSTRAINT resources_properties_json",
            )
            .await
            .expect("drop the checks");
        set_properties(&mut admin, r.uid.as_str(), r#"{"cut": "#)
            .await
            .expect("no check now");
        admin.disconnect().await.expect("disconnect");
        let unchecked = open(&db.url).await.expect("open without checks");
        let err = unchecked
            .list_resources_json(&query)
            .await
            .expect_err("properties that are not JSON");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains(r.uid.as_str()), "{err}");
        let err = unchecked
            .list_stored_resources(&query)
            .await
            .expect_err("the same through the stored listing");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_schema_from_the_future_is_refused() {
        let db = TestDb::migrated("future").await;
        let mut admin = db.admin().await;
        admin
            .exec_drop(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, 0)",
                (SCHEMA_VERSION + 1,),
            )
            .await
            .expect("pretend a newer build migrated");
        admin.disconnect().await.expect("disconnect");
        let expect_refused = |r: Result<(), StoreError>| match r {
            Err(StoreError::UnknownSchema { found, known }) => {
                assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            Err(other) => panic!("expected UnknownSchema, got {other:?}"),
            Ok(()) => panic!("a newer schema must be refused"),
        };
        expect_refused(open(&db.url).await.map(drop));
        expect_refused(migrate(&db.url).await.map(drop));
    }

    #[tokio::test]
    async fn a_batch_with_a_bad_row_rolls_back_entirely() {
        let db = TestDb::migrated("rollback").await;
        let store = open(&db.url).await.expect("open");
        let cloud = fresh_cloud("atomic");
        let rtype = ResourceType::AwsEc2Instance;
        let before = resource(&cloud, rtype, "us-east-1", "i-before", &[], at(1));
        store
            .upsert_resources(vec![before.clone()])
            .await
            .expect("first batch");

        // Enough rows for three statements; the server refuses one row of the last.
        let mut changed = before.clone();
        changed.name = "changed".into();
        changed.last_seen = at(2);
        let mut batch = vec![changed];
        batch.extend((0..1200).map(|n| {
            resource(
                &cloud,
                rtype,
                "us-east-1",
                &format!("i-new-{n}"),
                &[],
                at(2),
            )
        }));
        batch.sort_by(|a, b| a.uid.cmp(&b.uid));
        let victim = batch[2 * CHUNK_ROWS + 100].id.clone();
        assert_ne!(victim, before.id);

        // Make the server refuse that row, as a full disk or a crash would mid-batch.
        let mut admin = db.admin().await;
        admin
            .query_drop(format!(
                "CREATE TRIGGER poison BEFORE INSERT ON resources FOR EACH ROW \
                 BEGIN IF NEW.id = '{victim}' THEN \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned row'; END IF; END"
            ))
            .await
            .expect("trigger");

        let err = store
            .upsert_resources(batch.clone())
            .await
            .expect_err("the batch must fail");
        assert!(matches!(err, StoreError::Query(_)), "{err:?}");
        assert!(err.to_string().contains("poisoned row"), "{err}");

        assert_eq!(
            store.get_resource(before.uid.as_str()).await.expect("get"),
            Some(before.clone())
        );
        let page = store
            .list_resources(&ResourceQuery {
                cloud: Some(cloud.clone()),
                include_deleted: true,
                limit: 10,
                ..ResourceQuery::default()
            })
            .await
            .expect("list");
        assert_eq!(page.total, 1, "no row of the failed batch stays");

        admin
            .query_drop("DROP TRIGGER poison")
            .await
            .expect("drop trigger");
        admin.disconnect().await.expect("disconnect");
        store.upsert_resources(batch).await.expect("next batch");
        let page = store
            .list_resources(&ResourceQuery {
                cloud: Some(cloud),
                limit: 0,
                ..ResourceQuery::default()
            })
            .await
            .expect("list");
        assert_eq!(page.total, 1201);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_upserts_of_the_same_uids_never_duplicate() {
        let db = TestDb::migrated("concurrent").await;
        let a = open(&db.url).await.expect("open a");
        let b = open(&db.url).await.expect("open b");
        let cloud = fresh_cloud("race");
        let batch = |seen: i64| -> Vec<Resource> {
            (0..2000)
                .map(|n| {
                    resource(
                        &cloud,
                        ResourceType::AwsEc2Volume,
                        "us-east-1",
                        &format!("vol-{n}"),
                        &[("n", &n.to_string())],
                        at(seen),
                    )
                })
                .collect()
        };
        for round in 0..3 {
            let (ra, rb) = tokio::join!(
                a.upsert_resources(batch(10 + round)),
                b.upsert_resources(batch(20 + round))
            );
            ra.expect("node a");
            rb.expect("node b");
        }
        let counts = a
            .count_resources_by_type(Some(&cloud))
            .await
            .expect("count");
        assert_eq!(counts.get(&ResourceType::AwsEc2Volume), Some(&2000));
        let mut admin = db.admin().await;
        let rows: Option<i64> = admin
            .query_first("SELECT COUNT(*) FROM resources")
            .await
            .expect("count rows");
        assert_eq!(rows, Some(2000));
        admin.disconnect().await.expect("disconnect");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_and_the_password_stays_secret() {
        for url in [
            "mysql://root@127.0.0.1:1/test",
            "mysql://root:hunter2-secret@127.0.0.1:1/test",
        ] {
            let err = open(url)
                .await
                .map(drop)
                .expect_err("nothing listens on port 1");
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("127.0.0.1:1"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            let err = migrate(url).await.expect_err("nor can it migrate");
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
        // A live server that refuses the password says so, without the password.
        let server = server_url();
        let Some(rest) = server.strip_prefix("mysql://") else {
            panic!("test url {server} is not mysql://");
        };
        let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let wrong = format!("mysql://palisade_nobody:hunter2-secret@{host_and_db}");
        let err = open(&wrong).await.map(drop).expect_err("no such user");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        assert!(
            matches!(
                open("mysql://root@127.0.0.1:1").await.map(drop),
                Err(StoreError::UnsupportedUrl(_))
            ),
            "a url must name a database"
        );
    }

    #[tokio::test]
    async fn the_pool_reconnects_after_the_server_drops_its_connections() {
        let db = TestDb::migrated("reconnect").await;
        let store = open(&db.url).await.expect("open");
        let cloud = fresh_cloud("reconnect");
        let r = resource(&cloud, ResourceType::AwsS3Bucket, "global", "b", &[], at(1));
        store
            .upsert_resources(vec![r.clone()])
            .await
            .expect("upsert");

        // Kill every connection the store has, as a server restart would.
        let mut admin = db.admin().await;
        let ids: Vec<u64> = admin
            .exec(
                "SELECT id FROM information_schema.processlist \
                 WHERE db = ? AND id <> CONNECTION_ID()",
                (db.name.as_str(),),
            )
            .await
            .expect("processlist");
        assert!(!ids.is_empty(), "the store keeps a connection");
        for id in ids {
            admin.query_drop(format!("KILL {id}")).await.expect("kill");
        }
        admin.disconnect().await.expect("disconnect");

        store.ping().await.expect("ping after the kill");
        assert_eq!(
            store.get_resource(r.uid.as_str()).await.expect("get"),
            Some(r)
        );
    }

    #[tokio::test]
    async fn too_long_keys_fail_with_a_clear_error() {
        let db = TestDb::migrated("long").await;
        let store = open(&db.url).await.expect("open");
        let cloud = fresh_cloud("long");
        let long_id = "x".repeat(MAX_NATIVE_ID + 1);
        let r = resource(
            &cloud,
            ResourceType::AwsIamUser,
            "global",
            &long_id,
            &[],
            at(1),
        );
        let err = store.upsert_resources(vec![r]).await.expect_err("too long");
        assert!(err.to_string().contains("id is 2049 bytes"), "{err}");
        // Non-ASCII keys are stored and found byte for byte.
        let odd = resource(
            &cloud,
            ResourceType::AwsIamUser,
            "global",
            "usér €",
            &[],
            at(1),
        );
        store
            .upsert_resources(vec![odd.clone()])
            .await
            .expect("upsert");
        assert_eq!(store.get_resource("usér €").await.expect("get"), Some(odd));
        assert_eq!(store.get_resource("usér € ").await.expect("get"), None);
    }
}
