-- DTMA orchestration: an admin deploys, stops and removes an MCP server; each lifecycle step
-- queues exactly one pg_net request per the DTMA contract (URL, method, bearer token from
-- Vault, idempotency key, body), and the harvest applies every kind of response. Responses are
-- inserted into net._http_response by the test, as pg_net's worker would record them.
begin;
select plan(70);

select tests.create_user('dtma-owner@example.com') as owner \gset
select tests.create_user('dtma-member@example.com') as member \gset
select tests.authenticate_as(:'owner');
select public.create_organization('DTMA Org', 'dtma-org') as org \gset
select public.add_organization_member(:'org', :'member', 'member');
-- The platform registers toolboxes.
select tests.clear_authentication();
select public.create_toolbox(:'org', 'box-1', 'http://127.0.0.1:30999', 'toolbox-secret-token-0123456789') as toolbox \gset
select tests.authenticate_as(:'owner');
select (public.manage_mcp_servers('create', :'org',
  jsonb_build_object('toolbox_id', :'toolbox', 'catalog_name', 'memory', 'instance_name', 'mem-1')) ->> 'id') as inst \gset
select tests.clear_authentication();

-- pg_temp helpers: the latest DTMA request of an instance, and a pg_net response to it.
create function pg_temp.req(p_instance uuid) returns public.dtma_requests language sql as
  $$ select * from public.dtma_requests where instance_id = p_instance order by id desc limit 1 $$;
create function pg_temp.respond(p_instance uuid, p_status int, p_content text, p_timed_out boolean default false, p_error text default null)
returns void language sql as $$
  insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
  select r.net_request_id, p_status, 'application/json', '{}', p_content, p_timed_out, p_error from pg_temp.req(p_instance) r
$$;
create function pg_temp.harvest() returns jsonb language sql as
  $$ select public.harvest_dtma_responses(p_backoff_base => '0 seconds') $$;

-- deploy: one POST /mcp/groups per the contract, with the toolbox's token read from Vault
select tests.authenticate_as(:'member');
select throws_ok(format($$select public.manage_mcp_servers('deploy', %L, '{}', %L)$$, :'org', :'inst'), '42501', null,
                 'a member cannot deploy');
select throws_ok(format($$select public.deploy_mcp_server_to_dtma(%L)$$, :'inst'), '42501', null,
                 'a member cannot call deploy_mcp_server_to_dtma');
select tests.authenticate_as(:'owner');
select is(public.manage_mcp_servers('deploy', :'org', '{}', :'inst') ->> 'status', 'deploying', 'the owner deploys: deploying');
select tests.clear_authentication();

select is((select count(*)::int from public.dtma_requests where instance_id = :'inst'), 1, 'one DTMA request');
select is((select operation || ' ' || method || ' ' || path || ' ' || state from pg_temp.req(:'inst')),
          'deploy POST /mcp/groups sent', 'a deploy, sent through pg_net');
select is((select q.url from net.http_request_queue q where q.id = (select net_request_id from pg_temp.req(:'inst'))),
          'http://127.0.0.1:30999/mcp/groups', 'queued for pg_net with the toolbox URL');
select is((select q.method::text from net.http_request_queue q where q.id = (select net_request_id from pg_temp.req(:'inst'))),
          'POST', 'as a POST');
select is((select q.headers ->> 'Authorization' from net.http_request_queue q where q.id = (select net_request_id from pg_temp.req(:'inst'))),
          'Bearer toolbox-secret-token-0123456789', 'with the toolbox''s bearer token from Vault');
select is((select q.headers ->> 'Idempotency-Key' from net.http_request_queue q where q.id = (select net_request_id from pg_temp.req(:'inst'))),
          'deploy:' || :'inst' || ':' || (select id from pg_temp.req(:'inst')), 'with an idempotency key, one per request');
select is((select body from pg_temp.req(:'inst')) ->> 'groupId', format('mcp-%s-%s', :'toolbox', :'inst'),
          'one group per instance, named under its toolbox');
