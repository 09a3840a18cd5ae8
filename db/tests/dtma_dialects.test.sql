-- The outbox against both DTMA dialects (docs/DTMA.md): the same stories, told once with the
-- answers recorded from the upstream dtma-agent (db/tests/fixtures/upstream_dtma_exchanges.sql)
-- and once with the answers of this project's DTMA (standins/dtma), each replayed as the
-- net._http_response row pg_net would record. In every story the database ends as the world is:
-- a transient deploy failure is retried; running stays running under the upstream's status
-- answer; a declined restart keeps running; a credentials refresh is current only once
-- confirmed; a deploy whose answer was lost is checked before a resend; stop then delete ends
-- removed. Then a crash: a request sent before it never takes a response recorded after it.
begin;
select plan(57);

\ir fixtures/upstream_dtma_exchanges.sql

select tests.create_user('dialect-owner@example.com') as owner \gset
select tests.authenticate_as(:'owner');
select public.create_organization('Dialects', 'dialects') as org \gset
-- The platform registers the toolboxes (loopback over http is allowed for the local stack).
select tests.clear_authentication();
select public.create_toolbox(:'org', 'box-project', 'http://127.0.0.1:30991', 'toolbox-token-project-0123456789') as box_project \gset
select public.create_toolbox(:'org', 'box-upstream', 'http://127.0.0.1:30992', 'toolbox-token-upstream-0123456789') as box_upstream \gset
select tests.authenticate_as(:'owner');
select (public.manage_mcp_servers('create', :'org', jsonb_build_object('toolbox_id', :'box_project', 'catalog_name', 'memory',
  'instance_name', 'mem-1', 'configuration', '{"env": {"MEMORY_FILE_PATH": "/data/graph.jsonl"}}'::jsonb)) ->> 'id') as inst_project \gset
select (public.manage_mcp_servers('create', :'org', jsonb_build_object('toolbox_id', :'box_upstream', 'catalog_name', 'memory',
  'instance_name', 'mem-1', 'configuration', '{"env": {"MEMORY_FILE_PATH": "/data/graph.jsonl"}}'::jsonb)) ->> 'id') as inst_upstream \gset
select tests.clear_authentication();
-- The platform says which DTMA a toolbox runs when it registers it.
update public.account_tool_environments set dtma_dialect = 'upstream' where id = :'box_upstream';

-- Each answer a story needs, per dialect: upstream ones by their recorded sequence number,
-- the project's as standins/dtma/server.ts answers.
create temp table answers (dialect text, key text, status int, content text, primary key (dialect, key));
insert into answers
select 'upstream', k.key, (e.exchange ->> 'status')::int, e.exchange ->> 'response'
  from (values ('deploy_daemon_down', 1), ('refresh', 5), ('stop', 8), ('remove_gone', 9), ('deploy_bad_image', 16),
               ('deploy_ok', 17), ('status', 18), ('restart_declined', 23)) k (key, seq)
  join upstream_exchanges e on e.seq = k.seq;
insert into answers values
  ('project', 'deploy_daemon_down', 503, '{"success": false, "error": "the DTMA is shutting down"}'),
  ('project', 'refresh', 200, '{"success": true, "message": "credentials of MCP server ''mem-1'' refreshed", "data": {"instanceName": "mem-1", "status": "refreshed", "restarted": true, "timestamp": "2026-11-29T12:00:00.000Z"}}'),
  ('project', 'stop', 200, '{"success": true, "message": "MCP group ''g'' removal completed", "data": {"groupId": "g", "removedServers": ["mem-1"], "errors": {}}}'),
  ('project', 'remove_gone', 404, '{"success": false, "error": "MCP group ''g'' not found"}'),
  ('project', 'deploy_bad_image', 400, '{"success": false, "error": "unsupported image ''x'': the process driver runs ''npm:<package>'' or ''npm:<package>@<version>''"}'),
  ('project', 'deploy_ok', 201, '{"success": true, "message": "MCP group ''g'' deployment completed", "data": {"groupId": "g", "deployedServers": ["mem-1"], "errors": {}, "totalServers": 1, "successfulDeployments": 1}}'),
  ('project', 'status', 200, '{"success": true, "data": {"summary": {"totalGroups": 0, "totalServers": 0, "runningServers": 0, "healthyServers": 0, "timestamp": "2026-11-29T12:00:00.000Z"}, "groups": {}}}'),
  ('project', 'restart_declined', 404, '{"success": false, "error": "MCP server ''mem-1'' not found"}');
