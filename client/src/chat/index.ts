/**
 * The chat integration, bound to one transport (the caller's identity) and one way of reaching
 * MCP endpoints:
 *
 *   const chat = createMcpChat({ transport, gateway: { url, credential: accessToken } });
 *   const context = await chat.prepareMCPContextWithAccessControl({ agentId, organizationId });
 *   const result = await chat.callTool(context, serverId, 'read_graph', {});
 *   await chat.closeMCPContext(context);
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { createRpc } from '../rpc.ts';
import type { AgentMcpServer, PresentedTool } from '../schemas.ts';
import { callTool } from './call-tool.ts';
import { prepareMCPContextWithAccessControl } from './context.ts';
import { callThroughGateway, prepareThroughGateway } from './gateway.ts';
import { closeMCPContext } from './registry.ts';
import type { CallToolOptions, LegacyMcpConfiguration, McpChatOptions, McpContext, PrepareContextOptions } from './types.ts';

export interface McpChat {
  /** The servers the agent may use now, with the tools its grant allows (get_agent_mcp_servers). */
  getAgentMCPServers(agentId: string): Promise<AgentMcpServer[]>;
  /** Whether the agent may use the server now, or (with a tool) call that tool, optionally checking its presented definition. */
  validateAgentMCPAccess(agentId: string, serverId: string, toolName?: string, toolDefinition?: PresentedTool): Promise<boolean>;
  prepareMCPContextWithAccessControl(request: PrepareContextOptions): Promise<McpContext>;
  callTool(context: McpContext, serverId: string, toolName: string, args?: Record<string, unknown>, options?: CallToolOptions): Promise<CallToolResult>;
  closeMCPContext(context: McpContext): Promise<void>;
  /** @deprecated The shape of the system this project replaces; use prepareMCPContextWithAccessControl. */
  getMCPConfigurations(agentId: string): Promise<LegacyMcpConfiguration[]>;
}

export function createMcpChat(options: McpChatOptions): McpChat {
  const rpc = createRpc(options.transport);
  return {
    getAgentMCPServers: (agentId) => rpc.get_agent_mcp_servers({ p_agent_id: agentId }),
    validateAgentMCPAccess: (agentId, serverId, toolName, toolDefinition) =>
      toolName === undefined
        ? rpc.validate_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: serverId })
        : rpc.validate_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: serverId, p_tool_name: toolName, p_tool_definition: toolDefinition ?? null }),
    prepareMCPContextWithAccessControl: (request) =>
      options.gateway ? prepareThroughGateway(options, options.gateway, request) : prepareMCPContextWithAccessControl(options, request),
    callTool: (context, serverId, toolName, args, callOptions) =>
      options.gateway
        ? callThroughGateway(options, options.gateway, context, serverId, toolName, args, callOptions)
        : callTool(options, context, serverId, toolName, args, callOptions),
    closeMCPContext,
    getMCPConfigurations: async (agentId) =>
      (await rpc.get_agent_mcp_servers({ p_agent_id: agentId })).map((s) => ({
        name: s.server_name,
        endpoint: s.endpoint_url,
        transport: s.mcp_transport_type,
        tools: s.allowed_tools,
      })),
  };
}
