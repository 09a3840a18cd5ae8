/**
 * A real OpenID provider on a loopback port for the OAuth tests: the certified `oidc-provider`
 * (authorization code with PKCE required, refresh tokens with rotation, RFC 7009 revocation,
 * userinfo), one public client, and a scripted user agent that signs a user in and consents,
 * then follows the redirects back to the client's redirect URI. Node-only; tests only.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export interface LocalOidc {
  issuer: string;
  clientId: string;
  /** The endpoints as oauth_providers holds them. */
  authorizationEndpoint: string;
  tokenEndpoint: string;
  revocationEndpoint: string;
  userinfoEndpoint: string;
  /**
   * Plays the browser: opens the authorization URL, signs `accountId` in, consents to what was
   * asked, and returns the query of the final redirect to the client (code and state, or error).
   */
  authorize(authorizationUrl: string, accountId: string): Promise<{ redirectedTo: string; params: URLSearchParams }>;
  close(): Promise<void>;
}

export async function startLocalOidc(options: { redirectUris: string[]; clientId?: string }): Promise<LocalOidc> {
  const clientId = options.clientId ?? 'mcp-control-plane';
  let provider: Provider | undefined;
  const server = http.createServer((req, res) => {
    void (async () => {
      const match = /^\/interaction\/([^/?]+)/.exec(req.url ?? '');
      if (!match || !provider) return provider?.callback()(req, res);
      // The sign-in and consent pages, answered at once for the account the test named.
      const details = await provider.interactionDetails(req, res);
      const accountId = new URL(req.url ?? '/', 'http://x').searchParams.get('account') ?? 'alice';
      if (details.prompt.name === 'login') {
        await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
        return;
      }
      const grant = new provider.Grant({ accountId: details.session?.accountId ?? accountId, clientId });
      const scope = String(details.params.scope ?? '');
      if (scope) grant.addOIDCScope(scope);
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    })().catch((error: unknown) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  provider = new Provider(issuer, {
    clients: [{ client_id: clientId, token_endpoint_auth_method: 'none', redirect_uris: options.redirectUris, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] }],
    pkce: { required: () => true, methods: ['S256'] },
    features: { devInteractions: { enabled: false }, revocation: { enabled: true }, userinfo: { enabled: true } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    scopes: ['openid', 'offline_access', 'email'],
    claims: { email: ['email'] },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub, email: `${sub}@oidc.test` }) }),
    issueRefreshToken: (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    cookies: { keys: ['local-oidc-test-cookie-key'] },
    // The scopes' claims in the ID token too (the client has no userinfo call to make at sign-in).
    conformIdTokenClaims: false,
    ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, RefreshToken: 86_400, Grant: 86_400, Interaction: 600, Session: 3600 },
  });
  provider.on('server_error', (_ctx, error) => console.error('oidc-provider:', error));

  const authorize = async (authorizationUrl: string, accountId: string): Promise<{ redirectedTo: string; params: URLSearchParams }> => {
    const jar = new Map<string, string>();
    let url = authorizationUrl;
    for (let hop = 0; hop < 10; hop++) {
      if (!url.startsWith(issuer)) {
        const redirectedTo = url.split('?')[0] ?? url;
        return { redirectedTo, params: new URL(url).searchParams };
      }
      if (url.includes('/interaction/')) url += `${url.includes('?') ? '&' : '?'}account=${encodeURIComponent(accountId)}`;
      const response = await fetch(url, { redirect: 'manual', headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } });
      for (const cookie of response.headers.getSetCookie()) {
        const [pair] = cookie.split(';');
        const at = pair?.indexOf('=') ?? -1;
        if (pair && at > 0) jar.set(pair.slice(0, at), pair.slice(at + 1));
      }
      const location = response.headers.get('location');
      if (!location) throw new Error(`the provider answered ${response.status} without a redirect: ${await response.text()}`);
      url = new URL(location, url).toString();
    }
    throw new Error('too many redirects');
  };

  return {
    issuer,
    clientId,
    authorizationEndpoint: `${issuer}/auth`,
    tokenEndpoint: `${issuer}/token`,
    revocationEndpoint: `${issuer}/token/revocation`,
    userinfoEndpoint: `${issuer}/me`,
    authorize,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
