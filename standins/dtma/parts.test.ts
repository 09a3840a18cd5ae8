/**
 * The parts of the local DTMA, each alone: npm image resolution, the stdio
 * child, the state file, status reporting, deploy ordering, the request guard
 * and the relay's log-level rules. Real files, real processes; no mocks.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { ServerSpecSchema } from './contract.js';
import { DriverError } from './driver.js';
import { meetsLogLevel, mostVerboseLevel, relayedCapabilities, relayedMethods, unwrapUpstreamError } from './mcp-relay.js';
import { REPOSITORY_ROOT, resolveNpmImage } from './npm-image.js';
import { canonicalJson } from './process-driver.js';
import { allowedHostsFor, createRequestGuard } from './request-guard.js';
import { ordered, runPool } from './routes.js';
import { createStateWriter, readState, type StateFile } from './state-file.js';
import { collectiveStatus, instanceStatus, type InstanceView } from './status-report.js';
import { spawnStdioChild } from './stdio-child.js';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'dtma-parts-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function fakePackage(name: string, manifest: Record<string, unknown>, files: string[] = []): string {
  const root = mkdtempSync(path.join(scratch, 'pkgroot-'));
  const dir = path.join(root, 'node_modules', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.2.3', ...manifest }));
  for (const file of files) writeFileSync(path.join(dir, file), '');
  return root;
}

function refusal(run: () => unknown): DriverError {
  try {
    run();
  } catch (error) {
    if (error instanceof DriverError) return error;
    throw error;
  }
  throw new Error('expected a DriverError');
}

describe('npm image resolution (npm-image.ts)', () => {
  it('resolves an installed package to its bin, with or without its exact version', () => {
    const version = (JSON.parse(readFileSync(path.join(REPOSITORY_ROOT, 'node_modules/@modelcontextprotocol/server-memory/package.json'), 'utf8')) as { version: string }).version;
    const plain = resolveNpmImage('npm:@modelcontextprotocol/server-memory');
    expect(plain).toMatchObject({ packageName: '@modelcontextprotocol/server-memory', version });
    expect(plain.binPath.startsWith(path.join(REPOSITORY_ROOT, 'node_modules', '@modelcontextprotocol/server-memory') + path.sep)).toBe(true);
    expect(resolveNpmImage(`npm:@modelcontextprotocol/server-memory@${version}`).binPath).toBe(plain.binPath);
  });

  it('refuses what it cannot run, as invalid, never downloading', () => {
    for (const image of ['docker.io/library/nginx', 'npm:../../etc', 'npm:Upper', 'npm:@scope/../x']) {
      expect(refusal(() => resolveNpmImage(image)).kind, image).toBe('invalid');
    }
    expect(refusal(() => resolveNpmImage('npm:not-installed-anywhere-42')).message).toMatch(/not installed/);
    expect(refusal(() => resolveNpmImage('npm:@modelcontextprotocol/server-memory@0.0.1')).message).toMatch(/installed at version/);
  });

  it('picks the bin: the only one, the one named like the package, or the one the caller names', () => {
    const several = fakePackage('several', { bin: { other: 'a.js', several: 'b.js' } }, ['a.js', 'b.js']);
    expect(path.basename(resolveNpmImage('npm:several', several).binPath)).toBe('b.js');
    expect(path.basename(resolveNpmImage('npm:several', several, 'other').binPath)).toBe('a.js');
    const ambiguous = fakePackage('ambiguous', { bin: { x: 'a.js', y: 'b.js' } }, ['a.js', 'b.js']);
    expect(refusal(() => resolveNpmImage('npm:ambiguous', ambiguous)).message).toMatch(/name one with baseConfigOverrideJson.bin/);
    const escaping = fakePackage('escaping', { bin: '../../../outside.js' });
    expect(refusal(() => resolveNpmImage('npm:escaping', escaping)).message).toMatch(/does not exist inside the package/);
    const none = fakePackage('none', {});
    expect(refusal(() => resolveNpmImage('npm:none', none)).message).toMatch(/no bin/);
  });
});

describe('the stdio child (stdio-child.ts)', () => {
  it('speaks MCP with a real server from npm and stops it with SIGTERM', async () => {
    const child = await spawnStdioChild({
      command: process.execPath,
      args: [resolveNpmImage('npm:@modelcontextprotocol/server-memory').binPath],
      env: { PATH: process.env.PATH ?? '', MEMORY_FILE_PATH: path.join(scratch, 'memory.jsonl') },
      cwd: scratch,
    });
    const client = new Client({ name: 'parts-test', version: '1.0.0' });
    await client.connect(child.transport);
    const tools = await client.listTools();
    expect(tools.tools.map((tool) => tool.name)).toContain('create_entities');
    await child.terminate(5000);
    expect(child.stopping).toBe(true);
    expect(child.exited()).not.toBeNull();
  });

  it('reads one message per line: split chunks and characters, CRLF, several per chunk; a line that is not JSON-RPC is reported and skipped', async () => {
    // The first message is cut inside a three-byte character and its halves written 50 ms apart.
    const script = `
      const first = Buffer.from(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'caf\u00e9 \u2713' } }) + '\\n');
      const cut = first.indexOf(Buffer.from('\u2713')) + 1;
      process.stdout.write('server starting\\n');
      process.stdout.write(first.subarray(0, cut));
      setTimeout(() => {
        process.stdout.write(first.subarray(cut));
        process.stdout.write('{"not":"json-rpc"}\\r\\n\\n' + JSON.stringify({ jsonrpc: '2.0', id: 1, result: {} }) + '\\r\\n' + JSON.stringify({ jsonrpc: '2.0', id: 2, result: { n: 2 } }) + '\\n');
      }, 50);
      setInterval(() => {}, 1000);`;
    const child = await spawnStdioChild({ command: process.execPath, args: ['-e', script], env: {}, cwd: scratch });
    const messages: unknown[] = [];
    const errors: string[] = [];
    child.transport.onmessage = (message) => messages.push(message);
    child.transport.onerror = (error) => errors.push(error.message);
    await child.transport.start();
    while (messages.length < 3) await new Promise((resolve) => setTimeout(resolve, 20));
    await child.terminate(0);
    expect(messages).toEqual([
      { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'caf\u00e9 \u2713' } },
      { jsonrpc: '2.0', id: 1, result: {} },
      { jsonrpc: '2.0', id: 2, result: { n: 2 } },
    ]);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/JSON/);
    expect(errors[1]).toBe('not a JSON-RPC message: {"not":"json-rpc"}');
  });

  it('explains an exit with its code and stderr tail, and SIGKILLs a child that ignores SIGTERM', async () => {
    const crash = await spawnStdioChild({ command: process.execPath, args: ['-e', 'console.error("boom at start"); process.exit(3)'], env: {}, cwd: scratch });
    const exit = await crash.exit;
    expect(crash.describeExit(exit)).toBe('process exited with code 3; stderr: boom at start');

    const stubborn = await spawnStdioChild({
      command: process.execPath,
      args: ['-e', 'process.on("SIGTERM", () => {}); console.error("ready"); setInterval(() => {}, 1000)'],
      env: {},
      cwd: scratch,
    });
    while (!stubborn.stderrTail().includes('ready')) await new Promise((resolve) => setTimeout(resolve, 20));
    await stubborn.terminate(200);
    expect(stubborn.exited()).toEqual({ code: null, signal: 'SIGKILL' });
  });
});

describe('the state file (state-file.ts)', () => {
  const spec = ServerSpecSchema.parse({ accountToolInstanceId: 'a', instanceNameOnToolbox: 'n', dockerImageUrl: 'npm:x', environmentVariables: { SECRET: 's' } });

  it('writes the latest snapshot, mode 0600, and reads it back', async () => {
    const file = path.join(scratch, 'state', 'dtma.json');
    let current: StateFile = { version: 1, groups: {} };
    const writer = createStateWriter(file, () => current);
    current = { version: 1, groups: { g1: { sharedNetworking: false, servers: [spec] } } };
    const first = writer.save();
    current = { version: 1, groups: { g2: { sharedNetworking: true, servers: [spec] } } };
    await Promise.all([first, writer.save()]);
    expect(await readState(file)).toEqual(current);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('reads nothing from a missing file and refuses a file it cannot parse', async () => {
    expect(await readState(path.join(scratch, 'missing.json'))).toBeNull();
    const broken = path.join(scratch, 'broken.json');
    writeFileSync(broken, '{"version": 1, "groups": {"g": {"servers": [{}]}}}');
    await expect(readState(broken)).rejects.toThrow(/is not valid: groups.g/);
    writeFileSync(broken, 'not json');
    await expect(readState(broken)).rejects.toThrow(/not valid JSON/);
  });
});

describe('status reporting (status-report.ts)', () => {
  const view = (status: InstanceView['status'], health: InstanceView['health'] = 'unknown', launches = 1): InstanceView => ({
    name: 'n',
    spec: { accountToolInstanceId: 'a' },
    status,
    health,
    containerId: null,
    startTime: null,
    lastRestartTime: null,
    lastHealthCheck: null,
    errorMessage: null,
    launches,
  });

  it('derives the collective status of a group', () => {
    expect(collectiveStatus([view('running', 'healthy'), view('starting')])).toBe('initializing');
    expect(collectiveStatus([view('running', 'healthy'), view('running', 'healthy')])).toBe('healthy');
    expect(collectiveStatus([view('running', 'healthy'), view('error', 'unhealthy')])).toBe('degraded');
    expect(collectiveStatus([view('running', 'unhealthy')])).toBe('failed');
    expect(collectiveStatus([])).toBe('failed');
  });

  it('counts restarts, not the first start, and names the endpoint under the base URL', () => {
    expect(instanceStatus(view('running', 'healthy', 3), 'http://dtma:1').restartCount).toBe(2);
    expect(instanceStatus(view('pending', 'unknown', 0), null)).toMatchObject({ restartCount: 0, mcpEndpoint: '/mcp/servers/n/mcp' });
    expect(instanceStatus(view('running'), 'http://dtma:1').mcpEndpoint).toBe('http://dtma:1/mcp/servers/n/mcp');
  });

  it('treats the same spec with keys in another order as the same deployment', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: undefined } })).toBe(canonicalJson({ a: { d: [1, { x: 1, y: 2 }] }, b: 1 }));
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: '1' }));
  });
});

describe('deploy ordering (routes.ts)', () => {
  const spec = (name: string) => ServerSpecSchema.parse({ accountToolInstanceId: name, instanceNameOnToolbox: name, dockerImageUrl: 'npm:x' });

  it('puts the dependency order first and keeps the rest as sent', () => {
    const names = ordered([spec('a'), spec('b'), spec('c'), spec('d')], ['c', 'a']).map((s) => s.instanceNameOnToolbox);
    expect(names).toEqual(['c', 'a', 'b', 'd']);
  });

  it('never runs more than the limit at once', async () => {
    let active = 0;
    let peak = 0;
    const done: number[] = [];
    await runPool([1, 2, 3, 4, 5, 6, 7], 3, async (item) => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((resolve) => setTimeout(resolve, 10));
      active--;
      done.push(item);
    });
    expect(peak).toBe(3);
    expect(done.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});

describe('the request guard (request-guard.ts)', () => {
  const req = (headers: Record<string, string>): IncomingMessage => ({ headers }) as unknown as IncomingMessage;
  const guard = createRequestGuard({
    token: 'tok',
    allowedHosts: allowedHostsFor('127.0.0.1', 30007, 'https://dtma.example.com', ['toolbox.internal:8443']),
    allowedOrigins: new Set(['http://localhost:6274']),
  });

  it('accepts its own host names and refuses any other with 403', () => {
    for (const host of ['127.0.0.1:30007', 'localhost:30007', '[::1]:30007', 'dtma.example.com', 'dtma.example.com:443', 'TOOLBOX.internal:8443']) {
      expect(guard.checkOrigin(req({ host })), host).toBeNull();
    }
    for (const host of ['evil.example:30007', '127.0.0.1:30008', 'localhost', '']) {
      expect(guard.checkOrigin(req(host ? { host } : {}))?.status, host).toBe(403);
    }
  });

  it('accepts no Origin (non-browser clients) and the allowed ones only', () => {
    expect(guard.checkOrigin(req({ host: '127.0.0.1:30007', origin: 'http://localhost:6274' }))).toBeNull();
    expect(guard.checkOrigin(req({ host: '127.0.0.1:30007', origin: 'http://evil.example' }))).toMatchObject({ status: 403 });
    expect(guard.checkOrigin(req({ host: '127.0.0.1:30007', origin: 'null' }))).toMatchObject({ status: 403 });
  });

  it('checks the bearer token', () => {
    expect(guard.checkToken(req({ authorization: 'Bearer tok' }))).toBeNull();
    expect(guard.checkToken(req({ authorization: 'Bearer tok2' }))).toMatchObject({ status: 401, message: 'invalid bearer token' });
    expect(guard.checkToken(req({}))).toMatchObject({ status: 401, message: 'missing bearer token' });
  });
});

describe('relay rules (mcp-relay.ts)', () => {
  it('filters log messages by the level each session asked for, and asks the child for the most verbose', () => {
    expect(meetsLogLevel('debug', undefined)).toBe(true);
    expect(meetsLogLevel('debug', 'info')).toBe(false);
    expect(meetsLogLevel('error', 'warning')).toBe(true);
    expect(mostVerboseLevel(['error', undefined, 'notice', 'warning'])).toBe('notice');
    expect(mostVerboseLevel([undefined])).toBeUndefined();
  });

  it('passes an upstream error on with its code, data and message, without a second prefix', () => {
    const relayed = unwrapUpstreamError(new McpError(-32602, 'MCP error -32602: Tool x not found', { hint: 1 })) as Error & { code: number; data: unknown };
    expect(relayed.message).toBe('MCP error -32602: Tool x not found');
    expect(relayed.code).toBe(-32602);
    expect(relayed.data).toEqual({ hint: 1 });
    const plain = new Error('not an MCP error');
    expect(unwrapUpstreamError(plain)).toBe(plain);
  });

  it('offers only the capabilities it relays', () => {
    expect(relayedCapabilities({ tools: { listChanged: true }, logging: {}, experimental: { x: {} }, tasks: {} })).toEqual({ tools: { listChanged: true }, logging: {} });
  });

  it('relays the methods of the capabilities offered, and no other', () => {
    expect([...relayedMethods({ tools: {}, logging: {} })].sort()).toEqual(['tools/call', 'tools/list']);
    expect([...relayedMethods({ resources: {}, prompts: {} })].sort()).toEqual(['prompts/get', 'prompts/list', 'resources/list', 'resources/read', 'resources/templates/list']);
    expect([...relayedMethods({ resources: { subscribe: true }, completions: {} })].sort()).toEqual([
      'completion/complete',
      'resources/list',
      'resources/read',
      'resources/subscribe',
      'resources/templates/list',
      'resources/unsubscribe',
    ]);
  });
});
