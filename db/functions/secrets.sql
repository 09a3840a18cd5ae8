-- Secrets API: the hardened Vault wrappers of the specification, each secret scoped to one owner
-- (a user, or an organization), and rotate_mcp_credentials: a new version of an MCP server's
-- credential that becomes current only when DTMA confirms it (POST /mcp/credentials/refresh/:name,
-- sent by the DTMA outbox, private.dtma_enqueue; the outcome arrives in private.dtma_on_credentials_refresh).

create function public.create_vault_secret(
  p_secret text,
  p_name text,
  p_description text default '',
  p_organization_id uuid default null
) returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_user uuid := auth.uid();
  v_id uuid;
begin
  if p_organization_id is not null then
    perform private.require_org_role(p_organization_id, 'admin');
    v_user := null;
  elsif v_user is null then
    raise exception using errcode = case when private.is_service_caller() then '22023' else '42501' end,
      message = 'a secret needs an owner: sign in, or give p_organization_id',
      hint = 'service_role creates organization secrets only';
  end if;
  if coalesce(p_secret, '') = '' or length(p_secret) > 65536 then
    raise exception using errcode = '22023', message = 'the secret must have 1 to 65536 characters';
  end if;
  if p_name is null or p_name !~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$' then
    raise exception using errcode = '22023', message = format('invalid secret name %L', p_name),
      hint = 'letters, digits, . _ / -; at most 200 characters';
  end if;
  if exists (select from public.vault_secret_owners o
              where o.name = p_name and (o.owner_user_id = v_user or o.organization_id = p_organization_id)) then
    raise exception using errcode = '23505', message = format('you already have a secret named %L', p_name),
      hint = 'delete it first, or choose another name';
  end if;
  -- The Vault name carries the owner: nobody can collide with, or overwrite, another's secret.
  v_id := vault.create_secret(p_secret,
                              case when v_user is not null then format('user/%s/%s', v_user, p_name)
                                   else format('org/%s/%s', p_organization_id, p_name) end,
                              coalesce(p_description, ''));
  insert into public.vault_secret_owners (id, owner_user_id, organization_id, name, description, created_by)
  values (v_id, v_user, p_organization_id, p_name, coalesce(p_description, ''), auth.uid());
  return v_id;
exception when unique_violation then
  raise exception using errcode = '23505', message = format('a secret named %L exists already', p_name),
    hint = 'delete it first, or choose another name';
end $$;
comment on function public.create_vault_secret(text, text, text, uuid) is
  'Stores a secret in Vault owned by the caller (or, for admins and service_role, by p_organization_id); never overwrites. Returns its id.';

create function public.get_secret(p_secret_id uuid) returns text
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_owner public.vault_secret_owners;
begin
  select o.* into v_owner from public.vault_secret_owners o where o.id = p_secret_id;
  -- A user's secret is read by that user's session; an organization's only by the platform's
  -- runtime (service_role): admins write them but do not read them back.
  if found and private.may_read_secret(v_owner.owner_user_id) then
    return private.vault_read(p_secret_id);
  end if;
  if not found and private.is_service_caller() then
    raise exception using errcode = 'P0002', message = format('secret %s not found', p_secret_id);
  end if;
  raise exception using errcode = '42501', message = format('not allowed to read secret %s', p_secret_id),
    hint = 'a secret is read only by its owner''s runtime';
end $$;
comment on function public.get_secret(uuid) is
  'The value of a secret created by create_vault_secret: a user''s for that user (or service_role), an organization''s for service_role only.';

