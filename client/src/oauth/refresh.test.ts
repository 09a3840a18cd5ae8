// Single-flight OAuth refresh, end to end: the database of scripts/test.sh coordinates, a real
// local token endpoint (token-endpoint.ts) answers over HTTP, and every caller is the agent
// owner's session through the direct transport (role and claims set per transaction, as
// PostgREST does). The endpoint counts requests and rotates refresh tokens, so a second use of
// a refresh token, which single-flight must prevent, would show up as invalid_grant.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { newPool, waitFor } from '../../../test/support/db.ts';
import { directTransport } from '../direct-transport.ts';
import { IllegalStateError, NotAllowedError } from '../errors.ts';
import type { RpcTransport } from '../transport.ts';
import { getAgentOAuthToken, OAuthRefreshError, type GetAgentOAuthTokenOptions } from './refresh.ts';
import { startTokenEndpoint, type TokenEndpoint } from '../../../test/support/token-endpoint.ts';

const pool = newPool(30);
const tag = randomBytes(4).toString('hex');
const provider = `test-${tag}`;
let endpoint: TokenEndpoint;
let owner: RpcTransport;
let admin: RpcTransport;
let ownerId: string;
let agentId: string;
let connectionId: string;

const options = (extra: Partial<GetAgentOAuthTokenOptions> = {}): GetAgentOAuthTokenOptions => ({
  transport: owner,
  agentId,
  provider,
  scopes: ['repo'],
  clientSecret: (name) => (name === provider ? 'test-client-secret' : undefined),
  ...extra,
});

async function createUser(label: string): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `insert into auth.users (email, raw_app_meta_data, email_confirmed_at) values ($1, '{"provider":"email"}', now()) returning id`,
    [`${label}-${tag}@oauth.test`]);
  return rows[0]!.id;
}

/** The connection as postgres sees it, with the refresh token read from Vault. */
async function connection(): Promise<{ status: string; refresh_failures: number; expires_at: Date | null; refresh_token: string }> {
  const { rows } = await pool.query(
    `select c.status, c.refresh_failures, c.expires_at, s.decrypted_secret as refresh_token
       from public.user_oauth_connections c join vault.decrypted_secrets s on s.id = c.refresh_token_secret_id
      where c.id = $1`, [connectionId]);
  return rows[0];
}

const expire = () => pool.query(`update public.user_oauth_connections set expires_at = now() - interval '1 minute' where id = $1`, [connectionId]);
const requestsSince = (before: number) => endpoint.requests.slice(before);

beforeAll(async () => {
  endpoint = await startTokenEndpoint({ clientId: 'test-client', clientSecret: 'test-client-secret', latencyMs: 150, scope: 'repo read:user' });
  await pool.query(
    `insert into public.oauth_providers (name, display_name, authorization_endpoint, token_endpoint, default_scopes, client_id)
     values ($1, 'Local test provider', $2, $3, '{repo}', 'test-client')`,
    [provider, endpoint.url.replace(/token$/, 'authorize'), endpoint.url]);
  ownerId = await createUser('owner');
  const adminId = await createUser('admin');
  owner = directTransport({ pool, claims: { role: 'authenticated', sub: ownerId } });
  admin = directTransport({ pool, claims: { role: 'authenticated', sub: adminId } });
  const organizationId = (await owner.rpc('create_organization', { p_name: 'OAuth test', p_slug: `oauth-${tag}` })) as string;
  await owner.rpc('add_organization_member', { p_organization_id: organizationId, p_user_id: adminId, p_role: 'admin' });
  const { rows } = await pool.query<{ id: string }>(
    `insert into public.agents (organization_id, user_id, name) values ($1, $2, 'oauth-agent') returning id`, [organizationId, ownerId]);
  agentId = rows[0]!.id;
  connectionId = (await owner.rpc('store_user_oauth_connection', {
    p_provider: provider, p_access_token: 'at-initial', p_refresh_token: endpoint.issueRefreshToken(), p_expires_in: 3600,
    p_scopes: ['repo', 'read:user'], p_provider_account_id: 'acct-1',
  })) as string;
  await owner.rpc('grant_agent_oauth_access', { p_agent_id: agentId, p_connection_id: connectionId, p_scopes: ['repo'] });
});

afterAll(async () => {
  await endpoint?.close();
  await pool.end();
});

beforeEach(() => endpoint.setLatency(150));

