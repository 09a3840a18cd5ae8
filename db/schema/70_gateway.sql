-- Gateway: agent API keys, the credential an agent runtime presents to the agent MCP gateway
-- (client/src/gateway). A key is shown once, when created; the database keeps only its sha256
-- and a short visible prefix (to tell keys apart in a list). A key belongs to one agent, may
-- expire, records when it was last used, and is revoked once, audited like a grant.

create table public.agent_api_keys (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  agent_id uuid not null,
  name text not null check (length(name) between 1 and 100),
  -- 'mcpk_' and 12 hex characters: the key's first 17 characters, unique, safe to show.
  prefix text not null unique check (prefix ~ '^mcpk_[0-9a-f]{12}$'),
  key_sha256 bytea not null unique check (length(key_sha256) = 32),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  last_used_at timestamptz,
  revoked_by uuid references auth.users (id) on delete set null,
  revoked_at timestamptz,
  revoke_reason text,
  foreign key (agent_id, organization_id) references public.agents (id, organization_id) on delete cascade,
  constraint expires_after_created check (expires_at is null or expires_at > created_at),
  constraint revoked_after_created check (revoked_at is null or revoked_at >= created_at)
);
comment on table public.agent_api_keys is
  'API keys of agents for the MCP gateway: sha256 and visible prefix only, expiry, last use, revocation (audited).';
comment on column public.agent_api_keys.key_sha256 is
  'sha256 of the whole key. Keys carry 256 random bits, so a fast hash is enough; the key itself is never stored.';
comment on column public.agent_api_keys.last_used_at is
  'When the gateway last accepted the key, to within 10 seconds (written at most that often).';
create index agent_api_keys_agent_org_idx on public.agent_api_keys (agent_id, organization_id);
create index agent_api_keys_org_idx on public.agent_api_keys (organization_id);
create index agent_api_keys_created_by_idx on public.agent_api_keys (created_by);
create index agent_api_keys_revoked_by_idx on public.agent_api_keys (revoked_by);

-- A key is history: only its last use may move, and it may be revoked, once.
create trigger agent_api_keys_history before update on public.agent_api_keys
  for each row execute function private.refuse_history_change('an API key', 'revoke it and create another',
    '{revoked_at,revoked_by,revoke_reason,last_used_at}', '{revoked_by,revoke_reason,last_used_at}');
-- Audited like grants (creation, revocation with its reason, deletion), without the hash and without last use.
create trigger agent_api_keys_audit_insert_delete after insert or delete on public.agent_api_keys
  for each row execute function private.audit_row_change('agent_api_key', '{key_sha256,last_used_at}');
create trigger agent_api_keys_audit_revoke after update of revoked_at on public.agent_api_keys
  for each row execute function private.audit_row_change('agent_api_key', '{key_sha256,last_used_at}', 'revoke_reason');

alter table public.agent_api_keys enable row level security;

-- The gateway caches who a credential stands for and the tool calls it allowed (client/src/
-- gateway/cache.ts). Every change that can take a permission away is announced on the channel
-- `mcp_gateway` when it commits, and a gateway drops everything it cached. What can take a
-- permission away: a key revoked or deleted, an agent deactivated, moved or deleted, a member
-- removed or demoted, a grant changed or revoked, a server's state, manifest or endpoint
-- changed. A notification carries the table's name only; anyone who may NOTIFY can at worst
-- make gateways ask the database again.
create function private.notify_gateway() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pg_catalog.pg_notify('mcp_gateway', tg_table_name);
  return null;
end $$;
comment on function private.notify_gateway() is
  'Trigger (per statement): tells the gateways on channel mcp_gateway that what they cached may no longer hold.';

create trigger agent_api_keys_notify_gateway after delete or update of revoked_at on public.agent_api_keys
  for each statement execute function private.notify_gateway();
create trigger agents_notify_gateway after delete or update of is_active, user_id, organization_id on public.agents
  for each statement execute function private.notify_gateway();
create trigger organization_members_notify_gateway after insert or update or delete on public.organization_members
  for each statement execute function private.notify_gateway();
create trigger agent_mcp_server_access_notify_gateway after insert or update or delete on public.agent_mcp_server_access
  for each statement execute function private.notify_gateway();
create trigger account_tool_instances_notify_gateway
  after delete or update of status, pinned_manifest, endpoint_url, organization_id on public.account_tool_instances
  for each statement execute function private.notify_gateway();
