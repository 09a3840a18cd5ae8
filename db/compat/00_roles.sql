-- compat-when: select not exists (select from pg_roles where rolname = 'authenticator')
-- Supabase's API roles and default privileges, for a plain PostgreSQL.
-- On Supabase these exist already; scripts/db.sh applies this file only where they are absent.

create schema if not exists extensions;
create extension if not exists pgcrypto with schema extensions;
create extension if not exists "uuid-ossp" with schema extensions;

create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit password 'postgres';
grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role to postgres;

grant usage on schema public to anon, authenticated, service_role;
grant usage on schema extensions to anon, authenticated, service_role;

-- Supabase grants everything new in public to the API roles; the project revokes what it must.
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;

alter role authenticated set statement_timeout = '8s';
alter role anon set statement_timeout = '3s';

do $$
begin
  execute format('alter database %I set search_path = "$user", public, extensions', current_database());
  -- Splinter's API-exposure lints read the schemas PostgREST serves from this setting.
  execute format('alter database %I set pgrst.db_schemas = %L', current_database(), 'public');
end $$;
