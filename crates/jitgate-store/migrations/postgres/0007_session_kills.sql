-- An administrator's kill of a gateway session, for whichever instance runs it.
ALTER TABLE db_sessions ADD COLUMN kill_reason TEXT;
