-- OAuth sign-in (authorization code + PKCE): Olga starts a sign-in with a local provider; the
-- database keeps the state (as its hash) and the code verifier, bound to her, the provider and
-- the redirect URI. Her callback consumes it once. Sam cannot finish her sign-in, a different
-- redirect URI is refused, a replayed or expired state is refused, and nobody reads the
-- pending flows. Disconnecting hands only the owner the token to revoke at the provider.
begin;
select plan(27);

select tests.create_user('olga@example.com') as olga \gset
select tests.create_user('sam@example.com') as sam \gset
insert into public.oauth_providers (name, display_name, authorization_endpoint, token_endpoint, revocation_endpoint,
                                    default_scopes, client_id)
values ('local-oidc', 'Local OIDC', 'http://127.0.0.1:40599/auth', 'http://127.0.0.1:40599/token',
        'http://127.0.0.1:40599/token/revocation', '{openid,offline_access}', 'mcp-control-plane');

-- Who may start one
select tests.authenticate_as_anon();
select throws_ok($$select * from public.begin_oauth_authorization('local-oidc', 'http://127.0.0.1:3000/oauth/callback')$$,
                 '42501', null, 'anon cannot start a sign-in (42501)');
select tests.authenticate_as_service_role();
select throws_ok($$select * from public.begin_oauth_authorization('local-oidc', 'http://127.0.0.1:3000/oauth/callback')$$,
                 '42501', null, 'nor can service_role: a sign-in belongs to a user (42501)');
select tests.authenticate_as(:'olga');
select throws_ok($$select * from public.begin_oauth_authorization('nope', 'http://127.0.0.1:3000/oauth/callback')$$,
                 'P0002', null, 'an unknown provider is refused (P0002)');
select throws_ok($$select * from public.begin_oauth_authorization('github', 'http://127.0.0.1:3000/oauth/callback')$$,
                 '55000', null, 'a provider without the platform''s client id is not set up for sign-in (55000)');
select throws_ok($$select * from public.begin_oauth_authorization('local-oidc', 'http://evil.example/callback')$$,
                 '22023', null, 'a redirect URI in plain http off loopback is refused (22023)');
select throws_ok($$select * from public.begin_oauth_authorization('local-oidc', 'https://app.example/cb#x')$$,
                 '22023', null, 'a redirect URI with a fragment is refused (22023)');
select throws_ok($$select * from public.begin_oauth_authorization('local-oidc', 'https://app.example/cb', null, 5)$$,
                 '22023', null, 'a lifetime under 30 s is refused (22023)');

-- Olga starts one
select * from public.begin_oauth_authorization('local-oidc', 'http://127.0.0.1:3000/oauth/callback') \gset flow_
select is(:'flow_code_challenge_method'::text, 'S256', 'the challenge method is S256');
select is(:'flow_scope'::text, 'offline_access openid', 'the provider''s default scopes, joined with its separator');
select is(:'flow_client_id'::text, 'mcp-control-plane', 'the platform''s public client id');
select ok(:'flow_state' ~ '^[A-Za-z0-9_-]{43}$', 'the state is 32 random bytes, base64url');
select ok(:'flow_expires_at'::timestamptz between now() + interval '599 seconds' and now() + interval '601 seconds',
          'it expires in ten minutes by default');
select tests.clear_authentication();
select is((select count(*)::int from private.oauth_authorization_flows where state_sha256 = :'flow_state'), 0,
          'the state itself is not stored...');
select is((select count(*)::int from private.oauth_authorization_flows
            where state_sha256 = encode(sha256(convert_to(:'flow_state', 'UTF8')), 'hex') and user_id = :'olga'), 1,
          '...only its sha256, with Olga as its user');

-- Nobody reads the pending flows
select tests.authenticate_as(:'olga');
select throws_ok($$select * from private.oauth_authorization_flows$$, '42501', null, 'not even Olga reads the flows table (42501)');

-- The callback
select tests.authenticate_as(:'sam');
select throws_ok(format($$select * from public.consume_oauth_authorization(%L, 'http://127.0.0.1:3000/oauth/callback')$$, :'flow_state'),
                 '42501', null, 'Sam cannot finish Olga''s sign-in (42501)');
select tests.authenticate_as(:'olga');
select throws_ok(format($$select * from public.consume_oauth_authorization(%L, 'http://127.0.0.1:3001/oauth/callback')$$, :'flow_state'),
                 '42501', null, 'a callback at another redirect URI is refused (42501)');
select throws_ok($$select * from public.consume_oauth_authorization('no-such-state', 'http://127.0.0.1:3000/oauth/callback')$$,
                 'P0002', null, 'an unknown state is refused (P0002)');
select * from public.consume_oauth_authorization(:'flow_state', 'http://127.0.0.1:3000/oauth/callback') \gset done_
select is(:'done_provider'::text, 'local-oidc', 'Olga''s callback gets her provider...');
select is(:'done_token_endpoint'::text, 'http://127.0.0.1:40599/token', '...its token endpoint...');
select is(rtrim(translate(encode(sha256(convert_to(:'done_code_verifier', 'UTF8')), 'base64'), '+/', '-_'), '='), :'flow_code_challenge'::text,
          '...and the code verifier whose S256 challenge went to the provider');
select throws_ok(format($$select * from public.consume_oauth_authorization(%L, 'http://127.0.0.1:3000/oauth/callback')$$, :'flow_state'),
                 '55000', 'this OAuth state was already used', 'a replayed state is refused (55000)');

-- An expired sign-in
select state as late_state from public.begin_oauth_authorization('local-oidc', 'http://127.0.0.1:3000/oauth/callback', '{openid}', 30) \gset
select tests.clear_authentication();
update private.oauth_authorization_flows set created_at = now() - interval '1 hour', expires_at = now() - interval '1 second'
 where state_sha256 = encode(sha256(convert_to(:'late_state', 'UTF8')), 'hex');
select tests.authenticate_as(:'olga');
select throws_ok(format($$select * from public.consume_oauth_authorization(%L, 'http://127.0.0.1:3000/oauth/callback')$$, :'late_state'),
                 '55000', 'this OAuth sign-in expired', 'an expired state is refused (55000)');

-- Disconnect: the owner gets the token to revoke at the provider
select public.store_user_oauth_connection('local-oidc', 'access-1', 'refresh-1', 3600, '{openid}') as conn \gset
select token || ' as ' || token_type_hint as revoke_what from public.begin_oauth_disconnect(:'conn') \gset
select is(:'revoke_what'::text, 'refresh-1 as refresh_token', 'Olga gets her refresh token to revoke at the provider');
select tests.authenticate_as(:'sam');
select throws_ok(format($$select * from public.begin_oauth_disconnect(%L)$$, :'conn'), '42501', null,
                 'Sam does not get Olga''s token (42501)');
select tests.authenticate_as(:'olga');
select public.store_user_oauth_connection('github', 'gh-access', null, null, '{repo}') as gh \gset
select is((select coalesce(token, 'none') from public.begin_oauth_disconnect(:'gh')), 'none',
          'a provider without a revocation endpoint gets no token out');
select public.revoke_user_oauth_connection(:'conn');
select throws_ok(format($$select * from public.begin_oauth_disconnect(%L)$$, :'conn'), '55000', null,
                 'a revoked connection has nothing left to revoke (55000)');

select * from finish();
rollback;
