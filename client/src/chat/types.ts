/**
 * The shapes of the chat integration: which servers an agent may use (as the database reports
 * them), and the context gathered from them. Tool, resource and prompt types are the official
 * MCP SDK's.
 */
import type { Prompt, Resource, Tool } from '@modelcontextprotocol/sdk/types.js';
import type { McpTransportType, PermissionScope } from '../schemas.ts';
import type { RpcTransport } from '../transport.ts';

/** One MCP server the agent may use, with how to reach it. */
export interface McpServerTarget {
  serverId: string;
  name: string;
  type: string;
  endpointUrl: string | null;
  transport: McpTransportType;
  permissionScope: PermissionScope;
  /** The tools the grant allows in the pinned manifest (before what the server presents is checked). */
  grantedTools: string[];
  priority: number;
  timeoutMs: number;
  maxRetries: number;
  enabled: boolean;
}

export type ServerStatus = 'ok' | 'timeout' | 'error' | 'disabled';

export interface ServerError {
  message: string;
  /** SQLSTATE or SDK code when the error came from the control plane; null for a network or MCP failure. */
  code: string | null;
}

/** What one server contributed to a context. */
export interface ServerContext extends McpServerTarget {
  status: ServerStatus;
  error: ServerError | null;
  attempts: number;
  durationMs: number;
  /** priority / sum of the priorities of the servers that answered (0 for the others). */
  weight: number;
  serverInfo: { name: string; version: string } | null;
  instructions: string | null;
  /** The tools the database allowed, as the server presented them. */
  tools: Tool[];
  /** Presented tools the database refused, with its reason (definition_changed, not_read_only, ...). */
  deniedTools: { name: string; reason: string }[];
  resources: Resource[];
  prompts: Prompt[];
}

/** An allowed tool in the merged list, named so that two servers' tools cannot collide. */
export interface ContextTool {
  serverId: string;
  serverName: string;
  /** `<server slug>__<tool name>`: unique in this context, safe as an LLM function name. */
  qualifiedName: string;
  weight: number;
  tool: Tool;
}

/** The MCP context of one agent: every server it may use, highest priority first. */
export interface McpContext {
  /** Links this context's rows in the interaction log (request_id) with its tool calls'. */
  requestId: string;
  agentId: string;
  organizationId: string | null;
  createdAt: string;
  durationMs: number;
  servers: ServerContext[];
  tools: ContextTool[];
  resources: { serverId: string; resource: Resource }[];
  prompts: { serverId: string; prompt: Prompt }[];
}

/** Where the agent MCP gateway is, and the credential to present to it. */
export interface McpGatewayOptions {
  /** The gateway's base URL, e.g. http://127.0.0.1:8080 or <SUPABASE_URL>/functions/v1/mcp-gateway. */
  url: string;
  /** The user's access token (JWT) or the agent's API key; a function is asked once per session. */
  credential: string | (() => string | Promise<string>);
}

export interface McpChatOptions {
  /** Acts for the caller (a user's JWT, or the service role for a worker). */
  transport: RpcTransport;
  /**
   * The agent MCP gateway: with it (the recommended way), one MCP session per agent through the
   * gateway, which decides and logs every call; endpointHeaders is then not used. Without it, one
   * session per server straight to the DTMA endpoints, with endpointHeaders' credentials.
   */
  gateway?: McpGatewayOptions;
  /**
   * Headers for a server's MCP endpoint, e.g. the toolbox's bearer token for the local DTMA.
   * Called once per connection.
   */
  endpointHeaders?: (server: McpServerTarget) => Record<string, string> | Promise<Record<string, string>>;
  /** How this client introduces itself to MCP servers. */
  clientInfo?: { name: string; version: string };
  /** Used when the database gives no connection config (get_agent_mcp_servers). */
  defaultTimeoutMs?: number;
  defaultMaxRetries?: number;
  /** First retry delay; doubled at each retry. */
  backoffBaseMs?: number;
  /** fetch used for MCP endpoints (defaults to the global one). */
  fetch?: typeof fetch;
  /** Receives failures of the bookkeeping writes (usage, interaction log) that must not fail a chat. */
  onBackgroundError?: (error: unknown) => void;
}

export interface PrepareContextOptions {
  agentId: string;
  /** With it, the servers' connection configs (timeout, retries, enabled) come from get_organization_mcp_configs. */
  organizationId?: string;
  /** Caps every server's timeout (a chat with a latency budget). */
  maxTimeoutMs?: number;
  /**
   * Keep the MCP connections open for callTool (default true; close them with closeMCPContext).
   * With false they are closed at once and callTool reconnects when it needs one.
   */
  keepConnections?: boolean;
  /**
   * What to list besides tools (default both): a caller that only calls tools (the chat
   * function) leaves resources and prompts out, and the context has none.
   */
  lists?: { resources?: boolean; prompts?: boolean };
  signal?: AbortSignal;
}

export interface CallToolOptions {
  /** Defaults to the server's timeout. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The shape getMCPConfigurations returned before the control plane existed. */
export interface LegacyMcpConfiguration {
  name: string;
  endpoint: string | null;
  transport: McpTransportType;
  tools: string[];
}