select is((select convert_from(q.body, 'UTF8')::jsonb #>> '{servers,0,dockerImageUrl}' from net.http_request_queue q
            where q.id = (select net_request_id from pg_temp.req(:'inst'))),
          (select docker_image_url from public.mcp_server_catalog where name = 'memory'), 'the body carries the catalog image');
select is((select body #>> '{servers,0,instanceNameOnToolbox}' from pg_temp.req(:'inst')), 'mem-1', 'and the instance name');
select is((select body #>> '{servers,0,accountToolInstanceId}' from pg_temp.req(:'inst')), :'inst', 'and the instance id');
select is((select body #> '{servers,0,baseConfigOverrideJson}' from pg_temp.req(:'inst')), '{}'::jsonb, 'and its configuration');
select is((select count(*)::int from public.dtma_requests where toolbox_id = :'toolbox' and body::text like '%0123456789%'), 0,
          'the token is never stored in the outbox');

-- a repeated deploy while one is under way sends nothing more
select count(*) as queued_before from net.http_request_queue \gset
select tests.authenticate_as(:'owner');
select is(public.manage_mcp_servers('deploy', :'org', '{}', :'inst') ->> 'status', 'deploying', 'a second deploy: still deploying');
select is(public.deploy_mcp_server_to_dtma(:'inst') ->> 'status', 'deploying', 'deploy_mcp_server_to_dtma too');
select is((select array_agg(k order by k) from jsonb_object_keys(public.deploy_mcp_server_to_dtma(:'inst') -> 'dtma_request') k
            where k in ('body', 'response', 'last_error')), null,
          'and it shows the admin the classified outcome only: no body, response or raw error');
select tests.clear_authentication();
select is((select count(*) from net.http_request_queue), :'queued_before'::bigint, 'nothing more was queued for pg_net');
select is((select count(*)::int from public.dtma_requests where instance_id = :'inst'), 1, 'still one DTMA request');

-- admins read the outbox, but not the bodies (a rotation's body carries a credential)
select tests.authenticate_as(:'owner');
select is((select operation from public.dtma_requests where instance_id = :'inst'), 'deploy', 'the owner reads the outbox');
select throws_ok('select body from public.dtma_requests', '42501', null, 'but not the request bodies');
select tests.authenticate_as(:'member');
select is_empty('select id from public.dtma_requests', 'a member sees no DTMA requests');

-- the harvest is for service callers only
select tests.authenticate_as(:'owner');
select throws_ok('select public.harvest_dtma_responses()', '42501', null, 'an owner cannot harvest');
select tests.clear_authentication();

-- no response yet: in flight, nothing changes
select is(pg_temp.harvest() ->> 'in_flight', '1', 'no response yet: in flight');

-- 503: retried with a new pg_net request, up to max_attempts; then failed with the last error
select pg_temp.respond(:'inst', 503, '{"success": false, "error": "busy"}');
select is(pg_temp.harvest() ->> 'retried', '1', 'a 503 is retried');
select is((select state::text || ' ' || attempt from pg_temp.req(:'inst')), 'sent 2', 'and sent again (attempt 2)');
select is((select status::text from public.account_tool_instances where id = :'inst'), 'deploying', 'the instance is still deploying');
select pg_temp.respond(:'inst', null, null, true, 'Timeout of 10000 ms reached');
select is(pg_temp.harvest() ->> 'retried', '1', 'a timeout is retried');
select pg_temp.respond(:'inst', null, null, false, 'ECONNREFUSED: connect ECONNREFUSED');
select is(pg_temp.harvest() ->> 'retried', '1', 'a refused connection (DTMA down) is retried');
select is(public.harvest_dtma_responses(p_lost_after => '-1 day', p_backoff_base => '0 seconds') ->> 'lost', '1',
          'no response after the timeout plus the margin: lost, and retried');
select pg_temp.respond(:'inst', 500, 'Internal Server Error');
select is(pg_temp.harvest() ->> 'failed', '1', 'the fifth transient failure fails the request');
select is((select state::text || ' ' || attempt from pg_temp.req(:'inst')), 'failed 5', 'after 5 attempts');
select is((select status::text from public.account_tool_instances where id = :'inst'), 'failed', 'the instance is failed');
select matches((select last_error from public.account_tool_instances where id = :'inst'), '^HTTP 500', 'with the last error kept');
select is((select cause from public.audit_log where entity_id = :'inst' and action = 'instance.transition' order by id desc limit 1),
          'dtma_response', 'the transition is audited with its cause');

-- redeploy from failed; DTMA answers 201 but reports the server failed in data.errors
select tests.authenticate_as(:'owner');
select is(public.manage_mcp_servers('deploy', :'org', '{}', :'inst') ->> 'status', 'deploying', 'redeploy after a failure');
select tests.clear_authentication();
select pg_temp.respond(:'inst', 201, '{"success": true, "message": "deployed 0 of 1", "data": {"groupId": "g", "deployedServers": [],
  "errors": {"mem-1": "package not installed"}, "totalServers": 1, "successfulDeployments": 0}}');
select is(pg_temp.harvest() ->> 'failed', '1', 'a 201 with data.errors is a failure, not retried');
select is((select status::text from public.account_tool_instances where id = :'inst'), 'failed', 'the instance is failed');
select is((select last_error from public.account_tool_instances where id = :'inst'), 'mem-1: package not installed',
          'with DTMA''s error');

-- a 4xx is permanent
select tests.authenticate_as(:'owner');
select public.manage_mcp_servers('deploy', :'org', '{}', :'inst');
select tests.clear_authentication();
select pg_temp.respond(:'inst', 401, '{"success": false, "error": "bad token"}');
select is(pg_temp.harvest() ->> 'failed', '1', 'a 401 fails at once');
select is((select attempt from pg_temp.req(:'inst')), 1, 'without retrying');

-- success: running, with the endpoint
select tests.authenticate_as(:'owner');
select public.manage_mcp_servers('deploy', :'org', '{}', :'inst');
select tests.clear_authentication();
select pg_temp.respond(:'inst', 201, '{"success": true, "message": "ok", "data": {"groupId": "g", "deployedServers": ["mem-1"],
  "errors": {}, "totalServers": 1, "successfulDeployments": 1}}');
select is(pg_temp.harvest() ->> 'succeeded', '1', 'a 201 without errors succeeds');
select is((select status::text from public.account_tool_instances where id = :'inst'), 'running', 'the instance is running');
select is((select endpoint_url from public.account_tool_instances where id = :'inst'),
          'http://127.0.0.1:30999/mcp/servers/mem-1/mcp', 'with its MCP endpoint');

-- health poll: per server GET /mcp/health/:groupId (unhealthy, healthy again, drift), per
-- toolbox GET /mcp/status (liveness, its own orphan groups only)
select set_config('tests.toolbox', :'toolbox', true);
select set_config('tests.inst', :'inst', true);
create function pg_temp.status_req() returns public.dtma_requests language sql as $$
  select * from public.dtma_requests where toolbox_id = current_setting('tests.toolbox')::uuid and operation = 'status'
   order by id desc limit 1
$$;
create function pg_temp.health_req() returns public.dtma_requests language sql as $$
  select * from public.dtma_requests where instance_id = current_setting('tests.inst')::uuid and operation = 'health'
   order by id desc limit 1
$$;
create function pg_temp.respond_status(p_content text) returns void language sql as $$
  insert into net._http_response (id, status_code, content) select net_request_id, 200, p_content from pg_temp.status_req()
$$;
create function pg_temp.respond_health(p_status int, p_content text) returns void language sql as $$
  insert into net._http_response (id, status_code, content) select net_request_id, p_status, p_content from pg_temp.health_req()
$$;
select is(public.poll_dtma_status(), 1, 'the health poll covers the one toolbox with a deployed server');
select is((select method || ' ' || path || ' ' || max_attempts from pg_temp.status_req()), 'GET /mcp/status 1', 'GET /mcp/status, not retried');
select is((select method || ' ' || path || ' ' || max_attempts from pg_temp.health_req()),
          format('GET /mcp/health/mcp-%s-%s 1', :'toolbox', :'inst'), 'and GET /mcp/health of the server''s group, not retried');
select pg_temp.respond_health(200, format('{"success": true, "data": {"groupId": "mcp-%s-%s", "health": {"collectiveStatus": "degraded",
  "instances": {"mem-1": {"status": "running", "healthStatus": "unhealthy"}}}}}', :'toolbox', :'inst'));
select pg_temp.harvest();
select is((select status::text from public.account_tool_instances where id = :'inst'), 'unhealthy', 'unhealthy per DTMA');
select public.poll_dtma_status();
select pg_temp.respond_health(200, format('{"success": true, "data": {"health": {"collectiveStatus": "healthy",
  "instances": {"mem-1": {"status": "running", "healthStatus": "healthy"}}}}}'));
select pg_temp.respond_status(format('{"success": true, "data": {"summary": {}, "groups": {"mcp-%s-%s": {"instances": {}},
  "mcp-%s-%s": {"instances": {}}, "mcp-someone-else": {"instances": {}}}}}',
  :'toolbox', :'inst', :'toolbox', '00000000-0000-4000-8000-000000000001'));
