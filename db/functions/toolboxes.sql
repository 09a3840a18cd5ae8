-- Toolboxes API: the platform registers a DTMA host with its bearer token (kept in Vault) at a
-- URL its policy allows (private.toolbox_url_rules); definer functions read the token; an
-- organization's admins remove a toolbox.

-- Why the platform's URL policy refuses a toolbox URL, or null when it allows it. The URL
-- carries no credentials, query or fragment; the host is a DNS name whose last label starts
-- with a letter, or a plain IP address (so 2852039166, 0x7f.1 and 0177.0.0.1 are refused
-- rather than guessed at); an IPv4-mapped IPv6 address is judged as its IPv4 address.
create function private.toolbox_url_refusal(p_url text) returns text
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_url text[] := regexp_match(lower(p_url), '^(https?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?(/[^?#[:space:]@]*)?$');
  v_host text := v_url[2];
  v_port integer;
  v_ip inet;
  v_rule private.toolbox_url_rules;
begin
  if v_url is null then
    return 'not an http(s) URL of a host, with no credentials, query or fragment';
  end if;
  v_port := coalesce(v_url[3]::integer, case v_url[1] when 'https' then 443 else 80 end);
  if v_host ~ '^\[' then
    begin
      v_ip := btrim(v_host, '[]')::inet;
    exception when others then
      return format('%s is not an IPv6 address', v_host);
    end;
    if v_ip <<= '::ffff:0.0.0.0/96'::inet then
      v_ip := '0.0.0.0'::inet + (v_ip - '::ffff:0.0.0.0'::inet);
    end if;
  elsif v_host ~ '^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$' then
    v_ip := v_host::inet;
  elsif v_host !~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z]([a-z0-9-]{0,61}[a-z0-9])?$' then
    return format('%s is neither a DNS name nor a plain IP address', v_host);
  end if;
  if v_port not between 1 and 65535 then
    return format('port %s is out of range', v_port);
  end if;
  -- The most decisive matching rule: never, then allow (a port-specific one first), then private.
  select r.* into v_rule from private.toolbox_url_rules r
   where ((r.network is not null and v_ip <<= r.network)
          or (r.host is not null and (v_host = r.host or v_host like '%.' || r.host)))
     and (r.verdict <> 'allow' or r.port is null or r.port = v_port)
   order by case r.verdict when 'never' then 0 when 'allow' then 1 else 2 end, r.port nulls last
   limit 1;
  if v_rule.verdict = 'never' then
    return format('%s is never allowed (%s)', v_host, v_rule.reason);
  elsif v_rule.verdict = 'allow' then
    return case when v_url[1] = 'http' and not v_rule.allow_http then format('%s is allowed over https only', v_host) end;
  elsif v_url[1] <> 'https' then
    return 'toolbox URLs must use https';
  elsif v_rule.verdict = 'private' then
    return format('%s is not allowed (%s) unless the platform allows it', v_host, v_rule.reason);
  end if;
  return null;
end $$;
comment on function private.toolbox_url_refusal(text) is
  'Why the platform policy (private.toolbox_url_rules) refuses a toolbox URL; null when allowed. Host names are not resolved.';

create function public.create_toolbox(p_organization_id uuid, p_name text, p_dtma_base_url text, p_dtma_token text)
returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_id uuid := gen_random_uuid();
  v_secret uuid;
  v_refusal text := private.toolbox_url_refusal(p_dtma_base_url);
begin
  -- The platform alone registers toolboxes: a DTMA URL decides where the database's HTTP client goes.
  perform private.require_service_caller('register toolboxes',
    'service_role (or a platform admin in SQL) registers a toolbox for an organization');
  if not exists (select from public.organizations o where o.id = p_organization_id) then
    raise exception using errcode = 'P0002', message = format('organization %s not found', p_organization_id);
  end if;
  if p_dtma_token is null or length(p_dtma_token) < 16 then
    raise exception using errcode = '22023', message = 'the DTMA token must have at least 16 characters';
  end if;
  if p_dtma_base_url is null or v_refusal is not null then
    raise exception using errcode = '22023', message = format('DTMA base URL %L refused: %s', p_dtma_base_url, coalesce(v_refusal, 'missing')),
      hint = 'https to a public host, or a host the platform allows in private.toolbox_url_rules';
  end if;
  v_secret := vault.create_secret(p_dtma_token, format('toolbox/%s/dtma-token', v_id), format('DTMA bearer token of toolbox %s', v_id));
  insert into public.account_tool_environments (id, organization_id, name, dtma_base_url, dtma_token_secret_id, created_by)
  values (v_id, p_organization_id, p_name, rtrim(p_dtma_base_url, '/'), v_secret, auth.uid());
  perform private.audit(p_organization_id, 'toolbox.created', 'toolbox', v_id::text, null,
                        jsonb_build_object('name', p_name, 'dtma_base_url', p_dtma_base_url));
  return v_id;
