/**
 * The database side of the test helpers, for the suites that run against the stack of
 * scripts/test.sh (DATABASE_URL): pools, users, acting as a user, waiting for a state.
 * Test helpers live in test/support only; product code never imports them (test/layout.test.ts).
 */
import { randomBytes } from 'node:crypto';
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

/** A confirmed e-mail user in auth.users (as Supabase Auth writes one), unique per call; returns its id. */
export async function createUser(pool: pg.Pool, label: string): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `insert into auth.users (email, raw_app_meta_data, email_confirmed_at) values ($1, '{"provider":"email"}', now()) returning id`,
    [`${label}-${randomBytes(4).toString('hex')}@example.test`],
  );
  return (rows[0] as { id: string }).id;
}
