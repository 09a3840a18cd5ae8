/**
 * A local stand-in for Supabase's API gateway in front of PostgREST and Auth, for machines
 * without Docker (like db/compat for the database: local and tests only, never deployed).
 * It answers what the admin console's supabase-js sends, in PostgREST's wire format:
 *
 *   POST /rest/v1/rpc/<fn>          the function, through the SDK's direct transport (query.ts's
 *                                   sibling for RPCs: named arguments, PostgREST's overload choice)
 *   GET  /rest/v1/<table or view>   a flat read (query.ts), RLS deciding which rows
 *   GET  /auth/v1/user              the signed-in user, as Supabase Auth answers it
 *   GET  /auth/v1/health            200 (readiness)
 *   POST /auth/v1/logout            204
 *
 * Each request runs in PostgREST's envelope: the JWT is verified (client/src/jwt.ts), then one
 * transaction with `set local role <role claim>` and `request.jwt.claims` set transaction-local,
 * so that RLS and the definer functions decide exactly as on Supabase. Errors are PostgREST's
 * `{code, message, details, hint}` with its HTTP status for the SQLSTATE (status.ts).
 *
 *   DATABASE_URL=... JWT_SECRET=... POSTGREST_PORT=54321 npx tsx standins/postgrest/server.ts
 */
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { directTransport, toControlPlaneError } from '../../client/src/direct-transport.ts';
import { McpControlPlaneError, UnauthorizedError } from '../../client/src/errors.ts';
import { verifyJwt, type JwtClaims } from '../../client/src/jwt.ts';
import { serveHandler, type ServedHandler } from '../../client/src/manager/serve.ts';
import { buildRead, QueryError } from './query.ts';
import { postgrestStatus } from './status.ts';

export interface StandinOptions {
  pool: pg.Pool;
  jwtSecret: string;
}

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'authorization, apikey, content-type, prefer, accept, accept-profile, content-profile, range, x-client-info, x-supabase-api-version',
  'access-control-expose-headers': 'content-range',
  'access-control-max-age': '600',
};

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...CORS, ...headers },
  });
}

function errorResponse(error: McpControlPlaneError, role: string): Response {
  return json(error.toJSON(), postgrestStatus(error.code, role));
}

function bearer(req: Request): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get('authorization') ?? '')?.[1];
}

/** The verified claims of the request; anon without a token, as PostgREST's db-anon-role. */
async function claimsOf(req: Request, secret: string): Promise<JwtClaims> {
  const token = bearer(req);
  return token ? verifyJwt(token, secret) : { role: 'anon' };
}

/** A flat read in PostgREST's envelope: read-only transaction, role and claims transaction-local. */
async function read(pool: pg.Pool, claims: JwtClaims, relation: string, url: URL, req: Request): Promise<Response> {
  const query = buildRead(relation, url.searchParams);
  const wantsCount = /count=exact/.test(req.headers.get('prefer') ?? '');
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('begin isolation level read committed read only');
    await client.query(
      `select pg_catalog.set_config('role', $1, true), pg_catalog.set_config('request.jwt.claims', $2, true),
              pg_catalog.set_config('request.method', 'GET', true), pg_catalog.set_config('request.path', $3, true)`,
      [claims.role, JSON.stringify(claims), `/${relation}`],
    );
    const { rows } = await client.query<{ body: unknown[] }>(query.sql, query.values);
    const total = wantsCount ? (await client.query<{ total: string }>(query.countSql, query.values)).rows[0]?.total : undefined;
    await client.query('commit');
    const body = rows[0]?.body ?? [];
    const offset = Number(url.searchParams.get('offset') ?? 0);
    const range = body.length > 0 ? `${offset}-${offset + body.length - 1}` : '*';
    const headers = { 'content-range': `${range}/${total ?? '*'}` };
    if ((req.headers.get('accept') ?? '').includes('application/vnd.pgrst.object+json')) {
      if (body.length !== 1) {
        return json({ code: 'PGRST116', message: 'JSON object requested, multiple (or no) rows returned', details: `The result contains ${body.length} rows`, hint: null }, 406);
      }
      return json(body[0], 200, headers);
    }
    return json(body, 200, headers);
  } catch (error) {
    await client.query('rollback').catch((rollbackError: Error) => (broken = rollbackError));
    throw error;
  } finally {
    client.release(broken);
  }
}

