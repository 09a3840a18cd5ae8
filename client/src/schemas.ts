/**
 * The public RPC API of the database (db/functions/*.sql), as zod schemas: the arguments each
 * function takes (named as the SQL names them) and the result it returns, as PostgREST
 * serialises it (uuids and timestamps as strings, jsonb as JSON, a row set as an array of
 * objects, void as null). Types are inferred from these schemas, never written twice.
 *
 * Arguments are strict objects: PostgREST finds a function by the names of the arguments sent,
 * so an unknown key is a mistake worth catching before the request leaves.
 *
 * Longer than 400 lines because it is the whole contract in one place: client/src/contract.test.ts
 * holds it against the database's catalog, and a reader finds every function's shape here.
 */
import { z } from 'zod';

// ---------------------------------------------------------------- scalars

/** Any 8-4-4-4-12 hex id (Postgres accepts every version; so does the SDK). */
export const UuidSchema = z.guid();
/** A timestamptz as to_json writes it: ISO 8601 with an offset. */
export const TimestampSchema = z.iso.datetime({ offset: true });
/** A timestamptz argument: an ISO string or a Date (sent as ISO). */
export const TimestampArgSchema = z.union([z.date().transform((date) => date.toISOString()), TimestampSchema]);
export const JsonValueSchema = z.json();
export type JsonValue = z.infer<typeof JsonValueSchema>;
export const JsonObjectSchema = z.record(z.string(), JsonValueSchema);
export type JsonObject = z.infer<typeof JsonObjectSchema>;
/** A void function answers nothing (PostgREST: 204; the direct transport: null). */
export const VoidResultSchema = z.unknown().transform((): null => null);

// ---------------------------------------------------------------- enums (db/schema)

export const OrgRoleSchema = z.enum(['owner', 'admin', 'member', 'viewer']);
export type OrgRole = z.infer<typeof OrgRoleSchema>;
export const McpServerStatusSchema = z.enum(['pending', 'deploying', 'running', 'unhealthy', 'stopping', 'stopped', 'failed', 'removing', 'removed']);
export type McpServerStatus = z.infer<typeof McpServerStatusSchema>;
export const McpTransportTypeSchema = z.enum(['stdio', 'sse', 'websocket', 'streamable_http']);
export type McpTransportType = z.infer<typeof McpTransportTypeSchema>;
export const McpHealthStatusSchema = z.enum(['healthy', 'unhealthy', 'unknown']);
export type McpHealthStatus = z.infer<typeof McpHealthStatusSchema>;
export const PermissionScopeSchema = z.enum(['read_only', 'full_access', 'custom']);
export type PermissionScope = z.infer<typeof PermissionScopeSchema>;
export const ManageActionSchema = z.enum(['create', 'update', 'delete', 'deploy', 'stop', 'restart']);
export type ManageAction = z.infer<typeof ManageActionSchema>;
export const DtmaRequestStateSchema = z.enum(['queued', 'sent', 'succeeded', 'failed', 'abandoned', 'unconfirmed']);

// ---------------------------------------------------------------- shared shapes

/** A tool as an MCP server presents it (tools/list); the database hashes name, description, inputSchema, annotations. */
export const PresentedToolSchema = z.looseObject({
  name: z.string().min(1),
  description: z.string().optional(),
  inputSchema: z.record(z.string(), z.unknown()).optional(),
  annotations: z.record(z.string(), z.unknown()).optional(),
});
export type PresentedTool = z.infer<typeof PresentedToolSchema>;

/** manage_mcp_servers' server_config for create (checked again, fully, by the database). */
export const CreateServerConfigSchema = z.strictObject({
  toolbox_id: UuidSchema,
  catalog_name: z.string().min(1),
  instance_name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be 1-63 characters of a-z 0-9 _ - starting with a letter or digit'),
  display_name: z.string().min(1).max(200).optional(),
  configuration: JsonObjectSchema.optional(),
  /** Which of the caller's OAuth connections the server uses, per provider (null drops one). */
  oauth_connections: z.record(z.string(), UuidSchema.nullable()).optional(),
  priority: z.int().min(0).max(1000).optional(),
});
export type CreateServerConfig = z.infer<typeof CreateServerConfigSchema>;

