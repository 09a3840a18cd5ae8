-- OAuth API: a user stores and revokes their connections (tokens straight into Vault), lends
-- one to their agents with a subset of its scopes, and an agent's runtime obtains a usable
-- token. A token is returned only to the runtime of the agent's owner (their session) or to
-- service_role; an expired one is refreshed single-flight through begin/complete/fail_oauth_refresh
-- (the HTTP exchange itself is client/src/oauth/refresh.ts). See db/OAUTH.md.
-- Longer than 400 lines: connections, the permissions that lend them and the single-flight refresh
-- that keeps their tokens change together (db/OAUTH.md tells them as one protocol).

-- Writes a connection's token (p_kind: access_token or refresh_token) into Vault: a new secret
-- when there is none yet, else a new value for it. No value keeps what is there: a provider that
-- sends no new refresh token (Google on re-consent, most refreshes) leaves the old one in place.
create function private.oauth_put_secret(p_secret_id uuid, p_value text, p_connection_id uuid, p_kind text) returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if coalesce(p_value, '') = '' then
    return p_secret_id;
  end if;
  if p_secret_id is null then
    return vault.create_secret(p_value, format('oauth/%s/%s', p_connection_id, p_kind), 'OAuth token (user_oauth_connections)');
  end if;
  perform vault.update_secret(p_secret_id, p_value);
  return p_secret_id;
end $$;
comment on function private.oauth_put_secret(uuid, text, uuid, text) is
  'Stores a connection''s token in Vault (creates or updates the secret; no value keeps the old one); returns its id.';

-- What a provider's token answer must hold, at sign-in and at refresh alike.
create function private.require_token_answer(p_access_token text, p_expires_in integer) returns void
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if coalesce(p_access_token, '') = '' then
    raise exception using errcode = '22023', message = 'an access token is required';
  end if;
  if p_expires_in is not null and p_expires_in < 0 then
    raise exception using errcode = '22023', message = 'p_expires_in must be zero or more seconds';
  end if;
end $$;
comment on function private.require_token_answer(text, integer) is
  'Raises 22023 unless the token answer has an access token and a non-negative expires_in.';

-- Whether the access token can be handed out: active and not about to expire. The margin
-- covers the time a caller needs to use it.
create function private.oauth_token_is_fresh(p_connection public.user_oauth_connections) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select p_connection.status = 'active'
     and (p_connection.expires_at is null or p_connection.expires_at > now() + interval '30 seconds')
$$;
comment on function private.oauth_token_is_fresh(public.user_oauth_connections) is
  'True when the connection is active and its access token is valid for at least 30 more seconds.';

create function public.store_user_oauth_connection(
  p_provider text,
  p_access_token text,
  p_refresh_token text default null,
  p_expires_in integer default null,
  p_scopes text[] default null,
  p_provider_account_id text default '',
  p_account_label text default '',
  p_token_type text default 'Bearer',
  p_user_id uuid default auth.uid()
) returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_provider public.oauth_providers;
  v_connection public.user_oauth_connections;
  v_id uuid;
  v_scopes text[];
