/**
 * The gateway benchmark (not a test): `tools/call` through the agent MCP gateway against the same
 * call made directly to the upstream endpoint on the local DTMA, at 1, 10 and 50 concurrent
 * clients (each its own MCP session), then how long a revoke takes to be enforced.
 *
 *   npm start            # or any stack: DATABASE_URL, DTMA_URL and DTMA_TOKEN
 *   npx tsx scripts/bench/gateway.ts [--seconds 3] [--rounds 6] [--warmup 15] [--clients 1,10,50] [--revokes 50] [--cache on|off]
 *
 * Beside them, a bare HTTP relay (bytes forwarded, nothing read) between the same clients and the
 * same upstream: what one more HTTP hop parsed by node:http costs on this machine.
 *
 * It uses the demo of npm start (organization `demo`, its toolbox, the `demo-memory` server,
 * deployed if it is not running; one toolbox per DTMA, see the health sweep's known defect),
 * adds an agent of the demo user (read_only, with an API key), runs the gateway as npm start
 * does (its Node entry, in a process of its own, with its change listener) and the bare relay
 * each in a process of its own, and calls `read_graph` in a closed loop per client. It prints
 * p50/p99 per path, the added latency and the throughput ratio, and, for revokes, the time from
 * the revoke's commit to the first refused call (calls made one after the other; with the cache
 * on, a call may still pass until the database's announcement reaches the gateway: counted).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import pg from 'pg';
import { createAgentApiKey, slug } from '../../client/src/gateway/index.ts';
import { createRpc } from '../../client/src/rpc.ts';
import { createAgent, userTransport, waitForStatus } from '../../test/support/stack.ts';
import { startListening, stopStarted } from '../../test/support/process.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '6' }, warmup: { type: 'string', default: '15' }, clients: { type: 'string', default: '1,10,50' }, revokes: { type: 'string', default: '50' }, cache: { type: 'string', default: 'on' } },
});
// The SDK client's fetches each leave an abort listener on their session's signal until the
// request is collected (undici), so a session past 1,500 calls makes Node warn of a leak on
// every call until the next collection: those warnings are dropped, any other is printed.
process.removeAllListeners('warning');
process.on('warning', (warning) => {
  if (warning.name !== 'MaxListenersExceededWarning') console.warn(warning);
});
process.env.DATABASE_URL ??= 'postgresql://postgres:postgres@127.0.0.1:54322/postgres';
process.env.DTMA_URL ??= `http://127.0.0.1:${process.env.DTMA_PORT ?? 30000}`;
process.env.DTMA_TOKEN ??= readFileSync('.local/dtma-token', 'utf8').trim();
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const rounds = Math.max(1, Number(values.rounds));

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const f = (n: number): string => n.toFixed(2);

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const { rows: demo } = await pool.query<{ user_id: string; organization_id: string; server: string; status: string }>(
  `select u.id as user_id, o.id as organization_id, i.id as server, i.status::text as status
     from auth.users u, public.organizations o join public.account_tool_instances i on i.organization_id = o.id
    where u.email = 'demo@example.com' and o.slug = 'demo' and i.instance_name_on_toolbox = 'demo-memory'`,
);
if (!demo[0]) throw new Error('no demo: run npm start first');
const { user_id: demoUser, organization_id: organizationId, server } = demo[0];
const ownerTransport = await userTransport(pool, demoUser);
const owner = createRpc(ownerTransport);
if (demo[0].status !== 'running') {
  // Stopped or failed: deploy it. On its way, or briefly unhealthy after a start: wait for it.
  if (['pending', 'stopped', 'failed'].includes(demo[0].status)) await owner.manage_mcp_servers({ action: 'deploy', organization_id: organizationId, server_id: server });
  await waitForStatus(pool, server, 'running', 60_000);
}
const agentId = await createAgent(pool, organizationId, demoUser, `bench-agent-${Date.now()}`);
const org = { owner };
await owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: server, p_permission_scope: 'read_only' });
const { api_key: apiKey } = await createAgentApiKey(ownerTransport, agentId, 'bench');
const { rows } = await pool.query('select endpoint_url, instance_name_on_toolbox as name from public.account_tool_instances where id = $1', [server]);
const endpoint = String(rows[0]?.endpoint_url);
const tool = `${slug(String(rows[0]?.name))}__read_graph`;

// The gateway as npm start runs it (scripts/gateway/main.ts, its own process), remembering
// credentials and allowed calls until the database announces a change (--cache off: asking the
// database on every request and call); and the bare relay (scripts/bench/relay.ts).
const tsx = (script: string, ...args: string[]): [string, string[]] => [process.execPath, ['--import', 'tsx', script, ...args]];
const gatewayProcess = await startListening(...tsx('scripts/gateway/main.ts'), {
  GATEWAY_PORT: '0',
  DATABASE_URL: process.env.DATABASE_URL,
  ...(values.cache === 'off' ? { GATEWAY_CHANGE_LISTENER: 'off' } : {}),
});
const relayProcess = await startListening(...tsx('scripts/bench/relay.ts', endpoint), {}, /relay listening on (\S+)/);
const relayUrl = relayProcess.url;
const gatewayUrl = `${gatewayProcess.url}/mcp`;

async function client(url: string, token: string): Promise<Client> {
  const c = new Client({ name: 'bench', version: '1.0.0' });
  await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  return c;
}

/** CPU time (user + system) a process has used, in ms, from /proc (Linux; clock ticks of 10 ms). */
function cpuMs(pid: number | undefined): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

