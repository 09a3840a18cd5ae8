/**
 * The gateway's connections to the MCP servers behind the DTMAs: one MCP client session per
 * server, opened on first use with the credential the database gives the platform
 * (gateway_upstream: the endpoint and the toolbox's bearer token, which never leaves the
 * gateway), kept open and shared by every agent's requests. A session that fails at the
 * transport level is dropped and reopened on the next request.
 *
 * What the protocol lets a shared session relay: requests and their results, progress (the SDK
 * gives each upstream request its own token, mapped back to the caller's), cancellation (the
 * caller's abort becomes notifications/cancelled upstream). What it does not: a log message
 * carries no request id, so it is relayed only when exactly one call is in flight on the
 * session (to that call's client); otherwise it is dropped rather than shown to another agent.
 *
 * `exchange` sends a request on the same session past the SDK's protocol layer (the call lane,
 * lane.ts): through the SDK's own transport (its headers, session, redirect rule and SSE
 * reading), with an id of the gateway's own (`gateway-<n>`, never a number the SDK's client
 * uses), its response taken off the transport before the client sees it. Every other message
 * of the session (a log, a notification, a server's request) still reaches the SDK's client.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  ErrorCode,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  McpError,
  ToolListChangedNotificationSchema,
  type JSONRPCErrorResponse,
  type JSONRPCMessage,
  type JSONRPCResultResponse,
  type LoggingMessageNotification,
  type ServerCapabilities,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { sharedValidator } from '../chat/validator.ts';
import { collapsingFetch } from '../sse-fetch.ts';
import type { GatewayStore } from './store.ts';

export type LogSink = (notification: LoggingMessageNotification['params']) => void;

export interface Upstream {
  serverId: string;
  client: Client;
  capabilities: ServerCapabilities;
  /** The tools the server presents (cached for toolsTtlMs, or until it says they changed). */
  tools(options?: RequestOptions): Promise<Tool[]>;
  /** Runs a request with a log sink attached while it is in flight. */
  track<T>(sink: LogSink | undefined, run: () => Promise<T>): Promise<T>;
  /**
   * Adds a listener for a resource's `notifications/resources/updated`. The shared session holds
   * one upstream subscription per URI, made by the first listener and ended by the last.
   */
  subscribe(uri: string, listener: () => void): Promise<void>;
  unsubscribe(uri: string, listener: () => void): Promise<void>;
  /**
   * Sends one request past the SDK's protocol layer and resolves with its response message as
   * the server sent it (a result or an error). Rejects when the transport fails (a transport
   * failure: isTransportFailure), after `timeoutMs` (McpError RequestTimeout, the SDK's own) or
   * when `signal` aborts (an AbortError); either of the last two tells the server with
   * `notifications/cancelled`, as the SDK's client does.
   */
  exchange(method: string, params: Record<string, unknown>, options: { timeoutMs: number; signal?: AbortSignal }): Promise<UpstreamAnswer>;
}

export type UpstreamAnswer = JSONRPCResultResponse | JSONRPCErrorResponse;

export interface UpstreamPool {
  get(serverId: string): Promise<Upstream>;
  /** Forgets a session that failed (closing it); the next get opens a new one. */
  drop(serverId: string, upstream?: Upstream): void;
  close(): Promise<void>;
}

export interface UpstreamPoolOptions {
  store: Pick<GatewayStore, 'upstream'>;
  clientInfo?: { name: string; version: string };
  fetch?: typeof fetch;
  toolsTtlMs?: number;
}

const MAX_PAGES = 100;

async function allTools(client: Client, options?: RequestOptions): Promise<Tool[]> {
  const tools: Tool[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const result = await client.listTools(cursor ? { cursor } : undefined, options);
    tools.push(...result.tools);
    if (!result.nextCursor) break;
    cursor = result.nextCursor;
  }
  return tools;
}

/** Whether an error says the session itself is gone (transport, HTTP), not a refusal of one request. */
export function isTransportFailure(error: unknown): boolean {
  return !(error instanceof McpError) && !(error instanceof Error && error.name === 'AbortError');
}

