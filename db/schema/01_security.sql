-- Database-wide privileges of the API roles (anon, authenticated), applied before any domain
-- creates an object: what PostgreSQL or the platform grants them by default that they must not
-- hold (the README's "Security" section says what a hosted project allows); and who the
-- caller is by database role, which the audit trail records and the authorization core trusts.

-- The database role the request runs as: the role PostgREST switched to with SET ROLE (the
-- `role` setting, which a definer function leaves as its caller set it), else the session's
-- own user. Unlike the JWT claims, a session cannot set it to a role it is not a member of.
-- plpgsql: with its own search_path a sql function is never inlined, and plans its body again on
-- every statement that calls it; every authorization check asks this one.
create function private.caller_db_role() returns name
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  return case when pg_catalog.current_setting('role') = 'none' then pg_catalog.session_user()
              else pg_catalog.current_setting('role')::name end;
end $$;
comment on function private.caller_db_role() is
  'The database role in effect for the request (SET ROLE, else the session user), as seen from inside a definer function.';
revoke execute on function private.caller_db_role() from public, anon, authenticated, service_role;

-- Sequences: Supabase's default privileges give the API roles ALL on every new sequence of
-- public, so a signed-in user could setval() the audit trail's identity to its maximum and stop
-- every audited write. Identity columns draw their values without any privilege on the
-- sequence, so the API roles need none; the walker (db/tests/functions.test.sql) checks it.
alter default privileges in schema public revoke all on sequences from anon, authenticated;
alter default privileges in schema private revoke all on sequences from anon, authenticated;

-- TEMP: PostgreSQL grants it on the database to PUBLIC, so an API role with a SQL session could
-- plant a temporary type or relation for a definer function to resolve. Every definer function
-- names pg_temp last in its search_path (the first defence, checked by the walker); this is the
-- second: TEMP is taken from PUBLIC and given back to every existing role but the API roles
-- (and authenticator, which only switches to them). Only the database's owner (or a superuser)
-- may change its ACL: where the migrating role may not, the step is skipped with a notice.
do $$
declare
  v_db text := current_database();
  v_role name;
begin
  if not exists (select from pg_catalog.pg_database d join pg_catalog.pg_roles r on r.rolname = current_user
                  where d.datname = v_db and (d.datdba = r.oid or r.rolsuper)) then
    raise notice 'TEMP on database % stays as the platform set it: % does not own it', v_db, current_user;
    return;
  end if;
  for v_role in select r.rolname from pg_catalog.pg_roles r
                 where r.rolname not in ('anon', 'authenticated', 'authenticator') and r.rolname !~ '^pg_'
                   and (pg_catalog.has_database_privilege(r.oid, v_db, 'TEMP')) loop
    execute format('grant temporary on database %I to %I', v_db, v_role);
  end loop;
  execute format('revoke temporary on database %I from public, anon, authenticated, authenticator', v_db);
end $$;
