/**
 * The agent MCP gateway under Node (npm start runs it):
 *
 *   DATABASE_URL=postgresql://... GATEWAY_PORT=8080 npx tsx scripts/gateway/main.ts
 *
 * | variable | default | meaning |
 * | GATEWAY_PORT | 8080 | listening port (0: a free one) |
 * | GATEWAY_HOST | 127.0.0.1 | listening address |
 * | GATEWAY_PUBLIC_URL | http://<host>:<port> | where clients reach it (resource metadata, Host check) |
 * | GATEWAY_ALLOWED_HOSTS | the listening and public hosts, localhost | Host values accepted, comma-separated |
 * | GATEWAY_ALLOWED_ORIGINS | none | browser Origins accepted, comma-separated |
 * | JWT_JWKS_URL, JWT_JWKS, JWT_SECRET | none | keys that verify user JWTs (without them: API keys only) |
 * | GATEWAY_AUTHORIZATION_SERVERS | none | comma-separated, named in the resource metadata |
 * | GATEWAY_LOG_FLUSH_MS | 100 | how long a logged call may wait in memory before its batch is written |
 * | GATEWAY_CHANGE_LISTENER | on | `off`: no change listener, so nothing is remembered and the database is asked on every request and call |
 *
 * It acts on the database as service_role (the direct transport), the only role that may run
 * the gateway's functions, and listens for the database's change announcements on a connection
 * of its own (credentials and allowed calls are remembered until a change: client/src/gateway/
 * cache.ts). SIGTERM and SIGINT end the sessions and write the pending log.
 */
import pg from 'pg';
import { SERVICE_ROLE_OPTIONS, createGateway, listenForChanges, sqlGatewayStore } from '../../client/src/gateway/index.ts';
import { jwtKeysFromEnv } from '../../client/src/jwt.ts';
import { nodeFetch } from '../../client/src/node-fetch.ts';
import { socketPost } from '../../client/src/socket-post.ts';
import { serveHttp1 } from '../../client/src/http1-serve.ts';

const list = (value: string | undefined): string[] | undefined => (value ? value.split(',').map((s) => s.trim()).filter(Boolean) : undefined);

const databaseUrl = process.env.DATABASE_URL ?? 'postgresql://postgres:postgres@127.0.0.1:54322/postgres';
const host = process.env.GATEWAY_HOST ?? '127.0.0.1';
const port = Number(process.env.GATEWAY_PORT ?? 8080);
const pool = new pg.Pool({ connectionString: databaseUrl, options: SERVICE_ROLE_OPTIONS, max: Number(process.env.GATEWAY_DB_POOL ?? 20) });
const keys = jwtKeysFromEnv((name) => process.env[name]);
const changes = process.env.GATEWAY_CHANGE_LISTENER === 'off' ? undefined : listenForChanges({
  connect: async () => {
    const client = new pg.Client({ connectionString: databaseUrl, options: SERVICE_ROLE_OPTIONS });
    await client.connect();
    return client;
  },
  onError: (error) => console.error('gateway: change listener:', error instanceof Error ? error.message : error, '(asking the database per request until it is back)'),
});

let gateway: ReturnType<typeof createGateway> | undefined;
// HTTP/1.1 on raw sockets, requests and answers without web objects (client/src/http1-serve.ts,
// light-http.ts): less time per call than node:http.
const served = await serveHttp1((req) => (gateway as NonNullable<typeof gateway>).serve(req), { host, port });
const publicUrl = process.env.GATEWAY_PUBLIC_URL ?? served.url;
gateway = createGateway({
  store: sqlGatewayStore(pool),
  ...(changes ? { changes } : {}),
  // The upstream endpoints over Node's http/https agents (client/src/node-fetch.ts): less CPU per call than the global fetch.
  fetch: nodeFetch(),
  // The call lane's POSTs straight on sockets (client/src/socket-post.ts): less CPU per call than node:http.
  post: socketPost(),
  ...(Object.keys(keys).length > 0 ? { jwtKeys: keys } : {}),
  publicUrl,
  allowedHosts: list(process.env.GATEWAY_ALLOWED_HOSTS) ?? [...new Set([new URL(served.url).host, `localhost:${served.port}`, new URL(publicUrl).host])],
  allowedOrigins: list(process.env.GATEWAY_ALLOWED_ORIGINS) ?? [],
  authorizationServers: list(process.env.GATEWAY_AUTHORIZATION_SERVERS) ?? [],
  ...(process.env.GATEWAY_LOG_FLUSH_MS ? { logFlushMs: Number(process.env.GATEWAY_LOG_FLUSH_MS) } : {}),
  onError: (error) => console.error('gateway:', error instanceof Error ? error.message : error),
});
console.log(`mcp gateway listening on ${served.url} (agent endpoints: ${publicUrl}/agents/<agent id>/mcp, or ${publicUrl}/mcp with an agent API key)`);

let stopping = false;
const stop = (): void => {
  if (stopping) process.exit(1);
  stopping = true;
  void (async () => {
    await gateway?.close();
    await changes?.close();
    await served.close();
    await pool.end();
    process.exit(0);
  })();
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
