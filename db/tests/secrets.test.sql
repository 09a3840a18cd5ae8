-- Secrets: Ada keeps an API key in Vault through create_vault_secret; only she (and the
-- platform's runtime) reads it back. Bob may use the same name without touching hers. Carol, an
-- admin, keeps an organization secret that only service_role reads. Then Carol rotates an MCP
-- server's credential: the new version waits for DTMA's confirmation while the old one stays
-- current; a failed confirmation keeps the old one; a confirmed one replaces it and deletes it.
begin;
select plan(85);

select tests.create_user('ada@example.com') as ada \gset
select tests.create_user('bob@example.com') as bob \gset
select tests.create_user('carol@example.com') as carol \gset
select tests.create_user('eve@example.com') as eve \gset
select tests.create_user('gone@example.com') as gone \gset

select tests.authenticate_as(:'ada');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'bob', 'member');
select public.add_organization_member(:'acme', :'carol', 'admin');
select tests.authenticate_as(:'eve');
select public.create_organization('Globex', 'globex') as globex \gset
select tests.clear_authentication();

-- Nothing for anon
select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'public'::regnamespace and has_function_privilege('anon', p.oid, 'execute')
                     and p.proname in ('create_vault_secret', 'get_secret', 'delete_vault_secret', 'rotate_mcp_credentials')$$,
                'anon can execute none of the secrets functions');
select is_empty($$select t from unnest(array['public.vault_secret_owners', 'public.mcp_credential_versions']) t
                   where has_table_privilege('anon', t, 'select, insert, update, delete')$$,
                'anon has no privilege on the secrets tables');
select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'private'::regnamespace
                     and p.proname in ('mcp_current_credentials', 'promote_mcp_credential', 'dtma_on_credentials_refresh')
                     and (has_function_privilege('authenticated', p.oid, 'execute') or has_function_privilege('service_role', p.oid, 'execute'))$$,
                'the helpers that read or promote credentials are for definer functions only');

-- A user's secret: created, encrypted, read back by its owner only
select tests.authenticate_as(:'ada');
select public.create_vault_secret('sk-ada-0001', 'openai-key', 'my OpenAI key') as ada_secret \gset
select is(public.get_secret(:'ada_secret'), 'sk-ada-0001', 'Ada reads her secret');
select throws_ok($$select public.create_vault_secret('sk-ada-0002', 'openai-key')$$, '23505', null,
                 'a second secret of hers with the same name is refused: nothing is overwritten');
select throws_ok($$select public.create_vault_secret('x', 'bad name!')$$, '22023', null, 'an invalid name is refused');
select throws_ok($$select public.create_vault_secret('', 'empty')$$, '22023', null, 'an empty secret is refused');
select is((select owner_user_id from public.vault_secret_owners where id = :'ada_secret'), :'ada'::uuid, 'Ada is recorded as its owner');
select tests.clear_authentication();
select is((select name from vault.secrets where id = :'ada_secret'), 'user/' || :'ada' || '/openai-key',
          'Vault names it after its owner');
select is((select count(*)::int from vault.secrets where id = :'ada_secret' and secret like '%sk-ada-0001%'), 0,
          'Vault holds it encrypted');

select tests.authenticate_as(:'bob');
select throws_ok(format('select public.get_secret(%L)', :'ada_secret'), '42501', null, 'Bob cannot read Ada''s secret');
select throws_ok(format('select public.delete_vault_secret(%L)', :'ada_secret'), '42501', null, 'nor delete it');
select public.create_vault_secret('sk-bob-0001', 'openai-key') as bob_secret \gset
select isnt(:'bob_secret'::uuid, :'ada_secret'::uuid, 'Bob''s secret of the same name is another secret');
select is(public.get_secret(:'bob_secret'), 'sk-bob-0001', 'Bob reads his own');
select is_empty(format('select * from public.vault_secret_owners where id = %L', :'ada_secret'), 'Bob does not see Ada''s secret listed');
select throws_ok(format($$insert into public.vault_secret_owners (id, owner_user_id, name) values (%L, %L, 'mine-now')$$, :'ada_secret', :'bob'),
                 '42501', null, 'no direct write to the owner table');
