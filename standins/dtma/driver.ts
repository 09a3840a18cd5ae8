/**
 * What the DTMA HTTP server asks of whatever runs MCP servers: a driver.
 *
 * The server owns HTTP (auth, parsing, status codes, summaries); a driver owns
 * processes (or containers, or fakes). The process driver runs npm packages;
 * the fault driver wraps another driver and breaks HTTP on purpose.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type {
  GroupOptions,
  GroupStatus,
  InstanceStatus,
  RefreshCredentialsRequest,
  ServerSpec,
} from './contract.js';

export interface DriverContext {
  /** Base URL of the DTMA HTTP server, used to form each mcpEndpoint. */
  baseUrl: string;
}

export interface RemoveOptions {
  /** Kill at once instead of SIGTERM first. */
  forceRemove: boolean;
  /** How long a child may take to exit after SIGTERM before SIGKILL. */
  gracefulTimeoutMs: number;
}

export interface DeployServerResult {
  /** True when the same spec was already deployed (no new process). */
  alreadyDeployed: boolean;
}

export interface RemoveGroupResult {
  removedServers: string[];
  errors: Record<string, string>;
}

export interface RefreshCredentialsResult {
  restarted: boolean;
}

export interface Driver {
  /** Shown in logs and the listening line: `process`, `fault`. */
  readonly name: string;
  /** Called once by the server when it listens; restores persisted groups. */
  start(context: DriverContext): Promise<void>;
  /** Deploys one server into a group; throws DriverError on failure (the message goes to data.errors). */
  deployServer(groupId: string, spec: ServerSpec, options: GroupOptions): Promise<DeployServerResult>;
  /** Stops and forgets every server of one group; throws DriverError('not_found') for an unknown group. */
  removeGroup(groupId: string, options: RemoveOptions): Promise<RemoveGroupResult>;
  /** Stops and starts one server again; throws DriverError('not_found' | 'failed'). */
  restartServer(instanceName: string): Promise<InstanceStatus>;
  /** Stores new credentials and, by default, restarts the server so it reads them. */
  refreshCredentials(instanceName: string, request: RefreshCredentialsRequest): Promise<RefreshCredentialsResult>;
  /** Snapshot of every group, keyed by group id. */
  status(): Record<string, GroupStatus>;
  /** Serves the MCP endpoint of one instance (`/mcp/servers/<name>/mcp`). */
  handleMcpRequest(instanceName: string, req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Stops every child; persisted desired state is kept for the next start. */
  close(): Promise<void>;
  /** HTTP-level hooks; only the fault driver has them. */
  readonly http?: HttpHooks;
}

/** One request as the server sees it once authenticated and parsed. */
export interface InterceptedRequest {
  method: string;
  /** Path without the query string. */
  pathname: string;
  /** Parsed and validated JSON body, when the route has one. */
  body: unknown;
  req: IncomingMessage;
  res: ServerResponse;
}

export interface HttpHooks {
  /** Called on arrival of every request except admin ones. */
  onRequest(req: IncomingMessage, res: ServerResponse): void;
  /** Called before an authenticated /mcp route is handled; `handled` means the hook answered (or never will). */
  intercept(request: InterceptedRequest): Promise<'continue' | 'handled'>;
  /** Serves authenticated admin routes under `/__`; returns false when the path is not one of them. */
  handleAdmin(method: string, pathname: string, body: unknown, res: ServerResponse): Promise<boolean>;
  /** Releases requests held open on purpose, so the server can close. */
  close(): void;
}

export type DriverErrorKind = 'not_found' | 'conflict' | 'invalid' | 'failed';

/** The one error type drivers throw; the server maps `kind` to an HTTP status. */
export class DriverError extends Error {
  readonly kind: DriverErrorKind;

  constructor(kind: DriverErrorKind, message: string) {
    super(message);
    this.name = 'DriverError';
    this.kind = kind;
  }
}

/** The message of anything thrown, for data.errors and logs. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
