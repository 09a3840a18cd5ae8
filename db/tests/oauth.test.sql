-- OAuth: Ada connects her GitHub account (tokens go straight into Vault), lends it to her own
-- agent with a subset of its scopes, and her agent's runtime obtains the token. Nobody else
-- gets it: not Bob, not Carol the admin, not Eve of another tenant, not anon. An expired
-- token is refreshed single-flight through a lease; a lost lease's late answer is refused; a
-- failed refresh keeps the old refresh token; a revoked connection leaves nothing in Vault.
begin;
select plan(123);

select tests.create_user('ada@example.com') as ada \gset
select tests.create_user('bob@example.com') as bob \gset
select tests.create_user('carol@example.com') as carol \gset
select tests.create_user('vic@example.com') as vic \gset
select tests.create_user('eve@example.com') as eve \gset

select tests.authenticate_as(:'ada');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'bob', 'member');
select public.add_organization_member(:'acme', :'carol', 'admin');
select public.add_organization_member(:'acme', :'vic', 'viewer');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'ada', 'ada-bot') returning id as ada_bot \gset
select tests.authenticate_as(:'bob');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'bob', 'bob-bot') returning id as bob_bot \gset
select tests.authenticate_as(:'eve');
select public.create_organization('Globex', 'globex') as globex \gset
insert into public.agents (organization_id, user_id, name) values (:'globex', :'eve', 'eve-bot') returning id as eve_bot \gset
select tests.clear_authentication();

-- The providers: seeded with their real endpoints
select set_eq($$select name from public.oauth_providers$$, array['github', 'google', 'microsoft', 'slack'],
              'GitHub, Google, Microsoft and Slack are seeded');
select is((select token_endpoint from public.oauth_providers where name = 'github'), 'https://github.com/login/oauth/access_token',
          'GitHub''s token endpoint');
select is((select authorization_endpoint from public.oauth_providers where name = 'google'), 'https://accounts.google.com/o/oauth2/v2/auth',
          'Google''s authorization endpoint');
select is((select token_endpoint from public.oauth_providers where name = 'microsoft'),
          'https://login.microsoftonline.com/common/oauth2/v2.0/token', 'Microsoft''s token endpoint');
select is((select token_endpoint from public.oauth_providers where name = 'slack'), 'https://slack.com/api/oauth.v2.access',
          'Slack''s token endpoint');
select ok((select bool_and(supports_pkce) from public.oauth_providers), 'all four support PKCE');
select throws_ok($$insert into public.oauth_providers (name, display_name, authorization_endpoint, token_endpoint)
                   values ('plain', 'Plain', 'http://example.com/auth', 'http://example.com/token')$$,
                 '23514', null, 'a token endpoint must be https (or loopback)');
select lives_ok($$insert into public.oauth_providers (name, display_name, authorization_endpoint, token_endpoint, client_id)
                  values ('local-test', 'Local', 'http://127.0.0.1:9/authorize', 'http://127.0.0.1:9/token', 'local-client')$$,
                'a loopback http endpoint is allowed (local development and tests)');

-- Nothing for anon; the refresh leases are out of every API role's reach
select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'public'::regnamespace and has_function_privilege('anon', p.oid, 'execute')
                     and p.proname in ('store_user_oauth_connection', 'revoke_user_oauth_connection', 'get_user_oauth_connections',
                                       'grant_agent_oauth_access', 'revoke_agent_oauth_access', 'get_agent_oauth_permissions',
                                       'record_agent_oauth_usage', 'get_agent_oauth_token', 'begin_oauth_refresh',
                                       'complete_oauth_refresh', 'fail_oauth_refresh')$$,
                'anon can execute none of the OAuth functions');
select is_empty($$select t from unnest(array['public.oauth_providers', 'public.user_oauth_connections', 'public.agent_oauth_permissions',
                                             'private.oauth_refresh_leases']) t
                   where has_table_privilege('anon', t, 'select, insert, update, delete')$$,
                'anon has no privilege on the OAuth tables');
select is_empty($$select t from unnest(array['authenticated', 'service_role']) t
                   where has_table_privilege(t, 'private.oauth_refresh_leases', 'select, insert, update, delete')$$,
                'no API role can touch the refresh leases');

-- Storing a connection: the caller's own, tokens only in Vault
select tests.authenticate_as(:'ada');
select public.store_user_oauth_connection('github', 'gho_access_one', 'ghr_refresh_one', 3600, array['repo', 'read:user', 'gist'],
                                          '1001', 'ada-gh') as conn \gset
