-- Tenancy: organizations, their members with a role, and the agents members own.

create type public.org_role as enum ('owner', 'admin', 'member', 'viewer');
comment on type public.org_role is 'Organization roles, strongest first: owner > admin > member > viewer.';

create table public.organizations (
  id uuid primary key default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  slug text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.organizations is 'Tenants. Nothing crosses from one organization to another.';
create index organizations_created_by_idx on public.organizations (created_by);

create table public.organization_members (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role public.org_role not null default 'member',
  added_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, user_id)
);
comment on table public.organization_members is 'Who belongs to which organization, with which role. Changed only through the organization RPCs.';
create index organization_members_user_idx on public.organization_members (user_id, organization_id, role);
create index organization_members_added_by_idx on public.organization_members (added_by);

create table public.agents (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  name text not null check (length(btrim(name)) between 1 and 200),
  description text not null default '',
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Target of the composite foreign keys that keep grants inside one organization.
  unique (id, organization_id)
);
comment on table public.agents is 'AI agents; user_id is the owning user, organization_id the tenant.';
comment on column public.agents.user_id is 'The owner: the user whose sessions act for this agent.';
create index agents_org_idx on public.agents (organization_id);
create index agents_user_idx on public.agents (user_id);

create trigger organizations_touch before update on public.organizations
  for each row execute function private.touch_updated_at();
create trigger organization_members_touch before update on public.organization_members
  for each row execute function private.touch_updated_at();
create trigger agents_touch before update on public.agents
  for each row execute function private.touch_updated_at();

-- An agent never changes organization: its grants, connections and history name both.
create function private.agent_stays_in_organization() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception using errcode = '55000', message = 'an agent cannot move to another organization',
    hint = 'create a new agent in the other organization';
end $$;
comment on function private.agent_stays_in_organization() is 'Trigger: refuses to change an agent''s organization.';
create trigger agents_stay_in_organization before update of organization_id on public.agents
  for each row when (new.organization_id is distinct from old.organization_id)
  execute function private.agent_stays_in_organization();

-- What remains of a deleted agent: enough for the history that outlives it (its grants, the
-- interaction log) to say whose it was. Read through definer functions only.
create table private.agent_tombstones (
  agent_id uuid primary key,
  organization_id uuid not null references public.organizations (id) on delete cascade,
  user_id uuid,
  name text not null,
  deleted_at timestamptz not null default now(),
  deleted_by uuid
);
comment on table private.agent_tombstones is
  'Deleted agents (id, organization, owner, name, when, by whom), for the history that outlives them. Gone with the organization.';
create index agent_tombstones_org_idx on private.agent_tombstones (organization_id);
revoke all on private.agent_tombstones from public, anon, authenticated, service_role;
alter table private.agent_tombstones enable row level security;

create function private.agent_leaves_tombstone() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- When the organization itself goes, its history goes with it.
  if exists (select from public.organizations o where o.id = old.organization_id) then
    insert into private.agent_tombstones (agent_id, organization_id, user_id, name, deleted_by)
    values (old.id, old.organization_id, old.user_id, old.name, auth.uid())
    on conflict (agent_id) do nothing;
  end if;
  return old;
end $$;
comment on function private.agent_leaves_tombstone() is 'Trigger: records a deleted agent in private.agent_tombstones.';
create trigger agents_tombstone after delete on public.agents
  for each row execute function private.agent_leaves_tombstone();

create trigger organization_members_audit after insert or update or delete on public.organization_members
  for each row execute function private.audit_row_change('membership');

-- An organization always keeps an owner: the last one can neither leave nor be demoted
-- (except when the organization itself is being deleted).
create function private.keep_an_owner() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if old.role = 'owner'
     and (tg_op = 'DELETE' or new.role <> 'owner')
     and exists (select from public.organizations o where o.id = old.organization_id)
     and not exists (select from public.organization_members m
                      where m.organization_id = old.organization_id and m.role = 'owner' and m.user_id <> old.user_id) then
    raise exception using errcode = '23514', message = 'the last owner of an organization can neither leave nor be demoted',
      hint = 'make another member owner first';
  end if;
  return coalesce(new, old);
end $$;
comment on function private.keep_an_owner() is 'Trigger: refuses to remove or demote the last owner of an organization.';
create trigger organization_members_keep_owner before update or delete on public.organization_members
  for each row execute function private.keep_an_owner();

alter table public.organizations enable row level security;
alter table public.organization_members enable row level security;
alter table public.agents enable row level security;
