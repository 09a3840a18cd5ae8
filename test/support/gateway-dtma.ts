/**
 * Test support (never imported by product code): a local DTMA of a test file's own, in the test
 * process, running real MCP servers from npm, so that the gateway's longer suites do not share
 * their servers (or their DTMA's load) with the rest of the run; and how a refusal through the
 * gateway is read.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'vitest';
import { createProcessDriver } from '../../standins/dtma/process-driver.ts';
import { createDtmaServer } from '../../standins/dtma/server.ts';
import { dtma } from './stack.ts';

export async function ownDtma(): Promise<{ url: string; token: string; close: () => Promise<void> }> {
  const { token } = dtma();
  const server = createDtmaServer({ token, driver: createProcessDriver({ startTimeoutMs: 20_000 }), port: 0 });
  const url = await server.listen();
  return { url, token, close: () => server.close() };
}

/** The MCP error a request through the gateway was refused with (fails the test when it succeeded or failed otherwise). */
export async function mcpRefusal(work: Promise<unknown>): Promise<McpError> {
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(McpError);
  return error as McpError;
}

/** An MCP client session (the official SDK) on an MCP endpoint, with a bearer credential when given. */
export async function mcpClient(url: string, credential?: string, headers: Record<string, string> = {}): Promise<Client> {
  const client = new Client({ name: 'control-plane-test', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { ...(credential ? { authorization: `Bearer ${credential}` } : {}), ...headers } } }),
  );
  return client;
}