select tests.clear_authentication();
select is((select count(*)::int from public.user_oauth_connections c
            where to_jsonb(c)::text like '%gho_access_one%' or to_jsonb(c)::text like '%ghr_refresh_one%'), 0,
          'no column of the connection holds a token');
select is((select decrypted_secret from vault.decrypted_secrets s join public.user_oauth_connections c on c.access_token_secret_id = s.id
            where c.id = :'conn'), 'gho_access_one', 'the access token is in Vault');
select is((select decrypted_secret from vault.decrypted_secrets s join public.user_oauth_connections c on c.refresh_token_secret_id = s.id
            where c.id = :'conn'), 'ghr_refresh_one', 'the refresh token is in Vault');
select is((select count(*)::int from vault.secrets s join public.user_oauth_connections c on c.access_token_secret_id = s.id
            where c.id = :'conn' and s.secret like '%gho_access_one%'), 0, 'Vault holds it encrypted');
select is((select scopes from public.user_oauth_connections where id = :'conn'), array['gist', 'read:user', 'repo'],
          'the scopes are kept as a sorted set');

select tests.authenticate_as(:'ada');
select throws_ok(format($$select public.store_user_oauth_connection('github', 'x', p_user_id => %L)$$, :'bob'), '42501', null,
                 'Ada cannot store a connection for Bob');
select throws_ok($$select public.store_user_oauth_connection('myspace', 'x')$$, 'P0002', null, 'an unknown provider is refused');
select throws_ok($$select public.store_user_oauth_connection('github', '')$$, '22023', null, 'an empty access token is refused');
select throws_ok($$select public.store_user_oauth_connection('github', 'x', p_expires_in => -1)$$, '22023', null,
                 'a negative lifetime is refused');
select is(public.store_user_oauth_connection('github', 'gho_access_two', null, 3600, array['repo', 'read:user', 'gist'], '1001', ''),
          :'conn'::uuid, 'reconnecting the same account updates the same connection');
select tests.authenticate_as_anon();
select throws_ok($$select public.store_user_oauth_connection('github', 'x')$$, '42501', null, 'anon cannot store a connection');
select tests.clear_authentication();
select is((select decrypted_secret from vault.decrypted_secrets s join public.user_oauth_connections c on c.access_token_secret_id = s.id
            where c.id = :'conn'), 'gho_access_two', 'the reconnect replaced the access token in Vault');
select is((select decrypted_secret from vault.decrypted_secrets s join public.user_oauth_connections c on c.refresh_token_secret_id = s.id
            where c.id = :'conn'), 'ghr_refresh_one', 'a reconnect without a refresh token keeps the old one');
select is((select account_label from public.user_oauth_connections where id = :'conn'), 'ada-gh', 'an empty label keeps the old one');

-- Reading connections: only one's own, never a token
select tests.authenticate_as(:'ada');
select is((select count(*)::int from public.user_oauth_connections), 1, 'Ada reads her connection');
select throws_ok(format($$select decrypted_secret from vault.decrypted_secrets where id = (select access_token_secret_id from public.user_oauth_connections where id = %L)$$, :'conn'),
                 '42501', null, 'Ada cannot read her token from Vault directly');
select is((select provider || ':' || status::text from public.get_user_oauth_connections(:'ada')), 'github:active',
          'get_user_oauth_connections lists her connection');
select ok((select not (to_jsonb(c)::text ~ 'gho_') from public.get_user_oauth_connections(:'ada') c), 'with no token in it');
select throws_ok(format('select * from public.get_user_oauth_connections(%L)', :'bob'), '42501', null,
                 'Ada cannot list Bob''s connections');
select tests.authenticate_as(:'bob');
select is_empty($$select * from public.user_oauth_connections$$, 'Bob sees none of Ada''s connections');
select tests.authenticate_as_service_role();
select is((select count(*)::int from public.get_user_oauth_connections(:'ada')), 1, 'service_role lists Ada''s connections');
select tests.authenticate_as_anon();
select throws_ok('select * from public.user_oauth_connections', '42501', null, 'anon cannot read connections');
select throws_ok('select * from public.oauth_providers', '42501', null, 'anon cannot read providers');
select throws_ok(format('select * from public.get_user_oauth_connections(%L)', :'ada'), '42501', null,
                 'anon cannot list connections');

