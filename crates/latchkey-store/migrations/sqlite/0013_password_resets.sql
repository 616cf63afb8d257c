-- Resetting a forgotten password by mail (SPEC 9): a single-use, expiring code, stored only as
-- its SHA-256 (the mail carries it sealed under the master key until it is sent).
CREATE TABLE password_resets (
    code_hash  BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX password_resets_by_user ON password_resets(user_id);
