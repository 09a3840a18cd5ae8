-- Attacks from the security review, each tried again: a signed-in user with a raw SQL session
-- (as the authenticated role) plants code in the temporary schema, forges the service_role
-- claim, moves the project's sequences, asks the private helpers about others, and tries to
-- erase the interaction log through its partitions; ids of another organization are probed for
-- existence; users and agents who made history are deleted, and the history stays.
begin;
select plan(49);

select tests.create_user('ada@example.com') as ada \gset
select tests.create_user('eve@example.com') as eve \gset

-- 1. Code planted in the temporary schema does not run as a definer function's owner.
-- Eve holds TEMP here only because the test set-up gives it back to the API roles (pgTAP needs
-- it); the migrations take it away, so first she is refused without it.
do $$ begin execute format('revoke temporary on database %I from authenticated', current_database()); end $$;
select tests.authenticate_as(:'eve');
select throws_ok('create domain pg_temp.probe as text', '42501', null,
                 'without TEMP, an authenticated session cannot create anything in the temporary schema (42501)');
select tests.clear_authentication();
do $$ begin execute format('grant temporary on database %I to authenticated', current_database()); end $$;

-- With TEMP back, so that the search_path alone is tested: Eve plants a uuid domain whose check
-- records who runs it. A definer function that does not pin its search_path shows what it would
-- do: it resolves names through the caller's path, which Eve starts with pg_temp (an empty
-- pinned path searches pg_temp first in the same way).
create function tests.cast_with_callers_search_path(p_text text) returns text
language sql stable security definer as $$ select p_text::uuid::text $$;
grant execute on function tests.cast_with_callers_search_path(text) to authenticated;
select tests.authenticate_as(:'eve');
create function pg_temp.record_runner(p_value text) returns boolean
language plpgsql as $$ begin perform pg_catalog.set_config('tests.planted_code_ran_as', current_user, true); return true; end $$;
create domain pg_temp.uuid as text check (pg_temp.record_runner(value));
select current_setting('search_path') as saved_search_path \gset
select set_config('search_path', 'pg_temp, pg_catalog, public', true);
select tests.cast_with_callers_search_path(:'eve') is not null as cast_done \gset
select set_config('search_path', :'saved_search_path', true);
select is(current_setting('tests.planted_code_ran_as', true), 'postgres',
          'the attack is real: behind an unpinned search_path, the planted check runs as the owner');
select set_config('tests.planted_code_ran_as', '', true);
select is_empty(format('select * from public.get_available_mcp_servers(%L)', :'eve'),
                'the project''s definer functions resolve uuid (auth.uid() included) ...');
select public.create_organization('Eve Corp', 'eve-corp') as evecorp \gset
select is(current_setting('tests.planted_code_ran_as', true), '',
          '... in pg_catalog: the planted check never runs, as the owner or at all');
drop domain pg_temp.uuid;
select tests.clear_authentication();
drop function tests.cast_with_callers_search_path(text);

-- The cast: Acme (Ada, owner; Olga, admin; Mia, member) and Globex (Gus, owner).
select tests.create_user('olga@example.com') as olga \gset
select tests.create_user('mia@example.com') as mia \gset
select tests.create_user('gus@example.com') as gus \gset
select tests.authenticate_as(:'ada');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'olga', 'admin');
select public.add_organization_member(:'acme', :'mia', 'member');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'ada', 'ada-bot') returning id as ada_bot \gset
select public.create_vault_secret('ada-private-token', 'github-token') as ada_secret \gset
select tests.authenticate_as(:'mia');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'mia-bot') returning id as mia_bot \gset
select tests.authenticate_as(:'gus');
select public.create_organization('Globex', 'globex') as globex \gset
insert into public.agents (organization_id, user_id, name) values (:'globex', :'gus', 'gus-bot') returning id as gus_bot \gset
-- Toolboxes are registered by the platform.
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'box-a', 'http://127.0.0.1:30981', 'toolbox-token-0123456789abcdef') as abox \gset
select public.create_toolbox(:'globex', 'box-g', 'http://127.0.0.1:30982', 'toolbox-token-0123456789abcdef') as gbox \gset
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'abox', 'catalog_name', 'memory',
        'instance_name', 'mem-a')) ->> 'id') as amem \gset
