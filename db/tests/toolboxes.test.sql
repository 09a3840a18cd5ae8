-- Toolboxes: the platform registers a DTMA host for Acme with its bearer token, at a URL its
-- policy allows. The token goes to Vault and the table keeps only the secret's id; nobody signed
-- in can read the token back. Nobody in an organization, not even its owner, registers a toolbox
-- (a DTMA URL decides where the database's HTTP client goes); Adam, an admin, removes one.
begin;
select plan(83);

select tests.create_user('olga@acme.test') as olga \gset
select tests.create_user('adam@acme.test') as adam \gset
select tests.create_user('mia@acme.test') as mia \gset
select tests.create_user('vic@acme.test') as vic \gset
select tests.create_user('sam@nowhere.test') as sam \gset
select tests.create_user('bob@globex.test') as bob \gset
select tests.authenticate_as(:'bob');
select public.create_organization('Globex', 'globex') as globex \gset
select tests.authenticate_as(:'olga');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'adam', 'admin');
select public.add_organization_member(:'acme', :'mia', 'member');
select public.add_organization_member(:'acme', :'vic', 'viewer');

\set token 'dtma-bearer-7f3a9c1e5b2d4f60'

-- The platform registers a toolbox (the local stack allows its own DTMA on 127.0.0.1 over http).
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'edge-1', 'http://127.0.0.1:30000/', :'token') as edge1 \gset
select results_eq(format('select organization_id, name, dtma_base_url, status::text, created_by from public.account_tool_environments where id = %L', :'edge1'),
                  format($$values (%L::uuid, 'edge-1', 'http://127.0.0.1:30000', 'active', null::uuid)$$, :'acme'),
                  'the toolbox is registered, active, with its base URL without the trailing slash');
select is((select s.decrypted_secret from public.account_tool_environments t join vault.decrypted_secrets s on s.id = t.dtma_token_secret_id
            where t.id = :'edge1'), :'token', 'the token is in Vault, under the secret id the toolbox keeps');
select is_empty(format($$select * from public.account_tool_environments t where to_jsonb(t)::text like %L$$, '%' || :'token' || '%'),
                'no column of the toolbox holds the token');
select is_empty(format($$select * from public.audit_log a where a.after::text like %L or a.before::text like %L$$,
                       '%' || :'token' || '%', '%' || :'token' || '%'),
                'no audit row holds the token');
select results_eq(format($$select action, actor_id, after from public.audit_log where entity_type = 'toolbox' and entity_id = %L$$, :'edge1'),
                  $$values ('toolbox.created', null::uuid, '{"name": "edge-1", "dtma_base_url": "http://127.0.0.1:30000/"}'::jsonb)$$,
                  'the registration is audited');
select is(private.toolbox_token(:'edge1'), :'token', 'definer code reads the token through private.toolbox_token');

-- Nobody signed in reads the token, by any path.
select tests.authenticate_as(:'adam');
select isnt((select dtma_token_secret_id from public.account_tool_environments where id = :'edge1'), null,
            'an admin sees the toolbox and its secret id');
select throws_ok('select decrypted_secret from vault.decrypted_secrets', '42501', null,
                 'an admin cannot read decrypted Vault secrets (42501)');
select throws_ok('select secret from vault.secrets', '42501', null, 'an admin cannot read Vault ciphertext (42501)');
select throws_ok(format('select private.toolbox_token(%L)', :'edge1'), '42501', null,
                 'an admin cannot call private.toolbox_token (42501)');
select tests.authenticate_as(:'mia');
select throws_ok(format('select private.toolbox_token(%L)', :'edge1'), '42501', null,
                 'a member cannot call private.toolbox_token (42501)');
select tests.authenticate_as_service_role();
select throws_ok(format('select private.toolbox_token(%L)', :'edge1'), '42501', null,
                 'not even service_role calls private.toolbox_token (42501)');

-- Only the platform registers toolboxes: nobody in an organization, owner included.
select tests.authenticate_as(:'mia');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'https://mine.acme.test', %L)$$, :'acme', :'token'), '42501', null,
                 'a member cannot register a toolbox (42501)');
select tests.authenticate_as(:'vic');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'https://mine.acme.test', %L)$$, :'acme', :'token'), '42501', null,
                 'a viewer cannot register a toolbox (42501)');
