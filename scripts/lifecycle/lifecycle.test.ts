// The lifecycle end to end, on the real stack: SQL asks, the outbox sends through pg_net, the
// worker posts to a DTMA that runs real MCP servers from npm, the harvest applies the answers.
// A second, in-process DTMA with the fault driver shows every instance ends in a legal state,
// every request is accounted for, and nothing is sent twice, whatever DTMA does.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDtmaServer, type DtmaServer } from '../../standins/dtma/server.ts';
import { createFaultDriver } from '../../standins/dtma/fault-driver.ts';
import { createProcessDriver } from '../../standins/dtma/process-driver.ts';
import { asUser, createUser, newPool, waitFor } from '../../test/support/db.ts';
import { recordingServer } from '../../test/support/http.ts';

const pool = newPool(60);
const dtmaUrl = process.env.DTMA_URL ?? '';
const dtmaToken = process.env.DTMA_TOKEN ?? '';
const faultToken = 'fault-dtma-token-0123456789abcdef';
let owner = '';
let org = '';
let realToolbox = '';
let faultToolbox = '';
let faultDtma: DtmaServer;

const rpc = async <T>(sql: string, params: unknown[] = []): Promise<T> => (await asUser(pool, owner, sql, params)).rows[0] as T;
const manage = (action: string, serverId: string | null, config: object = {}) =>
  rpc<{ r: { id: string; status: string } }>('select public.manage_mcp_servers($1, $2, $3, $4) as r', [action, org, config, serverId]);
const createInstance = async (toolbox: string, name: string) =>
  (await manage('create', null, { toolbox_id: toolbox, catalog_name: 'memory', instance_name: name })).r.id;

const harvest = () => pool.query('select public.harvest_dtma_responses()');
const statusOf = async (id: string) =>
  (await pool.query<{ status: string; last_error: string | null; endpoint_url: string | null }>(
    'select status::text, last_error, endpoint_url from public.account_tool_instances where id = $1', [id])).rows[0];
const settle = (id: string, statuses: string[], timeoutMs = 30_000) =>
  waitFor(`instance ${id} to reach ${statuses.join('|')}`, async () => {
    await harvest();
    const s = await statusOf(id);
    return statuses.includes(s.status) ? s : undefined;
  }, timeoutMs, 100);
const openRequests = async () =>
  (await pool.query<{ n: number }>(`select count(*)::int as n from public.dtma_requests where state in ('queued', 'sent') and organization_id = $1`, [org])).rows[0].n;
const requestsOf = async (id: string) =>
  (await pool.query<{ id: string; operation: string; state: string; attempt: number; idempotency_key: string }>(
    'select id::text, operation, state::text, attempt, idempotency_key from public.dtma_requests where instance_id = $1 order by id', [id])).rows;

