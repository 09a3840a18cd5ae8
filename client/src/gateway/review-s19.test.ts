/**
 * Attacks on what the lane's POST on sockets (socket-post.ts) reads from a hostile upstream,
 * each answered by the product code (review of session 19).
 */
import { describe, expect, it } from 'vitest';
import { AnswerParser } from '../socket-post.ts';

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
  });

  // A value of a run of whitespace between two other bytes made the field-line pattern backtrack
  // over the run at each of its positions: a 64 KiB head held the event loop (every agent's calls)
  // for seconds. Read in one pass, a head of 128 KiB so made is read at once.
  it('reads a header whose value holds a long run of whitespace in one pass (no backtracking)', () => {
    const pad = `x-pad: a${' \t'.repeat(64 * 1024)}b\r\n`;
    expect(headOf(`HTTP/1.1 200 OK\r\n${pad}content-type: application/json\r\ncontent-length: 0\r\n\r\n`, 256 * 1024)).toEqual([{ status: 200, type: 'application/json' }]);
  });
});
