-- Secrets: a user reads the names of their own secrets, admins those of their organization and
-- its credential versions; values stay in Vault, read only through get_secret. Every write goes
-- through the secrets RPCs; anon sees nothing.
revoke all on public.vault_secret_owners, public.mcp_credential_versions from anon;
revoke insert, update, delete, truncate, references, trigger
  on public.vault_secret_owners, public.mcp_credential_versions from authenticated;
revoke truncate, references, trigger on public.vault_secret_owners, public.mcp_credential_versions from service_role;

create policy vault_secret_owners_read on public.vault_secret_owners for select to authenticated
  using (owner_user_id = (select auth.uid()) or organization_id in (select private.my_org_ids('admin')));

create policy mcp_credential_versions_read on public.mcp_credential_versions for select to authenticated
  using (organization_id in (select private.my_org_ids('admin')));

-- Which OAuth connection each server uses (no token): members of the organization read it; it is
-- written through manage_mcp_servers only.
revoke all on public.mcp_server_oauth_connections from anon;
revoke insert, update, delete, truncate, references, trigger on public.mcp_server_oauth_connections from authenticated;
create policy mcp_server_oauth_connections_read on public.mcp_server_oauth_connections for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));
