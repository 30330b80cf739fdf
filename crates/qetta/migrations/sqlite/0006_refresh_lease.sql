-- Refresh lease: the replica refreshing a connection holds a short lease (wall-clock Unix
-- milliseconds) that it extends while it works, so no pooled connection or row lock is held across
-- the provider call, and a crashed holder blocks the others for a few seconds only.
ALTER TABLE connections ADD COLUMN refresh_lease_owner TEXT;
ALTER TABLE connections ADD COLUMN refresh_lease_until INTEGER;