-- Lending a connection to an agent: the owner's own agents, a subset of the scopes
select tests.authenticate_as(:'ada');
select isnt(public.grant_agent_oauth_access(:'ada_bot', :'conn', array['repo']), null, 'Ada lends her GitHub to her agent (repo)');
select throws_ok(format($$select public.grant_agent_oauth_access(%L, %L, array['repo', 'admin:org'])$$, :'ada_bot', :'conn'),
                 '22023', null, 'a scope the connection does not hold is refused');
select throws_ok(format($$select public.grant_agent_oauth_access(%L, %L, array[]::text[])$$, :'ada_bot', :'conn'),
                 '22023', null, 'an empty scope list is refused');
select throws_ok(format($$select public.grant_agent_oauth_access(%L, %L, array['repo'], now() - interval '1 minute')$$, :'ada_bot', :'conn'),
                 '22023', null, 'an expiry in the past is refused');
select throws_ok(format($$select public.grant_agent_oauth_access(%L, %L, array['repo'])$$, :'bob_bot', :'conn'),
                 '42501', null, 'Ada (an owner of the organization) cannot lend her connection to Bob''s agent');
select throws_ok(format($$select public.grant_agent_oauth_access(%L, %L, array['repo'])$$, :'eve_bot', :'conn'),
                 '42501', null, 'nor to an agent of another tenant');
select throws_ok(format($$insert into public.agent_oauth_permissions (organization_id, agent_id, connection_id, scopes) values (%L, %L, %L, '{repo}')$$,
                        :'acme', :'ada_bot', :'conn'), '42501', null, 'no direct insert for an API role');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.grant_agent_oauth_access(%L, %L, array['repo'])$$, :'bob_bot', :'conn'),
                 '42501', null, 'Bob cannot lend Ada''s connection to his agent');
select tests.authenticate_as(:'carol');
select throws_ok(format($$select public.grant_agent_oauth_access(%L, %L, array['repo'])$$, :'ada_bot', :'conn'),
                 '42501', null, 'Carol, an admin, cannot lend Ada''s connection either');
select tests.clear_authentication();
select throws_ok(format($$insert into public.agent_oauth_permissions (organization_id, agent_id, connection_id, scopes) values (%L, %L, %L, '{repo}')$$,
                        :'acme', :'bob_bot', :'conn'), '42501', null, 'even as postgres, a connection goes only to its owner''s agents');

-- Reading permissions: those who manage the agent
select tests.authenticate_as(:'ada');
select is((select provider || ':' || state || ':' || array_to_string(scopes, ',') from public.get_agent_oauth_permissions(:'ada_bot')),
          'github:valid:repo', 'Ada sees her agent''s permission');
select tests.authenticate_as(:'carol');
select is((select count(*)::int from public.get_agent_oauth_permissions(:'ada_bot')), 1, 'Carol (admin) sees it');
select is((select count(*)::int from public.agent_oauth_permissions), 1, 'members read their organization''s permissions');
select tests.authenticate_as(:'vic');
select throws_ok(format('select * from public.get_agent_oauth_permissions(%L)', :'ada_bot'), '42501', null,
                 'Vic (viewer) cannot manage the agent');
select tests.authenticate_as(:'eve');
select throws_ok(format('select * from public.get_agent_oauth_permissions(%L)', :'ada_bot'), '42501', null,
                 'Eve (another tenant) cannot either');
select is_empty($$select * from public.agent_oauth_permissions$$, 'Eve sees no permission of Acme');

-- The agent's runtime obtains the token; nobody else does
select tests.authenticate_as(:'ada');
select is((select status || ':' || access_token from public.get_agent_oauth_token(:'ada_bot', 'github', array['repo'])),
          'ok:gho_access_two', 'the agent''s runtime (its owner''s session) gets the token');
select is((select status from public.get_agent_oauth_token(:'ada_bot', 'github')), 'ok', 'no scopes asked: any live permission');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github', array['gist'])$$, :'ada_bot'), '42501', null,
                 'a scope the agent was not lent is refused');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'google')$$, :'ada_bot'), '42501', null,
                 'a provider the agent was not lent is refused');
select tests.authenticate_as_service_role();
select is((select status from public.get_agent_oauth_token(:'ada_bot', 'github', array['repo'])), 'ok', 'service_role gets it');
select tests.authenticate_as(:'carol');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '42501', null,
                 'Carol (admin) does not get Ada''s token');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '42501', null,
                 'Bob does not get it');
