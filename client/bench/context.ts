/**
 * What the control plane adds to gathering an agent's MCP context, for 1, 5 and 10 servers:
 * the time of prepareMCPContextWithAccessControl minus the time of its slowest server (which
 * the caller would wait for anyway, connecting by hand), median and p95 over RUNS runs.
 *
 *   npm start    # or any stack: DATABASE_URL, DTMA_URL, DTMA_TOKEN
 *   npx tsx client/bench/context.ts
 *
 * Each run connects afresh (initialize, tools/resources/prompts lists, the database's filter),
 * as a chat function does per request. Real servers from npm (memory, filesystem, everything
 * in turn) on the local DTMA, deployed through the control plane; removed at the end.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
process.env.DATABASE_URL ??= `postgresql://postgres:postgres@127.0.0.1:${process.env.DB_PORT ?? '54322'}/postgres?sslmode=disable`;
const dtmaUrl = process.env.DTMA_URL ?? `http://127.0.0.1:${process.env.DTMA_PORT ?? '30000'}`;
const dtmaToken = process.env.DTMA_TOKEN ?? readFileSync(path.join(process.env.MCP_LOCAL_DIR ?? path.join(root, '.local'), 'dtma-token'), 'utf8').trim();
const runs = Number(process.env.RUNS ?? 30);
const sizes = (process.env.SIZES ?? '1,5,10').split(',').map(Number);

const { createMcpChat } = await import('../src/chat/index.ts');
const { closeMCPContext } = await import('../src/chat/registry.ts');
const { createAgent, createOrganization, deployServer, removeServers, testPool } = await import('../../test/support/stack.ts');

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

const catalogs = ['memory', 'filesystem', 'everything'] as const;
const configurations = {
  memory: (i: number) => ({ env: { MEMORY_FILE_PATH: path.join(os.tmpdir(), `bench-memory-${process.pid}-${i}.jsonl`) } }),
  filesystem: () => ({ args: [os.tmpdir()] }),
  everything: () => ({}),
};

const pool = testPool();
const org = await createOrganization(pool, { url: dtmaUrl, token: dtmaToken });
const agentId = await createAgent(pool, org.organizationId, org.ownerId, 'bench agent');
const largest = Math.max(...sizes);
console.log(`deploying ${largest} MCP servers through the control plane onto ${dtmaUrl} ...`);
const servers = await Promise.all(
  Array.from({ length: largest }, (_, i) => {
    const catalog = catalogs[i % catalogs.length] as (typeof catalogs)[number];
    return deployServer(pool, org, { catalog, priority: 100 + i, configuration: configurations[catalog](i) });
  }),
);
const chat = createMcpChat({
  transport: org.ownerTransport,
  endpointHeaders: () => ({ Authorization: `Bearer ${dtmaToken}` }),
  onBackgroundError: (error) => console.error('bookkeeping failed:', error),
});

const rows: string[][] = [];
try {
  let granted = 0;
  for (const size of sizes.sort((a, b) => a - b)) {
    for (; granted < size; granted++) {
      await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers[granted] as string, p_permission_scope: 'full_access' });
    }
    const totals: number[] = [];
    const slowest: number[] = [];
    const sums: number[] = [];
    for (let run = -3; run < runs; run++) {
      const started = performance.now();
      const context = await chat.prepareMCPContextWithAccessControl({ agentId, organizationId: org.organizationId });
      const total = performance.now() - started;
      await closeMCPContext(context);
      const failed = context.servers.filter((s) => s.status !== 'ok');
      if (failed.length > 0) throw new Error(`run ${run}: ${failed.map((s) => `${s.name} ${s.status} ${s.error?.message}`).join('; ')}`);
      if (run < 0) continue; // warm-up
      totals.push(total);
      slowest.push(Math.max(...context.servers.map((s) => s.durationMs)));
      sums.push(context.servers.reduce((sum, s) => sum + s.durationMs, 0));
    }
    const overheads = totals.map((t, i) => t - (slowest[i] as number));
    const ms = (v: number): string => v.toFixed(1);
    rows.push([
      String(size),
      ms(percentile(totals, 50)),
      ms(percentile(totals, 95)),
      ms(percentile(slowest, 50)),
      ms(percentile(sums, 50)),
      ms(percentile(overheads, 50)),
      ms(percentile(overheads, 95)),
    ]);
  }
} finally {
  await removeServers(pool, org, servers);
  await pool.end();
}

const header = ['servers', 'total p50', 'total p95', 'slowest p50', 'sum p50', 'overhead p50', 'overhead p95'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padStart(widths[i] as number)).join(' | ')} |`;
console.log(`\ncontext gathering, ${runs} runs each (ms; overhead = total - slowest server; sum = servers one after the other)\n`);
console.log(line(header));
console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const row of rows) console.log(line(row));
