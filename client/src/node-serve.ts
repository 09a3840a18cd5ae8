/**
 * Serves a fetch handler `(req: Request) => Promise<Response>` with Node's http module, for the
 * Node entries (the gateway, the manager) and tests; on Supabase the same handlers run under
 * Deno.serve. Streaming: a response body (an MCP SSE stream) is written as it is produced, and
 * a client that goes away aborts the request's signal. Node-only; not exported by index.ts.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';

export interface Served {
  url: string;
  port: number;
  close(): Promise<void>;
}

function toRequest(req: IncomingMessage, base: string, signal: AbortSignal): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.set(name, value);
  }
  const method = req.method ?? 'GET';
  const hasBody = method !== 'GET' && method !== 'HEAD';
  return new Request(new URL(req.url ?? '/', base), {
    method,
    headers,
    signal,
    ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
  } as RequestInit);
}

async function send(res: ServerResponse, response: Response, signal: AbortSignal): Promise<void> {
  res.statusCode = response.status;
  response.headers.forEach((value, name) => res.setHeader(name, value));
  if (!response.body) {
    res.end();
    return;
  }
  res.flushHeaders();
  const reader = response.body.getReader();
  signal.addEventListener('abort', () => void reader.cancel().catch(() => undefined), { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      res.write(value);
    }
  } catch {
    // the client went away, or the stream failed: end what was sent
  }
  res.end();
}

export interface ServeOptions {
  port?: number;
  host?: string;
  /** The body of a 500 when the handler itself throws (default: a JSON-RPC error). */
  errorBody?: unknown;
}

export async function serveFetch(handler: (req: Request) => Promise<Response>, options: ServeOptions = {}): Promise<Served> {
  const host = options.host ?? '127.0.0.1';
  const server = http.createServer((req, res) => {
    const aborted = new AbortController();
    res.on('close', () => aborted.abort());
    Promise.resolve()
      .then(() => handler(toRequest(req, `http://${req.headers.host ?? host}`, aborted.signal)))
      .then((response) => send(res, response, aborted.signal))
      .catch((error: unknown) => {
        console.error('serve: request failed', error);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(options.errorBody ?? { jsonrpc: '2.0', error: { code: -32603, message: 'internal error' }, id: null }));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
