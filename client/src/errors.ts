/**
 * One error type for everything the control plane refuses, carrying what PostgREST carries:
 * the SQLSTATE `code`, `message`, `details` and `hint`. The project's codes (see the table in
 * client/README.md) get a subclass each, so that a caller can branch with `instanceof`, and an
 * HTTP status, so that a handler can answer without a table of its own.
 */

export interface ControlPlaneErrorFields {
  code: string;
  message: string;
  details?: string | null;
  hint?: string | null;
}

export class McpControlPlaneError extends Error {
  readonly code: string;
  readonly details: string | null;
  readonly hint: string | null;
  /** The HTTP status this error is answered with (see httpStatusForCode). */
  readonly status: number;

  constructor(fields: ControlPlaneErrorFields, options?: { cause?: unknown }) {
    super(fields.message, options);
    this.name = new.target.name;
    this.code = fields.code;
    this.details = fields.details ?? null;
    this.hint = fields.hint ?? null;
    this.status = httpStatusForCode(fields.code);
  }

  /** The PostgREST error body: `{ code, message, details, hint }`. */
  toJSON(): { code: string; message: string; details: string | null; hint: string | null } {
    return { code: this.code, message: this.message, details: this.details, hint: this.hint };
  }
}

/** 42501: the caller may not do this (or may not see that it exists). */
export class NotAllowedError extends McpControlPlaneError {}
/** 22023: an argument is missing or malformed; also raised by the SDK before sending. */
export class InvalidArgumentError extends McpControlPlaneError {}
/** P0002: the thing named does not exist (for this caller). */
export class NotFoundError extends McpControlPlaneError {}
/** 23505: it exists already. */
export class ConflictError extends McpControlPlaneError {}
/** 55000: not in this state (an illegal lifecycle transition, a grant that can only be revoked). */
export class IllegalStateError extends McpControlPlaneError {}
/** 23514: a rule of the data would break (the last owner of an organization). */
export class ConstraintError extends McpControlPlaneError {}
/** PGRST301: no valid JWT (bad signature, expired, unknown role). */
export class UnauthorizedError extends McpControlPlaneError {}
/** SDK_UNAVAILABLE: the database or the API could not be reached. */
export class UnavailableError extends McpControlPlaneError {}
/** SDK_RESULT: an RPC answered something other than its declared shape. */
export class UnexpectedResultError extends McpControlPlaneError {}
/** SDK_UPSTREAM: an MCP server failed to answer a request (protocol error, timeout, connection). */
export class UpstreamError extends McpControlPlaneError {}

/** Codes the SDK raises itself (no SQLSTATE fits). */
export const SdkErrorCode = {
  unauthorized: 'PGRST301',
  unavailable: 'SDK_UNAVAILABLE',
  unexpectedResult: 'SDK_RESULT',
  upstream: 'SDK_UPSTREAM',
} as const;

type ErrorClass = new (fields: ControlPlaneErrorFields, options?: { cause?: unknown }) => McpControlPlaneError;

const classes: Record<string, { type: ErrorClass; status: number }> = {
  '42501': { type: NotAllowedError, status: 403 },
  '22023': { type: InvalidArgumentError, status: 422 },
  P0002: { type: NotFoundError, status: 404 },
  '23505': { type: ConflictError, status: 409 },
  '55000': { type: IllegalStateError, status: 409 },
  '23514': { type: ConstraintError, status: 422 },
  PGRST301: { type: UnauthorizedError, status: 401 },
  PGRST302: { type: UnauthorizedError, status: 401 },
  PGRST303: { type: UnauthorizedError, status: 401 },
  [SdkErrorCode.unavailable]: { type: UnavailableError, status: 503 },
  [SdkErrorCode.unexpectedResult]: { type: UnexpectedResultError, status: 502 },
  [SdkErrorCode.upstream]: { type: UpstreamError, status: 502 },
};

/**
 * The HTTP status of a code: the project's table; as PostgREST, 400 for a bare RAISE (P0001)
 * and 404 for an unknown function (PGRST202); 500 for anything else.
 */
export function httpStatusForCode(code: string): number {
  if (code === 'P0001') return 400;
  if (code === 'PGRST202') return 404;
  return classes[code]?.status ?? 500;
}

/** The typed error for a code (the base class for codes the project does not name). */
export function controlPlaneError(fields: ControlPlaneErrorFields, options?: { cause?: unknown }): McpControlPlaneError {
  const Type = classes[fields.code]?.type ?? McpControlPlaneError;
  return new Type(fields, options);
}
