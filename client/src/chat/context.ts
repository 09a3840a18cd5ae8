/**
 * The MCP context of one agent: every server it may use now, gathered in parallel. Per server:
 * connect, list tools, resources and prompts, and let the database decide which presented
 * tools the grant allows (filter_agent_mcp_tools: scope, allowed tools, pinned hashes; a changed
 * definition is dropped and audited there). Each server has its own deadline and retries with
 * exponential backoff inside it, so a slow or broken server costs at most its timeout and
 * never fails the whole context: it is listed with status timeout or error.
 */
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { McpControlPlaneError } from '../errors.ts';
import { createRpc, type Rpc } from '../rpc.ts';
import { namespaces, qualify } from '../gateway/namespace.ts';
import { DeadlineError, backoffDelay, deadline, raceAbort, sleep } from './deadline.ts';
import { logInteractions, recordUsage } from './log.ts';
import { sessionsOf } from './registry.ts';
import { openSession, type Session } from './session.ts';
import type { ContextTool, McpChatOptions, McpContext, McpServerTarget, PrepareContextOptions, ServerContext, ServerError } from './types.ts';

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_RETRIES = 1;
const DEFAULT_BACKOFF_BASE_MS = 100;

/** The servers the agent may use now, with their connection configs when the organization is known. */
export async function serverTargets(rpc: Rpc, options: McpChatOptions, agentId: string, organizationId?: string): Promise<McpServerTarget[]> {
  if (organizationId) {
    const configs = await rpc.get_organization_mcp_configs({ org_id: organizationId, agent_id: agentId });
    return configs.map((c) => ({
      serverId: c.server_instance_id,
      name: c.name,
      type: c.type,
      endpointUrl: c.endpoint_url,
      transport: c.transport,
      permissionScope: c.permission_scope,
      grantedTools: c.allowed_tools,
      priority: c.priority,
      timeoutMs: c.timeout_ms,
      maxRetries: c.max_retries,
      enabled: c.enabled,
    }));
  }
  const servers = await rpc.get_agent_mcp_servers({ p_agent_id: agentId });
  return servers.map((s) => ({
    serverId: s.server_instance_id,
    name: s.server_name,
    type: s.mcp_server_type,
    endpointUrl: s.endpoint_url,
    transport: s.mcp_transport_type,
    permissionScope: s.permission_scope,
    grantedTools: s.allowed_tools,
    priority: s.priority,
    timeoutMs: options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxRetries: options.defaultMaxRetries ?? DEFAULT_MAX_RETRIES,
    enabled: true,
  }));
}

function describeError(error: unknown): ServerError {
  if (error instanceof McpControlPlaneError) return { message: error.message, code: error.code };
  return { message: error instanceof Error ? error.message : String(error), code: null };
}

function emptyServer(target: McpServerTarget, status: ServerContext['status'], error: ServerError | null, attempts: number, durationMs: number): ServerContext {
  return { ...target, status, error, attempts, durationMs, weight: 0, serverInfo: null, instructions: null, tools: [], deniedTools: [], resources: [], prompts: [] };
}

interface Gathered {
  server: ServerContext;
  session: Session | null;
}

/** Connects (with retries) within the deadline; the caller owns the session it returns. */
async function connectWithRetries(target: McpServerTarget, options: McpChatOptions, request: PrepareContextOptions, signal: AbortSignal, onAttempt: () => void): Promise<Session> {
  for (let retry = 0; ; retry++) {
    onAttempt();
    try {
      return await raceAbort(openSession(target, options, signal, request.lists), signal, (late) => void late.close());
    } catch (error) {
      if (signal.aborted || retry >= target.maxRetries) throw error;
      await sleep(backoffDelay(retry, options.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS), signal);
    }
  }
}

async function gatherServer(rpc: Rpc, options: McpChatOptions, request: PrepareContextOptions, target: McpServerTarget): Promise<Gathered> {
  const { agentId, signal: parent } = request;
  const started = performance.now();
  if (!target.enabled) return { server: emptyServer(target, 'disabled', null, 0, 0), session: null };
  if (!target.endpointUrl) {
    return { server: emptyServer(target, 'error', { message: 'the server has no endpoint URL yet', code: null }, 0, 0), session: null };
  }
  const limit = deadline(target.timeoutMs, parent);
  let attempts = 0;
  let session: Session | null = null;
  try {
    session = await connectWithRetries(target, options, request, limit.signal, () => attempts++);
    const decisions = await raceAbort(
      rpc.filter_agent_mcp_tools({ p_agent_id: agentId, p_server_instance_id: target.serverId, p_tools: session.tools }),
      limit.signal,
    );
    const allowed = new Set(decisions.filter((d) => d.allowed).map((d) => d.tool_name));
    const tools: Tool[] = session.tools.filter((tool) => allowed.has(tool.name));
    const deniedTools = decisions.filter((d) => !d.allowed).map((d) => ({ name: d.tool_name, reason: d.reason }));
    return {
      server: {
        ...emptyServer(target, 'ok', null, attempts, performance.now() - started),
        serverInfo: session.serverInfo,
        instructions: session.instructions,
        tools,
        deniedTools,
        resources: session.resources,
        prompts: session.prompts,
      },
      session,
    };
  } catch (error) {
    void session?.close();
    const timedOut = limit.signal.aborted && limit.signal.reason instanceof DeadlineError;
    const reason = limit.signal.aborted ? limit.signal.reason : error;
    return { server: emptyServer(target, timedOut ? 'timeout' : 'error', describeError(reason), attempts, performance.now() - started), session: null };
  } finally {
    limit.dispose();
  }
}

