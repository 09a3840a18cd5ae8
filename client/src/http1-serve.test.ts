/**
 * The gateway's HTTP/1.1 server on raw sockets (http1-serve.ts), written from its specification
 * and attacked from raw sockets: what it accepts (keep-alive, pipelining, bodies split at every
 * byte, chunked bodies, 100-continue), how it answers (framing, streaming, HEAD, no response
 * splitting), what it refuses (each refusal: its status, a JSON-RPC error, `connection: close`,
 * the connection closed, the handler never called, and the bytes sent after it never read as a
 * request), its two clocks (requestMs against a slowloris, idleMs), smuggling attempts, clients
 * that leave, and a thousand seeded random inputs.
 */
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { serveHttp1 } from './http1-serve.ts';
import type { Answer } from './light-http.ts';
import type { Served } from './node-serve.ts';
import { twoEventStream } from '../../test/support/http.ts';

type Handler = Parameters<typeof serveHttp1>[0];
type Http1Request = Parameters<Handler>[0];

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HOST = 'example.test';
const H = `Host: ${HOST}\r\n`;
/** A valid request sent right after a refused one: it must never reach the handler. */
const AFTER = `GET /after HTTP/1.1\r\n${H}\r\n`;

/** Raw bytes written as given (each character one byte), so that a test can send any byte. */
const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// A client on a raw socket, and a strict reader of the answers it receives
// ---------------------------------------------------------------------------------------------

interface Parsed {
  status: number;
  reason: string;
  /** The status line and header lines as received (latin1), without the blank line. */
  head: string;
  /** Header fields in order, names lower-cased, values without surrounding whitespace. */
  fields: [string, string][];
  body: Buffer;
  text: string;
  /** How many chunks the body came in (0 when it was not chunked). */
  chunks: number;
}

/** A header's value (repeated ones joined with ", "), undefined when absent. */
function header(answer: Parsed, name: string): string | undefined {
  const values = answer.fields.filter(([n]) => n === name).map(([, v]) => v);
  return values.length ? values.join(', ') : undefined;
}

const headerCount = (answer: Parsed, name: string): number => answer.fields.filter(([n]) => n === name).length;

/**
 * One answer read from `buf` at `from`: undefined while it is incomplete; throws when the bytes
 * are not a well-formed HTTP/1.1 answer. `head` says the request was a HEAD (no body follows).
 */
