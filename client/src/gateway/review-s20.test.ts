/**
 * Attacks on what session 20 landed: the gateway's HTTP/1.1 server on raw sockets
 * (http1-serve.ts, http1-request.ts, http1-framing.ts), from a raw socket as an internet client
 * would, with no database.
 */
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { serveHttp1 } from '../http1-serve.ts';
import type { Served } from '../node-serve.ts';

type Handler = Parameters<typeof serveHttp1>[0];

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
let served: Served | undefined;

afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function serve(handler: Handler, options: Parameters<typeof serveHttp1>[1] = {}): Promise<Served> {
  served = await serveHttp1(handler, options);
  return served;
}

async function connect(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  return socket;
}

/** What the server sent until `until` holds of it, it closed the connection, or `ms` passed (latin1). */
function received(socket: net.Socket, until: (text: string) => boolean = () => false, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const done = (): void => resolve(text);
    socket.on('data', (data: Buffer) => {
      text += data.toString('latin1');
      if (until(text)) done();
    });
    socket.once('close', done);
    setTimeout(done, ms).unref();
  });
}

const answered = (text: string): boolean => text.includes('\r\n\r\n');

/** The JS heap in use after a full collection. */
function heapUsed(): number {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
  return process.memoryUsage().heapUsed;
}

describe('resource exhaustion', () => {
  // A chunked body of 1-byte chunks costs the client 6 bytes per body byte; each chunk was kept as
  // a Buffer view of its own (~100 bytes of heap) until the body's end: a 4 MiB body (24 MiB sent,
  // no credential needed, the body is read before the handler runs) held ~400 MiB, and a few such
  // connections at once exhausted the gateway's heap.
  it('holds a body of a million 1-byte chunks in memory proportional to its bytes, not to its chunk count', async () => {
    let length = -1;
    const { port } = await serve(async (req) => {
      length = (await req.text()).length;
      return { status: 200, headers: {}, body: 'ok' };
    });
    const socket = await connect(port);
    const answer = received(socket, answered);
    const before = heapUsed();
    const n = 1024 * 1024;
    const head = Buffer.from('POST /mcp HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n', 'latin1');
    await new Promise((resolve) => socket.write(Buffer.concat([head, Buffer.from('1\r\nx\r\n'.repeat(n), 'latin1')]), resolve));
    await sleep(1500); // the server reads the 6 MiB
    const held = heapUsed() - before;
    socket.write('0\r\n\r\n');
    expect((await answer).startsWith('HTTP/1.1 200 ')).toBe(true);
    socket.destroy();
    expect(length).toBe(n);
    // The body's own bytes live outside the JS heap (a Buffer's store): what the heap holds is per-chunk overhead.
    expect(held).toBeLessThan(16 * 1024 * 1024);
  }, 30_000);
});

describe('the answer lifecycle against a faulty handler', () => {
  const statuses = (text: string): string[] => [...text.matchAll(/HTTP\/1\.1 (\d\d\d) /g)].map((m) => m[1] as string);

  /** What a client that pipelines GET /a and GET /b receives in 800 ms, /a answered by a streamed answer opened with `open`. */
  async function pipelined(open: (sink: { write(text: string): void; end(last?: string): void }) => void): Promise<string> {
    const { port } = await serve(async (req) => {
      if (new URL(req.url).pathname === '/b') return { status: 200, headers: { 'x-for': 'b' }, body: 'b' };
      return { status: 200, headers: { 'x-for': 'a' }, open };
    });
    const socket = await connect(port);
    const text = received(socket, () => false, 800);
    socket.write('GET /a HTTP/1.1\r\nHost: gw\r\n\r\nGET /b HTTP/1.1\r\nHost: gw\r\n\r\n');
    const got = await text;
    socket.destroy();
    return got;
  }

  // The answer to /a was whole when open() threw, and /b was already being handled: the failure
  // path then wrote a 500 for /a in the middle of /b's exchange and cleared /b as the request in
  // hand, so that /b's own answer was dropped (a proxy reusing the connection gives the next
  // client an answer that is not its own).
  it('an answer ended before its open() throws stays the only answer, and the next request is still answered', async () => {
    const got = await pipelined((sink) => {
      sink.end('a');
      throw new Error('after its end');
    });
    expect(statuses(got)).toEqual(['200', '200']);
    expect(got).toContain('x-for: b');
  });

  // open() threw before anything was written: the 500 answers /a; the sink it kept must write no
  // more, or its late end() puts a second answer for /a on the connection, read as /b's.
  it('a sink whose open() threw writes nothing after the 500 that replaced it', async () => {
    const got = await pipelined((sink) => {
      setTimeout(() => sink.end('late'), 50);
      throw new Error('before anything');
    });
    expect(statuses(got)).toEqual(['500', '200']);
    expect(got).not.toContain('x-for: a');
    expect(got).not.toContain('late');
  });
});

