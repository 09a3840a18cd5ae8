/**
 * supabase/functions/mcp-auth-manager under real Deno, against a real OpenID provider running
 * locally (oidc-provider, configured as an extra provider in the database): Olga signs in with
 * PKCE, her tokens land in Vault and work at the provider; her agent's token is refreshed
 * through the single-flight lease; disconnecting revokes at the provider, then locally. Each
 * bad callback is refused with its status: replayed state, wrong verifier, expired state,
 * mismatched redirect, another user's state, an unknown one.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServedHandler } from '../manager/serve.ts';
import { startEdgeFunction, supabaseEnv, type EdgeFunction } from '../../../test/support/edge-function.ts';
import { startLocalOidc, type LocalOidc } from '../../../test/support/oidc.ts';
import { servePostgrest } from '../../../test/support/postgrest.ts';
import { JWT_SECRET, createAgent, createOrganization, createUser, suffix, testPool, userJwt, type Organization } from '../../../test/support/stack.ts';

const REDIRECT = 'http://127.0.0.1:3000/oauth/callback';
const OTHER_REDIRECT = 'http://127.0.0.1:3000/elsewhere/callback';

let pool: pg.Pool;
let postgrest: ServedHandler;
let oidc: LocalOidc;
let entry: EdgeFunction;
let org: Organization;
let olgaJwt: string;
let strangerJwt: string;
let agentId: string;
let provider: string;
let connectionId = '';

type Reply = { status: number; body: { data?: Record<string, unknown>; error?: Record<string, unknown> } };

async function auth(route: string, jwt: string | null, body?: unknown, method = 'POST'): Promise<Reply> {
  const response = await fetch(`${entry.url}/functions/v1/mcp-auth-manager${route}`, {
    method,
    headers: { ...(jwt ? { authorization: `Bearer ${jwt}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {} };
}

/** Starts a sign-in as Olga and plays her browser through the provider: the code and state it redirects with. */
async function signInAtProvider(redirectUri = REDIRECT, account = 'olga-account'): Promise<{ state: string; code: string }> {
  const started = await auth('/start', olgaJwt, { provider, redirect_uri: redirectUri });
  expect(started.status).toBe(201);
  const { params, redirectedTo } = await oidc.authorize(String(started.body.data?.authorization_url), account);
  expect(redirectedTo).toBe(redirectUri);
  expect(params.get('state')).toBe(started.body.data?.state);
  return { state: String(params.get('state')), code: String(params.get('code')) };
}

async function vaultSecret(connection: string, column: 'access_token_secret_id' | 'refresh_token_secret_id'): Promise<string | null> {
  const { rows } = await pool.query(`select s.decrypted_secret from vault.decrypted_secrets s where s.id = (select ${column} from public.user_oauth_connections where id = $1)`, [connection]);
  return (rows[0]?.decrypted_secret as string | undefined) ?? null;
}

beforeAll(async () => {
  pool = testPool();
  postgrest = await servePostgrest(pool, JWT_SECRET);
  oidc = await startLocalOidc({ redirectUris: [REDIRECT, OTHER_REDIRECT] });
  provider = `oidc-${suffix()}`;
  // The platform configures the provider (as it seeds GitHub and the others), with its public client id.
  await pool.query(
    `insert into public.oauth_providers (name, display_name, authorization_endpoint, token_endpoint, revocation_endpoint, default_scopes, client_id, authorize_params)
     values ($1, 'Local OpenID provider', $2, $3, $4, '{openid,offline_access,email}', $5, '{"prompt": "consent"}')`,
    [provider, oidc.authorizationEndpoint, oidc.tokenEndpoint, oidc.revocationEndpoint, oidc.clientId],
  );
  entry = await startEdgeFunction('mcp-auth-manager', await supabaseEnv(postgrest.url, JWT_SECRET));
  org = await createOrganization(pool);
  olgaJwt = await userJwt(org.ownerId);
  strangerJwt = await userJwt(await createUser(pool, 'stranger'));
  agentId = await createAgent(pool, org.organizationId, org.ownerId, 'oauth agent');
});

