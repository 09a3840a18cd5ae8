-- Two toolboxes on one DTMA (issue: a health sweep removed another toolbox's servers as orphans,
-- across organizations). Groups are named under their toolbox and a sweep touches only its own;
-- a DTMA base URL cannot be registered twice (the index cannot see aliases such as an address
-- for a host name: the naming is what keeps two toolboxes apart).
begin;
select plan(8);

select tests.create_user('shared-acme@example.com') as acme_owner \gset
select tests.create_user('shared-globex@example.com') as globex_owner \gset
select tests.authenticate_as(:'acme_owner');
select public.create_organization('Shared Acme', 'shared-acme') as acme \gset
select tests.authenticate_as(:'globex_owner');
select public.create_organization('Shared Globex', 'shared-globex') as globex \gset
select tests.clear_authentication();

-- The platform registers the toolboxes.
insert into private.toolbox_url_rules (verdict, host, allow_http, reason) values ('allow', 'dtma.shared.test', true, 'the shared test DTMA');
select public.create_toolbox(:'acme', 'acme-box', 'http://dtma.shared.test:30993', 'toolbox-token-acme-0123456789') as box_a \gset
select throws_ok(format($$select public.create_toolbox(%L, 'again', 'http://dtma.shared.test:30993', 'toolbox-token-other-0123456789')$$, :'globex'),
                 '23505', null, 'a DTMA base URL cannot be registered twice, in any organization');
select throws_ok(format($$select public.create_toolbox(%L, 'again', 'http://DTMA.Shared.test:30993/', 'toolbox-token-other-0123456789')$$, :'globex'),
                 '23505', null, 'nor spelled in another case or with a trailing slash');
-- The same DTMA under another name (its address): the index cannot know.
select public.create_toolbox(:'globex', 'globex-box', 'http://127.0.0.1:30993', 'toolbox-token-globex-0123456789') as box_b \gset

select tests.authenticate_as(:'acme_owner');
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'box_a', 'catalog_name', 'memory', 'instance_name', 'mem-a')) ->> 'id') as inst_a \gset
select public.manage_mcp_servers('deploy', :'acme', '{}', :'inst_a');
select tests.authenticate_as(:'globex_owner');
select (public.manage_mcp_servers('create', :'globex', jsonb_build_object('toolbox_id', :'box_b', 'catalog_name', 'memory', 'instance_name', 'mem-b')) ->> 'id') as inst_b \gset
select public.manage_mcp_servers('deploy', :'globex', '{}', :'inst_b');
select tests.clear_authentication();
insert into net._http_response (id, status_code, content, timed_out)
  select net_request_id, 201, '{"success": true, "data": {"deployedServers": ["x"], "errors": {}}}', false
    from public.dtma_requests where instance_id in (:'inst_a', :'inst_b') and operation = 'deploy';
select public.harvest_dtma_responses();
select is((select array_agg(status::text) from public.account_tool_instances where id in (:'inst_a', :'inst_b')), array['running', 'running'],
          'both servers run on the one DTMA');
select isnt((select body ->> 'groupId' from public.dtma_requests where instance_id = :'inst_a' and operation = 'deploy'),
            (select body ->> 'groupId' from public.dtma_requests where instance_id = :'inst_b' and operation = 'deploy'),
            'each in a group named under its own toolbox');

-- The DTMA lists every group it runs, both toolboxes' and an orphan of each; each toolbox's sweep
-- removes its own orphan only.
select format('mcp-%s-00000000-0000-4000-8000-00000000000a', :'box_a') as orphan_a, format('mcp-%s-00000000-0000-4000-8000-00000000000b', :'box_b') as orphan_b \gset
select public.poll_dtma_status();
insert into net._http_response (id, status_code, content, timed_out)
  select r.net_request_id, 200, jsonb_build_object('success', true, 'data', jsonb_build_object('summary', '{}'::jsonb, 'groups', jsonb_build_object(
           (select body ->> 'groupId' from public.dtma_requests where instance_id = :'inst_a' and operation = 'deploy'), '{"instances": {}}'::jsonb,
           (select body ->> 'groupId' from public.dtma_requests where instance_id = :'inst_b' and operation = 'deploy'), '{"instances": {}}'::jsonb,
           :'orphan_a', '{"instances": {}}'::jsonb, :'orphan_b', '{"instances": {}}'::jsonb)))::text, false
    from public.dtma_requests r where r.operation = 'status' and r.toolbox_id in (:'box_a', :'box_b');
select public.harvest_dtma_responses();
select is((select array_agg(path order by path) from public.dtma_requests where toolbox_id = :'box_a' and operation = 'remove'),
          array[format('/mcp/groups/%s?forceRemove=true', :'orphan_a')], 'acme''s sweep removes acme''s orphan only');
select is((select array_agg(path order by path) from public.dtma_requests where toolbox_id = :'box_b' and operation = 'remove'),
          array[format('/mcp/groups/%s?forceRemove=true', :'orphan_b')], 'globex''s sweep removes globex''s orphan only');
select is((select count(*)::int from public.dtma_requests where operation = 'remove' and instance_id is null
            and (path like '%' || :'inst_a' || '%' or path like '%' || :'inst_b' || '%')), 0,
          'neither touches the other''s running server');
select is((select array_agg(status::text) from public.account_tool_instances where id in (:'inst_a', :'inst_b')), array['running', 'running'],
          'both still run');

select * from finish();
rollback;
