/**
 * The agent MCP gateway as a fetch handler `(req: Request) => Promise<Response>`: Streamable
 * HTTP (the SDK's web-standard transport), so the same code runs under Node (scripts/gateway)
 * and Deno (supabase/functions/mcp-gateway). Paths may carry a prefix (Supabase serves the
 * function under /functions/v1/mcp-gateway).
 *
 *   POST|GET|DELETE  /agents/<agent id>/mcp   the agent's MCP endpoint (an API key, or a user's JWT)
 *   POST|GET|DELETE  /mcp                      the same for the agent an API key belongs to
 *   GET  /.well-known/oauth-protected-resource[/agents/<agent id>/mcp]   RFC 9728 metadata
 *
 * Every HTTP request is authenticated again (gateway_authenticate): `Authorization: Bearer
 * mcpk_...` is an agent API key; any other bearer token is a Supabase user JWT, verified with
 * the project's keys (JWKS or secret), acting for the agent named in the path. Without a valid
 * credential: 401 with `WWW-Authenticate: Bearer resource_metadata="..."` and a JSON-RPC error
 * body. A session belongs to the agent that opened it. Host and Origin are checked first
 * (DNS rebinding): a Host outside `allowedHosts` (when set) and any Origin outside
 * `allowedOrigins` are refused with 403.
 */
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { DEFAULT_MAX_REQUEST_BODY_SIZE, readRequestBody, requestBodyTooLargeMessage } from '@modelcontextprotocol/sdk/server/requestBody.js';
import { isInitializeRequest, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { McpControlPlaneError } from '../errors.ts';
import { rememberingJwtVerifier, type JwtKeyInput } from '../jwt.ts';
import { asRequest, asResponse, type Answer, type LightRequest } from '../light-http.ts';
import { collapseAnswer } from '../sse-fetch.ts';
import { agentServer, type AgentSession } from './agent-server.ts';
import { gatewayCache, type ChangeListener } from './cache.ts';
import { interactionLog, type InteractionLog } from './interaction-log.ts';
import { cancellations, laneReply, plainCall, plainHeaders } from './lane.ts';
import type { GatewayCredential, GatewayPrincipal, GatewayStore } from './store.ts';
import { upstreamPool, type LanePost, type UpstreamPool } from './upstream.ts';

export interface GatewayOptions {
  /** The database, as the platform (gatewayStore over a service_role transport). */
  store: GatewayStore;
  /** Keys that verify user JWTs (the project's JWKS and/or HS256 secret); without them only API keys are accepted. */
  jwtKeys?: JwtKeyInput;
  /** Where clients reach the gateway (origin and prefix), for the resource metadata; by default the request's own URL. */
  publicUrl?: string;
  /** Authorization servers named in the resource metadata (e.g. `<SUPABASE_URL>/auth/v1`). */
  authorizationServers?: string[];
  /** Host header values accepted (`host:port`); unset, any Host is accepted. */
  allowedHosts?: string[];
  /** Origin header values accepted; a request with another Origin is refused (none: no browser origin). */
  allowedOrigins?: string[];
  /**
   * The database's change announcements (listenForChanges over a connection of its own): with it,
   * credentials and allowed calls are remembered until a change (cache.ts); without it, or while
   * it is down, every request and every call is asked.
   */
  changes?: ChangeListener;
  /** fetch used for the upstream MCP endpoints. */
  fetch?: typeof fetch;
  /** How the call lane posts its requests upstream (upstream.ts; default: over `fetch`). */
  post?: LanePost;
  /** Interaction log batching (interaction-log.ts). */
  logFlushMs?: number;
  /** How long a plain call's upstream SSE answer is read on after its response (default 5 s; upstream.ts). */
  afterResponseMs?: number;
  /** Upstream timeout of one tool call, reset by progress. */
  callTimeoutMs?: number;
  /** A session idle this long is closed (default 30 min). */
  sessionIdleMs?: number;
  onError?: (error: unknown) => void;
}

export interface Gateway {
  handle(req: Request): Promise<Response>;
  /** handle for a LightRequest, whose answer may be a PlainAnswer (light-http.ts): the Node entry's way, without web streams. */
  serve(req: LightRequest): Promise<Answer>;
  /** Open downstream sessions. */
  sessionCount(): number;
  /** Writes the pending interaction log now. */
  flushLog(): Promise<void>;
  /** Ends every session, closes the upstreams, writes the log. */
  close(): Promise<void>;
}

interface DownstreamSession {
  agentId: string;
  transport: WebStandardStreamableHTTPServerTransport;
  agent: AgentSession;
  lastSeen: number;
}

const UUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';
const MCP_PATH = new RegExp(`^(.*?)(?:/agents/(${UUID}))?/mcp$`);
const METADATA_PATH = new RegExp(`^(.*?)/\\.well-known/oauth-protected-resource(/.*)?$`);

/** A JSON-RPC error response, as the MCP transport answers errors outside a session. */
export function jsonRpcError(status: number, code: number, message: string, headers: Record<string, string> = {}, data?: unknown): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message, ...(data !== undefined ? { data } : {}) }, id: null }), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

