-- API keys: the admins of an organization and an agent's owner read the keys' metadata (never
-- the hash); every write goes through create_agent_api_key and revoke_agent_api_key.
revoke all on public.agent_api_keys from anon;
revoke all on public.agent_api_keys from authenticated;
revoke insert, update, delete, truncate, references, trigger on public.agent_api_keys from service_role;
grant select (id, organization_id, agent_id, name, prefix, created_by, created_at, expires_at, last_used_at,
              revoked_by, revoked_at, revoke_reason) on public.agent_api_keys to authenticated;

create policy agent_api_keys_read on public.agent_api_keys for select to authenticated
  using (organization_id in (select private.my_org_ids('admin'))
         or agent_id in (select a.id from public.agents a where a.user_id = (select auth.uid())));