/** manage_mcp_servers' server_config for update. */
export const UpdateServerConfigSchema = CreateServerConfigSchema.pick({
  display_name: true,
  configuration: true,
  oauth_connections: true,
  priority: true,
});

/** agent_mcp_connections.connection_config. */
export const ConnectionConfigSchema = z.strictObject({
  timeoutMs: z.int().min(100).max(120_000).optional(),
  maxRetries: z.int().min(0).max(5).optional(),
  priority: z.int().min(0).max(1000).optional(),
  enabled: z.boolean().optional(),
});
export type ConnectionConfig = z.infer<typeof ConnectionConfigSchema>;

/** An instance as manage_mcp_servers returns it (the row without its pinned manifest, plus tool_count). */
export const McpServerInstanceSchema = z.looseObject({
  id: UuidSchema,
  organization_id: UuidSchema,
  account_tool_environment_id: UuidSchema,
  catalog_id: UuidSchema,
  instance_name_on_toolbox: z.string(),
  display_name: z.string(),
  configuration: JsonObjectSchema,
  mcp_server_type: z.string(),
  mcp_endpoint_path: z.string(),
  mcp_transport_type: McpTransportTypeSchema,
  status: McpServerStatusSchema,
  health_status: McpHealthStatusSchema,
  endpoint_url: z.string().nullable(),
  /** The full error: the platform (service_role) only. */
  last_error: z.string().nullable().optional(),
  /** What an organization is shown of the last error: HTTP status and a short reason. */
  last_error_summary: z.string().nullable(),
  /** Secret configuration fields that are set (values in Vault only), with when each changed. */
  secret_fields: z.record(z.string(), z.string()),
  /** The OAuth connection the server uses, per provider. */
  oauth_connections: z.record(z.string(), UuidSchema),
  priority: z.int(),
  tool_count: z.int(),
  created_at: TimestampSchema,
  updated_at: TimestampSchema,
});
export type McpServerInstance = z.infer<typeof McpServerInstanceSchema>;

export const AgentMcpServerSchema = z.object({
  server_instance_id: UuidSchema,
  server_name: z.string(),
  mcp_server_type: z.string(),
  endpoint_url: z.string().nullable(),
  mcp_endpoint_path: z.string(),
  mcp_transport_type: McpTransportTypeSchema,
  status: McpServerStatusSchema,
  health_status: McpHealthStatusSchema,
  permission_scope: PermissionScopeSchema,
  /** The effective tools: the pinned manifest filtered by the scope. */
  allowed_tools: z.array(z.string()),
  expires_at: TimestampSchema.nullable(),
  priority: z.int(),
  capabilities: z.json(),
  grant_id: UuidSchema,
  granted_at: TimestampSchema,
});
export type AgentMcpServer = z.infer<typeof AgentMcpServerSchema>;

export const OrganizationMcpConfigSchema = z.object({
  server_instance_id: UuidSchema,
  name: z.string(),
  type: z.string(),
  endpoint_url: z.string().nullable(),
  transport: McpTransportTypeSchema,
  permission_scope: PermissionScopeSchema,
  allowed_tools: z.array(z.string()),
  expires_at: TimestampSchema.nullable(),
  priority: z.int(),
  capabilities: z.json(),
  timeout_ms: z.int(),
  max_retries: z.int(),
  enabled: z.boolean(),
});
export type OrganizationMcpConfig = z.infer<typeof OrganizationMcpConfigSchema>;