describe('getAgentOAuthToken', () => {
  it('hands out a valid token without touching the provider', async () => {
    const before = endpoint.requests.length;
    const token = await getAgentOAuthToken(options());
    expect(token).toMatchObject({ accessToken: 'at-initial', tokenType: 'Bearer', connectionId, refreshed: false, scopes: ['repo'] });
    expect(requestsSince(before)).toHaveLength(0);
  });

  it('refreshes an expired connection once for 20 concurrent callers', async () => {
    await expire();
    const oldRefresh = (await connection()).refresh_token;
    const before = endpoint.requests.length;
    const tokens = await Promise.all(Array.from({ length: 20 }, () => getAgentOAuthToken(options())));

    const sent = requestsSince(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.method).toBe('POST');
    expect(sent[0]!.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(new URLSearchParams(sent[0]!.body))).toEqual({
      grant_type: 'refresh_token', refresh_token: oldRefresh, client_id: 'test-client', client_secret: 'test-client-secret',
    });
    const issued = endpoint.lastAccessToken();
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set([issued]));
    expect(tokens.filter((t) => t.refreshed)).toHaveLength(1);
    const after = await connection();
    expect(after.status).toBe('active');
    expect(after.refresh_token).not.toBe(oldRefresh); // the provider rotated it; Vault holds the new one
    expect(after.expires_at!.getTime()).toBeGreaterThan(Date.now() + 3500_000);
  });

  it('lets another refresher take over when a lease holder crashes, and refuses the late answer', async () => {
    await expire();
    const crashed = (await owner.rpc('begin_oauth_refresh', { p_connection_id: connectionId, p_lease_seconds: 1 })) as { outcome: string; lease_id: string }[];
    expect(crashed[0]!.outcome).toBe('lease');
    const before = endpoint.requests.length;
    const started = Date.now();

    const token = await getAgentOAuthToken(options());
    expect(Date.now() - started).toBeGreaterThanOrEqual(800); // it waited for the lease to expire
    expect(token.refreshed).toBe(true);
    expect(token.accessToken).toBe(endpoint.lastAccessToken());
    expect(requestsSince(before)).toHaveLength(1);

    const late = owner.rpc('complete_oauth_refresh', { p_lease_id: crashed[0]!.lease_id, p_access_token: 'late-and-stale' });
    await expect(late).rejects.toBeInstanceOf(IllegalStateError);
    await expect(late).rejects.toMatchObject({ code: '55000' });
    expect((await getAgentOAuthToken(options())).accessToken).toBe(token.accessToken);
  });

  it('gives up on a provider that hangs before its lease ends', async () => {
    await expire();
    endpoint.setLatency(1_500);
    const before = endpoint.requests.length;
    const answered = endpoint.answeredCount();
    const started = Date.now();
    const hung = getAgentOAuthToken(options({ leaseSeconds: 1 }));
    await expect(hung).rejects.toBeInstanceOf(OAuthRefreshError);
    expect(Date.now() - started).toBeLessThan(1_000); // given up before the 1 s lease ended
    expect((await connection()).status).toBe('refresh_required');
    expect(requestsSince(before)).toHaveLength(1);

    // The provider still processed the request and rotated the refresh token the database holds:
    // with rotation, an answer lost in transit costs a reconnect. Connect again for what follows.
    await waitFor('the hung request to be answered', async () => (endpoint.answeredCount() > answered ? true : undefined));
    await owner.rpc('store_user_oauth_connection', {
      p_provider: provider, p_access_token: 'at-after-hang', p_refresh_token: endpoint.issueRefreshToken(), p_expires_in: 3600,
      p_scopes: ['repo', 'read:user'], p_provider_account_id: 'acct-1',
    });
  });

  it('keeps the old refresh token after a provider error, and recovers with a later refresh', async () => {
    await expire();
    const kept = (await connection()).refresh_token;
    endpoint.failNext(1, { status: 503, error: 'temporarily_unavailable', retryAfter: 1 });
    const before = endpoint.requests.length;

    const results = await Promise.allSettled(Array.from({ length: 5 }, () => getAgentOAuthToken(options())));
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof OAuthRefreshError)).toBe(true);
    expect(requestsSince(before)).toHaveLength(1); // the waiters learn of the failure; they do not stampede
    const failed = results[0] as PromiseRejectedResult;
    expect((failed.reason as OAuthRefreshError).reconnectRequired).toBe(false);
    const retryAt = (failed.reason as OAuthRefreshError).retryAt;
    expect(retryAt).toBeInstanceOf(Date);
    const afterFailure = await connection();
    expect(afterFailure.status).toBe('refresh_required');
    expect(afterFailure.refresh_token).toBe(kept);

    await new Promise((r) => setTimeout(r, Math.max(0, retryAt!.getTime() - Date.now()) + 50));
    const token = await getAgentOAuthToken(options());
    expect(token.refreshed).toBe(true);
    expect(token.accessToken).toBe(endpoint.lastAccessToken());
    expect(requestsSince(before)).toHaveLength(2);
    expect(Object.fromEntries(new URLSearchParams(endpoint.requests.at(-1)!.body)).refresh_token).toBe(kept);
    expect((await connection()).status).toBe('active');
  });

  it('asks for a reconnect when the provider refuses the refresh token for good', async () => {
    await expire();
    endpoint.failNext(1, { status: 400, error: 'invalid_grant', description: 'the refresh token was revoked' });
    const refused = getAgentOAuthToken(options());
    await expect(refused).rejects.toMatchObject({ reconnectRequired: true });
    expect((await connection()).status).toBe('error');
    await expect(getAgentOAuthToken(options())).rejects.toBeInstanceOf(IllegalStateError);

    await owner.rpc('store_user_oauth_connection', {
      p_provider: provider, p_access_token: 'at-reconnected', p_refresh_token: endpoint.issueRefreshToken(), p_expires_in: 3600,
      p_scopes: ['repo', 'read:user'], p_provider_account_id: 'acct-1',
    });
    expect((await getAgentOAuthToken(options())).accessToken).toBe('at-reconnected');
  });

  it("gives the token to nobody but the agent owner's runtime", async () => {
    await expect(getAgentOAuthToken(options({ transport: admin }))).rejects.toBeInstanceOf(NotAllowedError);
    const anon = directTransport({ pool, claims: { role: 'anon' } });
    await expect(getAgentOAuthToken(options({ transport: anon }))).rejects.toBeInstanceOf(NotAllowedError);
    await expect(getAgentOAuthToken(options({ scopes: ['read:user'] }))).rejects.toBeInstanceOf(NotAllowedError);
    const service = directTransport({ pool, claims: { role: 'service_role' } });
    expect((await getAgentOAuthToken(options({ transport: service }))).accessToken).toBe('at-reconnected');
  });
});
