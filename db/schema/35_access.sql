-- Access: which agent may use which toolbox, which MCP server and which of its tools, until
-- when, granted and revoked by whom. Composite foreign keys on (id, organization_id) make a
-- grant across organizations impossible, whatever the path that writes it.

create type public.mcp_permission_scope as enum ('read_only', 'full_access', 'custom');
create type public.mcp_connection_status as enum ('connected', 'disconnected', 'error');

create table public.agent_toolbox_access (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  agent_id uuid not null,
  account_tool_environment_id uuid not null,
  granted_by uuid references auth.users (id) on delete set null,
  granted_at timestamptz not null default now(),
  revoked_by uuid references auth.users (id) on delete set null,
  revoked_at timestamptz,
  foreign key (agent_id, organization_id) references public.agents (id, organization_id) on delete cascade,
  foreign key (account_tool_environment_id, organization_id)
    references public.account_tool_environments (id, organization_id) on delete cascade,
  check (revoked_at is null or revoked_at >= granted_at)
);
comment on table public.agent_toolbox_access is
  'Agents attached to toolboxes (which toolboxes an agent works with). Using a server still needs a server grant.';
create unique index agent_toolbox_access_live_idx on public.agent_toolbox_access (agent_id, account_tool_environment_id)
  where revoked_at is null;
create index agent_toolbox_access_org_idx on public.agent_toolbox_access (organization_id);
create index agent_toolbox_access_toolbox_idx on public.agent_toolbox_access (account_tool_environment_id, organization_id);
create index agent_toolbox_access_agent_org_idx on public.agent_toolbox_access (agent_id, organization_id);
create index agent_toolbox_access_granted_by_idx on public.agent_toolbox_access (granted_by);
create index agent_toolbox_access_revoked_by_idx on public.agent_toolbox_access (revoked_by);

create table public.agent_mcp_server_access (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  agent_id uuid not null,
  server_instance_id uuid not null,
  permission_scope public.mcp_permission_scope not null,
  allowed_tools text[],
  expires_at timestamptz,
  is_active boolean not null default true,
  -- History outlives the users and agents it names: no foreign key to auth.users (a user who
  -- granted may be deleted) nor to agents (a deleted agent leaves a tombstone in
  -- private.agent_tombstones; private.grant_agent_in_organization checks the agent on insert).
  granted_by uuid,
  granted_at timestamptz not null default now(),
  revoked_by uuid,
  revoked_at timestamptz,
  revoke_reason text,
  updated_at timestamptz not null default now(),
  foreign key (server_instance_id, organization_id)
    references public.account_tool_instances (id, organization_id) on delete cascade,
  constraint custom_scope_lists_tools check ((permission_scope = 'custom') = (allowed_tools is not null)),
  constraint allowed_tools_not_empty check (allowed_tools is null or cardinality(allowed_tools) > 0),
  constraint revoked_after_granted check (revoked_at is null or revoked_at >= granted_at),
  -- Deactivation is revocation: it always has its point in time.
  constraint active_until_revoked check (is_active = (revoked_at is null)),
  constraint expires_after_granted check (expires_at is null or expires_at > granted_at)
);
comment on table public.agent_mcp_server_access is
  'Grants of an MCP server to an agent: scope, allowed tools, expiry. Never updated but to revoke, so history answers point-in-time questions.';
comment on column public.agent_mcp_server_access.permission_scope is
  'full_access: every pinned tool; read_only: pinned tools annotated readOnlyHint; custom: allowed_tools within the pinned manifest.';
-- At most one live grant per agent and server; also the index every validation uses.
create unique index agent_mcp_server_access_live_idx on public.agent_mcp_server_access (agent_id, server_instance_id)
  where revoked_at is null;
create index agent_mcp_server_access_history_idx on public.agent_mcp_server_access (server_instance_id, agent_id, granted_at);
create index agent_mcp_server_access_server_org_idx on public.agent_mcp_server_access (server_instance_id, organization_id);
create index agent_mcp_server_access_agent_org_idx on public.agent_mcp_server_access (agent_id, organization_id);
create index agent_mcp_server_access_org_idx on public.agent_mcp_server_access (organization_id);

-- Stands for the foreign key to agents that a grant does not have: the agent exists, in the
-- grant's organization (locked against a concurrent delete, as the key would be).
create function private.grant_agent_in_organization() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform from public.agents a where a.id = new.agent_id and a.organization_id = new.organization_id for key share;
  if not found then
    raise exception using errcode = '23503', message = format('agent %s is not in organization %s', new.agent_id, new.organization_id);
  end if;
  return new;
end $$;
comment on function private.grant_agent_in_organization() is 'Trigger: a new grant''s agent exists in the grant''s organization.';
create trigger agent_mcp_server_access_agent before insert on public.agent_mcp_server_access
  for each row execute function private.grant_agent_in_organization();

-- A deleted agent's live grants end with it, as revocations: the history keeps them (unless the
-- organization itself is being deleted, which takes its grants along).
create function private.revoke_grants_of_deleted_agent() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  update public.agent_mcp_server_access g
     set revoked_at = now(), revoked_by = auth.uid(), is_active = false, revoke_reason = 'agent deleted'
   where g.agent_id = old.id and g.revoked_at is null
     and exists (select from public.organizations o where o.id = old.organization_id);
  return old;
