/**
 * The local DTMA beyond its routes: health checks, the state file across
 * restarts, the fault driver and the CLI. Real processes, no mocks.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import { ErrorResponseSchema, FaultStateResponseSchema, RequestLogResponseSchema } from './contract.js';
import {
  DTMA_DIR,
  MEMORY,
  MEMORY_VERSION,
  REPOSITORY_ROOT,
  TOKEN,
  alive,
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
  waitFor,
  type Dtma,
} from '../../test/support/dtma.ts';
const scratch = scratchDir();

// ---------------------------------------------------------------- health

describe('local DTMA health checks', { timeout: 30_000 }, () => {
  it('marks a server that stops answering pings unhealthy, and healthy again when it answers', async () => {
    const dtma = await startDtma({ healthIntervalMs: 150, pingTimeoutMs: 300 });
    try {
      await deploy(dtma, { groupId: 'grp-frozen', servers: [memorySpec('frozen1', scratch)] });
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
    await deploy(first, { groupId: 'grp-durable', servers: [{ ...memorySpec('durable1', scratch), dockerImageUrl: `${MEMORY}@${MEMORY_VERSION}` }] });
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
    const reply = await request(dtma.url, '/mcp/groups', { method: 'POST', body: { groupId: 'grp-x', servers: [memorySpec('x1', scratch)] } });
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
    const answer = await deploy(dtma, { groupId: 'grp-e', servers: [memorySpec('e1', scratch), memorySpec('e2', scratch)] });
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
    const body = { groupId: 'grp-log', servers: [memorySpec('log1', scratch)] };
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
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(DTMA_DIR, 'main.ts')], {
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
      await deploy(dtma, { groupId: 'grp-cli', servers: [memorySpec(`cli-${signal.toLowerCase()}`, scratch)] });
      const pid = pidOf(await instance(dtma, 'grp-cli', `cli-${signal.toLowerCase()}`));
      expect(alive(pid)).toBe(true);
      expect(cli.lines.some((line) => / POST \/mcp\/groups 201 \d+ms$/.test(line))).toBe(true);

      cli.kill(signal);
      expect((await cli.exited).code).toBe(0);
      await waitFor('the MCP child to be gone', async () => (alive(pid) ? undefined : true), 3000);
    });
  }
});
