/**
 * A usable OAuth access token for an agent's runtime, refreshed single-flight when it expired.
 *
 * The database decides and coordinates (db/functions/oauth.sql, db/OAUTH.md): whether the agent
 * may use the provider with these scopes (get_agent_oauth_token), and which one of any number
 * of concurrent callers, in any number of processes, refreshes an expired token: the one that
 * wins the lease of begin_oauth_refresh. That one POSTs grant_type=refresh_token, form-encoded,
 * to the provider's token endpoint (pg_net cannot send a form body) and reports the answer with
 * complete_oauth_refresh or fail_oauth_refresh; the others wait and then read the new token.
 * A lease expires: a refresher that crashed is replaced, and its late answer is refused.
 *
 * The transport must act for the agent's owner (their session) or as service_role, e.g.
 * directTransport({ pool, claims: { role: 'authenticated', sub: ownerId } }), which sets role
 * and request.jwt.claims per transaction as PostgREST does, or supabaseTransport. The OAuth
 * client secret comes from the runtime's own configuration, never from the database.
 */
import { z } from 'zod';
import { IllegalStateError, SdkErrorCode, UnexpectedResultError, UpstreamError, type ControlPlaneErrorFields } from '../errors.ts';
import { callRpc, describeIssues } from '../rpc.ts';
import type { OauthRefreshLease } from '../schemas.ts';
import type { RpcTransport } from '../transport.ts';

type Lease = Extract<OauthRefreshLease, { outcome: 'lease' }>;

// ---------------------------------------------------------------- what a provider answers

/** A successful token response (RFC 6749 §5.1); Slack adds `ok: true`, GitHub may answer form-encoded. */
export const ProviderTokenResponseSchema = z.object({
  access_token: z.string().min(1),
  token_type: z.string().optional(),
  expires_in: z.coerce.number().int().nonnegative().optional(),
  refresh_token: z.string().min(1).optional(),
  scope: z.string().optional(),
});
export type ProviderTokenResponse = z.infer<typeof ProviderTokenResponseSchema>;

/** The error codes after which the refresh token is dead: the user must connect again. */
const FINAL_ERRORS = new Set(['invalid_grant', 'invalid_refresh_token', 'token_revoked']);

// ---------------------------------------------------------------- the API

export interface GetAgentOAuthTokenOptions {
  /** Acting for the agent's owner, or as service_role. */
  transport: RpcTransport;
  agentId: string;
  /** oauth_providers.name, e.g. 'github'. */
  provider: string;
  /** The scopes the call needs; the agent's permission must cover them. */
  scopes?: string[];
  /** The OAuth client secret for a provider, from the runtime's configuration (none for a public PKCE client). */
  clientSecret?: (provider: string) => string | undefined;
  /** How long a refresher holds the lease (default 30 s); the HTTP exchange is cut off before it ends. */
  leaseSeconds?: number;
  /** Overall time allowed, waits for another refresher included (default 20 s). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface AgentOAuthToken {
  accessToken: string;
  tokenType: string;
  expiresAt: Date | null;
  connectionId: string;
  permissionId: string;
  scopes: string[];
  /** True when this call did the refresh (it won the lease). */
  refreshed: boolean;
}

/** The provider could not refresh the token (now: retryAt says when to try again), or a wait ran out. */
export class OAuthRefreshError extends UpstreamError {
  readonly retryAt: Date | null;
  /** True when the refresh token is dead and the user must connect the account again. */
  readonly reconnectRequired: boolean;

  constructor(fields: Omit<ControlPlaneErrorFields, 'code'>, extra: { retryAt?: Date | null; reconnectRequired?: boolean } = {}, options?: { cause?: unknown }) {
    super({ code: SdkErrorCode.upstream, ...fields }, options);
    this.retryAt = extra.retryAt ?? null;
    this.reconnectRequired = extra.reconnectRequired ?? false;
  }
}

export async function getAgentOAuthToken(options: GetAgentOAuthTokenOptions): Promise<AgentOAuthToken> {
  const leaseSeconds = options.leaseSeconds ?? 30;
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let refreshed = false;
  let waits = 0;
  for (;;) {
    if (Date.now() > deadline) {
      throw new OAuthRefreshError({ message: `no usable ${options.provider} token within ${options.timeoutMs ?? 20_000} ms` });
    }
    const [token] = await callRpc(options.transport, 'get_agent_oauth_token', {
      p_agent_id: options.agentId,
      p_provider: options.provider,
      p_scopes: options.scopes ?? [],
    });
    if (token.status === 'ok' && token.access_token !== null) {
      return {
        accessToken: token.access_token,
        tokenType: token.token_type,
        expiresAt: token.expires_at === null ? null : new Date(token.expires_at),
        connectionId: token.connection_id,
        permissionId: token.permission_id,
        scopes: token.scopes,
        refreshed,
      };
    }
    const [begin] = await callRpc(options.transport, 'begin_oauth_refresh', {
      p_connection_id: token.connection_id,
      p_lease_seconds: leaseSeconds,
    });
    switch (begin.outcome) {
      case 'fresh':
        // Refreshed by someone else: read it through get_agent_oauth_token, which checks the permission.
        continue;
      case 'failed':
        throw new OAuthRefreshError(
          { message: `the last refresh of this ${options.provider} connection failed: ${begin.last_error ?? 'unknown error'}`, hint: 'retry after retryAt' },
          { retryAt: begin.retry_at === null ? null : new Date(begin.retry_at) },
        );
      case 'wait': {
        const untilLeaseEnds = new Date(begin.lease_expires_at).getTime() - Date.now();
        const pause = Math.max(5, Math.min(untilLeaseEnds + 5, 25 * 2 ** Math.min(waits++, 3))) * (0.8 + Math.random() * 0.4);
        if (Date.now() + pause > deadline) {
          throw new OAuthRefreshError({ message: `timed out waiting for another refresh of this ${options.provider} connection` }, { retryAt: new Date(begin.lease_expires_at) });
        }
        await sleep(pause);
        continue;
      }
      case 'lease':
        refreshed = (await refreshWithLease(options, begin)) || refreshed;
        continue;
    }
  }
}

