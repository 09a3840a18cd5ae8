-- Tenancy: members read their organizations; agents are written by their owners (members)
-- and by admins; organizations and memberships change only through the RPCs.
revoke all on public.organizations, public.organization_members, public.agents from anon;
revoke insert, update, delete, truncate, references, trigger on public.organizations, public.organization_members from authenticated;
revoke truncate, references, trigger on public.agents from authenticated;

create policy organizations_read on public.organizations for select to authenticated
  using (id in (select private.my_org_ids('viewer')));

create policy organization_members_read on public.organization_members for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));

create policy agents_read on public.agents for select to authenticated
  using (organization_id in (select private.my_org_ids('viewer')));
create policy agents_create on public.agents for insert to authenticated
  with check (user_id = (select auth.uid()) and organization_id in (select private.my_org_ids('member')));
create policy agents_update on public.agents for update to authenticated
  using ((user_id = (select auth.uid()) and organization_id in (select private.my_org_ids('member')))
         or organization_id in (select private.my_org_ids('admin')))
  with check ((user_id = (select auth.uid()) and organization_id in (select private.my_org_ids('member')))
              -- An admin may hand the agent to a member (or stronger) of the organization.
              or (organization_id in (select private.my_org_ids('admin')) and private.is_member_of_my_org(organization_id, user_id)));
create policy agents_delete on public.agents for delete to authenticated
  using ((user_id = (select auth.uid()) and organization_id in (select private.my_org_ids('member')))
         or organization_id in (select private.my_org_ids('admin')));