function parseAnswer(buf: Buffer, from: number, head: boolean, ended: boolean): { answer: Parsed; next: number } | undefined {
  const headEnd = buf.indexOf('\r\n\r\n', from, 'latin1');
  if (headEnd < 0) return undefined;
  const headText = buf.toString('latin1', from, headEnd);
  const [statusLine = '', ...lines] = headText.split('\r\n');
  const status = /^HTTP\/1\.1 ([1-5]\d\d) ([\t\x20-\x7e\x80-\xff]*)$/.exec(statusLine);
  if (!status) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify(statusLine)}`);
  const fields: [string, string][] = [];
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (colon < 1 || !TOKEN.test(name) || /[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw new Error(`malformed header line: ${JSON.stringify(line)}`);
    fields.push([name.toLowerCase(), value]);
  }
  const code = Number(status[1]);
  const made = (body: Buffer, next: number, chunks = 0) => ({
    answer: { status: code, reason: status[2] ?? '', head: headText, fields, body, text: body.toString('utf8'), chunks },
    next,
  });
  let at = headEnd + 4;
  if (head || code < 200 || code === 204 || code === 304) return made(Buffer.alloc(0), at);
  const partial = made(Buffer.alloc(0), at).answer;
  const te = header(partial, 'transfer-encoding');
  const cl = header(partial, 'content-length');
  if (te !== undefined) {
    if (te !== 'chunked' || cl !== undefined) throw new Error(`bad framing: transfer-encoding ${te}, content-length ${cl}`);
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at, 'latin1');
      if (lineEnd < 0) return undefined;
      const sizeText = buf.toString('latin1', at, lineEnd).split(';')[0] ?? '';
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new Error(`bad chunk size: ${JSON.stringify(sizeText)}`);
      const size = parseInt(sizeText, 16);
      at = lineEnd + 2;
      if (size === 0) {
        for (;;) {
          const end = buf.indexOf('\r\n', at, 'latin1');
          if (end < 0) return undefined;
          const blank = end === at;
          at = end + 2;
          if (blank) return made(Buffer.concat(parts), at, parts.length);
        }
      }
      if (buf.length < at + size + 2) return undefined;
      if (buf.toString('latin1', at + size, at + size + 2) !== '\r\n') throw new Error('a chunk not followed by CRLF');
      parts.push(buf.subarray(at, at + size));
      at += size + 2;
    }
  }
  if (cl !== undefined) {
    if (!/^\d+$/.test(cl)) throw new Error(`bad content-length: ${cl}`);
    const length = Number(cl);
    if (buf.length < at + length) return undefined;
    return made(buf.subarray(at, at + length), at + length);
  }
  if (!ended) return undefined;
  return made(buf.subarray(at), buf.length);
}

const wires = new Set<Wire>();

/** One client connection: what it received, whether the server has closed it, answers read in order. */
class Wire {
  data = Buffer.alloc(0);
  /** The server closed (FIN or reset): nothing more will arrive. */
  ended = false;
  /** Where the next unread answer starts in `data`. */
  private read = 0;
  private readonly listeners = new Set<() => void>();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      this.changed();
    });
    const end = (): void => {
      this.ended = true;
      this.changed();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
    wires.add(this);
  }

  static open(port: number): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => resolve(new Wire(socket)));
    });
  }

  private changed(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Resolves once written (or once the socket can take no more: a closed server is no error here). */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || !this.socket.writable) {
        resolve();
        return;
      }
      this.socket.write(typeof data === 'string' ? bytes(data) : data, () => resolve());
    });
  }

  /** Writes one byte at a time, each its own write and its own turn of the event loop. */
  async dribble(data: string | Buffer, everyMs = 0): Promise<void> {
    const all = typeof data === 'string' ? bytes(data) : data;
    for (let i = 0; i < all.length; i++) {
      await this.write(all.subarray(i, i + 1));
      await (everyMs ? sleep(everyMs) : new Promise((resolve) => setImmediate(resolve)));
    }
  }

  /** True once `ready()` holds, false if it did not within `ms`. */
  until(ready: () => boolean, ms = 3000): Promise<boolean> {
    if (ready()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (value: boolean): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(value);
      };
      const check = (): void => {
        if (ready()) finish(true);
      };
      const timer = setTimeout(() => finish(false), ms);
      this.listeners.add(check);
    });
  }

  /** True once the server has closed the connection, false if it is still open after `ms`. */
  closed(ms = 3000): Promise<boolean> {
    return this.until(() => this.ended, ms);
  }

  /** The next answer (1xx included), once whole; throws if the connection ends first or it is malformed. */
  async answer(options: { head?: boolean; ms?: number } = {}): Promise<Parsed> {
    let got: { answer: Parsed; next: number } | undefined;
    let failure: unknown;
    const ready = (): boolean => {
      try {
        got = parseAnswer(this.data, this.read, options.head ?? false, this.ended);
      } catch (error) {
        failure = error;
        return true;
      }
      return got !== undefined || this.ended;
    };
    const arrived = await this.until(ready, options.ms ?? 3000);
    if (failure) throw failure;
    if (!got) throw new Error(`${arrived ? 'the connection ended before a whole answer' : 'no whole answer in time'}; received: ${JSON.stringify(this.rest())}`);
    this.read = got.next;
    return got.answer;
  }

  /** What arrived past the answers read so far. */
  rest(): string {
    return this.data.toString('latin1', this.read);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

afterEach(() => {
  for (const wire of wires) wire.destroy();
  wires.clear();
});

/** A request with Host and, when it has a body, Content-Length. */
function request(method: string, target: string, options: { headers?: string[]; body?: string } = {}): Buffer {
  const body = options.body === undefined ? undefined : Buffer.from(options.body, 'utf8');
  const lines = [`${method} ${target} HTTP/1.1`, `Host: ${HOST}`, ...(options.headers ?? [])];
  if (body) lines.push(`Content-Length: ${body.length}`);
  return Buffer.concat([bytes(`${lines.join('\r\n')}\r\n\r\n`), body ?? Buffer.alloc(0)]);
}

/** A whole exchange on a new connection: write, then read one answer. */
async function ask(port: number, raw: string | Buffer, options: { head?: boolean } = {}): Promise<{ wire: Wire; answer: Parsed }> {
  const wire = await Wire.open(port);
  await wire.write(raw);
  return { wire, answer: await wire.answer(options) };
}

// ---------------------------------------------------------------------------------------------
// The servers under test, and what their handler saw
// ---------------------------------------------------------------------------------------------

interface Call {
  method: string;
  url: string;
  path: string;
  text: string;
  /** The request's signal, as read when the handler started (by /late-signal: only after its client left). */
  signal: AbortSignal | undefined;
  started: number;
  /** When the handler's answer ended (set by the answers that record it). */
  ended?: number;
}

const calls: Call[] = [];
const gates = new Map<string, () => void>();
const byTag = (tag: string): Call[] => calls.filter((call) => new URL(call.url).searchParams.get('tag') === tag);

/** Resolves when the test opens the gate named `tag` (or at once when there is no tag). */
function gate(tag: string | null): Promise<void> {
  if (!tag) return Promise.resolve();
  return new Promise((resolve) => gates.set(tag, resolve));
}

async function waitGate(tag: string): Promise<() => void> {
  await expect.poll(() => gates.has(tag), { timeout: 3000 }).toBe(true);
  return gates.get(tag) as () => void;
}

const plain = (status: number, body: string, headers: Record<string, string> = {}): Answer => ({ status, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers }, body });

const UTF8_BODY = 'héllo wörld – 世界 🌍';

async function handle(req: Http1Request): Promise<Answer> {
  const started = performance.now();
  // /late-signal asks for its signal only once its client has left.
  const call: Call = { method: req.method, url: req.url, path: '', text: '', signal: req.url.includes('/late-signal') ? undefined : req.signal, started };
  calls.push(call);
  call.text = await req.text();
  const url = new URL(req.url);
  call.path = url.pathname;
  const tag = url.searchParams.get('tag');
  switch (url.pathname) {
    case '/throw':
      throw new Error('the handler failed (on purpose)');
    case '/utf8':
      return plain(200, UTF8_BODY);
    case '/status':
      return plain(Number(url.searchParams.get('code')), 'status');
    case '/stream-utf8':
      // Empty writes in between: an empty chunk on the wire would end the body early.
      return {
        status: 200,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
        open(sink) {
          sink.write('héllo ');
          sink.write('');
          sink.write('wörld – 世界');
          sink.end(' 🌍');
        },
      };
    case '/response-utf8': {
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode('héllo '));
          controller.enqueue(new Uint8Array(0));
          controller.enqueue(encoder.encode('wörld – 世界 🌍'));
          controller.close();
        },
      });
      return new Response(body, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
    }
    case '/slow': {
      await sleep(Number(url.searchParams.get('ms') ?? 100));
      return plain(200, 'slow');
    }
    case '/slow-stream':
      // Ends 100 ms after its first chunk: a pipelined request behind it must wait for that end.
      return {
        status: 200,
        headers: { 'content-type': 'text/plain' },
        open(sink) {
          sink.write('a');
          setTimeout(() => {
            call.ended = performance.now();
            sink.end('b');
          }, 100);
        },
      };
    case '/stream': {
      const read = gate(tag);
      return {
        status: 200,
        headers: { 'content-type': 'text/event-stream' },
        open(sink) {
          sink.write('data: first\n\n');
          void read.then(() => sink.end('data: last\n\n'));
        },
      };
    }
    case '/response':
      return twoEventStream(gate(tag));
    case '/response-now':
      return new Response('web body', { headers: { 'content-type': 'text/plain' } });
    case '/response-fails': {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('data: first\n\n'));
          setTimeout(() => controller.error(new Error('the stream failed (on purpose)')), 20);
        },
      });
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    }
    case '/after-end':
      // A sink used after its end: what comes after must never reach the wire.
      return {
        status: 200,
        headers: { 'content-type': 'text/plain' },
        open(sink) {
          sink.end('done');
          sink.write('stray');
          sink.end('stray again');
        },
      };
    case '/late-signal': {
      // The handler works (authentication, the database) before it first asks for the signal.
      await gate(tag);
      call.signal = req.signal;
      return plain(200, 'late');
    }
    case '/big':
      return plain(200, 'x'.repeat(256 * 1024));
    case '/response-endless': {
      // Records its cancellation: a client that leaves must release what feeds the stream.
      const body = new ReadableStream<Uint8Array>({
        start: (controller) => controller.enqueue(new TextEncoder().encode('data: open\n\n')),
        cancel: () => {
          call.ended = performance.now();
        },
      });
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    }
    case '/ticker':
      // Goes on writing after its client has left, as a stream fed from elsewhere does.
      return {
        status: 200,
        headers: { 'content-type': 'text/event-stream' },
        open(sink) {
          let after = 0;
          const timer = setInterval(() => {
            sink.write('data: tick\n\n');
            if (req.signal.aborted && ++after === 5) {
              clearInterval(timer);
              sink.end('data: last\n\n');
              call.ended = performance.now();
            }
          }, 10);
        },
      };
    case '/response-empty':
      return new Response(null, { status: 204 });
    case '/never':
      return { status: 200, headers: { 'content-type': 'text/event-stream' }, open: (sink) => sink.write('data: open\n\n') };
    case '/split':
      return plain(200, 'split', { 'x-bad': 'a\r\nSet-Cookie: injected=1' });
    case '/split-lf':
      return plain(200, 'split', { 'x-bad': 'a\nSet-Cookie: injected=1' });
    case '/split-cr':
      return plain(200, 'split', { 'x-bad': 'a\rSet-Cookie: injected=1' });
    case '/split-name':
      return plain(200, 'split', { 'x-bad\r\nSet-Cookie: injected': '1' });
    case '/bad-name':
      return plain(200, 'bad name', { 'x bad': '1' });
    case '/framing-plain':
      return plain(200, 'framed', { 'content-length': '999', 'transfer-encoding': 'chunked', connection: 'keep-alive' });
    case '/framing-streamed':
      return {
        status: 200,
        headers: { 'content-type': 'text/plain', 'content-length': '5', 'transfer-encoding': 'chunked', connection: 'keep-alive' },
        open(sink) {
          sink.write('ab');
          sink.end('cd');
        },
      };
    case '/request': {
      const made = req.request();
      return plain(200, JSON.stringify({ method: made.method, url: made.url, text: await made.text(), thing: made.headers.get('x-thing') }));
    }
    default: {
      const headers = Object.fromEntries(url.searchParams.getAll('h').map((name) => [name, req.headers.get(name)]));
      return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ method: req.method, url: req.url, text: call.text, headers }) };
    }
  }
}

/** The main handler; a path ending in /throw-sync throws before it returns a promise. */
const handler: Handler = (req) => {
  if (req.url.endsWith('/throw-sync')) throw new Error('the handler failed synchronously (on purpose)');
  return handle(req);
};

/** Echo JSON of the default route. */
interface Echo {
  method: string;
  url: string;
  text: string;
  headers: Record<string, string | null>;
}
const echo = (answer: Parsed): Echo => JSON.parse(answer.text) as Echo;

const CUSTOM_ERROR = { jsonrpc: '2.0', error: { code: -32000, message: 'custom failure' }, id: null };

/** Default limits. */
let main: Served;
/** maxBodyBytes 1024, maxHeaderBytes 1024, maxHeaders 10, a custom errorBody. */
let small: Served;
/** requestMs 300, idleMs 200. */
let timed: Served;

beforeAll(async () => {
  main = await serveHttp1(handler);
  small = await serveHttp1(handler, { maxBodyBytes: 1024, maxHeaderBytes: 1024, maxHeaders: 10, errorBody: CUSTOM_ERROR });
  timed = await serveHttp1(handler, { requestMs: 300, idleMs: 200 });
});

afterAll(async () => {
  await Promise.all([main?.close(), small?.close(), timed?.close()]);
});

/**
 * Sends `raw` then a valid request in the same write, and asserts the refusal: one answer with
 * `status`, a JSON-RPC invalid-request error, `connection: close`, then the connection closed,
 * nothing more answered, and the handler never called (neither for `raw` nor for the request after).
 */
async function expectRefused(port: number, raw: string | Buffer, status: number | number[]): Promise<void> {
  const before = calls.length;
  const wire = await Wire.open(port);
  await wire.write(Buffer.concat([typeof raw === 'string' ? bytes(raw) : raw, bytes(AFTER)]));
  expectRefusalAnswer(await wire.answer(), status);
  expect(await wire.closed()).toBe(true);
  expect(wire.rest()).toBe('');
  expect(calls.slice(before)).toEqual([]);
}

function expectRefusalAnswer(answer: Parsed, status: number | number[]): void {
  if (Array.isArray(status)) expect(status).toContain(answer.status);
  else expect(answer.status).toBe(status);
  expect(header(answer, 'content-type')).toMatch(/^application\/json/);
  expect(header(answer, 'connection')?.toLowerCase()).toBe('close');
  expect(JSON.parse(answer.text)).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } });
}

/**
 * Writes `start`, then `filler` again and again (100 KiB in all) while the connection is open: the
 * server must refuse (with one of `statuses`) and close, having buffered a bounded part of it.
 */
async function expectRefusedUnbounded(port: number, start: string, filler: string, statuses: number[]): Promise<void> {
  const before = calls.length;
  const wire = await Wire.open(port);
  await wire.write(start);
  for (let sent = 0; sent < 100 * 1024 && !wire.ended; sent += filler.length) await wire.write(filler);
  expectRefusalAnswer(await wire.answer({ ms: 2000 }), statuses);
  expect(await wire.closed()).toBe(true);
  expect(calls.length).toBe(before);
}

/** Writes `start`, then `byte` every 50 ms: the server must answer 408 and close well within 1.5 s. */
async function expectCutOffAtRequestMs(wire: Wire, start: string, byte: string): Promise<void> {
  const before = calls.length;
  const began = performance.now();
  await wire.write(start);
  const drip = setInterval(() => void wire.write(byte), 50);
  try {
    expectRefusalAnswer(await wire.answer({ ms: 2000 }), 408);
    expect(await wire.closed(1000)).toBe(true);
  } finally {
    clearInterval(drip);
  }
  expect(performance.now() - began).toBeLessThan(1500);
  expect(calls.length).toBe(before);
}

// ---------------------------------------------------------------------------------------------

describe('accepted requests', () => {
  it('a POST with Host and Content-Length reaches the handler with its method, absolute url and body', async () => {
    const { wire, answer } = await ask(main.port, request('POST', '/path?q=1', { body: '{"a":1}', headers: ['Content-Type: application/json'] }));
    expect(answer.status).toBe(200);
    expect(echo(answer)).toMatchObject({ method: 'POST', url: `http://${HOST}/path?q=1`, text: '{"a":1}' });
    expect(wire.ended).toBe(false);
  });

  it('listens on 127.0.0.1 and an ephemeral port by default', () => {
    expect(main.port).toBeGreaterThan(0);
    expect(main.url).toBe(`http://127.0.0.1:${main.port}`);
  });

  it('the url is the Host header followed by the target, port included', async () => {
    const { answer } = await ask(main.port, bytes('GET /a/b?c=d HTTP/1.1\r\nHost: example.test:8080\r\n\r\n'));
    expect(echo(answer).url).toBe('http://example.test:8080/a/b?c=d');
  });

  it('a target starting with // does not move the url to another host', async () => {
    const { answer } = await ask(main.port, request('GET', '//evil.test/x'));
    expect(answer.status).toBe(200);
    expect(new URL(echo(answer).url).host).toBe(HOST);
  });

  it('a target with a backslash or an @ does not move the url to another host either', async () => {
    for (const target of ['/\\evil.test/x', '/@evil.test/x', '/..//evil.test/x']) {
      const { answer } = await ask(main.port, request('GET', target));
      expect(answer.status).toBe(200);
      expect(new URL(echo(answer).url).host).toBe(HOST);
    }
  });

  it('an IPv6 literal Host is accepted', async () => {
    const { answer } = await ask(main.port, bytes('GET /v6 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n'));
    expect(answer.status).toBe(200);
    expect(echo(answer).url).toBe('http://[::1]:8080/v6');
  });

  it('GET, DELETE, HEAD and OPTIONS without a body are answered on one connection', async () => {
    const wire = await Wire.open(main.port);
    for (const method of ['GET', 'DELETE', 'HEAD', 'OPTIONS']) {
      await wire.write(request(method, `/m?tag=${method}`));
      const answer = await wire.answer({ head: method === 'HEAD' });
      expect(answer.status).toBe(200);
      if (method !== 'HEAD') expect(echo(answer)).toMatchObject({ method, text: '' });
      expect(byTag(method).map((call) => [call.method, call.text])).toEqual([[method, '']]);
    }
    expect(wire.ended).toBe(false);
  });

  it('keeps the connection alive: three requests one after another on one connection', async () => {
    const wire = await Wire.open(main.port);
    for (const n of [1, 2, 3]) {
      await wire.write(request('POST', `/k${n}`, { body: `body ${n}` }));
      const answer = await wire.answer();
      expect(echo(answer)).toMatchObject({ url: `http://${HOST}/k${n}`, text: `body ${n}` });
    }
    expect(wire.ended).toBe(false);
  });

  it('answers pipelined requests in order, one at a time: the next handler starts after the previous answer has ended', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(Buffer.concat([request('GET', '/slow-stream?tag=pipe'), request('POST', '/p2?tag=pipe', { body: 'two' }), request('GET', '/p3?tag=pipe')]));
    const first = await wire.answer();
    const second = await wire.answer();
    const third = await wire.answer();
    expect(first.text).toBe('ab');
    expect(echo(second)).toMatchObject({ url: `http://${HOST}/p2?tag=pipe`, text: 'two' });
    expect(echo(third).url).toBe(`http://${HOST}/p3?tag=pipe`);
    const [one, two, three] = byTag('pipe');
    expect(one?.ended).toBeDefined();
    expect(two?.started).toBeGreaterThanOrEqual(one?.ended as number);
    expect(three?.started).toBeGreaterThanOrEqual(two?.started as number);
    expect(wire.ended).toBe(false);
  });

  it('200 pipelined requests in one write are all answered, in order', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(Buffer.concat(Array.from({ length: 200 }, (_, n) => request('POST', `/many${n}`, { body: String(n) }))));
    for (let n = 0; n < 200; n++) expect(echo(await wire.answer())).toMatchObject({ url: `http://${HOST}/many${n}`, text: String(n) });
    expect(wire.ended).toBe(false);
  });

  it('a request written byte by byte (a multi-byte UTF-8 body split inside its characters) arrives whole', async () => {
    const wire = await Wire.open(main.port);
    await wire.dribble(request('POST', '/dribble', { body: UTF8_BODY }));
    expect(echo(await wire.answer())).toMatchObject({ url: `http://${HOST}/dribble`, text: UTF8_BODY });
  });

  it('a chunked body with chunk extensions and trailers arrives whole', async () => {
    const raw = `POST /chunked HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n6;x="y z";n\r\n world\r\nB\r\n 0123456789\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n`;
    const { wire, answer } = await ask(main.port, raw);
    expect(echo(answer)).toMatchObject({ method: 'POST', text: 'hello world 0123456789' });
    // The trailers ended the request: the connection carries the next one.
    await wire.write(request('GET', '/next'));
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/next`);
  });

  it('a chunked body written byte by byte arrives whole', async () => {
    const wire = await Wire.open(main.port);
    await wire.dribble(`POST /chunked-dribble HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3;ext\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n`);
    expect(echo(await wire.answer()).text).toBe('abcde');
  });

  it('a streamed request body from fetch (chunked) arrives whole', async () => {
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode('part one, '));
        controller.enqueue(encoder.encode('part two'));
        controller.close();
      },
    });
    const response = await fetch(`${main.url}/fetch-stream`, { method: 'POST', body, duplex: 'half' } as RequestInit);
    expect(response.status).toBe(200);
    expect(((await response.json()) as Echo).text).toBe('part one, part two');
  });

  it('fetch works: a JSON POST and its answer', async () => {
    const response = await fetch(`${main.url}/fetch?h=content-type`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0"}' });
    expect(response.status).toBe(200);
    const answer = (await response.json()) as Echo;
    expect(answer).toMatchObject({ method: 'POST', url: `${main.url}/fetch?h=content-type`, text: '{"jsonrpc":"2.0"}', headers: { 'content-type': 'application/json' } });
  });

  it('Expect: 100-continue gets "HTTP/1.1 100 Continue" before the body is sent, then the answer', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(`POST /continue HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`);
    const interim = await wire.answer();
    expect(interim.status).toBe(100);
    expect(interim.head).toBe('HTTP/1.1 100 Continue');
    await wire.write('hello');
    const answer = await wire.answer();
    expect(echo(answer)).toMatchObject({ url: `http://${HOST}/continue`, text: 'hello' });
  });

  it('Expect: 100-continue with a chunked body: 100 Continue, then the chunks, then the answer', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(`POST /continue-chunked HTTP/1.1\r\n${H}Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n`);
    expect((await wire.answer()).status).toBe(100);
    await wire.write('4\r\nbody\r\n0\r\n\r\n');
    expect(echo(await wire.answer()).text).toBe('body');
  });

  it('100 concurrent fetches, each on its own connection or a pooled one, each get their own answer', async () => {
    const answers = await Promise.all(
      Array.from({ length: 100 }, async (_, n) => {
        const response = await fetch(`${main.url}/concurrent${n}`, { method: 'POST', body: `body ${n}` });
        return (await response.json()) as Echo;
      }),
    );
    expect(answers.map((answer) => [answer.url, answer.text])).toEqual(Array.from({ length: 100 }, (_, n) => [`${main.url}/concurrent${n}`, `body ${n}`]));
  });

  it('a client that waits for 100 Continue (node:http) gets its answer', async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${main.url}/continue-client`, { method: 'POST', headers: { expect: '100-continue', 'content-length': '4' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('continue', () => req.end('ping'));
      req.on('error', reject);
      req.setTimeout(3000, () => req.destroy(new Error('no answer')));
    });
    expect(answer.status).toBe(200);
    expect((JSON.parse(answer.body) as Echo).text).toBe('ping');
  });

  it('Connection: close from the client: the server answers, then closes', async () => {
    const { wire, answer } = await ask(main.port, request('GET', '/bye', { headers: ['Connection: close'] }));
    expect(echo(answer).url).toBe(`http://${HOST}/bye`);
    expect(await wire.closed()).toBe(true);
    expect(wire.rest()).toBe('');
  });

  it('Connection: close with a request pipelined behind it: the first is answered, the second never handled', async () => {
    const before = calls.length;
    const wire = await Wire.open(main.port);
    await wire.write(Buffer.concat([request('GET', '/last', { headers: ['Connection: close'] }), request('GET', '/behind')]));
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/last`);
    expect(await wire.closed()).toBe(true);
    expect(wire.rest()).toBe('');
    expect(calls.slice(before).map((call) => call.path)).toEqual(['/last']);
  });

  it('header names are case-insensitive; repeated headers are joined with ", "; absent ones are null', async () => {
    const raw = `POST /case?h=x-thing&h=X-THING&h=accept&h=absent HTTP/1.1\r\nhOsT: ${HOST}\r\nX-Thing: one\r\nAccept: a\r\naccept: b\r\nCONTENT-length: 2\r\n\r\nok`;
    const answer = echo((await ask(main.port, raw)).answer);
    expect(answer.text).toBe('ok');
    expect(answer.headers).toEqual({ 'x-thing': 'one', 'X-THING': 'one', accept: 'a, b', absent: null });
  });

  it('header values lose the whitespace around them; an empty value and a tab inside a value are kept', async () => {
    const raw = `GET /ows?h=x-a&h=x-empty&h=x-tab HTTP/1.1\r\n${H}X-A: \t value  \t\r\nX-Empty:\r\nX-Tab: a\tb\r\n\r\n`;
    expect(echo((await ask(main.port, raw)).answer).headers).toEqual({ 'x-a': 'value', 'x-empty': '', 'x-tab': 'a\tb' });
  });

  it('a few empty lines (CRLF) before a request line are ignored', async () => {
    const { answer } = await ask(main.port, `\r\n\r\n\r\nGET /leading HTTP/1.1\r\n${H}\r\n`);
    expect(answer.status).toBe(200);
    expect(echo(answer).url).toBe(`http://${HOST}/leading`);
  });

  it('text() drops a leading byte order mark; request() is a web Request with the same method, url, headers and body', async () => {
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"é":1}', 'utf8')]);
    const head = bytes(`POST /request HTTP/1.1\r\n${H}X-Thing: yes\r\nContent-Length: ${body.length}\r\n\r\n`);
    const { answer } = await ask(main.port, Buffer.concat([head, body]));
    expect(JSON.parse(answer.text)).toEqual({ method: 'POST', url: `http://${HOST}/request`, text: '{"é":1}', thing: 'yes' });
    expect(calls.at(-1)?.text).toBe('{"é":1}');
  });
});

