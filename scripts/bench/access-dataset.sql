-- The dataset of the access-control benchmark (scripts/bench/access.sh), built set-based, as
-- postgres, through the real tables: constraints, foreign keys and triggers (the audit trail,
-- the lifecycle guard and its DTMA outbox, the catalog checks) all stay on, so every row is
-- one the system itself would accept.
--
-- Three phases, chosen with -v phase=...:
--   prepare  identities, toolboxes (tokens in Vault), instances (pending), and the plan of
--            what the parts do: bench.instance_plan, bench.grant_plan (every draw made once)
--   part     one part (-v part=k, 0 <= k < parts) of the organizations: moves their instances
--            along the state machine, then writes their grants. access.sh runs the parts in
--            parallel sessions, one per core: each grant costs its audit trigger and five
--            foreign-key checks, each deployment a DTMA request in the outbox
--   finish   bench.pairs and bench.claims (what the pgbench scripts draw from), bench.meta
-- Sizes are psql variables (access.sh passes them with -v); the defaults are the published run.

\set ON_ERROR_STOP on
\if :{?phase} \else \set phase prepare \endif
\if :{?orgs} \else \set orgs 1000 \endif
\if :{?users_per_org} \else \set users_per_org 20 \endif
\if :{?agents_per_org} \else \set agents_per_org 100 \endif
\if :{?toolboxes_per_org} \else \set toolboxes_per_org 2 \endif
\if :{?instances_per_org} \else \set instances_per_org 20 \endif
\if :{?grants_per_agent} \else \set grants_per_agent 10 \endif
\if :{?parts} \else \set parts 2 \endif
\if :{?part} \else \set part 0 \endif
select :'phase' = 'prepare' as is_prepare, :'phase' = 'part' as is_part, :'phase' = 'finish' as is_finish \gset

\if :is_prepare
begin;

-- Slot grants_per_agent - 1 of each agent re-uses the server of slot 0 (an older, revoked
-- grant: history); the other slots need distinct servers, one live grant per (agent, server).
-- Roles per organization: user 1 owner, users 2-3 admins, the last 2 viewers, the rest members.
select set_config('bench.sizes_ok', (:grants_per_agent - 1 <= :instances_per_org and :users_per_org >= 6)::text, true);
do $$
begin
  if not current_setting('bench.sizes_ok')::boolean then
    raise exception using errcode = '22023', message = 'dataset sizes out of range',
      hint = 'need grants_per_agent - 1 <= instances_per_org and users_per_org >= 6';
  end if;
end $$;

create schema bench;
revoke all on schema bench from public;
comment on schema bench is 'Access-control benchmark: lookup tables of scripts/bench/access.sh (bench cluster only).';
create table bench.meta (key text primary key, value text not null);

-- Reproducible draws: the same sizes give the same mix on every build.
select setseed(0.2026);
select private.set_audit_context('access benchmark dataset', 'bench_load');

-- Identities first, so every foreign key has its target.
create temporary table t_users on commit drop as
  select o, u, gen_random_uuid() as id,
         case when u = 1 then 'owner' when u <= 3 then 'admin'
              when u > :users_per_org - 2 then 'viewer' else 'member' end::public.org_role as role
    from generate_series(1, :orgs) o, generate_series(1, :users_per_org) u;
create index on t_users (o, u);
analyze t_users;

insert into auth.users (id, email, role, aud, email_confirmed_at, raw_app_meta_data)
select id, format('bench-%s-%s@example.com', o, u), 'authenticated', 'authenticated', now(),
       '{"provider": "email", "providers": ["email"]}'
  from t_users;

create temporary table t_orgs on commit drop as
  select o, gen_random_uuid() as id, (select id from t_users x where x.o = s.o and x.u = 1) as owner_id
    from generate_series(1, :orgs) as s(o);
create index on t_orgs (o);
analyze t_orgs;

insert into public.organizations (id, name, slug, created_by)
select id, format('Bench organization %s', o), format('bench-org-%s', o), owner_id from t_orgs;

insert into public.organization_members (organization_id, user_id, role, added_by)
select g.id, u.id, u.role, g.owner_id from t_users u join t_orgs g using (o);

-- Agents belong to owners, admins and members (not viewers), round robin.
create temporary table t_agents on commit drop as
  select a.o, a.k, gen_random_uuid() as id, g.id as org_id, u.id as user_id
    from (select o, k from generate_series(1, :orgs) o, generate_series(1, :agents_per_org) k) a
    join t_orgs g on g.o = a.o
    join t_users u on u.o = a.o and u.u = 1 + (a.k - 1) % (:users_per_org - 2);
analyze t_agents;

insert into public.agents (id, organization_id, user_id, name, description)
select id, org_id, user_id, format('agent %s of org %s', k, o), 'access benchmark agent' from t_agents;

