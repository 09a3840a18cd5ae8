/**
 * Serves a light handler (light-http.ts) over HTTP/1.1 on raw sockets, for the gateway's Node
 * entry (scripts/gateway/main.ts): the same contract as serveLight (node-serve.ts), without
 * node:http's request and response objects, which cost a call on the gateway's path more time
 * than the rest of the gateway's own work (README, Performance). Requests are read by the strict
 * parser of http1-request.ts: whatever it refuses is answered with its status (400, 413, 417,
 * 431, 501, 505; a JSON-RPC error body) and the connection closed, so no byte after a refused
 * request is read as a request. Longer than 400 lines because a connection's life is one state
 * machine (reading, answering in three forms, its deadlines), read best in one place.
 *
 * - One request at a time per connection: pipelined requests wait, held, until the answer before
 *   them has ended. The socket is never paused for them (a paused socket would not see its client
 *   leave): a client that sends more than a whole request's worth ahead is cut off.
 * - A request must come whole within `requestMs` of its first byte (else 408), however it
 *   trickles in; a kept-alive connection idle for `idleMs` is closed, and one whose client has
 *   read nothing more of an answer for `requestMs` (the next request waits for it) is cut off.
 * - `Expect: 100-continue` is answered 100 before the body is read; `Connection: close` closes
 *   after the answer. HTTP/1.1 only (another version: 505).
 * - The request's signal aborts when the client closes or half-closes the connection before the
 *   answer's end (as node:http does), never after it.
 * - Answers: a PlainAnswer in one write with its Content-Length; a StreamedAnswer or a Response
 *   chunked, each chunk as it comes (the head leaves with the first chunk written in the same
 *   turn, else at once). A handler's header with a CR, LF or other control character is never
 *   written: the answer becomes a 500.
 *
 * Node-only; not exported by index.ts.
 */
import { STATUS_CODES } from 'node:http';
import net from 'node:net';
import { headerLines } from './http1-framing.ts';
import { RequestFramingError, RequestParser, type RequestHead } from './http1-request.ts';
import { isStreamed, type Answer, type PlainAnswer, type StreamedAnswer } from './light-http.ts';
import { MAX_BODY_BYTES, NodeRequest, listening, type ServeOptions, type Served } from './node-serve.ts';

export interface Http1ServeOptions extends ServeOptions {
  /** The most bytes a request line and its headers (or a chunked body's trailers) may have (default 16 KiB): else 431. */
  maxHeaderBytes?: number;
  /** The most header lines a request may have (default 100): else 431. */
  maxHeaders?: number;
  /** A kept-alive connection with no request for this long is closed (default 5 s). */
  idleMs?: number;
  /** A request must have come whole (head and body) within this long of its first byte (default 30 s): else 408. */
  requestMs?: number;
}

/** Pipelined bytes held while an answer is written, beyond the largest request: past them the client is cut off. */
const HELD_BYTES = 64 * 1024;
/** Framing headers are the server's to write. */
const OWN_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date']);

let dateAt = 0;
let dateText = '';
/** The Date header's value, remade once a second. */
function date(): string {
  const now = Date.now();
  if (now - dateAt >= 1000) {
    dateAt = now - (now % 1000);
    dateText = new Date(dateAt).toUTCString();
  }
  return dateText;
}

