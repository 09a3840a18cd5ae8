-- Toolboxes: members read their organization's toolboxes (the token is in Vault, not here);
-- writes only through create_toolbox and delete_toolbox.
revoke all on public.account_tool_environments from anon;
revoke insert, update, delete, truncate, references, trigger on public.account_tool_environments from authenticated;

create policy account_tool_environments_read on public.account_tool_environments for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));

-- The full last_error may quote a DTMA response body: organizations read last_error_summary, the
-- platform reads last_error. Every other column is readable (a column added later must be granted).
revoke select on public.account_tool_environments from authenticated;
do $$
begin
  execute (select format('grant select (%s) on public.account_tool_environments to authenticated', string_agg(quote_ident(a.attname), ', ' order by a.attnum))
             from pg_catalog.pg_attribute a
            where a.attrelid = 'public.account_tool_environments'::regclass and a.attnum > 0 and not a.attisdropped and a.attname <> 'last_error');
end $$;
grant execute on function private.dtma_error_summary(text) to service_role;