select tests.authenticate_as(:'eve');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '42501', null,
                 'Eve does not get it');
select tests.authenticate_as_anon();
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '42501', null,
                 'anon does not get it');

-- Usage: counted by the runtime only
select tests.authenticate_as(:'ada');
select is(public.record_agent_oauth_usage(:'ada_bot', :'conn'), 1::bigint, 'the runtime records a use');
select tests.authenticate_as_service_role();
select is(public.record_agent_oauth_usage(:'ada_bot', :'conn'), 2::bigint, 'service_role records a use');
select tests.authenticate_as(:'carol');
select throws_ok(format('select public.record_agent_oauth_usage(%L, %L)', :'ada_bot', :'conn'), '42501', null,
                 'an admin does not act as the agent');
select throws_ok(format('select public.record_agent_oauth_usage(%L, %L)', :'bob_bot', :'conn'), '42501', null,
                 'nor for an agent without the permission');
select tests.authenticate_as(:'ada');
select is((select usage_count from public.get_agent_oauth_permissions(:'ada_bot')), 2::bigint, 'the count is visible');

-- Expiry: the runtime is told to refresh; single-flight through a lease
select tests.clear_authentication();
update public.user_oauth_connections set expires_at = now() - interval '1 minute' where id = :'conn';
select tests.authenticate_as(:'ada');
select is((select status || ':' || coalesce(access_token, '-') from public.get_agent_oauth_token(:'ada_bot', 'github')),
          'refresh_required:-', 'an expired token is not handed out: refresh_required');
select is((select status::text from public.user_oauth_connections where id = :'conn'), 'expired', 'the connection is marked expired');
select is((select status::text from public.get_user_oauth_connections(:'ada')), 'expired', 'and listed as expired');
select throws_ok(format('select * from public.begin_oauth_refresh(%L, 0)', :'conn'), '22023', null, 'a lease of 0 s is refused');
select * from public.begin_oauth_refresh(:'conn', 30) \gset first_
select is(:'first_outcome'::text, 'lease', 'the first refresher gets the lease');
select is(:'first_refresh_token'::text, 'ghr_refresh_one', 'with the refresh token');
select is(:'first_token_endpoint'::text, 'https://github.com/login/oauth/access_token', 'and the provider''s token endpoint');
select is((select outcome from public.begin_oauth_refresh(:'conn', 30)), 'wait', 'the next one is told to wait');
select tests.authenticate_as(:'bob');
select throws_ok(format('select * from public.begin_oauth_refresh(%L)', :'conn'), '42501', null, 'Bob cannot refresh Ada''s connection');
select throws_ok(format($$select public.complete_oauth_refresh(%L, 'stolen')$$, :'first_lease_id'), '42501', null,
                 'nor complete her lease');
select tests.authenticate_as_anon();
select throws_ok(format('select * from public.begin_oauth_refresh(%L)', :'conn'), '42501', null, 'anon cannot refresh');
select tests.authenticate_as(:'ada');
select throws_ok($$select public.complete_oauth_refresh(gen_random_uuid(), 'x')$$, '55000', null, 'an unknown lease is refused');
select ok(public.complete_oauth_refresh(:'first_lease_id', 'gho_access_three', 'ghr_refresh_two', 3600) > now() + interval '59 minutes',
          'the holder completes: new expiry in an hour');
select is((select status || ':' || access_token from public.get_agent_oauth_token(:'ada_bot', 'github')), 'ok:gho_access_three',
          'the runtime gets the new token');
select is((select outcome || ':' || access_token from public.begin_oauth_refresh(:'conn', 30)), 'fresh:gho_access_three',
          'a late refresher is handed the fresh token');
select throws_ok(format($$select public.complete_oauth_refresh(%L, 'again')$$, :'first_lease_id'), '55000', null,
                 'a lease completes once');
select tests.clear_authentication();
select is((select decrypted_secret from vault.decrypted_secrets s join public.user_oauth_connections c on c.refresh_token_secret_id = s.id
            where c.id = :'conn'), 'ghr_refresh_two', 'the rotated refresh token replaced the old one in Vault');

-- A crashed refresher: its lease expires, another takes over, the late answer is refused
update public.user_oauth_connections set expires_at = now() - interval '1 minute' where id = :'conn';
select tests.authenticate_as(:'ada');
select lease_id as crashed_lease from public.begin_oauth_refresh(:'conn', 30) \gset
select tests.clear_authentication();
update private.oauth_refresh_leases set acquired_at = clock_timestamp() - interval '40 seconds',
                                       expires_at = clock_timestamp() - interval '10 seconds' where lease_id = :'crashed_lease';