select tests.authenticate_as(:'ada');
select is(public.get_secret(:'ada_secret'), 'sk-ada-0001', 'Ada''s secret is untouched by Bob''s');
select tests.authenticate_as(:'carol');
select throws_ok(format('select public.get_secret(%L)', :'ada_secret'), '42501', null, 'an admin cannot read a member''s secret');
select tests.authenticate_as(:'eve');
select throws_ok(format('select public.get_secret(%L)', :'ada_secret'), '42501', null, 'another tenant cannot read it');
select tests.authenticate_as_service_role();
select is(public.get_secret(:'ada_secret'), 'sk-ada-0001', 'service_role (the platform''s runtime) reads it');
select throws_ok($$select public.get_secret(gen_random_uuid())$$, 'P0002', null, 'service_role: an unknown secret is not found');
select throws_ok($$select public.create_vault_secret('x', 'ownerless')$$, '22023', null, 'service_role cannot create an ownerless secret');
select tests.authenticate_as_anon();
select throws_ok(format('select public.get_secret(%L)', :'ada_secret'), '42501', null, 'anon cannot read a secret');
select throws_ok($$select public.create_vault_secret('x', 'anon-secret')$$, '42501', null, 'anon cannot create one');
select throws_ok(format('select public.delete_vault_secret(%L)', :'ada_secret'), '42501', null, 'anon cannot delete one');
select throws_ok('select * from public.vault_secret_owners', '42501', null, 'anon cannot list secrets');

-- Secrets that are not create_vault_secret's (a toolbox's DTMA token) are not served
-- The platform registers toolboxes.
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'box-1', 'http://127.0.0.1:30998', 'toolbox-token-0123456789abcdef') as toolbox \gset
select tests.authenticate_as(:'ada');
select throws_ok(format('select public.get_secret(dtma_token_secret_id) from public.account_tool_environments where id = %L', :'toolbox'),
                 '42501', null, 'an owner of the organization cannot read the DTMA token through get_secret');
select tests.authenticate_as_service_role();
select throws_ok(format('select public.get_secret(dtma_token_secret_id) from public.account_tool_environments where id = %L', :'toolbox'),
                 'P0002', null, 'get_secret serves only the secrets it created, even to service_role');

-- An organization's secret: admins write it, only service_role reads it
select tests.authenticate_as(:'carol');
select public.create_vault_secret('org-token-0001', 'registry-token', 'pull token', :'acme') as org_secret \gset
select throws_ok(format('select public.get_secret(%L)', :'org_secret'), '42501', null,
                 'the admin who wrote it cannot read it back');
select throws_ok(format($$select public.create_vault_secret('again', 'registry-token', '', %L)$$, :'acme'), '23505', null,
                 'the organization already has a secret of that name');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.create_vault_secret('x', 'member-org-secret', '', %L)$$, :'acme'), '42501', null,
                 'a member cannot create an organization secret');
select throws_ok(format('select public.delete_vault_secret(%L)', :'org_secret'), '42501', null, 'nor delete one');
select is_empty(format('select * from public.vault_secret_owners where id = %L', :'org_secret'), 'nor list one');
select tests.authenticate_as(:'eve');
select throws_ok(format($$select public.create_vault_secret('x', 'registry-token', '', %L)$$, :'acme'), '42501', null,
                 'another tenant cannot create a secret for Acme');
select isnt(public.create_vault_secret('globex-token', 'registry-token', '', :'globex'), :'org_secret'::uuid,
            'Globex has its own registry-token');
select tests.authenticate_as(:'ada');
select is((select count(*)::int from public.vault_secret_owners), 2, 'Ada (owner of Acme) lists her secret and Acme''s');
select tests.authenticate_as_service_role();
select is(public.get_secret(:'org_secret'), 'org-token-0001', 'service_role reads the organization''s secret');

