-- MCP server instances and their lifecycle. Adam, an admin of Acme, creates servers from the
-- catalog on Acme's toolbox through manage_mcp_servers; their configuration is checked against
-- the catalog's schema and a refusal names the bad field. Members, viewers, strangers and other
-- tenants cannot manage them. Every status change follows public.mcp_server_transitions, whoever
-- writes it, and each transition is audited with its event and cause.
begin;
select plan(51);

select tests.create_user('olga@acme.test') as olga \gset
select tests.create_user('adam@acme.test') as adam \gset
select tests.create_user('mia@acme.test') as mia \gset
select tests.create_user('vic@acme.test') as vic \gset
select tests.create_user('sam@nowhere.test') as sam \gset
select tests.create_user('bob@globex.test') as bob \gset
select tests.authenticate_as(:'bob');
select public.create_organization('Globex', 'globex') as globex \gset
-- The platform registers toolboxes.
select tests.clear_authentication();
select public.create_toolbox(:'globex', 'globex-box', 'https://dtma.globex.test', 'globex-dtma-token-0123456789') as globex_box \gset
select tests.authenticate_as(:'bob');
select public.manage_mcp_servers('create', :'globex', jsonb_build_object('toolbox_id', :'globex_box', 'catalog_name', 'memory',
       'instance_name', 'memory')) ->> 'id' as globex_mem \gset
select tests.authenticate_as(:'olga');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'adam', 'admin');
select public.add_organization_member(:'acme', :'mia', 'member');
select public.add_organization_member(:'acme', :'vic', 'viewer');
-- The platform registers toolboxes.
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'edge-1', 'https://edge-1.acme.test', 'acme-dtma-token-0123456789') as edge1 \gset
select public.create_toolbox(:'acme', 'edge-2', 'https://edge-2.acme.test', 'acme-dtma-token-9876543210') as edge2 \gset
select tests.authenticate_as(:'adam');

-- An admin creates a server from the catalog.
select public.manage_mcp_servers('create', :'acme', jsonb_build_object(
         'toolbox_id', :'edge1', 'catalog_name', 'memory', 'instance_name', 'memory',
         'configuration', '{"env": {"MEMORY_FILE_PATH": "/data/memory.json"}}'::jsonb)) as created \gset
select tests.clear_authentication();
select (:'created'::jsonb) ->> 'id' as mem \gset
select is((:'created'::jsonb) ->> 'status', 'pending', 'a new server starts as pending');
select is((:'created'::jsonb) ->> 'display_name', (select display_name from public.mcp_server_catalog where name = 'memory'),
          'its display name defaults to the catalog''s');
select ok(not (:'created'::jsonb) ? 'pinned_manifest', 'manage_mcp_servers returns the server without its pinned manifest');
select results_eq(format($$select i.mcp_server_type, i.pinned_manifest, i.mcp_server_capabilities, i.manifest_approved_by, i.created_by
                           from public.account_tool_instances i where i.id = %L$$, :'mem'),
                  format($$select c.name, c.tool_manifest, c.capabilities, %1$L::uuid, %1$L::uuid
                           from public.mcp_server_catalog c where c.name = 'memory'$$, :'adam'),
                  'type, capabilities and the pinned tool manifest come from the catalog, approved by the admin who created it');
select is(((:'created'::jsonb) ->> 'tool_count')::int, (select jsonb_array_length(tool_manifest) from public.mcp_server_catalog where name = 'memory'),
          'the returned tool count is that of the pinned manifest');

