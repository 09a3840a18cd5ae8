-- Access API: grant, revoke and validate an agent's access to MCP servers and their tools.
-- Validity is computed at check time by the authorization core (private.grant_states in
-- db/functions/authz.sql), so expiry needs no clean-up job and a revoke takes effect at once.
-- Longer than 400 lines: the grant, validate, tool-filter, connection and toolbox-attachment RPCs
-- all read the one grant state of the core; split by table they would scatter the domain's story.

create function public.validate_agent_mcp_access(p_agent_id uuid, p_server_instance_id uuid) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_may boolean;
  v_valid boolean;
begin
  -- The hot path: who may ask and what the answer is, in one statement.
  select private.may_act_for_agent(p_agent_id, auth.uid()),
         exists (select from private.valid_grants g where g.agent_id = p_agent_id and g.server_instance_id = p_server_instance_id)
    into v_may, v_valid;
  if not v_may then
    -- Not a manager: the one refusal rule decides (service callers pass, others get 42501).
    perform private.require_agent_manager(p_agent_id);
  end if;
  return v_valid;
end $$;
comment on function public.validate_agent_mcp_access(uuid, uuid) is
  'Whether the agent may use the MCP server now: a live, unexpired grant on a running server, for an active agent whose owner is a member.';

create function public.validate_agent_mcp_access(
  p_agent_id uuid, p_server_instance_id uuid, p_tool_name text, p_tool_definition jsonb default null
) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_agent_manager(p_agent_id);
  return exists (
    select from private.valid_grants g
      join public.account_tool_instances i on i.id = g.server_instance_id
      cross join lateral jsonb_array_elements(i.pinned_manifest) t
     where g.agent_id = p_agent_id and g.server_instance_id = p_server_instance_id
       and t ->> 'name' = p_tool_name
       and private.scope_allows(g.permission_scope, g.allowed_tools, t)
       and (p_tool_definition is null or private.tool_matches_pin(p_tool_definition, t)));
end $$;
comment on function public.validate_agent_mcp_access(uuid, uuid, text, jsonb) is
  'Whether the agent may call this tool now: server access, scope, allowed tools, and (when given) the presented definition matches the pinned hash.';

create function public.get_agent_mcp_servers(p_agent_id uuid)
returns table (
  server_instance_id uuid, server_name text, mcp_server_type text, endpoint_url text, mcp_endpoint_path text,
  mcp_transport_type public.mcp_transport_type, status public.mcp_server_status, health_status public.mcp_health_status,
  permission_scope public.mcp_permission_scope, allowed_tools text[], expires_at timestamptz, priority integer,
  capabilities jsonb, grant_id uuid, granted_at timestamptz
)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_agent_manager(p_agent_id);
  return query
    select i.id, i.display_name, i.mcp_server_type, i.endpoint_url, i.mcp_endpoint_path, i.mcp_transport_type, i.status,
           i.health_status, g.permission_scope,
           private.effective_tools(g.permission_scope, g.allowed_tools, i.pinned_tool_names, i.pinned_read_only_tool_names),
           g.expires_at, i.priority, i.mcp_server_capabilities, g.id, g.granted_at
      from private.valid_grants g
      join public.account_tool_instances i on i.id = g.server_instance_id
     where g.agent_id = p_agent_id
     order by i.priority desc, i.display_name;
end $$;
comment on function public.get_agent_mcp_servers(uuid) is
  'The MCP servers the agent may use now, with the tools its grant allows (effective list), highest priority first.';

-- Revokes an agent's live grants of one kind on one target (an MCP server grant, an OAuth
-- permission), with the reason both in the rows and, for this change only, in the audit trail.
-- Returns how many.
create function private.revoke_live_grants(p_table regclass, p_agent_id uuid, p_target_column name, p_target_id uuid,
                                           p_reason text) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_count integer;
