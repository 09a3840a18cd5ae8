/**
 * The TypeScript SDK of the MCP control plane. Everything here runs under Node and Deno
 * (Supabase Edge Functions); the Node adapter of the manager is in manager/serve.ts.
 */
export type { RpcTransport } from './transport.ts';
export { supabaseTransport, fromPostgrestError, type SupabaseRpcClient, type PostgrestErrorLike } from './supabase-transport.ts';
export { directTransport, toControlPlaneError, type DirectTransportOptions, type PgPoolLike, type PgClientLike } from './direct-transport.ts';
export {
  signJwt,
  verifyJwt,
  parseClaims,
  jwtKeysFromEnv,
  ApiRoleSchema,
  JwtClaimsSchema,
  ASYMMETRIC_ALGORITHMS,
  type ApiRole,
  type JwtClaims,
  type JwtClaimsInput,
  type JwtKeys,
  type JwtKeyInput,
} from './jwt.ts';
export {
  McpControlPlaneError,
  NotAllowedError,
  InvalidArgumentError,
  NotFoundError,
  ConflictError,
  IllegalStateError,
  ConstraintError,
  UnauthorizedError,
  UnavailableError,
  UnexpectedResultError,
  UpstreamError,
  SdkErrorCode,
  controlPlaneError,
  httpStatusForCode,
  type ControlPlaneErrorFields,
} from './errors.ts';
export * from './schemas.ts';
export { callRpc, createRpc, describeIssues, type Rpc } from './rpc.ts';
export { createMcpChat, type McpChat } from './chat/index.ts';
export { closeMCPContext } from './chat/registry.ts';
export { findContextTool } from './chat/context.ts';
export type {
  CallToolOptions,
  ContextTool,
  LegacyMcpConfiguration,
  McpChatOptions,
  McpGatewayOptions,
  McpContext,
  McpServerTarget,
  PrepareContextOptions,
  ServerContext,
  ServerError,
  ServerStatus,
} from './chat/types.ts';
export {
  getAgentOAuthToken,
  OAuthRefreshError,
  ProviderTokenResponseSchema,
  type AgentOAuthToken,
  type GetAgentOAuthTokenOptions,
  type ProviderTokenResponse,
} from './oauth/refresh.ts';
export * from './gateway/index.ts';
export { createManagerHandler, DeployBodySchema, GrantBodySchema, RevokeBodySchema, type ManagerHandlerOptions } from './manager/handler.ts';
