-- Administrators of the /admin dashboard and the /api/v1/admin routes.
-- A grant names a normalised email and is bound to the live account that had that email when it
-- was made (user_id), so an account deleted and registered again by someone else is not an admin.
-- source: 'env' (QETTA_ADMIN_EMAILS, synchronised at every start) or 'cli' (`qetta admin grant`).
CREATE TABLE admins (
    email      TEXT PRIMARY KEY,
    user_id    TEXT,
    source     TEXT NOT NULL CHECK (source IN ('env', 'cli')),
    granted_at BIGINT NOT NULL
);
CREATE INDEX admins_user ON admins (user_id);

-- The dashboard counts refresh outcomes of the last 7 days by action and time.
CREATE INDEX audit_log_action_at ON audit_log (action, at);