/** An answer's head; throws TypeError for a header that could split the answer. */
function answerHead(status: number, headers: Record<string, string> | Headers, framing: string, keepAlive: string | undefined): string {
  // A final status only: a 1xx would be read as an interim answer, and the client would take the next answer for this one.
  if (!Number.isInteger(status) || status < 200 || status > 599) throw new TypeError(`an invalid answer status ${status}`);
  const lines = headerLines(headers instanceof Headers ? headers : Object.entries(headers), OWN_HEADERS, 'serveHttp1');
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\ndate: ${date()}\r\n${lines}${framing}${keepAlive ?? 'connection: close\r\n'}\r\n`;
}

const bodiless = (status: number): boolean => status === 204 || status === 304;
const chunk = (text: string): string => (text === '' ? '' : `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`);
const refusalBody = (message: string): string => JSON.stringify({ jsonrpc: '2.0', error: { code: -32600, message }, id: null });

interface Context {
  handler: (req: NodeRequest) => Promise<Answer>;
  limits: { maxHeaderBytes: number; maxHeaders: number; maxBodyBytes: number };
  errorBody: string;
  keepAlive: string;
  /** The most pipelined bytes held while an answer is written. */
  heldLimit: number;
  connections: Set<Connection>;
}

/** One client connection: its requests read, handled and answered one after the other. */
class Connection {
  private readonly parser: RequestParser;
  private head: RequestHead | undefined;
  /** The request's body so far: its first piece as given, then every piece copied into room that doubles. */
  private room: Buffer = Buffer.alloc(0);
  private size = 0;
  /** The request being handled or answered. */
  private current: NodeRequest | undefined;
  /** When the request being read began to come (0: none is). */
  since = 0;
  /** When the connection last became idle. */
  idleSince = performance.now();
  private closing = false;
  private ending = false;
  /** Bytes of the current request's answer have been written. */
  private written = false;
  /** Since when the last answer waits in memory for the client to read more of it (0: it does not). */
  private drainingSince = 0;
  /** Its bytes still waiting then. */
  private unreadBytes = 0;

  constructor(
    readonly socket: net.Socket,
    private readonly context: Context,
  ) {
    socket.setNoDelay(true);
    this.parser = new RequestParser(
      {
        head: (head) => this.started(head),
        body: (data) => this.take(data),
        done: () => this.received(),
      },
      context.limits,
    );
    socket.on('data', (data: Buffer) => this.data(data));
    // A client that half-closes has gone, as node:http takes it (no half-open connections): what
    // is written still leaves, then the connection ends.
    socket.on('end', () => {
      this.gone();
      this.close();
    });
    socket.on('close', () => {
      this.gone();
      this.context.connections.delete(this);
    });
    socket.on('error', () => undefined); // 'close' follows
    context.connections.add(this);
  }

  /** A request is being answered, or its answer has yet to leave. */
  private get busy(): boolean {
    return this.current !== undefined || this.drainingSince !== 0;
  }

  get idle(): boolean {
    return !this.busy && this.since === 0 && !this.closing;
  }

  private data(data: Buffer): void {
    if (this.closing) return;
    if (!this.busy && this.since === 0) this.since = performance.now();
    this.read(() => this.parser.feed(data));
    if (this.busy && this.parser.buffered > this.context.heldLimit) this.socket.destroy();
  }

  /** Runs a step of the parser; a refused request is answered and the connection closed. */
  private read(step: () => void): void {
    try {
      step();
    } catch (error) {
      if (!(error instanceof RequestFramingError)) throw error;
      this.refuse(error.status, error.message);
    }
  }

  private started(head: RequestHead): void {
    this.head = head;
    this.room = Buffer.alloc(0);
    this.size = 0;
    // The body is asked for only if it has not come with the head.
    if (head.expectContinue && (head.chunked || (head.length ?? 0) > this.parser.buffered)) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
  }

  /**
   * A piece of the body. Pieces are not kept as they come: a body of a million 1-byte chunks would
   * hold a Buffer view (~100 bytes of heap) per byte sent in 6, a few hundred MiB per connection.
   */
  private take(data: Buffer): void {
    const length = this.size + data.length;
    if (length > this.room.length) {
      const most = this.head?.length ?? this.context.limits.maxBodyBytes;
      const grown = this.size === 0 ? data : Buffer.allocUnsafe(Math.min(most, Math.max(2 * length, 4096)));
      if (this.size > 0) this.room.copy(grown, 0, 0, this.size);
      this.room = grown;
    }
    if (this.room !== data) data.copy(this.room, this.size);
    this.size = length;
  }

  /** A request has come whole: handled now (the parser holds what follows until its answer has ended). */
  private received(): void {
    const head = this.head as RequestHead;
    this.since = 0;
    const body = head.method === 'GET' || head.method === 'HEAD' ? undefined : this.room.subarray(0, this.size);
    this.room = Buffer.alloc(0);
    this.size = 0;
    const headers = head.headers;
    let url: string;
    try {
      url = new URL(`http://${head.host}${head.target}`).href;
    } catch {
      // A Host the URL parser refuses (a port over 65535, a malformed IPv6 address).
      throw new RequestFramingError(400, `an invalid Host: ${JSON.stringify(head.host)}`);
    }
    const request = new NodeRequest(head.method, url, { get: (name) => headers.get(name.toLowerCase()) ?? null }, () => new Headers([...headers]), body);
    this.current = request;
    let answered: Promise<Answer>;
    try {
      answered = this.context.handler(request);
    } catch (error) {
      answered = Promise.reject(error);
    }
    answered.then(
      (answer) => this.answer(head, request, answer),
      (error: unknown) => {
        console.error('serve: request failed', error);
        this.failed(head);
      },
    );
  }

  /** The handler failed, or its answer cannot be written: a 500 if nothing has been written, else the connection is cut. */
  private failed(head: RequestHead): void {
    if (this.current === undefined || this.written) this.socket.destroy();
    else this.plain(head, { status: 500, headers: { 'content-type': 'application/json' }, body: this.context.errorBody });
  }

  private keepAlive(head: RequestHead): string | undefined {
    return head.close ? undefined : this.context.keepAlive;
  }

  private answer(head: RequestHead, request: NodeRequest, answer: Answer): void {
    if (this.socket.destroyed || this.current !== request) return;
    try {
      if (answer instanceof Response) this.response(head, request, answer);
      else if (isStreamed(answer)) this.streamed(head, answer);
      else this.plain(head, answer);
    } catch (error) {
      console.error('serve: an answer that cannot be written:', error instanceof Error ? error.message : error);
      this.failed(head);
    }
  }

  private plain(head: RequestHead, answer: PlainAnswer): void {
    if (this.socket.destroyed) return;
    const empty = bodiless(answer.status);
    const framing = empty ? '' : `content-length: ${Buffer.byteLength(answer.body)}\r\n`;
    const text = answerHead(answer.status, answer.headers, framing, this.keepAlive(head));
    this.send(empty || head.method === 'HEAD' ? text : text + answer.body);
    this.ended(head);
  }

  private streamed(head: RequestHead, answer: StreamedAnswer): void {
    const empty = bodiless(answer.status) || head.method === 'HEAD';
    let pending = answerHead(answer.status, answer.headers, bodiless(answer.status) ? '' : 'transfer-encoding: chunked\r\n', this.keepAlive(head));
    let over = false;
    const write = (text: string): void => {
      this.send(pending + text);
      pending = '';
    };
    try {
      answer.open({
        write: (text) => {
          if (!over && !empty) write(chunk(text));
        },
        end: (last) => {
          if (over) return;
          over = true;
          write(empty ? '' : `${chunk(last ?? '')}0\r\n\r\n`);
          this.ended(head);
        },
      });
    } catch (error) {
      // Once ended, the answer is whole and the next request may be in hand: the failure path
      // would answer that one. Before its end, the sink writes nothing more after what replaces it.
      if (over) {
        console.error('serve: an answer failed after its end:', error instanceof Error ? error.message : error);
        return;
      }
      over = true;
      throw error;
    }
    if (pending !== '') write('');
  }

  private response(head: RequestHead, request: NodeRequest, response: Response): void {
    const body = response.body;
    const framing = bodiless(response.status) ? '' : body ? 'transfer-encoding: chunked\r\n' : 'content-length: 0\r\n';
    const text = answerHead(response.status, response.headers, framing, this.keepAlive(head));
    if (!body || bodiless(response.status) || head.method === 'HEAD') {
      void body?.cancel().catch(() => undefined);
      this.send(text);
      this.ended(head);
      return;
    }
    // Writes are held to the end of the turn: the head and what the body has ready leave together.
    const held: (string | Uint8Array)[] = [text];
    let scheduled = false;
    const flush = (): void => {
      scheduled = false;
      if (this.socket.destroyed) return;
      this.socket.cork();
      for (const piece of held) this.send(piece);
      held.length = 0;
      this.socket.uncork();
    };
    const hold = (...pieces: (string | Uint8Array)[]): void => {
      held.push(...pieces);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    };
    hold();
    const reader = body.getReader();
    request.signal.addEventListener('abort', () => void reader.cancel().catch(() => undefined), { once: true });
    void (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (value.length > 0) hold(`${value.length.toString(16)}\r\n`, value, '\r\n');
        }
        hold('0\r\n\r\n');
        flush();
        this.ended(head);
      } catch {
        // The client went away, or the body failed: the answer cannot be ended well.
        this.socket.destroy();
      }
    })();
  }

  private send(data: string | Uint8Array): void {
    this.written = true;
    if (!this.socket.destroyed) this.socket.write(data);
  }

  /** The answer has ended: the next request is read, or the connection closed. */
  private ended(head: RequestHead): void {
    this.current = undefined;
    this.written = false;
    if (this.closing) return;
    if (head.close) {
      this.close();
      return;
    }
    // A client that does not read its answers is read no further until they have left (as node:http does).
    if (this.socket.writableNeedDrain) {
      this.drainingSince = performance.now();
      this.unreadBytes = this.socket.writableLength;
      this.socket.once('drain', () => {
        this.drainingSince = 0;
        this.proceed();
      });
      return;
    }
    this.proceed();
  }

  /** The last answer has waited `limit` ms for the client to read any more of it (a slow reader's progress restarts the wait). */
  unread(now: number, limit: number): boolean {
    if (this.drainingSince === 0) return false;
    if (this.socket.writableLength < this.unreadBytes) {
      this.unreadBytes = this.socket.writableLength;
      this.drainingSince = now;
    }
    return now - this.drainingSince > limit;
  }

  /** Reads the next request: from the bytes held, then from the socket. */
  private proceed(): void {
    if (this.closing) return;
    this.idleSince = performance.now();
    if (this.parser.buffered > 0) this.since = performance.now();
    this.read(() => this.parser.next());
  }

  /** Answers a refused request (`connection: close`) and closes. */
  refuse(status: number, message: string): void {
    if (this.closing || this.socket.destroyed) return;
    const body = refusalBody(message);
    this.socket.write(answerHead(status, { 'content-type': 'application/json' }, `content-length: ${Buffer.byteLength(body)}\r\n`, undefined) + body);
    this.close();
  }

  /** Ends the connection after what is written; a client that does not close it in a second is cut off. */
  close(): void {
    if (this.ending) return;
    this.ending = true;
    this.closing = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  /** The client has gone: a request still being answered is aborted. */
  private gone(): void {
    this.closing = true;
    const request = this.current;
    this.current = undefined;
    request?.abort();
  }
}

