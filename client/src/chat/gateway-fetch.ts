/**
 * The fetch of the chat's gateway session (the SDK's StreamableHTTPClientTransport over it). The
 * MCP messages are the SDK's, untouched; what a chat turn does not use is left out:
 *
 * - The standalone GET stream. The SDK's client opens it after initialization so that a server
 *   can send messages outside any request; a chat turn needs none (it lists once, then calls),
 *   so it would be a request and a stream held open on the gateway per chat. The GET is answered
 *   here with 405, which the Streamable HTTP specification lets a server answer when it offers no
 *   stream and which the SDK's client takes as "no stream". A caller that wants to hear that the
 *   tools changed uses a session of its own (session.ts), not this one.
 * - The SDK's stream stages for an answer that holds only its response: the gateway answers such
 *   a request in JSON already, and any other server's SSE answer of that shape is read as JSON
 *   too (collapsingFetch, client/src/sse-fetch.ts); a stream with notifications before its
 *   response goes to the SDK as it came.
 */
import { collapsingFetch, methodOf } from '../sse-fetch.ts';

export function gatewaySessionFetch(base: typeof fetch): typeof fetch {
  const collapsing = collapsingFetch(base);
  return async (input, init) => {
    if (methodOf(input, init) === 'GET') return new Response(null, { status: 405, headers: { allow: 'POST, DELETE' } });
    return collapsing(input, init);
  };
}
