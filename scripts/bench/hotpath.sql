-- The database side of the gateway's hot path, per call (a benchmark, not a test: it prints
-- figures and rolls everything back). One agent with 5 running servers of the demo's kinds
-- (everything, memory, filesystem, and a second memory and everything), full_access on three and
-- read_only on two; the gateway (service_role) presents each server's pinned definitions, as a
-- live server does. Each RPC is called :rounds times in a loop; the mean per call is printed.
--   psql "$DB_URL" -X -q -o /dev/null -v rounds=200 -f scripts/bench/hotpath.sql
-- Run it against a throwaway database (the test stack), as postgres.
\set ON_ERROR_STOP 1
\if :{?rounds}
\else
\set rounds 200
\endif
begin;
insert into auth.users (email, raw_app_meta_data, raw_user_meta_data, email_confirmed_at)
values ('bench-owner@hotpath.test', '{"provider": "email"}', '{}', now()) returning id as owner \gset
-- The owner acts as PostgREST would have them act (claims and role); the platform (postgres, no
-- claims) registers the toolbox and moves the servers to running.
\set as_owner 'select set_config(''request.jwt.claims'', jsonb_build_object(''sub'', :''owner'', ''role'', ''authenticated'')::text, true); set local role authenticated;'
\set as_platform 'reset role; select set_config(''request.jwt.claims'', '''', true);'
:as_owner
select public.create_organization('Hot path', 'hot-path-bench') as org \gset
:as_platform
select public.create_toolbox(:'org', 'bench-edge', 'https://bench-edge.hotpath.test', 'bench-dtma-token-0123456789') as toolbox \gset
:as_owner
create temporary table bench_servers (kind text, scope public.mcp_permission_scope, id uuid) on commit drop;
insert into bench_servers (kind, scope)
values ('everything', 'full_access'), ('memory', 'read_only'), ('filesystem', 'full_access'),
       ('memory', 'full_access'), ('everything', 'read_only');
update bench_servers s set id = (public.manage_mcp_servers('create', :'org', jsonb_build_object('toolbox_id', :'toolbox',
       'catalog_name', s.kind, 'instance_name', s.kind || '-' || s.scope,
       'configuration', case s.kind when 'filesystem' then '{"args": ["/srv/bench"]}'::jsonb else '{}' end)) ->> 'id')::uuid;
insert into public.agents (organization_id, user_id, name) values (:'org', :'owner', 'Bench agent') returning id as agent \gset
:as_platform
select private.apply_instance_event(id, 'deploy'), private.apply_instance_event(id, 'deployed') from bench_servers;
:as_owner
select public.grant_agent_mcp_access(:'agent', id, scope) from bench_servers;
select api_key from public.create_agent_api_key(:'agent', 'bench') \gset
:as_platform
-- What the gateway presents: each server's tools as the server lists them (the pinned definitions).
select jsonb_agg(jsonb_build_object('server_instance_id', i.id,
         'tools', (select jsonb_agg(t - 'sha256') from jsonb_array_elements(i.pinned_manifest) t)) order by i.id) as servers
  from public.account_tool_instances i join bench_servers s on s.id = i.id \gset
select (select jsonb_agg(jsonb_build_object('interaction_type', 'tool_call', 'outcome', 'success', 'duration_ms', 12 + n,
          'server_instance_id', s.id, 'tool_name', 'echo', 'arguments', jsonb_build_object('message', 'hello ' || n),
          'request_id', 'req-' || n))
          from generate_series(1, 10) n, lateral (select id from bench_servers order by id limit 1) s) as interactions \gset
select set_config('bench.agent', :'agent', true), set_config('bench.servers', :'servers', true),
       set_config('bench.interactions', :'interactions', true), set_config('bench.api_key', :'api_key', true),
       set_config('bench.rounds', :'rounds', true) \g /dev/null
select set_config('request.jwt.claims', '{"role": "service_role"}', true);
set local role service_role;

create temporary table bench_results (rpc text, calls integer, mean_ms numeric, cpu_ms numeric) on commit drop;
-- This backend's CPU time so far (ms, from /proc: 10 ms ticks), read as postgres: on a shared
-- machine the CPU a call costs is steadier than the time it takes.
create function pg_temp.bench_cpu_ms() returns numeric
language plpgsql
as $$
declare
  v_stat text;
begin
  perform set_config('role', 'none', true);
  v_stat := split_part(pg_read_file('/proc/' || pg_backend_pid() || '/stat'), ') ', 2);
  perform set_config('role', 'service_role', true);
  return (split_part(v_stat, ' ', 12)::numeric + split_part(v_stat, ' ', 13)::numeric) * 1000 / 100;
end $$;
grant execute on function pg_temp.bench_cpu_ms() to service_role;
do $$
declare
  v_agent uuid := current_setting('bench.agent')::uuid;
  v_servers jsonb := current_setting('bench.servers')::jsonb;
  v_interactions jsonb := current_setting('bench.interactions')::jsonb;
  v_key text := current_setting('bench.api_key');
  v_rounds integer := current_setting('bench.rounds')::integer;
  v_server jsonb;
  v_tool jsonb := (current_setting('bench.servers')::jsonb) -> 0 -> 'tools' -> 0;
  v_t timestamptz;
  v_c numeric;
  v_calls integer;
begin
  v_t := clock_timestamp();
  v_c := pg_temp.bench_cpu_ms();
  for i in 1 .. v_rounds loop
    for v_server in select jsonb_array_elements(v_servers) loop
      perform count(*) from public.filter_agent_mcp_tools(v_agent, (v_server ->> 'server_instance_id')::uuid, v_server -> 'tools');
    end loop;
  end loop;
  v_calls := v_rounds * jsonb_array_length(v_servers);
  insert into bench_results values ('filter_agent_mcp_tools (one server)', v_calls,
    extract(epoch from clock_timestamp() - v_t) * 1000 / v_calls, (pg_temp.bench_cpu_ms() - v_c) / v_calls);

  -- The same listing in one call for all the servers (what the gateway asks since it exists).
  if to_regprocedure('public.gateway_filter_tools(uuid, jsonb)') is not null then
    v_t := clock_timestamp();
    v_c := pg_temp.bench_cpu_ms();
    for i in 1 .. v_rounds loop
      execute 'select count(*) from public.gateway_filter_tools($1, $2)' using v_agent, v_servers;
    end loop;
    insert into bench_results values ('gateway_filter_tools (5 servers)', v_rounds, extract(epoch from clock_timestamp() - v_t) * 1000 / v_rounds,
      (pg_temp.bench_cpu_ms() - v_c) / v_rounds);
  end if;

  v_t := clock_timestamp();
  v_c := pg_temp.bench_cpu_ms();
  for i in 1 .. v_rounds loop
    perform count(*) from public.gateway_authorize_call(v_agent, (v_servers -> 0 ->> 'server_instance_id')::uuid, v_tool);
  end loop;
  insert into bench_results values ('gateway_authorize_call', v_rounds, extract(epoch from clock_timestamp() - v_t) * 1000 / v_rounds,
    (pg_temp.bench_cpu_ms() - v_c) / v_rounds);

  v_t := clock_timestamp();
  v_c := pg_temp.bench_cpu_ms();
  for i in 1 .. v_rounds loop
    perform count(*) from public.gateway_agent_servers(v_agent);
  end loop;
  insert into bench_results values ('gateway_agent_servers', v_rounds, extract(epoch from clock_timestamp() - v_t) * 1000 / v_rounds,
    (pg_temp.bench_cpu_ms() - v_c) / v_rounds);

  v_t := clock_timestamp();
  v_c := pg_temp.bench_cpu_ms();
  for i in 1 .. v_rounds loop
    perform count(*) from public.gateway_authenticate(v_key);
  end loop;
  insert into bench_results values ('gateway_authenticate (API key)', v_rounds, extract(epoch from clock_timestamp() - v_t) * 1000 / v_rounds,
    (pg_temp.bench_cpu_ms() - v_c) / v_rounds);

  v_t := clock_timestamp();
  v_c := pg_temp.bench_cpu_ms();
  for i in 1 .. v_rounds loop
    perform public.audit_mcp_interactions(v_agent, v_interactions);
  end loop;
  insert into bench_results values ('audit_mcp_interactions (10 interactions)', v_rounds,
    extract(epoch from clock_timestamp() - v_t) * 1000 / v_rounds,
    (pg_temp.bench_cpu_ms() - v_c) / v_rounds);
end $$;
\o
select rpc, calls, round(mean_ms, 3) as mean_ms, round(cpu_ms, 3) as cpu_ms from bench_results order by rpc;
rollback;
