/**
 * mcp-gateway as a Supabase Edge Function (Deno): the agent MCP gateway of
 * client/src/gateway, served with Deno.serve. Clients reach it at
 * `<SUPABASE_URL>/functions/v1/mcp-gateway/agents/<agent id>/mcp` (or `/mcp` with an agent
 * API key). Deploy with `--no-verify-jwt`: the gateway verifies the credential itself (an agent
 * API key is not a JWT).
 *
 * Environment: SUPABASE_DB_URL (set by Supabase; the gateway acts as service_role on it),
 * JWT_JWKS_URL (default `<SUPABASE_URL>/auth/v1/.well-known/jwks.json`), JWT_JWKS,
 * JWT_SECRET, GATEWAY_PUBLIC_URL (default `<SUPABASE_URL>/functions/v1/mcp-gateway`),
 * GATEWAY_ALLOWED_HOSTS, GATEWAY_ALLOWED_ORIGINS (comma-separated), PORT (local runs only).
 */
import pg from 'pg';
import { SERVICE_ROLE_OPTIONS, createGateway, listenForChanges, sqlGatewayStore } from '../../../client/src/gateway/index.ts';
import { jwtKeysFromEnv } from '../../../client/src/jwt.ts';

const env = (name: string): string | undefined => Deno.env.get(name) || undefined;
const list = (value: string | undefined): string[] | undefined => (value ? value.split(',').map((s) => s.trim()).filter(Boolean) : undefined);

const supabaseUrl = env('SUPABASE_URL');
const keys = jwtKeysFromEnv(env);
if (!keys.jwks && !keys.jwksUrl && supabaseUrl) keys.jwksUrl = `${supabaseUrl}/auth/v1/.well-known/jwks.json`;
const publicUrl = env('GATEWAY_PUBLIC_URL') ?? (supabaseUrl ? `${supabaseUrl}/functions/v1/mcp-gateway` : undefined);
const allowedHosts = list(env('GATEWAY_ALLOWED_HOSTS'));
const databaseUrl = env('SUPABASE_DB_URL') ?? env('DATABASE_URL');
const pool = new pg.Pool({ connectionString: databaseUrl, options: SERVICE_ROLE_OPTIONS, max: Number(env('GATEWAY_DB_POOL') ?? 5) });
// The database's change announcements, on a connection of the isolate's own: credentials and
// allowed calls are remembered until a change (client/src/gateway/cache.ts).
const changes = listenForChanges({
  connect: async () => {
    const client = new pg.Client({ connectionString: databaseUrl, options: SERVICE_ROLE_OPTIONS });
    await client.connect();
    return client;
  },
  onError: (error) => console.error('mcp-gateway: change listener:', error instanceof Error ? error.message : error),
});

const gateway = createGateway({
  store: sqlGatewayStore(pool),
  changes,
  ...(Object.keys(keys).length > 0 ? { jwtKeys: keys } : {}),
  ...(publicUrl ? { publicUrl } : {}),
  ...(allowedHosts ? { allowedHosts } : {}),
  allowedOrigins: list(env('GATEWAY_ALLOWED_ORIGINS')) ?? [],
  ...(supabaseUrl ? { authorizationServers: [`${supabaseUrl}/auth/v1`] } : {}),
  onError: (error) => console.error('mcp-gateway:', error instanceof Error ? error.message : error),
});

// The isolate may be torn down at any time: write the interaction log before it is.
addEventListener('beforeunload', () => void gateway.flushLog());

const port = env('PORT');
const server = Deno.serve(port ? { port: Number(port), hostname: '127.0.0.1', onListen: ({ port }) => console.log(`mcp-gateway (deno) listening on http://127.0.0.1:${port}`) } : {}, (req) =>
  gateway.handle(req),
);
Deno.addSignalListener('SIGTERM', () => {
  void gateway
    .close()
    .then(() => changes.close())
    .then(() => server.shutdown())
    .then(() => pool.end())
    .finally(() => Deno.exit(0));
});
