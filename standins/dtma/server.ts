/**
 * The DTMA HTTP server: the DTMA contract (contract.ts, routes.ts) over Node's
 * http module. It checks who is asking (request-guard.ts), dispatches to the
 * contract's routes, serves each instance's MCP endpoint through the driver,
 * and maps errors to status codes; the driver does the rest.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LivenessResponse } from './contract.js';
import { DriverError, errorMessage, type Driver } from './driver.js';
import { HttpError, decodeParam, parseJsonBody, readBody, sendError, sendJson } from './http-util.js';
import { replyJsonRpcError } from './mcp-relay.js';
import { allowedHostsFor, createRequestGuard, type GuardRefusal, type RequestGuard } from './request-guard.js';
import { contractRoutes } from './routes.js';

export interface DtmaServerOptions {
  /** Bearer token every /mcp and admin route requires. */
  token: string;
  driver: Driver;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 30000; 0 picks a free port. */
  port?: number;
  /** Base URL announced in mcpEndpoint when the listening address is not what clients reach. */
  publicUrl?: string;
  /**
   * `bearer` (default): MCP endpoints need the DTMA token like every /mcp
   * route, so a tool call cannot bypass the control plane's grants.
   */
  mcpEndpointAuth?: 'bearer' | 'none';
  /** Host names (`host:port`) accepted besides this DTMA's own addresses and publicUrl's. */
  allowedHosts?: string[];
  /** Origins a browser page may call from (`http://localhost:6274`); none by default. */
  allowedOrigins?: string[];
  /** Echoed by GET /health, so that the process that started this one can recognise it. */
  instanceId?: string;
  /** One line per answered request. */
  log?: (line: string) => void;
  maxBodyBytes?: number;
}

export interface DtmaServer {
  /** Base URL once listening, e.g. `http://127.0.0.1:30000`. */
  readonly url: string;
  listen(): Promise<string>;
  close(): Promise<void>;
}

function statusOfDriverError(error: DriverError): number {
  switch (error.kind) {
    case 'not_found':
      return 404;
    case 'conflict':
      return 409;
    case 'invalid':
      return 400;
    case 'failed':
      return 500;
  }
}

