-- MCP server instances API: manage_mcp_servers (create, update, delete, deploy, stop, restart)
-- and the approval of changed tool definitions. Lifecycle actions go through the state
-- machine (private.apply_instance_event); what DTMA is asked to do follows from the new status.

create function private.server_config_schema(p_action text) returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case p_action
    when 'create' then '{"type": "object", "additionalProperties": false, "required": ["toolbox_id", "catalog_name", "instance_name"],
      "properties": {
        "toolbox_id": {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
        "catalog_name": {"type": "string", "minLength": 1},
        "instance_name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
        "display_name": {"type": "string", "minLength": 1, "maxLength": 200},
        "configuration": {"type": "object"},
        "oauth_connections": {"type": "object"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 1000}}}'::jsonb
    else '{"type": "object", "additionalProperties": false,
      "properties": {
        "display_name": {"type": "string", "minLength": 1, "maxLength": 200},
        "configuration": {"type": "object"},
        "oauth_connections": {"type": "object"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 1000}}}'::jsonb
  end
$$;
comment on function private.server_config_schema(text) is 'JSON Schema of manage_mcp_servers.server_config for create and for update.';

-- The public view of an instance, as manage_mcp_servers returns it.
create function private.instance_json(p_instance_id uuid) returns jsonb
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select to_jsonb(i) - 'pinned_manifest' - case when private.is_service_caller() then '' else 'last_error' end
         || jsonb_build_object('tool_count', jsonb_array_length(i.pinned_manifest),
           'oauth_connections', (select coalesce(jsonb_object_agg(o.provider, o.connection_id), '{}'::jsonb)
                                   from public.mcp_server_oauth_connections o where o.server_instance_id = i.id))
    from public.account_tool_instances i where i.id = p_instance_id
$$;
comment on function private.instance_json(uuid) is
  'An instance as JSON, without its pinned manifest (and, but for the platform, its full last_error), with its OAuth connections by provider.';

-- Declares which OAuth connection an instance uses per provider ({provider: connection id}, null
-- to drop one): a provider its catalog entry reads a token of, and a live connection of the
-- caller's own (an admin lends their own account, never someone else's).
create function private.declare_instance_oauth(p_instance_id uuid, p_connections jsonb) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_provider text;
  v_connection_id text;
  v_connection public.user_oauth_connections;
  v_instance public.account_tool_instances;
  v_token_env jsonb;
begin
  select i.* into v_instance from public.account_tool_instances i where i.id = p_instance_id;
  select c.oauth_token_env into v_token_env from public.mcp_server_catalog c where c.id = v_instance.catalog_id;
  for v_provider, v_connection_id in select e.key, e.value #>> '{}' from jsonb_each(coalesce(p_connections, '{}'::jsonb)) e loop
    if not v_token_env ? v_provider then
      raise exception using errcode = '22023', message = format('%s reads no token of OAuth provider %L', v_instance.mcp_server_type, v_provider),
        hint = format('its catalog entry reads tokens of: %s', (select string_agg(k, ', ') from jsonb_object_keys(v_token_env) k));
    end if;
    if v_connection_id is null then
      delete from public.mcp_server_oauth_connections o where o.server_instance_id = p_instance_id and o.provider = v_provider;
      continue;
    end if;
    if v_connection_id !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      raise exception using errcode = '22023', message = format('server_config.oauth_connections.%s must be a connection id', v_provider);
    end if;
    v_connection := private.require_connection_owner(v_connection_id::uuid);
    if v_connection.status = 'revoked'
       or not exists (select from public.oauth_providers p where p.id = v_connection.provider_id and p.name = v_provider) then
      raise exception using errcode = '22023', message = format('connection %s is not a live %s connection', v_connection_id, v_provider);
    end if;
    insert into public.mcp_server_oauth_connections (server_instance_id, organization_id, provider, connection_id, declared_by)
    values (p_instance_id, v_instance.organization_id, v_provider, v_connection.id, auth.uid())
    on conflict (server_instance_id, provider) do update
       set connection_id = excluded.connection_id, declared_by = excluded.declared_by, declared_at = now();
  end loop;
end $$;
comment on function private.declare_instance_oauth(uuid, jsonb) is
  'Records which of the caller''s OAuth connections an instance uses per provider (null drops one); 22023 for a provider its catalog entry does not read.';