export const AvailableMcpServerSchema = z.object({
  server_instance_id: UuidSchema,
  organization_id: UuidSchema,
  organization_name: z.string(),
  server_name: z.string(),
  mcp_server_type: z.string(),
  status: McpServerStatusSchema,
  health_status: McpHealthStatusSchema,
  mcp_transport_type: McpTransportTypeSchema,
  endpoint_url: z.string().nullable(),
  tool_count: z.int(),
  caller_role: OrgRoleSchema,
});
export type AvailableMcpServer = z.infer<typeof AvailableMcpServerSchema>;

export const ToolFilterRowSchema = z.object({
  tool_name: z.string(),
  allowed: z.boolean(),
  /** allowed, no_live_grant, not_in_pinned_manifest, definition_changed, not_read_only, not_in_allowed_tools */
  reason: z.string(),
  presented_sha256: z.string(),
});
export type ToolFilterRow = z.infer<typeof ToolFilterRowSchema>;

export const AccessOverviewRowSchema = z.object({
  agent: z.string(),
  agent_owner: z.string().nullable(),
  server: z.string(),
  scope: PermissionScopeSchema,
  tools: z.array(z.string()),
  expires_at: TimestampSchema.nullable(),
  state: z.string(),
  granted_by: z.string().nullable(),
  granted_at: TimestampSchema,
});

export const DeployToDtmaResultSchema = McpServerInstanceSchema.extend({
  dtma_request: z
    .looseObject({ id: z.int(), operation: z.string(), state: DtmaRequestStateSchema, attempt: z.int(), last_error: z.string().nullable() })
    .nullable(),
});

export const HarvestResultSchema = z.object({
  succeeded: z.int(),
  failed: z.int(),
  retried: z.int(),
  lost: z.int(),
  in_flight: z.int(),
  sent: z.int(),
});

/** One element of audit_mcp_interactions.p_interactions (db/functions/interactions.sql). */
export const InteractionSchema = z.strictObject({
  interaction_type: z.enum(['tool_call', 'context_request', 'error']),
  outcome: z.enum(['success', 'error', 'denied', 'timeout']),
  duration_ms: z.int().min(0).max(86_400_000),
  server_instance_id: UuidSchema.optional(),
  tool_name: z.string().min(1).max(200).optional(),
  /** Stored as its sha256 only. */
  arguments: z.json().optional(),
  error: z.string().max(2000).optional(),
  request_id: z.string().max(200).optional(),
});
export type Interaction = z.infer<typeof InteractionSchema>;

export const ToolAccessAtRowSchema = z.object({
  agent_id: UuidSchema,
  agent_name: z.string(),
  agent_owner_id: UuidSchema,
  grant_id: UuidSchema,
  permission_scope: PermissionScopeSchema,
  allowed_tools: z.array(z.string()).nullable(),
  granted_by: UuidSchema.nullable(),
  granted_at: TimestampSchema,
  expires_at: TimestampSchema.nullable(),
  revoked_at: TimestampSchema.nullable(),
});

export const OauthConnectionStatusSchema = z.enum(['active', 'expired', 'revoked', 'error', 'refresh_required']);

export const UserOauthConnectionSchema = z.object({
  connection_id: UuidSchema,
  provider: z.string(),
  provider_display_name: z.string(),
  provider_account_id: z.string(),
  account_label: z.string(),
  scopes: z.array(z.string()),
  status: OauthConnectionStatusSchema,
  expires_at: TimestampSchema.nullable(),
  last_refreshed_at: TimestampSchema.nullable(),
  last_error: z.string().nullable(),
  live_agent_permissions: z.int(),
  created_at: TimestampSchema,
});

export const AgentOauthPermissionSchema = z.object({
  permission_id: UuidSchema,
  connection_id: UuidSchema,
  provider: z.string(),
  provider_display_name: z.string(),
  account_label: z.string(),
  scopes: z.array(z.string()),
  expires_at: TimestampSchema.nullable(),
  usage_count: z.int(),
  last_used_at: TimestampSchema.nullable(),
  granted_by: UuidSchema.nullable(),
  granted_at: TimestampSchema,
  state: z.string(),
});

