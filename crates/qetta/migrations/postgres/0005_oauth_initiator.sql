-- The browser that started an OAuth flow from a signed-in Qetta session: SHA-256 (hex) of the
-- secret in its short-lived "initiator" cookie. A launch link opened anywhere else shows a
-- confirmation page naming the Qetta account instead of going straight to the provider.
ALTER TABLE oauth_states ADD COLUMN initiator_hash TEXT;
