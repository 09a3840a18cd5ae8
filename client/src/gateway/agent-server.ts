/**
 * The MCP server one agent's client talks to: an SDK Server per downstream session whose
 * handlers ask the database and relay to the upstream servers.
 *
 *   tools/list      the agent's servers now (gateway_agent_servers); each server's tools as the
 *                   gateway reads them upstream, all filtered in one call by gateway_filter_tools
 *                   (scope, custom list, pinned definitions: a drifted tool is hidden, its drift
 *                   recorded); names namespaced (namespace.ts)
 *   tools/call      the database's decision with the definition read upstream
 *                   (gateway_authorize_call, or what it allowed before while it holds: cache.ts),
 *                   then the call, with progress and cancellation relayed; logged with outcome
 *                   and duration
 *                   (a plain call takes the lane past the SDK's protocol layer: lane.ts, plain)
 *   resources/*, prompts/*   reads.ts
 *   logging/setLevel         this session's level; upstream log messages are filtered by it
 *   ping            answered here
 */
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  SetLevelRequestSchema,
  type CallToolResult,
  type LoggingLevel,
  type LoggingMessageNotification,
  type RequestId,
  type ServerNotification,
  type ServerRequest,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { sharedValidator } from '../chat/validator.ts';
import type { JsonSchemaType, JsonSchemaValidator } from '@modelcontextprotocol/sdk/validation';
import type { Interaction, JsonValue } from '../schemas.ts';
import type { Asked, GatewayCache } from './cache.ts';
import type { InteractionLog } from './interaction-log.ts';
import type { LaneReply, PlainCall } from './lane.ts';
import { namespaces, qualify, unqualify } from './namespace.ts';
import type { GatewayServer, GatewayStore } from './store.ts';
import { serveReads } from './reads.ts';
import { GatewayErrorCode, RelayedError, relayed, tagged } from './relayed.ts';
import { isTransportFailure, type LogSink, type Upstream, type UpstreamPool } from './upstream.ts';


export interface AgentServerOptions {
  agentId: string;
  store: GatewayStore;
  pool: UpstreamPool;
  log: InteractionLog;
  /** What may be remembered between requests (cache.ts); decisions are asked per call without it. */
  cache: GatewayCache;
  /** Upstream timeout of one call, reset by progress (default 60 s). */
  callTimeoutMs?: number;
  serverInfo?: { name: string; version: string };
  onError?: (error: unknown) => void;
}

/** Each tool definition's output validator (definitions read again unchanged keep their object: upstream.ts). */
const outputValidators = new WeakMap<Tool, JsonSchemaValidator<unknown>>();

/**
 * A result of the lane as the SDK's path has it: read with the result's schema (an invalid one
 * fails as the SDK's client fails it: the upstream is unavailable), and held to the tool's
 * output schema with the SDK client's own rule and messages.
 */
function checkedResult(name: string, tool: Tool, raw: unknown): CallToolResult {
  const parsed = CallToolResultSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`invalid tools/call result: ${parsed.error.message}`);
  const result = parsed.data;
  if (!tool.outputSchema) return result;
  if (!result.structuredContent) {
    if (result.isError) return result;
    throw new McpError(ErrorCode.InvalidRequest, `Tool ${name} has an output schema but did not return structured content`);
  }
  let validator = outputValidators.get(tool);
  if (!validator) {
    validator = sharedValidator.getValidator(tool.outputSchema as JsonSchemaType);
    outputValidators.set(tool, validator);
  }
  const validation = validator(result.structuredContent);
  if (!validation.valid) throw new McpError(ErrorCode.InvalidParams, `Structured content does not match the tool's output schema: ${validation.errorMessage}`);
  return result;
}