/** get_agent_oauth_token's row: `ok` carries the token; `refresh_required` none (refresh, then ask again). */
export const AgentOauthTokenSchema = z.object({
  status: z.enum(['ok', 'refresh_required']),
  access_token: z.string().nullable(),
  token_type: z.string(),
  expires_at: TimestampSchema.nullable(),
  connection_id: UuidSchema,
  permission_id: UuidSchema,
  scopes: z.array(z.string()),
});
export type AgentOauthToken = z.infer<typeof AgentOauthTokenSchema>;

/** begin_oauth_refresh's columns; each outcome fills its own (OauthRefreshLeaseSchema). */
const OauthRefreshRowSchema = z.object({
  lease_id: UuidSchema.nullable(),
  lease_expires_at: TimestampSchema.nullable(),
  refresh_token: z.string().nullable(),
  token_endpoint: z.string().nullable(),
  client_id: z.string().nullable(),
  provider: z.string().nullable(),
  access_token: z.string().nullable(),
  expires_at: TimestampSchema.nullable(),
  retry_at: TimestampSchema.nullable(),
  last_error: z.string().nullable(),
});

/**
 * begin_oauth_refresh's row, by outcome: `lease` (the caller refreshes with the refresh token at
 * the token endpoint), `wait` (another caller holds the lease), `fresh` (someone refreshed
 * meanwhile), `failed` (the last refresh failed: retry after retry_at).
 */
export const OauthRefreshLeaseSchema = z.discriminatedUnion('outcome', [
  OauthRefreshRowSchema.extend({
    outcome: z.literal('lease'),
    lease_id: UuidSchema,
    lease_expires_at: TimestampSchema,
    refresh_token: z.string().min(1),
    token_endpoint: z.url({ protocol: /^https?$/ }),
    provider: z.string(),
  }),
  OauthRefreshRowSchema.extend({ outcome: z.literal('wait'), lease_expires_at: TimestampSchema }),
  OauthRefreshRowSchema.extend({ outcome: z.literal('fresh'), access_token: z.string().min(1) }),
  OauthRefreshRowSchema.extend({ outcome: z.literal('failed') }),
]);
export type OauthRefreshLease = z.infer<typeof OauthRefreshLeaseSchema>;

// ---------------------------------------------------------------- OAuth sign-in (domain oauth_flow)

/** begin_oauth_authorization: what the browser is sent to the provider with; the verifier stays in the database. */
export const OauthAuthorizationBeginRowSchema = z.object({
  state: z.string(),
  code_challenge: z.string(),
  code_challenge_method: z.literal('S256'),
  authorization_endpoint: z.url(),
  client_id: z.string(),
  scope: z.string(),
  authorize_params: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  redirect_uri: z.string(),
  expires_at: TimestampSchema,
});
/** consume_oauth_authorization: the single-use flow, to exchange the code at the provider. */
export const OauthAuthorizationConsumeRowSchema = z.object({
  provider: z.string(),
  token_endpoint: z.url(),
  client_id: z.string(),
  code_verifier: z.string(),
  redirect_uri: z.string(),
  scopes: z.array(z.string()),
});
/** begin_oauth_disconnect: what to revoke at the provider before the connection is revoked locally. */
export const OauthDisconnectRowSchema = z.object({
  provider: z.string(),
  revocation_endpoint: z.string().nullable(),
  client_id: z.string().nullable(),
  token: z.string().nullable(),
  token_type_hint: z.string(),
});

// ---------------------------------------------------------------- the gateway (domain gateway)

export const CreatedApiKeySchema = z.object({
  key_id: UuidSchema,
  api_key: z.string().regex(/^mcpk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/),
  prefix: z.string(),
  expires_at: z.string().nullable(),
});
export type CreatedApiKey = z.infer<typeof CreatedApiKeySchema>;

