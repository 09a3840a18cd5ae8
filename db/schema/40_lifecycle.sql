-- The lifecycle of an MCP server instance: a data-driven state machine. The table lists every
-- allowed (from, event, to); a trigger refuses every other status change with 55000; every
-- transition is appended to the audit trail with its event and cause.

create table public.mcp_server_transitions (
  from_status public.mcp_server_status not null,
  event text not null,
  to_status public.mcp_server_status not null,
  description text not null,
  primary key (from_status, event)
);
comment on table public.mcp_server_transitions is 'The lifecycle state machine of MCP server instances: allowed (from, event, to).';
create index mcp_server_transitions_to_idx on public.mcp_server_transitions (from_status, to_status);
alter table public.mcp_server_transitions enable row level security;

insert into public.mcp_server_transitions (from_status, event, to_status, description) values
  ('pending',   'deploy',        'deploying', 'deployment requested'),
  ('stopped',   'deploy',        'deploying', 'redeployment requested'),
  ('failed',    'deploy',        'deploying', 'redeployment after a failure'),
  ('deploying', 'deployed',      'running',   'DTMA deployed it'),
  ('deploying', 'deploy_failed', 'failed',    'DTMA refused it, or retries ran out'),
  ('running',   'restart',       'deploying', 'restart requested'),
  ('unhealthy', 'restart',       'deploying', 'restart requested'),
  ('running',   'health_bad',    'unhealthy', 'health poll found it unhealthy'),
  ('unhealthy', 'health_ok',     'running',   'health poll found it healthy again'),
  ('running',   'drift_stopped', 'stopped',   'DTMA reports it is not running'),
  ('unhealthy', 'drift_stopped', 'stopped',   'DTMA reports it is not running'),
  ('deploying', 'stop',          'stopping',  'stop requested during deployment'),
  ('running',   'stop',          'stopping',  'stop requested'),
  ('unhealthy', 'stop',          'stopping',  'stop requested'),
  ('stopping',  'stopped',       'stopped',   'DTMA stopped it'),
  ('stopping',  'stop_failed',   'failed',    'DTMA could not stop it, or retries ran out'),
  ('pending',   'remove',        'removed',   'removed before it was ever deployed'),
  ('stopped',   'remove',        'removing',  'removal requested'),
  ('failed',    'remove',        'removing',  'removal requested'),
  ('running',   'remove',        'removing',  'removal requested'),
  ('unhealthy', 'remove',        'removing',  'removal requested'),
  ('removing',  'removed',       'removed',   'DTMA removed it'),
  ('removing',  'remove_failed', 'failed',    'DTMA could not remove it, or retries ran out');

-- Refuses any status change the state machine does not allow; audits the allowed ones.
create function private.instance_status_guard() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_event text := nullif(current_setting('mcp.lifecycle_event', true), '');
begin
  if tg_op = 'INSERT' then
    if new.status <> 'pending' then
      raise exception using errcode = '55000', message = format('a new MCP server instance starts as pending, not %s', new.status);
    end if;
    return new;
  end if;
  if new.status = old.status then
    return new;
  end if;
  if not exists (select from public.mcp_server_transitions t
                  where t.from_status = old.status and t.to_status = new.status
                    and (v_event is null or t.event = v_event)) then
    raise exception using errcode = '55000',
      message = format('illegal lifecycle transition %s -> %s%s', old.status, new.status, coalesce(' on ' || v_event, '')),
      hint = 'see public.mcp_server_transitions for the allowed transitions';
  end if;
  new.status_changed_at := now();
  perform private.audit(new.organization_id, 'instance.transition', 'mcp_instance', new.id::text,
                        jsonb_build_object('status', old.status),
                        -- Admins read the audit: the error as classified (the full one stays with the platform).
                        jsonb_build_object('status', new.status, 'event', v_event, 'last_error', private.dtma_error_summary(new.last_error)));
  return new;
end $$;
comment on function private.instance_status_guard() is 'Trigger: enforces the lifecycle state machine and audits each transition.';

create trigger account_tool_instances_status_guard before insert or update of status on public.account_tool_instances
  for each row execute function private.instance_status_guard();

-- An instance's status, its row locked until the transaction ends; P0002 when there is none.
create function private.lock_instance_status(p_instance_id uuid) returns public.mcp_server_status
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
  return v_status;
end $$;
comment on function private.lock_instance_status(uuid) is 'Locks an instance and returns its status; raises P0002 when it does not exist.';
revoke execute on function private.lock_instance_status(uuid) from public, anon, authenticated, service_role;

-- Applies a lifecycle event to an instance: the transition table gives the next status. The event
-- and cause reach the guard and the audit trail as settings (listed in db/schema/05_audit.sql).
-- Returns the new status; raises 55000 when the event is not allowed in the current status.
create function private.apply_instance_event(p_instance_id uuid, p_event text, p_cause text default 'user_action', p_error text default null)
returns public.mcp_server_status
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_from public.mcp_server_status;
  v_to public.mcp_server_status;
begin
  v_from := private.lock_instance_status(p_instance_id);
  select t.to_status into v_to from public.mcp_server_transitions t where t.from_status = v_from and t.event = p_event;
  if not found then
    raise exception using errcode = '55000', message = format('cannot %s an MCP server that is %s', p_event, v_from),
      hint = 'see public.mcp_server_transitions for the allowed transitions';
  end if;
  perform set_config('mcp.lifecycle_event', p_event, true);
  perform set_config('mcp.audit_cause', coalesce(p_cause, 'user_action'), true);
  update public.account_tool_instances i
     set status = v_to,
         last_error = case when p_error is not null then p_error when v_to in ('running', 'stopped', 'removed') then null else i.last_error end,
         health_status = case when v_to in ('running', 'unhealthy') then i.health_status else 'unknown' end
   where i.id = p_instance_id;
  perform set_config('mcp.lifecycle_event', '', true);
  perform set_config('mcp.audit_cause', '', true);
  return v_to;
end $$;
comment on function private.apply_instance_event(uuid, text, text, text) is
  'Moves an instance along the state machine by event; returns the new status or raises 55000.';
