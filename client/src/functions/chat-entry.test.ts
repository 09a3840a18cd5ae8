/**
 * supabase/functions/chat under real Deno, as deployed, over the real stack: the database
 * (through supabase-js and the PostgREST stand-in), the agent MCP gateway (in this process, as
 * the platform, verifying user JWTs with the project's secret), real MCP servers from npm
 * deployed through the control plane onto the local DTMA, and a second DTMA (in this process,
 * with the fault driver) for a server that hangs. The chat function gets MCP_GATEWAY_URL and no
 * toolbox token: it presents the caller's JWT to the gateway. Only the model is scripted
 * (test/support/scripted-model.ts): it asks for tool calls, then answers; what it was shown is
 * recorded.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFaultDriver, type FaultDriver } from '../../../standins/dtma/fault-driver.ts';
import { createProcessDriver } from '../../../standins/dtma/process-driver.ts';
import { createDtmaServer, type DtmaServer } from '../../../standins/dtma/server.ts';
import type { ServedHandler } from '../manager/serve.ts';
import { serveFetch, type Served } from '../node-serve.ts';
import { SERVICE_ROLE_OPTIONS, createGateway, sqlGatewayStore, type Gateway } from '../gateway/index.ts';
import { databaseUrl } from '../../../test/support/db.ts';
import { startEdgeFunction, supabaseEnv, type EdgeFunction } from '../../../test/support/edge-function.ts';
import { servePostgrest } from '../../../test/support/postgrest.ts';
import { parseSse, startScriptedModel, type ModelRequest, type ScriptedModel } from '../../../test/support/scripted-model.ts';
import { JWT_SECRET, createAgent, createOrganization, createUser, deployServer, dtma, registerToolbox, removeServers, testPool, userJwt, type Organization } from '../../../test/support/stack.ts';

let pool: pg.Pool;
let servicePool: pg.Pool;
let gateway: Gateway;
let gatewayServed: Served;
let postgrest: ServedHandler;
let model: ScriptedModel;
let entry: EdgeFunction;
let org: Organization;
let ownerJwt: string;
let strangerJwt: string;
let agentId: string;
let faults: FaultDriver;
let faultDtma: DtmaServer;
const servers = { everything: '', memory: '', hanging: '' };
const scratch = mkdtempSync(path.join(os.tmpdir(), 'chat-entry-'));

interface Event {
  event: string;
  data: Record<string, unknown>;
}

async function chat(jwt: string | null, body: unknown): Promise<{ status: number; contentType: string; events: Event[]; json: Record<string, unknown> | null }> {
  const response = await fetch(`${entry.url}/functions/v1/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(jwt ? { authorization: `Bearer ${jwt}` } : {}) },
    body: JSON.stringify(body),
  });
  const contentType = response.headers.get('content-type') ?? '';
  const text = await response.text();
  if (!contentType.startsWith('text/event-stream')) return { status: response.status, contentType, events: [], json: JSON.parse(text) };
  return { status: response.status, contentType, events: parseSse(text) as Event[], json: null };
}

/** The model is shown tools highest priority first: the n-th tool of that name (-1: the last). */
function toolNamed(request: ModelRequest, tool: string, nth = 0): string {
  const names = (request.tools ?? []).map((t) => t.function.name).filter((name) => name.endsWith(`__${tool}`));
  return names.at(nth) ?? `missing__${tool}`;
}

/** The gateway's interaction log for this agent, written now, after the row id `after`. */
async function toolCallsAfter(after: number): Promise<{ outcome: string; tool_name: string }[]> {
  await gateway.flushLog();
  const { rows } = await pool.query(
    `select outcome::text, tool_name from public.mcp_interaction_logs where agent_id = $1 and interaction_type = 'tool_call' and id > $2 order by id`,
    [agentId, after],
  );
  return rows;
}

async function lastLogId(): Promise<number> {
  await gateway.flushLog();
  const { rows } = await pool.query('select coalesce(max(id), 0)::bigint as id from public.mcp_interaction_logs');
  return Number(rows[0]?.id);
}

const ask = (content: string) => ({ agent_id: agentId, organization_id: org.organizationId, messages: [{ role: 'user', content }] });

