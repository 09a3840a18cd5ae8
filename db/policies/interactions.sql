-- The interaction log: admins read their organization's, an agent's owner reads their agents';
-- nobody writes but audit_mcp_interactions, nobody changes a row. The monthly partitions are
-- in schema private and grant nothing: the API reads the parent, through this policy.
revoke all on public.mcp_interaction_logs from anon;
revoke insert, update, delete, truncate, references, trigger on public.mcp_interaction_logs from authenticated, service_role;

create policy mcp_interaction_logs_read on public.mcp_interaction_logs for select to authenticated
  using (organization_id in (select private.my_org_ids('admin'))
         or (agent_owner_id = (select auth.uid()) and organization_id in (select private.my_org_ids('viewer'))));
