/**
 * The chat function: one conversation turn of an agent, with its MCP tools, under the
 * database's access control, streamed to the caller as server-sent events.
 *
 *   POST /chat  {agent_id, organization_id?, messages: [{role, content}]}   (Authorization: Bearer <user JWT>)
 *
 * 1. The caller's JWT is verified by the transport on its first call (401 otherwise).
 * 2. The agent is loaded by gathering its MCP context through the agent MCP gateway
 *    (createMcpChat with `gateway`: one MCP session to `<gateway>/agents/<agent id>/mcp`,
 *    presenting the caller's own JWT, listing tools only): the database refuses a caller who
 *    may not act for it (403) before anything is streamed. The function holds no toolbox
 *    token: the gateway does.
 * 3. The conversation and the tools the database allowed go to an OpenAI-compatible model.
 * 4. Each tool call the model asks for goes through the gateway, which asks the database again
 *    right before the call: a revoked grant is a refusal the model reads as the tool's answer.
 *    A server that hangs or fails costs its timeout and is reported to the model the same way.
 * 5. Steps 3 and 4 repeat until the model answers in text (or maxToolRounds is reached).
 * 6. Tool calls and refusals are logged by the gateway (audit_mcp_interactions); a model
 *    failure is logged here, with the context's request id.
 *
 * Events: `context` {request_id, servers, tools}; `tool_call` {id, name, server_id, tool};
 * `tool_result` {id, name, outcome, content}; `delta` {content}; `done` {content, rounds,
 * request_id}; `error` {code, message} (after which the stream ends).
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { createMcpChat } from '../chat/index.ts';
import { findContextTool } from '../chat/context.ts';
import type { McpContext } from '../chat/types.ts';
import { McpControlPlaneError, NotAllowedError } from '../errors.ts';
import { UuidSchema } from '../schemas.ts';
import type { RpcTransport } from '../transport.ts';
import { createRouter, readBody, type HandlerOptions } from './http.ts';
import { completeTurn, type ChatMessage, type ModelConfig, type ModelTool, type ToolCall } from './model.ts';

export interface ChatHandlerOptions extends HandlerOptions {
  model: ModelConfig;
  /** The agent MCP gateway's base URL (e.g. <SUPABASE_URL>/functions/v1/mcp-gateway); the caller's JWT is its credential. */
  gatewayUrl: string;
  /** Caps every server's timeout while the context is gathered (default 5000 ms). */
  serverTimeoutMs?: number;
  /** The time allowed for each tool call (default serverTimeoutMs). */
  toolTimeoutMs?: number;
  /** Model turns that may ask for tools before the model must answer (default 8). */
  maxToolRounds?: number;
  /** The longest tool result, in characters, given back to the model (default 20000). */
  maxToolResultChars?: number;
  fetch?: typeof fetch;
}

export const ChatBodySchema = z.strictObject({
  agent_id: UuidSchema,
  organization_id: UuidSchema.optional(),
  messages: z
    .array(z.strictObject({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(100_000) }))
    .min(1)
    .max(200),
});

/** What the model reads as a tool's answer. */
function resultText(result: CallToolResult, limit: number): string {
  const text = result.content
    .map((part: CallToolResult['content'][number]) => (part.type === 'text' ? part.text : JSON.stringify(part)))
    .join('\n');
  return text.length > limit ? `${text.slice(0, limit)}\n[truncated]` : text;
}

type Outcome = 'success' | 'error' | 'denied';

/** Runs one tool call of the model; never throws: every failure becomes the answer the model reads. */
async function runToolCall(
  chat: ReturnType<typeof createMcpChat>,
  context: McpContext,
  call: ToolCall,
  options: ChatHandlerOptions,
): Promise<{ outcome: Outcome; content: string; serverId: string | null; tool: string | null }> {
  const target = findContextTool(context, call.function.name);
  if (!target) return { outcome: 'error', content: `error: there is no tool named ${call.function.name}`, serverId: null, tool: null };
  let args: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(call.function.arguments || '{}');
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    args = parsed as Record<string, unknown>;
  } catch {
    return { outcome: 'error', content: 'error: the arguments are not a JSON object', serverId: target.serverId, tool: target.tool.name };
  }
  const where = { serverId: target.serverId, tool: target.tool.name };
  try {
    const result = await chat.callTool(context, target.serverId, target.tool.name, args, { timeoutMs: options.toolTimeoutMs ?? options.serverTimeoutMs ?? 5_000 });
    return { ...where, outcome: result.isError === true ? 'error' : 'success', content: resultText(result, options.maxToolResultChars ?? 20_000) };
  } catch (error) {
    if (error instanceof NotAllowedError) {
      return { ...where, outcome: 'denied', content: `refused: access control denied ${target.tool.name} on ${target.serverName} (${error.message}). Do not retry it.` };
    }
    const message = error instanceof Error ? error.message : String(error);
    return { ...where, outcome: 'error', content: `error: ${target.tool.name} on ${target.serverName} failed: ${message}` };
  }
}

