-- What reaches an MCP server's environment, and what stays out of everyone's sight. The catalog
-- entry `keyed` needs an API key (a secret: "writeOnly" in its configuration schema), a region,
-- and reads a GitHub token from GITHUB_TOKEN. Adam, an admin of Acme, configures a server with
-- the key: it goes to Vault, and Vic, a viewer, sees only that it is set. Deploy, restart and
-- refresh carry the key, the rotated credentials and Adam's GitHub token, read from Vault as each
-- request goes out; the outbox never stores them. A revoked GitHub connection stops the server.
begin;
select plan(44);

-- pg_temp helpers: the latest DTMA request of a server, and the body pg_net was handed for it.
create function pg_temp.last_req(p_instance uuid) returns public.dtma_requests language sql as
  $$ select * from public.dtma_requests where instance_id = p_instance order by id desc limit 1 $$;
create function pg_temp.wire(p_instance uuid) returns jsonb language sql as
  $$ select convert_from(q.body, 'UTF8')::jsonb from net.http_request_queue q
      where q.id = (select net_request_id from pg_temp.last_req(p_instance)) $$;
-- As the harvest does for a success: the request is closed, and the server moves on.
create function pg_temp.settle(p_instance uuid, p_event text) returns void language sql as $$
  update public.dtma_requests set state = 'succeeded', completed_at = now() where instance_id = p_instance and state in ('queued', 'sent');
  select private.apply_instance_event(p_instance, p_event, 'dtma_response');
$$;

insert into public.mcp_server_catalog (name, display_name, docker_image_url, version, transport_type, config_schema, oauth_token_env)
values ('keyed', 'Keyed', 'npm:@modelcontextprotocol/server-everything', '1.0.0', 'stdio',
        '{"type": "object", "required": ["env"], "properties": {"env": {"type": "object", "required": ["API_KEY"],
          "additionalProperties": false, "properties": {
            "API_KEY": {"type": "string", "minLength": 8, "writeOnly": true},
            "REGION": {"type": "string", "enum": ["eu", "us"]}}}}}',
        '{"github": "GITHUB_TOKEN"}');

select tests.create_user('olga@acme.test') as olga \gset
select tests.create_user('adam@acme.test') as adam \gset
select tests.create_user('mia@acme.test') as mia \gset
select tests.create_user('vic@acme.test') as vic \gset
select tests.authenticate_as(:'olga');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'adam', 'admin');
select public.add_organization_member(:'acme', :'mia', 'member');
select public.add_organization_member(:'acme', :'vic', 'viewer');
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'box', 'http://127.0.0.1:30995', 'toolbox-token-0123456789abcdef') as box \gset

-- A secret field goes to Vault; the instance keeps that it is set, and when.
select tests.authenticate_as(:'adam');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, %L)$$, :'acme',
                        jsonb_build_object('toolbox_id', :'box', 'catalog_name', 'keyed', 'instance_name', 'k0',
                                           'configuration', '{"env": {"REGION": "eu"}}'::jsonb)),
                 '22023', 'invalid configuration: configuration.env.API_KEY is required', 'a required secret must be given (22023)');
select throws_ok(format($$select public.manage_mcp_servers('create', %L, %L)$$, :'acme',
                        jsonb_build_object('toolbox_id', :'box', 'catalog_name', 'keyed', 'instance_name', 'k0',
                                           'configuration', '{"env": {"API_KEY": "short"}}'::jsonb)),
                 '22023', 'invalid configuration: configuration.env.API_KEY must have at least 8 characters',
                 'a secret is validated like any field, and the error does not quote it (22023)');
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'box', 'catalog_name', 'keyed',
        'instance_name', 'keyed-1', 'configuration', '{"env": {"API_KEY": "sk-live-0001", "REGION": "eu"}}'::jsonb))) as created \gset
