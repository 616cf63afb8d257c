-- As SQLite's 0012: operator credentials beside the provisioning credentials, by kind.
ALTER TABLE provisioning_credentials ADD COLUMN kind TEXT NOT NULL DEFAULT 'provisioning';
