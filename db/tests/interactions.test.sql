-- The interaction log and the access history. Ada's agent's runtime logs its MCP tool calls,
-- context requests and errors (arguments hashed, never stored); nobody can change a logged row,
-- owner included; the monthly partitions are out of the API's reach. Then the point-in-time
-- question: grants placed in time (granted, revoked, re-granted narrower, expired) answer which
-- agents could call a tool at a given moment, and through which grant.
begin;
select plan(62);

select tests.create_user('ada@example.com') as ada \gset
select tests.create_user('bob@example.com') as bob \gset
select tests.create_user('carol@example.com') as carol \gset
select tests.create_user('eve@example.com') as eve \gset

select tests.authenticate_as(:'ada');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'bob', 'member');
select public.add_organization_member(:'acme', :'carol', 'admin');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'ada', 'ada-bot') returning id as ada_bot \gset
insert into public.agents (organization_id, user_id, name) values (:'acme', :'ada', 'ada-reader') returning id as ada_reader \gset
-- The platform registers toolboxes.
select tests.clear_authentication();
select public.create_toolbox(:'acme', 'box-1', 'http://127.0.0.1:30997', 'toolbox-token-0123456789abcdef') as toolbox \gset
select tests.authenticate_as(:'ada');
select (public.manage_mcp_servers('create', :'acme', jsonb_build_object('toolbox_id', :'toolbox', 'catalog_name', 'memory',
        'instance_name', 'mem-1')) ->> 'id') as mem \gset
select tests.authenticate_as(:'bob');
insert into public.agents (organization_id, user_id, name) values (:'acme', :'bob', 'bob-bot') returning id as bob_bot \gset
select tests.authenticate_as(:'eve');
select public.create_organization('Globex', 'globex') as globex \gset
-- The platform registers toolboxes.
select tests.clear_authentication();
select public.create_toolbox(:'globex', 'box-g', 'http://127.0.0.1:30996', 'toolbox-token-0123456789abcdef') as gbox \gset
select tests.authenticate_as(:'eve');
select (public.manage_mcp_servers('create', :'globex', jsonb_build_object('toolbox_id', :'gbox', 'catalog_name', 'memory',
        'instance_name', 'mem-g')) ->> 'id') as gmem \gset
select tests.clear_authentication();

-- Structure: partitioned by month, partitions in private, RLS on the parent, scheduled upkeep
select is((select c.relkind::text from pg_class c where c.oid = 'public.mcp_interaction_logs'::regclass), 'p',
          'mcp_interaction_logs is a partitioned table');
select ok((select relrowsecurity from pg_class where oid = 'public.mcp_interaction_logs'::regclass), 'with RLS on the parent');
select isnt(to_regclass('private.mcp_interaction_logs_' || to_char(now() at time zone 'UTC', 'YYYY_MM')), null,
            'this month''s partition exists, in schema private');
select isnt(to_regclass('private.mcp_interaction_logs_' || to_char((now() at time zone 'UTC') + interval '1 month', 'YYYY_MM')), null,
            'and next month''s, ahead of time');
select is((select count(*)::int from pg_inherits where inhparent = 'public.mcp_interaction_logs'::regclass
            and inhrelid::regclass::text = 'private.mcp_interaction_logs_default'), 1, 'a default partition catches any other month');
select is((select count(*)::int from pg_inherits i join pg_class c on c.oid = i.inhrelid join pg_namespace n on n.oid = c.relnamespace
            where i.inhparent = 'public.mcp_interaction_logs'::regclass and n.nspname <> 'private'), 0, 'every partition is in private');
select is(private.create_interaction_log_partitions(1), 0, 'creating the partitions again creates nothing');
select is((select schedule from cron.job where jobname = 'mcp-interaction-log-partitions'), '17 3 20 * *',
          'pg_cron creates them monthly');

select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'public'::regnamespace and has_function_privilege('anon', p.oid, 'execute')
                     and p.proname in ('audit_mcp_interactions', 'agents_with_tool_access_at')$$,
                'anon can execute none of the interaction functions');

