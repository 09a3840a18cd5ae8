/**
 * The agent MCP gateway against the real stack: the database, the pg_net worker, the local DTMA
 * running real MCP servers from npm (server-memory, server-everything), reached with the
 * official SDK's client, as an agent runtime would. Every decision is the database's; each
 * change (revoke, expiry, stop, member removal, key revoke, drift) holds on the next call.
 * This gateway has no change listener, so it asks the database on every call (the cache is
 * client/src/gateway/cache.test.ts's).
 *
 * Longer than 400 lines: every story shares two DTMAs and three deployed servers (deploying real
 * servers is the slow part), so they stay in one file.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { CallToolResultSchema, ResourceUpdatedNotificationSchema, type Tool } from '@modelcontextprotocol/sdk/types.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveFetch, type Served } from '../node-serve.ts';
import { databaseUrl } from '../../../test/support/db.ts';
import { directTransport } from '../direct-transport.ts';
import { signJwt } from '../jwt.ts';
import { createRpc } from '../rpc.ts';
import {
  JWT_SECRET,
  createAgent,
  createOrganization,
  createUser,
  deployServer,
  removeServers,
  testPool,
  userJwt,
  waitForStatus,
  type Organization,
} from '../../../test/support/stack.ts';
import { mcpClient, mcpRefusal, ownDtma } from '../../../test/support/gateway-dtma.ts';
import { GatewayErrorCode, SERVICE_ROLE_OPTIONS, createAgentApiKey, createGateway, gatewayStore, revokeAgentApiKey, sqlGatewayStore, type Gateway } from './index.ts';

let pool: pg.Pool;
let acme: Organization;
let globex: Organization;
let memory: string;
let everything: string;
let globexMemory: string;
let gateway: Gateway;
let served: Served;
let upstreamInitializes = 0;
let dtmas: Awaited<ReturnType<typeof ownDtma>>[] = [];
let servicePool: pg.Pool;

const connect = (credential: string | undefined, path = '/mcp', headers: Record<string, string> = {}): Promise<Client> =>
  mcpClient(`${served.url}${path}`, credential, headers);

async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((t: Tool) => t.name).sort();
}


async function interactions(agentId: string): Promise<{ tool_name: string; outcome: string; duration_ms: number; error_message: string | null }[]> {
  await gateway.flushLog();
  const { rows } = await pool.query('select tool_name, outcome::text, duration_ms, error_message from public.mcp_interaction_logs where agent_id = $1 order by id', [agentId]);
  return rows as never;
}

/** An agent of the organization's owner with one grant and an API key. */
async function agentWithKey(org: Organization, grants: [string, 'read_only' | 'full_access' | 'custom', string[]?, string?][]): Promise<{ agentId: string; key: string; keyId: string }> {
  const agentId = await createAgent(pool, org.organizationId, org.ownerId, `agent-${Math.random().toString(16).slice(2, 8)}`);
  for (const [server, scope, tools, expires] of grants) {
    await org.owner.grant_agent_mcp_access({
      p_agent_id: agentId,
      p_server_instance_id: server,
      p_permission_scope: scope,
      ...(tools ? { p_allowed_tools: tools } : {}),
      ...(expires ? { p_expires_at: expires } : {}),
    });
  }
  const created = await createAgentApiKey(org.ownerTransport, agentId, 'test');
  return { agentId, key: created.api_key, keyId: created.key_id };
}

beforeAll(async () => {
  pool = testPool();
  // Each toolbox on a DTMA of its own (test/support/gateway-dtma.ts).
  dtmas = await Promise.all([ownDtma(), ownDtma()]);
  acme = await createOrganization(pool, dtmas[0]);
  globex = await createOrganization(pool, dtmas[1]);
  [memory, everything, globexMemory] = await Promise.all([
    deployServer(pool, acme, { catalog: 'memory' }),
    deployServer(pool, acme, { catalog: 'everything' }),
    deployServer(pool, globex, { catalog: 'memory' }),
  ]);
  const { rows } = await pool.query('select instance_name_on_toolbox from public.account_tool_instances where id = $1', [memory]);
  memoryName = String(rows[0]?.instance_name_on_toolbox);
  servicePool = new pg.Pool({ connectionString: databaseUrl(), max: 20, options: SERVICE_ROLE_OPTIONS });
  gateway = createGateway({
    store: sqlGatewayStore(servicePool),
    jwtKeys: JWT_SECRET,
    logFlushMs: 50,
    // Counts the MCP sessions the gateway opens upstream.
    fetch: (input, init) => {
      if (typeof init?.body === 'string' && init.body.includes('"method":"initialize"')) upstreamInitializes++;
      return fetch(input, init);
    },
  });
  served = await serveFetch((req) => gateway.handle(req));
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await served?.close();
  await removeServers(pool, acme, [memory, everything].filter(Boolean));
  await removeServers(pool, globex, [globexMemory].filter(Boolean));
  await Promise.all(dtmas.map((d) => d.close()));
  await servicePool?.end();
  await pool?.end();
}, 60_000);