type Path = 'direct' | 'relay' | 'gateway';
interface Measured {
  latencies: number[];
  perSecond: number;
  cpuPerCall: number;
}

/**
 * One cell: `clients` sessions per path, each path warmed, then the measured loops taken in
 * turns (direct, bare relay, gateway, again, --rounds times, --seconds in all per path), so that
 * a change in the machine's speed during the cell (a busy neighbour on a shared host) weighs on
 * every path alike rather than on whichever ran then.
 */
const paths: Path[] = ['direct', 'relay', 'gateway'];
const open = { direct: () => client(endpoint, process.env.DTMA_TOKEN as string), relay: () => client(relayUrl, process.env.DTMA_TOKEN as string), gateway: () => client(gatewayUrl, apiKey) };
const name = { direct: 'read_graph', relay: 'read_graph', gateway: tool };

/**
 * Before the first cell, every path's processes run the call for --warmup seconds from 10
 * sessions at once, unmeasured: V8 runs a process's code in its interpreter and baseline tiers
 * first and optimizes each function once it has run often, so a gateway just started still gets
 * faster for thousands of calls (at 1 client, its added p50 fell from 2.2 ms over its first
 * 3,300 calls to 1.5 ms after 6,600). A gateway in service has long been past that.
 */
async function warmUp(): Promise<Record<Path, number>> {
  const calls = { direct: 0, relay: 0, gateway: 0 };
  for (const path of paths) {
    const warming = await Promise.all(Array.from({ length: 10 }, open[path]));
    const end = performance.now() + warmup * 1000;
    await Promise.all(
      warming.map(async (s) => {
        while (performance.now() < end) {
          await s.callTool({ name: name[path], arguments: {} });
          calls[path]++;
        }
      }),
    );
    await Promise.all(warming.map((s) => s.close()));
  }
  return calls;
}

async function measure(clients: number): Promise<Record<Path, Measured>> {
  // The CPU of the hop in its own process (the gateway, or the bare relay) per measured call.
  const hop = { direct: undefined, relay: relayProcess.child.pid, gateway: gatewayProcess.child.pid };
  const sessions = {} as Record<Path, Client[]>;
  for (const path of paths) sessions[path] = await Promise.all(Array.from({ length: clients }, open[path]));
  const loop = (path: Path, ms: number, latencies?: number[]): Promise<unknown> => {
    const end = performance.now() + ms;
    return Promise.all(
      sessions[path].map(async (s) => {
        while (performance.now() < end) {
          const t = performance.now();
          await s.callTool({ name: name[path], arguments: {} });
          latencies?.push(performance.now() - t);
        }
      }),
    );
  };
  // Warm, the same for every path: one call per session, all at once (so the pools have opened
  // their connections), then the loop unmeasured for 1 s (the processes' code was optimized by
  // the warm-up before the first cell).
  for (const path of paths) {
    await Promise.all(sessions[path].map((s) => s.callTool({ name: name[path], arguments: {} })));
    await loop(path, 1000);
  }
  const result = {} as Record<Path, Measured & { cpu: number }>;
  for (const path of paths) result[path] = { latencies: [], perSecond: 0, cpuPerCall: NaN, cpu: 0 };
  for (let round = 0; round < rounds; round++) {
    for (const path of paths) {
      const pid = hop[path];
      const cpuBefore = pid ? cpuMs(pid) : 0;
      await loop(path, (seconds * 1000) / rounds, result[path].latencies);
      if (pid) result[path].cpu += cpuMs(pid) - cpuBefore;
    }
  }
  for (const path of paths) {
    const r = result[path];
    r.latencies.sort((a, b) => a - b);
    r.perSecond = r.latencies.length / seconds;
    r.cpuPerCall = hop[path] ? r.cpu / r.latencies.length : NaN;
    await Promise.all(sessions[path].map((s) => s.close()));
  }
  return result;
}

