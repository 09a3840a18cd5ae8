// mcp-server-manager: deploy, remove, status and permissions of MCP servers, as the caller.
// Routes and statuses: client/src/manager/handler.ts; deploy: `supabase functions deploy mcp-server-manager`.
import { createManagerHandler } from '../_shared/sdk.ts';
import { corsOrigin, transportForJwt } from '../_shared/transport.ts';

Deno.serve(createManagerHandler({ transportFor: transportForJwt, corsOrigin }));