function formatHostForUrl(host: string): string {
  // A wildcard address is not something a client can connect to.
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

const MCP_ENDPOINT = /^\/mcp\/servers\/([^/]+)\/mcp$/;

/** A refusal, as JSON-RPC on an MCP endpoint and as the contract's error elsewhere. */
function refuse(res: ServerResponse, refusal: GuardRefusal, mcpEndpoint: boolean): void {
  if (mcpEndpoint) {
    for (const [name, value] of Object.entries(refusal.headers ?? {})) res.setHeader(name, value);
    replyJsonRpcError(res, refusal.status, -32000, refusal.message);
  } else {
    sendError(res, refusal.status, refusal.message, refusal.headers);
  }
}

export function createDtmaServer(options: DtmaServerOptions): DtmaServer {
  const { driver } = options;
  const host = options.host ?? '127.0.0.1';
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const log = options.log ?? (() => undefined);
  const hooks = driver.http;
  const routes = contractRoutes(driver, maxBodyBytes);
  if (!options.token) throw new Error('createDtmaServer: token must be a non-empty string');
  // Replaced once listening, when the port is known.
  let guard: RequestGuard = createRequestGuard({ token: options.token, allowedHosts: new Set(), allowedOrigins: new Set() });
  let baseUrl: string | null = null;
  let ready: Promise<void> = new Promise(() => undefined);
  let closing: Promise<void> | undefined;

  /** Host, Origin and, unless `tokenOptional`, the token; answers the refusal itself. */
  function admitted(req: IncomingMessage, res: ServerResponse, mcpEndpoint: boolean, tokenOptional = false): boolean {
    const refusal = guard.checkOrigin(req) ?? (tokenOptional ? null : guard.checkToken(req));
    if (refusal) refuse(res, refusal, mcpEndpoint);
    return refusal === null;
  }

  async function handleMcpRoute(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    const pathname = url.pathname;
    const endpoint = MCP_ENDPOINT.exec(pathname);
    if (endpoint) {
      if (!admitted(req, res, true, options.mcpEndpointAuth === 'none')) return;
      if (hooks && (await hooks.intercept({ method, pathname, body: undefined, req, res })) === 'handled') return;
      await driver.handleMcpRequest(decodeParam(endpoint[1]), req, res);
      return;
    }
    if (!admitted(req, res, false)) return;
    const candidates = routes.filter((route) => route.pattern.test(pathname));
    if (candidates.length === 0) throw new HttpError(404, `no route for ${method} ${pathname}`);
    const route = candidates.find((candidate) => candidate.method === method);
    if (!route) {
      sendError(res, 405, `method ${method} not allowed on ${pathname}`, { allow: candidates.map((c) => c.method).join(', ') });
      return;
    }
    const params = (route.pattern.exec(pathname) ?? []).slice(1);
    const prepared = await route.prepare(params, req, res, url);
    if (hooks && (await hooks.intercept({ method, pathname, body: prepared.body, req, res })) === 'handled') return;
    await prepared.run();
  }

  async function handleAdminRoute(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    if (!hooks) throw new HttpError(404, `no route for ${method} ${url.pathname}`);
    if (!admitted(req, res, false)) return;
    const text = method === 'POST' ? await readBody(req, maxBodyBytes) : '';
    const body = text.trim() === '' ? undefined : parseJsonBody(text);
    if (!(await hooks.handleAdmin(method, url.pathname, body, res))) {
      throw new HttpError(404, `no route for ${method} ${url.pathname}`);
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://dtma.invalid');
    // A toolbox URL is registered once; several toolboxes (the tests' organizations) may still share
    // this DTMA, each at its own base path /toolboxes/<name>. Their groups are named under each toolbox.
    url.pathname = url.pathname.replace(/^\/toolboxes\/[^/]+(?=\/)/, '');
    res.once('close', () => {
      const status = res.headersSent ? String(res.statusCode) : '-';
      log(`${method} ${url.pathname}${url.search} ${status} ${Date.now() - started}ms`);
    });

    if (method === 'GET' && url.pathname === '/health') {
      const body: LivenessResponse = {
        status: 'ok',
        timestamp: new Date().toISOString(),
        ...(options.instanceId ? { instanceId: options.instanceId } : {}),
      };
      sendJson(res, 200, body);
      return;
    }
    if (url.pathname.startsWith('/__')) {
      await handleAdminRoute(req, res, url);
      return;
    }
    hooks?.onRequest(req, res);
    if (url.pathname !== '/mcp' && !url.pathname.startsWith('/mcp/')) {
      throw new HttpError(404, `no route for ${method} ${url.pathname}`);
    }
    await ready;
    await handleMcpRoute(req, res, url);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // Too late for a status code (a stream had started): end it at least.
      if (res.headersSent) {
        log(`error on ${req.method} ${req.url} after the answer started: ${errorMessage(error)}`);
        if (!res.writableEnded) res.end();
      } else if (error instanceof HttpError) sendError(res, error.status, error.message);
      else if (error instanceof DriverError) sendError(res, statusOfDriverError(error), error.message);
      else {
        log(`error on ${req.method} ${req.url}: ${errorMessage(error)}`);
        sendError(res, 500, errorMessage(error));
      }
    });
  });

  return {
    get url(): string {
      if (!baseUrl) throw new Error('DTMA server is not listening yet');
      return baseUrl;
    },

    async listen(): Promise<string> {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port ?? 30000, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      guard = createRequestGuard({
        token: options.token,
        allowedHosts: allowedHostsFor(host, address.port, options.publicUrl, options.allowedHosts),
        allowedOrigins: new Set(options.allowedOrigins),
      });
      baseUrl = (options.publicUrl ?? `http://${formatHostForUrl(host)}:${address.port}`).replace(/\/+$/, '');
      ready = driver.start({ baseUrl });
      try {
        await ready;
      } catch (error) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await Promise.all([closed, driver.close()]);
        throw error;
      }
      return baseUrl;
    },

    close(): Promise<void> {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        hooks?.close();
        server.closeIdleConnections();
        await driver.close();
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}