export const ApiKeyRowSchema = z.object({
  key_id: UuidSchema,
  name: z.string(),
  prefix: z.string(),
  created_by: UuidSchema.nullable(),
  created_at: z.string(),
  expires_at: z.string().nullable(),
  last_used_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
  revoke_reason: z.string().nullable(),
  state: z.enum(['active', 'expired', 'revoked']),
});
export type ApiKeyRow = z.infer<typeof ApiKeyRowSchema>;

export const GatewayPrincipalSchema = z.object({
  agent_id: UuidSchema,
  organization_id: UuidSchema,
  key_id: UuidSchema.nullable(),
  /** How long from the question the API key stays valid, in ms (null: no expiry, or a user's JWT). */
  valid_for_ms: z.number().int().nonnegative().nullable(),
});
export type GatewayPrincipal = z.infer<typeof GatewayPrincipalSchema>;

/** The decision of one tool call, and how long from the question it holds unless the database announces a change (ms until the grant expires; null: no expiry). */
export const GatewayCallDecisionSchema = z.object({ allowed: z.boolean(), valid_for_ms: z.number().int().nonnegative().nullable() });
export type GatewayCallDecision = z.infer<typeof GatewayCallDecisionSchema>;
/** One server's tools as the gateway read them upstream (gateway_filter_tools' p_servers). */
export const PresentedServerToolsSchema = z.strictObject({ server_instance_id: UuidSchema, tools: z.array(PresentedToolSchema) });
/** gateway_filter_tools: one presented tool of one server, allowed or not and why (ToolFilterRow's reasons). */
export const GatewayToolDecisionSchema = z.object({ server_instance_id: UuidSchema, tool_name: z.string(), allowed: z.boolean(), reason: z.string() });
export type GatewayToolDecision = z.infer<typeof GatewayToolDecisionSchema>;

export const GatewayServerSchema = z.object({
  server_instance_id: UuidSchema,
  server_name: z.string(),
  instance_name: z.string(),
  permission_scope: PermissionScopeSchema,
  allowed_tools: z.array(z.string()),
  reads_allowed: z.boolean(),
  mcp_transport_type: McpTransportTypeSchema,
  expires_at: z.string().nullable(),
});
export type GatewayServer = z.infer<typeof GatewayServerSchema>;

export const GatewayUpstreamSchema = z.object({ endpoint_url: z.string(), mcp_transport_type: McpTransportTypeSchema, bearer_token: z.string().nullable() });
export type GatewayUpstream = z.infer<typeof GatewayUpstreamSchema>;

// ---------------------------------------------------------------- server status (mcp-server-manager)

export const DtmaRequestSummarySchema = z.object({
  id: z.number().int(),
  operation: z.string(),
  state: z.enum(['queued', 'sent', 'unconfirmed', 'failed']),
  attempt: z.number().int(),
  max_attempts: z.number().int(),
  last_status_code: z.number().int().nullable(),
  /** The classified outcome (HTTP status and a short reason), never DTMA's answer. */
  last_error: z.string().nullable(),
  next_attempt_at: TimestampSchema,
  created_at: TimestampSchema,
});

export const ServerStatusRowSchema = z.object({
  server_instance_id: UuidSchema,
  server_name: z.string(),
  instance_name: z.string(),
  status: McpServerStatusSchema,
  health_status: McpHealthStatusSchema,
  /** The classified outcome (HTTP status and a short reason), never DTMA's answer. */
  last_error: z.string().nullable(),
  last_health_check_at: TimestampSchema.nullable(),
  toolbox_id: UuidSchema,
  toolbox_status: z.string(),
  toolbox_last_heartbeat_at: TimestampSchema.nullable(),
  /** Admins only (null for others, and when the latest request succeeded). */
  dtma_request: DtmaRequestSummarySchema.nullable(),
});
export type ServerStatusRow = z.infer<typeof ServerStatusRowSchema>;

// ---------------------------------------------------------------- the functions

