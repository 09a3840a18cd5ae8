/**
 * The HTTP contract of DTMA (docs/ARCHITECTURE.md, README.md beside this file), as zod schemas.
 *
 * One source for the shapes: the local DTMA validates what it receives with
 * these schemas, and the SDK and the tests validate what they receive with the
 * same ones. Field names are those of the system this project replaces,
 * because callers already use them.
 */
import { z } from 'zod';

// ---------------------------------------------------------------- enums

export const McpTransportTypeSchema = z.enum(['stdio', 'sse', 'websocket', 'streamable_http']);
export type McpTransportType = z.infer<typeof McpTransportTypeSchema>;

export const InstanceStatusValueSchema = z.enum([
  'pending',
  'pulling',
  'starting',
  'running',
  'stopping',
  'stopped',
  'error',
]);
export type InstanceStatusValue = z.infer<typeof InstanceStatusValueSchema>;

export const HealthStatusSchema = z.enum(['healthy', 'unhealthy', 'unknown']);
export type HealthStatus = z.infer<typeof HealthStatusSchema>;

export const CollectiveStatusSchema = z.enum(['initializing', 'healthy', 'degraded', 'failed']);
export type CollectiveStatus = z.infer<typeof CollectiveStatusSchema>;

// ---------------------------------------------------------------- identifiers

// Both ids travel in URL paths and name child processes: a conservative
// alphabet keeps them safe there without escaping surprises.
export const GroupIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/, 'must be 1-200 characters of A-Z a-z 0-9 _ . : - starting with a letter or digit');

export const InstanceNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'must be 1-128 characters of A-Z a-z 0-9 _ . - starting with a letter or digit');

const JsonObjectSchema = z.record(z.string(), z.unknown());
const EnvSchema = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'is not a valid environment variable name'), z.string());

// ---------------------------------------------------------------- POST /mcp/groups

/**
 * Launch overrides. `args` and `env` are what the process driver uses; other
 * keys are kept (the catalog may carry more) and ignored here.
 */
export const BaseConfigOverrideSchema = z.looseObject({
  args: z.array(z.string()).optional(),
  env: EnvSchema.optional(),
  /** Which bin of the package to run when it declares several. */
  bin: z.string().min(1).optional(),
});
export type BaseConfigOverride = z.infer<typeof BaseConfigOverrideSchema>;

export const ServerSpecSchema = z.object({
  accountToolInstanceId: z.string().min(1),
  instanceNameOnToolbox: InstanceNameSchema,
  /** `npm:<package>` or `npm:<package>@<version>` for the process driver. */
  dockerImageUrl: z.string().min(1),
  // The fields below are required by the old contract; defaults keep a
  // minimal caller (a test, psql) from having to invent them.
  mcpEndpointPath: z.string().default('/mcp'),
  mcpTransportType: McpTransportTypeSchema.default('stdio'),
  mcpServerCapabilities: z.union([z.array(z.string()), JsonObjectSchema]).default({}),
  mcpDiscoveryMetadata: JsonObjectSchema.default({}),
  baseConfigOverrideJson: BaseConfigOverrideSchema.default({}),
  requiredOAuthProviders: z.array(z.string()).optional(),
  portBindings: JsonObjectSchema.optional(),
  environmentVariables: EnvSchema.optional(),
});
/** A server spec as the DTMA holds it (defaults applied). */
export type ServerSpec = z.infer<typeof ServerSpecSchema>;
/** A server spec as a caller may send it. */
export type ServerSpecInput = z.input<typeof ServerSpecSchema>;

export const GroupOptionsSchema = z.object({
  sharedNetworking: z.boolean().optional(),
  dependencyOrder: z.array(InstanceNameSchema).optional(),
  maxConcurrentDeployments: z.int().min(1).max(32).optional(),
});
export type GroupOptions = z.infer<typeof GroupOptionsSchema>;

export const DeployGroupRequestSchema = z
  .object({
    groupId: GroupIdSchema,
    servers: z.array(ServerSpecSchema).min(1).max(50),
    options: GroupOptionsSchema.default({}),
  })
  .superRefine((body, ctx) => {
    const seen = new Set<string>();
    body.servers.forEach((server, index) => {
      if (seen.has(server.instanceNameOnToolbox)) {
        ctx.addIssue({
          code: 'custom',
          path: ['servers', index, 'instanceNameOnToolbox'],
          message: `duplicate instance name '${server.instanceNameOnToolbox}' in one request`,
        });
      }
      seen.add(server.instanceNameOnToolbox);
    });
  });
