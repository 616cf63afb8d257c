-- The PostgreSQL schema: the same final schema as SQLite's migrations 0001..0008 together
-- (one file, since no PostgreSQL database predates it). Timestamps are Unix seconds (UTC) in
-- BIGINT; secrets are stored only as SHA-256 hashes (BYTEA). Where the SQLite queries order by
-- `rowid` (insertion order), the table has a `seq BIGSERIAL` for the same order. Text that
-- results are ordered by is `COLLATE "C"`: byte order, as SQLite compares, whatever collation
-- the database was created with (ids are base62, mixed case, which en_US would order apart).

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    password_hash      TEXT NOT NULL,
    is_operator        BOOLEAN NOT NULL DEFAULT FALSE,
    disabled           BOOLEAN NOT NULL DEFAULT FALSE,
    api_tokens_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at         BIGINT NOT NULL
);

CREATE TABLE orgs (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    name               TEXT NOT NULL,
    api_tokens_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at         BIGINT NOT NULL
);

CREATE TABLE org_features (
    org_id  TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    feature TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, feature)
);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'member', 'partner')),
    created_at BIGINT NOT NULL,
    -- insertion order (SQLite's rowid): members and accounts are listed oldest first
    seq        BIGSERIAL NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    token_hash   BYTEA NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    -- the idle timeout counts from it; NULL reads as the creation time
    last_seen_at BIGINT
);
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE tokens (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    token_hash          BYTEA NOT NULL UNIQUE,
    token_type          TEXT NOT NULL,
    owner_kind          TEXT NOT NULL CHECK (owner_kind IN ('user', 'organisation')),
    owner_id            TEXT NOT NULL,
    name                TEXT NOT NULL,
    hint                TEXT NOT NULL,
    scopes              TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    active_from         BIGINT NOT NULL,
    expires_at          BIGINT,
    revoked_at          BIGINT,
    last_used_at        BIGINT,
    last_used_ip        TEXT,
    rotated_from        TEXT,
    -- with grace "first_use": the old token this one ends when it is first used
    ends_on_first_use   TEXT,
    -- AEAD ciphertext of the secret, for types with reveal = "reauth" (never the clear secret)
    secret_ciphertext   BYTEA,
    -- space-separated CIDRs; NULL means any address
    allowed_ips         TEXT,
    -- the key that signed a JWT-format token (kept published while such a token lives)
    signing_kid         TEXT
);
CREATE INDEX tokens_by_owner ON tokens(owner_kind, owner_id, token_type);
-- The expiry-notice sweep reads live tokens by expiry.
CREATE INDEX tokens_expiring ON tokens (expires_at) WHERE revoked_at IS NULL AND expires_at IS NOT NULL;
-- rotate_token and the expiry sweep look a token's successor up.
CREATE INDEX tokens_by_predecessor ON tokens (rotated_from) WHERE rotated_from IS NOT NULL;

-- The audit log. `seq` orders it; `user_id`/`org_id` say whose log an event appears in.
CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    at           BIGINT NOT NULL,
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

CREATE TABLE signing_keys (
    kid         TEXT COLLATE "C" PRIMARY KEY,
    alg         TEXT NOT NULL,
    -- PKCS#8 DER sealed under the master key
    private_key BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    use_from    BIGINT NOT NULL,
    retired_at  BIGINT
);

CREATE TABLE idempotency_keys (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Addresses a token was presented from (allowed or refused), so an owner hears of each new one once.
CREATE TABLE token_addresses (
    token_id   TEXT NOT NULL,
    ip         TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (token_id, ip)
);

-- OAuth2 authorization server: clients and their secrets, authorization codes, refresh
-- tokens, and the deny-list of revoked access tokens. Every secret is stored as SHA-256.
CREATE TABLE oauth_clients (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    -- space-separated
    grant_types        TEXT NOT NULL,
    -- newline-separated, compared exactly
    redirect_uris      TEXT NOT NULL,
    -- space-separated
    scopes             TEXT NOT NULL,
    is_confidential    BOOLEAN NOT NULL,
    can_introspect     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at         BIGINT NOT NULL,
    deleted_at         BIGINT,
    -- the kill switch reaches OAuth too: access tokens of the client issued before this time
    -- are refused (client credentials tokens have no grant to revoke)
    tokens_valid_after BIGINT,
    seq                BIGSERIAL NOT NULL
);
CREATE INDEX oauth_clients_by_org ON oauth_clients(org_id);

CREATE TABLE client_secrets (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    secret_hash BYTEA NOT NULL UNIQUE,
    hint        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    seq         BIGSERIAL NOT NULL
);
CREATE INDEX client_secrets_by_client ON client_secrets(client_id);

-- A grant: what one consent (or one client-credentials client) produced. Access tokens carry
-- its id, so revoking a grant (code reuse, refresh reuse, kill switch) refuses all of them.
CREATE TABLE oauth_grants (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    user_id    TEXT,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX oauth_grants_by_user ON oauth_grants(user_id);
CREATE INDEX oauth_grants_by_client ON oauth_grants(client_id);

CREATE TABLE auth_codes (
    code_hash      BYTEA PRIMARY KEY,
    grant_id       TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens(grant_id);

-- Revoked JWT access tokens, kept until they would have expired anyway.
CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- Notifications (SPEC 6). Mails are written here in the same transaction as the change they
-- report, and sent afterwards by a background worker: a crash or an SMTP outage loses none.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    -- the single-use part of a mail (a cancel link's code), sealed under the master key; the
    -- body holds a placeholder instead. Cleared with the body once sent.
    sealed          BYTEA,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- A worker holding the mail until then; another worker takes it only after the lease ends
    -- (a worker that died mid-send).
    locked_until    BIGINT,
    sent_at         BIGINT,
    last_error      TEXT,
    -- insertion order (SQLite's rowid): mails of one second go out in the order written
    seq             BIGSERIAL NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;

-- Expiry notices already sent: each (token, days before expiry) at most once.
CREATE TABLE expiry_notices (
    token_id TEXT NOT NULL,
    days     BIGINT NOT NULL,
    sent_at  BIGINT NOT NULL,
    PRIMARY KEY (token_id, days)
);

-- One-click cancel links of tokens with an activation delay (SPEC 2.4). Only the SHA-256 of
-- the code is kept; a link works once, and only while its token is still pending.
CREATE TABLE cancel_links (
    code_hash  BYTEA PRIMARY KEY,
    token_id   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

-- What each committed write altered (latchkey-store `change.rs`), in commit order: how another
-- instance learns exactly which cached answers to drop. Each row is also sent as a
-- NOTIFY latchkey_changes in its transaction. Pruned to the latest rows; a process that fell
-- further behind drops its whole cache.
CREATE TABLE changes (
    seq    BIGSERIAL PRIMARY KEY,
    change TEXT NOT NULL
);