/**
 * The lease winner's exchange with the provider. Returns true when the new tokens were stored,
 * false when the lease was lost meanwhile (someone else took over: read their result); throws
 * OAuthRefreshError when the provider refused.
 */
async function refreshWithLease(options: GetAgentOAuthTokenOptions, lease: Lease): Promise<boolean> {
  const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: lease.refresh_token });
  if (lease.client_id !== null) form.set('client_id', lease.client_id);
  const secret = options.clientSecret?.(lease.provider);
  if (secret !== undefined) form.set('client_secret', secret);
  // Give up on the provider before the lease ends, so that no answer arrives after a takeover.
  const budgetMs = Math.max(200, new Date(lease.lease_expires_at).getTime() - Date.now() - 500);

  let status = 0;
  let retryAfter: number | undefined;
  let payload: Record<string, unknown> = {};
  try {
    const response = await (options.fetch ?? fetch)(lease.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form,
      signal: AbortSignal.timeout(budgetMs),
    });
    status = response.status;
    retryAfter = parseRetryAfter(response.headers.get('retry-after'));
    payload = parseBody(await response.text(), response.headers.get('content-type'));
  } catch (error) {
    return fail(options, lease, { error: `token endpoint unreachable: ${error instanceof Error ? error.message : String(error)}`, retryable: true }, error);
  }

  const parsed = ProviderTokenResponseSchema.safeParse(payload);
  if (status >= 200 && status < 300 && payload.ok !== false && payload.error === undefined && parsed.success) {
    try {
      const { refresh_token, expires_in, scope } = parsed.data;
      await callRpc(options.transport, 'complete_oauth_refresh', {
        p_lease_id: lease.lease_id,
        p_access_token: parsed.data.access_token,
        ...(refresh_token === undefined ? {} : { p_refresh_token: refresh_token }),
        ...(expires_in === undefined ? {} : { p_expires_in: expires_in }),
        ...(scope === undefined ? {} : { p_scopes: scope.split(/[\s,]+/).filter((s) => s !== '') }),
      });
      return true;
    } catch (error) {
      if (error instanceof IllegalStateError) return false; // the lease was lost: another refresher's result stands
      throw error;
    }
  }
  const code = typeof payload.error === 'string' ? payload.error : undefined;
  const description = typeof payload.error_description === 'string' ? `: ${payload.error_description}` : '';
  const detail = code !== undefined ? `${code}${description}` : parsed.success ? `HTTP ${status}` : `HTTP ${status}, ${describeIssues(parsed.error)}`;
  return fail(options, lease, { error: `${lease.provider} token endpoint: ${detail}`, retryable: code === undefined || !FINAL_ERRORS.has(code), retryAfter });
}

/** Reports a failed exchange (the old refresh token is kept) and throws OAuthRefreshError. */
async function fail(options: GetAgentOAuthTokenOptions, lease: Lease, failure: { error: string; retryable: boolean; retryAfter?: number }, cause?: unknown): Promise<never> {
  let retryAt: Date | null = null;
  try {
    const answer = await callRpc(options.transport, 'fail_oauth_refresh', {
      p_lease_id: lease.lease_id,
      p_error: failure.error,
      p_retryable: failure.retryable,
      ...(failure.retryAfter === undefined ? {} : { p_retry_after_seconds: failure.retryAfter }),
    });
    retryAt = answer === null ? null : new Date(answer);
  } catch (error) {
    if (!(error instanceof IllegalStateError)) throw error;
  }
  throw new OAuthRefreshError(
    { message: failure.error, hint: failure.retryable ? 'retry after retryAt' : 'the user must connect the account again' },
    { retryAt, reconnectRequired: !failure.retryable },
    { cause },
  );
}

// ---------------------------------------------------------------- helpers

export async function callRow<T>(transport: RpcTransport, name: string, schema: z.ZodType<T>, args: Record<string, unknown>): Promise<T> {
  const raw = await transport.rpc(name, args);
  const parsed = z.array(schema).length(1).safeParse(raw);
  if (!parsed.success) {
    throw new UnexpectedResultError({
      code: SdkErrorCode.unexpectedResult,
      message: `${name} answered an unexpected shape`,
      details: describeIssues(parsed.error),
      hint: 'the SDK and the database schema disagree: update one of them',
    });
  }
  return parsed.data[0] as T;
}

/** JSON, or form-encoded as GitHub answers without an Accept header. */
export function parseBody(text: string, contentType: string | null): Record<string, unknown> {
  if ((contentType ?? '').includes('application/x-www-form-urlencoded')) return Object.fromEntries(new URLSearchParams(text));
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Retry-After in seconds (delta-seconds or an HTTP date), bounded to a day. */
function parseRetryAfter(header: string | null): number | undefined {
  if (header === null) return undefined;
  const seconds = /^\d+$/.test(header.trim()) ? Number(header) : Math.ceil((Date.parse(header) - Date.now()) / 1000);
  return Number.isFinite(seconds) ? Math.min(86_400, Math.max(0, seconds)) : undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
