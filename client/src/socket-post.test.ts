/**
 * The call lane's POST on sockets (socket-post.ts), against real servers started here on port 0:
 * node:http servers, and raw `net` servers that write exact bytes where the framing is the point.
 * Each server counts the connections it sees, so "kept alive" and "not reused" are read from the
 * server's side: a connection that must not be reused is closed by the client (the server sees it
 * close) and the next request arrives on a new one.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LanePost, PostAnswer } from './gateway/upstream.ts';
import { AnswerFramingError, AnswerParser } from './http1-answer.ts';
import { socketPost } from './socket-post.ts';

type Posted = ReturnType<LanePost>;

/** What a server saw of its connections, in the order they came. */
interface Seen {
  connections: number;
  open: number;
  mostOpen: number;
  /** One per connection: resolved when that connection has closed. */
  closed: Promise<void>[];
}

interface RawRequest {
  head: string;
  body: Buffer;
  /** Which of the server's connections it came on (1 for the first). */
  connection: number;
  socket: net.Socket;
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function watch(server: net.Server): Seen {
  const seen: Seen = { connections: 0, open: 0, mostOpen: 0, closed: [] };
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    seen.connections++;
    seen.open++;
    seen.mostOpen = Math.max(seen.mostOpen, seen.open);
    sockets.add(socket);
    seen.closed.push(
      new Promise((resolve) =>
        socket.once('close', () => {
          seen.open--;
          sockets.delete(socket);
          resolve();
        }),
      ),
    );
  });
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return seen;
}

async function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  server.listen(0, host);
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** A server that reads each request (head, then a Content-Length body) and lets `answer` write bytes on the socket. */
async function rawServer(answer: (request: RawRequest) => void | Promise<void>, host = '127.0.0.1'): Promise<{ url: URL; seen: Seen; requests: RawRequest[] }> {
  const server = net.createServer();
  const seen = watch(server);
  const requests: RawRequest[] = [];
  server.on('connection', (socket) => {
    const connection = seen.connections;
    let buffer = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (data: Buffer) => {
      buffer = Buffer.concat([buffer, data]);
      for (;;) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buffer.toString('latin1', 0, end);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffer.length < end + 4 + length) return;
        const request = { head, body: buffer.subarray(end + 4, end + 4 + length), connection, socket };
        buffer = buffer.subarray(end + 4 + length);
        requests.push(request);
        void answer(request);
      }
    });
  });
  const port = await listen(server, host);
  return { url: new URL(`http://${host.includes(':') ? `[${host}]` : host}:${port}/mcp`), seen, requests };
}

async function httpServer(handler: http.RequestListener, options: http.ServerOptions = {}): Promise<{ url: URL; seen: Seen; server: http.Server }> {
  const server = http.createServer(options, handler);
  const seen = watch(server);
  const port = await listen(server);
  return { url: new URL(`http://127.0.0.1:${port}/mcp`), seen, server };
}