begin
  perform private.require_self(p_user_id);
  select p.* into v_provider from public.oauth_providers p where p.name = p_provider and p.is_active;
  if not found then
    raise exception using errcode = 'P0002', message = format('OAuth provider %L not found', p_provider);
  end if;
  perform private.require_token_answer(p_access_token, p_expires_in);
  v_scopes := private.normalize_scopes(coalesce(p_scopes, v_provider.default_scopes));

  select c.* into v_connection from public.user_oauth_connections c
   where c.user_id = p_user_id and c.provider_id = v_provider.id
     and c.provider_account_id = coalesce(p_provider_account_id, '') and c.status <> 'revoked'
   for update;
  v_id := coalesce(v_connection.id, gen_random_uuid());
  if v_connection.id is null then
    insert into public.user_oauth_connections (id, user_id, provider_id, provider_account_id, account_label,
           access_token_secret_id, refresh_token_secret_id, token_type, scopes, expires_at)
    values (v_id, p_user_id, v_provider.id, coalesce(p_provider_account_id, ''), coalesce(p_account_label, ''),
            private.oauth_put_secret(null, p_access_token, v_id, 'access_token'),
            private.oauth_put_secret(null, p_refresh_token, v_id, 'refresh_token'),
            coalesce(p_token_type, 'Bearer'), v_scopes, now() + make_interval(secs => p_expires_in));
  else
    -- A reconnect: new tokens for the same account. A provider that sends no new refresh token
    -- (Google on re-consent) leaves the old one in place.
    delete from private.oauth_refresh_leases l where l.connection_id = v_id;
    update public.user_oauth_connections c
       set access_token_secret_id = private.oauth_put_secret(c.access_token_secret_id, p_access_token, v_id, 'access_token'),
           refresh_token_secret_id = private.oauth_put_secret(c.refresh_token_secret_id, p_refresh_token, v_id, 'refresh_token'),
           token_type = coalesce(p_token_type, 'Bearer'), scopes = v_scopes,
           expires_at = now() + make_interval(secs => p_expires_in), status = 'active',
           account_label = coalesce(nullif(p_account_label, ''), c.account_label),
           refresh_failures = 0, refresh_retry_at = null, last_error = null
     where c.id = v_id;
  end if;
  return v_id;
end $$;
comment on function public.store_user_oauth_connection(text, text, text, integer, text[], text, text, text, uuid) is
  'Stores the caller''s OAuth connection (tokens straight into Vault); a reconnect of the same account updates it. Returns its id.';

create function public.revoke_user_oauth_connection(p_connection_id uuid, p_reason text default null) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_connection public.user_oauth_connections := private.require_connection_owner(p_connection_id);
begin
  if v_connection.status = 'revoked' then
    return false;
  end if;
  perform private.set_audit_context(coalesce(p_reason, 'connection revoked'));
  update public.agent_oauth_permissions p
     set revoked_at = now(), revoked_by = auth.uid(), is_active = false, revoke_reason = 'the OAuth connection was revoked'
   where p.connection_id = p_connection_id and p.revoked_at is null;
  delete from private.oauth_refresh_leases l where l.connection_id = p_connection_id;
  update public.user_oauth_connections c
     set status = 'revoked', revoked_at = now(), access_token_secret_id = null, refresh_token_secret_id = null,
         last_error = null, refresh_retry_at = null
   where c.id = p_connection_id;
  delete from vault.secrets s where s.id in (v_connection.access_token_secret_id, v_connection.refresh_token_secret_id);
  perform private.set_audit_context(null);
  return true;
end $$;
comment on function public.revoke_user_oauth_connection(uuid, text) is
  'Revokes the caller''s OAuth connection: its tokens are deleted from Vault and every agent permission on it is revoked.';

create function public.get_user_oauth_connections(p_user_id uuid)
returns table (
  connection_id uuid, provider text, provider_display_name text, provider_account_id text, account_label text,
  scopes text[], status public.oauth_connection_status, expires_at timestamptz, last_refreshed_at timestamptz,
  last_error text, live_agent_permissions integer, created_at timestamptz
)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_self(p_user_id);
  return query
    select c.id, p.name, p.display_name, c.provider_account_id, c.account_label, c.scopes,
           case when c.status = 'active' and c.expires_at <= now() then 'expired'::public.oauth_connection_status
                else c.status end,
           c.expires_at, c.last_refreshed_at, c.last_error,
           (select count(*)::integer from public.agent_oauth_permissions g
             where g.connection_id = c.id and g.revoked_at is null and (g.expires_at is null or g.expires_at > now())),
           c.created_at
      from public.user_oauth_connections c
      join public.oauth_providers p on p.id = c.provider_id
     where c.user_id = p_user_id and c.status <> 'revoked'
     order by p.name, c.account_label, c.created_at;
end $$;
comment on function public.get_user_oauth_connections(uuid) is
  'The user''s live OAuth connections (no tokens): provider, account, scopes, effective status, expiry, agents using each.';