select (public.manage_mcp_servers('create', :'globex', jsonb_build_object('toolbox_id', :'gbox', 'catalog_name', 'memory',
        'instance_name', 'mem-g')) ->> 'id') as gmem \gset
select private.apply_instance_event(:'amem', 'deploy') as s \gset
select private.apply_instance_event(:'amem', 'deployed') as s \gset

-- 2. The platform is the service_role database role, not a claim.
select tests.authenticate_as_service_role();
select is(public.get_secret(:'ada_secret'), 'ada-private-token', 'service_role (role and claim) reads any secret');
-- Eve's session as authenticated, with claims she wrote herself saying service_role.
select set_config('role', 'none', true) is not null as reset_role \gset
select set_config('request.jwt.claims', jsonb_build_object('sub', :'eve', 'role', 'service_role', 'aud', 'authenticated')::text, true)
       is not null as forged \gset
select set_config('role', 'authenticated', true) is not null as as_authenticated \gset
select throws_ok(format('select public.get_secret(%L)', :'ada_secret'), '42501', null,
                 'a forged service_role claim in an authenticated session reads no one''s secret (42501)');
select throws_ok(format('select * from public.get_available_mcp_servers(%L)', :'ada'), '42501', null,
                 'nor passes for another user in an RPC taking a user id (42501)');
select throws_ok(format('select public.add_organization_member(%L, %L, %L)', :'acme', :'eve', 'owner'), '42501', null,
                 'nor joins an organization as its owner (42501)');
select public.create_organization('Forged', 'forged') as forged_org \gset
-- And the claim must agree with the role: service_role with a user's claims acts as that user.
select set_config('role', 'none', true) is not null as reset_role \gset
select set_config('request.jwt.claims', jsonb_build_object('sub', :'eve', 'role', 'authenticated')::text, true) is not null as user_claims \gset
select set_config('role', 'service_role', true) is not null as as_service_role \gset
select throws_ok(format('select public.get_secret(%L)', :'ada_secret'), '42501', null,
                 'service_role carrying a user''s claims is that user, not the platform (42501)');
select tests.clear_authentication();
select is(public.get_secret(:'ada_secret'), 'ada-private-token', 'an administrator''s own session is the platform');
select is((select actor_role from public.audit_log where organization_id = :'forged_org' and action = 'membership.insert'),
          'authenticated', 'the audit trail records the database role, not the forged claim');

-- 4. The private helpers answer no question about others.
select tests.authenticate_as(:'eve');
select throws_ok(format('select private.is_org_member(%L, %L)', :'acme', :'ada'), '42501', null,
                 'a stranger cannot ask whether a user belongs to an organization (42501)');
select throws_ok(format('select private.member_role(%L, %L)', :'acme', :'ada'), '42501', null,
                 'nor which role a user holds there (42501)');
select throws_ok(format('select private.org_role(%L)', :'acme'), '42501', null, 'nor call the role helper directly (42501)');
select is(private.is_member_of_my_org(:'acme', :'ada'), false,
          'the policies'' membership helper answers a stranger nothing about an organization they are not in');
select is_empty(format('select 1 where %L::uuid in (select private.my_org_ids(%L))', :'acme', 'viewer'),
                'the one helper the policies need answers about the caller only');
select tests.authenticate_as(:'olga');
select lives_ok(format('update public.agents set user_id = %L where id = %L', :'ada', :'mia_bot'),
                'an admin still hands an agent to another member (the policy reads the members itself)');
select throws_ok(format('update public.agents set user_id = %L where id = %L', :'gus', :'ada_bot'), '42501', null,
                 'but not to someone outside the organization (42501)');
update public.agents set user_id = :'mia' where id = :'mia_bot';

-- 5. Every partition of the interaction log refuses UPDATE, DELETE and TRUNCATE, to the owner too.
select tests.authenticate_as(:'mia');
select public.audit_mcp_interactions(:'mia_bot', jsonb_build_array(jsonb_build_object(
  'server_instance_id', :'amem', 'interaction_type', 'tool_call', 'tool_name', 'read_graph', 'outcome', 'success', 'duration_ms', 5)))
       as logged \gset
