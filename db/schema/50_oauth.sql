-- OAuth: the providers that MCP servers' tools authenticate with, each user's connections to
-- them (tokens only in Vault, referenced here by secret id), and which agents may use which
-- connection with which scopes, until when. A token refresh is single-flight: at most one
-- refresher per connection holds a lease that expires (private.oauth_refresh_leases).
-- The protocol and the point-in-time query are described in db/OAUTH.md.

-- An endpoint a token may be sent to: https, or http on the loopback interface only (a local
-- provider in development and tests, as RFC 8252 allows for native clients).
create function private.is_oauth_endpoint(p_url text) returns boolean
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select p_url ~ '^https://[^/?#[:space:]]+(/[^#[:space:]]*)?$'
      or p_url ~ '^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?(/[^#[:space:]]*)?$'
$$;
comment on function private.is_oauth_endpoint(text) is 'Whether a URL may serve as an OAuth endpoint: https, or http on loopback.';

-- Scopes as a set: trimmed, without empties or duplicates, sorted (so equal sets compare equal).
create function private.normalize_scopes(p_scopes text[]) returns text[]
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(array_agg(distinct btrim(s) order by btrim(s)), '{}')
    from unnest(p_scopes) s
   where btrim(s) <> ''
$$;
comment on function private.normalize_scopes(text[]) is 'A scope list as a sorted set: trimmed, no empty strings, no duplicates.';
-- Check constraints run with the writer's rights: service_role may write providers.
grant execute on function private.is_oauth_endpoint(text), private.normalize_scopes(text[]) to authenticated, service_role;

-- Trigger: a row that owns Vault secrets takes them along when it is deleted, whether by an
-- RPC or by the cascade from a deleted user, organization or toolbox. tg_argv names the
-- columns that hold secret ids.
create function private.delete_row_secrets() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  delete from vault.secrets s
   where s.id in (select (to_jsonb(old) ->> c)::uuid from unnest(tg_argv) c);
  return old;
end $$;
comment on function private.delete_row_secrets() is 'Trigger: deletes the Vault secrets whose ids are in the deleted row''s columns tg_argv.';

