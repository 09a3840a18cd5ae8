-- Tenancy API: who the caller is, which organizations they belong to with which role, and the
-- organization RPCs (create, add a member, change a role, remove a member).

-- The caller acts for the platform: a service_role JWT, or an administrator's own database
-- session (a superuser with no JWT claims, as in psql).
create function private.is_service_caller() returns boolean
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if coalesce(auth.role() = 'service_role', false) then
    return true;
  end if;
  if auth.jwt() is not null then
    return false;
  end if;
  return coalesce((select r.rolsuper from pg_catalog.pg_roles r where r.rolname = session_user), false);
end $$;
comment on function private.is_service_caller() is 'True for service_role and for a superuser session without JWT claims.';

-- The caller's role in an organization, or null.
create function private.org_role(p_organization_id uuid) returns public.org_role
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select m.role from public.organization_members m
   where m.organization_id = p_organization_id and m.user_id = auth.uid()
$$;
comment on function private.org_role(uuid) is 'The calling user''s role in the organization, or null.';

-- Organizations where the caller holds at least the given role (for policies: once per statement).
create function private.my_org_ids(p_at_least public.org_role) returns setof uuid
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select m.organization_id from public.organization_members m
   where m.user_id = auth.uid() and m.role <= p_at_least
$$;
comment on function private.my_org_ids(public.org_role) is 'Ids of the organizations where the caller holds at least the given role.';

-- Whether a user is a member (or stronger) of an organization: an agent's owner must be.
create function private.is_org_member(p_organization_id uuid, p_user_id uuid) returns boolean
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select exists (select from public.organization_members m
                  where m.organization_id = p_organization_id and m.user_id = p_user_id and m.role <= 'member')
$$;
comment on function private.is_org_member(uuid, uuid) is 'Whether the user is a member, admin or owner of the organization.';

-- Refuses (42501) unless the caller holds at least the given role, or acts for the platform.
create function private.require_org_role(p_organization_id uuid, p_at_least public.org_role) returns void
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if private.is_service_caller() then
    return;
  end if;
  if auth.uid() is null then
    raise exception using errcode = '42501', message = 'authentication required';
  end if;
  if coalesce(private.org_role(p_organization_id) <= p_at_least, false) is false then
    raise exception using errcode = '42501',
      message = format('requires the %s role (or stronger) in organization %s', p_at_least, p_organization_id);
  end if;
end $$;
comment on function private.require_org_role(uuid, public.org_role) is 'Raises 42501 unless the caller holds at least the role (service callers pass).';

-- A user id passed as an argument is never trusted: it must be the caller's own.
create function private.require_self(p_user_id uuid) returns void
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_user_id is null then
    raise exception using errcode = '22023', message = 'a user id is required';
  end if;
  if not private.is_service_caller() and p_user_id is distinct from auth.uid() then
    raise exception using errcode = '42501', message = 'the user id passed is not the caller''s',
      hint = 'pass your own user id, or call as service_role';
  end if;
end $$;
comment on function private.require_self(uuid) is 'Raises 42501 when a user id argument is not the caller''s (service callers pass).';

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
  perform private.require_org_role(p_organization_id, 'admin');
  if p_role = 'owner' and not private.is_service_caller() and private.org_role(p_organization_id) <> 'owner' then
    raise exception using errcode = '42501', message = 'only an owner can add an owner';
  end if;
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
  select m.role into v_current from public.organization_members m
   where m.organization_id = p_organization_id and m.user_id = p_user_id for update;
  if not found then
    raise exception using errcode = 'P0002', message = 'the user is not a member of this organization';
  end if;
  if (v_current = 'owner' or p_role = 'owner') and not private.is_service_caller()
     and private.org_role(p_organization_id) <> 'owner' then
    raise exception using errcode = '42501', message = 'only an owner can make or unmake an owner';
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
  if p_user_id is distinct from auth.uid() then
    perform private.require_org_role(p_organization_id, 'admin');
  end if;
  select m.role into v_role from public.organization_members m
   where m.organization_id = p_organization_id and m.user_id = p_user_id;
  if not found then
    raise exception using errcode = 'P0002', message = 'the user is not a member of this organization';
  end if;
  if v_role = 'owner' and p_user_id is distinct from auth.uid() and not private.is_service_caller()
     and private.org_role(p_organization_id) <> 'owner' then
    raise exception using errcode = '42501', message = 'only an owner can remove an owner';
  end if;
  perform private.set_audit_context(p_reason);
  delete from public.organization_members m where m.organization_id = p_organization_id and m.user_id = p_user_id;
  perform private.set_audit_context(null);
end $$;
comment on function public.remove_organization_member(uuid, uuid, text) is
  'Removes a member (admins and owners, or the member themself); the last owner cannot leave.';

revoke execute on function private.is_service_caller(), private.org_role(uuid), private.my_org_ids(public.org_role), private.is_org_member(uuid, uuid),
  private.require_org_role(uuid, public.org_role), private.require_self(uuid) from public, anon;
grant execute on function private.is_service_caller(), private.org_role(uuid), private.my_org_ids(public.org_role),
  private.is_org_member(uuid, uuid) to authenticated, service_role;
revoke execute on function public.create_organization(text, text), public.add_organization_member(uuid, uuid, public.org_role),
  public.change_organization_member_role(uuid, uuid, public.org_role, text), public.remove_organization_member(uuid, uuid, text)
  from public, anon;
grant execute on function public.create_organization(text, text), public.add_organization_member(uuid, uuid, public.org_role),
  public.change_organization_member_role(uuid, uuid, public.org_role, text), public.remove_organization_member(uuid, uuid, text)
  to authenticated, service_role;
