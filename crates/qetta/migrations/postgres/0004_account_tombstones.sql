-- Account deletion and backend-minted users.
-- A deleted account keeps its row as a tombstone (email and password hash wiped, deleted_at set),
-- so that every JWT naming it is refused and a backend JWT cannot bring it back.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;

-- Users minted by the app's backend had the placeholder email '{id}@external.invalid', which a
-- registration could take first. The placeholder now contains a space, which no accepted email
-- can (see password::normalize_email).
UPDATE users SET email = 'external ' || id || '@external.invalid'
 WHERE password_hash = '!' AND email = id || '@external.invalid';
