/**
 * Requests and answers a fetch handler may take and give without web streams. A web Request is
 * a LightRequest, and a Response an answer, so a handler written for them runs under Deno.serve
 * unchanged; under Node, node-serve.ts (serveLight) hands over a lighter request that makes its
 * Request only when asked, and writes a PlainAnswer's string straight to the socket. Making a
 * web Request and Response costs more CPU under Node than a small MCP call itself.
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

export type Answer = Response | PlainAnswer;

export function asRequest(req: LightRequest): Request {
  return req instanceof Request ? req : req.request();
}

export function asResponse(answer: Answer): Response {
  return answer instanceof Response ? answer : new Response(answer.body, { status: answer.status, headers: answer.headers });
}
