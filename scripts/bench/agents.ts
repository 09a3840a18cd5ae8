/**
 * Agents gathering their context through the agent MCP gateway, under load (not a test: it prints
 * figures). The gateway is the entry supabase/functions/mcp-gateway run by real Deno, as the chat
 * benchmark runs it; behind it, the 5 real MCP servers from npm of scripts/bench/deployment.ts on
 * the local DTMA. Each agent has its own API key (created before the clock starts) and does what an
 * agent runtime does with the official MCP SDK:
 *
 *   connect  an MCP client session to <gateway>/mcp with its key (initialize, initialized)
 *   list     tools/list: every tool of the 5 servers its grants allow, decided by the database
 *   call     one tools/call, on the server of its turn (round robin over the 5)
 *
 * timed end to end from the connect to the call's result; the session is then ended (DELETE,
 * not timed, awaited before the next wave).
 *
 *   npm start    # or any stack: DATABASE_URL, DTMA_URL, DTMA_TOKEN
 *   npx tsx scripts/bench/agents.ts            # LEVELS=1,10,100 MIN_REQUESTS=20
 *
 * The gateway runs with its own pool size (GATEWAY_DB_POOL to try another). After one warm-up
 * agent, per level: a first wave of <level> concurrent agents, while the gateway's pool opens its
 * connections (reported apart), then waves of <level> until at least MIN_REQUESTS were made; each
 * agent of the run is a different one (no decision of an earlier request to reuse). The clients share one JSON Schema validator (client/src/chat/validator.ts):
 * real agents compile theirs on their own machines, not on the gateway's cores.
 */
import os from 'node:os';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { sharedValidator } from '../../client/src/chat/validator.ts';
import { SERVER_META_KEY, createAgentApiKey } from '../../client/src/gateway/index.ts';
import { databaseUrl, deployBench, levels, minRequests, passedOn, percentile, requestsPerRun, waves } from './deployment.ts';

const { JWT_SECRET } = await import('../../test/support/stack.ts');
const { startEdgeFunction } = await import('../../test/support/edge-function.ts');

const bench = await deployBench();
const agentIds = await bench.createAgents(requestsPerRun, 'bench context agent');
console.log(`creating ${agentIds.length} API keys ...`);
const keys: string[] = [];
for (const agentId of agentIds) keys.push((await createAgentApiKey(bench.org.ownerTransport, agentId, 'bench')).api_key);

const gateway = await startEdgeFunction('mcp-gateway', {
  SUPABASE_DB_URL: databaseUrl,
  JWT_SECRET,
  GATEWAY_LOG_FLUSH_MS: '100',
  ...passedOn('GATEWAY_DB_POOL'),
});

interface Sample {
  e2e: number;
  connect: number;
  list: number;
  call: number;
  ok: boolean;
}

let turn = 0;

async function oneAgent(): Promise<Sample> {
  const key = keys.pop() as string;
  const server = bench.servers[turn++ % bench.servers.length] as (typeof bench.servers)[number];
  const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } });
  const client = new Client({ name: 'bench-agent', version: '0.1.0' }, { capabilities: {}, jsonSchemaValidator: sharedValidator });
  const started = performance.now();
  try {
    await client.connect(transport);
    const connected = performance.now();
    const { tools } = await client.listTools();
    const listed = performance.now();
    // The gateway tags each listed tool with the id of its server.
    const name = tools.find((t) => t.name.endsWith(`__${server.tool}`) && t._meta?.[SERVER_META_KEY] === server.id)?.name;
    const result = name ? ((await client.callTool({ name, arguments: server.args })) as CallToolResult) : undefined;
    const done = performance.now();
    return { e2e: done - started, connect: connected - started, list: listed - connected, call: done - listed, ok: tools.length > 0 && result !== undefined && result.isError !== true };
  } catch (error) {
    console.error('agent failed:', error instanceof Error ? error.message : error);
    return { e2e: performance.now() - started, connect: 0, list: 0, call: 0, ok: false };
  } finally {
    await transport.terminateSession().catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}

const table: string[] = [];
const firstWaves: string[] = [];
/** A table row of one level's samples. */
function row(level: number, samples: Sample[], wall: number): string {
  const p50 = (pick: (s: Sample) => number): string => percentile(samples.map(pick), 50).toFixed(0);
  return (
    `| ${level} | ${samples.length} | ${samples.filter((s) => !s.ok).length} | ${p50((s) => s.e2e)} | ${percentile(samples.map((s) => s.e2e), 95).toFixed(0)} | ` +
    `${p50((s) => s.connect)} | ${p50((s) => s.list)} | ${p50((s) => s.call)} | ${((samples.length / wall) * 1000).toFixed(1)} |`
  );
}
try {
  await oneAgent(); // warm-up: Deno compiles, the pools connect, the upstream sessions open
  console.log(`measuring ${levels.join(', ')} concurrent agents ...`);
  for (const level of levels) {
    const { first, samples, wallMs } = await waves(level, oneAgent);
    firstWaves.push(row(level, first.samples, first.wallMs));
    table.push(row(level, samples, wallMs));
    console.log(`${table.at(-1)}   (first wave: ${firstWaves.at(-1)})`);
  }
} finally {
  await gateway.stop();
  await bench.close();
}
console.log(`\nagents through the gateway (Deno entry): connect, tools/list over 5 servers, one tools/call; at least ${minRequests} agents per level (${os.cpus().length} cores)`);
console.log('| concurrent agents | agents | failed | p50 ms | p95 ms | connect p50 ms | tools/list p50 ms | tools/call p50 ms | agents/s |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const line of table) console.log(line);
console.log('\nthe first wave of each level, while the gateway\'s pool opens its connections:');
for (const line of firstWaves) console.log(line);