async function logModelFailure(transport: RpcTransport, agentId: string, requestId: string, error: unknown): Promise<void> {
  await transport
    .rpc('audit_mcp_interactions', {
      p_agent_id: agentId,
      p_interactions: [{ interaction_type: 'error', outcome: 'error', duration_ms: 0, request_id: requestId, error: String(error instanceof Error ? error.message : error).slice(0, 2000) }],
    })
    .catch(() => undefined);
}

export function createChatHandler(options: ChatHandlerOptions): (req: Request) => Promise<Response> {
  return createRouter(
    'chat',
    [
      {
        method: 'POST',
        pattern: /(?:^|\/)chat$/,
        run: async ({ req, jwt, transport }) => {
          const input = await readBody(req, ChatBodySchema);
          const chat = createMcpChat({ transport, gateway: { url: options.gatewayUrl, credential: jwt }, ...(options.fetch ? { fetch: options.fetch } : {}) });
          // Refusals (401, 403, 404) are answered before the stream starts.
          const context = await chat.prepareMCPContextWithAccessControl({
            agentId: input.agent_id,
            ...(input.organization_id ? { organizationId: input.organization_id } : {}),
            maxTimeoutMs: options.serverTimeoutMs ?? 5_000,
            // The model is given tools only: resources and prompts are not listed.
            lists: { resources: false, prompts: false },
            signal: req.signal,
          });
          // Frozen: completeTurn serialises the list once and sends it with every turn.
          const tools: readonly ModelTool[] = Object.freeze(
            context.tools.map((t) => ({
              type: 'function' as const,
              function: { name: t.qualifiedName, ...(t.tool.description ? { description: t.tool.description } : {}), parameters: t.tool.inputSchema as Record<string, unknown> },
            })),
          );
          const encoder = new TextEncoder();
          const stream = new ReadableStream<Uint8Array>({
            async start(controller) {
              const send = (event: string, data: unknown): void => {
                try {
                  controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
                } catch {
                  // The caller went away: the turn still finishes, so that its calls are logged.
                }
              };
              const messages: ChatMessage[] = [...input.messages];
              try {
                send('context', {
                  request_id: context.requestId,
                  servers: context.servers.map((s) => ({ id: s.serverId, name: s.name, status: s.status, error: s.error, tools: s.tools.length })),
                  tools: tools.map((t) => t.function.name),
                });
                const maxRounds = options.maxToolRounds ?? 8;
                for (let round = 0; ; round++) {
                  // Past the last round the model gets no tools: it must answer.
                  const turn = await completeTurn(options.model, messages, round < maxRounds ? tools : [], (text) => send('delta', { content: text }), {
                    ...(options.fetch ? { fetch: options.fetch } : {}),
                    signal: req.signal,
                  });
                  if (turn.toolCalls.length === 0 || round >= maxRounds) {
                    send('done', { content: turn.content, rounds: round + 1, request_id: context.requestId });
                    break;
                  }
                  messages.push({ role: 'assistant', content: turn.content === '' ? null : turn.content, tool_calls: turn.toolCalls });
                  for (const call of turn.toolCalls) send('tool_call', { id: call.id, name: call.function.name, arguments: call.function.arguments });
                  // The calls of one turn run in parallel; their answers go back in the model's order.
                  const results = await Promise.all(turn.toolCalls.map((call) => runToolCall(chat, context, call, options)));
                  turn.toolCalls.forEach((call, i) => {
                    const result = results[i] as Awaited<ReturnType<typeof runToolCall>>;
                    send('tool_result', { id: call.id, name: call.function.name, server_id: result.serverId, tool: result.tool, outcome: result.outcome, content: result.content });
                    messages.push({ role: 'tool', tool_call_id: call.id, content: result.content });
                  });
                }
              } catch (error) {
                await logModelFailure(transport, input.agent_id, context.requestId, error);
                const fields = error instanceof McpControlPlaneError ? { code: error.code, message: error.message } : { code: 'XX000', message: 'internal error' };
                if (!(error instanceof McpControlPlaneError)) console.error('chat: unexpected error', error);
                send('error', fields);
              } finally {
                // The caller has its whole answer before the gateway session is ended.
                try {
                  controller.close();
                } catch {
                  // already cancelled by the caller
                }
                await chat.closeMCPContext(context).catch(() => undefined);
              }
            },
          });
          return new Response(stream, { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': context.requestId } });
        },
      },
    ],
    options,
  );
}
