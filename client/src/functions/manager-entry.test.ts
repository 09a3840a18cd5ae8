/**
 * supabase/functions/mcp-server-manager under real Deno, as deployed: Deno.serve, the
 * environment Supabase gives it (SUPABASE_URL, SUPABASE_ANON_KEY), the caller's Authorization
 * header, supabase-js talking to PostgREST (the stand-in of testing/postgrest.ts over the real
 * database). A real MCP server deployed onto the local DTMA; refusals with their statuses.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../../test/support/db.ts';
import { signJwt } from '../jwt.ts';
import { startEdgeFunction, supabaseEnv, type EdgeFunction } from '../../../test/support/edge-function.ts';
import { servePostgrest } from '../../../test/support/postgrest.ts';
import type { ServedHandler } from '../manager/serve.ts';
import { JWT_SECRET, createAgent, createOrganization, createUser, removeServers, suffix, testPool, userJwt, waitForStatus, type Organization, registerToolbox } from '../../../test/support/stack.ts';

let pool: pg.Pool;
let postgrest: ServedHandler;
let entry: EdgeFunction;
let direct: EdgeFunction;
let org: Organization;
let ownerJwt: string;
let memberJwt: string;
let strangerJwt: string;
let agentId: string;
let instanceId = '';
let deadToolboxInstance = '';

type Reply = { status: number; body: { data?: unknown; meta?: Record<string, unknown>; error?: Record<string, unknown> } };

async function call(base: string, method: string, route: string, jwt: string | null, body?: unknown): Promise<Reply> {
  const response = await fetch(`${base}/functions/v1/mcp-server-manager${route}`, {
    method,
    headers: { ...(jwt ? { authorization: `Bearer ${jwt}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {} };
}
const manager = (method: string, route: string, jwt: string | null, body?: unknown): Promise<Reply> => call(entry.url, method, route, jwt, body);

interface StatusRow {
  server_instance_id: string;
  status: string;
  last_error: string | null;
  toolbox_status: string;
  toolbox_last_heartbeat_at: string | null;
  dtma_request: { id: number; state: string; operation: string; last_error: string | null } | null;
}

beforeAll(async () => {
  pool = testPool();
  postgrest = await servePostgrest(pool, JWT_SECRET);
  [entry, direct] = await Promise.all([
    startEdgeFunction('mcp-server-manager', await supabaseEnv(`${postgrest.url}`, JWT_SECRET)),
    // Without PostgREST: the direct transport on SUPABASE_DB_URL, verifying JWTs with JWT_SECRET.
    startEdgeFunction('mcp-server-manager', { SUPABASE_DB_URL: process.env.DATABASE_URL ?? '', JWT_SECRET }),
  ]);
  org = await createOrganization(pool);
  ownerJwt = await userJwt(org.ownerId);
  const memberId = await createUser(pool, 'member');
  await org.owner.add_organization_member({ p_organization_id: org.organizationId, p_user_id: memberId, p_role: 'member' });
  memberJwt = await userJwt(memberId);
  strangerJwt = await userJwt(await createUser(pool, 'stranger'));
  agentId = await createAgent(pool, org.organizationId, org.ownerId, 'entry agent');
});

afterAll(async () => {
  if (instanceId) await removeServers(pool, org, [instanceId]);
  await Promise.all([entry?.stop(), direct?.stop()]);
  await postgrest?.close();
  await pool?.end();
});

describe('mcp-server-manager entry under Deno', () => {
  it('answers 401 without a token and for a forged one, on both transports', async () => {
    const forged = await signJwt({ sub: org.ownerId, role: 'authenticated' }, 'not-the-project-secret-but-32-chars-long');
    for (const base of [entry.url, direct.url]) {
      expect((await call(base, 'GET', '/status', null)).status).toBe(401);
      const reply = await call(base, 'GET', '/status', forged);
      expect(reply.status).toBe(401);
      expect(reply.body.error).toMatchObject({ code: 'PGRST301' });
    }
  });

  it('deploys, grants and shows status as the owner; the direct transport answers the same', async () => {
    const reply = await manager('POST', '/deploy', ownerJwt, {
      organization_id: org.organizationId,
      server_config: { toolbox_id: org.toolboxId, catalog_name: 'memory', instance_name: `memory-${suffix()}`, configuration: { env: { MEMORY_FILE_PATH: `/tmp/entry-${suffix()}.jsonl` } } },
    });
    expect(reply.status).toBe(202);
    instanceId = (reply.body.data as { id: string }).id;
    await waitForStatus(pool, instanceId, 'running');
    const grant = await manager('POST', '/permissions/grant', ownerJwt, { agent_id: agentId, server_instance_id: instanceId, permission_scope: 'read_only' });
    expect(grant.status).toBe(201);

    const status = await manager('GET', `/status?organization_id=${org.organizationId}`, ownerJwt);
    expect(status.status).toBe(200);
    expect(status.body.data).toEqual([
      expect.objectContaining({ server_instance_id: instanceId, status: 'running', last_error: null, toolbox_status: 'active', dtma_request: null }),
    ]);
    const viaDirect = await call(direct.url, 'GET', `/status?organization_id=${org.organizationId}`, ownerJwt);
    expect(viaDirect.body.data).toEqual(status.body.data);
  });

  it('refuses strangers and bad input with their statuses', async () => {
    expect((await manager('GET', `/status?organization_id=${org.organizationId}`, strangerJwt)).status).toBe(403);
    expect((await manager('GET', `/status?organization_id=${org.organizationId}&refresh=true`, memberJwt)).status).toBe(403);
    expect((await manager('GET', '/status?refresh=true', ownerJwt)).status).toBe(422);
    expect((await manager('GET', `/status?organization_id=${org.organizationId}&wait_ms=999999`, ownerJwt)).status).toBe(422);
    expect((await manager('DELETE', `/remove/${instanceId}?organization_id=${org.organizationId}`, strangerJwt)).body.error).toMatchObject({ code: '42501' });
    expect((await manager('DELETE', `/remove/${instanceId}`, strangerJwt)).status).toBe(404);
    expect((await manager('DELETE', '/remove/not-a-uuid', ownerJwt)).status).toBe(422);
    expect((await manager('POST', '/permissions/grant', memberJwt, { agent_id: agentId, server_instance_id: instanceId, permission_scope: 'full_access' })).status).toBe(403);
    expect((await manager('PUT', '/status', ownerJwt)).status).toBe(405);
  });

  it('asks the DTMA for fresh status through the outbox, without waiting for the minute poll', async () => {
    const before = ((await manager('GET', `/status?organization_id=${org.organizationId}`, ownerJwt)).body.data as StatusRow[])[0];
    const refreshed = await manager('GET', `/status?organization_id=${org.organizationId}&refresh=true&wait_ms=8000`, ownerJwt);
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.meta).toMatchObject({ refresh: { fresh: true, requested: [expect.any(Number)] } });
    const after = (refreshed.body.data as StatusRow[])[0];
    expect(after?.toolbox_last_heartbeat_at).not.toBe(before?.toolbox_last_heartbeat_at);
    const { rows } = await pool.query(`select operation, method, path, state::text from public.dtma_requests where id = $1`, [
      (refreshed.body.meta?.refresh as { requested: number[] }).requested[0],
    ]);
    expect(rows).toEqual([{ operation: 'status', method: 'GET', path: '/mcp/status', state: 'succeeded' }]);
  });

  it('shows a server’s pending DTMA request and its error to admins only', async () => {
    // A toolbox whose DTMA cannot be reached: the deploy stays pending, retried, with the error.
    const deadBox = await registerToolbox(pool, org.organizationId, `dead-${suffix()}`, { url: 'http://127.0.0.1:9', token: 'dead-token-0123456789' });
    const created = await org.owner.manage_mcp_servers({ action: 'create', organization_id: org.organizationId, server_config: { toolbox_id: deadBox, catalog_name: 'memory', instance_name: `dead-${suffix()}` } });
    deadToolboxInstance = created.id;
    await manager('POST', '/deploy', ownerJwt, { organization_id: org.organizationId, server_id: deadToolboxInstance });
    const row = await waitFor('the failed attempt to be recorded', async () => {
      const rows = (await manager('GET', `/status?organization_id=${org.organizationId}`, ownerJwt)).body.data as StatusRow[];
      const found = rows.find((r) => r.server_instance_id === deadToolboxInstance);
      return found?.dtma_request?.last_error ? found : undefined;
    }, 20_000, 200);
    expect(row).toMatchObject({ status: 'deploying', dtma_request: { operation: 'deploy', state: expect.stringMatching(/^(queued|sent)$/) } });
    // Even admins read the classified outcome through the API, never DTMA's own words.
    const { rows: [stored] } = await pool.query<{ summary: string | null }>('select last_error_summary as summary from public.dtma_requests where id = $1', [row?.dtma_request?.id]);
    expect(row?.dtma_request?.last_error).toBe(stored?.summary);
    const asMember = ((await manager('GET', `/status?organization_id=${org.organizationId}`, memberJwt)).body.data as StatusRow[]).find((r) => r.server_instance_id === deadToolboxInstance);
    expect(asMember).toMatchObject({ status: 'deploying', dtma_request: null });
  });

  it('removes a server and revokes its grants in the same transaction, audited', async () => {
    const reply = await manager('DELETE', `/remove/${instanceId}`, ownerJwt);
    expect(reply.status).toBe(202);
    expect(reply.body.data).toMatchObject({ id: instanceId, status: 'removing' });
    const { rows: grants } = await pool.query(`select revoked_at is not null as revoked, revoke_reason, revoked_by from public.agent_mcp_server_access where server_instance_id = $1`, [instanceId]);
    expect(grants).toEqual([{ revoked: true, revoke_reason: 'the MCP server was removed', revoked_by: org.ownerId }]);
    // One transaction wrote both audit rows: they carry the same xmin.
    const { rows: audit } = await pool.query(
      `select entity_type, xmin::text as tx from public.audit_log
        where (entity_type = 'mcp_instance' and entity_id = $1::text and after ->> 'status' = 'removing')
           or (entity_id in (select id::text from public.agent_mcp_server_access where server_instance_id = $1::uuid) and after ->> 'revoked_at' is not null)`,
      [instanceId],
    );
    expect(audit).toHaveLength(2);
    expect(new Set(audit.map((r: { tx: string }) => r.tx)).size).toBe(1);
    await manager('DELETE', `/remove/${deadToolboxInstance}`, ownerJwt);
  });
});