end $$;
comment on function private.revoke_grants_of_deleted_agent() is 'Trigger: revokes the live grants of a deleted agent.';
create trigger agents_revoke_grants after delete on public.agents
  for each row execute function private.revoke_grants_of_deleted_agent();

-- A grant is history: once written, only its revocation may change, and only once.
create trigger agent_mcp_server_access_history before update on public.agent_mcp_server_access
  for each row execute function private.refuse_history_change('a grant', 'revoke it and grant again: history keeps both',
                                                              '{revoked_at,revoked_by,revoke_reason,is_active,updated_at}');
create trigger agent_mcp_server_access_touch before update on public.agent_mcp_server_access
  for each row execute function private.touch_updated_at();
create trigger agent_mcp_server_access_audit after insert or update or delete on public.agent_mcp_server_access
  for each row execute function private.audit_row_change('mcp_grant');
create trigger agent_toolbox_access_audit after insert or update or delete on public.agent_toolbox_access
  for each row execute function private.audit_row_change('toolbox_grant');

create table public.agent_mcp_connections (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  agent_id uuid not null,
  server_instance_id uuid not null,
  connection_config jsonb not null default '{}',
  status public.mcp_connection_status not null default 'disconnected',
  last_connected_at timestamptz,
  last_error text,
  total_requests bigint not null default 0 check (total_requests >= 0),
  failed_requests bigint not null default 0 check (failed_requests between 0 and total_requests),
  total_duration_ms bigint not null default 0 check (total_duration_ms >= 0),
  last_used_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  foreign key (agent_id, organization_id) references public.agents (id, organization_id) on delete cascade,
  foreign key (server_instance_id, organization_id)
    references public.account_tool_instances (id, organization_id) on delete cascade,
  unique (agent_id, server_instance_id)
);
comment on table public.agent_mcp_connections is
  'How an agent connects to an MCP server (validated connection_config), its status and usage statistics.';
comment on column public.agent_mcp_connections.connection_config is
  '{timeoutMs 100..120000, maxRetries 0..5, priority 0..1000, enabled}; anything else is refused with 22023.';
create index agent_mcp_connections_server_org_idx on public.agent_mcp_connections (server_instance_id, organization_id);
create index agent_mcp_connections_agent_org_idx on public.agent_mcp_connections (agent_id, organization_id);
create index agent_mcp_connections_org_idx on public.agent_mcp_connections (organization_id);

create function private.connection_config_schema() returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select '{"type": "object", "additionalProperties": false, "properties": {
            "timeoutMs": {"type": "integer", "minimum": 100, "maximum": 120000},
            "maxRetries": {"type": "integer", "minimum": 0, "maximum": 5},
            "priority": {"type": "integer", "minimum": 0, "maximum": 1000},
            "enabled": {"type": "boolean"}}}'::jsonb
$$;
comment on function private.connection_config_schema() is 'The JSON Schema of agent_mcp_connections.connection_config.';

create function private.connection_before_write() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_error text := private.json_schema_error(private.connection_config_schema(), new.connection_config, 'connection_config');
begin
  if v_error is not null then
    raise exception using errcode = '22023', message = format('invalid connection config: %s', v_error);
  end if;
  return new;
end $$;
comment on function private.connection_before_write() is 'Trigger: validates connection_config.';

create trigger agent_mcp_connections_validate before insert or update of connection_config on public.agent_mcp_connections
  for each row execute function private.connection_before_write();
create trigger agent_mcp_connections_touch before update on public.agent_mcp_connections
  for each row execute function private.touch_updated_at();

alter table public.agent_toolbox_access enable row level security;
alter table public.agent_mcp_server_access enable row level security;
alter table public.agent_mcp_connections enable row level security;

create view public.active_agent_mcp_connections with (security_invoker = true) as
  select c.id, c.organization_id, c.agent_id, c.server_instance_id, c.connection_config, c.last_connected_at,
         c.total_requests, c.failed_requests, c.last_used_at,
         i.display_name as server_name, i.endpoint_url, i.status as server_status
    from public.agent_mcp_connections c
    join public.account_tool_instances i on i.id = c.server_instance_id
   where c.status = 'connected';
comment on view public.active_agent_mcp_connections is 'Connected agent-to-server connections; runs with the caller''s rights (RLS applies).';

create view public.user_mcp_connection_stats with (security_invoker = true) as
  select a.user_id, c.organization_id,
         count(*) as connections,
         count(*) filter (where c.status = 'connected') as connected,
         sum(c.total_requests) as total_requests,
         sum(c.failed_requests) as failed_requests,
         case when sum(c.total_requests) > 0 then round(sum(c.total_duration_ms)::numeric / sum(c.total_requests), 1) end as avg_duration_ms,
         max(c.last_used_at) as last_used_at
    from public.agent_mcp_connections c
    join public.agents a on a.id = c.agent_id
   group by a.user_id, c.organization_id;
comment on view public.user_mcp_connection_stats is 'Usage of MCP connections per user and organization; runs with the caller''s rights (RLS applies).';
