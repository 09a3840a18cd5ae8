/**
 * What the gateway asks the database, all as the platform (service_role): who is calling, which
 * servers the agent reaches now, how to reach a server, whether a tool call is allowed with the
 * definition the gateway read upstream (and why not), and the interaction log. One function per
 * question, over any RpcTransport (the direct transport with service claims, or supabase-js
 * with the service key), so that the SQL signatures are spelled here only.
 */
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { UnexpectedResultError, SdkErrorCode } from '../errors.ts';
import { createRpc } from '../rpc.ts';
import { McpTransportTypeSchema, PermissionScopeSchema, UuidSchema, type Interaction, type PresentedTool } from '../schemas.ts';
import type { RpcTransport } from '../transport.ts';
import { logInteractions } from '../chat/log.ts';

export const GatewayPrincipalSchema = z.object({ agent_id: UuidSchema, organization_id: UuidSchema, key_id: UuidSchema.nullable() });
export type GatewayPrincipal = z.infer<typeof GatewayPrincipalSchema>;

export const GatewayServerSchema = z.object({
  server_instance_id: UuidSchema,
  server_name: z.string(),
  instance_name: z.string(),
  permission_scope: PermissionScopeSchema,
  allowed_tools: z.array(z.string()),
  reads_allowed: z.boolean(),
  mcp_transport_type: McpTransportTypeSchema,
  expires_at: z.string().nullable(),
});
export type GatewayServer = z.infer<typeof GatewayServerSchema>;

export const GatewayUpstreamSchema = z.object({ endpoint_url: z.string(), mcp_transport_type: McpTransportTypeSchema, bearer_token: z.string().nullable() });
export type GatewayUpstream = z.infer<typeof GatewayUpstreamSchema>;

/** The credential a request presents: an agent API key, or a user (verified from a JWT) naming an agent. */
export type GatewayCredential = { apiKey: string; agentId?: string } | { userId: string; agentId: string };

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new UnexpectedResultError({ code: SdkErrorCode.unexpectedResult, message: `${what}: unexpected result`, details: parsed.error.message });
  }
  return parsed.data;
}

export interface GatewayStore {
  authenticate(credential: GatewayCredential): Promise<GatewayPrincipal>;
  agentServers(agentId: string): Promise<GatewayServer[]>;
  upstream(serverId: string): Promise<GatewayUpstream>;
  /** validate_agent_mcp_access with the presented definition: the decision of one call. */
  mayCall(agentId: string, serverId: string, tool: Tool): Promise<boolean>;
  /** filter_agent_mcp_tools over what the gateway read upstream: allowed or not, and why (drift recorded). */
  filterTools(agentId: string, serverId: string, tools: Tool[]): Promise<{ tool_name: string; allowed: boolean; reason: string }[]>;
  log(agentId: string, interactions: Interaction[]): Promise<void>;
}

/** The store over a transport that acts as the platform (service_role). */
export function gatewayStore(transport: RpcTransport): GatewayStore {
  const rpc = createRpc(transport);
  return {
    async authenticate(credential) {
      const args =
        'apiKey' in credential
          ? { p_api_key: credential.apiKey, ...(credential.agentId ? { p_agent_id: credential.agentId } : {}) }
          : { p_user_id: credential.userId, p_agent_id: credential.agentId };
      const rows = parse(z.array(GatewayPrincipalSchema).length(1), await transport.rpc('gateway_authenticate', args), 'gateway_authenticate');
      return rows[0] as GatewayPrincipal;
    },
    async agentServers(agentId) {
      return parse(z.array(GatewayServerSchema), await transport.rpc('gateway_agent_servers', { p_agent_id: agentId }), 'gateway_agent_servers');
    },
    async upstream(serverId) {
      const rows = parse(z.array(GatewayUpstreamSchema).length(1), await transport.rpc('gateway_upstream', { p_server_instance_id: serverId }), 'gateway_upstream');
      return rows[0] as GatewayUpstream;
    },
    mayCall: (agentId, serverId, tool) =>
      rpc.validate_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: serverId, p_tool_name: tool.name, p_tool_definition: tool as PresentedTool }),
    filterTools: (agentId, serverId, tools) =>
      rpc.filter_agent_mcp_tools({ p_agent_id: agentId, p_server_instance_id: serverId, p_tools: tools as PresentedTool[] }),
    log: (agentId, interactions) => logInteractions(transport, agentId, interactions),
  };
}