/** An answer with a Content-Length body. */
function ok(body: string, extra = ''): string {
  return `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

async function readAll(chunks: AsyncIterator<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let read = await chunks.next(); !read.done; read = await chunks.next()) parts.push(Buffer.from(read.value));
  return Buffer.concat(parts);
}

/** The whole answer, its body as text. */
async function whole(posted: Posted): Promise<{ status: number; contentType: string | null; body: string }> {
  const answer = await within(posted.answer, 'the answer');
  return { status: answer.status, contentType: answer.contentType, body: (await within(readAll(answer.chunks), 'the body')).toString('utf8') };
}

/** Where a request failed: its answer, or its chunks once the head was read (undefined: it did not fail). */
async function failure(posted: Posted): Promise<{ stage: 'answer' | 'chunks'; error: unknown } | undefined> {
  let answer: PostAnswer;
  try {
    answer = await within(posted.answer, 'the answer');
  } catch (error) {
    return { stage: 'answer', error };
  }
  try {
    await within(readAll(answer.chunks), 'the body');
  } catch (error) {
    return { stage: 'chunks', error };
  }
  return undefined;
}

/** The first connection closes (`closing` says why) and the next request arrives on a second one, answered `next`. */
async function notReused(post: LanePost, url: URL, seen: Seen, next: string, closing: string): Promise<void> {
  await within(seen.closed[0] as Promise<void>, closing);
  expect((await whole(post(url, { headers: {}, body: 'next' }))).body).toBe(next);
  expect(seen.connections).toBe(2);
}

/** A promise that must settle soon: a hang fails the test with a message instead of its timeout. */
function within<T>(promise: Promise<T>, what: string, ms = 3_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function signal(): { promise: Promise<void>; send: () => void } {
  let send: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => (send = resolve));
  return { promise, send };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const json = { 'content-type': 'application/json' };

describe('socketPost: a request and its answer', () => {
  it('sends the exact UTF-8 body with its byte length, and reads a Content-Length JSON answer byte for byte', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { text: 'héllo — 日本語 🎉' } });
    expect(Buffer.byteLength(body)).toBeGreaterThan(body.length);
    const received: { method?: string; url?: string; length?: string; body?: Buffer } = {};
    const sent = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { echo: 'ünïcödé ✓ 🚀' } }), 'utf8');
    const { url } = await httpServer(async (req, res) => {
      const parts: Buffer[] = [];
      for await (const part of req) parts.push(part as Buffer);
      Object.assign(received, { method: req.method, url: req.url, length: req.headers['content-length'], body: Buffer.concat(parts) });
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': sent.length });
      res.end(sent);
    });
    const post = socketPost();
    const answer = await within(post(new URL('/mcp/x?a=1&b=%20c', url), { headers: json, body }).answer, 'the answer');
    expect(answer.status).toBe(200);
    expect(answer.contentType).toBe('application/json; charset=utf-8');
    expect((await readAll(answer.chunks)).equals(sent)).toBe(true);
    expect(received.method).toBe('POST');
    expect(received.url).toBe('/mcp/x?a=1&b=%20c');
    expect(received.length).toBe(String(Buffer.byteLength(body)));
    expect(received.body?.equals(Buffer.from(body, 'utf8'))).toBe(true);
  });

  it('reads a large answer that spans many reads, Content-Length or chunked by node:http, byte for byte', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 7).map((_, i) => (i * 31 + (i >> 11)) % 256);
    const { url } = await httpServer((req, res) => {
      req.resume();
      if (req.url === '/length') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length });
        res.end(big);
        return;
      }
      // No length: node:http sends chunked, one chunk per write.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let at = 0; at < big.length; at += 100_003) res.write(big.subarray(at, at + 100_003));
      res.end();
    });
    const post = socketPost();
    for (const target of ['/length', '/chunked']) {
      const answer = await within(post(new URL(target, url), { headers: {}, body: '' }).answer, target);
      const bytes = await within(readAll(answer.chunks), target);
      expect(bytes.length).toBe(big.length);
      expect(bytes.equals(big)).toBe(true);
    }
  });

  it('reads a chunked answer chunk by chunk as it comes (the first before the server sends the next), with extensions and trailers', async () => {
    const firstRead = signal();
    const { url, seen } = await rawServer(async ({ socket, connection }) => {
      if (connection > 1 || seen.connections > 1) return;
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n');
      // The rest leaves only once the client has read "hello": the read cannot have waited for the end.
      await firstRead.promise;
      socket.write('B;a=b;c="d"\r\n, \r\n0\r\n\r\nxx\r\n');
      await sleep(10);
      socket.write('7\r\n 日本\r\n0\r\nX-Checksum: 42\r\nX-More: yes\r\n\r\n');
    });
    const post = socketPost();
    const answer = await within(post(url, { headers: {}, body: '{}' }).answer, 'the answer');
    expect(answer.status).toBe(200);
    expect(answer.contentType).toBe('text/event-stream');
    const first = await within(answer.chunks.next(), 'the first chunk');
    expect(first.done).toBe(false);
    expect(Buffer.from(first.value as Uint8Array).toString()).toBe('hello');
    firstRead.send();
    // A chunk's data is counted, never scanned: the CRLF and "0" inside the 11-byte chunk are data.
    expect((await within(readAll(answer.chunks), 'the rest')).toString('utf8')).toBe(', \r\n0\r\n\r\nxx 日本');
  });

  it('ends the answer exactly at the trailers: the connection carries the next request', async () => {
    const { url, seen } = await rawServer(({ socket, connection, body }) => {
      if (body.toString() === 'first') socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0;last\r\nExpires: never\r\nX-A: 1\r\n\r\n');
      else socket.write(ok(`second on ${connection}`));
    });
    const post = socketPost();
    expect(await whole(post(url, { headers: {}, body: 'first' }))).toEqual({ status: 200, contentType: null, body: 'abc' });
    expect((await whole(post(url, { headers: {}, body: 'second' }))).body).toBe('second on 1');
    expect(seen.connections).toBe(1);
  });

  it('reads a 204 and a Content-Length: 0 answer as empty bodies, and keeps the connection', async () => {
    const { url, seen } = await rawServer(({ socket, body }) => {
      socket.write(body.toString() === 'a' ? 'HTTP/1.1 204 No Content\r\nX-Id: 1\r\n\r\n' : 'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n');
    });
    const post = socketPost();
    expect(await whole(post(url, { headers: {}, body: 'a' }))).toEqual({ status: 204, contentType: null, body: '' });
    expect(await whole(post(url, { headers: {}, body: 'b' }))).toEqual({ status: 202, contentType: null, body: '' });
    expect(await whole(post(url, { headers: {}, body: 'a' }))).toEqual({ status: 204, contentType: null, body: '' });
    expect(seen.connections).toBe(1);
  });

  it('posts to an IPv6 literal origin, its Host header in brackets', async () => {
    const { url, requests } = await rawServer(({ socket }) => void socket.write(ok('six')), '::1');
    const post = socketPost();
    expect((await whole(post(url, { headers: {}, body: 'x' }))).body).toBe('six');
    expect(requests[0]?.head).toMatch(new RegExp(`\\r\\nhost: \\[::1\\]:${url.port}\\r\\n`, 'i'));
  });
});

describe('AnswerParser', () => {
  // An early hint, then a chunked answer with extensions, a chunk holding CRLFs, and trailers.
  const answer = Buffer.from(
    'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ntransfer-encoding: Chunked\r\n\r\n' +
      '4;a=1\r\n{"a"\r\n8\r\n:"\r\n\r\n"}\r\n0\r\nX-T: 1\r\n\r\n',
    'latin1',
  );

  function parse(pieces: Buffer[]): { heads: [number, string | null][]; body: string; done: number; reusable: boolean } {
    const heads: [number, string | null][] = [];
    const body: Buffer[] = [];
    let done = 0;
    const parser = new AnswerParser({ head: (status, type) => heads.push([status, type]), body: (chunk) => body.push(Buffer.from(chunk)), done: () => done++ });
    for (const piece of pieces) parser.feed(piece);
    expect(parser.finished).toBe(true);
    return { heads, body: Buffer.concat(body).toString('latin1'), done, reusable: parser.reusable };
  }

  it('reads an answer the same way however its bytes are split', () => {
    const expected = { heads: [[200, 'application/json']], body: '{"a":"\r\n\r\n"}', done: 1, reusable: true };
    expect(parse([answer])).toEqual(expected);
    for (let at = 1; at < answer.length; at++) expect(parse([answer.subarray(0, at), answer.subarray(at)])).toEqual(expected);
    expect(parse([...answer].map((byte) => Buffer.from([byte])))).toEqual(expected);
  });

  it('marks the connection not reusable when bytes follow the answer, however they arrive', () => {
    expect(parse([Buffer.concat([answer, Buffer.from('H')])]).reusable).toBe(false);
    expect(parse([answer, Buffer.from('HTTP/1.1 200 OK\r\n')]).reusable).toBe(false);
  });
});

describe('socketPost: keep-alive', () => {
  it('sends two sequential requests to one origin on one connection', async () => {
    const { url, seen } = await httpServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`answer to ${req.url}`);
    });
    const post = socketPost();
    expect((await whole(post(new URL('/one', url), { headers: {}, body: '1' }))).body).toBe('answer to /one');
    expect((await whole(post(new URL('/two', url), { headers: {}, body: '2' }))).body).toBe('answer to /two');
    expect(seen.connections).toBe(1);
  });

  // Each answer is read whole, then the client closes the connection (the server kept it open
  // but sees it close) and the next request opens a new one.
  const notKept: [string, string, string][] = [
    ['an answer with Connection: close', ok('closing', 'Connection: keep-alive, Close\r\n'), 'closing'],
    ['an HTTP/1.0 answer', 'HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\nversion', 'version'],
    ['an answer with both Transfer-Encoding and Content-Length (the chunks count)', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboth\r\n0\r\n\r\n', 'both'],
    ['an answer followed by more bytes in the same write', `${ok('extra')}HTTP/1.1 200 OK\r\n`, 'extra'],
  ];
  it.each(notKept)('reads %s whole and does not reuse its connection', async (_, bytes, body) => {
    const { url, seen } = await rawServer(({ socket, connection }) => void socket.write(connection === 1 ? bytes : ok(`fresh on ${connection}`)));
    const post = socketPost();
    expect(await whole(post(url, { headers: {}, body: 'x' }))).toMatchObject({ status: 200, body });
    await notReused(post, url, seen, 'fresh on 2', 'the client closing the connection');
  });

  it('reads an answer delimited by the connection end, and opens a new connection for the next', async () => {
    const { url, seen } = await rawServer(async ({ socket, connection }) => {
      if (connection > 1) return void socket.write(ok('fresh'));
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ');
      await sleep(20);
      socket.end('part two');
    });
    const post = socketPost();
    expect(await whole(post(url, { headers: {}, body: 'x' }))).toEqual({ status: 200, contentType: 'text/plain', body: 'part one, part two' });
    expect((await whole(post(url, { headers: {}, body: 'y' }))).body).toBe('fresh');
    expect(seen.connections).toBe(2);
  });

  it('does not reuse a connection node:http closed after its keep-alive timeout', async () => {
    const { url, seen } = await httpServer(
      (req, res) => {
        req.resume();
        res.end(`on ${seen.connections}`);
      },
      { keepAliveTimeout: 50 },
    );
    const post = socketPost();
    expect((await whole(post(url, { headers: {}, body: 'x' }))).body).toBe('on 1');
    await notReused(post, url, seen, 'on 2', 'the server closing the idle connection');
  });

  it('does not reuse a connection a server ended after answering (no Connection: close said)', async () => {
    const { url, seen } = await rawServer(({ socket, connection }) => void socket.end(ok(`on ${connection}`)));
    const post = socketPost();
    expect((await whole(post(url, { headers: {}, body: 'x' }))).body).toBe('on 1');
    await notReused(post, url, seen, 'on 2', 'the connection closing');
  });

  it('closes a kept-alive connection once it was idle for idleMs', async () => {
    const { url, seen } = await rawServer(({ socket }) => void socket.write(ok('idle next')));
    const post = socketPost({ idleMs: 50 });
    expect((await whole(post(url, { headers: {}, body: 'x' }))).body).toBe('idle next');
    // The server never closes: the close it sees is the client's.
    await notReused(post, url, seen, 'idle next', 'the client closing the idle connection');
  });

  it('closes an idle kept-alive connection on which bytes arrive, and does not reuse it', async () => {
    const { url, seen } = await rawServer(async ({ socket, connection }) => {
      socket.write(ok(`on ${connection}`));
      if (connection > 1) return;
      // A moment later, while the connection is idle: bytes no request asked for.
      await sleep(30);
      socket.write(ok('garbage'));
    });
    const post = socketPost();
    expect((await whole(post(url, { headers: {}, body: 'x' }))).body).toBe('on 1');
    await notReused(post, url, seen, 'on 2', 'the client closing the out-of-step connection');
  });
});

describe('socketPost: informational answers and redirects', () => {
  it('skips 1xx answers and hands back the final one', async () => {
    const { url, seen } = await rawServer(async ({ socket }) => {
      socket.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n');
      await sleep(10);
      socket.write('HTTP/1.1 103 Early Hints\r\nLink: </b.css>; rel=preload\r\n\r\n');
      await sleep(10);
      socket.write(ok('{"final":true}').replace('text/plain', 'application/json'));
    });
    const post = socketPost();
    expect(await whole(post(url, { headers: {}, body: 'x' }))).toEqual({ status: 200, contentType: 'application/json', body: '{"final":true}' });
    expect((await whole(post(url, { headers: {}, body: 'y' }))).status).toBe(200);
    expect(seen.connections).toBe(1);
  });

  it('fails on a 101 (the upstream switched protocols) and closes the connection', async () => {
    const { url, seen } = await rawServer(({ socket }) => void socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'));
    const post = socketPost();
    const failed = await failure(post(url, { headers: {}, body: 'x' }));
    expect(failed?.stage).toBe('answer');
    expect(failed?.error).toBeInstanceOf(AnswerFramingError);
    await within(seen.closed[0] as Promise<void>, 'the client closing the connection');
  });

  it('hands a 302 back as it came and never requests its Location', async () => {
    let targeted = 0;
    const { url, seen } = await httpServer((req, res) => {
      req.resume();
      if (req.url === '/target') {
        targeted++;
        res.end('the target');
        return;
      }
      res.writeHead(302, { location: '/target', 'content-type': 'text/html' });
      res.end('moved to /target');
    });
    const post = socketPost();
    expect(await whole(post(url, { headers: {}, body: 'x' }))).toEqual({ status: 302, contentType: 'text/html', body: 'moved to /target' });
    await sleep(50);
    expect(targeted).toBe(0);
    expect(seen.connections).toBe(1);
  });
});

describe('socketPost: malformed answers', () => {
  const big = `X-Big: ${'b'.repeat(2000)}\r\n`;
  // [case, bytes the server writes (then, with `end`, it closes), where the request fails, options]
  const malformed: [string, string[], 'answer' | 'chunks', { end?: boolean; maxHeaderBytes?: number }][] = [
    ['a status line that is not one', ['HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok'], 'answer', {}],
    ['a status line of another protocol', ['ICY 200 OK\r\nContent-Length: 2\r\n\r\nok'], 'answer', {}],
    ['a header line without colon', ['HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok'], 'answer', {}],
    ['a folded header line', ['HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 2\r\n\r\nok'], 'answer', {}],
    ['two differing Content-Length headers', ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok'], 'answer', {}],
    ['a Content-Length listing differing values', ['HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok'], 'answer', {}],
    ['a Content-Length that is not a number', ['HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok'], 'answer', {}],
    // The head is handed back before its body's framing is judged: these fail on the first read.
    ['a Transfer-Encoding other than chunked', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok'], 'answer', {}],
    ['a Transfer-Encoding of gzip then chunked', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'], 'answer', {}],
    ['a bad chunk size', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\nok\r\n0\r\n\r\n'], 'chunks', {}],
    ['a chunk size of more than 8 hex digits', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100000000\r\nok\r\n0\r\n\r\n'], 'chunks', {}],
    ['a chunk not followed by CRLF', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXY0\r\n\r\n'], 'chunks', {}],
    ['headers larger than maxHeaderBytes', [`HTTP/1.1 200 OK\r\n${big}Content-Length: 2\r\n\r\nok`], 'answer', { maxHeaderBytes: 1024 }],
    ['headers larger than maxHeaderBytes, their end not yet come', [`HTTP/1.1 200 OK\r\n${big}`], 'answer', { maxHeaderBytes: 1024 }],
    ['trailers larger than maxHeaderBytes', [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n${big}\r\n`], 'chunks', { maxHeaderBytes: 1024 }],
    ['a head cut off by the connection end', ['HTTP/1.1 200 OK\r\nContent-Len'], 'answer', { end: true }],
    ['a Content-Length body cut off by the connection end', ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', 'de'], 'chunks', { end: true }],
    ['a chunked body cut off before its last chunk', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n', '3\r\nabc\r\n'], 'chunks', { end: true }],
  ];
  it.each(malformed)('fails on %s with AnswerFramingError and does not reuse the connection', async (_, pieces, stage, { end, maxHeaderBytes }) => {
    const { url, seen } = await rawServer(async ({ socket, connection }) => {
      if (connection > 1) return void socket.write(ok(`fresh on ${connection}`));
      for (const piece of pieces) {
        socket.write(piece);
        await sleep(5);
      }
      if (end) socket.end();
    });
    const post = socketPost(maxHeaderBytes ? { maxHeaderBytes } : {});
    const failed = await failure(post(url, { headers: {}, body: 'x' }));
    expect(failed?.stage).toBe(stage);
    expect(failed?.error).toBeInstanceOf(AnswerFramingError);
    // The server leaves the connection open (unless it ended it): the close it sees is the client's.
    await notReused(post, url, seen, 'fresh on 2', 'the connection closing');
  });

  it('holds the head to maxHeaderBytes exactly: a head of that size passes, one byte more fails', async () => {
    const head = (size: number): string => {
      const bare = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: \r\n\r\n';
      return bare.replace('X-Pad: ', `X-Pad: ${'p'.repeat(size - bare.length)}`);
    };
    expect(head(512).length).toBe(512);
    const { url } = await rawServer(({ socket, body }) => void socket.write(`${head(Number(body.toString()))}ok`));
    const post = socketPost({ maxHeaderBytes: 512 });
    expect((await whole(post(url, { headers: {}, body: '512' }))).body).toBe('ok');
    const failed = await failure(post(url, { headers: {}, body: '513' }));
    expect(failed?.stage).toBe('answer');
    expect(failed?.error).toBeInstanceOf(AnswerFramingError);
  });
});