begin
  perform private.set_audit_context(p_reason);
  execute format('update %s g set revoked_at = now(), revoked_by = auth.uid(), is_active = false, revoke_reason = $1
                   where g.agent_id = $2 and g.%I = $3 and g.revoked_at is null', p_table, p_target_column)
    using p_reason, p_agent_id, p_target_id;
  get diagnostics v_count = row_count;
  perform private.set_audit_context(null);
  return v_count;
end $$;
comment on function private.revoke_live_grants(regclass, uuid, name, uuid, text) is
  'Revokes the agent''s live grants (or OAuth permissions) on one target with the reason, audited with it; returns how many.';
revoke execute on function private.revoke_live_grants(regclass, uuid, name, uuid, text) from public, anon, authenticated, service_role;

create function public.grant_agent_mcp_access(
  p_agent_id uuid,
  p_server_instance_id uuid,
  p_permission_scope public.mcp_permission_scope,
  p_allowed_tools text[] default null,
  p_expires_at timestamptz default null
) returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_manager(p_agent_id);
  v_instance public.account_tool_instances;
  v_unknown text;
  v_id uuid;
begin
  select i.* into v_instance from public.account_tool_instances i where i.id = p_server_instance_id;
  -- A server the caller cannot see is answered as a missing one.
  perform private.require_org_role_for(v_instance.organization_id, 'viewer', format('MCP server %s', p_server_instance_id));
  if v_instance.organization_id <> v_agent.organization_id then
    raise exception using errcode = '42501', message = 'the agent and the MCP server belong to different organizations';
  end if;
  perform private.require_org_role(v_instance.organization_id, 'member');
  if v_instance.status in ('removing', 'removed') then
    raise exception using errcode = '55000', message = format('the MCP server is %s', v_instance.status);
  end if;
  if p_permission_scope is null then
    raise exception using errcode = '22023', message = 'p_permission_scope is required (read_only, full_access or custom)';
  end if;
  if p_permission_scope = 'custom' then
    if coalesce(cardinality(p_allowed_tools), 0) = 0 then
      raise exception using errcode = '22023', message = 'a custom grant needs p_allowed_tools';
    end if;
    select x into v_unknown from unnest(p_allowed_tools) x
     where not exists (select from jsonb_array_elements(v_instance.pinned_manifest) t where t ->> 'name' = x) limit 1;
    if v_unknown is not null then
      raise exception using errcode = '22023', message = format('p_allowed_tools: %L is not a tool of this server', v_unknown);
    end if;
  elsif p_allowed_tools is not null then
    raise exception using errcode = '22023', message = format('p_allowed_tools is only for the custom scope, not %s', p_permission_scope);
  end if;
  if p_expires_at is not null and p_expires_at <= now() then
    raise exception using errcode = '22023', message = 'p_expires_at must be in the future';
  end if;

  perform private.revoke_live_grants('public.agent_mcp_server_access', p_agent_id, 'server_instance_id', p_server_instance_id,
                                     'superseded by a new grant');
  insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope,
         allowed_tools, expires_at, granted_by)
  values (v_agent.organization_id, p_agent_id, p_server_instance_id, p_permission_scope,
          (select array_agg(distinct x order by x) from unnest(p_allowed_tools) x), p_expires_at, auth.uid())
  returning id into v_id;
  return v_id;
end $$;
comment on function public.grant_agent_mcp_access(uuid, uuid, public.mcp_permission_scope, text[], timestamptz) is
  'Grants an agent access to an MCP server of its organization (the agent''s owner or an admin, who may use the server). Supersedes a live grant. Returns the grant id.';

