/**
 * mcp-auth-manager: OAuth 2.1 sign-in (authorization code + PKCE S256) for the seeded
 * providers, as a fetch handler. The database keeps each flow's state and code verifier,
 * bound to the user, provider and redirect URI, until it expires, and hands the verifier out
 * once (db/functions/oauth_flow.sql); the handler does the HTTP the database cannot: the
 * token exchange (form-encoded) and the revocation. Every request acts as its caller.
 *
 *   POST /start       {provider, redirect_uri, scopes?}    -> 201 {authorization_url, state, expires_at}
 *   POST /callback    {state, code, redirect_uri}          -> 201 {connection_id, provider, scopes, expires_in}
 *   POST /refresh     {agent_id, provider, scopes?}        -> 200 {connection_id, expires_at, refreshed, scopes}
 *   POST /disconnect  {connection_id}                      -> 200 {revoked, provider_revoked}
 *   GET  /connections                                      -> 200 [connections, without tokens]
 *
 * The redirect URI is the app's page that receives the provider's redirect and posts the code
 * and state here with the user's session. Client secrets, for providers that need one, come
 * from the runtime's configuration (clientSecret), never from the database.
 */
import { decodeJwt } from 'jose';
import { z } from 'zod';
import { McpControlPlaneError, SdkErrorCode } from '../errors.ts';
import { HttpError, createRouter, readBody, type HandlerOptions, type Route } from '../functions/http.ts';
import { createRpc } from '../rpc.ts';
import { OauthAuthorizationBeginRowSchema, OauthAuthorizationConsumeRowSchema, OauthDisconnectRowSchema, UuidSchema } from '../schemas.ts';
import { OAuthRefreshError, ProviderTokenResponseSchema, callRow, getAgentOAuthToken, parseBody } from './refresh.ts';

export interface AuthManagerOptions extends HandlerOptions {
  /** The OAuth client secret of a provider, from the runtime's configuration (none for a public PKCE client). */
  clientSecret?: (provider: string) => string | undefined;
  fetch?: typeof fetch;
  /** Time allowed for each call to a provider (default 10 s). */
  providerTimeoutMs?: number;
}

const ScopesSchema = z.array(z.string().min(1).max(200)).min(1).max(50);
export const StartBodySchema = z.strictObject({ provider: z.string().min(1), redirect_uri: z.url(), scopes: ScopesSchema.optional() });
export const CallbackBodySchema = z.strictObject({ state: z.string().min(1).max(200), code: z.string().min(1).max(2000), redirect_uri: z.url() });
export const RefreshBodySchema = z.strictObject({ agent_id: UuidSchema, provider: z.string().min(1), scopes: z.array(z.string().min(1)).optional() });
export const DisconnectBodySchema = z.strictObject({ connection_id: UuidSchema });


/** POSTs a form to a provider endpoint; the parsed JSON (or form) answer and the status. */
async function postForm(options: AuthManagerOptions, url: string, form: URLSearchParams): Promise<{ status: number; body: Record<string, unknown> }> {
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form,
      signal: AbortSignal.timeout(options.providerTimeoutMs ?? 10_000),
    });
  } catch (error) {
    throw new HttpError(502, { code: SdkErrorCode.upstream, message: `the provider could not be reached: ${error instanceof Error ? error.message : String(error)}` });
  }
  const body = parseBody(await response.text(), response.headers.get('content-type'));
  return { status: response.status, body };
}

function withClient(form: URLSearchParams, options: AuthManagerOptions, provider: string, clientId: string | null): URLSearchParams {
  if (clientId !== null) form.set('client_id', clientId);
  const secret = options.clientSecret?.(provider);
  if (secret !== undefined) form.set('client_secret', secret);
  return form;
}

/** The provider's account id and a label from an OpenID Connect ID token received straight from its token endpoint. */
function account(idToken: unknown): { id: string; label: string } {
  if (typeof idToken !== 'string') return { id: '', label: '' };
  try {
    const claims = decodeJwt(idToken);
    const label = [claims.email, claims.preferred_username, claims.name].find((v) => typeof v === 'string');
    return { id: typeof claims.sub === 'string' ? claims.sub : '', label: typeof label === 'string' ? label : '' };
  } catch {
    return { id: '', label: '' };
  }
}

