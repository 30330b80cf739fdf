-- Transaction sync (KFTC): the transactions fetched per connection and account, keyed by a derived
-- fingerprint (KFTC gives no transaction id; see `sync::fingerprint`), and per-connection
-- bookkeeping (change sequence, last sync, next due, the claim of the replica syncing it).

CREATE TABLE transactions (
    connection_id   TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    fingerprint     TEXT NOT NULL,
    fintech_use_num TEXT NOT NULL,
    -- The connection's change sequence at the last change of this row (the sync cursor's order),
    -- and at its first appearance (`added` rather than `modified` for a cursor before it).
    seq             INTEGER NOT NULL,
    added_seq       INTEGER NOT NULL,
    tran_date       TEXT NOT NULL,
    tran_time       TEXT NOT NULL,
    inout_type      TEXT NOT NULL,
    tran_type       TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    balance_after   INTEGER,
    -- Vault ciphertexts bound to ('<connection_id>:<fingerprint>', 'transaction', column).
    print_content   BLOB NOT NULL,
    branch_name     BLOB NOT NULL,
    key_id          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (connection_id, fingerprint)
);
CREATE UNIQUE INDEX transactions_seq ON transactions (connection_id, seq);

CREATE TABLE transaction_sync (
    connection_id  TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    -- The highest seq given to one of the connection's transactions.
    last_seq       INTEGER NOT NULL DEFAULT 0,
    -- JSON object: fintech_use_num -> the last day (YYYYMMDD, Seoul) fetched completely.
    account_days   TEXT NOT NULL DEFAULT '{}',
    last_synced_at INTEGER,
    next_due_at    INTEGER NOT NULL,
    claimed_until  INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX transaction_sync_due ON transaction_sync (next_due_at);
