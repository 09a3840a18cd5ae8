// What an MCP server sees in its environment, end to end on the real stack: a secret
// configuration field (kept in Vault), a credential rotated while the server was stopped, and
// its user's OAuth token, refreshed and then revoked. The server is the real
// @modelcontextprotocol/server-everything from npm behind the local DTMA; its get-env tool shows
// the environment it runs with. A recording toolbox shows the request body as it goes on the wire.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asUser, createUser, newPool, waitFor } from '../../test/support/db.ts';
import { recordingServer } from '../../test/support/http.ts';

const pool = newPool(10);
const dtmaUrl = process.env.DTMA_URL ?? '';
const dtmaToken = process.env.DTMA_TOKEN ?? '';
const tag = Math.random().toString(36).slice(2, 10);
const catalogName = `env-probe-${tag}`;
let owner = '';
let org = '';
let toolbox = '';
let wireBox = '';
let wire: Awaited<ReturnType<typeof recordingServer>>;
const instances: string[] = [];

const rpc = async <T>(sql: string, params: unknown[] = []): Promise<T> => (await asUser(pool, owner, sql, params)).rows[0] as T;
const manage = async (action: string, serverId: string | null, config: object = {}) =>
  (await rpc<{ r: { id: string; status: string } }>('select public.manage_mcp_servers($1, $2, $3, $4) as r', [action, org, config, serverId])).r;
const settle = (id: string, status: string) =>
  waitFor(`instance ${id} to be ${status}`, async () => {
    await pool.query('select public.harvest_dtma_responses()');
    const { rows } = await pool.query<{ status: string; last_error: string | null }>(
      'select status::text, last_error from public.account_tool_instances where id = $1', [id]);
    if (rows[0].status === 'failed' && status !== 'failed') throw new Error(`instance failed: ${rows[0].last_error}`);
    return rows[0].status === status ? true : undefined;
  }, 60_000, 100);

/** The environment the server runs with, as its get-env tool reports it. */
async function serverEnv(id: string): Promise<Record<string, string>> {
  const { rows } = await pool.query<{ endpoint_url: string }>('select endpoint_url from public.account_tool_instances where id = $1', [id]);
  const client = new Client({ name: 'environment-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(rows[0].endpoint_url), {
    requestInit: { headers: { authorization: `Bearer ${dtmaToken}` } },
  }));
  try {
    const result = await client.callTool({ name: 'get-env', arguments: {} });
    const text = (result.content as Array<{ type: string; text?: string }>).map((c) => c.text ?? '').join('');
    return JSON.parse(text) as Record<string, string>;
  } finally {
    await client.close();
  }
}

const outboxHolds = async (value: string) =>
  (await pool.query<{ n: number }>('select count(*)::int as n from public.dtma_requests where body::text like $1', [`%${value}%`])).rows[0].n;

beforeAll(async () => {
  if (!dtmaUrl || !dtmaToken) throw new Error('DTMA_URL and DTMA_TOKEN are set by scripts/test.sh');
  // A catalog entry whose API_KEY is a secret ("writeOnly") and which reads a GitHub token.
  await pool.query(
    `insert into public.mcp_server_catalog (name, display_name, docker_image_url, version, transport_type, config_schema, oauth_token_env)
     select $1, 'Environment probe', c.docker_image_url, c.version, 'stdio',
            '{"type": "object", "properties": {"env": {"type": "object", "required": ["API_KEY"], "properties": {
               "API_KEY": {"type": "string", "minLength": 8, "writeOnly": true}}}}}',
            '{"github": "GITHUB_TOKEN"}'
       from public.mcp_server_catalog c where c.name = 'everything'`, [catalogName]);
  owner = await createUser(pool, 'environment-owner');
  org = (await rpc<{ id: string }>(`select public.create_organization('Environment', $1) as id`, [`environment-${tag}`])).id;
  wire = await recordingServer((_req, res) => {
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ success: true, message: 'recorded', data: { errors: {} } }));
  });
  // The platform (this postgres pool) registers the toolboxes.
  toolbox = (await pool.query(`select public.create_toolbox($1, 'real', $2, $3) as id`, [org, `${dtmaUrl}/toolboxes/${org}`, dtmaToken])).rows[0].id;
  wireBox = (await pool.query(`select public.create_toolbox($1, 'wire', $2, 'wire-token-0123456789abcdef') as id`, [org, wire.url])).rows[0].id;
}, 60_000);

afterAll(async () => {
  for (const id of instances) {
    const { rows } = await pool.query<{ status: string }>('select status::text from public.account_tool_instances where id = $1', [id]);
    if (['running', 'unhealthy', 'deploying'].includes(rows[0]?.status)) {
      await manage('stop', id).catch(() => {});
      await settle(id, 'stopped').catch(() => {});
    }
  }
  await wire?.close();
  await pool.end();
});

