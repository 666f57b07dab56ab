-- One-time connect tokens (stored as hashes) and the gateway's sessions.
CREATE TABLE connect_tokens (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    resource TEXT NOT NULL,
    role TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    -- Sessions it may still open (a pool or pgbench opens several with one password).
    uses_left INTEGER NOT NULL DEFAULT 1,
    used_at INTEGER
);
CREATE TABLE db_sessions (
    id TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    username TEXT NOT NULL,
    resource TEXT NOT NULL,
    role TEXT NOT NULL,
    peer TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    statements INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX db_sessions_live ON db_sessions (started_at) WHERE ended_at IS NULL;
-- Database roles made for one grant (ephemeral access): the password sealed like TOTP seeds.
CREATE TABLE ephemeral_roles (
    grant_id TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    role_name TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    sealed_password TEXT NOT NULL,
    state TEXT NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX ephemeral_roles_pending ON ephemeral_roles (state);
