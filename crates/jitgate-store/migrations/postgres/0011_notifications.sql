-- People's e-mail addresses, for notifications by e-mail and the look-up of chat accounts.
ALTER TABLE users ADD COLUMN email TEXT;

-- The notification outbox: one row per message to one destination of one channel, made from
-- a committed audit event (the event is written in the transaction of the change, so nothing
-- acknowledged is lost between the change and its messages). `id` is the idempotency key the
-- receiver sees; `order_key` keeps each request's messages in order per destination.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    order_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, event_seq) WHERE status = 'pending';
CREATE INDEX deliveries_order ON deliveries (channel, destination, order_key, event_seq) WHERE status = 'pending';
CREATE INDEX deliveries_recent ON deliveries (created_at, id);

-- When a grant's holder is warned that it ends: one of the expiry engine's deadlines, cleared
-- once the warning is made. Written with the grant (no statement more in the approval).
ALTER TABLE grants ADD COLUMN warn_at BIGINT;
CREATE INDEX grants_warn_at ON grants (warn_at) WHERE warn_at IS NOT NULL;

-- Secrets of notification channels (webhook keys, chat tokens, SMTP passwords), sealed.
CREATE TABLE channel_secrets (
    channel TEXT PRIMARY KEY,
    key_version INTEGER NOT NULL,
    sealed TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
