/**
 * What the chat and agents benchmarks stand on: a new organization on the stack's DTMA, 5 real MCP
 * servers from npm deployed through the control plane (2 everything, 2 memory, 1 filesystem), and
 * agents each granted all 5 (full_access). Each server comes with the one tool call a benchmark
 * makes on it. `close()` removes the servers and deletes the agents, so that runs do not pile up
 * agents (the database's checks would then read a larger table each run). Benchmarks only.
 *
 * Environment: DATABASE_URL (default the `npm start` stack's), DTMA_URL, DTMA_TOKEN (default
 * .local/dtma-token). The load shape is shared too: LEVELS, MIN_REQUESTS, waves().
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import type { JsonObject } from '../../client/src/schemas.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The stack's database (DATABASE_URL, by default the `npm start` stack's). */
export const databaseUrl: string = (process.env.DATABASE_URL ??= 'postgresql://postgres:postgres@127.0.0.1:54322/postgres?sslmode=disable');
const { createAgent, createOrganization, deployServer, removeServers, testPool } = await import('../../test/support/stack.ts');

export interface BenchServer {
  id: string;
  catalog: string;
  /** The tool a benchmark calls on this server, and its arguments. */
  tool: string;
  args: Record<string, unknown>;
}

export interface BenchDeployment {
  pool: pg.Pool;
  org: Awaited<ReturnType<typeof createOrganization>>;
  /** Highest priority first (the order the model and tools/list see them in). */
  servers: BenchServer[];
  /** Creates `count` agents, each granted every server. */
  createAgents(count: number, name: string): Promise<string[]>;
  close(): Promise<void>;
}

/** Concurrency levels and the least number of requests per level: LEVELS (default 1,10,100), MIN_REQUESTS (default 20). */
export const levels = (process.env.LEVELS ?? '1,10,100').split(',').map(Number);
export const minRequests = Number(process.env.MIN_REQUESTS ?? 20);
/**
 * Requests a run makes: one warm-up, then per level a first wave of <level> requests (the
 * processes open their pools' connections, up to that concurrency, and warm up; reported apart)
 * and whole waves of that level until MIN_REQUESTS.
 */
export const requestsPerRun = 1 + levels.reduce((sum, level) => sum + level + Math.ceil(minRequests / level) * level, 0);

export interface Waves<T> {
  /** The first wave: every connection a pool opens for this concurrency is opened here. */
  first: { samples: T[]; wallMs: number };
  /** Then waves until at least MIN_REQUESTS: the steady state at this concurrency. */
  samples: T[];
  wallMs: number;
}

/** A first wave of `level` concurrent requests, then waves of `level` until at least MIN_REQUESTS were made. */
export async function waves<T>(level: number, one: () => Promise<T>): Promise<Waves<T>> {
  const wave = (): Promise<T[]> => Promise.all(Array.from({ length: level }, one));
  let started = performance.now();
  const first = { samples: await wave(), wallMs: performance.now() - started };
  const samples: T[] = [];
  started = performance.now();
  while (samples.length < minRequests) samples.push(...(await wave()));
  return { first, samples, wallMs: performance.now() - started };
}

/** The variables among `names` that are set in this process's environment, to pass on to an entry (its own default otherwise). */
export function passedOn(...names: string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((name) => (process.env[name] ? [[name, process.env[name] as string]] : [])));
}

/** p-th percentile (nearest rank) of the values. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

export async function deployBench(): Promise<BenchDeployment> {
  const dtmaUrl = process.env.DTMA_URL ?? 'http://127.0.0.1:30000';
  const dtmaToken = process.env.DTMA_TOKEN ?? readFileSync(path.join(root, '.local', 'dtma-token'), 'utf8').trim();
  const pool = testPool();
  const org = await createOrganization(pool, { url: dtmaUrl, token: dtmaToken });
  const tmp = (n: number): string => path.join(os.tmpdir(), `bench-${process.pid}-${n}.jsonl`);
  const specs: { catalog: string; tool: string; args: Record<string, unknown>; configuration?: JsonObject }[] = [
    { catalog: 'everything', tool: 'echo', args: { message: 'bench' } },
    { catalog: 'memory', tool: 'read_graph', args: {}, configuration: { env: { MEMORY_FILE_PATH: tmp(1) } } },
    { catalog: 'filesystem', tool: 'list_allowed_directories', args: {}, configuration: { args: [os.tmpdir()] } },
    { catalog: 'everything', tool: 'echo', args: { message: 'bench 2' } },
    { catalog: 'memory', tool: 'read_graph', args: {}, configuration: { env: { MEMORY_FILE_PATH: tmp(2) } } },
  ];
  console.log(`deploying ${specs.length} MCP servers through the control plane onto ${dtmaUrl} ...`);
  // Distinct priorities: the n-th server listed with a tool of a name is the n-th such spec.
  // One after the other: five npm servers starting at once can outlast a deploy's timeout on a small machine.
  const servers: BenchServer[] = [];
  const agents: string[] = [];
  try {
    for (const [i, spec] of specs.entries()) {
      const id = await deployServer(pool, org, { catalog: spec.catalog, priority: 500 - i, ...(spec.configuration ? { configuration: spec.configuration } : {}) });
      servers.push({ id, catalog: spec.catalog, tool: spec.tool, args: spec.args });
    }
  } catch (error) {
    await removeServers(pool, org, servers.map((s) => s.id));
    await pool.end();
    throw error;
  }
  return {
    pool,
    org,
    servers,
    async createAgents(count, name) {
      console.log(`creating ${count} agents ...`);
      const created: string[] = [];
      for (let i = 0; i < count; i++) {
        const agentId = await createAgent(pool, org.organizationId, org.ownerId, `${name} ${i}`);
        agents.push(agentId);
        for (const server of servers) await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: server.id, p_permission_scope: 'full_access' });
        created.push(agentId);
      }
      return created;
    },
    async close() {
      try {
        await removeServers(pool, org, servers.map((s) => s.id));
        await pool.query('delete from public.agents where id = any($1)', [agents]);
      } finally {
        await pool.end();
      }
    },
  };
}
