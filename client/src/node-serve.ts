/**
 * Serves a fetch handler `(req: Request) => Promise<Response>` with Node's http module, for the
 * Node entries (the gateway, the manager) and tests; on Supabase the same handlers run under
 * Deno.serve. Streaming: a response body (an MCP SSE stream) is written as it is produced, and
 * a client that goes away aborts the request's signal. Node-only; not exported by index.ts.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import { isStreamed, type Answer, type PlainAnswer, type StreamedAnswer } from './light-http.ts';

export interface Served {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** A request body larger than this is refused with 413 before the handler sees it (default 4 MiB). */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Thrown by readBody when the body exceeds its limit. */
export class BodyTooLarge extends Error {}

/**
 * The whole body, read before the handler runs (MCP bodies are small JSON documents). Read from
 * the stream's events, which costs less per request than its async iterator; a body over the
 * limit destroys the request, as leaving the iterator early did.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData);
      req.destroy();
      reject(new BodyTooLarge());
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    req.once('error', reject);
    // Closed before its end (the client went away): what the iterator reported as premature close.
    req.once('close', () => {
      if (!req.complete) reject(new Error('the request was closed before its body ended'));
    });
  });
}

/** Node's header object as web Headers (repeated headers appended). */
export function headersOf(incoming: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.set(name, value);
  }
  return headers;
}

/** A Node request as a web Request, with the body already read (none for GET and HEAD). */
export function requestOf(req: IncomingMessage, base: string, body: Uint8Array<ArrayBuffer> | undefined, signal?: AbortSignal): Request {
  return new Request(new URL(req.url ?? '/', base), { method: req.method ?? 'GET', headers: headersOf(req.headers), ...(signal ? { signal } : {}), ...(body ? { body } : {}) });
}

/**
 * A request as a LightRequest (light-http.ts), for the Node servers (serveLight here, serveHttp1
 * in http1-serve.ts): headers read where the server keeps them, the body as read, the web
 * Request made only when asked. Its signal (made when first asked for) aborts when the client
 * leaves before the answer's end.
 */
const utf8 = new TextDecoder();

export class NodeRequest {
  private made: Request | undefined;
  private controller: AbortController | undefined;

  constructor(
    readonly method: string,
    /** The absolute URL (href). */
    readonly url: string,
    readonly headers: { get(name: string): string | null },
    /** Every header as web Headers, for request(). */
    private readonly allHeaders: () => Headers,
    private readonly body: Buffer | undefined,
  ) {}

  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  /** The client left before the answer's end (the signal, made now if it was not yet, stays aborted). */
  abort(): void {
    (this.controller ??= new AbortController()).abort();
  }

  /** The body decoded as a web Request's text() decodes it (UTF-8, a leading byte order mark dropped). */
  text(): Promise<string> {
    return Promise.resolve(this.body ? utf8.decode(this.body) : '');
  }

  request(): Request {
    this.made ??= new Request(this.url, { method: this.method, headers: this.allHeaders(), signal: this.signal, ...(this.body ? { body: new Uint8Array(this.body) } : {}) });
    return this.made;
  }
}

async function toRequest(req: IncomingMessage, base: string, limit: number): Promise<NodeRequest> {
  const method = req.method ?? 'GET';
  const hasBody = method !== 'GET' && method !== 'HEAD';
  const raw = req.headers;
  const headers = {
    get(name: string): string | null {
      const value = raw[name.toLowerCase()];
      return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
    },
  };
  return new NodeRequest(method, new URL(req.url ?? '/', base).href, headers, () => headersOf(raw), hasBody ? await readBody(req, limit) : undefined);
}

/**
 * Writes a Response. Each socket write costs a system call, which is dear on small virtual
 * machines: the socket is held (corked) until the end of the event-loop turn, so the headers and
 * whatever the body has ready by then (a whole JSON answer, or an SSE event and the stream's
 * end) leave in one write; a stream that waits (an SSE stream between events) is flushed at the
 * end of each turn, headers first, so nothing waits on the hold.
 */