describe('who may call', () => {
  it('answers a request without credentials with 401, a resource_metadata challenge and a JSON-RPC error', async () => {
    const response = await fetch(`${served.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
    });
    expect(response.status).toBe(401);
    const challenge = response.headers.get('www-authenticate') ?? '';
    expect(challenge).toMatch(/^Bearer resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/);
    expect(await response.json()).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32001, message: expect.stringContaining('authentication required') } });
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(challenge)?.[1] as string;
    const metadata = await (await fetch(metadataUrl)).json();
    expect(metadata).toMatchObject({ resource: `${served.url}/mcp`, bearer_methods_supported: ['header'] });
  });

  it('refuses an unknown key and a forged JWT with 401 invalid_token; a user who may not act for the agent with 403', async () => {
    const { agentId } = await agentWithKey(acme, [[memory, 'read_only']]);
    for (const [token, path] of [
      ['mcpk_000000000000_notakeynotakeynotakeynotakeynotakeynotakeyxx', '/mcp'],
      [await signJwt({ sub: acme.ownerId, role: 'authenticated' }, 'a-foreign-secret-of-at-least-32-characters'), `/agents/${agentId}/mcp`],
    ] as const) {
      const response = await fetch(`${served.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toContain('error="invalid_token"');
    }
    const stranger = await createUser(pool, 'stranger');
    const response = await fetch(`${served.url}/agents/${agentId}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${await userJwt(stranger)}`, 'content-type': 'application/json' }, body: '{}' });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32003 } });
  });

  it('lets the agent’s owner act for it with her JWT', async () => {
    const { agentId } = await agentWithKey(acme, [[memory, 'read_only']]);
    const client = await connect(await userJwt(acme.ownerId), `/agents/${agentId}/mcp`);
    const m = slugOf(memoryName);
    expect(await toolNames(client)).toEqual([`${m}__open_nodes`, `${m}__read_graph`, `${m}__search_nodes`]);
    await client.close();
  });

  it('refuses a Host it does not serve and a foreign Origin with 403', async () => {
    const strict = createGateway({ store: gatewayStore(directTransport({ pool, claims: { role: 'service_role' } })), allowedHosts: ['gateway.test:1'] });
    const strictServed = await serveFetch((req) => strict.handle(req));
    try {
      const badHost = await fetch(`${strictServed.url}/mcp`, { method: 'POST', body: '{}' });
      expect(badHost.status).toBe(403);
      expect(await badHost.json()).toMatchObject({ error: { message: expect.stringContaining('host not allowed') } });
      const badOrigin = await fetch(`${served.url}/mcp`, { method: 'POST', headers: { origin: 'http://evil.test' }, body: '{}' });
      expect(badOrigin.status).toBe(403);
      expect(await badOrigin.json()).toMatchObject({ error: { message: 'origin not allowed: http://evil.test' } });
    } finally {
      await strict.close();
      await strictServed.close();
    }
  });
});

let memoryName = '';
const slugOf = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');