-- Logging: only the agent's runtime, arguments hashed
select tests.authenticate_as(:'ada');
select is(public.audit_mcp_interactions(:'ada_bot', jsonb_build_array(
  jsonb_build_object('server_instance_id', :'mem', 'interaction_type', 'tool_call', 'tool_name', 'create_entities',
                     'arguments', '{"entities": [{"name": "secret-arg-value"}], "b": 2}'::jsonb, 'outcome', 'success', 'duration_ms', 42,
                     'request_id', 'req-1'),
  jsonb_build_object('server_instance_id', :'mem', 'interaction_type', 'context_request', 'outcome', 'success', 'duration_ms', 7),
  jsonb_build_object('server_instance_id', :'mem', 'interaction_type', 'error', 'tool_name', 'read_graph', 'outcome', 'timeout',
                     'duration_ms', 10000, 'error', 'timed out after 10000 ms'))), 3, 'the agent''s runtime logs a batch of three');
select is((select count(*)::int from public.mcp_interaction_logs where agent_id = :'ada_bot'), 3, 'Ada reads her agent''s log');
select is((select arguments_sha256 from public.mcp_interaction_logs where request_id = 'req-1'),
          encode(extensions.digest(convert_to('{"b":2,   "entities":[{"name":"secret-arg-value"}]}'::jsonb::text, 'UTF8'), 'sha256'), 'hex'),
          'the arguments are kept as the sha256 of their canonical JSON');
select is((select count(*)::int from public.mcp_interaction_logs l where to_jsonb(l)::text like '%secret-arg-value%'), 0,
          'the arguments themselves are not stored');
select is((select agent_owner_id::text || ':' || actor_role || ':' || duration_ms from public.mcp_interaction_logs where request_id = 'req-1'),
          :'ada' || ':authenticated:42', 'who logged it, and the duration');
select is((select tableoid::regclass::text from public.mcp_interaction_logs where request_id = 'req-1'),
          'private.mcp_interaction_logs_' || to_char(now() at time zone 'UTC', 'YYYY_MM'), 'it landed in this month''s partition');

select throws_ok(format($$select public.audit_mcp_interactions(%L, '{}')$$, :'ada_bot'), '22023', null, 'an object is not a batch');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[]')$$, :'ada_bot'), '22023', null, 'an empty batch is refused');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "tool_call", "outcome": "success", "duration_ms": 1}]')$$, :'ada_bot'),
                 '22023', null, 'a tool call needs its tool name');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "context_request", "outcome": "great", "duration_ms": 1}]')$$, :'ada_bot'),
                 '22023', null, 'an unknown outcome is refused');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "error", "outcome": "error", "duration_ms": -1}]')$$, :'ada_bot'),
                 '22023', null, 'a negative duration is refused');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "error", "outcome": "error", "duration_ms": 1, "arguments_plain": "x"}]')$$, :'ada_bot'),
                 '22023', null, 'an unknown field is refused');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"server_instance_id": "%s", "interaction_type": "context_request", "outcome": "success", "duration_ms": 1}]')$$, :'ada_bot', :'gmem'),
                 '42501', null, 'a server of another organization is refused');
select throws_ok(format($$insert into public.mcp_interaction_logs (organization_id, agent_id, actor_role, interaction_type, outcome, duration_ms) values (%L, %L, 'authenticated', 'error', 'error', 1)$$, :'acme', :'ada_bot'),
                 '42501', null, 'no direct insert for an API role');
select tests.authenticate_as(:'carol');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "error", "outcome": "error", "duration_ms": 1}]')$$, :'ada_bot'),
                 '42501', null, 'an admin does not log for someone else''s agent');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "error", "outcome": "error", "duration_ms": 1}]')$$, :'ada_bot'),
                 '42501', null, 'another member does not either');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "error", "outcome": "error", "duration_ms": 1}]')$$, :'ada_bot'),
                 '42501', null, 'anon cannot log');
select tests.authenticate_as_service_role();
select is(public.audit_mcp_interactions(:'ada_bot', '[{"interaction_type": "error", "outcome": "error", "duration_ms": 1, "error": "no server"}]'),
          1, 'service_role logs for the agent');

-- Reading the log: admins their organization's, owners their agents'; nobody else
select tests.authenticate_as(:'carol');
select is((select count(*)::int from public.mcp_interaction_logs), 4, 'an admin reads the organization''s log');
select tests.authenticate_as(:'bob');
select is_empty('select * from public.mcp_interaction_logs', 'a member does not read another''s agent''s log');
select tests.authenticate_as(:'eve');
select is_empty('select * from public.mcp_interaction_logs', 'another tenant reads nothing');
select tests.authenticate_as_anon();
select throws_ok('select * from public.mcp_interaction_logs', '42501', null, 'anon cannot read the log');

