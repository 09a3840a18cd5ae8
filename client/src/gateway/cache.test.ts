/**
 * The gateway's cache (cache.ts) against the real stack: the database announces its changes on
 * `mcp_gateway` and the gateway, listening, drops what it remembered. The database is asked once
 * per credential and allowed call until a change is announced; each change that takes a
 * permission away holds from its announcement; an expiring grant is remembered only until its
 * instant; while the listener is down nothing is remembered and every call is asked again.
 * The stores here count the questions the real store answers (nothing is answered in their place).
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveFetch, type Served } from '../node-serve.ts';
import { databaseUrl } from '../../../test/support/db.ts';
import { createAgent, createOrganization, deployServer, removeServers, testPool, type Organization } from '../../../test/support/stack.ts';
import { mcpClient, mcpRefusal, ownDtma } from '../../../test/support/gateway-dtma.ts';
import {
  GatewayErrorCode,
  SERVICE_ROLE_OPTIONS,
  createAgentApiKey,
  createGateway,
  gatewayCache,
  listenForChanges,
  revokeAgentApiKey,
  slug,
  sqlGatewayStore,
  type ChangeListener,
  type ListenConnection,
  type Gateway,
  type GatewayStore,
} from './index.ts';

const LISTENER = 'gateway-cache-test-listener';

let pool: pg.Pool;
let servicePool: pg.Pool;
let acme: Organization;
let memory: string;
let readGraph: string;
let changes: ChangeListener;
let gateway: Gateway;
let served: Served;
let dtma: Awaited<ReturnType<typeof ownDtma>>;
const asked = { authenticate: 0, authorizeCall: 0 };
/** While set, the listener cannot reconnect (its connect function refuses). */
let listenerBlocked = false;

async function connect(key: string): Promise<Client> {
  return mcpClient(`${served.url}/mcp`, key);
}

async function agentWithKey(expiresAt?: Date): Promise<{ agentId: string; key: string; keyId: string }> {
  const agentId = await createAgent(pool, acme.organizationId, acme.ownerId, `cached-${Math.random().toString(16).slice(2, 8)}`);
  await acme.owner.grant_agent_mcp_access({
    p_agent_id: agentId,
    p_server_instance_id: memory,
    p_permission_scope: 'read_only',
    ...(expiresAt ? { p_expires_at: expiresAt.toISOString() } : {}),
  });
  const created = await createAgentApiKey(acme.ownerTransport, agentId, 'cache test');
  return { agentId, key: created.api_key, keyId: created.key_id };
}

