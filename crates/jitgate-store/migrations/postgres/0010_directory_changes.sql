-- Every change to the directory (resources, groups, memberships) is announced at commit, to
-- every instance, whoever made it (jitgate or someone with psql): instances remember the
-- directory between decisions and forget it on this announcement.
CREATE FUNCTION jitgate_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jitgate_directory', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER resources_announce AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION jitgate_directory_changed();
CREATE TRIGGER groups_announce AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION jitgate_directory_changed();
CREATE TRIGGER group_members_announce AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_members
    FOR EACH STATEMENT EXECUTE FUNCTION jitgate_directory_changed();

-- Fired even in sessions with session_replication_role = replica (pg_restore
-- --disable-triggers, a logical replication subscriber), which skip ordinary triggers.
ALTER TABLE resources ENABLE ALWAYS TRIGGER resources_announce;
ALTER TABLE groups ENABLE ALWAYS TRIGGER groups_announce;
ALTER TABLE group_members ENABLE ALWAYS TRIGGER group_members_announce;