-- A bad configuration is refused with 22023, naming the field.
select tests.authenticate_as(:'adam');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "filesystem", "instance_name": "files"}')$$,
                        :'acme', :'edge1'),
                 '22023', 'invalid configuration: configuration.args is required',
                 'filesystem without args is refused, naming configuration.args (22023)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "filesystem", "instance_name": "files",
                                                                              "configuration": {"args": ["/srv", "data"]}}')$$, :'acme', :'edge1'),
                 '22023', 'invalid configuration: configuration.args[1] must match ^/',
                 'filesystem with a relative directory is refused, naming configuration.args[1] (22023)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory", "instance_name": "m2",
                                                                              "configuration": {"port": 8080}}')$$, :'acme', :'edge1'),
                 '22023', 'invalid configuration: configuration.port is not an allowed field',
                 'an unknown configuration field is refused, naming it (22023)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory", "instance_name": "m2",
                                                                              "configuration": {"env": {"LD_PRELOAD": "/tmp/x.so"}}}')$$, :'acme', :'edge1'),
                 '22023', 'invalid configuration: configuration.env.LD_PRELOAD is not an allowed field',
                 'an unknown environment variable is refused, naming it (22023)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory", "instance_name": "m2",
                                                                              "docker_image_url": "evil/image"}')$$, :'acme', :'edge1'),
                 '22023', 'invalid server_config: server_config.docker_image_url is not an allowed field',
                 'an unknown server_config field is refused, naming it (22023)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory"}')$$, :'acme', :'edge1'),
                 '22023', 'invalid server_config: server_config.instance_name is required',
                 'a missing instance name is refused, naming it (22023)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory", "instance_name": "Bad Name"}')$$,
                        :'acme', :'edge1'),
                 '22023', null, 'an instance name that is not a container-safe slug is refused (22023)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "no-such-server", "instance_name": "x"}')$$,
                        :'acme', :'edge1'),
                 'P0002', null, 'an unknown catalog entry is not found (P0002)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory", "instance_name": "x"}')$$,
                        :'acme', :'globex_box'),
                 'P0002', null, 'another organization''s toolbox is not found (P0002)');

-- Duplicates, unknown actions.
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "everything", "instance_name": "memory"}')$$,
                        :'acme', :'edge1'),
                 '23505', null, 'a second server named memory on the same toolbox is refused (23505)');
select lives_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory", "instance_name": "memory"}')$$,
                       :'acme', :'edge2'),
                'the same name on another toolbox is fine');
select throws_ok(format($$select public.manage_mcp_servers('explode', %L, '{}', %L)$$, :'acme', :'mem'), '22023', null,
                 'an unknown action is refused (22023)');
select throws_ok(format($$select public.manage_mcp_servers(null, %L, '{}', %L)$$, :'acme', :'mem'), '22023', null,
                 'a missing action is refused (22023)');
select throws_ok(format($$select public.manage_mcp_servers('deploy', %L)$$, :'acme'), '22023', null,
                 'a lifecycle action without server_id is refused (22023)');
select throws_ok(format($$select public.manage_mcp_servers('deploy', %L, '{}', %L)$$, :'acme', :'globex_mem'), 'P0002', null,
                 'another organization''s server is not found through this organization (P0002)');

-- Updates are validated the same way.
select lives_ok(format($$select public.manage_mcp_servers('update', %L, '{"display_name": "Team memory", "priority": 500}', %L)$$, :'acme', :'mem'),
                'an admin renames a server and raises its priority');
select throws_ok(format($$select public.manage_mcp_servers('update', %L, '{"configuration": {"env": {"MEMORY_FILE_PATH": "relative.json"}}}', %L)$$,
                        :'acme', :'mem'),
                 '22023', 'invalid configuration: configuration.env.MEMORY_FILE_PATH must match ^/',
                 'an update with a bad configuration is refused, naming the field (22023)');
select throws_ok(format($$select public.manage_mcp_servers('update', %L, '{"priority": 5000}', %L)$$, :'acme', :'mem'),
                 '22023', 'invalid server_config: server_config.priority must be at most 1000', 'an out-of-range priority is refused (22023)');
select throws_ok(format($$select public.manage_mcp_servers('update', %L, '{"catalog_name": "github"}', %L)$$, :'acme', :'mem'),
                 '22023', 'invalid server_config: server_config.catalog_name is not an allowed field',
                 'an update cannot swap the catalog entry (22023)');

-- Only admins and owners manage servers.
select tests.authenticate_as(:'mia');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory", "instance_name": "mine"}')$$,
                        :'acme', :'edge1'), '42501', null, 'a member cannot create a server (42501)');
select throws_ok(format($$select public.manage_mcp_servers('deploy', %L, '{}', %L)$$, :'acme', :'mem'), '42501', null,
                 'a member cannot deploy a server (42501)');
select tests.authenticate_as(:'vic');
select throws_ok(format($$select public.manage_mcp_servers('stop', %L, '{}', %L)$$, :'acme', :'mem'), '42501', null,
                 'a viewer cannot stop a server (42501)');