describe('socketPost: request headers', () => {
  const bad: [string, Record<string, string>][] = [
    ['a value with CR LF (a header smuggled in)', { 'x-a': 'v\r\nx-injected: 1' }],
    ['a value with a bare LF', { 'x-a': 'v\nx-injected: 1' }],
    ['a value with a bare CR', { 'x-a': 'v\rx' }],
    ['a value with NUL', { 'x-a': 'v\0' }],
    ['a name with a space', { 'x a': 'v' }],
    ['a name with a colon', { 'x-a:': 'v' }],
    ['a name with CR LF', { 'x-a\r\nx-injected': 'v' }],
    ['an empty name', { '': 'v' }],
  ];
  it.each(bad)('refuses %s with TypeError before anything reaches the server', async (_, headers) => {
    const { url, seen, requests } = await rawServer(({ socket }) => void socket.write(ok('fine')));
    const post = socketPost();
    await expect(within(post(url, { headers, body: 'bad' }).answer, 'the refusal')).rejects.toBeInstanceOf(TypeError);
    // A request sent after it is the server's first and only, on its only connection.
    expect((await whole(post(url, { headers: { 'x-a': 'v' }, body: 'good' }))).body).toBe('fine');
    expect(requests.map((request) => request.body.toString())).toEqual(['good']);
    expect(seen.connections).toBe(1);
    expect(requests[0]?.head).not.toMatch(/injected/);
  });

  it('writes Host, Content-Length and the framing itself: the caller cannot give them', async () => {
    const raw: string[][] = [];
    const { url, seen } = await httpServer(async (req, res) => {
      raw.push(req.rawHeaders);
      const parts: Buffer[] = [];
      for await (const part of req) parts.push(part as Buffer);
      res.end(Buffer.concat(parts));
    });
    const post = socketPost();
    const headers = { Host: 'evil.example', 'Content-Length': '1', 'TRANSFER-ENCODING': 'chunked', connection: 'close', 'X-Kept': 'yes, kept' };
    expect((await whole(post(url, { headers, body: 'ðe body' }))).body).toBe('ðe body');
    expect((await whole(post(url, { headers, body: 'again' }))).body).toBe('again');
    const named = (rawHeaders: string[], name: string): string[] => rawHeaders.filter((_, i) => i % 2 === 1 && rawHeaders[i - 1]?.toLowerCase() === name);
    expect(named(raw[0] as string[], 'host')).toEqual([url.host]);
    expect(named(raw[0] as string[], 'content-length')).toEqual([String(Buffer.byteLength('ðe body'))]);
    expect(named(raw[0] as string[], 'transfer-encoding')).toEqual([]);
    expect(named(raw[0] as string[], 'connection')).toEqual([]);
    expect(named(raw[0] as string[], 'x-kept')).toEqual(['yes, kept']);
    // "connection: close" was not sent: the connection was kept for the second request.
    expect(seen.connections).toBe(1);
  });
});

