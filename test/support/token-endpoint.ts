/**
 * A local OAuth 2.0 token endpoint for tests: real HTTP on a loopback port, speaking the refresh
 * grant as providers do (RFC 6749 §6 and §5): a form-encoded POST with grant_type=refresh_token,
 * client authentication in the body or with HTTP Basic, a JSON answer with `Cache-Control:
 * no-store`, errors as `{error, error_description}`. It counts what it receives, rotates refresh
 * tokens (a used one is refused afterwards with invalid_grant, as Slack, Microsoft and GitHub
 * apps do), and fails on demand. Node-only; not exported by the SDK.
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { recordingServer, type Received } from './http.ts';

export interface TokenEndpointOptions {
  /** The client that must authenticate (body client_id/client_secret or HTTP Basic). */
  clientId?: string;
  clientSecret?: string;
  /** A new refresh token with every refresh, the used one revoked (default true). */
  rotateRefreshTokens?: boolean;
  /** Lifetime of issued access tokens, in seconds (default 3600). */
  expiresIn?: number;
  /** Delay before each answer, in ms (default 0). */
  latencyMs?: number;
  /** The scope granted, echoed in each answer. */
  scope?: string;
}

/** A failure to answer with, instead of tokens, for the next requests. */
export interface InjectedFailure {
  status: number;
  error: string;
  description?: string;
  /** Seconds, sent as Retry-After. */
  retryAfter?: number;
}

export interface TokenEndpoint {
  /** The token endpoint URL, for oauth_providers.token_endpoint. */
  url: string;
  /** Every request received, in order. */
  requests: Received[];
  /** A valid refresh token, as a completed authorization would leave with the client. */
  issueRefreshToken(): string;
  /** The last access token issued, if any. */
  lastAccessToken(): string | undefined;
  /** How many requests have been answered (a request waits for the latency first). */
  answeredCount(): number;
  /** Answers the next `count` requests with this failure. */
  failNext(count: number, failure: InjectedFailure): void;
  setLatency(ms: number): void;
  close(): Promise<void>;
}

const token = (prefix: string): string => `${prefix}_${randomBytes(18).toString('base64url')}`;

export async function startTokenEndpoint(options: TokenEndpointOptions = {}): Promise<TokenEndpoint> {
  const rotate = options.rotateRefreshTokens ?? true;
  const expiresIn = options.expiresIn ?? 3600;
  let latencyMs = options.latencyMs ?? 0;
  const liveRefreshTokens = new Set<string>();
  const failures: InjectedFailure[] = [];
  let lastAccess: string | undefined;
  let answered = 0;

  const answer = (res: http.ServerResponse, status: number, body: Record<string, unknown>, headers: Record<string, string> = {}): void => {
    answered++;
    res.writeHead(status, { 'content-type': 'application/json;charset=UTF-8', 'cache-control': 'no-store', pragma: 'no-cache', ...headers });
    res.end(JSON.stringify(body));
  };
  const refuse = (res: http.ServerResponse, status: number, error: string, description: string, headers: Record<string, string> = {}): void =>
    answer(res, status, { error, error_description: description }, headers);

  const clientOf = (req: Received, form: URLSearchParams): { id?: string; secret?: string } => {
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (basic?.[1]) {
      const [id, secret] = Buffer.from(basic[1], 'base64').toString('utf8').split(':').map(decodeURIComponent);
      return { id, secret };
    }
    return { id: form.get('client_id') ?? undefined, secret: form.get('client_secret') ?? undefined };
  };

  const handle = (req: Received, res: http.ServerResponse): void => {
    if (new URL(req.url, 'http://localhost').pathname !== '/oauth/token') return refuse(res, 404, 'invalid_request', 'not the token endpoint');
    if (req.method !== 'POST') return refuse(res, 405, 'invalid_request', 'the token endpoint takes POST', { allow: 'POST' });
    if (!(req.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) {
      return refuse(res, 400, 'invalid_request', 'the body must be application/x-www-form-urlencoded');
    }
    const failure = failures.shift();
    if (failure) {
      return refuse(res, failure.status, failure.error, failure.description ?? 'injected failure',
        failure.retryAfter === undefined ? {} : { 'retry-after': String(failure.retryAfter) });
    }
    const form = new URLSearchParams(req.body);
    if (options.clientId !== undefined) {
      const client = clientOf(req, form);
      if (client.id !== options.clientId || (options.clientSecret !== undefined && client.secret !== options.clientSecret)) {
        return refuse(res, 401, 'invalid_client', 'client authentication failed', { 'www-authenticate': 'Basic realm="token"' });
      }
    }
    if (form.get('grant_type') !== 'refresh_token') {
      return refuse(res, 400, 'unsupported_grant_type', 'only refresh_token is supported here');
    }
    const presented = form.get('refresh_token');
    if (!presented) return refuse(res, 400, 'invalid_request', 'refresh_token is required');
    if (!liveRefreshTokens.has(presented)) return refuse(res, 400, 'invalid_grant', 'the refresh token is invalid, expired or was used');
    const body: Record<string, unknown> = { access_token: token('at'), token_type: 'Bearer', expires_in: expiresIn };
    if (options.scope !== undefined) body.scope = options.scope;
    if (rotate) {
      liveRefreshTokens.delete(presented);
      const next = token('rt');
      liveRefreshTokens.add(next);
      body.refresh_token = next;
    }
    lastAccess = body.access_token as string;
    answer(res, 200, body);
  };

  const server = await recordingServer((req, res) => {
    if (latencyMs > 0) setTimeout(() => handle(req, res), latencyMs);
    else handle(req, res);
  });
  return {
    url: `${server.url}/oauth/token`,
    requests: server.received,
    issueRefreshToken() {
      const issued = token('rt');
      liveRefreshTokens.add(issued);
      return issued;
    },
    lastAccessToken: () => lastAccess,
    answeredCount: () => answered,
    failNext(count, failure) {
      for (let i = 0; i < count; i++) failures.push(failure);
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    close: server.close,
  };
}
