-- DTMA orchestration, the outbox: what each lifecycle status asks of DTMA, the request bodies, the
-- outbox's sender, users' lifecycle requests, the health poll and the status page. The harvest of
-- pg_net's responses (classification, outcome handlers, retries) is db/functions/dtma_harvest.sql.

-- The DTMA group of an instance: one instance per group, so removing one removes only it; named
-- under its toolbox, so that two toolboxes on one DTMA never take each other's groups for orphans.
create function private.dtma_group_id(p_toolbox_id uuid, p_instance_id uuid) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$ select 'mcp-' || p_toolbox_id::text || '-' || p_instance_id::text $$;
comment on function private.dtma_group_id(uuid, uuid) is 'The DTMA group id of an instance: under its toolbox, one instance per group.';

-- Parses text as JSON, or null when it is not JSON.
create function private.try_jsonb(p_text text) returns jsonb
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return p_text::jsonb;
exception when others then
  return null;
end $$;
comment on function private.try_jsonb(text) is 'p_text as jsonb, or null when it does not parse.';

-- Sends one queued request through pg_net (after commit). Locks the instance, so that only one
-- request per instance is ever in flight, in order; returns false when it must wait.
create function private.dtma_send(p_request_id bigint) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_req public.dtma_requests;
  v_toolbox public.account_tool_environments;
  v_headers jsonb;
  v_url text;
  v_net bigint;
begin
  select * into v_req from public.dtma_requests r where r.id = p_request_id and r.state = 'queued' for update skip locked;
  if not found then
    return false;
  end if;
  if v_req.instance_id is not null then
    -- Never wait for an instance a lifecycle change holds (it may wait for this request): next time.
    perform from public.account_tool_instances i where i.id = v_req.instance_id for update skip locked;
    if not found then
      return false;
    end if;
    -- In order: nothing while another request of the instance is in flight, or an older one waits
    -- (a retry in backoff must not be overtaken by the stop queued after it).
    if exists (select from public.dtma_requests s
                where s.instance_id = v_req.instance_id and (s.state = 'sent' or (s.state = 'queued' and s.id < v_req.id))) then
      return false;
    end if;
  end if;
  select * into v_toolbox from public.account_tool_environments t where t.id = v_req.toolbox_id;
  -- The URL policy may have changed since registration: a refused URL is never contacted.
  if private.toolbox_url_refusal(v_toolbox.dtma_base_url) is not null then
    perform private.dtma_refuse(v_req.id, private.toolbox_url_refusal(v_toolbox.dtma_base_url));
    return false;
  end if;
  v_url := v_toolbox.dtma_base_url || v_req.path;
  v_headers := jsonb_build_object(
    'Authorization', 'Bearer ' || coalesce(private.toolbox_token(v_req.toolbox_id), ''),
    -- The same for every attempt of this request, and for no other request.
    'Idempotency-Key', format('%s:%s', v_req.idempotency_key, v_req.id),
    'X-Attempt', (v_req.attempt + 1)::text);
  v_net := case
    -- A deploy whose answer was lost: first ask whether its group runs (docs/DTMA.md).
    when v_req.check_first then net.http_get(url => v_toolbox.dtma_base_url || '/mcp/health/' || (v_req.body ->> 'groupId'),
                                             headers => v_headers, timeout_milliseconds => v_req.timeout_ms)
    when v_req.method = 'GET' then net.http_get(url => v_url, headers => v_headers, timeout_milliseconds => v_req.timeout_ms)
    when v_req.method = 'POST' then net.http_post(url => v_url, body => private.dtma_wire_body(v_req), headers => v_headers,
                                   timeout_milliseconds => v_req.timeout_ms)
    when v_req.method = 'DELETE' then net.http_delete(url => v_url, headers => v_headers, timeout_milliseconds => v_req.timeout_ms)
  end;
  update public.dtma_requests r
     set state = 'sent', attempt = r.attempt + 1, net_request_id = v_net, sent_at = now(), net_epoch = private.net_epoch()
   where r.id = p_request_id;
  return true;
