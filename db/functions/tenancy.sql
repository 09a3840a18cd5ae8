-- Tenancy API: who the caller is, which organizations they belong to with which role, and the
-- organization RPCs (create, add a member, change a role, remove a member).

-- The database role the request runs as: the role PostgREST switched to with SET ROLE (the
-- `role` setting, which a definer function leaves as its caller set it), else the session's
-- own user. Unlike the JWT claims, a session cannot set it to a role it is not a member of.
create function private.caller_db_role() returns name
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select case when pg_catalog.current_setting('role') = 'none' then pg_catalog.session_user()
              else pg_catalog.current_setting('role')::name end
$$;
comment on function private.caller_db_role() is
  'The database role in effect for the request (SET ROLE, else the session user), as seen from inside a definer function.';

-- The caller acts for the platform: the service_role database role (as PostgREST sets it for a
-- service_role key), or an administrator's own session (a superuser, or the role that owns the
-- project's schemas: postgres on a hosted project, where it is no superuser). The database role
-- decides; JWT claims may only agree: a service_role claim in an authenticated session is a
-- forgery and counts for nothing, and an administrator's session carrying a user's claims acts
-- as that user.
create function private.is_service_caller() returns boolean
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_role name := private.caller_db_role();
begin
  if auth.jwt() is not null and auth.role() is distinct from 'service_role' then
    return false;
  end if;
  return v_role = 'service_role'
      or exists (select from pg_catalog.pg_roles r
                  where r.rolname = v_role
                    and (r.rolsuper or r.oid = (select n.nspowner from pg_catalog.pg_namespace n where n.nspname = 'private')));
end $$;
comment on function private.is_service_caller() is
  'True when the database role in effect is service_role or an administrator''s (superuser, or owner of the project''s schemas), and any JWT claims agree.';

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
-- For definer functions only: it answers about any user, so no API role may call it.
create function private.is_org_member(p_organization_id uuid, p_user_id uuid) returns boolean
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select exists (select from public.organization_members m
                  where m.organization_id = p_organization_id and m.user_id = p_user_id and m.role <= 'member')
$$;
comment on function private.is_org_member(uuid, uuid) is 'Whether the user is a member, admin or owner of the organization. For definer functions only.';

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

-- Refuses what the caller may not see as if it did not exist: p_organization_id is the
-- organization of the object p_what names (null when there is none). An object of an
-- organization where the caller holds no role gets the same P0002 as a missing one, so errors
-- never tell whether an id exists elsewhere; a visible one needs at least p_at_least (42501).
create function private.require_org_role_for(p_organization_id uuid, p_at_least public.org_role, p_what text) returns void
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_organization_id is null
     or (private.org_role(p_organization_id) is null and not private.is_service_caller()) then
    raise exception using errcode = 'P0002', message = format('%s not found', p_what);
  end if;
  perform private.require_org_role(p_organization_id, p_at_least);
end $$;
comment on function private.require_org_role_for(uuid, public.org_role, text) is
  'Raises P0002 "<what> not found" when the object is missing or in an organization where the caller has no role, 42501 when the role is too weak.';

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

-- Definer functions call these as their owner: no API role needs them, but for my_org_ids,
-- which the policies call (it answers only about the caller).
revoke execute on function private.caller_db_role(), private.is_service_caller(), private.org_role(uuid),
  private.my_org_ids(public.org_role), private.is_org_member(uuid, uuid), private.require_org_role(uuid, public.org_role),
  private.require_self(uuid), private.require_org_role_for(uuid, public.org_role, text) from public, anon, authenticated, service_role;
grant execute on function private.my_org_ids(public.org_role) to authenticated;
revoke execute on function public.create_organization(text, text), public.add_organization_member(uuid, uuid, public.org_role),
  public.change_organization_member_role(uuid, uuid, public.org_role, text), public.remove_organization_member(uuid, uuid, text)
  from public, anon;
grant execute on function public.create_organization(text, text), public.add_organization_member(uuid, uuid, public.org_role),
  public.change_organization_member_role(uuid, uuid, public.org_role, text), public.remove_organization_member(uuid, uuid, text)
  to authenticated, service_role;
