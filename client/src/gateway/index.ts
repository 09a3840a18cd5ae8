/**
 * The agent MCP gateway: one Streamable HTTP MCP endpoint per agent, the database's decision on
 * every call. Runs under Node and Deno (no Node-only imports).
 */
export { createGateway, jsonRpcError, type Gateway, type GatewayOptions } from './handler.ts';
export { gatewayStore, sqlGatewayStore, SERVICE_ROLE_OPTIONS, type GatewayStore, type GatewayCredential, type GatewayCallDecision, type GatewayPrincipal, type GatewayServer, type GatewayToolDecision, type GatewayUpstream, type PresentedServerTools } from './store.ts';
export { GatewayErrorCode, RelayedError, SERVER_META_KEY } from './relayed.ts';
export { NAMESPACE_SEPARATOR, namespaces, qualify, unqualify, slug } from './namespace.ts';
export { interactionLog, type InteractionLog } from './interaction-log.ts';
export { GATEWAY_CHANNEL, gatewayCache, listenForChanges, type ChangeListener, type ChangeListenerOptions, type GatewayCache, type ListenConnection } from './cache.ts';
export { createAgentApiKey, listAgentApiKeys, revokeAgentApiKey, type CreatedApiKey, type ApiKeyRow } from './keys.ts';
