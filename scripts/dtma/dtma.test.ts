/**
 * The local DTMA, tested as callers meet it: a real HTTP server on a free
 * port, real MCP servers from node_modules as child processes, the official
 * MCP client over Streamable HTTP. No mocks.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  DeployGroupResponseSchema,
  ErrorResponseSchema,
  FaultStateResponseSchema,
  GroupHealthResponseSchema,
  LivenessResponseSchema,
  RefreshCredentialsResponseSchema,
  RemoveGroupResponseSchema,
  RequestLogResponseSchema,
  RestartServerResponseSchema,
  StatusResponseSchema,
  mcpEndpointUrl,
  type DeployGroupRequestInput,
  type InstanceStatus,
  type ServerSpecInput,
} from './contract.js';
import { createFaultDriver } from './fault-driver.js';
import { createProcessDriver, type ProcessDriverOptions } from './process-driver.js';
import { createDtmaServer, type DtmaServer } from './server.js';

const TOKEN = 'test-token-7d1f0c9a';
const MEMORY = 'npm:@modelcontextprotocol/server-memory';
const EVERYTHING = 'npm:@modelcontextprotocol/server-everything';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPOSITORY_ROOT = path.resolve(HERE, '..', '..');
const MEMORY_VERSION = (
  JSON.parse(readFileSync(path.join(REPOSITORY_ROOT, 'node_modules/@modelcontextprotocol/server-memory/package.json'), 'utf8')) as {
    version: string;
  }
).version;

// ---------------------------------------------------------------- helpers

const scratch = mkdtempSync(path.join(os.tmpdir(), 'dtma-test-'));
// The DTMA's own environment holds its token, as under main.ts before it
// scrubs it: children must still never see it.
process.env.DTMA_TOKEN_UNDER_TEST = TOKEN;

interface Reply {
  status: number;
  body: unknown;
}

interface RequestOptions {
  method?: string;
  body?: unknown;
  rawBody?: string;
  token?: string | null;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** One request on a fresh connection (agent: false), so that a dropped socket affects only this request. */
function request(baseUrl: string, pathname: string, options: RequestOptions = {}): Promise<Reply> {
  const token = options.token === undefined ? TOKEN : options.token;
  const payload = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      new URL(pathname, baseUrl),
      {
        method: options.method ?? 'GET',
        agent: false,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}),
          ...options.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.timeoutMs !== undefined) {
      req.setTimeout(options.timeoutMs, () => req.destroy(new Error('client timeout')));
    }
    req.end(payload);
  });
}

interface Dtma {
  server: DtmaServer;
  url: string;
}

async function startDtma(options: { faults?: boolean } & ProcessDriverOptions = {}): Promise<Dtma> {
  const { faults, ...driverOptions } = options;
  const processDriver = createProcessDriver({ startTimeoutMs: 15_000, ...driverOptions });
  const driver = faults ? createFaultDriver(processDriver) : processDriver;
  const server = createDtmaServer({ token: TOKEN, driver, port: 0 });
  return { server, url: await server.listen() };
}

function memorySpec(name: string): ServerSpecInput {
  return {
    accountToolInstanceId: `ati-${name}`,
    instanceNameOnToolbox: name,
    dockerImageUrl: MEMORY,
    mcpTransportType: 'stdio',
    environmentVariables: { MEMORY_FILE_PATH: path.join(scratch, `${name}.jsonl`) },
  };
}

async function deploy(dtma: { url: string }, body: DeployGroupRequestInput) {
  const reply = await request(dtma.url, '/mcp/groups', { method: 'POST', body });
  expect(reply.status).toBe(201);
  return DeployGroupResponseSchema.parse(reply.body);
}

async function status(dtma: { url: string }) {
  const reply = await request(dtma.url, '/mcp/status');
  expect(reply.status).toBe(200);
  return StatusResponseSchema.parse(reply.body).data;
}

async function instance(dtma: { url: string }, groupId: string, name: string): Promise<InstanceStatus | undefined> {
  return (await status(dtma)).groups[groupId]?.instances[name];
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function pidOf(entry: InstanceStatus | undefined): number {
  const match = /^proc-(\d+)$/.exec(entry?.containerId ?? '');
  if (!match) throw new Error(`no pid in containerId ${entry?.containerId}`);
  return Number(match[1]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids whose parent is this process, read from /proc. */
function childPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name is in parentheses and may contain spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === process.pid) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

function mcpChildren(): number[] {
  return childPids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('@modelcontextprotocol/server-');
    } catch {
      return false;
    }
  });
}

