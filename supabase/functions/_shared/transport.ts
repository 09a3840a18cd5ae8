/**
 * How an entry reaches the database, as its caller (never the service role):
 *
 * - on Supabase (and wherever PostgREST runs): supabase-js with the project's anon key and the
 *   caller's `Authorization` header, so PostgREST verifies the JWT and the database sees the
 *   caller (SUPABASE_URL, SUPABASE_ANON_KEY);
 * - without PostgREST (a local stack without Docker): the direct transport over a pg pool on
 *   SUPABASE_DB_URL, which verifies the JWT with JWT_SECRET and sets role and claims per
 *   transaction exactly as PostgREST does. Chosen when JWT_SECRET is set.
 */
import { createClient } from '@supabase/supabase-js';
import pg from 'pg';
import { directTransport, supabaseTransport, type RpcTransport } from './sdk.ts';

function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

let pool: pg.Pool | undefined;

export function transportForJwt(jwt: string): RpcTransport {
  const jwtSecret = Deno.env.get('JWT_SECRET');
  if (jwtSecret) {
    pool ??= new pg.Pool({ connectionString: env('SUPABASE_DB_URL'), max: Number(Deno.env.get('DB_POOL_SIZE') ?? 10) });
    return directTransport({ pool, jwt, jwtSecret });
  }
  return supabaseTransport(
    createClient(env('SUPABASE_URL'), env('SUPABASE_ANON_KEY'), {
      global: { headers: { Authorization: `Bearer ${jwt}` } },
      auth: { persistSession: false, autoRefreshToken: false },
    }),
  );
}

/** CORS for browser callers; '*' unless CORS_ORIGIN narrows it. */
export const corsOrigin = Deno.env.get('CORS_ORIGIN') ?? '*';
