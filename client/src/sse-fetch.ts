/**
 * A fetch for the MCP SDK's Streamable HTTP client transport that reads the common answer to a
 * POST cheaply. A server may answer a request with an SSE stream holding only the JSON-RPC
 * response (no progress, no log, no request before it); the SDK then parses it through two web
 * stream stages (a text decoder and an event-source parser), which costs more CPU than the
 * message. Such an answer is handed to the SDK as the `application/json` answer the same server
 * could have sent: the same message, read with `response.json()`.
 *
 * Anything else is handed over as the SSE stream it was, byte for byte, from its first byte: a
 * stream where a notification or a request comes first, a second message after the response, an
 * event the SDK would not read as a message, data that is not JSON, a stream that ends without a
 * response, a stream that stays open past `settleMs` after the response, a keep-alive comment
 * before the response (a long request: its stream flows on as it came). GET streams and
 * non-SSE answers are not touched. Runs unchanged under Node and Deno.
 */

import { createParser } from 'eventsource-parser';

type Chunks = AsyncIterator<Uint8Array>;

const SSE = /^\s*text\/event-stream/i;
/** The streams collapseSse already read and handed over: a second collapsing layer leaves them alone. */
const judged = new WeakSet<Response>();

/**
 * Reads an SSE stream with eventsource-parser (the parser the SDK itself uses, so an event is
 * what the SDK would read) and judges it as it goes: `response` once the response's event is
 * read, `handOver` as soon as the stream must be handed over as it is.
 */
class SseReader {
  response: string | undefined;
  handOver = false;
  private ending = false;
  private readonly parser = createParser({
    onEvent: (event) => this.event(event.event, event.data),
    // A comment before the response is a keep-alive: the server is keeping a long request's
    // stream open (the SDK's transports send one every 15 s), so its bytes go on at once, as
    // they would have, rather than being held back until the response.
    onComment: () => {
      if (this.response === undefined) this.handOver = true;
    },
  });

  feed(text: string): void {
    if (!this.handOver) this.parser.feed(text);
  }

  /**
   * The stream ended. An event not closed by a blank line is never dispatched (WHATWG; the SDK's
   * parser drops it too): what the closing blank lines given here dispatch is handed over as it is.
   */
  end(): void {
    this.ending = true;
    this.feed('\n\n');
  }

  private event(type: string | undefined, data: string): void {
    if (this.handOver) return;
    if (this.ending) {
      this.handOver = true;
      return;
    }
    if (data === '') return; // a priming event or a keep-alive, not read by the SDK
    if (this.response !== undefined || (type !== undefined && type !== 'message')) {
      this.handOver = true;
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch {
      this.handOver = true;
      return;
    }
    const m = message as Record<string, unknown> | null;
    const isResponse = typeof m === 'object' && m !== null && !Array.isArray(m) && 'id' in m && !('method' in m) && ('result' in m || 'error' in m);
    if (isResponse) this.response = data;
    else this.handOver = true;
  }
}

function nextWithin(chunks: Chunks, pending: Promise<IteratorResult<Uint8Array>>, ms: number): Promise<IteratorResult<Uint8Array> | 'late'> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), ms);
  });
  return Promise.race([pending, late]).finally(() => clearTimeout(timer));
}

/** How many bytes collapseSse holds while it cannot tell yet; past them the stream is handed over. */
export const COLLAPSE_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Reads an SSE answer's chunks until it can tell: the response alone (then the JSON), or not
 * (then a stream replaying what was read, then the rest). It waits at most `settleMs` after the
 * response for the stream's end, however many comments arrive meanwhile, and holds at most
 * `maxBytes` of a stream it has not judged: a server that keeps its stream open, or sends
 * comments without end, gets its stream handed over as it is, never held back.
 */
export async function collapseSse(
  chunks: Chunks,
  init: { status: number; statusText?: string; headers: Headers },
  settleMs = 50,
  maxBytes = COLLAPSE_MAX_BYTES,
): Promise<Response> {
  const reader = new SseReader();
  const decoder = new TextDecoder();
  const read: Uint8Array[] = [];
  let held = 0;
  let pending: Promise<IteratorResult<Uint8Array>> | undefined;
  let ended = false;
  let settleBy: number | undefined;
  while (!reader.handOver && held <= maxBytes) {
    pending ??= chunks.next();
    if (reader.response !== undefined) settleBy ??= Date.now() + settleMs;
    const next = settleBy === undefined ? await pending : await nextWithin(chunks, pending, Math.max(0, settleBy - Date.now()));
    if (next === 'late') break; // the response came and the stream stays open: hand it over
    pending = undefined;
    if (next.done) {
      ended = true;
      reader.feed(decoder.decode());
      reader.end();
      break;
    }
    read.push(next.value);
    held += next.value.length;
    reader.feed(decoder.decode(next.value, { stream: true }));
  }
  if (ended && !reader.handOver && reader.response !== undefined) {
    const headers = new Headers(init.headers);
    headers.set('content-type', 'application/json');
    headers.delete('content-length');
    return new Response(reader.response, { status: init.status, statusText: init.statusText ?? '', headers });
  }
  let waiting = pending;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of read) controller.enqueue(chunk);
      if (ended) controller.close();
    },
    async pull(controller) {
      const next = await (waiting ?? chunks.next());
      waiting = undefined;
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel(reason) {
      await chunks.return?.(reason);
    },
  });
  const handedOver = new Response(body, { status: init.status, statusText: init.statusText ?? '', headers: init.headers });
  judged.add(handedOver);
  return handedOver;
}

/** The chunks of a web stream as an iterator whose `return` cancels the stream. */
export function chunksOf(stream: ReadableStream<Uint8Array>): Chunks {
  const reader = stream.getReader();
  return {
    next: () => reader.read() as Promise<IteratorResult<Uint8Array>>,
    return: async (reason?: unknown) => {
      await reader.cancel(reason);
      return { done: true, value: undefined };
    },
  };
}

/** The method of a fetch call (GET unless the init or the Request says otherwise), upper case. */
export function methodOf(input: RequestInfo | URL, init?: RequestInit): string {
  return (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
}

/** Whether an answer is one collapseSse may read: a successful SSE answer to a POST. */
export function collapsible(method: string, status: number, contentType: string | null): boolean {
  return method === 'POST' && status === 200 && SSE.test(contentType ?? '');
}

/**
 * An answer to a request of `method` as collapseSse makes it: the JSON of a bare response, or the
 * answer as it came (not SSE, not a POST's, or read once already).
 */
export function collapseAnswer(method: string, response: Response, settleMs?: number): Promise<Response> | Response {
  if (!response.body || judged.has(response) || !collapsible(method, response.status, response.headers.get('content-type'))) return response;
  return collapseSse(chunksOf(response.body), { status: response.status, statusText: response.statusText, headers: response.headers }, settleMs);
}

/** Wraps a fetch so that SSE answers to POSTs holding only the response arrive as JSON (see above). */
export function collapsingFetch(fetchImpl: typeof fetch = fetch, settleMs?: number): typeof fetch {
  // A stream nodeFetch already read and handed over is not read again (judged).
  return async (input, init) => collapseAnswer(methodOf(input, init), await fetchImpl(input, init), settleMs);
}
