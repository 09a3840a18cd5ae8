/**
 * The chat integration through the agent MCP gateway, on the real stack: one session per agent,
 * the same McpContext as the direct path, the gateway's decisions surfacing as the SDK's typed
 * errors, with the user's JWT or the agent's API key and no toolbox token.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveFetch, type Served } from '../node-serve.ts';
import { databaseUrl } from '../../../test/support/db.ts';
import { NotAllowedError, NotFoundError } from '../errors.ts';
import { SERVICE_ROLE_OPTIONS, createAgentApiKey, createGateway, sqlGatewayStore, type Gateway } from '../gateway/index.ts';
import { ownDtma } from '../../../test/support/gateway-dtma.ts';
import { JWT_SECRET, createAgent, createOrganization, deployServer, removeServers, testPool, userJwt, type Organization } from '../../../test/support/stack.ts';
import { gatewaySessionFetch } from './gateway-fetch.ts';
import { createMcpChat } from './index.ts';
import { closeMCPContext, sessionsOf } from './registry.ts';

let pool: pg.Pool;
let servicePool: pg.Pool;
let own: Awaited<ReturnType<typeof ownDtma>>;
let org: Organization;
let memory: string;
let gateway: Gateway;
let served: Served;

beforeAll(async () => {
  pool = testPool();
  servicePool = new pg.Pool({ connectionString: databaseUrl(), max: 10, options: SERVICE_ROLE_OPTIONS });
  own = await ownDtma();
  org = await createOrganization(pool, own);
  memory = await deployServer(pool, org, { catalog: 'memory' });
  gateway = createGateway({ store: sqlGatewayStore(servicePool), jwtKeys: JWT_SECRET });
  served = await serveFetch((req) => gateway.handle(req));
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await served?.close();
  await removeServers(pool, org, [memory].filter(Boolean));
  await own?.close();
  await servicePool?.end();
  await pool?.end();
}, 60_000);

describe('createMcpChat with a gateway', () => {
  it('gathers the agent’s context in one session, calls through it, and surfaces a revoke as NotAllowedError', async () => {
    const agentId = await createAgent(pool, org.organizationId, org.ownerId, 'chat-agent');
    await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory, p_permission_scope: 'read_only' });
    const chat = createMcpChat({ transport: org.ownerTransport, gateway: { url: served.url, credential: await userJwt(org.ownerId) } });
    const context = await chat.prepareMCPContextWithAccessControl({ agentId });
    expect(context.servers.map((s) => [s.serverId, s.status])).toEqual([[memory, 'ok']]);
    expect(context.servers[0]?.tools.map((t) => t.name).sort()).toEqual(['open_nodes', 'read_graph', 'search_nodes']);
    expect(context.tools.every((t) => t.qualifiedName.endsWith(`__${t.tool.name}`))).toBe(true);
    expect([...sessionsOf(context).keys()]).toEqual(['gateway']);
    const result = await chat.callTool(context, memory, 'read_graph', {});
    expect(JSON.stringify(result.content)).toContain('entities');
    await expect(chat.callTool(context, memory, 'create_entities', { entities: [] })).rejects.toBeInstanceOf(NotFoundError);
    await org.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory });
    await expect(chat.callTool(context, memory, 'read_graph', {})).rejects.toBeInstanceOf(NotAllowedError);
    await closeMCPContext(context);
    expect(gateway.sessionCount()).toBe(0);
  });

  it('sends nothing more once the caller’s signal ends after the context is gathered', async () => {
    const agentId = await createAgent(pool, org.organizationId, org.ownerId, 'chat-agent-signal');
    await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory, p_permission_scope: 'read_only' });
    const sent: string[] = [];
    const counting: typeof fetch = async (input, init) => {
      const body = typeof init?.body === 'string' ? (JSON.parse(init.body) as { method?: string }) : undefined;
      sent.push(`${init?.method ?? 'GET'} ${body?.method ?? ''}`.trim());
      return fetch(input, init);
    };
    const chat = createMcpChat({ transport: org.ownerTransport, gateway: { url: served.url, credential: await userJwt(org.ownerId) }, fetch: counting });
    // As the chat function's request signal does when its response ends.
    const request = new AbortController();
    const context = await chat.prepareMCPContextWithAccessControl({ agentId, signal: request.signal });
    request.abort();
    expect(JSON.stringify((await chat.callTool(context, memory, 'read_graph', {})).content)).toContain('entities');
    await closeMCPContext(context);
    expect(sent.filter((s) => s.includes('notifications/cancelled'))).toEqual([]);
    // No standalone GET stream: the chat needs no message outside its requests (gateway-fetch.ts).
    expect(sent.filter((s) => s.startsWith('GET'))).toEqual([]);
    expect(sent.filter((s) => s.startsWith('POST')).sort()).toEqual(
      ['POST initialize', 'POST notifications/initialized', 'POST prompts/list', 'POST resources/list', 'POST tools/call', 'POST tools/list'],
    );
  });

  it('works with the agent’s API key as well', async () => {
    const agentId = await createAgent(pool, org.organizationId, org.ownerId, 'chat-agent-key');
    await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory, p_permission_scope: 'custom', p_allowed_tools: ['search_nodes'] });
    const { api_key } = await createAgentApiKey(org.ownerTransport, agentId, 'chat');
    const chat = createMcpChat({ transport: org.ownerTransport, gateway: { url: served.url, credential: api_key } });
    const context = await chat.prepareMCPContextWithAccessControl({ agentId });
    expect(context.tools.map((t) => t.tool.name)).toEqual(['search_nodes']);
    expect(JSON.stringify(await chat.callTool(context, memory, 'search_nodes', { query: 'x' }))).toContain('entities');
    await closeMCPContext(context);
  });

  it('answers the standalone GET itself, and hands each POST answer over as the gateway sent it: JSON for a bare response', async () => {
    const agentId = await createAgent(pool, org.organizationId, org.ownerId, 'chat-agent-fetch');
    const reached: { method: string; contentType: string }[] = [];
    const counting: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      reached.push({ method: init?.method ?? 'GET', contentType: response.headers.get('content-type') ?? '' });
      return response;
    };
    const sessionFetch = gatewaySessionFetch(counting);
    const url = `${served.url}/agents/${agentId}/mcp`;
    const headers = { authorization: `Bearer ${await userJwt(org.ownerId)}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'test', version: '1' } } };
    const answer = await sessionFetch(url, { method: 'POST', headers, body: JSON.stringify(initialize) });
    expect(reached).toEqual([{ method: 'POST', contentType: 'application/json' }]);
    expect(answer.headers.get('content-type')).toBe('application/json');
    const sessionId = answer.headers.get('mcp-session-id');
    expect(sessionId).toMatch(/\S/);
    expect(await answer.json()).toEqual(expect.objectContaining({ jsonrpc: '2.0', id: 1, result: expect.objectContaining({ serverInfo: expect.any(Object) }) }));
    const stream = await sessionFetch(url, { method: 'GET', headers: { ...headers, 'mcp-session-id': sessionId as string, accept: 'text/event-stream' } });
    expect(stream.status).toBe(405);
    expect(reached).toHaveLength(1);
    // A refusal is handed over as the gateway answered it.
    const refused = await sessionFetch(url, { method: 'POST', headers: { ...headers, authorization: 'Bearer not-a-jwt' }, body: JSON.stringify(initialize) });
    expect(refused.status).toBe(401);
    expect((await sessionFetch(url, { method: 'DELETE', headers: { ...headers, 'mcp-session-id': sessionId as string } })).ok).toBe(true);
  });
});
