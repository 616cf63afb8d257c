-- The single-use part of a mail (a cancel link's code), sealed under the master key. The body
-- holds a placeholder instead; the link is built at send time, so no code is ever stored in
-- clear, not even until the mail is sent (SECURITY.md "Files"). Cleared with the body once sent.
ALTER TABLE outbox ADD COLUMN sealed BLOB;