select tests.authenticate_as(:'ada');
select lease_id as taker_lease from public.begin_oauth_refresh(:'conn', 30) \gset
select isnt(:'taker_lease'::uuid, :'crashed_lease'::uuid, 'an expired lease is taken over by the next refresher');
select throws_ok(format($$select public.complete_oauth_refresh(%L, 'late')$$, :'crashed_lease'), '55000', null,
                 'the crashed refresher''s late completion is refused');
select throws_ok(format($$select public.fail_oauth_refresh(%L, 'late')$$, :'crashed_lease'), '55000', null,
                 'and so is its late failure');

-- A provider error: the old refresh token is kept, a backoff, then a later refresh succeeds
select isnt(public.fail_oauth_refresh(:'taker_lease', 'HTTP 503 temporarily_unavailable'), null, 'the holder reports a failure');
select tests.clear_authentication();
select is((select status::text || ':' || refresh_failures from public.user_oauth_connections where id = :'conn'), 'refresh_required:1',
          'the connection is refresh_required');
select is((select decrypted_secret from vault.decrypted_secrets s join public.user_oauth_connections c on c.refresh_token_secret_id = s.id
            where c.id = :'conn'), 'ghr_refresh_two', 'and keeps its refresh token');
select tests.authenticate_as(:'ada');
select is((select status from public.get_agent_oauth_token(:'ada_bot', 'github')), 'refresh_required', 'the runtime is told to refresh');
select is((select outcome || ':' || last_error from public.begin_oauth_refresh(:'conn', 30)), 'failed:HTTP 503 temporarily_unavailable',
          'within the backoff, refreshers are told it failed (no stampede on the provider)');
select tests.clear_authentication();
update public.user_oauth_connections set refresh_retry_at = now() - interval '1 second' where id = :'conn';
select tests.authenticate_as(:'ada');
select lease_id as retry_lease, refresh_token as retry_refresh from public.begin_oauth_refresh(:'conn', 30) \gset
select is(:'retry_refresh'::text, 'ghr_refresh_two', 'after the backoff the old refresh token is offered again');
select lives_ok(format($$select public.complete_oauth_refresh(%L, 'gho_access_four', null, 3600)$$, :'retry_lease'),
                'the later refresh succeeds');
select is((select status || ':' || access_token from public.get_agent_oauth_token(:'ada_bot', 'github')), 'ok:gho_access_four',
          'the connection is usable again');

-- A refusal for good (invalid_grant): reconnect needed
select tests.clear_authentication();
update public.user_oauth_connections set expires_at = now() - interval '1 minute' where id = :'conn';
select tests.authenticate_as(:'ada');
select lease_id as bad_lease from public.begin_oauth_refresh(:'conn', 30) \gset
select lives_ok(format($$select public.fail_oauth_refresh(%L, 'invalid_grant', false)$$, :'bad_lease'), 'a final failure is recorded');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '55000', null,
                 'the runtime is told to reconnect');
select throws_ok(format('select * from public.begin_oauth_refresh(%L)', :'conn'), '55000', null, 'no refresh is attempted');
select is(public.store_user_oauth_connection('github', 'gho_access_five', 'ghr_refresh_three', 3600, array['repo', 'read:user', 'gist'], '1001'),
          :'conn'::uuid, 'Ada reconnects');
select is((select status || ':' || access_token from public.get_agent_oauth_token(:'ada_bot', 'github')), 'ok:gho_access_five',
          'and the agent works again');

-- Permissions are history: only usage and one revocation change them
select tests.clear_authentication();
select throws_ok(format($$update public.agent_oauth_permissions set scopes = '{repo,gist}' where agent_id = %L$$, :'ada_bot'),
                 '55000', null, 'the scopes of a permission cannot be changed, even by postgres');
select tests.authenticate_as(:'ada');
select throws_ok(format($$update public.agent_oauth_permissions set usage_count = 100 where agent_id = %L$$, :'ada_bot'),
                 '42501', null, 'an API role cannot write a permission');
select isnt(public.grant_agent_oauth_access(:'ada_bot', :'conn', array['repo', 'gist'], now() + interval '1 day'), null,
            'a new grant supersedes the live one');