async function connect(dtma: Dtma, name: string): Promise<Client> {
  const client = new Client({ name: 'dtma-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpEndpointUrl(dtma.url, name)), {
    requestInit: { headers: { authorization: `Bearer ${TOKEN}` } },
  });
  await client.connect(transport);
  return client;
}

function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return content.map((item) => item.text ?? '').join('\n');
}

afterAll(() => {
  delete process.env.DTMA_TOKEN_UNDER_TEST;
  rmSync(scratch, { recursive: true, force: true });
});

// ---------------------------------------------------------------- process driver

describe('local DTMA with the process driver', { timeout: 30_000 }, () => {
  let dtma: Dtma;
  const clients: Client[] = [];

  beforeAll(async () => {
    dtma = await startDtma();
  });

  afterAll(async () => {
    await Promise.allSettled(clients.map((client) => client.close()));
    await dtma.server.close();
  });

  it('answers GET /health without a token', async () => {
    const reply = await request(dtma.url, '/health', { token: null });
    expect(reply.status).toBe(200);
    expect(LivenessResponseSchema.parse(reply.body).status).toBe('ok');
  });

  it('refuses every /mcp route without the token or with a wrong one', async () => {
    for (const token of [null, 'wrong-token', `${TOKEN}x`]) {
      for (const [method, pathname] of [
        ['GET', '/mcp/status'],
        ['POST', '/mcp/groups'],
        ['DELETE', '/mcp/groups/anything'],
        ['GET', '/mcp/health/anything'],
        ['POST', '/mcp/servers/anything/restart'],
        ['POST', '/mcp/credentials/refresh/anything'],
        ['POST', '/mcp/servers/anything/mcp'],
      ] as const) {
        const reply = await request(dtma.url, pathname, { method, token, body: {} });
        expect(reply.status, `${method} ${pathname} with ${token}`).toBe(401);
        if (pathname.endsWith('/mcp')) {
          // An MCP endpoint refuses in JSON-RPC, as MCP clients expect.
          expect(reply.body).toMatchObject({ jsonrpc: '2.0', error: { code: -32000, message: expect.stringMatching(/token/) } });
          continue;
        }
        const body = ErrorResponseSchema.parse(reply.body);
        expect(body.success).toBe(false);
        expect(body.error).toMatch(/token/);
      }
    }
  });

  it('refuses a Host that is not its own and a foreign Origin, before the token (DNS rebinding)', async () => {
    const port = new URL(dtma.url).port;
    const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
    const mcp = { method: 'POST', body: initialize, headers: { accept: 'application/json, text/event-stream' } };
    const forged: Record<string, string>[] = [{ host: `evil.example:${port}` }, { host: `127.0.0.1:${Number(port) + 1}` }, { origin: 'http://evil.example' }];
    for (const headers of forged) {
      const endpoint = await request(dtma.url, '/mcp/servers/anything/mcp', { ...mcp, headers: { ...mcp.headers, ...headers } });
      expect(endpoint.status, JSON.stringify(headers)).toBe(403);
      expect(endpoint.body).toMatchObject({ jsonrpc: '2.0', error: { code: -32000, message: expect.stringMatching(/^(Host|Origin) /) } });
      const admin = await request(dtma.url, '/mcp/status', { headers });
      expect(admin.status, JSON.stringify(headers)).toBe(403);
      expect(ErrorResponseSchema.parse(admin.body).error).toMatch(/^(Host|Origin) /);
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
      expect((await request(dtma.url, '/mcp/status', { headers: { host } })).status, host).toBe(200);
    }
  });

  it('accepts a browser Origin and a Host only when configured to', async () => {
    const other = createDtmaServer({
      token: TOKEN,
      driver: createProcessDriver(),
      port: 0,
      allowedHosts: ['dtma.test:443'],
      allowedOrigins: ['http://localhost:6274'],
      instanceId: 'nonce-1',
    });
    const url = await other.listen();
    try {
      expect((await request(url, '/mcp/status', { headers: { origin: 'http://localhost:6274' } })).status).toBe(200);
      expect((await request(url, '/mcp/status', { headers: { origin: 'http://localhost:6275' } })).status).toBe(403);
      expect((await request(url, '/mcp/status', { headers: { host: 'dtma.test:443' } })).status).toBe(200);
      // GET /health names the process, so that whoever started it can tell it from another on the port.
      expect(LivenessResponseSchema.parse((await request(url, '/health', { token: null })).body).instanceId).toBe('nonce-1');
    } finally {
      await other.close();
    }
  });

  it('deploys server-memory and reports it running and healthy', async () => {
    const answer = await deploy(dtma, { groupId: 'grp-memory', servers: [memorySpec('mem1')] });
    expect(answer).toMatchObject({
      success: true,
      data: { groupId: 'grp-memory', deployedServers: ['mem1'], errors: {}, totalServers: 1, successfulDeployments: 1 },
    });

    const snapshot = await status(dtma);
    expect(snapshot.summary).toMatchObject({ totalGroups: 1, totalServers: 1, runningServers: 1, healthyServers: 1 });
    const group = snapshot.groups['grp-memory'];
    expect(group?.collectiveStatus).toBe('healthy');
    const mem1 = group?.instances.mem1;
    expect(mem1).toMatchObject({
      accountToolInstanceId: 'ati-mem1',
      status: 'running',
      healthStatus: 'healthy',
      restartCount: 0,
      errorMessage: null,
      mcpEndpoint: `${dtma.url}/mcp/servers/mem1/mcp`,
      transportType: 'streamable_http',
    });
    expect(mem1?.startTime).not.toBeNull();
    expect(childPids()).toContain(pidOf(mem1));

    const health = await request(dtma.url, '/mcp/health/grp-memory');
    expect(health.status).toBe(200);
    expect(GroupHealthResponseSchema.parse(health.body).data.health.collectiveStatus).toBe('healthy');
  });

  it('serves the real tools at mcpEndpoint to several sessions at once', async () => {
    const [first, second] = await Promise.all([connect(dtma, 'mem1'), connect(dtma, 'mem1')]);
    clients.push(first, second);
    expect(first.getServerVersion()?.name).toBe('memory-server');

    const [toolsA, toolsB] = await Promise.all([first.listTools(), second.listTools()]);
    expect(toolsA.tools.map((tool) => tool.name)).toContain('create_entities');
    expect(toolsB.tools.map((tool) => tool.name)).toEqual(toolsA.tools.map((tool) => tool.name));

    const created = await first.callTool({
      name: 'create_entities',
      arguments: { entities: [{ name: 'dtma', entityType: 'agent', observations: ['runs MCP servers'] }] },
    });
    expect(created.isError).not.toBe(true);
    // Both sessions reach the same process: what one wrote, the other reads.
    const graph = await second.callTool({ name: 'read_graph', arguments: {} });
    expect(textOf(graph)).toContain('runs MCP servers');
  });

  it('re-POSTing the same group is idempotent, also when two POSTs race', async () => {
    const before = await instance(dtma, 'grp-memory', 'mem1');
    const childrenBefore = mcpChildren().length;
    const body = { groupId: 'grp-memory', servers: [memorySpec('mem1')] };
    const answers = await Promise.all([deploy(dtma, body), deploy(dtma, body), deploy(dtma, body)]);
    for (const answer of answers) {
      expect(answer.data).toMatchObject({ deployedServers: ['mem1'], errors: {}, successfulDeployments: 1 });
    }
    const after = await instance(dtma, 'grp-memory', 'mem1');
    expect(after?.containerId).toBe(before?.containerId);
    expect(after?.restartCount).toBe(0);
    expect(mcpChildren().length).toBe(childrenBefore);
  });

  describe('next to server-everything', () => {
    let everything: Client;

    it('deploys a second group that coexists with the first', async () => {
      const answer = await deploy(dtma, {
        groupId: 'grp-everything',
        servers: [
          {
            accountToolInstanceId: 'ati-ev1',
            instanceNameOnToolbox: 'ev1',
            dockerImageUrl: EVERYTHING,
            mcpTransportType: 'stdio',
            baseConfigOverrideJson: { args: ['stdio'], env: { FROM_OVERRIDE: 'override-value' } },
            environmentVariables: { API_KEY: 'first-key' },
          },
        ],
      });
      expect(answer.data.deployedServers).toEqual(['ev1']);
      const snapshot = await status(dtma);
      expect(snapshot.summary).toMatchObject({ totalGroups: 2, runningServers: 2, healthyServers: 2 });
      expect(snapshot.groups['grp-everything']?.instances.ev1?.status).toBe('running');

      everything = await connect(dtma, 'ev1');
      clients.push(everything);
      const echo = await everything.callTool({ name: 'echo', arguments: { message: 'hello dtma' } });
      expect(textOf(echo)).toContain('hello dtma');
    });

    it("passes the server's environment and never the DTMA's", async () => {
      const env = textOf(await everything.callTool({ name: 'get-env', arguments: {} }));
      expect(env).toContain('override-value');
      expect(env).toContain('first-key');
      expect(env).not.toContain(TOKEN);
      expect(env).not.toContain('DTMA_TOKEN_UNDER_TEST');
    });

    it('restarts a server; an open session keeps working against the new process', async () => {
      const before = await instance(dtma, 'grp-everything', 'ev1');
      const reply = await request(dtma.url, '/mcp/servers/ev1/restart', { method: 'POST' });
      expect(reply.status).toBe(200);
      const answer = RestartServerResponseSchema.parse(reply.body);
      expect(answer.data).toMatchObject({ instanceName: 'ev1', status: 'running', restartCount: 1 });
      expect(answer.data.containerId).not.toBe(before?.containerId);
      expect(alive(pidOf(before))).toBe(false);

      const echo = await everything.callTool({ name: 'echo', arguments: { message: 'after restart' } });
      expect(textOf(echo)).toContain('after restart');
    });

    it('refreshes credentials by restarting the server with the new environment', async () => {
      const reply = await request(dtma.url, '/mcp/credentials/refresh/ev1', {
        method: 'POST',
        body: { environmentVariables: { API_KEY: 'rotated-key' } },
      });
      expect(reply.status).toBe(200);
      expect(RefreshCredentialsResponseSchema.parse(reply.body).data).toMatchObject({ status: 'refreshed', restarted: true });
      const env = textOf(await everything.callTool({ name: 'get-env', arguments: {} }));
      expect(env).toContain('rotated-key');
      expect(env).not.toContain('first-key');
    });

    it('removing one group stops only its server', async () => {
      const ev1 = await instance(dtma, 'grp-everything', 'ev1');
      const mem1 = await instance(dtma, 'grp-memory', 'mem1');
      const reply = await request(dtma.url, '/mcp/groups/grp-everything?gracefulTimeoutMs=2000', { method: 'DELETE' });
      expect(reply.status).toBe(200);
      expect(RemoveGroupResponseSchema.parse(reply.body)).toMatchObject({
        success: true,
        data: { groupId: 'grp-everything', removedServers: ['ev1'], errors: {} },
      });
      expect(alive(pidOf(ev1))).toBe(false);

      const snapshot = await status(dtma);
      expect(Object.keys(snapshot.groups)).toEqual(['grp-memory']);
      expect(snapshot.groups['grp-memory']?.instances.mem1).toMatchObject({ status: 'running', containerId: mem1?.containerId });
      const graph = await clients[0]?.callTool({ name: 'read_graph', arguments: {} });
      expect(textOf(graph)).toContain('dtma');
      // The removed server's endpoint is gone with it.
      const gone = await request(dtma.url, '/mcp/servers/ev1/mcp', { method: 'POST', body: {} });
      expect(gone.status).toBe(404);
    });
  });

  it('answers 404, not 500, for an unknown group on DELETE and health', async () => {
    const removed = await request(dtma.url, '/mcp/groups/no-such-group', { method: 'DELETE' });
    expect(removed.status).toBe(404);
    expect(ErrorResponseSchema.parse(removed.body).error).toContain('no-such-group');
    const health = await request(dtma.url, '/mcp/health/no-such-group');
    expect(health.status).toBe(404);
    expect(ErrorResponseSchema.parse(health.body).success).toBe(false);
    const restart = await request(dtma.url, '/mcp/servers/no-such-server/restart', { method: 'POST' });
    expect(restart.status).toBe(404);
  });

  it('answers 400 naming the bad field', async () => {
    const missing = await request(dtma.url, '/mcp/groups', {
      method: 'POST',
      body: { groupId: 'grp-bad', servers: [{ accountToolInstanceId: 'x', instanceNameOnToolbox: 'bad1' }] },
    });
    expect(missing.status).toBe(400);
    expect(ErrorResponseSchema.parse(missing.body).error).toContain('servers.0.dockerImageUrl');

    const badName = await request(dtma.url, '/mcp/groups', {
      method: 'POST',
      body: { groupId: 'grp-bad', servers: [{ ...memorySpec('x'), instanceNameOnToolbox: '../etc' }] },
    });
    expect(badName.status).toBe(400);
    expect(ErrorResponseSchema.parse(badName.body).error).toContain('servers.0.instanceNameOnToolbox');

    const notJson = await request(dtma.url, '/mcp/groups', { method: 'POST', rawBody: '{"groupId":' });
    expect(notJson.status).toBe(400);
    expect(ErrorResponseSchema.parse(notJson.body).error).toContain('invalid JSON');

    const badQuery = await request(dtma.url, '/mcp/groups/grp-memory?gracefulTimeoutMs=soon', { method: 'DELETE' });
    expect(badQuery.status).toBe(400);
    expect(ErrorResponseSchema.parse(badQuery.body).error).toContain('gracefulTimeoutMs');
    expect((await status(dtma)).groups['grp-bad']).toBeUndefined();
  });

  it('reports a package that is not installed in data.errors under a 201', async () => {
    const answer = await deploy(dtma, {
      groupId: 'grp-ghost',
      servers: [
        { accountToolInstanceId: 'ati-ghost', instanceNameOnToolbox: 'ghost1', dockerImageUrl: 'npm:@example/not-installed-anywhere' },
        { accountToolInstanceId: 'ati-docker', instanceNameOnToolbox: 'docker1', dockerImageUrl: 'ghcr.io/example/server:1' },
        { ...memorySpec('old1'), dockerImageUrl: `${MEMORY}@0.0.1` },
      ],
    });
    expect(answer.success).toBe(false);
    expect(answer.data.successfulDeployments).toBe(0);
    expect(answer.data.errors.ghost1).toMatch(/not installed/);
    expect(answer.data.errors.docker1).toMatch(/npm:/);
    expect(answer.data.errors.old1).toContain(`installed at version ${MEMORY_VERSION}, not 0.0.1`);
    const group = (await status(dtma)).groups['grp-ghost'];
    expect(group?.collectiveStatus).toBe('failed');
    expect(group?.instances.ghost1).toMatchObject({ status: 'error', errorMessage: answer.data.errors.ghost1 });
    expect((await request(dtma.url, '/mcp/groups/grp-ghost', { method: 'DELETE' })).status).toBe(200);
  });

  it('reports a server that exits at start with its exit code and stderr; passes args', async () => {
    const filesystem = (name: string, args: string[]): ServerSpecInput => ({
      accountToolInstanceId: `ati-${name}`,
      instanceNameOnToolbox: name,
      dockerImageUrl: 'npm:@modelcontextprotocol/server-filesystem',
      baseConfigOverrideJson: { args },
    });
    const broken = await deploy(dtma, {
      groupId: 'grp-broken',
      servers: [{ accountToolInstanceId: 'ati-b', instanceNameOnToolbox: 'broken1', dockerImageUrl: EVERYTHING, baseConfigOverrideJson: { args: ['no-such-transport'] } }],
    });
    expect(broken.data.errors.broken1).toMatch(/exited with code 1; stderr: .*Unknown transport: no-such-transport/s);
    expect((await instance(dtma, 'grp-broken', 'broken1'))?.status).toBe('error');
    expect((await request(dtma.url, '/mcp/groups/grp-broken', { method: 'DELETE' })).status).toBe(200);

    const working = await deploy(dtma, { groupId: 'grp-fs', servers: [filesystem('fs1', [scratch])] });
    expect(working.data.deployedServers).toEqual(['fs1']);
    const client = await connect(dtma, 'fs1');
    const listing = await client.callTool({ name: 'list_allowed_directories', arguments: {} });
    expect(textOf(listing)).toContain(path.basename(scratch));
    await client.close();
    expect((await request(dtma.url, '/mcp/groups/grp-fs', { method: 'DELETE' })).status).toBe(200);
  });

  it('refuses an instance name that another group already uses', async () => {
    const answer = await deploy(dtma, { groupId: 'grp-thief', servers: [memorySpec('mem1')] });
    expect(answer.data.errors.mem1).toMatch(/already deployed in group 'grp-memory'/);
    expect((await status(dtma)).groups['grp-thief']).toBeUndefined();
  });

  it('shows a killed child as error, and a re-POST brings it back', async () => {
    await deploy(dtma, { groupId: 'grp-crash', servers: [memorySpec('crash1')] });
    const before = await instance(dtma, 'grp-crash', 'crash1');
    process.kill(pidOf(before), 'SIGKILL');
    const crashed = await waitFor('crash1 in error', async () => {
      const entry = await instance(dtma, 'grp-crash', 'crash1');
      return entry?.status === 'error' ? entry : undefined;
    });
    expect(crashed).toMatchObject({ healthStatus: 'unhealthy', containerId: before?.containerId });
    expect(crashed.errorMessage).toMatch(/SIGKILL/);
    expect((await status(dtma)).groups['grp-crash']?.collectiveStatus).toBe('failed');

    const again = await deploy(dtma, { groupId: 'grp-crash', servers: [memorySpec('crash1')] });
    expect(again.data.deployedServers).toEqual(['crash1']);
    const revived = await instance(dtma, 'grp-crash', 'crash1');
    expect(revived).toMatchObject({ status: 'running', healthStatus: 'healthy', restartCount: 1, errorMessage: null });
    expect(revived?.containerId).not.toBe(before?.containerId);
  });

  it('leaves no child process behind after close()', async () => {
    const pids = Object.values((await status(dtma)).groups).flatMap((group) => Object.values(group.instances).map(pidOf));
    expect(pids.length).toBeGreaterThan(0);
    expect(pids.every(alive)).toBe(true);
    await Promise.allSettled(clients.splice(0).map((client) => client.close()));
    await dtma.server.close();
    expect(pids.filter(alive)).toEqual([]);
    expect(mcpChildren()).toEqual([]);
    // afterAll closes again: that must be harmless.
  });
});

