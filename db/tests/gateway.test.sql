-- Gateway: Mia (a member) gives her agent an API key for the MCP gateway; the key is shown once,
-- kept as a hash, listed by its prefix, and refused once revoked or expired. Only the gateway
-- (service_role) turns a key, or a user acting for an agent, into an agent, lists the servers
-- the agent reaches and reads an upstream credential; no member, viewer or stranger can. Every
-- answer is taken when asked: revocation, expiry at its instant, a stopped server and a removed
-- member hold at once. Resources and prompts follow the scope (read_only, full_access: yes;
-- custom: no).
begin;
select plan(62);

select tests.create_user('olga@acme.test') as olga \gset
select tests.create_user('adam@acme.test') as adam \gset
select tests.create_user('mia@acme.test') as mia \gset
select tests.create_user('max@acme.test') as max \gset
select tests.create_user('vic@acme.test') as vic \gset
select tests.create_user('bob@globex.test') as bob \gset

select tests.authenticate_as(:'bob');
select public.create_organization('Globex', 'globex') as globex \gset
insert into public.agents (organization_id, user_id, name) values (:'globex', :'bob', 'Bob''s agent') returning id as bob_agent \gset

select tests.authenticate_as(:'olga');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'adam', 'admin');
select public.add_organization_member(:'acme', :'mia', 'member');
select public.add_organization_member(:'acme', :'max', 'member');
select public.add_organization_member(:'acme', :'vic', 'viewer');
-- The platform registers the toolbox.
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'edge-1', 'https://edge-1.acme.test', 'acme-dtma-token-0123456789') as edge1 \gset
select tests.authenticate_as(:'olga');
select public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'edge1', 'catalog_name', 'memory',
       'instance_name', 'memory')) ->> 'id' as mem \gset
select public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'edge1', 'catalog_name', 'everything',
       'instance_name', 'everything')) ->> 'id' as every \gset
select tests.authenticate_as(:'mia');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'mia', 'Mia''s researcher') returning id as mia_agent \gset
select tests.authenticate_as(:'max');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'max', 'Max''s agent') returning id as max_agent \gset

select tests.clear_authentication();
select private.apply_instance_event(:'mem', 'deploy') as s \gset
select private.apply_instance_event(:'mem', 'deployed') as s \gset
select private.apply_instance_event(:'every', 'deploy') as s \gset
select private.apply_instance_event(:'every', 'deployed') as s \gset
update public.account_tool_instances set endpoint_url = 'http://10.0.0.1:30000/mcp/servers/memory/mcp' where id = :'mem';

-- Keys: created by the agent's owner, shown once, kept as a hash.
select tests.authenticate_as(:'mia');
select key_id as k1, api_key as key1, prefix as p1 from public.create_agent_api_key(:'mia_agent', 'laptop', now() + interval '30 days') \gset
select matches(:'key1'::text, '^mcpk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$', 'the key is the prefix and 256 random bits, base64url');
select is(left(:'key1', 17), :'p1'::text, 'the visible prefix is the key''s first 17 characters');
select tests.clear_authentication();
select is((select key_sha256 from public.agent_api_keys where id = :'k1'), extensions.digest(:'key1'::text, 'sha256'),
          'the database keeps the key''s sha256');
select is_empty(format($$select from public.agent_api_keys k where to_jsonb(k)::text like '%%' || %L || '%%'$$, substr(:'key1', 18)),
                'and never the key''s secret part');
select is_empty(format($$select from public.audit_log a where a.entity_id = %L and (a.after ? 'key_sha256' or a.after::text like '%%' || %L || '%%')$$,
                       :'k1', substr(:'key1', 18)),
                'the audit trail holds neither the hash nor the key');
select results_eq(format($$select action, actor_id, after ->> 'prefix' from public.audit_log where entity_id = %L$$, :'k1'),
                  format($$values ('agent_api_key.insert', %L::uuid, %L)$$, :'mia', :'p1'),
                  'creating a key is audited with who and which prefix');

