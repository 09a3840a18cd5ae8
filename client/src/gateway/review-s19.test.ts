/**
 * Attacks on what session 19 landed in the gateway, with no database: what the lane's POST on
 * sockets (socket-post.ts: AnswerParser) reads from a hostile upstream, and the lifecycle of the
 * lane's streamed answer (laneReply) as serveLight and asResponse write it.
 */
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { asResponse, isStreamed } from '../light-http.ts';
import { serveLight } from '../node-serve.ts';
import { AnswerFramingError, AnswerParser } from '../http1-answer.ts';
import { laneReply } from './lane.ts';

function headOf(head: string, maxHeaderBytes: number): { status: number; type: string | null }[] {
  const heads: { status: number; type: string | null }[] = [];
  const parser = new AnswerParser({ head: (status, type) => heads.push({ status, type }), body: () => undefined, done: () => undefined }, maxHeaderBytes);
  parser.feed(Buffer.from(head, 'latin1'));
  expect(parser.finished).toBe(true);
  return heads;
}

describe('AnswerParser against a hostile upstream', () => {
  it('trims a header value of its spaces and tabs, and nothing else', () => {
    expect(headOf('HTTP/1.1 200 OK\r\ncontent-type: \t text/event-stream; a=" b " \t \r\ncontent-length: 0\r\n\r\n', 1024)).toEqual([{ status: 200, type: 'text/event-stream; a=" b "' }]);
    expect(headOf('HTTP/1.1 200 OK\r\ncontent-type:\r\ncontent-length: 0\r\n\r\n', 1024)).toEqual([{ status: 200, type: '' }]);
    // A bare LF or CR inside a line is refused, not read as part of a value (another reader might end the line there).
    for (const bare of ['\n', '\r']) expect(() => headOf(`HTTP/1.1 200 OK\r\nx: a${bare}content-length: 5\r\ncontent-length: 0\r\n\r\n`, 1024)).toThrow(AnswerFramingError);
  });

  // A value of a run of whitespace between two other bytes made the field-line pattern backtrack
  // over the run at each of its positions: a 64 KiB head held the event loop (every agent's calls)
  // for seconds. Read in one pass, a head of 128 KiB so made is read at once.
  it('reads a header whose value holds a long run of whitespace in one pass (no backtracking)', () => {
    const pad = `x-pad: a${' \t'.repeat(64 * 1024)}b\r\n`;
    expect(headOf(`HTTP/1.1 200 OK\r\n${pad}content-type: application/json\r\ncontent-length: 0\r\n\r\n`, 256 * 1024)).toEqual([{ status: 200, type: 'application/json' }]);
  });
});

describe('laneReply streamed: its lifecycle under serveLight and asResponse', () => {
  const result = (id: number): JSONRPCMessage => ({ jsonrpc: '2.0', id, result: { content: [] } });
  const log: JSONRPCMessage = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x' } };
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  it('answers JSON when the response comes in the turn the upstream’s stream began; SSE from the next turn on, ended once', async () => {
    const quick = laneReply('s');
    quick.streaming();
    quick.end(result(1));
    await turn();
    const plain = await quick.response;
    expect(isStreamed(plain)).toBe(false);
    expect(plain).toMatchObject({ status: 200, headers: { 'content-type': 'application/json' } });

    const slow = laneReply('s');
    slow.streaming();
    await turn();
    // Said before the server opened the stream, then a second end and a send after it: only the first end counts.
    slow.send(log);
    slow.end(result(2));
    slow.end(result(3));
    slow.send(log);
    const streamed = await slow.response;
    expect(isStreamed(streamed)).toBe(true);
    const body = await asResponse(streamed).text();
    expect(body).toBe(`event: message\ndata: ${JSON.stringify(log)}\n\nevent: message\ndata: ${JSON.stringify(result(2))}\n\n`);
  });

  it('drops what comes after the client cancelled the stream (Deno’s path), without throwing', async () => {
    const reply = laneReply('s');
    reply.send(log);
    const response = asResponse(await reply.response);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('notifications/message');
    await reader.cancel();
    expect(() => {
      reply.send(log);
      reply.end(result(1));
    }).not.toThrow();
  });

  it('writes nothing after a client left mid-stream (serveLight), the request’s signal aborted, and the server serves on', async () => {
    const replies: ReturnType<typeof laneReply>[] = [];
    const aborted: boolean[] = [];
    const served = await serveLight(async (req) => {
      const reply = laneReply('s');
      replies.push(reply);
      req.signal.addEventListener('abort', () => aborted.push(true));
      reply.streaming();
      return reply.response;
    });
    try {
      const controller = new AbortController();
      const first = await fetch(served.url, { method: 'POST', body: '{}', signal: controller.signal });
      expect(first.headers.get('content-type')).toBe('text/event-stream');
      controller.abort();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(aborted).toEqual([true]);
      expect(() => {
        replies[0]?.send(log);
        replies[0]?.end(result(1));
      }).not.toThrow();
      const second = fetch(served.url, { method: 'POST', body: '{}' });
      const answered = await second;
      await turn();
      replies[1]?.end(result(2));
      expect(await answered.text()).toBe(`event: message\ndata: ${JSON.stringify(result(2))}\n\n`);
    } finally {
      await served.close();
    }
  });
});

describe('AnswerParser: what a hostile upstream may make it hold', () => {
  const parserOf = (maxHeaderBytes: number): AnswerParser => new AnswerParser({ head: () => undefined, body: () => undefined, done: () => undefined }, maxHeaderBytes);

  it('holds trailers sent as many short lines to maxHeaderBytes in all', () => {
    const parser = parserOf(1024);
    parser.feed(Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n'));
    expect(() => {
      for (let i = 0; i < 1000; i++) parser.feed(Buffer.from('t: 1\r\n'));
    }).toThrow(AnswerFramingError);
  });

  it('reads informational heads as they come, keeping none of them: the final answer follows a thousand', () => {
    const heads: number[] = [];
    const parser = new AnswerParser({ head: (status) => heads.push(status), body: () => undefined, done: () => undefined }, 1024);
    for (let i = 0; i < 1000; i++) parser.feed(Buffer.from(`HTTP/1.1 103 Early Hints\r\nlink: <${'x'.repeat(900)}>\r\n\r\n`));
    parser.feed(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'));
    expect(heads).toEqual([200]);
    expect(parser.finished).toBe(true);
  });
});