describe('a server environment from the control plane', () => {
  let id = '';

  it('a secret configuration field reaches the server, and never the outbox', async () => {
    id = (await manage('create', null, {
      toolbox_id: toolbox, catalog_name: catalogName, instance_name: `probe-${tag}`,
      configuration: { env: { API_KEY: `sk-probe-${tag}` } },
    })).id;
    instances.push(id);
    await manage('deploy', id);
    await settle(id, 'running');
    expect((await serverEnv(id)).API_KEY).toBe(`sk-probe-${tag}`);
    expect(await outboxHolds(`sk-probe-${tag}`)).toBe(0);
    const row = (await rpc<{ c: unknown; s: Record<string, string> }>(
      'select configuration as c, secret_fields as s from public.account_tool_instances where id = $1', [id]));
    expect(row.c).toEqual({ env: {} });
    expect(Object.keys(row.s)).toEqual(['env.API_KEY']);
  }, 90_000);

  it('a credential rotated while the server is stopped reaches the next deploy: on the wire and in the server', async () => {
    await manage('stop', id);
    await settle(id, 'stopped');
    await rpc('select public.rotate_mcp_credentials($1, $2, $3) as v', ['SERVICE_TOKEN', `tok-${tag}-v1`, id]);
    await rpc('select public.rotate_mcp_credentials($1, $2, $3) as v', ['SERVICE_TOKEN', `tok-${tag}-v2`, id]);
    await manage('deploy', id);
    await settle(id, 'running');
    const env = await serverEnv(id);
    expect(env.SERVICE_TOKEN).toBe(`tok-${tag}-v2`);
    expect(env.API_KEY).toBe(`sk-probe-${tag}`);
    expect(await outboxHolds(`tok-${tag}`)).toBe(0);

    // The same on the wire: a toolbox that records the deploy body it receives.
    const onWire = (await manage('create', null, {
      toolbox_id: wireBox, catalog_name: catalogName, instance_name: `wire-${tag}`, configuration: { env: { API_KEY: `sk-wire-${tag}` } },
    })).id;
    await rpc('select public.rotate_mcp_credentials($1, $2, $3) as v', ['SERVICE_TOKEN', `tok-wire-${tag}`, onWire]);
    await manage('deploy', onWire);
    const sent = await waitFor('the deploy to reach the recording toolbox', async () =>
      wire.received.find((r) => r.method === 'POST' && r.url === '/mcp/groups' && r.body.includes(onWire)), 30_000, 50);
    const server = (JSON.parse(sent.body) as { servers: Array<{ environmentVariables: Record<string, string>; baseConfigOverrideJson: object }> }).servers[0];
    expect(server.environmentVariables).toEqual({ API_KEY: `sk-wire-${tag}`, SERVICE_TOKEN: `tok-wire-${tag}` });
    expect(server.baseConfigOverrideJson).toEqual({ env: { API_KEY: `sk-wire-${tag}` } });
    expect(sent.headers.authorization).toBe('Bearer wire-token-0123456789abcdef');
    await settle(onWire, 'running');
    await manage('stop', onWire);
  }, 120_000);

  it("its user's OAuth token reaches GITHUB_TOKEN; a refresh pushes the new one; a revocation stops the server", async () => {
    const connection = (await rpc<{ id: string }>(
      `select public.store_user_oauth_connection('github', $1, $2, 0, '{repo}') as id`, [`gho-${tag}-1`, `ghr-${tag}`])).id;
    await manage('update', id, { oauth_connections: { github: connection } });
    await manage('restart', id);
    await settle(id, 'running');
    expect((await serverEnv(id)).GITHUB_TOKEN).toBe(`gho-${tag}-1`);

    // The token expired: the single-flight refresh stores a new one, which is pushed to the server.
    const lease = await rpc<{ lease_id: string }>('select lease_id from public.begin_oauth_refresh($1)', [connection]);
    await rpc('select public.complete_oauth_refresh($1, $2, null, 3600) as e', [lease.lease_id, `gho-${tag}-2`]);
    await waitFor('the credentials refresh to be confirmed', async () => {
      await pool.query('select public.harvest_dtma_responses()');
      const { rows } = await pool.query<{ state: string }>(
        `select state::text from public.dtma_requests where instance_id = $1 and operation = 'credentials_refresh' order by id desc limit 1`, [id]);
      if (rows[0]?.state === 'failed') throw new Error('the credentials refresh failed');
      return rows[0]?.state === 'succeeded' ? true : undefined;
    }, 60_000, 100);
    expect((await serverEnv(id)).GITHUB_TOKEN).toBe(`gho-${tag}-2`);
    expect(await outboxHolds(`gho-${tag}`)).toBe(0);

    await rpc('select public.revoke_user_oauth_connection($1) as r', [connection]);
    await settle(id, 'stopped');
    const cause = await pool.query<{ cause: string }>(
      `select cause from public.audit_log where entity_id = $1 and after ->> 'status' = 'stopping' order by id desc limit 1`, [id]);
    expect(cause.rows[0].cause).toBe('oauth_revoked');
  }, 120_000);
});
