/**
 * The MCP endpoint of one instance: many HTTP sessions (Streamable HTTP, one
 * SDK `Server` each) relayed to one upstream SDK `Client` of the instance's
 * child, so that each MCP client does its own initialize against one process.
 *
 * What a client sees through the relay is what it would see talking to the
 * server directly:
 * - every progress notification of a request reaches the client before the
 *   request's result (they are forwarded in order and awaited);
 * - a cancelled request (notifications/cancelled, or its session ending) is
 *   cancelled upstream;
 * - logging: each session keeps its own level; the child is set to the most
 *   verbose level any session asked for, and each log message goes to the
 *   sessions whose level it meets;
 * - ping is answered by the child, so a pong means the server answers;
 * - an upstream error keeps its code, message and data (no second
 *   `MCP error <code>:` prefix per hop);
 * - a request's params and its result pass as they came: the child validates
 *   what it is asked, the asking client what it gets back.
 * Every relayed message costs CPU on the machine that runs the servers: the
 * relay parses each message once, and a request on a session takes the short
 * way of session-transport.ts.
 * Not relayed: the experimental `tasks` capability, and requests from the
 * server to the client (sampling, elicitation, roots).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { DEFAULT_MAX_REQUEST_BODY_SIZE, requestBodyTooLargeMessage } from '@modelcontextprotocol/sdk/server/requestBody.js';
import type { RequestHandlerExtra, RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  ErrorCode,
  LoggingLevelSchema,
  McpError,
  PingRequestSchema,
  ServerNotificationSchema,
  SetLevelRequestSchema,
  type ClientRequest,
  type Implementation,
  type LoggingLevel,
  type Notification,
  type Result,
  type ServerCapabilities,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { BodyTooLarge, readBody, requestOf, sendResponse } from '../../client/src/node-serve.ts';
import { SessionTransport } from './session-transport.js';

/** The instance's child as the relay uses it: its client and what it answered to initialize. */
export interface Upstream {
  client: Client;
  serverInfo: Implementation;
  capabilities: ServerCapabilities;
  instructions: string | undefined;
}

export interface McpRelayOptions {
  /** The upstream as it is now, or why there is none (`MCP server 'x' is not running (status: stopped)`). */
  upstream: () => Upstream | string;
  /** Upstream timeout of one relayed request, reset by progress. */
  requestTimeoutMs: number;
}

export interface McpRelay {
  /** Serves one HTTP request of the instance's MCP endpoint. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** A notification of the child that belongs to no request (logging, list changes): to the sessions it concerns. */
  broadcast(notification: Notification): void;
  /** Ends every session (their in-flight requests are cancelled upstream). */
  closeSessions(): Promise<void>;
  /** Ends the sessions not seen since `cutoff` (ms since the epoch). */
  closeIdleSessions(cutoff: number): Promise<void>;
  /** How many sessions are open. */
  readonly sessionCount: number;
}

interface Session {
  transport: SessionTransport;
  server: Server;
  lastSeen: number;
  /** The level this session asked for with logging/setLevel; undefined: every message. */
  logLevel: LoggingLevel | undefined;
}

type RelayExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const LOG_LEVELS = LoggingLevelSchema.options;

/** Whether a message at `level` reaches a session that asked for `wanted`. */
export function meetsLogLevel(level: LoggingLevel, wanted: LoggingLevel | undefined): boolean {
  return wanted === undefined || LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(wanted);
}

/** The most verbose of the levels the sessions asked for (what the shared child must send). */
export function mostVerboseLevel(levels: Iterable<LoggingLevel | undefined>): LoggingLevel | undefined {
  let best: number | undefined;
  for (const level of levels) {
    if (level === undefined) continue;
    const index = LOG_LEVELS.indexOf(level);
    if (best === undefined || index < best) best = index;
  }
  return best === undefined ? undefined : LOG_LEVELS[best];
}

// The capabilities a relay can honour. `tasks` and `experimental` are dropped:
// relaying them needs per-session state the upstream server cannot see.
export function relayedCapabilities(upstream: ServerCapabilities): ServerCapabilities {
  const { logging, completions, prompts, resources, tools } = upstream;
  return {
    ...(logging ? { logging } : {}),
    ...(completions ? { completions } : {}),
    ...(prompts ? { prompts } : {}),
    ...(resources ? { resources } : {}),
    ...(tools ? { tools } : {}),
  };
}