select tests.authenticate_as(:'sam');
select throws_ok(format($$select public.manage_mcp_servers('delete', %L, '{}', %L)$$, :'acme', :'mem'), '42501', null,
                 'a stranger cannot delete a server (42501)');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "memory", "instance_name": "bobs"}')$$,
                        :'acme', :'edge1'), '42501', null, 'another tenant''s owner cannot create a server in Acme (42501)');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.manage_mcp_servers('create', %L, '{}')$$, :'acme'), '42501', null,
                 'anon cannot call manage_mcp_servers (42501)');

-- Members read their organization's servers; nobody writes them but through the RPC.
select tests.authenticate_as(:'vic');
select is((select count(*)::int from public.account_tool_instances), 2, 'a viewer sees Acme''s two servers');
select tests.authenticate_as(:'bob');
select results_eq('select id from public.account_tool_instances', format('values (%L::uuid)', :'globex_mem'),
                  'another tenant sees only their own server');
select tests.authenticate_as(:'adam');
select throws_ok(format($$update public.account_tool_instances set status = 'running' where id = %L$$, :'mem'), '42501', null,
                 'an admin cannot write a status directly (42501)');
select throws_ok(format($$insert into public.account_tool_instances (organization_id, account_tool_environment_id, catalog_id,
                          instance_name_on_toolbox, display_name, mcp_server_type) select %L, %L, id, 'raw', 'raw', name
                          from public.mcp_server_catalog where name = 'memory'$$, :'acme', :'edge1'), '42501', null,
                 'an admin cannot insert a server directly (42501)');

-- Lifecycle through the RPC: each action is a transition, audited with who, which event and why.
select lives_ok(format($$select public.manage_mcp_servers('deploy', %L, '{}', %L)$$, :'acme', :'mem'), 'an admin deploys a server');
select tests.clear_authentication();
select results_eq(format($$select status::text from public.account_tool_instances where id = %L$$, :'mem'), $$values ('deploying')$$,
                  'deploy moves it to deploying');
select results_eq(format($$select actor_id, before ->> 'status', after ->> 'status', after ->> 'event', cause from public.audit_log
                           where entity_type = 'mcp_instance' and entity_id = %L and action = 'instance.transition'$$, :'mem'),
                  format($$values (%L::uuid, 'pending', 'deploying', 'deploy', 'user_action')$$, :'adam'),
                  'the transition is audited with its actor, event and cause');
select is(private.apply_instance_event(:'mem', 'deploy_failed', 'dtma_response', 'image not found')::text, 'failed',
          'a DTMA refusal fails the deployment');
select results_eq(format($$select i.last_error, a.cause, a.after ->> 'event', a.after ->> 'last_error' from public.account_tool_instances i
                           join public.audit_log a on a.entity_id = i.id::text and a.action = 'instance.transition'
                           where i.id = %L order by a.id desc limit 1$$, :'mem'),
                  $$values ('image not found', 'dtma_response', 'deploy_failed', 'DTMA reported an error')$$,
                  'the error is kept on the server, classified in the audit row (admins read it), with its cause');
select tests.authenticate_as(:'adam');
select throws_ok(format($$select public.manage_mcp_servers('stop', %L, '{}', %L)$$, :'acme', :'mem'), '55000', 'cannot stop an MCP server that is failed',
                 'an action the state machine does not allow from the current status is refused (55000)');

-- Removing a server that never ran frees its name on the toolbox.
select public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'edge1', 'catalog_name', 'everything',
       'instance_name', 'scratch')) ->> 'id' as scratch \gset
select is(public.manage_mcp_servers('delete', :'acme', '{}', :'scratch') ->> 'status', 'removed',
          'deleting a pending server removes it at once');
select lives_ok(format($$select public.manage_mcp_servers('create', %L, '{"toolbox_id": "%s", "catalog_name": "everything", "instance_name": "scratch"}')$$,
                       :'acme', :'edge1'), 'the name of a removed server can be used again');

-- The state machine, exhaustively. To try a transition from its own starting state, a helper
-- puts the instance in that state with triggers off (session_replication_role = replica) for
-- that one statement, then the event or the UPDATE under test runs with every trigger on.
select tests.clear_authentication();
select public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'edge1', 'catalog_name', 'memory',
       'instance_name', 'lab')) ->> 'id' as lab \gset

