/**
 * The DTMA HTTP server: the contract of DESIGN.md section 7 over Node's http
 * module. It authenticates, validates, maps driver outcomes to status codes
 * and serves each instance's MCP endpoint; the driver does the rest.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { z } from 'zod';
import {
  DeployGroupRequestSchema,
  RefreshCredentialsRequestSchema,
  RemoveGroupQuerySchema,
  describeZodError,
  type DeployGroupRequest,
  type DeployGroupResponse,
  type ErrorResponse,
  type GroupHealthResponse,
  type LivenessResponse,
  type RefreshCredentialsResponse,
  type RemoveGroupResponse,
  type RestartServerResponse,
  type ServerSpec,
  type StatusResponse,
} from './contract.js';
import { DriverError, errorMessage, type Driver } from './driver.js';

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

const DEFAULT_GRACEFUL_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONCURRENT_DEPLOYMENTS = 3;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, error: string, headers?: Record<string, string>): void {
  const body: ErrorResponse = { success: false, error };
  sendJson(res, status, body, headers);
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

async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size > maxBytes) throw new HttpError(413, `body larger than ${maxBytes} bytes`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads and validates a JSON body; an empty body counts as `emptyAs`. */
async function readJson<S extends z.ZodType>(req: IncomingMessage, schema: S, maxBytes: number, emptyAs?: unknown): Promise<z.infer<S>> {
  const text = await readBody(req, maxBytes);
  let raw: unknown;
  if (text.trim() === '' && emptyAs !== undefined) {
    raw = emptyAs;
  } else {
    try {
      raw = JSON.parse(text);
    } catch (error) {
      throw new HttpError(400, `body: invalid JSON (${errorMessage(error)})`);
    }
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new HttpError(400, describeZodError(parsed.error));
  return parsed.data;
}

function decodeParam(value: string | undefined): string {
  try {
    return decodeURIComponent(value ?? '');
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in path');
  }
}

function ordered(servers: ServerSpec[], dependencyOrder: string[] | undefined): ServerSpec[] {
  if (!dependencyOrder?.length) return servers;
  const rank = (spec: ServerSpec): number => {
    const index = dependencyOrder.indexOf(spec.instanceNameOnToolbox);
    return index === -1 ? dependencyOrder.length : index;
  };
  return [...servers].sort((a, b) => rank(a) - rank(b));
}

async function runPool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Deploys each server of a request and gathers per-server outcomes; never throws. */
async function deployGroup(driver: Driver, request: DeployGroupRequest): Promise<DeployGroupResponse> {
  const { groupId, servers, options } = request;
  // A dependency order means "one after the other"; without one, a bounded
  // number of servers start together.
  const limit = options.dependencyOrder?.length ? 1 : (options.maxConcurrentDeployments ?? DEFAULT_MAX_CONCURRENT_DEPLOYMENTS);
  const outcomes = new Map<string, string | null>();
  await runPool(ordered(servers, options.dependencyOrder), limit, async (spec) => {
    try {
      await driver.deployServer(groupId, spec, options);
      outcomes.set(spec.instanceNameOnToolbox, null);
    } catch (error) {
      outcomes.set(spec.instanceNameOnToolbox, errorMessage(error));
    }
  });
  const deployedServers = servers.map((spec) => spec.instanceNameOnToolbox).filter((name) => outcomes.get(name) === null);
  const errors: Record<string, string> = {};
  for (const [name, message] of outcomes) if (message !== null) errors[name] = message;
  const success = deployedServers.length > 0;
  return {
    success,
    message: `MCP group '${groupId}' deployment ${success ? 'completed' : 'failed'}: ${deployedServers.length}/${servers.length} servers deployed`,
    data: { groupId, deployedServers, errors, totalServers: servers.length, successfulDeployments: deployedServers.length },
  };
}

function formatHostForUrl(host: string): string {
  // A wildcard address is not something a client can connect to.
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/** A route parses its body first, so that the fault hooks see it, then runs with it typed. */
interface Prepared {
  body: unknown;
  run: () => Promise<void>;
}

interface Route {
  method: string;
  pattern: RegExp;
  prepare: (params: string[], req: IncomingMessage, res: ServerResponse, url: URL) => Promise<Prepared>;
}

function withoutBody(run: (params: string[], res: ServerResponse, url: URL) => Promise<void>): Route['prepare'] {
  return async (params, _req, res, url) => ({ body: undefined, run: () => run(params, res, url) });
}

export function createDtmaServer(options: DtmaServerOptions): DtmaServer {
  if (!options.token) throw new Error('createDtmaServer: token must be a non-empty string');
  const { driver } = options;
  const host = options.host ?? '127.0.0.1';
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const log = options.log ?? (() => undefined);
  const hooks = driver.http;
  // Comparing digests keeps the comparison constant-time whatever the lengths.
  const tokenDigest = createHash('sha256').update(options.token).digest();
  let baseUrl: string | null = null;
  let ready: Promise<void> = new Promise(() => undefined);
  let closing: Promise<void> | undefined;

  function authorize(req: IncomingMessage, res: ServerResponse): boolean {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match?.[1]) {
      sendError(res, 401, 'missing bearer token', { 'www-authenticate': 'Bearer realm="dtma"' });
      return false;
    }
    const given = createHash('sha256').update(match[1]).digest();
    if (!timingSafeEqual(given, tokenDigest)) {
      sendError(res, 401, 'invalid bearer token', { 'www-authenticate': 'Bearer realm="dtma", error="invalid_token"' });
      return false;
    }
    return true;
  }

  const routes: Route[] = [
    {
      method: 'POST',
      pattern: /^\/mcp\/groups$/,
      prepare: async (_params, req, res) => {
        const request = await readJson(req, DeployGroupRequestSchema, maxBodyBytes);
        return { body: request, run: async () => sendJson(res, 201, await deployGroup(driver, request)) };
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/mcp\/groups\/([^/]+)$/,
      prepare: withoutBody(async ([rawGroupId], res, url) => {
        const groupId = decodeParam(rawGroupId);
        const query = RemoveGroupQuerySchema.safeParse(Object.fromEntries(url.searchParams));
        if (!query.success) throw new HttpError(400, describeZodError(query.error));
        const result = await driver.removeGroup(groupId, {
          forceRemove: query.data.forceRemove,
          gracefulTimeoutMs: query.data.gracefulTimeoutMs ?? DEFAULT_GRACEFUL_TIMEOUT_MS,
        });
        const success = Object.keys(result.errors).length === 0;
        const body: RemoveGroupResponse = {
          success,
          message: `MCP group '${groupId}' removal ${success ? 'completed' : 'failed'}`,
          data: { groupId, removedServers: result.removedServers, errors: result.errors },
        };
        sendJson(res, 200, body);
      }),
    },
    {
      method: 'GET',
      pattern: /^\/mcp\/status$/,
      prepare: withoutBody(async (_params, res) => {
        const groups = driver.status();
        const all = Object.values(groups);
        const body: StatusResponse = {
          success: true,
          data: {
            summary: {
              totalGroups: all.length,
              totalServers: all.reduce((sum, group) => sum + group.totalInstances, 0),
              runningServers: all.reduce((sum, group) => sum + group.runningInstances, 0),
              healthyServers: all.reduce((sum, group) => sum + group.healthyInstances, 0),
              timestamp: new Date().toISOString(),
            },
            groups,
          },
        };
        sendJson(res, 200, body);
      }),
    },
    {
      method: 'GET',
      pattern: /^\/mcp\/health\/([^/]+)$/,
      prepare: withoutBody(async ([rawGroupId], res) => {
        const groupId = decodeParam(rawGroupId);
        const health = driver.status()[groupId];
        if (!health) throw new HttpError(404, `MCP group '${groupId}' not found`);
        const body: GroupHealthResponse = { success: true, data: { groupId, health, timestamp: new Date().toISOString() } };
        sendJson(res, 200, body);
      }),
    },
    {
      method: 'POST',
      pattern: /^\/mcp\/servers\/([^/]+)\/restart$/,
      prepare: withoutBody(async ([rawName], res) => {
        const instanceName = decodeParam(rawName);
        const status = await driver.restartServer(instanceName);
        const body: RestartServerResponse = {
          success: true,
          message: `MCP server '${instanceName}' restarted`,
          data: { instanceName, status: status.status, containerId: status.containerId, restartCount: status.restartCount },
        };
        sendJson(res, 200, body);
      }),
    },
    {
      method: 'POST',
      pattern: /^\/mcp\/credentials\/refresh\/([^/]+)$/,
      prepare: async ([rawName], req, res) => {
        const instanceName = decodeParam(rawName);
        const request = await readJson(req, RefreshCredentialsRequestSchema, maxBodyBytes, {});
        const run = async (): Promise<void> => {
          const result = await driver.refreshCredentials(instanceName, request);
          const body: RefreshCredentialsResponse = {
            success: true,
            message: `credentials of MCP server '${instanceName}' ${result.restarted ? 'refreshed' : 'stored'}`,
            data: {
              instanceName,
              status: result.restarted ? 'refreshed' : 'stored',
              restarted: result.restarted,
              timestamp: new Date().toISOString(),
            },
          };
          sendJson(res, 200, body);
        };
        return { body: request, run };
      },
    },
  ];

  async function handleMcpRoute(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    const pathname = url.pathname;

    const endpoint = /^\/mcp\/servers\/([^/]+)\/mcp$/.exec(pathname);
    if (endpoint) {
      if (options.mcpEndpointAuth !== 'none' && !authorize(req, res)) return;
      if (hooks && (await hooks.intercept({ method, pathname, body: undefined, req, res })) === 'handled') return;
      await driver.handleMcpRequest(decodeParam(endpoint[1]), req, res);
      return;
    }

    if (!authorize(req, res)) return;
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
      const body: LivenessResponse = { status: 'ok', timestamp: new Date().toISOString() };
      sendJson(res, 200, body);
      return;
    }

    if (url.pathname.startsWith('/__')) {
      if (!hooks) throw new HttpError(404, `no route for ${method} ${url.pathname}`);
      if (!authorize(req, res)) return;
      const text = method === 'POST' ? await readBody(req, maxBodyBytes) : '';
      let body: unknown;
      try {
        body = text.trim() === '' ? undefined : JSON.parse(text);
      } catch (error) {
        throw new HttpError(400, `body: invalid JSON (${errorMessage(error)})`);
      }
      if (!(await hooks.handleAdmin(method, url.pathname, body, res))) {
        throw new HttpError(404, `no route for ${method} ${url.pathname}`);
      }
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
