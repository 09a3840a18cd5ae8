-- The DTMA harvest: what each answer pg_net recorded means (success, DTMA-reported errors under a
-- 201, 4xx, 5xx, timeouts, lost responses), the outcome handler of each operation, and the batch
-- that applies them with retries and exponential backoff. The outbox itself is db/functions/dtma.sql.

-- What one DTMA answer means, for both dialects (docs/DTMA.md): a pure function of the request's
-- operation and the answer pg_net recorded. Outcomes:
--   ok          the DTMA did it (a stop or removal answered "not found" is done: the group is gone)
--   transient   worth sending again: no HTTP answer (whatever pg_net's wording), 408, 429, 5xx, or
--               a deployment that failed for a cause that passes (the Docker daemon unreachable)
--   permanent   refused for good
--   declined    a restart the DTMA would not do (cooldown, restart cap, unknown): nothing changed
--   unconfirmed a credentials refresh the DTMA accepted without saying it was applied
--   absent      the group asked about does not run (a health check, or the check before a resend)
--   pending     the group of a deploy whose answer was lost is still starting: ask again later
create function private.dtma_classify(
  p_operation text, p_check_first boolean, p_status_code integer, p_body jsonb, p_content text,
  p_timed_out boolean, p_error_msg text, p_timeout_ms integer, out outcome text, out error text
) returns record
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_said text := coalesce(p_body ->> 'error', p_body ->> 'message', left(p_content, 500), '');
  v_refused boolean := coalesce(p_body ->> 'success' = 'false', false);
  v_errors jsonb := case when jsonb_typeof(p_body #> '{data,errors}') = 'object' then p_body #> '{data,errors}' else '{}'::jsonb end;
  v_not_found boolean := p_status_code = 404 or concat_ws(' ', p_body ->> 'error', p_body ->> 'message') ~* 'not found';
  v_health jsonb := p_body #> '{data,health,instances}';
begin
  if coalesce(p_timed_out, false) then
    outcome := 'transient'; error := format('timed out after %s ms', p_timeout_ms);
  elsif p_status_code is null then
    outcome := 'transient'; error := 'no HTTP answer: ' || coalesce(p_error_msg, 'unknown error');
  elsif p_operation in ('health', 'deploy') and (p_check_first or p_operation = 'health') and v_not_found then
    outcome := 'absent'; error := v_said;
  elsif p_check_first and p_status_code between 200 and 299 then
    -- The group of a deploy whose answer was lost: it runs (done), is still starting (ask again),
    -- or DTMA keeps it failed.
    select 'permanent', string_agg(e.key || ': ' || coalesce(e.value ->> 'errorMessage', e.value ->> 'status'), '; ' order by e.key)
      into outcome, error
      from jsonb_each(case when jsonb_typeof(v_health) = 'object' then v_health else '{}'::jsonb end) e
     where e.value ->> 'status' = 'error';
    if error is null and exists (select from jsonb_each(case when jsonb_typeof(v_health) = 'object' then v_health else '{}'::jsonb end) e
                                  where e.value ->> 'status' in ('pending', 'pulling', 'starting')) then
      outcome := 'pending'; error := 'DTMA is still deploying its group';
    elsif error is null then
      outcome := 'ok';
    end if;
  elsif p_operation in ('stop', 'remove') and v_not_found then
    outcome := 'ok'; error := null;
  elsif p_operation = 'restart' and (p_status_code between 400 and 499 or (p_status_code between 200 and 299 and v_refused)) then
    outcome := 'declined'; error := v_said;
  elsif p_status_code between 200 and 299 and p_operation = 'deploy' and (v_errors <> '{}'::jsonb or v_refused) then
    error := coalesce((select string_agg(e.key || ': ' || e.value, '; ' order by e.key) from jsonb_each_text(v_errors) e), v_said);
    -- DTMA reports every failure under a 201; a daemon or network that is down passes, the rest does not.
    outcome := case when error ~* '(connect (ENOENT|ECONNREFUSED|ETIMEDOUT)|ECONNRESET|EAI_AGAIN|socket hang up|docker daemon|\(HTTP code 5[0-9][0-9]\)|timed? ?out)'
                    then 'transient' else 'permanent' end;
  elsif p_status_code between 200 and 299 and v_refused then
    outcome := 'permanent'; error := coalesce(nullif(v_said, ''), 'DTMA reported a failure');
  elsif p_status_code between 200 and 299 and p_operation = 'credentials_refresh'
        and not coalesce(p_body #>> '{data,status}' in ('refreshed', 'stored') or p_body #>> '{data,restarted}' = 'true', false) then
    outcome := 'unconfirmed'; error := format('DTMA answered %s without saying the credentials were applied',
                                             coalesce(p_body #>> '{data,status}', 'success'));
  elsif p_status_code between 200 and 299 then
    outcome := 'ok'; error := null;
  else
    outcome := case when p_status_code in (408, 429) or p_status_code >= 500 then 'transient' else 'permanent' end;
    error := format('HTTP %s: %s', p_status_code, left(v_said, 500));
  end if;
end $$;
comment on function private.dtma_classify(text, boolean, integer, jsonb, text, boolean, text, integer) is
  'What a DTMA answer means for an operation: ok, transient, permanent, declined, unconfirmed or absent, with the reason.';

-- Outcome handlers, called by private.dtma_dispatch per operation with (request, outcome, error,
-- cause). An instance that has moved on meanwhile (a stop during a deployment) is left as it is.
create function private.dtma_on_deploy(p_request public.dtma_requests, p_outcome text, p_error text, p_cause text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_instance public.account_tool_instances;
begin
  select * into v_instance from public.account_tool_instances i where i.id = p_request.instance_id for update;
  if not found or v_instance.status <> 'deploying' then
    return;
  end if;
  if p_outcome = 'ok' then
    -- The project's DTMA relays each server's MCP endpoint; the upstream one has no such route.
    update public.account_tool_instances i
       set endpoint_url = (select case t.dtma_dialect when 'project' then t.dtma_base_url || format('/mcp/servers/%s/mcp', i.instance_name_on_toolbox) end
                             from public.account_tool_environments t where t.id = i.account_tool_environment_id),
           health_status = 'unknown'
     where i.id = v_instance.id;
    perform private.apply_instance_event(v_instance.id, 'deployed', p_cause);
  elsif p_request.operation = 'restart' then
    -- A restart that did not happen leaves the server as it ran; the health poll says how that is.
    perform private.apply_instance_event(v_instance.id, 'restart_declined', p_cause, 'restart declined: ' || coalesce(p_error, 'no reason given'));
  else
    perform private.apply_instance_event(v_instance.id, 'deploy_failed', p_cause, p_error);
  end if;
end $$;
comment on function private.dtma_on_deploy(public.dtma_requests, text, text, text) is
  'Harvest handler of a deploy or restart: running, failed, or (a restart declined) running as before.';

-- Completes a stop or a removal: when the instance is still in p_while, moves it by p_ok_event
-- or p_failed_event; an instance that has moved on meanwhile is left as it is.
create function private.dtma_finish(p_request public.dtma_requests, p_ok boolean, p_error text, p_cause text,
                                    p_while public.mcp_server_status, p_ok_event text, p_failed_event text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select from public.account_tool_instances i where i.id = p_request.instance_id and i.status = p_while) then
    perform private.apply_instance_event(p_request.instance_id, case when p_ok then p_ok_event else p_failed_event end, p_cause, p_error);
  end if;
end $$;
comment on function private.dtma_finish(public.dtma_requests, boolean, text, text, public.mcp_server_status, text, text) is
  'Harvest helper: applies the outcome of a stop or removal to an instance still waiting for it.';

-- Toolbox liveness from GET /mcp/status: it answers (active) or not (unresponsive, its servers
-- unhealthy). The answer also tells the dialect: the project's lists its groups under data; the
-- upstream one is shadowed by a handler answering docker ps text. Only a group listing can be
-- swept for orphans, and only this toolbox's own groups (named under it).
create function private.dtma_on_status(p_request public.dtma_requests, p_outcome text, p_error text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_groups jsonb := p_request.response #> '{data,groups}';
  v_prefix text := 'mcp-' || p_request.toolbox_id::text || '-';
  v_group text;
  v_id uuid;
begin
  if p_outcome <> 'ok' then
    update public.account_tool_environments t set status = 'unresponsive', last_error = p_error
     where t.id = p_request.toolbox_id and t.status <> 'disabled';
    for v_id in select i.id from public.account_tool_instances i
                 where i.account_tool_environment_id = p_request.toolbox_id and i.status = 'running' for update loop
      perform private.apply_instance_event(v_id, 'health_bad', 'health_poll', format('DTMA did not answer: %s', p_error));
    end loop;
    return;
  end if;
  update public.account_tool_environments t
     set status = 'active', last_heartbeat_at = now(), last_error = null,
         dtma_dialect = case when jsonb_typeof(v_groups) = 'object' then 'project'
                             when jsonb_typeof(p_request.response -> 'mcp_servers') = 'string' then 'upstream'
                             else t.dtma_dialect end
   where t.id = p_request.toolbox_id and t.status <> 'disabled';
  if jsonb_typeof(v_groups) is distinct from 'object' then
    return;
  end if;
  for v_group in select g from jsonb_object_keys(v_groups) g
                  where starts_with(g, v_prefix)
                    and not exists (select from public.account_tool_instances i
                                     where private.dtma_group_id(i.account_tool_environment_id, i.id) = g
                                       and i.account_tool_environment_id = p_request.toolbox_id
                                       and i.status in ('deploying', 'running', 'unhealthy', 'stopping', 'removing')) loop
    perform private.dtma_enqueue(p_request.toolbox_id, null, 'remove', 'DELETE',
      format('/mcp/groups/%s?forceRemove=true', v_group), null, format('orphan:%s:%s', p_request.toolbox_id, v_group));
  end loop;
end $$;
comment on function private.dtma_on_status(public.dtma_requests, text, text) is
  'Harvest handler of GET /mcp/status: toolbox liveness, its DTMA dialect, and removal of its own orphan groups.';

-- An instance's health from GET /mcp/health/:groupId (both dialects have it). An answer it
-- cannot read makes health unknown with the reason, never stopped; "not found" means the DTMA
-- does not run the group. A report of the server started after an unconfirmed credentials
-- refresh confirms that refresh.
create function private.dtma_on_health(p_request public.dtma_requests, p_outcome text, p_error text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_instance public.account_tool_instances;
  v_seen jsonb;
  v_refresh public.dtma_requests;
begin
  select * into v_instance from public.account_tool_instances i where i.id = p_request.instance_id for update;
  if not found or v_instance.status not in ('running', 'unhealthy') then
    return;
  end if;
  if p_outcome = 'absent' then
    perform private.apply_instance_event(v_instance.id, 'drift_stopped', 'health_poll', 'DTMA does not run its group');
    return;
  end if;
  v_seen := p_request.response #> array['data', 'health', 'instances', v_instance.instance_name_on_toolbox];
  if p_outcome <> 'ok' or jsonb_typeof(v_seen) is distinct from 'object' then
    update public.account_tool_instances i
       set health_status = 'unknown', last_health_check_at = now(),
           last_error = left('health unknown: ' || coalesce(p_error, 'unreadable answer: ' || left(p_request.response::text, 300)), 1000)
     where i.id = v_instance.id;
    return;
  end if;
  update public.account_tool_instances i
     set health_status = case when v_seen ->> 'healthStatus' in ('healthy', 'unhealthy', 'unknown')
                              then (v_seen ->> 'healthStatus')::public.mcp_health_status else 'unknown' end,
         last_health_check_at = now()
   where i.id = v_instance.id;
  if v_seen ->> 'status' in ('stopped', 'stopping') then
    perform private.apply_instance_event(v_instance.id, 'drift_stopped', 'health_poll', 'DTMA reports it ' || (v_seen ->> 'status'));
    return;
  elsif v_instance.status = 'running' and (v_seen ->> 'status' = 'error' or v_seen ->> 'healthStatus' = 'unhealthy') then
    perform private.apply_instance_event(v_instance.id, 'health_bad', 'health_poll', coalesce(v_seen ->> 'errorMessage', 'DTMA reports it unhealthy'));
  elsif v_instance.status = 'unhealthy' and v_seen ->> 'status' = 'running' and v_seen ->> 'healthStatus' = 'healthy' then
    perform private.apply_instance_event(v_instance.id, 'health_ok', 'health_poll');
  end if;
  for v_refresh in select r.* from public.dtma_requests r
                    where r.instance_id = v_instance.id and r.state = 'unconfirmed'
                      and private.try_timestamptz(v_seen ->> 'startTime') > r.sent_at
                    for update loop
    update public.dtma_requests r set state = 'succeeded', completed_at = now(),
           last_error = 'confirmed by a health report of the server started after it'
     where r.id = v_refresh.id returning * into v_refresh;
    perform private.dtma_dispatch(v_refresh, 'ok', null, 'health_poll');
  end loop;
end $$;
comment on function private.dtma_on_health(public.dtma_requests, text, text) is
  'Harvest handler of GET /mcp/health/:groupId: instance health and drift; confirms credentials refreshes the server restarted for.';

-- Parses text as a timestamp, or null.
create function private.try_timestamptz(p_text text) returns timestamptz
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  return p_text::timestamptz;
exception when others then
  return null;
end $$;
comment on function private.try_timestamptz(text) is 'p_text as timestamptz, or null when it does not parse.';

-- Calls the handler of a request's operation: a static case, so an operation without a handler
-- fails loudly here (and in db/tests/dtma.test.sql) rather than being skipped. A handler that
-- fails must not stall the batch: its effects roll back, the reason is kept on the request.
create function private.dtma_dispatch(p_request public.dtma_requests, p_outcome text, p_error text, p_cause text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  case p_request.operation
    when 'deploy', 'restart' then perform private.dtma_on_deploy(p_request, p_outcome, p_error, p_cause);
    when 'stop' then perform private.dtma_finish(p_request, p_outcome = 'ok', p_error, p_cause, 'stopping', 'stopped', 'stop_failed');
    when 'remove' then perform private.dtma_finish(p_request, p_outcome = 'ok', p_error, p_cause, 'removing', 'removed', 'remove_failed');
    when 'status' then perform private.dtma_on_status(p_request, p_outcome, p_error);
    when 'health' then perform private.dtma_on_health(p_request, p_outcome, p_error);
    when 'credentials_refresh' then perform private.dtma_on_credentials_refresh(p_request, p_outcome = 'ok', p_error);
  end case;
exception when others then
  update public.dtma_requests r
     set last_error = left(concat_ws('; ', r.last_error, format('handler failed: %s (%s)', sqlerrm, sqlstate)), 2000)
   where r.id = p_request.id;
end $$;
comment on function private.dtma_dispatch(public.dtma_requests, text, text, text) is
  'Applies a finished DTMA request to the database through its operation''s handler (static dispatch).';

-- Harvests pg_net's responses for the outstanding DTMA requests, in a batch, through
-- private.dtma_classify. A response counts only in the pg_net epoch of its send: after a crash
-- pg_net's ids start again, so an older request is lost, never given a newer one's answer. Lost
-- and transient outcomes are retried with exponential backoff up to max_attempts; a deploy whose
-- answer was lost first asks DTMA whether its group runs. Unconfirmed credentials refreshes that
-- no health report confirmed in time fail. Scheduled with pg_cron and callable directly.
create function public.harvest_dtma_responses(
  p_limit integer default 500, p_lost_after interval default null, p_backoff_base interval default null
) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_req public.dtma_requests;
  v_res record;
  v_found boolean;
  v_body jsonb;
  v_outcome text;
  v_error text;
  v_code integer;
  v_cause text;
  v_epoch uuid := (select e.epoch from private.net_epoch e);
  v_succeeded integer := 0;
  v_failed integer := 0;
  v_retried integer := 0;
  v_lost integer := 0;
  v_in_flight integer := 0;
  v_lost_after interval := coalesce(p_lost_after, private.dtma_setting('lost_after')::interval);
  v_backoff interval := coalesce(p_backoff_base, private.dtma_setting('backoff_base')::interval);
begin
  perform private.require_service_caller('harvest DTMA responses');
  for v_req in select r.* from public.dtma_requests r
                where r.state = 'unconfirmed' and r.sent_at < now() - private.dtma_setting('confirm_within')::interval
                for update skip locked loop
    update public.dtma_requests r set state = 'failed', completed_at = now(),
           last_error = format('not confirmed: no health report showed the server restarted within %s', private.dtma_setting('confirm_within'))
     where r.id = v_req.id returning * into v_req;
    perform private.dtma_dispatch(v_req, 'permanent', v_req.last_error, 'timeout');
    v_failed := v_failed + 1;
  end loop;

  for v_req in select r.* from public.dtma_requests r where r.state = 'sent' order by r.sent_at limit p_limit
               for update skip locked loop
    -- The instance first, without waiting: a lifecycle change that holds it may be waiting for
    -- this request (it abandons queued ones); its answer is applied by the next harvest.
    if v_req.instance_id is not null
       and not exists (select from public.account_tool_instances i where i.id = v_req.instance_id for update skip locked) then
      v_in_flight := v_in_flight + 1;
      continue;
    end if;
    v_found := false;
    if v_req.net_epoch is not distinct from v_epoch then
      select h.status_code, h.content, h.timed_out, h.error_msg into v_res
        from net._http_response h where h.id = v_req.net_request_id order by h.created desc limit 1;
      v_found := found;
    end if;
    v_body := null;
    v_code := null;
    v_cause := 'dtma_response';
    if not v_found then
      if v_req.net_epoch is not distinct from v_epoch
         and now() < v_req.sent_at + make_interval(secs => v_req.timeout_ms / 1000.0) + v_lost_after then
        v_in_flight := v_in_flight + 1;
        continue;
      end if;
      v_outcome := 'transient';
      v_cause := 'timeout';
      v_error := case when v_req.net_epoch is not distinct from v_epoch
                      then format('lost: no response %s after the %s ms timeout', v_lost_after, v_req.timeout_ms)
                      else 'lost: the database restarted after it was sent (pg_net''s queue and responses were reset)' end;
      v_lost := v_lost + 1;
    else
      v_code := v_res.status_code;
      v_body := private.try_jsonb(v_res.content);
      select c.outcome, c.error into v_outcome, v_error
        from private.dtma_classify(v_req.operation, v_req.check_first, v_code, v_body, v_res.content,
                                   v_res.timed_out, v_res.error_msg, v_req.timeout_ms) c;
      if v_res.timed_out then
        v_cause := 'timeout';
      end if;
    end if;

    if v_outcome = 'absent' and v_req.check_first then
      -- The group of a deploy whose answer was lost does not run: send the deploy itself now.
      update public.dtma_requests r set state = 'queued', check_first = false, last_status_code = v_code,
             last_error = 'its group does not run: sending the deploy again', next_attempt_at = now()
       where r.id = v_req.id;
      v_retried := v_retried + 1;
      continue;
    end if;
    if v_outcome = 'pending' and now() < v_req.created_at + make_interval(secs => 2 * v_req.max_attempts * v_req.timeout_ms / 1000.0) then
      -- The DTMA is still deploying it: wait, beyond max_attempts, but no longer than twice all attempts' timeouts.
      update public.dtma_requests r set state = 'queued', last_status_code = v_code, last_error = v_error,
             next_attempt_at = now() + greatest(v_backoff, interval '500 milliseconds')
       where r.id = v_req.id;
      v_retried := v_retried + 1;
      continue;
    elsif v_outcome = 'pending' then
      v_outcome := 'transient';
    end if;
    if v_outcome = 'transient' and v_req.attempt < v_req.max_attempts then
      update public.dtma_requests r
         set state = 'queued', last_status_code = v_code, last_error = v_error,
             next_attempt_at = now() + v_backoff * power(2, v_req.attempt - 1),
             -- No answer to a deploy: DTMA may have done it; a blind resend would break the group.
             check_first = r.check_first or (r.operation = 'deploy' and v_code is null)
       where r.id = v_req.id;
      v_retried := v_retried + 1;
      continue;
    end if;
    if v_outcome = 'unconfirmed' then
      update public.dtma_requests r set state = 'unconfirmed', last_status_code = v_code, last_error = v_error, response = v_body
       where r.id = v_req.id;
      continue;
    end if;
    update public.dtma_requests r
       set state = case when v_outcome in ('ok', 'absent') then 'succeeded' else 'failed' end::public.dtma_request_state,
           last_status_code = v_code, last_error = v_error, response = v_body, completed_at = now()
     where r.id = v_req.id
    returning * into v_req;
    if v_outcome in ('ok', 'absent') then v_succeeded := v_succeeded + 1; else v_failed := v_failed + 1; end if;
    perform private.dtma_dispatch(v_req, v_outcome, v_error, v_cause);
  end loop;
  return jsonb_build_object('succeeded', v_succeeded, 'failed', v_failed, 'retried', v_retried, 'lost', v_lost,
                            'in_flight', v_in_flight, 'sent', private.dtma_send_ready(p_limit));
end $$;
comment on function public.harvest_dtma_responses(integer, interval, interval) is
  'Service: applies pg_net''s responses to outstanding DTMA requests (same pg_net epoch only; retries with backoff, lost after timeout + p_lost_after; defaults in private.dtma_config), sends what is due. Returns counts.';

-- pg_cron 1.4 schedules by the minute; on Supabase (pg_cron 1.5+) '5 seconds' also works.
select cron.schedule('mcp-dtma-harvest', '* * * * *', 'select public.harvest_dtma_responses()');

revoke execute on function public.harvest_dtma_responses(integer, interval, interval) from public, anon, authenticated;
grant execute on function public.harvest_dtma_responses(integer, interval, interval) to service_role;
