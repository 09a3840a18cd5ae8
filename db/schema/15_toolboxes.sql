-- Toolboxes: hosts running DTMA, the agent that starts and stops MCP server containers.
-- The DTMA bearer token lives in Vault; the table holds only the secret's id.

create type public.toolbox_status as enum ('active', 'unresponsive', 'disabled');

create table public.account_tool_environments (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  name text not null check (length(btrim(name)) between 1 and 100),
  dtma_base_url text not null check (dtma_base_url ~ '^https?://[^/?#]+(/[^?#]*)?$' and dtma_base_url !~ '/$'),
  dtma_token_secret_id uuid not null,
  status public.toolbox_status not null default 'active',
  last_heartbeat_at timestamptz,
  last_error text,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (organization_id, name),
  unique (id, organization_id)
);
comment on table public.account_tool_environments is
  'Toolboxes: DTMA hosts of an organization. dtma_token_secret_id points into Vault; the token itself is never stored here.';
create index account_tool_environments_created_by_idx on public.account_tool_environments (created_by);
-- One toolbox per DTMA: two rows on one DTMA would each take the other's groups for orphans.
create unique index account_tool_environments_dtma_base_url_idx on public.account_tool_environments (lower(dtma_base_url));

create trigger account_tool_environments_touch before update on public.account_tool_environments
  for each row execute function private.touch_updated_at();
alter table public.account_tool_environments enable row level security;
