/**
 * mcp-server-manager: the HTTP face of MCP server management, as a standard fetch handler
 * `(req: Request) => Promise<Response>` that runs on Supabase Edge Functions (Deno) and under
 * Node (serve.ts). It decides nothing: every request runs as the caller, with the caller's JWT
 * (never the service role), and the database answers. Bodies are checked with zod (422 with the
 * issue list); SQLSTATEs become HTTP statuses (errors.ts).
 *
 *   POST   /deploy               {organization_id, server_id} | {organization_id, server_config}
 *   DELETE /remove/{instanceId}  [?organization_id=]   (the database also revokes the server's grants)
 *   GET    /status               [?organization_id=[&refresh=true[&wait_ms=]]]
 *   POST   /permissions/grant    {agent_id, server_instance_id, permission_scope, allowed_tools?, expires_at?}
 *   POST   /permissions/revoke   {agent_id, server_instance_id}
 *
 * Paths may carry a prefix (Supabase serves the function under /functions/v1/mcp-server-manager).
 */
import { decodeJwt } from 'jose';
import { z } from 'zod';
import { NotFoundError, SdkErrorCode, UnauthorizedError } from '../errors.ts';
import { HttpError, createRouter, readBody as body, readQuery as query, type HandlerOptions, type Route, type RouteContext } from '../functions/http.ts';
import { createRpc, type Rpc } from '../rpc.ts';
import { CreateServerConfigSchema, PermissionScopeSchema, TimestampArgSchema, UuidSchema } from '../schemas.ts';
import { refreshServerStatus, serverStatus, type ServerStatusRow } from './status.ts';

export type ManagerHandlerOptions = HandlerOptions;

export const DeployBodySchema = z.union([
  z.strictObject({ organization_id: UuidSchema, server_id: UuidSchema }),
  z.strictObject({ organization_id: UuidSchema, server_config: CreateServerConfigSchema }),
]);
export const GrantBodySchema = z.strictObject({
  agent_id: UuidSchema,
  server_instance_id: UuidSchema,
  permission_scope: PermissionScopeSchema,
  allowed_tools: z.array(z.string().min(1)).min(1).optional(),
  expires_at: TimestampArgSchema.optional(),
});
export const RevokeBodySchema = z.strictObject({ agent_id: UuidSchema, server_instance_id: UuidSchema });
const OrganizationQuerySchema = z.object({ organization_id: UuidSchema.optional() });
const StatusQuerySchema = z.strictObject({
  organization_id: UuidSchema.optional(),
  /** Ask the DTMA now (through the database's outbox) instead of waiting for the minute's poll. */
  refresh: z.enum(['true', 'false']).optional(),
  /** How long to wait for the fresh reading (default 5000, at most 10000 ms). */
  wait_ms: z.coerce.number().int().min(0).max(10_000).optional(),
});

/** The user the token names. Not trusted as such: the database compares it with the verified identity. */
function subject(jwt: string): string {
  let sub: unknown;
  try {
    sub = decodeJwt(jwt).sub;
  } catch {
    sub = undefined;
  }
  if (typeof sub !== 'string') {
    throw new UnauthorizedError({ code: SdkErrorCode.unauthorized, message: 'the token names no user', hint: 'sign in as a user' });
  }
  return sub;
}

/** The organization of an instance the caller can see (404 for one they cannot). */
async function organizationOf(rpc: Rpc, userId: string, instanceId: string): Promise<string> {
  const visible = await rpc.get_available_mcp_servers({ p_user_id: userId });
  const found = visible.find((s) => s.server_instance_id === instanceId);
  if (!found) throw new NotFoundError({ code: 'P0002', message: `MCP server ${instanceId} not found` });
  return found.organization_id;
}

/** A route that also gets the caller's typed RPCs. */
function withRpc(run: (context: RouteContext & { rpc: Rpc }) => Promise<{ status: number; data: unknown; meta?: unknown }>): Route['run'] {
  return (context) => run({ ...context, rpc: createRpc(context.transport) });
}

