-- Timestamps are Unix seconds (UTC). Secrets are stored only as SHA-256 hashes.
CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    password_hash      TEXT NOT NULL,
    is_operator        INTEGER NOT NULL DEFAULT 0,
    disabled           INTEGER NOT NULL DEFAULT 0,
    api_tokens_enabled INTEGER NOT NULL DEFAULT 1,
    created_at         INTEGER NOT NULL
);

CREATE TABLE orgs (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    api_tokens_enabled INTEGER NOT NULL DEFAULT 1,
    created_at         INTEGER NOT NULL
);

CREATE TABLE org_features (
    org_id  TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    feature TEXT NOT NULL,
    PRIMARY KEY (org_id, feature)
);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'member', 'partner')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE tokens (
    id                  TEXT PRIMARY KEY,
    token_hash          BLOB NOT NULL UNIQUE,
    token_type          TEXT NOT NULL,
    owner_kind          TEXT NOT NULL CHECK (owner_kind IN ('user', 'organisation')),
    owner_id            TEXT NOT NULL,
    name                TEXT NOT NULL,
    hint                TEXT NOT NULL,
    scopes              TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    active_from         INTEGER NOT NULL,
    expires_at          INTEGER,
    revoked_at          INTEGER,
    last_used_at        INTEGER,
    last_used_ip        TEXT,
    rotated_from        TEXT,
    -- with grace "first_use": the old token this one ends when it is first used
    ends_on_first_use   TEXT
);
CREATE INDEX tokens_by_owner ON tokens(owner_kind, owner_id, token_type);

-- The audit log. `seq` orders it; `user_id`/`org_id` say whose log an event appears in.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    user_id      TEXT,
    org_id       TEXT,
    ip           TEXT,
    outcome      TEXT NOT NULL,
    details      TEXT
);
CREATE INDEX events_by_user ON events(user_id, seq);
CREATE INDEX events_by_org ON events(org_id, seq);

-- Bumped in the same transaction as every change that can alter a verification answer, so
-- that a server's verification cache notices changes made by another process (the CLI).
CREATE TABLE cache_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO cache_epoch (id, value) VALUES (1, 0);
