-- The authorization core answers once for everyone: the admins' overview and every validator
-- agree on the state of a grant, whatever makes it (in)valid. Acme's admin Olga grants eight
-- agents a server each, and each grant is then put in one state: valid, its agent deactivated,
-- its owner gone from the organization, its owner made a viewer, expired, revoked, its server
-- stopped, its server never deployed. Then only an owner touches an owner, by the role check.
begin;
select plan(16);

select tests.create_user('olga@example.com') as olga \gset
select tests.create_user('mia@example.com') as mia \gset
select tests.create_user('lea@example.com') as lea \gset
select tests.create_user('vic@example.com') as vic \gset
select tests.create_user('ann@example.com') as ann \gset
select tests.authenticate_as(:'olga');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'mia', 'member');
select public.add_organization_member(:'acme', :'lea', 'member');
select public.add_organization_member(:'acme', :'vic', 'member');
select public.add_organization_member(:'acme', :'ann', 'admin');
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'box-a', 'http://127.0.0.1:30983', 'toolbox-token-0123456789abcdef') as abox \gset
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'abox', 'catalog_name', 'memory',
        'instance_name', 'running')) ->> 'id') as running \gset
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'abox', 'catalog_name', 'memory',
        'instance_name', 'stopped')) ->> 'id') as stopped \gset
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'abox', 'catalog_name', 'memory',
        'instance_name', 'pending')) ->> 'id') as pending \gset
select private.apply_instance_event(:'running', 'deploy') as s \gset
select private.apply_instance_event(:'running', 'deployed') as s \gset
select private.apply_instance_event(:'stopped', 'deploy') as s \gset
select private.apply_instance_event(:'stopped', 'deployed') as s \gset

create temp table cases (expected text, agent uuid, server uuid);
grant select, insert on cases to authenticated;
select tests.authenticate_as(:'mia');
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'valid') returning id)
insert into cases select 'valid', id, :'running'::uuid from a;
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'inactive') returning id)
insert into cases select 'agent inactive', id, :'running'::uuid from a;
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'expired') returning id)
insert into cases select 'expired', id, :'running'::uuid from a;
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'revoked') returning id)
insert into cases select 'revoked', id, :'running'::uuid from a;
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'on a stopped server') returning id)
insert into cases select 'server stopped', id, :'stopped'::uuid from a;
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'on a pending server') returning id)
insert into cases select 'server pending', id, :'pending'::uuid from a;
select tests.authenticate_as(:'lea');
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'lea', 'owner left') returning id)
insert into cases select 'owner not a member', id, :'running'::uuid from a;
select tests.authenticate_as(:'vic');
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'vic', 'owner made viewer') returning id)
insert into cases select 'owner not a member', id, :'running'::uuid from a;

-- Olga grants each its server (the expired one a day back, expired since an hour).
select tests.authenticate_as(:'olga');
select count(public.grant_agent_mcp_access(agent, server, 'full_access')) as granted from cases where expected <> 'expired' \gset
select tests.clear_authentication();
insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope, granted_by,
                                            granted_at, expires_at)
select :'acme', agent, server, 'full_access', :'olga', now() - interval '1 day', now() - interval '1 hour'
  from cases where expected = 'expired';
-- Then each is put in its state.
select tests.authenticate_as(:'olga');
update public.agents set is_active = false where id = (select agent from cases where expected = 'agent inactive');
select public.revoke_agent_mcp_access(agent, server) as revoked from cases where expected = 'revoked' \gset
select public.remove_organization_member(:'acme', :'lea');
select public.change_organization_member_role(:'acme', :'vic', 'viewer');
select tests.clear_authentication();
select private.apply_instance_event(:'stopped', 'stop') as s \gset
select private.apply_instance_event(:'stopped', 'stopped') as s \gset

select tests.authenticate_as(:'olga');
create temp view verdicts as
  select c.expected, o.state as overview,
         public.validate_agent_mcp_access(c.agent, c.server) as validate,
         public.validate_agent_mcp_access(c.agent, c.server, 'read_graph') as validate_tool,
         public.validate_mcp_access(c.agent, c.server) as validate_mcp,
         exists (select from public.get_agent_mcp_servers(c.agent) s where s.server_instance_id = c.server) as listed
    from cases c
    join public.agents a on a.id = c.agent
    join public.organization_access_overview(:'acme') o on o.agent = a.name;
grant select on verdicts to authenticated;
select is((select count(*)::int from verdicts), 8, 'the overview shows the eight grants');
select is_empty($$select * from verdicts where overview <> expected$$, 'the overview names each state');
select is_empty($$select * from verdicts where (overview = 'valid') <> validate$$,
                'validate_agent_mcp_access agrees with the overview on every state');