-- Toolboxes, each with its own DTMA token in Vault, as create_toolbox stores it.
create temporary table t_toolboxes on commit drop as
  select g.o, t, gen_random_uuid() as id, g.id as org_id, g.owner_id
    from t_orgs g, generate_series(1, :toolboxes_per_org) t;
analyze t_toolboxes;

insert into public.account_tool_environments (id, organization_id, name, dtma_base_url, dtma_token_secret_id, status,
                                              last_heartbeat_at, created_by)
select id, org_id, format('toolbox-%s', t), format('https://toolbox-%s-%s.bench.invalid:30000', o, t),
       vault.create_secret(encode(extensions.gen_random_bytes(24), 'hex'), format('toolbox/%s/dtma-token', id),
                           format('DTMA bearer token of toolbox %s', id)),
       'active', now(), owner_id
  from t_toolboxes;

-- Instances: catalog servers in turn over the toolboxes; ~90% end running, ~5% stopped,
-- ~5% failed. They are created pending (the lifecycle guard refuses anything else); the parts
-- move them along legal transitions only, with the guard, its audit and the DTMA outbox on.
create temporary table t_catalog on commit drop as
  select c.id, c.name, c.display_name, row_number() over (order by c.name) as pos,
         array(select t ->> 'name' from jsonb_array_elements(c.tool_manifest) t order by 1) as tools
    from public.mcp_server_catalog c where c.name in ('everything', 'memory', 'sequential-thinking');

-- Each draw is made once (materialized), so every expression that reads it sees one value.
create temporary table t_instances on commit drop as
  with s as materialized (select o, i, random() as r from generate_series(1, :orgs) o, generate_series(1, :instances_per_org) i)
  select s.o, s.i, gen_random_uuid() as id, g.id as org_id, g.owner_id, b.id as toolbox_id, b.o as toolbox_o, b.t as toolbox_t,
         c.id as catalog_id, c.name as catalog_name, c.display_name as catalog_display_name, c.tools,
         case when s.r < 0.90 then 'running' when s.r < 0.95 then 'stopped' else 'failed' end as target
    from s
    join t_orgs g on g.o = s.o
    join t_toolboxes b on b.o = s.o and b.t = 1 + (s.i - 1) % :toolboxes_per_org
    join t_catalog c on c.pos = 1 + (s.i - 1) % (select count(*) from t_catalog);
create index on t_instances (o, i);
create index on t_instances (id);
analyze t_instances;

insert into public.account_tool_instances (id, organization_id, account_tool_environment_id, catalog_id,
       instance_name_on_toolbox, display_name, configuration, priority, created_by)
select id, org_id, toolbox_id, catalog_id, format('%s-%s', catalog_name, i), format('%s #%s', catalog_display_name, i),
       case catalog_name when 'memory' then jsonb_build_object('env', jsonb_build_object('MEMORY_FILE_PATH', format('/data/memory-%s.jsonl', i)))
                         else '{}'::jsonb end,
       50 + (i * 37) % 200, owner_id
  from t_instances;
analyze public.account_tool_instances;

create unlogged table bench.instance_plan as
  select id, o % :parts as part, target, format('https://toolbox-%s-%s.bench.invalid:30000/mcp/%s', toolbox_o, toolbox_t, id) as endpoint_url
    from t_instances;
create index on bench.instance_plan (part, target);
analyze bench.instance_plan;

-- The grants to write, grants_per_agent per agent. Slots 0 .. n-2 sit on distinct servers of
-- the agent's organization: ~10% revoked, ~10% expired, the rest live (a third of those with
-- a future expiry). Slot n-1 is an older grant on slot 0's server, revoked when superseded.
-- Scopes: ~40% read_only, ~30% full_access, ~30% custom with tools of the pinned manifest,
-- sorted and distinct as grant_agent_mcp_access stores them.
create unlogged table bench.grant_plan as
  with s as materialized (
    select a.id as agent_id, slot, random() as r, random() as r2, random() as r3
      from t_agents a, generate_series(0, :grants_per_agent - 1) slot
  ), d as (
    select a.o, a.org_id, a.id as agent_id, a.user_id, x.id as server_id, x.tools, s.slot, s.r3,
           case when s.slot = :grants_per_agent - 1 then 'history'
                when s.r < 0.10 then 'revoked' when s.r < 0.20 then 'expired' else 'live' end as kind,
           case when s.r2 < 0.40 then 'read_only' when s.r2 < 0.70 then 'full_access'
                else 'custom' end::public.mcp_permission_scope as scope
      from s
      join t_agents a on a.id = s.agent_id
      join t_instances x on x.o = a.o
                        and x.i = 1 + (a.k + case when s.slot = :grants_per_agent - 1 then 0 else s.slot end) % :instances_per_org
  )
  select d.o % :parts as part, d.org_id, d.agent_id, d.server_id, d.scope as permission_scope,
         case when d.scope = 'custom' then
           coalesce((select array_agg(t order by t) from unnest(d.tools) t where random() < 0.35),
                    array[d.tools[1 + floor(d.r3 * cardinality(d.tools))::int]]) end as allowed_tools,
         case d.kind when 'expired' then w.granted_at + make_interval(days => 1 + floor(d.r3 * 20)::int)
                     when 'live' then case when d.r3 < 0.33 then now() + make_interval(days => 1 + floor(d.r3 * 900)::int) end
         end as expires_at,
         d.kind in ('live', 'expired') as is_active, d.user_id as granted_by, w.granted_at,
         case when d.kind in ('revoked', 'history') then d.user_id end as revoked_by,
         case when d.kind in ('revoked', 'history') then w.granted_at + make_interval(days => 1 + floor(d.r3 * 20)::int) end as revoked_at,
         case d.kind when 'revoked' then 'revoked' when 'history' then 'superseded by a new grant' end as revoke_reason
    from d
    cross join lateral (select now() - make_interval(days => case d.kind when 'history' then 200 when 'revoked' then 60
                                                                    when 'expired' then 90 else 0 end + floor(d.r3 * 30)::int,
                                                     secs => 1 + d.slot) as granted_at) w;
