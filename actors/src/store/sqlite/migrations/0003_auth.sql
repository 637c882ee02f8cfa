-- Palisade embedded store, schema version 3: users, API keys, login sessions, audit log.
-- Secrets are never stored: passwords as argon2id PHC strings, API keys, session tokens and
-- CSRF tokens as the SHA-256 hex of the token.

-- Users. An empty password_hash cannot log in with a password (the `bootstrap` user).
CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- API keys: a public id for listing and revoking; the hash is what a request is matched on.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    user_name  TEXT NOT NULL,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used  INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;

CREATE INDEX api_keys_user ON api_keys (user_name, created_at);

-- Login sessions, by the hash of the cookie's token.
CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY NOT NULL,
    user_name  TEXT NOT NULL,
    csrf_hash  TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_expires ON sessions (expires_at);

-- The audit log: every mutating request that passed authentication, and every login.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at INTEGER NOT NULL,
    principal   TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    client      TEXT NOT NULL,
    status      INTEGER NOT NULL
);
