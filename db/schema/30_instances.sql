-- MCP server instances: a catalog entry deployed on a toolbox, with the MCP columns of the
-- specification, its lifecycle status and health, and the tool manifest pinned when it was
-- approved. Lifecycle transitions are governed in db/schema/40_lifecycle.sql.

create type public.mcp_server_status as enum
  ('pending', 'deploying', 'running', 'unhealthy', 'stopping', 'stopped', 'failed', 'removing', 'removed');
create type public.mcp_transport_type as enum ('stdio', 'sse', 'websocket', 'streamable_http');
create type public.mcp_health_status as enum ('healthy', 'unhealthy', 'unknown');

create table public.account_tool_instances (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  account_tool_environment_id uuid not null,
  catalog_id uuid not null references public.mcp_server_catalog (id) on delete restrict,
  instance_name_on_toolbox text not null check (instance_name_on_toolbox ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  display_name text not null check (length(btrim(display_name)) between 1 and 200),
  configuration jsonb not null default '{}' check (jsonb_typeof(configuration) = 'object'),
  mcp_server_type text not null,
  mcp_endpoint_path text not null default '/mcp' check (mcp_endpoint_path ~ '^/'),
  mcp_transport_type public.mcp_transport_type not null default 'streamable_http',
  mcp_server_capabilities jsonb not null default '{}',
  mcp_discovery_metadata jsonb not null default '{}',
  status public.mcp_server_status not null default 'pending',
  status_changed_at timestamptz not null default now(),
  health_status public.mcp_health_status not null default 'unknown',
  last_health_check_at timestamptz,
  endpoint_url text,
  last_error text,
  pinned_manifest jsonb not null default '[]' check (jsonb_typeof(pinned_manifest) = 'array'),
  -- Derived once per pinning, not per check: what full_access and read_only allow.
  pinned_tool_names text[] generated always as (private.manifest_tool_names(pinned_manifest, false)) stored,
  pinned_read_only_tool_names text[] generated always as (private.manifest_tool_names(pinned_manifest, true)) stored,
  manifest_approved_at timestamptz,
  manifest_approved_by uuid references auth.users (id) on delete set null,
  priority integer not null default 100 check (priority between 0 and 1000),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  foreign key (account_tool_environment_id, organization_id)
    references public.account_tool_environments (id, organization_id) on delete cascade,
  unique (id, organization_id)
);
comment on table public.account_tool_instances is
  'MCP server instances on toolboxes: configuration (validated against the catalog), lifecycle status, health, pinned tool manifest.';
comment on column public.account_tool_instances.pinned_manifest is
  'The tools approved for this instance, each with its sha256; a tool presented with another hash is denied until approved.';
comment on column public.account_tool_instances.priority is 'Weight of this server when a chat context is assembled (higher first).';
-- A name is unique on its toolbox among the instances that still exist.
create unique index account_tool_instances_name_idx
  on public.account_tool_instances (account_tool_environment_id, instance_name_on_toolbox) where status <> 'removed';
create index account_tool_instances_org_idx on public.account_tool_instances (organization_id, status);
-- The toolbox foreign key's own index (the partial name index above cannot serve its lookups).
create index account_tool_instances_toolbox_idx on public.account_tool_instances (account_tool_environment_id, organization_id);
create index account_tool_instances_catalog_idx on public.account_tool_instances (catalog_id);
create index account_tool_instances_created_by_idx on public.account_tool_instances (created_by);
create index account_tool_instances_approved_by_idx on public.account_tool_instances (manifest_approved_by);

-- On insert, takes type, capabilities and the manifest from the catalog; on every write,
-- validates the configuration against the catalog's schema (22023 names the bad field).
create function private.instance_before_write() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_catalog public.mcp_server_catalog;
  v_error text;
begin
  select * into v_catalog from public.mcp_server_catalog c where c.id = new.catalog_id;
  if not found then
    raise exception using errcode = 'P0002', message = format('catalog entry %s not found', new.catalog_id);
  end if;
  if tg_op = 'INSERT' then
    new.mcp_server_type := v_catalog.name;
    new.mcp_server_capabilities := v_catalog.capabilities;
    if new.pinned_manifest = '[]'::jsonb then
      new.pinned_manifest := v_catalog.tool_manifest;
      new.manifest_approved_at := now();
      new.manifest_approved_by := coalesce(new.manifest_approved_by, auth.uid());
    end if;
  end if;
  if tg_op = 'INSERT' or new.configuration is distinct from old.configuration then
    v_error := private.json_schema_error(v_catalog.config_schema, new.configuration, 'configuration');
    if v_error is not null then
      raise exception using errcode = '22023', message = format('invalid configuration: %s', v_error),
        hint = format('the configuration schema of %s: %s', v_catalog.name, v_catalog.config_schema);
    end if;
  end if;
  return new;
end $$;
comment on function private.instance_before_write() is
  'Trigger: fills catalog-derived columns on insert and validates the configuration against the catalog schema.';

create trigger account_tool_instances_before_write before insert or update on public.account_tool_instances
  for each row execute function private.instance_before_write();
create trigger account_tool_instances_touch before update on public.account_tool_instances
  for each row execute function private.touch_updated_at();
alter table public.account_tool_instances enable row level security;

-- Tool definitions presented by a running server that differ from the pinned ones: denied
-- until an admin approves them (approve_mcp_tool_definition).
create table public.mcp_tool_drift (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null,
  server_instance_id uuid not null,
  tool_name text not null,
  pinned_sha256 text,
  presented_sha256 text not null,
  presented_definition jsonb not null,
  first_seen_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  seen_count integer not null default 1,
  approved_at timestamptz,
  approved_by uuid references auth.users (id) on delete set null,
  foreign key (server_instance_id, organization_id)
    references public.account_tool_instances (id, organization_id) on delete cascade,
  constraint mcp_tool_drift_presented_key unique (server_instance_id, tool_name, presented_sha256)
);
comment on table public.mcp_tool_drift is
  'Tool definitions a server presented that differ from its pinned manifest; denied until approved by an admin.';
create index mcp_tool_drift_org_idx on public.mcp_tool_drift (organization_id, approved_at);
create index mcp_tool_drift_approved_by_idx on public.mcp_tool_drift (approved_by);
alter table public.mcp_tool_drift enable row level security;
