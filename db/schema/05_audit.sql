-- The audit trail: every grant, revoke, role and membership change, lifecycle transition and
-- credential rotation, written by trigger in the same transaction as the change. Append-only:
-- UPDATE, DELETE and TRUNCATE are refused to every role, the owner included.

-- Transaction settings. A trigger takes no argument from the statement that fires it, so three
-- values reach the audit and lifecycle triggers through transaction-local settings. These are
-- all of them; the walker of db/tests/functions.test.sql fails on any other mcp.* setting, and
-- on any function that sets or reads one without being named here.
--   mcp.audit_reason     set by private.set_audit_context (which the RPCs call around a write);
--                        read by private.audit (the reason of each row) and
--                        public.revoke_agent_mcp_access (the revoke_reason it records)
--   mcp.audit_cause      set by private.set_audit_context and private.apply_instance_event;
--                        read by private.audit (the cause of each row)
--   mcp.lifecycle_event  set by private.apply_instance_event (db/schema/40_lifecycle.sql);
--                        read by private.instance_status_guard (the event a transition must match)
create function private.transaction_settings()
returns table (name text, set_by regprocedure[], read_by regprocedure[])
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select s.name, s.set_by::regprocedure[], s.read_by::regprocedure[]
    from (values
      ('mcp.audit_reason', '{"private.set_audit_context(text,text)"}'::text[],
       '{"private.audit(uuid,text,text,text,jsonb,jsonb,text)","public.revoke_agent_mcp_access(uuid,uuid)"}'::text[]),
      ('mcp.audit_cause', '{"private.set_audit_context(text,text)","private.apply_instance_event(uuid,text,text,text)"}',
       '{"private.audit(uuid,text,text,text,jsonb,jsonb,text)"}'),
      ('mcp.lifecycle_event', '{"private.apply_instance_event(uuid,text,text,text)"}',
       '{"private.instance_status_guard()"}')
    ) as s(name, set_by, read_by)
$$;
comment on function private.transaction_settings() is
  'The mcp.* transaction settings, each with the functions that set and read it (the list above it in db/schema/05_audit.sql).';
revoke execute on function private.transaction_settings() from public, anon, authenticated, service_role;

create table public.audit_log (
  id bigint generated always as identity primary key,
  occurred_at timestamptz not null default clock_timestamp(),
  organization_id uuid,
  actor_id uuid,
  actor_role text not null,
  action text not null,
  entity_type text not null,
  entity_id text not null,
  before jsonb,
  after jsonb,
  reason text,
  cause text not null default 'user_action'
);
comment on table public.audit_log is
  'Append-only audit trail (who, when, before and after, reason, cause) written by triggers in the changing transaction.';
create index audit_log_org_time_idx on public.audit_log (organization_id, occurred_at desc);
create index audit_log_entity_idx on public.audit_log (entity_type, entity_id, occurred_at desc);
alter table public.audit_log enable row level security;

-- The one append-only trigger: refuses UPDATE, DELETE and TRUNCATE of a history table (the
-- audit trail, the interaction log) to every role, the owner included. tg_argv[0] names it.
create function private.refuse_append_only_change() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception using errcode = '42501', message = format('%s is append-only', tg_argv[0]),
    hint = format('%s on %s is refused to every role', tg_op, tg_table_name);
end $$;
comment on function private.refuse_append_only_change() is
  'Trigger: refuses UPDATE, DELETE and TRUNCATE of an append-only table (tg_argv[0] names it).';

create trigger audit_log_append_only before update or delete on public.audit_log
  for each row execute function private.refuse_append_only_change('the audit trail');
create trigger audit_log_no_truncate before truncate on public.audit_log
  for each statement execute function private.refuse_append_only_change('the audit trail');

-- The one history trigger: a row that is history (a grant, an OAuth permission, an API key) is
-- never changed but in the columns named, and once revoked only in fewer still. Arguments:
-- tg_argv[0] names the row ('a grant'), tg_argv[1] is the hint, tg_argv[2] the columns that may
-- change while it is live (its revocation among them), tg_argv[3] those that may still change
-- once it is revoked; without tg_argv[3] a revoked row is never updated again.
create function private.refuse_history_change() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_live_mutable text[] := tg_argv[2]::text[];
  v_revoked_mutable text[] := case when tg_nargs > 3 then tg_argv[3]::text[] end;