/** Waits until the gateway has received an announcement made after `since` (a generation). */
async function announced(since: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (changes.generation() === since) {
    if (Date.now() > deadline) throw new Error('no announcement reached the gateway within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}


beforeAll(async () => {
  pool = testPool();
  dtma = await ownDtma();
  acme = await createOrganization(pool, dtma);
  memory = await deployServer(pool, acme, { catalog: 'memory' });
  const { rows } = await pool.query('select instance_name_on_toolbox as name from public.account_tool_instances where id = $1', [memory]);
  readGraph = `${slug(String(rows[0]?.name))}__read_graph`;
  servicePool = new pg.Pool({ connectionString: databaseUrl(), max: 10, options: SERVICE_ROLE_OPTIONS });
  changes = listenForChanges({
    connect: async () => {
      if (listenerBlocked) throw new Error('the test keeps the listener down');
      const client = new pg.Client({ connectionString: databaseUrl(), options: SERVICE_ROLE_OPTIONS, application_name: LISTENER });
      await client.connect();
      return client;
    },
    heartbeatMs: 500,
    maxBackoffMs: 200,
  });
  expect(await changes.ready()).toBe(true);
  const store = sqlGatewayStore(servicePool);
  const counted: GatewayStore = {
    ...store,
    authenticate: (credential) => (asked.authenticate++, store.authenticate(credential)),
    authorizeCall: (agentId, serverId, tool) => (asked.authorizeCall++, store.authorizeCall(agentId, serverId, tool)),
  };
  gateway = createGateway({ store: counted, changes, logFlushMs: 50 });
  served = await serveFetch((req) => gateway.handle(req));
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await changes?.close();
  await served?.close();
  await removeServers(pool, acme, [memory].filter(Boolean));
  await dtma?.close();
  await servicePool?.end();
  await pool?.end();
}, 60_000);

describe('remembered until the database announces a change', () => {
  it('asks once per credential and allowed call; a revoke is refused once announced, a new grant allowed again', async () => {
    const { agentId, key } = await agentWithKey();
    const client = await connect(key);
    const start = { ...asked, generation: changes.generation() };
    expect((await client.listTools()).tools.map((t) => t.name)).toContain(readGraph);
    for (let i = 0; i < 10; i++) await client.callTool({ name: readGraph, arguments: {} });
    // What tools/list allowed covers the calls; the key was asked once. Only an announcement in
    // between (another change in the database) may cost one more question each.
    const moved = changes.generation() - start.generation;
    expect(asked.authorizeCall - start.authorizeCall).toBeLessThanOrEqual(moved);
    expect(asked.authenticate - start.authenticate).toBeLessThanOrEqual(1 + moved);

    const before = changes.generation();
    await acme.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory });
    await announced(before);
    const denied = await mcpRefusal(client.callTool({ name: readGraph, arguments: {} }));
    expect(denied.code).toBe(GatewayErrorCode.denied);
    expect(denied.message).toContain('no_live_grant');

    const regranted = changes.generation();
    await acme.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory, p_permission_scope: 'read_only' });
    await announced(regranted);
    await client.callTool({ name: readGraph, arguments: {} });
    await client.close();
  });

  it('each change that takes a permission away holds once announced: a key revoked, an agent deactivated, a member removed', async () => {
    // A revoked key: 401 on the next request after the announcement.
    const first = await agentWithKey();
    const keyed = await connect(first.key);
    await keyed.callTool({ name: readGraph, arguments: {} });
    let before = changes.generation();
    expect(await revokeAgentApiKey(acme.ownerTransport, first.keyId, 'rotated')).toBe(true);
    await announced(before);
    const error = await keyed.callTool({ name: readGraph, arguments: {} }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(String(error?.message)).toMatch(/401|invalid API key/i);
    await keyed.close().catch(() => undefined);

    // An agent deactivated: its key no longer stands for it.
    const second = await agentWithKey();
    const deactivated = await connect(second.key);
    await deactivated.callTool({ name: readGraph, arguments: {} });
    before = changes.generation();
    await pool.query('update public.agents set is_active = false where id = $1', [second.agentId]);
    await announced(before);
    expect(String(await deactivated.callTool({ name: readGraph, arguments: {} }).then(() => '', (e: unknown) => String(e)))).toMatch(/401|invalid API key/i);
    await deactivated.close().catch(() => undefined);

    // A member removed: her agent's grant no longer holds.
    const { createUser, userJwt, JWT_SECRET } = await import('../../../test/support/stack.ts');
    const { directTransport } = await import('../direct-transport.ts');
    const { createRpc } = await import('../rpc.ts');
    const memberId = await createUser(pool, 'cached-member');
    await acme.owner.add_organization_member({ p_organization_id: acme.organizationId, p_user_id: memberId, p_role: 'member' });
    const member = directTransport({ pool, jwt: await userJwt(memberId), jwtSecret: JWT_SECRET });
    const agentId = await createAgent(pool, acme.organizationId, memberId, 'cached-member-agent');
    await createRpc(member).grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory, p_permission_scope: 'read_only' });
    const { api_key } = await createAgentApiKey(member, agentId, 'member key');
    const removed = await connect(api_key);
    await removed.callTool({ name: readGraph, arguments: {} });
    before = changes.generation();
    await acme.owner.remove_organization_member({ p_organization_id: acme.organizationId, p_user_id: memberId });
    await announced(before);
    expect((await mcpRefusal(removed.callTool({ name: readGraph, arguments: {} }))).message).toContain('no_live_grant');
    await removed.close();
  });

  it('an expiring grant is remembered only until its instant, with no announcement needed', async () => {
    const expiresAt = new Date(Date.now() + 1_500);
    const { key } = await agentWithKey(expiresAt);
    const client = await connect(key);
    const start = { calls: asked.authorizeCall, generation: changes.generation() };
    await client.callTool({ name: readGraph, arguments: {} });
    await client.callTool({ name: readGraph, arguments: {} });
    await client.callTool({ name: readGraph, arguments: {} });
    // Asked once (an expiring grant is not taken from a listing), then remembered for what it has left.
    expect(asked.authorizeCall - start.calls).toBeLessThanOrEqual(1 + changes.generation() - start.generation);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt.getTime() - Date.now()) + 20));
    expect((await mcpRefusal(client.callTool({ name: readGraph, arguments: {} }))).message).toContain('no_live_grant');
    await client.close();
  });

  it('an answer asked before a change is not remembered after it', async () => {
    const { agentId } = await agentWithKey();
    const cache = gatewayCache(changes);
    const tool = { name: 'read_graph', inputSchema: { type: 'object' as const } };
    const question = cache.asking();
    const before = changes.generation();
    await acme.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory });
    await announced(before);
    cache.rememberAllowed(agentId, memory, tool, null, question);
    expect(cache.allowed(agentId, memory, tool)).toBe(false);
    const fresh = cache.asking();
    cache.rememberAllowed(agentId, memory, tool, null, fresh);
    expect(cache.allowed(agentId, memory, tool)).toBe(true);
  });
});