/** Supabase Auth's GET /auth/v1/user: the user of a valid access token (read as the platform). */
async function user(pool: pg.Pool, claims: JwtClaims): Promise<Response> {
  if (!claims.sub) return json({ code: 401, error_code: 'bad_jwt', msg: 'invalid claim: missing sub claim' }, 401);
  const { rows } = await pool.query(
    `select id, aud, role, email, email_confirmed_at, last_sign_in_at, raw_app_meta_data as app_metadata,
            raw_user_meta_data as user_metadata, created_at, updated_at, is_anonymous
       from auth.users where id = $1`,
    [claims.sub],
  );
  if (rows.length === 0) return json({ code: 403, error_code: 'user_not_found', msg: 'User from sub claim in JWT does not exist' }, 403);
  return json({ ...rows[0], identities: [] });
}

/** The stand-in as a fetch handler. */
export function createStandin({ pool, jwtSecret }: StandinOptions): (req: Request) => Promise<Response> {
  return async (req) => {
    if (req.method === 'OPTIONS') return new Response(null, { status: 204, headers: CORS });
    const url = new URL(req.url);
    if (url.pathname === '/auth/v1/health') return json({ name: 'postgrest-standin', description: 'local stand-in; see standins/postgrest/README.md' });
    let role = 'anon';
    try {
      const claims = await claimsOf(req, jwtSecret);
      role = claims.role;
      if (url.pathname === '/auth/v1/user' && req.method === 'GET') return await user(pool, claims);
      if (url.pathname === '/auth/v1/logout' && req.method === 'POST') return new Response(null, { status: 204, headers: CORS });
      const rpc = /^\/rest\/v1\/rpc\/([A-Za-z_][A-Za-z0-9_]*)$/.exec(url.pathname);
      if (rpc?.[1] && req.method === 'POST') {
        const token = bearer(req);
        const transport = token ? directTransport({ pool, jwt: token, jwtSecret }) : directTransport({ pool });
        const text = await req.text();
        let args: Record<string, unknown>;
        try {
          args = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } catch {
          return json({ code: 'PGRST102', message: 'Empty or invalid json', details: null, hint: null }, 400);
        }
        const result = await transport.rpc(rpc[1], args);
        return result === null ? new Response(null, { status: 204, headers: CORS }) : json(result);
      }
      const table = /^\/rest\/v1\/([A-Za-z_][A-Za-z0-9_]*)$/.exec(url.pathname);
      if (table?.[1] && (req.method === 'GET' || req.method === 'HEAD')) return await read(pool, claims, table[1], url, req);
      return json({ code: 'PGRST125', message: `the stand-in does not serve ${req.method} ${url.pathname}`, details: null, hint: 'see standins/postgrest/README.md' }, 404);
    } catch (error) {
      if (error instanceof QueryError) return json({ code: error.code, message: error.message, details: error.details, hint: null }, 400);
      if (error instanceof UnauthorizedError) return errorResponse(error, role);
      return errorResponse(toControlPlaneError(error), role);
    }
  };
}

export async function serveStandin(options: StandinOptions & { port?: number; host?: string }): Promise<ServedHandler> {
  return serveHandler(createStandin(options), { port: options.port ?? 0, host: options.host });
}

async function main(): Promise<void> {
  const jwtSecret = process.env.JWT_SECRET;
  if (!jwtSecret) {
    console.error('postgrest stand-in: JWT_SECRET is required (the secret access tokens are signed with)');
    process.exit(2);
  }
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgresql://postgres:postgres@127.0.0.1:54322/postgres', max: 10 });
  const served = await serveStandin({ pool, jwtSecret, port: Number(process.env.POSTGREST_PORT ?? 54321) });
  console.log(`PostgREST stand-in listening on ${served.url}`);
  const stop = (): void => void served.close().then(() => pool.end()).then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
