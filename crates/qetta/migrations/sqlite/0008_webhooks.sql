-- Webhooks: the app's endpoints, the events raised (the outbox, written in the transaction of the
-- change that caused them) and one delivery per (event, endpoint), claimed by any replica.

CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    url                   TEXT NOT NULL,
    description           TEXT,
    -- JSON array of event types; empty: every type.
    events                TEXT NOT NULL,
    -- Vault ciphertexts bound to (id, 'webhook_endpoint', column).
    secret                BLOB NOT NULL,
    previous_secret       BLOB,
    previous_secret_until INTEGER,
    key_id                TEXT NOT NULL,
    enabled               INTEGER NOT NULL DEFAULT 1,
    disabled_reason       TEXT,
    -- First failure of the current run of failures; NULL after a success.
    failing_since         INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);

CREATE TABLE webhook_events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    ordering_key TEXT,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
    -- Deliveries of one key to one endpoint go out in seq order (the event's key, or its id).
    ordering_key     TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claim_owner      TEXT,
    claimed_until    INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    last_attempt_at  INTEGER,
    delivered_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
-- The claim walks pending deliveries in seq order and stops at its limit.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, ordering_key, status, seq);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
