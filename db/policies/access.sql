-- Access: members read their organization's grants, attachments and connections; every write
-- goes through the access RPCs (which check who may manage the agent and use the server).
revoke all on public.agent_toolbox_access, public.agent_mcp_server_access, public.agent_mcp_connections,
  public.active_agent_mcp_connections, public.user_mcp_connection_stats from anon;
revoke insert, update, delete, truncate, references, trigger
  on public.agent_toolbox_access, public.agent_mcp_server_access, public.agent_mcp_connections,
     public.active_agent_mcp_connections, public.user_mcp_connection_stats from authenticated;

create policy agent_toolbox_access_read on public.agent_toolbox_access for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));
create policy agent_mcp_server_access_read on public.agent_mcp_server_access for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));
create policy agent_mcp_connections_read on public.agent_mcp_connections for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));

-- The connection_config trigger runs with the writer's rights: service_role needs the helpers it calls.
grant execute on function private.json_schema_error(jsonb, jsonb, text), private.connection_config_schema() to service_role;