function routes(options: AuthManagerOptions): Route[] {
  return [
    {
      method: 'POST',
      pattern: /\/start$/,
      run: async ({ req, transport }) => {
        const input = await readBody(req, StartBodySchema);
        const flow = await callRow(transport, 'begin_oauth_authorization', OauthAuthorizationBeginRowSchema, {
          p_provider: input.provider,
          p_redirect_uri: input.redirect_uri,
          ...(input.scopes ? { p_scopes: input.scopes } : {}),
        });
        const url = new URL(flow.authorization_endpoint);
        for (const [name, value] of Object.entries(flow.authorize_params)) url.searchParams.set(name, String(value));
        url.searchParams.set('response_type', 'code');
        url.searchParams.set('client_id', flow.client_id);
        url.searchParams.set('redirect_uri', flow.redirect_uri);
        if (flow.scope !== '') url.searchParams.set('scope', flow.scope);
        url.searchParams.set('state', flow.state);
        url.searchParams.set('code_challenge', flow.code_challenge);
        url.searchParams.set('code_challenge_method', flow.code_challenge_method);
        return { status: 201, data: { authorization_url: url.toString(), state: flow.state, expires_at: flow.expires_at } };
      },
    },
    {
      method: 'POST',
      pattern: /\/callback$/,
      run: async ({ req, transport }) => {
        const input = await readBody(req, CallbackBodySchema);
        // Consumed before the exchange: a replay finds it used, whatever the provider answers.
        const flow = await callRow(transport, 'consume_oauth_authorization', OauthAuthorizationConsumeRowSchema, { p_state: input.state, p_redirect_uri: input.redirect_uri });
        const form = withClient(
          new URLSearchParams({ grant_type: 'authorization_code', code: input.code, redirect_uri: flow.redirect_uri, code_verifier: flow.code_verifier }),
          options,
          flow.provider,
          flow.client_id,
        );
        const answer = await postForm(options, flow.token_endpoint, form);
        const tokens = ProviderTokenResponseSchema.safeParse(answer.body);
        if (answer.status < 200 || answer.status >= 300 || answer.body.ok === false || answer.body.error !== undefined || !tokens.success) {
          const code = typeof answer.body.error === 'string' ? answer.body.error : 'invalid_response';
          const description = typeof answer.body.error_description === 'string' ? answer.body.error_description : `HTTP ${answer.status}`;
          // The provider refused the code (wrong verifier, reused or foreign code): the client's request was bad.
          throw new HttpError(answer.status >= 500 || code === 'invalid_response' ? 502 : 400, {
            code,
            message: `${flow.provider} refused the authorization code: ${description}`,
            hint: 'start the sign-in again',
          });
        }
        const who = account(answer.body.id_token);
        const scopes = tokens.data.scope === undefined ? flow.scopes : tokens.data.scope.split(/[\s,]+/).filter((s) => s !== '');
        const connectionId = await createRpc(transport).store_user_oauth_connection({
          p_provider: flow.provider,
          p_access_token: tokens.data.access_token,
          ...(tokens.data.refresh_token !== undefined ? { p_refresh_token: tokens.data.refresh_token } : {}),
          ...(tokens.data.expires_in !== undefined ? { p_expires_in: tokens.data.expires_in } : {}),
          p_scopes: scopes,
          p_provider_account_id: who.id,
          p_account_label: who.label,
          p_token_type: tokens.data.token_type ?? 'Bearer',
        });
        return { status: 201, data: { connection_id: connectionId, provider: flow.provider, scopes, expires_in: tokens.data.expires_in ?? null } };
      },
    },
    {
      method: 'POST',
      pattern: /\/refresh$/,
      run: async ({ req, transport }) => {
        const input = await readBody(req, RefreshBodySchema);
        try {
          const token = await getAgentOAuthToken({
            transport,
            agentId: input.agent_id,
            provider: input.provider,
            scopes: input.scopes ?? [],
            ...(options.clientSecret ? { clientSecret: options.clientSecret } : {}),
            ...(options.fetch ? { fetch: options.fetch } : {}),
          });
          // The token itself stays server-side: this route only makes sure a fresh one is stored.
          return {
            status: 200,
            data: { connection_id: token.connectionId, expires_at: token.expiresAt?.toISOString() ?? null, refreshed: token.refreshed, scopes: token.scopes },
          };
        } catch (error) {
          if (error instanceof OAuthRefreshError) {
            throw new HttpError(502, { ...error.toJSON(), retry_at: error.retryAt?.toISOString() ?? null, reconnect_required: error.reconnectRequired });
          }
          throw error;
        }
      },
    },
    {
      method: 'POST',
      pattern: /\/disconnect$/,
      run: async ({ req, transport }) => {
        const input = await readBody(req, DisconnectBodySchema);
        const target = await callRow(transport, 'begin_oauth_disconnect', OauthDisconnectRowSchema, { p_connection_id: input.connection_id });
        let providerRevoked: boolean | null = null;
        let providerError: string | null = null;
        if (target.revocation_endpoint !== null && target.token !== null) {
          // RFC 7009: 200 whether or not the token was still valid; anything else is a failure.
          try {
            const answer = await postForm(
              options,
              target.revocation_endpoint,
              withClient(new URLSearchParams({ token: target.token, token_type_hint: target.token_type_hint }), options, target.provider, target.client_id),
            );
            providerRevoked = answer.status === 200;
            if (!providerRevoked) providerError = typeof answer.body.error === 'string' ? answer.body.error : `HTTP ${answer.status}`;
          } catch (error) {
            providerRevoked = false;
            providerError = error instanceof HttpError || error instanceof McpControlPlaneError ? error.message : String(error);
          }
        }
        // Locally in any case: the tokens leave Vault and every agent permission ends.
        const revoked = await createRpc(transport).revoke_user_oauth_connection({ p_connection_id: input.connection_id, p_reason: 'disconnected by the user' });
        return { status: 200, data: { revoked, provider_revoked: providerRevoked, provider_error: providerError } };
      },
    },
    {
      method: 'GET',
      pattern: /\/connections$/,
      run: async ({ jwt, transport }) => {
        const sub = decodeJwt(jwt).sub;
        return { status: 200, data: await createRpc(transport).get_user_oauth_connections({ p_user_id: String(sub) }) };
      },
    },
  ];
}

export function createAuthManagerHandler(options: AuthManagerOptions): (req: Request) => Promise<Response> {
  return createRouter('mcp-auth-manager', routes(options), options);
}