beforeAll(async () => {
  pool = testPool();
  servicePool = new pg.Pool({ connectionString: databaseUrl(), max: 10, options: SERVICE_ROLE_OPTIONS });
  postgrest = await servePostgrest(pool, JWT_SECRET);
  gateway = createGateway({ store: sqlGatewayStore(servicePool), jwtKeys: JWT_SECRET });
  gatewayServed = await serveFetch((req) => gateway.handle(req));
  model = await startScriptedModel(() => ({ text: 'nothing scripted' }), { apiKey: 'test-model-key' });
  org = await createOrganization(pool);
  ownerJwt = await userJwt(org.ownerId);
  strangerJwt = await userJwt(await createUser(pool, 'stranger'));
  agentId = await createAgent(pool, org.organizationId, org.ownerId, 'chat agent');
  const { token } = dtma();
  faults = createFaultDriver(createProcessDriver({ startTimeoutMs: 20_000 }));
  faultDtma = createDtmaServer({ token, driver: faults, port: 0 });
  // The platform registers the toolbox (registration is platform-only).
  const faultToolbox = await registerToolbox(pool, org.organizationId, 'faulty-toolbox', { url: await faultDtma.listen(), token });
  [servers.everything, servers.memory, servers.hanging] = await Promise.all([
    deployServer(pool, org, { catalog: 'everything', priority: 300 }),
    deployServer(pool, org, { catalog: 'memory', priority: 200, configuration: { env: { MEMORY_FILE_PATH: path.join(scratch, 'memory.jsonl') } } }),
    deployServer(pool, org, { catalog: 'memory', priority: 100, toolboxId: faultToolbox, configuration: { env: { MEMORY_FILE_PATH: path.join(scratch, 'hanging.jsonl') } } }),
  ]);
  await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers.everything, p_permission_scope: 'full_access' });
  await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers.memory, p_permission_scope: 'read_only' });
  await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers.hanging, p_permission_scope: 'read_only' });
  entry = await startEdgeFunction('chat', {
    ...(await supabaseEnv(postgrest.url, JWT_SECRET)),
    OPENAI_BASE_URL: model.baseUrl,
    OPENAI_MODEL: 'scripted-model',
    OPENAI_API_KEY: 'test-model-key',
    MCP_GATEWAY_URL: gatewayServed.url,
    // Generous for gathering the context on a loaded machine; a hung tool call still ends in 4 s.
    CHAT_SERVER_TIMEOUT_MS: '15000',
    CHAT_TOOL_TIMEOUT_MS: '4000',
  });
}, 120_000);

afterAll(async () => {
  faults?.setFault(null);
  await entry?.stop();
  await gateway?.close();
  await gatewayServed?.close();
  if (org) await removeServers(pool, org, Object.values(servers).filter(Boolean));
  await faultDtma?.close();
  await model?.close();
  await postgrest?.close();
  await servicePool?.end();
  await pool?.end();
});

