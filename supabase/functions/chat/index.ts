// chat: one conversation turn of an agent with its MCP tools under the database's access control,
// streamed as server-sent events. Flow and events: client/src/functions/chat.ts.
// Deploy: `supabase functions deploy chat`. The model: any OpenAI-compatible chat-completions API.
import { createChatHandler } from '../_shared/sdk.ts';
import { corsOrigin, transportForJwt } from '../_shared/transport.ts';

const number = (name: string): number | undefined => (Deno.env.get(name) ? Number(Deno.env.get(name)) : undefined);
// Tools are reached through the agent MCP gateway with the caller's own JWT: no toolbox token here.
const supabaseUrl = Deno.env.get('SUPABASE_URL');
const gatewayUrl = Deno.env.get('MCP_GATEWAY_URL') || (supabaseUrl ? `${supabaseUrl}/functions/v1/mcp-gateway` : undefined);
if (!gatewayUrl) throw new Error('MCP_GATEWAY_URL is not set (nor SUPABASE_URL, whose mcp-gateway function is the default)');

Deno.serve(
  createChatHandler({
    transportFor: transportForJwt,
    corsOrigin,
    model: {
      baseUrl: Deno.env.get('OPENAI_BASE_URL') ?? 'https://api.openai.com/v1',
      model: Deno.env.get('OPENAI_MODEL') ?? 'gpt-4o-mini',
      ...(Deno.env.get('OPENAI_API_KEY') ? { apiKey: Deno.env.get('OPENAI_API_KEY') } : {}),
      ...(number('CHAT_MODEL_TIMEOUT_MS') ? { timeoutMs: number('CHAT_MODEL_TIMEOUT_MS') } : {}),
    },
    gatewayUrl,
    ...(number('CHAT_SERVER_TIMEOUT_MS') ? { serverTimeoutMs: number('CHAT_SERVER_TIMEOUT_MS') } : {}),
    ...(number('CHAT_TOOL_TIMEOUT_MS') ? { toolTimeoutMs: number('CHAT_TOOL_TIMEOUT_MS') } : {}),
    ...(number('CHAT_MAX_TOOL_ROUNDS') ? { maxToolRounds: number('CHAT_MAX_TOOL_ROUNDS') } : {}),
  }),
);