const routes: Route[] = [
  {
    method: 'POST',
    pattern: /\/deploy$/,
    run: withRpc(async ({ req, rpc }) => {
      const input = await body(req, DeployBodySchema);
      let serverId: string;
      if ('server_id' in input) {
        serverId = input.server_id;
      } else {
        const created = await rpc.manage_mcp_servers({ action: 'create', organization_id: input.organization_id, server_config: input.server_config });
        serverId = created.id;
      }
      const deployed = await rpc.manage_mcp_servers({ action: 'deploy', organization_id: input.organization_id, server_id: serverId });
      return { status: 202, data: deployed };
    }),
  },
  {
    method: 'DELETE',
    pattern: /\/remove\/([^/]+)$/,
    run: withRpc(async ({ url, rpc, jwt, params: [rawId] }) => {
      const id = UuidSchema.safeParse(decodeURIComponent(rawId ?? ''));
      if (!id.success) throw new HttpError(422, { code: '22023', message: 'the instance id must be a uuid' });
      const organizationId = query(url, OrganizationQuerySchema).organization_id ?? (await organizationOf(rpc, subject(jwt), id.data));
      const removed = await rpc.manage_mcp_servers({ action: 'delete', organization_id: organizationId, server_id: id.data });
      return { status: 202, data: removed };
    }),
  },
  {
    method: 'GET',
    pattern: /\/status$/,
    run: withRpc(async ({ url, rpc, jwt, transport }) => {
      const { organization_id, refresh, wait_ms } = query(url, StatusQuerySchema);
      if (refresh === 'true') {
        if (!organization_id) throw new HttpError(422, { code: '22023', message: 'refresh=true needs organization_id' });
        const refreshed = await refreshServerStatus(transport, organization_id, wait_ms ?? 5_000);
        return { status: 200, data: refreshed.servers, meta: { refresh: { requested: refreshed.requested, fresh: refreshed.fresh } } };
      }
      const available = await rpc.get_available_mcp_servers({ p_user_id: subject(jwt) });
      const organizations = organization_id ? [organization_id] : [...new Set(available.map((s) => s.organization_id))];
      const statuses = new Map<string, ServerStatusRow>();
      for (const rows of await Promise.all(organizations.map((org) => serverStatus(transport, org)))) {
        for (const row of rows) statuses.set(row.server_instance_id, row);
      }
      const servers = available.filter((s) => !organization_id || s.organization_id === organization_id);
      return {
        status: 200,
        data: servers.map((s) => {
          const row = statuses.get(s.server_instance_id);
          return {
            ...s,
            last_error: row?.last_error ?? null,
            last_health_check_at: row?.last_health_check_at ?? null,
            toolbox_status: row?.toolbox_status ?? null,
            dtma_request: row?.dtma_request ?? null,
          };
        }),
      };
    }),
  },
  {
    method: 'POST',
    pattern: /\/permissions\/grant$/,
    run: withRpc(async ({ req, rpc }) => {
      const input = await body(req, GrantBodySchema);
      const grantId = await rpc.grant_agent_mcp_access({
        p_agent_id: input.agent_id,
        p_server_instance_id: input.server_instance_id,
        p_permission_scope: input.permission_scope,
        ...(input.allowed_tools ? { p_allowed_tools: input.allowed_tools } : {}),
        ...(input.expires_at ? { p_expires_at: input.expires_at } : {}),
      });
      return { status: 201, data: { grant_id: grantId } };
    }),
  },
  {
    method: 'POST',
    pattern: /\/permissions\/revoke$/,
    run: withRpc(async ({ req, rpc }) => {
      const input = await body(req, RevokeBodySchema);
      const revoked = await rpc.revoke_agent_mcp_access({ p_agent_id: input.agent_id, p_server_instance_id: input.server_instance_id });
      return { status: 200, data: { revoked } };
    }),
  },
];

export function createManagerHandler(options: ManagerHandlerOptions): (req: Request) => Promise<Response> {
  return createRouter('mcp-server-manager', routes, options);
}
