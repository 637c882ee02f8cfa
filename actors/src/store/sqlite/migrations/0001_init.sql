-- Palisade embedded store, schema version 1.
-- Timestamps are integer milliseconds since the Unix epoch, UTC.

-- Cloud accounts. Credentials are sealed text, `v1:<base64>` (crypto.rs); JSON text only in
-- rows of versions before that, which opening the store seals.
CREATE TABLE clouds (
    id          TEXT PRIMARY KEY NOT NULL,
    provider    TEXT NOT NULL,
    name        TEXT NOT NULL,
    regions     TEXT NOT NULL,
    credentials TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Harvested resources, clustered by uid so that a keyset scan walks the table in order.
-- Small columns come first and properties last, so that reading a row's fixed fields
-- never touches the properties' overflow pages.
CREATE TABLE resources (
    uid        TEXT PRIMARY KEY NOT NULL,
    cloud      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    account    TEXT NOT NULL,
    region     TEXT NOT NULL,
    rtype      TEXT NOT NULL,
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    deleted_at INTEGER,
    tags       TEXT NOT NULL,
    properties TEXT NOT NULL
) WITHOUT ROWID;

-- Secondary indexes never hold a column an upsert of a known uid changes (uid fixes cloud,
-- type, region and id), so re-harvesting touches only the table's own pages. deleted_at
-- comes right after the cloud: `deleted_at IS NULL` is then an equality prefix, the index
-- yields live rows in (type, region, id) order with no sort, and live counts and totals
-- are answered from the index alone.

-- Deletion sweeps, live counts and listings of one cloud.
CREATE INDEX resources_cloud_live_type_region ON resources (cloud, deleted_at, rtype, region, id);
-- Listings and totals across clouds.
CREATE INDEX resources_live_type_region ON resources (deleted_at, rtype, region, id);
-- Lookup by the cloud's own id.
CREATE INDEX resources_native_id ON resources (id);

-- Findings: one row per (insight, resource), with its history.
CREATE TABLE findings (
    insight       TEXT NOT NULL,
    resource_uid  TEXT NOT NULL,
    cloud         TEXT NOT NULL,
    resource      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    region        TEXT NOT NULL,
    state         TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    resolved_at   INTEGER,
    PRIMARY KEY (insight, resource_uid)
) WITHOUT ROWID;

CREATE INDEX findings_insight_state ON findings (insight, state);
CREATE INDEX findings_cloud_state ON findings (cloud, state);
CREATE INDEX findings_resource ON findings (resource_uid);

-- Open findings by resource, with their cloud: a compliance run reads the open findings of
-- one page's uid range from this index alone.
CREATE INDEX findings_open_resource ON findings (resource_uid, cloud) WHERE state = 'open';

-- Completed compliance runs: per scope (a cloud id, or '' for every cloud), the evaluation
-- time of the latest one. An open finding was confirmed by the latest run covering it, so
-- its reported last_seen is at least that time.
CREATE TABLE compliance_runs (
    scope       TEXT PRIMARY KEY NOT NULL,
    finished_at INTEGER NOT NULL
) WITHOUT ROWID;
