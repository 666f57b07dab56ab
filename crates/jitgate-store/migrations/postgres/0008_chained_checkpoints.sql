-- Checkpoints chained to the one before (NULL on checkpoints written before this), and the key
-- a checkpoint announces on a rotation.
ALTER TABLE audit_checkpoints ADD COLUMN prev_seq BIGINT;
ALTER TABLE audit_checkpoints ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_checkpoints ADD COLUMN next_key TEXT;
