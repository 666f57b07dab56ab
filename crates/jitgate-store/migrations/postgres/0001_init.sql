CREATE TABLE users (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE TABLE groups (name TEXT PRIMARY KEY, source TEXT NOT NULL);
CREATE TABLE group_members (
    group_name TEXT NOT NULL,
    username TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (group_name, username)
);
CREATE INDEX group_members_user ON group_members (username);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (username);
CREATE TABLE resources (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    resource TEXT NOT NULL,
    role TEXT NOT NULL,
    reason TEXT NOT NULL,
    ticket TEXT,
    duration_secs BIGINT NOT NULL,
    start_at BIGINT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    extends_grant TEXT
);
CREATE INDEX requests_pending ON requests (expires_at) WHERE status = 'pending';
CREATE INDEX requests_requester ON requests (requester, created_at);
CREATE INDEX requests_created ON requests (created_at);
CREATE TABLE reviews (
    request_id TEXT NOT NULL REFERENCES requests (id),
    reviewer TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT NOT NULL,
    stage BIGINT,
    mfa_method TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, reviewer)
);
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES requests (id),
    username TEXT NOT NULL,
    resource TEXT NOT NULL,
    role TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT,
    revoke_reason TEXT,
    next_deadline BIGINT
);
CREATE INDEX grants_deadline ON grants (next_deadline) WHERE next_deadline IS NOT NULL;
CREATE INDEX grants_user ON grants (username, created_at);
CREATE INDEX grants_created ON grants (created_at);
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_target ON audit_events (target);
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
-- The head follows every insert, so it cannot lag the events; deleting events does not move it
-- back, which is how verification notices a cut tail.
-- One update per statement (a transaction inserts its events in one statement), not per row.
CREATE FUNCTION audit_head_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head h SET seq = n.seq, hash = n.hash
    FROM (SELECT seq, hash FROM new_rows ORDER BY seq DESC LIMIT 1) n
    WHERE h.id = 1 AND n.seq > h.seq;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_follow();
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    ts BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
