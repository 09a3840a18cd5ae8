-- Hygiene of the whole schema, walked from the catalogs so that nothing added later slips
-- through: each test lists the offenders and expects none, so a failure names the culprit.
-- The project's functions are those of schemas public and private that no extension owns.
begin;
select plan(25);

create temp view project_functions as
  select p.oid, n.nspname, p.oid::regprocedure as signature, p.prosecdef, p.proconfig, p.proacl, p.proowner
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname in ('public', 'private')
     and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');

create temp view public_relations as
  select c.oid, c.oid::regclass as relation, c.relkind, c.relrowsecurity, c.reloptions
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')
     and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e');

select isnt_empty($$select from project_functions where nspname = 'public'$$, 'the walk sees the functions of public');
select isnt_empty($$select from project_functions where nspname = 'private'$$, 'and those of private');

-- Definer functions run with their owner's rights: a caller's search_path must not reach them.
-- An empty search_path is not enough: PostgreSQL still searches the caller's temporary schema
-- first for relations and types unless pg_temp is named, so it must be named, and last. This
-- walks every schema a caller could plant code against (the stand-ins of db/compat included).
select is_empty($$select p.oid::regprocedure
                    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                   where p.prosecdef
                     and n.nspname in ('public', 'private', 'auth', 'vault', 'net', 'extensions')
                     and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
                     and not exists (select from unnest(p.proconfig) c where c ~ '^search_path=(.*, *)?pg_temp$')$$,
                'every SECURITY DEFINER function sets a search_path with pg_temp named last');

-- Nothing is executable by anon or by PUBLIC (a null proacl means the default: PUBLIC may execute).
-- No function must be: an exception would be listed here, and there is none.
select is_empty($$select signature from project_functions where has_function_privilege('anon', oid, 'execute')$$,
                'no function of public or private is executable by anon');
select is_empty($$select signature from project_functions f
                   where exists (select from aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
                                  where a.grantee = 0 and a.privilege_type = 'EXECUTE')$$,
                'no function of public or private is executable by PUBLIC');

-- Private helpers are for definer functions, which call them as their owner. An API role may
-- execute only those listed here, each for its reason (and each answers about the caller
-- only); any other private function executable by authenticated is an offender.
select is_empty($$select signature from project_functions f
                   where nspname = 'private' and has_function_privilege('authenticated', oid, 'execute')
                     and signature::text not in (
                       -- the RLS policies call it: the caller's own organizations, by role
                       'private.my_org_ids(org_role)',
                       -- the agents policy calls it: whether a user is a member of an organization
                       -- where the caller holds a role (what the caller may read anyway)
                       'private.is_member_of_my_org(uuid,uuid)')$$,
                'no private function is executable by authenticated but those allowlisted with their reason');

-- Identity columns draw from their sequences without any privilege on them: no API role needs
-- one, and UPDATE would let it setval() a sequence to its end and stop every insert. Were a
-- sequence ever read by the API, it would be listed here with its reason; none is.
select is_empty($$select c.oid::regclass as sequence, r.role, p.privilege
                    from pg_class c join pg_namespace n on n.oid = c.relnamespace
                    cross join (values ('anon'), ('authenticated')) r(role)
                    cross join (values ('UPDATE'), ('USAGE'), ('SELECT')) p(privilege)
                   where c.relkind = 'S' and n.nspname in ('public', 'private')
                     and has_sequence_privilege(r.role, c.oid, p.privilege)$$,
                'no API role holds any privilege on a sequence of public or private');
select isnt_empty($$select from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     where c.relkind = 'S' and n.nspname = 'public'$$, 'the walk sees the sequences of public');

-- TEMP lets a session create the types and relations a definer function might resolve; the
-- migrations take it from PUBLIC (db/schema/01_security.sql). The test set-up gives it back to
-- the API roles for pgTAP, by name, which this does not look at.
select is_empty($$select from pg_database d cross join lateral aclexplode(d.datacl) a
                   where d.datname = current_database() and a.grantee = 0 and a.privilege_type = 'TEMPORARY'$$,
                'PUBLIC holds no TEMP on the database');

