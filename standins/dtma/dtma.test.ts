/**
 * The local DTMA, tested as callers meet it: a real HTTP server on a free
 * port, real MCP servers from node_modules as child processes, the official
 * MCP client over Streamable HTTP. No mocks. The health checks, the state
 * file, the fault driver and the CLI are in dtma-ops.test.ts.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  ErrorResponseSchema,
  GroupHealthResponseSchema,
  LivenessResponseSchema,
  RefreshCredentialsResponseSchema,
  RemoveGroupResponseSchema,
  RestartServerResponseSchema,
  type ServerSpecInput,
} from './contract.js';
import { createProcessDriver } from './process-driver.js';
import { createDtmaServer } from './server.js';
import {
  EVERYTHING,
  MEMORY,
  MEMORY_VERSION,
  TOKEN,
  alive,
  childPids,
  connect,
  deploy,
  instance,
  mcpChildren,
  memorySpec,
  pidOf,
  request,
  scratchDir,
  startDtma,
  status,
  textOf,
  waitFor,
  type Dtma,
} from '../../test/support/dtma.ts';

const scratch = scratchDir();
// The DTMA's own environment holds its token, as under main.ts before it
// scrubs it: children must still never see it.
process.env.DTMA_TOKEN_UNDER_TEST = TOKEN;
afterAll(() => {
  delete process.env.DTMA_TOKEN_UNDER_TEST;
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
    const answer = await deploy(dtma, { groupId: 'grp-memory', servers: [memorySpec('mem1', scratch)] });
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
    const body = { groupId: 'grp-memory', servers: [memorySpec('mem1', scratch)] };
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
      body: { groupId: 'grp-bad', servers: [{ ...memorySpec('x', scratch), instanceNameOnToolbox: '../etc' }] },
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
        { ...memorySpec('old1', scratch), dockerImageUrl: `${MEMORY}@0.0.1` },
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
    const answer = await deploy(dtma, { groupId: 'grp-thief', servers: [memorySpec('mem1', scratch)] });
    expect(answer.data.errors.mem1).toMatch(/already deployed in group 'grp-memory'/);
    expect((await status(dtma)).groups['grp-thief']).toBeUndefined();
  });

  it('shows a killed child as error, and a re-POST brings it back', async () => {
    await deploy(dtma, { groupId: 'grp-crash', servers: [memorySpec('crash1', scratch)] });
    const before = await instance(dtma, 'grp-crash', 'crash1');
    process.kill(pidOf(before), 'SIGKILL');
    const crashed = await waitFor('crash1 in error', async () => {
      const entry = await instance(dtma, 'grp-crash', 'crash1');
      return entry?.status === 'error' ? entry : undefined;
    });
    expect(crashed).toMatchObject({ healthStatus: 'unhealthy', containerId: before?.containerId });
    expect(crashed.errorMessage).toMatch(/SIGKILL/);
    expect((await status(dtma)).groups['grp-crash']?.collectiveStatus).toBe('failed');

    const again = await deploy(dtma, { groupId: 'grp-crash', servers: [memorySpec('crash1', scratch)] });
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

