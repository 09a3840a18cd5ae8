-- OAuth sign-in: the authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636, OAuth 2.1).
-- Starting a flow keeps its state and code verifier here, bound to the user, the provider and
-- the redirect URI, until it expires; the callback consumes it once. Private: the code
-- verifier is a secret and the state a capability, so neither leaves through the API except
-- to the user who started the flow (db/functions/oauth_flow.sql).

create table private.oauth_authorization_flows (
  id uuid primary key default gen_random_uuid(),
  -- Only the state's sha256 is kept: a copy of this table does not let anyone finish a flow.
  state_sha256 text not null unique check (state_sha256 ~ '^[0-9a-f]{64}$'),
  user_id uuid not null references auth.users (id) on delete cascade,
  provider_id uuid not null references public.oauth_providers (id) on delete cascade,
  redirect_uri text not null check (private.is_oauth_endpoint(redirect_uri)),
  scopes text[] not null,
  code_verifier text not null check (code_verifier ~ '^[A-Za-z0-9._~-]{43,128}$'),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  consumed_at timestamptz,
  check (expires_at > created_at)
);
comment on table private.oauth_authorization_flows is
  'Pending OAuth authorization flows: state (as sha256), PKCE code verifier, user, provider, redirect URI, expiry; consumed once by the callback.';
create index oauth_authorization_flows_user_idx on private.oauth_authorization_flows (user_id, expires_at);
create index oauth_authorization_flows_provider_idx on private.oauth_authorization_flows (provider_id);
