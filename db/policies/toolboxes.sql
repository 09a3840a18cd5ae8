-- Toolboxes: members read their organization's toolboxes (the token is in Vault, not here);
-- writes only through create_toolbox and delete_toolbox.
revoke all on public.account_tool_environments from anon;
revoke insert, update, delete, truncate, references, trigger on public.account_tool_environments from authenticated;

create policy account_tool_environments_read on public.account_tool_environments for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));

-- The full last_error may quote a DTMA response body: organizations read last_error_summary, the
-- platform reads last_error. Every other column is readable (a column added later must be granted).
select private.grant_select_except('public.account_tool_environments', 'authenticated', '{last_error}');
grant execute on function private.dtma_error_summary(text) to service_role;
