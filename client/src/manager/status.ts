/**
 * The status page of an organization's MCP servers (get_mcp_server_status): lifecycle, health,
 * last error, toolbox liveness, and for admins the server's pending or failed DTMA request.
 * A fresh reading is asked of the DTMA through the database (request_mcp_server_status queues
 * GET /mcp/status in the outbox, pg_net sends it, the harvest applies it); nothing here talks
 * to a DTMA or holds a toolbox token.
 */
import { z } from 'zod';
import { SdkErrorCode, UnexpectedResultError } from '../errors.ts';
import { describeIssues } from '../rpc.ts';
import { ServerStatusRowSchema, type ServerStatusRow } from '../schemas.ts';
export { DtmaRequestSummarySchema, ServerStatusRowSchema, type ServerStatusRow } from '../schemas.ts';
import type { RpcTransport } from '../transport.ts';



async function call<T>(transport: RpcTransport, name: string, args: Record<string, unknown>, schema: z.ZodType<T>): Promise<T> {
  const parsed = schema.safeParse(await transport.rpc(name, args));
  if (!parsed.success) {
    throw new UnexpectedResultError({ code: SdkErrorCode.unexpectedResult, message: `${name} answered an unexpected shape`, details: describeIssues(parsed.error) });
  }
  return parsed.data;
}

export function serverStatus(transport: RpcTransport, organizationId: string): Promise<ServerStatusRow[]> {
  return call(transport, 'get_mcp_server_status', { p_organization_id: organizationId }, z.array(ServerStatusRowSchema));
}

export interface RefreshedStatus {
  servers: ServerStatusRow[];
  /** The outbox requests queued (or already open) for this refresh. */
  requested: number[];
  /** True when every toolbox asked has answered (or been found unresponsive) within the wait. */
  fresh: boolean;
}

/** A toolbox's reading: what changes when the DTMA answered (heartbeat) or failed to (status). */
function readings(rows: ServerStatusRow[]): Map<string, string> {
  return new Map(rows.map((row) => [row.toolbox_id, `${row.toolbox_status}@${row.toolbox_last_heartbeat_at ?? ''}`]));
}

/**
 * Queues a status request for each of the organization's toolboxes (admins), then waits up to
 * waitMs for every one of them to have a new reading, polling the database.
 */
export async function refreshServerStatus(transport: RpcTransport, organizationId: string, waitMs: number, pollMs = 100): Promise<RefreshedStatus> {
  const before = readings(await serverStatus(transport, organizationId));
  const requested = await call(transport, 'request_mcp_server_status', { p_organization_id: organizationId }, z.array(z.number().int()));
  const until = Date.now() + waitMs;
  for (;;) {
    const servers = await serverStatus(transport, organizationId);
    const now = readings(servers);
    const fresh = [...before].every(([toolbox, reading]) => now.get(toolbox) !== reading);
    if (fresh || Date.now() >= until) return { servers, requested, fresh };
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