select tests.authenticate_as(:'mia');
select results_eq(format($$select key_id, name, prefix, state, last_used_at from public.list_agent_api_keys(%L)$$, :'mia_agent'),
                  format($$values (%L::uuid, 'laptop', %L, 'active', null::timestamptz)$$, :'k1', :'p1'),
                  'Mia lists her agent''s keys by prefix and state');
select throws_ok(format($$select * from public.create_agent_api_key(%L, 'x', now() - interval '1 minute')$$, :'mia_agent'), '22023', null,
                 'an expiry in the past is refused (22023)');
select throws_ok($$select key_sha256 from public.agent_api_keys$$, '42501', null, 'no API role reads the hashes (42501)');
select results_eq($$select prefix from public.agent_api_keys$$, format($$values (%L)$$, :'p1'), 'Mia reads her agent''s key metadata');

select tests.authenticate_as(:'max');
select throws_ok(format($$select * from public.create_agent_api_key(%L, 'stolen')$$, :'mia_agent'), '42501', null,
                 'another member cannot create a key for Mia''s agent (42501)');
select throws_ok(format($$select * from public.list_agent_api_keys(%L)$$, :'mia_agent'), '42501', null,
                 'nor list its keys (42501)');
select throws_ok(format($$select public.revoke_agent_api_key(%L)$$, :'k1'), '42501', null, 'nor revoke them (42501)');
select is_empty($$select from public.agent_api_keys$$, 'nor read them');
select tests.authenticate_as(:'vic');
select throws_ok(format($$select * from public.create_agent_api_key(%L, 'viewer')$$, :'mia_agent'), '42501', null,
                 'a viewer cannot create keys (42501)');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select * from public.create_agent_api_key(%L, 'cross')$$, :'mia_agent'), '42501', null,
                 'another organization cannot create keys for Acme''s agents (42501)');
select throws_ok(format($$select public.revoke_agent_api_key(%L)$$, gen_random_uuid()), '42501', null,
                 'an unknown key gets the same answer as another''s (42501)');
select tests.authenticate_as_anon();
select throws_ok(format($$select * from public.list_agent_api_keys(%L)$$, :'mia_agent'), '42501', null, 'anon cannot list keys (42501)');

-- The gateway's functions are the platform's only.
select tests.authenticate_as(:'mia');
select throws_ok(format($$select * from public.gateway_authenticate(%L)$$, :'key1'), '42501', null,
                 'a member cannot authenticate keys (42501)');
select throws_ok(format($$select * from public.gateway_agent_servers(%L)$$, :'mia_agent'), '42501', null,
                 'nor list the gateway''s view of her agent (42501)');
select throws_ok(format($$select * from public.gateway_upstream(%L)$$, :'mem'), '42501', null,
                 'nor read an upstream credential (42501)');
-- Even were it granted, a forged claim alone does not make her the platform.
select tests.authenticate_with('authenticated', jsonb_build_object('sub', :'mia', 'role', 'authenticated'));
select throws_ok($$select private.require_service_caller('test')$$, '42501', null, 'the service check refuses an authenticated session');

-- The gateway (service_role) authenticates.
select tests.authenticate_as_service_role();
select results_eq(format($$select agent_id, organization_id, key_id, valid_for_ms from public.gateway_authenticate(%L)$$, :'key1'),
                  format($$select %L::uuid, %L::uuid, %L::uuid, floor(extract(epoch from expires_at - now()) * 1000)::bigint
                             from public.agent_api_keys where id = %L$$, :'mia_agent', :'acme', :'k1', :'k1'),
                  'a live key stands for its agent, until the key expires');
select isnt((select last_used_at from public.agent_api_keys where id = :'k1'), null, 'and its last use is recorded');
select throws_ok(format($$select * from public.gateway_authenticate(%L, null, %L)$$, :'key1', :'max_agent'), '28000', null,
                 'a key names only its own agent (28000)');
