-- What each committed write altered (latchkey-store `change.rs`), in commit order: how another
-- process sharing the database (the operator CLI and the server) learns exactly which cached
-- answers to drop. Replaces the single cache epoch, which could only say "something changed".
-- Pruned to the latest rows; a process that fell further behind drops its whole cache.
CREATE TABLE changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    change TEXT NOT NULL
);
DROP TABLE cache_epoch;
