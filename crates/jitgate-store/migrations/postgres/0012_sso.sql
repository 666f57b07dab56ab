-- Single sign-on: which provider identity (the issuer's subject) is which jitgate user. A user
-- has at most one identity per provider, and an identity is one user for good.
CREATE TABLE sso_identities (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    username TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    last_sign_in_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE UNIQUE INDEX sso_identities_user ON sso_identities (provider, username);

-- Sign-ins between their halves (sent to the provider, not yet back) and the CLI's hand-offs:
-- keyed by the SHA-256 of the state or code, what the second half needs sealed, short-lived.
CREATE TABLE sso_sign_ins (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    sealed TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_sign_ins_expiry ON sso_sign_ins (expires_at);