select throws_ok(format($$select * from public.gateway_authenticate(%L)$$, :'key1' || 'x'), '28000', null,
                 'an unknown key is refused (28000)');
select throws_ok($$select * from public.gateway_authenticate()$$, '22023', null, 'a credential is required (22023)');
select results_eq(format($$select agent_id, key_id from public.gateway_authenticate(null, %L, %L)$$, :'mia', :'mia_agent'),
                  format($$values (%L::uuid, null::uuid)$$, :'mia_agent'),
                  'Mia, verified from her JWT, acts for her agent');
select results_eq(format($$select agent_id from public.gateway_authenticate(null, %L, %L)$$, :'adam', :'mia_agent'),
                  format($$values (%L::uuid)$$, :'mia_agent'), 'an admin acts for any agent of the organization');
select throws_ok(format($$select * from public.gateway_authenticate(null, %L, %L)$$, :'max', :'mia_agent'), '42501', null,
                 'another member does not act for Mia''s agent (42501)');
select throws_ok(format($$select * from public.gateway_authenticate(null, %L, %L)$$, :'vic', :'mia_agent'), '42501', null,
                 'nor a viewer (42501)');
select throws_ok(format($$select * from public.gateway_authenticate(null, %L, %L)$$, :'bob', :'mia_agent'), '42501', null,
                 'nor another organization''s user (42501)');

-- Expiry at its instant: a key whose expiry is now is refused now.
select tests.clear_authentication();
insert into public.agent_api_keys (organization_id, agent_id, name, prefix, key_sha256, created_at, expires_at)
values (:'acme', :'mia_agent', 'ends now', 'mcpk_00000000e0e0', extensions.digest('mcpk_00000000e0e0_ends-now', 'sha256'),
        now() - interval '1 hour', now());
select tests.authenticate_as_service_role();
select throws_ok($$select * from public.gateway_authenticate('mcpk_00000000e0e0_ends-now')$$, '28000', null,
                 'a key is refused from the instant it expires (28000)');
select tests.authenticate_as(:'mia');
select results_eq(format($$select state from public.list_agent_api_keys(%L) where name = 'ends now'$$, :'mia_agent'),
                  $$values ('expired')$$, 'and listed as expired');

-- The servers an agent reaches, and the read rule per scope.
select public.grant_agent_mcp_access(:'mia_agent', :'mem', 'read_only') as g1 \gset
select public.grant_agent_mcp_access(:'mia_agent', :'every', 'custom', array['echo']) as g2 \gset
select tests.authenticate_as_service_role();
select results_eq(format($$select server_instance_id, instance_name, permission_scope::text, reads_allowed from public.gateway_agent_servers(%L)$$, :'mia_agent'),
                  format($$values (%L::uuid, 'everything', 'custom', false), (%L::uuid, 'memory', 'read_only', true)$$, :'every', :'mem'),
                  'the gateway sees both servers; resources and prompts only where the scope reads (read_only yes, custom no)');
select results_eq(format($$select allowed_tools from public.gateway_agent_servers(%L) where instance_name = 'memory'$$, :'mia_agent'),
                  $$values (array['open_nodes', 'read_graph', 'search_nodes'])$$, 'with the tools the grant allows');
select results_eq(format($$select endpoint_url, bearer_token from public.gateway_upstream(%L)$$, :'mem'),
                  $$values ('http://10.0.0.1:30000/mcp/servers/memory/mcp', 'acme-dtma-token-0123456789')$$,
                  'the gateway reads the endpoint and the toolbox token of a running server');

-- The decision of one call with the definition read upstream, and until when it holds (the
-- gateway caches an allowed call until then, or until the database announces a change).
select tests.authenticate_as(:'max');
select public.grant_agent_mcp_access(:'max_agent', :'mem', 'read_only', null, now() + interval '1 hour') as g3 \gset
select tests.authenticate_as_service_role();
select (t - 'sha256')::text as read_graph_def from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t
 where i.id = :'mem' and t ->> 'name' = 'read_graph' \gset