describe('answers', () => {
  it('a plain answer: status line, content-length in UTF-8 bytes, a date header, the body intact', async () => {
    const { answer } = await ask(main.port, request('GET', '/utf8'));
    expect(answer.head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(header(answer, 'content-length')).toBe(String(Buffer.byteLength(UTF8_BODY, 'utf8')));
    expect(Buffer.byteLength(UTF8_BODY, 'utf8')).toBeGreaterThan(UTF8_BODY.length);
    expect(answer.text).toBe(UTF8_BODY);
    expect(header(answer, 'transfer-encoding')).toBeUndefined();
    const date = Date.parse(header(answer, 'date') ?? '');
    expect(Math.abs(date - Date.now())).toBeLessThan(60_000);
  });

  it('other statuses carry a reason phrase', async () => {
    const { answer } = await ask(main.port, request('GET', '/status?code=404'));
    expect(answer.status).toBe(404);
    expect(answer.head.split('\r\n')[0]).toBe('HTTP/1.1 404 Not Found');
  });

  it('HEAD gets the headers with the would-be content-length, and no body', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('HEAD', '/utf8'));
    const answer = await wire.answer({ head: true });
    expect(answer.status).toBe(200);
    expect(header(answer, 'content-length')).toBe(String(Buffer.byteLength(UTF8_BODY, 'utf8')));
    // No body bytes followed: the next answer on the connection starts right after the head.
    await wire.write(request('GET', '/after-head'));
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/after-head`);
    expect(wire.rest()).toBe('');
  });

  it.each(['/framing-streamed', '/response-now'])('HEAD of a streamed answer (%s): headers, no body, and the connection goes on', async (path) => {
    const wire = await Wire.open(main.port);
    await wire.write(request('HEAD', path));
    const answer = await wire.answer({ head: true });
    expect(answer.status).toBe(200);
    await wire.write(request('GET', '/after-head'));
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/after-head`);
    expect(wire.rest()).toBe('');
  });

  it('a streamed answer is chunked, and its first chunk reaches the client before the answer ends', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/stream?tag=streamed'));
    expect(await wire.until(() => wire.data.includes('data: first'))).toBe(true);
    expect(wire.data.includes('0\r\n\r\n')).toBe(false);
    (await waitGate('streamed'))();
    const answer = await wire.answer();
    expect(header(answer, 'transfer-encoding')).toBe('chunked');
    expect(header(answer, 'content-length')).toBeUndefined();
    expect(header(answer, 'content-type')).toBe('text/event-stream');
    expect(answer.text).toBe('data: first\n\ndata: last\n\n');
    expect(answer.chunks).toBeGreaterThanOrEqual(2);
    expect(wire.ended).toBe(false);
  });

  it('a Response with a body is chunked and streamed: fetch reads its first event before the stream goes on', async () => {
    const response = await fetch(`${main.url}/response?tag=web`);
    expect(response.headers.get('transfer-encoding')).toBe('chunked');
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('first')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).toBe('data: first\n\n');
    (await waitGate('web'))();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).toBe('data: first\n\ndata: last\n\n');
  });

  it.each(['/stream-utf8', '/response-utf8'])('%s: multi-byte chunks sized in bytes, empty writes skipped, the connection goes on', async (path) => {
    const wire = await Wire.open(main.port);
    await wire.write(Buffer.concat([request('GET', path), request('GET', '/after-utf8')]));
    expect((await wire.answer()).text).toBe(UTF8_BODY);
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/after-utf8`);
  });

  it('a handler status outside 200-599 (0, 99, 600, 1000, NaN, 1xx) never reaches the wire: 500 instead, and the connection stays in step', async () => {
    const codes = ['0', '99', '600', '1000', 'NaN', '100', '101', '199'];
    const wire = await Wire.open(main.port);
    const seen: string[] = [];
    for (const code of codes) {
      await wire.write(Buffer.concat([request('GET', `/status?code=${code}`), request('GET', `/after-status-${code}`)]));
      seen.push(`${code}: ${(await wire.answer()).status}, then ${echo(await wire.answer()).url}`);
    }
    expect(seen).toEqual(codes.map((code) => `${code}: 500, then http://${HOST}/after-status-${code}`));
  });

  it('a Response without a body is answered without one, and the connection goes on', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/response-empty'));
    const answer = await wire.answer();
    expect(answer.status).toBe(204);
    expect(answer.body.length).toBe(0);
    await wire.write(request('GET', '/after-204'));
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/after-204`);
  });

  it.each(['/split', '/split-lf', '/split-cr', '/split-name'])('a handler header with CR or LF (%s) never reaches the wire: 500 instead', async (path) => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', path));
    const answer = await wire.answer();
    expect(answer.status).toBe(500);
    expect(wire.data.toString('latin1').toLowerCase()).not.toContain('set-cookie');
    expect(wire.data.toString('latin1')).not.toContain('injected');
  });

  it('a handler header name that is not a token never reaches the wire: 500 instead', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/bad-name'));
    expect((await wire.answer()).status).toBe(500);
    expect(wire.data.toString('latin1')).not.toContain('x bad');
  });

  it('a sink written after its end sends nothing more: the next answer on the connection is intact', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(Buffer.concat([request('GET', '/after-end'), request('GET', '/after-sink')]));
    expect((await wire.answer()).text).toBe('done');
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/after-sink`);
    await wire.until(() => false, 50);
    expect(wire.data.toString('latin1')).not.toContain('stray');
  });

  it('a Response whose body fails mid-way is cut off: the connection closes without the last chunk, and the server goes on', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/response-fails'));
    expect(await wire.closed()).toBe(true);
    expect(wire.data.toString('latin1')).toContain('data: first');
    await expect(wire.answer()).rejects.toThrow(/ended before a whole answer/);
    expect((await fetch(`${main.url}/after-failure`)).status).toBe(200);
  });

  it('the handler’s own content-length, transfer-encoding and connection do not duplicate the framing of a plain answer', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/framing-plain'));
    const answer = await wire.answer();
    expect(answer.text).toBe('framed');
    expect(answer.fields.filter(([name]) => name === 'content-length')).toEqual([['content-length', '6']]);
    expect(headerCount(answer, 'transfer-encoding')).toBe(0);
    expect(headerCount(answer, 'connection')).toBeLessThanOrEqual(1);
    await wire.write(request('GET', '/after-framing'));
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/after-framing`);
  });

  it('the handler’s own content-length, transfer-encoding and connection do not duplicate the framing of a streamed answer', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/framing-streamed'));
    const answer = await wire.answer();
    expect(answer.text).toBe('abcd');
    expect(headerCount(answer, 'content-length')).toBe(0);
    expect(answer.fields.filter(([name]) => name === 'transfer-encoding')).toEqual([['transfer-encoding', 'chunked']]);
    expect(headerCount(answer, 'connection')).toBeLessThanOrEqual(1);
    await wire.write(request('GET', '/after-framing'));
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/after-framing`);
  });
});

