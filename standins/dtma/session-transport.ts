/**
 * The HTTP transport of one relay session: the SDK's web-standard Streamable HTTP transport,
 * with a shorter way for the request that makes up nearly all of the traffic, a POST of one
 * JSON-RPC request on the session. That one is answered straight on the Node response, as the
 * SDK's transport would answer it (an SSE stream with the same headers, every message related
 * to the request as an `event: message`, keep-alive comments, the stream ended with the
 * response), without building a web Request, a Response and their streams per call. Anything
 * else (initialize, GET, DELETE, batches, notifications, a header the SDK would refuse, a body
 * it would not parse) goes to the SDK's transport, which answers it as always.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_SSE_KEEP_ALIVE_MS } from '@modelcontextprotocol/sdk/server/sseKeepAlive.js';
import { WebStandardStreamableHTTPServerTransport, type WebStandardStreamableHTTPServerTransportOptions } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { isJsonContentType } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import { isJSONRPCRequest, SUPPORTED_PROTOCOL_VERSIONS, type JSONRPCMessage, type MessageExtraInfo, type RequestId } from '@modelcontextprotocol/sdk/types.js';

/** A request answered on its own stream: the response it is written to (null once the client went away), and its keep-alive. */
interface Stream {
  res: ServerResponse | null;
  keepAlive: NodeJS.Timeout | undefined;
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function isResponse(message: JSONRPCMessage): message is JSONRPCMessage & { id: RequestId } {
  return 'id' in message && ('result' in message || 'error' in message);
}

export class SessionTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;
  /** The SDK's transport: everything but the short way. */
  readonly sdk: WebStandardStreamableHTTPServerTransport;
  private readonly streams = new Map<RequestId, Stream>();
  private closed = false;

  constructor(options: WebStandardStreamableHTTPServerTransportOptions) {
    this.sdk = new WebStandardStreamableHTTPServerTransport(options);
    this.sdk.onmessage = (message, extra) => this.onmessage?.(message, extra);
    this.sdk.onerror = (error) => this.onerror?.(error);
    this.sdk.onclose = () => {
      this.closed = true;
      for (const id of [...this.streams.keys()]) this.end(id);
      this.onclose?.();
    };
  }

  get sessionId(): string | undefined {
    return this.sdk.sessionId;
  }

  start(): Promise<void> {
    return this.sdk.start();
  }

  close(): Promise<void> {
    return this.sdk.close();
  }

  /**
   * Serves `body` (parsed) on the short way when the SDK's transport would accept it as it is: a
   * POST of one request (not initialize) on this initialized session, with the headers it asks
   * for. Returns false, having done nothing, otherwise.
   */
  tryServe(req: IncomingMessage, res: ServerResponse, body: unknown): boolean {
    const sessionId = this.sdk.sessionId;
    if (this.closed || sessionId === undefined || req.method !== 'POST') return false;
    const accept = single(req.headers.accept);
    if (!accept?.includes('application/json') || !accept.includes('text/event-stream')) return false;
    if (!isJsonContentType(single(req.headers['content-type']) ?? null)) return false;
    if (single(req.headers['mcp-session-id']) !== sessionId) return false;
    const version = single(req.headers['mcp-protocol-version']);
    if (version !== undefined && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) return false;
    if (!isJSONRPCRequest(body) || body.method === 'initialize' || this.streams.has(body.id)) return false;

    const id = body.id;
    res.writeHead(200, { ...SSE_HEADERS, 'mcp-session-id': sessionId });
    res.flushHeaders();
    const keepAlive = setInterval(() => res.write(': keepalive\n\n'), DEFAULT_SSE_KEEP_ALIVE_MS);
    keepAlive.unref();
    const stream: Stream = { res, keepAlive };
    this.streams.set(id, stream);
    // A client that goes away loses what was still to come; the request runs on, as with the SDK's transport.
    res.once('close', () => {
      stream.res = null;
      clearInterval(stream.keepAlive);
      stream.keepAlive = undefined;
    });
    this.onmessage?.(body, { requestInfo: { headers: req.headers } });
    return true;
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const id = isResponse(message) ? message.id : options?.relatedRequestId;
    const stream = id === undefined ? undefined : this.streams.get(id);
    if (id === undefined || !stream) return this.sdk.send(message, options);
    const event = `event: message\ndata: ${JSON.stringify(message)}\n\n`;
    if (isResponse(message)) this.end(id, event);
    else stream.res?.write(event);
  }

  /** Ends a request's stream, with its last event (the response) when there is one. */
  private end(id: RequestId, last?: string): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    this.streams.delete(id);
    clearInterval(stream.keepAlive);
    if (stream.res && !stream.res.writableEnded) stream.res.end(last);
  }
}
