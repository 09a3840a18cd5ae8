/**
 * The Node adapter of the fetch handlers (node-serve.ts): bodies arrive whole and intact, a body
 * over the limit is refused with 413 before the handler runs, and a streamed answer (an SSE
 * stream) reaches the client event by event even though writes are held to the end of a turn,
 * and a request's signal aborts when its client leaves before the answer's end, never after it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveFetch, serveLight, type Served } from './node-serve.ts';
import { twoEventStream } from '../../test/support/http.ts';

let served: Served;
let handled = 0;
let firstEventRead: () => void = () => undefined;
const signals = new Map<string, AbortSignal>();

beforeAll(async () => {
  served = await serveFetch(
    async (req) => {
      handled++;
      const tag = new URL(req.url).searchParams.get('tag');
      if (tag) signals.set(tag, req.signal);
      if (new URL(req.url).pathname === '/endless') {
        return new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('data: open\n\n')) }), { headers: { 'content-type': 'text/event-stream' } });
      }
      if (new URL(req.url).pathname === '/stream') {
        return twoEventStream(
          new Promise<void>((resolve) => {
            firstEventRead = resolve;
          }),
        );
      }
      const bytes = new Uint8Array(await req.arrayBuffer());
      let sum = 0;
      for (const b of bytes) sum = (sum + b) % 65_521;
      return Response.json({ method: req.method, length: bytes.length, sum });
    },
    { maxBodyBytes: 64 * 1024 },
  );
});

afterAll(async () => {
  await served?.close();
});

describe('node-serve', () => {
  it('hands the handler the whole body, byte for byte', async () => {
    const body = new Uint8Array(60 * 1024).map((_, i) => (i * 7) % 251);
    let sum = 0;
    for (const b of body) sum = (sum + b) % 65_521;
    const response = await fetch(`${served.url}/echo`, { method: 'POST', body });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ method: 'POST', length: body.length, sum });
  });

  it('refuses a body over the limit with 413 and a JSON-RPC error, before the handler runs', async () => {
    const before = handled;
    const response = await fetch(`${served.url}/echo`, { method: 'POST', body: new Uint8Array(64 * 1024 + 1) });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringContaining('larger than 65536 bytes') } });
    expect(handled).toBe(before);
  });

  it('delivers a stream event by event: the client reads the first event before the stream goes on', async () => {
    const response = await fetch(`${served.url}/stream`);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('first')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).toBe('data: first\n\n');
    firstEventRead();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).toBe('data: first\n\ndata: last\n\n');
  });

  it('aborts a request’s signal when its client leaves before the end, and not once the answer is sent', async () => {
    const finished = await fetch(`${served.url}/echo?tag=finished`, { method: 'POST', body: 'x' });
    expect(finished.status).toBe(200);
    await finished.json();
    const leaving = new AbortController();
    const open = await fetch(`${served.url}/endless?tag=left`, { signal: leaving.signal });
    await (open.body as ReadableStream<Uint8Array>).getReader().read();
    expect(signals.get('left')?.aborted).toBe(false);
    leaving.abort();
    await expect.poll(() => signals.get('left')?.aborted, { timeout: 5_000 }).toBe(true);
    expect(signals.get('finished')?.aborted).toBe(false);
  });

  it('a light request’s text is a web Request’s: UTF-8 with a leading byte order mark dropped, an invalid byte replaced', async () => {
    const body = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"é":1}'), 0xff]);
    const texts: string[] = [];
    const light = await serveLight(async (req) => {
      texts.push(await req.text(), await req.request().text());
      return { status: 200, headers: { 'content-type': 'application/json' }, body: '{}' };
    });
    try {
      expect((await fetch(`${light.url}/x`, { method: 'POST', body })).status).toBe(200);
      expect(texts[0]).toBe(texts[1]);
      expect(texts[0]).toBe('{"é":1}\ufffd');
    } finally {
      await light.close();
    }
  });

  it('a light request whose client left before its handler first read the signal has it aborted (serveLight)', async () => {
    let left: () => void = () => undefined;
    const clientLeft = new Promise<void>((resolve) => {
      left = resolve;
    });
    let seen: AbortSignal | undefined;
    const light = await serveLight(async (req) => {
      // The handler works (authentication, the database) before it first asks for the signal.
      await clientLeft;
      await new Promise((resolve) => setTimeout(resolve, 200));
      seen = req.signal;
      return { status: 200, headers: { 'content-type': 'application/json' }, body: '{}' };
    });
    try {
      const leaving = new AbortController();
      const pending = fetch(`${light.url}/call`, { method: 'POST', body: '{}', signal: leaving.signal }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 100));
      leaving.abort();
      await pending;
      left();
      await expect.poll(() => seen, { timeout: 5_000 }).toBeDefined();
      expect(seen?.aborted).toBe(true);
    } finally {
      await light.close();
    }
  });
});
