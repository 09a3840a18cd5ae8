/**
 * A driver for tests: it wraps a real driver (the process driver in main.ts)
 * and breaks the HTTP exchange on request, the way a toolbox breaks in
 * production: slow answers, 5xx, answers that never come, sockets that die,
 * and the DTMA's own habit of answering 201 while every server failed.
 *
 * Faults are set at run time through `POST /__faults` and cleared with
 * `DELETE /__faults`; `GET /__requests` lists what arrived, so that a test can
 * prove that a retry did not send something twice.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import {
  DeployGroupRequestSchema,
  FaultConfigSchema,
  describeZodError,
  type DeployGroupResponse,
  type ErrorResponse,
  type FaultConfig,
  type FaultStateResponse,
  type RequestLogEntry,
  type RequestLogResponse,
} from './contract.js';
import type { Driver, HttpHooks, InterceptedRequest } from './driver.js';
import { sendJson } from './http-util.js';

export interface FaultDriverOptions {
  /** Entries kept in the request log (oldest dropped first); default 1000. */
  maxLoggedRequests?: number;
}

/** A fault driver plus direct access to its state, for in-process tests. */
export interface FaultDriver extends Driver {
  readonly http: HttpHooks;
  setFault(fault: FaultConfig | null): void;
  requests(): RequestLogEntry[];
}

/** `/mcp/groups` matches itself and anything below it; `POST /mcp/groups` also needs the method. */
function routeMatches(pattern: string, method: string, pathname: string): boolean {
  const space = pattern.indexOf(' ');
  const wantedMethod = space === -1 ? null : pattern.slice(0, space);
  const prefix = (space === -1 ? pattern : pattern.slice(space + 1)).replace(/\/+$/, '');
  if (wantedMethod !== null && wantedMethod !== method) return false;
  return pathname === prefix || pathname.startsWith(`${prefix}/`) || prefix === '';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function createFaultDriver(inner: Driver, options: FaultDriverOptions = {}): FaultDriver {
  const maxLogged = options.maxLoggedRequests ?? 1000;
  let fault: FaultConfig | null = null;
  let remaining: number | null = null;
  let seq = 0;
  const log: RequestLogEntry[] = [];
  const entries = new WeakMap<IncomingMessage, RequestLogEntry>();
  const held = new Set<Socket>();

  function setFault(next: FaultConfig | null): void {
    fault = next;
    remaining = next?.count ?? null;
  }

  /** The fault that applies to this request, consuming one use of `count`. */
  function take(method: string, pathname: string): FaultConfig | null {
    if (!fault) return null;
    const applies = fault.routes
      ? fault.routes.some((pattern) => routeMatches(pattern, method, pathname))
      : pathname === '/mcp' || pathname.startsWith('/mcp/');
    if (!applies) return null;
    const current = fault;
    if (remaining !== null) {
      remaining -= 1;
      if (remaining <= 0) setFault(null);
    }
    return current;
  }

  function mark(req: IncomingMessage, name: string): void {
    const entry = entries.get(req);
    if (entry) entry.fault = name;
  }

  const http: HttpHooks = {
    onRequest(req: IncomingMessage, res: ServerResponse): void {
      const header = req.headers['idempotency-key'];
      const entry: RequestLogEntry = {
        seq: ++seq,
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        time: new Date().toISOString(),
        idempotencyKey: (Array.isArray(header) ? header[0] : header) ?? null,
        status: null,
        fault: null,
      };
      log.push(entry);
      if (log.length > maxLogged) log.splice(0, log.length - maxLogged);
      entries.set(req, entry);
      res.once('finish', () => {
        entry.status = res.statusCode;
      });
    },

    async intercept({ method, pathname, body, req, res }: InterceptedRequest): Promise<'continue' | 'handled'> {
      const current = take(method, pathname);
      if (!current) return 'continue';
      if (current.latencyMs) {
        mark(req, `latency ${current.latencyMs}ms`);
        await sleep(current.latencyMs);
      }
      if (current.drop) {
        mark(req, 'drop');
        req.socket.destroy();
        return 'handled';
      }
      if (current.hang) {
        // Held until the client gives up or the server closes.
        mark(req, 'hang');
        held.add(req.socket);
        req.socket.once('close', () => held.delete(req.socket));
        return 'handled';
      }
      if (current.status !== undefined) {
        mark(req, `status ${current.status}`);
        const error: ErrorResponse = { success: false, error: `injected fault: HTTP ${current.status}` };
        sendJson(res, current.status, error);
        return 'handled';
      }
      if (current.errors201 && method === 'POST' && pathname === '/mcp/groups') {
        const request = DeployGroupRequestSchema.safeParse(body);
        if (request.success) {
          mark(req, 'errors201');
          const names = request.data.servers.map((server) => server.instanceNameOnToolbox);
          const answer: DeployGroupResponse = {
            success: false,
            message: `MCP group '${request.data.groupId}' deployment failed: 0/${names.length} servers deployed`,
            data: {
              groupId: request.data.groupId,
              deployedServers: [],
              errors: Object.fromEntries(names.map((name) => [name, 'injected fault: deployment failed'])),
              totalServers: names.length,
              successfulDeployments: 0,
            },
          };
          sendJson(res, 201, answer);
          return 'handled';
        }
      }
      return 'continue';
    },

    async handleAdmin(method: string, pathname: string, body: unknown, res: ServerResponse): Promise<boolean> {
      if (pathname === '/__faults') {
        if (method === 'POST') {
          const parsed = FaultConfigSchema.safeParse(body ?? {});
          if (!parsed.success) {
            sendJson(res, 400, { success: false, error: describeZodError(parsed.error) } satisfies ErrorResponse);
            return true;
          }
          setFault(parsed.data);
        } else if (method === 'DELETE') {
          setFault(null);
        } else if (method !== 'GET') {
          sendJson(res, 405, { success: false, error: `method ${method} not allowed on ${pathname}` } satisfies ErrorResponse);
          return true;
        }
        const state: FaultStateResponse = { success: true, data: { fault, remaining } };
        sendJson(res, 200, state);
        return true;
      }
      if (pathname === '/__requests') {
        if (method === 'DELETE') log.length = 0;
        else if (method !== 'GET') {
          sendJson(res, 405, { success: false, error: `method ${method} not allowed on ${pathname}` } satisfies ErrorResponse);
          return true;
        }
        const answer: RequestLogResponse = { success: true, data: { requests: log.map((entry) => ({ ...entry })) } };
        sendJson(res, 200, answer);
        return true;
      }
      return false;
    },

    close(): void {
      for (const socket of held) socket.destroy();
      held.clear();
    },
  };

  return {
    name: 'fault',
    http,
    setFault,
    requests: () => log.map((entry) => ({ ...entry })),
    start: (context) => inner.start(context),
    deployServer: (groupId, spec, groupOptions) => inner.deployServer(groupId, spec, groupOptions),
    removeGroup: (groupId, removeOptions) => inner.removeGroup(groupId, removeOptions),
    restartServer: (instanceName) => inner.restartServer(instanceName),
    refreshCredentials: (instanceName, request) => inner.refreshCredentials(instanceName, request),
    status: () => inner.status(),
    handleMcpRequest: (instanceName, req, res) => inner.handleMcpRequest(instanceName, req, res),
    close: () => inner.close(),
  };
}
