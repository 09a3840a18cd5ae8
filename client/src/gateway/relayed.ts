/**
 * What the gateway relays: the `_meta` tag naming an item's server, its own error codes, and an
 * upstream's error given back once, without a prefix per hop.
 */
import { McpError } from '@modelcontextprotocol/sdk/types.js';

/** The `_meta` key on every listed tool, resource, template and prompt: the id of the server it comes from. */
export const SERVER_META_KEY = 'mcp-control-plane/server_instance_id';

export function tagged<T extends { _meta?: Record<string, unknown> | undefined }>(item: T, serverId: string): T {
  return { ...item, _meta: { ...(item._meta ?? {}), [SERVER_META_KEY]: serverId } };
}

/** JSON-RPC error codes of the gateway (server-defined range). */
export const GatewayErrorCode = {
  /** The database refused the call; data.reason says why (gateway_filter_tools' reasons). */
  denied: -32003,
  /** The upstream server could not be reached. */
  unavailable: -32004,
} as const;

/**
 * An error relayed as is: its message goes on the wire without the SDK's `MCP error <code>: `
 * prefix (McpError adds one per hop; an upstream message that already carries copies of it is
 * given back as its server wrote it).
 */
export class RelayedError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'RelayedError';
  }
}

/** An MCP error from the SDK, narrowed by a guard so that the type holds wherever the SDK's declarations resolve. */
export function isMcpError(error: unknown): error is { code: number; message: string; data?: unknown } {
  return error instanceof McpError;
}

export function relayed(error: unknown): RelayedError {
  if (error instanceof RelayedError) return error;
  if (isMcpError(error)) {
    let message = error.message;
    const prefix = `MCP error ${error.code}: `;
    while (message.startsWith(prefix)) message = message.slice(prefix.length);
    return new RelayedError(error.code, message, error.data);
  }
  const message = error instanceof Error ? error.message : String(error);
  return new RelayedError(GatewayErrorCode.unavailable, `upstream unavailable: ${message}`);
}
