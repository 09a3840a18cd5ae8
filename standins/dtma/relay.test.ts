/**
 * The relay of an instance's MCP endpoint, against server-everything from npm:
 * what a client sees through the local DTMA is what it would see talking to
 * the server directly (progress, cancellation, logging, ping, session end,
 * errors). The server runs behind a tap, a small package of this test that
 * copies every byte the DTMA writes to the server's stdin into a file, so the
 * test can read what reached the server.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema, type JSONRPCMessage, type LoggingMessageNotification, type Progress } from '@modelcontextprotocol/sdk/types.js';
import { StatusResponseSchema, mcpEndpointUrl } from './contract.js';
import { REPOSITORY_ROOT, resolveNpmImage } from './npm-image.js';
import { createProcessDriver } from './process-driver.js';
import { createDtmaServer, type DtmaServer } from './server.js';
import { waitFor } from '../../test/support/db.ts';

const TOKEN = 'relay-test-token';
const EVERYTHING_BIN = resolveNpmImage('npm:@modelcontextprotocol/server-everything').binPath;
const scratch = mkdtempSync(path.join(os.tmpdir(), 'dtma-relay-'));
const tapFile = path.join(scratch, 'stdin.jsonl');

// The tap: runs server-everything, copying its stdin to TAP_FILE on the way.
const packageRoot = path.join(scratch, 'root');
const tapDir = path.join(packageRoot, 'node_modules', 'mcp-tap');
mkdirSync(tapDir, { recursive: true });
writeFileSync(path.join(tapDir, 'package.json'), JSON.stringify({ name: 'mcp-tap', version: '1.0.0', bin: { 'mcp-tap': 'tap.cjs' } }));
writeFileSync(
  path.join(tapDir, 'tap.cjs'),
  `const { spawn } = require('node:child_process');
const fs = require('node:fs');
const server = spawn(process.execPath, [process.env.TAP_TARGET], { stdio: ['pipe', 'inherit', 'inherit'] });
process.stdin.on('data', (chunk) => { fs.appendFileSync(process.env.TAP_FILE, chunk); server.stdin.write(chunk); });
process.stdin.on('end', () => server.stdin.end());
process.on('SIGTERM', () => server.kill('SIGTERM'));
server.on('exit', (code) => process.exit(code ?? 1));
`,
);

/** Every message the DTMA wrote to the server so far. */
function reachedServer(): JSONRPCMessage[] {
  let text = '';
  try {
    text = readFileSync(tapFile, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as JSONRPCMessage);
}

let server: DtmaServer;
let baseUrl: string;
let pid: number;
const clients: Client[] = [];

async function connect(): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'relay-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpEndpointUrl(baseUrl, 'everything')), {
    requestInit: { headers: { authorization: `Bearer ${TOKEN}` } },
  });
  await client.connect(transport);
  clients.push(client);
  return { client, transport };
}

