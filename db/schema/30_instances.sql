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
  last_error_summary text generated always as (private.dtma_error_summary(last_error)) stored,
  pinned_manifest jsonb not null default '[]' check (jsonb_typeof(pinned_manifest) = 'array'),
  -- Derived once per pinning, not per check: what full_access and read_only allow.
  pinned_tool_names text[] generated always as (private.manifest_tool_names(pinned_manifest, false)) stored,
  pinned_read_only_tool_names text[] generated always as (private.manifest_tool_names(pinned_manifest, true)) stored,
  manifest_approved_at timestamptz,
  manifest_approved_by uuid references auth.users (id) on delete set null,
  priority integer not null default 100 check (priority between 0 and 1000),
  -- Secret fields of the configuration (config_schema "writeOnly"), as 'env.NAME' -> when it last
  -- changed; their values are in Vault (private.instance_secrets), not in configuration.
  secret_fields jsonb not null default '{}' check (jsonb_typeof(secret_fields) = 'object'),
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
comment on column public.account_tool_instances.configuration is
  'The configuration, validated against the catalog schema, without its secret fields (those are in Vault: see secret_fields).';
comment on column public.account_tool_instances.last_error is 'The last error in full: platform admins only (organizations read last_error_summary).';
comment on column public.account_tool_instances.secret_fields is
  'The secret fields that are set, by dotted path (env.API_KEY), with when each last changed. The values are in Vault only.';
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

-- The paths of a configuration schema's secret fields: properties marked "writeOnly": true,
-- at any depth of nested object properties.
create function private.config_secret_paths(p_schema jsonb) returns setof text[]
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  with recursive walk (path, node) as (
    select '{}'::text[], p_schema
    union all
    select w.path || p.key, p.value
      from walk w
     cross join lateral jsonb_each(case when jsonb_typeof(w.node -> 'properties') = 'object' then w.node -> 'properties'
                                        else '{}'::jsonb end) p
  )
  select w.path from walk w where cardinality(w.path) > 0 and w.node -> 'writeOnly' = 'true'::jsonb
$$;
comment on function private.config_secret_paths(jsonb) is 'Paths of the properties a configuration schema marks "writeOnly": true (secrets).';