create function public.revoke_agent_mcp_access(p_agent_id uuid, p_server_instance_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_reason text := coalesce(nullif(current_setting('mcp.audit_reason', true), ''), 'revoked');
begin
  perform private.require_agent_manager(p_agent_id);
  update public.agent_mcp_server_access g
     set revoked_at = now(), revoked_by = auth.uid(), is_active = false, revoke_reason = v_reason
   where g.agent_id = p_agent_id and g.server_instance_id = p_server_instance_id and g.revoked_at is null;
  return found;
end $$;
comment on function public.revoke_agent_mcp_access(uuid, uuid) is
  'Revokes the agent''s live grant on the MCP server, at once. Returns false when there was none.';

create function public.get_available_mcp_servers(p_user_id uuid)
returns table (
  server_instance_id uuid, organization_id uuid, organization_name text, server_name text, mcp_server_type text,
  status public.mcp_server_status, health_status public.mcp_health_status, mcp_transport_type public.mcp_transport_type,
  endpoint_url text, tool_count integer, caller_role public.org_role
)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_self(p_user_id);
  return query
    select i.id, i.organization_id, o.name, i.display_name, i.mcp_server_type, i.status, i.health_status,
           i.mcp_transport_type, i.endpoint_url, jsonb_array_length(i.pinned_manifest), m.role
      from private.memberships(p_user_id, 'member') m
      join public.organizations o on o.id = m.organization_id
      join public.account_tool_instances i on i.organization_id = m.organization_id
     where i.status <> 'removed'
     order by o.name, i.priority desc, i.display_name;
end $$;
comment on function public.get_available_mcp_servers(uuid) is
  'MCP servers of the organizations where the user is a member or stronger: what their agents can be granted.';

create function public.validate_mcp_access(agent_id uuid, mcp_server_instance_id uuid, user_id uuid default auth.uid())
returns boolean
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_self(validate_mcp_access.user_id);
  if not private.may_act_for_agent(validate_mcp_access.agent_id, validate_mcp_access.user_id) then
    return false;
  end if;
  return exists (select from private.valid_grants g
                  where g.agent_id = validate_mcp_access.agent_id and g.server_instance_id = validate_mcp_access.mcp_server_instance_id);
end $$;
comment on function public.validate_mcp_access(uuid, uuid, uuid) is
  'Whether the user (the caller) may act for the agent and the agent may use the MCP server now.';

create function public.get_organization_mcp_configs(org_id uuid, agent_id uuid default null) returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents;
begin
  if get_organization_mcp_configs.agent_id is null then
    -- The whole organization, for its members: every server not removed, with the default
    -- connection config; has_access is null (no agent asked about).
    perform private.require_org_role(org_id, 'member');
    return coalesce((
      select jsonb_agg(jsonb_build_object(
               'server_instance_id', i.id, 'name', i.display_name, 'type', i.mcp_server_type,
               'endpoint_url', i.endpoint_url, 'transport', i.mcp_transport_type, 'status', i.status,
               'permission_scope', null, 'allowed_tools', '[]'::jsonb, 'expires_at', null,
               'priority', i.priority, 'capabilities', i.mcp_server_capabilities,
               'timeout_ms', 10000, 'max_retries', 1, 'enabled', true, 'has_access', null)
             order by i.priority desc, i.display_name)
        from public.account_tool_instances i
       where i.organization_id = org_id and i.status <> 'removed'), '[]'::jsonb);
  end if;
  v_agent := private.require_agent_manager(get_organization_mcp_configs.agent_id);
  if v_agent.organization_id <> org_id then
    raise exception using errcode = '42501', message = 'the agent does not belong to this organization';
  end if;
  return coalesce((
    select jsonb_agg(jsonb_build_object(
             'server_instance_id', s.server_instance_id, 'name', s.server_name, 'type', s.mcp_server_type,
             'endpoint_url', s.endpoint_url, 'transport', s.mcp_transport_type, 'permission_scope', s.permission_scope,
             'allowed_tools', to_jsonb(s.allowed_tools), 'expires_at', s.expires_at,
             -- The agent's own connection priority, where set, outweighs the server's.
             'priority', coalesce((c.connection_config ->> 'priority')::int, s.priority),
             'capabilities', s.capabilities,
             'timeout_ms', coalesce((c.connection_config ->> 'timeoutMs')::int, 10000),
             'max_retries', coalesce((c.connection_config ->> 'maxRetries')::int, 1),
             'enabled', coalesce((c.connection_config ->> 'enabled')::boolean, true),
             'has_access', true)
           order by coalesce((c.connection_config ->> 'priority')::int, s.priority) desc, s.server_name)
      from public.get_agent_mcp_servers(get_organization_mcp_configs.agent_id) s
      left join public.agent_mcp_connections c
        on c.agent_id = get_organization_mcp_configs.agent_id and c.server_instance_id = s.server_instance_id), '[]'::jsonb);
end $$;
comment on function public.get_organization_mcp_configs(uuid, uuid) is
  'With an agent: the connection configurations of every MCP server the agent may use now (has_access true). Without one: every server of the organization, for its members (has_access null).';

-- The one tool filter: what the agent's servers presented (p_servers: [{server_instance_id,
-- tools}], checked by the callers), each tool allowed or not with the reason, and the sha256 of
-- its definition. A definition that is not the pinned one (tool_matches_pin: no hashing for the
-- common case, the pinned definition) is recorded in mcp_tool_drift and audited, only when the
-- platform read it (the gateway, as service_role): a member could otherwise present any
-- definition and plant a drift row for an admin to approve. Rows in the order presented.
create function private.filter_tools(p_agent public.agents, p_servers jsonb)
returns table (server_instance_id uuid, tool_name text, allowed boolean, reason text, presented_sha256 text)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_servers uuid[];
  v_tools jsonb[];
  v_reasons text[];
  v_shas text[];
  v_pinned_shas text[];
  v_first_sightings jsonb;