select pg_temp.harvest();
select is((select status::text || ' ' || health_status from public.account_tool_instances where id = :'inst'), 'running healthy',
          'running again when healthy');
select is((select array_agg(path order by path) from public.dtma_requests where toolbox_id = :'toolbox' and operation = 'remove' and instance_id is null),
          array[format('/mcp/groups/mcp-%s-00000000-0000-4000-8000-000000000001?forceRemove=true', :'toolbox')],
          'a group of this toolbox that the database does not know is removed; groups of other toolboxes are left alone');
select is((select status::text || ' ' || dtma_dialect from public.account_tool_environments where id = :'toolbox'), 'active project',
          'the toolbox answered: active, and its answer is the project''s dialect');
select public.poll_dtma_status();
insert into net._http_response (id, status_code, timed_out, error_msg)
  select net_request_id, null, false, 'Couldn''t connect to server' from pg_temp.status_req();
select pg_temp.harvest();
select is((select status::text from public.account_tool_environments where id = :'toolbox'), 'unresponsive',
          'DTMA does not answer: the toolbox is unresponsive');
select is((select status::text from public.account_tool_instances where id = :'inst'), 'unhealthy', 'and its servers unhealthy');
select public.poll_dtma_status();
select pg_temp.respond_health(404, format('{"success": false, "error": "MCP group ''mcp-%s-%s'' not found"}', :'toolbox', :'inst'));
select pg_temp.harvest();
select is((select status::text from public.account_tool_instances where id = :'inst'), 'stopped',
          'DTMA no longer runs its group while the database said unhealthy: reconciled to stopped');
