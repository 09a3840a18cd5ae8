-- Gateway API. Two parts:
--   * agent API keys, for the people who manage an agent: create (the key is returned once),
--     list, revoke;
--   * the gateway's own calls (service_role only, never authenticated or anon): who is calling
--     (a key, or a user the gateway verified from a JWT, acting for an agent), which servers the
--     agent reaches now and which resources and prompts it may read there, and the upstream
--     credential of a server. Tool decisions reuse validate_agent_mcp_access and the rule of
--     filter_agent_mcp_tools (gateway_filter_tools), called by the gateway as service_role with
--     the definitions it read from the upstream itself.
-- Nothing is cached outside the database: every decision is taken when the call arrives, so a
-- revoke, an expiry, a stopped server, a removed member or a revoked key holds on the next call.

create function public.create_agent_api_key(p_agent_id uuid, p_name text, p_expires_at timestamptz default null)
returns table (key_id uuid, api_key text, prefix text, expires_at timestamptz)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_manager(p_agent_id);
  v_prefix text := 'mcpk_' || encode(extensions.gen_random_bytes(6), 'hex');
  v_key text;
begin
  if p_name is null or length(p_name) not between 1 and 100 then
    raise exception using errcode = '22023', message = 'p_name must have 1 to 100 characters';
  end if;
  if p_expires_at is not null and p_expires_at <= now() then
    raise exception using errcode = '22023', message = 'p_expires_at must be in the future';
  end if;
  if not v_agent.is_active then
    raise exception using errcode = '55000', message = format('agent %s is not active', p_agent_id);
  end if;
  -- 256 random bits after the prefix, base64url without padding.
  v_key := v_prefix || '_' || private.base64url(extensions.gen_random_bytes(32));
  return query
    insert into public.agent_api_keys as k (organization_id, agent_id, name, prefix, key_sha256, created_by, expires_at)
    values (v_agent.organization_id, p_agent_id, p_name, v_prefix, private.sha256(v_key), auth.uid(), p_expires_at)
    returning k.id, v_key, k.prefix, k.expires_at;
end $$;
comment on function public.create_agent_api_key(uuid, text, timestamptz) is
  'Creates an API key for the agent (its owner or an admin). The key is returned here only; the database keeps its sha256.';

create function public.list_agent_api_keys(p_agent_id uuid)
returns table (key_id uuid, name text, prefix text, created_by uuid, created_at timestamptz, expires_at timestamptz,
               last_used_at timestamptz, revoked_at timestamptz, revoke_reason text, state text)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_agent_manager(p_agent_id);
  return query
    select k.id, k.name, k.prefix, k.created_by, k.created_at, k.expires_at, k.last_used_at, k.revoked_at, k.revoke_reason,
           st.state
      from public.agent_api_keys k
      join private.api_key_states st on st.key_id = k.id
     where k.agent_id = p_agent_id
     order by k.created_at desc;
end $$;
comment on function public.list_agent_api_keys(uuid) is
  'The agent''s API keys (prefix, never the key), with their state: active, expired or revoked.';

create function public.revoke_agent_api_key(p_key_id uuid, p_reason text default null) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent_id uuid := (select k.agent_id from public.agent_api_keys k where k.id = p_key_id);
begin
  -- An unknown key and another organization's key get the same 42501.
  perform private.require_agent_manager(v_agent_id);
  update public.agent_api_keys k
     set revoked_at = now(), revoked_by = auth.uid(), revoke_reason = coalesce(p_reason, 'revoked')
   where k.id = p_key_id and k.revoked_at is null;
  return found;
end $$;
comment on function public.revoke_agent_api_key(uuid, text) is
  'Revokes an API key at once (the agent''s owner or an admin). False when it was already revoked.';

-- How long from now until an instant, in milliseconds (null: never). The gateway counts from
-- when it asked, on its own clock: a clock that differs from the database's changes nothing.
create function private.ms_until(p_at timestamptz) returns bigint
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  -- greatest() ignores a null: a null instant is answered before it.
  return case when p_at is not null then greatest(0, floor(extract(epoch from (p_at - now())) * 1000))::bigint end;
end $$;
comment on function private.ms_until(timestamptz) is 'Milliseconds from now until the instant (0 if past, null if null).';

