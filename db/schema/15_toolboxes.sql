-- Toolboxes: hosts running DTMA, the agent that starts and stops MCP server containers.
-- The DTMA bearer token lives in Vault; the table holds only the secret's id.

create type public.toolbox_status as enum ('active', 'unresponsive', 'disabled');

-- What an organization is shown of a DTMA error: the HTTP status and a short reason, or the
-- control plane's own words; never text from a response body, which may come from wherever a
-- URL or a redirect led (platform admins read the full last_error).
create function private.dtma_error_summary(p_error text) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select case
    when p_error is null then null
    when p_error ~ '^HTTP [0-9]{3}' then substr(p_error, 1, 8) || coalesce(' (' || case substr(p_error, 6, 3)
           when '400' then 'bad request' when '401' then 'unauthorized' when '403' then 'forbidden' when '404' then 'not found'
           when '408' then 'request timeout' when '409' then 'conflict' when '429' then 'too many requests'
           when '500' then 'server error' when '502' then 'bad gateway' when '503' then 'unavailable' when '504' then 'gateway timeout'
           end || ')', '')
    when p_error ~ '^timed out' then 'timed out'
    when p_error ~ '^lost' then 'no response (lost)'
    when p_error ~ '^DTMA did not answer: ' then 'DTMA did not answer: ' || private.dtma_error_summary(substr(p_error, 22))
    when p_error ~ '^(not sent: |superseded by |its OAuth connection|DTMA reports it (stopped|stopping|unhealthy)$|DTMA does not run it$)'
      then p_error
    else 'DTMA reported an error'
  end
$$;
comment on function private.dtma_error_summary(text) is
  'The classified form of a DTMA error shown to organizations: HTTP status and reason, or the control plane''s own message; never response text.';


-- Grants SELECT on every column of a table but the hidden ones (the full last_error of a DTMA
-- call may quote a response body). Run by the migrations; a column added later needs its grant.
create function private.grant_select_except(p_table regclass, p_role name, p_hidden text[]) returns void
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('revoke select on %s from %I', p_table, p_role);
  execute (select format('grant select (%s) on %s to %I', string_agg(quote_ident(a.attname), ', ' order by a.attnum), p_table, p_role)
             from pg_catalog.pg_attribute a
            where a.attrelid = p_table and a.attnum > 0 and not a.attisdropped and a.attname <> all (p_hidden));
end $$;
comment on function private.grant_select_except(regclass, name, text[]) is
  'Migrations: lets p_role select every column of p_table but p_hidden (table-level SELECT is revoked).';
revoke execute on function private.grant_select_except(regclass, name, text[]) from public, anon, authenticated, service_role;

create table public.account_tool_environments (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  name text not null check (length(btrim(name)) between 1 and 100),
  dtma_base_url text not null check (dtma_base_url ~ '^https?://[^/?#]+(/[^?#]*)?$' and dtma_base_url !~ '/$'),
  dtma_token_secret_id uuid not null,
  status public.toolbox_status not null default 'active',
  last_heartbeat_at timestamptz,
  last_error text,
  last_error_summary text generated always as (private.dtma_error_summary(last_error)) stored,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (organization_id, name),
  unique (id, organization_id)
);
comment on table public.account_tool_environments is
  'Toolboxes: DTMA hosts of an organization. dtma_token_secret_id points into Vault; the token itself is never stored here.';
comment on column public.account_tool_environments.last_error is 'The last DTMA error in full: platform admins only (organizations read last_error_summary).';
create index account_tool_environments_created_by_idx on public.account_tool_environments (created_by);
-- One toolbox per DTMA: two rows on one DTMA would each take the other's groups for orphans.
create unique index account_tool_environments_dtma_base_url_idx on public.account_tool_environments (lower(dtma_base_url));

create trigger account_tool_environments_touch before update on public.account_tool_environments
  for each row execute function private.touch_updated_at();
alter table public.account_tool_environments enable row level security;

-- The platform's policy on toolbox URLs (SSRF): pg_net sends DTMA requests with the database's
-- network position, so a toolbox may point only where the platform allows. A URL is refused
-- when its host falls under a 'never' rule (link-local, cloud metadata: no exception); else it
-- is accepted when an 'allow' rule matches (http only if that rule says so); else it must be
-- https and fall under no 'private' rule (loopback, private ranges, local names). Host names
-- are matched as written (the database does not resolve them). Checked when a toolbox is
-- registered and again before every request is sent (private.toolbox_url_refusal).
create table private.toolbox_url_rules (
  id integer generated always as identity primary key,
  verdict text not null check (verdict in ('never', 'private', 'allow')),
  network cidr,
  host text check (host ~ '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'),
  port integer check (port between 1 and 65535),
  allow_http boolean not null default false,
  reason text not null,
  constraint one_target check (num_nonnulls(network, host) = 1),
  constraint http_only_when_allowed check (verdict = 'allow' or not allow_http)
);
comment on table private.toolbox_url_rules is
  'Platform policy on toolbox DTMA URLs: never (no exception), allow (an exception, optionally over http, optionally one port), private (refused unless allowed). A host rule matches the name and its subdomains.';
revoke all on private.toolbox_url_rules from public;
insert into private.toolbox_url_rules (verdict, network, host, reason) values
  ('never', '169.254.0.0/16', null, 'IPv4 link-local, where cloud metadata services answer'),
  ('never', 'fe80::/10', null, 'IPv6 link-local'),
  ('never', 'fd00:ec2::254/128', null, 'AWS metadata service over IPv6'),
  ('never', '100.100.100.200/32', null, 'Alibaba Cloud metadata service'),
  ('never', '0.0.0.0/8', null, '"this host": reaches the database host itself'),
  ('never', '::/128', null, 'the unspecified IPv6 address'),
  ('never', null, 'metadata.google.internal', 'Google Cloud metadata service'),
  ('never', null, 'metadata.goog', 'Google Cloud metadata service'),
  ('never', null, 'metadata', 'cloud metadata service (short name)'),
  ('never', null, 'instance-data', 'AWS metadata service (short name)'),
  ('private', '127.0.0.0/8', null, 'IPv4 loopback'),
  ('private', '::1/128', null, 'IPv6 loopback'),
  ('private', '10.0.0.0/8', null, 'private network (RFC 1918)'),
  ('private', '172.16.0.0/12', null, 'private network (RFC 1918)'),
  ('private', '192.168.0.0/16', null, 'private network (RFC 1918)'),
  ('private', '100.64.0.0/10', null, 'carrier-grade NAT'),
  ('private', '198.18.0.0/15', null, 'benchmarking network'),
  ('private', 'fc00::/7', null, 'IPv6 unique local addresses'),
  ('private', '224.0.0.0/3', null, 'multicast and reserved'),
  ('private', 'ff00::/8', null, 'IPv6 multicast'),
  ('private', null, 'localhost', 'loopback by name'),
  ('private', null, 'internal', 'internal names'),
  ('private', null, 'local', 'mDNS names'),
  ('private', null, 'home.arpa', 'home network names');