select is((select cause from public.audit_log where entity_id = :'inst' and action = 'instance.transition' order by id desc limit 1),
          'health_poll', 'audited with the health poll as cause');

-- stop during a deployment: the stop waits for the deployment's response, then goes out
select tests.authenticate_as(:'owner');
select public.manage_mcp_servers('deploy', :'org', '{}', :'inst');
select is(public.manage_mcp_servers('stop', :'org', '{}', :'inst') ->> 'status', 'stopping', 'stop during deployment: stopping');
select tests.clear_authentication();
select is((select state::text || ' ' || coalesce(net_request_id::text, 'none') from pg_temp.req(:'inst')), 'queued none',
          'the stop is not sent while the deploy is in flight');
insert into net._http_response (id, status_code, content)
  select net_request_id, 201, '{"success": true, "message": "ok", "data": {"errors": {}}}' from public.dtma_requests
   where instance_id = :'inst' and operation = 'deploy' and state = 'sent';
select pg_temp.harvest();
select is((select status::text from public.account_tool_instances where id = :'inst'), 'stopping', 'the late deploy success does not undo the stop');
select is((select operation || ' ' || method || ' ' || path || ' ' || state from pg_temp.req(:'inst')),
          format('stop DELETE /mcp/groups/mcp-%s-%s?gracefulTimeoutMs=5000 sent', :'toolbox', :'inst'), 'then the stop is sent');
