-- Palisade embedded store, schema version 4: four b-trees per finding instead of five.
--
-- `findings_resource` (the findings of one resource) and the partial `findings_open_resource`
-- (the open findings of a uid range, read by every compliance run) become one index that
-- serves both, covering the compliance run's query (resource_uid, state, cloud, and the
-- insight from the primary key). A compliance run writing its first findings on an estate
-- inserts each finding into one b-tree fewer.

DROP INDEX findings_resource;
DROP INDEX findings_open_resource;
CREATE INDEX findings_resource ON findings (resource_uid, state, cloud);
