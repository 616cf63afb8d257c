-- When each client secret last authenticated its app (written at most once in ten minutes
-- per secret, off the request path), so that an admin can see which secret is still in use
-- before removing one.
ALTER TABLE client_secrets ADD COLUMN last_used_at BIGINT;
