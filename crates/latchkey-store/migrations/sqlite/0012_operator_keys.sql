-- Operator credentials for the back office's API (`/v1/admin`, SPEC 9) live beside the
-- provisioning credentials, told apart by their kind; each reaches only its own paths.
ALTER TABLE provisioning_credentials ADD COLUMN kind TEXT NOT NULL DEFAULT 'provisioning';