/** Highest priority first, then by name; weights over the servers that answered. */
function rank(servers: ServerContext[]): ServerContext[] {
  const ordered = [...servers].sort((a, b) => b.priority - a.priority || a.name.localeCompare(b.name));
  const total = ordered.filter((s) => s.status === 'ok').reduce((sum, s) => sum + s.priority, 0);
  return ordered.map((s) => ({ ...s, weight: s.status === 'ok' ? (total > 0 ? s.priority / total : 1 / ordered.filter((o) => o.status === 'ok').length) : 0 }));
}

function mergeTools(servers: ServerContext[]): ContextTool[] {
  return [...namespaces(servers, (server) => server.name)].flatMap(([prefix, server]) =>
    server.tools.map((tool) => ({ serverId: server.serverId, serverName: server.name, qualifiedName: qualify(prefix, tool.name), weight: server.weight, tool })),
  );
}

/** The tool of a context by its qualified name (what an LLM calls it), or undefined. */
export function findContextTool(context: McpContext, qualifiedName: string): ContextTool | undefined {
  return context.tools.find((tool) => tool.qualifiedName === qualifiedName);
}

export async function prepareMCPContextWithAccessControl(options: McpChatOptions, request: PrepareContextOptions): Promise<McpContext> {
  const started = performance.now();
  const createdAt = new Date().toISOString();
  const rpc = createRpc(options.transport);
  const targets = (await serverTargets(rpc, options, request.agentId, request.organizationId)).map((target) => ({
    ...target,
    timeoutMs: request.maxTimeoutMs !== undefined ? Math.min(target.timeoutMs, request.maxTimeoutMs) : target.timeoutMs,
  }));

  // Connection statistics: each server's is written as soon as it settles, while slower ones
  // are still being gathered; all are awaited before the context is returned.
  const bookkeeping: Promise<void>[] = [];
  const gathered = await Promise.all(
    targets.map(async (target) => {
      const result = await gatherServer(rpc, options, request, target);
      if (result.server.status !== 'disabled') {
        bookkeeping.push(
          recordUsage(options.transport, {
            agentId: request.agentId,
            serverId: result.server.serverId,
            success: result.server.status === 'ok',
            durationMs: result.server.durationMs,
            error: result.server.error?.message ?? null,
          }).catch((error: unknown) => options.onBackgroundError?.(error)),
        );
      }
      return result;
    }),
  );
  // The interaction log: one context request per server, in one batch.
  const requestId = crypto.randomUUID();
  bookkeeping.push(
    logInteractions(
      options.transport,
      request.agentId,
      gathered
        .filter(({ server }) => server.status !== 'disabled')
        .map(({ server }) => ({
          interaction_type: 'context_request' as const,
          outcome: server.status === 'ok' ? ('success' as const) : server.status === 'timeout' ? ('timeout' as const) : ('error' as const),
          duration_ms: Math.round(server.durationMs),
          server_instance_id: server.serverId,
          request_id: requestId,
          ...(server.error ? { error: server.error.message } : {}),
        })),
    ).catch((error: unknown) => options.onBackgroundError?.(error)),
  );
  await Promise.all(bookkeeping);

  const servers = rank(gathered.map((g) => g.server));
  const context: McpContext = {
    requestId,
    agentId: request.agentId,
    organizationId: request.organizationId ?? null,
    createdAt,
    durationMs: 0,
    servers,
    tools: mergeTools(servers),
    resources: servers.flatMap((s) => s.resources.map((resource) => ({ serverId: s.serverId, resource }))),
    prompts: servers.flatMap((s) => s.prompts.map((prompt) => ({ serverId: s.serverId, prompt }))),
  };
  const live = sessionsOf(context);
  for (const { server, session } of gathered) {
    if (!session) continue;
    if (request.keepConnections === false) void session.close();
    else live.set(server.serverId, session);
  }
  context.durationMs = performance.now() - started;
  return context;
}
