-- Connection core: several connections per user and provider, each with an id, a label and the
-- provider account it is linked to; connecting the same provider account again updates its
-- connection. The state `consent_expired` joins the state machine (KFTC inquiry consent, SPEC A14).
--
-- SQLite cannot drop a table constraint, so the table is rebuilt with the same rows.
CREATE TABLE connections_new (
    id                    TEXT PRIMARY KEY,
    user_id               TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider              TEXT NOT NULL,
    access_token          BLOB,
    refresh_token         BLOB,
    key_id                TEXT,
    token_type            TEXT,
    scope                 TEXT,
    expires_at            INTEGER,
    refresh_expires_at    INTEGER,
    -- The provider account: KFTC user_seq_no, the OIDC `sub`, Kakao's or Naver's account id.
    provider_user_id      TEXT,
    status                TEXT NOT NULL CHECK (status IN ('active', 'needs_reauth', 'consent_expired', 'revoked')),
    metadata              TEXT NOT NULL DEFAULT '{}',
    version               INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    last_refreshed_at     INTEGER,
    refresh_failures      INTEGER NOT NULL DEFAULT 0,
    next_refresh_at       INTEGER,
    refresh_claimed_until INTEGER,
    refresh_lease_owner   TEXT,
    refresh_lease_until   INTEGER,
    -- The user's own name for the connection ("personal", "business").
    label                 TEXT,
    -- The provider account as shown to the user, already masked (never a token).
    account_display       TEXT
);
INSERT INTO connections_new (id, user_id, provider, access_token, refresh_token, key_id, token_type, scope, expires_at,
    refresh_expires_at, provider_user_id, status, metadata, version, created_at, updated_at, last_refreshed_at,
    refresh_failures, next_refresh_at, refresh_claimed_until, refresh_lease_owner, refresh_lease_until)
SELECT id, user_id, provider, access_token, refresh_token, key_id, token_type, scope, expires_at,
    refresh_expires_at, provider_user_id, status, metadata, version, created_at, updated_at, last_refreshed_at,
    refresh_failures, next_refresh_at, refresh_claimed_until, refresh_lease_owner, refresh_lease_until
FROM connections;
DROP TABLE connections;
ALTER TABLE connections_new RENAME TO connections;
CREATE INDEX connections_due ON connections (status, expires_at);
CREATE INDEX connections_user ON connections (user_id, provider, created_at);
-- One connection per (user, provider, provider account); rows without an account (none are
-- written any more, old placeholders may exist) never conflict.
CREATE UNIQUE INDEX connections_account ON connections (user_id, provider, provider_user_id);

-- The flow's own data (JSON: the consent URL, the sealed PKCE verifier, the nonce, the label,
-- the connection being re-consented…); it was only KFTC's auth_type before.
ALTER TABLE oauth_states RENAME COLUMN redirect_to TO flow_data;

-- Placeholder rows of flows that never completed (the old code created the row before the code
-- exchange): no tokens, no provider account, nothing to keep.
DELETE FROM connections WHERE access_token IS NULL AND provider_user_id IS NULL;
