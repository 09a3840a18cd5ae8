-- Interaction audit API: an agent's runtime logs its MCP interactions in batches
-- (audit_mcp_interactions), and admins ask the point-in-time question of the access history:
-- which agents could call tool X of server Y at time T, through which grant
-- (agents_with_tool_access_at; the query and its assumptions are in db/OAUTH.md).

-- The JSON Schema of one logged interaction.
create function private.interaction_schema() returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select '{"type": "object", "additionalProperties": false, "required": ["interaction_type", "outcome", "duration_ms"],
           "properties": {
             "server_instance_id": {"type": "string", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
             "interaction_type": {"type": "string", "enum": ["tool_call", "context_request", "error"]},
             "tool_name": {"type": "string", "minLength": 1, "maxLength": 200},
             "arguments": {},
             "outcome": {"type": "string", "enum": ["success", "error", "denied", "timeout"]},
             "duration_ms": {"type": "integer", "minimum": 0, "maximum": 86400000},
             "error": {"type": "string", "maxLength": 2000},
             "request_id": {"type": "string", "maxLength": 200}}}'::jsonb
$$;
comment on function private.interaction_schema() is 'The JSON Schema of one element of audit_mcp_interactions.p_interactions.';

create function public.audit_mcp_interactions(p_agent_id uuid, p_interactions jsonb) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_runtime(p_agent_id);
  v_role name := private.caller_db_role();
  v_error text;
  v_count integer;
begin
  if jsonb_typeof(p_interactions) is distinct from 'array' or jsonb_array_length(p_interactions) not between 1 and 1000 then
    raise exception using errcode = '22023', message = 'p_interactions must be an array of 1 to 1000 interactions';
  end if;
  -- The common batch is valid: checked in one statement; the walk only names what is wrong.
  if not private.json_schema_flat_valid(private.interaction_schema(), p_interactions) then
    v_error := private.json_schema_error(jsonb_build_object('type', 'array', 'items', private.interaction_schema()),
                                         p_interactions, 'p_interactions');
  end if;
  if v_error is not null then
    raise exception using errcode = '22023', message = format('invalid interaction: %s', v_error),
      hint = 'each: {interaction_type, outcome, duration_ms, server_instance_id?, tool_name?, arguments?, error?, request_id?}';
  end if;
  if exists (select from jsonb_array_elements(p_interactions) e
              where e ->> 'interaction_type' = 'tool_call' and not e ? 'tool_name') then
    raise exception using errcode = '22023', message = 'a tool_call needs its tool_name';
  end if;
  if exists (select from jsonb_array_elements(p_interactions) e
              where e ? 'server_instance_id'
                and not exists (select from public.account_tool_instances i
                                 where i.id = (e ->> 'server_instance_id')::uuid and i.organization_id = v_agent.organization_id)) then
    raise exception using errcode = '42501', message = 'an interaction names an MCP server outside the agent''s organization';
  end if;
  insert into public.mcp_interaction_logs (organization_id, agent_id, agent_owner_id, actor_role, server_instance_id,
         interaction_type, tool_name, arguments_sha256, outcome, duration_ms, error_message, request_id)
  select v_agent.organization_id, v_agent.id, v_agent.user_id, v_role,
         (e ->> 'server_instance_id')::uuid, (e ->> 'interaction_type')::public.mcp_interaction_type, e ->> 'tool_name',
         -- jsonb's text form is canonical (keys sorted, whitespace normalised): equal arguments hash equal.
         case when e ? 'arguments' then private.sha256_hex((e -> 'arguments')::text) end,
         (e ->> 'outcome')::public.mcp_interaction_outcome, (e ->> 'duration_ms')::integer, e ->> 'error', e ->> 'request_id'
    from jsonb_array_elements(p_interactions) with ordinality as x(e, n)
   order by x.n;
  get diagnostics v_count = row_count;
  return v_count;
end $$;
comment on function public.audit_mcp_interactions(uuid, jsonb) is
  'The agent''s runtime (owner session or service_role) logs a batch of MCP interactions; arguments are stored as their sha256 only. Returns how many.';

-- Which agents could call tool p_tool_name of server p_server_instance_id at p_at, and through
-- which grant. Grants are history (never updated but to revoke once), so the grant live at p_at
-- is the one granted before it and neither revoked nor expired by then. The tool's membership
-- in the scope is judged against the manifest pinned now (see db/OAUTH.md).
create function public.agents_with_tool_access_at(p_server_instance_id uuid, p_tool_name text, p_at timestamptz default now())
returns table (
  agent_id uuid, agent_name text, agent_owner_id uuid, grant_id uuid, permission_scope public.mcp_permission_scope,
  allowed_tools text[], granted_by uuid, granted_at timestamptz, expires_at timestamptz, revoked_at timestamptz
)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_org uuid;
begin
  select i.organization_id into v_org from public.account_tool_instances i where i.id = p_server_instance_id;
  perform private.require_org_role_for(v_org, 'admin', format('MCP server %s', p_server_instance_id));
  if p_at is null or p_tool_name is null then
    raise exception using errcode = '22023', message = 'p_tool_name and p_at are required';
  end if;
  return query
    select g.agent_id, coalesce(a.name, d.name), coalesce(a.user_id, d.user_id), g.id, g.permission_scope, g.allowed_tools,
           g.granted_by, g.granted_at, g.expires_at, g.revoked_at
      from public.agent_mcp_server_access g
      join public.account_tool_instances i on i.id = g.server_instance_id
      -- A deleted agent answers from its tombstone: the past does not forget it.
      left join public.agents a on a.id = g.agent_id
      left join private.agent_tombstones d on d.agent_id = g.agent_id
      cross join lateral jsonb_array_elements(i.pinned_manifest) t
     where g.server_instance_id = p_server_instance_id
       and g.granted_at <= p_at
       and (g.revoked_at is null or g.revoked_at > p_at)
       and (g.expires_at is null or g.expires_at > p_at)
       and t ->> 'name' = p_tool_name
       and private.scope_allows(g.permission_scope, g.allowed_tools, t)
     order by 2, g.granted_at;
end $$;
comment on function public.agents_with_tool_access_at(uuid, text, timestamptz) is
  'Admins: the agents whose grant allowed calling the tool of the MCP server at p_at, with that grant (from the grants'' history).';

revoke execute on function public.audit_mcp_interactions(uuid, jsonb),
  public.agents_with_tool_access_at(uuid, text, timestamptz) from public, anon;
grant execute on function public.audit_mcp_interactions(uuid, jsonb),
  public.agents_with_tool_access_at(uuid, text, timestamptz) to authenticated, service_role;
