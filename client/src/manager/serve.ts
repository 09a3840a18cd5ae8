/**
 * Serves a fetch handler (the mcp-server-manager) with Node's http module, for local use and
 * tests; on Supabase the same handler runs under Deno.serve. As a command:
 *
 *   DATABASE_URL=postgresql://... JWT_JWKS_URL=https://<ref>.supabase.co/auth/v1/.well-known/jwks.json npx tsx client/src/manager/serve.ts
 *
 * serves the manager on MANAGER_PORT (default 54330), each request acting as the bearer of its
 * JWT through the direct transport, verified with the project's keys: JWT_JWKS_URL or JWT_JWKS
 * (ES256/RS256) and/or JWT_SECRET (legacy HS256).
 */
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { directTransport } from '../direct-transport.ts';
import { serveFetch } from '../node-serve.ts';
import { jwtKeysFromEnv, type JwtKeyInput } from '../jwt.ts';
import { createManagerHandler } from './handler.ts';

export interface ServedHandler {
  url: string;
  close(): Promise<void>;
}

/** Serves handler on host:port (port 0 picks a free one). */
export function serveHandler(handler: (req: Request) => Promise<Response>, options: { port?: number; host?: string } = {}): Promise<ServedHandler> {
  return serveFetch(handler, { ...options, errorBody: { error: { code: 'XX000', message: 'internal error' } } });
}

/** The manager over a pool, each request acting as the bearer of its JWT. */
export function managerForPool(pool: pg.Pool, jwtSecret: JwtKeyInput): (req: Request) => Promise<Response> {
  return createManagerHandler({ transportFor: (jwt) => directTransport({ pool, jwt, jwtSecret }) });
}

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL ?? 'postgresql://postgres:postgres@127.0.0.1:54322/postgres';
  const jwtSecret = jwtKeysFromEnv((name) => process.env[name]);
  if (Object.keys(jwtSecret).length === 0) {
    console.error('serve: JWT_JWKS_URL, JWT_JWKS or JWT_SECRET is required (the keys the access tokens are signed with)');
    process.exit(2);
  }
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  const served = await serveHandler(managerForPool(pool, jwtSecret), { port: Number(process.env.MANAGER_PORT ?? 54330) });
  console.log(`mcp-server-manager listening on ${served.url}`);
  const stop = (): void => {
    void served.close().then(() => pool.end()).then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
