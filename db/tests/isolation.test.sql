-- Isolation: who sees and changes what. Two tenants, Acme and Globex, each with a toolbox, a
-- running memory server, agents, a grant, a toolbox attachment, a connection with usage, a
-- recorded tool drift and an audit trail. Seven actors look at Acme: anon, a stranger (signed in,
-- in no organization), Acme's viewer, member and admin, Globex's owner, and service_role.
--
-- The matrices below run every statement as the actor inside a subtransaction that is always
-- rolled back, so each cell starts from the same data. An outcome is the SQLSTATE of a refusal,
-- or for a statement that ran: 'all' (every row of Acme), 'some', or 'none' (filtered to zero
-- rows by RLS); for an INSERT, 'permitted' when neither privilege nor policy refused it (the
-- empty row the probe inserts is then refused by the table's own constraints).
-- Longer than 400 lines: one cast and one set of matrices (actor x statement); split, each file
-- would rebuild both tenants.
begin;
select plan(33);

-- The people.
create temp table actors (actor text primary key, user_id uuid, self_id uuid);
select tests.create_user('olga@acme.test') as olga \gset
select tests.create_user('adam@acme.test') as adam \gset
select tests.create_user('mia@acme.test') as mia \gset
select tests.create_user('vic@acme.test') as vic \gset
select tests.create_user('tara@acme.test') as tara \gset
select tests.create_user('nina@acme.test') as nina \gset
select tests.create_user('sam@nowhere.test') as sam \gset
select tests.create_user('bob@globex.test') as bob \gset
-- self_id is the user id an actor passes as its own; service_role acts on behalf of Mia.
insert into actors values ('anon', null, null), ('stranger', :'sam', :'sam'), ('viewer', :'vic', :'vic'),
  ('member', :'mia', :'mia'), ('admin', :'adam', :'adam'), ('other_owner', :'bob', :'bob'), ('service_role', null, :'mia');

select tests.authenticate_as(:'olga');
select public.create_organization('Acme', 'acme') as acme \gset
select public.add_organization_member(:'acme', :'adam', 'admin');
select public.add_organization_member(:'acme', :'mia', 'member');
select public.add_organization_member(:'acme', :'tara', 'member');
select public.add_organization_member(:'acme', :'vic', 'viewer');
select tests.authenticate_as(:'bob');
select public.create_organization('Globex', 'globex') as globex \gset
select tests.clear_authentication();

-- One tenant's working set, built through the API by its admin and its agent's owner.
create function pg_temp.furnish(p_org uuid, p_admin uuid, p_agent_owner uuid) returns jsonb
language plpgsql as $$
declare
  v jsonb := jsonb_build_object('org', p_org);
  v_read_graph jsonb;
begin
  -- The platform registers the toolboxes; the admin does the rest.
  perform tests.clear_authentication();
  v := v || jsonb_build_object('box', public.create_toolbox(p_org, 'box', format('https://box.%s.test', p_org), 'dtma-token-0123456789abcdef'),
                               'spare', public.create_toolbox(p_org, 'spare', format('https://spare.%s.test', p_org), 'dtma-token-fedcba9876543210'));
  perform tests.authenticate_as(p_admin);
  v := v || jsonb_build_object('mem', public.manage_mcp_servers('create', p_org,
              jsonb_build_object('toolbox_id', v ->> 'box', 'catalog_name', 'memory', 'instance_name', 'memory')) ->> 'id');
  insert into public.agents (organization_id, user_id, name) values (p_org, p_admin, 'admin''s agent');
  perform tests.clear_authentication();
  perform private.apply_instance_event((v ->> 'mem')::uuid, 'deploy');
  perform private.apply_instance_event((v ->> 'mem')::uuid, 'deployed');
  perform tests.authenticate_as(p_agent_owner);
  insert into public.agents (organization_id, user_id, name) values (p_org, p_agent_owner, 'researcher')
  returning jsonb_build_object('agent', id) || v into v;
  perform public.grant_agent_mcp_access((v ->> 'agent')::uuid, (v ->> 'mem')::uuid, 'read_only');
  perform public.record_agent_mcp_connection_usage((v ->> 'agent')::uuid, (v ->> 'mem')::uuid, true, 12);
  select jsonb_build_array(t - 'sha256') into v_read_graph
    from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t
   where i.id = (v ->> 'mem')::uuid and t ->> 'name' = 'read_graph';
  v := v || jsonb_build_object('read_graph', v_read_graph);
  -- Drift is recorded from what the platform (the gateway) read upstream.
  perform tests.authenticate_as_service_role();
  perform public.filter_agent_mcp_tools((v ->> 'agent')::uuid, (v ->> 'mem')::uuid,
            jsonb_build_array(jsonb_set(v_read_graph -> 0, '{description}', '"changed"')));
  perform tests.authenticate_as(p_admin);
  perform public.grant_agent_toolbox_access((v ->> 'agent')::uuid, (v ->> 'box')::uuid);
  perform tests.clear_authentication();
  return v || jsonb_build_object('drift_sha', (select d.presented_sha256 from public.mcp_tool_drift d
                                               where d.server_instance_id = (v ->> 'mem')::uuid));
end $$;

create temp table ids (key text primary key, value text);
insert into ids select 'a_' || key, value #>> '{}' from jsonb_each(pg_temp.furnish(:'acme', :'adam', :'mia'));
insert into ids select 'b_' || key, value #>> '{}' from jsonb_each(pg_temp.furnish(:'globex', :'bob', :'bob'));
insert into ids values ('acme', :'acme'), ('globex', :'globex'), ('mia', :'mia'), ('tara', :'tara'), ('nina', :'nina');
select (select value from ids where key = 'a_agent') as a_agent, (select value from ids where key = 'a_mem') as a_mem,
       (select value from ids where key = 'a_box') as a_box, (select value from ids where key = 'b_agent') as b_agent,
       (select value from ids where key = 'b_mem') as b_mem, (select value from ids where key = 'b_box') as b_box \gset

-- Acts as an actor for the rest of the (sub)transaction.
create function pg_temp.become(p_actor text) returns void
language plpgsql as $$
begin
  case p_actor
    when 'anon' then perform tests.authenticate_as_anon();
    when 'service_role' then perform tests.authenticate_as_service_role();
    else perform tests.authenticate_as((select a.user_id from actors a where a.actor = p_actor));
  end case;
end $$;

-- Runs one statement (returning one value) as an actor, then undoes it: its value, or the
-- SQLSTATE that refused it. {key} in the statement stands for the literal of ids.key; {self}
-- for the actor's own user id.
create function pg_temp.outcome(p_actor text, p_sql text) returns text
language plpgsql as $$
declare
  v_sql text := replace(p_sql, '{self}', quote_nullable((select a.self_id::text from actors a where a.actor = p_actor)));
  v_id record;
  v_result text;
begin
  for v_id in select * from ids loop
    v_sql := replace(v_sql, '{' || v_id.key || '}', quote_literal(v_id.value));
  end loop;
  -- PL/pgSQL checks EXECUTE on a function once per transaction, when it first evaluates the
  -- expression that calls it; forget every plan so each probe is checked as a fresh request is.
  discard plans;
  begin
    perform pg_temp.become(p_actor);
    execute v_sql into v_result;
    raise exception using errcode = 'TSTRB', message = 'undo the probe';
  exception
    when sqlstate 'TSTRB' then null;
    when others then v_result := sqlstate;
  end;
  perform tests.clear_authentication();
  return v_result;
end $$;

-- Acme's rows of a relation: by organization_id, by id for organizations, all rows otherwise.
create function pg_temp.acme_rows(p_rel text) returns text
language sql as $$
  select case
    when exists (select from information_schema.columns c
                  where c.table_schema = 'public' and c.table_name = p_rel and c.column_name = 'organization_id')
      then format('organization_id = %L', (select value from ids where key = 'acme'))
    when p_rel = 'organizations' then format('id = %L', (select value from ids where key = 'acme'))
    else 'true' end
$$;

-- What an actor's SELECT, INSERT, UPDATE (a no-op write of the first writable column) or DELETE
-- on a relation does to Acme's rows.
create function pg_temp.table_outcome(p_actor text, p_rel text, p_op text) returns text
language plpgsql as $$
declare
  v_where text := pg_temp.acme_rows(p_rel);
  v_col text := (select c.column_name from information_schema.columns c
                  where c.table_schema = 'public' and c.table_name = p_rel and c.is_identity = 'NO' and c.is_generated = 'NEVER'
                  order by c.ordinal_position limit 1);
  v_total bigint;
  v_result text;
begin
  execute format('select count(*) from public.%I where %s', p_rel, v_where) into v_total;
  v_result := pg_temp.outcome(p_actor, case p_op
    when 'select' then format('select ''rows: '' || count(*) from public.%I where %s', p_rel, v_where)
    when 'insert' then format('with w as (insert into public.%I default values returning 1) select ''rows: '' || count(*) from w', p_rel)
    when 'update' then format('with w as (update public.%I set %I = %I where %s returning 1) select ''rows: '' || count(*) from w',
                              p_rel, v_col, v_col, v_where)
    when 'delete' then format('with w as (delete from public.%I where %s returning 1) select ''rows: '' || count(*) from w', p_rel, v_where)
  end);
  return case
    when p_op = 'insert' then case when v_result = '42501' then '42501' else 'permitted' end
    when v_result not like 'rows: %' then v_result
    when v_result = 'rows: 0' then 'none'
    when v_result = 'rows: ' || v_total then 'all'
    else 'some' end;
end $$;

-- anon is refused everything: every table and view of public, every function of public.
select is_empty($$with tried as materialized (
                    select c.relname, o.op, pg_temp.table_outcome('anon', c.relname, o.op) as outcome
                      from pg_class c join pg_namespace n on n.oid = c.relnamespace
                      cross join (values ('select'), ('insert'), ('update'), ('delete')) o(op)
                     where n.nspname = 'public' and (c.relkind in ('r', 'p') or (c.relkind in ('v', 'm') and o.op = 'select')))
                  select * from tried where outcome <> '42501'$$,
                'anon: every SELECT, INSERT, UPDATE and DELETE on every table of public, and every SELECT on its views, is refused with 42501');
select is_empty($$select p.oid::regprocedure, o.outcome
                    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                    cross join lateral (select pg_temp.outcome('anon', format('select ''ok'' from %I.%I(%s)', n.nspname, p.proname,
                             coalesce((select string_agg(format('null::%s', format_type(t, null)), ', ' order by i)
                                         from unnest(p.proargtypes::oid[]) with ordinality u(t, i)), '')))) o(outcome)
                   where n.nspname = 'public' and p.prokind = 'f'
                     and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
                     and (o.outcome <> '42501' or has_function_privilege('anon', p.oid, 'execute'))$$,
                'anon: calling any function of public is refused with 42501, for want of EXECUTE (not by the function''s own check)');

-- The tables and views of issue 3, actor by actor.
create temp table table_matrix (rel text, op text, stranger text, viewer text, member text, admin text, other_owner text, service_role text,
                                primary key (rel, op));
insert into table_matrix values
-- relation                      op         stranger  viewer   member   admin    other_owner service_role
  ('organizations',              'select', 'none',   'all',   'all',   'all',   'none',     'all'),
  ('organizations',              'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('organizations',              'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('organizations',              'delete', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('organization_members',       'select', 'none',   'all',   'all',   'all',   'none',     'all'),
  ('organization_members',       'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('organization_members',       'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  -- even the platform cannot delete an organization's last owner, but with the organization
  ('organization_members',       'delete', '42501',  '42501', '42501', '42501', '42501',    '23514'),
  ('agents',                     'select', 'none',   'all',   'all',   'all',   'none',     'all'),
  ('agents',                     'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('agents',                     'update', 'none',   'none',  'some',  'all',   'none',     'all'),
  ('agents',                     'delete', 'none',   'none',  'some',  'all',   'none',     'all'),
  ('account_tool_environments',  'select', 'none',   'all',   'all',   'all',   'none',     'all'),
  ('account_tool_environments',  'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('account_tool_environments',  'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('account_tool_environments',  'delete', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('mcp_server_catalog',         'select', 'all',    'all',   'all',   'all',   'all',      'all'),
  ('mcp_server_catalog',         'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('mcp_server_catalog',         'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  -- an entry that instances use cannot be deleted (on delete restrict)
  ('mcp_server_catalog',         'delete', '42501',  '42501', '42501', '42501', '42501',    '23503'),
  ('account_tool_instances',     'select', 'none',   'all',   'all',   'all',   'none',     'all'),
  ('account_tool_instances',     'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('account_tool_instances',     'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('account_tool_instances',     'delete', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('mcp_tool_drift',             'select', 'none',   'none',  'none',  'all',   'none',     'all'),
  ('mcp_tool_drift',             'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('mcp_tool_drift',             'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('mcp_tool_drift',             'delete', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('agent_toolbox_access',       'select', 'none',   'all',   'all',   'all',   'none',     'all'),
  ('agent_toolbox_access',       'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('agent_toolbox_access',       'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('agent_toolbox_access',       'delete', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('agent_mcp_server_access',    'select', 'none',   'all',   'all',   'all',   'none',     'all'),
  ('agent_mcp_server_access',    'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('agent_mcp_server_access',    'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('agent_mcp_server_access',    'delete', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('agent_mcp_connections',      'select', 'none',   'all',   'all',   'all',   'none',     'all'),
  ('agent_mcp_connections',      'insert', '42501',  '42501', '42501', '42501', '42501',    'permitted'),
  ('agent_mcp_connections',      'update', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('agent_mcp_connections',      'delete', '42501',  '42501', '42501', '42501', '42501',    'all'),
  ('mcp_server_transitions',     'select', 'all',    'all',   'all',   'all',   'all',      'all'),
  ('mcp_server_transitions',     'insert', '42501',  '42501', '42501', '42501', '42501',    '42501'),
  ('mcp_server_transitions',     'update', '42501',  '42501', '42501', '42501', '42501',    '42501'),
  ('mcp_server_transitions',     'delete', '42501',  '42501', '42501', '42501', '42501',    '42501'),
  ('audit_log',                  'select', 'none',   'none',  'none',  'all',   'none',     'all'),
  ('audit_log',                  'insert', '42501',  '42501', '42501', '42501', '42501',    '42501'),
  ('audit_log',                  'update', '42501',  '42501', '42501', '42501', '42501',    '42501'),
  ('audit_log',                  'delete', '42501',  '42501', '42501', '42501', '42501',    '42501'),
  ('active_agent_mcp_connections', 'select', 'none', 'all',   'all',   'all',   'none',     'all'),
  ('user_mcp_connection_stats',  'select', 'none',   'all',   'all',   'all',   'none',     'all');

-- Tables of other domains, proven by their own suites (anon's refusal above covers them too).
-- A relation in neither list fails the next test: classify it.
create temp table other_domains (name text primary key);
insert into other_domains values ('dtma_requests'), ('mcp_server_oauth_connections'), ('oauth_providers'), ('user_oauth_connections'), ('agent_oauth_permissions'),
  ('vault_secret_owners'), ('mcp_credential_versions'), ('mcp_interaction_logs');
-- The gateway domain (db/tests/gateway.test.sql).
insert into other_domains values ('agent_api_keys');

select is_empty($$select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                   where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')
                     and c.relname not in (select rel from table_matrix union select name from other_domains)$$,
                'every table and view of public is in the matrix (or named as another domain''s)');
select is_empty($$select rel from table_matrix t
                   where not exists (select from pg_class c join pg_namespace n on n.oid = c.relnamespace
                                      where n.nspname = 'public' and c.relname = t.rel)
                      or (select count(*) from table_matrix m where m.rel = t.rel)
                         <> (select case when c.relkind = 'v' then 1 else 4 end from pg_class c
                              where c.oid = ('public.' || t.rel)::regclass)$$,
                'the matrix names only existing relations, with every operation (SELECT only for views)');
select is_empty($$select rel from table_matrix t where pg_temp.table_outcome('service_role', t.rel, 'select') = 'none'$$,
                'Acme has rows in every relation of the matrix, so no cell passes for want of data');

select set_eq($$select rel, op, pg_temp.table_outcome('stranger', rel, op) from table_matrix$$,
              'select rel, op, stranger from table_matrix',
              'a stranger (signed in, in no organization): sees only the catalog and the state machine, writes nothing');
select set_eq($$select rel, op, pg_temp.table_outcome('viewer', rel, op) from table_matrix$$,
              'select rel, op, viewer from table_matrix',
              'a viewer: reads the organization but not its audit trail or tool drift, writes nothing');
select set_eq($$select rel, op, pg_temp.table_outcome('member', rel, op) from table_matrix$$,
              'select rel, op, member from table_matrix',
              'a member: reads like a viewer, writes only their own agents');
select set_eq($$select rel, op, pg_temp.table_outcome('admin', rel, op) from table_matrix$$,
              'select rel, op, admin from table_matrix',
              'an admin: reads everything of the organization, writes its agents, everything else only through RPCs');
select set_eq($$select rel, op, pg_temp.table_outcome('other_owner', rel, op) from table_matrix$$,
              'select rel, op, other_owner from table_matrix',
              'another organization''s owner: nothing of Acme, as for a stranger');
select set_eq($$select rel, op, pg_temp.table_outcome('service_role', rel, op) from table_matrix$$,
              'select rel, op, service_role from table_matrix',
              'service_role: everything, but the audit trail and the state machine are read-only, and the last owner stays');
-- Globex's rows of a relation, counted by an actor and by the test's superuser.
create function pg_temp.globex_rows_seen_by(p_actor text, p_rel text) returns text
language plpgsql as $$
declare
  v_sql text := format('select count(*)::text from public.%I where %s', p_rel,
                       replace(pg_temp.acme_rows(p_rel), (select value from ids where key = 'acme'), (select value from ids where key = 'globex')));
  v_total text;
begin
  execute v_sql into v_total;
  return pg_temp.outcome(p_actor, v_sql) || ' of ' || v_total;
end $$;
select is_empty($$select rel, pg_temp.globex_rows_seen_by('other_owner', rel) from table_matrix
                   where op = 'select' and pg_temp.acme_rows(rel) <> 'true'
                     and pg_temp.globex_rows_seen_by('other_owner', rel) !~ '^([1-9][0-9]*) of \1$'$$,
                'Globex''s owner sees every row of Globex in every tenant relation: the filter is by tenant, not a blanket refusal');

-- The RPCs of issue 3, actor by actor, each called on Acme's objects.
create temp table rpc_matrix (fn text, call text, stranger text, viewer text, member text, admin text, other_owner text, service_role text);
insert into rpc_matrix values
-- function                          call                                                                                   stranger viewer   member   admin    other    service
  ('create_organization', $$select 'ok' from public.create_organization('Initech', 'initech')$$,
                                                                                                                          'ok',    'ok',    'ok',    'ok',    'ok',    '42501'),
  ('add_organization_member', $$select 'ok' from public.add_organization_member({acme}, {nina}, 'member')$$,
                                                                                                                          '42501', '42501', '42501', 'ok',    '42501', 'ok'),
  ('change_organization_member_role', $$select 'ok' from public.change_organization_member_role({acme}, {tara}, 'viewer')$$,
                                                                                                                          '42501', '42501', '42501', 'ok',    '42501', 'ok'),
  ('remove_organization_member', $$select 'ok' from public.remove_organization_member({acme}, {tara})$$,
                                                                                                                          '42501', '42501', '42501', 'ok',    '42501', 'ok'),
  ('create_toolbox', $$select 'ok' from public.create_toolbox({acme}, 'edge-9', 'https://edge-9.acme.test', 'another-token-0123456789')$$,
                                                                                                                          '42501', '42501', '42501', '42501', '42501', 'ok'),
  -- an organization's object is answered to outsiders as a missing one (P0002)
  ('delete_toolbox', $$select 'ok' from public.delete_toolbox({a_spare})$$,
                                                                                                                          'P0002', '42501', '42501', 'ok',    'P0002', 'ok'),
  ('manage_mcp_servers', $$select 'ok' from public.manage_mcp_servers('update', {acme}, '{"display_name": "Renamed"}', {a_mem})$$,
                                                                                                                          '42501', '42501', '42501', 'ok',    '42501', 'ok'),
  ('approve_mcp_tool_definition', $$select 'ok' from public.approve_mcp_tool_definition({a_mem}, 'read_graph', {a_drift_sha})$$,
                                                                                                                          'P0002', '42501', '42501', 'ok',    'P0002', 'ok'),
  ('validate_agent_mcp_access', $$select public.validate_agent_mcp_access({a_agent}, {a_mem})::text$$,
                                                                                                                          '42501', '42501', 'true',  'true',  '42501', 'true'),
  ('validate_agent_mcp_access', $$select public.validate_agent_mcp_access({a_agent}, {a_mem}, 'read_graph')::text$$,
                                                                                                                          '42501', '42501', 'true',  'true',  '42501', 'true'),
  ('get_agent_mcp_servers', $$select 'rows: ' || count(*) from public.get_agent_mcp_servers({a_agent})$$,
                                                                                                                          '42501', '42501', 'rows: 1', 'rows: 1', '42501', 'rows: 1'),
  ('grant_agent_mcp_access', $$select 'ok' from public.grant_agent_mcp_access({a_agent}, {a_mem}, 'full_access')$$,
                                                                                                                          '42501', '42501', 'ok',    'ok',    '42501', 'ok'),
  ('revoke_agent_mcp_access', $$select public.revoke_agent_mcp_access({a_agent}, {a_mem})::text$$,
                                                                                                                          '42501', '42501', 'true',  'true',  '42501', 'true'),
  -- each actor with their own id: only members and stronger see servers, each of their own organization
  ('get_available_mcp_servers', $$select 'rows: ' || count(*) from public.get_available_mcp_servers({self})$$,
                                                                                                                          'rows: 0', 'rows: 0', 'rows: 1', 'rows: 1', 'rows: 1', 'rows: 1'),
  ('get_available_mcp_servers', $$select 'rows: ' || count(*) from public.get_available_mcp_servers({mia})$$,
                                                                                                                          '42501', '42501', 'rows: 1', '42501', '42501', 'rows: 1'),
  -- the user defaults to auth.uid(): service_role has none, so must name one
  ('validate_mcp_access', $$select public.validate_mcp_access({a_agent}, {a_mem})::text$$,
                                                                                                                          'false', 'false', 'true',  'true',  'false', '22023'),
  ('validate_mcp_access', $$select public.validate_mcp_access({a_agent}, {a_mem}, {mia})::text$$,
                                                                                                                          '42501', '42501', 'true',  '42501', '42501', 'true'),
  ('get_organization_mcp_configs', $$select 'servers: ' || jsonb_array_length(public.get_organization_mcp_configs({acme}, {a_agent}))$$,
                                                                                                                          '42501', '42501', 'servers: 1', 'servers: 1', '42501', 'servers: 1'),
  ('filter_agent_mcp_tools', $$select string_agg(tool_name || ': ' || reason, ', ') from public.filter_agent_mcp_tools({a_agent}, {a_mem}, {a_read_graph})$$,
                                                                                                                          '42501', '42501', 'read_graph: allowed', 'read_graph: allowed', '42501', 'read_graph: allowed'),
  ('upsert_agent_mcp_connection', $$select 'ok' from public.upsert_agent_mcp_connection({a_agent}, {a_mem}, '{"timeoutMs": 5000}')$$,
                                                                                                                          '42501', '42501', 'ok',    'ok',    '42501', 'ok'),
  ('record_agent_mcp_connection_usage', $$select 'ok' from public.record_agent_mcp_connection_usage({a_agent}, {a_mem}, false, 30, 'timeout')$$,
                                                                                                                          '42501', '42501', 'ok',    'ok',    '42501', 'ok'),
  ('grant_agent_toolbox_access', $$select 'ok' from public.grant_agent_toolbox_access({a_agent}, {a_spare})$$,
                                                                                                                          '42501', '42501', '42501', 'ok',    '42501', 'ok'),
  ('revoke_agent_toolbox_access', $$select public.revoke_agent_toolbox_access({a_agent}, {a_box})::text$$,
                                                                                                                          '42501', '42501', '42501', 'true',  '42501', 'true'),
  ('organization_access_overview', $$select 'rows: ' || count(*) from public.organization_access_overview({acme})$$,
                                                                                                                          '42501', '42501', '42501', 'rows: 1', '42501', 'rows: 1'),
  -- with an agent, each server says the agent has access; without one, the whole organization, for its members
  ('get_organization_mcp_configs', $$select 'has_access: ' || (public.get_organization_mcp_configs({acme}, {a_agent}) -> 0 ->> 'has_access')$$,
                                                                                                                          '42501', '42501', 'has_access: true', 'has_access: true', '42501', 'has_access: true'),
  ('get_organization_mcp_configs', $$select 'servers: ' || jsonb_array_length(public.get_organization_mcp_configs({acme})) || ', has_access: ' || coalesce(public.get_organization_mcp_configs({acme}) -> 0 ->> 'has_access', 'null')$$,
                                                                                                                          '42501', '42501', 'servers: 1, has_access: null', 'servers: 1, has_access: null', '42501', 'servers: 1, has_access: null'),
  ('get_mcp_server_status', $$select 'rows: ' || count(*) || ', outbox: ' || count(dtma_request) from public.get_mcp_server_status({acme})$$,
                                                                                                                          '42501', 'rows: 1, outbox: 0', 'rows: 1, outbox: 0', 'rows: 1, outbox: 1', '42501', 'rows: 1, outbox: 1'),
  ('request_mcp_server_status', $$select 'requests: ' || cardinality(public.request_mcp_server_status({acme}))$$,
                                                                                                                          '42501', '42501', '42501', 'requests: 1', '42501', 'requests: 1');

-- RPCs of other domains, proven by their own suites (anon's refusal above covers them too).
insert into other_domains values ('deploy_mcp_server_to_dtma'), ('harvest_dtma_responses'), ('poll_dtma_status'),
  ('store_user_oauth_connection'), ('revoke_user_oauth_connection'), ('get_user_oauth_connections'), ('grant_agent_oauth_access'),
  ('revoke_agent_oauth_access'), ('get_agent_oauth_permissions'), ('record_agent_oauth_usage'), ('get_agent_oauth_token'),
  ('begin_oauth_refresh'), ('complete_oauth_refresh'), ('fail_oauth_refresh'), ('create_vault_secret'), ('get_secret'),
  ('delete_vault_secret'), ('rotate_mcp_credentials'), ('audit_mcp_interactions'),
  ('agents_with_tool_access_at'), ('begin_oauth_authorization'), ('consume_oauth_authorization'), ('begin_oauth_disconnect');
-- The gateway domain (db/tests/gateway.test.sql).
insert into other_domains values ('create_agent_api_key'), ('list_agent_api_keys'), ('revoke_agent_api_key'),
  ('gateway_authenticate'), ('gateway_agent_servers'), ('gateway_upstream'), ('gateway_authorize_call'), ('gateway_filter_tools');

select is_empty($$select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                   where n.nspname = 'public'
                     and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
                     and p.proname not in (select fn from rpc_matrix union select name from other_domains)$$,
                'every function of public is in the RPC matrix (or named as another domain''s)');
select is_empty($$select fn, call from rpc_matrix where position('public.' || fn || '(' in call) = 0$$,
                'each row of the RPC matrix calls the function it names');

select set_eq($$select fn, call, pg_temp.outcome('stranger', call) from rpc_matrix$$, 'select fn, call, stranger from rpc_matrix',
              'a stranger: may create an organization of their own; on Acme, every RPC refuses them (or answers false)');
select set_eq($$select fn, call, pg_temp.outcome('viewer', call) from rpc_matrix$$, 'select fn, call, viewer from rpc_matrix',
              'a viewer: no RPC acts on Acme for them');
select set_eq($$select fn, call, pg_temp.outcome('member', call) from rpc_matrix$$, 'select fn, call, member from rpc_matrix',
              'a member: acts for their own agent; membership, toolboxes and servers are for admins');
select set_eq($$select fn, call, pg_temp.outcome('admin', call) from rpc_matrix$$, 'select fn, call, admin from rpc_matrix',
              'an admin: every RPC on Acme, but never with someone else''s user id');
select set_eq($$select fn, call, pg_temp.outcome('other_owner', call) from rpc_matrix$$, 'select fn, call, other_owner from rpc_matrix',
              'another organization''s owner: refused on everything of Acme');
select set_eq($$select fn, call, pg_temp.outcome('service_role', call) from rpc_matrix$$, 'select fn, call, service_role from rpc_matrix',
              'service_role: every RPC, on behalf of any user it names; it cannot found an organization (no owner)');

-- Nothing crosses tenants: a grant from Acme's agent to Globex's server, by every path.
select tests.authenticate_as(:'mia');
select throws_ok(format($$select public.grant_agent_mcp_access(%L, %L, 'full_access')$$, :'a_agent', :'b_mem'), 'P0002', null,
                 'the RPC refuses the agent''s owner a grant to another organization''s server, as if it did not exist (P0002)');
select throws_ok(format($$insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope)
                          values (%L, %L, %L, 'full_access')$$, :'acme', :'a_agent', :'b_mem'), '42501', null,
                 'so does a direct INSERT as authenticated (42501)');
select throws_ok(format($$update public.agent_mcp_server_access set server_instance_id = %L where agent_id = %L$$, :'b_mem', :'a_agent'),
                 '42501', null, 'and a direct UPDATE as authenticated (42501)');
select tests.authenticate_as(:'adam');
select throws_ok(format($$select public.grant_agent_mcp_access(%L, %L, 'full_access')$$, :'a_agent', :'b_mem'), 'P0002', null,
                 'the RPC refuses Acme''s admin too (P0002)');
select tests.authenticate_as(:'bob');
select throws_ok(format($$select public.grant_agent_mcp_access(%L, %L, 'full_access')$$, :'b_agent', :'a_mem'), 'P0002', null,
                 'and Globex''s owner, the other way round (P0002)');
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.grant_agent_mcp_access(%L, %L, 'full_access')$$, :'a_agent', :'b_mem'), '42501', null,
                 'the RPC refuses even service_role (42501)');
select throws_ok(format($$insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope)
                          values (%L, %L, %L, 'full_access')$$, :'acme', :'a_agent', :'b_mem'), '23503', null,
                 'service_role bypasses RLS, but the composite foreign key refuses Acme''s grant of Globex''s server (23503)');
select throws_ok(format($$insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope)
                          values (%L, %L, %L, 'full_access')$$, :'globex', :'a_agent', :'b_mem'), '23503', null,
                 'and filed under Globex, the agent''s foreign key refuses it (23503)');
select throws_ok(format($$insert into public.agent_mcp_connections (organization_id, agent_id, server_instance_id)
                          values (%L, %L, %L)$$, :'acme', :'a_agent', :'b_mem'), '23503', null,
                 'a connection across tenants is refused by its foreign key (23503)');
select throws_ok(format($$update public.agent_mcp_connections set server_instance_id = %L where agent_id = %L$$, :'b_mem', :'a_agent'),
                 '23503', null, 'also when an existing connection is repointed (23503)');
select throws_ok(format($$insert into public.agent_toolbox_access (organization_id, agent_id, account_tool_environment_id)
                          values (%L, %L, %L)$$, :'acme', :'a_agent', :'b_box'), '23503', null,
                 'an attachment to another tenant''s toolbox is refused by its foreign key (23503)');
select throws_ok(format($$update public.agent_mcp_server_access set server_instance_id = %L where agent_id = %L$$, :'b_mem', :'a_agent'),
                 '55000', null, 'a grant cannot be repointed at all: it is history (55000)');
-- With that history trigger out of the way (inside this rolled-back transaction), the foreign key
-- alone still refuses the repointed grant.
select tests.clear_authentication();
alter table public.agent_mcp_server_access disable trigger agent_mcp_server_access_history;
select tests.authenticate_as_service_role();
select throws_ok(format($$update public.agent_mcp_server_access set server_instance_id = %L where agent_id = %L$$, :'b_mem', :'a_agent'),
                 '23503', null, 'and behind it, the composite foreign key refuses the UPDATE as well (23503)');
select tests.clear_authentication();
alter table public.agent_mcp_server_access enable trigger agent_mcp_server_access_history;

select * from finish();
rollback;