select tests.authenticate_as(:'sam');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'https://mine.acme.test', %L)$$, :'acme', :'token'), '42501', null,
                 'a stranger cannot register a toolbox in Acme (42501)');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'https://mine.acme.test', %L)$$, :'acme', :'token'), '42501', null,
                 'another tenant''s owner cannot register a toolbox in Acme (42501)');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'https://mine.acme.test', %L)$$, :'acme', :'token'), '42501', null,
                 'anon cannot register a toolbox (42501)');
select tests.authenticate_as(:'adam');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'https://mine.acme.test', %L)$$, :'acme', :'token'), '42501', null,
                 'an admin cannot register a toolbox (42501)');
select tests.authenticate_as(:'olga');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'https://mine.acme.test', %L)$$, :'acme', :'token'), '42501', null,
                 'nor can the owner (42501)');
select tests.authenticate_with('authenticated', jsonb_build_object('sub', :'olga', 'role', 'service_role'));
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'https://mine.acme.test', %L)$$, :'acme', :'token'), '42501', null,
                 'nor the owner''s session claiming service_role in its JWT (42501)');
select tests.authenticate_as_service_role();
select lives_ok(format($$select public.create_toolbox(%L, 'edge-2', 'https://dtma.acme.test/base', %L)$$, :'acme', :'token' || '-2'),
                'service_role registers a toolbox');
select tests.clear_authentication();
select lives_ok(format($$select public.create_toolbox(%L, 'edge-3', 'https://dtma3.acme.test', %L)$$, :'acme', :'token' || '-3'),
                'a platform admin in SQL registers one');
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.create_toolbox(gen_random_uuid(), 'x', 'https://x.test', %L)$$, :'token'), 'P0002', null,
                 'for an organization that does not exist: not found (P0002)');

-- The URL policy (SSRF): https to a public host; loopback and private ranges only where the
-- platform allows them; link-local and metadata addresses never.
select throws_ok(format($$select public.create_toolbox(%L, 'x', %L, %L)$$, :'acme', u, :'token'), '22023', null,
                 format('%s is refused at registration (22023)', u))
  from unnest(array['http://169.254.169.254/latest', 'https://169.254.169.254', 'https://[::ffff:169.254.169.254]',
                    'https://[fe80::1]:30000', 'https://metadata.google.internal', 'https://10.0.0.9:30000',
                    'https://192.168.1.10', 'https://172.16.0.1', 'https://[::1]:30000', 'https://localhost:30000',
                    'http://dtma.acme.test', 'https://2852039166', 'https://0x7f.1', 'https://0177.0.0.1',
                    'https://user:pw@dtma.acme.test', 'http://127.0.0.2:30000']) u;
select tests.clear_authentication();
select is(private.toolbox_url_refusal('http://169.254.169.254/latest'),
          '169.254.169.254 is never allowed (IPv4 link-local, where cloud metadata services answer)', 'the refusal names its reason');
select is(private.toolbox_url_refusal('https://8.8.8.8'), null, 'a public address over https is allowed');
-- A platform exception: a private host, one port, https only; link-local stays refused even when allowed.
select tests.clear_authentication();
insert into private.toolbox_url_rules (verdict, network, port, reason) values ('allow', '10.0.0.9/32', 30000, 'Acme''s VPN toolbox');
insert into private.toolbox_url_rules (verdict, network, allow_http, reason) values ('allow', '169.254.169.254/32', true, 'a mistake');
select is(private.toolbox_url_refusal('https://10.0.0.9:30000'), null, 'an allowed private host is accepted on its port');
select isnt(private.toolbox_url_refusal('https://10.0.0.9:30001'), null, 'but not on another port');
select isnt(private.toolbox_url_refusal('http://10.0.0.9:30000'), null, 'nor over http');
select isnt(private.toolbox_url_refusal('http://169.254.169.254'), null, 'a never rule wins over any allow rule');
select tests.authenticate_as(:'adam');
select throws_ok('select * from private.toolbox_url_rules', '42501', null, 'an admin cannot read the policy (42501)');
select throws_ok($$insert into private.toolbox_url_rules (verdict, network, reason) values ('allow', '169.254.0.0/16', 'x')$$, '42501', null,
                 'nor change it (42501)');