create table public.oauth_providers (
  id uuid primary key default gen_random_uuid(),
  name text not null unique check (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  display_name text not null check (length(btrim(display_name)) between 1 and 100),
  authorization_endpoint text not null check (private.is_oauth_endpoint(authorization_endpoint)),
  token_endpoint text not null check (private.is_oauth_endpoint(token_endpoint)),
  revocation_endpoint text check (revocation_endpoint is null or private.is_oauth_endpoint(revocation_endpoint)),
  default_scopes text[] not null default '{}',
  scope_separator text not null default ' ' check (scope_separator in (' ', ',')),
  supports_pkce boolean not null default true,
  authorize_params jsonb not null default '{}' check (jsonb_typeof(authorize_params) = 'object'),
  client_id text check (client_id is null or length(client_id) between 1 and 500),
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.oauth_providers is
  'OAuth 2.0 providers: endpoints, default scopes, PKCE support, the platform''s public client id. Client secrets stay in the runtime''s environment.';
comment on column public.oauth_providers.authorize_params is
  'Extra query parameters of the authorization request (e.g. Google''s access_type=offline, needed for a refresh token).';
comment on column public.oauth_providers.scope_separator is 'How the provider joins scopes in the authorization request (Slack: comma).';

create trigger oauth_providers_touch before update on public.oauth_providers
  for each row execute function private.touch_updated_at();
alter table public.oauth_providers enable row level security;

-- The four providers of the specification, with their documented endpoints. PKCE (S256):
-- Google, Microsoft and Slack support it; GitHub does since July 2025.
insert into public.oauth_providers (name, display_name, authorization_endpoint, token_endpoint, revocation_endpoint,
                                    default_scopes, scope_separator, supports_pkce, authorize_params) values
  ('github', 'GitHub', 'https://github.com/login/oauth/authorize', 'https://github.com/login/oauth/access_token', null,
   '{repo,read:user}', ' ', true, '{}'),
  ('google', 'Google', 'https://accounts.google.com/o/oauth2/v2/auth', 'https://oauth2.googleapis.com/token',
   'https://oauth2.googleapis.com/revoke', '{openid,email,profile}', ' ', true,
   '{"access_type": "offline", "prompt": "consent"}'),
  ('microsoft', 'Microsoft', 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize',
   'https://login.microsoftonline.com/common/oauth2/v2.0/token', null,
   '{openid,profile,email,offline_access,User.Read}', ' ', true, '{}'),
  ('slack', 'Slack', 'https://slack.com/oauth/v2/authorize', 'https://slack.com/api/oauth.v2.access',
   'https://slack.com/api/auth.revoke', '{channels:read,chat:write,users:read}', ',', true, '{}');

create type public.oauth_connection_status as enum ('active', 'expired', 'revoked', 'error', 'refresh_required');
comment on type public.oauth_connection_status is
  'active: usable until expires_at; expired: a refresh is needed; refresh_required: the last refresh failed, retry after refresh_retry_at; error: the provider refused the refresh token, reconnect; revoked: tokens deleted.';

create table public.user_oauth_connections (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  provider_id uuid not null references public.oauth_providers (id) on delete restrict,
  provider_account_id text not null default '' check (length(provider_account_id) <= 200),
  account_label text not null default '' check (length(account_label) <= 200),
  access_token_secret_id uuid,
  refresh_token_secret_id uuid,
  token_type text not null default 'Bearer' check (length(token_type) between 1 and 50),
  scopes text[] not null default '{}',
  expires_at timestamptz,
  status public.oauth_connection_status not null default 'active',
  last_refreshed_at timestamptz,
  refresh_failures integer not null default 0 check (refresh_failures >= 0),
  refresh_retry_at timestamptz,
  last_error text,
  revoked_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint live_holds_access_token check ((status = 'revoked') = (access_token_secret_id is null)),
  constraint revoked_holds_no_refresh_token check (status <> 'revoked' or refresh_token_secret_id is null),
  constraint revoked_at_iff_revoked check ((status = 'revoked') = (revoked_at is not null))
);
comment on table public.user_oauth_connections is
  'A user''s OAuth connection to a provider account: scopes granted, expiry, status. Tokens live only in Vault (secret ids here).';
comment on column public.user_oauth_connections.access_token_secret_id is 'Vault secret holding the access token; null once revoked.';
comment on column public.user_oauth_connections.refresh_token_secret_id is
  'Vault secret holding the refresh token; kept when a refresh fails, replaced when the provider rotates it.';
-- One live connection per user and provider account; a reconnect updates it in place.
create unique index user_oauth_connections_live_idx on public.user_oauth_connections (user_id, provider_id, provider_account_id)
  where status <> 'revoked';
create index user_oauth_connections_user_idx on public.user_oauth_connections (user_id, status);
create index user_oauth_connections_provider_idx on public.user_oauth_connections (provider_id);

create trigger user_oauth_connections_touch before update on public.user_oauth_connections
  for each row execute function private.touch_updated_at();
-- Audited: creation, deletion and every status change (not each routine token refresh).
create trigger user_oauth_connections_audit after insert or delete on public.user_oauth_connections
  for each row execute function private.audit_row_change('oauth_connection');
create trigger user_oauth_connections_audit_status after update on public.user_oauth_connections
  for each row when (old.status is distinct from new.status)
  execute function private.audit_row_change('oauth_connection');
create trigger user_oauth_connections_delete_secrets after delete on public.user_oauth_connections
  for each row execute function private.delete_row_secrets('access_token_secret_id', 'refresh_token_secret_id');
alter table public.user_oauth_connections enable row level security;

-- The single-flight refresh lease of a connection: who refreshes it now, until when. Private:
-- a lease id is a capability, handed only to the refresher that won it.
create table private.oauth_refresh_leases (
  connection_id uuid primary key references public.user_oauth_connections (id) on delete cascade,
  lease_id uuid not null unique,
  holder_role text not null,
  holder_id uuid,
  acquired_at timestamptz not null default clock_timestamp(),
  expires_at timestamptz not null,
  check (expires_at > acquired_at)
);
comment on table private.oauth_refresh_leases is
  'At most one refresh lease per OAuth connection; an expired lease may be taken over, and then its holder''s completion is refused.';
revoke all on private.oauth_refresh_leases from public;

create table public.agent_oauth_permissions (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  agent_id uuid not null,
  connection_id uuid not null references public.user_oauth_connections (id) on delete cascade,
  scopes text[] not null check (cardinality(scopes) > 0),
  expires_at timestamptz,
  is_active boolean not null default true,
  usage_count bigint not null default 0 check (usage_count >= 0),
  last_used_at timestamptz,
  granted_by uuid references auth.users (id) on delete set null,
  granted_at timestamptz not null default now(),
  revoked_by uuid references auth.users (id) on delete set null,
  revoked_at timestamptz,
  revoke_reason text,
  updated_at timestamptz not null default now(),
  foreign key (agent_id, organization_id) references public.agents (id, organization_id) on delete cascade,
  constraint revoked_after_granted check (revoked_at is null or revoked_at >= granted_at),
  constraint expires_after_granted check (expires_at is null or expires_at > granted_at),
  constraint inactive_iff_revoked check (is_active = (revoked_at is null))
);
comment on table public.agent_oauth_permissions is
  'Which agent may use which of its owner''s OAuth connections, with which scopes (a subset of the connection''s), until when; usage counted. Never changed but to count use or revoke once.';
create unique index agent_oauth_permissions_live_idx on public.agent_oauth_permissions (agent_id, connection_id)
  where revoked_at is null;
create index agent_oauth_permissions_agent_org_idx on public.agent_oauth_permissions (agent_id, organization_id);
create index agent_oauth_permissions_connection_idx on public.agent_oauth_permissions (connection_id, revoked_at);
create index agent_oauth_permissions_org_idx on public.agent_oauth_permissions (organization_id);
create index agent_oauth_permissions_granted_by_idx on public.agent_oauth_permissions (granted_by);
create index agent_oauth_permissions_revoked_by_idx on public.agent_oauth_permissions (revoked_by);

-- A permission lends a connection only to its owner's agents, and only scopes it holds,
-- whatever path writes the row (an RPC, service_role, psql).
create function private.oauth_permission_before_insert() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_connection public.user_oauth_connections;
  v_agent_owner uuid;
begin
  select c.* into v_connection from public.user_oauth_connections c where c.id = new.connection_id;
  select a.user_id into v_agent_owner from public.agents a where a.id = new.agent_id;
  if v_connection.user_id is distinct from v_agent_owner then
    raise exception using errcode = '42501', message = 'an OAuth connection can be lent only to its owner''s agents',
      hint = 'the agent''s owner must connect their own account';
  end if;
  if v_connection.status = 'revoked' then
    raise exception using errcode = '55000', message = 'the OAuth connection is revoked', hint = 'reconnect the account first';
  end if;
  new.scopes := private.normalize_scopes(new.scopes);
  if cardinality(new.scopes) = 0 or not new.scopes <@ v_connection.scopes then
    raise exception using errcode = '22023', message = 'the scopes must be a non-empty subset of the connection''s scopes',
      hint = format('the connection holds %s', v_connection.scopes);
  end if;
  return new;
end $$;
comment on function private.oauth_permission_before_insert() is
  'Trigger: an agent OAuth permission must lend its owner''s live connection and a subset of its scopes.';

create trigger agent_oauth_permissions_check before insert on public.agent_oauth_permissions
  for each row execute function private.oauth_permission_before_insert();
-- A permission is history: only its usage counters and, once, its revocation may change.
create trigger agent_oauth_permissions_history before update on public.agent_oauth_permissions
  for each row execute function private.refuse_history_change('an OAuth permission', 'revoke it and grant again: history keeps both',
    '{usage_count,last_used_at,revoked_at,revoked_by,revoke_reason,is_active,updated_at}', '{usage_count,last_used_at,updated_at}');
create trigger agent_oauth_permissions_touch before update on public.agent_oauth_permissions
  for each row execute function private.touch_updated_at();
-- Audited: grant, revocation, deletion; usage counting is not an audit event.
create trigger agent_oauth_permissions_audit after insert or delete on public.agent_oauth_permissions
  for each row execute function private.audit_row_change('oauth_grant');
create trigger agent_oauth_permissions_audit_revoke after update on public.agent_oauth_permissions
  for each row when (old.revoked_at is distinct from new.revoked_at)
  execute function private.audit_row_change('oauth_grant');
alter table public.agent_oauth_permissions enable row level security;