select tests.clear_authentication();
select 'private.mcp_interaction_logs_' || to_char(now() at time zone 'UTC', 'YYYY_MM') as this_month \gset
select is((select count(*)::int from only :this_month), 1, 'this month''s partition holds the logged row');
select throws_ok(format('update %s set duration_ms = 0', :'this_month'), '42501', null, 'UPDATE of this month''s partition is refused (42501)');
select throws_ok(format('delete from %s', :'this_month'), '42501', null, 'DELETE is refused (42501)');
select throws_ok(format('truncate %s', :'this_month'), '42501', null, 'TRUNCATE is refused (42501)');
insert into public.mcp_interaction_logs (occurred_at, organization_id, agent_id, actor_role, interaction_type, outcome, duration_ms)
values ('2001-01-01', :'acme', :'mia_bot', 'postgres', 'error', 'error', 1);
select is((select count(*)::int from only private.mcp_interaction_logs_default), 1, 'the default partition holds a row');
select throws_ok('truncate private.mcp_interaction_logs_default', '42501', null, 'TRUNCATE of the default partition is refused (42501)');
select throws_ok('delete from private.mcp_interaction_logs_default', '42501', null, 'so is DELETE (42501)');
-- A partition made later by the partition maker refuses it as well.
select cmp_ok(private.create_interaction_log_partitions(3), '>=', 1, 'the partition maker adds the coming months');
select 'private.mcp_interaction_logs_' || to_char((now() at time zone 'UTC') + interval '3 months', 'YYYY_MM') as later \gset
insert into public.mcp_interaction_logs (occurred_at, organization_id, agent_id, actor_role, interaction_type, outcome, duration_ms)
values (date_trunc('month', now() at time zone 'UTC') + interval '3 months 1 day', :'acme', :'mia_bot', 'postgres', 'error', 'error', 1);
select is((select count(*)::int from only :later), 1, 'a partition it made holds a row');
select throws_ok(format('truncate %s', :'later'), '42501', null, 'and refuses TRUNCATE (42501)');
select throws_ok(format('update %s set duration_ms = 0', :'later'), '42501', null, 'and UPDATE (42501)');

-- 10. An id of another organization is answered as an id that does not exist. Each RPC is
-- called by Ada (owner of Acme, where her agent and server are) with Globex's id, then with an
-- id that names nothing; the outcome (SQLSTATE and message, or the result) must be the same.
create function pg_temp.outcome(p_sql text, p_id uuid) returns text
language plpgsql volatile as $$
declare
  v_result text;
begin
  execute format('select coalesce(jsonb_agg(to_jsonb(q)), ''[]'')::text from (%s) q', p_sql) into v_result;
  return 'result ' || replace(v_result, p_id::text, '<id>');
exception when others then
  return sqlstate || ' ' || replace(sqlerrm, p_id::text, '<id>');