/** Writes a PlainAnswer: headers and body in one write. */
export function sendPlain(res: ServerResponse, answer: PlainAnswer): void {
  res.writeHead(answer.status, answer.headers);
  res.end(answer.body);
}

/**
 * Writes a StreamedAnswer: the headers at once (with what the answer already holds, in one
 * write), then each chunk as it comes; the last chunk and the body's end leave together. A
 * client that went away is written nothing more.
 */
export function sendStreamed(res: ServerResponse, answer: StreamedAnswer): void {
  // writeHead only stores the headers (headersSent is true from then on): they leave with the first write, or flushHeaders.
  res.writeHead(answer.status, answer.headers);
  const gone = (): boolean => res.writableEnded || res.destroyed;
  let written = false;
  answer.open({
    write(chunk) {
      written = true;
      if (!gone()) res.write(chunk);
    },
    end(last) {
      written = true;
      if (!gone()) res.end(last);
    },
  });
  if (!written && !gone()) res.flushHeaders();
}

export async function sendResponse(res: ServerResponse, response: Response, signal: AbortSignal): Promise<void> {
  res.statusCode = response.status;
  response.headers.forEach((value, name) => res.setHeader(name, value));
  if (!response.body) {
    res.end();
    return;
  }
  let held = false;
  const hold = (): void => {
    if (held) return;
    held = true;
    res.cork();
    setImmediate(() => {
      held = false;
      if (!res.headersSent && !res.writableEnded) res.flushHeaders();
      res.uncork();
    });
  };
  hold();
  const reader = response.body.getReader();
  signal.addEventListener('abort', () => void reader.cancel().catch(() => undefined), { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      hold();
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
  /** The largest request body accepted (default MAX_BODY_BYTES); a larger one is answered 413. */
  maxBodyBytes?: number;
}

export function serveFetch(handler: (req: Request) => Promise<Response>, options: ServeOptions = {}): Promise<Served> {
  return serveLight((req) => handler(req.request()), options);
}

/** serveFetch for a handler that takes a LightRequest and may give a PlainAnswer or a StreamedAnswer (light-http.ts). */
export async function serveLight(handler: (req: NodeRequest) => Promise<Answer>, options: ServeOptions = {}): Promise<Served> {
  const host = options.host ?? '127.0.0.1';
  const server = http.createServer((req, res) => {
    let request: NodeRequest | undefined;
    // Only a client that leaves before the answer's end aborts (an abort builds an error: none per finished request).
    res.on('close', () => {
      if (!res.writableFinished) request?.abort();
    });
    toRequest(req, `http://${req.headers.host ?? host}`, options.maxBodyBytes ?? MAX_BODY_BYTES)
      .then((made) => {
        request = made;
        if (res.destroyed && !res.writableFinished) made.abort();
        return handler(made);
      })
      .then((response) => {
        if (response instanceof Response) return sendResponse(res, response, (request as NodeRequest).signal);
        if (isStreamed(response)) return sendStreamed(res, response);
        return sendPlain(res, response);
      })
      .catch((error: unknown) => {
        if (error instanceof BodyTooLarge) {
          res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
          res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32600, message: `the request body is larger than ${options.maxBodyBytes ?? MAX_BODY_BYTES} bytes` }, id: null }));
          return;
        }
        console.error('serve: request failed', error);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(options.errorBody ?? { jsonrpc: '2.0', error: { code: -32603, message: 'internal error' }, id: null }));
      });
  });
  return listening(server, host, options.port ?? 0, () => server.closeAllConnections());
}

/** Starts `server` listening; its close ends the open connections (`closeConnections`) first. */
export async function listening(server: net.Server, host: string, port: number, closeConnections: () => void): Promise<Served> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        closeConnections();
        server.close(() => resolve());
      }),
  };
}