describe('socketPost: cancel', () => {
  it('cancel() during a slow body fails its chunks with AbortError and closes the connection', async () => {
    const { url, seen } = await httpServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n'); // and nothing more: the answer is slow
    });
    const post = socketPost();
    const posted = post(url, { headers: {}, body: 'x' });
    const answer = await within(posted.answer, 'the answer');
    expect(Buffer.from((await within(answer.chunks.next(), 'the first chunk')).value as Uint8Array).toString()).toBe('data: first\n\n');
    const next = answer.chunks.next();
    posted.cancel();
    await expect(within(next, 'the next chunk')).rejects.toMatchObject({ name: 'AbortError' });
    await within(seen.closed[0] as Promise<void>, 'the server seeing its connection closed');
  });

  it('cancel() before the head came fails the answer with AbortError and closes the connection', async () => {
    const arrived = signal();
    const { url, seen } = await rawServer(() => arrived.send()); // never answers
    const post = socketPost();
    const posted = post(url, { headers: {}, body: 'x' });
    await within(arrived.promise, 'the request arriving');
    posted.cancel();
    await expect(within(posted.answer, 'the answer')).rejects.toMatchObject({ name: 'AbortError' });
    await within(seen.closed[0] as Promise<void>, 'the server seeing its connection closed');
  });

  it('cancel() right away fails the answer with AbortError', async () => {
    const { url } = await rawServer(({ socket }) => void socket.write(ok('late')));
    const post = socketPost();
    const posted = post(url, { headers: {}, body: 'x' });
    posted.cancel();
    await expect(within(posted.answer, 'the answer')).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('cancel() of a request waiting for a free connection fails it with AbortError; the others go on', async () => {
    const release = signal();
    const arrived = signal();
    const { url, seen, requests } = await rawServer(async ({ socket, body }) => {
      if (body.toString() === 'slow') {
        arrived.send();
        await release.promise;
      }
      socket.write(ok(`answer to ${body.toString()}`));
    });
    const post = socketPost({ maxSockets: 1 });
    const slow = post(url, { headers: {}, body: 'slow' });
    const waiting = post(url, { headers: {}, body: 'waiting' });
    await within(arrived.promise, 'the slow request arriving');
    waiting.cancel();
    await expect(within(waiting.answer, 'the waiting answer')).rejects.toMatchObject({ name: 'AbortError' });
    release.send();
    expect((await whole(slow)).body).toBe('answer to slow');
    expect((await whole(post(url, { headers: {}, body: 'after' }))).body).toBe('answer to after');
    expect(requests.map((request) => request.body.toString())).toEqual(['slow', 'after']);
    expect(seen.connections).toBe(1);
  });

  it('chunks.return() before the end closes the connection, and the next request opens a new one', async () => {
    const { url, seen } = await rawServer(({ socket, connection }) => {
      if (connection > 1) return void socket.write(ok('fresh'));
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part');
    });
    const post = socketPost();
    const answer = await within(post(url, { headers: {}, body: 'x' }).answer, 'the answer');
    expect(Buffer.from((await within(answer.chunks.next(), 'the first chunk')).value as Uint8Array).toString()).toBe('only part');
    expect(await answer.chunks.return?.()).toEqual({ done: true, value: undefined });
    await notReused(post, url, seen, 'fresh', 'the server seeing its connection closed');
  });
});

