-- As SQLite's 0014: a person's identity at the OpenID provider, and a session's last
-- confirmation there.
CREATE TABLE sso_links (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject),
    UNIQUE (issuer, user_id)
);
ALTER TABLE sessions ADD COLUMN reauth_at BIGINT;