end $$;
grant execute on function pg_temp.outcome(text, uuid) to authenticated;
-- Globex's server presented a changed tool definition to the gateway (the platform), waiting for
-- Globex's approval.
select tests.authenticate_as_service_role();
select count(*) as seen from public.filter_agent_mcp_tools(:'gus_bot', :'gmem', '[{"name": "read_graph", "description": "changed"}]') \gset
select tests.clear_authentication();
select presented_sha256 as gdrift from public.mcp_tool_drift where server_instance_id = :'gmem' \gset
create temp table probes (rpc text, call text, other uuid);
grant select on probes to authenticated;
insert into probes values
  ('add_organization_member (organization)', format('select public.add_organization_member(%%L, %L)', :'eve'), :'globex'),
  ('change_organization_member_role (organization)', format('select public.change_organization_member_role(%%L, %L, ''admin'')', :'gus'), :'globex'),
  ('remove_organization_member (organization)', format('select public.remove_organization_member(%%L, %L)', :'gus'), :'globex'),
  ('organization_access_overview (organization)', 'select * from public.organization_access_overview(%L)', :'globex'),
  ('get_organization_mcp_configs (organization)', format('select public.get_organization_mcp_configs(%%L, %L)', :'ada_bot'), :'globex'),
  ('create_vault_secret (organization)', 'select public.create_vault_secret(''v'', ''n'', '''', %L)', :'globex'),
  ('manage_mcp_servers (organization)', 'select public.manage_mcp_servers(''delete'', %L, null, null)', :'globex'),
  ('grant_agent_mcp_access (server)', format('select public.grant_agent_mcp_access(%L, %%L, ''full_access'')', :'ada_bot'), :'gmem'),
  ('validate_agent_mcp_access (server)', format('select public.validate_agent_mcp_access(%L, %%L)', :'ada_bot'), :'gmem'),
  ('filter_agent_mcp_tools (server)', format('select * from public.filter_agent_mcp_tools(%L, %%L, ''[{"name": "t"}]'')', :'ada_bot'), :'gmem'),
  ('upsert_agent_mcp_connection (server)', format('select public.upsert_agent_mcp_connection(%L, %%L)', :'ada_bot'), :'gmem'),
  ('record_agent_mcp_connection_usage (server)', format('select public.record_agent_mcp_connection_usage(%L, %%L, true, 1)', :'ada_bot'), :'gmem'),
  ('agents_with_tool_access_at (server)', 'select * from public.agents_with_tool_access_at(%L, ''read_graph'')', :'gmem'),
  ('deploy_mcp_server_to_dtma (server)', 'select public.deploy_mcp_server_to_dtma(%L)', :'gmem'),
  ('approve_mcp_tool_definition (server)', format('select public.approve_mcp_tool_definition(%%L, ''read_graph'', %L)', :'gdrift'), :'gmem'),
  ('rotate_mcp_credentials (server)', 'select public.rotate_mcp_credentials(''API_KEY'', ''v'', %L)', :'gmem'),
  ('audit_mcp_interactions (server)', format('select public.audit_mcp_interactions(%L, jsonb_build_array(jsonb_build_object(''server_instance_id'', %%L, ''interaction_type'', ''error'', ''outcome'', ''error'', ''duration_ms'', 1)))', :'ada_bot'), :'gmem'),
  ('get_agent_mcp_servers (agent)', 'select * from public.get_agent_mcp_servers(%L)', :'gus_bot'),
  ('grant_agent_mcp_access (agent)', format('select public.grant_agent_mcp_access(%%L, %L, ''full_access'')', :'amem'), :'gus_bot'),
  ('revoke_agent_mcp_access (agent)', format('select public.revoke_agent_mcp_access(%%L, %L)', :'amem'), :'gus_bot'),
  ('get_agent_oauth_permissions (agent)', 'select * from public.get_agent_oauth_permissions(%L)', :'gus_bot'),
  ('audit_mcp_interactions (agent)', 'select public.audit_mcp_interactions(%L, ''[]'')', :'gus_bot'),
  ('grant_agent_toolbox_access (toolbox)', format('select public.grant_agent_toolbox_access(%L, %%L)', :'ada_bot'), :'gbox'),
  ('delete_toolbox (toolbox)', 'select public.delete_toolbox(%L)', :'gbox'),
  ('rotate_mcp_credentials (toolbox)', 'select public.rotate_mcp_credentials(''API_KEY'', ''v'', null, %L)', :'gbox');
select tests.authenticate_as(:'ada');
select is_empty($$select rpc, pg_temp.outcome(format(call, other), other) as with_another_organizations_id,
                         pg_temp.outcome(format(call, m.id), m.id) as with_a_missing_id
                    from probes cross join lateral (select gen_random_uuid() as id) m
                   where pg_temp.outcome(format(call, other), other) is distinct from pg_temp.outcome(format(call, m.id), m.id)$$,
                'every RPC answers an id of another organization as it answers an id that names nothing');
select is((select count(*)::int from probes where pg_temp.outcome(format(call, other), other) like 'result%'
                                              and rpc not in ('validate_agent_mcp_access (server)', 'filter_agent_mcp_tools (server)')),
          0, 'and every one of them but the validators refuses');
select tests.clear_authentication();

-- 11. Deleting people and agents who made history keeps the history.
-- Olga granted Ada's agent; Mia granted her own; then Olga's account and Mia's agent are deleted.
-- The grants are placed a day back, so that their deletion (now) comes after them.
insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope, granted_by, granted_at)
values (:'acme', :'ada_bot', :'amem', 'full_access', :'olga', now() - interval '1 day') returning id as olga_grant \gset
insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope, granted_by, granted_at)
values (:'acme', :'mia_bot', :'amem', 'read_only', :'mia', now() - interval '1 day') returning id as mia_grant \gset
select now() - interval '12 hours' as granted_time \gset
select lives_ok(format('delete from auth.users where id = %L', :'olga'), 'a user who granted access can be deleted');
select is((select granted_by from public.agent_mcp_server_access where id = :'olga_grant'), :'olga'::uuid,
          'the grant still says who granted it');
select tests.authenticate_as(:'mia');
select isnt_empty(format('delete from public.agents where id = %L returning id', :'mia_bot'),
                  'an agent whose grant is history can be deleted by its owner');
select tests.clear_authentication();
select is((select revoke_reason from public.agent_mcp_server_access where id = :'mia_grant'), 'agent deleted',
          'its live grant ended with it, as a revocation the history keeps');
select tests.authenticate_as(:'ada');
select set_eq(format($$select agent_name, grant_id from public.agents_with_tool_access_at(%L, 'read_graph', %L)$$, :'amem', :'granted_time'),
              format($$values ('ada-bot', %L::uuid), ('mia-bot', %L::uuid)$$, :'olga_grant', :'mia_grant'),
              'which agents could call the tool back then still names both, the deleted agent by its tombstone');
select is((select agent_owner_id from public.agents_with_tool_access_at(:'amem', 'read_graph', :'granted_time') where agent_name = 'mia-bot'),
          :'mia'::uuid, 'with its owner');
select is_empty(format($$select * from public.agents_with_tool_access_at(%L, 'read_graph', now() + interval '1 minute')
                         where agent_name = 'mia-bot'$$, :'amem'), 'and not after its deletion');
select throws_ok(format($$select public.grant_agent_mcp_access(%L, %L, 'full_access')$$, :'mia_bot', :'amem'), '42501', null,
                 'a deleted agent cannot be granted again (42501)');
select tests.clear_authentication();
select throws_ok(format($$insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope)
                          values (%L, %L, %L, 'full_access')$$, :'acme', :'gus_bot', :'amem'), '23503', null,
                 'even the owner cannot write a grant for another organization''s agent (23503)');
select throws_ok(format('update public.agents set organization_id = %L where id = %L', :'globex', :'ada_bot'), '55000', null,
                 'an agent never moves to another organization (55000)');
-- A user who owned agents goes with them, and their tombstones stay.
select tests.authenticate_as(:'ada');
select public.add_organization_member(:'acme', :'gus', 'member');
select tests.authenticate_as(:'gus');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'gus', 'gus-acme-bot') returning id as gus_acme_bot \gset
select tests.clear_authentication();
delete from public.organizations where id = :'globex';
select lives_ok(format('delete from auth.users where id = %L', :'gus'), 'a user who owned agents can be deleted');
select is((select name from private.agent_tombstones where agent_id = :'gus_acme_bot'), 'gus-acme-bot',
          'their agent left a tombstone');
select is((select count(*)::int from private.agent_tombstones where agent_id = :'gus_bot'), 0,
          'but an organization deleted takes its agents'' tombstones with it');

-- 3. The project's sequences are out of the API roles' reach (last: were they not, the attack
-- would stop every insert after it).
select tests.authenticate_as(:'eve');
select throws_ok($$select setval('public.audit_log_id_seq', 9223372036854775807)$$, '42501', null,
                 'a signed-in user cannot move the audit trail''s sequence to its end (42501)');
select throws_ok($$select setval('public.mcp_interaction_logs_id_seq', 9223372036854775807)$$, '42501', null,
                 'nor the interaction log''s (42501)');
select throws_ok($$select setval('public.dtma_requests_id_seq', 9223372036854775807)$$, '42501', null,
                 'nor the DTMA outbox''s (42501)');
select throws_ok($$select nextval('public.audit_log_id_seq')$$, '42501', null, 'nor draw from one (42501)');
select tests.authenticate_as_anon();
select throws_ok($$select setval('public.audit_log_id_seq', 9223372036854775807)$$, '42501', null, 'nor can anon (42501)');

select * from finish();
rollback;