create function public.grant_agent_oauth_access(
  p_agent_id uuid,
  p_connection_id uuid,
  p_scopes text[],
  p_expires_at timestamptz default null
) returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_manager(p_agent_id);
  v_connection public.user_oauth_connections := private.require_connection_owner(p_connection_id);
  v_id uuid;
begin
  if p_expires_at is not null and p_expires_at <= now() then
    raise exception using errcode = '22023', message = 'p_expires_at must be in the future';
  end if;
  perform private.revoke_live_grants('public.agent_oauth_permissions', p_agent_id, 'connection_id', p_connection_id,
                                     'superseded by a new grant');
  -- The trigger checks that the agent is the connection owner's and the scopes a subset.
  insert into public.agent_oauth_permissions (organization_id, agent_id, connection_id, scopes, expires_at, granted_by)
  values (v_agent.organization_id, p_agent_id, v_connection.id, coalesce(p_scopes, '{}'), p_expires_at, auth.uid())
  returning id into v_id;
  return v_id;
end $$;
comment on function public.grant_agent_oauth_access(uuid, uuid, text[], timestamptz) is
  'The connection''s owner lends it to one of their agents with a subset of its scopes, until p_expires_at. Supersedes a live permission. Returns its id.';

create function public.revoke_agent_oauth_access(p_agent_id uuid, p_connection_id uuid, p_reason text default null)
returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- The connection's owner, or whoever manages the agent (its owner, an admin), may cut it off.
  if not private.owns_connection(p_connection_id) then
    perform private.require_agent_manager(p_agent_id);
  end if;
  return private.revoke_live_grants('public.agent_oauth_permissions', p_agent_id, 'connection_id', p_connection_id,
                                    coalesce(p_reason, 'revoked')) > 0;
end $$;
comment on function public.revoke_agent_oauth_access(uuid, uuid, text) is
  'Revokes the agent''s live permission on the OAuth connection, at once. False when there was none.';

create function public.get_agent_oauth_permissions(p_agent_id uuid)
returns table (
  permission_id uuid, connection_id uuid, provider text, provider_display_name text, account_label text,
  scopes text[], expires_at timestamptz, usage_count bigint, last_used_at timestamptz, granted_by uuid,
  granted_at timestamptz, state text
)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_agent_manager(p_agent_id);
  return query
    select g.id, c.id, p.name, p.display_name, c.account_label, g.scopes, g.expires_at, g.usage_count, g.last_used_at,
           g.granted_by, g.granted_at,
           -- A valid permission on a connection whose token needs a refresh (or failed one) says so.
           case when s.state <> 'valid' or c.status = 'active' then s.state else 'connection_' || c.status::text end
      from public.agent_oauth_permissions g
      join private.oauth_permission_states s on s.permission_id = g.id
      join public.user_oauth_connections c on c.id = g.connection_id
      join public.oauth_providers p on p.id = c.provider_id
     where g.agent_id = p_agent_id and g.revoked_at is null
     order by p.name, g.granted_at desc;
end $$;
comment on function public.get_agent_oauth_permissions(uuid) is
  'The agent''s unrevoked OAuth permissions (no tokens) with their scopes, expiry, usage and state (valid, expired, connection_<status>).';

create function public.record_agent_oauth_usage(p_agent_id uuid, p_connection_id uuid) returns bigint
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_runtime(p_agent_id);
  v_count bigint;
begin
  update public.agent_oauth_permissions g
     set usage_count = g.usage_count + 1, last_used_at = now()
   where g.agent_id = v_agent.id and g.connection_id = p_connection_id and g.revoked_at is null
     and exists (select from private.oauth_permission_states s where s.permission_id = g.id and s.state = 'valid')
  returning g.usage_count into v_count;
  if v_count is null then
    raise exception using errcode = '42501', message = 'the agent holds no live permission on this OAuth connection';
  end if;
  return v_count;
end $$;
comment on function public.record_agent_oauth_usage(uuid, uuid) is
  'Counts one use of an OAuth connection by the agent (its runtime only: owner session or service_role). Returns the new count.';

