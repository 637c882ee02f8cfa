-- Palisade embedded store, schema version 2: the compliance scan reads narrow rows.
--
-- A resource's properties move to their own table, and the resources table gains `facts`:
-- the part of the properties that the insights of the writing node's catalog read (its
-- projection, as JSON text), under the catalog's fingerprint `facts_fp`. A compliance run
-- reads facts whose fingerprint is its catalog's and the properties otherwise, so the
-- resources table it walks holds a few hundred bytes a row instead of whole API documents.

CREATE TABLE resource_properties (
    uid        TEXT PRIMARY KEY NOT NULL,
    properties TEXT NOT NULL
) WITHOUT ROWID;

INSERT INTO resource_properties (uid, properties) SELECT uid, properties FROM resources;

CREATE TABLE resources_v2 (
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
    facts_fp   INTEGER,
    facts      TEXT
) WITHOUT ROWID;

INSERT INTO resources_v2 (uid, cloud, provider, account, region, rtype, id, name, first_seen,
                          last_seen, deleted_at, tags, facts_fp, facts)
    SELECT uid, cloud, provider, account, region, rtype, id, name, first_seen, last_seen,
           deleted_at, tags, NULL, NULL FROM resources;

DROP TABLE resources;
ALTER TABLE resources_v2 RENAME TO resources;

-- The indexes of version 1, on the new table.
CREATE INDEX resources_cloud_live_type_region ON resources (cloud, deleted_at, rtype, region, id);
CREATE INDEX resources_live_type_region ON resources (deleted_at, rtype, region, id);
CREATE INDEX resources_native_id ON resources (id);
