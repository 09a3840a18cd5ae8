-- Toolboxes API: register a DTMA host with its bearer token (kept in Vault), read the token
-- inside definer functions only, remove a toolbox.

create function public.create_toolbox(p_organization_id uuid, p_name text, p_dtma_base_url text, p_dtma_token text)
returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_id uuid := gen_random_uuid();
  v_secret uuid;
begin
  perform private.require_org_role(p_organization_id, 'admin');
  if p_dtma_token is null or length(p_dtma_token) < 16 then
    raise exception using errcode = '22023', message = 'the DTMA token must have at least 16 characters';
  end if;
  if p_dtma_base_url is null or p_dtma_base_url !~ '^https?://[^/?#]+(/[^?#]*)?$' then
    raise exception using errcode = '22023', message = format('invalid DTMA base URL %L', p_dtma_base_url),
      hint = 'e.g. http://127.0.0.1:30000';
  end if;
  v_secret := vault.create_secret(p_dtma_token, format('toolbox/%s/dtma-token', v_id), format('DTMA bearer token of toolbox %s', v_id));
  insert into public.account_tool_environments (id, organization_id, name, dtma_base_url, dtma_token_secret_id, created_by)
  values (v_id, p_organization_id, p_name, rtrim(p_dtma_base_url, '/'), v_secret, auth.uid());
  perform private.audit(p_organization_id, 'toolbox.created', 'toolbox', v_id::text, null,
                        jsonb_build_object('name', p_name, 'dtma_base_url', p_dtma_base_url));
  return v_id;
exception when unique_violation then
  raise exception using errcode = '23505', message = format('a toolbox named %L exists in this organization', p_name);
end $$;
comment on function public.create_toolbox(uuid, text, text, text) is
  'Registers a toolbox (admins): its DTMA base URL, and its bearer token stored in Vault. Returns its id.';

-- The DTMA bearer token of a toolbox, for definer functions that call DTMA. Never exposed.
create function private.toolbox_token(p_toolbox_id uuid) returns text
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.decrypted_secret
    from public.account_tool_environments t
    join vault.decrypted_secrets s on s.id = t.dtma_token_secret_id
   where t.id = p_toolbox_id
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

revoke execute on function public.create_toolbox(uuid, text, text, text), public.delete_toolbox(uuid), private.toolbox_token(uuid)
  from public, anon;
revoke execute on function private.toolbox_token(uuid) from authenticated, service_role;
grant execute on function public.create_toolbox(uuid, text, text, text), public.delete_toolbox(uuid) to authenticated, service_role;
