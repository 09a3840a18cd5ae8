// The project's DTMA refuses every route without its token (docs/DTMA.md): a missing, malformed
// or wrong bearer token gets 401 before anything runs, on every route of the contract, the MCP
// endpoints, the fault driver's admin routes, and under a toolbox base path. It has none of the
// upstream dtma-agent's unauthenticated holes (/diagnostics/logs, /restart, /ssh/execute).
// Only GET /health, a liveness probe that says nothing but "ok", answers without a token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFaultDriver } from './fault-driver.js';
import { createProcessDriver } from './process-driver.js';
import { createDtmaServer, type DtmaServer } from './server.js';

const TOKEN = 'auth-test-token-0123456789abcdef';
let dtma: DtmaServer;

const ROUTES: Array<[method: string, path: string, body?: object]> = [
  ['POST', '/mcp/groups', { groupId: 'g', servers: [] }],
  ['DELETE', '/mcp/groups/g?forceRemove=true'],
  ['GET', '/mcp/status'],
  ['GET', '/mcp/health/g'],
  ['POST', '/mcp/servers/x/restart', {}],
  ['POST', '/mcp/credentials/refresh/x', { environmentVariables: { A: 'b' } }],
  ['POST', '/mcp/servers/x/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/list' }],
  ['GET', '/mcp/servers/x/mcp'],
  ['GET', '/__requests'],
  ['POST', '/__faults', { latencyMs: 1 }],
  ['GET', '/mcp/unknown'],
  ['GET', '/toolboxes/some-toolbox/mcp/status'],
];
const WRONG: Array<[label: string, headers: Record<string, string>]> = [
  ['no token', {}],
  ['a malformed header', { authorization: TOKEN }],
  ['another scheme', { authorization: `Basic ${TOKEN}` }],
  ['a wrong token', { authorization: 'Bearer not-the-token-0123456789abcdef' }],
  ['a prefix of the token', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
];

const call = (method: string, path: string, headers: Record<string, string>, body?: object) =>
  fetch(`${dtma.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });

beforeAll(async () => {
  dtma = createDtmaServer({ token: TOKEN, port: 0, driver: createFaultDriver(createProcessDriver({ startTimeoutMs: 15_000 })) });
  await dtma.listen();
});
afterAll(async () => { await dtma.close(); });

describe('the project DTMA without its token', () => {
  for (const [method, path, body] of ROUTES) {
    for (const [label, headers] of WRONG) {
      it(`refuses ${method} ${path} with ${label}: 401`, async () => {
        const res = await call(method, path, headers, body);
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="dtma"/);
        // An MCP endpoint refuses in JSON-RPC, as MCP clients expect; the contract's routes in its envelope.
        const refusal = /^\/mcp\/servers\/[^/]+\/mcp$/.test(path) ? { jsonrpc: '2.0', error: { code: expect.any(Number) } } : { success: false };
        expect(await res.json()).toMatchObject(refusal);
      });
    }
  }

  it('answers the same routes with the token (nothing above was refused for another reason)', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await call('GET', '/mcp/status', auth)).status).toBe(200);
    expect((await call('GET', '/toolboxes/some-toolbox/mcp/status', auth)).status).toBe(200);
    expect((await call('GET', '/mcp/health/g', auth)).status).toBe(404);
    expect((await call('DELETE', '/mcp/groups/g?forceRemove=true', auth)).status).toBe(404);
    expect((await call('GET', '/__requests', auth)).status).toBe(200);
  });

  it('has none of the upstream DTMA\'s unauthenticated holes, with or without the token', async () => {
    for (const headers of [{}, { authorization: `Bearer ${TOKEN}` }] as Array<Record<string, string>>) {
      for (const path of ['/diagnostics/logs', '/restart', '/ssh/execute']) {
        expect((await call('GET', path, headers)).status).toBe(404);
        expect((await call('POST', path, headers, { command: 'id' })).status).toBe(404);
      }
    }
  });

  it('answers GET /health, liveness only, without a token', async () => {
    const res = await call('GET', '/health', {});
    expect(res.status).toBe(200);
    expect(Object.keys(await res.json() as object).sort()).toEqual(['status', 'timestamp']);
  });
});
