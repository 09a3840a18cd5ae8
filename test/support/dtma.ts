/**
 * Helpers of the local DTMA's suites (standins/dtma/*.test.ts): a DTMA on a free port, requests
 * on fresh connections, the server specs they deploy, and the child processes they leave.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  DeployGroupResponseSchema,
  StatusResponseSchema,
  mcpEndpointUrl,
  type DeployGroupRequestInput,
  type InstanceStatus,
  type ServerSpecInput,
} from '../../standins/dtma/contract.ts';
import { createFaultDriver } from '../../standins/dtma/fault-driver.ts';
import { createProcessDriver, type ProcessDriverOptions } from '../../standins/dtma/process-driver.ts';
import { createDtmaServer, type DtmaServer } from '../../standins/dtma/server.ts';
import { waitFor as pollUntil } from './db.ts';

export const TOKEN = 'test-token-7d1f0c9a';
export const MEMORY = 'npm:@modelcontextprotocol/server-memory';
export const EVERYTHING = 'npm:@modelcontextprotocol/server-everything';
export const REPOSITORY_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The local DTMA's folder. */
export const DTMA_DIR = path.join(REPOSITORY_ROOT, 'standins', 'dtma');
export const MEMORY_VERSION = (
  JSON.parse(readFileSync(path.join(REPOSITORY_ROOT, 'node_modules/@modelcontextprotocol/server-memory/package.json'), 'utf8')) as {
    version: string;
  }
).version;

/** A scratch folder for one test file (memory files, state files); removed after the file's tests. */
export function scratchDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dtma-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Reply {
  status: number;
  body: unknown;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  rawBody?: string;
  token?: string | null;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** One request on a fresh connection (agent: false), so that a dropped socket affects only this request. */
export function request(baseUrl: string, pathname: string, options: RequestOptions = {}): Promise<Reply> {
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

export interface Dtma {
  server: DtmaServer;
  url: string;
}

export async function startDtma(options: { faults?: boolean } & ProcessDriverOptions = {}): Promise<Dtma> {
  const { faults, ...driverOptions } = options;
  const processDriver = createProcessDriver({ startTimeoutMs: 15_000, ...driverOptions });
  const driver = faults ? createFaultDriver(processDriver) : processDriver;
  const server = createDtmaServer({ token: TOKEN, driver, port: 0 });
  return { server, url: await server.listen() };
}

export function memorySpec(name: string, scratch: string): ServerSpecInput {
  return {
    accountToolInstanceId: `ati-${name}`,
    instanceNameOnToolbox: name,
    dockerImageUrl: MEMORY,
    mcpTransportType: 'stdio',
    environmentVariables: { MEMORY_FILE_PATH: path.join(scratch, `${name}.jsonl`) },
  };
}

export async function deploy(dtma: { url: string }, body: DeployGroupRequestInput) {
  const reply = await request(dtma.url, '/mcp/groups', { method: 'POST', body });
  expect(reply.status).toBe(201);
  return DeployGroupResponseSchema.parse(reply.body);
}

export async function status(dtma: { url: string }) {
  const reply = await request(dtma.url, '/mcp/status');
  expect(reply.status).toBe(200);
  return StatusResponseSchema.parse(reply.body).data;
}

export async function instance(dtma: { url: string }, groupId: string, name: string): Promise<InstanceStatus | undefined> {
  return (await status(dtma)).groups[groupId]?.instances[name];
}

/** Polls every 100 ms, 15 s by default: a DTMA starts Node processes. */
export function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  return pollUntil(what, probe, timeoutMs, 100);
}

export function pidOf(entry: InstanceStatus | undefined): number {
  const match = /^proc-(\d+)$/.exec(entry?.containerId ?? '');
  if (!match) throw new Error(`no pid in containerId ${entry?.containerId}`);
  return Number(match[1]);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids whose parent is this process, read from /proc. */
export function childPids(): number[] {
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

export function mcpChildren(): number[] {
  return childPids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('@modelcontextprotocol/server-');
    } catch {
      return false;
    }
  });
}

export async function connect(dtma: Dtma, name: string): Promise<Client> {
  const client = new Client({ name: 'dtma-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpEndpointUrl(dtma.url, name)), {
    requestInit: { headers: { authorization: `Bearer ${TOKEN}` } },
  });
  await client.connect(transport);
  return client;
}

export function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return content.map((item) => item.text ?? '').join('\n');
}
