-- Each proxy role may log in upstream as its own login, with its own sealed password: the
-- credentials table is keyed by resource and role ('' is the resource's service login).
ALTER TABLE resource_credentials ADD COLUMN role TEXT NOT NULL DEFAULT '';
ALTER TABLE resource_credentials DROP CONSTRAINT resource_credentials_pkey;
ALTER TABLE resource_credentials ADD PRIMARY KEY (resource, role);