afterAll(async () => {
  await entry?.stop();
  await oidc?.close();
  await postgrest?.close();
  await pool?.query('delete from public.oauth_providers where name = $1 and not exists (select from public.user_oauth_connections c where c.provider_id = oauth_providers.id)', [provider]).catch(() => undefined);
  await pool?.end();
});

describe('mcp-auth-manager entry under Deno', () => {
  it('signs Olga in with PKCE: the tokens land in Vault and work at the provider', async () => {
    const started = await auth('/start', olgaJwt, { provider, redirect_uri: REDIRECT });
    expect(started.status).toBe(201);
    const authorizationUrl = new URL(String(started.body.data?.authorization_url));
    expect(`${authorizationUrl.origin}${authorizationUrl.pathname}`).toBe(oidc.authorizationEndpoint);
    expect(Object.fromEntries(authorizationUrl.searchParams)).toMatchObject({
      response_type: 'code',
      client_id: oidc.clientId,
      redirect_uri: REDIRECT,
      code_challenge_method: 'S256',
      scope: 'email offline_access openid',
      prompt: 'consent',
      state: started.body.data?.state,
    });
    const { params } = await oidc.authorize(authorizationUrl.toString(), 'olga-account');

    const done = await auth('/callback', olgaJwt, { state: params.get('state'), code: params.get('code'), redirect_uri: REDIRECT });
    expect(done.status).toBe(201);
    expect(done.body.data).toMatchObject({ provider, connection_id: expect.any(String) });
    connectionId = String(done.body.data?.connection_id);
    const { rows } = await pool.query('select user_id, provider_account_id, account_label, status::text from public.user_oauth_connections where id = $1', [connectionId]);
    expect(rows).toEqual([{ user_id: org.ownerId, provider_account_id: 'olga-account', account_label: 'olga-account@oidc.test', status: 'active' }]);
    // The access token in Vault is the one the provider issued: its userinfo endpoint accepts it.
    const userinfo = await fetch(oidc.userinfoEndpoint, { headers: { authorization: `Bearer ${await vaultSecret(connectionId, 'access_token_secret_id')}` } });
    expect(userinfo.status).toBe(200);
    expect(await userinfo.json()).toMatchObject({ sub: 'olga-account' });
    expect(await vaultSecret(connectionId, 'refresh_token_secret_id')).toEqual(expect.any(String));

    const listed = await auth('/connections', olgaJwt, undefined, 'GET');
    expect(listed.body.data).toEqual([expect.objectContaining({ connection_id: connectionId, provider, status: 'active' })]);
    expect(JSON.stringify(listed.body)).not.toContain(String(await vaultSecret(connectionId, 'access_token_secret_id')));
  });

  it('refuses a replayed state (409)', async () => {
    const { state, code } = await signInAtProvider();
    expect((await auth('/callback', olgaJwt, { state, code, redirect_uri: REDIRECT })).status).toBe(201);
    const replay = await auth('/callback', olgaJwt, { state, code, redirect_uri: REDIRECT });
    expect(replay.status).toBe(409);
    expect(replay.body.error).toMatchObject({ code: '55000', message: 'this OAuth state was already used' });
  });

  it('refuses a code redeemed with the wrong verifier: the provider checks PKCE (400 invalid_grant)', async () => {
    const stolen = await signInAtProvider();
    // A second sign-in's state carries another verifier than the one the stolen code was bound to.
    const other = await auth('/start', olgaJwt, { provider, redirect_uri: REDIRECT });
    const refused = await auth('/callback', olgaJwt, { state: other.body.data?.state, code: stolen.code, redirect_uri: REDIRECT });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'invalid_grant' });
  });

  it('refuses an expired state (409)', async () => {
    const { state, code } = await signInAtProvider();
    await pool.query(
      `update private.oauth_authorization_flows set created_at = now() - interval '1 hour', expires_at = now() - interval '1 second'
        where state_sha256 = encode(sha256(convert_to($1, 'UTF8')), 'hex')`,
      [state],
    );
    const refused = await auth('/callback', olgaJwt, { state, code, redirect_uri: REDIRECT });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: '55000', message: 'this OAuth sign-in expired' });
  });

  it('refuses a mismatched redirect (403), another user’s state (403), an unknown state (404), bad input (422)', async () => {
    const { state, code } = await signInAtProvider(OTHER_REDIRECT);
    const mismatched = await auth('/callback', olgaJwt, { state, code, redirect_uri: REDIRECT });
    expect(mismatched.status).toBe(403);
    expect(mismatched.body.error).toMatchObject({ code: '42501' });
    const fresh = await signInAtProvider();
    expect((await auth('/callback', strangerJwt, { ...fresh, redirect_uri: REDIRECT })).body.error).toMatchObject({ code: '42501' });
    expect((await auth('/callback', olgaJwt, { state: 'made-up-state', code: fresh.code, redirect_uri: REDIRECT })).status).toBe(404);
    expect((await auth('/callback', null, { ...fresh, redirect_uri: REDIRECT })).status).toBe(401);
    expect((await auth('/callback', olgaJwt, { state: fresh.state })).status).toBe(422);
    expect((await auth('/start', olgaJwt, { provider: 'no-such-provider', redirect_uri: REDIRECT })).status).toBe(404);
    expect((await auth('/start', olgaJwt, { provider, redirect_uri: 'http://evil.example/cb' })).status).toBe(422);
  });

  it('refreshes the agent’s expired token through the single-flight lease', async () => {
    await org.owner.grant_agent_oauth_access({ p_agent_id: agentId, p_connection_id: connectionId, p_scopes: ['openid'] });
    const oldRefresh = await vaultSecret(connectionId, 'refresh_token_secret_id');
    await pool.query(`update public.user_oauth_connections set expires_at = now() - interval '1 minute' where id = $1`, [connectionId]);
    expect((await auth('/refresh', strangerJwt, { agent_id: agentId, provider })).status).toBe(403);
    const refreshed = await auth('/refresh', olgaJwt, { agent_id: agentId, provider });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.data).toMatchObject({ connection_id: connectionId, refreshed: true });
    expect(new Date(String(refreshed.body.data?.expires_at)).getTime()).toBeGreaterThan(Date.now());
    expect(await vaultSecret(connectionId, 'refresh_token_secret_id')).not.toBe(oldRefresh);
    const again = await auth('/refresh', olgaJwt, { agent_id: agentId, provider });
    expect(again.body.data).toMatchObject({ refreshed: false });
  });

  it('disconnects: revoked at the provider, then locally', async () => {
    const refreshToken = String(await vaultSecret(connectionId, 'refresh_token_secret_id'));
    expect((await auth('/disconnect', strangerJwt, { connection_id: connectionId })).status).toBe(403);
    const done = await auth('/disconnect', olgaJwt, { connection_id: connectionId });
    expect(done.status).toBe(200);
    expect(done.body.data).toMatchObject({ revoked: true, provider_revoked: true });
    const { rows } = await pool.query('select status::text, access_token_secret_id, refresh_token_secret_id from public.user_oauth_connections where id = $1', [connectionId]);
    expect(rows).toEqual([{ status: 'revoked', access_token_secret_id: null, refresh_token_secret_id: null }]);
    // The provider no longer honours the refresh token.
    const reuse = await fetch(oidc.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: oidc.clientId }),
    });
    expect(reuse.status).toBe(400);
    expect(await reuse.json()).toMatchObject({ error: 'invalid_grant' });
    expect((await auth('/disconnect', olgaJwt, { connection_id: connectionId })).status).toBe(409);
  });
});