create index on bench.grant_plan (part);

commit;
\endif

\if :is_part
begin;
select private.set_audit_context('access benchmark dataset', 'bench_load');
update public.account_tool_instances x set status = 'deploying' from bench.instance_plan t where t.id = x.id and t.part = :part;
update public.account_tool_instances x
   set status = 'running', health_status = 'healthy', last_health_check_at = now(), endpoint_url = t.endpoint_url
  from bench.instance_plan t where t.id = x.id and t.part = :part and t.target in ('running', 'stopped');
update public.account_tool_instances x set status = 'failed', last_error = 'DTMA: image pull failed (bench)'
  from bench.instance_plan t where t.id = x.id and t.part = :part and t.target = 'failed';
update public.account_tool_instances x set status = 'stopping'
  from bench.instance_plan t where t.id = x.id and t.part = :part and t.target = 'stopped';
update public.account_tool_instances x set status = 'stopped', health_status = 'unknown'
  from bench.instance_plan t where t.id = x.id and t.part = :part and t.target = 'stopped';

insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope, allowed_tools,
       expires_at, is_active, granted_by, granted_at, revoked_by, revoked_at, revoke_reason)
select org_id, agent_id, server_id, permission_scope, allowed_tools,
       expires_at, is_active, granted_by, granted_at, revoked_by, revoked_at, revoke_reason
  from bench.grant_plan where part = :part;
commit;
\endif

\if :is_finish
begin;
-- What the pgbench scripts draw from: every (agent, server) with a grant and the agent's owner,
-- numbered in random order; and each owner's JWT claims, shaped as a Supabase access token's,
-- which the scripts set as PostgREST does.
create table bench.pairs (
  n integer primary key,
  agent_id uuid not null,
  user_id uuid not null,
  server_id uuid not null
);
comment on table bench.pairs is 'Benchmark lookup: n -> (agent, its owner, a server it has a grant on); pgbench picks n = random(1, count).';
insert into bench.pairs (n, agent_id, user_id, server_id)
select row_number() over (order by random()), p.agent_id, p.granted_by, p.server_id
  from (select distinct agent_id, granted_by, server_id from bench.grant_plan) p;

create table bench.claims (
  user_id uuid primary key,
  claims text not null
);
comment on table bench.claims is 'Benchmark lookup: the JWT claims (as PostgREST sets request.jwt.claims) of each agent owner.';
insert into bench.claims (user_id, claims)
select u.id,
       jsonb_build_object('aud', 'authenticated', 'exp', extract(epoch from now() + interval '1 hour')::bigint,
                          'iat', extract(epoch from now())::bigint, 'iss', 'http://127.0.0.1:54321/auth/v1',
                          'sub', u.id, 'email', u.email, 'phone', '',
                          'app_metadata', u.raw_app_meta_data, 'user_metadata', '{}'::jsonb, 'role', 'authenticated',
                          'aal', 'aal1', 'amr', jsonb_build_array(jsonb_build_object('method', 'password', 'timestamp', 1767225600)),
                          'session_id', gen_random_uuid(), 'is_anonymous', false)::text
  from auth.users u where u.id in (select user_id from bench.pairs);

drop table bench.grant_plan, bench.instance_plan;
insert into bench.meta (key, value)
select 'sizes', format('orgs=%s users_per_org=%s agents_per_org=%s toolboxes_per_org=%s instances_per_org=%s grants_per_agent=%s',
                       :orgs, :users_per_org, :agents_per_org, :toolboxes_per_org, :instances_per_org, :grants_per_agent)
union all select 'pairs', count(*)::text from bench.pairs
union all select 'built_at', now()::text;
commit;
\endif
