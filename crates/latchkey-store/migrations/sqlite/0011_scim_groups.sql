-- SCIM, continued (SPEC 9). Organisations as Groups: the identity provider's id for one
-- (`external_id`) and its deletion (`deleted_at`: switched off and emptied, the row kept for
-- the audit log). What SCIM may touch: only the people and organisations it made
-- (`provisioned`), never an operator or anyone the CLI or the console made. When a person last
-- changed (`updated_at`, SCIM's `meta.lastModified`), and SCIM's list order (`users_by_created`).
ALTER TABLE orgs ADD COLUMN external_id TEXT;
ALTER TABLE orgs ADD COLUMN deleted_at INTEGER;
ALTER TABLE orgs ADD COLUMN provisioned INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX orgs_by_external_id ON orgs(external_id);
ALTER TABLE users ADD COLUMN provisioned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN updated_at INTEGER;
CREATE INDEX users_by_created ON users(created_at, id);
