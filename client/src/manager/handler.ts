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
import { McpControlPlaneError, NotFoundError, SdkErrorCode, UnauthorizedError } from '../errors.ts';
import { createRpc, describeIssues, type Rpc } from '../rpc.ts';
import { CreateServerConfigSchema, PermissionScopeSchema, TimestampArgSchema, UuidSchema } from '../schemas.ts';
import type { RpcTransport } from '../transport.ts';
import { refreshServerStatus, serverStatus, type ServerStatusRow } from './status.ts';

export interface ManagerHandlerOptions {
  /**
   * The transport that acts as the bearer of this JWT: supabaseTransport over a client created
   * with the anon key and `Authorization: Bearer <jwt>`, or directTransport({ pool, jwt, jwtSecret }).
   * Either verifies the token; an invalid one fails with 401.
   */
  transportFor: (jwt: string) => RpcTransport | Promise<RpcTransport>;
  /** Adds CORS headers (and answers preflights) for this origin, e.g. '*'. */
  corsOrigin?: string;
}

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

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.message));
  }
}

function json(status: number, body: unknown, headers: Record<string, string>): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
}

function bearer(req: Request): string {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get('authorization') ?? '');
  if (!match?.[1]) {
    throw new UnauthorizedError({ code: SdkErrorCode.unauthorized, message: 'missing bearer token', hint: 'send Authorization: Bearer <access token>' });
  }
  return match[1];
}

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

async function body<S extends z.ZodType>(req: Request, schema: S): Promise<z.output<S>> {
  let raw: unknown;
  try {
    raw = await req.json();
  } catch {
    throw new HttpError(400, { code: '22P02', message: 'the body is not JSON' });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new HttpError(422, {
      code: '22023',
      message: `invalid request body: ${describeIssues(parsed.error)}`,
      issues: parsed.error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message, code: issue.code })),
    });
  }
  return parsed.data;
}

function query<S extends z.ZodType>(url: URL, schema: S): z.output<S> {
  const parsed = schema.safeParse(Object.fromEntries(url.searchParams));
  if (!parsed.success) {
    throw new HttpError(422, { code: '22023', message: `invalid query: ${describeIssues(parsed.error)}` });
  }
  return parsed.data;
}

/** The organization of an instance the caller can see (404 for one they cannot). */
async function organizationOf(rpc: Rpc, userId: string, instanceId: string): Promise<string> {
  const visible = await rpc.get_available_mcp_servers({ p_user_id: userId });
  const found = visible.find((s) => s.server_instance_id === instanceId);
  if (!found) throw new NotFoundError({ code: 'P0002', message: `MCP server ${instanceId} not found` });
  return found.organization_id;
}

type Route = (req: Request, url: URL, rpc: Rpc, jwt: string, params: string[], transport: RpcTransport) => Promise<{ status: number; data: unknown; meta?: unknown }>;

const routes: { method: string; pattern: RegExp; run: Route }[] = [
  {
    method: 'POST',
    pattern: /\/deploy$/,
    run: async (req, _url, rpc) => {
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
    },
  },
  {
    method: 'DELETE',
    pattern: /\/remove\/([^/]+)$/,
    run: async (_req, url, rpc, jwt, [rawId]) => {
      const id = UuidSchema.safeParse(decodeURIComponent(rawId ?? ''));
      if (!id.success) throw new HttpError(422, { code: '22023', message: 'the instance id must be a uuid' });
      const organizationId = query(url, OrganizationQuerySchema).organization_id ?? (await organizationOf(rpc, subject(jwt), id.data));
      const removed = await rpc.manage_mcp_servers({ action: 'delete', organization_id: organizationId, server_id: id.data });
      return { status: 202, data: removed };
    },
  },
  {
    method: 'GET',
    pattern: /\/status$/,
    run: async (_req, url, rpc, jwt, _params, transport) => {
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
    },
  },
  {
    method: 'POST',
    pattern: /\/permissions\/grant$/,
    run: async (req, _url, rpc) => {
      const input = await body(req, GrantBodySchema);
      const grantId = await rpc.grant_agent_mcp_access({
        p_agent_id: input.agent_id,
        p_server_instance_id: input.server_instance_id,
        p_permission_scope: input.permission_scope,
        ...(input.allowed_tools ? { p_allowed_tools: input.allowed_tools } : {}),
        ...(input.expires_at ? { p_expires_at: input.expires_at } : {}),
      });
      return { status: 201, data: { grant_id: grantId } };
    },
  },
  {
    method: 'POST',
    pattern: /\/permissions\/revoke$/,
    run: async (req, _url, rpc) => {
      const input = await body(req, RevokeBodySchema);
      const revoked = await rpc.revoke_agent_mcp_access({ p_agent_id: input.agent_id, p_server_instance_id: input.server_instance_id });
      return { status: 200, data: { revoked } };
    },
  },
];

export function createManagerHandler(options: ManagerHandlerOptions): (req: Request) => Promise<Response> {
  const cors: Record<string, string> = options.corsOrigin
    ? {
        'access-control-allow-origin': options.corsOrigin,
        'access-control-allow-headers': 'authorization, apikey, content-type, x-client-info',
        'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
      }
    : {};

  return async (req) => {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, '');
    if (req.method === 'OPTIONS' && options.corsOrigin) return new Response(null, { status: 204, headers: cors });
    const candidates = routes.filter((route) => route.pattern.test(path));
    const route = candidates.find((candidate) => candidate.method === req.method);
    if (!route) {
      return candidates.length > 0
        ? json(405, { error: { code: '405', message: `method ${req.method} not allowed on ${path}` } }, { ...cors, allow: candidates.map((c) => c.method).join(', ') })
        : json(404, { error: { code: '404', message: `no route for ${req.method} ${path}` } }, cors);
    }
    try {
      const jwt = bearer(req);
      const transport = await options.transportFor(jwt);
      const rpc = createRpc(transport);
      const { status, data, meta } = await route.run(req, url, rpc, jwt, (route.pattern.exec(path) ?? []).slice(1), transport);
      return json(status, meta ? { data, meta } : { data }, cors);
    } catch (error) {
      if (error instanceof HttpError) return json(error.status, { error: error.body }, cors);
      if (error instanceof McpControlPlaneError) return json(error.status, { error: error.toJSON() }, cors);
      console.error('mcp-server-manager: unexpected error', error);
      return json(500, { error: { code: 'XX000', message: 'internal error' } }, cors);
    }
  };
}
