// mcp-auth-manager: OAuth sign-in with PKCE (start, callback), refresh, disconnect, as the caller.
// Routes and statuses: client/src/oauth/flow.ts; deploy: `supabase functions deploy mcp-auth-manager`.
// A provider's client secret, where it needs one: OAUTH_CLIENT_SECRET_<PROVIDER> (e.g. OAUTH_CLIENT_SECRET_GITHUB).
import { createAuthManagerHandler } from '../_shared/sdk.ts';
import { corsOrigin, transportForJwt } from '../_shared/transport.ts';

Deno.serve(
  createAuthManagerHandler({
    transportFor: transportForJwt,
    corsOrigin,
    clientSecret: (provider) => Deno.env.get(`OAUTH_CLIENT_SECRET_${provider.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`),
  }),
);
