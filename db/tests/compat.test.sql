-- The Supabase platform stand-ins (db/compat): the auth claim helpers follow the claims of the
-- transaction, Vault keeps secrets encrypted and away from the API roles, pg_net sends nothing
-- that did not commit and, like pg_net, restarts its request ids when a crash empties its tables.
begin;
select plan(25);

-- auth.uid(), auth.role(), auth.jwt(), auth.email() follow request.jwt.claims
select is(auth.uid(), null, 'no claims: auth.uid() is null');
select is(auth.role(), null, 'no claims: auth.role() is null');

select tests.create_user('ada@example.com') as ada \gset
select tests.authenticate_as(:'ada');
select is(auth.uid(), :'ada'::uuid, 'authenticated: auth.uid() is the sub claim');
select is(auth.role(), 'authenticated', 'authenticated: auth.role() is the role claim');
select is(auth.email(), 'ada@example.com', 'auth.email() is the email claim');
select is(auth.jwt() ->> 'aud', 'authenticated', 'auth.jwt() returns the whole claim set');
select is(current_user::text, 'authenticated', 'the role is switched as PostgREST does');

select tests.authenticate_as_anon();
select is(auth.uid(), null, 'anon: no user');
select is(auth.role(), 'anon', 'anon: auth.role() is anon');

select tests.clear_authentication();
select set_config('request.jwt.claim.sub', :'ada', true);
select is(auth.uid(), :'ada'::uuid, 'the legacy request.jwt.claim.sub is honoured');
select set_config('request.jwt.claim.sub', '', true);

-- Vault: encrypted at rest, closed to anon and authenticated
select vault.create_secret('s3cr3t-token-value', 'compat-test-secret', 'for the compat test') as secret_id \gset
select is((select count(*)::int from vault.secrets where secret like '%s3cr3t-token-value%'), 0,
          'the stored secret does not contain the plain text');
select is((select decrypted_secret from vault.decrypted_secrets where id = :'secret_id'), 's3cr3t-token-value',
          'vault.decrypted_secrets decrypts it');
select isnt((select nonce from vault.secrets where id = :'secret_id'), null, 'each secret has its own nonce');
select is((select count(*)::int from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
            where n.nspname = 'vault' and c.relkind = 'r' and c.relname ~ 'key'), 0,
          'no table of the vault schema holds a key');

select tests.authenticate_as_anon();
select throws_ok('select * from vault.secrets', '42501', null, 'anon cannot read vault.secrets');
select throws_ok('select decrypted_secret from vault.decrypted_secrets', '42501', null, 'anon cannot read decrypted secrets');
select throws_ok($$select vault.create_secret('x')$$, '42501', null, 'anon cannot create a secret');
select tests.authenticate_as(:'ada');
select throws_ok('select * from vault.secrets', '42501', null, 'authenticated cannot read vault.secrets');
select throws_ok('select decrypted_secret from vault.decrypted_secrets', '42501', null, 'authenticated cannot read decrypted secrets');
select throws_ok($$select vault.update_secret('00000000-0000-0000-0000-000000000000'::uuid, 'x')$$, '42501', null,
                 'authenticated cannot update a secret');
select tests.clear_authentication();

-- pg_net: a request exists for the sender only once its transaction commits
select net.http_post('http://127.0.0.1:9/compat-test', '{"hello": "world"}'::jsonb) as req_id \gset
select is((select count(*)::int from net.http_request_queue where id = :req_id), 1,
          'the request is queued inside the transaction');
select is(tests.other_session_count(format('select 1 from net.http_request_queue where id = %s', :req_id)), 0::bigint,
          'another session (the worker) cannot see it before commit');
select is((select convert_from(body, 'UTF8')::jsonb from net.http_request_queue where id = :req_id), '{"hello": "world"}'::jsonb,
          'the JSON body is queued as sent');
select lives_ok($$select net.http_get('ftp://example.com')$$,
                'a non-HTTP url is accepted at enqueue, as pg_net does (the worker fails it at send: "Unsupported protocol")');

select is((select c.relpersistence::text from pg_catalog.pg_class c where c.oid = 'net.http_request_queue_id_seq'::regclass), 'u',
          'the request id sequence is unlogged: a crash restarts the ids, as pg_net''s do');
select * from finish();
rollback;
