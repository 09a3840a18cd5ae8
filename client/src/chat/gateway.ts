/**
 * The chat integration through the agent MCP gateway (client/src/gateway): one MCP session per
 * agent, to `<gateway>/agents/<agent id>/mcp`, with the caller's credential (the user's JWT or
 * the agent's API key). The gateway reads each server, asks the database and hides what is not
 * allowed, decides every call and logs it; this side groups what it lists by server (the
 * `_meta` server id the gateway adds) into the same McpContext the direct path builds, so a
 * caller sees no difference but where the decisions are taken. No toolbox token is needed.
 * The session's fetch (gateway-fetch.ts) opens no standalone GET stream (a chat turn needs
 * none) and reads a bare response as JSON (collapsingFetch).
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { NotAllowedError, NotFoundError, SdkErrorCode, UpstreamError } from '../errors.ts';
import { GatewayErrorCode, SERVER_META_KEY, isMcpError } from '../gateway/relayed.ts';
import { createRpc } from '../rpc.ts';
import { gatewaySessionFetch } from './gateway-fetch.ts';
import { serverTargets } from './context.ts';
import { sessionsOf } from './registry.ts';
import { openSession, type Session } from './session.ts';
import type { CallToolOptions, ContextTool, McpChatOptions, McpContext, McpGatewayOptions, PrepareContextOptions, ServerContext } from './types.ts';

const GATEWAY_SESSION = 'gateway';
const DEFAULT_TIMEOUT_MS = 10_000;

function serverOf(item: { _meta?: Record<string, unknown> | undefined }): string | undefined {
  const id = item._meta?.[SERVER_META_KEY];
  return typeof id === 'string' ? id : undefined;
}

function unqualified(name: string): string {
  const at = name.indexOf('__');
  return at < 0 ? name : name.slice(at + 2);
}

async function open(
  options: McpChatOptions,
  gateway: McpGatewayOptions,
  agentId: string,
  timeoutMs: number,
  signal: AbortSignal,
  lists?: PrepareContextOptions['lists'],
): Promise<Session> {
  const credential = typeof gateway.credential === 'function' ? await gateway.credential() : gateway.credential;
  return openSession(
    {
      serverId: GATEWAY_SESSION,
      name: 'gateway',
      type: 'gateway',
      endpointUrl: `${gateway.url.replace(/\/+$/, '')}/agents/${agentId}/mcp`,
      transport: 'streamable_http',
      permissionScope: 'custom',
      grantedTools: [],
      priority: 0,
      timeoutMs,
      maxRetries: 0,
      enabled: true,
    },
    { ...options, endpointHeaders: () => ({ authorization: `Bearer ${credential}` }), fetch: gatewaySessionFetch(options.fetch ?? fetch) },
    signal,
    lists,
  );
}

export async function prepareThroughGateway(options: McpChatOptions, gateway: McpGatewayOptions, request: PrepareContextOptions): Promise<McpContext> {
  const started = performance.now();
  const rpc = createRpc(options.transport);
  // The server list (the database's refusal of a caller who may not act for the agent) and the
  // gateway session are asked at once; the session's timeout is the cap, or the default.
  const timeoutMs = Math.min(request.maxTimeoutMs ?? Infinity, options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS);
  const [listed, opened] = await Promise.allSettled([
    serverTargets(rpc, options, request.agentId, request.organizationId),
    open(options, gateway, request.agentId, timeoutMs, request.signal ?? new AbortController().signal, request.lists),
  ]);
  if (listed.status === 'rejected') {
    if (opened.status === 'fulfilled') void opened.value.close();
    throw listed.reason;
  }
  if (opened.status === 'rejected') throw opened.reason;
  const targets = listed.value;
  const session = opened.value;
  const elapsed = performance.now() - started;
  const total = targets.filter((t) => t.enabled).reduce((sum, t) => sum + t.priority, 0);
  const servers: ServerContext[] = targets
    .sort((a, b) => b.priority - a.priority || a.name.localeCompare(b.name))
    .map((target) => ({
      ...target,
      status: target.enabled ? 'ok' : 'disabled',
      error: null,
      attempts: target.enabled ? 1 : 0,
      durationMs: elapsed,
      weight: target.enabled ? (total > 0 ? target.priority / total : 1 / targets.filter((t) => t.enabled).length) : 0,
      serverInfo: session.serverInfo,
      instructions: session.instructions,
      tools: target.enabled ? session.tools.filter((t) => serverOf(t) === target.serverId).map((t) => ({ ...t, name: unqualified(t.name) })) : [],
      deniedTools: [],
      resources: target.enabled ? session.resources.filter((r) => serverOf(r) === target.serverId) : [],
      prompts: target.enabled ? session.prompts.filter((p) => serverOf(p) === target.serverId) : [],
    }));
  // Highest priority first, as the direct path lists them (the servers are in that order).
  const tools: ContextTool[] = servers
    .filter((server) => server.status === 'ok')
    .flatMap((server) =>
      session.tools
        .filter((tool) => serverOf(tool) === server.serverId)
        .map((tool) => ({ serverId: server.serverId, serverName: server.name, qualifiedName: tool.name, weight: server.weight, tool: { ...tool, name: unqualified(tool.name) } })),
    );
  const context: McpContext = {
    requestId: crypto.randomUUID(),
    agentId: request.agentId,
    organizationId: request.organizationId ?? null,
    createdAt: new Date().toISOString(),
    durationMs: 0,
    servers,
    tools,
    resources: servers.flatMap((s) => s.resources.map((resource) => ({ serverId: s.serverId, resource }))),
    prompts: servers.flatMap((s) => s.prompts.map((prompt) => ({ serverId: s.serverId, prompt }))),
  };
  if (request.keepConnections === false) void session.close();
  else sessionsOf(context).set(GATEWAY_SESSION, session);
  context.durationMs = performance.now() - started;
  return context;
}

export async function callThroughGateway(
  options: McpChatOptions,
  gateway: McpGatewayOptions,
  context: McpContext,
  serverId: string,
  toolName: string,
  args: Record<string, unknown> = {},
  callOptions: CallToolOptions = {},
): Promise<CallToolResult> {
  const tool = context.tools.find((t) => t.serverId === serverId && t.tool.name === toolName);
  if (!tool) throw new NotFoundError({ code: 'P0002', message: `no tool ${toolName} of server ${serverId} in this agent's context` });
  const sessions = sessionsOf(context);
  let session = sessions.get(GATEWAY_SESSION);
  const timeoutMs = callOptions.timeoutMs ?? context.servers.find((s) => s.serverId === serverId)?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!session || session.closed) {
    session = await open(options, gateway, context.agentId, timeoutMs, callOptions.signal ?? new AbortController().signal);
    sessions.set(GATEWAY_SESSION, session);
  }
  try {
    return (await session.client.callTool({ name: tool.qualifiedName, arguments: args }, undefined, {
      timeout: timeoutMs,
      ...(callOptions.signal ? { signal: callOptions.signal } : {}),
    })) as CallToolResult;
  } catch (error) {
    if (isMcpError(error) && (error.code === GatewayErrorCode.denied || error.message.includes('unknown or not allowed'))) {
      throw new NotAllowedError({ code: '42501', message: `agent ${context.agentId} may not call ${toolName}: ${error.message}`, hint: "the gateway refused it on the database's decision" }, { cause: error });
    }
    throw new UpstreamError({ code: SdkErrorCode.upstream, message: `${toolName} failed: ${error instanceof Error ? error.message : String(error)}` }, { cause: error });
  }
}
