-- Each proxy role may log in upstream as its own login, with its own sealed password: the
-- credentials table is keyed by resource and role ('' is the resource's service login).
CREATE TABLE resource_credentials_new (
    resource TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT '',
    key_version INTEGER NOT NULL,
    sealed_password TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (resource, role)
);
INSERT INTO resource_credentials_new (resource, role, key_version, sealed_password, updated_at, updated_by)
    SELECT resource, '', key_version, sealed_password, updated_at, updated_by FROM resource_credentials;
DROP TABLE resource_credentials;
ALTER TABLE resource_credentials_new RENAME TO resource_credentials;