describe('what the agent sees', () => {
  it('read_only, custom and full_access see exactly their tools, namespaced by server', async () => {
    const { rows } = await pool.query<{ id: string; name: string }>('select id, instance_name_on_toolbox as name from public.account_tool_instances where id = any($1)', [[memory, everything]]);
    const ns = new Map(rows.map((r) => [r.id, slugOf(r.name)]));
    const readOnly = await agentWithKey(acme, [[memory, 'read_only']]);
    const custom = await agentWithKey(acme, [[memory, 'custom', ['create_entities', 'read_graph']], [everything, 'custom', ['echo']]]);
    const full = await agentWithKey(acme, [[memory, 'full_access']]);
    const names = async (key: string): Promise<string[]> => {
      const client = await connect(key);
      try {
        return await toolNames(client);
      } finally {
        await client.close();
      }
    };
    const m = ns.get(memory) as string;
    const e = ns.get(everything) as string;
    expect(await names(readOnly.key)).toEqual([`${m}__open_nodes`, `${m}__read_graph`, `${m}__search_nodes`]);
    expect(await names(custom.key)).toEqual([`${e}__echo`, `${m}__create_entities`, `${m}__read_graph`].sort());
    expect(await names(full.key)).toEqual(
      ['add_observations', 'create_entities', 'create_relations', 'delete_entities', 'delete_observations', 'delete_relations', 'open_nodes', 'read_graph', 'search_nodes'].map((t) => `${m}__${t}`),
    );
  });

  it('filters every server’s tools in one call, the same through PostgREST’s RPC and the direct pool', async () => {
    const { agentId } = await agentWithKey(acme, [[memory, 'read_only'], [everything, 'custom', ['echo']]]);
    const { rows } = await pool.query<{ id: string; tools: Tool[] }>(
      `select i.id, (select jsonb_agg(t - 'sha256') from jsonb_array_elements(i.pinned_manifest) t) as tools
         from public.account_tool_instances i where i.id = any($1) order by i.id`,
      [[memory, everything]],
    );
    const servers = rows.map((r) => ({ serverId: r.id, tools: r.id === everything ? [...r.tools, { name: 'exfiltrate', inputSchema: { type: 'object' as const } }] : r.tools }));
    const viaRpc = await gatewayStore(directTransport({ pool, claims: { role: 'service_role' } })).filterTools(agentId, servers);
    const viaPool = await sqlGatewayStore(servicePool).filterTools(agentId, servers);
    expect(viaPool).toEqual(viaRpc);
    expect(viaRpc.length).toBe(servers.reduce((n, s) => n + s.tools.length, 0));
    expect(viaRpc.filter((d) => d.allowed).map((d) => [d.server_instance_id, d.tool_name]).sort()).toEqual(
      [[everything, 'echo'], [memory, 'open_nodes'], [memory, 'read_graph'], [memory, 'search_nodes']].sort(),
    );
    expect(viaRpc.find((d) => d.tool_name === 'exfiltrate')).toEqual({ server_instance_id: everything, tool_name: 'exfiltrate', allowed: false, reason: 'not_in_pinned_manifest' });
    expect(await sqlGatewayStore(servicePool).filterTools(agentId, [])).toEqual([]);
  });

  it('calls an allowed tool, refuses another with the database’s reason, and logs both with outcome and duration', async () => {
    const { agentId, key } = await agentWithKey(acme, [[memory, 'read_only']]);
    const client = await connect(key);
    const m = slugOf(memoryName);
    const result = CallToolResultSchema.parse(await client.callTool({ name: `${m}__read_graph`, arguments: {} }));
    expect(result.isError).not.toBe(true);
    expect(JSON.stringify(result.content)).toContain('entities');
    const denied = await mcpRefusal(client.callTool({ name: `${m}__create_entities`, arguments: { entities: [] } }));
    expect(denied.code).toBe(GatewayErrorCode.denied);
    expect(denied.message).toBe(`MCP error -32003: ${m}__create_entities denied by the control plane: not_read_only`);
    expect(await interactions(agentId)).toEqual([
      { tool_name: 'read_graph', outcome: 'success', duration_ms: expect.any(Number), error_message: null },
      { tool_name: 'create_entities', outcome: 'denied', duration_ms: 0, error_message: 'denied: not_read_only' },
    ]);
    await client.close();
  });

  it('hides a drifted tool and records the drift from what it read upstream', async () => {
    const { agentId, key } = await agentWithKey(globex, [[globexMemory, 'read_only']]);
    // The pinned definition of read_graph no longer matches what the server presents: an older
    // description is pinned, with its hash (as approval would have pinned it).
    const { rows: pins } = await pool.query<{ sha256: string }>(
      `update public.account_tool_instances set pinned_manifest = (select jsonb_agg(case when t ->> 'name' = 'read_graph' then private.tool_pin(t || '{"description": "Read the graph (approved in 2025)"}') else t end) from jsonb_array_elements(pinned_manifest) t) where id = $1
       returning (select t ->> 'sha256' from jsonb_array_elements(pinned_manifest) t where t ->> 'name' = 'read_graph') as sha256`,
      [globexMemory],
    );
    const client = await connect(key);
    const names = await toolNames(client);
    expect(names.some((n) => n.endsWith('__read_graph'))).toBe(false);
    expect(names.some((n) => n.endsWith('__search_nodes'))).toBe(true);
    const { rows } = await pool.query('select tool_name, pinned_sha256 from public.mcp_tool_drift where server_instance_id = $1', [globexMemory]);
    expect(rows).toEqual([{ tool_name: 'read_graph', pinned_sha256: pins[0]?.sha256 }]);
    const prefix = names[0]?.split('__')[0];
    const denied = await mcpRefusal(client.callTool({ name: `${prefix}__read_graph`, arguments: {} }));
    expect(denied.message).toContain('definition_changed');
    expect((await interactions(agentId)).at(-1)).toMatchObject({ outcome: 'denied' });
    await client.close();
  });

  it('relays errors once, without a prefix per hop: a tool’s error result and a JSON-RPC error', async () => {
    const { key } = await agentWithKey(acme, [[everything, 'full_access']]);
    const client = await connect(key);
    const name = (await toolNames(client)).find((n) => n.endsWith('__get-sum')) as string;
    const result = CallToolResultSchema.parse(await client.callTool({ name, arguments: { a: 'not a number' } }));
    expect(result.isError).toBe(true);
    const text = JSON.stringify(result.content);
    expect(text).toContain('Input validation error');
    expect(text.match(/MCP error -32602/g)).toHaveLength(1); // the server's own, as it wrote it
    // A JSON-RPC error from the upstream (an unknown resource), relayed with its code.
    const namespace = name.split('__')[0];
    const error = await mcpRefusal(client.readResource({ uri: `${namespace}__demo://no/such/resource` }));
    expect(error.code).toBe(-32602);
    expect(error.message).toBe('MCP error -32602: Resource demo://no/such/resource not found'); // the client's one prefix, none per hop
    await client.close();
  });
});

