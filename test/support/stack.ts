/**
 * Fixtures for the SDK's suites, on the real local stack of scripts/test.sh (database, pg_net
 * worker, local DTMA): users and agents written as postgres (Supabase Auth and the app would
 * write them), everything else through the SDK as the users themselves. Servers are deployed
 * by the real path: manage_mcp_servers('deploy') -> pg_net -> DTMA -> harvest -> running.
 * Node-only; not exported by the SDK.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { createUser, newPool, waitFor } from './db.ts';
import { directTransport } from '../../client/src/direct-transport.ts';
import { signJwt } from '../../client/src/jwt.ts';
import { createRpc, type Rpc } from '../../client/src/rpc.ts';
import type { JsonObject, McpServerStatus } from '../../client/src/schemas.ts';
import type { RpcTransport } from '../../client/src/transport.ts';

/** The secret the suites sign and verify JWTs with (the direct transport checks it; no PostgREST here). */
export const JWT_SECRET = `test-jwt-secret-${randomBytes(16).toString('hex')}`;

export function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suites through scripts/test.sh (npm test)`);
  return value;
}

export function dtma(): { url: string; token: string } {
  return { url: requiredEnv('DTMA_URL'), token: requiredEnv('DTMA_TOKEN') };
}

/** A short random suffix for names that must be unique across runs (DTMA instance names are). */
export function suffix(): string {
  return randomBytes(4).toString('hex');
}

export function testPool(): pg.Pool {
  return newPool(20);
}

export { createUser };

export async function userJwt(userId: string): Promise<string> {
  return signJwt({ sub: userId, role: 'authenticated', aud: 'authenticated' }, JWT_SECRET);
}

/** The transport a user's session would have: their JWT, verified, as request.jwt.claims. */
export async function userTransport(pool: pg.Pool, userId: string): Promise<RpcTransport> {
  return directTransport({ pool, jwt: await userJwt(userId), jwtSecret: JWT_SECRET });
}

export async function createAgent(pool: pg.Pool, organizationId: string, ownerId: string, name: string): Promise<string> {
  const { rows } = await pool.query<{ id: string }>('insert into public.agents (organization_id, user_id, name) values ($1, $2, $3) returning id', [
    organizationId,
    ownerId,
    name,
  ]);
  return (rows[0] as { id: string }).id;
}

export interface Organization {
  ownerId: string;
  owner: Rpc;
  ownerTransport: RpcTransport;
  organizationId: string;
  toolboxId: string;
}

/** A user who owns a new organization with one toolbox on the given DTMA. */
export async function createOrganization(pool: pg.Pool, dtmaBase: { url: string; token: string } = dtma()): Promise<Organization> {
  const ownerId = await createUser(pool, 'owner');
  const ownerTransport = await userTransport(pool, ownerId);
  const owner = createRpc(ownerTransport);
  const tag = suffix();
  const organizationId = await owner.create_organization({ p_name: `Org ${tag}`, p_slug: `org-${tag}` });
  // One toolbox per DTMA URL: each organization's toolbox gets its own base path on the shared DTMA.
  const toolboxId = await registerToolbox(pool, organizationId, `toolbox-${tag}`, { url: `${dtmaBase.url}/toolboxes/${tag}`, token: dtmaBase.token });
  return { ownerId, owner, ownerTransport, organizationId, toolboxId };
}

/** The platform (the pool's postgres session) registers a toolbox for an organization. */
export async function registerToolbox(pool: pg.Pool, organizationId: string, name: string, dtmaBase: { url: string; token: string }): Promise<string> {
  const { rows } = await pool.query<{ id: string }>('select public.create_toolbox($1, $2, $3, $4) as id', [
    organizationId,
    name,
    dtmaBase.url,
    dtmaBase.token,
  ]);
  return (rows[0] as { id: string }).id;
}

export async function instanceStatus(pool: pg.Pool, instanceId: string): Promise<{ status: McpServerStatus; last_error: string | null }> {
  const { rows } = await pool.query<{ status: McpServerStatus; last_error: string | null }>(
    'select status, last_error from public.account_tool_instances where id = $1',
    [instanceId],
  );
  const row = rows[0];
  if (!row) throw new Error(`instance ${instanceId} not found`);
  return row;
}

export async function waitForStatus(pool: pg.Pool, instanceId: string, wanted: McpServerStatus, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `instance ${instanceId} to be ${wanted}`,
    async () => {
      const { status, last_error } = await instanceStatus(pool, instanceId);
      if (status === 'failed' && wanted !== 'failed') throw new Error(`instance ${instanceId} failed: ${last_error}`);
      return status === wanted ? true : undefined;
    },
    timeoutMs,
    100,
  );
}

export interface ServerSpec {
  catalog: string;
  priority?: number;
  configuration?: JsonObject;
  toolboxId?: string;
}

/**
 * Creates an instance and deploys it through the control plane, as an admin would: the
 * database asks DTMA over pg_net, the worker harvests the answer, the instance runs.
 */
export async function deployServer(pool: pg.Pool, org: Organization, spec: ServerSpec): Promise<string> {
  const created = await org.owner.manage_mcp_servers({
    action: 'create',
    organization_id: org.organizationId,
    server_config: {
      toolbox_id: spec.toolboxId ?? org.toolboxId,
      catalog_name: spec.catalog,
      instance_name: `${spec.catalog}-${suffix()}`,
      ...(spec.priority !== undefined ? { priority: spec.priority } : {}),
      ...(spec.configuration ? { configuration: spec.configuration } : {}),
    },
  });
  await org.owner.manage_mcp_servers({ action: 'deploy', organization_id: org.organizationId, server_id: created.id });
  await waitForStatus(pool, created.id, 'running');
  return created.id;
}

/** Removes instances through the control plane and waits until DTMA has removed them. */
export async function removeServers(pool: pg.Pool, org: Organization, instanceIds: string[]): Promise<void> {
  await Promise.all(
    instanceIds.map(async (id) => {
      const { status } = await instanceStatus(pool, id);
      if (status === 'removed') return;
      await org.owner.manage_mcp_servers({ action: 'delete', organization_id: org.organizationId, server_id: id });
      await waitForStatus(pool, id, 'removed', 20_000).catch(() => undefined);
    }),
  );
}
