-- The fast path of a batch's validation (private.json_schema_flat_valid) never accepts what the
-- recursive walk (private.json_schema_error) refuses, and accepts what it accepts for the
-- interaction schema; audit_mcp_interactions keeps the walk's messages for bad input.
begin;
select plan(9);

create temp table cases (label text, value jsonb) on commit drop;
insert into cases values
  ('complete', '{"server_instance_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "interaction_type": "tool_call", "tool_name": "echo",
                 "arguments": {"message": "hi", "n": [1, 2.5, null]}, "outcome": "success", "duration_ms": 12, "error": "none", "request_id": "r-1"}'),
  ('minimal', '{"interaction_type": "context_request", "outcome": "timeout", "duration_ms": 0}'),
  ('largest duration', '{"interaction_type": "error", "outcome": "error", "duration_ms": 86400000}'),
  ('arguments of any type', '{"interaction_type": "error", "outcome": "denied", "duration_ms": 1, "arguments": "just text"}'),
  ('a string', '"tool_call"'),
  ('an array', '[{"interaction_type": "error", "outcome": "error", "duration_ms": 1}]'),
  ('no outcome', '{"interaction_type": "error", "duration_ms": 1}'),
  ('unknown field', '{"interaction_type": "error", "outcome": "error", "duration_ms": 1, "arguments_plain": "x"}'),
  ('unknown type', '{"interaction_type": "call", "outcome": "error", "duration_ms": 1}'),
  ('outcome null', '{"interaction_type": "error", "outcome": null, "duration_ms": 1}'),
  ('server not a uuid', '{"server_instance_id": "memory", "interaction_type": "error", "outcome": "error", "duration_ms": 1}'),
  ('server a number', '{"server_instance_id": 7, "interaction_type": "error", "outcome": "error", "duration_ms": 1}'),
  ('empty tool name', '{"interaction_type": "tool_call", "tool_name": "", "outcome": "error", "duration_ms": 1}'),
  ('tool name too long', jsonb_build_object('interaction_type', 'tool_call', 'tool_name', repeat('t', 201), 'outcome', 'error', 'duration_ms', 1)),
  ('tool name at its longest', jsonb_build_object('interaction_type', 'tool_call', 'tool_name', repeat('t', 200), 'outcome', 'error', 'duration_ms', 1)),
  ('error too long', jsonb_build_object('interaction_type', 'error', 'error', repeat('e', 2001), 'outcome', 'error', 'duration_ms', 1)),
  ('request id too long', jsonb_build_object('interaction_type', 'error', 'request_id', repeat('r', 201), 'outcome', 'error', 'duration_ms', 1)),
  ('negative duration', '{"interaction_type": "error", "outcome": "error", "duration_ms": -1}'),
  ('duration too long', '{"interaction_type": "error", "outcome": "error", "duration_ms": 86400001}'),
  ('fractional duration', '{"interaction_type": "error", "outcome": "error", "duration_ms": 1.5}'),
  ('duration 5.0', '{"interaction_type": "error", "outcome": "error", "duration_ms": 5.0}'),
  ('duration as text', '{"interaction_type": "error", "outcome": "error", "duration_ms": "5"}');

select is_empty($$select label from cases
                   where private.json_schema_flat_valid(private.interaction_schema(), jsonb_build_array(value))
                         is distinct from (private.json_schema_error(private.interaction_schema(), value) is null)$$,
                'the fast path accepts exactly what the walk accepts, case by case');
select ok(not private.json_schema_flat_valid(private.interaction_schema(),
                (select jsonb_agg(value order by label = 'negative duration') from cases where label in ('complete', 'minimal', 'negative duration'))),
          'one bad interaction makes the batch not certainly valid');
select ok(private.json_schema_flat_valid(private.interaction_schema(),
            (select jsonb_agg(value) from cases where label in ('complete', 'minimal', 'largest duration', 'arguments of any type'))),
          'a batch of valid interactions is valid in one statement');
select ok(not private.json_schema_flat_valid('{"type": "object", "properties": {"env": {"type": "object", "properties": {}}}}', '[{"env": {}}]'),
          'a schema with nested structure is never certain (the walk decides)');
select ok(not private.json_schema_flat_valid('{"type": "object", "additionalProperties": {"type": "string"}}', '[{"a": "b"}]'),
          'nor one whose additional properties have a schema');

-- The messages of bad input are the walk's.
select jsonb_agg(value) as valid_batch from cases where label in ('minimal', 'largest duration', 'arguments of any type') \gset
select tests.create_user('ada@schema.test') as ada \gset
select tests.authenticate_as(:'ada');
select public.create_organization('Schema', 'schema') as org \gset
insert into public.agents (organization_id, user_id, name) values (:'org', :'ada', 'Ada''s bot') returning id as bot \gset
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "error", "outcome": "error", "duration_ms": 1},
                                                                       {"interaction_type": "error", "outcome": "great", "duration_ms": 1}]')$$, :'bot'),
                 '22023', 'invalid interaction: p_interactions[1].outcome must be one of ["success", "error", "denied", "timeout"]',
                 'the second of two interactions names its bad outcome');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '[{"interaction_type": "error", "outcome": "error", "duration_ms": 1.5}]')$$, :'bot'),
                 '22023', 'invalid interaction: p_interactions[0].duration_ms must be integer, not number', 'a fractional duration');
select throws_ok(format($$select public.audit_mcp_interactions(%L, '["tool_call"]')$$, :'bot'),
                 '22023', 'invalid interaction: p_interactions[0] must be object, not string', 'an interaction that is not an object');
select is(public.audit_mcp_interactions(:'bot', :'valid_batch'),
          3, 'a valid batch is logged');

select * from finish();
rollback;
