-- Tenancy API: the organization RPCs (create, add a member, change a role, remove a member).
-- Who the caller is and which role they hold where is the authorization core's
-- (db/functions/authz.sql).

create function public.create_organization(p_name text, p_slug text) returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_id uuid;
begin
  if auth.uid() is null then
    raise exception using errcode = '42501', message = 'only a signed-in user can create an organization';
  end if;
  begin
    insert into public.organizations (name, slug, created_by) values (p_name, p_slug, auth.uid()) returning id into v_id;
  exception
    when unique_violation then
      raise exception using errcode = '23505', message = format('the slug %L is taken', p_slug);
    when check_violation or not_null_violation then
      raise exception using errcode = '22023', message = 'invalid organization: name 1-200 characters, slug ^[a-z0-9][a-z0-9-]{1,62}$';
  end;
  insert into public.organization_members (organization_id, user_id, role, added_by) values (v_id, auth.uid(), 'owner', auth.uid());
  return v_id;
end $$;
comment on function public.create_organization(text, text) is 'Creates an organization; the caller becomes its owner. Returns its id.';

create function public.add_organization_member(p_organization_id uuid, p_user_id uuid, p_role public.org_role default 'member')
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_org_role(p_organization_id, case when p_role = 'owner' then 'owner' else 'admin' end::public.org_role);
  if not exists (select from auth.users u where u.id = p_user_id) then
    raise exception using errcode = 'P0002', message = format('user %s not found', p_user_id);
  end if;
  insert into public.organization_members (organization_id, user_id, role, added_by)
  values (p_organization_id, p_user_id, coalesce(p_role, 'member'), auth.uid());
exception when unique_violation then
  raise exception using errcode = '23505', message = 'the user is already a member', hint = 'use change_organization_member_role';
end $$;
comment on function public.add_organization_member(uuid, uuid, public.org_role) is
  'Adds a user to an organization (admins and owners; only owners add owners).';

create function public.change_organization_member_role(
  p_organization_id uuid, p_user_id uuid, p_role public.org_role, p_reason text default null
) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_current public.org_role;
begin
  perform private.require_org_role(p_organization_id, 'admin');
  v_current := private.lock_member_role(p_organization_id, p_user_id);
  if v_current is null then
    raise exception using errcode = 'P0002', message = 'the user is not a member of this organization';
  end if;
  -- Only an owner makes or unmakes an owner.
  if 'owner' in (v_current, p_role) then
    perform private.require_org_role(p_organization_id, 'owner');
  end if;
  perform private.set_audit_context(p_reason);
  update public.organization_members m set role = p_role
   where m.organization_id = p_organization_id and m.user_id = p_user_id;
  -- The reason is this change's only, not that of later writes in the same transaction.
  perform private.set_audit_context(null);
end $$;
comment on function public.change_organization_member_role(uuid, uuid, public.org_role, text) is
  'Changes a member''s role (admins and owners; only owners touch owners; the last owner stays).';

create function public.remove_organization_member(p_organization_id uuid, p_user_id uuid, p_reason text default null)
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_role public.org_role;
begin
  if not private.is_self(p_user_id) then
    perform private.require_org_role(p_organization_id, 'admin');
  end if;
  v_role := private.lock_member_role(p_organization_id, p_user_id);
  if v_role is null then
    raise exception using errcode = 'P0002', message = 'the user is not a member of this organization';
  end if;
  -- Only an owner removes an owner (an owner may leave).
  if v_role = 'owner' and not private.is_self(p_user_id) then
    perform private.require_org_role(p_organization_id, 'owner');
  end if;
  perform private.set_audit_context(p_reason);
  delete from public.organization_members m where m.organization_id = p_organization_id and m.user_id = p_user_id;
  perform private.set_audit_context(null);
end $$;
comment on function public.remove_organization_member(uuid, uuid, text) is
  'Removes a member (admins and owners, or the member themself); the last owner cannot leave.';

revoke execute on function public.create_organization(text, text), public.add_organization_member(uuid, uuid, public.org_role),
  public.change_organization_member_role(uuid, uuid, public.org_role, text), public.remove_organization_member(uuid, uuid, text)
  from public, anon;
grant execute on function public.create_organization(text, text), public.add_organization_member(uuid, uuid, public.org_role),
  public.change_organization_member_role(uuid, uuid, public.org_role, text), public.remove_organization_member(uuid, uuid, text)
  to authenticated, service_role;