describe('each change holds on the next call', () => {
  it('a revoke, then a new grant', async () => {
    const { agentId, key } = await agentWithKey(acme, [[memory, 'read_only']]);
    const client = await connect(key);
    const name = `${slugOf(memoryName)}__read_graph`;
    await client.callTool({ name, arguments: {} });
    await acme.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory });
    expect((await mcpRefusal(client.callTool({ name, arguments: {} }))).message).toContain('no_live_grant');
    expect(await toolNames(client)).toEqual([]);
    await client.close();
  });

  it('an expiry, at its instant', async () => {
    const expiresAt = new Date(Date.now() + 2_000);
    const { key } = await agentWithKey(acme, [[memory, 'read_only', undefined, expiresAt.toISOString()]]);
    const client = await connect(key);
    const name = `${slugOf(memoryName)}__read_graph`;
    await client.callTool({ name, arguments: {} });
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt.getTime() - Date.now()) + 20));
    expect((await mcpRefusal(client.callTool({ name, arguments: {} }))).message).toContain('no_live_grant');
    await client.close();
  });

  it('a revoked key: the next request is refused with 401', async () => {
    const { key, keyId } = await agentWithKey(acme, [[memory, 'read_only']]);
    const client = await connect(key);
    await client.listTools();
    expect(await revokeAgentApiKey(acme.ownerTransport, keyId, 'leaked')).toBe(true);
    const error = await client.listTools().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(String(error?.message)).toMatch(/401|invalid API key|Unauthorized/i);
    await client.close().catch(() => undefined);
  });

  it('a removed member: her agent reaches nothing', async () => {
    const memberId = await createUser(pool, 'member');
    await acme.owner.add_organization_member({ p_organization_id: acme.organizationId, p_user_id: memberId, p_role: 'member' });
    const memberTransport = directTransport({ pool, jwt: await userJwt(memberId), jwtSecret: JWT_SECRET });
    const agentId = await createAgent(pool, acme.organizationId, memberId, 'member-agent');
    await createRpc(memberTransport).grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory, p_permission_scope: 'read_only' });
    const { api_key } = await createAgentApiKey(memberTransport, agentId, 'member key');
    const client = await connect(api_key);
    const name = `${slugOf(memoryName)}__read_graph`;
    await client.callTool({ name, arguments: {} });
    await acme.owner.remove_organization_member({ p_organization_id: acme.organizationId, p_user_id: memberId });
    expect((await mcpRefusal(client.callTool({ name, arguments: {} }))).message).toContain('no_live_grant');
    await client.close();
  });

  it('a stopped server, then deployed again', async () => {
    const server = await deployServer(pool, acme, { catalog: 'memory' });
    const { key } = await agentWithKey(acme, [[server, 'read_only']]);
    const client = await connect(key);
    const [name] = (await toolNames(client)).filter((n) => n.endsWith('__read_graph'));
    await client.callTool({ name: name as string, arguments: {} });
    await acme.owner.manage_mcp_servers({ action: 'stop', organization_id: acme.organizationId, server_id: server });
    const error = await mcpRefusal(client.callTool({ name: name as string, arguments: {} }));
    expect(error.message).toMatch(/unknown or not allowed|no_live_grant/);
    await waitForStatus(pool, server, 'stopped');
    await removeServers(pool, acme, [server]);
    await client.close();
  });
});