end $$;
comment on function private.dtma_send(bigint) is 'Sends a queued DTMA request through pg_net unless one for the same instance is in flight.';

-- Sends the queued requests that are due, oldest first.
create function private.dtma_send_ready(p_limit integer default 200) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_id bigint;
  v_sent integer := 0;
begin
  for v_id in
    select r.id from public.dtma_requests r
     where r.state = 'queued' and r.next_attempt_at <= now()
     order by r.id limit p_limit
  loop
    if private.dtma_send(v_id) then
      v_sent := v_sent + 1;
    end if;
  end loop;
  return v_sent;
end $$;
comment on function private.dtma_send_ready(integer) is 'Sends the due queued DTMA requests; returns how many were sent.';

-- Queues a DTMA request (and sends it at once when nothing else is in flight for the
-- instance). A request with the key of an open one is not queued again: its id is returned.
create function private.dtma_enqueue(
  p_toolbox_id uuid, p_instance_id uuid, p_operation text, p_method text, p_path text, p_body jsonb,
  p_idempotency_key text, p_max_attempts integer default null, p_timeout_ms integer default null
) returns bigint
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_id bigint;
  v_org uuid;
begin
  select t.organization_id into v_org from public.account_tool_environments t where t.id = p_toolbox_id;
  if not found then
    raise exception using errcode = 'P0002', message = format('toolbox %s not found', p_toolbox_id);
  end if;
  if p_operation = 'restart' then
    -- DTMA's refresh route restarts a server with the environment sent (dtma_send adds the
    -- current one), where its plain restart would reuse the environment of the last deploy.
    select format('/mcp/credentials/refresh/%s', i.instance_name_on_toolbox), '{"restart": true}'::jsonb into p_path, p_body
      from public.account_tool_instances i where i.id = p_instance_id;
  end if;
  insert into public.dtma_requests (organization_id, toolbox_id, instance_id, operation, method, path, body,
         idempotency_key, max_attempts, timeout_ms)
  values (v_org, p_toolbox_id, p_instance_id, p_operation, p_method, p_path, p_body, p_idempotency_key,
          coalesce(p_max_attempts, private.dtma_setting('max_attempts')::int),
          coalesce(p_timeout_ms, private.dtma_setting('request_timeout_ms')::int))
  on conflict (idempotency_key) where state in ('queued', 'sent') do nothing
  returning id into v_id;
  if v_id is null then
    select r.id into v_id from public.dtma_requests r where r.idempotency_key = p_idempotency_key and r.state in ('queued', 'sent');
    return v_id;
  end if;
  perform private.dtma_send(v_id);
  return v_id;
end $$;
comment on function private.dtma_enqueue(uuid, uuid, text, text, text, jsonb, text, integer, integer) is
  'Queues a DTMA request (deduplicated by idempotency key among open ones) and sends it when the instance has none in flight.';

