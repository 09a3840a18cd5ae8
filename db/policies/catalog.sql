-- The catalog is readable by every signed-in user; only service_role writes it.
revoke all on public.mcp_server_catalog from anon;
revoke insert, update, delete, truncate, references, trigger on public.mcp_server_catalog from authenticated;

create policy mcp_server_catalog_read on public.mcp_server_catalog for select to authenticated
  using (is_active);

-- The hashing trigger runs with the writer's rights: service_role needs the helpers it calls.
grant execute on function private.tool_definition(jsonb), private.tool_sha256(jsonb), private.tool_pin(jsonb), private.hash_manifest(jsonb)
  to service_role;
-- Stored generated columns of account_tool_instances call these as the writer: service_role or
-- a definer function (authenticated never writes the table).
grant execute on function private.tool_is_read_only(jsonb), private.manifest_tool_names(jsonb, boolean) to service_role;
revoke execute on function private.tool_is_read_only(jsonb), private.manifest_tool_names(jsonb, boolean) from authenticated;