select throws_ok($$select private.toolbox_url_refusal('https://x.test')$$, '42501', null, 'nor call the check (42501)');

-- Bad input is refused with 22023; a duplicate name with 23505, leaving no orphan secret behind.
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'ftp://dtma.acme.test', %L)$$, :'acme', :'token'), '22023', null,
                 'a base URL that is not http(s) is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'not a url', %L)$$, :'acme', :'token'), '22023', null,
                 'a base URL that is not a URL is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'https://dtma.acme.test/?x=1', %L)$$, :'acme', :'token'), '22023', null,
                 'a base URL with a query string is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', null, %L)$$, :'acme', :'token'), '22023', null,
                 'a missing base URL is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'https://x.acme.test', 'short')$$, :'acme'), '22023', null,
                 'a token shorter than 16 characters is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'https://x.acme.test', null)$$, :'acme'), '22023', null,
                 'a missing token is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'edge-1', 'https://x.acme.test', %L)$$, :'acme', :'token'), '23505', null,
                 'a second toolbox named edge-1 in Acme is refused (23505)');
select tests.clear_authentication();
select is((select count(*)::int from vault.secrets where name like 'toolbox/%/dtma-token'),
          (select count(*)::int from public.account_tool_environments),
          'one Vault secret per toolbox: refused registrations left none behind');

-- Members read their organization's toolboxes; nobody else does; nobody writes them directly.
select tests.authenticate_as(:'vic');
select is((select count(*)::int from public.account_tool_environments), 3, 'a viewer sees Acme''s three toolboxes');
select tests.authenticate_as(:'sam');
select is_empty('select id, name from public.account_tool_environments', 'a stranger sees no toolbox');
select tests.authenticate_as(:'bob');
select is_empty('select id, name from public.account_tool_environments', 'another tenant sees none of Acme''s toolboxes');
select tests.authenticate_as(:'adam');
select throws_ok(format($$insert into public.account_tool_environments (organization_id, name, dtma_base_url, dtma_token_secret_id)
                          values (%L, 'raw', 'http://10.0.0.9:30000', gen_random_uuid())$$, :'acme'), '42501', null,
                 'an admin cannot insert a toolbox directly (42501)');
select throws_ok(format($$update public.account_tool_environments set dtma_base_url = 'http://evil.test' where id = %L$$, :'edge1'),
                 '42501', null, 'an admin cannot repoint a toolbox directly (42501)');

-- Removing a toolbox: admins, and only when none of its servers runs.
select public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'edge1', 'catalog_name', 'memory', 'instance_name', 'memory')) ->> 'id' as mem \gset
select public.manage_mcp_servers('deploy', :'acme', null, :'mem') ->> 'status' as mem_status \gset
select tests.authenticate_as(:'mia');
select throws_ok(format('select public.delete_toolbox(%L)', :'edge1'), '42501', null, 'a member cannot remove a toolbox (42501)');
select tests.authenticate_as(:'bob');
select throws_ok(format('select public.delete_toolbox(%L)', :'edge1'), 'P0002', null,
                 'another tenant cannot remove it: it is answered as missing (P0002)');
select tests.authenticate_as(:'adam');
select throws_ok(format('select public.delete_toolbox(%L)', :'edge1'), '55000', null,
                 'a toolbox with a server being deployed cannot be removed (55000)');
select throws_ok(format('select public.delete_toolbox(%L)', gen_random_uuid()), 'P0002', null, 'an unknown toolbox is not found (P0002)');
select tests.clear_authentication();
select dtma_token_secret_id as edge2_secret, id as edge2 from public.account_tool_environments where name = 'edge-2' \gset
select tests.authenticate_as(:'adam');
select lives_ok(format('select public.delete_toolbox(%L)', :'edge2'), 'an admin removes an idle toolbox');
select tests.clear_authentication();
select is_empty(format('select * from public.account_tool_environments where id = %L', :'edge2'), 'the toolbox is gone');
select is_empty(format('select * from vault.secrets where id = %L', :'edge2_secret'), 'and so is its token');
select results_eq(format($$select action, actor_id from public.audit_log where entity_type = 'toolbox' and entity_id = %L order by id$$, :'edge2'),
                  format($$values ('toolbox.created', null::uuid), ('toolbox.deleted', %L::uuid)$$, :'adam'),
                  'its registration and removal are both audited');

