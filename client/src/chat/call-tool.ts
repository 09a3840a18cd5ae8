/**
 * A tool call through a context: the database is asked again right before the call
 * (validate_agent_mcp_access with the tool and the definition the server presents now), so a
 * revoke, an expiry or a changed definition takes effect on the next call, whatever the
 * context says. Every call, and every refusal, is logged and counted.
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { IllegalStateError, NotAllowedError, NotFoundError, SdkErrorCode, UpstreamError } from '../errors.ts';
import { createRpc } from '../rpc.ts';
import type { JsonValue } from '../schemas.ts';
import { DeadlineError, deadline } from './deadline.ts';
import { logInteractions, recordUsage } from './log.ts';
import { sessionsOf } from './registry.ts';
import { listTools, openSession, type Session } from './session.ts';
import type { CallToolOptions, McpChatOptions, McpContext, ServerContext } from './types.ts';

/** The context's connection to the server, reopened if it was closed; tools listed again if they changed. */
async function liveSession(options: McpChatOptions, context: McpContext, server: ServerContext, signal: AbortSignal): Promise<Session> {
  const sessions = sessionsOf(context);
  let session = sessions.get(server.serverId);
  if (!session || session.closed) {
    session = await openSession(server, options, signal);
    sessions.set(server.serverId, session);
  } else if (session.toolsChanged) {
    session.toolsChanged = false;
    session.tools = await listTools(session.client, { signal, timeout: server.timeoutMs });
  }
  return session;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function callTool(
  options: McpChatOptions,
  context: McpContext,
  serverId: string,
  toolName: string,
  args: Record<string, unknown> = {},
  callOptions: CallToolOptions = {},
): Promise<CallToolResult> {
  const server = context.servers.find((s) => s.serverId === serverId);
  if (!server) {
    throw new NotFoundError({ code: 'P0002', message: `MCP server ${serverId} is not in this agent's context` });
  }
  if (server.status !== 'ok') {
    throw new IllegalStateError({
      code: '55000',
      message: `MCP server ${server.name} is ${server.status} in this context`,
      hint: 'prepare a new context to try it again',
    });
  }
  const timeoutMs = callOptions.timeoutMs ?? server.timeoutMs;
  const limit = deadline(timeoutMs, callOptions.signal);
  const rpc = createRpc(options.transport);
  // The log and the statistics are written before the call returns (so that a caller who reads
  // them next sees them), in parallel; their failure is reported, never thrown over the answer.
  const bookkeep = async (outcome: 'success' | 'error' | 'denied' | 'timeout', durationMs: number, error: string | null): Promise<void> => {
    const writes = [
      logInteractions(options.transport, context.agentId, [
        {
          interaction_type: 'tool_call',
          outcome,
          duration_ms: Math.round(durationMs),
          server_instance_id: serverId,
          tool_name: toolName,
          arguments: JSON.parse(JSON.stringify(args)) as JsonValue,
          request_id: context.requestId,
          ...(error ? { error } : {}),
        },
      ]),
    ];
    if (outcome !== 'denied') writes.push(recordUsage(options.transport, { agentId: context.agentId, serverId, success: outcome === 'success', durationMs, error }));
    await Promise.all(writes).catch((failure: unknown) => options.onBackgroundError?.(failure));
  };

  try {
    let session: Session;
    try {
      session = await liveSession(options, context, server, limit.signal);
    } catch (error) {
      const message = errorMessage(limit.signal.aborted ? limit.signal.reason : error);
      throw new UpstreamError({ code: SdkErrorCode.upstream, message: `cannot reach ${server.name}: ${message}` }, { cause: error });
    }
    const presented = session.tools.find((tool) => tool.name === toolName);
    if (!presented) {
      throw new NotFoundError({ code: 'P0002', message: `MCP server ${server.name} does not present a tool named ${toolName}` });
    }
    const allowed = await rpc.validate_agent_mcp_access({
      p_agent_id: context.agentId,
      p_server_instance_id: serverId,
      p_tool_name: toolName,
      p_tool_definition: presented,
    });
    if (!allowed) {
      await bookkeep('denied', 0, 'validate_agent_mcp_access refused the call');
      throw new NotAllowedError({
        code: '42501',
        message: `agent ${context.agentId} may not call ${toolName} on ${server.name}`,
        hint: 'the grant was revoked or expired, does not cover this tool, or the tool definition changed since it was approved',
      });
    }

    const started = performance.now();
    let result: CallToolResult;
    try {
      const answer = await session.client.callTool({ name: toolName, arguments: args }, undefined, { signal: limit.signal, timeout: timeoutMs });
      // Only servers of protocol 2024-10-07 and older answer {toolResult}; the SDK's schema admits both.
      if (!('content' in answer) || !Array.isArray(answer.content)) throw new Error('the server answered a pre-2024-11 tool result');
      result = answer as CallToolResult;
    } catch (error) {
      const timedOut = limit.signal.aborted && limit.signal.reason instanceof DeadlineError;
      const message = limit.signal.aborted ? errorMessage(limit.signal.reason) : errorMessage(error);
      await bookkeep(timedOut ? 'timeout' : 'error', performance.now() - started, message);
      throw new UpstreamError({ code: SdkErrorCode.upstream, message: `${toolName} on ${server.name} failed: ${message}` }, { cause: error });
    }
    await bookkeep(result.isError === true ? 'error' : 'success', performance.now() - started, result.isError === true ? 'the tool reported an error' : null);
    return result;
  } finally {
    limit.dispose();
  }
}
