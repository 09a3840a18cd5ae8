/**
 * The collapsing fetch (sse-fetch.ts) against a real HTTP server that writes SSE answers chunk by
 * chunk: an answer holding only the response arrives as that JSON, with the server's headers;
 * every other answer arrives as the very bytes the server sent, whichever fetch is under it (the
 * platform's, and the Node entry's nodeFetch). Then the MCP SDK's client over it, against a real
 * MCP server: results, errors and progress as without it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { nodeFetch } from './node-fetch.ts';
import { serveFetch } from './node-serve.ts';
import { collapseSse, collapsingFetch } from './sse-fetch.ts';

const RESPONSE = { jsonrpc: '2.0', id: 7, result: { content: [{ type: 'text', text: 'héllo\nworld' }] } };
const PROGRESS = { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } };
const event = (message: unknown, id?: string): string => `${id ? `id: ${id}\n` : ''}event: message\ndata: ${JSON.stringify(message)}\n\n`;
const BIG = { jsonrpc: '2.0', id: 8, result: { tools: Array.from({ length: 400 }, (_, i) => ({ name: `tool_${i}`, description: 'x'.repeat(200) })) } };
const pieces = (text: string, size: number): string[] => Array.from({ length: Math.ceil(text.length / size) }, (_, i) => text.slice(i * size, (i + 1) * size));

/** Each answer: its chunks, written with a pause between them; `open` leaves the stream open. */
const answers: Record<string, { chunks: string[]; open?: boolean }> = {
  alone: { chunks: [event(RESPONSE)] },
  // A response of about 100 kB in one data line, arriving in 1 kB pieces.
  big: { chunks: pieces(event(BIG), 1024) },
  primed: { chunks: ['id: 1\ndata:\n\n', event(RESPONSE, '2')] },
  // CRLF line ends, a data field split over two lines, a chunk cut between CR and LF, a comment.
  awkward: { chunks: ['event: message\r\ndata: {"jsonrpc":"2.0","id":7,\r', '\ndata: "result":{}}\r', '\n\r\n: bye\r\n'] },
  // A keep-alive before the response (a long call): the stream flows on, not held back.
  keptAlive: { chunks: [': keepalive\n\n', event(RESPONSE)] },
  progressFirst: { chunks: [event(PROGRESS), event(RESPONSE)] },
  twoMessages: { chunks: [event(RESPONSE), event(PROGRESS)] },
  notJson: { chunks: ['data: {not json\n\n'] },
  otherEvent: { chunks: ['event: ping\ndata: {}\n\n', event(RESPONSE)] },
  noResponse: { chunks: ['id: 1\ndata:\n\n'] },
  staysOpen: { chunks: [event(RESPONSE)], open: true },
  // The response's event not closed by a blank line: never dispatched, by the SDK's parser either.
  unterminated: { chunks: [`event: message\ndata: ${JSON.stringify(RESPONSE)}\n`] },
  // The response, then comments far longer than the settling time, each well within it.
  commentsAfter: { chunks: [event(RESPONSE), ...Array.from({ length: 30 }, () => ': keep-alive\n\n')] },
};

let server: http.Server;
let base: string;
const openResponses = new Set<http.ServerResponse>();

beforeAll(async () => {
  server = http.createServer(async (req, res) => {
    const answer = answers[(req.url ?? '').slice(1)];
    if (!answer) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 'session-1', 'cache-control': 'no-cache' });
    for (const chunk of answer.chunks) {
      res.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    if (answer.open) openResponses.add(res);
    else res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of openResponses) res.end();
  await new Promise((resolve) => server.close(resolve));
});

