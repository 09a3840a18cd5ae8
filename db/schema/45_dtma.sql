-- The DTMA outbox: every request to a toolbox's DTMA is a row here, sent through pg_net
-- (net.http_*) and harvested from net._http_response. pg_net neither retries nor calls back,
-- so this table keeps the request ids, the attempts, the backoff and the outcome. One
-- request per instance is in flight at a time, so DTMA sees an instance's operations in order.

create type public.dtma_request_state as enum ('queued', 'sent', 'succeeded', 'failed', 'abandoned');

create table public.dtma_requests (
  id bigint generated always as identity primary key,
  organization_id uuid not null references public.organizations (id) on delete cascade,
  toolbox_id uuid not null,
  instance_id uuid,
  operation text not null check (operation in ('deploy', 'restart', 'stop', 'remove', 'status', 'credentials_refresh')),
  method text not null check (method in ('GET', 'POST', 'DELETE')),
  path text not null check (path ~ '^/'),
  body jsonb,
  idempotency_key text not null,
  state public.dtma_request_state not null default 'queued',
  attempt integer not null default 0,
  max_attempts integer not null default 5 check (max_attempts between 1 and 20),
  timeout_ms integer not null default 10000 check (timeout_ms between 100 and 300000),
  net_request_id bigint,
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
  ('max_attempts', '5', 'attempts before a lifecycle request fails');

create function private.dtma_setting(p_key text) returns text
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$ select c.value from private.dtma_config c where c.key = p_key $$;
comment on function private.dtma_setting(text) is 'A DTMA outbox tunable from private.dtma_config.';