describe('refusals', () => {
  const chunked = `Transfer-Encoding: chunked\r\n\r\n`;
  const bad400: [string, string][] = [
    ['a bare LF ending the request line', `GET / HTTP/1.1\n${H}\r\n`],
    ['a bare LF ending a header line', `GET / HTTP/1.1\r\nHost: ${HOST}\nX-A: a\r\n\r\n`],
    ['a bare LF ending the head', `GET / HTTP/1.1\r\n${H}\n`],
    ['a bare LF inside a header value', `GET / HTTP/1.1\r\n${H}X-A: a\nb\r\n\r\n`],
    ['a bare CR inside the request line', `GET /\r HTTP/1.1\r\n${H}\r\n`],
    ['a bare CR inside a header value', `GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`],
    ['a bare CR before a CRLF', `GET / HTTP/1.1\r\n${H}X-A: a\r\r\n\r\n`],
    ['obs-fold (a header line starting with a space)', `GET / HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`],
    ['obs-fold (a header line starting with a tab)', `GET / HTTP/1.1\r\n${H}X-A: a\r\n\tb\r\n\r\n`],
    ['a first header line starting with a space', `GET / HTTP/1.1\r\n X-A: a\r\n${H}\r\n`],
    ['a space between a header name and its colon', `GET / HTTP/1.1\r\n${H}X-A : a\r\n\r\n`],
    ['a tab between a header name and its colon', `GET / HTTP/1.1\r\n${H}X-A\t: a\r\n\r\n`],
    ['a header name with "("', `GET / HTTP/1.1\r\n${H}X(A): a\r\n\r\n`],
    ['a header name with "@"', `GET / HTTP/1.1\r\n${H}X@A: a\r\n\r\n`],
    ['a header name with a space inside', `GET / HTTP/1.1\r\n${H}X A: a\r\n\r\n`],
    ['a header name with a byte over 0x7f', `GET / HTTP/1.1\r\n${H}X\xe9: a\r\n\r\n`],
    ['an empty header name', `GET / HTTP/1.1\r\n${H}: a\r\n\r\n`],
    ['a header line without a colon', `GET / HTTP/1.1\r\n${H}X-A a\r\n\r\n`],
    ['a header value with \\x00', `GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`],
    ['a header value with \\x01', `GET / HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`],
    ['a header value with \\x1b', `GET / HTTP/1.1\r\n${H}X-A: a\x1bb\r\n\r\n`],
    ['a header value with \\x7f', `GET / HTTP/1.1\r\n${H}X-A: a\x7fb\r\n\r\n`],
    ['a request line with two spaces', `GET  / HTTP/1.1\r\n${H}\r\n`],
    ['a request line with a trailing space', `GET / HTTP/1.1 \r\n${H}\r\n`],
    ['a request line separated by tabs', `GET\t/\tHTTP/1.1\r\n${H}\r\n`],
    ['a request line without a version', `GET /\r\n${H}\r\n`],
    ['a request line with only a method', `GET\r\n${H}\r\n`],
    ['a lowercase http/1.1', `GET / http/1.1\r\n${H}\r\n`],
    ['an absolute-form target', `GET http://x/ HTTP/1.1\r\n${H}\r\n`],
    ['an asterisk target with POST', `POST * HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`],
    ['a target without a leading slash', `GET x HTTP/1.1\r\n${H}\r\n`],
    ['a target with a byte over 0x7f', `GET /\xe9 HTTP/1.1\r\n${H}\r\n`],
    ['a target with \\x7f', `GET /a\x7f HTTP/1.1\r\n${H}\r\n`],
    ['a target with \\x00', `GET /a\x00 HTTP/1.1\r\n${H}\r\n`],
    ['a missing Host', `GET / HTTP/1.1\r\nX-A: a\r\n\r\n`],
    ['two Host headers with one value', `GET / HTTP/1.1\r\n${H}${H}\r\n`],
    ['two Host headers with two values', `GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`],
    ['a Host with a space (a b)', `GET / HTTP/1.1\r\nHost: a b\r\n\r\n`],
    ['a Host with a slash (a/b)', `GET / HTTP/1.1\r\nHost: a/b\r\n\r\n`],
    ['a Host with userinfo (a@b)', `GET / HTTP/1.1\r\nHost: a@b\r\n\r\n`],
    ['a Host with a fragment (a#b)', `GET / HTTP/1.1\r\nHost: a#b\r\n\r\n`],
    ['a Host with a query (a?b)', `GET / HTTP/1.1\r\nHost: a?b\r\n\r\n`],
    ['a Host whose port is over 65535', `GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n`],
    ['a Host that is a malformed IPv6 literal', `GET / HTTP/1.1\r\nHost: [::::]\r\n\r\n`],
    ['a Host that is a malformed IPv4 address', `GET / HTTP/1.1\r\nHost: 1.2.3.999\r\n\r\n`],
    ['an empty Host', `GET / HTTP/1.1\r\nHost:\r\n\r\n`],
    ['Content-Length: +5', `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`],
    ['Content-Length: -1', `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\nhello`],
    ['Content-Length: 5 5', `POST / HTTP/1.1\r\n${H}Content-Length: 5 5\r\n\r\nhello`],
    ['Content-Length: 0x5', `POST / HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello`],
    ['Content-Length: 1,1', `POST / HTTP/1.1\r\n${H}Content-Length: 1,1\r\n\r\nh`],
    ['an empty Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length:\r\n\r\nhello`],
    ['two Content-Length headers with the same value', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`],
    ['two Content-Length headers differing in case only', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello`],
    ['two Content-Length headers with different values', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`],
    ['Content-Length with Transfer-Encoding: chunked', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\n${chunked}0\r\n\r\n`],
    ['a chunk size zz', `POST / HTTP/1.1\r\n${H}${chunked}zz\r\nhello\r\n0\r\n\r\n`],
    ['a negative chunk size', `POST / HTTP/1.1\r\n${H}${chunked}-5\r\nhello\r\n0\r\n\r\n`],
    ['a chunk size of 17 hex digits', `POST / HTTP/1.1\r\n${H}${chunked}fffffffffffffffff\r\nhello\r\n0\r\n\r\n`],
    ['an empty chunk size', `POST / HTTP/1.1\r\n${H}${chunked}\r\nhello\r\n0\r\n\r\n`],
    ['a chunk size line ending with a bare LF', `POST / HTTP/1.1\r\n${H}${chunked}5\nhello\r\n0\r\n\r\n`],
    ['a chunk not followed by CRLF', `POST / HTTP/1.1\r\n${H}${chunked}5\r\nhelloXX0\r\n\r\n`],
    ['a chunk followed by a bare LF', `POST / HTTP/1.1\r\n${H}${chunked}5\r\nhello\n0\r\n\r\n`],
    ['a method with "("', `G(T / HTTP/1.1\r\n${H}\r\n`],
    ['a method with \\x00', `G\x00T / HTTP/1.1\r\n${H}\r\n`],
    ['a method with a byte over 0x7f', `G\xc9T / HTTP/1.1\r\n${H}\r\n`],
    ['an empty method', ` / HTTP/1.1\r\n${H}\r\n`],
  ];
  it.each(bad400)('400: %s', (_, raw) => expectRefused(main.port, raw, 400));

  const bad501: [string, string][] = [
    ['Transfer-Encoding: gzip, chunked', 'Transfer-Encoding: gzip, chunked\r\n'],
    ['Transfer-Encoding: chunked, chunked', 'Transfer-Encoding: chunked, chunked\r\n'],
    ['Transfer-Encoding: identity', 'Transfer-Encoding: identity\r\n'],
    ['Transfer-Encoding: xchunked', 'Transfer-Encoding: xchunked\r\n'],
    ['Transfer-Encoding: gzip', 'Transfer-Encoding: gzip\r\n'],
    ['two Transfer-Encoding: chunked headers', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n'],
    ['Transfer-Encoding: gzip then Transfer-Encoding: chunked', 'Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n'],
    ['two Transfer-Encoding headers differing in case only', 'Transfer-Encoding: chunked\r\ntransfer-encoding: chunked\r\n'],
  ];
  it.each(bad501)('501: %s', (_, te) => expectRefused(main.port, `POST / HTTP/1.1\r\n${H}${te}\r\n5\r\nhello\r\n0\r\n\r\n`, 501));

  it.each(['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2'])('505: version %s', (version) => expectRefused(main.port, `GET / ${version}\r\n${H}\r\n`, 505));

  it.each(['get', 'Post', 'FOO1', 'X-Y'])('a method outside [A-Z]+ (%s), though a token, never reaches the handler: refused (400 or 501)', (method) =>
    expectRefused(main.port, `${method} / HTTP/1.1\r\n${H}\r\n`, [400, 501]));

  it('417: an Expect other than 100-continue', () => expectRefused(main.port, `POST / HTTP/1.1\r\n${H}Expect: 200-ok\r\nContent-Length: 2\r\n\r\nhi`, 417));

  it('413: a Content-Length over the default 4 MiB, refused at once, before the body is sent', async () => {
    const before = calls.length;
    const wire = await Wire.open(main.port);
    await wire.write(`POST / HTTP/1.1\r\n${H}Content-Length: ${4 * 1024 * 1024 + 1}\r\n\r\n`);
    expectRefusalAnswer(await wire.answer(), 413);
    expect(await wire.closed()).toBe(true);
    expect(calls.length).toBe(before);
  });

  it('413 (or 400): a Content-Length of 30 digits, too large to be a safe integer', () =>
    expectRefused(main.port, `POST / HTTP/1.1\r\n${H}Content-Length: ${'9'.repeat(30)}\r\n\r\n`, [413, 400]));

  it('413 with Expect: 100-continue: refused without a 100 Continue', () =>
    expectRefused(small.port, `POST / HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 1025\r\n\r\n`, 413));

  it('maxBodyBytes 1024: a body of 1024 bytes is accepted, one of 1025 refused with 413', async () => {
    const { answer } = await ask(small.port, request('POST', '/limit', { body: 'x'.repeat(1024) }));
    expect(echo(answer).text).toHaveLength(1024);
    await expectRefused(small.port, request('POST', '/limit', { body: 'x'.repeat(1025) }), 413);
  });

  it('maxBodyBytes 1024: a chunked body of 1024 bytes is accepted, one that grows over it refused with 413', async () => {
    const chunk = `200\r\n${'y'.repeat(512)}\r\n`;
    const head = `POST /limit HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`;
    const { answer } = await ask(small.port, `${head}${chunk}${chunk}0\r\n\r\n`);
    expect(echo(answer).text).toHaveLength(1024);
    await expectRefused(small.port, `${head}${chunk}${chunk}${chunk}0\r\n\r\n`, 413);
  });

  it('431: a head over the default 16 KiB', () => expectRefused(main.port, `GET / HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(17 * 1024)}\r\n\r\n`, 431));

  it('a head just under 16 KiB is accepted', async () => {
    const { answer } = await ask(main.port, `GET /big-head HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(15 * 1024)}\r\n\r\n`);
    expect(answer.status).toBe(200);
  });

  it('maxHeaderBytes 1024 and maxHeaders 10 are honoured (431), a head within both accepted', async () => {
    const { answer } = await ask(small.port, `GET /within HTTP/1.1\r\n${H}X-A: ${'a'.repeat(800)}\r\n\r\n`);
    expect(answer.status).toBe(200);
    await expectRefused(small.port, `GET / HTTP/1.1\r\n${H}X-A: ${'a'.repeat(1100)}\r\n\r\n`, 431);
    const lines = Array.from({ length: 10 }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    await expectRefused(small.port, `GET / HTTP/1.1\r\n${H}${lines}\r\n`, 431);
  });

  it.each([
    ['ffff', [413]],
    ['ffffffffffffffff', [413, 400]],
  ])('413: a single chunk declared over maxBodyBytes (%s; 400 allowed for a size too long to be a safe integer), its data following', async (size, statuses) => {
    const before = calls.length;
    const wire = await Wire.open(small.port);
    await wire.write(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${size}\r\n${'d'.repeat(2048)}`);
    expectRefusalAnswer(await wire.answer({ ms: 2000 }), statuses);
    expect(await wire.closed()).toBe(true);
    expect(calls.length).toBe(before);
  });

  const unbounded: [string, string, string, number[]][] = [
    ['431: a head that never ends (100 KiB of header lines, no blank line)', `GET / HTTP/1.1\r\n${H}`, `X-Pad: ${'p'.repeat(1000)}\r\n`, [431]],
    ['a chunk-size line that never ends (100 KiB of chunk extension)', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;ext=`, 'e'.repeat(1024), [400, 413, 431]],
    ['a trailer section that never ends (100 KiB of trailers)', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n`, `X-Trailer: ${'t'.repeat(1000)}\r\n`, [400, 413, 431]],
  ];
  it.each(unbounded)('%s is refused, not buffered', (_, start, filler, statuses) => expectRefusedUnbounded(main.port, start, filler, statuses));

  it('431: more than the default 100 header lines; exactly 100 are accepted', async () => {
    const lines = (n: number): string => Array.from({ length: n }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
    const { answer } = await ask(main.port, `GET /hundred HTTP/1.1\r\n${H}${lines(99)}\r\n`);
    expect(answer.status).toBe(200);
    await expectRefused(main.port, `GET / HTTP/1.1\r\n${H}${lines(100)}\r\n`, 431);
  });

  it('a flood of empty lines before a request line is cut off, not buffered or waited on forever', async () => {
    const before = calls.length;
    const wire = await Wire.open(timed.port);
    for (let i = 0; i < 50 && !wire.ended; i++) await wire.write('\r\n'.repeat(1024));
    expect(await wire.closed(2000)).toBe(true);
    if (wire.data.length) expect((await wire.answer()).status).toBeGreaterThanOrEqual(400);
    expect(calls.length).toBe(before);
  });

  it('after a refusal the connection is closed: a request sent after the bad one in a second write is never read', async () => {
    const before = calls.length;
    const wire = await Wire.open(main.port);
    await wire.write(`GET / HTTP/1.0\r\n${H}\r\n`);
    expectRefusalAnswer(await wire.answer(), 505);
    await wire.write(AFTER);
    expect(await wire.closed()).toBe(true);
    expect(wire.rest()).toBe('');
    expect(calls.length).toBe(before);
  });

  it('a bad request pipelined behind a streamed answer: the answer ends whole, then the refusal, never inside it', async () => {
    const before = calls.length;
    const wire = await Wire.open(main.port);
    await wire.write(Buffer.concat([request('GET', '/slow-stream?tag=before-bad'), bytes(`GET / HTTP/1.0\r\n${H}\r\n`), bytes(AFTER)]));
    expect((await wire.answer()).text).toBe('ab');
    expectRefusalAnswer(await wire.answer(), 505);
    expect(await wire.closed()).toBe(true);
    expect(wire.rest()).toBe('');
    expect(calls.slice(before).map((call) => call.path)).toEqual(['/slow-stream']);
  });

  it('after a 413 on a Content-Length, the body sent anyway (holding a request) is never read as a request', () =>
    expectRefused(small.port, `POST / HTTP/1.1\r\n${H}Content-Length: 2000\r\n\r\n${AFTER}${'z'.repeat(2000)}`, 413));
});

describe('request smuggling', () => {
  it('Content-Length: 5 with Transfer-Encoding: chunked is refused (400), the request behind never read', () =>
    expectRefused(main.port, `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`, 400));

  it('Transfer-Encoding with a space before its colon is refused (400)', () =>
    expectRefused(main.port, `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`, 400));

  it('Transfer-Encoding: \\x0bchunked is refused (400 or 501)', () =>
    expectRefused(main.port, `POST / HTTP/1.1\r\n${H}Transfer-Encoding: \x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, [400, 501]));

  it('a request inside a Content-Length body is body: the handler reads it in text() and is never called for it', async () => {
    const inner = `GET /inner HTTP/1.1\r\n${H}\r\n`;
    const wire = await Wire.open(main.port);
    await wire.write(Buffer.concat([request('POST', '/outer?tag=cl-body', { body: inner }), request('GET', '/next?tag=cl-body')]));
    expect(echo(await wire.answer()).text).toBe(inner);
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/next?tag=cl-body`);
    expect(await wire.until(() => false, 100)).toBe(false);
    expect(wire.rest()).toBe('');
    expect(calls.some((call) => call.url.includes('/inner'))).toBe(false);
  });

  it('a request inside a chunked body is body: the handler reads it in text() and is never called for it', async () => {
    const inner = `GET /inner-chunk HTTP/1.1\r\n${H}\r\n`;
    const raw = `POST /outer HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`;
    const wire = await Wire.open(main.port);
    await wire.write(raw);
    expect(echo(await wire.answer()).text).toBe(inner);
    expect(await wire.until(() => false, 100)).toBe(false);
    expect(wire.rest()).toBe('');
    expect(calls.some((call) => call.url.includes('/inner-chunk'))).toBe(false);
  });

  it('a GET with a Content-Length body holding a request: that request is never handled', async () => {
    const inner = `GET /inner-get HTTP/1.1\r\n${H}\r\n`;
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/outer-get', { body: inner }));
    await wire.until(() => false, 200);
    expect(calls.some((call) => call.url.includes('/inner-get'))).toBe(false);
  });

  it('bytes left after a POST without Content-Length never reach the handler inside a method (helloPOST): refused (400 or 501)', async () => {
    const before = calls.length;
    const wire = await Wire.open(main.port);
    await wire.write(`POST /no-length HTTP/1.1\r\n${H}X-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\n${H}\r\n`);
    const first = await wire.answer();
    expect(echo(first)).toMatchObject({ url: `http://${HOST}/no-length`, text: '' });
    expectRefusalAnswer(await wire.answer(), [400, 501]);
    expect(await wire.closed()).toBe(true);
    expect(calls.slice(before).map((call) => call.method)).toEqual(['POST']);
  });

  it('trailers never replace headers: a Host in the trailers does not move the url', async () => {
    const raw = `POST /trailers?h=x-a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nHost: evil.test\r\nX-A: from-trailer\r\n\r\n`;
    const answer = echo((await ask(main.port, raw)).answer);
    expect(new URL(answer.url).host).toBe(HOST);
    expect(answer.text).toBe('ok');
    expect(answer.headers['x-a']).not.toBe('from-trailer');
  });

  it('a chunked body whose last chunk is followed by a request: the first is answered, the second handled as its own request only', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(`POST /first HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /second HTTP/1.1\r\n${H}\r\n`);
    const first = echo(await wire.answer());
    const second = echo(await wire.answer());
    expect([first.url, first.text, second.url, second.text]).toEqual([`http://${HOST}/first`, 'abc', `http://${HOST}/second`, '']);
  });
});

describe('clocks', () => {
  it('408: a slowloris sending one header byte every 50 ms is cut off at requestMs (300 ms)', async () => {
    await expectCutOffAtRequestMs(await Wire.open(timed.port), `GET / HTTP/1.1\r\n${H}X-Slow: `, 'a');
  });

  it('408: a body dripping a byte every 50 ms is cut off at requestMs', async () => {
    await expectCutOffAtRequestMs(await Wire.open(timed.port), `POST / HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n`, 'b');
  });

  it('408: a head that stops half-way', async () => {
    const wire = await Wire.open(timed.port);
    await wire.write(`GET / HTTP/1.1\r\n${H}`);
    expectRefusalAnswer(await wire.answer({ ms: 2000 }), 408);
    expect(await wire.closed(1000)).toBe(true);
  });

  it('408 on a keep-alive connection: a slowloris second request is cut off at requestMs from its first byte', async () => {
    const wire = await Wire.open(timed.port);
    await wire.write(request('GET', '/first'));
    expect((await wire.answer()).status).toBe(200);
    await expectCutOffAtRequestMs(wire, 'G', 'E');
  });

  it('a request that arrived whole behind a handler slower than requestMs is answered, not timed out', async () => {
    const wire = await Wire.open(timed.port);
    await wire.write(Buffer.concat([request('GET', '/slow?ms=350'), request('POST', '/behind-slow', { body: 'b' })]));
    expect((await wire.answer()).text).toBe('slow');
    expect(echo(await wire.answer())).toMatchObject({ url: `http://${HOST}/behind-slow`, text: 'b' });
  });

  it('a request cut off by requestMs behind a streamed answer: the stream ends whole before the 408', async () => {
    const wire = await Wire.open(timed.port);
    await wire.write(Buffer.concat([request('GET', '/stream?tag=before-408'), bytes(`GET /never-whole HTTP/1.1\r\n${H}`)]));
    expect(await wire.until(() => wire.data.includes('data: first'))).toBe(true);
    const open = await waitGate('before-408');
    await sleep(350);
    open();
    expect((await wire.answer()).text).toBe('data: first\n\ndata: last\n\n');
    expectRefusalAnswer(await wire.answer({ ms: 2000 }), 408);
    expect(await wire.closed(1000)).toBe(true);
  });

  it('a connection that never sends a byte is closed (after idleMs)', async () => {
    const wire = await Wire.open(timed.port);
    expect(await wire.closed(2000)).toBe(true);
    if (wire.data.length) expect((await wire.answer()).status).toBe(408);
  });

  it('a keep-alive connection idle for idleMs (200 ms) is closed, without another answer', async () => {
    const wire = await Wire.open(timed.port);
    await wire.write(request('GET', '/idle'));
    expect((await wire.answer()).status).toBe(200);
    expect(await wire.closed(2000)).toBe(true);
    expect(wire.rest()).toBe('');
  });

  it('a connection that sends a request every 100 ms stays open past idleMs and requestMs', async () => {
    const wire = await Wire.open(timed.port);
    for (let n = 0; n < 4; n++) {
      await wire.write(request('GET', `/busy${n}`));
      expect(echo(await wire.answer()).url).toBe(`http://${HOST}/busy${n}`);
      await sleep(100);
    }
    expect(wire.ended).toBe(false);
  });

  it('the requestMs clock starts at a request’s first byte, not at the connection’s', async () => {
    const wire = await Wire.open(timed.port);
    await wire.write(request('GET', '/first'));
    await wire.answer();
    await sleep(150);
    const second = request('POST', '/second', { body: 'xyz' });
    for (let i = 0; i < 4; i++) {
      await wire.write(second.subarray((i * second.length) / 4, ((i + 1) * second.length) / 4));
      await sleep(50);
    }
    expect(echo(await wire.answer())).toMatchObject({ url: `http://${HOST}/second`, text: 'xyz' });
  });

  it('a handler slower than requestMs and idleMs is still answered', async () => {
    const { answer } = await ask(timed.port, request('GET', '/slow?ms=350'));
    expect([answer.status, answer.text]).toEqual([200, 'slow']);
  });

  it('a streamed answer open longer than requestMs and idleMs is delivered whole', async () => {
    const wire = await Wire.open(timed.port);
    await wire.write(request('GET', '/stream?tag=long'));
    expect(await wire.until(() => wire.data.includes('data: first'))).toBe(true);
    const open = await waitGate('long');
    await sleep(350);
    expect(wire.ended).toBe(false);
    open();
    expect((await wire.answer()).text).toBe('data: first\n\ndata: last\n\n');
  });
});

describe('robustness', () => {
  it('a client that closes mid-head or mid-body: no handler call, and the server serves the next client', async () => {
    const before = calls.length;
    const midHead = await Wire.open(main.port);
    await midHead.write(`POST /mid HTTP/1.1\r\n${H}Content-Le`);
    midHead.destroy();
    const midBody = await Wire.open(main.port);
    await midBody.write(`POST /mid HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n0123456789`);
    midBody.destroy();
    const halfClosed = await Wire.open(main.port);
    await halfClosed.write(`POST /mid HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n0123456789`);
    halfClosed.socket.end();
    expect(await halfClosed.closed()).toBe(true);
    await sleep(50);
    expect(calls.length).toBe(before);
    const response = await fetch(`${main.url}/still-there`);
    expect(response.status).toBe(200);
  });

  it('a client that leaves while a streamed answer is open aborts its signal', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/never?tag=left'));
    expect(await wire.until(() => wire.data.includes('data: open'))).toBe(true);
    const signal = byTag('left')[0]?.signal as AbortSignal;
    expect(signal.aborted).toBe(false);
    wire.destroy();
    await expect.poll(() => signal.aborted, { timeout: 3000 }).toBe(true);
  });

  it('a client that half-closes (FIN) while a streamed answer is open aborts its signal', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/never?tag=fin'));
    expect(await wire.until(() => wire.data.includes('data: open'))).toBe(true);
    const signal = byTag('fin')[0]?.signal as AbortSignal;
    expect(signal.aborted).toBe(false);
    wire.socket.end();
    await expect.poll(() => signal.aborted, { timeout: 3000 }).toBe(true);
  });

  it('a client that left before its handler first read the signal: the signal it reads is aborted', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('POST', '/late-signal?tag=late', { body: '{}' }));
    const open = await waitGate('late');
    wire.destroy();
    await sleep(100);
    open();
    await expect.poll(() => byTag('late')[0]?.signal?.aborted, { timeout: 3000 }).toBe(true);
  });

  it('a streamed answer that goes on writing after its client left: no crash, its signal aborted, the server goes on', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/ticker?tag=ticker'));
    expect(await wire.until(() => wire.data.includes('data: tick'))).toBe(true);
    wire.destroy();
    await expect.poll(() => byTag('ticker')[0]?.ended, { timeout: 3000 }).toBeDefined();
    expect(byTag('ticker')[0]?.signal?.aborted).toBe(true);
    expect((await fetch(`${main.url}/after-ticker`)).status).toBe(200);
  });

  it('a client that leaves a Response’s endless body: the body stream is cancelled', async () => {
    const wire = await Wire.open(main.port);
    await wire.write(request('GET', '/response-endless?tag=endless'));
    expect(await wire.until(() => wire.data.includes('data: open'))).toBe(true);
    wire.destroy();
    await expect.poll(() => byTag('endless')[0]?.ended, { timeout: 3000 }).toBeDefined();
    expect(byTag('endless')[0]?.signal?.aborted).toBe(true);
  });

  it('a client that pipelines large answers and does not read them: the server stops handling until it reads (backpressure)', async () => {
    const before = calls.length;
    const count = 160;
    const socket = net.connect({ port: main.port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.write(Buffer.concat(Array.from({ length: count }, () => request('GET', '/big'))));
    await sleep(500);
    const handledUnread = calls.length - before;
    // 160 answers of 256 KiB are 40 MiB; half of them, 20 MiB, is far more than the socket buffers hold.
    expect(handledUnread).toBeLessThan(count / 2);
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.resume();
    await expect.poll(() => received, { timeout: 5000 }).toBeGreaterThanOrEqual(count * 256 * 1024);
    expect(calls.length - before).toBe(count);
    socket.destroy();
  });

  it('a head of 15 KiB of spaces and tabs inside a value is read; with a control character after them, refused', async () => {
    const { answer } = await ask(main.port, `GET /spaces?h=x-a HTTP/1.1\r\n${H}X-A: a${' \t'.repeat(7 * 1024)}b${' \t'.repeat(400)}\r\n\r\n`);
    expect(answer.status).toBe(200);
    const refused = await ask(main.port, `GET / HTTP/1.1\r\n${H}X-A: a${' \t'.repeat(7 * 1024)}\x01\r\n\r\n`);
    expect(refused.answer.status).toBe(400);
  });

  it('the signal of a request whose answer has ended is never aborted, whether the client then closes or half-closes', async () => {
    const closing = await Wire.open(main.port);
    await closing.write(request('POST', '/done?tag=done-close', { body: 'x' }));
    await closing.answer();
    const half = await Wire.open(main.port);
    await half.write(request('GET', '/stream?tag=done-fin'));
    (await waitGate('done-fin'))();
    await half.answer();
    closing.destroy();
    half.socket.end();
    expect(await half.closed()).toBe(true);
    await sleep(100);
    expect(byTag('done-close')[0]?.signal?.aborted).toBe(false);
    expect(byTag('done-fin')[0]?.signal?.aborted).toBe(false);
  });

  it('a handler that throws: 500 with the default JSON-RPC error body, and the connection stays usable', async () => {
    const wire = await Wire.open(main.port);
    for (const path of ['/throw', '/throw-sync']) {
      await wire.write(request('POST', path, { body: '{}' }));
      const answer = await wire.answer();
      expect(answer.status).toBe(500);
      expect(JSON.parse(answer.text)).toEqual({ jsonrpc: '2.0', error: { code: -32603, message: 'internal error' }, id: null });
    }
    await wire.write(request('GET', '/after-throw'));
    expect(echo(await wire.answer()).url).toBe(`http://${HOST}/after-throw`);
  });

  it('a handler that throws: 500 with the configured errorBody', async () => {
    const { answer } = await ask(small.port, request('GET', '/throw'));
    expect(answer.status).toBe(500);
    expect(JSON.parse(answer.text)).toEqual(CUSTOM_ERROR);
  });

  it('close() ends open connections (idle and streaming) and stops listening', async () => {
    const own = await serveHttp1(handler);
    const idle = await Wire.open(own.port);
    await idle.write(request('GET', '/before-close'));
    await idle.answer();
    const streaming = await Wire.open(own.port);
    await streaming.write(request('GET', '/never?tag=closing'));
    expect(await streaming.until(() => streaming.data.includes('data: open'))).toBe(true);
    // A handler still at work when the server closes: its late answer goes nowhere, without a crash.
    const working = await Wire.open(own.port);
    await working.write(request('GET', '/slow?ms=150&tag=closing-slow'));
    await expect.poll(() => byTag('closing-slow').length, { timeout: 3000 }).toBe(1);
    const closed = await Promise.race([own.close().then(() => true), sleep(3000).then(() => false)]);
    expect(closed).toBe(true);
    expect(await idle.closed(1000)).toBe(true);
    expect(await streaming.closed(1000)).toBe(true);
    expect(await working.closed(1000)).toBe(true);
    await expect(Wire.open(own.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await sleep(200);
    expect(working.data.length).toBe(0);
  });
});

describe('random input (seeded)', () => {
  /** mulberry32: a tiny deterministic generator, so that a failure replays. */
  function generator(seed: number): () => number {
    let state = seed >>> 0;
    return () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  const TEMPLATES = [
    `GET /f HTTP/1.1\r\nHost: a\r\n\r\n`,
    `POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello`,
    `POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n`,
    `HEAD /f HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
    `POST /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi`,
  ];
  const PIECES = ['\r\n', '\r', '\n', ' ', '\t', ':', ';', '\x00', '\x0b', '\x7f', '\xff', 'GET ', 'POST ', ' HTTP/1.1', 'HTTP/1.0', 'Host: a\r\n', 'Content-Length: ', 'Transfer-Encoding: chunked\r\n', '0\r\n\r\n', 'ffffffff', '/', '%00', '-1', '\r\n\r\n'];

  function input(random: () => number, i: number): Buffer {
    const int = (n: number): number => Math.floor(random() * n);
    if (i % 4 === 0) return Buffer.from(Array.from({ length: 1 + int(200) }, () => int(256)));
    if (i % 4 === 1) return bytes(Array.from({ length: 1 + int(12) }, () => PIECES[int(PIECES.length)]).join(''));
    // Valid requests, pipelined: where cutting them into pieces matters most.
    if (i % 4 === 2) return bytes(Array.from({ length: 1 + int(3) }, () => TEMPLATES[int(TEMPLATES.length)]).join(''));
    let text = TEMPLATES[int(TEMPLATES.length)] as string;
    for (let n = 1 + int(4); n > 0; n--) {
      const at = int(text.length + 1);
      switch (int(5)) {
        case 0:
          text = text.slice(0, at) + String.fromCharCode(int(256)) + text.slice(at + 1);
          break;
        case 1:
          text = text.slice(0, at) + PIECES[int(PIECES.length)] + text.slice(at);
          break;
        case 2:
          text = text.slice(0, at) + text.slice(at + 1 + int(8));
          break;
        case 3:
          text = text.slice(0, at);
          break;
        default:
          text += text;
      }
    }
    return bytes(text);
  }

  /** What one connection got: its final answers (status and what the handler saw), and whether it closed. */
  interface Outcome {
    answers: string[];
    closed: boolean;
    failure?: string;
  }

  let fuzzed: Served;
  const methods: string[] = [];

  beforeAll(async () => {
    fuzzed = await serveHttp1(
      async (req) => {
        methods.push(req.method);
        const text = await req.text();
        const seen = `${req.method} ${req.url} ${Buffer.byteLength(text)}`;
        return { status: 200, headers: { 'content-type': 'text/plain', 'x-method': req.method, 'x-seen': encodeURIComponent(seen) }, body: '' };
      },
      { requestMs: 150, idleMs: 100 },
    );
  });

  afterAll(async () => {
    await fuzzed?.close();
  });

  /** Sends `raw` (at once, or cut at `cuts`, each piece its own write and turn), then reads until the server closes. */
  async function outcome(raw: Buffer, cuts: number[] = []): Promise<Outcome> {
    const wire = await Wire.open(fuzzed.port);
    let from = 0;
    for (const cut of [...cuts, raw.length]) {
      await wire.write(raw.subarray(from, cut));
      from = cut;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const closed = await wire.closed(2000);
    const answers: string[] = [];
    let failure: string | undefined;
    try {
      while (wire.rest() !== '') {
        const answer = await wire.answer({ ms: 0 });
        const method = header(answer, 'x-method');
        if (method !== undefined && !/^[A-Z]+$/.test(method)) failure = `handled with the method ${JSON.stringify(method)}`;
        if (answer.status >= 200) answers.push(`${answer.status} ${decodeURIComponent(header(answer, 'x-seen') ?? '')}`);
      }
    } catch (error) {
      failure = (error as Error).message;
    }
    wire.destroy();
    return { answers, closed, ...(failure ? { failure } : {}) };
  }

  /** Runs `work` on every item, `width` at a time. */
  async function inParallel<T>(items: T[], width: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < items.length) {
        const index = next++;
        await work(items[index] as T, index);
      }
    };
    await Promise.all(Array.from({ length: width }, worker));
  }

  const shown = (raw: Buffer): string => JSON.stringify(raw.toString('latin1'));

  it('1,000 random inputs: no crash, handler methods are upper-case tokens, every connection answered validly or closed in bounded time', async () => {
    const random = generator(0x5eed);
    const inputs = Array.from({ length: 1000 }, (_, i) => input(random, i));
    const failures: string[] = [];
    await inParallel(inputs, 100, async (raw, i) => {
      const got = await outcome(raw);
      if (!got.closed) failures.push(`#${i} still open after 2 s: sent ${shown(raw)}`);
      if (got.failure) failures.push(`#${i} ${got.failure}: sent ${shown(raw)}`);
    });
    expect(failures).toEqual([]);
    expect(methods.filter((method) => !/^[A-Z]+$/.test(method))).toEqual([]);
    const after = await ask(fuzzed.port, request('GET', '/after-fuzz'));
    expect(after.answer.status).toBe(200);
  });

  it('400 random inputs cut into random pieces are answered exactly as when sent at once', async () => {
    const random = generator(0xc075);
    const int = (n: number): number => Math.floor(random() * n);
    const cases = Array.from({ length: 400 }, (_, i) => {
      const raw = input(random, i);
      const cuts = [...new Set(Array.from({ length: 1 + int(6) }, () => int(raw.length)))].sort((a, b) => a - b);
      return { raw, cuts };
    });
    const failures: string[] = [];
    await inParallel(cases, 100, async ({ raw, cuts }, i) => {
      const whole = await outcome(raw);
      const pieces = await outcome(raw, cuts);
      if (JSON.stringify(whole) !== JSON.stringify(pieces)) failures.push(`#${i} at once ${JSON.stringify(whole)}, cut at ${cuts.join(',')} ${JSON.stringify(pieces)}: sent ${shown(raw)}`);
    });
    expect(failures).toEqual([]);
  });
});
