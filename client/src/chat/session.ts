/**
 * One live connection to one MCP server, made with the official SDK's Client over Streamable
 * HTTP (or SSE for servers that only speak it), and what the server presents: its tools,
 * resources and prompts (every page). Everything honours the caller's AbortSignal.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { ToolListChangedNotificationSchema, type Prompt, type Resource, type Tool } from '@modelcontextprotocol/sdk/types.js';
import type { McpChatOptions, McpServerTarget } from './types.ts';
import { sharedValidator } from './validator.ts';

export interface Session {
  client: Client;
  serverInfo: { name: string; version: string } | null;
  instructions: string | null;
  tools: Tool[];
  resources: Resource[];
  prompts: Prompt[];
  /** Set when the server announced that its tools changed: list them again before trusting them. */
  toolsChanged: boolean;
  closed: boolean;
  close(): Promise<void>;
}

const MAX_PAGES = 100;

async function allPages<T>(list: (cursor: string | undefined) => Promise<{ items: T[]; nextCursor?: string }>): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const result = await list(cursor);
    items.push(...result.items);
    if (!result.nextCursor) break;
    cursor = result.nextCursor;
  }
  return items;
}

/** Every tool the server presents now. */
export async function listTools(client: Client, options: RequestOptions): Promise<Tool[]> {
  return allPages(async (cursor) => {
    const result = await client.listTools(cursor ? { cursor } : undefined, options);
    return { items: result.tools, nextCursor: result.nextCursor };
  });
}

async function listResources(client: Client, options: RequestOptions): Promise<Resource[]> {
  return allPages(async (cursor) => {
    const result = await client.listResources(cursor ? { cursor } : undefined, options);
    return { items: result.resources, nextCursor: result.nextCursor };
  });
}

async function listPrompts(client: Client, options: RequestOptions): Promise<Prompt[]> {
  return allPages(async (cursor) => {
    const result = await client.listPrompts(cursor ? { cursor } : undefined, options);
    return { items: result.prompts, nextCursor: result.nextCursor };
  });
}

/** Ends the MCP session politely (DELETE), then closes the client; never throws. */
async function closeQuietly(client: Client, transport: StreamableHTTPClientTransport | SSEClientTransport): Promise<void> {
  if (transport instanceof StreamableHTTPClientTransport && transport.sessionId) {
    const ended = transport.terminateSession().catch(() => undefined);
    await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 1_000))]);
  }
  await client.close().catch(() => undefined);
}

/**
 * Connects, then lists what the server's capabilities announce (resources and prompts unless
 * `lists` leaves them out), in parallel. On any failure (the signal included) the connection is
 * closed before the error is thrown.
 */
export async function openSession(
  target: McpServerTarget,
  options: McpChatOptions,
  signal: AbortSignal,
  lists: { resources?: boolean; prompts?: boolean } = {},
): Promise<Session> {
  if (!target.endpointUrl) throw new Error('the server has no endpoint URL (not deployed yet?)');
  const headers = (await options.endpointHeaders?.(target)) ?? {};
  const url = new URL(target.endpointUrl);
  const transportOptions = { requestInit: { headers }, ...(options.fetch ? { fetch: options.fetch } : {}) };
  const transport = target.transport === 'sse' ? new SSEClientTransport(url, transportOptions) : new StreamableHTTPClientTransport(url, transportOptions);
  const client = new Client(options.clientInfo ?? { name: 'mcp-control-plane-sdk', version: '0.1.0' }, { capabilities: {}, jsonSchemaValidator: sharedValidator });
  const session: Session = {
    client,
    serverInfo: null,
    instructions: null,
    tools: [],
    resources: [],
    prompts: [],
    toolsChanged: false,
    closed: false,
    close: async () => {
      if (session.closed) return;
      session.closed = true;
      await closeQuietly(client, transport);
    },
  };
  client.onclose = () => {
    session.closed = true;
  };
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    session.toolsChanged = true;
  });
  // The SDK keeps a request's abort listener after its answer: an abort of the caller's signal once
  // the session is open (a chat's HTTP request ending) would send notifications/cancelled for
  // every request made while opening. Those requests get a signal that follows the caller's only
  // until the session is open.
  const opening = new AbortController();
  const follow = (): void => opening.abort(signal.reason);
  if (signal.aborted) follow();
  else signal.addEventListener('abort', follow, { once: true });
  try {
    const requestOptions: RequestOptions = { signal: opening.signal, timeout: target.timeoutMs };
    await client.connect(transport, requestOptions);
    const capabilities = client.getServerCapabilities() ?? {};
    const [tools, resources, prompts] = await Promise.all([
      capabilities.tools ? listTools(client, requestOptions) : [],
      capabilities.resources && lists.resources !== false ? listResources(client, requestOptions) : [],
      capabilities.prompts && lists.prompts !== false ? listPrompts(client, requestOptions) : [],
    ]);
    const info = client.getServerVersion();
    session.serverInfo = info ? { name: info.name, version: info.version } : null;
    session.instructions = client.getInstructions() ?? null;
    session.tools = tools;
    session.resources = resources;
    session.prompts = prompts;
    return session;
  } catch (error) {
    void session.close();
    throw error;
  } finally {
    signal.removeEventListener('abort', follow);
  }
}
