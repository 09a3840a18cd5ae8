-- The demo a newcomer follows (README): a user, an organization, a toolbox on the local DTMA
-- (registered by the platform),
-- an MCP server instance of the catalog's `memory` server, and an agent. Applied by
-- scripts/start.sh with psql variables dtma_url and dtma_token; a second run changes nothing.
insert into auth.users (email, raw_app_meta_data)
select 'demo@example.com', '{"provider": "email"}'
 where not exists (select from auth.users where email = 'demo@example.com');

begin;
-- Act as the demo user, exactly as PostgREST does for a request with their JWT.
select set_config('request.jwt.claims',
         json_build_object('sub', id, 'role', 'authenticated', 'email', email)::text, true)
  from auth.users where email = 'demo@example.com';
select set_config('role', 'authenticated', true);

select public.create_organization('Demo', 'demo')
 where not exists (select from public.organizations where slug = 'demo');
-- The platform registers the organization's toolbox (the demo user could not): back to the
-- postgres session for that one statement.
select set_config('role', 'none', true), set_config('request.jwt.claims', '', true);
select public.create_toolbox(o.id, 'local', :'dtma_url', :'dtma_token')
  from public.organizations o
 where o.slug = 'demo' and not exists (select from public.account_tool_environments t where t.organization_id = o.id);
select set_config('request.jwt.claims',
         json_build_object('sub', id, 'role', 'authenticated', 'email', email)::text, true)
  from auth.users where email = 'demo@example.com';
select set_config('role', 'authenticated', true);
select public.manage_mcp_servers('create', o.id,
         jsonb_build_object('toolbox_id', t.id, 'catalog_name', 'memory', 'instance_name', 'demo-memory',
                            'display_name', 'Demo memory'))
  from public.organizations o join public.account_tool_environments t on t.organization_id = o.id
 where o.slug = 'demo'
   and not exists (select from public.account_tool_instances i where i.organization_id = o.id and i.status <> 'removed');
insert into public.agents (organization_id, user_id, name, description)
select o.id, auth.uid(), 'demo-agent', 'The demo''s agent'
  from public.organizations o
 where o.slug = 'demo' and not exists (select from public.agents a where a.organization_id = o.id);
commit;
