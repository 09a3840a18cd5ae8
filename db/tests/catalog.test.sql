-- The catalog: the database, and nothing else, hashes each tool of a server's manifest, so a
-- pin means the same thing to every client. Signed-in users read the active entries; only
-- service_role (the platform) writes them.
begin;
select plan(24);

-- The seed, as the database hashed it.
select isnt_empty('select * from public.mcp_server_catalog', 'the catalog is seeded');
select is_empty($$select name from public.mcp_server_catalog where jsonb_array_length(tool_manifest) = 0$$,
                'every seeded server presents at least one tool');
select is_empty($$select c.name, t ->> 'name', t ->> 'sha256' from public.mcp_server_catalog c, jsonb_array_elements(c.tool_manifest) t
                   where t ->> 'sha256' is distinct from private.tool_sha256(t)$$,
                'every seeded tool carries the sha256 of its definition, as private.tool_sha256 computes it');
select is_empty($$select c.name, t ->> 'name' from public.mcp_server_catalog c, jsonb_array_elements(c.tool_manifest) t
                   where t ->> 'sha256' !~ '^[0-9a-f]{64}$'$$,
                'every hash is a hex sha256');
select is_empty($$select c.name, t ->> 'name' from public.mcp_server_catalog c, jsonb_array_elements(c.tool_manifest) t
                   where (select array_agg(k order by k) from jsonb_object_keys(t) k) <> '{annotations,description,inputSchema,name,sha256}'$$,
                'each stored tool holds its definition (name, description, inputSchema, annotations) and its hash, nothing else');
select is_empty($$select c.name, t ->> 'name' from public.mcp_server_catalog c, jsonb_array_elements(c.tool_manifest) t
                   group by 1, 2 having count(*) > 1$$,
                'no seeded server has two tools of the same name');

-- What the hash covers: the definition, not its spelling.
select is(private.tool_sha256('{"name": "t", "description": "d", "inputSchema": {"type": "object", "required": ["a"]}}'),
          private.tool_sha256('{"inputSchema":{"required":["a"],"type":"object"},   "description":"d","name":"t"}'),
          'key order and whitespace do not change the hash (canonical JSON)');
select is(private.tool_sha256('{"name": "t"}'),
          private.tool_sha256('{"name": "t", "description": "", "inputSchema": {}, "annotations": {}}'),
          'an absent description, input schema or annotations hashes as an empty one');
select isnt(private.tool_sha256('{"name": "t", "annotations": {"readOnlyHint": true}}'),
            private.tool_sha256('{"name": "t", "annotations": {"readOnlyHint": false}}'),
            'flipping readOnlyHint changes the hash');
select isnt(private.tool_sha256('{"name": "t", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}'),
            private.tool_sha256('{"name": "t", "inputSchema": {"type": "object", "properties": {"url": {"type": "string"}}}}'),
            'changing the input schema changes the hash');

-- Changing one tool's description changes that tool's hash, and only that one.
create temp table memory_before on commit drop as
  select t ->> 'name' as name, t ->> 'sha256' as sha256
    from public.mcp_server_catalog c, jsonb_array_elements(c.tool_manifest) t where c.name = 'memory';
select tests.authenticate_as_service_role();
update public.mcp_server_catalog
   set tool_manifest = (select jsonb_agg(case when t ->> 'name' = 'read_graph'
                                              then jsonb_set(t, '{description}', '"Read the entire knowledge graph, and send it elsewhere"')
                                              else t end)
                          from jsonb_array_elements(tool_manifest) t)
 where name = 'memory';
select tests.clear_authentication();
create temp table memory_after on commit drop as
  select t ->> 'name' as name, t ->> 'sha256' as sha256, t as tool
    from public.mcp_server_catalog c, jsonb_array_elements(c.tool_manifest) t where c.name = 'memory';
select results_eq($$select a.name from memory_after a join memory_before b using (name) where a.sha256 <> b.sha256$$,
                  $$values ('read_graph')$$,
                  'a new description of read_graph changes its hash and no other tool''s');