/** The methods relayed to the child besides ping and logging/setLevel, by the capabilities offered. */
export function relayedMethods(capabilities: ServerCapabilities): Set<string> {
  const methods: string[] = [];
  if (capabilities.tools) methods.push('tools/list', 'tools/call');
  if (capabilities.resources) {
    methods.push('resources/list', 'resources/templates/list', 'resources/read');
    if (capabilities.resources.subscribe) methods.push('resources/subscribe', 'resources/unsubscribe');
  }
  if (capabilities.prompts) methods.push('prompts/list', 'prompts/get');
  if (capabilities.completions) methods.push('completion/complete');
  return new Set(methods);
}

/** A result as the child sent it: the client that asked validates it, as it would talking to the child directly. */
const AS_SENT = z.custom<Result>((value) => typeof value === 'object' && value !== null);

/** An upstream error as the upstream sent it: the SDK's server writes `code`, `message` and `data` as they are. */
class RelayedError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data: unknown,
  ) {
    super(message);
  }
}

/** Undoes the `MCP error <code>: ` prefix the SDK's client adds to the upstream's message. */
export function unwrapUpstreamError(error: unknown): unknown {
  if (!(error instanceof McpError)) return error;
  const prefix = `MCP error ${error.code}: `;
  const message = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
  return new RelayedError(error.code, message, error.data);
}