export type DeployGroupRequest = z.infer<typeof DeployGroupRequestSchema>;
export type DeployGroupRequestInput = z.input<typeof DeployGroupRequestSchema>;

/** 201 even when servers failed: read `data.errors`, keyed by instance name. */
export const DeployGroupResponseSchema = z.object({
  success: z.boolean(),
  message: z.string(),
  data: z.object({
    groupId: z.string(),
    deployedServers: z.array(z.string()),
    errors: z.record(z.string(), z.string()),
    totalServers: z.int(),
    successfulDeployments: z.int(),
  }),
});
export type DeployGroupResponse = z.infer<typeof DeployGroupResponseSchema>;

// ---------------------------------------------------------------- DELETE /mcp/groups/:groupId

const BooleanQuerySchema = z
  .enum(['true', 'false', '1', '0', ''])
  .transform((value) => value === 'true' || value === '1');

/** Query string of DELETE /mcp/groups/:groupId (values arrive as strings). */
export const RemoveGroupQuerySchema = z.object({
  forceRemove: BooleanQuerySchema.default(false),
  gracefulTimeoutMs: z
    .string()
    .regex(/^\d+$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.int().max(600_000))
    .optional(),
});
export type RemoveGroupQuery = z.infer<typeof RemoveGroupQuerySchema>;

export const RemoveGroupResponseSchema = z.object({
  success: z.boolean(),
  message: z.string(),
  data: z.object({
    groupId: z.string(),
    removedServers: z.array(z.string()),
    errors: z.record(z.string(), z.string()),
  }),
});
export type RemoveGroupResponse = z.infer<typeof RemoveGroupResponseSchema>;

// ---------------------------------------------------------------- GET /mcp/status, GET /mcp/health/:groupId

export const InstanceStatusSchema = z.object({
  accountToolInstanceId: z.string(),
  status: InstanceStatusValueSchema,
  healthStatus: HealthStatusSchema,
  containerId: z.string().nullable(),
  startTime: z.iso.datetime().nullable(),
  restartCount: z.int(),
  lastRestartTime: z.iso.datetime().nullable(),
  lastHealthCheck: z.iso.datetime().nullable(),
  errorMessage: z.string().nullable(),
  /** Full URL of the Streamable HTTP endpoint; see mcpEndpointUrl(). */
  mcpEndpoint: z.string().nullable(),
  /** How mcpEndpoint is spoken to (not how the DTMA talks to the process). */
  transportType: McpTransportTypeSchema,
});
export type InstanceStatus = z.infer<typeof InstanceStatusSchema>;

export const GroupStatusSchema = z.object({
  collectiveStatus: CollectiveStatusSchema,
  totalInstances: z.int(),
  runningInstances: z.int(),
  healthyInstances: z.int(),
  sharedNetworking: z.boolean(),
  instances: z.record(z.string(), InstanceStatusSchema),
});
export type GroupStatus = z.infer<typeof GroupStatusSchema>;

export const StatusResponseSchema = z.object({
  success: z.literal(true),
  data: z.object({
    summary: z.object({
      totalGroups: z.int(),
      totalServers: z.int(),
      runningServers: z.int(),
      healthyServers: z.int(),
      timestamp: z.iso.datetime(),
    }),
    groups: z.record(z.string(), GroupStatusSchema),
  }),
});
export type StatusResponse = z.infer<typeof StatusResponseSchema>;

export const GroupHealthResponseSchema = z.object({
  success: z.literal(true),
  data: z.object({
    groupId: z.string(),
    health: GroupStatusSchema,
    timestamp: z.iso.datetime(),
  }),
});
export type GroupHealthResponse = z.infer<typeof GroupHealthResponseSchema>;

// ---------------------------------------------------------------- POST /mcp/servers/:name/restart

export const RestartServerResponseSchema = z.object({
  success: z.boolean(),
  message: z.string(),
  data: z.object({
    instanceName: z.string(),
    status: InstanceStatusValueSchema,
    containerId: z.string().nullable(),
    restartCount: z.int(),
  }),
});
export type RestartServerResponse = z.infer<typeof RestartServerResponseSchema>;

// ---------------------------------------------------------------- POST /mcp/credentials/refresh/:name

