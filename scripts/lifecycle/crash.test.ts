// A database crash in the middle of deploys, on the real stack of scripts/test.sh: PostgreSQL is
// stopped with `pg_ctl stop -m immediate` while the local DTMA is still starting the servers,
// then started again. pg_net's tables are unlogged, so the crash empties them and the request
// ids start again at 1; unrelated requests then reuse the ids of the deploys lost at the crash.
// Nothing else is restarted by hand: the pg_net worker reconnects by itself. Every deploy ends
// lost and retried (checked against the DTMA before any resend), none takes another request's
// answer, and every instance ends running, deployed exactly once on the DTMA.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asUser, createUser, databaseUrl, waitFor } from '../../test/support/db.ts';
import { recordingServer } from '../../test/support/http.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dtmaUrl = process.env.DTMA_URL ?? '';
const dtmaToken = process.env.DTMA_TOKEN ?? '';
const pool = new pg.Pool({ connectionString: databaseUrl(), max: 4 });
// Connections die with the server; an idle one that does must not fail the test process.
pool.on('error', () => undefined);

// The cluster of scripts/test.sh (DB_PORT and MCP_LOCAL_DIR are exported there).
const cluster = (command: string) =>
  execFileSync('bash', ['-c', `source scripts/lib.sh >/dev/null; ${command}`], { cwd: ROOT, env: process.env, stdio: 'pipe' });

let owner = '';
let org = '';
let toolbox = '';
const instances: string[] = [];
let sink: Awaited<ReturnType<typeof recordingServer>>;

interface RequestRow { id: string; attempt: number; instance_id: string; operation: string; state: string; net_request_id: string | null; last_error: string | null; response: unknown }
const requests = async () => (await pool.query<RequestRow>(
  `select id::text, attempt, instance_id::text, operation, state::text, net_request_id::text, last_error, response
     from public.dtma_requests where instance_id = any($1::uuid[]) order by id`, [instances])).rows;

beforeAll(async () => {
  if (!dtmaUrl || !dtmaToken) throw new Error('DTMA_URL and DTMA_TOKEN are set by scripts/test.sh');
  await pool.query(`update private.dtma_config set value = case key
      when 'backoff_base' then '100 milliseconds' when 'lost_after' then '1 second' when 'request_timeout_ms' then '20000' else value end`);
  // The minute's health poll would send requests of its own right after the restart, taking
  // pg_net's first ids before the story's: paused while the story runs.
  await pool.query(`select cron.alter_job(jobid, active => false) from cron.job where jobname = 'mcp-dtma-health'`);
  sink = await recordingServer((_req, res) => res.end('{"status": "ok"}'));
  owner = await createUser(pool, 'crash-owner');
  const as = async <T>(sql: string, params: unknown[] = []) => (await asUser(pool, owner, sql, params)).rows[0] as T;
  org = (await as<{ id: string }>(`select public.create_organization('Crash', 'crash-' || substr(md5(random()::text), 1, 8)) as id`)).id;
  toolbox = (await pool.query<{ id: string }>(`select public.create_toolbox($1, 'crash', $2, $3) as id`, [org, `${dtmaUrl}/toolboxes/${org}`, dtmaToken])).rows[0].id;
  for (let i = 0; i < 6; i++) {
    const { r } = await as<{ r: { id: string } }>(`select public.manage_mcp_servers('create', $1, $2, null) as r`,
      [org, { toolbox_id: toolbox, catalog_name: 'memory', instance_name: `crash-${i}` }]);
    instances.push(r.id);
  }
}, 60_000);

afterAll(async () => {
  // Leave the shared DTMA as it was: stop what this story started.
  await pool.query(`select public.manage_mcp_servers('stop', $1, '{}', id) from unnest($2::uuid[]) id`, [org, instances]).catch(() => undefined);
  await sink?.close();
  await pool.query(`select cron.alter_job(jobid, active => true) from cron.job where jobname = 'mcp-dtma-health'`).catch(() => undefined);
  await pool.end();
});

