-- Single sign-on (SPEC 9): who a person is at the platform's OpenID provider (the issuer and
-- its `sub`), one identity per person and provider; and when a session last confirmed who it
-- is at the provider (re-authentication before a sensitive action).
CREATE TABLE sso_links (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject),
    UNIQUE (issuer, user_id)
);
ALTER TABLE sessions ADD COLUMN reauth_at INTEGER;
