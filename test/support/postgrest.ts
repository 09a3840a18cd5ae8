/**
 * A stand-in for PostgREST's RPC endpoint, for tests on machines without Docker: a real HTTP
 * server that speaks PostgREST's wire format for `POST /rest/v1/rpc/<fn>` (JSON arguments in,
 * the result or `{code, message, details, hint}` out, with PostgREST's status for each
 * SQLSTATE) and runs each call through the direct transport as the bearer of the request's JWT.
 * It lets supabase-js itself, unmodified, talk to the real database. Node-only; tests only.
 */
import type pg from 'pg';
import { decodeJwt } from 'jose';
import { serveHandler, type ServedHandler } from '../../client/src/manager/serve.ts';
import { directTransport } from '../../client/src/direct-transport.ts';
import { McpControlPlaneError } from '../../client/src/errors.ts';

/** PostgREST's HTTP status for an error code (its documented table); 42501 is 401 for anon, else 403. */
export function postgrestStatus(code: string, role: string): number {
  if (code === '42501') return role === 'anon' ? 401 : 403;
  if (code.startsWith('PGRST3')) return 401;
  if (code === 'PGRST202') return 404;
  if (code === 'PGRST203') return 300;
  if (code === 'P0001') return 400;
  if (code === '23503' || code === '23505') return 409;
  if (code === '25006') return 405;
  if (code === '42883' || code === '42P01') return 404;
  const prefix = code.slice(0, 2);
  if (prefix === '08' || prefix === '53') return 503;
  if (prefix === '0L' || prefix === '0P' || prefix === '28') return 403;
  if (prefix === '54') return 413;
  if (['09', '25', '2D', '38', '39', '3B', '40', '55', '57', '58', 'F0', 'HV', 'P0', 'XX'].includes(prefix)) return 500;
  return 400;
}

export async function servePostgrest(pool: pg.Pool, jwtSecret: string): Promise<ServedHandler> {
  return serveHandler(async (req) => {
    const match = /^\/rest\/v1\/rpc\/([A-Za-z0-9_]+)$/.exec(new URL(req.url).pathname);
    if (!match?.[1] || req.method !== 'POST') return new Response(JSON.stringify({ code: 'PGRST000', message: 'not an RPC call' }), { status: 404 });
    const jwt = /^Bearer\s+(\S+)$/i.exec(req.headers.get('authorization') ?? '')?.[1];
    const transport = jwt ? directTransport({ pool, jwt, jwtSecret }) : directTransport({ pool });
    let role = 'anon';
    try {
      role = jwt ? String(decodeJwt(jwt).role ?? 'anon') : 'anon';
    } catch {
      role = 'anon';
    }
    const text = await req.text();
    try {
      const args = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      const result = await transport.rpc(match[1], args);
      return result === null ? new Response(null, { status: 204 }) : Response.json(result);
    } catch (error) {
      if (!(error instanceof McpControlPlaneError)) throw error;
      return Response.json(error.toJSON(), { status: postgrestStatus(error.code, role) });
    }
  });
}
