-- OAuth2 authorization server: clients and their secrets, authorization codes, refresh
-- tokens, and the deny-list of revoked access tokens. Every secret is stored as SHA-256.

CREATE TABLE oauth_clients (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    -- space-separated
    grant_types    TEXT NOT NULL,
    -- newline-separated, compared exactly
    redirect_uris  TEXT NOT NULL,
    -- space-separated
    scopes         TEXT NOT NULL,
    is_confidential INTEGER NOT NULL,
    can_introspect INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    deleted_at     INTEGER
);
CREATE INDEX oauth_clients_by_org ON oauth_clients(org_id);

CREATE TABLE client_secrets (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    secret_hash BLOB NOT NULL UNIQUE,
    hint        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX client_secrets_by_client ON client_secrets(client_id);

-- A grant: what one consent (or one client-credentials client) produced. Access tokens carry
-- its id, so revoking a grant (code reuse, refresh reuse, kill switch) refuses all of them.
CREATE TABLE oauth_grants (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    user_id    TEXT,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX oauth_grants_by_user ON oauth_grants(user_id);

CREATE TABLE auth_codes (
    code_hash      BLOB PRIMARY KEY,
    grant_id       TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens(grant_id);

-- Revoked JWT access tokens, kept until they would have expired anyway.
CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
