-- The catalog of MCP servers an organization can run, each with its tool manifest: every tool's
-- name, description, input schema and annotations, and the sha256 of that definition's
-- canonical JSON, computed here and nowhere else.

create table public.mcp_server_catalog (
  id uuid primary key default gen_random_uuid(),
  name text not null unique check (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  display_name text not null,
  description text not null default '',
  docker_image_url text not null,
  -- The OCI image a Docker toolbox (the upstream DTMA) pulls for the same server; null when none is published.
  oci_image text check (oci_image ~ '^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?(@sha256:[a-f0-9]{64})?$'),
  version text not null,
  transport_type text not null check (transport_type in ('stdio', 'sse', 'websocket', 'streamable_http')),
  capabilities jsonb not null default '{}' check (jsonb_typeof(capabilities) = 'object'),
  tool_manifest jsonb not null default '[]' check (jsonb_typeof(tool_manifest) = 'array'),
  config_schema jsonb not null default '{"type": "object"}' check (jsonb_typeof(config_schema) = 'object'),
  required_oauth_providers text[] not null default '{}',
  -- Which OAuth provider's access token the server reads from which environment variable.
  oauth_token_env jsonb not null default '{}' check (jsonb_typeof(oauth_token_env) = 'object' and not jsonb_path_exists(
    oauth_token_env, '$.* ? (@.type() != "string" || !(@ like_regex "^[A-Z_][A-Z0-9_]{0,127}$"))')),
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.mcp_server_catalog is
  'MCP servers that can be deployed, with their tool manifests (each tool hashed by the database) and configuration schema.';
comment on column public.mcp_server_catalog.oauth_token_env is
  'provider name -> environment variable: an instance using a connection of that provider gets its current access token there (read from Vault when DTMA is called).';
comment on column public.mcp_server_catalog.config_schema is
  'JSON Schema of an instance''s configuration; a property marked "writeOnly": true is a secret: kept in Vault, never read back, sent to DTMA only.';
comment on column public.mcp_server_catalog.oci_image is
  'OCI image for Docker toolboxes (the official mcp/ images where they exist), beside docker_image_url''s npm package.';
comment on column public.mcp_server_catalog.tool_manifest is
  'Array of {name, description, inputSchema, annotations, sha256}; sha256 is set by trigger from the canonical JSON of the rest.';

-- The definition of a tool that is pinned: what a client is shown and what shapes its calls.
-- The helpers that run once per presented tool are plpgsql: a function with its own search_path
-- is never inlined, and a plpgsql one keeps its plan across calls where a language sql one
-- plans its body, and the bodies of the sql functions it calls, again on every call.
create function private.tool_definition(p_tool jsonb) returns jsonb
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return jsonb_build_object(
    'name', p_tool -> 'name',
    'description', coalesce(p_tool -> 'description', '""'::jsonb),
    'inputSchema', coalesce(p_tool -> 'inputSchema', '{}'::jsonb),
    'annotations', coalesce(p_tool -> 'annotations', '{}'::jsonb));
end $$;
comment on function private.tool_definition(jsonb) is 'The pinned part of a tool: name, description, inputSchema, annotations.';

-- sha256 of the canonical JSON of a tool's definition. jsonb's text form is canonical: keys
-- sorted, duplicates removed, whitespace normalised, so equal definitions hash equal.
create function private.tool_sha256(p_tool jsonb) returns text
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.sha256_hex(private.tool_definition(p_tool)::text);
end $$;
comment on function private.tool_sha256(jsonb) is 'sha256 (hex) of the canonical JSON of a tool definition.';

-- A tool as a manifest pins it: its definition plus the sha256 of that definition. Every entry
-- of a catalog's tool_manifest and of an instance's pinned_manifest is exactly this (the catalog's
-- trigger builds them, the instances' trigger refuses anything else): private.tool_matches_pin
-- relies on it.
create function private.tool_pin(p_tool jsonb) returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select private.tool_definition(p_tool) || jsonb_build_object('sha256', private.tool_sha256(p_tool))
$$;
comment on function private.tool_pin(jsonb) is 'A tool as a manifest pins it: its definition plus that definition''s sha256.';

-- Whether a presented tool is its pin, without hashing. A pin is tool_pin(t): its sha256 is the
-- hash of the text of the rest of it, and jsonb's text form is canonical, so the presented
-- definition's text equals the pin's exactly when its hash does (short of a sha256 collision).
-- Text, not jsonb equality: 1.0 and 1 are equal jsonb but different texts, hence different hashes.
create function private.tool_matches_pin(p_presented jsonb, p_pin jsonb) returns boolean
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.tool_definition(p_presented)::text = (p_pin - 'sha256')::text;
end $$;
comment on function private.tool_matches_pin(jsonb, jsonb) is
  'Whether a presented tool''s definition is the pinned one (same text, hence same sha256); null when there is no pin.';

-- The manifest with each tool reduced to its definition plus its hash.
create function private.hash_manifest(p_manifest jsonb) returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(jsonb_agg(private.tool_pin(t) order by t ->> 'name'), '[]')
    from jsonb_array_elements(p_manifest) as t
$$;
comment on function private.hash_manifest(jsonb) is 'Adds the sha256 of each tool to a tool manifest.';

-- Whether a tool is annotated read-only (readOnlyHint: true): what the read_only scope allows.
create function private.tool_is_read_only(p_tool jsonb) returns boolean
language sql immutable
set search_path = pg_catalog, pg_temp
as $$ select coalesce(p_tool -> 'annotations' -> 'readOnlyHint' = 'true'::jsonb, false) $$;
comment on function private.tool_is_read_only(jsonb) is 'Whether the tool is annotated readOnlyHint: true.';

-- The names of a manifest's tools (only the read-only ones when asked), sorted.
create function private.manifest_tool_names(p_manifest jsonb, p_read_only boolean) returns text[]
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(array_agg(t ->> 'name' order by t ->> 'name'), '{}')
    from jsonb_array_elements(p_manifest) t
   where not p_read_only or private.tool_is_read_only(t)
$$;
comment on function private.manifest_tool_names(jsonb, boolean) is 'Sorted tool names of a manifest, optionally only the read-only ones.';

create function private.catalog_before_write() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_duplicate text;
begin
  if exists (select from jsonb_array_elements(new.tool_manifest) t
              where jsonb_typeof(t -> 'name') is distinct from 'string' or t ->> 'name' = '') then
    raise exception using errcode = '22023', message = 'every tool of the manifest needs a name';
  end if;
  -- Grants name tools (allowed_tools) and pins are looked up by name: a name must be unique.
  select t ->> 'name' into v_duplicate from jsonb_array_elements(new.tool_manifest) t
   group by t ->> 'name' having count(*) > 1 limit 1;
  if v_duplicate is not null then
    raise exception using errcode = '22023', message = format('the manifest has two tools named %L', v_duplicate);
  end if;
  new.tool_manifest := private.hash_manifest(new.tool_manifest);
  return new;
end $$;
comment on function private.catalog_before_write() is 'Trigger: validates the tool manifest and hashes each tool.';

create trigger mcp_server_catalog_hash before insert or update of tool_manifest on public.mcp_server_catalog
  for each row execute function private.catalog_before_write();
create trigger mcp_server_catalog_touch before update on public.mcp_server_catalog
  for each row execute function private.touch_updated_at();
alter table public.mcp_server_catalog enable row level security;

-- Validates a JSON value against a JSON Schema subset (type, enum, properties, required,
-- additionalProperties, items, min/maxLength, pattern, minimum/maximum, min/maxItems).
-- Returns the first problem, naming the field by its path ($.args[0]), or null when valid.
create function private.json_schema_error(p_schema jsonb, p_value jsonb, p_path text default '$') returns text
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_type text := p_schema ->> 'type';
  v_actual text := jsonb_typeof(p_value);
  v_key text;
  v_item jsonb;
  v_i integer := 0;
  v_error text;
begin
  if v_type is not null and not (v_type = v_actual
       or (v_type = 'integer' and v_actual = 'number' and p_value::text ~ '^-?[0-9]+$')) then
    return format('%s must be %s, not %s', p_path, v_type, v_actual);
  end if;
  if p_schema ? 'enum' and not (p_schema -> 'enum') @> jsonb_build_array(p_value) then
    return format('%s must be one of %s', p_path, p_schema -> 'enum');
  end if;
  case v_actual
  when 'string' then
    if length(p_value #>> '{}') < coalesce((p_schema ->> 'minLength')::int, 0) then
      return format('%s must have at least %s characters', p_path, p_schema ->> 'minLength');
    elsif length(p_value #>> '{}') > coalesce((p_schema ->> 'maxLength')::int, 2147483647) then
      return format('%s must have at most %s characters', p_path, p_schema ->> 'maxLength');
    elsif p_schema ? 'pattern' and (p_value #>> '{}') !~ (p_schema ->> 'pattern') then
      return format('%s must match %s', p_path, p_schema ->> 'pattern');
    end if;
  when 'number' then
    if (p_value #>> '{}')::numeric < (p_schema ->> 'minimum')::numeric then
      return format('%s must be at least %s', p_path, p_schema ->> 'minimum');
    elsif (p_value #>> '{}')::numeric > (p_schema ->> 'maximum')::numeric then
      return format('%s must be at most %s', p_path, p_schema ->> 'maximum');
    end if;
  when 'array' then
    if jsonb_array_length(p_value) < coalesce((p_schema ->> 'minItems')::int, 0) then
      return format('%s must have at least %s items', p_path, p_schema ->> 'minItems');
    elsif jsonb_array_length(p_value) > coalesce((p_schema ->> 'maxItems')::int, 2147483647) then
      return format('%s must have at most %s items', p_path, p_schema ->> 'maxItems');
    end if;
    if p_schema ? 'items' then
      for v_item in select jsonb_array_elements(p_value) loop
        v_error := private.json_schema_error(p_schema -> 'items', v_item, format('%s[%s]', p_path, v_i));
        if v_error is not null then return v_error; end if;
        v_i := v_i + 1;
      end loop;
    end if;
  when 'object' then
    select format('%s.%s is required', p_path, r) into v_error
      from jsonb_array_elements_text(coalesce(p_schema -> 'required', '[]')) r
     where not p_value ? r limit 1;
    if v_error is not null then return v_error; end if;
    for v_key, v_item in select key, value from jsonb_each(p_value) order by key loop
      if p_schema -> 'properties' ? v_key then
        v_error := private.json_schema_error(p_schema -> 'properties' -> v_key, v_item, p_path || '.' || v_key);
      elsif p_schema -> 'additionalProperties' = 'false'::jsonb then
        v_error := format('%s.%s is not an allowed field', p_path, v_key);
      elsif jsonb_typeof(p_schema -> 'additionalProperties') = 'object' then
        v_error := private.json_schema_error(p_schema -> 'additionalProperties', v_item, p_path || '.' || v_key);
      end if;
      if v_error is not null then return v_error; end if;
    end loop;
  else
    null;
  end case;
  return null;
end $$;
comment on function private.json_schema_error(jsonb, jsonb, text) is
  'First violation of a JSON Schema subset by a value, naming the field by its path; null when valid.';

-- The fast path of a batch: whether every element of p_values is certainly valid against
-- p_schema, an object schema whose properties are flat (each field checked by type, enum,
-- min/maxLength, pattern, minimum/maximum only), in one statement instead of the recursive walk
-- per element and field. False means "not certainly": private.json_schema_error stays the one
-- judge, and gives the message. A schema with more than that (an enum on the object, an
-- additionalProperties schema, nested structure in a property) is never certain here.
create function private.json_schema_flat_valid(p_schema jsonb, p_values jsonb) returns boolean
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return p_schema ->> 'type' = 'object' and not p_schema ? 'enum'
     and jsonb_typeof(p_schema -> 'additionalProperties') is distinct from 'object'
     and not exists (select from jsonb_each(coalesce(p_schema -> 'properties', '{}')) p
                      where p.value ?| array['items', 'properties', 'required', 'additionalProperties', 'minItems', 'maxItems'])
     and jsonb_typeof(p_values) = 'array'
     and not exists (
       select from jsonb_array_elements(p_values) v
        where jsonb_typeof(v) is distinct from 'object'
           or exists (select from jsonb_array_elements_text(coalesce(p_schema -> 'required', '[]')) r where not v ? r)
           or exists (
             select from jsonb_each(v) f
               cross join lateral (select p_schema -> 'properties' -> f.key as s) d
              where case when d.s is null then p_schema -> 'additionalProperties' = 'false'::jsonb
                    else (d.s ? 'type' and not (d.s ->> 'type' = jsonb_typeof(f.value)
                           or (d.s ->> 'type' = 'integer' and jsonb_typeof(f.value) = 'number' and f.value::text ~ '^-?[0-9]+$')))
                      or (d.s ? 'enum' and not (d.s -> 'enum') @> jsonb_build_array(f.value))
                      or (jsonb_typeof(f.value) = 'string'
                          and (length(f.value #>> '{}') not between coalesce((d.s ->> 'minLength')::int, 0)
                                                                and coalesce((d.s ->> 'maxLength')::int, 2147483647)
                               or (d.s ? 'pattern' and (f.value #>> '{}') !~ (d.s ->> 'pattern'))))
                      or (jsonb_typeof(f.value) = 'number'
                          and ((f.value #>> '{}')::numeric < (d.s ->> 'minimum')::numeric
                               or (f.value #>> '{}')::numeric > (d.s ->> 'maximum')::numeric))
                    end));
end $$;
comment on function private.json_schema_flat_valid(jsonb, jsonb) is
  'Whether every element of an array is certainly valid against a flat object schema (one statement); false: ask json_schema_error.';