create function public.delete_vault_secret(p_secret_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_owner public.vault_secret_owners;
begin
  select o.* into v_owner from public.vault_secret_owners o where o.id = p_secret_id for update;
  if not found then
    if private.is_service_caller() then
      return false;
    end if;
    raise exception using errcode = '42501', message = format('not allowed to delete secret %s', p_secret_id);
  end if;
  perform private.require_secret_manager(p_secret_id, v_owner.owner_user_id, v_owner.organization_id);
  -- The trigger on vault_secret_owners deletes the Vault secret with the row.
  delete from public.vault_secret_owners o where o.id = p_secret_id;
  return true;
end $$;
comment on function public.delete_vault_secret(uuid) is
  'Deletes a secret created by create_vault_secret (its owner; for an organization''s, an admin or service_role).';

-- The credentials a server runs with now, as environment variables: the toolbox's, overridden by
-- the server's own; with p_with_pending, a version awaiting DTMA's confirmation overrides the
-- current one (what a credentials refresh sends). For DTMA request bodies (definer functions only).
create function private.mcp_current_credentials(p_server_instance_id uuid, p_with_pending boolean default false) returns jsonb
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(jsonb_object_agg(c.credential_name, s.decrypted_secret
                                   order by c.server_instance_id nulls first, c.state = 'pending'), '{}'::jsonb)
    from public.account_tool_instances i
    join public.mcp_credential_versions c
      on c.toolbox_id = i.account_tool_environment_id and (c.server_instance_id is null or c.server_instance_id = i.id)
    join vault.decrypted_secrets s on s.id = c.secret_id
   where i.id = p_server_instance_id and (c.state = 'current' or (p_with_pending and c.state = 'pending'))
$$;
comment on function private.mcp_current_credentials(uuid, boolean) is
  'The current (and with p_with_pending, pending) credentials of a server as {NAME: value}, toolbox-wide ones overridden by its own; definer functions only.';

-- The access tokens of the OAuth connections a server uses, under the environment variables its
-- catalog entry names; revoked connections give none.
create function private.mcp_oauth_environment(p_server_instance_id uuid) returns jsonb
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(jsonb_object_agg(c.oauth_token_env ->> o.provider, private.vault_read(u.access_token_secret_id)), '{}'::jsonb)
    from public.mcp_server_oauth_connections o
    join public.account_tool_instances i on i.id = o.server_instance_id
    join public.mcp_server_catalog c on c.id = i.catalog_id
    join public.user_oauth_connections u on u.id = o.connection_id
   where o.server_instance_id = p_server_instance_id and c.oauth_token_env ? o.provider and u.status <> 'revoked'
$$;
comment on function private.mcp_oauth_environment(uuid) is
  'The OAuth access tokens a server uses, as {ENV_NAME: token} per its catalog entry''s oauth_token_env; definer functions only.';

-- Every environment variable a server gets from the control plane, read when the request goes
-- out: its configuration's env (secret fields from Vault), its OAuth tokens, its credentials.
create function private.mcp_server_environment(p_server_instance_id uuid, p_with_pending boolean default false) returns jsonb
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select coalesce((select jsonb_object_agg(e.key, e.value) from jsonb_each(private.instance_configuration(p_server_instance_id) -> 'env') e
                    where jsonb_typeof(e.value) = 'string'), '{}'::jsonb)
         || private.mcp_oauth_environment(p_server_instance_id)
         || private.mcp_current_credentials(p_server_instance_id, p_with_pending)
$$;
comment on function private.mcp_server_environment(uuid, boolean) is
  'A server''s environment as sent to DTMA: configuration env (secrets from Vault), OAuth tokens, credentials; definer functions only.';

-- The body of a DTMA request as it goes on the wire (private.dtma_send): the stored body holds
-- no secret; a deploy gets the configuration with its secret fields and the environment, a
-- restart or credentials refresh the environment, all read from Vault now.
create function private.dtma_wire_body(p_request public.dtma_requests) returns jsonb
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select case
    when p_request.instance_id is null then coalesce(p_request.body, '{}'::jsonb)
    when p_request.operation = 'deploy' then
      jsonb_set(p_request.body, '{servers,0}', private.dtma_server_spec(p_request.instance_id,
                private.instance_configuration(p_request.instance_id), private.mcp_server_environment(p_request.instance_id)))
    when p_request.operation in ('restart', 'credentials_refresh') then
      coalesce(p_request.body, '{}'::jsonb) || jsonb_build_object('environmentVariables',
        private.mcp_server_environment(p_request.instance_id, p_request.operation = 'credentials_refresh'))
    else coalesce(p_request.body, '{}'::jsonb)
  end
$$;
comment on function private.dtma_wire_body(public.dtma_requests) is
  'The body sent for a DTMA request: the stored (secret-free) body plus configuration secrets, OAuth tokens and credentials read from Vault at send time.';

create function public.rotate_mcp_credentials(
  p_credential_name text,
  p_new_value text,
  p_server_instance_id uuid default null,
  p_toolbox_id uuid default null,
  p_reason text default null
) returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_org uuid;
  v_toolbox uuid := p_toolbox_id;
  v_id uuid := gen_random_uuid();
  v_version integer;
  v_targets text[];
  v_instance record;
begin
  if num_nonnulls(p_server_instance_id, p_toolbox_id) <> 1 then
    raise exception using errcode = '22023', message = 'give exactly one of p_server_instance_id and p_toolbox_id';
  end if;
  if p_server_instance_id is not null then
    select i.organization_id, i.account_tool_environment_id into v_org, v_toolbox
      from public.account_tool_instances i where i.id = p_server_instance_id and i.status <> 'removed';
  else
    select t.organization_id into v_org from public.account_tool_environments t where t.id = p_toolbox_id;
  end if;
  -- Not found and another organization's look the same.
  perform private.require_org_role_for(v_org, 'admin', 'MCP server or toolbox');
  if p_credential_name is null or p_credential_name !~ '^[A-Z_][A-Z0-9_]{0,127}$' then
    raise exception using errcode = '22023', message = format('invalid credential name %L', p_credential_name),
      hint = 'an environment variable name: ^[A-Z_][A-Z0-9_]{0,127}$';
  end if;
  if coalesce(p_new_value, '') = '' or length(p_new_value) > 65536 then
    raise exception using errcode = '22023', message = 'the credential must have 1 to 65536 characters';
  end if;

  -- Serializes rotations of one credential: the version numbers and the pending check below.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(
    format('mcp_credential:%s:%s:%s', v_toolbox, p_server_instance_id, p_credential_name), 0));
  if exists (select from public.mcp_credential_versions c
              where c.toolbox_id = v_toolbox and c.server_instance_id is not distinct from p_server_instance_id
                and c.credential_name = p_credential_name and c.state = 'pending') then
    raise exception using errcode = '55000', message = format('a rotation of %s is awaiting DTMA''s confirmation', p_credential_name),
      hint = 'wait for it to be confirmed or to fail';
  end if;
  select coalesce(max(c.version), 0) + 1 into v_version from public.mcp_credential_versions c
   where c.toolbox_id = v_toolbox and c.server_instance_id is not distinct from p_server_instance_id
     and c.credential_name = p_credential_name;

  -- The servers that must take the new value: running ones; a stopped one reads the current
  -- credentials when it is next deployed.
  select array_agg(i.id::text order by i.id) into v_targets from public.account_tool_instances i
   where i.account_tool_environment_id = v_toolbox and i.status in ('running', 'unhealthy')
     and (p_server_instance_id is null or i.id = p_server_instance_id);

  perform private.set_audit_context(p_reason, 'credential_rotation');
  insert into public.mcp_credential_versions (id, organization_id, toolbox_id, server_instance_id, credential_name, version,
         secret_id, confirmations_pending, reason, created_by)
  values (v_id, v_org, v_toolbox, p_server_instance_id, p_credential_name, v_version,
          vault.create_secret(p_new_value, format('mcp-credential/%s', v_id),
                              format('%s v%s of %s', p_credential_name, v_version, coalesce(p_server_instance_id, v_toolbox))),
          coalesce(cardinality(v_targets), 0), p_reason, auth.uid());
  for v_instance in select i.id, i.instance_name_on_toolbox from public.account_tool_instances i
                     where i.id = any (coalesce(v_targets, '{}')::uuid[]) loop
    perform private.dtma_enqueue(v_toolbox, v_instance.id, 'credentials_refresh', 'POST',
      format('/mcp/credentials/refresh/%s', v_instance.instance_name_on_toolbox),
      jsonb_build_object('environmentVariables', jsonb_build_object(p_credential_name, '[from Vault]'), 'restart', true),
      format('credentials_refresh:%s:%s', v_id, v_instance.id));
  end loop;
  if v_targets is null then
    -- Nothing runs that could confirm: the new version is current at once.
    perform private.promote_mcp_credential(v_id);
  end if;
  perform private.set_audit_context(null);
  return v_id;
