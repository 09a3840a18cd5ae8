-- An API key for the demo agent (README, first tour: the MCP Inspector through the gateway).
-- Applied by scripts/start.sh when .local/demo-agent-key is missing or no longer valid; prints
-- the key (shown once: the database keeps its hash).
begin;
select set_config('request.jwt.claims', json_build_object('sub', id, 'role', 'authenticated')::text, true) is not null as acting
  from auth.users where email = 'demo@example.com' \gset
set local role authenticated;
select k.api_key
  from public.agents a
 cross join lateral public.create_agent_api_key(a.id, 'demo (npm start)') k
 where a.name = 'demo-agent';
commit;