describe('chat entry under Deno', () => {
  it('completes a conversation with two tool calls through the scripted model, streamed', async () => {
    const first = model.requests.length;
    const logged = await lastLogId();
    model.setScript((request, index) => {
      const round = index - first;
      if (round === 0) return { toolCalls: [{ name: toolNamed(request, 'echo'), arguments: { message: 'hello from the chat' } }] };
      // The memory server (priority 200) comes before the hanging one (100).
      if (round === 1) return { toolCalls: [{ name: toolNamed(request, 'read_graph'), arguments: {} }] };
      return { text: 'The echo answered and the graph is empty.' };
    });
    const reply = await chat(ownerJwt, ask('Echo something, then read the graph.'));
    expect(reply.status).toBe(200);
    expect(reply.contentType).toMatch(/^text\/event-stream/);
    const names = reply.events.map((e) => e.event);
    const context = reply.events[0];
    expect(context?.event).toBe('context');
    expect((context?.data.servers as { status: string }[]).map((s) => s.status)).toEqual(['ok', 'ok', 'ok']);
    expect(names.filter((n) => n === 'tool_call')).toHaveLength(2);
    const results = reply.events.filter((e) => e.event === 'tool_result').map((e) => e.data);
    expect(results).toEqual([
      expect.objectContaining({ outcome: 'success', server_id: servers.everything, tool: 'echo', content: expect.stringContaining('hello from the chat') }),
      expect.objectContaining({ outcome: 'success', server_id: servers.memory, tool: 'read_graph', content: expect.stringContaining('entities') }),
    ]);
    // The answer arrives in pieces (delta events), then done with the whole of it.
    const deltas = reply.events.filter((e) => e.event === 'delta').map((e) => String(e.data.content));
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe('The echo answered and the graph is empty.');
    expect(reply.events.at(-1)).toEqual({ event: 'done', data: { content: 'The echo answered and the graph is empty.', rounds: 3, request_id: context?.data.request_id } });

    // The model was shown the allowed tools only (read_only memory: no create_entities) and the tool answers.
    const shown = model.requests[first]?.tools?.map((t) => t.function.name) ?? [];
    expect(shown.some((n) => n.endsWith('__echo'))).toBe(true);
    expect(shown.some((n) => n.endsWith('__create_entities'))).toBe(false);
    expect(model.requests[first + 1]?.messages.at(-1)).toMatchObject({ role: 'tool', content: expect.stringContaining('hello from the chat') });
    // Both calls went through the gateway, which decided and recorded them.
    expect(await toolCallsAfter(logged)).toEqual([
      { outcome: 'success', tool_name: 'echo' },
      { outcome: 'success', tool_name: 'read_graph' },
    ]);
  });

  it('makes the next call a refusal the model sees when the grant is revoked mid-conversation', async () => {
    const first = model.requests.length;
    const logged = await lastLogId();
    model.setScript(async (request, index) => {
      const echo = toolNamed(request, 'echo');
      const round = index - first;
      if (round === 0) return { toolCalls: [{ name: echo, arguments: { message: 'first' } }] };
      if (round === 1) {
        // Between the model's two calls, the owner revokes the agent's grant on the server.
        await org.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers.everything });
        return { toolCalls: [{ name: echo, arguments: { message: 'second' } }] };
      }
      return { text: 'I was refused the second echo.' };
    });
    const reply = await chat(ownerJwt, ask('Echo twice.'));
    expect(reply.status).toBe(200);
    const results = reply.events.filter((e) => e.event === 'tool_result').map((e) => e.data);
    expect(results.map((r) => r.outcome)).toEqual(['success', 'denied']);
    const refusal = model.requests[first + 2]?.messages.at(-1);
    expect(refusal).toMatchObject({ role: 'tool', content: expect.stringMatching(/^refused: access control denied echo/) });
    expect(reply.events.at(-1)).toMatchObject({ event: 'done', data: { content: 'I was refused the second echo.' } });
    expect((await toolCallsAfter(logged)).map((r) => r.outcome)).toEqual(['success', 'denied']);
    await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers.everything, p_permission_scope: 'full_access' });
  });

  it('does not fail the chat when a server hangs: the model reads the timeout and answers', async () => {
    const first = model.requests.length;
    model.setScript((request, index) => {
      const round = index - first;
      if (round === 0) {
        // The server answered while the context was gathered; now it hangs.
        faults.setFault({ hang: true, routes: ['/mcp/servers'] });
        return { toolCalls: [{ name: toolNamed(request, 'read_graph', -1), arguments: {} }] };
      }
      return { text: 'That server did not answer.' };
    });
    try {
      const started = Date.now();
      const reply = await chat(ownerJwt, ask('Read the graph of the slow server.'));
      expect(reply.status).toBe(200);
      const result = reply.events.find((e) => e.event === 'tool_result')?.data;
      expect(result).toMatchObject({ server_id: servers.hanging, outcome: 'error', content: expect.stringContaining('failed') });
      expect(reply.events.at(-1)).toMatchObject({ event: 'done', data: { content: 'That server did not answer.' } });
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      faults.setFault(null);
    }
  });

  it('refuses before streaming: no token 401, a stranger 403, a bad body 422', async () => {
    expect((await chat(null, ask('hi'))).status).toBe(401);
    const stranger = await chat(strangerJwt, ask('hi'));
    expect(stranger.status).toBe(403);
    expect(stranger.json).toMatchObject({ error: { code: '42501' } });
    expect((await chat(ownerJwt, { agent_id: agentId, messages: [] })).status).toBe(422);
  });

  it('reports a model that fails as an error event, logged with the request id', async () => {
    await model.close();
    const reply = await chat(ownerJwt, ask('hi'));
    expect(reply.status).toBe(200);
    expect(reply.events.at(-1)).toMatchObject({ event: 'error', data: { code: 'SDK_UPSTREAM', message: expect.stringContaining('model: unreachable') } });
    const { rows } = await pool.query(`select interaction_type::text, outcome::text from public.mcp_interaction_logs where request_id = $1 and interaction_type = 'error'`, [
      reply.events[0]?.data.request_id,
    ]);
    expect(rows).toEqual([{ interaction_type: 'error', outcome: 'error' }]);
  });
});
