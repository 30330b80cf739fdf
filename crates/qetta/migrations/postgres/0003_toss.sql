-- Toss Certification: verifications, verified identities, and the lease that lets one process
-- at a time fetch the shared service token.

-- Cross-process lease on a service token row (used on SQLite; PostgreSQL uses a row lock).
ALTER TABLE service_tokens ADD COLUMN lock_owner TEXT;
ALTER TABLE service_tokens ADD COLUMN lock_until BIGINT;

-- One row per verification request a user started.
CREATE TABLE toss_verifications (
    tx_id        TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    request_type TEXT NOT NULL CHECK (request_type IN ('USER_PERSONAL', 'USER_NONE')),
    status       TEXT NOT NULL CHECK (status IN ('REQUESTED', 'IN_PROGRESS', 'COMPLETED', 'EXPIRED')),
    requested_at BIGINT NOT NULL,
    completed_at BIGINT,
    -- Successful result calls we made (Toss allows two per txId).
    result_calls BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX toss_verifications_user ON toss_verifications (user_id, created_at);

-- The user's verified identity (the Toss "connection"). Personal fields are vault ciphertexts
-- bound to (user_id, 'toss_identity', column); gender, nationality and age group are plain.
CREATE TABLE toss_identities (
    user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    tx_id       TEXT NOT NULL,
    ci          BYTEA NOT NULL,
    di          BYTEA NOT NULL,
    name        BYTEA NOT NULL,
    birthday    BYTEA NOT NULL,
    signature   BYTEA NOT NULL,
    phone       BYTEA,
    gender      TEXT NOT NULL,
    nationality TEXT NOT NULL,
    age_group   TEXT,
    key_id      TEXT NOT NULL,
    verified_at BIGINT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 0
);
