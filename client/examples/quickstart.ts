/**
 * Quickstart: the SDK against the local stack, as the demo user of `npm start`.
 *
 *   npm start
 *   npx tsx client/examples/quickstart.ts
 *
 * It deploys the demo's memory server through the control plane (the database asks the local
 * DTMA over pg_net), grants the demo agent read-only access, gathers the agent's MCP context
 * (only what the grant allows), calls a tool, and shows a refusal as a typed error.
 * Another stack: the same DB_PORT as `DB_PORT=... npm start`, or DATABASE_URL and DTMA_TOKEN (and
 * JWT_SECRET if you like).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { McpControlPlaneError, createMcpChat, createRpc, directTransport, signJwt } from '../src/index.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// The same defaults as the stack: DATABASE_URL, else DB_PORT (as `DB_PORT=... npm start`), else 54322.
const databaseUrl = process.env.DATABASE_URL ?? `postgresql://postgres:postgres@127.0.0.1:${process.env.DB_PORT ?? '54322'}/postgres?sslmode=disable`;
const dtmaToken = process.env.DTMA_TOKEN ?? readFileSync(path.join(process.env.MCP_LOCAL_DIR ?? path.join(root, '.local'), 'dtma-token'), 'utf8').trim();
// Locally there is no Supabase Auth: we sign the user's access token ourselves, with a secret
// the transport verifies it with. On Supabase, the session's token and the project's secret.
const jwtSecret = process.env.JWT_SECRET ?? 'super-secret-jwt-token-with-at-least-32-characters-long';

const pool = new pg.Pool({ connectionString: databaseUrl });
try {
  // 1. Who we are: the demo user (Supabase Auth would have signed them in).
  const demo = await pool.query<{ id: string; email: string }>("select id, email from auth.users where email = 'demo@example.com'");
  const user = demo.rows[0];
  if (!user) throw new Error('no demo user: run `npm start` first');
  const jwt = await signJwt({ sub: user.id, email: user.email, role: 'authenticated', aud: 'authenticated' }, jwtSecret);

  // 2. Every RPC as that user, exactly as PostgREST would run it (role and JWT claims).
  const transport = directTransport({ pool, jwt, jwtSecret });
  const rpc = createRpc(transport);

  // 3. Deploy the demo's memory server, and wait until DTMA runs it.
  const visible = async () => (await rpc.get_available_mcp_servers({ p_user_id: user.id })).find((s) => s.server_name === 'Demo memory');
  const server = await visible();
  if (!server) throw new Error('no demo server: run `npm start` first');
  if (server.status !== 'running') {
    await rpc.manage_mcp_servers({ action: 'deploy', organization_id: server.organization_id, server_id: server.server_instance_id });
    process.stdout.write('deploying the demo memory server ');
    for (let i = 0; (await visible())?.status !== 'running'; i++) {
      if (i > 100) throw new Error(`the server did not start: ${JSON.stringify(await visible())}`);
      process.stdout.write('.');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    console.log(' running');
  }

  // 4. The demo agent (an app reads it with supabase.from('agents')), granted read-only access.
  const agent = await pool.query<{ id: string }>("select id from public.agents where name = 'demo-agent' and organization_id = $1", [server.organization_id]);
  const agentId = agent.rows[0]?.id;
  if (!agentId) throw new Error('no demo agent: run `npm start` first');
  await rpc.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: server.server_instance_id, p_permission_scope: 'read_only' });

  // 5. The agent's MCP context: every server it may use, in parallel, filtered by the database.
  const chat = createMcpChat({ transport, endpointHeaders: () => ({ Authorization: `Bearer ${dtmaToken}` }) });
  const context = await chat.prepareMCPContextWithAccessControl({ agentId, organizationId: server.organization_id });
  for (const s of context.servers) {
    console.log(`${s.name}: ${s.status} in ${s.durationMs.toFixed(0)} ms, ${s.permissionScope}`);
    console.log(`  allowed: ${s.tools.map((t) => t.name).join(', ')}`);
    console.log(`  denied:  ${s.deniedTools.map((t) => `${t.name} (${t.reason})`).join(', ')}`);
  }

  // 6. A tool call: validated again by the database right before, then logged.
  const graph = await chat.callTool(context, server.server_instance_id, 'read_graph', {});
  console.log('read_graph ->', JSON.stringify(graph.content).slice(0, 200));

  // 7. A refusal is a typed error with the SQLSTATE, a hint and its HTTP status.
  try {
    await chat.callTool(context, server.server_instance_id, 'create_entities', { entities: [] });
  } catch (error) {
    if (!(error instanceof McpControlPlaneError)) throw error;
    console.log(`create_entities -> ${error.name} ${error.code} (HTTP ${error.status}): ${error.message}`);
  }
  await chat.closeMCPContext(context);
} finally {
  await pool.end();
}
