/**
 * Agent API keys through any transport acting as a user who may manage the agent (its owner or
 * an admin): create (the key is in the answer, and nowhere else, ever), list, revoke.
 */
import { z } from 'zod';
import { ApiKeyRowSchema, CreatedApiKeySchema, TimestampArgSchema, UuidSchema, type ApiKeyRow, type CreatedApiKey } from '../schemas.ts';
export { ApiKeyRowSchema, CreatedApiKeySchema, type ApiKeyRow, type CreatedApiKey };
import type { RpcTransport } from '../transport.ts';
import { parse } from './store.ts';



export async function createAgentApiKey(transport: RpcTransport, agentId: string, name: string, expiresAt?: string | Date): Promise<CreatedApiKey> {
  const expires = expiresAt === undefined ? undefined : TimestampArgSchema.parse(expiresAt instanceof Date ? expiresAt.toISOString() : expiresAt);
  const rows = await transport.rpc('create_agent_api_key', { p_agent_id: agentId, p_name: name, ...(expires ? { p_expires_at: expires } : {}) });
  return parse(z.array(CreatedApiKeySchema).length(1), rows, 'create_agent_api_key')[0] as CreatedApiKey;
}

export async function listAgentApiKeys(transport: RpcTransport, agentId: string): Promise<ApiKeyRow[]> {
  return parse(z.array(ApiKeyRowSchema), await transport.rpc('list_agent_api_keys', { p_agent_id: agentId }), 'list_agent_api_keys');
}

export async function revokeAgentApiKey(transport: RpcTransport, keyId: string, reason?: string): Promise<boolean> {
  return parse(z.boolean(), await transport.rpc('revoke_agent_api_key', { p_key_id: keyId, ...(reason ? { p_reason: reason } : {}) }), 'revoke_agent_api_key');
}