begin
  -- Per server once: its pins and the tools its live grant allows (private.effective_tools, the
  -- scope rule over the pinned names); then per tool: its pin, and whether it is the pin.
  with servers as materialized (
    select s.n, (s.server ->> 'server_instance_id')::uuid as id, s.server -> 'tools' as presented, i.pinned_manifest,
           g.id is not null and i.status = 'running' as live, g.permission_scope,
           private.effective_tools(g.permission_scope, g.allowed_tools, i.pinned_tool_names, i.pinned_read_only_tool_names) as allows
      from jsonb_array_elements(p_servers) with ordinality as s(server, n)
      left join public.account_tool_instances i
        on i.id = (s.server ->> 'server_instance_id')::uuid and i.organization_id = p_agent.organization_id
      left join private.valid_grants g on g.agent_id = p_agent.id and g.server_instance_id = i.id
  ), tools as materialized (
    select s.n, x.n as tn, s.id, x.p, pin.t as pin, s.live, s.permission_scope, s.allows,
           coalesce(private.tool_matches_pin(x.p, pin.t), false) as matches
      from servers s
      cross join lateral jsonb_array_elements(s.presented) with ordinality as x(p, n)
      left join lateral (select t from jsonb_array_elements(s.pinned_manifest) t where t ->> 'name' = x.p ->> 'name') pin on true
  )
  select coalesce(array_agg(d.id order by d.n, d.tn), '{}'), coalesce(array_agg(d.p order by d.n, d.tn), '{}'),
         coalesce(array_agg(case
           when not d.live then 'no_live_grant'
           when d.pin is null then 'not_in_pinned_manifest'
           when not d.matches then 'definition_changed'
           when not (d.p ->> 'name') = any (d.allows) then
             case d.permission_scope when 'read_only' then 'not_read_only' else 'not_in_allowed_tools' end
           else 'allowed' end order by d.n, d.tn), '{}'),
         -- The pin's hash is the presented definition's when it matches: hashed only otherwise.
         coalesce(array_agg(case when d.matches then d.pin ->> 'sha256' else private.tool_sha256(d.p) end order by d.n, d.tn), '{}'),
         coalesce(array_agg(case when not d.matches then d.pin ->> 'sha256' end order by d.n, d.tn), '{}')
    into v_servers, v_tools, v_reasons, v_shas, v_pinned_shas
    from tools d;

  -- Only when something drifted: in the common case (every definition as pinned) nothing is written.
  if private.is_service_caller() and exists (select from unnest(v_pinned_shas) x where x is not null) then
    perform private.set_audit_context('the presented tool definition differs from the pinned one', 'tool_pinning');
    with upserted as (
      insert into public.mcp_tool_drift as d (organization_id, server_instance_id, tool_name, pinned_sha256, presented_sha256, presented_definition)
      select p_agent.organization_id, x.id, x.p ->> 'name', x.pinned, x.sha, private.tool_definition(x.p)
        from unnest(v_servers, v_tools, v_shas, v_pinned_shas) as x(id, p, sha, pinned)
       where x.pinned is not null
      on conflict on constraint mcp_tool_drift_presented_key
        do update set last_seen_at = now(), seen_count = d.seen_count + 1
      returning d.server_instance_id, d.tool_name, d.pinned_sha256, d.presented_sha256, d.seen_count
    )
    select coalesce(jsonb_agg(jsonb_build_object(
             'server', u.server_instance_id,
             'before', jsonb_build_object('tool', u.tool_name, 'sha256', u.pinned_sha256),
             'after', jsonb_build_object('tool', u.tool_name, 'sha256', u.presented_sha256, 'agent_id', p_agent.id))), '[]')
      into v_first_sightings
      from upserted u where u.seen_count = 1;
    perform private.audit(p_agent.organization_id, 'tool.drift_denied', 'mcp_instance', f ->> 'server', f -> 'before', f -> 'after')
       from jsonb_array_elements(v_first_sightings) f;
    perform private.set_audit_context(null);
  end if;

  return query
    select x.id, x.p ->> 'name', x.reason = 'allowed', x.reason, x.sha
      from unnest(v_servers, v_tools, v_reasons, v_shas) with ordinality as x(id, p, reason, sha, n)
     order by x.n;
