-- The authorization core: every "who may" and "what is valid now" rule of the control plane, in
-- one file applied before the domains' functions. The RPCs, the policies and the overviews ask
-- these; none spells a rule out again.
--   who the caller is        private.is_service_caller (by private.caller_db_role, db/schema/01_security.sql),
--                            private.require_service_caller, private.is_self, private.require_self
--   memberships and roles    private.member_role, private.is_org_member, private.memberships, private.org_role, private.my_org_ids,
--                            private.has_org_role, private.require_org_role, private.require_org_role_for (hidden = missing)
--   who acts for an agent    private.member_owned_agents, private.agent_managers, private.may_act_for_agent,
--                            private.require_agent_manager, private.require_agent_runtime
--   who owns what a user owns  private.owns_connection, private.require_connection_owner (OAuth connections),
--                            private.may_read_secret, private.require_secret_manager (Vault secrets)
--   what a grant allows now  private.grant_states, private.valid_grants, private.scope_allows, private.effective_tools,
--                            private.scope_allows_reads
--   what an OAuth permission allows now   private.oauth_permission_states
--   whether an agent API key holds now    private.api_key_states
-- Longer than 400 lines on purpose: the core is one file, so that every rule is found in one place.

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

-- The refusal for a caller that is not the platform: what only the platform does (register a
-- toolbox, harvest and poll DTMA, the gateway's own calls). p_what completes "only the platform
-- (service_role) may ...".
create function private.require_service_caller(p_what text, p_hint text default null) returns void
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if not private.is_service_caller() then
    raise exception using errcode = '42501', message = format('only the platform (service_role) may %s', p_what),
      hint = coalesce(p_hint, 'call it as service_role, or as a platform admin in SQL');
  end if;
end $$;
comment on function private.require_service_caller(text, text) is
  'Raises 42501 unless the caller acts for the platform (service_role, or an administrator''s session).';

-- Whether a user id is the signed-in caller's own (never for a null id). The one comparison
-- with auth.uid() of the project: "the caller is this user".
-- plpgsql, as every small helper that the hot path calls: with its own search_path a sql function
-- is never inlined, and it plans its body again on every statement that calls it.
create function private.is_self(p_user_id uuid) returns boolean
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  return coalesce(p_user_id = auth.uid(), false);
end $$;
comment on function private.is_self(uuid) is 'Whether the user id is the signed-in caller''s own. For definer functions only.';

-- Memberships. Only this section reads organization_members to answer who holds which role
-- where (the walker of db/tests/functions.test.sql holds every other function to it). Roles
-- compare strongest first: owner < admin < member < viewer, so "at least admin" is role <= 'admin'.

-- A user's role in an organization, or null. For definer functions only.
create function private.member_role(p_organization_id uuid, p_user_id uuid) returns public.org_role
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select m.role from public.organization_members m
   where m.organization_id = p_organization_id and m.user_id = p_user_id
$$;
comment on function private.member_role(uuid, uuid) is 'A user''s role in an organization, or null. For definer functions only.';

-- The same, with the membership row locked until the transaction ends (to change or remove it).
create function private.lock_member_role(p_organization_id uuid, p_user_id uuid) returns public.org_role
language sql volatile
set search_path = pg_catalog, pg_temp
as $$
  select m.role from public.organization_members m
   where m.organization_id = p_organization_id and m.user_id = p_user_id for update
$$;
comment on function private.lock_member_role(uuid, uuid) is 'A user''s role in an organization (null if none), its row locked. For definer functions only.';

-- The organizations where a user holds at least the given role, with that role.
create function private.memberships(p_user_id uuid, p_at_least public.org_role)
returns table (organization_id uuid, role public.org_role)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select m.organization_id, m.role from public.organization_members m
   where m.user_id = p_user_id and m.role <= p_at_least
$$;
comment on function private.memberships(uuid, public.org_role) is
  'The organizations where the user holds at least the given role, with that role. For definer functions only.';

-- Whether a user is a member (or stronger) of an organization. For definer functions only: it
-- answers about any user, so no API role may call it.
create function private.is_org_member(p_organization_id uuid, p_user_id uuid) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(private.member_role(p_organization_id, p_user_id) <= 'member', false)
$$;
comment on function private.is_org_member(uuid, uuid) is 'Whether the user is a member, admin or owner of the organization. For definer functions only.';

-- The caller's role in an organization, or null.
create function private.org_role(p_organization_id uuid) returns public.org_role
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.member_role(p_organization_id, auth.uid())
$$;
comment on function private.org_role(uuid) is 'The calling user''s role in the organization, or null.';

-- Organizations where the caller holds at least the given role (for policies: once per statement).
create function private.my_org_ids(p_at_least public.org_role) returns setof uuid
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select m.organization_id from private.memberships(auth.uid(), p_at_least) m
$$;
comment on function private.my_org_ids(public.org_role) is 'Ids of the organizations where the caller holds at least the given role.';

-- Whether a user is a member (or stronger) of an organization where the caller holds a role:
-- what the caller could read in organization_members anyway. For the agents policy (an admin
-- hands an agent only to a member of its organization).
create function private.is_member_of_my_org(p_organization_id uuid, p_user_id uuid) returns boolean
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.org_role(p_organization_id) is not null and private.is_org_member(p_organization_id, p_user_id)
$$;
comment on function private.is_member_of_my_org(uuid, uuid) is
  'Whether the user is a member (or stronger) of the organization, answered only where the caller holds a role there.';

-- Whether the caller holds at least the given role in an organization, or acts for the platform.
create function private.has_org_role(p_organization_id uuid, p_at_least public.org_role) returns boolean
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.is_service_caller() or coalesce(private.org_role(p_organization_id) <= p_at_least, false)
$$;
comment on function private.has_org_role(uuid, public.org_role) is
  'Whether the caller holds at least the role in the organization (service callers do).';

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
  if not private.has_org_role(p_organization_id, p_at_least) then
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
  if not (private.is_self(p_user_id) or private.is_service_caller()) then
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

-- Agents whose owner is still a member (not a viewer) of the agent's organization: an owner who
-- left, or was made a viewer, no longer acts for their agents nor lends them access.
create view private.member_owned_agents with (security_invoker = true) as
  select a.*
    from public.agents a
   where exists (select from public.organization_members m
                  where m.organization_id = a.organization_id and m.user_id = a.user_id and m.role <= 'member');
comment on view private.member_owned_agents is 'Agents whose owner is a member, admin or owner of their organization. For definer functions only.';
revoke all on private.member_owned_agents from public, anon, authenticated, service_role;

-- Who may act for an agent: its owner while a member (not a viewer), and the admins and owners
-- of its organization. The one definition of that rule (service callers are added by callers).
create view private.agent_managers with (security_invoker = true) as
  select a.id as agent_id, m.user_id
    from public.agents a
    join public.organization_members m on m.organization_id = a.organization_id
   where m.role <= 'admin'
  union all
  select o.id, o.user_id from private.member_owned_agents o;
comment on view private.agent_managers is 'Pairs (agent, user) where the user may act for the agent. For definer functions only.';
revoke all on private.agent_managers from public, anon, authenticated, service_role;

-- Whether a user may act for an agent (private.agent_managers). plpgsql, so its plan is kept
-- across calls: the validators ask it on every tool call.
create function private.may_act_for_agent(p_agent_id uuid, p_user_id uuid) returns boolean
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  return exists (select from private.agent_managers am where am.agent_id = p_agent_id and am.user_id = p_user_id);
end $$;
comment on function private.may_act_for_agent(uuid, uuid) is
  'Whether the user may act for the agent: its owner while a member, or an admin or owner of its organization. For definer functions only.';

-- The agent, if the caller may act for it (see private.agent_managers) or is a service caller.
-- Otherwise 42501, whether or not the agent exists.
create function private.require_agent_manager(p_agent_id uuid) returns public.agents
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents;
begin
  select a.* into v_agent from public.agents a where a.id = p_agent_id;
  -- Membership first: the common caller (the owner's runtime) never pays the service check.
  if found and (private.may_act_for_agent(p_agent_id, auth.uid()) or private.is_service_caller()) then
    return v_agent;
  end if;
  raise exception using errcode = '42501', message = format('not allowed to act for agent %s', p_agent_id),
    hint = 'only the agent''s owner and the admins of its organization may';
end $$;
comment on function private.require_agent_manager(uuid) is
  'Returns the agent if the caller is its owner, an admin of its organization or a service caller; else raises 42501.';

-- The agent, if the caller is its runtime: its owner's own session (the owner still a member,
-- see private.member_owned_agents) or a service caller. Admins manage agents but never act as
-- them, so they get 42501 here.
create function private.require_agent_runtime(p_agent_id uuid) returns public.agents
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents;
begin
  select a.* into v_agent from public.agents a where a.id = p_agent_id;
  if found and ((private.is_self(v_agent.user_id) and exists (select from private.member_owned_agents o where o.id = p_agent_id))
                or private.is_service_caller()) then
    return v_agent;
  end if;
  raise exception using errcode = '42501', message = format('not the runtime of agent %s', p_agent_id),
    hint = 'only the agent owner''s session or service_role acts as the agent';
end $$;
comment on function private.require_agent_runtime(uuid) is
  'Returns the agent if the caller is its runtime (its owner''s session or a service caller); else raises 42501.';

-- The state of every grant now, the one definition of validity: live (not revoked), unexpired,
-- on a running server, for an active agent whose owner is still a member. The first condition
-- that fails names the state; 'valid' when none does. Every check and overview reads it.
create view private.grant_states with (security_invoker = true) as
  select g.id as grant_id, g.agent_id, g.server_instance_id,
         case when g.revoked_at is not null then 'revoked'
              when g.expires_at is not null and g.expires_at <= now() then 'expired'
              when i.status <> 'running' then 'server ' || i.status
              when not a.is_active then 'agent inactive'
              -- offset 0: asked for this agent alone; without it the planner may hash the whole
              -- member_owned_agents set for every check (a cost that grows with all agents).
              when not exists (select from private.member_owned_agents o where o.id = a.id offset 0) then 'owner not a member'
              else 'valid' end as state
    from public.agent_mcp_server_access g
    join public.account_tool_instances i on i.id = g.server_instance_id
    join public.agents a on a.id = g.agent_id;
comment on view private.grant_states is
  'Each grant''s state now: revoked, expired, server <status>, agent inactive, owner not a member, or valid. For definer functions only.';
revoke all on private.grant_states from public, anon, authenticated, service_role;

-- The grants whose state is valid. A view, so the planner inlines it onto the live-grant index
-- (revoked_at is null repeats what the state says, for that index).
create view private.valid_grants with (security_invoker = true) as
  select g.*
    from public.agent_mcp_server_access g
   where g.revoked_at is null
     and exists (select from private.grant_states s where s.grant_id = g.id and s.state = 'valid');
comment on view private.valid_grants is
  'Grants valid now (see private.grant_states). For definer functions only.';
revoke all on private.valid_grants from public, anon, authenticated, service_role;

-- Whether a scope (with its allowed tools) allows a tool of the pinned manifest.
create function private.scope_allows(p_scope public.mcp_permission_scope, p_allowed_tools text[], p_tool jsonb) returns boolean
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return case p_scope
    when 'full_access' then true
    when 'read_only' then private.tool_is_read_only(p_tool)
    when 'custom' then (p_tool ->> 'name') = any (p_allowed_tools)
  end;
end $$;
-- The same rule over an instance's stored tool-name lists: the effective tools of a grant.
create function private.effective_tools(
  p_scope public.mcp_permission_scope, p_allowed_tools text[], p_tool_names text[], p_read_only_tool_names text[]
) returns text[]
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return case p_scope
    when 'full_access' then p_tool_names
    when 'read_only' then p_read_only_tool_names
    when 'custom' then array(select x from unnest(p_tool_names) x where x = any (p_allowed_tools) order by x)
  end;
end $$;
comment on function private.effective_tools(public.mcp_permission_scope, text[], text[], text[]) is
  'The tools a grant allows, from the instance''s stored pinned tool names.';

comment on function private.scope_allows(public.mcp_permission_scope, text[], jsonb) is
  'Whether a scope (with its allowed tools) allows a tool of the pinned manifest.';

-- Resources and prompts: reading them is reading, so a read_only or full_access grant shows
-- them; a custom grant lists tools by name and shows neither (grant read_only to add them).
create function private.scope_allows_reads(p_scope public.mcp_permission_scope) returns boolean
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return p_scope in ('read_only', 'full_access');
end $$;
comment on function private.scope_allows_reads(public.mcp_permission_scope) is
  'Whether a grant of this scope lets the agent list and read the server''s resources and prompts (read_only, full_access).';

-- The state of every OAuth permission now, the one definition of its validity: not revoked, not
-- expired, on a connection that is not revoked and still belongs to the agent's owner (an agent
-- handed to another user does not take the former owner's accounts along). Whether the token
-- itself is fresh or needs a refresh is the connection's state, not the permission's.
create view private.oauth_permission_states with (security_invoker = true) as
  select g.id as permission_id, g.agent_id, g.connection_id,
         case when g.revoked_at is not null then 'revoked'
              when g.expires_at is not null and g.expires_at <= now() then 'expired'
              when c.user_id <> a.user_id then 'owner_changed'
              when c.status = 'revoked' then 'connection_revoked'
              else 'valid' end as state
    from public.agent_oauth_permissions g
    join public.user_oauth_connections c on c.id = g.connection_id
    join public.agents a on a.id = g.agent_id;
comment on view private.oauth_permission_states is
  'Each OAuth permission''s state now: revoked, expired, owner_changed, connection_revoked, or valid. For definer functions only.';
revoke all on private.oauth_permission_states from public, anon, authenticated, service_role;

-- The state of every agent API key now, the one definition of its validity: revoked, expired, or
-- active. The gateway accepts an active key of an active agent.
create view private.api_key_states with (security_invoker = true) as
  select k.id as key_id, k.agent_id,
         case when k.revoked_at is not null then 'revoked'
              when k.expires_at is not null and k.expires_at <= now() then 'expired'
              else 'active' end as state
    from public.agent_api_keys k;
comment on view private.api_key_states is 'Each agent API key''s state now: revoked, expired or active. For definer functions only.';
revoke all on private.api_key_states from public, anon, authenticated, service_role;

-- What a user owns. An OAuth connection is its user's: only they (or the platform) lend it,
-- revoke it or read its token.
create function private.owns_connection(p_connection_id uuid) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select exists (select from public.user_oauth_connections c where c.id = p_connection_id and private.is_self(c.user_id))
$$;
comment on function private.owns_connection(uuid) is
  'Whether the caller is the user of the OAuth connection (service callers are not). For definer functions only.';

-- The connection, locked, if the caller owns it (or is a service caller); else 42501, whether
-- or not it exists.
create function private.require_connection_owner(p_connection_id uuid) returns public.user_oauth_connections
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_connection public.user_oauth_connections;
begin
  select c.* into v_connection from public.user_oauth_connections c where c.id = p_connection_id for update;
  if found and (private.is_service_caller() or private.is_self(v_connection.user_id)) then
    return v_connection;
  end if;
  raise exception using errcode = '42501', message = format('not the owner of OAuth connection %s', p_connection_id),
    hint = 'only the user who connected the account (or service_role) may';
end $$;
comment on function private.require_connection_owner(uuid) is
  'Locks and returns the OAuth connection if the caller owns it or is a service caller; else raises 42501.';

-- A Vault secret (public.vault_secret_owners) belongs to a user or to an organization. A user's
-- is read by that user's session; an organization's only by the platform's runtime: admins
-- write it but never read it back.
create function private.may_read_secret(p_owner_user_id uuid) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select private.is_self(p_owner_user_id) or private.is_service_caller()
$$;
comment on function private.may_read_secret(uuid) is
  'Whether the caller may read a secret owned by p_owner_user_id (null for an organization''s): its user, or the platform.';

-- Who may delete a secret: its user, an admin of its organization, or the platform; else 42501.
create function private.require_secret_manager(p_secret_id uuid, p_owner_user_id uuid, p_organization_id uuid) returns void
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_organization_id is not null then
    perform private.require_org_role(p_organization_id, 'admin');
  elsif not (private.is_self(p_owner_user_id) or private.is_service_caller()) then
    raise exception using errcode = '42501', message = format('not allowed to delete secret %s', p_secret_id);
  end if;
end $$;
comment on function private.require_secret_manager(uuid, uuid, uuid) is
  'Raises 42501 unless the caller may delete the secret: its user, an admin of its organization, or the platform.';

-- Definer functions call these as their owner: no API role needs them, but for the two the
-- policies call, which answer only about the caller (see the walker's allowlist).
revoke execute on function private.is_service_caller(), private.require_service_caller(text, text), private.is_self(uuid),
  private.has_org_role(uuid, public.org_role), private.may_act_for_agent(uuid, uuid), private.owns_connection(uuid),
  private.require_connection_owner(uuid), private.may_read_secret(uuid), private.require_secret_manager(uuid, uuid, uuid),
  private.member_role(uuid, uuid),
  private.lock_member_role(uuid, uuid), private.memberships(uuid, public.org_role), private.is_org_member(uuid, uuid),
  private.org_role(uuid),
  private.my_org_ids(public.org_role), private.is_member_of_my_org(uuid, uuid), private.require_org_role(uuid, public.org_role),
  private.require_self(uuid), private.require_org_role_for(uuid, public.org_role, text), private.require_agent_manager(uuid),
  private.require_agent_runtime(uuid), private.scope_allows(public.mcp_permission_scope, text[], jsonb),
  private.effective_tools(public.mcp_permission_scope, text[], text[], text[]), private.scope_allows_reads(public.mcp_permission_scope)
  from public, anon, authenticated, service_role;
grant execute on function private.my_org_ids(public.org_role), private.is_member_of_my_org(uuid, uuid) to authenticated;
