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
 * lane.ts): a POST with the session's headers (its id, protocol version and credential) and an
 * id of the gateway's own (`gateway-<n>`, never a number the SDK's client uses), whose answer
 * (JSON or SSE) is read by lane-answer.ts: the response goes back to the caller, every other message of
 * the answer (a log, a notification, a server's request) to the SDK's client, as its transport
 * would have handed it over. A redirect is never followed (the SDK's transport follows
 * same-origin ones); an HTTP error (but 413, which refuses that request alone) or an answer
 * without the response fails the session.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  ErrorCode,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  McpError,
  ToolListChangedNotificationSchema,
  type JSONRPCErrorResponse,
  type JSONRPCResultResponse,
  type LoggingMessageNotification,
  type ServerCapabilities,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { sharedValidator } from '../chat/validator.ts';
import { chunksOf, collapsingFetch } from '../sse-fetch.ts';
import { readLaneAnswer } from './lane-answer.ts';
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
  /** Fails the lane's requests in flight with Connection closed (the SDK's client fails its own so when it closes). */
  abandon(): void;
  /**
   * Sends one request past the SDK's protocol layer; `answer` resolves with its response message
   * as the server sent it (a result or an error). It rejects when the transport fails (a
   * transport failure: isTransportFailure), after `timeoutMs` (McpError RequestTimeout, the
   * SDK's own) or once `cancel` is called (an AbortError); either of the last two tells the
   * server with `notifications/cancelled`, as the SDK's client does. `onStream` is told when
   * the answer turns out to be an SSE stream, before its first event is read.
   */
  exchange(method: string, params: Record<string, unknown>, options: { timeoutMs: number; onStream?: () => void }): Exchange;
}

export interface Exchange {
  answer: Promise<UpstreamAnswer>;
  cancel(reason: string): void;
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
  /** How the lane posts its requests (default: over `fetch`). */
  post?: LanePost;
  toolsTtlMs?: number;
  /**
   * How long the lane reads on an upstream's SSE answer after its response (default 5 s): for
   * what the server still says before closing it, but not for ever (an upstream that never
   * closes it would hold one of the connections to it until they were all held).
   */
  afterResponseMs?: number;
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
  // 413 refuses that one request (its body, which a caller chooses): the session, shared by every agent, stays.
  if (error instanceof StreamableHTTPError && (error as { code?: unknown }).code === 413) return false;
  return !(error instanceof McpError) && !(error instanceof Error && error.name === 'AbortError');
}


/** The answer to a lane POST: its status, content type and body. */
export interface PostAnswer {
  status: number;
  contentType: string | null;
  chunks: AsyncIterator<Uint8Array>;
}

/**
 * How the lane POSTs a request upstream (Upstream.exchange): never following a redirect, the
 * body read as it comes; `cancel` ends the request. By default over fetch (`redirect:
 * 'manual'`); the gateway's Node entry posts on sockets (socket-post.ts), without
 * web streams.
 */
export type LanePost = (url: URL, init: { headers: Record<string, string>; body: string }) => { answer: Promise<PostAnswer>; cancel(): void };

export function fetchPost(fetchImpl: typeof fetch = fetch): LanePost {
  return (url, init) => {
    const controller = new AbortController();
    const answer = fetchImpl(url, { method: 'POST', ...init, redirect: 'manual', signal: controller.signal }).then((response): PostAnswer => {
      const chunks: AsyncIterator<Uint8Array> = response.body ? chunksOf(response.body) : { next: async () => ({ done: true, value: undefined }) };
      return { status: response.status, contentType: response.headers.get('content-type'), chunks };
    });
    return { answer, cancel: () => controller.abort() };
  };
}

export function upstreamPool(options: UpstreamPoolOptions): UpstreamPool {
  const sessions = new Map<string, Promise<Upstream>>();
  const post = options.post ?? fetchPost(options.fetch ?? ((input, init) => fetch(input, init)));
  const ttl = options.toolsTtlMs ?? 5_000;
  const afterResponseMs = options.afterResponseMs ?? 5_000;

  async function open(serverId: string): Promise<Upstream> {
    const target = await options.store.upstream(serverId);
    const headers: Record<string, string> = target.bearer_token ? { authorization: `Bearer ${target.bearer_token}` } : {};
    const url = new URL(target.endpoint_url);
    const transport = new StreamableHTTPClientTransport(url, {
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
    // Where a lane answer's other messages go: to the client, as its transport hands them over.
    const toClient = transport.onmessage;
    let exchanged = 0;
    /** The lane's requests in flight: when the session closes they fail at once, as the SDK's client fails its own. */
    const inFlight = new Set<(error: unknown) => boolean>();
    const capabilities = client.getServerCapabilities() ?? {};
    // Every level upstream: each agent's session filters by the level its client set.
    if (capabilities.logging) await client.setLoggingLevel('debug').catch(() => undefined);
    const exchange: Upstream['exchange'] = (method, params, { timeoutMs, onStream }) => {
      const id = `gateway-${++exchanged}`;
      let giveUp: (reason: string, error: unknown) => void = () => undefined;
      const answer = new Promise<UpstreamAnswer>((resolve, reject) => {
        let settled = false;
        const settle = (): boolean => {
          if (settled) return false;
          settled = true;
          clearTimeout(timer);
          inFlight.delete(closed);
          return true;
        };
        // Ended here (the session closed, a timeout, a cancellation): the request is cut off.
        const closed = (error: unknown): boolean => {
          if (!settle()) return false;
          posted.cancel();
          reject(error);
          return true;
        };
        inFlight.add(closed);
        // Given up on (a timeout, a cancellation): the server is told too, as the SDK's client tells it.
        giveUp = (reason, error) => {
          if (closed(error)) void transport.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } }).catch(() => undefined);
        };
        const timer = setTimeout(() => giveUp('Request timed out', new McpError(ErrorCode.RequestTimeout, 'Request timed out', { timeout: timeoutMs })), timeoutMs);
        const laneHeaders: Record<string, string> = { ...headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
        if (transport.sessionId) laneHeaders['mcp-session-id'] = transport.sessionId;
        if (transport.protocolVersion) laneHeaders['mcp-protocol-version'] = transport.protocolVersion;
        const posted = post(url, { headers: laneHeaders, body: JSON.stringify({ jsonrpc: '2.0', id, method, params }) });
        posted.answer
          .then((answer) =>
            readLaneAnswer(answer, {
              id,
              respond: (message) => {
                if (settle()) resolve(message);
              },
              // Every other message goes to the client, as its transport hands them over.
              other: (message) => toClient?.(message),
              ...(onStream ? { onStream } : {}),
              afterResponseMs,
            }),
          )
          .then(() => {
            if (settle()) reject(new Error('the upstream answered without a response to the request'));
          })
          .catch((error: unknown) => {
            if (settle()) reject(error);
          });
      });
      return { answer, cancel: (reason) => giveUp(reason, Object.assign(new Error(`cancelled: ${reason}`), { name: 'AbortError' })) };
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
      abandon() {
        for (const fail of [...inFlight]) fail(new McpError(ErrorCode.ConnectionClosed, 'Connection closed'));
      },
    };
    client.onclose = () => {
      upstream.abandon();
      pool.drop(serverId, upstream);
    };
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
          // The lane's calls in flight end first (the session's end would otherwise cut their streams short).
          upstream.abandon();
          const transport = upstream.client.transport;
          if (transport instanceof StreamableHTTPClientTransport && transport.sessionId) await transport.terminateSession().catch(() => undefined);
          await upstream.client.close();
        }),
      );
    },
  };
  return pool;
}