-- The token an agent's runtime may use now for (provider, scopes). status 'ok' carries it;
-- 'refresh_required' carries none: the caller refreshes (begin_oauth_refresh) and asks again.
create function public.get_agent_oauth_token(p_agent_id uuid, p_provider text, p_scopes text[] default '{}')
returns table (
  status text, access_token text, token_type text, expires_at timestamptz, connection_id uuid,
  permission_id uuid, scopes text[]
)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_agent public.agents := private.require_agent_runtime(p_agent_id);
  v_wanted text[] := private.normalize_scopes(coalesce(p_scopes, '{}'));
  v_grant public.agent_oauth_permissions;
  v_connection public.user_oauth_connections;
begin
  if not v_agent.is_active then
    raise exception using errcode = '55000', message = format('agent %s is inactive', p_agent_id);
  end if;
  select g.* into v_grant
    from public.agent_oauth_permissions g
    join public.user_oauth_connections c on c.id = g.connection_id
    join public.oauth_providers p on p.id = c.provider_id
   where g.agent_id = p_agent_id and p.name = p_provider and g.revoked_at is null
     and exists (select from private.oauth_permission_states s where s.permission_id = g.id and s.state = 'valid')
     and v_wanted <@ g.scopes and v_wanted <@ c.scopes
   order by g.granted_at desc
   limit 1;
  if not found then
    raise exception using errcode = '42501',
      message = format('agent %s holds no live %s permission covering scopes %s', p_agent_id, p_provider, v_wanted),
      hint = 'the agent''s owner grants one with grant_agent_oauth_access';
  end if;
  select c.* into v_connection from public.user_oauth_connections c where c.id = v_grant.connection_id;
  if v_connection.status = 'error' then
    raise exception using errcode = '55000', message = 'the OAuth connection needs to be reconnected',
      hint = coalesce(v_connection.last_error, 'the provider refused the refresh token');
  end if;
  if private.oauth_token_is_fresh(v_connection) then
    return query select 'ok'::text, private.vault_read(v_connection.access_token_secret_id), v_connection.token_type,
                        v_connection.expires_at, v_connection.id, v_grant.id, v_grant.scopes;
    return;
  end if;
  -- Re-checked by the update itself: a refresher may have completed since the read above.
  update public.user_oauth_connections c set status = 'expired'
   where c.id = v_connection.id and c.status = 'active' and c.expires_at <= now();
  return query select 'refresh_required'::text, null::text, v_connection.token_type, v_connection.expires_at,
                      v_connection.id, v_grant.id, v_grant.scopes;
end $$;
comment on function public.get_agent_oauth_token(uuid, text, text[]) is
  'For the agent''s runtime only: its usable access token for the provider and scopes (status ok), or status refresh_required.';

-- Single-flight refresh, step 1. Outcomes: 'lease' (the caller refreshes: refresh token, token
-- endpoint, client id, lease id), 'wait' (another holds a live lease until lease_expires_at),
-- 'fresh' (already refreshed: the access token), 'failed' (the last refresh failed: retry_at).
create function public.begin_oauth_refresh(p_connection_id uuid, p_lease_seconds integer default 30)
returns table (
  outcome text, lease_id uuid, lease_expires_at timestamptz, refresh_token text, token_endpoint text,
  client_id text, provider text, access_token text, expires_at timestamptz, retry_at timestamptz, last_error text
)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_connection public.user_oauth_connections := private.require_connection_owner(p_connection_id);
  v_provider public.oauth_providers;
  v_lease private.oauth_refresh_leases;
