/**
 * The call lane: a plain `tools/call` on an open session, answered without the SDK's protocol
 * layer downstream (its server transport's SSE stream, its schema checks of every message on
 * each side, its request objects) and upstream (Upstream.exchange). What is decided is the
 * same, by the same code (agent-server.ts): the route, the database's decision, the log, the
 * result checked against the same schemas; only the envelope is the gateway's.
 *
 * A request takes the lane only when everything about it is plain: a POST of one JSON-RPC
 * request `tools/call` whose params are a name, arguments (an object) and a `_meta` without a
 * progress token, with the headers the SDK's transport requires (Accept naming JSON and SSE,
 * a JSON Content-Type, a supported protocol version or none), on a session that is open. Any
 * other request (a batch, a notification, progress asked, a task, anything unusual) goes to the
 * SDK's transport as before, which answers it or refuses it as the SDK does.
 *
 * The answer is JSON when the call's response comes alone and at once, as the SDK's answer
 * collapsed to JSON (handler.ts) is; when a log message of the call comes first, or the
 * upstream's answer is a stream whose response is still to come, it is an SSE stream (laneReply).
 */
import { isJsonContentType } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import { SUPPORTED_PROTOCOL_VERSIONS, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { Answer, ChunkSink } from '../light-http.ts';

/** A tools/call the lane may take: its id, the namespaced name and the arguments. */
export interface PlainCall {
  id: RequestId;
  name: string;
  arguments: Record<string, unknown>;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Whether the headers are those the SDK's transport accepts for a POST without a word. */
export function plainHeaders(headers: { get(name: string): string | null }): boolean {
  const accept = headers.get('accept');
  const version = headers.get('mcp-protocol-version');
  return (
    accept !== null &&
    accept.includes('application/json') &&
    accept.includes('text/event-stream') &&
    isJsonContentType(headers.get('content-type')) &&
    (version === null || SUPPORTED_PROTOCOL_VERSIONS.includes(version))
  );
}

/** The call in a POSTed body when it is a plain tools/call (see above), else undefined. */
export function plainCall(body: unknown): PlainCall | undefined {
  if (!isObject(body) || body.jsonrpc !== '2.0' || body.method !== 'tools/call') return undefined;
  const { id, params } = body;
  if ((typeof id !== 'string' && !Number.isInteger(id)) || !isObject(params)) return undefined;
  if (Object.keys(body).length !== 4) return undefined;
  const { name, arguments: args, _meta: meta } = params;
  if (typeof name !== 'string' || (args !== undefined && !isObject(args))) return undefined;
  if (meta !== undefined && (!isObject(meta) || 'progressToken' in meta)) return undefined;
  for (const key of Object.keys(params)) if (key !== 'name' && key !== 'arguments' && key !== '_meta') return undefined;
  return { id: id as RequestId, name, arguments: args ?? {} };
}

/** The requests a POSTed body cancels (its notifications/cancelled), with the reasons given. */
export function cancellations(body: unknown): { requestId: RequestId; reason: string }[] {
  return (Array.isArray(body) ? body : [body]).flatMap((message: unknown) => {
    if (!isObject(message) || message.method !== 'notifications/cancelled' || !isObject(message.params)) return [];
    const { requestId, reason } = message.params;
    if (typeof requestId !== 'string' && !Number.isInteger(requestId)) return [];
    return [{ requestId: requestId as RequestId, reason: typeof reason === 'string' ? reason.slice(0, 500) : 'cancelled by the client' }];
  });
}

/**
 * Where the lane's answer goes: messages before the response (log messages), then the
 * response; or, for a call its client cancelled, no response (MCP: none is sent for it).
 * `streaming` says the upstream's answer is a stream (its response may take a while).
 */
export interface LaneReply {
  send(message: JSONRPCMessage): void;
  end(message?: JSONRPCMessage): void;
  streaming(): void;
}

const sseEvent = (message: JSONRPCMessage): string => `event: message\ndata: ${JSON.stringify(message)}\n\n`;

/** Runs `task` once the event loop has handled what is ready now (its I/O too). */
const afterThisTurn: (task: () => void) => void =
  typeof globalThis.setImmediate === 'function' ? (task) => void globalThis.setImmediate(task) : (task) => void setTimeout(task, 0);

/**
 * The HTTP answer of one lane call (its `response` settles once its form is known):
 * - JSON (a PlainAnswer) when the call's response is the first message and comes in time;
 * - an SSE stream (a StreamedAnswer) from the first log message on, or from the end of the
 *   event loop's turn in which the upstream's answer turned out to be a stream without the
 *   response in what came with it. Its headers then leave at once, so that the client sets up
 *   its side of the stream while the server works rather than after (the SDK's transport starts
 *   every answer so); the response follows when it comes.
 */
export function laneReply(sessionId: string): LaneReply & { response: Promise<Answer> } {
  let answer!: (response: Answer) => void;
  const response = new Promise<Answer>((resolve) => {
    answer = resolve;
  });
  const sse = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'mcp-session-id': sessionId };
  let streamed = false;
  let waiting = false;
  let ended = false;
  let sink: ChunkSink | undefined;
  // What was said before the server opened the stream: written with its headers.
  let held = '';
  const stream = (): void => {
    if (streamed) return;
    streamed = true;
    answer({
      status: 200,
      headers: sse,
      open(opened) {
        sink = opened;
        const said = held;
        held = '';
        if (ended) opened.end(said);
        else if (said) opened.write(said);
      },
    });
  };
  return {
    response,
    send(message) {
      if (ended) return;
      stream();
      if (sink) sink.write(sseEvent(message));
      else held += sseEvent(message);
    },
    end(message) {
      if (ended) return;
      ended = true;
      if (streamed) {
        const last = message ? sseEvent(message) : '';
        if (sink) sink.end(last);
        else held += last;
        return;
      }
      // No response: an SSE stream without events, as the SDK's transport ends it.
      if (!message) answer({ status: 200, headers: sse, body: '' });
      else answer({ status: 200, headers: { 'content-type': 'application/json', 'mcp-session-id': sessionId }, body: JSON.stringify(message) });
    },
    streaming() {
      if (streamed || waiting || ended) return;
      waiting = true;
      afterThisTurn(() => {
        if (!ended) stream();
      });
    },
  };
}
