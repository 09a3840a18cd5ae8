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

type Chunks = AsyncIterator<Uint8Array>;

/** What the reading found: the response alone (collapse), or a reason to hand the stream over. */
type Verdict = { json: string } | 'stream';

const SSE = /^\s*text\/event-stream/i;
/** The streams collapseSse already read and handed over: a second collapsing layer leaves them alone. */
const judged = new WeakSet<Response>();

/** Parses SSE incrementally (WHATWG rules: CR, LF or CRLF line ends; data lines joined by LF). */
class SseReader {
  private text = '';
  /** How much of `text` is known to hold no line end. */
  private scanned = 0;
  private data: string[] | undefined;
  private event = '';
  response: string | undefined;
  verdict: Verdict | undefined;

  /** Whether an event has data lines not yet closed by a blank line. */
  get pending(): boolean {
    return this.data !== undefined;
  }

  /** Feeds decoded text; sets `verdict` to 'stream' as soon as the stream must be handed over. */
  feed(text: string, ended: boolean): void {
    this.text += text;
    const all = this.text;
    let start = 0;
    // Line ends are found with indexOf from where the last search stopped: a long data line that
    // arrives over many chunks is scanned once, not once per chunk.
    let from = this.scanned;
    let lf = -2; // -2: not searched from `from` yet; -1: none in the rest of the text
    let cr = -2;
    while (this.verdict === undefined) {
      if (lf !== -1 && lf < from) lf = all.indexOf('\n', from);
      if (cr !== -1 && cr < from) cr = all.indexOf('\r', from);
      const end = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
      if (end < 0) {
        from = all.length;
        break;
      }
      if (end === cr && end + 1 === all.length && !ended) {
        from = end; // a CR whose LF may follow in the next chunk
        break;
      }
      const line = all.slice(start, end);
      start = end === cr && all.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
      from = start;
      this.line(line);
    }
    this.text = all.slice(start);
    this.scanned = Math.max(0, from - start);
  }

  private line(line: string): void {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) {
      // A comment before the response is a keep-alive: the server is keeping a long request's
      // stream open (the SDK's transports send one every 15 s), so its bytes go on at once, as
      // they would have, rather than being held back until the response.
      if (this.response === undefined) this.verdict = 'stream';
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') (this.data ??= []).push(value);
    else if (field === 'event') this.event = value;
    // id and retry only matter to a stream that is resumed; a collapsed one has its response.
  }

  private dispatch(): void {
    const data = this.data;
    const event = this.event;
    this.data = undefined;
    this.event = '';
    const text = data?.join('\n') ?? '';
    if (text === '') return; // a priming event or a keep-alive, not dispatched (nor read by the SDK)
    if (this.response !== undefined || (event !== '' && event !== 'message')) {
      this.verdict = 'stream';
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      this.verdict = 'stream';
      return;
    }
    const m = message as Record<string, unknown> | null;
    const isResponse = typeof m === 'object' && m !== null && !Array.isArray(m) && 'id' in m && !('method' in m) && ('result' in m || 'error' in m);
    if (isResponse) this.response = text;
    else this.verdict = 'stream';
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
  while (reader.verdict === undefined && held <= maxBytes) {
    pending ??= chunks.next();
    if (reader.response !== undefined) settleBy ??= Date.now() + settleMs;
    const next = settleBy === undefined ? await pending : await nextWithin(chunks, pending, Math.max(0, settleBy - Date.now()));
    if (next === 'late') break; // the response came and the stream stays open: hand it over
    pending = undefined;
    if (next.done) {
      ended = true;
      reader.feed(decoder.decode(), true);
      // An event not closed by a blank line is never dispatched (WHATWG; the SDK's parser drops
      // it too): a stream ending in one is handed over as it is.
      if (reader.pending) reader.verdict = 'stream';
      break;
    }
    read.push(next.value);
    held += next.value.length;
    reader.feed(decoder.decode(next.value, { stream: true }), false);
  }
  if (ended && reader.verdict === undefined && reader.response !== undefined) {
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

/** Whether an answer is one collapseSse may read: a successful SSE answer to a POST. */
export function collapsible(method: string, status: number, contentType: string | null): boolean {
  return method === 'POST' && status === 200 && SSE.test(contentType ?? '');
}

/** Wraps a fetch so that SSE answers to POSTs holding only the response arrive as JSON (see above). */
export function collapsingFetch(fetchImpl: typeof fetch = fetch, settleMs?: number): typeof fetch {
  return async (input, init) => {
    const response = await fetchImpl(input, init);
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    if (!response.body || !collapsible(method, response.status, response.headers.get('content-type'))) return response;
    if (judged.has(response)) return response; // read once already (nodeFetch collapses on its own)
    return collapseSse(chunksOf(response.body), { status: response.status, statusText: response.statusText, headers: response.headers }, settleMs);
  };
}