exception when unique_violation then
  declare
    v_constraint text;
  begin
    get stacked diagnostics v_constraint = constraint_name;
    if v_constraint = 'account_tool_environments_dtma_base_url_idx' then
      raise exception using errcode = '23505', message = format('a toolbox is already registered at %s', p_dtma_base_url),
        hint = 'one toolbox per DTMA base URL: their health sweeps would otherwise remove each other''s servers';
    end if;
    raise exception using errcode = '23505', message = format('a toolbox named %L exists in this organization', p_name);
  end;
end $$;
comment on function public.create_toolbox(uuid, text, text, text) is
  'Platform only (service_role): registers a toolbox of an organization at a DTMA base URL the URL policy allows, its bearer token stored in Vault. Returns its id.';

-- A request to a toolbox whose URL the policy now refuses: never sent, it fails at once with the
-- reason, and its outcome is applied as the harvest applies a final failure (cause url_policy).
create function private.dtma_refuse(p_request_id bigint, p_reason text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_req public.dtma_requests;
  v_error text := format('not sent: the toolbox URL is refused by the platform''s URL policy (%s)', p_reason);
begin
  update public.dtma_requests r set state = 'failed', last_error = v_error, completed_at = now()
   where r.id = p_request_id returning * into v_req;
  perform private.dtma_dispatch(v_req, 'permanent', v_error, 'url_policy');
end $$;
comment on function private.dtma_refuse(bigint, text) is
  'Fails a DTMA request whose toolbox URL the policy refuses, without sending it, and applies the failure to its instance or toolbox.';

-- The DTMA bearer token of a toolbox, for definer functions that call DTMA. Never exposed.
create function private.toolbox_token(p_toolbox_id uuid) returns text
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.vault_read(t.dtma_token_secret_id) from public.account_tool_environments t where t.id = p_toolbox_id
$$;
comment on function private.toolbox_token(uuid) is 'Decrypted DTMA token of a toolbox (definer functions only).';

create function public.delete_toolbox(p_toolbox_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_toolbox public.account_tool_environments;
begin
  select * into v_toolbox from public.account_tool_environments t where t.id = p_toolbox_id;
  perform private.require_org_role_for(v_toolbox.organization_id, 'admin', format('toolbox %s', p_toolbox_id));
  if exists (select from public.account_tool_instances i
              where i.account_tool_environment_id = p_toolbox_id and i.status not in ('removed', 'pending', 'stopped', 'failed')) then
    raise exception using errcode = '55000', message = 'the toolbox still runs MCP servers', hint = 'stop or remove them first';
  end if;
  delete from public.account_tool_environments t where t.id = p_toolbox_id;
  delete from vault.secrets s where s.id = v_toolbox.dtma_token_secret_id;
  perform private.audit(v_toolbox.organization_id, 'toolbox.deleted', 'toolbox', p_toolbox_id::text,
                        jsonb_build_object('name', v_toolbox.name), null);
end $$;
comment on function public.delete_toolbox(uuid) is 'Deletes a toolbox with no running server, and its token (admins).';

revoke execute on function public.create_toolbox(uuid, text, text, text), public.delete_toolbox(uuid), private.toolbox_token(uuid),
  private.toolbox_url_refusal(text), private.dtma_refuse(bigint, text) from public, anon;
revoke execute on function private.toolbox_token(uuid), private.toolbox_url_refusal(text), private.dtma_refuse(bigint, text)
  from authenticated, service_role;
revoke execute on function public.create_toolbox(uuid, text, text, text) from authenticated;
grant execute on function public.create_toolbox(uuid, text, text, text) to service_role;
grant execute on function public.delete_toolbox(uuid) to authenticated, service_role;