-- Deleting: the owner row and the Vault secret go together
select tests.authenticate_as(:'ada');
select ok(public.delete_vault_secret(:'ada_secret'), 'Ada deletes her secret');
select throws_ok(format('select public.get_secret(%L)', :'ada_secret'), '42501', null, 'it is gone');
select tests.authenticate_as(:'carol');
select ok(public.delete_vault_secret(:'org_secret'), 'an admin deletes the organization''s secret');
select tests.authenticate_as_service_role();
select ok(not public.delete_vault_secret(gen_random_uuid()), 'service_role: deleting an unknown secret finds nothing');
select tests.clear_authentication();
select is((select count(*)::int from vault.secrets where id in (:'ada_secret', :'org_secret')), 0, 'both are deleted from Vault');
select tests.authenticate_as(:'gone');
select public.create_vault_secret('sk-gone', 'key') as gone_secret \gset
select tests.clear_authentication();
delete from auth.users where id = :'gone';
select is((select count(*)::int from vault.secrets where id = :'gone_secret'), 0, 'a deleted user''s secrets leave Vault with them');
select is((select count(*)::int from public.audit_log where entity_type = 'vault_secret' and entity_id = :'ada_secret'), 2,
          'creation and deletion are audited');

-- Credential rotation: an MCP server and its toolbox
select tests.authenticate_as(:'ada');
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'toolbox', 'catalog_name', 'memory',
        'instance_name', 'mem-1')) ->> 'id') as mem1 \gset
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'toolbox', 'catalog_name', 'memory',
        'instance_name', 'mem-2')) ->> 'id') as mem2 \gset
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'toolbox', 'catalog_name', 'memory',
        'instance_name', 'mem-3')) ->> 'id') as mem3 \gset
select public.manage_mcp_servers('deploy', :'acme', '{}', :'mem1') ->> 'status' as mem1_status \gset
select public.manage_mcp_servers('deploy', :'acme', '{}', :'mem2') ->> 'status' as mem2_status \gset
select tests.clear_authentication();
select private.apply_instance_event(:'mem1', 'deployed', 'dtma_response') as mem1_status \gset
select private.apply_instance_event(:'mem2', 'deployed', 'dtma_response') as mem2_status \gset
-- The deployments are answered: nothing else is in flight for the servers.
update public.dtma_requests set state = 'succeeded', completed_at = now() where instance_id in (:'mem1', :'mem2');

-- pg_temp helpers: the latest credentials refresh request of a server, and DTMA's answer to it.
create function pg_temp.refresh_req(p_instance uuid) returns public.dtma_requests language sql as
  $$ select * from public.dtma_requests where instance_id = p_instance and operation = 'credentials_refresh' order by id desc limit 1 $$;
-- As the harvest does: the request is closed, then its handler is called.
create function pg_temp.answer(p_instance uuid, p_ok boolean, p_error text default null) returns void language sql as $$
  update public.dtma_requests set state = case when p_ok then 'succeeded' else 'failed' end::public.dtma_request_state,
         completed_at = now(), last_error = p_error
   where id = (select id from pg_temp.refresh_req(p_instance));
  select private.dtma_on_credentials_refresh(r, p_ok, p_error) from pg_temp.refresh_req(p_instance) r;
$$;
create function pg_temp.state_of(p_version uuid) returns text language sql as
  $$ select state::text from public.mcp_credential_versions where id = p_version $$;
grant execute on all functions in schema pg_temp to public;

select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.rotate_mcp_credentials('API_KEY', 'v1', %L)$$, :'mem1'), '42501', null,
                 'a member cannot rotate credentials');
select tests.authenticate_as(:'eve');
select throws_ok(format($$select public.rotate_mcp_credentials('API_KEY', 'v1', %L)$$, :'mem1'), 'P0002', null,
                 'another tenant cannot: the server is answered as missing (P0002)');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.rotate_mcp_credentials('API_KEY', 'v1', %L)$$, :'mem1'), '42501', null, 'anon cannot');
