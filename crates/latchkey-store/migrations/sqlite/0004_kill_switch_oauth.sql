-- The kill switch reaches OAuth too: access tokens of a client issued before this time are
-- refused (client credentials tokens have no grant to revoke).
ALTER TABLE oauth_clients ADD COLUMN tokens_valid_after INTEGER;
