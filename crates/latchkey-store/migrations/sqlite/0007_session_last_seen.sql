-- The idle timeout of sessions (SECURITY.md, "idle and absolute timeouts"): when a session was
-- last used, written at most once a minute. NULL (sessions made before this migration) reads
-- as the creation time.
ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
