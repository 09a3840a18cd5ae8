/**
 * The gateway's call lane (lane.ts) against the real stack, served as the Node entry serves it
 * (serveHttp1: raw sockets, light requests, plain and streamed answers): a plain tools/call is answered past the SDK's
 * protocol layer with what the SDK's path would answer; everything else is the SDK's.
 *
 * The upstream here is an MCP server of the test's own, built on the official SDK, with tools
 * that log, wait and break their output schema, which the servers from npm do not do on
 * demand; the database sees it as a deployed server-memory whose endpoint now leads to it,
 * with its tools pinned. The lane against the servers from npm is gateway.test.ts's: every
 * call there without progress takes it.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema, type Tool } from '@modelcontextprotocol/sdk/types.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrl } from '../../../test/support/db.ts';
import { mcpRefusal } from '../../../test/support/gateway-dtma.ts';
import { JWT_SECRET, createAgent, createOrganization, createUser, deployServer, removeServers, testPool, userJwt, type Organization } from '../../../test/support/stack.ts';
import { signJwt } from '../jwt.ts';
import { serveHttp1 } from '../http1-serve.ts';
import { serveFetch, type Served } from '../node-serve.ts';
import { socketPost } from '../socket-post.ts';
import { GatewayErrorCode, SERVICE_ROLE_OPTIONS, createAgentApiKey, createGateway, sqlGatewayStore, type Gateway } from './index.ts';

const TOOLS: Tool[] = [
  { name: 'echo', description: 'Echoes its text.', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
  { name: 'noisy', description: 'Logs at info, then answers.', inputSchema: { type: 'object', properties: {} } },
  { name: 'slow', description: 'Answers after 10 s, or never when cancelled.', inputSchema: { type: 'object', properties: {} } },
  { name: 'gated', description: 'Answers once the test lets it.', inputSchema: { type: 'object', properties: {} } },
  { name: 'lingering', description: 'Answered on a stream the server never closes (by the test server, not the SDK).', inputSchema: { type: 'object', properties: {} } },
  { name: 'malformed', description: 'Answered with an error that has no code (by the test server, not the SDK).', inputSchema: { type: 'object', properties: {} } },
  {
    name: 'misshapen',
    description: 'Promises a number, gives a string.',
    inputSchema: { type: 'object', properties: {} },
    outputSchema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] },
  },
];

/**
 * The upstream: one SDK Server per session; the ids of the calls it got, and of those it was
 * told were cancelled, and of the `lingering` calls whose stream the gateway closed; `open` lets
 * the calls of `gated` waiting answer.
 */
