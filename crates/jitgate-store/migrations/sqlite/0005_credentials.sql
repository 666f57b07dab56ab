-- Upstream passwords of resources, sealed with the server's secrets key like TOTP seeds
-- (the resource name is the associated data, so a sealed value cannot be moved to another).
CREATE TABLE resource_credentials (
    resource TEXT PRIMARY KEY,
    key_version INTEGER NOT NULL,
    sealed_password TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL
);