/**
 * New credentials for a running server. A stdio server reads its environment
 * once, at start, so new variables only reach it through a restart.
 */
export const RefreshCredentialsRequestSchema = z.object({
  environmentVariables: EnvSchema.optional(),
  restart: z.boolean().default(true),
});
export type RefreshCredentialsRequest = z.infer<typeof RefreshCredentialsRequestSchema>;

export const RefreshCredentialsResponseSchema = z.object({
  success: z.boolean(),
  message: z.string(),
  data: z.object({
    instanceName: z.string(),
    status: z.enum(['refreshed', 'stored']),
    restarted: z.boolean(),
    timestamp: z.iso.datetime(),
  }),
});
export type RefreshCredentialsResponse = z.infer<typeof RefreshCredentialsResponseSchema>;

// ---------------------------------------------------------------- GET /health and errors

export const LivenessResponseSchema = z.object({
  status: z.literal('ok'),
  timestamp: z.iso.datetime(),
  /**
   * What the process was started with (DTMA_INSTANCE_ID), so that whoever
   * started it can tell it from another process on the same port.
   */
  instanceId: z.string().optional(),
});
export type LivenessResponse = z.infer<typeof LivenessResponseSchema>;

export const ErrorResponseSchema = z.object({
  success: z.literal(false),
  error: z.string(),
  message: z.string().optional(),
});
export type ErrorResponse = z.infer<typeof ErrorResponseSchema>;

// ---------------------------------------------------------------- fault admin API (fault driver only)

export const FaultConfigSchema = z
  .object({
    latencyMs: z.int().min(0).max(600_000).optional(),
    /** Answer this status instead of handling the request. */
    status: z.int().min(400).max(599).optional(),
    /** Accept the request and never answer. */
    hang: z.boolean().optional(),
    /** Destroy the socket without an answer. */
    drop: z.boolean().optional(),
    /** POST /mcp/groups answers 201 with every server in data.errors. */
    errors201: z.boolean().optional(),
    /** `/path/prefix` or `METHOD /path/prefix`; default every /mcp route. */
    routes: z.array(z.string().regex(/^(?:[A-Z]+ )?\/\S*$/, "must look like '/mcp/status' or 'GET /mcp/status'")).min(1).optional(),
    /** Only the next N matching requests. */
    count: z.int().min(1).optional(),
  })
  .refine((fault) => [fault.hang, fault.drop, fault.status !== undefined, fault.errors201].filter(Boolean).length <= 1, {
    message: 'choose at most one of hang, drop, status, errors201',
  });
export type FaultConfig = z.infer<typeof FaultConfigSchema>;

export const FaultStateResponseSchema = z.object({
  success: z.literal(true),
  data: z.object({
    fault: FaultConfigSchema.nullable(),
    /** Requests left before the fault clears itself; null without `count`. */
    remaining: z.int().nullable(),
  }),
});
export type FaultStateResponse = z.infer<typeof FaultStateResponseSchema>;

export const RequestLogEntrySchema = z.object({
  seq: z.int(),
  method: z.string(),
  /** Path with its query string. */
  path: z.string(),
  time: z.iso.datetime(),
  idempotencyKey: z.string().nullable(),
  /** Null while unanswered, and forever for a hung or dropped request. */
  status: z.int().nullable(),
  fault: z.string().nullable(),
});
export type RequestLogEntry = z.infer<typeof RequestLogEntrySchema>;

export const RequestLogResponseSchema = z.object({
  success: z.literal(true),
  data: z.object({ requests: z.array(RequestLogEntrySchema) }),
});
export type RequestLogResponse = z.infer<typeof RequestLogResponseSchema>;

// ---------------------------------------------------------------- helpers

/** Path of an instance's MCP endpoint on the DTMA's own HTTP server. */
export function mcpEndpointPath(instanceName: string): string {
  return `/mcp/servers/${encodeURIComponent(instanceName)}/mcp`;
}

/** Full URL of an instance's MCP endpoint, from the DTMA base URL. */
export function mcpEndpointUrl(baseUrl: string, instanceName: string): string {
  return `${baseUrl.replace(/\/+$/, '')}${mcpEndpointPath(instanceName)}`;
}

/** One line naming every bad field, e.g. `servers.0.dockerImageUrl: Invalid input: ...`. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.map(String).join('.') : '(body)'}: ${issue.message}`)
    .join('; ');
}
