-- Connection core: several connections per user and provider, each with an id, a label and the
-- provider account it is linked to; connecting the same provider account again updates its
-- connection. The state `consent_expired` joins the state machine (KFTC inquiry consent, SPEC A14).
ALTER TABLE connections DROP CONSTRAINT IF EXISTS connections_user_id_provider_key;
ALTER TABLE connections DROP CONSTRAINT IF EXISTS connections_status_check;
ALTER TABLE connections ADD CONSTRAINT connections_status_check
    CHECK (status IN ('active', 'needs_reauth', 'consent_expired', 'revoked'));
-- The user's own name for the connection ("personal", "business").
ALTER TABLE connections ADD COLUMN label TEXT;
-- The provider account as shown to the user, already masked (never a token).
ALTER TABLE connections ADD COLUMN account_display TEXT;
CREATE INDEX connections_user ON connections (user_id, provider, created_at);
-- One connection per (user, provider, provider account: KFTC user_seq_no, OIDC `sub`, Kakao's or
-- Naver's id); rows without an account (old placeholders) never conflict.
CREATE UNIQUE INDEX connections_account ON connections (user_id, provider, provider_user_id);

-- The flow's own data (JSON: the consent URL, the sealed PKCE verifier, the nonce, the label,
-- the connection being re-consented…); it was only KFTC's auth_type before.
ALTER TABLE oauth_states RENAME COLUMN redirect_to TO flow_data;

-- Placeholder rows of flows that never completed (the old code created the row before the code
-- exchange): no tokens, no provider account, nothing to keep.
DELETE FROM connections WHERE access_token IS NULL AND provider_user_id IS NULL;