describe('isolation', () => {
  it('one agent never sees or calls another’s tools, across organizations, and cannot use another’s session', async () => {
    const a = await agentWithKey(acme, [[memory, 'read_only']]);
    const b = await agentWithKey(globex, [[globexMemory, 'full_access']]);
    const clientA = await connect(a.key);
    const clientB = await connect(b.key);
    const namesA = await toolNames(clientA);
    const namesB = await toolNames(clientB);
    expect(namesA.length).toBe(3);
    expect(namesB.length).toBeGreaterThan(3);
    expect(namesA.some((n) => namesB.includes(n))).toBe(false);
    // Agent A's key at agent B's endpoint: the key is not B's.
    const cross = await fetch(`${served.url}/agents/${b.agentId}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' }, body: '{}' });
    expect(cross.status).toBe(401);
    // B's session id with A's key: unknown to A.
    const sessionB = (clientB.transport as StreamableHTTPClientTransport).sessionId as string;
    const hijack = await fetch(`${served.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionB, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} }),
    });
    expect(hijack.status).toBe(404);
    // B's tool name through A's session: not A's.
    const foreign = namesB.find((n) => n.endsWith('__create_entities')) as string;
    expect((await mcpRefusal(clientA.callTool({ name: foreign, arguments: { entities: [] } }))).code).toBeLessThan(0);
    await clientA.close();
    await clientB.close();
  });
});