select tests.authenticate_as(:'carol');
select throws_ok(format($$select public.rotate_mcp_credentials('api-key', 'v1', %L)$$, :'mem1'), '22023', null,
                 'a credential is named like an environment variable');
select throws_ok(format($$select public.rotate_mcp_credentials('API_KEY', 'v1', %L, %L)$$, :'mem1', :'toolbox'), '22023', null,
                 'a server or a toolbox, not both');
select throws_ok(format($$select public.rotate_mcp_credentials('API_KEY', '', %L)$$, :'mem1'), '22023', null, 'an empty value is refused');

select public.rotate_mcp_credentials('API_KEY', 'key-v1', :'mem1', p_reason => 'initial key') as v1 \gset
select is(pg_temp.state_of(:'v1'), 'pending', 'the first version waits for DTMA');
select tests.clear_authentication();
select is((select operation || ' ' || method || ' ' || path from pg_temp.refresh_req(:'mem1')),
          'credentials_refresh POST /mcp/credentials/refresh/mem-1', 'DTMA is asked to refresh the server''s credentials');
select is((select convert_from(q.body, 'UTF8')::jsonb from net.http_request_queue q
            where q.id = (select net_request_id from pg_temp.refresh_req(:'mem1'))),
          '{"restart": true, "environmentVariables": {"API_KEY": "key-v1"}}'::jsonb,
          'with the new value as an environment variable, restarting the server (read from Vault as it is sent)');
