-- The catalog is readable by every signed-in user; only service_role writes it.
revoke all on public.mcp_server_catalog from anon;
revoke insert, update, delete, truncate, references, trigger on public.mcp_server_catalog from authenticated;

create policy mcp_server_catalog_read on public.mcp_server_catalog for select to authenticated
  using (is_active);
