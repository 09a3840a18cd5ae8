/**
 * How the SDK reaches the database: one call per RPC, with named arguments, as
 * `supabase.rpc(name, args)` sends them. Two implementations: supabaseTransport (supabase-js,
 * through PostgREST) and directTransport (pg, setting the per-request context as PostgREST
 * does). Both throw McpControlPlaneError (errors.ts) and answer what PostgREST would answer:
 * a row set as an array of objects, a scalar as itself, void as null.
 */
export interface RpcTransport {
  rpc(name: string, args: Record<string, unknown>): Promise<unknown>;
}