select is((:'created'::jsonb) -> 'configuration', '{"env": {"REGION": "eu"}}'::jsonb, 'the configuration returned holds no secret');
select is(jsonb_typeof((:'created'::jsonb) #> '{secret_fields,env.API_KEY}'), 'string', 'it says the key is set, and when');
select (:'created'::jsonb) ->> 'id' as k1 \gset

select tests.clear_authentication();
select is((select count(*)::int from vault.secrets where name like 'instance/%'), 1, 'refused configurations left no secret in Vault');
select is((select configuration from public.account_tool_instances where id = :'k1'), '{"env": {"REGION": "eu"}}'::jsonb,
          'the stored configuration holds no secret');
select is_empty(format($$select from public.account_tool_instances i where i.id = %L and to_jsonb(i)::text like '%%sk-live%%'$$, :'k1'),
                'no column of the instance holds it');
select is_empty($$select from public.audit_log a where coalesce(a.before::text, '') || coalesce(a.after::text, '') like '%sk-live%'$$,
                'nor does the audit trail');
select is(private.instance_configuration(:'k1'), '{"env": {"API_KEY": "sk-live-0001", "REGION": "eu"}}'::jsonb,
          'definer code puts it back from Vault');

select tests.authenticate_as(:'vic');
select is((select jsonb_typeof(secret_fields -> 'env.API_KEY') from public.account_tool_instances where id = :'k1'), 'string',
          'a viewer sees that the key is set and when it changed');
select is((select configuration from public.account_tool_instances where id = :'k1'), '{"env": {"REGION": "eu"}}'::jsonb,
          'but not the key');
select throws_ok(format('select private.instance_configuration(%L)', :'k1'), '42501', null, 'nor through definer code (42501)');
select throws_ok('select * from private.instance_secrets', '42501', null, 'nor its Vault reference (42501)');
select throws_ok('select decrypted_secret from vault.decrypted_secrets', '42501', null, 'nor Vault (42501)');
select tests.authenticate_as(:'adam');
select throws_ok(format('select private.mcp_server_environment(%L)', :'k1'), '42501', null,
                 'the admin who wrote it cannot read it back either (42501)');
select tests.authenticate_as_service_role();
select throws_ok(format('select private.instance_configuration(%L)', :'k1'), '42501', null, 'nor can service_role (42501)');

-- Updating other fields keeps the secret; a new value replaces it; a required one cannot be dropped.
select tests.authenticate_as(:'adam');
select is(public.manage_mcp_servers('update', :'acme', '{"configuration": {"env": {"REGION": "us"}}}', :'k1') -> 'configuration',
          '{"env": {"REGION": "us"}}'::jsonb, 'the region changes');
select tests.clear_authentication();
select is(private.instance_configuration(:'k1'), '{"env": {"API_KEY": "sk-live-0001", "REGION": "us"}}'::jsonb,
          'and the key, left out, is kept');
select tests.authenticate_as(:'adam');
select lives_ok(format($$select public.manage_mcp_servers('update', %L, '{"configuration": {"env": {"API_KEY": "sk-live-0002", "REGION": "us"}}}', %L)$$,
                       :'acme', :'k1'), 'a new key replaces it');
select throws_ok(format($$select public.manage_mcp_servers('update', %L, '{"configuration": {"env": {"API_KEY": null}}}', %L)$$, :'acme', :'k1'),
                 '22023', null, 'a required secret cannot be cleared (22023)');
select tests.clear_authentication();
select is(private.instance_configuration(:'k1') #>> '{env,API_KEY}', 'sk-live-0002', 'Vault holds the new key');
select is((select count(*)::int from vault.secrets where name like 'instance/%'), 1, 'in the same secret, updated');

-- Deploy: the key reaches the wire, read from Vault as the request is sent; the outbox keeps none.
select tests.authenticate_as(:'adam');
select public.manage_mcp_servers('deploy', :'acme', '{}', :'k1') ->> 'status' as status \gset
select tests.clear_authentication();
select is(pg_temp.wire(:'k1') #> '{servers,0,baseConfigOverrideJson}', '{"env": {"API_KEY": "sk-live-0002", "REGION": "us"}}'::jsonb,
          'the deploy sent carries the configuration with its key');
select is(pg_temp.wire(:'k1') #> '{servers,0,environmentVariables}', '{"API_KEY": "sk-live-0002", "REGION": "us"}'::jsonb,
          'and the environment the server gets');
select is_empty($$select from public.dtma_requests r where r.body::text like '%sk-live%'$$, 'the stored request holds no key');

-- Rotated while stopped, a credential reaches the next deploy (issue: the deploy used to carry none).
select pg_temp.settle(:'k1', 'deployed');
select tests.authenticate_as(:'adam');
select public.manage_mcp_servers('stop', :'acme', '{}', :'k1') ->> 'status' as status \gset
select tests.clear_authentication();
select pg_temp.settle(:'k1', 'stopped');
select tests.authenticate_as(:'adam');
select public.rotate_mcp_credentials('SERVICE_TOKEN', 'tok-v1', :'k1') as v1 \gset
select public.rotate_mcp_credentials('SERVICE_TOKEN', 'tok-v2', :'k1') as v2 \gset
select public.rotate_mcp_credentials('SHARED_TOKEN', 'shared-v1', p_toolbox_id => :'box') as shared \gset
select is(public.manage_mcp_servers('deploy', :'acme', '{}', :'k1') ->> 'status', 'deploying', 'deployed again');
select tests.clear_authentication();
select is(pg_temp.wire(:'k1') #> '{servers,0,environmentVariables}',
          '{"API_KEY": "sk-live-0002", "REGION": "us", "SERVICE_TOKEN": "tok-v2", "SHARED_TOKEN": "shared-v1"}'::jsonb,
          'the deploy carries the current version of every credential, the toolbox''s included');
select is_empty($$select from public.dtma_requests r where r.body::text ~ 'tok-v|shared-v1'$$, 'and the outbox none of them');

-- A restart goes through DTMA's refresh route, so it restarts with the current environment.
select pg_temp.settle(:'k1', 'deployed');
select tests.authenticate_as(:'adam');
select public.manage_mcp_servers('restart', :'acme', '{}', :'k1') ->> 'status' as status \gset
select tests.clear_authentication();
select is((select operation || ' ' || path || ' ' || body::text from pg_temp.last_req(:'k1')),
          'restart /mcp/credentials/refresh/keyed-1 {"restart": true}', 'a restart asks DTMA to refresh and restart');
select is(pg_temp.wire(:'k1') -> 'environmentVariables',
          '{"API_KEY": "sk-live-0002", "REGION": "us", "SERVICE_TOKEN": "tok-v2", "SHARED_TOKEN": "shared-v1"}'::jsonb,
          'with every variable, read from Vault as it is sent');
select pg_temp.settle(:'k1', 'deployed');

-- OAuth: Adam lends the server his GitHub connection; its token reaches GITHUB_TOKEN.
select tests.authenticate_as(:'adam');
select public.store_user_oauth_connection('github', 'gho-access-1', 'ghr-refresh-1', 0, '{repo}') as adam_gh \gset
select tests.authenticate_as(:'mia');
select public.store_user_oauth_connection('github', 'gho-mia-1', null, 3600, '{repo}') as mia_gh \gset
select tests.authenticate_as(:'adam');
select throws_ok(format($$select public.manage_mcp_servers('update', %L, %L, %L)$$, :'acme',
                        jsonb_build_object('oauth_connections', jsonb_build_object('github', :'mia_gh')), :'k1'),
                 '42501', null, 'an admin cannot lend someone else''s connection (42501)');
select throws_ok(format($$select public.manage_mcp_servers('update', %L, %L, %L)$$, :'acme',
                        jsonb_build_object('oauth_connections', jsonb_build_object('slack', :'adam_gh')), :'k1'),
                 '22023', null, 'nor declare a provider the catalog entry reads no token of (22023)');
select is(public.manage_mcp_servers('update', :'acme', jsonb_build_object('oauth_connections', jsonb_build_object('github', :'adam_gh')), :'k1')
            -> 'oauth_connections', jsonb_build_object('github', :'adam_gh'), 'Adam lends his own');
select tests.authenticate_as(:'vic');
select results_eq(format('select provider, connection_id from public.mcp_server_oauth_connections where server_instance_id = %L', :'k1'),
                  format($$values ('github', %L::uuid)$$, :'adam_gh'), 'a viewer sees which connection the server uses');
select tests.clear_authentication();
select is(private.mcp_server_environment(:'k1') ->> 'GITHUB_TOKEN', 'gho-access-1', 'the server''s environment has the token');

-- A refresh (the single-flight protocol) pushes the new token through the credentials refresh route.
select tests.authenticate_as(:'adam');
select lease_id from public.begin_oauth_refresh(:'adam_gh') \gset
select public.complete_oauth_refresh(:'lease_id', 'gho-access-2', null, 3600) as refreshed \gset
select tests.clear_authentication();
select is((select operation || ' ' || path from pg_temp.last_req(:'k1')), 'credentials_refresh /mcp/credentials/refresh/keyed-1',
          'the refresh queues a credentials refresh for the running server');
select is(pg_temp.wire(:'k1') #>> '{environmentVariables,GITHUB_TOKEN}', 'gho-access-2', 'which carries the new token');
select is_empty($$select from public.dtma_requests r where r.body::text like '%gho-%'$$, 'no token is stored in the outbox');
update public.dtma_requests set state = 'succeeded', completed_at = now() where instance_id = :'k1' and state in ('queued', 'sent');

-- A revoked connection stops the server, and the token is no longer sent.
select tests.authenticate_as(:'adam');
select ok(public.revoke_user_oauth_connection(:'adam_gh'), 'Adam revokes his GitHub connection');
select tests.clear_authentication();
select is((select status::text from public.account_tool_instances where id = :'k1'), 'stopping', 'the server using it is stopped');
select is((select a.cause from public.audit_log a where a.entity_id = :'k1' order by a.id desc limit 1), 'oauth_revoked',
          'with the revocation as the audited cause');
select is(private.mcp_server_environment(:'k1') ? 'GITHUB_TOKEN', false, 'its environment no longer has the token');
select is_empty(format('select from public.mcp_server_oauth_connections where server_instance_id = %L', :'k1'),
                'and it no longer declares the connection');

-- Its secrets leave Vault with it.
select secret_id as k1_secret from private.instance_secrets where instance_id = :'k1' \gset
delete from public.account_tool_environments where id = :'box';
select is_empty(format('select from vault.secrets where id = %L', :'k1_secret'), 'a deleted server''s secrets leave Vault');

select * from finish();
rollback;
