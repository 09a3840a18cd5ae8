// Benchmark (not a test) of the lifecycle path: SQL -> outbox -> pg_net worker -> DTMA ->
// harvest. Prints requests per second next to pg_net's documented ceiling (~200 req/s) and the
// harvest's cost per response. Run through scripts/bench/lifecycle.sh, which builds a cluster.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { createDtmaServer } from '../../standins/dtma/server.ts';
import { createProcessDriver } from '../../standins/dtma/process-driver.ts';
import { startPgNetWorker } from '../../standins/pg-net/worker.ts';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const realInstances = arg('real-instances', 4);
const realCycles = arg('real-cycles', 3);
const stubInstances = arg('stub-instances', 200);
const stubCycles = arg('stub-cycles', 3);
const syntheticResponses = arg('synthetic', 5000);

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) throw new Error('DATABASE_URL is not set: run scripts/bench/lifecycle.sh');
const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
const token = 'bench-dtma-token-0123456789abcdef';

const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await pool.query<T>(sql, params)).rows;
const harvest = async () => { await pool.query('select public.harvest_dtma_responses()'); };

async function setupOrg(label: string, dtmaUrl: string, instances: number): Promise<{ org: string; ids: string[] }> {
  const [{ id: user }] = await q<{ id: string }>(`insert into auth.users (email) values ($1) returning id`, [`${label}-${Date.now()}@bench.local`]);
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`,
      [JSON.stringify({ sub: user, role: 'authenticated' })]);
    const { rows: [{ org }] } = await client.query(`select public.create_organization($1, $2) as org`, [label, `${label}-${Date.now()}`]);
    // The platform registers the toolbox: back to the postgres session for that one call.
    await client.query(`select set_config('role', 'none', true), set_config('request.jwt.claims', '', true)`);
    const { rows: [{ box }] } = await client.query(`select public.create_toolbox($1, 'bench', $2, $3) as box`, [org, `${dtmaUrl}/toolboxes/${label}-${Date.now()}`, token]);
    await client.query(`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`,
      [JSON.stringify({ sub: user, role: 'authenticated' })]);
    const ids: string[] = [];
    for (let i = 0; i < instances; i++) {
      const { rows: [{ r }] } = await client.query(`select public.manage_mcp_servers('create', $1, $2) as r`,
        [org, { toolbox_id: box, catalog_name: 'memory', instance_name: `${label}-${i}` }]);
      ids.push(r.id);
    }
    await client.query('commit');
    return { org, ids };
  } finally { client.release(); }
}

// Moves every instance through `event` as service (a superuser session without claims) and
// waits, harvesting, until all reach `target`. Returns the DTMA requests completed.
async function step(ids: string[], event: 'deploy' | 'stop', target: string): Promise<number> {
  await pool.query(`select private.request_lifecycle(id, $2) from unnest($1::uuid[]) id`, [ids, event]);
  for (;;) {
    await harvest();
    const [{ done, failed }] = await q<{ done: number; failed: number }>(
      `select count(*) filter (where status::text = $2)::int as done, count(*) filter (where status = 'failed')::int as failed
         from public.account_tool_instances where id = any($1::uuid[])`, [ids, target]);
    if (failed > 0) throw new Error(`${failed} instance(s) failed during ${event}`);
    if (done === ids.length) return ids.length;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function cycles(label: string, dtmaUrl: string, instances: number, n: number) {
  const { ids } = await setupOrg(label, dtmaUrl, instances);
  const started = performance.now();
  let requests = 0;
  for (let c = 0; c < n; c++) {
    requests += await step(ids, 'deploy', 'running');
    requests += await step(ids, 'stop', 'stopped');
  }
  const seconds = (performance.now() - started) / 1000;
  return { label, instances, cycles: n, requests, seconds, rps: requests / seconds };
}

// A DTMA that answers per the contract at once: the control plane's own throughput.
async function stubDtma(): Promise<{ url: string; close: () => void }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.statusCode = req.method === 'POST' ? 201 : 200;
      res.end(JSON.stringify({ success: true, message: 'ok', data: { groupId: 'g', deployedServers: [], errors: {}, totalServers: 1, successfulDeployments: 1, removedServers: [] } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

// Harvest cost per response, isolated: synthetic sent requests with their responses in place.
async function harvestCost(n: number) {
  const { ids } = await setupOrg('synthetic', 'http://127.0.0.1:9', 1);
  await pool.query(`
    with r as (
      insert into public.dtma_requests (organization_id, toolbox_id, instance_id, operation, method, path, idempotency_key, state, attempt, net_request_id, net_epoch, sent_at)
      select i.organization_id, i.account_tool_environment_id, null, 'status', 'GET', '/mcp/status', 'synthetic:' || g, 'sent', 1, -g, private.net_epoch(), now()
        from public.account_tool_instances i, generate_series(1, $2::int) g where i.id = $1
      returning net_request_id)
    insert into net._http_response (id, status_code, content) select net_request_id, 200, '{"success": true, "data": {"groups": {}}}' from r`,
    [ids[0], n]);
  const started = performance.now();
  let harvested = 0;
  for (;;) {
    const [{ h }] = await q<{ h: { succeeded: number } }>(`select public.harvest_dtma_responses(p_limit => 1000) as h`);
    if (h.succeeded === 0) break;
    harvested += h.succeeded;
  }
  const ms = performance.now() - started;
  return { harvested, ms, usPerResponse: (ms * 1000) / harvested };
}

const worker = await startPgNetWorker({ databaseUrl, concurrency: 64 });
const dtma = createDtmaServer({ token, port: 0, driver: createProcessDriver(), log: () => {} });
await dtma.listen();
const stub = await stubDtma();
try {
  console.log(`lifecycle benchmark: ${realInstances} real MCP servers x ${realCycles} deploy/stop cycles; ${stubInstances} instances x ${stubCycles} cycles on a stub DTMA; harvest of ${syntheticResponses} responses`);
  const real = await cycles('real', dtma.url, realInstances, realCycles);
  const fast = await cycles('stub', stub.url, stubInstances, stubCycles);
  const cost = await harvestCost(syntheticResponses);
  const row = (r: typeof real, what: string) =>
    `| ${what} | ${r.instances} x ${r.cycles} | ${r.requests} | ${r.seconds.toFixed(2)} | ${r.rps.toFixed(1)} | ${(r.rps / 200 * 100).toFixed(0)}% |`;
  console.log('\n| path | instances x cycles | DTMA requests | seconds | requests/s | of pg_net ceiling (200/s) |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  console.log(row(real, 'SQL -> pg_net -> local DTMA -> real MCP server (spawn, initialize, ping) -> harvest'));
  console.log(row(fast, 'SQL -> pg_net -> stub DTMA answering at once -> harvest'));
  console.log(`\nharvest: ${cost.harvested} responses in ${cost.ms.toFixed(0)} ms = ${cost.usPerResponse.toFixed(0)} µs per response ` +
    `(${(1e6 / cost.usPerResponse).toFixed(0)} responses/s on one connection, ${(1e6 / cost.usPerResponse / 200).toFixed(0)}x pg_net's ceiling)`);
} finally {
  await worker.stop();
  await dtma.close();
  stub.close();
  await pool.end();
}