export function upstreamPool(options: UpstreamPoolOptions): UpstreamPool {
  const sessions = new Map<string, Promise<Upstream>>();
  const ttl = options.toolsTtlMs ?? 5_000;

  async function open(serverId: string): Promise<Upstream> {
    const target = await options.store.upstream(serverId);
    const headers: Record<string, string> = target.bearer_token ? { authorization: `Bearer ${target.bearer_token}` } : {};
    const transport = new StreamableHTTPClientTransport(new URL(target.endpoint_url), {
      requestInit: { headers },
      // An answer holding only the response is read as JSON, without the SDK's stream stages.
      fetch: collapsingFetch(options.fetch ?? ((input, init) => fetch(input, init))),
    });
    const client = new Client(options.clientInfo ?? { name: 'mcp-control-plane-gateway', version: '0.1.0' }, { capabilities: {}, jsonSchemaValidator: sharedValidator });
    let cached: { at: number; tools: Promise<Tool[]> } | undefined;
    const sinks = new Set<LogSink>();
    const watchers = new Map<string, Set<() => void>>();
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      cached = undefined;
    });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
      for (const listener of watchers.get(notification.params.uri) ?? []) listener();
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      if (sinks.size === 1) for (const sink of sinks) sink(notification.params);
    });
    await client.connect(transport);
    // The lane's responses are taken off the transport; everything else goes on to the client.
    const answers = new Map<string, (answer: UpstreamAnswer) => void>();
    const toClient = transport.onmessage;
    transport.onmessage = (message: JSONRPCMessage) => {
      const id = 'id' in message && !('method' in message) ? message.id : undefined;
      const waiting = typeof id === 'string' ? answers.get(id) : undefined;
      if (waiting) waiting(message as UpstreamAnswer);
      else toClient?.(message);
    };
    let exchanged = 0;
    const capabilities = client.getServerCapabilities() ?? {};
    // Every level upstream: each agent's session filters by the level its client set.
    if (capabilities.logging) await client.setLoggingLevel('debug').catch(() => undefined);
    const exchange: Upstream['exchange'] = (method, params, { timeoutMs, signal }) => {
      const id = `gateway-${++exchanged}`;
      return new Promise<UpstreamAnswer>((resolve, reject) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const done = (): void => {
          answers.delete(id);
          clearTimeout(timer);
          signal?.removeEventListener('abort', aborted);
        };
        const cancel = (reason: string): void => {
          void transport.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } }).catch(() => undefined);
        };
        const aborted = (): void => {
          done();
          cancel(String(signal?.reason ?? 'aborted'));
          reject(signal?.reason instanceof Error ? signal.reason : Object.assign(new Error('This operation was aborted'), { name: 'AbortError' }));
        };
        if (signal?.aborted) return aborted();
        signal?.addEventListener('abort', aborted, { once: true });
        timer = setTimeout(() => {
          done();
          cancel('Request timed out');
          reject(new McpError(ErrorCode.RequestTimeout, 'Request timed out', { timeout: timeoutMs }));
        }, timeoutMs);
        answers.set(id, (answer) => {
          done();
          resolve(answer);
        });
        transport.send({ jsonrpc: '2.0', id, method, params }).catch((error: unknown) => {
          done();
          reject(error);
        });
      });
    };
    const upstream: Upstream = {
      serverId,
      client,
      capabilities,
      tools(requestOptions) {
        if (!capabilities.tools) return Promise.resolve([]);
        if (!cached || Date.now() - cached.at > ttl) {
          // A definition read again unchanged keeps its object: what was decided for it (the
          // gateway's cache is keyed by the object) still holds.
          const before = cached?.tools;
          const tools = allTools(client, requestOptions).then(async (read) => {
            const known = new Map(((await before?.catch(() => undefined)) ?? []).map((tool) => [tool.name, tool]));
            return read.map((tool) => {
              const old = known.get(tool.name);
              return old && JSON.stringify(old) === JSON.stringify(tool) ? old : tool;
            });
          });
          cached = { at: Date.now(), tools };
          tools.catch(() => {
            if (cached?.tools === tools) cached = undefined;
          });
        }
        return cached.tools;
      },
      async track(sink, run) {
        if (sink) sinks.add(sink);
        try {
          return await run();
        } finally {
          if (sink) sinks.delete(sink);
        }
      },
      async subscribe(uri, listener) {
        const listeners = watchers.get(uri);
        if (listeners) {
          listeners.add(listener);
          return;
        }
        watchers.set(uri, new Set([listener]));
        try {
          await client.subscribeResource({ uri });
        } catch (error) {
          watchers.delete(uri);
          throw error;
        }
      },
      async unsubscribe(uri, listener) {
        const listeners = watchers.get(uri);
        if (!listeners?.delete(listener) || listeners.size > 0) return;
        watchers.delete(uri);
        await client.unsubscribeResource({ uri });
      },
      exchange,
    };
    client.onclose = () => pool.drop(serverId, upstream);
    return upstream;
  }

  const pool: UpstreamPool = {
    get(serverId) {
      let session = sessions.get(serverId);
      if (!session) {
        session = open(serverId);
        sessions.set(serverId, session);
        session.catch(() => {
          if (sessions.get(serverId) === session) sessions.delete(serverId);
        });
      }
      return session;
    },
    drop(serverId, upstream) {
      const session = sessions.get(serverId);
      if (!session) return;
      void session.then(
        (current) => {
          if (upstream && current !== upstream) return;
          if (sessions.get(serverId) === session) sessions.delete(serverId);
          void current.client.close().catch(() => undefined);
        },
        () => undefined,
      );
    },
    async close() {
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.allSettled(
        all.map(async (session) => {
          const upstream = await session;
          const transport = upstream.client.transport;
          if (transport instanceof StreamableHTTPClientTransport && transport.sessionId) await transport.terminateSession().catch(() => undefined);
          await upstream.client.close();
        }),
      );
    },
  };
  return pool;
}
