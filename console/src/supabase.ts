/**
 * The console's only way to the database, as on any Supabase project: supabase-js with the
 * user's session. RPCs go through the SDK's typed calls (arguments checked with zod, errors
 * typed by SQLSTATE); reads are table selects under RLS. Only the URL and the anon key differ
 * between the local stand-in and a real project.
 */
import { createClient } from '@supabase/supabase-js';
import { createRpc } from '../../client/src/rpc.ts';
import { supabaseTransport, fromPostgrestError } from '../../client/src/supabase-transport.ts';
import type { McpControlPlaneError } from '../../client/src/errors.ts';

const url = import.meta.env.VITE_SUPABASE_URL as string | undefined;
const anonKey = import.meta.env.VITE_SUPABASE_ANON_KEY as string | undefined;
if (!url || !anonKey) throw new Error('VITE_SUPABASE_URL and VITE_SUPABASE_ANON_KEY must be set when the console is built');

export const supabase = createClient(url, anonKey, {
  auth: { persistSession: true, autoRefreshToken: true, detectSessionInUrl: true, flowType: 'implicit' },
});

export const rpc = createRpc(supabaseTransport(supabase));

/** A table read under RLS; throws the SDK's typed error, as the RPCs do. */
export async function rows<T>(query: PromiseLike<{ data: unknown; error: { message: string; code?: string | null; details?: string | null; hint?: string | null } | null }>): Promise<T[]> {
  const { data, error } = await query;
  if (error) throw fromPostgrestError(error);
  return (data ?? []) as T[];
}

export type ConsoleError = McpControlPlaneError;

/**
 * An RPC the SDK's schemas do not describe yet (another issue's work, e.g. the gateway's API
 * keys): called by name through supabase-js, its error typed as the SDK's. Move each to
 * `rpc` once its schema is in client/src/schemas.ts.
 */
export async function untypedRpc<T>(name: string, args: Record<string, unknown>): Promise<T> {
  const { data, error } = await supabase.rpc(name, args);
  if (error) throw fromPostgrestError(error);
  return data as T;
}

/** A call of an Edge Function (`/functions/v1/<name>/<route>`) with the user's session. */
export async function callFunction<T>(name: string, route: string, body: Record<string, unknown>): Promise<T> {
  const { data, error } = await supabase.functions.invoke(`${name}/${route}`, { body });
  if (error) {
    let detail: { code?: string; message?: string; hint?: string } = {};
    try {
      detail = (await (error as { context?: Response }).context?.json()) ?? {};
    } catch {
      detail = {};
    }
    throw fromPostgrestError({ code: detail.code ?? 'SDK_UNAVAILABLE', message: detail.message ?? `${name}: ${error.message}`, hint: detail.hint ?? null, details: null });
  }
  return data as T;
}