interface LoggedRequest { method: string; path: string; idempotencyKey: string | null }
const faultAdmin = async (method: string, path: string, body?: object) => {
  const res = await fetch(`${faultDtma.url}${path}`, {
    method, headers: { authorization: `Bearer ${faultToken}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  return res.json() as Promise<{ data: unknown }>;
};
const faultLog = async () => {
  const body = await faultAdmin('GET', '/__requests') as { data: { requests: LoggedRequest[] } | LoggedRequest[] };
  return Array.isArray(body.data) ? body.data : body.data.requests;
};

beforeAll(async () => {
  if (!dtmaUrl || !dtmaToken) throw new Error('DTMA_URL and DTMA_TOKEN are set by scripts/test.sh');
  await pool.query(`update private.dtma_config set value = case key
      when 'backoff_base' then '100 milliseconds' when 'lost_after' then '1 second' when 'request_timeout_ms' then '3000' else value end`);
  faultDtma = createDtmaServer({ token: faultToken, port: 0, driver: createFaultDriver(createProcessDriver({ healthIntervalMs: 1000 })) });
  await faultDtma.listen();
  owner = await createUser(pool, 'lifecycle-owner');
  org = (await rpc<{ id: string }>(`select public.create_organization('Lifecycle', 'lifecycle-' || substr(md5(random()::text), 1, 8)) as id`)).id;
  // The platform (this postgres pool) registers the toolboxes.
  realToolbox = (await pool.query(`select public.create_toolbox($1, 'real', $2, $3) as id`, [org, `${dtmaUrl}/toolboxes/${org}`, dtmaToken])).rows[0].id;
  faultToolbox = (await pool.query(`select public.create_toolbox($1, 'faulty', $2, $3) as id`, [org, faultDtma.url, faultToken])).rows[0].id;
}, 60_000);

afterAll(async () => {
  await pool.query(`update private.dtma_config set value = case key
      when 'backoff_base' then '2 seconds' when 'lost_after' then '30 seconds' when 'request_timeout_ms' then '10000' else value end`);
  await faultDtma?.close();
  await pool.end();
});

describe('lifecycle through pg_net and the local DTMA', () => {
  it('deploys a real MCP server from SQL, serves tools/list, then stops and removes it', async () => {
    const id = await createInstance(realToolbox, 'memory-e2e');
    expect((await manage('deploy', id)).r.status).toBe('deploying');
    const running = await settle(id, ['running', 'failed']);
    expect(running.status).toBe('running');
    expect(running.endpoint_url).toBe(`${dtmaUrl}/toolboxes/${org}/mcp/servers/memory-e2e/mcp`);

    const client = new Client({ name: 'lifecycle-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(running.endpoint_url ?? ''),
      { requestInit: { headers: { authorization: `Bearer ${dtmaToken}` } } }));
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain('create_entities');
    await client.close();

    expect((await manage('stop', id)).r.status).toBe('stopping');
    expect((await settle(id, ['stopped', 'failed'])).status).toBe('stopped');
    const status = await (await fetch(`${dtmaUrl}/mcp/status`, { headers: { authorization: `Bearer ${dtmaToken}` } })).json() as
      { data: { groups: Record<string, unknown> } };
    expect(Object.keys(status.data.groups)).not.toContain(`mcp-${realToolbox}-${id}`);

    expect((await manage('delete', id)).r.status).toBe('removing');
    expect((await settle(id, ['removed', 'failed'])).status).toBe('removed');
    const ops = (await requestsOf(id)).map((r) => `${r.operation}:${r.state}`);
    expect(ops).toEqual(['deploy:succeeded', 'stop:succeeded', 'remove:succeeded']);
  }, 60_000);

  it('with DTMA down, retries with backoff and ends failed with the last error', async () => {
    const closed = await recordingServer();
    await closed.close();
    const downBox = (await pool.query(`select public.create_toolbox($1, 'down', $2, 'down-token-0123456789abcdef') as id`,
      [org, closed.url])).rows[0].id;
    const id = await createInstance(downBox, 'memory-down');
    await manage('deploy', id);
    const failed = await settle(id, ['failed', 'running']);
    expect(failed.status).toBe('failed');
    // Whatever the HTTP client's wording (pg_net's is libcurl's), no HTTP status means no answer.
    expect(failed.last_error).toMatch(/^no HTTP answer: /);
    expect((await requestsOf(id)).map((r) => `${r.state}:${r.attempt}`)).toEqual(['failed:5']);
  }, 60_000);

  it('retries 5xx at once, and a timeout or a lost response once more after asking whether the group runs', async () => {
    await faultAdmin('POST', '/__faults', { status: 503, count: 2, routes: ['POST /mcp/groups'] });
    const a = await createInstance(faultToolbox, 'memory-5xx');
    await manage('deploy', a);
    expect((await settle(a, ['running', 'failed'])).status).toBe('running');
    expect((await requestsOf(a))[0]).toMatchObject({ state: 'succeeded', attempt: 3 });

    await faultAdmin('POST', '/__faults', { hang: true, count: 1, routes: ['POST /mcp/groups'] });
    const b = await createInstance(faultToolbox, 'memory-hang');
    await manage('deploy', b);
    expect((await settle(b, ['running', 'failed'])).status).toBe('running');
    // Attempt 2 asks GET /mcp/health/:groupId (the hung deploy did nothing: 404), attempt 3 deploys.
    expect((await requestsOf(b))[0]).toMatchObject({ state: 'succeeded', attempt: 3 });

    // A lost response: pg_net's tables are unlogged and a crash empties them. Here the queued
    // request vanishes before the worker sees it; the harvest gives up waiting and retries.
    const c = await createInstance(faultToolbox, 'memory-lost');
    const conn = await pool.connect();
    try {
      await conn.query('begin');
      await conn.query(`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`,
        [JSON.stringify({ sub: owner, role: 'authenticated' })]);
      await conn.query('select public.manage_mcp_servers($1, $2, $3, $4)', ['deploy', org, {}, c]);
      await conn.query('reset role');
      await conn.query(`delete from net.http_request_queue where id = (select net_request_id from public.dtma_requests where instance_id = $1)`, [c]);
      await conn.query('commit');
    } finally { conn.release(); }
    expect((await settle(c, ['running', 'failed'])).status).toBe('running');
    expect((await requestsOf(c))[0]).toMatchObject({ state: 'succeeded', attempt: 3 });

    const log = await faultLog();
    const posts = (id: string) => log.filter((r) => r.method === 'POST' && r.idempotencyKey?.startsWith(`deploy:${id}:`)).length;
    const checks = (id: string) => log.filter((r) => r.method === 'GET' && r.path.startsWith('/mcp/health/')
      && r.idempotencyKey?.startsWith(`deploy:${id}:`)).length;
    expect([posts(a), posts(b), posts(c)]).toEqual([3, 2, 1]);
    expect([checks(a), checks(b), checks(c)]).toEqual([0, 1, 1]);
  }, 90_000);

  it('fails at once on a 201 that reports the server in data.errors', async () => {
    await faultAdmin('POST', '/__faults', { errors201: true, count: 1, routes: ['POST /mcp/groups'] });
    const id = await createInstance(faultToolbox, 'memory-201');
    await manage('deploy', id);
    const s = await settle(id, ['failed', 'running']);
    expect(s.status).toBe('failed');
    expect(s.last_error).toMatch(/^memory-201: /);
    expect((await requestsOf(id))[0]).toMatchObject({ state: 'failed', attempt: 1 });
  }, 60_000);

  it('sends one deploy for 20 concurrent duplicate deploys', async () => {
    const id = await createInstance(faultToolbox, 'memory-dup');
    await Promise.all(Array.from({ length: 20 }, () => manage('deploy', id)));
    expect((await settle(id, ['running', 'failed'])).status).toBe('running');
    expect(await requestsOf(id)).toHaveLength(1);
    expect((await faultLog()).filter((r) => r.idempotencyKey?.startsWith(`deploy:${id}:`))).toHaveLength(1);
  }, 60_000);

  it('keeps every instance legal and every request accounted for under a deploy/stop race of 50 callers', async () => {
    const ids = await Promise.all([1, 2, 3, 4, 5].map((n) => createInstance(faultToolbox, `memory-race-${n}`)));
    const actions = ['deploy', 'stop', 'deploy', 'restart', 'stop', 'delete'];
    const outcomes = await Promise.allSettled(Array.from({ length: 50 }, (_, i) =>
      manage(actions[i % actions.length], ids[i % ids.length])));
    // Refusals are allowed only as illegal transitions (55000), never anything else.
    for (const o of outcomes) {
      if (o.status === 'rejected') expect((o.reason as { code?: string }).code).toBe('55000');
    }
    await waitFor('the outbox to drain', async () => { await harvest(); return (await openRequests()) === 0 ? true : undefined; }, 60_000, 200);

    const legalRest = ['running', 'stopped', 'failed', 'removed', 'pending'];
    const log = await faultLog();
    for (const id of ids) {
      const s = await statusOf(id);
      expect(legalRest).toContain(s.status);
      for (const r of await requestsOf(id)) {
        expect(['succeeded', 'failed', 'abandoned']).toContain(r.state);
        // Nothing is sent twice: DTMA saw each request once per attempt, abandoned ones never.
        const seen = log.filter((l) => l.idempotencyKey === `${r.idempotency_key}:${r.id}`).length;
        expect(seen).toBe(r.state === 'abandoned' ? 0 : r.attempt);
      }
    }
    // What the database says runs is what DTMA runs.
    const status = await (await fetch(`${faultDtma.url}/mcp/status`, { headers: { authorization: `Bearer ${faultToken}` } })).json() as
      { data: { groups: Record<string, unknown> } };
    for (const id of ids) {
      expect(Object.keys(status.data.groups).includes(`mcp-${faultToolbox}-${id}`)).toBe((await statusOf(id)).status === 'running');
    }
  }, 120_000);
});