async function upstreamServer(): Promise<{ served: Served; called: string[]; cancelled: string[]; lingeringClosed: string[]; open(): void }> {
  const called: string[] = [];
  const cancelled: string[] = [];
  const lingeringClosed: string[] = [];
  let opened: () => void = () => undefined;
  let gate = new Promise<void>((resolve) => (opened = resolve));
  const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();
  const served = await serveFetch(async (req) => {
    // A call of `malformed` is answered here with what no SDK would send: an error without a code.
    const body = req.method === 'POST' ? await req.clone().text() : '';
    const id = (): string => (JSON.parse(body) as { id: string }).id;
    if (body.includes('"name":"malformed"')) return Response.json({ jsonrpc: '2.0', id: id(), error: { message: 'no code' } });
    // A call of `lingering` is answered on an SSE stream left open after its response, until the client closes it.
    if (body.includes('"name":"lingering"')) {
      const called = id();
      const event = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: called, result: { content: [{ type: 'text', text: 'still here' }] } })}\n\n`;
      const stream = new ReadableStream<Uint8Array>({
        start: (controller) => controller.enqueue(new TextEncoder().encode(event)),
        cancel: () => void lingeringClosed.push(called),
      });
      return new Response(stream, { headers: { 'content-type': 'text/event-stream' } });
    }
    const known = sessions.get(req.headers.get('mcp-session-id') ?? '');
    if (known) return known.handleRequest(req);
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => crypto.randomUUID(),
      onsessioninitialized: (id) => void sessions.set(id, transport),
      // As many servers from npm limit a body (express.json: 100 kB): a larger call is answered 413.
      maxRequestBodySize: 64 * 1024,
    });
    const server = new Server({ name: 'lane-upstream', version: '1.0.0' }, { capabilities: { tools: {}, logging: {} } });
    server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: TOOLS }));
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      called.push(String(extra.requestId));
      switch (request.params.name) {
        case 'echo':
          return { content: [{ type: 'text', text: String(request.params.arguments?.text) }] };
        case 'gated':
          await gate;
          return { content: [{ type: 'text', text: 'let through' }] };
        case 'noisy':
          await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data: 'working on it' } });
          return { content: [{ type: 'text', text: 'done' }] };
        case 'slow':
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 10_000);
            extra.signal.addEventListener('abort', () => {
              clearTimeout(timer);
              cancelled.push(String(extra.requestId));
              resolve();
            });
          });
          return { content: [{ type: 'text', text: 'late' }] };
        default:
          return { content: [], structuredContent: { n: 'not a number' } };
      }
    });
    await server.connect(transport);
    return transport.handleRequest(req);
  });
  return {
    served,
    called,
    cancelled,
    lingeringClosed,
    open() {
      opened();
      gate = new Promise<void>((resolve) => (opened = resolve));
    },
  };
}

let pool: pg.Pool;
let servicePool: pg.Pool;
let org: Organization;
let instance: string;
let originalEndpoint: string;
let upstream: Awaited<ReturnType<typeof upstreamServer>>;
let gateway: Gateway;
let served: Served;
let apiKey: string;
let agentId: string;

beforeAll(async () => {
  pool = testPool();
  org = await createOrganization(pool);
  instance = await deployServer(pool, org, { catalog: 'memory' });
  upstream = await upstreamServer();
  // The tools pinned as a client reads them from the upstream.
  const reader = new Client({ name: 'pin', version: '1.0.0' });
  await reader.connect(new StreamableHTTPClientTransport(new URL(`${upstream.served.url}/mcp`)));
  const { tools } = await reader.listTools();
  await reader.close();
  const { rows } = await pool.query<{ endpoint_url: string }>('select endpoint_url from public.account_tool_instances where id = $1', [instance]);
  originalEndpoint = String(rows[0]?.endpoint_url);
  await pool.query(
    `update public.account_tool_instances set endpoint_url = $2,
            pinned_manifest = (select jsonb_agg(private.tool_pin(t)) from jsonb_array_elements($3::jsonb) t)
      where id = $1`,
    [instance, `${upstream.served.url}/mcp`, JSON.stringify(tools)],
  );
  agentId = await createAgent(pool, org.organizationId, org.ownerId, 'lane-agent');
  await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: instance, p_permission_scope: 'full_access' });
  apiKey = (await createAgentApiKey(org.ownerTransport, agentId, 'lane')).api_key;
  servicePool = new pg.Pool({ connectionString: databaseUrl(), max: 10, options: SERVICE_ROLE_OPTIONS });
  // Posting upstream as the Node entry does (socket-post.ts); gateway.test.ts's gateway posts over fetch.
  gateway = createGateway({ store: sqlGatewayStore(servicePool), jwtKeys: JWT_SECRET, logFlushMs: 20, callTimeoutMs: 1_500, afterResponseMs: 300, post: socketPost() });
  served = await serveHttp1((req) => gateway.serve(req));
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await served?.close();
  if (originalEndpoint) await pool.query('update public.account_tool_instances set endpoint_url = $2 where id = $1', [instance, originalEndpoint]);
  await removeServers(pool, org, [instance].filter(Boolean));
  await upstream?.served.close();
  await servicePool?.end();
  await pool?.end();
}, 60_000);

/** A session opened with the SDK's client; raw requests on it with the headers the SDK sends. */
async function session(): Promise<{ client: Client; post(body: unknown, headers?: Record<string, string>, signal?: AbortSignal): Promise<Response>; names: Record<string, string> }> {
  const transport = new StreamableHTTPClientTransport(new URL(`${served.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${apiKey}` } } });
  const client = new Client({ name: 'lane-test', version: '1.0.0' });
  await client.connect(transport);
  const names = Object.fromEntries((await client.listTools()).tools.map((t) => [t.name.split('__')[1], t.name]));
  const post = (body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> =>
    fetch(`${served.url}/mcp`, {
      method: 'POST',
      ...(signal ? { signal } : {}),
      headers: {
        authorization: `Bearer ${apiKey}`,
        'mcp-session-id': String(transport.sessionId),
        'mcp-protocol-version': String(transport.protocolVersion),
        accept: 'application/json, text/event-stream',
        'content-type': 'application/json',
        ...headers,
      },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  return { client, post, names };
}

const call = (id: number | string, name: string, args: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args, ...extra },
});

/** The JSON-RPC messages of an answer, JSON or SSE. */
async function messages(response: Response): Promise<Record<string, unknown>[]> {
  const text = await response.text();
  if (!response.headers.get('content-type')?.includes('text/event-stream')) return [JSON.parse(text)];
  return text
    .split('\n')
    .filter((line) => line.startsWith('data: ') && line.length > 6)
    .map((line) => JSON.parse(line.slice(6)));
}

/** How many cancellations the upstream was told of, once more than `before` (or after 2.5 s). */
async function cancelledUpstream(before: number): Promise<number> {
  for (let i = 0; i < 50 && upstream.cancelled.length === before; i++) await new Promise((r) => setTimeout(r, 50));
  return upstream.cancelled.length;
}

async function lastLogged(): Promise<{ tool_name: string; outcome: string; error_message: string | null }> {
  await gateway.flushLog();
  const { rows } = await pool.query('select tool_name, outcome::text, error_message from public.mcp_interaction_logs where agent_id = $1 order by id desc limit 1', [agentId]);
  return rows[0] as never;
}

describe('the lane', () => {
  it('answers a plain call as JSON with what the SDK’s path answers (a call asking for progress takes that path)', async () => {
    const { client, post, names } = await session();
    const viaLane = await post(call(1, names.echo as string, { text: 'hi' }));
    expect(viaLane.status).toBe(200);
    expect(viaLane.headers.get('content-type')).toBe('application/json');
    const [answer] = await messages(viaLane);
    // The lane's upstream requests carry the gateway's own ids; the SDK's client numbers its own.
    expect(upstream.called.at(-1)).toMatch(/^gateway-\d+$/);
    const viaSdk = await client.callTool({ name: names.echo as string, arguments: { text: 'hi' } }, undefined, { onprogress: () => undefined });
    expect(upstream.called.at(-1)).toMatch(/^\d+$/);
    expect(answer).toEqual({ jsonrpc: '2.0', id: 1, result: viaSdk });
    const progressAsked = await post(call(2, names.echo as string, { text: 'hi' }, { _meta: { progressToken: 7 } }));
    expect(upstream.called.at(-1)).toMatch(/^\d+$/);
    expect(await messages(progressAsked)).toEqual([{ jsonrpc: '2.0', id: 2, result: viaSdk }]);
    expect(await lastLogged()).toMatchObject({ tool_name: 'echo', outcome: 'success' });
    await client.close();
  });

  it('turns the answer into SSE when the call logs before its response, at the level the session set', async () => {
    const { client, post, names } = await session();
    const noisy = await post(call(1, names.noisy as string));
    expect(noisy.headers.get('content-type')).toBe('text/event-stream');
    expect(await messages(noisy)).toEqual([
      { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'working on it' } },
      { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'done' }] } },
    ]);
    await client.setLoggingLevel('error');
    const quiet = await post(call(2, names.noisy as string));
    expect(quiet.headers.get('content-type')).toBe('application/json');
    expect(await messages(quiet)).toEqual([{ jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: 'done' }] } }]);
    await client.close();
  });

  it('streams the answer when the upstream’s streams and its response is still to come: the headers leave first, the response when it comes', async () => {
    const { client, post, names } = await session();
    const before = upstream.called.length;
    const gated = post(call(1, names.gated as string));
    try {
      // The answer's headers arrive while the tool is still held at the gate (only the test opens it).
      const answer = await Promise.race([gated, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no headers before the response')), 5_000))]);
      expect(upstream.called.length).toBe(before + 1);
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe('text/event-stream');
      upstream.open();
      expect(await messages(answer)).toEqual([{ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'let through' }] } }]);
    } finally {
      upstream.open();
    }
    expect(await lastLogged()).toMatchObject({ tool_name: 'gated', outcome: 'success' });
    await client.close();
  });

  it('reads an upstream’s stream on past its response for afterResponseMs at most: one the server never closes is closed then, its call answered at once', async () => {
    const { client, post, names } = await session();
    const [answer] = await messages(await post(call(1, names.lingering as string)));
    expect(answer).toEqual({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'still here' }] } });
    for (let i = 0; i < 60 && upstream.lingeringClosed.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(upstream.lingeringClosed).toEqual([expect.stringMatching(/^gateway-\d+$/)]);
    expect(await lastLogged()).toMatchObject({ tool_name: 'lingering', outcome: 'success' });
    await client.close();
  });

  it('holds a result to the tool’s output schema with the SDK client’s rule, on either path', async () => {
    const { client, post, names } = await session();
    const [answer] = await messages(await post(call(1, names.misshapen as string)));
    const viaSdk = await mcpRefusal(client.callTool({ name: names.misshapen as string, arguments: {} }, undefined, { onprogress: () => undefined }));
    expect(answer?.error).toMatchObject({ code: viaSdk.code, message: expect.stringContaining('Structured content does not match the tool\'s output schema') });
    expect(viaSdk.message).toBe(`MCP error ${viaSdk.code}: ${(answer?.error as { message: string }).message}`);
    expect(await lastLogged()).toMatchObject({ tool_name: 'misshapen', outcome: 'error' });
    await client.close();
  });

  it('holds an upstream’s answer to the JSON-RPC schema, as the SDK’s transport does: a malformed one fails as unavailable', async () => {
    const { client, post, names } = await session();
    const [answer] = await messages(await post(call(1, names.malformed as string)));
    expect(answer?.error).toMatchObject({ code: GatewayErrorCode.unavailable, message: expect.stringContaining('upstream unavailable') });
    expect(await lastLogged()).toMatchObject({ tool_name: 'malformed', outcome: 'error' });
    // The session was dropped and opens again: the next call goes through.
    const [echo] = await messages(await post(call(2, names.echo as string, { text: 'again' })));
    expect(echo).toMatchObject({ id: 2, result: { content: [{ type: 'text', text: 'again' }] } });
    await client.close();
  });

  it('a call the upstream refuses for its size (HTTP 413) fails alone: the shared upstream session, and another session’s call on it, go on', async () => {
    const first = await session();
    const second = await session();
    const before = upstream.cancelled.length;
    // The other session's call, on the SDK's path (progress asked), waits upstream on the one session of the server.
    const other = mcpRefusal(first.client.callTool({ name: first.names.slow as string, arguments: {} }, undefined, { onprogress: () => undefined }));
    await new Promise((r) => setTimeout(r, 200));
    const big = { text: 'x'.repeat(100_000) };
    // The lane, then the SDK's path: each refused, with the upstream's word.
    for (const extra of [{}, { _meta: { progressToken: 1 } }]) {
      const [answer] = await messages(await second.post(call(1, second.names.echo as string, big, extra)));
      expect(answer?.error).toMatchObject({ code: GatewayErrorCode.unavailable, message: expect.stringMatching(/413|Payload Too Large/) });
    }
    // Not closed under it: it ends at its timeout, and the server is told.
    expect((await other).code).toBe(-32001);
    expect(await cancelledUpstream(before)).toBe(before + 1);
    await first.client.close();
    await second.client.close();
  });

  it('a cancellation ends the answer without a response, tells the server, and is logged', async () => {
    const { client, post, names } = await session();
    const before = upstream.cancelled.length;
    const started = performance.now();
    const pending = post(call('slow-1', names.slow as string));
    await new Promise((r) => setTimeout(r, 200));
    const cancel = await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'slow-1', reason: 'changed my mind' } });
    expect(cancel.status).toBe(202);
    const answer = await pending;
    expect(await messages(answer)).toEqual([]);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await cancelledUpstream(before)).toBe(before + 1);
    expect(await lastLogged()).toMatchObject({ tool_name: 'slow', outcome: 'error', error_message: expect.stringContaining('changed my mind') });
    await client.close();
  });

  it('a cancellation on the SDK’s path is logged as the lane logs it: cancelled with its reason, not a timeout', async () => {
    const { client, post, names } = await session();
    const before = upstream.cancelled.length;
    const leaving = new AbortController();
    // Progress asked: the SDK's path.
    const pending = post(call('sdk-slow', names.slow as string, {}, { _meta: { progressToken: 1 } }), {}, leaving.signal).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    expect((await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'sdk-slow', reason: 'changed my mind' } })).status).toBe(202);
    expect(await cancelledUpstream(before)).toBe(before + 1);
    await expect.poll(lastLogged, { timeout: 3_000 }).toMatchObject({ tool_name: 'slow', outcome: 'error', error_message: 'cancelled: changed my mind' });
    leaving.abort();
    await pending;
    await client.close();
  });

  it('a client that leaves (its connection closed) cancels its call upstream', async () => {
    const { client, post, names } = await session();
    const before = upstream.cancelled.length;
    const leaving = new AbortController();
    const pending = post(call(1, names.slow as string), {}, leaving.signal);
    await new Promise((r) => setTimeout(r, 200));
    leaving.abort();
    await pending.catch(() => undefined);
    expect(await cancelledUpstream(before)).toBe(before + 1);
    expect(await lastLogged()).toMatchObject({ tool_name: 'slow', outcome: 'error', error_message: expect.stringContaining('the client went away') });
    await client.close();
  });

  it('a call in flight when the gateway closes ends at once with Connection closed, and is logged before the log closes', async () => {
    const closing = createGateway({ store: sqlGatewayStore(servicePool), logFlushMs: 20 });
    const closingServed = await serveHttp1((req) => closing.serve(req));
    try {
      const client = new Client({ name: 'closing', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${closingServed.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${apiKey}` } } }));
      const slow = (await client.listTools()).tools.find((t) => t.name.endsWith('__slow'))?.name as string;
      const started = performance.now();
      const refused = mcpRefusal(client.callTool({ name: slow, arguments: {} }));
      await new Promise((r) => setTimeout(r, 300));
      await closing.close();
      expect((await refused).code).toBe(-32000);
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(await lastLogged()).toMatchObject({ tool_name: 'slow', outcome: 'error', error_message: expect.stringContaining('Connection closed') });
      await client.close().catch(() => undefined);
    } finally {
      await closingServed.close();
    }
  });

  it('a call past its timeout is refused with the SDK’s RequestTimeout, logged as a timeout, and the server is told', async () => {
    const { client, names } = await session();
    const before = upstream.cancelled.length;
    const refused = await mcpRefusal(client.callTool({ name: names.slow as string, arguments: {} }));
    expect(refused.code).toBe(-32001);
    expect(refused.message).toBe('MCP error -32001: Request timed out');
    expect(await lastLogged()).toMatchObject({ tool_name: 'slow', outcome: 'timeout' });
    expect(await cancelledUpstream(before)).toBe(before + 1);
    await client.close();
  });

  it('a denied call is refused with the database’s reason, as on the SDK’s path', async () => {
    const { client, post, names } = await session();
    await org.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: instance });
    try {
      const [answer] = await messages(await post(call(1, names.echo as string, { text: 'no' })));
      expect(answer?.error).toMatchObject({ code: GatewayErrorCode.denied, data: { reason: 'no_live_grant' } });
      expect(await lastLogged()).toMatchObject({ tool_name: 'echo', outcome: 'denied' });
    } finally {
      await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: instance, p_permission_scope: 'full_access' });
    }
    await client.close();
  });

  it('reads a web Request’s body (the Deno entry’s) only up to the SDK transport’s 4 MiB, on a session and before one', async () => {
    const { client, names } = await session();
    const transport = client.transport as StreamableHTTPClientTransport;
    const big = JSON.stringify(call(1, names.echo as string, { text: 'x'.repeat(5 * 1024 * 1024) }));
    const headers = { authorization: `Bearer ${apiKey}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
    // A streamed body (no Content-Length to refuse it by): the read stops past the limit.
    const streamed = (): ReadableStream<Uint8Array> => new Blob([big]).stream();
    const onSession = await gateway.handle(
      new Request(`${served.url}/mcp`, {
        method: 'POST',
        headers: { ...headers, 'mcp-session-id': String(transport.sessionId), 'mcp-protocol-version': String(transport.protocolVersion) },
        body: streamed(),
        duplex: 'half',
      } as RequestInit),
    );
    expect(onSession.status).toBe(413);
    expect(await onSession.json()).toMatchObject({ error: { code: -32000, message: expect.stringContaining('Payload Too Large') } });
    const beforeSession = await gateway.handle(new Request(`${served.url}/mcp`, { method: 'POST', headers, body: streamed(), duplex: 'half' } as RequestInit));
    expect(beforeSession.status).toBe(413);
    await client.close();
  });

  it('refuses a plain call on a live session from a stranger, a forged key or JWT, a user who may not act for the agent, and another organization’s agent, before the lane', async () => {
    const { client, post, names } = await session();
    const echo = call(1, names.echo as string, { text: 'x' });
    const calls = upstream.called.length;
    const stranger = await post(echo, { authorization: '' });
    expect(stranger.status).toBe(401);
    expect(stranger.headers.get('www-authenticate')).toContain('resource_metadata=');
    expect(await stranger.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32001 } });
    const forgedKey = await post(echo, { authorization: 'Bearer mcpk_000000000000_notakeynotakeynotakeynotakeynotakeynotakeyxx' });
    expect(forgedKey.status).toBe(401);
    expect(forgedKey.headers.get('www-authenticate')).toContain('error="invalid_token"');
    // A user's JWT acts for the agent named in the path: one signed with another secret, and one of a user who may not manage the agent.
    const asUser = (token: string): Promise<Response> =>
      fetch(`${served.url}/agents/${agentId}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'mcp-session-id': String((client.transport as StreamableHTTPClientTransport).sessionId), accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
        body: JSON.stringify(echo),
      });
    const forgedJwt = await asUser(await signJwt({ sub: org.ownerId, role: 'authenticated' }, 'a-foreign-secret-of-at-least-32-characters'));
    expect(forgedJwt.status).toBe(401);
    expect(forgedJwt.headers.get('www-authenticate')).toContain('error="invalid_token"');
    const outsider = await asUser(await userJwt(await createUser(pool, 'lane-outsider')));
    expect(outsider.status).toBe(403);
    expect(await outsider.json()).toMatchObject({ error: { code: -32003 } });
    // Another organization's agent, with a key of its own, on this session: an unknown session.
    const other = await createOrganization(pool);
    const otherAgent = await createAgent(pool, other.organizationId, other.ownerId, 'lane-other-org');
    const otherKey = (await createAgentApiKey(other.ownerTransport, otherAgent, 'other')).api_key;
    const crossed = await post(echo, { authorization: `Bearer ${otherKey}` });
    expect(crossed.status).toBe(404);
    expect(await crossed.json()).toMatchObject({ error: { code: -32001, message: 'session not found' } });
    expect(upstream.called.length).toBe(calls);
    await client.close();
  });

  it('leaves every other request to the SDK’s transport, which answers or refuses it as before', async () => {
    const { client, post, names } = await session();
    const echo = names.echo as string;
    // A batch: the SDK's path answers each.
    expect(await messages(await post([call(1, echo, { text: 'a' }), call(2, echo, { text: 'b' })]))).toHaveLength(2);
    // Arguments that are not an object: refused by the SDK's validation, before anything is sent upstream.
    const calls = upstream.called.length;
    const [invalid] = await messages(await post(call(3, echo, 'text' as never)));
    expect(invalid).toMatchObject({ id: 3, error: { code: expect.any(Number) } });
    expect(upstream.called.length).toBe(calls);
    // Headers the SDK's transport refuses, with its own statuses.
    expect((await post(call(4, echo), { 'mcp-protocol-version': '1999-01-01' })).status).toBe(400);
    expect((await post(call(5, echo), { accept: 'application/json' })).status).toBe(406);
    expect((await post(call(6, echo), { 'content-type': 'text/plain' })).status).toBe(415);
    const unparsable = await post('{"jsonrpc": "2.0",');
    expect(unparsable.status).toBe(400);
    expect(await unparsable.json()).toMatchObject({ error: { code: -32700 } });
    // Another agent's session id is an unknown one, lane or not.
    const other = await createAgent(pool, org.organizationId, org.ownerId, 'lane-other');
    const otherKey = (await createAgentApiKey(org.ownerTransport, other, 'other')).api_key;
    expect((await post(call(7, echo), { authorization: `Bearer ${otherKey}` })).status).toBe(404);
    await client.close();
  });
});