describe('socketPost: maxSockets', () => {
  it('opens at most maxSockets connections to an origin; the requests beyond wait and complete', async () => {
    const { url, seen } = await httpServer(async (req, res) => {
      req.resume();
      await sleep(60);
      res.end(`slow ${req.url}`);
    });
    const post = socketPost({ maxSockets: 2 });
    const answers = await Promise.all(['/1', '/2', '/3'].map((target) => whole(post(new URL(target, url), { headers: {}, body: target }))));
    expect(answers.map((answer) => answer.body)).toEqual(['slow /1', 'slow /2', 'slow /3']);
    expect(seen.mostOpen).toBe(2);
    expect(seen.connections).toBe(2);
  });

  it('gives a waiting request a new connection when the busy one closes instead of being freed', async () => {
    const { url, seen } = await rawServer(({ socket, connection, body }) => void socket.write(ok(`${body.toString()} on ${connection}`, connection === 1 ? 'Connection: close\r\n' : '')));
    const post = socketPost({ maxSockets: 1 });
    const answers = await Promise.all(['a', 'b'].map((body) => whole(post(url, { headers: {}, body }))));
    // Were the freed slot not handed on, "b" would wait forever.
    expect(answers.map((answer) => answer.body)).toEqual(['a on 1', 'b on 2']);
    expect(seen.connections).toBe(2);
  });
});

