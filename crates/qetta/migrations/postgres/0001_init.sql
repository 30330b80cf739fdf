-- Qetta Connect schema (PostgreSQL). Times are Unix seconds; ids are UUID text.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- One row per user and provider (the seed's ExternalAuth). Tokens are AES-GCM ciphertexts.
CREATE TABLE connections (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    access_token       BYTEA,
    refresh_token      BYTEA,
    key_id             TEXT,
    token_type         TEXT,
    scope              TEXT,
    expires_at         BIGINT,
    refresh_expires_at BIGINT,
    provider_user_id   TEXT,
    status             TEXT NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    metadata           TEXT NOT NULL DEFAULT '{}',
    version            BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    last_refreshed_at  BIGINT,
    UNIQUE (user_id, provider)
);
CREATE INDEX connections_due ON connections (status, expires_at);

CREATE TABLE oauth_states (
    state           TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    redirect_to     TEXT,
    browser_binding TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    consumed_at     BIGINT
);

CREATE TABLE audit_log (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT NOT NULL,
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
