-- As SQLite's 0013: single-use, expiring password reset codes, stored as SHA-256 only.
CREATE TABLE password_resets (
    code_hash  BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX password_resets_by_user ON password_resets(user_id);