-- A statement trigger is not inherited: every partition of a table that refuses TRUNCATE must
-- refuse it itself, or TRUNCATE of the partition erases what the parent protects.
select is_empty($$select i.inhrelid::regclass as partition, i.inhparent::regclass as parent
                    from pg_inherits i
                   where exists (select from pg_trigger t where t.tgrelid = i.inhparent and (t.tgtype & 32) <> 0)
                     and not exists (select from pg_trigger t
                                      where t.tgrelid = i.inhrelid and (t.tgtype & 32) <> 0
                                        and t.tgfoid in (select p.tgfoid from pg_trigger p where p.tgrelid = i.inhparent and (p.tgtype & 32) <> 0))$$,
                'every partition of a table that refuses TRUNCATE refuses it too');

-- One rule, one place: who holds which role where is read from organization_members only by
-- the authorization core (db/functions/authz.sql); every other function, view and policy asks
-- the core. Writing a membership (the tenancy RPCs) is not reading the rule.
select is_empty($$select f.signature from project_functions f join pg_proc p on p.oid = f.oid
                   where regexp_replace(p.prosrc, '(insert\s+into|update|delete\s+from)\s+public\.organization_members', '', 'gi')
                         ~* 'organization_members'
                     and f.signature::text not in (
                       'private.member_role(uuid,uuid)', 'private.lock_member_role(uuid,uuid)',
                       'private.memberships(uuid,org_role)',
                       -- the table's own trigger: an organization keeps an owner
                       'private.keep_an_owner()')$$,
                'no function but the authorization core''s reads the membership rule from organization_members');
select is_empty($$select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
                   where n.nspname in ('public', 'private') and c.relkind = 'v'
                     and pg_get_viewdef(c.oid) ~* 'organization_members'
                     and c.oid not in ('private.member_owned_agents'::regclass, 'private.agent_managers'::regclass)
                  union all
                  select format('policy %s on %s', p.policyname, p.tablename) from pg_policies p
                   where p.schemaname = 'public' and concat(p.qual, p.with_check) ~* 'organization_members'$$,
                'nor does any view or policy outside the core');