select (t - 'sha256')::text as create_entities_def from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t
 where i.id = :'mem' and t ->> 'name' = 'create_entities' \gset
select results_eq(format($$select allowed, valid_for_ms from public.gateway_authorize_call(%L, %L, %L)$$, :'mia_agent', :'mem', :'read_graph_def'),
                  $$values (true, null::bigint)$$, 'a read-only tool of a grant without expiry: allowed, with no end');
select results_eq(format($$select allowed, valid_for_ms from public.gateway_authorize_call(%L, %L, %L)$$, :'max_agent', :'mem', :'read_graph_def'),
                  format($$select true, floor(extract(epoch from expires_at - now()) * 1000)::bigint from public.agent_mcp_server_access where id = %L$$, :'g3'),
                  'an expiring grant: allowed for as long as the grant has left');
select results_eq(format($$select allowed from public.gateway_authorize_call(%L, %L, %L)$$, :'mia_agent', :'mem', :'create_entities_def'),
                  $$values (false)$$, 'a tool outside the scope: denied');
select results_eq(format($$select allowed from public.gateway_authorize_call(%L, %L, %L)$$, :'mia_agent', :'mem',
                         (:'read_graph_def'::jsonb || '{"description": "now also deletes"}')::text),
                  $$values (false)$$, 'a definition that differs from the pinned one: denied');
select throws_ok($$select * from public.gateway_authorize_call(gen_random_uuid(), gen_random_uuid(), '"read_graph"')$$, '22023', null,
                 'the definition must be a tool object (22023)');
select tests.authenticate_as(:'mia');
select throws_ok(format($$select * from public.gateway_authorize_call(%L, %L, %L)$$, :'mia_agent', :'mem', :'read_graph_def'), '42501', null,
                 'a member cannot ask the gateway''s decision (42501)');

-- tools/list of all the agent's servers in one call: the rule of filter_agent_mcp_tools.
select tests.clear_authentication();
select jsonb_build_array(
         jsonb_build_object('server_instance_id', :'mem', 'tools',
           (select jsonb_agg(t - 'sha256') from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t where i.id = :'mem')),
         jsonb_build_object('server_instance_id', :'every', 'tools',
           (select jsonb_agg(t - 'sha256') from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t where i.id = :'every')
           || '[{"name": "exfiltrate"}]'::jsonb)) as both_servers \gset
select tests.authenticate_as_service_role();
select set_eq(format($$select server_instance_id, tool_name from public.gateway_filter_tools(%L, %L) where allowed$$, :'mia_agent', :'both_servers'),
              format($$values (%1$L::uuid, 'open_nodes'), (%1$L, 'read_graph'), (%1$L, 'search_nodes'), (%2$L, 'echo')$$, :'mem', :'every'),
              'gateway_filter_tools: the read-only tools of memory and the custom list of everything, in one call');
select set_eq(format($$select server_instance_id, tool_name, allowed, reason from public.gateway_filter_tools(%L, %L)$$, :'mia_agent', :'both_servers'),
              format($$select %2$L::uuid, tool_name, allowed, reason from public.filter_agent_mcp_tools(%1$L, %2$L, %3$L)
                       union all select %4$L::uuid, tool_name, allowed, reason from public.filter_agent_mcp_tools(%1$L, %4$L, %5$L)$$,
                     :'mia_agent', :'mem', (:'both_servers'::jsonb) -> 0 -> 'tools', :'every', (:'both_servers'::jsonb) -> 1 -> 'tools'),
              'each tool answered as filter_agent_mcp_tools answers it server by server (reasons included)');
select results_eq(format($$select tool_name, reason from public.gateway_filter_tools(%L, '[{"server_instance_id": "%s", "tools": [{"name": "read_graph"}]}]')$$,
                         :'mia_agent', gen_random_uuid()),
                  $$values ('read_graph', 'no_live_grant')$$, 'a server the agent has no grant on allows nothing');