// ---------------------------------------------------------------- health

describe('local DTMA health checks', { timeout: 30_000 }, () => {
  it('marks a server that stops answering pings unhealthy, and healthy again when it answers', async () => {
    const dtma = await startDtma({ healthIntervalMs: 150, pingTimeoutMs: 300 });
    try {
      await deploy(dtma, { groupId: 'grp-frozen', servers: [memorySpec('frozen1')] });
      const pid = pidOf(await instance(dtma, 'grp-frozen', 'frozen1'));
      // A stopped process keeps its pipes open but answers nothing: a hang, not a crash.
      process.kill(pid, 'SIGSTOP');
      try {
        await waitFor('frozen1 unhealthy', async () => {
          const group = (await status(dtma)).groups['grp-frozen'];
          return group?.instances.frozen1?.healthStatus === 'unhealthy' ? group : undefined;
        }).then((group) => {
          expect(group.instances.frozen1?.status).toBe('running');
          expect(group.collectiveStatus).toBe('failed');
        });
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await waitFor('frozen1 healthy again', async () =>
        (await instance(dtma, 'grp-frozen', 'frozen1'))?.healthStatus === 'healthy' ? true : undefined,
      );
    } finally {
      await dtma.server.close();
    }
  });
});

// ---------------------------------------------------------------- state file

describe('local DTMA with a state file', { timeout: 30_000 }, () => {
  it('a restarted DTMA brings its groups back', async () => {
    const stateFile = path.join(scratch, 'state', 'dtma-state.json');
    const first = await startDtma({ stateFile });
    await deploy(first, { groupId: 'grp-durable', servers: [{ ...memorySpec('durable1'), dockerImageUrl: `${MEMORY}@${MEMORY_VERSION}` }] });
    const before = await instance(first, 'grp-durable', 'durable1');
    await first.server.close();
    expect(alive(pidOf(before))).toBe(false);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toMatchObject({ version: 1, groups: { 'grp-durable': { servers: [{ instanceNameOnToolbox: 'durable1' }] } } });
    expect(readdirSync(path.dirname(stateFile))).toEqual(['dtma-state.json']);

    const second = await startDtma({ stateFile });
    try {
      const back = await waitFor('durable1 running again', async () => {
        const entry = await instance(second, 'grp-durable', 'durable1');
        return entry?.status === 'running' && entry.healthStatus === 'healthy' ? entry : undefined;
      });
      expect(back.containerId).not.toBe(before?.containerId);
      const client = await connect(second, 'durable1');
      const tools = await client.listTools();
      expect(tools.tools.map((tool) => tool.name)).toContain('read_graph');
      await client.close();

      // Removal is durable too: a third start finds nothing.
      expect((await request(second.url, '/mcp/groups/grp-durable', { method: 'DELETE' })).status).toBe(200);
    } finally {
      await second.server.close();
    }
    const third = await startDtma({ stateFile });
    try {
      expect((await status(third)).groups).toEqual({});
    } finally {
      await third.server.close();
    }
    expect(mcpChildren()).toEqual([]);
  });

  it('refuses to start on a state file it cannot read, rather than forget its groups', async () => {
    const stateFile = path.join(scratch, 'corrupt-state.json');
    writeFileSync(stateFile, '{"version":1,"groups":{"g":{"servers":[{}]}}}');
    await expect(startDtma({ stateFile })).rejects.toThrow(/corrupt-state.json is not valid: groups.g.sharedNetworking/);
    writeFileSync(stateFile, '{"version":1,');
    await expect(startDtma({ stateFile })).rejects.toThrow(/not valid JSON/);
  });
});

// ---------------------------------------------------------------- fault driver

describe('local DTMA with the fault driver', { timeout: 30_000 }, () => {
  let dtma: Dtma;

  beforeAll(async () => {
    dtma = await startDtma({ faults: true });
  });

  afterAll(async () => {
    await dtma.server.close();
  });

  async function setFault(fault: Record<string, unknown>): Promise<void> {
    const reply = await request(dtma.url, '/__faults', { method: 'POST', body: fault });
    expect(reply.status).toBe(200);
  }

  async function clearFault(): Promise<void> {
    expect((await request(dtma.url, '/__faults', { method: 'DELETE' })).status).toBe(200);
  }

  it('guards the admin routes with the token, and they exist only with the fault driver', async () => {
    expect((await request(dtma.url, '/__faults', { method: 'POST', body: { status: 500 }, token: null })).status).toBe(401);
    expect((await request(dtma.url, '/__requests', { token: 'wrong' })).status).toBe(401);
    const plain = await startDtma();
    try {
      expect((await request(plain.url, '/__faults', { method: 'POST', body: { status: 500 } })).status).toBe(404);
      expect((await request(plain.url, '/__requests')).status).toBe(404);
    } finally {
      await plain.server.close();
    }
    const bad = await request(dtma.url, '/__faults', { method: 'POST', body: { latencyMs: -5 } });
    expect(bad.status).toBe(400);
    expect(ErrorResponseSchema.parse(bad.body).error).toContain('latencyMs');
  });

  it('adds latency', async () => {
    await setFault({ latencyMs: 400, routes: ['GET /mcp/status'] });
    const started = Date.now();
    const reply = await request(dtma.url, '/mcp/status');
    expect(reply.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    await clearFault();
    const quick = Date.now();
    await request(dtma.url, '/mcp/status');
    expect(Date.now() - quick).toBeLessThan(390);
  });

  it('answers a 5xx instead of handling the request', async () => {
    await setFault({ status: 503 });
    const reply = await request(dtma.url, '/mcp/groups', { method: 'POST', body: { groupId: 'grp-x', servers: [memorySpec('x1')] } });
    expect(reply.status).toBe(503);
    expect(ErrorResponseSchema.parse(reply.body).error).toContain('503');
    await clearFault();
    expect((await status(dtma)).groups['grp-x']).toBeUndefined();
  });

  it('hangs: the client has to time out', async () => {
    await setFault({ hang: true, routes: ['/mcp/status'] });
    const started = Date.now();
    await expect(request(dtma.url, '/mcp/status', { timeoutMs: 300 })).rejects.toThrow(/client timeout/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    await clearFault();
  });

  it('drops the connection without an answer', async () => {
    await setFault({ drop: true, routes: ['DELETE /mcp/groups'] });
    await expect(request(dtma.url, '/mcp/groups/grp-any', { method: 'DELETE' })).rejects.toThrow(/socket hang up|ECONNRESET/);
    // Other routes are untouched.
    expect((await request(dtma.url, '/mcp/status')).status).toBe(200);
    await clearFault();
  });

  it('answers 201 with every server in data.errors', async () => {
    await setFault({ errors201: true });
    const answer = await deploy(dtma, { groupId: 'grp-e', servers: [memorySpec('e1'), memorySpec('e2')] });
    expect(answer).toMatchObject({ success: false, data: { deployedServers: [], successfulDeployments: 0, totalServers: 2 } });
    expect(Object.keys(answer.data.errors).sort()).toEqual(['e1', 'e2']);
    expect((await status(dtma)).groups['grp-e']).toBeUndefined();
    await clearFault();
  });

  it('applies a fault to the next N requests only', async () => {
    await setFault({ status: 500, count: 2, routes: ['GET /mcp/status'] });
    const state = FaultStateResponseSchema.parse((await request(dtma.url, '/__faults')).body);
    expect(state.data).toMatchObject({ fault: { status: 500, count: 2 }, remaining: 2 });
    const statuses = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await request(dtma.url, '/mcp/status')).status);
    expect(statuses).toEqual([500, 500, 200]);
    expect(FaultStateResponseSchema.parse((await request(dtma.url, '/__faults')).body).data.fault).toBeNull();
  });

  it('keeps a request log that shows what arrived, once', async () => {
    expect((await request(dtma.url, '/__requests', { method: 'DELETE' })).status).toBe(200);
    await setFault({ status: 502, count: 1, routes: ['POST /mcp/groups'] });
    const body = { groupId: 'grp-log', servers: [memorySpec('log1')] };
    const failed = await request(dtma.url, '/mcp/groups', { method: 'POST', body, headers: { 'idempotency-key': 'deploy-log1-1' } });
    expect(failed.status).toBe(502);
    const retried = await request(dtma.url, '/mcp/groups', { method: 'POST', body, headers: { 'idempotency-key': 'deploy-log1-2' } });
    expect(retried.status).toBe(201);
    await request(dtma.url, '/mcp/groups/grp-log?forceRemove=true', { method: 'DELETE' });

    const log = RequestLogResponseSchema.parse((await request(dtma.url, '/__requests')).body).data.requests;
    expect(log.map((entry) => [entry.method, entry.path, entry.idempotencyKey, entry.status, entry.fault])).toEqual([
      ['POST', '/mcp/groups', 'deploy-log1-1', 502, 'status 502'],
      ['POST', '/mcp/groups', 'deploy-log1-2', 201, null],
      ['DELETE', '/mcp/groups/grp-log?forceRemove=true', null, 200, null],
    ]);
    expect(log.filter((entry) => entry.idempotencyKey === 'deploy-log1-2')).toHaveLength(1);
    expect(log.every((entry) => !Number.isNaN(Date.parse(entry.time)))).toBe(true);
  });
});

// ---------------------------------------------------------------- the CLI

interface Cli {
  lines: string[];
  exited: Promise<{ code: number | null; stderr: string }>;
  url: Promise<string>;
  kill: (signal: NodeJS.Signals) => void;
}

function runCli(env: Record<string, string>): Cli {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(HERE, 'main.ts')], {
    cwd: REPOSITORY_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  let resolveUrl: (url: string) => void = () => undefined;
  const url = new Promise<string>((resolve) => {
    resolveUrl = resolve;
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text: string) => {
    for (const line of text.split('\n').filter(Boolean)) {
      lines.push(line);
      const match = /^dtma listening on (\S+) \(driver: \w+\)$/.exec(line);
      if (match?.[1]) resolveUrl(match[1]);
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr += text;
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => {
    child.once('exit', (code) => resolve({ code, stderr }));
  });
  return { lines, exited, url, kill: (signal) => child.kill(signal) };
}

describe('the dtma CLI (main.ts)', { timeout: 30_000 }, () => {
  it('exits 2 with a clear message without DTMA_TOKEN', async () => {
    const { code, stderr } = await runCli({}).exited;
    expect(code).toBe(2);
    expect(stderr).toContain('DTMA_TOKEN is required');
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`stops every child on ${signal}`, async () => {
      const cli = runCli({ DTMA_TOKEN: TOKEN, DTMA_PORT: '0', DTMA_DRIVER: signal === 'SIGINT' ? 'fault' : 'process' });
      const url = await Promise.race([
        cli.url,
        cli.exited.then(({ stderr }) => {
          throw new Error(`dtma exited before listening: ${stderr}`);
        }),
      ]);
      expect(cli.lines[0]).toBe(`dtma listening on ${url} (driver: ${signal === 'SIGINT' ? 'fault' : 'process'})`);
      const dtma = { url };
      await deploy(dtma, { groupId: 'grp-cli', servers: [memorySpec(`cli-${signal.toLowerCase()}`)] });
      const pid = pidOf(await instance(dtma, 'grp-cli', `cli-${signal.toLowerCase()}`));
      expect(alive(pid)).toBe(true);
      expect(cli.lines.some((line) => / POST \/mcp\/groups 201 \d+ms$/.test(line))).toBe(true);

      cli.kill(signal);
      expect((await cli.exited).code).toBe(0);
      await waitFor('the MCP child to be gone', async () => (alive(pid) ? undefined : true), 3000);
    });
  }
});