beforeAll(async () => {
  server = createDtmaServer({ token: TOKEN, driver: createProcessDriver({ packageRoot, startTimeoutMs: 15_000 }), port: 0 });
  baseUrl = await server.listen();
  const reply = await fetch(`${baseUrl}/mcp/groups`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      groupId: 'relay',
      servers: [
        {
          accountToolInstanceId: 'ati-relay',
          instanceNameOnToolbox: 'everything',
          dockerImageUrl: 'npm:mcp-tap',
          environmentVariables: { TAP_TARGET: EVERYTHING_BIN, TAP_FILE: tapFile },
        },
      ],
    }),
  });
  expect(reply.status).toBe(201);
  const status = StatusResponseSchema.parse(await (await fetch(`${baseUrl}/mcp/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).json());
  const instance = status.data.groups.relay?.instances.everything;
  expect(instance?.status).toBe('running');
  pid = Number(/^proc-(\d+)$/.exec(instance?.containerId ?? '')?.[1]);
});

afterAll(async () => {
  await Promise.allSettled(clients.map((client) => client.close()));
  await server.close();
  rmSync(scratch, { recursive: true, force: true });
});

describe('the MCP relay of the local DTMA', { timeout: 30_000 }, () => {
  it('relays every progress notification, each before the result', async () => {
    const { client } = await connect();
    for (let round = 0; round < 5; round++) {
      const seen: Progress[] = [];
      const result = await client.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration: 0.2, steps: 4 } },
        undefined,
        { onprogress: (progress) => seen.push(progress) },
      );
      expect(JSON.stringify(result)).toMatch(/Long running operation completed/);
      expect(seen.map((progress) => progress.progress), `round ${round}`).toEqual([1, 2, 3, 4]);
    }
  });

  it('cancels upstream a request the client cancels', async () => {
    const { client } = await connect();
    const abort = new AbortController();
    let firstProgress: () => void = () => undefined;
    const progressed = new Promise<void>((resolve) => {
      firstProgress = resolve;
    });
    const call = client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 5, steps: 50 } }, undefined, {
      signal: abort.signal,
      onprogress: () => firstProgress(),
    });
    await progressed;
    abort.abort('the user changed their mind');
    await expect(call).rejects.toThrow();
    // The DTMA's own request to the server is the one cancelled.
    const upstreamCall = reachedServer().filter((m) => 'method' in m && m.method === 'tools/call').at(-1);
    const upstreamId = upstreamCall && 'id' in upstreamCall ? upstreamCall.id : undefined;
    expect(upstreamId).toBeDefined();
    await waitFor('notifications/cancelled at the server', async () =>
      reachedServer().find((m) => 'method' in m && m.method === 'notifications/cancelled' && m.params?.requestId === upstreamId),
    );
  });

  it('cancels upstream the requests of a session that ends, and forgets the session', async () => {
    const { client, transport } = await connect();
    const sessionId = transport.sessionId;
    const call = client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 5, steps: 5 } }).catch((error: unknown) => error);
    const upstreamCall = await waitFor('the call to reach the server', async () =>
      reachedServer()
        .filter((m) => 'method' in m && m.method === 'tools/call')
        .find((m) => 'params' in m && JSON.stringify(m.params).includes('"duration":5,"steps":5}')),
    );
    await transport.terminateSession();
    await waitFor('notifications/cancelled at the server', async () =>
      reachedServer().find((m) => 'method' in m && m.method === 'notifications/cancelled' && 'id' in upstreamCall && m.params?.requestId === upstreamCall.id),
    );
    const after = await fetch(mcpEndpointUrl(baseUrl, 'everything'), {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId ?? '' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(after.status).toBe(404);
    await client.close();
    await call;
  });

  it("keeps each session's logging level: the server logs at the most verbose, each session gets what it asked for", async () => {
    const quiet = await connect();
    const chatty = await connect();
    const heard = { quiet: [] as LoggingMessageNotification['params'][], chatty: [] as LoggingMessageNotification['params'][] };
    quiet.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void heard.quiet.push(n.params));
    chatty.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void heard.chatty.push(n.params));
    await quiet.client.setLoggingLevel('emergency');
    await chatty.client.setLoggingLevel('debug');
    const levels = reachedServer().flatMap((m) => ('method' in m && m.method === 'logging/setLevel' ? [m.params?.level] : []));
    expect(levels.slice(-2)).toEqual(['emergency', 'debug']);

    await chatty.client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
    try {
      await waitFor('a log message at the chatty session', async () => heard.chatty[0], 8000);
    } finally {
      await chatty.client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
    }
    expect(heard.quiet.every((message) => message.level === 'emergency')).toBe(true);
  });

  it('answers ping from the server: no pong while the server does not answer', async () => {
    const { client } = await connect();
    const before = reachedServer().filter((m) => 'method' in m && m.method === 'ping').length;
    await client.ping();
    expect(reachedServer().filter((m) => 'method' in m && m.method === 'ping').length).toBe(before + 1);
    process.kill(pid, 'SIGSTOP');
    try {
      await expect(client.ping({ timeout: 500 })).rejects.toThrow(/timed out/i);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await client.ping();
  });

  it('answers a request on a session on its own SSE stream, and refuses what the SDK refuses, as the SDK does', async () => {
    const { transport } = await connect();
    const post = (body: unknown, headers: Record<string, string> = {}) =>
      fetch(mcpEndpointUrl(baseUrl, 'everything'), {
        method: 'POST',
        headers: {
          authorization: `Bearer ${TOKEN}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': transport.sessionId ?? '',
          'mcp-protocol-version': '2025-06-18',
          ...headers,
        },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
    const events = (text: string) => text.split('\n\n').filter((event) => event !== '').map((event) => JSON.parse(event.replace(/^event: message\ndata: /, '')) as Record<string, unknown>);

    const listed = await post({ jsonrpc: '2.0', id: 'list-1', method: 'tools/list' });
    expect(listed.status).toBe(200);
    expect(listed.headers.get('content-type')).toBe('text/event-stream');
    expect(listed.headers.get('cache-control')).toBe('no-cache, no-transform');
    expect(listed.headers.get('mcp-session-id')).toBe(transport.sessionId);
    const [answer, ...more] = events(await listed.text());
    expect(more).toEqual([]);
    expect(answer).toMatchObject({ jsonrpc: '2.0', id: 'list-1', result: { tools: expect.arrayContaining([expect.objectContaining({ name: 'echo' })]) } });

    const unknown = await post({ jsonrpc: '2.0', id: 7, method: 'tasks/list' });
    expect(events(await unknown.text())).toEqual([{ jsonrpc: '2.0', id: 7, error: { code: -32601, message: 'Method not found' } }]);

    const refusals = [
      [await post({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { accept: 'application/json' }), 406, /Not Acceptable/],
      [await post({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, { 'content-type': 'text/plain' }), 415, /Unsupported Media Type/],
      [await post({ jsonrpc: '2.0', id: 3, method: 'tools/list' }, { 'mcp-protocol-version': '1999-01-01' }), 400, /Unsupported protocol version: 1999-01-01/],
      [await post({ jsonrpc: '2.0', id: 4, method: 'tools/list' }, { 'mcp-session-id': 'not-this-session' }), 404, /Session not found/],
      [await post({ jsonrpc: '2.0', id: 5, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'again', version: '1' } } }), 400, /already initialized/],
      [await post({ jsonrpc: '2.0', id: 6 }), 400, /Parse error/],
      [await post('{"jsonrpc": "2.0", "id": 8, "method": '), 400, /Parse error: Invalid JSON/],
    ] as const;
    for (const [response, status, message] of refusals) {
      expect(response.status).toBe(status);
      expect(await response.json()).toMatchObject({ jsonrpc: '2.0', error: { message: expect.stringMatching(message) } });
    }
    expect((await post({ jsonrpc: '2.0', method: 'notifications/roots/list_changed' })).status).toBe(202);
  });

  it('passes an error on as the server sent it, without a prefix per hop', async () => {
    const direct = new Client({ name: 'relay-test-direct', version: '1.0.0' });
    await direct.connect(new StdioClientTransport({ command: process.execPath, args: [EVERYTHING_BIN], stderr: 'ignore' }));
    clients.push(direct);
    const { client } = await connect();
    const failure = (promise: Promise<unknown>) => promise.then(() => ({ code: 0, message: 'no error' }), (error: { code: number; message: string }) => ({ code: error.code, message: error.message }));
    const viaDtma = await failure(client.getPrompt({ name: 'no-such-prompt' }));
    expect(viaDtma).toEqual(await failure(direct.getPrompt({ name: 'no-such-prompt' })));
    expect(viaDtma.code).toBe(-32602);
    expect(viaDtma.message.match(/MCP error -32602/g)?.length).toBe(2);
    const missingResource = await failure(client.readResource({ uri: 'demo://no-such-resource' }));
    expect(missingResource).toEqual(await failure(direct.readResource({ uri: 'demo://no-such-resource' })));
  });
});
