// Helpers for the vitest suites that run against the stack started by scripts/test.sh.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';

export function databaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run the suites through scripts/test.sh (npm test)');
  return url;
}

export function newPool(max = 10): pg.Pool {
  return new pg.Pool({ connectionString: databaseUrl(), max });
}

/** Polls fn until it returns a value other than undefined, or fails after timeoutMs. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A real HTTP server on a free loopback port that records what it receives. */
export async function recordingServer(
  handler: (req: Received, res: http.ServerResponse) => void = (_req, res) => res.end('ok'),
): Promise<{ url: string; received: Received[]; close: () => Promise<void> }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      received.push(r);
      handler(r, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** Runs one statement as a signed-in user, in one transaction, the way PostgREST does. */
export async function asUser(pool: pg.Pool, userId: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`,
      [JSON.stringify({ sub: userId, role: 'authenticated', aud: 'authenticated' })]);
    const result = await client.query(sql, params);
    await client.query('commit');
    return result;
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** A user in auth.users with a unique e-mail; returns its id. */
export async function createUser(pool: pg.Pool, label: string): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `insert into auth.users (email) values ($1 || '-' || gen_random_uuid() || '@example.com') returning id`, [label]);
  return rows[0].id;
}
