-- Second factors, their ceremonies and the attempt limits.
CREATE TABLE mfa_totp (
    username TEXT PRIMARY KEY,
    -- The seed, sealed with the server's key ring (XChaCha20-Poly1305, owner as associated data).
    key_version INTEGER NOT NULL,
    sealed_seed TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    digits INTEGER NOT NULL,
    period_secs INTEGER NOT NULL,
    -- NULL until the first valid code: only then does the factor count.
    confirmed_at INTEGER,
    -- The last time step accepted: each step is accepted once.
    last_step INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE mfa_passkeys (
    credential_id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    name TEXT NOT NULL,
    passkey TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX mfa_passkeys_user ON mfa_passkeys (username);
CREATE TABLE mfa_recovery_codes (
    username TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (username, code_hash)
);
-- Pending ceremonies (login tickets, WebAuthn challenges): single use, short-lived, shared by
-- every instance.
CREATE TABLE mfa_challenges (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);
-- Consecutive failed password or factor attempts per account name (existing or not).
CREATE TABLE auth_attempts (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until INTEGER
);
ALTER TABLE sessions ADD COLUMN mfa_at INTEGER;
ALTER TABLE sessions ADD COLUMN mfa_method TEXT;
ALTER TABLE requests ADD COLUMN mfa_method TEXT;