select is((select count(*)::int from public.agent_oauth_permissions where agent_id = :'ada_bot'), 2, 'both stay in history');
select is((select count(*)::int from public.agent_oauth_permissions where agent_id = :'ada_bot' and revoked_at is null), 1,
          'one is live');
select is((select status from public.get_agent_oauth_token(:'ada_bot', 'github', array['gist'])), 'ok', 'gist is now lent');
select tests.authenticate_as(:'carol');
select ok(public.revoke_agent_oauth_access(:'ada_bot', :'conn', 'audit finding'), 'an admin may revoke the agent''s permission');
select ok(not public.revoke_agent_oauth_access(:'ada_bot', :'conn'), 'revoking again finds nothing');
select tests.authenticate_as(:'ada');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '42501', null,
                 'a revoked permission gives no token');
select tests.clear_authentication();
select throws_ok(format($$update public.agent_oauth_permissions set revoke_reason = 'rewritten' where agent_id = %L and revoked_at is not null$$, :'ada_bot'),
                 '55000', null, 'a revocation happens once');
select is((select count(*)::int from public.audit_log where entity_type = 'oauth_grant' and action = 'oauth_grant.insert'
            and organization_id = :'acme'), 2, 'each grant is audited');
select is((select count(*)::int from public.audit_log where entity_type = 'oauth_grant' and action = 'oauth_grant.update'
            and reason = 'audit finding'), 1, 'the revocation is audited with its reason');
select ok((select count(*) >= 4 from public.audit_log where entity_type = 'oauth_connection' and entity_id = :'conn'),
          'the connection''s status changes are audited');

-- The agent changes hands: the new owner does not get the old owner's token
select tests.authenticate_as(:'ada');
select isnt(public.grant_agent_oauth_access(:'ada_bot', :'conn', array['repo']), null, 'Ada lends it again');
select tests.authenticate_as(:'carol');
update public.agents set user_id = :'bob' where id = :'ada_bot';
select tests.authenticate_as(:'bob');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '42501', null,
                 'after an admin gives Ada''s agent to Bob, Bob does not get Ada''s token');
select tests.authenticate_as(:'carol');
update public.agents set user_id = :'ada', is_active = false where id = :'ada_bot';
select tests.authenticate_as(:'ada');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '55000', null,
                 'an inactive agent gets no token');
select tests.authenticate_as(:'carol');
update public.agents set is_active = true where id = :'ada_bot';

-- Revoking the connection: tokens deleted from Vault, permissions revoked
select tests.clear_authentication();
select access_token_secret_id as old_access, refresh_token_secret_id as old_refresh from public.user_oauth_connections where id = :'conn' \gset
select tests.authenticate_as(:'bob');
select throws_ok(format('select public.revoke_user_oauth_connection(%L)', :'conn'), '42501', null, 'Bob cannot revoke Ada''s connection');
select tests.authenticate_as(:'ada');
select ok(public.revoke_user_oauth_connection(:'conn', 'leaving GitHub'), 'Ada revokes her connection');
select ok(not public.revoke_user_oauth_connection(:'conn'), 'revoking twice does nothing');
select throws_ok(format($$select * from public.get_agent_oauth_token(%L, 'github')$$, :'ada_bot'), '42501', null,
                 'the agent gets no token any more');
select is_empty(format('select * from public.get_user_oauth_connections(%L)', :'ada'), 'the connection is no longer listed');
select throws_ok(format($$select public.grant_agent_oauth_access(%L, %L, array['repo'])$$, :'ada_bot', :'conn'), '55000', null,
                 'a revoked connection cannot be lent');
select tests.clear_authentication();
select is((select count(*)::int from vault.secrets where id in (:'old_access', :'old_refresh')), 0, 'its tokens are gone from Vault');
select is((select count(*)::int from public.agent_oauth_permissions where connection_id = :'conn' and revoked_at is null), 0,
          'every permission on it is revoked');

-- A deleted user's connections leave nothing in Vault
select tests.authenticate_as(:'bob');
select public.store_user_oauth_connection('slack', 'xoxe-bob-access', 'xoxe-bob-refresh', 43200) as bob_conn \gset
select tests.clear_authentication();
select access_token_secret_id as bob_access, refresh_token_secret_id as bob_refresh from public.user_oauth_connections where id = :'bob_conn' \gset
delete from auth.users where id = :'bob';
select is((select count(*)::int from vault.secrets where id in (:'bob_access', :'bob_refresh')), 0,
          'deleting a user deletes their OAuth tokens from Vault');

select * from finish();
rollback;