end $$;
comment on function public.rotate_mcp_credentials(text, text, uuid, uuid, text) is
  'Admins: a new version of a server''s (or a toolbox''s) credential, sent to DTMA; the old one stays current until DTMA confirms. Returns the version id.';

-- The pending version becomes current; the one it replaces is superseded and its secret deleted.
create function private.promote_mcp_credential(p_version_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_new public.mcp_credential_versions;
  v_old public.mcp_credential_versions;
begin
  select c.* into v_new from public.mcp_credential_versions c where c.id = p_version_id for update;
  select c.* into v_old from public.mcp_credential_versions c
   where c.toolbox_id = v_new.toolbox_id and c.server_instance_id is not distinct from v_new.server_instance_id
     and c.credential_name = v_new.credential_name and c.state = 'current'
   for update;
  if v_old.id is not null then
    update public.mcp_credential_versions c set state = 'superseded', secret_id = null, completed_at = now()
     where c.id = v_old.id;
    delete from vault.secrets s where s.id = v_old.secret_id;
  end if;
  update public.mcp_credential_versions c set state = 'current', confirmations_pending = 0, completed_at = now()
   where c.id = p_version_id;
end $$;
comment on function private.promote_mcp_credential(uuid) is
  'Makes a pending credential version current; the previous current one is superseded and its Vault secret deleted.';

-- DTMA's answer to POST /mcp/credentials/refresh/:name, called by the DTMA harvest
-- (public.harvest_dtma_responses) once the request succeeded or finally failed.
create function private.dtma_on_credentials_refresh(p_request public.dtma_requests, p_ok boolean, p_error text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_version public.mcp_credential_versions;
begin
  -- Compared as text: a malformed key must not raise, or it would abort the whole harvest batch.
  select c.* into v_version from public.mcp_credential_versions c
   where c.id::text = pg_catalog.split_part(p_request.idempotency_key, ':', 2)
   for update;
  if v_version.id is null or v_version.state <> 'pending' then
    return;
  end if;
  perform private.set_audit_context(coalesce(p_error, 'DTMA confirmed the new credential'), 'dtma_response');
  if not coalesce(p_ok, false) then
    update public.mcp_credential_versions c
       set state = 'failed', secret_id = null, completed_at = now(), confirmations_pending = 0,
           last_error = left(coalesce(p_error, 'DTMA did not confirm'), 1000)
     where c.id = v_version.id;
    delete from vault.secrets s where s.id = v_version.secret_id;
  elsif v_version.confirmations_pending <= 1 then
    perform private.promote_mcp_credential(v_version.id);
  else
    update public.mcp_credential_versions c set confirmations_pending = c.confirmations_pending - 1 where c.id = v_version.id;
  end if;
  perform private.set_audit_context(null);
end $$;
comment on function private.dtma_on_credentials_refresh(public.dtma_requests, boolean, text) is
  'DTMA harvest handler: a confirmed credentials refresh makes the new version current (the old secret is deleted); a failure keeps the old one and marks the new failed.';

-- An OAuth connection's new access token reaches the servers using it: each running one is
-- sent a credentials refresh (the token is read from Vault when it goes out). A revoked
-- connection stops them and is no longer declared: the token must not outlive the user's consent.
create function private.oauth_connection_to_servers() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_instance record;
begin
  for v_instance in select i.id, i.account_tool_environment_id, i.instance_name_on_toolbox, i.status
                      from public.mcp_server_oauth_connections o
                      join public.account_tool_instances i on i.id = o.server_instance_id
                     where o.connection_id = new.id and i.status in ('deploying', 'running', 'unhealthy')
                     order by i.id for update of i loop
    if new.status = 'revoked' then
      perform private.apply_instance_event(v_instance.id, 'stop', 'oauth_revoked', 'its OAuth connection was revoked');
    elsif v_instance.status <> 'deploying' then
      perform private.dtma_enqueue(v_instance.account_tool_environment_id, v_instance.id, 'credentials_refresh', 'POST',
        format('/mcp/credentials/refresh/%s', v_instance.instance_name_on_toolbox), '{"restart": true}'::jsonb,
        format('oauth_refresh:%s:%s', new.id, v_instance.id));
    end if;
  end loop;
  if new.status = 'revoked' then
    delete from public.mcp_server_oauth_connections o where o.connection_id = new.id;
  end if;
  return null;
end $$;
comment on function private.oauth_connection_to_servers() is
  'Trigger: a refreshed OAuth token is pushed to the running servers using the connection; a revoked connection stops them.';

create trigger user_oauth_connections_to_servers after update on public.user_oauth_connections
  for each row when ((new.status = 'revoked' and old.status <> 'revoked')
                     or (new.status = 'active' and (old.status, old.expires_at, old.last_refreshed_at)
                                                   is distinct from (new.status, new.expires_at, new.last_refreshed_at)))
  execute function private.oauth_connection_to_servers();

revoke execute on function public.create_vault_secret(text, text, text, uuid), public.get_secret(uuid),
  public.delete_vault_secret(uuid), public.rotate_mcp_credentials(text, text, uuid, uuid, text) from public, anon;
grant execute on function public.create_vault_secret(text, text, text, uuid), public.get_secret(uuid),
  public.delete_vault_secret(uuid), public.rotate_mcp_credentials(text, text, uuid, uuid, text) to authenticated, service_role;
revoke execute on function private.mcp_current_credentials(uuid, boolean), private.mcp_oauth_environment(uuid),
  private.mcp_server_environment(uuid, boolean), private.dtma_wire_body(public.dtma_requests), private.promote_mcp_credential(uuid),
  private.dtma_on_credentials_refresh(public.dtma_requests, boolean, text), private.oauth_connection_to_servers()
  from public, anon, authenticated, service_role;
