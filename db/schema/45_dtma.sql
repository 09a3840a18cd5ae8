-- The DTMA outbox: every request to a toolbox's DTMA is a row here, sent through pg_net
-- (net.http_*) and harvested from net._http_response. pg_net neither retries nor calls back,
-- so this table keeps the request ids, the attempts, the backoff and the outcome. One
-- request per instance is in flight at a time, so DTMA sees an instance's operations in order.
-- docs/DTMA.md is the contract: routes, what each answer means, the two dialects.

-- unconfirmed: DTMA accepted a credentials refresh without saying it was applied; it becomes
-- succeeded when a health report shows the server restarted after it, failed when that never comes.
create type public.dtma_request_state as enum ('queued', 'sent', 'succeeded', 'failed', 'abandoned', 'unconfirmed');

-- Which DTMA a toolbox runs: this project's own ('project') or maverick-software/dtma-agent
-- ('upstream'). They differ in the deploy body, the endpoint, and what some answers mean. Set
-- by the platform at registration, corrected from the DTMA's answers by the health poll.
alter table public.account_tool_environments
  add column dtma_dialect text not null default 'project' check (dtma_dialect in ('project', 'upstream'));
comment on column public.account_tool_environments.dtma_dialect is
  'The DTMA the toolbox runs: project (standins/dtma) or upstream (dtma-agent); see docs/DTMA.md.';

create table public.dtma_requests (
  id bigint generated always as identity primary key,
  organization_id uuid not null references public.organizations (id) on delete cascade,
  toolbox_id uuid not null,
  instance_id uuid,
  operation text not null check (operation in ('deploy', 'restart', 'stop', 'remove', 'status', 'health', 'credentials_refresh')),
  method text not null check (method in ('GET', 'POST', 'DELETE')),
  path text not null check (path ~ '^/'),
  body jsonb,
  idempotency_key text not null,
  state public.dtma_request_state not null default 'queued',
  attempt integer not null default 0,
  max_attempts integer not null default 5 check (max_attempts between 1 and 20),
  timeout_ms integer not null default 10000 check (timeout_ms between 100 and 300000),
  net_request_id bigint,
  -- The pg_net epoch of the send (private.net_epoch): a response counts only in the same epoch.
  net_epoch uuid,
  -- A deploy whose answer was lost: ask DTMA whether the group runs before sending it again.
  check_first boolean not null default false,
  sent_at timestamptz,
  next_attempt_at timestamptz not null default now(),
  last_status_code integer,
  last_error text,
  last_error_summary text generated always as (private.dtma_error_summary(last_error)) stored,
  response jsonb,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  foreign key (toolbox_id, organization_id) references public.account_tool_environments (id, organization_id) on delete cascade,
  foreign key (instance_id, organization_id) references public.account_tool_instances (id, organization_id) on delete cascade
);
comment on table public.dtma_requests is
  'Outbox of DTMA requests: operation, idempotency key, attempts, pg_net request id, state, next attempt time, outcome.';
-- One open request per idempotency key: a repeated enqueue returns the open one, sends nothing more.
create unique index dtma_requests_open_key_idx on public.dtma_requests (idempotency_key) where state in ('queued', 'sent');
create index dtma_requests_open_idx on public.dtma_requests (state, next_attempt_at) where state in ('queued', 'sent');
create index dtma_requests_instance_idx on public.dtma_requests (instance_id, organization_id, state);
create index dtma_requests_toolbox_idx on public.dtma_requests (toolbox_id, organization_id);
create index dtma_requests_org_idx on public.dtma_requests (organization_id, created_at desc);
alter table public.dtma_requests enable row level security;

-- Tunables of the DTMA outbox (private: not exposed through the API).
create table private.dtma_config (
  key text primary key,
  value text not null,
  description text not null
);
comment on table private.dtma_config is 'Tunables of the DTMA outbox: backoff, lost margin, request timeout, attempts.';
revoke all on private.dtma_config from public;
insert into private.dtma_config (key, value, description) values
  ('backoff_base', '2 seconds', 'first retry delay; doubles with each attempt'),
  ('lost_after', '30 seconds', 'a request with no response this long after its timeout is lost'),
  ('request_timeout_ms', '10000', 'pg_net timeout of lifecycle requests'),
  ('max_attempts', '5', 'attempts before a lifecycle request fails'),
  ('confirm_within', '10 minutes', 'an unconfirmed credentials refresh fails when no health report confirms it this long after');

create function private.dtma_setting(p_key text) returns text
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$ select c.value from private.dtma_config c where c.key = p_key $$;
comment on function private.dtma_setting(text) is 'A DTMA outbox tunable from private.dtma_config.';

-- pg_net's queue and response tables are unlogged: crash recovery empties them and its request
-- ids start again at 1. This unlogged table is emptied at the same moment, so its epoch changes
-- exactly when pg_net's ids can repeat; a request matches a response only within its epoch.
create unlogged table private.net_epoch (
  singleton boolean primary key default true check (singleton),
  epoch uuid not null default gen_random_uuid(),
  started_at timestamptz not null default now()
);
comment on table private.net_epoch is
  'The current pg_net epoch: unlogged, so a crash resets it together with pg_net''s request ids.';
revoke all on private.net_epoch from public;

create function private.net_epoch() returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  insert into private.net_epoch (singleton) values (true) on conflict (singleton) do nothing;
  return (select e.epoch from private.net_epoch e);
end $$;
comment on function private.net_epoch() is 'The current pg_net epoch (a new one after a crash); recorded with each DTMA send.';

-- A restart DTMA declined (cooldown, restart cap, unknown server) leaves the server as it ran.
insert into public.mcp_server_transitions (from_status, event, to_status, description) values
  ('deploying', 'restart_declined', 'running', 'DTMA declined the restart; the server runs as before');
