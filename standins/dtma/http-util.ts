/** Small HTTP helpers of the DTMA server and the fault driver: JSON answers, bodies, path parameters. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { describeZodError, type ErrorResponse } from './contract.js';
import { errorMessage } from './driver.js';

/** Thrown inside a route: the server answers `{success:false, error}` with this status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, error: string, headers?: Record<string, string>): void {
  const body: ErrorResponse = { success: false, error };
  sendJson(res, status, body, headers);
}

export async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size > maxBytes) throw new HttpError(413, `body larger than ${maxBytes} bytes`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** JSON.parse that answers 400 for a body that is not JSON. */
export function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `body: invalid JSON (${errorMessage(error)})`);
  }
}

/** Reads and validates a JSON body; an empty body counts as `emptyAs`. */
export async function readJson<S extends z.ZodType>(req: IncomingMessage, schema: S, maxBytes: number, emptyAs?: unknown): Promise<z.infer<S>> {
  const text = await readBody(req, maxBytes);
  const raw = text.trim() === '' && emptyAs !== undefined ? emptyAs : parseJsonBody(text);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new HttpError(400, describeZodError(parsed.error));
  return parsed.data;
}

export function decodeParam(value: string | undefined): string {
  try {
    return decodeURIComponent(value ?? '');
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in path');
  }
}