-- GET /mcp/health/:groupId answers alike in both (the upstream's per its source: 404 with
-- "MCP group '...' not found", or the group's instances under data.health).
insert into answers select d, 'health_absent', 404, '{"success": false, "error": "MCP group ''g'' not found"}' from unnest(array['project', 'upstream']) d;
grant select on answers to public;

-- Story helpers: the latest request of an instance, answering it, harvesting.
create function pg_temp.req(p_instance uuid) returns public.dtma_requests language sql as
  $$ select * from public.dtma_requests where instance_id = p_instance order by id desc limit 1 $$;
create function pg_temp.req_of(p_instance uuid, p_operation text) returns public.dtma_requests language sql as
  $$ select * from public.dtma_requests where instance_id = p_instance and operation = p_operation order by id desc limit 1 $$;
create function pg_temp.answer(p_request public.dtma_requests, p_key text) returns void language sql as $$
  insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
  select p_request.net_request_id, a.status, 'application/json', '{}', a.content, false, null
    from answers a where a.dialect = current_setting('tests.dialect') and a.key = p_key
$$;
create function pg_temp.health(p_request public.dtma_requests, p_status text, p_started timestamptz) returns void language sql as $$
  insert into net._http_response (id, status_code, content_type, content, timed_out)
  values (p_request.net_request_id, 200, 'application/json', jsonb_build_object('success', true, 'data', jsonb_build_object(
    'groupId', 'g', 'timestamp', now(), 'health', jsonb_build_object('collectiveStatus', 'healthy', 'totalInstances', 1,
      'instances', jsonb_build_object('mem-1', jsonb_build_object('status', p_status, 'healthStatus', 'unknown',
        'containerId', 'c0ffee', 'startTime', p_started, 'restartCount', 0, 'mcpEndpoint', '/mcp', 'transportType', 'stdio')))))::text, false)
$$;
create function pg_temp.harvest(p_lost_after interval default null) returns jsonb language sql as
  $$ select public.harvest_dtma_responses(p_backoff_base => '0 seconds', p_lost_after => p_lost_after) $$;
create function pg_temp.status(p_instance uuid) returns text language sql as
  $$ select status::text from public.account_tool_instances where id = p_instance $$;
create function pg_temp.act(p_action text, p_instance uuid) returns text language sql as
  $$ select public.manage_mcp_servers(p_action, (select organization_id from public.account_tool_instances where id = p_instance), '{}', p_instance) ->> 'status' $$;
grant execute on function pg_temp.act(text, uuid), pg_temp.status(uuid) to authenticated;
-- One lifecycle step: the owner acts, the DTMA answers (when p_answer is given), the harvest applies it.
select set_config('tests.owner', :'owner', false);
create function pg_temp.step(p_action text, p_instance uuid, p_answer text default null) returns text language plpgsql as $$
begin
  perform tests.authenticate_as(current_setting('tests.owner')::uuid);
  perform pg_temp.act(p_action, p_instance);
  perform tests.clear_authentication();
  if p_answer is not null then
    perform pg_temp.answer(pg_temp.req(p_instance), p_answer);
    perform pg_temp.harvest();
  end if;
  return pg_temp.status(p_instance);
end $$;

-- What each dialect asks of the container: the project's DTMA runs the npm package with the
-- configuration; the upstream one pulls the OCI image, with the environment as Docker's Env.
select tests.authenticate_as(:'owner');
select pg_temp.act('deploy', :'inst_project');
select pg_temp.act('deploy', :'inst_upstream');
select tests.clear_authentication();
select is((select body #>> '{servers,0,dockerImageUrl}' from pg_temp.req(:'inst_project')),
          (select docker_image_url from public.mcp_server_catalog where name = 'memory'), 'project: the npm package');
select is((select body #> '{servers,0,baseConfigOverrideJson}' from pg_temp.req(:'inst_project')),
          '{"env": {"MEMORY_FILE_PATH": "/data/graph.jsonl"}}'::jsonb, 'project: env and args as the local DTMA reads them');
select is((select body #>> '{servers,0,dockerImageUrl}' from pg_temp.req(:'inst_upstream')),
          (select oci_image from public.mcp_server_catalog where name = 'memory'), 'upstream: the catalog''s OCI image');
select matches((select body #>> '{servers,0,dockerImageUrl}' from pg_temp.req(:'inst_upstream')), '^mcp/memory', 'the official mcp/ image');
select is((select body #> '{servers,0,baseConfigOverrideJson}' from pg_temp.req(:'inst_upstream')),
          '{"Env": ["MEMORY_FILE_PATH=/data/graph.jsonl"]}'::jsonb, 'upstream: the environment as Docker''s Env, nothing else');
select is((select body #>> '{servers,0,mcpTransportType}' from pg_temp.req(:'inst_upstream')), 'stdio',
          'upstream: a transport it knows (stdio|sse|websocket)');

select set_config('tests.dialect', 'project', false);
select :'inst_project' as inst, :'box_project' as box \gset
\ir fixtures/dtma_stories.sql
select set_config('tests.dialect', 'upstream', false);
select :'inst_upstream' as inst, :'box_upstream' as box \gset
\ir fixtures/dtma_stories.sql

select is((select dtma_dialect from public.account_tool_environments where id = :'box_upstream'), 'upstream',
          'the upstream''s status answer keeps its toolbox upstream');
select is((select dtma_dialect from public.account_tool_environments where id = :'box_project'), 'project',
          'and the project''s keeps its own');

-- A crash: pg_net's tables and this project's epoch are unlogged, so crash recovery empties
-- them and pg_net's ids start again. A deploy in flight at the crash must not take the answer
-- recorded for a newer request that reused its id.
select tests.authenticate_as(:'owner');
select (public.manage_mcp_servers('create', :'org', jsonb_build_object('toolbox_id', :'box_project', 'catalog_name', 'memory',
  'instance_name', 'mem-crash')) ->> 'id') as crash \gset
select pg_temp.act('deploy', :'crash');
select tests.clear_authentication();
select isnt((select net_epoch from pg_temp.req(:'crash')), null, 'a send records the pg_net epoch');
delete from private.net_epoch;   -- what crash recovery does to an unlogged table
insert into net._http_response (id, status_code, content, timed_out)
  select net_request_id, 200, '{"status": "ok"}', false from pg_temp.req(:'crash');
select pg_temp.harvest();
select matches((select last_error from pg_temp.req(:'crash')), '^lost: the database restarted',
               'after the crash the deploy is lost, whatever answer bears its old id');
select is((select count(*)::int from public.dtma_requests where state = 'sent' and net_epoch is distinct from (select epoch from private.net_epoch)), 0,
          'no request of the old epoch is left waiting for an answer');
select is((select state::text || ' ' || check_first from pg_temp.req(:'crash')), 'sent true',
          'and sent again as a check of its group, in the new epoch');
select is(pg_temp.status(:'crash'), 'deploying', 'the instance is still deploying, not running on someone else''s answer');

select * from finish();
rollback;
