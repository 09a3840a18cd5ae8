/**
 * The RPC transport over supabase-js: `supabase.rpc(name, args)` through PostgREST, whose
 * errors carry the SQLSTATE code, details and hint that the database raised. Runs wherever
 * supabase-js runs (browser, Deno edge functions, Node).
 */
import { McpControlPlaneError, SdkErrorCode, controlPlaneError } from './errors.ts';
import type { RpcTransport } from './transport.ts';

/** What PostgREST answers for an error (postgrest-js's PostgrestError has this shape). */
export interface PostgrestErrorLike {
  message: string;
  code?: string | null;
  details?: string | null;
  hint?: string | null;
}

/** The part of a SupabaseClient this transport uses. */
export interface SupabaseRpcClient {
  rpc(fn: string, args?: Record<string, unknown>): PromiseLike<{ data: unknown; error: PostgrestErrorLike | null }>;
}

/**
 * Maps a PostgREST error to the SDK's typed error. postgrest-js reports a network failure with
 * an empty code: that becomes UnavailableError.
 */
export function fromPostgrestError(error: PostgrestErrorLike): McpControlPlaneError {
  const code = error.code ? error.code : SdkErrorCode.unavailable;
  return controlPlaneError({ code, message: error.message, details: error.details ?? null, hint: error.hint ?? null }, { cause: error });
}

export function supabaseTransport(client: SupabaseRpcClient): RpcTransport {
  return {
    async rpc(name, args) {
      const { data, error } = await client.rpc(name, args);
      if (error) throw fromPostgrestError(error);
      return data ?? null;
    },
  };
}
