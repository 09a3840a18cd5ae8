/**
 * What every Edge Function handler shares: a fetch handler `(req: Request) => Promise<Response>`
 * that routes by method and path (any prefix: Supabase serves a function under
 * /functions/v1/<name>), takes the caller's bearer token (401 without one), builds the
 * transport that acts as that caller, checks bodies and queries with zod (400 for a body that
 * is not JSON, 422 with the issues), and answers errors by SQLSTATE (errors.ts). CORS on demand.
 */
import { z } from 'zod';
import { McpControlPlaneError, SdkErrorCode, UnauthorizedError } from '../errors.ts';
import { describeIssues } from '../rpc.ts';
import type { RpcTransport } from '../transport.ts';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.message));
  }
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
}

export function bearer(req: Request): string {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get('authorization') ?? '');
  if (!match?.[1]) {
    throw new UnauthorizedError({ code: SdkErrorCode.unauthorized, message: 'missing bearer token', hint: 'send Authorization: Bearer <access token>' });
  }
  return match[1];
}

export async function readBody<S extends z.ZodType>(req: Request, schema: S): Promise<z.output<S>> {
  let raw: unknown;
  try {
    raw = await req.json();
  } catch {
    throw new HttpError(400, { code: '22P02', message: 'the body is not JSON' });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new HttpError(422, {
      code: '22023',
      message: `invalid request body: ${describeIssues(parsed.error)}`,
      issues: parsed.error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message, code: issue.code })),
    });
  }
  return parsed.data;
}

export function readQuery<S extends z.ZodType>(url: URL, schema: S): z.output<S> {
  const parsed = schema.safeParse(Object.fromEntries(url.searchParams));
  if (!parsed.success) {
    throw new HttpError(422, { code: '22023', message: `invalid query: ${describeIssues(parsed.error)}` });
  }
  return parsed.data;
}

/** What a route gets: the request, its URL, the path's captures, the caller's token and transport. */
export interface RouteContext {
  req: Request;
  url: URL;
  params: string[];
  jwt: string;
  transport: RpcTransport;
}

/** A JSON answer `{data[, meta]}`, or a Response of its own (a stream). */
export type RouteResult = { status: number; data: unknown; meta?: unknown } | Response;

export interface Route {
  method: string;
  pattern: RegExp;
  run: (context: RouteContext) => Promise<RouteResult>;
}

export interface HandlerOptions {
  /**
   * The transport that acts as the bearer of this JWT: supabaseTransport over a client created
   * with the anon key and `Authorization: Bearer <jwt>`, or directTransport({ pool, jwt, jwtSecret }).
   * Either verifies the token; an invalid one fails with 401.
   */
  transportFor: (jwt: string) => RpcTransport | Promise<RpcTransport>;
  /** Adds CORS headers (and answers preflights) for this origin, e.g. '*'. */
  corsOrigin?: string;
}

export function createRouter(name: string, routes: Route[], options: HandlerOptions): (req: Request) => Promise<Response> {
  const cors: Record<string, string> = options.corsOrigin
    ? {
        'access-control-allow-origin': options.corsOrigin,
        'access-control-allow-headers': 'authorization, apikey, content-type, x-client-info',
        'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
      }
    : {};

  return async (req) => {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, '');
    if (req.method === 'OPTIONS' && options.corsOrigin) return new Response(null, { status: 204, headers: cors });
    const candidates = routes.filter((route) => route.pattern.test(path));
    const route = candidates.find((candidate) => candidate.method === req.method);
    if (!route) {
      return candidates.length > 0
        ? json(405, { error: { code: '405', message: `method ${req.method} not allowed on ${path}` } }, { ...cors, allow: candidates.map((c) => c.method).join(', ') })
        : json(404, { error: { code: '404', message: `no route for ${req.method} ${path}` } }, cors);
    }
    try {
      const jwt = bearer(req);
      const transport = await options.transportFor(jwt);
      const result = await route.run({ req, url, params: (route.pattern.exec(path) ?? []).slice(1), jwt, transport });
      if (result instanceof Response) {
        for (const [header, value] of Object.entries(cors)) result.headers.set(header, value);
        return result;
      }
      return json(result.status, result.meta === undefined ? { data: result.data } : { data: result.data, meta: result.meta }, cors);
    } catch (error) {
      return errorResponse(name, error, cors);
    }
  };
}

export function errorResponse(name: string, error: unknown, headers: Record<string, string> = {}): Response {
  if (error instanceof HttpError) return json(error.status, { error: error.body }, headers);
  if (error instanceof McpControlPlaneError) return json(error.status, { error: error.toJSON() }, headers);
  console.error(`${name}: unexpected error`, error);
  return json(500, { error: { code: 'XX000', message: 'internal error' } }, headers);
}
