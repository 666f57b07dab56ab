-- A person's live grants (scheduled or active: those with a next deadline), read by every
-- policy decision, without reading their history; covering for the roles they hold now.
CREATE INDEX grants_user_live ON grants (username, resource, role, starts_at, ends_at) WHERE next_deadline IS NOT NULL;
