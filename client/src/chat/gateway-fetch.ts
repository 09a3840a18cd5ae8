/**
 * The fetch of the chat's gateway session (the SDK's StreamableHTTPClientTransport over it). The
 * MCP messages are the SDK's, untouched; two things a chat turn does not use are left out, each
 * costing CPU on both sides for every chat:
 *
 * - The standalone GET stream. The SDK's client opens it after initialization so that a server
 *   can send messages outside any request; a chat turn needs none (it lists once, then calls),
 *   so it would be a request and a stream held open on the gateway per chat. The GET is answered
 *   here with 405, which the Streamable HTTP specification lets a server answer when it offers no
 *   stream and which the SDK's client takes as "no stream". A caller that wants to hear that the
 *   tools changed uses a session of its own (session.ts), not this one.
 * - Reading an answer as a stream. The gateway answers each POST with a server-sent event stream
 *   that it closes after the response. The SDK reads such a stream through a TextDecoderStream and
 *   an EventSourceParserStream, message by message, which is what a client needs when it shows
 *   progress as it arrives; the chat shows none, and waits for the response anyway. So the stream
 *   is read whole and its messages (the request's notifications, then its response, in order)
 *   handed to the SDK as the JSON array a server may answer instead (`application/json`), which
 *   the SDK validates and dispatches message by message exactly as it does the events. The events
 *   are parsed by eventsource-parser, the parser the SDK itself uses.
 */
import { createParser } from 'eventsource-parser';

function methodOf(input: RequestInfo | URL, init: RequestInit | undefined): string {
  return (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
}

/** The `data` of each message event of a whole server-sent event stream, in order. */
export function sseMessages(text: string): string[] {
  const data: string[] = [];
  const parser = createParser({
    onEvent: (event) => {
      if ((event.event === undefined || event.event === 'message') && event.data !== '') data.push(event.data);
    },
  });
  parser.feed(text);
  // A stream that ends without a blank line after its last event still delivers that event.
  parser.feed('\n\n');
  return data;
}

/** An answer to a POST, with a server-sent event body read whole and given as a JSON array of its messages. */
async function bufferedAnswer(response: Response): Promise<Response> {
  if (!response.ok || !response.body || !(response.headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream')) return response;
  const messages = sseMessages(await response.text());
  const headers = new Headers(response.headers);
  headers.set('content-type', 'application/json');
  headers.delete('content-length');
  return new Response(`[${messages.join(',')}]`, { status: response.status, statusText: response.statusText, headers });
}

export function gatewaySessionFetch(base: typeof fetch): typeof fetch {
  return async (input, init) => {
    const method = methodOf(input, init);
    if (method === 'GET') return new Response(null, { status: 405, headers: { allow: 'POST, DELETE' } });
    const response = await base(input, init);
    return method === 'POST' ? bufferedAnswer(response) : response;
  };
}