export function replyJsonRpcError(res: ServerResponse, httpStatus: number, code: number, message: string): void {
  if (res.headersSent) return;
  res.writeHead(httpStatus, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

/**
 * Serves one HTTP request through a session's transport: the body read whole and parsed here; a
 * request on the session answered on the transport's short way, anything else by the SDK's
 * web-standard transport, its answer written straight to the socket (node-serve.ts), instead of
 * the SDK's Node transport, which converts both ways through web streams. A body that is not
 * JSON goes to the SDK's transport as it came, which refuses it as it refuses any.
 */
async function serveThrough(transport: SessionTransport, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body: Uint8Array<ArrayBuffer> | undefined;
  let parsedBody: unknown;
  if (req.method === 'POST') {
    let bytes: Buffer;
    try {
      bytes = await readBody(req, DEFAULT_MAX_REQUEST_BODY_SIZE);
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error;
      res.setHeader('connection', 'close');
      replyJsonRpcError(res, 413, -32000, requestBodyTooLargeMessage(DEFAULT_MAX_REQUEST_BODY_SIZE));
      return;
    }
    try {
      parsedBody = JSON.parse(bytes.toString('utf8'));
    } catch {
      body = new Uint8Array(bytes);
    }
  }
  if (parsedBody !== undefined && transport.tryServe(req, res, parsedBody)) return;
  const closed = new AbortController();
  // Aborting creates an error: only for a client that went away before the end.
  res.once('close', () => {
    if (!res.writableFinished) closed.abort();
  });
  const request = requestOf(req, `http://${req.headers.host ?? 'localhost'}`, body);
  const response = await transport.sdk.handleRequest(request, parsedBody === undefined ? undefined : { parsedBody });
  await sendResponse(res, response, closed.signal);
}

export function createMcpRelay(options: McpRelayOptions): McpRelay {
  const sessions = new Map<string, Session>();

  function current(): Upstream {
    const upstream = options.upstream();
    if (typeof upstream === 'string') throw new Error(upstream);
    return upstream;
  }

  /** Relays one request of a session to the current upstream. */
  async function relay(request: ClientRequest, extra: RelayExtra): Promise<Result> {
    const { client } = current();
    const progressToken = request.params?._meta?.progressToken;
    const requestOptions: RequestOptions = { signal: extra.signal, timeout: options.requestTimeoutMs, resetTimeoutOnProgress: true };
    // Progress is sent on the request's own stream, which closes with the
    // result: every forward must be written before the result is.
    let forwarded: Promise<void> = Promise.resolve();
    if (progressToken !== undefined) {
      // The child gets a token of the relay's own; its progress is re-sent
      // under the token this session's client chose.
      requestOptions.onprogress = (progress) => {
        const notification: ServerNotification = { method: 'notifications/progress', params: { ...progress, progressToken } };
        forwarded = forwarded.then(() => extra.sendNotification(notification)).catch(() => undefined);
      };
    }
    try {
      const result = await client.request(request, AS_SENT, requestOptions);
      await forwarded;
      return result;
    } catch (error) {
      await forwarded;
      throw unwrapUpstreamError(error);
    }
  }

  async function setLevel(session: Session | undefined, level: LoggingLevel, extra: RelayExtra): Promise<Record<string, never>> {
    if (session) session.logLevel = level;
    const wanted = mostVerboseLevel([...sessions.values()].map((each) => each.logLevel)) ?? level;
    await relay({ method: 'logging/setLevel', params: { level: wanted } }, extra);
    return {};
  }

  function createServer(upstream: Upstream, sessionOf: () => Session | undefined): Server {
    const capabilities = relayedCapabilities(upstream.capabilities);
    const server = new Server(upstream.serverInfo, {
      capabilities,
      ...(upstream.instructions === undefined ? {} : { instructions: upstream.instructions }),
    });
    // Ping and logging/setLevel have handlers of the SDK's own: replaced.
    server.setRequestHandler(PingRequestSchema, (request, extra) => relay(request, extra));
    if (capabilities.logging) {
      server.setRequestHandler(SetLevelRequestSchema, (request, extra) => setLevel(sessionOf(), request.params.level, extra));
    }
    // Everything else the capabilities offer goes to the child as it came: the child validates its
    // requests and answers them, so parsing them here again (the SDK's schemas, per message) would
    // only cost time; a method the capabilities do not offer gets what the SDK answers then.
    const methods = relayedMethods(capabilities);
    server.fallbackRequestHandler = (request, extra) => {
      if (!methods.has(request.method)) return Promise.reject(new RelayedError(ErrorCode.MethodNotFound, 'Method not found', undefined));
      const { method, params } = request;
      return relay((params === undefined ? { method } : { method, params }) as ClientRequest, extra);
    };
    return server;
  }

  async function openSession(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const upstream = options.upstream();
    if (typeof upstream === 'string') {
      replyJsonRpcError(res, 503, -32000, upstream);
      return;
    }
    let session: Session | undefined;
    const server = createServer(upstream, () => session);
    const transport = new SessionTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        session = { transport, server, lastSeen: Date.now(), logLevel: undefined };
        sessions.set(id, session);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await serveThrough(transport, req, res);
    // Anything but an initialize was refused by the transport: no session to keep.
    if (!transport.sessionId) await server.close();
  }

  return {
    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const header = req.headers['mcp-session-id'];
      const sessionId = Array.isArray(header) ? header[0] : header;
      if (sessionId === undefined) {
        if (req.method !== 'POST') {
          replyJsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
          return;
        }
        await openSession(req, res);
        return;
      }
      const session = sessions.get(sessionId);
      if (!session) {
        // 404 tells a conforming client to start a new session.
        replyJsonRpcError(res, 404, -32001, 'Session not found');
        return;
      }
      session.lastSeen = Date.now();
      await serveThrough(session.transport, req, res);
    },

    broadcast(notification: Notification): void {
      const parsed = ServerNotificationSchema.safeParse(notification);
      if (!parsed.success) return;
      const message = parsed.data;
      for (const session of sessions.values()) {
        if (message.method === 'notifications/message' && !meetsLogLevel(message.params.level, session.logLevel)) continue;
        session.server.notification(message).catch(() => undefined);
      }
    },

    async closeSessions(): Promise<void> {
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.allSettled(all.map((session) => session.server.close()));
    },

    async closeIdleSessions(cutoff: number): Promise<void> {
      for (const [id, session] of sessions) {
        if (session.lastSeen < cutoff) {
          sessions.delete(id);
          await session.server.close().catch(() => undefined);
        }
      }
    },

    get sessionCount(): number {
      return sessions.size;
    },
  };
}