begin
  if p_lease_seconds is null or p_lease_seconds not between 1 and 300 then
    raise exception using errcode = '22023', message = 'p_lease_seconds must be between 1 and 300';
  end if;
  if v_connection.status in ('revoked', 'error') then
    raise exception using errcode = '55000', message = format('the OAuth connection is %s: reconnect it', v_connection.status),
      hint = coalesce(v_connection.last_error, 'store a new connection with store_user_oauth_connection');
  end if;
  if private.oauth_token_is_fresh(v_connection) then
    return query select 'fresh'::text, null::uuid, null::timestamptz, null::text, null::text, null::text, null::text,
                        private.vault_read(v_connection.access_token_secret_id), v_connection.expires_at,
                        null::timestamptz, null::text;
    return;
  end if;
  select l.* into v_lease from private.oauth_refresh_leases l where l.connection_id = p_connection_id;
  if v_lease.expires_at > clock_timestamp() then
    return query select 'wait'::text, null::uuid, v_lease.expires_at, null::text, null::text, null::text, null::text,
                        null::text, v_connection.expires_at, null::timestamptz, null::text;
    return;
  end if;
  if v_connection.status = 'refresh_required' and v_connection.refresh_retry_at > now() then
    return query select 'failed'::text, null::uuid, null::timestamptz, null::text, null::text, null::text, null::text,
                        null::text, v_connection.expires_at, v_connection.refresh_retry_at, v_connection.last_error;
    return;
  end if;
  if v_connection.refresh_token_secret_id is null then
    raise exception using errcode = '55000', message = 'the access token expired and there is no refresh token: reconnect',
      hint = 'store a new connection with store_user_oauth_connection';
  end if;
  select p.* into v_provider from public.oauth_providers p where p.id = v_connection.provider_id;
  -- No lease, or an expired one whose holder crashed or hangs: this caller takes over.
  insert into private.oauth_refresh_leases as l (connection_id, lease_id, holder_role, holder_id, acquired_at, expires_at)
  values (p_connection_id, gen_random_uuid(), private.caller_db_role(), auth.uid(), clock_timestamp(),
          clock_timestamp() + make_interval(secs => p_lease_seconds))
  on conflict (connection_id) do update
     set lease_id = excluded.lease_id, holder_role = excluded.holder_role, holder_id = excluded.holder_id,
         acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
  returning l.* into v_lease;
  return query select 'lease'::text, v_lease.lease_id, v_lease.expires_at,
                      private.vault_read(v_connection.refresh_token_secret_id), v_provider.token_endpoint,
                      v_provider.client_id, v_provider.name, null::text, v_connection.expires_at, null::timestamptz, null::text;
end $$;
comment on function public.begin_oauth_refresh(uuid, integer) is
  'Single-flight refresh: gives one caller a lease and the refresh token; others get wait, fresh (the new token) or failed (retry_at).';

-- The live lease with this id and its connection, locked; 55000 when it expired or was taken over.
create function private.take_oauth_lease(p_lease_id uuid) returns public.user_oauth_connections
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_lease private.oauth_refresh_leases;
  v_connection public.user_oauth_connections;
begin
  select l.* into v_lease from private.oauth_refresh_leases l where l.lease_id = p_lease_id;
  if not found then
    raise exception using errcode = '55000', message = 'the refresh lease is no longer held: it expired and was taken over',
      hint = 'discard this result; get the token again';
  end if;
  v_connection := private.require_connection_owner(v_lease.connection_id);
  -- Re-read under the connection's lock: a takeover may have just replaced the lease.
  select l.* into v_lease from private.oauth_refresh_leases l where l.lease_id = p_lease_id;
  if not found or v_lease.expires_at <= clock_timestamp() then
    raise exception using errcode = '55000', message = 'the refresh lease expired: another refresher may take over',
      hint = 'discard this result; get the token again';
  end if;
  delete from private.oauth_refresh_leases l where l.lease_id = p_lease_id;
  return v_connection;
end $$;
comment on function private.take_oauth_lease(uuid) is
  'Ends a live refresh lease and returns its locked connection; raises 55000 when the lease expired or was taken over.';

-- Single-flight refresh, step 2 (success): the new tokens go into Vault and the lease ends.
create function public.complete_oauth_refresh(
  p_lease_id uuid,
  p_access_token text,
  p_refresh_token text default null,
  p_expires_in integer default null,
  p_scopes text[] default null
) returns timestamptz
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_connection public.user_oauth_connections;
  v_expires_at timestamptz;
