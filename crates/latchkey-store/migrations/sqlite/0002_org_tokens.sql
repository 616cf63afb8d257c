-- Organisation tokens: revealable secrets, JWT signing keys, IP allowlists, idempotent creates.

-- AEAD ciphertext of the secret, for types with reveal = "reauth" (never the clear secret).
ALTER TABLE tokens ADD COLUMN secret_ciphertext BLOB;
-- Space-separated CIDRs; NULL means any address.
ALTER TABLE tokens ADD COLUMN allowed_ips TEXT;
-- The key that signed a JWT-format token (kept published while such a token lives).
ALTER TABLE tokens ADD COLUMN signing_kid TEXT;

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    -- PKCS#8 DER sealed under the master key
    private_key BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    use_from    INTEGER NOT NULL,
    retired_at  INTEGER
);

CREATE TABLE idempotency_keys (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Addresses a token was presented from (allowed or refused), so an owner hears of each new one once.
CREATE TABLE token_addresses (
    token_id   TEXT NOT NULL,
    ip         TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (token_id, ip)
);
