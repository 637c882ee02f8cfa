-- Palisade cluster store (MySQL 5.7+, MariaDB 10.x), schema version 3: store generations.
-- Same rules as 0001: every statement can be re-run after a crash half way.
--
-- One row per table whose listings report a total (resources, findings): a number that
-- every transaction writing that table advances, as its last statement before COMMIT.
-- A node keeps the exact totals of recent listings per filter for the generation they
-- were counted at (store/mod.rs, CountCache), and reads the generation in the statement
-- that reads a page: an unchanged generation means unchanged rows, on every node.
CREATE TABLE IF NOT EXISTS store_generations (
    name       VARBINARY(32) NOT NULL,
    generation BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

INSERT IGNORE INTO store_generations (name, generation) VALUES ('findings', 0), ('resources', 0);