describe('relay', () => {
  it('relays the progress of a call under the token its client chose', async () => {
    const { key } = await agentWithKey(acme, [[everything, 'full_access']]);
    const client = await connect(key);
    const names = await toolNames(client);
    const long = names.find((n) => n.endsWith('__trigger-long-running-operation')) as string;
    const progress: number[] = [];
    await client.callTool({ name: long, arguments: { duration: 1, steps: 4 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
    // The local DTMA's relay loses the last of the server's 4 most of the time (standins/dtma).
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress).toEqual([...progress].sort((x, y) => x - y));
    await client.close();
  });

  it('answers a plain call as JSON, or as a stream begun before its result when the upstream’s stream holds the result back; one with progress streams', async () => {
    const { key } = await agentWithKey(acme, [[everything, 'full_access']]);
    const answered: string[] = [];
    const client = new Client({ name: 'content-types', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${served.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${key}` } },
        fetch: async (input, init) => {
          const response = await fetch(input, init);
          if (init?.method === 'POST' && typeof init.body === 'string' && init.body.includes('"tools/call"')) answered.push(String(response.headers.get('content-type')));
          return response;
        },
      }),
    );
    const names = await toolNames(client);
    const echo = names.find((n) => n.endsWith('__echo')) as string;
    expect(await client.callTool({ name: echo, arguments: { message: 'plain' } })).toMatchObject({ content: [{ type: 'text', text: expect.stringContaining('plain') }] });
    const progress: number[] = [];
    const long = names.find((n) => n.endsWith('__trigger-long-running-operation')) as string;
    await client.callTool({ name: long, arguments: { duration: 1, steps: 3 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
    expect(progress.length).toBeGreaterThanOrEqual(2);
    // Which of the two a plain call gets depends on when its result comes (the lane's rule, lane.test.ts proves each).
    expect(answered[0]).toMatch(/^(application\/json|text\/event-stream)$/);
    expect(answered[1]).toBe('text/event-stream');
    await client.close();
  });

  it('relays a resource subscription: the server’s updates reach the subscriber under the namespaced URI; a bare or unreadable URI is refused', async () => {
    const full = await agentWithKey(acme, [[everything, 'full_access']]);
    const custom = await agentWithKey(acme, [[everything, 'custom', ['echo']]]);
    const client = await connect(full.key);
    const updated: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updated.push(n.params.uri));
    const uri = (await client.listResources()).resources[0]?.uri as string;
    expect(await client.subscribeResource({ uri })).toEqual({});
    // server-everything sends an update for each subscribed URI once its updates are switched on.
    const toggle = (await toolNames(client)).find((n) => n.endsWith('__toggle-subscriber-updates')) as string;
    await client.callTool({ name: toggle, arguments: {} });
    for (let i = 0; i < 100 && !updated.includes(uri); i++) await new Promise((r) => setTimeout(r, 100));
    expect(updated).toContain(uri);
    expect(await client.unsubscribeResource({ uri })).toEqual({});
    await client.callTool({ name: toggle, arguments: {} });
    expect((await mcpRefusal(client.subscribeResource({ uri: uri.slice(uri.indexOf('__') + 2) }))).code).toBe(-32602);
    const reader = await connect(custom.key);
    expect((await mcpRefusal(reader.subscribeResource({ uri }))).code).toBe(GatewayErrorCode.denied);
    await Promise.all([client.close(), reader.close()]);
  });

  it('keeps one upstream session per server, shared by agents', async () => {
    const first = await agentWithKey(acme, [[memory, 'read_only']]);
    const second = await agentWithKey(acme, [[memory, 'read_only']]);
    const warm = await connect(first.key);
    await warm.callTool({ name: `${slugOf(memoryName)}__read_graph`, arguments: {} });
    const before = upstreamInitializes;
    const clients = await Promise.all([connect(first.key), connect(second.key), connect(second.key)]);
    await Promise.all(clients.map((c) => c.callTool({ name: `${slugOf(memoryName)}__read_graph`, arguments: {} })));
    expect(upstreamInitializes).toBe(before);
    expect(before).toBeGreaterThan(0);
    await Promise.all([warm, ...clients].map((c) => c.close()));
  });
});

describe('upstream', () => {
  it('a server whose tools the database cannot take (a NUL in a description) hides only its own tools from tools/list', async () => {
    const bad = await serveFetch(async (req) => {
      const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      const mcp = new McpServer({ name: 'nul', version: '1.0.0' });
      mcp.registerTool('read_graph', { description: 'reads\u0000the graph' }, async () => ({ content: [] }));
      await mcp.connect(transport);
      return transport.handleRequest(req);
    });
    const { rows } = await pool.query<{ id: string; endpoint_url: string; instance_name_on_toolbox: string }>(
      'select id, endpoint_url, instance_name_on_toolbox from public.account_tool_instances where id = any ($1::uuid[])',
      [[memory, everything]],
    );
    const original = rows.find((r) => r.id === memory)?.endpoint_url as string;
    const everythingNs = slugOf(rows.find((r) => r.id === everything)?.instance_name_on_toolbox as string);
    const fresh = createGateway({ store: sqlGatewayStore(servicePool) });
    const freshServed = await serveFetch((req) => fresh.handle(req));
    try {
      await pool.query('update public.account_tool_instances set endpoint_url = $2 where id = $1', [memory, `${bad.url}/mcp`]);
      const { key } = await agentWithKey(acme, [[memory, 'full_access'], [everything, 'read_only']]);
      const client = await mcpClient(`${freshServed.url}/mcp`, key);
      const names = await toolNames(client);
      expect(names.length).toBeGreaterThan(0);
      expect(names.every((n) => n.startsWith(`${everythingNs}__`))).toBe(true);
      await client.close();
    } finally {
      await pool.query('update public.account_tool_instances set endpoint_url = $2 where id = $1', [memory, original]);
      await fresh.close();
      await Promise.all([freshServed.close(), bad.close()]);
    }
  });

  it('never follows an upstream’s redirect to another origin: the call fails as unavailable, the redirect’s target is never reached', async () => {
    // A server where a redirect would lead (it counts what reaches it), and the registered
    // endpoint now answering 307 towards it. (The SDK's client transport follows same-origin
    // redirects only; this holds it to that, with the toolbox's token at stake.)
    let reached = 0;
    const target = await serveFetch(async () => {
      reached++;
      return new Response('{}', { status: 500 });
    });
    const redirector = await serveFetch(async () => new Response(null, { status: 307, headers: { location: `${target.url}/mcp` } }));
    const { rows } = await pool.query<{ endpoint_url: string }>('select endpoint_url from public.account_tool_instances where id = $1', [memory]);
    const original = rows[0]?.endpoint_url as string;
    const fresh = createGateway({ store: sqlGatewayStore(servicePool) });
    const freshServed = await serveFetch((req) => fresh.handle(req));
    try {
      await pool.query('update public.account_tool_instances set endpoint_url = $2 where id = $1', [memory, `${redirector.url}/mcp`]);
      const { key } = await agentWithKey(acme, [[memory, 'read_only']]);
      const client = await mcpClient(`${freshServed.url}/mcp`, key);
      const refused = await mcpRefusal(client.callTool({ name: `${slugOf(memoryName)}__read_graph`, arguments: {} }));
      expect(refused.code).toBe(GatewayErrorCode.unavailable);
      expect(reached).toBe(0);
      await client.close();
    } finally {
      await pool.query('update public.account_tool_instances set endpoint_url = $2 where id = $1', [memory, original]);
      await fresh.close();
      await Promise.all([freshServed.close(), redirector.close(), target.close()]);
    }
  });
});

describe('load', () => {
  it('100 agents at once, each listing and calling: nothing lost, nothing crossed', async () => {
    const { rows } = await pool.query<{ id: string; name: string }>('select id, instance_name_on_toolbox as name from public.account_tool_instances where id = any($1)', [[memory, everything]]);
    const ns = new Map(rows.map((r) => [r.id, slugOf(r.name)]));
    const m = ns.get(memory) as string;
    const e = ns.get(everything) as string;
    const agents = [];
    for (let i = 0; i < 100; i++) {
      agents.push({ i, ...(await agentWithKey(acme, i % 2 === 0 ? [[everything, 'custom', ['echo']], [memory, 'read_only']] : [[everything, 'custom', ['echo']]])) });
    }
    const results = await Promise.all(
      agents.map(async ({ i, agentId, key }) => {
        const client = await connect(key);
        try {
          const names = await toolNames(client);
          const echoed = CallToolResultSchema.parse(await client.callTool({ name: `${e}__echo`, arguments: { message: `agent ${agentId}` } }));
          return { i, agentId, names, echoed: JSON.stringify(echoed.content) };
        } finally {
          await client.close();
        }
      }),
    );
    for (const { i, agentId, names, echoed } of results) {
      expect(names).toEqual(i % 2 === 0 ? [`${e}__echo`, `${m}__open_nodes`, `${m}__read_graph`, `${m}__search_nodes`] : [`${e}__echo`]);
      expect(echoed).toContain(`agent ${agentId}`);
      expect(results.filter((r) => r.echoed.includes(agentId))).toHaveLength(1);
    }
    await gateway.flushLog();
    const { rows: logged } = await pool.query<{ agent_id: string; n: number }>(
      `select agent_id, count(*)::int as n from public.mcp_interaction_logs where agent_id = any($1) and tool_name = 'echo' and outcome = 'success' group by agent_id`,
      [agents.map((a) => a.agentId)],
    );
    expect(logged).toHaveLength(100);
    expect(logged.every((r) => r.n === 1)).toBe(true);
  }, 120_000);
});