-- Nobody goes around the parent's RLS through a partition
select tests.authenticate_as(:'carol');
select throws_ok(format('select * from private.%I', 'mcp_interaction_logs_' || to_char(now() at time zone 'UTC', 'YYYY_MM')), '42501', null,
                 'an authenticated user cannot read a partition directly');
select throws_ok('select * from private.mcp_interaction_logs_default', '42501', null, 'nor the default partition');
select tests.authenticate_as_service_role();
select throws_ok(format('select * from private.%I', 'mcp_interaction_logs_' || to_char(now() at time zone 'UTC', 'YYYY_MM')), '42501', null,
                 'neither can service_role: it reads the parent');
select is((select count(*)::int from public.mcp_interaction_logs), 4, 'service_role reads the log through the parent');
select tests.authenticate_as_anon();
select throws_ok('select * from private.mcp_interaction_logs_default', '42501', null, 'anon cannot reach a partition');

-- Append-only, for every role, the owner included
select tests.clear_authentication();
select throws_ok($$update public.mcp_interaction_logs set outcome = 'success' where request_id = 'req-1'$$, '42501', null,
                 'an update is refused, even to postgres');
select throws_ok($$delete from public.mcp_interaction_logs where request_id = 'req-1'$$, '42501', null, 'a delete is refused');
select throws_ok(format('delete from private.%I', 'mcp_interaction_logs_' || to_char(now() at time zone 'UTC', 'YYYY_MM')), '42501', null,
                 'a delete on the partition itself is refused too');
select throws_ok('truncate public.mcp_interaction_logs', '42501', null, 'a truncate is refused');
select tests.authenticate_as_service_role();
select throws_ok($$delete from public.mcp_interaction_logs$$, '42501', null, 'service_role cannot delete');
select tests.clear_authentication();

-- An insert never fails: a month without a partition goes to the default one
insert into public.mcp_interaction_logs (occurred_at, organization_id, agent_id, actor_role, interaction_type, outcome, duration_ms)
values ((date_trunc('month', now() at time zone 'UTC') + interval '2 months 3 days') at time zone 'UTC', :'acme', :'ada_bot',
        'postgres', 'error', 'error', 1);
select is((select tableoid::regclass::text from public.mcp_interaction_logs where occurred_at > now() + interval '1 month'),
          'private.mcp_interaction_logs_default', 'an interaction of a month without partition lands in the default one');
set local client_min_messages = error;
select is(private.create_interaction_log_partitions(3), 1, 'later, only the month whose rows are not in the default partition is created');
reset client_min_messages;
select is(to_regclass('private.mcp_interaction_logs_' || to_char((now() at time zone 'UTC') + interval '2 months', 'YYYY_MM')), null,
          'the month with rows in the default partition stays there (nothing is deleted from the log)');
select ok((select not relacl::text like '%authenticated%' and relrowsecurity from pg_class
            where oid = to_regclass('private.mcp_interaction_logs_' || to_char((now() at time zone 'UTC') + interval '3 months', 'YYYY_MM'))),
          'a new partition grants nothing and has RLS on');

-- The point-in-time question. Grants are placed in time as postgres (T = 2026-01-01):
--   ada-bot    g1 full_access      day 1 .. revoked day 10
--              g2 custom read_graph day 12 .. revoked day 20
--              g3 full_access      day 25 .. expires day 40
--   ada-reader r1 read_only        day 5 .. (live)
--   bob-bot    b1 custom create_entities day 2 .. expires day 8
insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope, allowed_tools,
       granted_by, granted_at, revoked_by, revoked_at, is_active, expires_at, revoke_reason)
values (:'acme', :'ada_bot', :'mem', 'full_access', null, :'ada', '2026-01-02', :'ada', '2026-01-11', false, null, 'narrowed'),
       (:'acme', :'ada_bot', :'mem', 'custom', '{read_graph}', :'ada', '2026-01-13', :'carol', '2026-01-21', false, null, 'paused'),
       (:'acme', :'ada_bot', :'mem', 'full_access', null, :'carol', '2026-01-26', null, null, true, '2026-02-10', null),
       (:'acme', :'ada_reader', :'mem', 'read_only', null, :'ada', '2026-01-06', null, null, true, null, null),
       (:'acme', :'bob_bot', :'mem', 'custom', '{create_entities}', :'bob', '2026-01-03', null, null, true, '2026-01-09', null);