-- Who is calling the gateway. With p_api_key: a live key (not revoked, not expired) of an active
-- agent, which must be p_agent_id when one is named; else 28000 (the gateway answers 401).
-- With p_user_id (the subject of a JWT the gateway verified): the user may act for p_agent_id
-- (private.agent_managers) and the agent is active; else 42501 (403).
create function public.gateway_authenticate(p_api_key text default null, p_user_id uuid default null, p_agent_id uuid default null)
returns table (agent_id uuid, organization_id uuid, key_id uuid, valid_for_ms bigint)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_key public.agent_api_keys;
begin
  perform private.require_service_caller('authenticate gateway callers');
  if (p_api_key is null) = (p_user_id is null) then
    raise exception using errcode = '22023', message = 'give exactly one of p_api_key and p_user_id';
  end if;
  if p_api_key is not null then
    select k.* into v_key from public.agent_api_keys k
      join private.api_key_states st on st.key_id = k.id
      join public.agents a on a.id = k.agent_id
     where k.key_sha256 = private.sha256(p_api_key) and st.state = 'active' and a.is_active;
    if not found or (p_agent_id is not null and v_key.agent_id <> p_agent_id) then
      raise exception using errcode = '28000', message = 'invalid API key',
        hint = 'the key is unknown, revoked or expired, or belongs to another agent';
    end if;
    update public.agent_api_keys k set last_used_at = now()
     where k.id = v_key.id and (k.last_used_at is null or k.last_used_at < now() - interval '10 seconds');
    return query select v_key.agent_id, v_key.organization_id, v_key.id, private.ms_until(v_key.expires_at);
    return;
  end if;
  if p_agent_id is null then
    raise exception using errcode = '22023', message = 'a user acts for an agent: p_agent_id is required',
      hint = 'name the agent in the gateway URL';
  end if;
  return query
    select a.id, a.organization_id, null::uuid, null::bigint from public.agents a
     where a.id = p_agent_id and a.is_active
       and private.may_act_for_agent(a.id, p_user_id);
  if not found then
    raise exception using errcode = '42501', message = format('not allowed to act for agent %s', p_agent_id),
      hint = 'only the agent''s owner and the admins of its organization may';
  end if;
end $$;
comment on function public.gateway_authenticate(text, uuid, uuid) is
  'Gateway (service_role): the agent an API key (with how long the key stays valid), or a verified user acting for p_agent_id, stands for; 28000 or 42501 otherwise.';

-- The servers an agent reaches through the gateway now: get_agent_mcp_servers (valid grants on
-- running servers), with the name the gateway namespaces tools by and the read rule.
create function public.gateway_agent_servers(p_agent_id uuid)
returns table (server_instance_id uuid, server_name text, instance_name text, permission_scope public.mcp_permission_scope,
               allowed_tools text[], reads_allowed boolean, mcp_transport_type public.mcp_transport_type, expires_at timestamptz)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_service_caller('list the servers of an agent for the gateway');
  return query
    select s.server_instance_id, s.server_name, i.instance_name_on_toolbox, s.permission_scope, s.allowed_tools,
           private.scope_allows_reads(s.permission_scope), s.mcp_transport_type, s.expires_at
      from public.get_agent_mcp_servers(p_agent_id) s
      join public.account_tool_instances i on i.id = s.server_instance_id
     order by i.instance_name_on_toolbox, s.server_instance_id;
end $$;
comment on function public.gateway_agent_servers(uuid) is
  'Gateway (service_role): the servers the agent may use now, with the tools its grant allows and whether it may read resources and prompts.';

-- The decision of one tool call, with the definition the gateway read upstream
-- (validate_agent_mcp_access), and for how long an allowed call stays allowed if nothing
-- changes: until the grant's expiry (null: no expiry). The gateway caches an allowed decision
-- that long, or until the database announces a change (private.notify_gateway).
create function public.gateway_authorize_call(p_agent_id uuid, p_server_instance_id uuid, p_tool_definition jsonb)
returns table (allowed boolean, valid_for_ms bigint)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_service_caller('decide a tool call for the gateway');
  if jsonb_typeof(p_tool_definition) is distinct from 'object' or jsonb_typeof(p_tool_definition -> 'name') is distinct from 'string' then
    raise exception using errcode = '22023', message = 'p_tool_definition must be the tool (an object with a name) the server presented';
  end if;
  return query
    select public.validate_agent_mcp_access(p_agent_id, p_server_instance_id, p_tool_definition ->> 'name', p_tool_definition),
           private.ms_until((select g.expires_at from private.valid_grants g where g.agent_id = p_agent_id and g.server_instance_id = p_server_instance_id));
