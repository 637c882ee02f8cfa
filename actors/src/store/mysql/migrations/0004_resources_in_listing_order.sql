-- Palisade cluster store (MySQL 5.7+, MariaDB 10.x), schema version 4: resources clustered
-- in the order they are listed in. Same rules as 0001: every statement can be re-run after
-- a crash half way.
--
-- A resource page (one type and one region, in native id order) read each of its rows, and
-- each row it skipped to reach the page, through a lookup from `resources_live_type_region`
-- into the table clustered by uid: a B-tree descent per row, the most of the server's work
-- per page (MariaDB 10.11, 100k resources, offset 100: 2.3 times the work of the same page
-- read from a table clustered in listing order). Clustered by (rtype, region, id, uid), a
-- page and the rows before it are neighbours on the same leaf pages.
--
-- The uid stays unique (`resources_uid`). A lookup by uid, and the compliance scan in uid
-- order, go through that index and then the table: one more step each.
--
-- A uid fixes its cloud, type, region and id (upserts never rewrite them), so no row ever
-- moves in the new key. Every secondary index now ends in (rtype, region, id, uid) instead
-- of uid; none is longer than InnoDB's 3072 bytes.
--
-- The ALTER rebuilds the table in one statement, which InnoDB applies whole or not at all.
-- It runs only while `resources_uid` is missing, so that a re-run after the rebuild does
-- nothing; MySQL has no `ADD KEY IF NOT EXISTS`, hence the statement chosen from
-- information_schema and prepared.
SET @palisade_0004 = IF((SELECT COUNT(*) FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'resources'
          AND index_name = 'resources_uid') = 0,
    'ALTER TABLE resources DROP PRIMARY KEY, ADD PRIMARY KEY (rtype, region, id, uid), ADD UNIQUE KEY resources_uid (uid)',
    'DO 0');
PREPARE palisade_0004 FROM @palisade_0004;
EXECUTE palisade_0004;
DEALLOCATE PREPARE palisade_0004;
