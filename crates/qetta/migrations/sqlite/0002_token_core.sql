-- Token core: refresh bookkeeping shared by all replicas, and service-level (client-credentials) tokens.
ALTER TABLE connections ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
-- While refresh keeps failing, no attempt before this time (callers get a fast answer).
ALTER TABLE connections ADD COLUMN next_refresh_at INTEGER;
-- The background refresher's claim: other replicas skip the row until then.
ALTER TABLE connections ADD COLUMN refresh_claimed_until INTEGER;

-- One row per provider for tokens that belong to the service, not to a user (Toss client credentials).
CREATE TABLE service_tokens (
    provider     TEXT PRIMARY KEY,
    access_token BLOB NOT NULL,
    key_id       TEXT NOT NULL,
    token_type   TEXT NOT NULL,
    scope        TEXT NOT NULL,
    expires_at   INTEGER,
    version      INTEGER NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL
);

-- KFTC bank_tran_id counters: unique per day across all replicas (replicas reserve blocks).
CREATE TABLE kftc_tran_counters (
    day  TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);