select is_empty($$select * from verdicts where (overview = 'valid') <> validate_tool$$, 'so does its tool-level variant');
select is_empty($$select * from verdicts where (overview = 'valid') <> validate_mcp$$, 'so does validate_mcp_access');
select is_empty($$select * from verdicts where (overview = 'valid') <> listed$$, 'and get_agent_mcp_servers lists exactly the valid ones');
select is((select count(*)::int from verdicts where validate), 1, 'of which one is valid');

-- OAuth permissions have one state too: Mia lends her GitHub account to three agents; one
-- permission expires, one agent is handed to Ann (the account stays Mia's). The admins' list,
-- the usage counter and the token agree on each.
select tests.authenticate_as(:'mia');
select public.store_user_oauth_connection('github', 'gho_mia', 'ghr_mia', 3600, array['repo']) as github \gset
create temp table oauth_cases (expected text, agent uuid, runtime uuid);
grant select, insert, update on oauth_cases to authenticated;
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'oauth valid') returning id)
insert into oauth_cases select 'valid', id, :'mia' from a;
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'oauth expired') returning id)
insert into oauth_cases select 'expired', id, :'mia' from a;
with a as (insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'oauth handed over') returning id)
insert into oauth_cases select 'owner_changed', id, :'ann' from a;
select count(public.grant_agent_oauth_access(agent, :'github', array['repo'])) as lent from oauth_cases
 where expected <> 'expired' \gset
select tests.clear_authentication();
insert into public.agent_oauth_permissions (organization_id, agent_id, connection_id, scopes, granted_by, granted_at, expires_at)
select :'acme', agent, :'github', array['repo'], :'mia', now() - interval '1 day', now() - interval '1 hour'
  from oauth_cases where expected = 'expired';
select tests.authenticate_as(:'olga');
update public.agents set user_id = :'ann' where id = (select agent from oauth_cases where expected = 'owner_changed');
select tests.clear_authentication();
create function pg_temp.oauth_verdict(p_agent uuid, p_runtime uuid, p_connection uuid) returns text[]
language plpgsql volatile as $$
declare
  v_state text;
  v_usage text;
  v_token text;
begin
  perform tests.authenticate_as((select u.id from auth.users u where u.email = 'olga@example.com'));
  select s.state into v_state from public.get_agent_oauth_permissions(p_agent) s;
  perform tests.authenticate_as(p_runtime);
  begin
    perform public.record_agent_oauth_usage(p_agent, p_connection);
    v_usage := 'counted';
  exception when others then
    v_usage := sqlstate;
  end;
  begin
    select t.status into v_token from public.get_agent_oauth_token(p_agent, 'github', array['repo']) t;
  exception when others then
    v_token := sqlstate;
  end;
  perform tests.clear_authentication();
  return array[v_state, v_usage, v_token];
end $$;
create temp table oauth_verdicts as
  select c.expected, v[1] as listed, v[2] as usage, v[3] as token
    from oauth_cases c cross join lateral pg_temp.oauth_verdict(c.agent, c.runtime, :'github') v;
select is_empty($$select * from oauth_verdicts where listed is distinct from expected$$,
                'the admins'' list names each OAuth permission''s state');
select is_empty($$select * from oauth_verdicts where (listed = 'valid') <> (usage = 'counted')$$,
                'the usage counter counts exactly the valid ones (a handed-over agent no longer uses its former owner''s account)');
select is_empty($$select * from oauth_verdicts where (listed = 'valid') <> (token = 'ok')$$,
                'and the token goes exactly to the valid ones');
select is((select array_agg(usage || '/' || token order by expected) from oauth_verdicts where listed <> 'valid'),
          array['42501/42501', '42501/42501'], 'the others are refused by both (42501)');

-- Only an owner touches an owner: an admin is refused by the role check itself.
select tests.authenticate_as(:'ann');
select throws_ok(format($$select public.add_organization_member(%L, %L, 'owner')$$, :'acme', :'lea'), '42501',
                 format('requires the owner role (or stronger) in organization %s', :'acme'),
                 'an admin cannot add an owner (42501, the owner role is required)');
select throws_ok(format($$select public.change_organization_member_role(%L, %L, 'owner')$$, :'acme', :'mia'), '42501',
                 format('requires the owner role (or stronger) in organization %s', :'acme'), 'nor make one');
select throws_ok(format($$select public.change_organization_member_role(%L, %L, 'member')$$, :'acme', :'olga'), '42501',
                 format('requires the owner role (or stronger) in organization %s', :'acme'), 'nor unmake one');
select throws_ok(format($$select public.remove_organization_member(%L, %L)$$, :'acme', :'olga'), '42501',
                 format('requires the owner role (or stronger) in organization %s', :'acme'), 'nor remove one');
select tests.authenticate_as(:'olga');
select lives_ok(format($$select public.change_organization_member_role(%L, %L, 'owner')$$, :'acme', :'ann'),
                'an owner makes an admin owner');

select * from finish();
rollback;
