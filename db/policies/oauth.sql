-- OAuth: every signed-in user reads the active providers; a user reads only their own
-- connections (secret ids, never tokens: Vault is closed to the API roles); members read their
-- organization's agent permissions. Every write goes through the OAuth RPCs; anon sees nothing.
revoke all on public.oauth_providers, public.user_oauth_connections, public.agent_oauth_permissions from anon;
revoke insert, update, delete, truncate, references, trigger
  on public.oauth_providers, public.user_oauth_connections, public.agent_oauth_permissions from authenticated;
revoke truncate, references, trigger
  on public.user_oauth_connections, public.agent_oauth_permissions from service_role;

create policy oauth_providers_read on public.oauth_providers for select to authenticated
  using (is_active);

create policy user_oauth_connections_read on public.user_oauth_connections for select to authenticated
  using (user_id = (select auth.uid()));

create policy agent_oauth_permissions_read on public.agent_oauth_permissions for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));

-- The providers' check constraints and the connections' trigger call these as the writer:
-- service_role or a definer function (authenticated never writes the tables).
revoke execute on function private.is_oauth_endpoint(text), private.normalize_scopes(text[]) from authenticated;
