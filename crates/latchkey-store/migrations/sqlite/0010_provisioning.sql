-- The platform's identities (SPEC 9): people provisioned by SCIM keep the identity provider's
-- id for them (`external_id`) and the profile attributes Latchkey stores but does not use
-- (`profile`, JSON: name, displayName, emails); `version` grows with every change (SCIM's
-- ETags); a deleted user keeps its row for the audit log (`deleted_at`; its email is freed).
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN profile TEXT;
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN deleted_at INTEGER;
CREATE UNIQUE INDEX users_by_external_id ON users(external_id);

-- Provisioning credentials: what a SCIM client authenticates with (an operator makes them).
CREATE TABLE provisioning_credentials (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
