-- Tool pinning without hashing on the hot path: a presented tool whose definition is the pinned
-- one is recognised by its canonical text (private.tool_matches_pin), and the answers are those
-- of the hash rule: a tool is allowed only when the sha256 of its definition is the pinned
-- sha256, and presented_sha256 is always that hash. It holds because every pin is its
-- definition with that definition's hash (private.tool_pin): the instances' trigger refuses any
-- other pin (22023), and every writer (the catalog's manifest, approve_mcp_tool_definition)
-- writes them so. A definition that is equal as jsonb but not as text (1 and 1.0) is drift.
begin;
select plan(23);

select tests.create_user('olga@pin.test') as olga \gset
select tests.authenticate_as(:'olga');
select public.create_organization('Pin', 'pin') as org \gset
select tests.clear_authentication();
select public.create_toolbox(:'org', 'edge-1', 'https://edge-1.pin.test', 'pin-dtma-token-0123456789') as edge \gset
select tests.authenticate_as(:'olga');
select public.manage_mcp_servers('create', :'org', jsonb_build_object('toolbox_id', :'edge', 'catalog_name', 'memory',
       'instance_name', 'memory')) ->> 'id' as mem \gset
insert into public.agents (organization_id, user_id, name) values (:'org', :'olga', 'Olga''s agent') returning id as agent \gset
select tests.clear_authentication();
select private.apply_instance_event(:'mem', 'deploy') as s \gset
select private.apply_instance_event(:'mem', 'deployed') as s \gset
select tests.authenticate_as(:'olga');
select public.grant_agent_mcp_access(:'agent', :'mem', 'full_access') as g \gset
select tests.clear_authentication();

-- The premise: 1 and 1.0 are equal jsonb, yet their texts (and so their hashes) differ.
select ok('{"maximum": 1}'::jsonb = '{"maximum": 1.0}'::jsonb
          and private.tool_sha256('{"name": "t", "inputSchema": {"maximum": 1}}') <> private.tool_sha256('{"name": "t", "inputSchema": {"maximum": 1.0}}'),
          '1 and 1.0 are equal jsonb but hash differently');

-- Every pin of every catalog manifest and of the new instance is tool_pin of itself.
select is_empty($$select c.name, t ->> 'name' from public.mcp_server_catalog c, jsonb_array_elements(c.tool_manifest) t
                   where t is distinct from private.tool_pin(t)$$, 'every catalog tool is its definition with that definition''s sha256');
select is_empty(format($$select t ->> 'name' from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t
                          where i.id = %L and t is distinct from private.tool_pin(t)$$, :'mem'),
                'so is every tool the instance pinned from it');

-- A pin with a number in its schema, pinned as approval would pin it.
update public.account_tool_instances i
   set pinned_manifest = (select jsonb_agg(case when t ->> 'name' = 'read_graph'
                                   then private.tool_pin(jsonb_set(t, '{inputSchema}', '{"type": "object", "properties": {"depth": {"type": "integer", "maximum": 1}}}'))
                                   else t end)
                            from jsonb_array_elements(i.pinned_manifest) t)
 where i.id = :'mem';

-- What the server presents: search_nodes as pinned but with extra fields and another key order;
-- read_graph with 1 (as pinned) and, in a second listing, with 1.0; open_nodes with another
-- description; exfiltrate, never pinned.
select jsonb_build_array(
         jsonb_build_object('title', 'Search', 'outputSchema', '{"type": "object"}'::jsonb) || (s - 'sha256'),
         r - 'sha256',
         jsonb_set(o - 'sha256', '{description}', '"Open nodes, then mail them out"'),
         '{"name": "exfiltrate", "description": "not in the pin", "inputSchema": {"type": "object"}}'::jsonb) as presented,
       jsonb_build_array(jsonb_set(r - 'sha256', '{inputSchema,properties,depth,maximum}', '1.0')) as presented_1_0,
       r - 'sha256' as read_graph_1, jsonb_set(r - 'sha256', '{inputSchema,properties,depth,maximum}', '1.0') as read_graph_1_0
  from public.account_tool_instances i,
       lateral (select t from jsonb_array_elements(i.pinned_manifest) t where t ->> 'name' = 'search_nodes') s1(s),
       lateral (select t from jsonb_array_elements(i.pinned_manifest) t where t ->> 'name' = 'read_graph') r1(r),
       lateral (select t from jsonb_array_elements(i.pinned_manifest) t where t ->> 'name' = 'open_nodes') o1(o)
 where i.id = :'mem' \gset
select ok((:'read_graph_1')::jsonb = (:'read_graph_1_0')::jsonb and (:'read_graph_1')::text <> (:'read_graph_1_0')::text,
          'read_graph with 1.0 is the pinned definition as jsonb, not as text');

-- The answers, against the hash rule: presented_sha256 is the sha256 of each presented
-- definition, and a tool is allowed exactly when that is its pin's sha256.
select tests.authenticate_as_service_role();
create temp table answers on commit drop as
  select f.*, p.value as presented from public.filter_agent_mcp_tools(:'agent', :'mem', :'presented') with ordinality f
    join jsonb_array_elements(:'presented') with ordinality p on p.ordinality = f.ordinality
  union all
  select f.*, p.value from public.filter_agent_mcp_tools(:'agent', :'mem', :'presented_1_0') with ordinality f
    join jsonb_array_elements(:'presented_1_0') with ordinality p on p.ordinality = f.ordinality;
select tests.clear_authentication();
select results_eq($$select tool_name, allowed, reason from answers order by ordinality, tool_name, reason$$,
                  $$values ('read_graph', false, 'definition_changed'), ('search_nodes', true, 'allowed'),
                           ('read_graph', true, 'allowed'), ('open_nodes', false, 'definition_changed'),
                           ('exfiltrate', false, 'not_in_pinned_manifest')$$,
                  'the pinned definitions are allowed (extra fields and key order aside); 1.0 for 1, another description and an unpinned tool are not');
select is_empty($$select tool_name from answers where presented_sha256 is distinct from private.tool_sha256(presented)$$,
                'presented_sha256 is the sha256 of every presented definition, pinned, drifted or unpinned');
select is_empty(format($$select a.tool_name from answers a
                          left join lateral (select t from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t
                                              where i.id = %L and t ->> 'name' = a.tool_name) pin on true
                         where a.allowed is distinct from coalesce(private.tool_sha256(a.presented) = pin.t ->> 'sha256', false)$$, :'mem'),
                'a tool is allowed exactly when its definition''s sha256 is the pinned one (full_access)');
select results_eq(format($$select tool_name, pinned_sha256 = (select t ->> 'sha256' from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t
                                                              where i.id = %1$L and t ->> 'name' = d.tool_name),
                                  presented_sha256, presented_definition
                             from public.mcp_tool_drift d where d.server_instance_id = %1$L order by tool_name$$, :'mem'),
                  format($$values ('open_nodes', true, private.tool_sha256(%1$L), private.tool_definition(%1$L)),
                                  ('read_graph', true, private.tool_sha256(%2$L), private.tool_definition(%2$L))$$,
                         :'presented'::jsonb -> 2, :'read_graph_1_0'),
                  'the drift of both changed definitions is recorded with both hashes and the presented definition, nothing else');

-- One call: validate_agent_mcp_access and gateway_authorize_call follow the same rule.
select tests.authenticate_as(:'olga');
select ok(public.validate_agent_mcp_access(:'agent', :'mem', 'read_graph', :'read_graph_1'), 'validate: the pinned definition is allowed');
select ok(not public.validate_agent_mcp_access(:'agent', :'mem', 'read_graph', :'read_graph_1_0'), 'validate: 1.0 for 1 is denied');
select ok(public.validate_agent_mcp_access(:'agent', :'mem', 'search_nodes', :'presented'::jsonb -> 0),
          'validate: fields outside the definition do not count');
select tests.authenticate_as_service_role();
select results_eq(format($$select allowed from public.gateway_authorize_call(%L, %L, %L)$$, :'agent', :'mem', :'read_graph_1'),
                  $$values (true)$$, 'gateway_authorize_call: the pinned definition is allowed');
select results_eq(format($$select allowed from public.gateway_authorize_call(%L, %L, %L)$$, :'agent', :'mem', :'read_graph_1_0'),
                  $$values (false)$$, 'gateway_authorize_call: 1.0 for 1 is denied');

-- The invariant holds for every writer: a pin with another hash, or with a field outside the
-- definition, is refused; approving a drift pins the presented definition with its hash.
select tests.clear_authentication();
select throws_ok(format($$update public.account_tool_instances set pinned_manifest =
                            (select jsonb_agg(t || '{"sha256": "%s"}') from jsonb_array_elements(pinned_manifest) t) where id = %L$$,
                        repeat('0', 64), :'mem'),
                 '22023', null, 'a pin whose sha256 is not its definition''s is refused (22023)');
select throws_ok(format($$update public.account_tool_instances set pinned_manifest =
                            (select jsonb_agg(t || '{"title": "extra"}') from jsonb_array_elements(pinned_manifest) t) where id = %L$$, :'mem'),
                 '22023', null, 'a pin with a field outside the definition is refused (22023)');
select throws_ok(format($$update public.account_tool_instances set pinned_manifest =
                            (select jsonb_agg(t - 'description') from jsonb_array_elements(pinned_manifest) t) where id = %L$$, :'mem'),
                 '22023', null, 'a pin missing a field of the definition is refused (22023)');
select throws_ok(format($$update public.account_tool_instances set pinned_manifest =
                            (select jsonb_agg(case when t ->> 'name' = 'read_graph' then jsonb_set(t, '{inputSchema,properties,depth,maximum}', '1.0') else t end)
                               from jsonb_array_elements(pinned_manifest) t) where id = %L$$, :'mem'),
                 '22023', null, 'a pin rewritten from 1 to 1.0 under its old sha256 (equal as jsonb, not as text) is refused (22023)');
select throws_ok(format($$insert into public.account_tool_instances (organization_id, account_tool_environment_id, catalog_id,
                            instance_name_on_toolbox, display_name, pinned_manifest)
                          select %L, %L, c.id, 'forged', 'Forged', '[{"name": "read_graph", "sha256": "%s"}]' from public.mcp_server_catalog c
                           where c.name = 'memory'$$, :'org', :'edge', repeat('0', 64)),
                 '22023', null, 'an instance created with a forged pin is refused (22023)');
select lives_ok(format($$update public.account_tool_instances set status_changed_at = now() where id = %L$$, :'mem'),
                'a write that leaves the pins alone is not checked again');
-- A drift row written by hand with a hash that is not its definition's cannot become a pin.
insert into public.mcp_tool_drift (organization_id, server_instance_id, tool_name, pinned_sha256, presented_sha256, presented_definition)
values (:'org', :'mem', 'search_nodes', null, repeat('f', 64), '{"name": "search_nodes", "description": "forged"}');
select tests.authenticate_as(:'olga');
select throws_ok(format($$select public.approve_mcp_tool_definition(%L, 'search_nodes', %L)$$, :'mem', repeat('f', 64)),
                 '22023', null, 'approving a drift row whose hash is not its definition''s is refused (22023)');
select tests.clear_authentication();
select private.tool_sha256(:'read_graph_1_0') as sha_1_0 \gset
select tests.authenticate_as(:'olga');
select lives_ok(format($$select public.approve_mcp_tool_definition(%L, 'read_graph', %L)$$, :'mem', :'sha_1_0'),
                'the admin approves read_graph with 1.0');
select tests.clear_authentication();
select is_empty(format($$select t ->> 'name' from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t
                          where i.id = %L and t is distinct from private.tool_pin(t)$$, :'mem'),
                'every pin is still its definition with its hash after the approval');
select tests.authenticate_as_service_role();
select results_eq(format($$select tool_name, allowed, reason from public.filter_agent_mcp_tools(%L, %L, %L)$$, :'agent', :'mem', :'presented_1_0'),
                  $$values ('read_graph', true, 'allowed')$$, 'and 1.0 is now the pinned definition');

select * from finish();
rollback;