-- Checked again when a request is sent: a toolbox whose URL the policy now refuses is never
-- contacted; the request fails at once with the reason, and the server with it.
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'edge-4', 'https://dtma4.acme.test', :'token' || '-4') as edge4 \gset
select tests.authenticate_as(:'adam');
select public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'edge4', 'catalog_name', 'memory', 'instance_name', 'memory')) ->> 'id' as mem4 \gset
select tests.clear_authentication();
insert into private.toolbox_url_rules (verdict, host, reason) values ('never', 'acme.test', 'no longer trusted');
select (select count(*) from net.http_request_queue) as queued_before \gset
select tests.authenticate_as(:'adam');
select is(public.manage_mcp_servers('deploy', :'acme', null, :'mem4') ->> 'status', 'failed',
          'deploying to a toolbox the policy now refuses fails at once');
select tests.clear_authentication();
select is((select count(*) from net.http_request_queue), :'queued_before'::bigint, 'and nothing is handed to pg_net');
select results_eq(format($$select state::text, last_error from public.dtma_requests where instance_id = %L$$, :'mem4'),
                  $$values ('failed', 'not sent: the toolbox URL is refused by the platform''s URL policy (dtma4.acme.test is never allowed (no longer trusted))')$$,
                  'the request failed, with the reason');
select is((select a.cause from public.audit_log a where a.entity_id = :'mem4' and a.after ->> 'status' = 'failed'), 'url_policy',
          'the transition to failed is audited with the policy as its cause');

-- What organizations see of an error: a classified outcome, never response text.
update public.account_tool_instances set last_error = 'HTTP 500: {"secret": "instance metadata"}' where id = :'mem4';
select tests.authenticate_as(:'vic');
select is((select last_error_summary from public.account_tool_instances where id = :'mem4'), 'HTTP 500 (server error)',
          'a viewer reads the HTTP status and a short reason');
select throws_ok(format('select last_error from public.account_tool_instances where id = %L', :'mem4'), '42501', null,
                 'but not the full error (42501)');
select tests.authenticate_as(:'adam');
select throws_ok('select last_error from public.account_tool_environments', '42501', null, 'nor a toolbox''s (42501)');
select throws_ok('select response from public.dtma_requests', '42501', null, 'nor a DTMA response (42501)');
select throws_ok('select last_error from public.dtma_requests', '42501', null, 'nor a DTMA request''s full error (42501)');
select is((select last_error_summary from public.dtma_requests where instance_id = :'mem4'),
          'not sent: the toolbox URL is refused by the platform''s URL policy (dtma4.acme.test is never allowed (no longer trusted))',
          'an admin reads the control plane''s own reason in full');
select ok(public.manage_mcp_servers('update', :'acme', '{}', :'mem4') ? 'last_error_summary'
          and not public.manage_mcp_servers('update', :'acme', '{}', :'mem4') ? 'last_error',
          'manage_mcp_servers returns the summary, not the full error, to an admin');
select tests.authenticate_as_service_role();
select is((select last_error from public.account_tool_instances where id = :'mem4'), 'HTTP 500: {"secret": "instance metadata"}',
          'the platform (service_role) reads the full error');
select is((select count(*)::int from public.dtma_requests where instance_id = :'mem4' and last_error like 'not sent:%'), 1,
          'and the DTMA requests in full');
select tests.clear_authentication();
select is(array_agg(private.dtma_error_summary(e) order by o), array['timed out', 'no response (lost)', 'DTMA reported an error',
          'DTMA did not answer: HTTP 404 (not found)', 'DTMA reports it stopped', 'DTMA reported an error'],
          'timeouts, lost responses, DTMA''s own messages and nested errors are classified')
  from unnest(array['timed out after 10000 ms', 'lost: no response', 'memory-1: could not read /etc/passwd',
                    'DTMA did not answer: HTTP 404: <html>', 'DTMA reports it stopped', 'Couldn''t resolve host']) with ordinality u(e, o);

select * from finish();
rollback;