select pg_temp.answer(:'mem1', true) as answered \gset
select is(pg_temp.state_of(:'v1'), 'current', 'DTMA confirmed: the version is current');
select is(private.mcp_current_credentials(:'mem1'), '{"API_KEY": "key-v1"}'::jsonb, 'the server runs with it');
select is((select body #>> '{environmentVariables,API_KEY}' from pg_temp.refresh_req(:'mem1')), '[from Vault]',
          'the value sent never was in the outbox');

select tests.authenticate_as(:'carol');
select public.rotate_mcp_credentials('API_KEY', 'key-v2', :'mem1') as v2 \gset
select throws_ok(format($$select public.rotate_mcp_credentials('API_KEY', 'key-v2b', %L)$$, :'mem1'), '55000', null,
                 'one rotation at a time per credential');
select tests.clear_authentication();
select is(pg_temp.state_of(:'v1'), 'current', 'while v2 is pending, v1 stays current');
select is(private.mcp_current_credentials(:'mem1'), '{"API_KEY": "key-v1"}'::jsonb, 'and is what the server runs with');
select pg_temp.answer(:'mem1', false, 'HTTP 500: restart failed') as answered \gset
select is(pg_temp.state_of(:'v2') || ':' || (select last_error from public.mcp_credential_versions where id = :'v2'),
          'failed:HTTP 500: restart failed', 'DTMA failed: v2 is marked failed with the error');
select is(pg_temp.state_of(:'v1'), 'current', 'v1 stays current');
select is((select secret_id from public.mcp_credential_versions where id = :'v2'), null, 'the failed value is deleted');

-- v3 is confirmed through the real harvest path: pg_net's response to the outbox request
select tests.authenticate_as(:'carol');
select public.rotate_mcp_credentials('API_KEY', 'key-v3', :'mem1') as v3 \gset
select tests.clear_authentication();
select secret_id as v1_secret from public.mcp_credential_versions where id = :'v1' \gset
select is((select state::text from pg_temp.refresh_req(:'mem1')), 'sent', 'the request was sent through pg_net');
insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
select r.net_request_id, 200, 'application/json', '{}',
       '{"success": true, "message": "refreshed", "data": {"instanceName": "mem-1", "status": "refreshed", "restarted": true, "timestamp": "2026-01-01T00:00:00Z"}}',
       false, null from pg_temp.refresh_req(:'mem1') r;
select lives_ok($$select public.harvest_dtma_responses(p_backoff_base => '0 seconds')$$, 'the harvest applies DTMA''s answer');
select is(pg_temp.state_of(:'v3'), 'current', 'v3 is current');
select is(pg_temp.state_of(:'v1'), 'superseded', 'v1 is superseded');
select is((select count(*)::int from vault.secrets where id = :'v1_secret'), 0, 'and its secret deleted from Vault');
select is(private.mcp_current_credentials(:'mem1'), '{"API_KEY": "key-v3"}'::jsonb, 'the server runs with v3');
select is((select array_agg(version order by version) from public.mcp_credential_versions where server_instance_id = :'mem1'),
          array[1, 2, 3], 'every version is kept as history');

-- A toolbox-wide credential: every running server must confirm
select tests.authenticate_as(:'carol');
select public.rotate_mcp_credentials('SHARED_TOKEN', 'shared-v1', p_toolbox_id => :'toolbox') as shared \gset
select tests.clear_authentication();
select is((select confirmations_pending from public.mcp_credential_versions where id = :'shared'), 2,
          'two running servers must confirm');
select is((select count(*)::int from public.dtma_requests where operation = 'credentials_refresh'
            and idempotency_key like 'credentials_refresh:' || :'shared' || ':%'), 2, 'one request per running server');
select pg_temp.answer(:'mem2', true) as answered \gset
select is(pg_temp.state_of(:'shared'), 'pending', 'one confirmation is not enough');
select pg_temp.answer(:'mem1', true) as answered \gset
select is(pg_temp.state_of(:'shared'), 'current', 'both confirmed: current');
select is(private.mcp_current_credentials(:'mem1'), '{"API_KEY": "key-v3", "SHARED_TOKEN": "shared-v1"}'::jsonb,
          'a server runs with the toolbox''s credentials and its own');
select tests.authenticate_as(:'carol');
select public.rotate_mcp_credentials('API_KEY', 'key-m3', :'mem3') as m3 \gset
select is(pg_temp.state_of(:'m3'), 'current', 'a server that is not running has nothing to confirm: current at once');
select is((select count(*)::int from public.dtma_requests where instance_id = :'mem3'), 0, 'and DTMA is not called');

-- Who sees what, and the audit trail
select is((select count(*)::int from public.mcp_credential_versions), 5, 'an admin reads the credential versions');
select is((select count(*)::int from public.mcp_credential_versions c where to_jsonb(c)::text ~ 'key-v|key-m|shared-v'), 0,
          'they hold secret ids, never values');
select tests.authenticate_as(:'bob');
select is_empty('select * from public.mcp_credential_versions', 'a member does not');
select tests.authenticate_as_anon();
select throws_ok('select * from public.mcp_credential_versions', '42501', null, 'anon cannot read them');
select tests.clear_authentication();
select is((select count(*)::int from public.audit_log where entity_type = 'mcp_credential' and entity_id = :'v2'), 2,
          'v2''s creation and failure are audited');
select is((select reason from public.audit_log where entity_type = 'mcp_credential' and entity_id = :'v2' and action = 'mcp_credential.update'),
          'HTTP 500: restart failed', 'the failure with DTMA''s error');
select is((select cause from public.audit_log where entity_type = 'mcp_credential' and entity_id = :'v1' and action = 'mcp_credential.insert'),
          'credential_rotation', 'the rotation with its cause');
select is((select reason from public.audit_log where entity_type = 'mcp_credential' and entity_id = :'v1' and action = 'mcp_credential.insert'),
          'initial key', 'and its reason');

-- Deleting the organization takes its credentials out of Vault
select array_agg(secret_id) filter (where secret_id is not null) as live_secrets from public.mcp_credential_versions \gset
delete from public.organizations where id = :'acme';
select is((select count(*)::int from vault.secrets where id = any (:'live_secrets'::uuid[])), 0,
          'a deleted organization''s credentials leave Vault with it');

select * from finish();
rollback;