/** Every public function: its arguments and its result. rpc.ts builds the typed calls from this. */
export const rpcSchemas = {
  // tenancy
  create_organization: { args: z.strictObject({ p_name: z.string(), p_slug: z.string() }), result: UuidSchema },
  add_organization_member: {
    args: z.strictObject({ p_organization_id: UuidSchema, p_user_id: UuidSchema, p_role: OrgRoleSchema.optional() }),
    result: VoidResultSchema,
  },
  change_organization_member_role: {
    args: z.strictObject({ p_organization_id: UuidSchema, p_user_id: UuidSchema, p_role: OrgRoleSchema, p_reason: z.string().optional() }),
    result: VoidResultSchema,
  },
  remove_organization_member: {
    args: z.strictObject({ p_organization_id: UuidSchema, p_user_id: UuidSchema, p_reason: z.string().optional() }),
    result: VoidResultSchema,
  },

  // toolboxes
  create_toolbox: {
    args: z.strictObject({ p_organization_id: UuidSchema, p_name: z.string(), p_dtma_base_url: z.string(), p_dtma_token: z.string() }),
    result: UuidSchema,
  },
  delete_toolbox: { args: z.strictObject({ p_toolbox_id: UuidSchema }), result: VoidResultSchema },

  // instances
  manage_mcp_servers: {
    args: z.strictObject({
      action: ManageActionSchema,
      organization_id: UuidSchema,
      server_config: JsonObjectSchema.optional(),
      server_id: UuidSchema.optional(),
    }),
    result: McpServerInstanceSchema,
  },
  approve_mcp_tool_definition: {
    args: z.strictObject({ p_server_instance_id: UuidSchema, p_tool_name: z.string(), p_presented_sha256: z.string() }),
    result: VoidResultSchema,
  },

  // access
  validate_agent_mcp_access: {
    // Two overloads: the server (2 arguments), or one of its tools (with its presented definition).
    args: z.union([
      z.strictObject({ p_agent_id: UuidSchema, p_server_instance_id: UuidSchema }),
      z.strictObject({
        p_agent_id: UuidSchema,
        p_server_instance_id: UuidSchema,
        p_tool_name: z.string(),
        p_tool_definition: PresentedToolSchema.nullable().optional(),
      }),
    ]),
    result: z.boolean(),
  },
  get_agent_mcp_servers: { args: z.strictObject({ p_agent_id: UuidSchema }), result: z.array(AgentMcpServerSchema) },
  grant_agent_mcp_access: {
    args: z.strictObject({
      p_agent_id: UuidSchema,
      p_server_instance_id: UuidSchema,
      p_permission_scope: PermissionScopeSchema,
      p_allowed_tools: z.array(z.string()).optional(),
      p_expires_at: TimestampArgSchema.optional(),
    }),
    result: UuidSchema,
  },
  revoke_agent_mcp_access: { args: z.strictObject({ p_agent_id: UuidSchema, p_server_instance_id: UuidSchema }), result: z.boolean() },
  get_available_mcp_servers: { args: z.strictObject({ p_user_id: UuidSchema }), result: z.array(AvailableMcpServerSchema) },
  validate_mcp_access: {
    args: z.strictObject({ agent_id: UuidSchema, mcp_server_instance_id: UuidSchema, user_id: UuidSchema.optional() }),
    result: z.boolean(),
  },
  get_organization_mcp_configs: {
    args: z.strictObject({ org_id: UuidSchema, agent_id: UuidSchema.optional() }),
    result: z.array(OrganizationMcpConfigSchema),
  },
  filter_agent_mcp_tools: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_server_instance_id: UuidSchema, p_tools: z.array(PresentedToolSchema) }),
    result: z.array(ToolFilterRowSchema),
  },
  upsert_agent_mcp_connection: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_server_instance_id: UuidSchema, p_connection_config: ConnectionConfigSchema.optional() }),
    result: UuidSchema,
  },
  record_agent_mcp_connection_usage: {
    args: z.strictObject({
      p_agent_id: UuidSchema,
      p_server_instance_id: UuidSchema,
      p_success: z.boolean(),
      p_duration_ms: z.int().min(0),
      p_error: z.string().optional(),
    }),
    result: VoidResultSchema,
  },
  grant_agent_toolbox_access: { args: z.strictObject({ p_agent_id: UuidSchema, p_toolbox_id: UuidSchema }), result: UuidSchema },
  revoke_agent_toolbox_access: { args: z.strictObject({ p_agent_id: UuidSchema, p_toolbox_id: UuidSchema }), result: z.boolean() },
  organization_access_overview: { args: z.strictObject({ p_organization_id: UuidSchema }), result: z.array(AccessOverviewRowSchema) },

  // interactions
  audit_mcp_interactions: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_interactions: z.array(InteractionSchema).min(1).max(1000) }),
    result: z.int(),
  },
  agents_with_tool_access_at: {
    args: z.strictObject({ p_server_instance_id: UuidSchema, p_tool_name: z.string(), p_at: TimestampArgSchema.optional() }),
    result: z.array(ToolAccessAtRowSchema),
  },

  // secrets
  create_vault_secret: {
    args: z.strictObject({ p_secret: z.string(), p_name: z.string(), p_description: z.string().optional(), p_organization_id: UuidSchema.optional() }),
    result: UuidSchema,
  },
  get_secret: { args: z.strictObject({ p_secret_id: UuidSchema }), result: z.string() },
  delete_vault_secret: { args: z.strictObject({ p_secret_id: UuidSchema }), result: z.boolean() },
  rotate_mcp_credentials: {
    args: z.strictObject({
      p_credential_name: z.string(),
      p_new_value: z.string(),
      p_server_instance_id: UuidSchema.optional(),
      p_toolbox_id: UuidSchema.optional(),
      p_reason: z.string().optional(),
    }),
    result: UuidSchema,
  },

  // oauth (db/functions/oauth.sql)
  store_user_oauth_connection: {
    args: z.strictObject({
      p_provider: z.string(),
      p_access_token: z.string(),
      p_refresh_token: z.string().optional(),
      p_expires_in: z.int().min(0).optional(),
      p_scopes: z.array(z.string()).optional(),
      p_provider_account_id: z.string().optional(),
      p_account_label: z.string().optional(),
      p_token_type: z.string().optional(),
      p_user_id: UuidSchema.optional(),
    }),
    result: UuidSchema,
  },
  revoke_user_oauth_connection: { args: z.strictObject({ p_connection_id: UuidSchema, p_reason: z.string().optional() }), result: z.boolean() },
  get_user_oauth_connections: { args: z.strictObject({ p_user_id: UuidSchema }), result: z.array(UserOauthConnectionSchema) },
  grant_agent_oauth_access: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_connection_id: UuidSchema, p_scopes: z.array(z.string()), p_expires_at: TimestampArgSchema.optional() }),
    result: UuidSchema,
  },
  revoke_agent_oauth_access: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_connection_id: UuidSchema, p_reason: z.string().optional() }),
    result: z.boolean(),
  },
  get_agent_oauth_permissions: { args: z.strictObject({ p_agent_id: UuidSchema }), result: z.array(AgentOauthPermissionSchema) },
  record_agent_oauth_usage: { args: z.strictObject({ p_agent_id: UuidSchema, p_connection_id: UuidSchema }), result: z.int() },
  get_agent_oauth_token: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_provider: z.string(), p_scopes: z.array(z.string()).optional() }),
    // One row, or an error (42501 no permission, 55000 the connection must be reconnected).
    result: z.array(AgentOauthTokenSchema).length(1),
  },
  begin_oauth_refresh: {
    args: z.strictObject({ p_connection_id: UuidSchema, p_lease_seconds: z.int().min(1).optional() }),
    result: z.array(OauthRefreshLeaseSchema).length(1),
  },
  complete_oauth_refresh: {
    args: z.strictObject({
      p_lease_id: UuidSchema,
      p_access_token: z.string(),
      p_refresh_token: z.string().optional(),
      p_expires_in: z.int().min(0).optional(),
      p_scopes: z.array(z.string()).optional(),
    }),
    result: TimestampSchema.nullable(),
  },
  fail_oauth_refresh: {
    args: z.strictObject({
      p_lease_id: UuidSchema,
      p_error: z.string(),
      p_retryable: z.boolean().optional(),
      p_retry_after_seconds: z.int().min(0).optional(),
    }),
    result: TimestampSchema.nullable(),
  },

  // dtma
  deploy_mcp_server_to_dtma: { args: z.strictObject({ server_instance_id: UuidSchema }), result: DeployToDtmaResultSchema },
  harvest_dtma_responses: {
    args: z.strictObject({ p_limit: z.int().min(1).optional(), p_lost_after: z.string().optional(), p_backoff_base: z.string().optional() }),
    result: HarvestResultSchema,
  },
  poll_dtma_status: { args: z.strictObject({}), result: z.int() },
  // oauth_flow: PKCE sign-in (mcp-auth-manager)
  begin_oauth_authorization: {
    args: z.strictObject({ p_provider: z.string(), p_redirect_uri: z.string(), p_scopes: z.array(z.string()).optional(), p_ttl_seconds: z.int().optional() }),
    result: z.array(OauthAuthorizationBeginRowSchema).length(1),
  },
  consume_oauth_authorization: {
    args: z.strictObject({ p_state: z.string(), p_redirect_uri: z.string() }),
    result: z.array(OauthAuthorizationConsumeRowSchema).length(1),
  },
  begin_oauth_disconnect: { args: z.strictObject({ p_connection_id: UuidSchema }), result: z.array(OauthDisconnectRowSchema).length(1) },
  // server status (mcp-server-manager)
  get_mcp_server_status: { args: z.strictObject({ p_organization_id: UuidSchema }), result: z.array(ServerStatusRowSchema) },
  request_mcp_server_status: { args: z.strictObject({ p_organization_id: UuidSchema }), result: z.array(z.int()) },
  // gateway: agent API keys
  create_agent_api_key: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_name: z.string(), p_expires_at: TimestampArgSchema.optional() }),
    result: z.array(CreatedApiKeySchema).length(1),
  },
  list_agent_api_keys: { args: z.strictObject({ p_agent_id: UuidSchema }), result: z.array(ApiKeyRowSchema) },
  revoke_agent_api_key: { args: z.strictObject({ p_key_id: UuidSchema, p_reason: z.string().optional() }), result: z.boolean() },
  // gateway: service_role only
  gateway_authenticate: {
    args: z.strictObject({ p_api_key: z.string().optional(), p_user_id: UuidSchema.optional(), p_agent_id: UuidSchema.optional() }),
    result: z.array(GatewayPrincipalSchema),
  },
  gateway_agent_servers: { args: z.strictObject({ p_agent_id: UuidSchema }), result: z.array(GatewayServerSchema) },
  gateway_upstream: { args: z.strictObject({ p_server_instance_id: UuidSchema }), result: z.array(GatewayUpstreamSchema) },
  gateway_authorize_call: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_server_instance_id: UuidSchema, p_tool_definition: PresentedToolSchema }),
    result: z.array(GatewayCallDecisionSchema).length(1),
  },
  gateway_filter_tools: {
    args: z.strictObject({ p_agent_id: UuidSchema, p_servers: z.array(PresentedServerToolsSchema) }),
    result: z.array(GatewayToolDecisionSchema),
  },
} as const;

export type RpcSchemas = typeof rpcSchemas;
export type RpcName = keyof RpcSchemas;
/** What a caller passes (before defaults and transforms). */
export type RpcArgs<N extends RpcName> = z.input<RpcSchemas[N]['args']>;
/** What a call resolves to (after parsing). */
export type RpcResult<N extends RpcName> = z.output<RpcSchemas[N]['result']>;
