/**
 * How the call lane reads an upstream's answer to its request (upstream.ts: Upstream.exchange):
 * JSON or SSE, up to MAX_ANSWER_BYTES, every message held to the JSON-RPC schema the SDK's
 * transport holds it to; the response that bears the request's id goes to `respond`, every other
 * message (a log, a notification, a request of the server) to `other`. An SSE answer is read to
 * its end (the connection is kept) or `afterResponseMs` past its response (the connection is
 * closed: an upstream that never closes its streams would hold one connection per call).
 */
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { createParser } from 'eventsource-parser';
import type { PostAnswer, UpstreamAnswer } from './upstream.ts';

/** The most the lane reads of one upstream answer (a result of images in base64 is large; no answer is endless). */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export interface LaneAnswerRoute {
  /** The id the lane's request bears. */
  id: string;
  respond(message: UpstreamAnswer): void;
  other(message: JSONRPCMessage): void;
  /** Told when the answer turns out to be an SSE stream, before its first event is read. */
  onStream?(): void;
  afterResponseMs: number;
}

export async function readLaneAnswer(answer: PostAnswer, route: LaneAnswerRoute): Promise<void> {
  if (answer.status !== 200) {
    await answer.chunks.return?.();
    throw new StreamableHTTPError(answer.status, `the upstream answered HTTP ${answer.status}${answer.status >= 300 && answer.status < 400 ? ' (a redirect: not followed)' : ''}`);
  }
  let streamed = false;
  let lingering: ReturnType<typeof setTimeout> | undefined;
  const deliver = (data: string): void => {
    const parsed: unknown = JSON.parse(data);
    for (const raw of Array.isArray(parsed) ? parsed : [parsed]) {
      // Held to the schema the SDK's transport holds every message to (it fails the same way).
      const message = JSONRPCMessageSchema.parse(raw);
      if ('id' in message && message.id === route.id && !('method' in message)) {
        route.respond(message as UpstreamAnswer);
        if (streamed) lingering ??= setTimeout(() => void answer.chunks.return?.(), route.afterResponseMs);
      } else route.other(message);
    }
  };
  const decoder = new TextDecoder();
  let read = 0;
  const counted = async (chunk: Uint8Array): Promise<Uint8Array> => {
    read += chunk.length;
    if (read <= MAX_ANSWER_BYTES) return chunk;
    await answer.chunks.return?.();
    throw new Error(`the upstream's answer is larger than ${MAX_ANSWER_BYTES} bytes`);
  };
  if (/^\s*application\/json/i.test(answer.contentType ?? '')) {
    let text = '';
    for (let next = await answer.chunks.next(); !next.done; next = await answer.chunks.next()) text += decoder.decode(await counted(next.value), { stream: true });
    deliver(text + decoder.decode());
    return;
  }
  if (!/^\s*text\/event-stream/i.test(answer.contentType ?? '')) {
    await answer.chunks.return?.();
    throw new Error(`the upstream answered with content type ${answer.contentType}`);
  }
  streamed = true;
  route.onStream?.();
  let failure: unknown;
  const parser = createParser({
    onEvent: (event) => {
      if (failure !== undefined || event.data === '' || (event.event !== undefined && event.event !== 'message')) return;
      try {
        deliver(event.data);
      } catch (error) {
        failure = error;
      }
    },
  });
  try {
    for (let next = await answer.chunks.next(); !next.done; next = await answer.chunks.next()) {
      parser.feed(decoder.decode(await counted(next.value), { stream: true }));
      if (failure !== undefined) {
        await answer.chunks.return?.();
        throw failure;
      }
    }
  } finally {
    clearTimeout(lingering);
  }
}