create function public.manage_mcp_servers(
  action text,
  organization_id uuid,
  server_config jsonb default '{}'::jsonb,
  server_id uuid default null
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_action text := lower(manage_mcp_servers.action);
  v_org uuid := manage_mcp_servers.organization_id;
  v_config jsonb := coalesce(manage_mcp_servers.server_config, '{}'::jsonb);
  v_id uuid := manage_mcp_servers.server_id;
  v_error text;
  v_catalog public.mcp_server_catalog;
begin
  if v_action is null or v_action not in ('create', 'update', 'delete', 'deploy', 'stop', 'restart') then
    raise exception using errcode = '22023', message = format('unknown action %L', manage_mcp_servers.action),
      hint = 'one of create, update, delete, deploy, stop, restart';
  end if;
  if v_org is null then
    raise exception using errcode = '22023', message = 'organization_id is required';
  end if;
  perform private.require_org_role(v_org, 'admin');

  if v_action in ('create', 'update') then
    v_error := private.json_schema_error(private.server_config_schema(v_action), v_config, 'server_config');
    if v_error is not null then
      raise exception using errcode = '22023', message = format('invalid server_config: %s', v_error);
    end if;
  end if;

  if v_action = 'create' then
    if not exists (select from public.account_tool_environments t
                    where t.id = (v_config ->> 'toolbox_id')::uuid and t.organization_id = v_org) then
      raise exception using errcode = 'P0002', message = format('toolbox %s not found in this organization', v_config ->> 'toolbox_id');
    end if;
    select * into v_catalog from public.mcp_server_catalog c where c.name = v_config ->> 'catalog_name' and c.is_active;
    if not found then
      raise exception using errcode = 'P0002', message = format('catalog entry %L not found', v_config ->> 'catalog_name');
    end if;
    begin
      insert into public.account_tool_instances (organization_id, account_tool_environment_id, catalog_id,
             instance_name_on_toolbox, display_name, configuration, priority, created_by)
      values (v_org, (v_config ->> 'toolbox_id')::uuid, v_catalog.id, v_config ->> 'instance_name',
              coalesce(v_config ->> 'display_name', v_catalog.display_name), coalesce(v_config -> 'configuration', '{}'::jsonb),
              coalesce((v_config ->> 'priority')::int, 100), auth.uid())
      returning id into v_id;
    exception when unique_violation then
      raise exception using errcode = '23505',
        message = format('an MCP server named %L already exists on this toolbox', v_config ->> 'instance_name');
    end;
    perform private.declare_instance_oauth(v_id, v_config -> 'oauth_connections');
    return private.instance_json(v_id);
  end if;

  if v_id is null then
    raise exception using errcode = '22023', message = format('server_id is required for %s', v_action);
  end if;
  if not exists (select from public.account_tool_instances i where i.id = v_id and i.organization_id = v_org) then
    raise exception using errcode = 'P0002', message = format('MCP server %s not found in this organization', v_id);
  end if;

  case v_action
  when 'update' then
    update public.account_tool_instances i
       set display_name = coalesce(v_config ->> 'display_name', i.display_name),
           configuration = coalesce(v_config -> 'configuration', i.configuration),
           priority = coalesce((v_config ->> 'priority')::int, i.priority)
     where i.id = v_id;
    perform private.declare_instance_oauth(v_id, v_config -> 'oauth_connections');
  when 'delete' then
    perform private.request_lifecycle(v_id, 'remove');
    -- A removed server keeps no live grant: revoked in this transaction, audited by the grant's trigger.
    update public.agent_mcp_server_access g
       set revoked_at = now(), revoked_by = auth.uid(), is_active = false, revoke_reason = 'the MCP server was removed'
     where g.server_instance_id = v_id and g.revoked_at is null;
  when 'deploy' then perform private.request_lifecycle(v_id, 'deploy');
  when 'stop' then perform private.request_lifecycle(v_id, 'stop');
  when 'restart' then perform private.request_lifecycle(v_id, 'restart');
  end case;
  return private.instance_json(v_id);
end $$;
comment on function public.manage_mcp_servers(text, uuid, jsonb, uuid) is
  'Admins manage MCP server instances: create (server_config: toolbox_id, catalog_name, instance_name, display_name?, configuration? (secret fields go to Vault), oauth_connections? {provider: connection id}, priority?), update, delete (also revokes its grants), deploy, stop, restart. Returns the instance.';

create function public.approve_mcp_tool_definition(p_server_instance_id uuid, p_tool_name text, p_presented_sha256 text)
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_drift public.mcp_tool_drift;
  v_manifest jsonb;
begin
  select d.* into v_drift from public.mcp_tool_drift d
   where d.server_instance_id = p_server_instance_id and d.tool_name = p_tool_name and d.presented_sha256 = p_presented_sha256;
  perform private.require_org_role_for(v_drift.organization_id, 'admin', 'presented tool definition to approve');
  select i.pinned_manifest into v_manifest from public.account_tool_instances i where i.id = p_server_instance_id for update;
  v_manifest := coalesce((select jsonb_agg(t) from jsonb_array_elements(v_manifest) t where t ->> 'name' <> p_tool_name), '[]'::jsonb)
                || jsonb_build_array(private.tool_definition(v_drift.presented_definition) || jsonb_build_object('sha256', v_drift.presented_sha256));
  update public.account_tool_instances i
     set pinned_manifest = v_manifest, manifest_approved_at = now(), manifest_approved_by = auth.uid()
   where i.id = p_server_instance_id;
  update public.mcp_tool_drift d set approved_at = now(), approved_by = auth.uid() where d.id = v_drift.id;
  perform private.audit(v_drift.organization_id, 'tool.approved', 'mcp_instance', p_server_instance_id::text,
                        jsonb_build_object('tool', p_tool_name, 'sha256', v_drift.pinned_sha256),
                        jsonb_build_object('tool', p_tool_name, 'sha256', p_presented_sha256));
end $$;
comment on function public.approve_mcp_tool_definition(uuid, text, text) is
  'Admins approve a changed tool definition a server presented: it becomes the pinned one.';

revoke execute on function public.manage_mcp_servers(text, uuid, jsonb, uuid),
  public.approve_mcp_tool_definition(uuid, text, text) from public, anon;
revoke execute on function private.declare_instance_oauth(uuid, jsonb) from public, anon, authenticated, service_role;
grant execute on function public.manage_mcp_servers(text, uuid, jsonb, uuid),
  public.approve_mcp_tool_definition(uuid, text, text) to authenticated, service_role;