select pg_temp.respond(:'inst', 404, '{"success": false, "error": "unknown group"}');
select pg_temp.harvest();
select is((select status::text from public.account_tool_instances where id = :'inst'), 'stopped', 'a 404 to a stop means already gone: stopped');

-- remove
select tests.authenticate_as(:'owner');
select is(public.manage_mcp_servers('delete', :'org', '{}', :'inst') ->> 'status', 'removing', 'delete: removing');
select tests.clear_authentication();
select is((select method || ' ' || path from pg_temp.req(:'inst')), format('DELETE /mcp/groups/mcp-%s-%s?forceRemove=true', :'toolbox', :'inst'),
          'DELETE with forceRemove');
select pg_temp.respond(:'inst', 200, '{"success": true, "data": {"removedServers": ["mem-1"], "errors": {}}}');
select pg_temp.harvest();
select is((select status::text from public.account_tool_instances where id = :'inst'), 'removed', 'removed');

-- the classification is a pure function of the answer, and never of the HTTP client's wording
select is((select array_agg(distinct c.outcome) from unnest(array['Couldn''t connect to server', 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1',
            'Couldn''t resolve host name', 'anything at all']) e,
            unnest(array['deploy', 'stop', 'remove', 'restart', 'status', 'health', 'credentials_refresh']) op,
            private.dtma_classify(op, false, null, null, null, false, e, 1000) c),
          array['transient'], 'no HTTP status is "no answer", whatever pg_net''s error_msg says, for every operation');
select is((select array_agg(c.outcome order by s) from unnest(array[404, 500, 200]) s,
            private.dtma_classify('remove', false, s, jsonb_build_object('success', s = 200, 'error', 'Container group g not found'), null, false, null, 1000) c),
          array['ok', 'ok', 'ok'], 'a removal answered "not found" is done, whatever the status code');
select is((select c.outcome from private.dtma_classify('restart', false, 400,
            '{"success": false, "message": "Failed to restart MCP server ''x'' - check server status and restart limits"}', null, false, null, 1000) c),
          'declined', 'a refused restart is declined, not failed');
select is((select array_agg(c.outcome order by e) from unnest(array['connect ENOENT /var/run/docker.sock', '(HTTP code 400) unexpected - invalid reference format']) e,
            private.dtma_classify('deploy', false, 201, jsonb_build_object('success', false, 'data', jsonb_build_object('errors', jsonb_build_object('x', e))), null, false, null, 1000) c),
          array['permanent', 'transient'], 'a deploy failure under a 201 is classified by its cause');

-- every operation the outbox may hold has its handler: the dispatch is a static case, so one
-- without a branch would fail there (case not found), not be skipped while marked succeeded
insert into public.dtma_requests (organization_id, toolbox_id, instance_id, operation, method, path, idempotency_key, state)
select :'org', :'toolbox', :'inst', op, 'GET', '/x', 'dispatch-test:' || op, 'failed'
  from (select (regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g'))[1] as op
          from pg_catalog.pg_constraint c
         where c.conrelid = 'public.dtma_requests'::regclass and pg_get_constraintdef(c.oid) like '%operation%') ops;
select cmp_ok((select count(*)::int from public.dtma_requests where idempotency_key like 'dispatch-test:%'), '>=', 7,
              'every operation of the outbox''s check constraint');
select private.dtma_dispatch(r, 'permanent', 'dispatch test', 'dtma_response')
  from public.dtma_requests r where r.idempotency_key like 'dispatch-test:%';
select is((select array_agg(operation || ': ' || last_error) from public.dtma_requests
            where idempotency_key like 'dispatch-test:%' and last_error like '%handler failed%'), null,
          'has a handler the dispatch reaches');

select * from finish();
rollback;
