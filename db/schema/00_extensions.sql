-- Extensions and schemas every domain uses.
-- On Supabase, pg_net and supabase_vault are available as extensions; on a plain PostgreSQL,
-- db/compat provides their SQL API instead and these statements are skipped.
create schema if not exists extensions;
create extension if not exists pgcrypto with schema extensions;
-- pg_catalog, as on Supabase: its objects live in schema cron, nothing lands in public.
create extension if not exists pg_cron with schema pg_catalog;

do $$
begin
  if exists (select from pg_catalog.pg_available_extensions where name = 'pg_net') then
    create extension if not exists pg_net with schema extensions;
  end if;
  if exists (select from pg_catalog.pg_available_extensions where name = 'supabase_vault') then
    create extension if not exists supabase_vault cascade;
  end if;
end $$;

-- Helpers that policies and definer functions use; never exposed through the API.
create schema if not exists private;
revoke all on schema private from public;
grant usage on schema private to authenticated, service_role;
comment on schema private is 'Internal helpers of the MCP control plane; not exposed through PostgREST.';

-- Nothing is executable by default: every function grants EXECUTE to the roles that need it.
-- (Supabase grants functions in public to anon by default; the project opts out.)
alter default privileges revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon;
