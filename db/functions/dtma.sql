-- DTMA orchestration: what each lifecycle status asks of DTMA, the outbox's sender, the
-- harvest of pg_net's responses (success, DTMA-reported errors under a 201, 4xx, 5xx, timeouts,
-- lost responses; retries with exponential backoff), and the health poll that reconciles drift.

-- The DTMA group of an instance: one instance per group, so removing one removes only it.
create function private.dtma_group_id(p_instance_id uuid) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$ select 'mcp-' || p_instance_id::text $$;
comment on function private.dtma_group_id(uuid) is 'The DTMA group id of an instance (one instance per group).';

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
-- request per instance is ever in flight; returns false when another one is.
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
    perform from public.account_tool_instances i where i.id = v_req.instance_id for update;
    if exists (select from public.dtma_requests s where s.instance_id = v_req.instance_id and s.state = 'sent') then
      return false;
    end if;
  end if;
  select * into v_toolbox from public.account_tool_environments t where t.id = v_req.toolbox_id;
  v_url := v_toolbox.dtma_base_url || v_req.path;
  v_headers := jsonb_build_object(
    'Authorization', 'Bearer ' || coalesce(private.toolbox_token(v_req.toolbox_id), ''),
    -- The same for every attempt of this request, and for no other request.
    'Idempotency-Key', format('%s:%s', v_req.idempotency_key, v_req.id),
    'X-Attempt', (v_req.attempt + 1)::text);
  v_net := case v_req.method
    when 'GET' then net.http_get(url => v_url, headers => v_headers, timeout_milliseconds => v_req.timeout_ms)
    when 'POST' then net.http_post(url => v_url, body => coalesce(v_req.body, '{}'::jsonb), headers => v_headers,
                                   timeout_milliseconds => v_req.timeout_ms)
    when 'DELETE' then net.http_delete(url => v_url, headers => v_headers, timeout_milliseconds => v_req.timeout_ms)
  end;
  update public.dtma_requests r
     set state = 'sent', attempt = r.attempt + 1, net_request_id = v_net, sent_at = now()
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

-- The deploy body of the DTMA contract for one instance, in its own group.
create function private.dtma_deploy_body(p_instance_id uuid) returns jsonb
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select jsonb_build_object('groupId', private.dtma_group_id(i.id), 'servers', jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
           'accountToolInstanceId', i.id, 'instanceNameOnToolbox', i.instance_name_on_toolbox,
           'dockerImageUrl', c.docker_image_url, 'mcpEndpointPath', i.mcp_endpoint_path,
           'mcpTransportType', i.mcp_transport_type, 'mcpServerCapabilities', i.mcp_server_capabilities,
           'mcpDiscoveryMetadata', i.mcp_discovery_metadata, 'baseConfigOverrideJson', i.configuration,
           'requiredOAuthProviders', case when cardinality(c.required_oauth_providers) > 0 then to_jsonb(c.required_oauth_providers) end))))
    from public.account_tool_instances i
    join public.mcp_server_catalog c on c.id = i.catalog_id
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
  v_group text := private.dtma_group_id(new.id);
begin
  if new.status not in ('deploying', 'stopping', 'removing') then
    return null;
  end if;
  update public.dtma_requests r set state = 'abandoned', completed_at = now(), last_error = format('superseded by %s', new.status)
   where r.instance_id = new.id and r.state = 'queued' and r.operation in ('deploy', 'restart', 'stop', 'remove');
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
  v_status public.mcp_server_status;
begin
  select i.status into v_status from public.account_tool_instances i where i.id = p_instance_id for update;
  if not found then
    raise exception using errcode = 'P0002', message = format('MCP server instance %s not found', p_instance_id);
  end if;
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
  if not found then
    raise exception using errcode = 'P0002', message = format('MCP server %s not found', deploy_mcp_server_to_dtma.server_instance_id);
  end if;
  perform private.require_org_role(v_org, 'admin');
  perform private.request_lifecycle(deploy_mcp_server_to_dtma.server_instance_id, 'deploy');
  return private.instance_json(deploy_mcp_server_to_dtma.server_instance_id) || jsonb_build_object('dtma_request', (
    select to_jsonb(r) - 'body' from public.dtma_requests r
     where r.instance_id = deploy_mcp_server_to_dtma.server_instance_id order by r.id desc limit 1));