console.log(`warming up: ${warmup} s per path from 10 sessions...`);
const warmed = await warmUp();
console.log(`warm-up calls: direct ${warmed.direct}, bare relay ${warmed.relay}, gateway ${warmed.gateway}\n`);
console.log(
  `gateway benchmark: tools/call read_graph (server-memory behind the local DTMA), ${seconds} s per path and cell in ${rounds} turns after a warm-up per path of ${warmup} s from 10 sessions (before the first cell) and 1 s from the cell's own sessions, gateway cache ${values.cache === 'off' ? 'off' : 'on'}\n`,
);
console.log('| clients | direct p50 / p99 ms | bare relay: added p50 / p99 ms, calls/s | gateway p50 / p99 ms | gateway: added p50 / p99 ms | direct calls/s | gateway calls/s | gateway throughput / direct | gateway throughput / bare relay | CPU ms per call: bare relay / gateway |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const clients of values.clients.split(',').map(Number)) {
  const { direct, relay: bare, gateway: viaGateway } = await measure(clients);
  const [d50, d99, r50, r99, g50, g99] = [pct(direct.latencies, 50), pct(direct.latencies, 99), pct(bare.latencies, 50), pct(bare.latencies, 99), pct(viaGateway.latencies, 50), pct(viaGateway.latencies, 99)];
  const ratio = (a: number, b: number): string => `${((100 * a) / b).toFixed(0)}%`;
  console.log(
    `| ${clients} | ${f(d50)} / ${f(d99)} | ${f(r50 - d50)} / ${f(r99 - d99)}, ${bare.perSecond.toFixed(0)} | ${f(g50)} / ${f(g99)} | ${f(g50 - d50)} / ${f(g99 - d99)} | ${direct.perSecond.toFixed(0)} | ${viaGateway.perSecond.toFixed(0)} | ${ratio(viaGateway.perSecond, direct.perSecond)} | ${ratio(viaGateway.perSecond, bare.perSecond)} | ${f(bare.cpuPerCall)} / ${f(viaGateway.cpuPerCall)} |`,
  );
}

// Revoke to enforced: grant, a call that succeeds (and is remembered), revoke (commit), then calls
// one after the other until one is refused: the time from the commit to that refusal.
const enforced: number[] = [];
const session = await client(gatewayUrl, apiKey);
let allowedAfterCommit = 0;
for (let i = 0; i < Number(values.revokes); i++) {
  await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: server, p_permission_scope: 'read_only' });
  await session.callTool({ name: tool, arguments: {} });
  await session.callTool({ name: tool, arguments: {} });
  await org.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: server });
  const committed = performance.now();
  for (;;) {
    const refused = await session.callTool({ name: tool, arguments: {} }).then(
      () => false,
      () => true,
    );
    if (refused) break;
    allowedAfterCommit++;
  }
  enforced.push(performance.now() - committed);
}
enforced.sort((a, b) => a - b);
console.log(
  `\nrevoke to enforced (${enforced.length} revokes): p50 ${f(pct(enforced, 50))} ms, p99 ${f(pct(enforced, 99))} ms; calls still allowed after a commit: ${allowedAfterCommit} in all`,
);

await session.close();
await stopStarted(gatewayProcess);
await stopStarted(relayProcess);
await pool.query('update public.agents set is_active = false where id = $1', [agentId]);
await pool.end();