end $$;
comment on function private.filter_tools(public.agents, jsonb) is
  'The tool filter of filter_agent_mcp_tools and gateway_filter_tools: each presented tool of each server allowed or not, why, and its definition''s sha256; records and audits drift the platform presents.';
revoke execute on function private.filter_tools(public.agents, jsonb) from public, anon, authenticated, service_role;

-- What a live server presents, filtered by the grant: each tool allowed or not, with the reason.
-- A definition that differs from the pinned one is recorded in mcp_tool_drift and audited.
create function public.filter_agent_mcp_tools(p_agent_id uuid, p_server_instance_id uuid, p_tools jsonb)
returns table (tool_name text, allowed boolean, reason text, presented_sha256 text)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_manager(p_agent_id);
begin
  if jsonb_typeof(p_tools) is distinct from 'array' then
    raise exception using errcode = '22023', message = 'p_tools must be the array of tools the server presented';
  end if;
  return query
    select f.tool_name, f.allowed, f.reason, f.presented_sha256
      from private.filter_tools(v_agent, jsonb_build_array(jsonb_build_object('server_instance_id', p_server_instance_id, 'tools', p_tools))) f;
end $$;
comment on function public.filter_agent_mcp_tools(uuid, uuid, jsonb) is
  'Filters the tools a server presented by the agent''s grant and the pinned hashes; records and audits changed definitions when the platform (the gateway) presents them.';

create function public.upsert_agent_mcp_connection(p_agent_id uuid, p_server_instance_id uuid, p_connection_config jsonb default '{}'::jsonb)
returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_manager(p_agent_id);
  v_id uuid;
begin
  if not exists (select from public.account_tool_instances i
                  where i.id = p_server_instance_id and i.organization_id = v_agent.organization_id) then
    raise exception using errcode = '42501', message = 'the MCP server is not in the agent''s organization';
  end if;
  insert into public.agent_mcp_connections (organization_id, agent_id, server_instance_id, connection_config)
  values (v_agent.organization_id, p_agent_id, p_server_instance_id, coalesce(p_connection_config, '{}'::jsonb))
  on conflict (agent_id, server_instance_id) do update set connection_config = excluded.connection_config
  returning id into v_id;
  return v_id;
end $$;
comment on function public.upsert_agent_mcp_connection(uuid, uuid, jsonb) is
  'Creates or updates how an agent connects to an MCP server (connection_config validated). Returns the connection id.';

create function public.record_agent_mcp_connection_usage(
  p_agent_id uuid, p_server_instance_id uuid, p_success boolean, p_duration_ms integer, p_error text default null
) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_manager(p_agent_id);
begin
  if p_duration_ms is null or p_duration_ms < 0 then
    raise exception using errcode = '22023', message = 'p_duration_ms must be zero or more';
  end if;
  insert into public.agent_mcp_connections as c (organization_id, agent_id, server_instance_id, status, last_connected_at,
         last_error, total_requests, failed_requests, total_duration_ms, last_used_at)
  select v_agent.organization_id, p_agent_id, i.id, case when p_success then 'connected' else 'error' end::public.mcp_connection_status,
         case when p_success then now() end, p_error, 1, case when p_success then 0 else 1 end, p_duration_ms, now()
    from public.account_tool_instances i where i.id = p_server_instance_id and i.organization_id = v_agent.organization_id
  on conflict (agent_id, server_instance_id) do update
     set status = excluded.status, last_connected_at = coalesce(excluded.last_connected_at, c.last_connected_at),
         last_error = excluded.last_error, total_requests = c.total_requests + 1,
         failed_requests = c.failed_requests + excluded.failed_requests,
         total_duration_ms = c.total_duration_ms + excluded.total_duration_ms, last_used_at = now();
  if not found then
    raise exception using errcode = '42501', message = 'the MCP server is not in the agent''s organization';
  end if;
