-- Palisade cluster store (MySQL 5.7+, MariaDB 10.x), schema version 5: the server itself
-- refuses tags and properties that are not JSON. Same rules as 0001: every statement can
-- be re-run after a crash half way.
--
-- A resource page is written to the API straight from the stored text. Checking that text
-- to be JSON on every read was a fifth of the interface node's work per page; checked once
-- on write, by the server, it need not be checked again. Palisade writes these columns
-- from serde_json, so every row stored by an earlier version passes; a row edited by hand
-- into something else makes the ALTER fail and names the constraint (find such rows with
-- `SELECT uid FROM resources WHERE NOT JSON_VALID(tags) OR NOT JSON_VALID(properties)`).
--
-- MySQL before 8.0.16 reads CHECK constraints and ignores them: there the store finds no
-- constraint in information_schema and keeps checking on read (see `json_guaranteed`).
--
-- The ALTER checks every row and rebuilds the table in one statement, applied whole or not
-- at all. It runs only while `resources_properties_json` is missing, chosen as in 0004.
SET @palisade_0005 = IF((SELECT COUNT(*) FROM information_schema.table_constraints
        WHERE table_schema = DATABASE() AND table_name = 'resources'
          AND constraint_name = 'resources_properties_json') = 0,
    'ALTER TABLE resources ADD CONSTRAINT resources_tags_json CHECK (JSON_VALID(tags)), ADD CONSTRAINT resources_properties_json CHECK (JSON_VALID(properties))',
    'DO 0');
PREPARE palisade_0005 FROM @palisade_0005;
EXECUTE palisade_0005;
DEALLOCATE PREPARE palisade_0005;
