/**
 * Requests and answers a fetch handler may take and give without web streams. A web Request is
 * a LightRequest, and a Response an answer, so a handler written for them runs under Deno.serve
 * unchanged; under Node, node-serve.ts (serveLight) and http1-serve.ts (serveHttp1, the gateway's
 * entry) hand over a lighter request that makes its
 * Request only when asked, writes a PlainAnswer's string straight to the socket, and a
 * StreamedAnswer's chunks as they come. Making a web Request and Response costs more CPU under
 * Node than a small MCP call itself.
 */

/** A request as a handler reads it; `request()` gives the web Request with the same body (read or not). */
export type LightRequest =
  | Request
  | {
      readonly method: string;
      readonly url: string;
      readonly headers: { get(name: string): string | null };
      readonly signal: AbortSignal;
      text(): Promise<string>;
      request(): Request;
    };

/** An answer whose body is a string already. */
export interface PlainAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Where a StreamedAnswer's body goes: chunks as they come, then its end (once; nothing after it). */
export interface ChunkSink {
  write(chunk: string): void;
  end(last?: string): void;
}

/**
 * An answer whose body is written as it comes (an SSE stream): its headers leave at once, then
 * the server calls `open` with where the chunks go. A sink whose client went away drops them.
 */
export interface StreamedAnswer {
  status: number;
  headers: Record<string, string>;
  open(sink: ChunkSink): void;
}

export type Answer = Response | PlainAnswer | StreamedAnswer;

export const isStreamed = (answer: Answer): answer is StreamedAnswer => !(answer instanceof Response) && 'open' in answer;

export function asRequest(req: LightRequest): Request {
  return req instanceof Request ? req : req.request();
}

export function asResponse(answer: Answer): Response {
  if (answer instanceof Response) return answer;
  if (!isStreamed(answer)) return new Response(answer.body, { status: answer.status, headers: answer.headers });
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      // Once the client has cancelled the stream, enqueue and close throw: what is left is dropped.
      const put = (chunk: string): void => {
        try {
          if (chunk) controller.enqueue(encoder.encode(chunk));
        } catch {
          // cancelled
        }
      };
      answer.open({
        write: put,
        end(last) {
          put(last ?? '');
          try {
            controller.close();
          } catch {
            // cancelled
          }
        },
      });
    },
  });
  return new Response(body, { status: answer.status, headers: answer.headers });
}
