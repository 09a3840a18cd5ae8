// The pg_net stand-in end to end: SQL queues a request, the worker started by scripts/test.sh
// sends it to a real local HTTP server, and the response lands in net._http_response.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrl, newPool, waitFor } from '../../test/support/db.ts';
import { recordingServer } from '../../test/support/http.ts';
import { startPgNetWorker } from './worker.ts';

const pool = newPool();
let server: Awaited<ReturnType<typeof recordingServer>>;

interface ResponseRow { status_code: number | null; content: string | null; timed_out: boolean | null; error_msg: string | null; headers: Record<string, string> | null }

const responseOf = (id: string, timeoutMs = 10_000) =>
  waitFor(`the response to request ${id}`, async () => {
    const { rows } = await pool.query<ResponseRow>('select status_code, content, timed_out, error_msg, headers from net._http_response where id = $1', [id]);
    return rows[0];
  }, timeoutMs);

beforeAll(async () => {
  server = await recordingServer((req, res) => {
    if (req.url.startsWith('/slow')) { setTimeout(() => res.end('late'), 3_000); return; }
    res.setHeader('content-type', 'application/json');
    res.statusCode = req.url.startsWith('/missing') ? 404 : 200;
    res.end(JSON.stringify({ echo: req.body ? JSON.parse(req.body) : null, path: req.url }));
  });
});
afterAll(async () => { await server.close(); await pool.end(); });

describe('pg_net worker', () => {
  it('sends a committed POST and records the response as pg_net does', async () => {
    const { rows } = await pool.query<{ id: string }>(
      `select net.http_post($1, '{"n": 1}'::jsonb, '{"a": "b c"}'::jsonb, '{"Authorization": "Bearer t0k"}'::jsonb) as id`,
      [`${server.url}/hook`]);
    const r = await responseOf(rows[0].id);
    expect(r.status_code).toBe(200);
    expect(r.timed_out).toBe(false);
    expect(JSON.parse(r.content ?? '')).toEqual({ echo: { n: 1 }, path: '/hook?a=b%20c' });
    expect(r.headers?.['content-type']).toBe('application/json');
    const got = server.received.find((x) => x.url === '/hook?a=b%20c');
    expect(got?.method).toBe('POST');
    expect(got?.headers.authorization).toBe('Bearer t0k');
    expect(got?.headers['content-type']).toBe('application/json');
  });

  it('records a 404 with its status, and GET and DELETE with their methods', async () => {
    const { rows } = await pool.query<{ g: string; d: string }>(
      `select net.http_get($1) as g, net.http_delete($2) as d`, [`${server.url}/missing`, `${server.url}/gone`]);
    expect((await responseOf(rows[0].g)).status_code).toBe(404);
    expect((await responseOf(rows[0].d)).status_code).toBe(200);
    expect(server.received.find((x) => x.url === '/gone')?.method).toBe('DELETE');
  });

  it('never sends a request whose transaction rolled back', async () => {
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(`select net.http_get($1)`, [`${server.url}/rolled-back`]);
      await client.query('rollback');
    } finally { client.release(); }
    const { rows } = await pool.query<{ id: string }>(`select net.http_get($1) as id`, [`${server.url}/after-rollback`]);
    await responseOf(rows[0].id);
    expect(server.received.some((x) => x.url === '/after-rollback')).toBe(true);
    expect(server.received.some((x) => x.url === '/rolled-back')).toBe(false);
  });

  it('records a request past its timeout with timed_out', async () => {
    const { rows } = await pool.query<{ id: string }>(
      `select net.http_get($1, timeout_milliseconds => 300) as id`, [`${server.url}/slow`]);
    const r = await responseOf(rows[0].id);
    expect(r.timed_out).toBe(true);
    expect(r.status_code).toBeNull();
    expect(r.error_msg).toMatch(/Timeout of 300 ms/);
  });

  it('records a refused connection as an error without a status', async () => {
    const closed = await recordingServer();
    await closed.close();
    const { rows } = await pool.query<{ id: string }>(`select net.http_get($1) as id`, [`${closed.url}/nothing-listens`]);
    const r = await responseOf(rows[0].id);
    expect(r.status_code).toBeNull();
    expect(r.timed_out).toBe(false);
    expect(r.error_msg).toBe("Couldn't connect to server");
  });

  it('accepts a non-HTTP url at enqueue and fails it at send, as pg_net does', async () => {
    const { rows } = await pool.query<{ id: string }>(`select net.http_get('ftp://127.0.0.1/file') as id`);
    const r = await responseOf(rows[0].id);
    expect(r.status_code).toBeNull();
    expect(r.error_msg).toBe('Unsupported protocol');
  });

  it('follows a redirect to another server and records the final answer', async () => {
    const target = await recordingServer((_req, res) => { res.statusCode = 200; res.end('arrived'); });
    const redirecting = await recordingServer((_req, res) => {
      res.statusCode = 302;
      res.setHeader('location', `${target.url}/landed`);
      res.end();
    });
    try {
      const { rows } = await pool.query<{ id: string }>(`select net.http_get($1) as id`, [`${redirecting.url}/moved`]);
      const r = await responseOf(rows[0].id);
      expect(r.status_code).toBe(200);
      expect(r.content).toBe('arrived');
      expect(target.received.map((x) => x.url)).toEqual(['/landed']);
    } finally {
      await target.close();
      await redirecting.close();
    }
  });

  it('sends each of 300 requests exactly once with a second worker competing and restarting', async () => {
    const before = server.received.length;
    let extra = await startPgNetWorker({ databaseUrl: databaseUrl(), concurrency: 16 });
    const { rows } = await pool.query<{ id: string }>(
      `select net.http_get($1 || '/burst/' || i) as id from generate_series(1, 150) i`, [server.url]);
    // Restart the competing worker in the middle of the burst: nothing is lost or sent twice.
    await extra.stop();
    extra = await startPgNetWorker({ databaseUrl: databaseUrl(), concurrency: 16 });
    const more = await pool.query<{ id: string }>(
      `select net.http_get($1 || '/burst/' || i) as id from generate_series(151, 300) i`, [server.url]);
    const ids = [...rows, ...more.rows].map((r) => r.id);
    await waitFor('300 responses', async () => {
      const { rows: c } = await pool.query<{ n: number }>('select count(*)::int as n from net._http_response where id = any($1::bigint[])', [ids]);
      return c[0].n === 300 ? true : undefined;
    }, 20_000);
    await extra.stop();
    const burst = server.received.slice(before).filter((x) => x.url.startsWith('/burst/')).map((x) => x.url);
    expect(burst).toHaveLength(300);
    expect(new Set(burst).size).toBe(300);
    const { rows: queued } = await pool.query<{ n: number }>('select count(*)::int as n from net.http_request_queue');
    expect(queued[0].n).toBe(0);
  });
});