-- One server of a deploy body, in the toolbox's dialect. The instance configuration was checked
-- against the catalog's schema; only its env and args reach the container, never raw options.
-- project: the local DTMA runs the npm package with baseConfigOverrideJson's env and args.
-- upstream: dtma-agent pulls an OCI image and spreads baseConfigOverrideJson into Docker's
-- create options, so env and args go as Docker's Env and Cmd; its transports are stdio|sse|websocket.
create function private.dtma_server_spec(p_instance_id uuid, p_configuration jsonb default null, p_environment jsonb default null)
returns jsonb
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  -- Stored bodies are built from the secret-free configuration; the wire body (private.dtma_wire_body)
  -- passes the configuration with its secrets and the full environment, read when it is sent.
  select jsonb_strip_nulls(jsonb_build_object(
           'accountToolInstanceId', i.id, 'instanceNameOnToolbox', i.instance_name_on_toolbox,
           'mcpEndpointPath', i.mcp_endpoint_path, 'mcpServerCapabilities', i.mcp_server_capabilities,
           'mcpDiscoveryMetadata', i.mcp_discovery_metadata,
           'requiredOAuthProviders', case when cardinality(c.required_oauth_providers) > 0 then to_jsonb(c.required_oauth_providers) end))
         || case t.dtma_dialect
              when 'upstream' then jsonb_build_object(
                'dockerImageUrl', coalesce(c.oci_image, c.docker_image_url),
                'mcpTransportType', case when i.mcp_transport_type::text in ('stdio', 'sse', 'websocket') then i.mcp_transport_type::text else 'stdio' end,
                'environmentVariables', v.env,
                'baseConfigOverrideJson', jsonb_strip_nulls(jsonb_build_object(
                  'Env', (select coalesce(jsonb_agg(e.key || '=' || e.value order by e.key), '[]'::jsonb) from jsonb_each_text(v.env) e),
                  'Cmd', case when jsonb_array_length(coalesce(v.config -> 'args', '[]'::jsonb)) > 0 then v.config -> 'args' end)))
              else jsonb_strip_nulls(jsonb_build_object(
                'dockerImageUrl', c.docker_image_url, 'mcpTransportType', i.mcp_transport_type,
                'baseConfigOverrideJson', v.config, 'environmentVariables', p_environment))
            end
    from public.account_tool_instances i
    join public.mcp_server_catalog c on c.id = i.catalog_id
    join public.account_tool_environments t on t.id = i.account_tool_environment_id
   cross join lateral (select coalesce(p_configuration, i.configuration) as config,
                              coalesce(p_environment, coalesce(p_configuration, i.configuration) -> 'env', '{}'::jsonb) as env) v
   where i.id = p_instance_id
$$;
comment on function private.dtma_server_spec(uuid, jsonb, jsonb) is
  'One server of a POST /mcp/groups body, in the dialect of the instance''s toolbox; with the configuration and environment given, as sent.';

-- The deploy body of the DTMA contract for one instance, in its own group.
create function private.dtma_deploy_body(p_instance_id uuid) returns jsonb
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select jsonb_build_object('groupId', private.dtma_group_id(i.account_tool_environment_id, i.id),
                            'servers', jsonb_build_array(private.dtma_server_spec(i.id)))
    from public.account_tool_instances i
   where i.id = p_instance_id
$$;
comment on function private.dtma_deploy_body(uuid) is 'The POST /mcp/groups body for one instance.';

-- Entering deploying, stopping or removing asks DTMA to act; a queued, unsent request of an
-- earlier lifecycle step is abandoned (nothing is sent for it).
create function private.dtma_on_instance_status() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_group text := private.dtma_group_id(new.account_tool_environment_id, new.id);
begin
  if new.status not in ('deploying', 'stopping', 'removing') then
    return null;
  end if;
  update public.dtma_requests r set state = 'abandoned', completed_at = now(), last_error = format('superseded by %s', new.status)
   where r.instance_id = new.id and r.state = 'queued' and r.operation in ('deploy', 'restart', 'stop', 'remove', 'health');
  if new.status = 'deploying' and old.status in ('running', 'unhealthy') then
    perform private.dtma_enqueue(new.account_tool_environment_id, new.id, 'restart', 'POST',
      format('/mcp/servers/%s/restart', new.instance_name_on_toolbox), '{}'::jsonb, format('restart:%s', new.id));
  elsif new.status = 'deploying' then
    perform private.dtma_enqueue(new.account_tool_environment_id, new.id, 'deploy', 'POST', '/mcp/groups',
      private.dtma_deploy_body(new.id), format('deploy:%s', new.id));
  elsif new.status = 'stopping' then
    perform private.dtma_enqueue(new.account_tool_environment_id, new.id, 'stop', 'DELETE',
      format('/mcp/groups/%s?gracefulTimeoutMs=5000', v_group), null, format('stop:%s', new.id));
  else
    perform private.dtma_enqueue(new.account_tool_environment_id, new.id, 'remove', 'DELETE',
      format('/mcp/groups/%s?forceRemove=true', v_group), null, format('remove:%s', new.id));
  end if;
  return null;
