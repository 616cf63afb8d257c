-- As SQLite's 0010: SCIM's external ids, profiles, versions and deletions, and the
-- provisioning credentials.
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN profile TEXT;
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN deleted_at BIGINT;
CREATE UNIQUE INDEX users_by_external_id ON users(external_id);

CREATE TABLE provisioning_credentials (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash BYTEA NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