end $$;
comment on function public.record_agent_mcp_connection_usage(uuid, uuid, boolean, integer, text) is
  'Counts one request of an agent to an MCP server (success, duration) in its connection statistics.';

create function public.grant_agent_toolbox_access(p_agent_id uuid, p_toolbox_id uuid) returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_manager(p_agent_id);
  v_id uuid;
begin
  if not exists (select from public.account_tool_environments t where t.id = p_toolbox_id and t.organization_id = v_agent.organization_id) then
    raise exception using errcode = '42501', message = 'the toolbox is not in the agent''s organization';
  end if;
  perform private.require_org_role(v_agent.organization_id, 'admin');
  select a.id into v_id from public.agent_toolbox_access a
   where a.agent_id = p_agent_id and a.account_tool_environment_id = p_toolbox_id and a.revoked_at is null;
  if v_id is null then
    insert into public.agent_toolbox_access (organization_id, agent_id, account_tool_environment_id, granted_by)
    values (v_agent.organization_id, p_agent_id, p_toolbox_id, auth.uid()) returning id into v_id;
  end if;
  return v_id;
end $$;
comment on function public.grant_agent_toolbox_access(uuid, uuid) is 'Attaches an agent to a toolbox of its organization (admins). Returns the attachment id.';

create function public.revoke_agent_toolbox_access(p_agent_id uuid, p_toolbox_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_manager(p_agent_id);
begin
  perform private.require_org_role(v_agent.organization_id, 'admin');
  update public.agent_toolbox_access a set revoked_at = now(), revoked_by = auth.uid()
   where a.agent_id = p_agent_id and a.account_tool_environment_id = p_toolbox_id and a.revoked_at is null;
  return found;
end $$;
comment on function public.revoke_agent_toolbox_access(uuid, uuid) is 'Detaches an agent from a toolbox (admins). False when it was not attached.';

-- For admins in psql: who can use what in an organization, at a glance.
create function public.organization_access_overview(p_organization_id uuid)
returns table (
  agent text, agent_owner text, server text, scope public.mcp_permission_scope, tools text[],
  expires_at timestamptz, state text, granted_by text, granted_at timestamptz
)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_org_role(p_organization_id, 'admin');
  return query
    select a.name, ou.email::text, i.display_name, g.permission_scope,
           array(select t ->> 'name' from jsonb_array_elements(i.pinned_manifest) t
                  where private.scope_allows(g.permission_scope, g.allowed_tools, t) order by 1),
           g.expires_at,
           s.state,
           gu.email::text, g.granted_at
      from public.agent_mcp_server_access g
      join public.agents a on a.id = g.agent_id
      join public.account_tool_instances i on i.id = g.server_instance_id
      join private.grant_states s on s.grant_id = g.id
      left join auth.users ou on ou.id = a.user_id
      left join auth.users gu on gu.id = g.granted_by
     where g.organization_id = p_organization_id
       and (g.revoked_at is null or g.revoked_at > now() - interval '30 days')
     order by a.name, i.display_name, g.granted_at desc;
end $$;
comment on function public.organization_access_overview(uuid) is
  'Admins: every grant of the organization (live, expired, or revoked in the last 30 days) with its effective tools and state.';

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.validate_agent_mcp_access(uuid, uuid)', 'public.validate_agent_mcp_access(uuid, uuid, text, jsonb)',
    'public.get_agent_mcp_servers(uuid)', 'public.grant_agent_mcp_access(uuid, uuid, public.mcp_permission_scope, text[], timestamptz)',
    'public.revoke_agent_mcp_access(uuid, uuid)', 'public.get_available_mcp_servers(uuid)',
    'public.validate_mcp_access(uuid, uuid, uuid)', 'public.get_organization_mcp_configs(uuid, uuid)',
    'public.filter_agent_mcp_tools(uuid, uuid, jsonb)', 'public.upsert_agent_mcp_connection(uuid, uuid, jsonb)',
    'public.record_agent_mcp_connection_usage(uuid, uuid, boolean, integer, text)',
    'public.grant_agent_toolbox_access(uuid, uuid)', 'public.revoke_agent_toolbox_access(uuid, uuid)',
    'public.organization_access_overview(uuid)']
  loop
    execute format('revoke execute on function %s from public, anon', f);
    execute format('grant execute on function %s to authenticated, service_role', f);
  end loop;
end $$;
