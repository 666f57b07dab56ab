-- A person's live grants (scheduled or active: those with a next deadline), read by every
-- policy decision, without reading their history.
CREATE INDEX grants_user_live ON grants (username) WHERE next_deadline IS NOT NULL;