select is((select sha256 from memory_after where name = 'read_graph'), (select private.tool_sha256(tool) from memory_after where name = 'read_graph'),
          'the new hash is that of the new definition (the stale sha256 the writer sent back was replaced)');

-- A hash supplied by a writer is never trusted; a tool needs a name, unique in its manifest.
select tests.authenticate_as_service_role();
insert into public.mcp_server_catalog (name, display_name, docker_image_url, version, transport_type, tool_manifest)
values ('weather', 'Weather', 'npm:example-weather@1.0.0', '1.0.0', 'stdio',
        '[{"name": "forecast", "description": "Forecast for a city", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}]');
select tests.clear_authentication();
select is((select t ->> 'sha256' from public.mcp_server_catalog c, jsonb_array_elements(c.tool_manifest) t where c.name = 'weather'),
          private.tool_sha256('{"name": "forecast", "description": "Forecast for a city"}'),
          'service_role adds an entry; the sha256 it supplied is replaced by the database''s');
select tests.authenticate_as_service_role();
select throws_ok($$insert into public.mcp_server_catalog (name, display_name, docker_image_url, version, transport_type, tool_manifest)
                   values ('nameless', 'Nameless', 'npm:x@1', '1', 'stdio', '[{"description": "no name"}]')$$,
                 '22023', 'every tool of the manifest needs a name', 'a tool without a name is refused (22023)');
select throws_ok($$insert into public.mcp_server_catalog (name, display_name, docker_image_url, version, transport_type, tool_manifest)
                   values ('nameless', 'Nameless', 'npm:x@1', '1', 'stdio', '[{"name": ""}]')$$,
                 '22023', 'every tool of the manifest needs a name', 'a tool with an empty name is refused (22023)');
select throws_ok($$update public.mcp_server_catalog set tool_manifest = tool_manifest || '[{"name": 42}]' where name = 'memory'$$,
                 '22023', 'every tool of the manifest needs a name', 'a tool whose name is not a string is refused on update too (22023)');
select throws_ok($$update public.mcp_server_catalog set tool_manifest = tool_manifest || '[{"name": "read_graph", "description": "a second read_graph"}]'
                   where name = 'memory'$$,
                 '22023', 'the manifest has two tools named ''read_graph''', 'two tools of the same name are refused (22023)');

-- Signed-in users read the active catalog; nobody but service_role writes it.
select tests.clear_authentication();
update public.mcp_server_catalog set is_active = false where name = 'weather';
select tests.create_user('mia@acme.test') as mia \gset
select tests.authenticate_as(:'mia');
select set_eq('select name from public.mcp_server_catalog',
              $$select name from public.mcp_server_catalog where name <> 'weather'$$,
              'a signed-in user reads every active entry');
select is_empty($$select * from public.mcp_server_catalog where name = 'weather'$$, 'but not an inactive one');
select throws_ok($$insert into public.mcp_server_catalog (name, display_name, docker_image_url, version, transport_type)
                   values ('mine', 'Mine', 'npm:mine@1', '1', 'stdio')$$, '42501', null,
                 'a signed-in user cannot add an entry (42501)');
select throws_ok($$update public.mcp_server_catalog set docker_image_url = 'npm:evil@1' where name = 'memory'$$, '42501', null,
                 'a signed-in user cannot change an entry (42501)');
select throws_ok($$delete from public.mcp_server_catalog where name = 'memory'$$, '42501', null,
                 'a signed-in user cannot delete an entry (42501)');
select throws_ok($$select private.tool_sha256('{"name": "t"}')$$, '42501', null,
                 'a signed-in user cannot call the hashing helper (42501)');
select tests.authenticate_as_anon();
select throws_ok('select * from public.mcp_server_catalog', '42501', null, 'anon cannot read the catalog (42501)');

select * from finish();
rollback;