-- The same for the other "who may" rules of the core. "The caller is this user" is one
-- comparison with auth.uid(), private.is_self: an owner check (an OAuth connection, a secret, a
-- flow, a member leaving) written again elsewhere is an offender.
create temp view compares_caller as
  select f.signature from project_functions f join pg_proc p on p.oid = f.oid
   -- a column or a parameter compared with it, or it with anything (an UPDATE's "set x = auth.uid()" is no check)
   where p.prosrc ~* '(auth\.uid\(\)\s*(=|<>|!=|is\s+(not\s+)?distinct))|((\.[a-z_]+|\m[pv]_[a-z_]+)\s*(=|<>|!=)\s*auth\.uid\(\))|(distinct\s+from\s+auth\.uid\(\))';
select is((select array_agg(signature::text) from compares_caller), array['private.is_self(uuid)'],
          'no function but private.is_self compares a user id with auth.uid() (and the walk sees that one)');
-- Who may act for an agent is asked of the core (private.may_act_for_agent and the require_*
-- functions), never read from its views again.
select is_empty($$select f.signature from project_functions f join pg_proc p on p.oid = f.oid
                   where p.prosrc ~* 'private\.(agent_managers|member_owned_agents)'
                     and f.signature::text not in ('private.may_act_for_agent(uuid,uuid)', 'private.require_agent_runtime(uuid)')$$,
                'no function but the core''s reads who may act for an agent from private.agent_managers');
select isnt_empty($$select from pg_proc p where p.oid = 'private.may_act_for_agent(uuid,uuid)'::regprocedure
                     and p.prosrc ~* 'private\.agent_managers'$$, 'the walk sees the core''s own reading');
-- Roles compare strongest first (owner < admin < member < viewer): that comparison is the core's
-- (private.has_org_role, private.require_org_role, the membership helpers), asked by every RPC.
select is_empty($$select f.signature from project_functions f join pg_proc p on p.oid = f.oid
                   where p.prosrc ~* '(private\.org_role\(|role\s*(<=|>=|<|>)\s*(''|p_))'
                     and f.signature::text not in (
                       'private.has_org_role(uuid,org_role)', 'private.require_org_role(uuid,org_role)',
                       'private.require_org_role_for(uuid,org_role,text)', 'private.is_member_of_my_org(uuid,uuid)',
                       'private.is_org_member(uuid,uuid)', 'private.memberships(uuid,org_role)', 'private.org_role(uuid)')$$,
                'no function but the core''s compares organization roles');

-- Settings that carry a value from one function to another are parameters in disguise: each
-- mcp.* setting is listed, with who sets and who reads it, in private.transaction_settings()
-- (db/schema/05_audit.sql). Any mcp.… name in a body counts, one built at run time ('mcp.' || x) too.
create temp view setting_uses as
  select m[2] as name, f.oid,
         case when p.prosrc ~* ('set_config\(\s*\S{1,8}' || replace(m[2], '.', '\.') || '[^a-z_]') then 'set' end as sets,
         case when p.prosrc ~* ('current_setting\(\s*\S{1,8}' || replace(m[2], '.', '\.') || '[^a-z_]') then 'read' end as reads
    from project_functions f join pg_proc p on p.oid = f.oid
    cross join lateral regexp_matches(p.prosrc, '(\m)(mcp\.[a-z_]*)', 'g') m;
select isnt_empty($$select from setting_uses$$, 'the walk sees the functions that use mcp.* settings');
select is_empty($$select name, oid::regprocedure from setting_uses
                   where name not in (select s.name from private.transaction_settings() s)$$,
                'no function uses an mcp.* setting that private.transaction_settings() does not list');
select is_empty($$(select distinct u.name, u.oid::regprocedure, u.sets, u.reads from setting_uses u
                    where u.sets is not null or u.reads is not null
                   except
                   select s.name, x.fn, 'set', null from private.transaction_settings() s cross join unnest(s.set_by) x(fn)
                   except
                   select s.name, x.fn, null, 'read' from private.transaction_settings() s cross join unnest(s.read_by) x(fn))
                  union all
                  (select s.name, x.fn, 'listed as setter', null from private.transaction_settings() s cross join unnest(s.set_by) x(fn)
                    where not exists (select from setting_uses u where u.name = s.name and u.oid = x.fn and u.sets is not null)
                   union all
                   select s.name, x.fn, null, 'listed as reader' from private.transaction_settings() s cross join unnest(s.read_by) x(fn)
                    where not exists (select from setting_uses u where u.name = s.name and u.oid = x.fn and u.reads is not null))$$,
                'each listed setting is set and read by exactly the functions the list names');

-- Admins read the API in psql (\df+, \d+).
select is_empty($$select signature from project_functions where obj_description(oid, 'pg_proc') is null$$,
                'every function of public and private has a comment');
select is_empty($$select relation from public_relations where obj_description(oid, 'pg_class') is null$$,
                'every table and view of public has a comment');

-- RLS everywhere the API reaches; views run with the caller's rights (a materialized view cannot).
select is_empty($$select relation from public_relations where relkind in ('r', 'p') and not relrowsecurity$$,
                'every table of public has row level security enabled');
select is_empty($$select relation, relkind from public_relations
                   where relkind = 'm'
                      or (relkind = 'v' and not exists (select from unnest(reloptions) o where o ~* '^security_invoker=(true|on|yes|1)$'))$$,
                'every view of public is security_invoker (and there is no materialized view)');

-- docs/ARCHITECTURE.md, authorization core: every column a foreign key uses leads some index, so that a lookup or a
-- cascade from the referenced row does not scan the table. A partial index serves only if its
-- predicate is that very column being not null (which every foreign-key lookup implies).
select is_empty($$select c.conrelid::regclass as relation, c.conname, a.attname
                    from pg_constraint c
                    join pg_namespace n on n.oid = c.connamespace
                    cross join lateral unnest(c.conkey) k(attnum)
                    join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
                   where c.contype = 'f' and n.nspname = 'public'
                     and not exists (select from pg_index i
                                      where i.indrelid = c.conrelid and i.indkey[0] = k.attnum
                                        and (i.indpred is null
                                             or pg_get_expr(i.indpred, i.indrelid) = format('(%I IS NOT NULL)', a.attname)))$$,
                'every column used by a foreign key in public leads an index');
select isnt_empty($$select from pg_constraint c join pg_namespace n on n.oid = c.connamespace where c.contype = 'f' and n.nspname = 'public'$$,
                  'the walk sees the foreign keys of public');

select * from finish();
rollback;