end $$;
comment on function public.gateway_authorize_call(uuid, uuid, jsonb) is
  'Gateway (service_role): whether the agent may call the presented tool now, and for how long that holds unless something changes (until the grant''s expiry).';

-- tools/list of all the agent's servers in one call: what the gateway read from each server
-- upstream (p_servers: [{server_instance_id, tools: [...]}], each server once), filtered by the
-- rule of filter_agent_mcp_tools (private.filter_tools: scope, custom list, pinned definitions;
-- drift recorded). One row per presented tool, in the order given.
create function public.gateway_filter_tools(p_agent_id uuid, p_servers jsonb)
returns table (server_instance_id uuid, tool_name text, allowed boolean, reason text)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_service_caller('filter an agent''s tools for the gateway');
  if jsonb_typeof(p_servers) is distinct from 'array' or exists (
       select from jsonb_array_elements(p_servers) s
        where jsonb_typeof(s -> 'tools') is distinct from 'array'
           or coalesce(s ->> 'server_instance_id', '') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
           or exists (select from jsonb_array_elements(s -> 'tools') t where jsonb_typeof(t -> 'name') is distinct from 'string'))
  then
    raise exception using errcode = '22023', message = 'p_servers must be an array of {server_instance_id, tools}',
      hint = 'each server''s tools as it presented them (objects with a name)';
  end if;
  if (select count(distinct (s ->> 'server_instance_id')::uuid) <> count(*) from jsonb_array_elements(p_servers) s) then
    raise exception using errcode = '22023', message = 'p_servers names a server twice';
  end if;
  return query
    select f.server_instance_id, f.tool_name, f.allowed, f.reason
      from private.filter_tools(private.require_agent_manager(p_agent_id), p_servers) f;
end $$;
comment on function public.gateway_filter_tools(uuid, jsonb) is
  'Gateway (service_role): each tool the agent''s servers presented, allowed or not and why (the rule of filter_agent_mcp_tools), for all its servers in one call.';

-- How the gateway reaches a running server: its DTMA endpoint and the toolbox's bearer token
-- (from Vault). The token never leaves the gateway: agents present their own credential.
create function public.gateway_upstream(p_server_instance_id uuid)
returns table (endpoint_url text, mcp_transport_type public.mcp_transport_type, bearer_token text)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_service_caller('read an upstream credential');
  return query
    select i.endpoint_url, i.mcp_transport_type, private.toolbox_token(i.account_tool_environment_id)
      from public.account_tool_instances i
     where i.id = p_server_instance_id and i.status = 'running' and i.endpoint_url is not null;
  if not found then
    raise exception using errcode = 'P0002', message = format('MCP server %s is not running', p_server_instance_id);
  end if;
end $$;
comment on function public.gateway_upstream(uuid) is
  'Gateway (service_role): the endpoint and bearer token of a running MCP server. Never granted to authenticated.';

revoke execute on function private.ms_until(timestamptz),
  public.create_agent_api_key(uuid, text, timestamptz), public.list_agent_api_keys(uuid), public.revoke_agent_api_key(uuid, text),
  public.gateway_authenticate(text, uuid, uuid), public.gateway_agent_servers(uuid), public.gateway_upstream(uuid),
  public.gateway_authorize_call(uuid, uuid, jsonb), public.gateway_filter_tools(uuid, jsonb)
  from public, anon;
grant execute on function public.create_agent_api_key(uuid, text, timestamptz), public.list_agent_api_keys(uuid),
  public.revoke_agent_api_key(uuid, text) to authenticated, service_role;
grant execute on function public.gateway_authenticate(text, uuid, uuid), public.gateway_agent_servers(uuid),
  public.gateway_upstream(uuid), public.gateway_authorize_call(uuid, uuid, jsonb), public.gateway_filter_tools(uuid, jsonb)
  to service_role;
-- The default privileges of public grant authenticated every new function: not this one.
revoke execute on function public.gateway_filter_tools(uuid, jsonb) from authenticated;