describe('socketPost: https', () => {
  let directory = '';
  let cert = '';
  let key = '';

  /** A self-signed certificate and its key, for `name` and the subject alternative names `san`. */
  async function selfSigned(name: string, san: string): Promise<{ cert: string; key: string }> {
    const [certFile, keyFile] = [path.join(directory, `${name}.pem`), path.join(directory, `${name}.key.pem`)];
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`, '-keyout', keyFile, '-out', certFile]);
    const [certText, keyText] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    return { cert: certText, key: keyText };
  }

  beforeAll(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'socket-post-'));
    ({ cert, key } = await selfSigned('localhost', 'DNS:localhost,IP:127.0.0.1'));
  });

  afterAll(async () => {
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  async function httpsServer(credentials = { cert, key }): Promise<{ port: number; seen: Seen }> {
    const server = https.createServer(credentials, async (req, res) => {
      const parts: Buffer[] = [];
      for await (const part of req) parts.push(part as Buffer);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ tls: (req.socket as unknown as { encrypted?: boolean }).encrypted === true, body: Buffer.concat(parts).toString() }));
    });
    const seen = watch(server);
    return { port: await listen(server), seen };
  }

  it('posts over TLS to a server whose certificate it was given as ca, by name and by IP, keeping the connection', async () => {
    const { port, seen } = await httpsServer();
    const post = socketPost({ ca: cert });
    for (const host of ['localhost', '127.0.0.1']) {
      const url = new URL(`https://${host}:${port}/mcp`);
      expect(await whole(post(url, { headers: {}, body: `to ${host} ✓` }))).toEqual({ status: 200, contentType: 'application/json', body: JSON.stringify({ tls: true, body: `to ${host} ✓` }) });
      expect((await whole(post(url, { headers: {}, body: 'again' }))).status).toBe(200);
    }
    // One connection per origin (localhost and 127.0.0.1 are two origins).
    expect(seen.connections).toBe(2);
  });

  it('refuses a trusted certificate for another name, by name and by IP (no SNI for an IP), before any request is written', async () => {
    const other = await selfSigned('other.example', 'DNS:other.example');
    const { port, seen } = await httpsServer(other);
    const post = socketPost({ ca: other.cert });
    for (const host of ['localhost', '127.0.0.1']) {
      await expect(within(post(new URL(`https://${host}:${port}/mcp`), { headers: { authorization: 'Bearer secret' }, body: 'x' }).answer, 'the answer')).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    }
    // The server saw the connections, never a request (it would have answered one).
    expect(seen.connections).toBe(2);
  });

  it('refuses a certificate it was not given (not trusted)', async () => {
    const { port } = await httpsServer();
    const post = socketPost();
    await expect(within(post(new URL(`https://localhost:${port}/mcp`), { headers: {}, body: 'x' }).answer, 'the answer')).rejects.toMatchObject({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  });
});

describe('socketPost: what it cannot reach', () => {
  it('refuses a protocol other than http and https with TypeError', async () => {
    const post = socketPost();
    await expect(post(new URL('ftp://127.0.0.1/mcp'), { headers: {}, body: 'x' }).answer).rejects.toBeInstanceOf(TypeError);
    await expect(post(new URL('file:///etc/passwd'), { headers: {}, body: 'x' }).answer).rejects.toBeInstanceOf(TypeError);
  });

  it('fails a request to a closed port (connection refused)', async () => {
    const server = net.createServer();
    const port = await listen(server);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const post = socketPost();
    await expect(within(post(new URL(`http://127.0.0.1:${port}/mcp`), { headers: {}, body: 'x' }).answer, 'the answer')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
