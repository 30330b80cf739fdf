-- Qetta Connect schema (SQLite). Times are Unix seconds; ids are UUID text.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- One row per user and provider (the seed's ExternalAuth). Tokens are AES-GCM ciphertexts.
CREATE TABLE connections (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    access_token       BLOB,
    refresh_token      BLOB,
    key_id             TEXT,
    token_type         TEXT,
    scope              TEXT,
    expires_at         INTEGER,
    refresh_expires_at INTEGER,
    provider_user_id   TEXT,
    status             TEXT NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    metadata           TEXT NOT NULL DEFAULT '{}',
    version            INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    last_refreshed_at  INTEGER,
    UNIQUE (user_id, provider)
);
CREATE INDEX connections_due ON connections (status, expires_at);

CREATE TABLE oauth_states (
    state           TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    redirect_to     TEXT,
    browser_binding TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    consumed_at     INTEGER
);

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    user_id       TEXT,
    provider      TEXT,
    connection_id TEXT,
    action        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    request_id    TEXT,
    ip            TEXT,
    detail        TEXT NOT NULL DEFAULT '{}',
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_log_user ON audit_log (user_id, id);

-- Small service-wide facts (e.g. the fingerprint of the active encryption key).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
