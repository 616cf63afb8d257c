-- Serving instances (SPEC 7): each `latchkey serve` registers itself and beats every second
-- with the last change of the log it has applied, so that the kill switch can wait until every
-- live instance has applied it, and `latchkey status` can list them.
CREATE TABLE instances (
    id             TEXT PRIMARY KEY,
    address        TEXT NOT NULL,
    version        TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    heartbeat_at   INTEGER NOT NULL,
    applied_change INTEGER NOT NULL
);