const LEVELS: LoggingLevel[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** One agent's downstream session: the SDK's server, and the lane past it (lane.ts). */
export interface AgentSession {
  server: Server;
  /** Answers a plain call; false when the SDK's server must take it (nothing was done then). */
  plain(request: PlainCall, reply: LaneReply, signal?: AbortSignal): Promise<boolean>;
  /** A client's notifications/cancelled for a call of the lane. */
  cancel(requestId: RequestId, reason?: string): void;
}

export function agentServer(options: AgentServerOptions): AgentSession {
  const { agentId, store, pool, log, cache } = options;
  const server = new Server(options.serverInfo ?? { name: 'mcp-control-plane-gateway', version: '0.1.0' }, {
    capabilities: { tools: {}, resources: { subscribe: true }, prompts: {}, logging: {} },
    instructions: 'Every tool of every MCP server this agent may use, named <server>__<tool>. The control plane decides each call.',
    // One validator for every session (each schema compiled once per process), not an Ajv per session.
    jsonSchemaValidator: sharedValidator,
  });
  let level: LoggingLevel | undefined;
  let routes: Map<string, GatewayServer> | undefined;

  async function servers(): Promise<Map<string, GatewayServer>> {
    routes = namespaces(await store.agentServers(agentId), (s) => s.instance_name);
    return routes;
  }

  /** The upstream of a namespaced name, decided now (the agent's servers are asked again). */
  async function route(qualified: string, fresh: boolean): Promise<{ namespace: string; name: string; server: GatewayServer }> {
    const parts = unqualify(qualified);
    const known = fresh || !routes ? await servers() : routes;
    let server = parts ? known.get(parts.namespace) : undefined;
    if (parts && !server && !fresh && known === routes) server = (await servers()).get(parts.namespace);
    if (!parts || !server) throw new RelayedError(ErrorCode.InvalidParams, `unknown or not allowed: ${qualified}`);
    return { ...parts, server };
  }

  async function upstreamOf(serverId: string): Promise<Upstream> {
    try {
      return await pool.get(serverId);
    } catch (error) {
      throw relayed(error);
    }
  }

  /** Runs a request upstream; a failure of the session itself drops it for the next request. */
  async function relay<T>(upstream: Upstream, sink: LogSink | undefined, run: () => Promise<T>): Promise<T> {
    try {
      return await upstream.track(sink, run);
    } catch (error) {
      if (isTransportFailure(error)) pool.drop(upstream.serverId, upstream);
      throw relayed(error);
    }
  }

  /** Upstream log messages at or above this session's level, each sent on with `send`. */
  function levelled(send: (notification: { method: 'notifications/message'; params: LoggingMessageNotification['params'] }) => void): LogSink {
    return (params) => {
      if (level !== undefined && LEVELS.indexOf(params.level) < LEVELS.indexOf(level)) return;
      send({ method: 'notifications/message', params });
    };
  }

  /** The log sink of a request on the SDK's path: its messages go on the request's stream. */
  function logSink(extra: Extra): LogSink {
    return levelled((notification) => void extra.sendNotification(notification).catch(() => undefined));
  }

  /**
   * The tools of the agent's servers it may call now: every server's tools as read upstream (a
   * server that fails is skipped alone), then one question to the database for all of them
   * (gateway_filter_tools). What the database allowed here is what a call of the same definition
   * would be answered (gateway_filter_tools and validate_agent_mcp_access read the same grant,
   * pins and scope), so it is remembered for the calls that follow, when the grant has no expiry
   * (an expiring grant's calls are asked, then remembered for what it has left).
   */
  async function allowedTools(targets: [string, GatewayServer][], asked: Asked): Promise<Tool[]> {
    const read = await Promise.all(
      targets.map(async ([namespace, server]) => {
        try {
          const upstream = await pool.get(server.server_instance_id);
          return { namespace, server, tools: await upstream.tools() };
        } catch (error) {
          options.onError?.(error);
          return { namespace, server, tools: [] as Tool[] };
        }
      }),
    );
    const presented = read.filter((r) => r.tools.length > 0);
    const asks = presented.map((r) => ({ serverId: r.server.server_instance_id, tools: r.tools }));
    // A server whose tools the database cannot take (a definition it refuses, such as a NUL in a
    // string) fails the question for all: then each server is asked alone, and only it is skipped.
    const decisions = await store.filterTools(agentId, asks).catch(async (error: unknown) => {
      options.onError?.(error);
      const each = await Promise.all(
        asks.map((ask) =>
          store.filterTools(agentId, [ask]).catch((alone: unknown) => {
            options.onError?.(alone);
            return [];
          }),
        ),
      );
      return each.flat();
    });
    const allowed = new Set(decisions.filter((d) => d.allowed).map((d) => JSON.stringify([d.server_instance_id, d.tool_name])));
    return presented.flatMap(({ namespace, server, tools }) => {
      const listed = tools.filter((tool) => allowed.has(JSON.stringify([server.server_instance_id, tool.name])));
      if (server.expires_at === null) for (const tool of listed) cache.rememberAllowed(agentId, server.server_instance_id, tool, null, asked);
      return listed.map((tool) => tagged({ ...tool, name: qualify(namespace, tool.name) }, server.server_instance_id));
    });
  }

  /** The database's decision of one call with the presented definition (remembered while it holds). */
  async function allowedCall(serverId: string, tool: Tool): Promise<boolean> {
    if (cache.allowed(agentId, serverId, tool)) return true;
    const asked = cache.asking();
    const decision = await store.authorizeCall(agentId, serverId, tool);
    if (decision.allowed) cache.rememberAllowed(agentId, serverId, tool, decision.valid_for_ms, asked);
    return decision.allowed;
  }

  server.setRequestHandler(ListToolsRequestSchema, async () => {
    // Asked before the servers: a change after this voids what the listing would remember.
    const asked = cache.asking();
    return { tools: await allowedTools([...(await servers())], asked) };
  });

  /** A call on its way: its upstream, the definition presented to the database, its log entry. */
  interface Call {
    name: string;
    upstream: Upstream;
    presented: Tool;
    entry: Omit<Interaction, 'outcome' | 'duration_ms'>;
  }

  /**
   * The route of a call and the database's decision on the definition read upstream; a denial
   * is logged (and written) before it is thrown, with the database's reason.
   */
  async function decide(qualified: string, args: Record<string, unknown>, requestId: RequestId): Promise<Call> {
    const { name, server: target } = await route(qualified, false);
    const serverId = target.server_instance_id;
    const upstream = await upstreamOf(serverId);
    const presented = (await relay(upstream, undefined, () => upstream.tools())).find((tool) => tool.name === name);
    if (!presented) throw new RelayedError(ErrorCode.InvalidParams, `unknown tool: ${qualified}`);
    const entry: Call['entry'] = { interaction_type: 'tool_call', server_instance_id: serverId, tool_name: name, arguments: args as JsonValue, request_id: String(requestId) };
    if (!(await allowedCall(serverId, presented))) {
      const reason = (await store.filterTools(agentId, [{ serverId, tools: [presented] }]))[0]?.reason ?? 'no_live_grant';
      log.add(agentId, { ...entry, outcome: 'denied', duration_ms: 0, error: `denied: ${reason}` });
      await log.flush();
      throw new RelayedError(GatewayErrorCode.denied, `${qualified} denied by the control plane: ${reason}`, { reason });
    }
    return { name, upstream, presented, entry };
  }

  /**
   * Logs how a call ended: its result (an error result too), its client's cancellation (with the
   * reason given), or its failure, which is given back as relayed.
   */
  function logged(call: Call, started: number, outcome: { result: CallToolResult } | { cancelled: string } | { error: unknown }): RelayedError | undefined {
    const duration_ms = Math.round(performance.now() - started);
    if ('cancelled' in outcome) {
      log.add(agentId, { ...call.entry, outcome: 'error', duration_ms, error: `cancelled: ${outcome.cancelled}` });
      return undefined;
    }
    if ('result' in outcome) {
      const isError = outcome.result.isError === true;
      log.add(agentId, { ...call.entry, outcome: isError ? 'error' : 'success', duration_ms, ...(isError ? { error: 'the tool reported an error' } : {}) });
      return undefined;
    }
    const failure = relayed(outcome.error);
    log.add(agentId, { ...call.entry, outcome: failure.code === ErrorCode.RequestTimeout ? 'timeout' : 'error', duration_ms, error: failure.message.slice(0, 2000) });
    return failure;
  }

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const args = request.params.arguments ?? {};
    const call = await decide(request.params.name, args, extra.requestId);
    const { upstream } = call;
    const progressToken = request.params._meta?.progressToken;
    const started = performance.now();
    try {
      const result = await relay(upstream, logSink(extra), () =>
        upstream.client.callTool({ name: call.name, arguments: args }, undefined, {
          signal: extra.signal,
          timeout: options.callTimeoutMs ?? 60_000,
          resetTimeoutOnProgress: true,
          ...(progressToken !== undefined
            ? {
                onprogress: (progress) => {
                  void extra.sendNotification({ method: 'notifications/progress', params: { ...progress, progressToken } }).catch(() => undefined);
                },
              }
            : {}),
        }),
      );
      logged(call, started, { result: result as CallToolResult });
      return result;
    } catch (error) {
      // Cancelled by its client (the SDK's client then fails the call as a timeout with the reason): logged as the lane logs it.
      if (extra.signal.aborted) {
        const reason: unknown = extra.signal.reason;
        logged(call, started, { cancelled: typeof reason === 'string' ? reason.slice(0, 500) : 'cancelled by the client' });
        throw relayed(error);
      }
      throw logged(call, started, { error });
    }
  });

  /** The lane's calls in flight, by the id their client gave them: a cancellation ends one. */
  const inFlight = new Map<RequestId, (reason: string) => void>();

  /**
   * A plain call (lane.ts) answered here: decided and logged as above, relayed with
   * Upstream.exchange, its result checked as the SDK checks it on each side (the result's
   * schema, and the tool's output schema). False when the SDK's path must take it (a tool that
   * requires a task), before anything was asked or sent.
   */
  async function plain(request: PlainCall, reply: LaneReply, signal?: AbortSignal): Promise<boolean> {
    const fail = (error: RelayedError): void =>
      reply.end({ jsonrpc: '2.0', id: request.id, error: { code: error.code, message: error.message, ...(error.data !== undefined ? { data: error.data } : {}) } });
    let call: Call;
    try {
      call = await decide(request.name, request.arguments, request.id);
    } catch (error) {
      fail(relayed(error));
      return true;
    }
    if (call.presented.execution?.taskSupport === 'required') return false;
    const { upstream } = call;
    let cancel: ((reason: string) => void) | undefined;
    let cancelledBecause: string | undefined;
    const cancelled = (reason: string): void => {
      cancelledBecause ??= reason;
      cancel?.(reason);
    };
    const left = (): void => cancelled('the client went away');
    signal?.addEventListener('abort', left, { once: true });
    inFlight.set(request.id, cancelled);
    const sink = levelled((notification) => reply.send({ jsonrpc: '2.0', ...notification }));
    const started = performance.now();
    try {
      const answer = await relay(upstream, sink, () => {
        const exchange = upstream.exchange('tools/call', { name: call.name, arguments: request.arguments }, { timeoutMs: options.callTimeoutMs ?? 60_000, onStream: () => reply.streaming() });
        cancel = exchange.cancel;
        if (signal?.aborted) left();
        return exchange.answer;
      });
      if ('error' in answer) throw new McpError(answer.error.code, answer.error.message, answer.error.data);
      const result = checkedResult(call.name, call.presented, answer.result);
      logged(call, started, { result });
      reply.end({ jsonrpc: '2.0', id: request.id, result });
    } catch (error) {
      if (cancelledBecause === undefined) fail(logged(call, started, { error }) as RelayedError);
      else {
        logged(call, started, { cancelled: cancelledBecause });
        reply.end();
      }
    } finally {
      signal?.removeEventListener('abort', left);
      if (inFlight.get(request.id) === cancelled) inFlight.delete(request.id);
    }
    return true;
  }

  serveReads({ server, pool, servers, route, upstreamOf, relay, logSink, ...(options.onError ? { onError: options.onError } : {}) });

  server.setRequestHandler(SetLevelRequestSchema, async (request) => {
    level = request.params.level;
    return {};
  });

  return { server, plain, cancel: (requestId, reason) => inFlight.get(requestId)?.(reason ?? 'cancelled by the client') };
}
