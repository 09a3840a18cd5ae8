-- The interaction log: every tool call, context request and error of an agent's runtime with
-- an MCP server (a sha256 of the arguments, never the arguments), append-only, partitioned by
-- month. The partitions live in schema private, out of the API's reach: the API roles read
-- the parent only, through its RLS policy. A default partition takes whatever no month does,
-- so an insert never fails; private.create_interaction_log_partitions, run by this migration
-- and monthly by pg_cron, creates the current and the next months ahead of time.

create type public.mcp_interaction_type as enum ('tool_call', 'context_request', 'error');
create type public.mcp_interaction_outcome as enum ('success', 'error', 'denied', 'timeout');
comment on type public.mcp_interaction_type is 'What an agent''s runtime did with an MCP server: a tool call, a context request, or an error outside both.';
comment on type public.mcp_interaction_outcome is 'How an interaction ended: success, error (the server''s), denied (by the control plane), timeout.';

create table public.mcp_interaction_logs (
  id bigint generated always as identity,
  occurred_at timestamptz not null default now(),
  organization_id uuid not null,
  agent_id uuid not null,
  agent_owner_id uuid,
  actor_role text not null,
  server_instance_id uuid,
  interaction_type public.mcp_interaction_type not null,
  tool_name text check (tool_name is null or length(tool_name) between 1 and 200),
  arguments_sha256 text check (arguments_sha256 ~ '^[0-9a-f]{64}$'),
  outcome public.mcp_interaction_outcome not null,
  duration_ms integer not null check (duration_ms between 0 and 86400000),
  error_message text check (length(error_message) <= 2000),
  request_id text check (length(request_id) <= 200),
  primary key (id, occurred_at),
  constraint tool_call_names_tool check (interaction_type <> 'tool_call' or tool_name is not null)
) partition by range (occurred_at);
-- No foreign keys: the log outlives the agents and servers it mentions (a cascade would delete
-- history, and the log refuses deletes).
comment on table public.mcp_interaction_logs is
  'Append-only log of agents'' MCP tool calls, context requests and errors: who, which server and tool, sha256 of the arguments, outcome, duration. Partitioned by month.';
comment on column public.mcp_interaction_logs.arguments_sha256 is
  'sha256 (hex) of the canonical JSON (jsonb text) of the call''s arguments; the arguments themselves are never stored.';
comment on column public.mcp_interaction_logs.agent_owner_id is 'The agent''s owner when the interaction was logged.';
create index mcp_interaction_logs_org_time_idx on public.mcp_interaction_logs (organization_id, occurred_at desc);
create index mcp_interaction_logs_owner_time_idx on public.mcp_interaction_logs (agent_owner_id, occurred_at desc);
create index mcp_interaction_logs_agent_time_idx on public.mcp_interaction_logs (agent_id, occurred_at desc);
create index mcp_interaction_logs_tool_time_idx on public.mcp_interaction_logs (server_instance_id, tool_name, occurred_at desc);
alter table public.mcp_interaction_logs enable row level security;

-- Row triggers of a partitioned table are cloned onto every partition, present and future; a
-- statement trigger is not, and TRUNCATE of a partition never reaches the parent's: each
-- partition gets its own (private.refuse_interaction_log_truncate, called for every partition).
create trigger mcp_interaction_logs_append_only before update or delete on public.mcp_interaction_logs
  for each row execute function private.refuse_append_only_change('the MCP interaction log');
create trigger mcp_interaction_logs_no_truncate before truncate on public.mcp_interaction_logs
  for each statement execute function private.refuse_append_only_change('the MCP interaction log');

create table private.mcp_interaction_logs_default partition of public.mcp_interaction_logs default;
comment on table private.mcp_interaction_logs_default is 'Interactions of a month with no partition of its own (none is lost).';

-- Makes a partition of the log refuse TRUNCATE, as the parent does (UPDATE and DELETE are refused
-- by the row triggers every partition inherits).
create function private.refuse_interaction_log_truncate(p_partition regclass) returns void
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('create trigger mcp_interaction_logs_no_truncate before truncate on %s
                    for each statement execute function private.refuse_append_only_change(%L)', p_partition, 'the MCP interaction log');
end $$;
comment on function private.refuse_interaction_log_truncate(regclass) is
  'Adds the TRUNCATE refusal to one partition of mcp_interaction_logs (statement triggers are not inherited).';
revoke execute on function private.refuse_interaction_log_truncate(regclass) from public, anon, authenticated, service_role;
select private.refuse_interaction_log_truncate('private.mcp_interaction_logs_default');

-- Creates the partitions of the current month and the p_months_ahead next ones (UTC months)
-- that do not exist yet; returns how many it created. A month whose rows already went to the
-- default partition is left there (with a warning): moving them would mean deleting from an
-- append-only log.
create function private.create_interaction_log_partitions(p_months_ahead integer default 1) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_first timestamp := date_trunc('month', now() at time zone 'UTC');
  v_from timestamptz;
  v_to timestamptz;
  v_name text;
  v_created integer := 0;
begin
  for i in 0 .. greatest(coalesce(p_months_ahead, 1), 0) loop
    v_from := (v_first + make_interval(months => i)) at time zone 'UTC';
    v_to := (v_first + make_interval(months => i + 1)) at time zone 'UTC';
    v_name := 'mcp_interaction_logs_' || to_char(v_from at time zone 'UTC', 'YYYY_MM');
    continue when to_regclass(format('private.%I', v_name)) is not null;
    if exists (select from private.mcp_interaction_logs_default d where d.occurred_at >= v_from and d.occurred_at < v_to) then
      raise warning 'interactions of % are in the default partition; % is not created', to_char(v_from at time zone 'UTC', 'YYYY-MM'), v_name;
      continue;
    end if;
    execute format('create table private.%I partition of public.mcp_interaction_logs for values from (%L) to (%L)',
                   v_name, v_from, v_to);
    execute format('comment on table private.%I is %L', v_name,
                   format('MCP interactions of %s (UTC); read through public.mcp_interaction_logs', to_char(v_from at time zone 'UTC', 'YYYY-MM')));
    -- Read only through the parent and its policy: the partition itself grants nothing, and RLS
    -- without a policy denies whatever a future grant might allow.
    execute format('revoke all on private.%I from public', v_name);
    execute format('alter table private.%I enable row level security', v_name);
    perform private.refuse_interaction_log_truncate(format('private.%I', v_name)::regclass);
    v_created := v_created + 1;
  end loop;
  return v_created;
end $$;
comment on function private.create_interaction_log_partitions(integer) is
  'Creates the missing monthly partitions of mcp_interaction_logs for this month and the next p_months_ahead (UTC). Scheduled monthly.';
revoke execute on function private.create_interaction_log_partitions(integer) from public, anon, authenticated, service_role;

revoke all on private.mcp_interaction_logs_default from public;
alter table private.mcp_interaction_logs_default enable row level security;
select private.create_interaction_log_partitions(1);
-- Monthly, on the 20th: next month's partition exists ten days before it is needed.
select cron.schedule('mcp-interaction-log-partitions', '17 3 20 * *', 'select private.create_interaction_log_partitions(1)');