describe('a database crash in the middle of deploys', () => {
  it('loses no request, gives none another one\'s answer, and ends every instance running', async () => {
    // Deploy all six; durable commit, so that the crash takes pg_net's tables, not the deploys.
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query('set local synchronous_commit = on');
      await client.query(`select public.manage_mcp_servers('deploy', $1, '{}', id) from unnest($2::uuid[]) id`, [org, instances]);
      await client.query('commit');
    } finally { client.release(); }
    const before = await requests();
    expect(before.map((r) => `${r.operation} ${r.state}`)).toEqual(instances.map(() => 'deploy sent'));

    // Once the worker has handed the deploys to the DTMA, which is still starting the servers: crash.
    await waitFor('the worker to take the deploys', async () => {
      const { rows } = await pool.query<{ n: number }>('select count(*)::int as n from net.http_request_queue where id = any($1::bigint[])',
        [before.map((r) => r.net_request_id)]);
      return rows[0].n === 0 ? true : undefined;
    }, 10_000, 10);
    cluster('as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop');
    cluster('bash scripts/stack.sh start');
    await waitFor('the database to answer again', async () => (await pool.query('select 1').then(() => true, () => undefined)), 30_000, 200);

    // pg_net's ids start again at 1 (its queue and its sequence do not survive a crash). A request
    // of the worker's own harvest may take the first ids (it sends again what the crash lost), so
    // the unrelated requests are enough to reuse every id of the deploys after a few taken so.
    const highest = Math.max(...before.map((r) => Number(r.net_request_id)));
    expect(highest).toBeLessThan(50_000);
    const margin = 20;
    const { rows: fresh } = await pool.query<{ id: string }>(
      `select net.http_get($1 || '/health/' || i) as id from generate_series(1, $2) i`, [sink.url, highest + margin]);
    expect(Number(fresh[0].id)).toBeLessThanOrEqual(1 + margin);
    const freshIds = new Set(fresh.map((r) => r.id));
    const oldIds = before.map((r) => r.net_request_id as string);
    await waitFor('the unrelated requests, and whatever took an old id, to be answered', async () => {
      const { rows } = await pool.query<{ n: number }>(
        'select count(distinct id)::int as n from net._http_response where id = any($1::bigint[])', [[...new Set([...freshIds, ...oldIds])]]);
      return rows[0].n === new Set([...freshIds, ...oldIds]).size ? true : undefined;
    }, 90_000, 200);
    // Every old id now bears exactly one answer, its new request's (the unrelated one's, or the
    // harvest's own): the deploys' late answers from the DTMA were dropped, as pg_net loses what
    // was in flight at a crash.
    const { rows: bearers } = await pool.query<{ id: string; n: number; content: string }>(
      'select id::text, count(*)::int as n, max(content) as content from net._http_response where id = any($1::bigint[]) group by id',
      [oldIds]);
    expect(bearers).toHaveLength(before.length);
    expect(bearers.every((b) => b.n === 1)).toBe(true);
    expect(bearers.filter((b) => freshIds.has(b.id)).every((b) => b.content === '{"status": "ok"}')).toBe(true);
    expect(bearers.filter((b) => freshIds.has(b.id)).length).toBeGreaterThan(0);

    // The worker reconnected by itself; the harvest (run by it, and here) recovers every deploy.
    await waitFor('every instance to be running again', async () => {
      await pool.query('select public.harvest_dtma_responses()');
      const { rows } = await pool.query<{ status: string }>(
        'select status::text from public.account_tool_instances where id = any($1::uuid[])', [instances]);
      return rows.every((r) => r.status === 'running') ? true : undefined;
    }, 90_000, 250);

    const after = await requests();
    // Every request is accounted for: the six deploys, each succeeded after it was lost at the crash.
    expect(after.filter((r) => r.operation === 'deploy').map((r) => r.state)).toEqual(instances.map(() => 'succeeded'));
    expect(after.filter((r) => ['queued', 'sent'].includes(r.state))).toEqual([]);
    for (const r of after.filter((x) => x.operation === 'deploy')) {
      // None took the answer of a /health request that reused its id.
      expect(JSON.stringify(r.response)).not.toContain('"status":"ok"');
      expect(r.response).toBeTruthy();
    }
    // Each was sent again after the crash (a check of its group first), not completed by chance.
    expect(after.filter((r) => r.operation === 'deploy').every((r) => r.attempt >= 2)).toBe(true);

    // The DTMA runs each group exactly once: no deploy was sent blind a second time.
    const status = await fetch(`${dtmaUrl}/mcp/status`, { headers: { authorization: `Bearer ${dtmaToken}` } });
    const groups = (await status.json() as { data: { groups: Record<string, { instances: Record<string, { status: string }> }> } }).data.groups;
    for (const [i, id] of instances.entries()) {
      expect(groups[`mcp-${toolbox}-${id}`]?.instances[`crash-${i}`]?.status).toBe('running');
    }
  }, 180_000);
});
