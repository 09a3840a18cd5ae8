/**
 * A fetch over Node's http and https modules with keep-alive agents, for the gateway's Node
 * entry to reach the upstream MCP endpoints: the SDK's client transport sends small JSON bodies
 * and reads SSE or JSON answers, and this path costs less CPU per request than the global fetch
 * (undici's). A redirect is handed back as it came (the SDK's transport follows same-origin
 * ones itself, as with `redirect: 'manual'`), never followed here. An SSE answer to a POST that
 * holds only the response becomes the JSON answer (client/src/sse-fetch.ts). Node-only; not exported by
 * index.ts. Under Deno the platform's fetch is used.
 */
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { ChunkQueue } from './chunk-queue.ts';
import { headersOf } from './node-serve.ts';
import { collapseSse, collapsible, methodOf } from './sse-fetch.ts';

type Send = (url: URL, options: http.RequestOptions, onAnswer: (incoming: http.IncomingMessage) => void) => http.ClientRequest | undefined;

/** Requests over keep-alive agents, one per protocol; undefined for a protocol other than http and https. */
function keepAliveRequests(maxSockets = 256): Send {
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets });
  const httpsAgent = new https.Agent({ keepAlive: true, maxSockets });
  return (url, options, onAnswer) => {
    if (url.protocol === 'http:') return http.request(url, { ...options, agent: httpAgent }, onAnswer);
    if (url.protocol === 'https:') return https.request(url, { ...options, agent: httpsAgent }, onAnswer);
    return undefined;
  };
}

/** A body's chunks as they arrive, read from the stream's events; `return` destroys the stream. */
function chunksOfIncoming(incoming: http.IncomingMessage): AsyncIterator<Uint8Array> {
  const chunks = new ChunkQueue(() => incoming.destroy());
  incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
  incoming.once('end', () => chunks.end());
  incoming.once('error', (error) => chunks.fail(error));
  // Closed before its end (the connection broke): the body is incomplete.
  incoming.once('close', () => {
    if (!incoming.complete) chunks.fail(new Error('the answer was cut off before its end'));
  });
  return chunks;
}

export function nodeFetch(options: { maxSockets?: number } = {}): typeof fetch {
  const send = keepAliveRequests(options.maxSockets);
  return (input, init) => {
    const request = input instanceof Request ? input : undefined;
    const url = new URL(request ? request.url : String(input));
    const method = methodOf(input, init);
    const headers: Record<string, string> = {};
    new Headers(init?.headers ?? request?.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const body = init?.body;
    if (body !== undefined && body !== null && typeof body !== 'string') return Promise.reject(new TypeError('fetch: only string bodies are sent here'));
    return new Promise<Response>((resolve, reject) => {
      const signal = init?.signal ?? undefined;
      // The SDK's transport gives every request of a session the same signal: one listener per
      // request in flight (each removed when its request ends), so no count is a leak here.
      if (signal) setMaxListeners(0, signal);
      const outgoing = send(url, { method, headers, ...(signal ? { signal } : {}) }, (incoming) => {
        const status = incoming.statusCode ?? 502;
        const empty = method === 'HEAD' || status === 204 || status === 304;
        if (empty) incoming.resume();
        // An SSE answer holding only the response is read straight from the socket (sse-fetch.ts).
        if (collapsible(method, status, incoming.headers['content-type'] ?? null)) {
          resolve(collapseSse(chunksOfIncoming(incoming), { status, statusText: incoming.statusMessage ?? '', headers: headersOf(incoming.headers) }));
          return;
        }
        resolve(new Response(empty ? null : (Readable.toWeb(incoming) as ReadableStream<Uint8Array>), { status, statusText: incoming.statusMessage ?? '', headers: headersOf(incoming.headers) }));
      });
      if (!outgoing) return reject(new TypeError(`fetch: unsupported protocol ${url.protocol}`));
      outgoing.on('error', reject);
      outgoing.end(body ?? undefined);
    });
  };
}
