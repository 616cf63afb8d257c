-- Notifications (SPEC 6). Mails are written here in the same transaction as the change they
-- report, and sent afterwards by a background worker: a crash or an SMTP outage loses none.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- A worker holding the mail until then; another worker takes it only after the lease ends
    -- (a worker that died mid-send).
    locked_until    INTEGER,
    sent_at         INTEGER,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;

-- The expiry-notice sweep reads live tokens by expiry.
CREATE INDEX tokens_expiring ON tokens (expires_at) WHERE revoked_at IS NULL AND expires_at IS NOT NULL;

-- Expiry notices already sent: each (token, days before expiry) at most once.
CREATE TABLE expiry_notices (
    token_id TEXT NOT NULL,
    days     INTEGER NOT NULL,
    sent_at  INTEGER NOT NULL,
    PRIMARY KEY (token_id, days)
);

-- One-click cancel links of tokens with an activation delay (SPEC 2.4). Only the SHA-256 of
-- the code is kept; a link works once, and only while its token is still pending.
CREATE TABLE cancel_links (
    code_hash  BLOB PRIMARY KEY,
    token_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
