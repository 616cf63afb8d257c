-- As SQLite's 0011: organisations' external ids and deletions (SCIM Groups), what SCIM may
-- touch (`provisioned`), when a person last changed, and SCIM's list order.
ALTER TABLE orgs ADD COLUMN external_id TEXT;
ALTER TABLE orgs ADD COLUMN deleted_at BIGINT;
ALTER TABLE orgs ADD COLUMN provisioned BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX orgs_by_external_id ON orgs(external_id);
ALTER TABLE users ADD COLUMN provisioned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN updated_at BIGINT;
CREATE INDEX users_by_created ON users(created_at, id COLLATE "C");
