-- Palisade embedded store, schema version 5: findings keyed by resource first.
--
-- The findings table's key becomes (resource_uid, insight). A compliance run walks the
-- resources in uid order, so the findings it opens are appended at the table's end instead
-- of being spread over every insight's part of it, and the table itself answers what the
-- index `findings_resource` did (a resource's findings, and the open findings of a uid
-- range). `findings_insight` holds (insight, resource_uid, state), so a listing in the
-- default order (insight, resource) still walks an index with no sort, filtered by insight
-- or not.
--
-- `findings_cloud_state` is dropped: no query the API or a compliance run makes filters
-- findings by cloud (a run's ranges read the table's key), and its entries were the
-- widest of any index (cloud id, state, uid, insight). Deleting a cloud scans the findings
-- table once instead. Each new finding now goes into two b-trees instead of five in
-- schema 3.

CREATE TABLE findings_v5 (
    resource_uid  TEXT NOT NULL,
    insight       TEXT NOT NULL,
    cloud         TEXT NOT NULL,
    resource      TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    region        TEXT NOT NULL,
    state         TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    resolved_at   INTEGER,
    PRIMARY KEY (resource_uid, insight)
) WITHOUT ROWID;

INSERT INTO findings_v5 (resource_uid, insight, cloud, resource, resource_type, region, state,
                         first_seen, last_seen, resolved_at)
    SELECT resource_uid, insight, cloud, resource, resource_type, region, state, first_seen,
           last_seen, resolved_at
    FROM findings ORDER BY resource_uid, insight;

DROP TABLE findings;
ALTER TABLE findings_v5 RENAME TO findings;

CREATE INDEX findings_insight ON findings (insight, resource_uid, state);
