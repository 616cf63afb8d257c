-- Serving instances (SPEC 7), as SQLite's 0009: each `latchkey serve` registers itself and
-- beats every second with the last change of the log it has applied.
CREATE TABLE instances (
    id             TEXT COLLATE "C" PRIMARY KEY,
    address        TEXT NOT NULL,
    version        TEXT NOT NULL,
    started_at     BIGINT NOT NULL,
    heartbeat_at   BIGINT NOT NULL,
    applied_change BIGINT NOT NULL
);
