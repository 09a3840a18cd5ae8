-- Test-only support, applied by scripts/test.sh to the test database before pg_prove runs
-- (never part of the migrations): pgTAP, dblink (to look from a second session), and the
-- helpers that let a test act as a user, as anon or as service_role the way PostgREST does.
create extension if not exists pgtap with schema extensions;
create extension if not exists dblink with schema extensions;
-- The project revokes EXECUTE by default (db/schema/00_extensions.sql); tests call pgTAP as
-- any role.
grant execute on all functions in schema extensions to anon, authenticated, service_role;
-- pgTAP's set comparisons (set_eq, results_eq...) create temporary tables as the acting role;
-- the migrations take TEMP from the API roles (db/schema/01_security.sql), the tests give it back.
do $$ begin execute format('grant temporary on database %I to anon, authenticated', current_database()); end $$;

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

-- Creates a user in auth.users and returns its id.
create or replace function tests.create_user(p_email text) returns uuid
language sql volatile security definer set search_path = pg_catalog, pg_temp
as $$
  insert into auth.users (email, raw_app_meta_data, raw_user_meta_data, email_confirmed_at)
  values (p_email, '{"provider": "email"}', '{}', now())
  returning id
$$;

-- Acts as a role with the given JWT claims for the rest of the transaction, as PostgREST does:
-- `set local role` and `request.jwt.claims` (the role claim included), both transaction-local.
create or replace function tests.authenticate_with(p_role text, p_claims jsonb) returns void
language plpgsql volatile
as $$
begin
  perform set_config('role', 'none', true);
  perform set_config('request.jwt.claims', (p_claims || jsonb_build_object('role', p_role))::text, true);
  perform set_config('role', p_role, true);
end $$;

create or replace function tests.authenticate_as(p_user_id uuid) returns void
language plpgsql volatile
as $$
declare
  v_email text;
begin
  perform set_config('role', 'none', true);
  select u.email into v_email from auth.users u where u.id = p_user_id;
  perform tests.authenticate_with('authenticated', jsonb_build_object(
    'sub', p_user_id, 'email', v_email, 'aud', 'authenticated',
    'exp', extract(epoch from now() + interval '1 hour')::bigint));
end $$;

create or replace function tests.authenticate_as_anon() returns void
language sql volatile
as $$ select tests.authenticate_with('anon', '{}'::jsonb) $$;

create or replace function tests.authenticate_as_service_role() returns void
language sql volatile
as $$ select tests.authenticate_with('service_role', '{}'::jsonb) $$;

-- Back to the test's own superuser session, with no claims.
create or replace function tests.clear_authentication() returns void
language plpgsql volatile
as $$
begin
  perform set_config('role', 'none', true);
  perform set_config('request.jwt.claims', '', true);
end $$;

-- A second session (dblink) on this database: what another client, such as the pg_net worker,
-- can see before this transaction commits.
create or replace function tests.other_session_count(p_sql text) returns bigint
language plpgsql volatile
as $$
declare
  v_count bigint;
begin
  select n into v_count from extensions.dblink(
    format('host=127.0.0.1 port=%s dbname=%s user=postgres password=%s',
           current_setting('port'), current_database(), coalesce(current_setting('tests.db_password', true), 'postgres')),
    format('select count(*) from (%s) q', p_sql)) as t(n bigint);
  return v_count;
end $$;

grant execute on all functions in schema tests to anon, authenticated, service_role;