begin
  perform private.require_token_answer(p_access_token, p_expires_in);
  v_connection := private.take_oauth_lease(p_lease_id);
  v_expires_at := now() + make_interval(secs => p_expires_in);
  perform private.oauth_put_secret(v_connection.access_token_secret_id, p_access_token, v_connection.id, 'access_token');
  update public.user_oauth_connections c
     set refresh_token_secret_id = private.oauth_put_secret(c.refresh_token_secret_id, p_refresh_token, c.id, 'refresh_token'),
         expires_at = v_expires_at, status = 'active', last_refreshed_at = now(), refresh_failures = 0,
         refresh_retry_at = null, last_error = null,
         scopes = case when cardinality(private.normalize_scopes(p_scopes)) > 0 then private.normalize_scopes(p_scopes)
                       else c.scopes end
   where c.id = v_connection.id;
  return v_expires_at;
end $$;
comment on function public.complete_oauth_refresh(uuid, text, text, integer, text[]) is
  'Ends a refresh lease with the provider''s answer: new access token (and rotated refresh token) into Vault; returns the new expiry. 55000 if the lease was lost.';

-- Single-flight refresh, step 2 (failure): the old refresh token stays; refresh_required (or
-- error when the provider refused the refresh token for good) with a backoff before the next try.
create function public.fail_oauth_refresh(
  p_lease_id uuid,
  p_error text,
  p_retryable boolean default true,
  p_retry_after_seconds integer default null
) returns timestamptz
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_connection public.user_oauth_connections;
  v_retry_at timestamptz;
begin
  if p_retry_after_seconds is not null and p_retry_after_seconds not between 0 and 86400 then
    raise exception using errcode = '22023', message = 'p_retry_after_seconds must be between 0 and 86400';
  end if;
  v_connection := private.take_oauth_lease(p_lease_id);
  -- Exponential backoff by consecutive failures (1 s, 2 s, 4 s, ... at most 5 min) unless the
  -- provider said when to come back.
  v_retry_at := now() + make_interval(secs => coalesce(p_retry_after_seconds,
                                                      least(300, power(2, least(v_connection.refresh_failures, 10)))));
  update public.user_oauth_connections c
     set status = case when coalesce(p_retryable, true) then 'refresh_required' else 'error' end::public.oauth_connection_status,
         refresh_failures = c.refresh_failures + 1, refresh_retry_at = v_retry_at,
         last_error = left(coalesce(nullif(p_error, ''), 'refresh failed'), 1000)
   where c.id = v_connection.id;
  return v_retry_at;
end $$;
comment on function public.fail_oauth_refresh(uuid, text, boolean, integer) is
  'Ends a refresh lease after a provider error: refresh_required with a backoff (or error if not retryable); the old refresh token is kept. Returns when to retry.';

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.store_user_oauth_connection(text, text, text, integer, text[], text, text, text, uuid)',
    'public.revoke_user_oauth_connection(uuid, text)', 'public.get_user_oauth_connections(uuid)',
    'public.grant_agent_oauth_access(uuid, uuid, text[], timestamptz)', 'public.revoke_agent_oauth_access(uuid, uuid, text)',
    'public.get_agent_oauth_permissions(uuid)', 'public.record_agent_oauth_usage(uuid, uuid)',
    'public.get_agent_oauth_token(uuid, text, text[])', 'public.begin_oauth_refresh(uuid, integer)',
    'public.complete_oauth_refresh(uuid, text, text, integer, text[])', 'public.fail_oauth_refresh(uuid, text, boolean, integer)']
  loop
    execute format('revoke execute on function %s from public, anon', f);
    execute format('grant execute on function %s to authenticated, service_role', f);
  end loop;
end $$;
revoke execute on function private.oauth_put_secret(uuid, text, uuid, text), private.require_token_answer(text, integer),
  private.take_oauth_lease(uuid)
  from public, anon, authenticated, service_role;