-- p_doc with p_value at p_path, creating the parent objects the path needs.
create function private.jsonb_put(p_doc jsonb, p_path text[], p_value jsonb) returns jsonb
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  for i in 1 .. cardinality(p_path) - 1 loop
    if jsonb_typeof(p_doc #> p_path[1:i]) is distinct from 'object' then
      p_doc := jsonb_set(p_doc, p_path[1:i], '{}'::jsonb);
    end if;
  end loop;
  return jsonb_set(p_doc, p_path, p_value);
end $$;
comment on function private.jsonb_put(jsonb, text[], jsonb) is 'jsonb_set that creates the missing parent objects of the path.';

-- The configuration of an instance with its secret fields put back (definer functions only:
-- what DTMA is sent).
create function private.instance_configuration(p_instance_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_config jsonb;
  v_secret record;
begin
  select i.configuration into v_config from public.account_tool_instances i where i.id = p_instance_id;
  for v_secret in select s.path, d.decrypted_secret from private.instance_secrets s
                    join vault.decrypted_secrets d on d.id = s.secret_id
                   where s.instance_id = p_instance_id order by s.path loop
    v_config := private.jsonb_put(v_config, v_secret.path, v_secret.decrypted_secret::jsonb);
  end loop;
  return v_config;
end $$;
comment on function private.instance_configuration(uuid) is 'An instance''s configuration with its secret fields from Vault (definer functions only).';

-- Moves the secret fields of a written configuration into Vault. A secret given a value is
-- stored (created, or the existing secret updated); given null, it is deleted; left out, it
-- keeps its value, which the validation then counts as present. Returns the configuration to
-- validate (p_full, with every secret value), and p_config and p_secret_fields as stored.
create function private.instance_stash_secrets(p_instance_id uuid, p_schema jsonb, p_config inout jsonb,
                                               p_secret_fields inout jsonb, p_full out jsonb)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_path text[];
  v_given jsonb;
  v_secret record;
  v_label text;
begin
  p_full := p_config;
  for v_path in select private.config_secret_paths(p_schema) loop
    v_given := p_config #> v_path;
    v_label := array_to_string(v_path, '.');
    select s.* into v_secret from private.instance_secrets s where s.instance_id = p_instance_id and s.path = v_path;
    if v_given is null then
      if v_secret.secret_id is not null then
        p_full := private.jsonb_put(p_full, v_path,
                                    private.vault_read(v_secret.secret_id)::jsonb);
      end if;
      continue;
    end if;
    p_config := p_config #- v_path;
    if jsonb_typeof(v_given) = 'null' then
      p_full := p_full #- v_path;
      delete from private.instance_secrets s where s.instance_id = p_instance_id and s.path = v_path;
      p_secret_fields := p_secret_fields - v_label;
    elsif v_secret.secret_id is null then
      insert into private.instance_secrets (instance_id, path, secret_id)
      values (p_instance_id, v_path, vault.create_secret(v_given::text, format('instance/%s/%s', p_instance_id, v_label),
                                                   format('secret configuration field %s of MCP server %s', v_label, p_instance_id)));
      p_secret_fields := p_secret_fields || jsonb_build_object(v_label, now());
    else
      perform vault.update_secret(v_secret.secret_id, v_given::text);
      update private.instance_secrets s set updated_at = now() where s.instance_id = p_instance_id and s.path = v_path;
      p_secret_fields := p_secret_fields || jsonb_build_object(v_label, now());
    end if;
  end loop;
end $$;
comment on function private.instance_stash_secrets(uuid, jsonb, jsonb, jsonb) is
  'Moves a written configuration''s secret fields into Vault (private.instance_secrets); returns it without them, the secret fields set, and the full configuration to validate.';

-- On insert, takes type, capabilities and the manifest from the catalog; on every write,
-- validates the configuration against the catalog's schema (22023 names the bad field) and
-- moves its secret fields into Vault.
create function private.instance_before_write() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_catalog public.mcp_server_catalog;
  v_error text;
  v_stash record;
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
  -- Every pin is its tool's definition with that definition's sha256 (private.tool_pin), as the
  -- catalog's manifest and approve_mcp_tool_definition write them: tool_matches_pin decides on
  -- it without hashing, so a pin with any other hash or field is refused here.
  -- Compared as text: jsonb equality takes 1.0 for 1, so a pin rewritten that way under its old
  -- sha256 would pass unchecked.
  if (tg_op = 'INSERT' or new.pinned_manifest::text is distinct from old.pinned_manifest::text)
     and exists (select from jsonb_array_elements(new.pinned_manifest) t where t is distinct from private.tool_pin(t)) then
    raise exception using errcode = '22023', message = 'every pinned tool must be its definition with that definition''s sha256',
      hint = 'pin the catalog''s manifest, or approve a presented definition (approve_mcp_tool_definition)';
  end if;
  if tg_op = 'INSERT' or new.configuration is distinct from old.configuration then
    v_stash := private.instance_stash_secrets(new.id, v_catalog.config_schema, new.configuration, new.secret_fields);
    new.configuration := v_stash.p_config;
    new.secret_fields := v_stash.p_secret_fields;
    v_error := private.json_schema_error(v_catalog.config_schema, v_stash.p_full, 'configuration');
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
-- An instance's secret fields leave Vault with it.
create function private.instance_after_delete() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  delete from private.instance_secrets s where s.instance_id = old.id;
  return null;
end $$;
comment on function private.instance_after_delete() is 'Trigger: deletes a deleted instance''s secret fields (and so their Vault secrets).';
create trigger account_tool_instances_delete_secrets after delete on public.account_tool_instances
  for each row execute function private.instance_after_delete();
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
