-- Instances: members read their organization's; writes only through manage_mcp_servers.
-- Presented tool drift: admins read it and approve through approve_mcp_tool_definition.
revoke all on public.account_tool_instances, public.mcp_tool_drift from anon;
revoke insert, update, delete, truncate, references, trigger on public.account_tool_instances, public.mcp_tool_drift from authenticated;

create policy account_tool_instances_read on public.account_tool_instances for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));

create policy mcp_tool_drift_read on public.mcp_tool_drift for select to authenticated
  using (organization_id in (select private.my_org_ids('admin')));

-- The full last_error may quote a DTMA response body: organizations read last_error_summary, the
-- platform reads last_error. Every other column is readable (a column added later must be granted).
select private.grant_select_except('public.account_tool_instances', 'authenticated', '{last_error}');
