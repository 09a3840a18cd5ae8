-- compat-when: select to_regnamespace('net') is null
-- pg_net's SQL API for a plain PostgreSQL: the same functions, signatures, defaults and tables.
-- A request is a row in net.http_request_queue, so it exists for the sender only once its
-- transaction commits (a rollback sends nothing), exactly as with pg_net. The sender is
-- standins/pg-net/worker.ts; it records each outcome in net._http_response as pg_net does. Both
-- tables and the id sequence are unlogged, as pg_net's are: a crash empties them and the ids
-- start again at 1 (PostgreSQL 15 makes a serial of an unlogged table unlogged too).

create schema net;
revoke all on schema net from public;

create type net.http_method as enum ('GET', 'POST', 'DELETE');
create type net.request_status as enum ('PENDING', 'SUCCESS', 'ERROR');

create unlogged table net.http_request_queue (
  id bigserial primary key,
  method net.http_method not null,
  url text not null,
  headers jsonb not null,
  body bytea,
  timeout_milliseconds integer not null
);

create unlogged table net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);
create index _http_response_created_idx on net._http_response (created);
create index _http_response_id_idx on net._http_response (id);

-- Percent-encodes every byte outside the unreserved set of RFC 3986.
create function net._urlencode(p_text text) returns text
language sql immutable
as $$
  select coalesce(string_agg(
           case when c between 48 and 57 or c between 65 and 90 or c between 97 and 122 or c in (45, 46, 95, 126)
                then chr(c) else '%' || lpad(upper(to_hex(c)), 2, '0') end, '' order by i), '')
    from (select convert_to(p_text, 'UTF8') as b) s,
         lateral generate_series(0, length(s.b) - 1) as i,
         lateral get_byte(s.b, i) as c
$$;

-- Appends the params object to the URL as a query string, as pg_net does.
create function net._urlencode_params(url text, params jsonb) returns text
language sql immutable
as $$
  select case
    when params is null or params = '{}'::jsonb then url
    else url || case when strpos(url, '?') > 0 then '&' else '?' end ||
         (select string_agg(net._urlencode(key) || '=' || net._urlencode(value), '&' order by key)
            from jsonb_each_text(params))
  end
$$;

create function net._enqueue(p_method net.http_method, p_url text, p_headers jsonb, p_body bytea, p_timeout integer)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  v_id bigint;
begin
  -- Any URL is queued, as pg_net does; the worker fails a non-HTTP one at send ("Unsupported protocol").
  if p_url is null then
    raise exception using errcode = '22023', message = 'pg_net: the url must not be null';
  end if;
  if p_timeout is null or p_timeout < 1 then
    raise exception using errcode = '22023', message = 'pg_net: timeout_milliseconds must be positive';
  end if;
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (p_method, p_url, coalesce(p_headers, '{}'::jsonb), p_body, p_timeout)
  returning id into v_id;
  -- Delivered on commit only, like the row itself: the worker wakes for committed work.
  perform pg_notify('pg_net_request', v_id::text);
  return v_id;
end $$;

create function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language sql volatile security definer set search_path = pg_catalog, pg_temp
as $$
  select net._enqueue('GET', net._urlencode_params(url, params), headers, null, timeout_milliseconds)
$$;

create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language sql volatile security definer set search_path = pg_catalog, pg_temp
as $$
  select net._enqueue('POST', net._urlencode_params(url, params),
                      '{"Content-Type": "application/json"}'::jsonb || coalesce(headers, '{}'::jsonb),
                      convert_to(coalesce(body, 'null'::jsonb)::text, 'UTF8'), timeout_milliseconds)
$$;

create function net.http_delete(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000,
  body jsonb default null
) returns bigint
language sql volatile security definer set search_path = pg_catalog, pg_temp
as $$
  select net._enqueue('DELETE', net._urlencode_params(url, params),
                      case when body is null then headers
                           else '{"Content-Type": "application/json"}'::jsonb || coalesce(headers, '{}'::jsonb) end,
                      case when body is null then null else convert_to(body::text, 'UTF8') end,
                      timeout_milliseconds)
$$;

comment on function net.http_get(text, jsonb, jsonb, integer) is 'pg_net: queue a GET; sent after commit; returns the request id.';
comment on function net.http_post(text, jsonb, jsonb, jsonb, integer) is 'pg_net: queue a JSON POST; sent after commit; returns the request id.';
comment on function net.http_delete(text, jsonb, jsonb, integer, jsonb) is 'pg_net: queue a DELETE; sent after commit; returns the request id.';

revoke all on all functions in schema net from public;
revoke all on all tables in schema net from public;
grant usage on schema net to service_role;
grant execute on function net.http_get(text, jsonb, jsonb, integer),
  net.http_post(text, jsonb, jsonb, jsonb, integer),
  net.http_delete(text, jsonb, jsonb, integer, jsonb) to service_role;
grant select on net._http_response to service_role;