end $$;
comment on function public.deploy_mcp_server_to_dtma(uuid) is
  'Admins: deploys the instance on its toolbox through DTMA (pg_net). Idempotent while a deployment is under way. Returns the instance and its latest DTMA request.';

-- Outcome handlers, called by the harvest per operation: (request, ok, error). The cause of the
-- transition (dtma_response or timeout) is in mcp.dtma_cause. An instance that has moved on
-- meanwhile (a stop during a deployment) is left as it is.
create function private.dtma_on_deploy(p_request public.dtma_requests, p_ok boolean, p_error text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_instance public.account_tool_instances;
  v_cause text := coalesce(nullif(current_setting('mcp.dtma_cause', true), ''), 'dtma_response');
begin
  select * into v_instance from public.account_tool_instances i where i.id = p_request.instance_id for update;
  if not found or v_instance.status <> 'deploying' then
    return;
  end if;
  if p_ok then
    update public.account_tool_instances i
       set endpoint_url = (select t.dtma_base_url from public.account_tool_environments t where t.id = i.account_tool_environment_id)
                          || format('/mcp/servers/%s/mcp', i.instance_name_on_toolbox),
           health_status = 'unknown'
     where i.id = v_instance.id;
    perform private.apply_instance_event(v_instance.id, 'deployed', v_cause);
  else
    perform private.apply_instance_event(v_instance.id, 'deploy_failed', v_cause, p_error);
  end if;
end $$;
comment on function private.dtma_on_deploy(public.dtma_requests, boolean, text) is 'Harvest handler: a deployment succeeded (running) or failed.';

create function private.dtma_on_restart(p_request public.dtma_requests, p_ok boolean, p_error text) returns void
language sql volatile security definer
set search_path = pg_catalog, pg_temp
as $$ select private.dtma_on_deploy(p_request, p_ok, p_error) $$;
comment on function private.dtma_on_restart(public.dtma_requests, boolean, text) is 'Harvest handler: a restart is a deployment.';

-- Completes a stop or a removal: when the instance is still in p_while, moves it by p_ok_event
-- or p_failed_event; an instance that has moved on meanwhile is left as it is.
create function private.dtma_finish(p_request public.dtma_requests, p_ok boolean, p_error text,
                                    p_while public.mcp_server_status, p_ok_event text, p_failed_event text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select from public.account_tool_instances i where i.id = p_request.instance_id and i.status = p_while) then
    perform private.apply_instance_event(p_request.instance_id, case when p_ok then p_ok_event else p_failed_event end,
      coalesce(nullif(current_setting('mcp.dtma_cause', true), ''), 'dtma_response'), p_error);
  end if;
end $$;
comment on function private.dtma_finish(public.dtma_requests, boolean, text, public.mcp_server_status, text, text) is
  'Harvest helper: applies the outcome of a stop or removal to an instance still waiting for it.';

create function private.dtma_on_stop(p_request public.dtma_requests, p_ok boolean, p_error text) returns void
language sql volatile security definer
set search_path = pg_catalog, pg_temp
as $$ select private.dtma_finish(p_request, p_ok, p_error, 'stopping', 'stopped', 'stop_failed') $$;
comment on function private.dtma_on_stop(public.dtma_requests, boolean, text) is 'Harvest handler: a stop succeeded (stopped) or failed.';

create function private.dtma_on_remove(p_request public.dtma_requests, p_ok boolean, p_error text) returns void
language sql volatile security definer
set search_path = pg_catalog, pg_temp
as $$ select private.dtma_finish(p_request, p_ok, p_error, 'removing', 'removed', 'remove_failed') $$;
comment on function private.dtma_on_remove(public.dtma_requests, boolean, text) is 'Harvest handler: a removal succeeded (removed) or failed.';

-- Health poll outcome: the toolbox answers (active) or not (unresponsive); each instance's
-- status and health are reconciled with what DTMA reports; groups DTMA runs for instances the
-- database holds stopped or removed are removed.
create function private.dtma_on_status(p_request public.dtma_requests, p_ok boolean, p_error text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_instance public.account_tool_instances;
  v_groups jsonb := coalesce(p_request.response #> '{data,groups}', '{}'::jsonb);
  v_seen jsonb;
  v_group text;
begin
  if not p_ok then
    update public.account_tool_environments t set status = 'unresponsive', last_error = p_error
     where t.id = p_request.toolbox_id and t.status <> 'disabled';
    for v_instance in select * from public.account_tool_instances i
                       where i.account_tool_environment_id = p_request.toolbox_id and i.status = 'running' for update loop
      perform private.apply_instance_event(v_instance.id, 'health_bad', 'health_poll', format('DTMA did not answer: %s', p_error));
    end loop;
    return;
  end if;
  update public.account_tool_environments t set status = 'active', last_heartbeat_at = now(), last_error = null
   where t.id = p_request.toolbox_id and t.status <> 'disabled';

  for v_instance in select * from public.account_tool_instances i
                     where i.account_tool_environment_id = p_request.toolbox_id and i.status in ('running', 'unhealthy')
                     for update loop
    v_seen := v_groups -> private.dtma_group_id(v_instance.id) -> 'instances' -> v_instance.instance_name_on_toolbox;
    update public.account_tool_instances i
       set health_status = coalesce((v_seen ->> 'healthStatus')::public.mcp_health_status, 'unknown'),
           last_health_check_at = now(),
           endpoint_url = coalesce(v_seen ->> 'mcpEndpoint', i.endpoint_url)
     where i.id = v_instance.id;
    if v_seen is null or v_seen ->> 'status' in ('stopped', 'stopping') then
      perform private.apply_instance_event(v_instance.id, 'drift_stopped', 'health_poll',
        coalesce('DTMA reports it ' || (v_seen ->> 'status'), 'DTMA does not run it'));
    elsif v_instance.status = 'running' and (v_seen ->> 'status' = 'error' or v_seen ->> 'healthStatus' = 'unhealthy') then
      perform private.apply_instance_event(v_instance.id, 'health_bad', 'health_poll',
        coalesce(v_seen ->> 'errorMessage', 'DTMA reports it unhealthy'));
    elsif v_instance.status = 'unhealthy' and v_seen ->> 'status' = 'running' and v_seen ->> 'healthStatus' = 'healthy' then
      perform private.apply_instance_event(v_instance.id, 'health_ok', 'health_poll');
    end if;
  end loop;

  -- Orphans: groups DTMA runs that the database holds stopped, failed or removed (or never knew).
  for v_group in select g from jsonb_object_keys(v_groups) g
                  where not exists (select from public.account_tool_instances i
                                     where private.dtma_group_id(i.id) = g and i.account_tool_environment_id = p_request.toolbox_id
                                       and i.status in ('deploying', 'running', 'unhealthy', 'stopping', 'removing')) loop
    perform private.dtma_enqueue(p_request.toolbox_id, null, 'remove', 'DELETE',
      format('/mcp/groups/%s?forceRemove=true', v_group), null, format('orphan:%s:%s', p_request.toolbox_id, v_group));
  end loop;
end $$;
comment on function private.dtma_on_status(public.dtma_requests, boolean, text) is
  'Harvest handler of the health poll: toolbox liveness, instance health and drift, orphan groups.';

-- Harvests pg_net's responses for the outstanding DTMA requests, in a batch: success, an error
-- DTMA reports under a 201, 4xx and 5xx, timed out, lost (no response after the timeout plus a
-- margin). Transient failures are retried with exponential backoff up to max_attempts; then
-- the request fails, the instance goes to failed and keeps the last error. Scheduled with
-- pg_cron and callable directly; returns what it did.
create function public.harvest_dtma_responses(
  p_limit integer default 500, p_lost_after interval default null, p_backoff_base interval default null
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_req public.dtma_requests;
  v_res record;
  v_body jsonb;
  v_outcome text;
  v_error text;
  v_code integer;
  v_cause text;
  v_succeeded integer := 0;
  v_failed integer := 0;
  v_retried integer := 0;
  v_lost integer := 0;
  v_in_flight integer := 0;
  v_lost_after interval := coalesce(p_lost_after, private.dtma_setting('lost_after')::interval);
  v_backoff interval := coalesce(p_backoff_base, private.dtma_setting('backoff_base')::interval);
begin
  if not private.is_service_caller() then
    raise exception using errcode = '42501', message = 'only service_role harvests DTMA responses';
  end if;
  for v_req in select r.* from public.dtma_requests r where r.state = 'sent' order by r.sent_at limit p_limit
               for update skip locked loop
    select h.status_code, h.content, h.timed_out, h.error_msg into v_res
      from net._http_response h where h.id = v_req.net_request_id order by h.created desc limit 1;
    v_body := null;
    v_code := null;
    v_cause := 'dtma_response';
    if not found then
      if now() < v_req.sent_at + make_interval(secs => v_req.timeout_ms / 1000.0) + v_lost_after then
        v_in_flight := v_in_flight + 1;
        continue;
      end if;
      v_outcome := 'transient';
      v_cause := 'timeout';
      v_error := format('lost: no response %s after the %s ms timeout', v_lost_after, v_req.timeout_ms);
      v_lost := v_lost + 1;
    else
      v_code := v_res.status_code;
      v_body := private.try_jsonb(v_res.content);
      if v_res.timed_out then
        v_outcome := 'transient';
        v_cause := 'timeout';
        v_error := format('timed out after %s ms', v_req.timeout_ms);
      elsif v_code is null then
        v_outcome := 'transient';
        v_error := coalesce(v_res.error_msg, 'no response');
      elsif v_code between 200 and 299 and v_req.operation = 'deploy'
            and coalesce(v_body #> '{data,errors}', '{}'::jsonb) <> '{}'::jsonb then
        v_outcome := 'permanent';
        v_error := (select string_agg(e.key || ': ' || e.value, '; ' order by e.key) from jsonb_each_text(v_body #> '{data,errors}') e);
      elsif v_code between 200 and 299 and v_body ->> 'success' = 'false' then
        v_outcome := 'permanent';
        v_error := coalesce(v_body ->> 'error', v_body ->> 'message', 'DTMA reported a failure');
      elsif v_code between 200 and 299 or (v_code = 404 and v_req.operation in ('stop', 'remove')) then
        v_outcome := 'ok';
        v_error := null;
      else
        v_outcome := case when v_code in (408, 429) or v_code >= 500 then 'transient' else 'permanent' end;
        v_error := format('HTTP %s: %s', v_code, left(coalesce(v_body ->> 'error', v_body ->> 'message', v_res.content, ''), 500));
      end if;
    end if;

    if v_outcome = 'transient' and v_req.attempt < v_req.max_attempts then
      update public.dtma_requests r
         set state = 'queued', last_status_code = v_code, last_error = v_error,
             next_attempt_at = now() + v_backoff * power(2, v_req.attempt - 1)
       where r.id = v_req.id;
      v_retried := v_retried + 1;
      continue;
    end if;
    update public.dtma_requests r
       set state = case when v_outcome = 'ok' then 'succeeded' else 'failed' end::public.dtma_request_state,
           last_status_code = v_code, last_error = v_error, response = v_body, completed_at = now()
     where r.id = v_req.id
    returning * into v_req;
    if v_outcome = 'ok' then v_succeeded := v_succeeded + 1; else v_failed := v_failed + 1; end if;
    perform set_config('mcp.dtma_cause', v_cause, true);
    if to_regprocedure(format('private.dtma_on_%s(public.dtma_requests, boolean, text)', v_req.operation)) is not null then
      -- A handler that fails must not stall the batch: its effects roll back, the reason is kept.
      begin
        execute format('select private.%I($1, $2, $3)', 'dtma_on_' || v_req.operation) using v_req, v_outcome = 'ok', v_error;
      exception when others then
        update public.dtma_requests r
           set last_error = left(concat_ws('; ', r.last_error, format('handler failed: %s (%s)', sqlerrm, sqlstate)), 2000)
         where r.id = v_req.id;
      end;
    end if;
  end loop;
  return jsonb_build_object('succeeded', v_succeeded, 'failed', v_failed, 'retried', v_retried, 'lost', v_lost,
                            'in_flight', v_in_flight, 'sent', private.dtma_send_ready(p_limit));
end $$;
comment on function public.harvest_dtma_responses(integer, interval, interval) is
  'Service: applies pg_net''s responses to outstanding DTMA requests (retries with backoff, lost after timeout + p_lost_after; defaults in private.dtma_config), sends what is due. Returns counts.';

-- Queues a GET /mcp/status for every toolbox with something deployed (not retried: the next
-- poll is the retry). Scheduled with pg_cron.
create function public.poll_dtma_status() returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_toolbox uuid;
  v_count integer := 0;
begin
  if not private.is_service_caller() then
    raise exception using errcode = '42501', message = 'only service_role polls DTMA';
  end if;
  for v_toolbox in select t.id from public.account_tool_environments t
                    where t.status <> 'disabled'
                      and exists (select from public.account_tool_instances i
                                   where i.account_tool_environment_id = t.id and i.status not in ('pending', 'removed')) loop
    perform private.dtma_enqueue(v_toolbox, null, 'status', 'GET', '/mcp/status', null, format('status:%s', v_toolbox), 1, 5000);
    v_count := v_count + 1;
  end loop;
  return v_count;
end $$;
comment on function public.poll_dtma_status() is 'Service: queues a health poll (GET /mcp/status) for every toolbox with deployed servers. Returns how many.';

-- pg_cron 1.4 schedules by the minute; on Supabase (pg_cron 1.5+) '5 seconds' also works.
select cron.schedule('mcp-dtma-harvest', '* * * * *', 'select public.harvest_dtma_responses()');
select cron.schedule('mcp-dtma-health', '* * * * *', 'select public.poll_dtma_status()');

revoke execute on function public.deploy_mcp_server_to_dtma(uuid) from public, anon;
revoke execute on function public.harvest_dtma_responses(integer, interval, interval), public.poll_dtma_status()
  from public, anon, authenticated;
grant execute on function public.deploy_mcp_server_to_dtma(uuid) to authenticated, service_role;
grant execute on function public.harvest_dtma_responses(integer, interval, interval), public.poll_dtma_status() to service_role;

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
  v_admin := private.is_service_caller() or coalesce(private.org_role(p_organization_id) <= 'admin', false);
  return query
    select i.id, i.display_name, i.instance_name_on_toolbox, i.status, i.health_status, i.last_error, i.last_health_check_at,
           t.id, t.status::text, t.last_heartbeat_at,
           case when v_admin then (
             select jsonb_build_object('id', r.id, 'operation', r.operation, 'state', r.state, 'attempt', r.attempt,
                                       'max_attempts', r.max_attempts, 'last_status_code', r.last_status_code,
                                       'last_error', r.last_error, 'next_attempt_at', r.next_attempt_at, 'created_at', r.created_at)
               from (select r0.* from public.dtma_requests r0 where r0.instance_id = i.id and r0.organization_id = i.organization_id
                      order by r0.id desc limit 1) r
              where r.state in ('queued', 'sent', 'failed')) end
      from public.account_tool_instances i
      join public.account_tool_environments t on t.id = i.account_tool_environment_id
     where i.organization_id = p_organization_id and i.status <> 'removed'
     order by i.priority desc, i.display_name;
end $$;
comment on function public.get_mcp_server_status(uuid) is
  'Members: each MCP server of the organization with its status, health, last error and toolbox liveness; admins also see its pending or failed DTMA request.';

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