describe('whatever else holds', () => {
  it('remembers an allowed call at most maxAgeMs', async () => {
    const cache = gatewayCache(changes, { maxAgeMs: 100 });
    const tool = { name: 'read_graph', inputSchema: { type: 'object' as const } };
    // Remembered and read back in the same turn of the event loop: no announcement can come between.
    cache.rememberAllowed(acme.ownerId, memory, tool, null, cache.asking());
    expect(cache.allowed(acme.ownerId, memory, tool)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(cache.allowed(acme.ownerId, memory, tool)).toBe(false);
  });
});

describe('while the listener is down', () => {
  it('remembers nothing: every call is asked, a revoke holds on the very next call; once back, it remembers again', async () => {
    const { agentId, key } = await agentWithKey();
    const client = await connect(key);
    await client.callTool({ name: readGraph, arguments: {} });

    // The listener's connection dies (as in a database restart) and cannot come back for now.
    listenerBlocked = true;
    const { rows } = await pool.query<{ killed: boolean }>('select pg_terminate_backend(pid) as killed from pg_stat_activity where application_name = $1', [LISTENER]);
    expect(rows.map((r) => r.killed)).toContain(true);
    const deadline = Date.now() + 5_000;
    while (changes.live() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(changes.live()).toBe(false);

    const start = asked.authorizeCall;
    for (let i = 0; i < 3; i++) await client.callTool({ name: readGraph, arguments: {} });
    expect(asked.authorizeCall - start).toBe(3);
    await acme.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory });
    expect((await mcpRefusal(client.callTool({ name: readGraph, arguments: {} }))).message).toContain('no_live_grant');

    listenerBlocked = false;
    expect(await changes.ready(10_000)).toBe(true);
    const back = { calls: asked.authorizeCall, generation: changes.generation() };
    await acme.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory, p_permission_scope: 'read_only' });
    await announced(back.generation);
    const regranted = { calls: asked.authorizeCall, generation: changes.generation() };
    for (let i = 0; i < 5; i++) await client.callTool({ name: readGraph, arguments: {} });
    expect(asked.authorizeCall - regranted.calls).toBeLessThanOrEqual(1 + changes.generation() - regranted.generation);
    await client.close();
  });

  it('never goes live over a connection that delivers no notifications (as through a transaction pooler): nothing is remembered', async () => {
    // The real connection, with its notifications withheld, as a transaction pooler would: LISTEN
    // and every query succeed, nothing ever arrives.
    const deaf = listenForChanges({
      connect: async () => {
        const client = new pg.Client({ connectionString: databaseUrl(), options: SERVICE_ROLE_OPTIONS });
        await client.connect();
        const connection = {
          query: (sql: string) => client.query(sql),
          on: (event: string, listener: (...args: never[]) => void) => (event === 'notification' ? connection : client.on(event as 'error', listener as () => void)),
          end: () => client.end(),
        };
        return connection as unknown as ListenConnection;
      },
      heartbeatMs: 200,
      maxBackoffMs: 200,
    });
    expect(await deaf.ready(1_500)).toBe(false);
    const cache = gatewayCache(deaf);
    const tool = { name: 'read_graph', inputSchema: { type: 'object' as const } };
    cache.rememberAllowed(acme.ownerId, memory, tool, null, cache.asking());
    expect(cache.allowed(acme.ownerId, memory, tool)).toBe(false);
    await deaf.close();
  });

  it('a revoke holds on the very next call when no listener is given', async () => {
    const uncached = createGateway({ store: sqlGatewayStore(servicePool), logFlushMs: 50 });
    const direct = await serveFetch((req) => uncached.handle(req));
    const { agentId, key } = await agentWithKey();
    const client = await mcpClient(`${direct.url}/mcp`, key);
    await client.callTool({ name: readGraph, arguments: {} });
    await acme.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: memory });
    expect((await mcpRefusal(client.callTool({ name: readGraph, arguments: {} }))).message).toContain('no_live_grant');
    await client.close();
    await uncached.close();
    await direct.close();
  });
});