create function pg_temp.place(p_id uuid, p_status public.mcp_server_status) returns void
language plpgsql as $$
begin
  set local session_replication_role = replica;
  update public.account_tool_instances set status = p_status where id = p_id;
  set local session_replication_role = origin;
end $$;

-- The status an event leads to from a status, or the SQLSTATE that refused it.
create function pg_temp.try_event(p_id uuid, p_from public.mcp_server_status, p_event text) returns text
language plpgsql as $$
begin
  perform pg_temp.place(p_id, p_from);
  return private.apply_instance_event(p_id, p_event)::text;
exception when others then
  return sqlstate;
end $$;

-- The status a direct UPDATE from a status to another leaves, or the SQLSTATE that refused it.
create function pg_temp.try_update(p_id uuid, p_from public.mcp_server_status, p_to public.mcp_server_status) returns text
language plpgsql as $$
declare
  v_status text;
begin
  perform pg_temp.place(p_id, p_from);
  update public.account_tool_instances set status = p_to where id = p_id returning status::text into v_status;
  return v_status;
exception when others then
  return sqlstate;
end $$;

select is_empty(format($$with tried as materialized (
                           select from_status, event, to_status, pg_temp.try_event(%L, from_status, event) as outcome
                             from public.mcp_server_transitions)
                         select * from tried where outcome is distinct from to_status::text$$, :'lab'),
                'every transition of public.mcp_server_transitions is accepted by apply_instance_event and leads where the table says');
select set_eq(format($$select (before ->> 'status')::public.mcp_server_status as from_status, after ->> 'event' as event,
                              (after ->> 'status')::public.mcp_server_status as to_status
                       from public.audit_log where entity_id = %L and action = 'instance.transition'$$, :'lab'),
              'select from_status, event, to_status from public.mcp_server_transitions',
              'each of those transitions appended one audit row naming its event');
select is((select count(*)::int from public.audit_log where entity_id = :'lab' and action = 'instance.transition'),
          (select count(*)::int from public.mcp_server_transitions),
          'exactly one audit row per transition');
select is_empty(format($$with pairs as (
                           select s as from_status, e.event
                             from unnest(enum_range(null::public.mcp_server_status)) s,
                                  (select distinct event from public.mcp_server_transitions union select 'explode') e
                           except select from_status, event from public.mcp_server_transitions),
                         tried as materialized (select from_status, event, pg_temp.try_event(%L, from_status, event) as outcome from pairs)
                         select * from tried where outcome <> '55000'$$, :'lab'),
                'every other (status, event), an unknown event included, is refused by apply_instance_event with 55000');
select is_empty(format($$with pairs as (
                           select f as from_status, t as to_status
                             from unnest(enum_range(null::public.mcp_server_status)) f, unnest(enum_range(null::public.mcp_server_status)) t
                            where f <> t),
                         tried as materialized (
                           select p.from_status, p.to_status, pg_temp.try_update(%L, p.from_status, p.to_status) as outcome,
                                  exists (select from public.mcp_server_transitions m
                                           where m.from_status = p.from_status and m.to_status = p.to_status) as allowed
                             from pairs p)
                         select * from tried where outcome is distinct from case when allowed then to_status::text else '55000' end$$, :'lab'),
                'a direct UPDATE of status as postgres is accepted along the table''s edges and refused with 55000 everywhere else');
select throws_ok(format($$select private.apply_instance_event(%L, 'deploy')$$, gen_random_uuid()), 'P0002', null,
                 'an event for an unknown server is not found (P0002)');
select pg_temp.place(:'lab', 'running');
select tests.authenticate_as_service_role();
select throws_ok(format($$update public.account_tool_instances set status = 'removed' where id = %L$$, :'lab'), '55000', null,
                 'service_role cannot jump from running to removed (55000)');
select throws_ok(format($$update public.account_tool_instances set status = 'pending' where id = %L$$, :'lab'), '55000', null,
                 'nor send a running server back to pending (55000)');
select tests.clear_authentication();
select throws_ok(format($$insert into public.account_tool_instances (organization_id, account_tool_environment_id, catalog_id,
                          instance_name_on_toolbox, display_name, mcp_server_type, status) select %L, %L, id, 'born-running', 'x', name, 'running'
                          from public.mcp_server_catalog where name = 'memory'$$, :'acme', :'edge1'), '55000', null,
                 'not even postgres can create a server in any status but pending (55000)');

select * from finish();
rollback;
