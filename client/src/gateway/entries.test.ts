/**
 * The gateway's two entries as processes, as they run in production: the Node entry
 * (scripts/gateway/main.ts, what npm start runs) reached by the official MCP Inspector CLI, and
 * the Supabase Edge Function entry (supabase/functions/mcp-gateway) under real Deno, both on the
 * real stack. Also what the interaction log holds when the gateway stops (SIGTERM: everything)
 * or dies (SIGKILL: the calls of the last unwritten batch are lost).
 */
import { startListening, stopStarted, type Started } from '../../../test/support/process.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrl } from '../../../test/support/db.ts';
import { createAgent, createOrganization, deployServer, removeServers, testPool, type Organization } from '../../../test/support/stack.ts';
import { createAgentApiKey } from './keys.ts';
import { slug } from './namespace.ts';
import { mcpClient, ownDtma } from '../../../test/support/gateway-dtma.ts';

const run = promisify(execFile);
let pool: pg.Pool;
let org: Organization;
let memory: string;
let agentId: string;
let apiKey: string;
let tool: string;
let own: Awaited<ReturnType<typeof ownDtma>>;

const nodeGateway = (env: Record<string, string> = {}): Promise<Started> =>
  // node itself (not npx, which does not pass signals on): the signal reaches the gateway.
  startListening(process.execPath, ['--import', 'tsx', 'scripts/gateway/main.ts'], { DATABASE_URL: databaseUrl(), GATEWAY_PORT: '0', ...env });

async function logged(): Promise<number> {
  const { rows } = await pool.query('select count(*)::int as n from public.mcp_interaction_logs where agent_id = $1', [agentId]);
  return Number(rows[0]?.n);
}

async function callOnce(url: string): Promise<unknown> {
  const client = await mcpClient(`${url}/mcp`, apiKey);
  try {
    return await client.callTool({ name: tool, arguments: {} });
  } finally {
    await client.close();
  }
}

beforeAll(async () => {
  pool = testPool();
  own = await ownDtma();
  org = await createOrganization(pool, own);
  memory = await deployServer(pool, org, { catalog: 'memory' });
  agentId = await createAgent(pool, org.organizationId, org.ownerId, 'entries-agent');
  await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory, p_permission_scope: 'read_only' });
  apiKey = (await createAgentApiKey(org.ownerTransport, agentId, 'entries')).api_key;
  const { rows } = await pool.query('select instance_name_on_toolbox as n from public.account_tool_instances where id = $1', [memory]);
  tool = `${slug(String(rows[0]?.n))}__read_graph`;
}, 90_000);

afterAll(async () => {
  await removeServers(pool, org, [memory].filter(Boolean));
  await own?.close();
  await pool?.end();
}, 60_000);

describe('the Node entry and the MCP Inspector CLI', () => {
  let gateway: Started | undefined;
  beforeAll(async () => {
    gateway = await nodeGateway();
  }, 90_000);
  afterAll(() => stopStarted(gateway));

  const inspector = (...args: string[]) =>
    run('npx', ['--no-install', 'mcp-inspector', '--cli', `${gateway?.url}/mcp`, '--transport', 'http', ...args], { timeout: 60_000 }).then(
      ({ stdout }) => ({ ok: true, stdout }),
      (error: { stdout?: string; stderr?: string }) => ({ ok: false, stdout: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
    );

  it('lists and calls tools with an agent key', async () => {
    const listed = await inspector('--header', `Authorization: Bearer ${apiKey}`, '--method', 'tools/list');
    expect(listed.ok).toBe(true);
    const names = (JSON.parse(listed.stdout) as { tools: { name: string }[] }).tools.map((t) => t.name).sort();
    expect(names).toEqual(['open_nodes', 'read_graph', 'search_nodes'].map((t) => tool.replace('read_graph', t)));
    const called = await inspector('--header', `Authorization: Bearer ${apiKey}`, '--method', 'tools/call', '--tool-name', tool);
    expect(called.ok).toBe(true);
    expect(JSON.parse(called.stdout)).toMatchObject({ content: [{ type: 'text', text: expect.stringContaining('entities') }] });
  }, 120_000);

  it('is refused without a key, and with a key for a tool the grant does not allow', async () => {
    const refused = await inspector('--method', 'tools/list');
    expect(refused.ok).toBe(false);
    expect(refused.stdout).toMatch(/auth_required|401/);
    const denied = await inspector('--header', `Authorization: Bearer ${apiKey}`, '--method', 'tools/call', '--tool-name', tool.replace('read_graph', 'create_entities'), '--tool-arg', 'entities=[]');
    expect(denied.ok).toBe(false);
    // The Inspector looks the tool up first: a tool the grant does not allow is not even listed.
    expect(denied.stdout).toContain('tool_not_found');
  }, 120_000);
});

describe('the interaction log when the gateway stops', () => {
  it('SIGTERM: every call is written before the process exits', async () => {
    const gateway = await nodeGateway({ GATEWAY_LOG_FLUSH_MS: '60000' });
    const before = await logged();
    await callOnce(gateway.url);
    expect(await logged()).toBe(before); // still in the batch
    await stopStarted(gateway, 'SIGTERM');
    expect(await logged()).toBe(before + 1);
  }, 90_000);

  it('SIGKILL: the calls of the unwritten batch are lost, the ones written before stay', async () => {
    const gateway = await nodeGateway({ GATEWAY_LOG_FLUSH_MS: '60000' });
    const before = await logged();
    await callOnce(gateway.url);
    await stopStarted(gateway, 'SIGKILL');
    expect(await logged()).toBe(before);
  }, 90_000);
});

describe('the Supabase Edge Function entry under Deno', () => {
  let gateway: Started | undefined;
  beforeAll(async () => {
    gateway = await startListening(
      'npx',
      ['--no-install', 'deno', 'run', '--allow-net', '--allow-env', '--allow-read', '--allow-sys', '--config', 'supabase/functions/deno.json', 'supabase/functions/mcp-gateway/index.ts'],
      { DATABASE_URL: databaseUrl(), PORT: '0', SUPABASE_DB_URL: '' },
    );
  }, 90_000);
  afterAll(() => stopStarted(gateway));

  it('serves the same requests: 401 without a key, the agent’s tools and a call with one', async () => {
    const refused = await fetch(`${gateway?.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toContain('resource_metadata=');
    const client = await mcpClient(`${gateway?.url}/mcp`, apiKey);
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(['open_nodes', 'read_graph', 'search_nodes'].map((t) => tool.replace('read_graph', t)));
    expect(JSON.stringify(await client.callTool({ name: tool, arguments: {} }))).toContain('entities');
    await client.close();
    expect(gateway?.output()).toContain('mcp-gateway (deno)');
  }, 60_000);
});
