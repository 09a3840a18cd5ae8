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
import { postgrestStatus } from '../../standins/postgrest/status.ts';

export { postgrestStatus };

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