/**
 * A request's JSON body, read up to the SDK transport's limit (4 MiB; past it, the transport's
 * own 413), or the refusal of a body that is not JSON. The Node entry's light request was read
 * within the same limit already (node-serve.ts); a web Request (Deno) is read here as the SDK's
 * transport reads one.
 */
async function jsonBody(req: LightRequest, notJson: string): Promise<{ ok: true; body: unknown } | { ok: false; refusal: Response }> {
  let text: string;
  if (req instanceof Request) {
    const read = await readRequestBody(req, DEFAULT_MAX_REQUEST_BODY_SIZE);
    if (read.tooLarge) return { ok: false, refusal: jsonRpcError(413, -32000, requestBodyTooLargeMessage(DEFAULT_MAX_REQUEST_BODY_SIZE)) };
    text = read.text;
  } else {
    text = await req.text();
  }
  try {
    return { ok: true, body: JSON.parse(text) };
  } catch {
    return { ok: false, refusal: jsonRpcError(400, -32700, notJson) };
  }
}

class Refusal extends Error {
  constructor(readonly response: Response) {
    super('refused');
  }
}

export function createGateway(options: GatewayOptions): Gateway {
  const log: InteractionLog = interactionLog({
    write: (batches) => options.store.log(batches),
    ...(options.logFlushMs !== undefined ? { flushMs: options.logFlushMs } : {}),
    onError: (error) => options.onError?.(error),
  });
  const pool: UpstreamPool = upstreamPool({
    store: options.store,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.post ? { post: options.post } : {}),
    ...(options.afterResponseMs !== undefined ? { afterResponseMs: options.afterResponseMs } : {}),
  });
  const cache = gatewayCache(options.changes);
  // Every request of a session presents the same token: its signature is checked once (and again
  // after at most a minute), its expiry on every request.
  const verifyUserJwt = rememberingJwtVerifier(options.jwtKeys ?? {});
  const sessions = new Map<string, DownstreamSession>();
  const idleMs = options.sessionIdleMs ?? 30 * 60_000;
  const sweep = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    for (const [id, session] of sessions) if (session.lastSeen < cutoff) void session.transport.close();
  }, Math.min(60_000, idleMs));
  (sweep as { unref?: () => void }).unref?.();

  function base(url: URL, prefix: string): string {
    return options.publicUrl ? options.publicUrl.replace(/\/+$/, '') : `${url.origin}${prefix}`;
  }

  function metadataUrl(url: URL, prefix: string, agentId: string | undefined): string {
    return `${base(url, prefix)}/.well-known/oauth-protected-resource${agentId ? `/agents/${agentId}/mcp` : '/mcp'}`;
  }

  function unauthorized(url: URL, prefix: string, agentId: string | undefined, message: string, error?: string): Refusal {
    const challenge = [`Bearer resource_metadata="${metadataUrl(url, prefix, agentId)}"`, ...(error ? [`error="${error}"`, `error_description="${message}"`] : [])].join(', ');
    return new Refusal(jsonRpcError(401, -32001, message, { 'www-authenticate': challenge }));
  }

  function checkHostAndOrigin(req: LightRequest, url: URL): void {
    const host = req.headers.get('host') ?? url.host;
    if (options.allowedHosts && !options.allowedHosts.includes(host)) {
      throw new Refusal(jsonRpcError(403, -32000, `host not allowed: ${host}`));
    }
    const origin = req.headers.get('origin');
    if (origin !== null) {
      const own = options.publicUrl ? new URL(options.publicUrl).origin : undefined;
      if (origin !== own && !(options.allowedOrigins ?? []).includes(origin)) {
        throw new Refusal(jsonRpcError(403, -32000, `origin not allowed: ${origin}`));
      }
    }
  }

  async function authenticate(req: LightRequest, url: URL, prefix: string, agentId: string | undefined): Promise<GatewayPrincipal> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get('authorization') ?? '');
    if (!match?.[1]) throw unauthorized(url, prefix, agentId, 'authentication required: an agent API key or a user access token');
    const token = match[1];
    let credential: GatewayCredential;
    if (token.startsWith('mcpk_')) {
      credential = { apiKey: token, ...(agentId ? { agentId } : {}) };
    } else {
      if (!options.jwtKeys) throw unauthorized(url, prefix, agentId, 'this gateway accepts agent API keys only', 'invalid_token');
      if (!agentId) throw new Refusal(jsonRpcError(400, -32600, 'a user acts for an agent: use /agents/<agent id>/mcp'));
      let sub: string | undefined;
      try {
        const claims = await verifyUserJwt(token);
        sub = claims.role === 'authenticated' ? claims.sub : undefined;
      } catch (error) {
        throw unauthorized(url, prefix, agentId, error instanceof Error ? error.message : 'invalid token', 'invalid_token');
      }
      if (!sub) throw unauthorized(url, prefix, agentId, 'the token names no signed-in user', 'invalid_token');
      credential = { userId: sub, agentId };
    }
    // The same credential for the same agent path: the token (or the verified user) and the path's agent.
    const remembered = `${'apiKey' in credential ? credential.apiKey : `user:${credential.userId}`} ${agentId ?? ''}`;
    const known = cache.principal(remembered);
    if (known) return known;
    try {
      const asked = cache.asking();
      const principal = await options.store.authenticate(credential);
      cache.rememberPrincipal(remembered, principal, asked);
      return principal;
    } catch (error) {
      if (error instanceof McpControlPlaneError) {
        if (error.code === '28000') throw unauthorized(url, prefix, agentId, error.message, 'invalid_token');
        if (error.code === '42501') throw new Refusal(jsonRpcError(403, -32003, error.message));
        if (error.status === 503) throw new Refusal(jsonRpcError(503, -32004, 'the control plane is unavailable'));
      }
      throw error;
    }
  }

  async function openSession(agentId: string, req: LightRequest, body: unknown): Promise<Answer> {
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => crypto.randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, { agentId, transport, agent, lastSeen: Date.now() });
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    const agent = agentServer({
      agentId,
      store: options.store,
      pool,
      log,
      cache,
      ...(options.callTimeoutMs !== undefined ? { callTimeoutMs: options.callTimeoutMs } : {}),
      ...(options.onError ? { onError: options.onError } : {}),
    });
    await agent.server.connect(transport);
    return answer(req, await transport.handleRequest(asRequest(req), { parsedBody: body }));
  }

  /**
   * The SDK's answer to a request, sent as JSON when its SSE stream holds only the response (no
   * progress, no log before it): the same message, which the client reads without an SSE parser
   * (a Streamable HTTP client accepts either). Any other stream goes out as it is (sse-fetch.ts).
   */
  function answer(req: LightRequest, response: Response): Promise<Response> | Response {
    return collapseAnswer(req.method, response, 20);
  }

  /**
   * A POST on a session whose headers the SDK's transport takes as they are: a plain tools/call
   * is answered by the lane (lane.ts); anything else goes to the transport with the body read
   * here. A cancellation of a lane's call aborts it.
   */
  async function viaLane(session: DownstreamSession, sessionId: string, req: LightRequest): Promise<Answer> {
    const read = await jsonBody(req, 'Parse error: Invalid JSON'); // the SDK transport's own answer
    if (!read.ok) return read.refusal;
    const { body } = read;
    const call = plainCall(body);
    if (call) {
      const reply = laneReply(sessionId);
      const taken = session.agent.plain(call, reply, req.signal).then(
        (took) => (took ? reply.response : undefined),
        (error: unknown) => {
          options.onError?.(error);
          // The call's answer, begun or not, ends with the error.
          reply.end({ jsonrpc: '2.0', id: call.id, error: { code: -32603, message: 'internal error' } });
          return reply.response;
        },
      );
      // The answer starts with the call's response, a log message before it, or its stream.
      const answered = await Promise.race([reply.response, taken]);
      if (answered) return answered;
    } else {
      for (const { requestId, reason } of cancellations(body)) session.agent.cancel(requestId, reason);
    }
    return answer(req, await session.transport.handleRequest(asRequest(req), { parsedBody: body }));
  }

  async function mcp(req: LightRequest, url: URL, prefix: string, pathAgentId: string | undefined): Promise<Answer> {
    const principal = await authenticate(req, url, prefix, pathAgentId);
    const sessionId = req.headers.get('mcp-session-id');
    if (sessionId) {
      const session = sessions.get(sessionId);
      // Another agent's session id is answered as an unknown one.
      if (!session || session.agentId !== principal.agent_id) return jsonRpcError(404, -32001, 'session not found');
      session.lastSeen = Date.now();
      if (req.method === 'POST' && plainHeaders(req.headers)) return viaLane(session, sessionId, req);
      return answer(req, await session.transport.handleRequest(asRequest(req)));
    }
    if (req.method !== 'POST') return jsonRpcError(400, -32000, 'no session: send initialize first');
    const read = await jsonBody(req, 'parse error: the body is not JSON');
    if (!read.ok) return read.refusal;
    const { body } = read;
    const messages = (Array.isArray(body) ? body : [body]) as JSONRPCMessage[];
    if (!messages.some((m) => isInitializeRequest(m))) return jsonRpcError(400, -32000, 'no session: send initialize first');
    return openSession(principal.agent_id, req, body);
  }

  function resourceMetadata(url: URL, prefix: string, resourcePath: string | undefined): Response {
    const agent = resourcePath ? new RegExp(`^/agents/(${UUID})/mcp$`).exec(resourcePath)?.[1] : undefined;
    return Response.json(
      {
        resource: `${base(url, prefix)}${agent ? `/agents/${agent}/mcp` : '/mcp'}`,
        authorization_servers: options.authorizationServers ?? [],
        bearer_methods_supported: ['header'],
        resource_name: 'MCP control plane gateway',
      },
      { headers: { 'access-control-allow-origin': '*', 'cache-control': 'max-age=300' } },
    );
  }

  async function serve(req: LightRequest): Promise<Answer> {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, '');
    try {
      checkHostAndOrigin(req, url);
      const metadata = METADATA_PATH.exec(path);
      if (metadata && req.method === 'GET') return resourceMetadata(url, metadata[1] ?? '', metadata[2]);
      const route = MCP_PATH.exec(path);
      if (route) return await mcp(req, url, route[1] ?? '', route[2]);
      return jsonRpcError(404, -32601, `no MCP endpoint at ${path}: use /agents/<agent id>/mcp`);
    } catch (error) {
      if (error instanceof Refusal) return error.response;
      options.onError?.(error);
      return jsonRpcError(500, -32603, 'internal error');
    }
  }

  return {
    handle: (req) => serve(req).then(asResponse),
    serve,
    sessionCount: () => sessions.size,
    flushLog: () => log.flush(),
    async close() {
      clearInterval(sweep);
      await Promise.allSettled([...sessions.values()].map((s) => s.transport.close()));
      sessions.clear();
      await pool.close();
      await log.close();
    },
  };
}