describe('the deadlines', () => {
  // A client that pipelines requests and never reads their answers holds the connection in
  // 'draining' (the next request is read only once the last answer has left): neither idle nor
  // receiving a request, it was swept by neither deadline and stayed open for good, with the
  // answers it would not read held in memory. Unauthenticated answers suffice: they are small, but
  // the client pipelines as many as it likes.
  it('closes a connection whose client reads none of its answers', async () => {
    const big = 'x'.repeat(1024 * 1024);
    const { port } = await serve(async () => ({ status: 200, headers: {}, body: big }), { idleMs: 200, requestMs: 400 });
    const socket = await connect(port);
    socket.pause();
    socket.write('GET /a HTTP/1.1\r\nHost: gw\r\n\r\n'.repeat(64));
    await sleep(2000); // well past requestMs without reading a byte
    // A paused socket sees nothing of the server's end: it reads now, what the server still had for it.
    let bytes = 0;
    const closed = new Promise<boolean>((resolve) => {
      socket.on('data', (data: Buffer) => (bytes += data.length));
      socket.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 4000).unref();
    });
    socket.resume();
    expect(await closed).toBe(true);
    // Cut off: not every answer was written (each is 1 MiB).
    expect(bytes).toBeLessThan(32 * 1024 * 1024);
    socket.destroy();
  }, 10_000);

  // The cut is for a client that reads nothing: one that reads its answers slowly, however long
  // they take to leave, keeps its connection.
  it('keeps a connection whose client reads its answers slowly, past requestMs', async () => {
    const big = 'x'.repeat(256 * 1024);
    const { port } = await serve(async () => ({ status: 200, headers: {}, body: big }), { idleMs: 200, requestMs: 1500 });
    const socket = await connect(port);
    socket.pause();
    let bytes = 0;
    socket.on('data', (data: Buffer) => {
      bytes += data.length;
      socket.pause();
    });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('GET /a HTTP/1.1\r\nHost: gw\r\n\r\n'.repeat(32));
    // Read a piece every 25 ms: the answers take seconds to leave (TCP's own stalls stay under requestMs).
    const reading = setInterval(() => socket.resume(), 25);
    const total = 32 * (256 * 1024 + 60);
    const began = performance.now();
    while (bytes < total && !socket.destroyed && performance.now() - began < 20_000) await sleep(50);
    clearInterval(reading);
    expect(performance.now() - began).toBeGreaterThan(1500);
    expect(bytes).toBeGreaterThanOrEqual(32 * 256 * 1024);
    socket.destroy();
    await closed;
  }, 30_000);
});

describe('a client that leaves', () => {
  // A half-close aborts the request, which cancels a Response's body: the read loop then saw the
  // body "done" and wrote the last chunk, so that what the client still reads looked like a whole
  // answer although it was cut. A cut answer must not end as a whole one does.
  it('a Response body cut by the client leaving is not ended with a last chunk', async () => {
    const { port } = await serve(async () => {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('data: first\n\n'));
        },
      });
      return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
    });
    const socket = await connect(port);
    const text = received(socket, () => false, 1500);
    socket.write('GET /events HTTP/1.1\r\nHost: gw\r\n\r\n');
    await sleep(100);
    socket.end(); // half-close: the server takes it that the client has gone
    const got = await text;
    socket.destroy();
    expect(got).toContain('data: first');
    expect(got).not.toContain('\r\n0\r\n\r\n');
  });
});

describe('a client that leaves while its pipelined bytes are held', () => {
  // Pipelined bytes are held while an answer is written, never paused for: a paused socket reads
  // nothing, the client's FIN among it, so the call in flight would not be cancelled when the
  // client leaves, and an answer that never ends (an SSE stream) would hold the connection.
  const waitForAbort = (): { handler: Parameters<typeof serve>[0]; aborted: () => boolean } => {
    let aborted = false;
    return {
      aborted: () => aborted,
      handler: (req) =>
        new Promise((resolve) => {
          req.signal.addEventListener('abort', () => {
            aborted = true;
            resolve({ status: 200, headers: {}, body: 'late' });
          });
        }),
    };
  };

  it('cancels the call in flight when the client leaves after pipelining more than 64 KiB', async () => {
    const waiting = waitForAbort();
    const { port } = await serve(waiting.handler);
    const socket = await connect(port);
    const filler = `POST /b HTTP/1.1\r\nHost: gw\r\nContent-Length: ${200 * 1024}\r\n\r\n${'x'.repeat(200 * 1024)}`;
    socket.write(`GET /a HTTP/1.1\r\nHost: gw\r\n\r\n${filler}`);
    await sleep(300);
    socket.end();
    await expect.poll(waiting.aborted, { timeout: 2000 }).toBe(true);
    socket.destroy();
  });

  it('cuts off a client that pipelines more than a whole request ahead of its answer, and cancels its call', async () => {
    const waiting = waitForAbort();
    const { port } = await serve(waiting.handler);
    const socket = await connect(port);
    let closed = false;
    socket.on('close', () => {
      closed = true;
    });
    socket.on('error', () => undefined);
    // The largest request (16 KiB of head, 4 MiB of body) and 64 KiB more may wait; this is past them.
    socket.write(`GET /a HTTP/1.1\r\nHost: gw\r\n\r\n${'x'.repeat(4 * 1024 * 1024 + 100 * 1024)}`);
    await expect.poll(() => closed, { timeout: 5000 }).toBe(true);
    expect(waiting.aborted()).toBe(true);
  });
});
