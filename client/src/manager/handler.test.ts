/**
 * The mcp-server-manager handler over real HTTP (serve.ts), acting as each caller on the real
 * database, deploying a real MCP server through the control plane onto the local DTMA.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signJwt } from '../jwt.ts';
import { JWT_SECRET, createAgent, createOrganization, createUser, removeServers, suffix, testPool, userJwt, waitForStatus, type Organization } from '../../../test/support/stack.ts';
import { managerForPool, serveHandler, type ServedHandler } from './serve.ts';

let pool: pg.Pool;
let served: ServedHandler;
let org: Organization;
let ownerJwt: string;
let strangerJwt: string;
let agentId: string;
let instanceId = '';

async function call(method: string, route: string, jwt: string | null, body?: unknown): Promise<{ status: number; body: { data?: unknown; error?: Record<string, unknown> } }> {
  const response = await fetch(`${served.url}/functions/v1/mcp-server-manager${route}`, {
    method,
    headers: { ...(jwt ? { authorization: `Bearer ${jwt}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {} };
}

beforeAll(async () => {
  pool = testPool();
  served = await serveHandler(managerForPool(pool, JWT_SECRET));
  org = await createOrganization(pool);
  ownerJwt = await userJwt(org.ownerId);
  strangerJwt = await userJwt(await createUser(pool, 'stranger'));
  agentId = await createAgent(pool, org.organizationId, org.ownerId, 'manager agent');
});

afterAll(async () => {
  if (instanceId) await removeServers(pool, org, [instanceId]);
  await served?.close();
  await pool?.end();
});

describe('mcp-server-manager', () => {
  it('answers 401 without a valid JWT', async () => {
    expect((await call('GET', '/status', null)).status).toBe(401);
    const forged = await signJwt({ sub: org.ownerId, role: 'authenticated' }, 'not-the-project-secret-but-32-chars-long');
    const reply = await call('GET', '/status', forged);
    expect(reply.status).toBe(401);
    expect(reply.body.error).toMatchObject({ code: 'PGRST301', message: 'JWT invalid' });
  });

  it('deploys for the owner, through the control plane, onto DTMA', async () => {
    const serverConfig = {
      toolbox_id: org.toolboxId,
      catalog_name: 'memory',
      instance_name: `memory-${suffix()}`,
      configuration: { env: { MEMORY_FILE_PATH: `/tmp/sdk-manager-${suffix()}.jsonl` } },
    };
    const reply = await call('POST', '/deploy', ownerJwt, { organization_id: org.organizationId, server_config: serverConfig });
    expect(reply.status).toBe(202);
    expect(reply.body.data).toMatchObject({ organization_id: org.organizationId, status: 'deploying', mcp_server_type: 'memory' });
    instanceId = (reply.body.data as { id: string }).id;
    await waitForStatus(pool, instanceId, 'running');

    const status = await call('GET', `/status?organization_id=${org.organizationId}`, ownerJwt);
    expect(status.status).toBe(200);
    expect(status.body.data).toEqual([expect.objectContaining({ server_instance_id: instanceId, status: 'running', caller_role: 'owner' })]);

    // Deploying it again is idempotent; a second server with the same name is a conflict.
    expect((await call('POST', '/deploy', ownerJwt, { organization_id: org.organizationId, server_id: instanceId })).status).toBe(202);
    const conflict = await call('POST', '/deploy', ownerJwt, { organization_id: org.organizationId, server_config: serverConfig });
    expect(conflict.status).toBe(409);
    expect(conflict.body.error).toMatchObject({ code: '23505' });
  });

  it('refuses a stranger with 403, and shows them nothing', async () => {
    const deploy = await call('POST', '/deploy', strangerJwt, { organization_id: org.organizationId, server_id: instanceId });
    expect(deploy.status).toBe(403);
    expect(deploy.body.error).toMatchObject({ code: '42501' });
    expect((await call('GET', '/status', strangerJwt)).body.data).toEqual([]);
    expect((await call('DELETE', `/remove/${instanceId}`, strangerJwt)).status).toBe(404);
    expect((await call('DELETE', `/remove/${instanceId}?organization_id=${org.organizationId}`, strangerJwt)).status).toBe(403);
    const grant = await call('POST', '/permissions/grant', strangerJwt, { agent_id: agentId, server_instance_id: instanceId, permission_scope: 'full_access' });
    expect(grant.status).toBe(403);
    expect(grant.body.error).toMatchObject({ code: '42501', hint: "only the agent's owner and the admins of its organization may" });
  });

  it('grants and revokes for the owner', async () => {
    const grant = await call('POST', '/permissions/grant', ownerJwt, {
      agent_id: agentId,
      server_instance_id: instanceId,
      permission_scope: 'custom',
      allowed_tools: ['read_graph'],
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
    });
    expect(grant.status).toBe(201);
    expect(grant.body.data).toEqual({ grant_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    const unknownTool = await call('POST', '/permissions/grant', ownerJwt, { agent_id: agentId, server_instance_id: instanceId, permission_scope: 'custom', allowed_tools: ['rm_rf'] });
    expect(unknownTool.status).toBe(422);
    expect(unknownTool.body.error).toMatchObject({ code: '22023' });

    expect((await call('POST', '/permissions/revoke', ownerJwt, { agent_id: agentId, server_instance_id: instanceId })).body).toEqual({ data: { revoked: true } });
    expect((await call('POST', '/permissions/revoke', ownerJwt, { agent_id: agentId, server_instance_id: instanceId })).body).toEqual({ data: { revoked: false } });
  });

  it('validates bodies (422 with the issues), and answers unknown routes and methods', async () => {
    const invalid = await call('POST', '/permissions/grant', ownerJwt, { agent_id: 'nope', permission_scope: 'everything' });
    expect(invalid.status).toBe(422);
    expect((invalid.body.error?.issues as { path: string[] }[]).map((i) => i.path.join('.')).sort()).toEqual(['agent_id', 'permission_scope', 'server_instance_id']);
    expect((await call('POST', '/deploy', ownerJwt, '{not json')).status).toBe(400);
    expect((await call('GET', '/nowhere', ownerJwt)).status).toBe(404);
    expect((await call('GET', '/deploy', ownerJwt)).status).toBe(405);
    const unknownCatalog = await call('POST', '/deploy', ownerJwt, {
      organization_id: org.organizationId,
      server_config: { toolbox_id: org.toolboxId, catalog_name: 'no-such-server', instance_name: 'x1' },
    });
    expect(unknownCatalog.status).toBe(404);
    expect(unknownCatalog.body.error).toMatchObject({ code: 'P0002' });
  });

  it('removes the owner’s server', async () => {
    const removed = await call('DELETE', `/remove/${instanceId}`, ownerJwt);
    expect(removed.status).toBe(202);
    expect(removed.body.data).toMatchObject({ id: instanceId, status: 'removing' });
    await waitForStatus(pool, instanceId, 'removed');
  });

  it('loads nothing Node-only: it runs under Deno on Supabase Edge Functions', () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const source = readFileSync(file, 'utf8');
      for (const [, specifier] of source.matchAll(/^import (?!type )[^;]*? from '([^']+)';/gms)) {
        expect(specifier, `${path.relative(here, file)} imports ${specifier}`).not.toMatch(/^(node:|pg$)/);
        if (specifier?.startsWith('.')) visit(path.resolve(path.dirname(file), specifier));
      }
    };
    visit(path.join(here, 'handler.ts'));
    expect(seen.size).toBeGreaterThan(3);
  });
});
