-- OAuth sign-in API (authorization code + PKCE): a signed-in user starts a flow for a provider
-- and gets what the authorization request needs; the callback, in the same user's session,
-- consumes the flow once (right state, not expired, same redirect URI) and gets the code
-- verifier for the token exchange; the tokens are then stored with store_user_oauth_connection.
-- Disconnecting hands the owner what the provider's revocation endpoint needs.

create function public.begin_oauth_authorization(
  p_provider text,
  p_redirect_uri text,
  p_scopes text[] default null,
  p_ttl_seconds integer default 600
) returns table (
  state text, code_challenge text, code_challenge_method text, authorization_endpoint text, client_id text,
  scope text, authorize_params jsonb, redirect_uri text, expires_at timestamptz
)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_user uuid := auth.uid();
  v_provider public.oauth_providers;
  v_state text := private.base64url(extensions.gen_random_bytes(32));
  v_verifier text := private.base64url(extensions.gen_random_bytes(48));
  v_scopes text[];
  v_expires timestamptz;
begin
  if v_user is null then
    raise exception using errcode = '42501', message = 'sign in to connect an account', hint = 'call it with a user''s session';
  end if;
  select p.* into v_provider from public.oauth_providers p where p.name = p_provider and p.is_active;
  if not found then
    raise exception using errcode = 'P0002', message = format('OAuth provider %L not found', p_provider);
  end if;
  if not v_provider.supports_pkce or v_provider.client_id is null then
    raise exception using errcode = '55000', message = format('OAuth provider %L is not set up for sign-in', p_provider),
      hint = 'the platform sets oauth_providers.client_id (and the provider must support PKCE)';
  end if;
  if p_redirect_uri is null or not private.is_oauth_endpoint(p_redirect_uri) or p_redirect_uri like '%#%' then
    raise exception using errcode = '22023', message = 'the redirect URI must be an https URL (http only on loopback), without a fragment';
  end if;
  if p_ttl_seconds is null or p_ttl_seconds not between 30 and 3600 then
    raise exception using errcode = '22023', message = 'p_ttl_seconds must be between 30 and 3600';
  end if;
  v_scopes := private.normalize_scopes(coalesce(p_scopes, v_provider.default_scopes));
  v_expires := now() + make_interval(secs => p_ttl_seconds);
  -- The user's finished and expired flows are of no further use.
  delete from private.oauth_authorization_flows f
   where f.user_id = v_user and (f.expires_at <= now() or f.consumed_at is not null);
  insert into private.oauth_authorization_flows (state_sha256, user_id, provider_id, redirect_uri, scopes, code_verifier, expires_at)
  values (private.sha256_hex(v_state), v_user, v_provider.id, p_redirect_uri, v_scopes, v_verifier, v_expires);
  return query select v_state, private.base64url(private.sha256(v_verifier)), 'S256'::text,
                      v_provider.authorization_endpoint, v_provider.client_id,
                      array_to_string(v_scopes, v_provider.scope_separator), v_provider.authorize_params, p_redirect_uri, v_expires;
end $$;
comment on function public.begin_oauth_authorization(text, text, text[], integer) is
  'Starts an OAuth sign-in (authorization code + PKCE S256) for the caller: keeps state and code verifier until they expire; returns what the authorization request needs.';

create function public.consume_oauth_authorization(p_state text, p_redirect_uri text)
returns table (provider text, token_endpoint text, client_id text, code_verifier text, redirect_uri text, scopes text[])
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_flow private.oauth_authorization_flows;
begin
  select f.* into v_flow from private.oauth_authorization_flows f
   where f.state_sha256 = private.sha256_hex(coalesce(p_state, '')) for update;
  if not found then
    raise exception using errcode = 'P0002', message = 'unknown OAuth state', hint = 'start the sign-in again';
  end if;
  if not private.is_self(v_flow.user_id) then
    raise exception using errcode = '42501', message = 'this sign-in was started by another user';
  end if;
  if v_flow.consumed_at is not null then
    raise exception using errcode = '55000', message = 'this OAuth state was already used', hint = 'start the sign-in again';
  end if;
  if v_flow.expires_at <= now() then
    raise exception using errcode = '55000', message = 'this OAuth sign-in expired', hint = 'start the sign-in again';
  end if;
  if p_redirect_uri is distinct from v_flow.redirect_uri then
    raise exception using errcode = '42501', message = 'the redirect URI differs from the one the sign-in started with';
  end if;
  update private.oauth_authorization_flows f set consumed_at = now() where f.id = v_flow.id;
  return query select p.name, p.token_endpoint, p.client_id, v_flow.code_verifier, v_flow.redirect_uri, v_flow.scopes
                 from public.oauth_providers p where p.id = v_flow.provider_id;
end $$;
comment on function public.consume_oauth_authorization(text, text) is
  'The callback of an OAuth sign-in, in the session that started it: consumes the state once (unknown P0002, other user or other redirect URI 42501, used or expired 55000); returns the code verifier and token endpoint.';

create function public.begin_oauth_disconnect(p_connection_id uuid)
returns table (provider text, revocation_endpoint text, client_id text, token text, token_type_hint text)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_connection public.user_oauth_connections := private.require_connection_owner(p_connection_id);
begin
  if v_connection.status = 'revoked' then
    raise exception using errcode = '55000', message = 'the OAuth connection is already revoked';
  end if;
  -- The refresh token, where there is one: revoking it ends the access tokens issued with it (RFC 7009 §2.1).
  return query
    select p.name, p.revocation_endpoint, p.client_id,
           case when p.revocation_endpoint is not null
                then private.vault_read(coalesce(v_connection.refresh_token_secret_id, v_connection.access_token_secret_id)) end,
           case when v_connection.refresh_token_secret_id is not null then 'refresh_token' else 'access_token' end
      from public.oauth_providers p where p.id = v_connection.provider_id;
end $$;
comment on function public.begin_oauth_disconnect(uuid) is
  'For the owner of an OAuth connection about to disconnect it: the provider''s revocation endpoint (null when it has none) and the token to revoke there.';

revoke execute on function public.begin_oauth_authorization(text, text, text[], integer),
  public.consume_oauth_authorization(text, text), public.begin_oauth_disconnect(uuid) from public, anon;
grant execute on function public.begin_oauth_authorization(text, text, text[], integer),
  public.consume_oauth_authorization(text, text), public.begin_oauth_disconnect(uuid) to authenticated;