const post = { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' };

for (const [name, under] of [
  ['the platform’s fetch', (input: RequestInfo | URL, init?: RequestInit) => fetch(input, init)],
  ['nodeFetch', nodeFetch()],
] as const) {
  describe(`collapsing SSE over ${name}`, () => {
    const collapsing = collapsingFetch(under, 50);

    it('hands an answer holding only the response over as that JSON, with the server’s headers', async () => {
      for (const path of ['alone', 'primed']) {
        const response = await collapsing(`${base}/${path}`, post);
        expect(response.status).toBe(200);
        expect(response.headers.get('content-type')).toBe('application/json');
        expect(response.headers.get('mcp-session-id')).toBe('session-1');
        expect(await response.json()).toEqual(RESPONSE);
      }
      const big = await collapsing(`${base}/big`, post);
      expect(big.headers.get('content-type')).toBe('application/json');
      expect(await big.json()).toEqual(BIG);
      const awkward = await collapsing(`${base}/awkward`, post);
      expect(awkward.headers.get('content-type')).toBe('application/json');
      expect(await awkward.text()).toBe('{"jsonrpc":"2.0","id":7,\n"result":{}}');
    });

    it('hands every other answer over as the bytes the server sent', async () => {
      for (const path of ['progressFirst', 'twoMessages', 'notJson', 'otherEvent', 'noResponse', 'unterminated', 'commentsAfter', 'keptAlive']) {
        const response = await collapsing(`${base}/${path}`, post);
        expect(response.headers.get('content-type'), path).toBe('text/event-stream');
        expect(await response.text(), path).toBe(answers[path]?.chunks.join(''));
      }
    });

    it('hands over a stream that stays open after the response, and what follows arrives', async () => {
      const response = await collapsing(`${base}/staysOpen`, post);
      expect(response.headers.get('content-type')).toBe('text/event-stream');
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toBe(event(RESPONSE));
      for (const res of openResponses) res.end(event(PROGRESS));
      openResponses.clear();
      let rest = '';
      for (let next = await reader.read(); !next.done; next = await reader.read()) rest += new TextDecoder().decode(next.value);
      expect(rest).toBe(event(PROGRESS));
    });

    it('reads a stream once: a stream handed over by nodeFetch, which collapses on its own, is not read again', async () => {
      let inner: Response | undefined;
      const twice = collapsingFetch(async (input, init) => (inner = await collapsing(input, init)), 50);
      const response = await twice(`${base}/progressFirst`, post);
      expect(response).toBe(inner);
      expect(await response.text()).toBe(answers.progressFirst?.chunks.join(''));
    });

    it('leaves GET streams alone', async () => {
      const response = await collapsing(`${base}/alone`);
      expect(response.headers.get('content-type')).toBe('text/event-stream');
      expect(await response.text()).toBe(event(RESPONSE));
    });
  });
}

describe('collapseSse on a stream that never judges itself', () => {
  it('holds at most its limit of a stream of events without data, then hands what it read and the rest over', async () => {
    const comment = new TextEncoder().encode(`id: ${'x'.repeat(1017)}\ndata:\n\n`);
    let produced = 0;
    async function* primings(): AsyncGenerator<Uint8Array> {
      for (; produced < 2000; ) {
        produced++;
        yield comment;
      }
      yield new TextEncoder().encode(event(RESPONSE));
    }
    const response = await collapseSse(primings(), { status: 200, headers: new Headers({ 'content-type': 'text/event-stream' }) }, 50, 64 * 1024);
    // Handed over after about 64 kB, not after the 2 MB that came before the response.
    expect(produced).toBeLessThanOrEqual(65);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const text = await response.text();
    expect(text.length).toBe(2000 * comment.length + event(RESPONSE).length);
    expect(text.endsWith(event(RESPONSE))).toBe(true);
  });
});

describe('the MCP SDK client over the collapsing fetch', () => {
  it('gets results, errors and every progress notification as without it', async () => {
    const served = await serveFetch(async (req) => {
      const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      const mcp = new McpServer({ name: 'progress', version: '1.0.0' });
      mcp.registerTool('count', { inputSchema: { n: z.number() } }, async ({ n }, extra) => {
        const token = extra._meta?.progressToken;
        for (let i = 1; i <= n; i++) {
          if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: n } });
        }
        return { content: [{ type: 'text', text: `counted ${n}` }] };
      });
      mcp.registerTool('fail', {}, async () => {
        throw new Error('it failed');
      });
      await mcp.connect(transport);
      return transport.handleRequest(req);
    });
    try {
      const client = new Client({ name: 'test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${served.url}/mcp`), { fetch: collapsingFetch(nodeFetch()) }));
      const progress: number[] = [];
      const counted = await client.callTool({ name: 'count', arguments: { n: 5 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
      expect(counted.content).toEqual([{ type: 'text', text: 'counted 5' }]);
      expect(progress).toEqual([1, 2, 3, 4, 5]);
      expect(await client.callTool({ name: 'count', arguments: { n: 2 } })).toMatchObject({ content: [{ type: 'text', text: 'counted 2' }] });
      expect(await client.callTool({ name: 'fail', arguments: {} })).toMatchObject({ isError: true, content: [{ type: 'text', text: expect.stringContaining('it failed') }] });
      await expect(client.callTool({ name: 'count', arguments: { n: 'x' } })).resolves.toMatchObject({ isError: true });
      await client.close();
    } finally {
      await served.close();
    }
  });
});
