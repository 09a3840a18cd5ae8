/**
 * The bookkeeping of the chat integration: tool calls, refusals and context requests go to the
 * interaction log (audit_mcp_interactions, in batches; arguments are kept as their sha256
 * only), and every request to a server counts in the agent's connection statistics
 * (record_agent_mcp_connection_usage). One function each, so that a change of either SQL
 * signature is a change here only.
 */
import { createRpc } from '../rpc.ts';
import type { Interaction } from '../schemas.ts';
import type { RpcTransport } from '../transport.ts';

/** Interactions as the log takes them: error messages cut to the 2000 characters it keeps. */
export function clipInteractions(interactions: Interaction[]): Interaction[] {
  return interactions.map((i) => ({ ...i, ...(i.error !== undefined ? { error: i.error.slice(0, 2000) } : {}) }));
}

/** Appends interactions of one agent to the log, in one call. */
export async function logInteractions(transport: RpcTransport, agentId: string, interactions: Interaction[]): Promise<void> {
  if (interactions.length === 0) return;
  await createRpc(transport).audit_mcp_interactions({ p_agent_id: agentId, p_interactions: clipInteractions(interactions) });
}

/** Counts one request of the agent to the server in agent_mcp_connections. */
export async function recordUsage(
  transport: RpcTransport,
  usage: { agentId: string; serverId: string; success: boolean; durationMs: number; error: string | null },
): Promise<void> {
  await createRpc(transport).record_agent_mcp_connection_usage({
    p_agent_id: usage.agentId,
    p_server_instance_id: usage.serverId,
    p_success: usage.success,
    p_duration_ms: Math.max(0, Math.round(usage.durationMs)),
    ...(usage.error ? { p_error: usage.error.slice(0, 2000) } : {}),
  });
}