select id as g1 from public.agent_mcp_server_access where agent_id = :'ada_bot' and granted_at = '2026-01-02' \gset
select id as g2 from public.agent_mcp_server_access where agent_id = :'ada_bot' and granted_at = '2026-01-13' \gset
select id as g3 from public.agent_mcp_server_access where agent_id = :'ada_bot' and granted_at = '2026-01-26' \gset
select id as r1 from public.agent_mcp_server_access where agent_id = :'ada_reader' \gset
select id as b1 from public.agent_mcp_server_access where agent_id = :'bob_bot' \gset

select tests.authenticate_as(:'carol');
select is_empty(format($$select * from public.agents_with_tool_access_at(%L, 'create_entities', '2026-01-01')$$, :'mem'),
                'before any grant, nobody');
select set_eq(format($$select agent_name, grant_id from public.agents_with_tool_access_at(%L, 'create_entities', '2026-01-04')$$, :'mem'),
              format($$values ('ada-bot', %L::uuid), ('bob-bot', %L::uuid)$$, :'g1', :'b1'),
              'day 3: ada-bot through g1 (full access) and bob-bot through b1 (custom)');
select set_eq(format($$select agent_name, grant_id from public.agents_with_tool_access_at(%L, 'create_entities', '2026-01-02')$$, :'mem'),
              format($$values ('ada-bot', %L::uuid)$$, :'g1'), 'a grant counts from the instant it was granted');
select set_eq(format($$select grant_id from public.agents_with_tool_access_at(%L, 'create_entities', '2026-01-10')$$, :'mem'),
              format($$values (%L::uuid)$$, :'g1'), 'day 9: bob-bot''s grant has expired');
select is_empty(format($$select * from public.agents_with_tool_access_at(%L, 'create_entities', '2026-01-11')$$, :'mem'),
                'at the instant of the revocation, g1 no longer counts');
select is_empty(format($$select * from public.agents_with_tool_access_at(%L, 'create_entities', '2026-01-15')$$, :'mem'),
                'day 14: the re-grant (custom read_graph) does not allow create_entities; the read_only grant does not either');
select set_eq(format($$select agent_name, grant_id from public.agents_with_tool_access_at(%L, 'read_graph', '2026-01-15')$$, :'mem'),
              format($$values ('ada-bot', %L::uuid), ('ada-reader', %L::uuid)$$, :'g2', :'r1'),
              'day 14, read_graph: ada-bot through g2, ada-reader through its read_only grant');
select is_empty(format($$select * from public.agents_with_tool_access_at(%L, 'create_entities', '2026-01-22')$$, :'mem'),
                'day 21: between the revocation and the third grant, nobody');
select set_eq(format($$select agent_name, grant_id from public.agents_with_tool_access_at(%L, 'create_entities', '2026-02-01')$$, :'mem'),
              format($$values ('ada-bot', %L::uuid)$$, :'g3'), 'day 31: ada-bot again, through g3');
select is((select granted_by from public.agents_with_tool_access_at(:'mem', 'create_entities', '2026-02-01')), :'carol'::uuid,
          'and who granted it');
select is_empty(format($$select * from public.agents_with_tool_access_at(%L, 'create_entities', '2026-02-11')$$, :'mem'),
                'day 41: g3 has expired');
select is_empty(format($$select * from public.agents_with_tool_access_at(%L, 'no_such_tool', '2026-02-01')$$, :'mem'),
                'a tool that is not in the pinned manifest: nobody');

select tests.authenticate_as(:'bob');
select throws_ok(format($$select * from public.agents_with_tool_access_at(%L, 'create_entities', now())$$, :'mem'), '42501', null,
                 'a member cannot ask');
select tests.authenticate_as(:'eve');
select throws_ok(format($$select * from public.agents_with_tool_access_at(%L, 'create_entities', now())$$, :'mem'), 'P0002', null,
                 'another tenant cannot ask: the server is answered as missing (P0002)');
select tests.authenticate_as_anon();
select throws_ok(format($$select * from public.agents_with_tool_access_at(%L, 'create_entities', now())$$, :'mem'), '42501', null,
                 'anon cannot ask');
select tests.authenticate_as_service_role();
select is((select count(*)::int from public.agents_with_tool_access_at(:'mem', 'read_graph', '2026-01-15')), 2, 'service_role can ask');
select throws_ok($$select * from public.agents_with_tool_access_at(gen_random_uuid(), 'read_graph', now())$$, 'P0002', null,
                 'an unknown server is not found');

select * from finish();
rollback;
