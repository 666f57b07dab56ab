-- Break-glass requests and their after-the-fact acknowledgement; alerts to approvers.
ALTER TABLE requests ADD COLUMN break_glass BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE requests ADD COLUMN acknowledged_by TEXT;
ALTER TABLE requests ADD COLUMN acknowledged_at INTEGER;
CREATE INDEX requests_awaiting_ack ON requests (created_at) WHERE break_glass AND acknowledged_at IS NULL;
-- The notifier outbox: one row per recipient; delivery channels (webhook, e-mail) read it.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    read_at INTEGER
);
CREATE INDEX notifications_recipient ON notifications (recipient, created_at);
