-- Palisade cluster store (MySQL 5.7+, MariaDB 10.x), schema version 2: users, API keys,
-- login sessions, audit log. Same rules as 0001: every statement can be re-run after a
-- crash half way; keys are VARBINARY, free text utf8mb4 with a binary collation.
--
-- Secrets are never stored: passwords as argon2id PHC strings, API keys, session tokens and
-- CSRF tokens as the SHA-256 hex of the token.

-- Users. An empty password_hash cannot log in with a password (the `bootstrap` user).
CREATE TABLE IF NOT EXISTS users (
    name          VARBINARY(64) NOT NULL,
    role          VARBINARY(16) NOT NULL,
    password_hash VARBINARY(255) NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- API keys: a public id for listing and revoking; the hash is what a request is matched on.
CREATE TABLE IF NOT EXISTS api_keys (
    id         VARBINARY(32) NOT NULL,
    user_name  VARBINARY(64) NOT NULL,
    name       VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    hash       VARBINARY(64) NOT NULL,
    created_at BIGINT NOT NULL,
    last_used  BIGINT NULL,
    revoked_at BIGINT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY api_keys_hash (hash),
    KEY api_keys_user (user_name, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- Login sessions, by the hash of the cookie's token.
CREATE TABLE IF NOT EXISTS sessions (
    hash       VARBINARY(64) NOT NULL,
    user_name  VARBINARY(64) NOT NULL,
    csrf_hash  VARBINARY(64) NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (hash),
    KEY sessions_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;

-- The audit log: every mutating request that passed authentication, and every login.
CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGINT NOT NULL AUTO_INCREMENT,
    occurred_at BIGINT NOT NULL,
    principal   VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    action      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    target      VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    client      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    status      SMALLINT NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin ROW_FORMAT = DYNAMIC;
