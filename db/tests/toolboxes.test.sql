-- Toolboxes: Adam, an admin of Acme, registers a DTMA host with its bearer token. The token goes
-- to Vault and the table keeps only the secret's id; nobody signed in can read the token back.
-- Members, viewers, strangers and other tenants cannot register or remove toolboxes.
begin;
select plan(40);

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

-- An admin registers a toolbox.
select tests.authenticate_as(:'adam');
select public.create_toolbox(:'acme', 'edge-1', 'http://127.0.0.1:30000/', :'token') as edge1 \gset
select tests.clear_authentication();
select results_eq(format('select organization_id, name, dtma_base_url, status::text, created_by from public.account_tool_environments where id = %L', :'edge1'),
                  format($$values (%L::uuid, 'edge-1', 'http://127.0.0.1:30000', 'active', %L::uuid)$$, :'acme', :'adam'),
                  'the toolbox is registered, active, with its base URL without the trailing slash');
select is((select s.decrypted_secret from public.account_tool_environments t join vault.decrypted_secrets s on s.id = t.dtma_token_secret_id
            where t.id = :'edge1'), :'token', 'the token is in Vault, under the secret id the toolbox keeps');
select is_empty(format($$select * from public.account_tool_environments t where to_jsonb(t)::text like %L$$, '%' || :'token' || '%'),
                'no column of the toolbox holds the token');
select is_empty(format($$select * from public.audit_log a where a.after::text like %L or a.before::text like %L$$,
                       '%' || :'token' || '%', '%' || :'token' || '%'),
                'no audit row holds the token');
select results_eq(format($$select action, actor_id, after from public.audit_log where entity_type = 'toolbox' and entity_id = %L$$, :'edge1'),
                  format($$values ('toolbox.created', %L::uuid, '{"name": "edge-1", "dtma_base_url": "http://127.0.0.1:30000/"}'::jsonb)$$, :'adam'),
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

-- Only admins and owners register toolboxes.
select tests.authenticate_as(:'mia');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'http://10.0.0.9:30000', %L)$$, :'acme', :'token'), '42501', null,
                 'a member cannot register a toolbox (42501)');
select tests.authenticate_as(:'vic');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'http://10.0.0.9:30000', %L)$$, :'acme', :'token'), '42501', null,
                 'a viewer cannot register a toolbox (42501)');
select tests.authenticate_as(:'sam');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'http://10.0.0.9:30000', %L)$$, :'acme', :'token'), '42501', null,
                 'a stranger cannot register a toolbox in Acme (42501)');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'http://10.0.0.9:30000', %L)$$, :'acme', :'token'), '42501', null,
                 'another tenant''s owner cannot register a toolbox in Acme (42501)');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.create_toolbox(%L, 'mine', 'http://10.0.0.9:30000', %L)$$, :'acme', :'token'), '42501', null,
                 'anon cannot register a toolbox (42501)');
select tests.authenticate_as(:'olga');
select lives_ok(format($$select public.create_toolbox(%L, 'edge-2', 'https://dtma.acme.test/base', %L)$$, :'acme', :'token' || '-2'),
                'an owner registers a toolbox');
select tests.authenticate_as_service_role();
select lives_ok(format($$select public.create_toolbox(%L, 'edge-3', 'https://dtma3.acme.test', %L)$$, :'acme', :'token' || '-3'),
                'service_role registers a toolbox');

-- Bad input is refused with 22023; a duplicate name with 23505, leaving no orphan secret behind.
select tests.authenticate_as(:'adam');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'ftp://10.0.0.9', %L)$$, :'acme', :'token'), '22023', null,
                 'a base URL that is not http(s) is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'not a url', %L)$$, :'acme', :'token'), '22023', null,
                 'a base URL that is not a URL is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'http://10.0.0.9:30000/?x=1', %L)$$, :'acme', :'token'), '22023', null,
                 'a base URL with a query string is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', null, %L)$$, :'acme', :'token'), '22023', null,
                 'a missing base URL is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'http://10.0.0.9:30000', 'short')$$, :'acme'), '22023', null,
                 'a token shorter than 16 characters is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'x', 'http://10.0.0.9:30000', null)$$, :'acme'), '22023', null,
                 'a missing token is refused (22023)');
select throws_ok(format($$select public.create_toolbox(%L, 'edge-1', 'http://10.0.0.9:30000', %L)$$, :'acme', :'token'), '23505', null,
                 'a second toolbox named edge-1 in Acme is refused (23505)');
select tests.clear_authentication();
select is((select count(*)::int from vault.secrets where name like 'toolbox/%/dtma-token'),
          (select count(*)::int from public.account_tool_environments),
          'one Vault secret per toolbox: refused registrations left none behind');

-- Members read their organization's toolboxes; nobody else does; nobody writes them directly.
select tests.authenticate_as(:'vic');
select is((select count(*)::int from public.account_tool_environments), 3, 'a viewer sees Acme''s three toolboxes');
select tests.authenticate_as(:'sam');
select is_empty('select * from public.account_tool_environments', 'a stranger sees no toolbox');
select tests.authenticate_as(:'bob');
select is_empty('select * from public.account_tool_environments', 'another tenant sees none of Acme''s toolboxes');
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
                  format($$values ('toolbox.created', %L::uuid), ('toolbox.deleted', %L::uuid)$$, :'olga', :'adam'),
                  'its registration and removal are both audited');

select * from finish();
rollback;