select throws_ok(format($$select * from public.gateway_filter_tools(%L, %L)$$, gen_random_uuid(), :'both_servers'), '42501', null,
                 'an unknown agent is refused (42501)');
select throws_ok(format($$select * from public.gateway_filter_tools(%L, '{"tools": []}')$$, :'mia_agent'), '22023', null,
                 'p_servers must be an array (22023)');
select throws_ok(format($$select * from public.gateway_filter_tools(%L, '[{"server_instance_id": "%s"}]')$$, :'mia_agent', :'mem'), '22023', null,
                 'each server comes with its tools (22023)');
select throws_ok(format($$select * from public.gateway_filter_tools(%L, '[{"server_instance_id": "memory", "tools": []}]')$$, :'mia_agent'), '22023', null,
                 'a server is named by its id (22023)');
select throws_ok(format($$select * from public.gateway_filter_tools(%L, '[{"server_instance_id": "%s", "tools": [{"title": "no name"}]}]')$$,
                        :'mia_agent', :'mem'), '22023', null, 'each tool has a name (22023)');
select throws_ok(format($$select * from public.gateway_filter_tools(%L, '[{"server_instance_id": "%2$s", "tools": []}, {"server_instance_id": "%2$s", "tools": []}]')$$,
                        :'mia_agent', :'mem'), '22023', null, 'a server is named once (22023)');
select tests.authenticate_as(:'mia');
select throws_ok(format($$select * from public.gateway_filter_tools(%L, %L)$$, :'mia_agent', :'both_servers'), '42501', null,
                 'a member cannot ask the gateway''s filter, even for her own agent (42501)');
select tests.clear_authentication();
select set_eq($$select tgrelid::regclass::text from pg_trigger where tgfoid = 'private.notify_gateway'::regproc$$,
              array['agent_api_keys', 'agents', 'organization_members', 'agent_mcp_server_access', 'account_tool_instances'],
              'every table a cached answer depends on announces its changes to the gateways');
select tests.authenticate_as_service_role();

-- A stopped server leaves at once; so does a removed member's agent.
select tests.clear_authentication();
select private.apply_instance_event(:'every', 'stop') as s \gset
select tests.authenticate_as_service_role();
select results_eq(format($$select instance_name from public.gateway_agent_servers(%L)$$, :'mia_agent'), $$values ('memory')$$,
                  'a server being stopped is no longer reached');
select throws_ok(format($$select * from public.gateway_upstream(%L)$$, :'every'), 'P0002', null,
                 'and its upstream credential is no longer given (P0002)');

-- Revocation: on the next call.
select tests.authenticate_as(:'mia');
select ok(public.revoke_agent_api_key(:'k1', 'laptop lost'), 'Mia revokes her key');
select ok(not public.revoke_agent_api_key(:'k1'), 'a second revoke changes nothing');
select tests.authenticate_as_service_role();
select throws_ok(format($$select * from public.gateway_authenticate(%L)$$, :'key1'), '28000', null, 'a revoked key is refused (28000)');
select tests.clear_authentication();
select results_eq(format($$select action, reason, after ->> 'revoked_by' from public.audit_log where entity_id = %L order by id$$, :'k1'),
                  format($$values ('agent_api_key.insert', null, null), ('agent_api_key.update', 'laptop lost', %L)$$, :'mia'),
                  'the revocation is audited with its reason and who');
select throws_ok(format($$update public.agent_api_keys set revoked_at = null where id = %L$$, :'k1'), '55000', null,
                 'a revoked key stays revoked (55000)');

select tests.authenticate_as(:'olga');
select public.remove_organization_member(:'acme', :'mia');
select tests.authenticate_as_service_role();
select is_empty(format($$select from public.gateway_agent_servers(%L)$$, :'mia_agent'),
                'once Mia leaves Acme, her agent reaches nothing');

select * from finish();
rollback;