begin
  if (to_jsonb(new) - v_live_mutable) <> (to_jsonb(old) - v_live_mutable)
     or (old.revoked_at is not null
         and (v_revoked_mutable is null or (to_jsonb(new) - v_revoked_mutable) <> (to_jsonb(old) - v_revoked_mutable))) then
    raise exception using errcode = '55000', message = format('%s cannot be changed, only revoked once', tg_argv[0]),
      hint = tg_argv[1];
  end if;
  return new;
end $$;
comment on function private.refuse_history_change() is
  'Trigger: a history row changes only in the columns tg_argv[2] names, and once revoked only in those of tg_argv[3] (none without it).';

-- Appends one audit row. The reason and cause of the change come from the transaction-local
-- settings mcp.audit_reason and mcp.audit_cause that the RPCs set before they write.
create function private.audit(
  p_organization_id uuid, p_action text, p_entity_type text, p_entity_id text,
  p_before jsonb, p_after jsonb, p_reason text default null
) returns void
language sql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into public.audit_log (organization_id, actor_id, actor_role, action, entity_type, entity_id, before, after, reason, cause)
  values (p_organization_id, auth.uid(), private.caller_db_role(), p_action, p_entity_type, p_entity_id,
          p_before, p_after, coalesce(p_reason, nullif(current_setting('mcp.audit_reason', true), '')),
          coalesce(nullif(current_setting('mcp.audit_cause', true), ''), 'user_action'))
$$;
comment on function private.audit(uuid, text, text, text, jsonb, jsonb, text) is 'Appends one row to the audit trail.';

-- The one audit trigger: audits inserts, updates (only when a column other than updated_at and
-- the hidden ones changed) and deletes of a row that has organization_id. tg_argv[0] is the
-- entity type; tg_argv[1], if given, the columns never written to the trail (a hash, a last-use
-- time); tg_argv[2], if given, the column whose new value is an update's reason (else the
-- transaction's audit reason).
create function private.audit_row_change() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_hidden text[] := case when tg_nargs > 1 then tg_argv[1]::text[] else '{}' end;
  v_before jsonb := case when tg_op <> 'INSERT' then to_jsonb(old) - v_hidden end;
  v_after jsonb := case when tg_op <> 'DELETE' then to_jsonb(new) - v_hidden end;
  v_row jsonb := coalesce(v_after, v_before);
begin
  if tg_op = 'UPDATE' and (v_before - 'updated_at') = (v_after - 'updated_at') then
    return new;
  end if;
  perform private.audit((v_row ->> 'organization_id')::uuid, tg_argv[0] || '.' || lower(tg_op), tg_argv[0],
                        coalesce(v_row ->> 'id', concat_ws(':', v_row ->> 'organization_id', v_row ->> 'user_id')),
                        v_before, v_after,
                        case when tg_op = 'UPDATE' and tg_nargs > 2 then v_after ->> tg_argv[2] end);
  return coalesce(new, old);
end $$;
comment on function private.audit_row_change() is
  'Trigger: appends the change of a row to the audit trail (tg_argv: entity type, hidden columns, the column holding an update''s reason).';

-- Sets the reason and cause that the audit triggers record for the rest of the transaction.
create function private.set_audit_context(p_reason text, p_cause text default 'user_action') returns void
language sql volatile
set search_path = pg_catalog, pg_temp
as $$
  select set_config('mcp.audit_reason', coalesce(p_reason, ''), true), set_config('mcp.audit_cause', coalesce(p_cause, 'user_action'), true);
$$;
comment on function private.set_audit_context(text, text) is 'Sets the audit reason and cause for the current transaction.';

-- Keeps updated_at current on every table that has it.
create function private.touch_updated_at() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  new.updated_at := now();
  return new;
end $$;
comment on function private.touch_updated_at() is 'Trigger: sets updated_at to now().';