export async function serveHttp1(handler: (req: NodeRequest) => Promise<Answer>, options: Http1ServeOptions = {}): Promise<Served> {
  const host = options.host ?? '127.0.0.1';
  const idleMs = options.idleMs ?? 5_000;
  const requestMs = options.requestMs ?? 30_000;
  const limits = { maxHeaderBytes: options.maxHeaderBytes ?? 16 * 1024, maxHeaders: options.maxHeaders ?? 100, maxBodyBytes: options.maxBodyBytes ?? MAX_BODY_BYTES };
  const context: Context = {
    handler,
    limits,
    errorBody: JSON.stringify(options.errorBody ?? { jsonrpc: '2.0', error: { code: -32603, message: 'internal error' }, id: null }),
    // The hint in whole seconds, never longer than the wait (none under a second).
    keepAlive: idleMs >= 1000 ? `keep-alive: timeout=${Math.floor(idleMs / 1000)}\r\n` : '',
    heldLimit: limits.maxHeaderBytes + limits.maxBodyBytes + HELD_BYTES,
    connections: new Set(),
  };
  const server = net.createServer({ noDelay: true }, (socket) => new Connection(socket, context));
  // One sweep for every connection's deadlines, a few times per shortest limit: no timer per request.
  const sweep = setInterval(
    () => {
      const now = performance.now();
      for (const connection of context.connections) {
        if (connection.since !== 0 && now - connection.since > requestMs) connection.refuse(408, `the request did not come whole within ${requestMs} ms`);
        else if (connection.idle && now - connection.idleSince > idleMs) connection.close();
        // A client that reads nothing more of its answers (pipelining more) is neither idle nor sending a request: cut off.
        else if (connection.unread(now, requestMs)) connection.socket.destroy();
      }
    },
    Math.max(10, Math.min(1000, requestMs / 4, idleMs / 4)),
  );
  sweep.unref();
  return listening(server, host, options.port ?? 0, () => {
    clearInterval(sweep);
    for (const connection of context.connections) connection.socket.destroy();
  });
}