end $$;
comment on function private.dtma_on_instance_status() is 'Trigger: queues the DTMA request that a new lifecycle status calls for.';

create trigger account_tool_instances_dtma after update of status on public.account_tool_instances
  for each row when (new.status is distinct from old.status) execute function private.dtma_on_instance_status();

-- A lifecycle request from a user: idempotent, so a repeated deploy while one is under way (or
-- done) sends nothing more, and likewise for stop and remove.
create function private.request_lifecycle(p_instance_id uuid, p_event text) returns public.mcp_server_status
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_status public.mcp_server_status := private.lock_instance_status(p_instance_id);
begin
  if (p_event = 'deploy' and v_status in ('deploying', 'running'))
     or (p_event = 'stop' and v_status in ('stopping', 'stopped'))
     or (p_event = 'remove' and v_status in ('removing', 'removed')) then
    return v_status;
  end if;
  return private.apply_instance_event(p_instance_id, p_event, 'user_action');
end $$;
comment on function private.request_lifecycle(uuid, text) is
  'Applies a user''s lifecycle event; a repeat while the instance is on its way there (or there) changes and sends nothing.';

create function public.deploy_mcp_server_to_dtma(server_instance_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_org uuid;
begin
  select i.organization_id into v_org from public.account_tool_instances i where i.id = deploy_mcp_server_to_dtma.server_instance_id;
  perform private.require_org_role_for(v_org, 'admin', format('MCP server %s', deploy_mcp_server_to_dtma.server_instance_id));
  perform private.request_lifecycle(deploy_mcp_server_to_dtma.server_instance_id, 'deploy');
  return private.instance_json(deploy_mcp_server_to_dtma.server_instance_id) || jsonb_build_object('dtma_request', (
    -- Organization users see the classified outcome (last_error_summary), never what DTMA answered.
    select to_jsonb(r) - 'body' - 'response' - 'last_error' from public.dtma_requests r
     where r.instance_id = deploy_mcp_server_to_dtma.server_instance_id order by r.id desc limit 1));
end $$;
comment on function public.deploy_mcp_server_to_dtma(uuid) is
  'Admins: deploys the instance on its toolbox through DTMA (pg_net). Idempotent while a deployment is under way. Returns the instance and its latest DTMA request.';

-- Queues the health poll (not retried: the next poll is the retry): GET /mcp/status per toolbox
-- with something deployed (liveness, dialect, orphans), and GET /mcp/health/:groupId per server
-- that should be running. Scheduled with pg_cron.
create function public.poll_dtma_status() returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_toolbox uuid;
  v_instance public.account_tool_instances;
  v_count integer := 0;
begin
  perform private.require_service_caller('poll DTMA');
  for v_toolbox in select t.id from public.account_tool_environments t
                    where t.status <> 'disabled'
                      and exists (select from public.account_tool_instances i
                                   where i.account_tool_environment_id = t.id and i.status not in ('pending', 'removed')) loop
    perform private.dtma_enqueue(v_toolbox, null, 'status', 'GET', '/mcp/status', null, format('status:%s', v_toolbox), 1, 5000);
    v_count := v_count + 1;
    for v_instance in select i.* from public.account_tool_instances i
                       where i.account_tool_environment_id = v_toolbox and i.status in ('running', 'unhealthy') loop
      perform private.dtma_enqueue(v_toolbox, v_instance.id, 'health', 'GET',
        format('/mcp/health/%s', private.dtma_group_id(v_toolbox, v_instance.id)), null, format('health:%s', v_instance.id), 1, 5000);
    end loop;
  end loop;
  return v_count;
end $$;
comment on function public.poll_dtma_status() is
  'Service: queues the health poll (GET /mcp/status per toolbox with deployed servers, GET /mcp/health/:groupId per running server). Returns how many toolboxes.';

-- pg_cron 1.4 schedules by the minute; on Supabase (pg_cron 1.5+) '5 seconds' also works.
select cron.schedule('mcp-dtma-health', '* * * * *', 'select public.poll_dtma_status()');

revoke execute on function public.deploy_mcp_server_to_dtma(uuid) from public, anon;
revoke execute on function public.poll_dtma_status() from public, anon, authenticated;
grant execute on function public.deploy_mcp_server_to_dtma(uuid) to authenticated, service_role;
grant execute on function public.poll_dtma_status() to service_role;

-- What an organization's servers are doing, for its status page: lifecycle, health, last error,
-- the toolbox's liveness, and (for admins, who alone read the outbox) the server's latest DTMA
-- request when it is still pending or failed.
create function public.get_mcp_server_status(p_organization_id uuid)
returns table (
  server_instance_id uuid, server_name text, instance_name text, status public.mcp_server_status,
  health_status public.mcp_health_status, last_error text, last_health_check_at timestamptz,
  toolbox_id uuid, toolbox_status text, toolbox_last_heartbeat_at timestamptz, dtma_request jsonb
)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_admin boolean;
begin
  perform private.require_org_role(p_organization_id, 'viewer');
  v_admin := private.has_org_role(p_organization_id, 'admin');
  return query
    -- Organization users read the classified outcome (status and short reason), never what DTMA answered.
    select i.id, i.display_name, i.instance_name_on_toolbox, i.status, i.health_status, i.last_error_summary, i.last_health_check_at,
           t.id, t.status::text, t.last_heartbeat_at,
           case when v_admin then (
             select jsonb_build_object('id', r.id, 'operation', r.operation, 'state', r.state, 'attempt', r.attempt,
                                       'max_attempts', r.max_attempts, 'last_status_code', r.last_status_code,
                                       'last_error', r.last_error_summary, 'next_attempt_at', r.next_attempt_at, 'created_at', r.created_at)
               from (select r0.* from public.dtma_requests r0 where r0.instance_id = i.id and r0.organization_id = i.organization_id
                      order by r0.id desc limit 1) r
              where r.state in ('queued', 'sent', 'unconfirmed', 'failed')) end
      from public.account_tool_instances i
      join public.account_tool_environments t on t.id = i.account_tool_environment_id
     where i.organization_id = p_organization_id and i.status <> 'removed'
     order by i.priority desc, i.display_name;
end $$;
comment on function public.get_mcp_server_status(uuid) is
  'Members: each MCP server of the organization with its status, health, last error (classified: status and short reason) and toolbox liveness; admins also see its pending, unconfirmed or failed DTMA request.';

-- Asks the organization's toolboxes for fresh status now instead of at the next minute's poll:
-- a GET /mcp/status through the outbox, under the poll's own idempotency key (a poll already
-- open is not doubled). Returns the outbox request ids.
create function public.request_mcp_server_status(p_organization_id uuid) returns bigint[]
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_toolbox uuid;
  v_ids bigint[] := array[]::bigint[];
begin
  perform private.require_org_role(p_organization_id, 'admin');
  for v_toolbox in select t.id from public.account_tool_environments t
                    where t.organization_id = p_organization_id and t.status <> 'disabled'
                      and exists (select from public.account_tool_instances i
                                   where i.account_tool_environment_id = t.id and i.status not in ('pending', 'removed')) loop
    v_ids := v_ids || private.dtma_enqueue(v_toolbox, null, 'status', 'GET', '/mcp/status', null, format('status:%s', v_toolbox), 1, 5000);
  end loop;
  return v_ids;
end $$;
comment on function public.request_mcp_server_status(uuid) is
  'Admins: queues a DTMA status request (GET /mcp/status) for each of the organization''s toolboxes with deployed servers, now. Returns the request ids.';

revoke execute on function public.get_mcp_server_status(uuid), public.request_mcp_server_status(uuid) from public, anon;
grant execute on function public.get_mcp_server_status(uuid), public.request_mcp_server_status(uuid) to authenticated, service_role;
