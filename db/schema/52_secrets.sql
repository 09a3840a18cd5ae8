-- Secrets: what users and organizations keep in Vault through the hardened create_vault_secret,
-- get_secret and delete_vault_secret (each secret has exactly one owner, recorded here), and the
-- versioned credentials of MCP servers, rotated through DTMA: a new version stays pending, the
-- old one current, until DTMA confirms (rotate_mcp_credentials, db/functions/secrets.sql).

create table public.vault_secret_owners (
  id uuid primary key,
  owner_user_id uuid references auth.users (id) on delete cascade,
  organization_id uuid references public.organizations (id) on delete cascade,
  name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$'),
  description text not null default '' check (length(description) <= 1000),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  constraint one_owner check (num_nonnulls(owner_user_id, organization_id) = 1)
);
comment on table public.vault_secret_owners is
  'Owner (a user or an organization) of each secret created through create_vault_secret; id is the Vault secret id. The value is only in Vault.';
comment on column public.vault_secret_owners.name is
  'The owner''s name for it, unique per owner; Vault stores it as user/<id>/<name> or org/<id>/<name>, so owners never collide.';
create unique index vault_secret_owners_user_name_idx on public.vault_secret_owners (owner_user_id, name) where owner_user_id is not null;
create unique index vault_secret_owners_org_name_idx on public.vault_secret_owners (organization_id, name) where organization_id is not null;
create index vault_secret_owners_created_by_idx on public.vault_secret_owners (created_by);

-- The Vault secret goes with its owner row, whether the row is deleted by delete_vault_secret or
-- by the cascade from a deleted user or organization.
create trigger vault_secret_owners_delete_secret after delete on public.vault_secret_owners
  for each row execute function private.delete_row_secrets('id');
create trigger vault_secret_owners_audit after insert or delete on public.vault_secret_owners
  for each row execute function private.audit_row_change('vault_secret');
alter table public.vault_secret_owners enable row level security;

create type public.mcp_credential_state as enum ('pending', 'current', 'superseded', 'failed');
comment on type public.mcp_credential_state is
  'pending: sent to DTMA, not confirmed; current: in use; superseded: replaced (secret deleted); failed: DTMA did not confirm (secret deleted).';

create table public.mcp_credential_versions (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  toolbox_id uuid not null,
  server_instance_id uuid,
  credential_name text not null check (credential_name ~ '^[A-Z_][A-Z0-9_]{0,127}$'),
  version integer not null check (version > 0),
  secret_id uuid,
  state public.mcp_credential_state not null default 'pending',
  confirmations_pending integer not null default 0 check (confirmations_pending >= 0),
  last_error text,
  reason text,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  foreign key (toolbox_id, organization_id) references public.account_tool_environments (id, organization_id) on delete cascade,
  foreign key (server_instance_id, organization_id)
    references public.account_tool_instances (id, organization_id) on delete cascade,
  constraint secret_held_while_in_use check ((state in ('pending', 'current')) = (secret_id is not null)),
  constraint completed_unless_pending check ((state = 'pending') = (completed_at is null))
);
comment on table public.mcp_credential_versions is
  'Versions of an MCP server''s (or a whole toolbox''s) credential, an environment variable whose value is in Vault: at most one current and one pending.';
comment on column public.mcp_credential_versions.server_instance_id is
  'The server the credential belongs to; null: every server of the toolbox.';
comment on column public.mcp_credential_versions.confirmations_pending is
  'DTMA confirmations (POST /mcp/credentials/refresh/:name) still awaited before this version becomes current.';
create unique index mcp_credential_versions_version_idx on public.mcp_credential_versions
  (toolbox_id, coalesce(server_instance_id, '00000000-0000-0000-0000-000000000000'::uuid), credential_name, version);
create unique index mcp_credential_versions_current_idx on public.mcp_credential_versions
  (toolbox_id, coalesce(server_instance_id, '00000000-0000-0000-0000-000000000000'::uuid), credential_name) where state = 'current';
create unique index mcp_credential_versions_pending_idx on public.mcp_credential_versions
  (toolbox_id, coalesce(server_instance_id, '00000000-0000-0000-0000-000000000000'::uuid), credential_name) where state = 'pending';
create index mcp_credential_versions_toolbox_org_idx on public.mcp_credential_versions (toolbox_id, organization_id);
create index mcp_credential_versions_instance_org_idx on public.mcp_credential_versions (server_instance_id, organization_id);
create index mcp_credential_versions_org_idx on public.mcp_credential_versions (organization_id, created_at desc);
create index mcp_credential_versions_created_by_idx on public.mcp_credential_versions (created_by);

-- Every rotation step is audited: created (pending), confirmed (current), superseded, failed.
create trigger mcp_credential_versions_audit after insert or delete on public.mcp_credential_versions
  for each row execute function private.audit_row_change('mcp_credential');
create trigger mcp_credential_versions_audit_state after update on public.mcp_credential_versions
  for each row when (old.state is distinct from new.state)
  execute function private.audit_row_change('mcp_credential');
create trigger mcp_credential_versions_delete_secret after delete on public.mcp_credential_versions
  for each row execute function private.delete_row_secrets('secret_id');
alter table public.mcp_credential_versions enable row level security;

-- The Vault secret holding each secret field of an instance's configuration. Private: no API
-- role reads it; the values are put back only into the DTMA request as it is sent.
create table private.instance_secrets (
  instance_id uuid not null,
  path text[] not null,
  secret_id uuid not null,
  updated_at timestamptz not null default now(),
  primary key (instance_id, path)
);
comment on table private.instance_secrets is
  'Vault secret ids of instances'' secret configuration fields (value stored as JSON text). Rows leave with their instance.';
revoke all on private.instance_secrets from public;
create trigger instance_secrets_delete_secret after delete on private.instance_secrets
  for each row execute function private.delete_row_secrets('secret_id');

-- The OAuth connections an MCP server instance uses: for each provider its catalog entry reads a
-- token of (mcp_server_catalog.oauth_token_env), one connection of the user who declared it.
-- Deploy, restart and refresh send the connection's current access token from Vault.
create table public.mcp_server_oauth_connections (
  server_instance_id uuid not null,
  organization_id uuid not null,
  provider text not null,
  connection_id uuid not null references public.user_oauth_connections (id) on delete cascade,
  declared_by uuid references auth.users (id) on delete set null,
  declared_at timestamptz not null default now(),
  primary key (server_instance_id, provider),
  foreign key (server_instance_id, organization_id)
    references public.account_tool_instances (id, organization_id) on delete cascade
);
comment on table public.mcp_server_oauth_connections is
  'Which OAuth connection (of the user who declared it) an MCP server instance uses for each provider; the token itself stays in Vault.';
create index mcp_server_oauth_connections_instance_org_idx on public.mcp_server_oauth_connections (server_instance_id, organization_id);
create index mcp_server_oauth_connections_connection_idx on public.mcp_server_oauth_connections (connection_id);
create index mcp_server_oauth_connections_org_idx on public.mcp_server_oauth_connections (organization_id);
create index mcp_server_oauth_connections_declared_by_idx on public.mcp_server_oauth_connections (declared_by);
alter table public.mcp_server_oauth_connections enable row level security;
