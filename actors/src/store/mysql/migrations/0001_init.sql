-- Palisade cluster store (MySQL 5.7+, MariaDB 10.x), schema version 1.
-- Timestamps are BIGINT milliseconds since the Unix epoch, UTC.
--
-- MySQL commits DDL implicitly, so a migration cannot be rolled back: every statement is
-- written to be re-run after a crash half way (IF NOT EXISTS, indexes inside CREATE TABLE).
-- Statements are separated by a `;` at the end of a line; no literal holds a `;`.
--
-- Identifiers that are keys or sort orders (uids, cloud ids, types, regions, native ids,
-- insight ids, states) are VARBINARY: compared byte by byte, without padding and without
-- collation, the way SQLite's BINARY collation and Rust's `Ord` compare them, so both
-- backends list in the same order and a `Owner` never matches `owner`. A key costs one
-- byte per byte, which keeps every index within InnoDB's 3072-byte limit. Free text and
-- JSON (names, tags, properties, credentials) is utf8mb4 with a binary collation.

-- Cloud accounts. Credentials are sealed text, `v1:<base64>` (crypto.rs); JSON text only in
-- rows of versions before that, which a node opening the store seals.
CREATE TABLE IF NOT EXISTS clouds (
    id          VARBINARY(255) NOT NULL,
    provider    VARBINARY(16) NOT NULL,
    name        TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    regions     TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    credentials TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- Harvested resources, clustered by uid so that a keyset scan walks the primary key in
-- order. Secondary indexes never hold a column an upsert of a known uid changes (the uid
-- fixes cloud, type, region and id), so re-harvesting touches only the clustered row.
-- deleted_at comes right after the cloud: `deleted_at IS NULL` is an equality prefix, and
-- the index yields live rows in (type, region, id, uid) order with no sort.
CREATE TABLE IF NOT EXISTS resources (
    uid        VARBINARY(64) NOT NULL,
    cloud      VARBINARY(255) NOT NULL,
    provider   VARBINARY(16) NOT NULL,
    account    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    region     VARBINARY(64) NOT NULL,
    rtype      VARBINARY(64) NOT NULL,
    id         VARBINARY(2048) NOT NULL,
    name       TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    deleted_at BIGINT NULL,
    tags       LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    properties LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    PRIMARY KEY (uid),
    -- deletion sweeps, live counts and listings of one cloud
    KEY resources_cloud_live_type_region (cloud, deleted_at, rtype, region, id),
    -- listings and totals across clouds
    KEY resources_live_type_region (deleted_at, rtype, region, id),
    -- lookup by the cloud's own id
    KEY resources_native_id (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- Findings: one row per (insight, resource), with its history.
CREATE TABLE IF NOT EXISTS findings (
    insight       VARBINARY(255) NOT NULL,
    resource_uid  VARBINARY(64) NOT NULL,
    cloud         VARBINARY(255) NOT NULL,
    resource      TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    resource_type VARBINARY(64) NOT NULL,
    region        VARBINARY(64) NOT NULL,
    state         VARBINARY(16) NOT NULL,
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    resolved_at   BIGINT NULL,
    PRIMARY KEY (insight, resource_uid),
    KEY findings_insight_state (insight, state),
    KEY findings_cloud_state (cloud, state),
    KEY findings_resource (resource_uid),
    -- open findings by resource, with their cloud (and, as every InnoDB secondary index,
    -- the primary key): a compliance run reads the open findings of one page's uid range
    -- from this index alone
    KEY findings_state_resource (state, resource_uid, cloud)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- Completed compliance runs: per scope (a cloud id, or '' for every cloud), the evaluation
-- time of the latest one. An open finding was confirmed by the latest run covering it, so
-- its reported last_seen is at least that time.
CREATE TABLE IF NOT EXISTS compliance_runs (
    scope       VARBINARY(255) NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (scope)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;
