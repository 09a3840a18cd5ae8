/**
 * The chat integration against the real stack: real MCP servers from npm (everything, memory,
 * filesystem) deployed through the control plane onto the local DTMA, an agent with three
 * different grants, the database deciding which presented tools it gets. No mocks.
 *
 * Longer than 400 lines: every story shares one deployed stack (deploying real servers is the
 * slow part), so they stay in one file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient } from '@supabase/supabase-js';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFaultDriver, type FaultDriver } from '../../../standins/dtma/fault-driver.ts';
import { createProcessDriver } from '../../../standins/dtma/process-driver.ts';
import { createDtmaServer, type DtmaServer } from '../../../standins/dtma/server.ts';
import { IllegalStateError, NotAllowedError, UpstreamError } from '../errors.ts';
import { supabaseTransport } from '../supabase-transport.ts';
import { servePostgrest } from '../../../test/support/postgrest.ts';
import {
  JWT_SECRET,
  createAgent,
  createOrganization,
  deployServer,
  dtma,
  registerToolbox,
  removeServers,
  testPool,
  userJwt,
  type Organization,
} from '../../../test/support/stack.ts';
import { findContextTool } from './context.ts';
import { directTransport } from '../direct-transport.ts';
import { createMcpChat, type McpChat } from './index.ts';
import type { McpContext, ServerContext } from './types.ts';

let pool: pg.Pool;
let org: Organization;
let agentId: string;
let chat: McpChat;
const servers: { everything: string; memory: string; filesystem: string } = { everything: '', memory: '', filesystem: '' };
const scratch = mkdtempSync(path.join(os.tmpdir(), 'sdk-chat-'));
const contexts: McpContext[] = [];
// Bookkeeping (usage statistics, interaction log) never fails a chat; here it must not fail at all.
const backgroundErrors: unknown[] = [];

afterEach(() => {
  expect(backgroundErrors).toEqual([]);
});

interface LogRow {
  interaction_type: string;
  outcome: string;
  server_instance_id: string;
  tool_name: string | null;
  arguments_sha256: string | null;
  error_message: string | null;
  request_id: string | null;
}

async function logRows(requestId: string): Promise<LogRow[]> {
  const { rows } = await pool.query<LogRow>(
    `select interaction_type::text, outcome::text, server_instance_id, tool_name, arguments_sha256, error_message, request_id
       from public.mcp_interaction_logs where request_id = $1 order by id`,
    [requestId],
  );
  return rows;
}

function server(context: McpContext, id: string): ServerContext {
  const found = context.servers.find((s) => s.serverId === id);
  if (!found) throw new Error(`server ${id} not in the context`);
  return found;
}

function toolNames(s: ServerContext): string[] {
  return s.tools.map((t) => t.name).sort();
}

async function pinnedNames(instanceId: string, readOnlyOnly = false): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>(
    `select t ->> 'name' as name from public.account_tool_instances i, jsonb_array_elements(i.pinned_manifest) t
      where i.id = $1 and ($2 is false or (t -> 'annotations' ->> 'readOnlyHint') = 'true') order by 1`,
    [instanceId, readOnlyOnly],
  );
  return rows.map((r) => r.name);
}

async function prepare(options: { maxTimeoutMs?: number } = {}): Promise<McpContext> {
  const context = await chat.prepareMCPContextWithAccessControl({ agentId, organizationId: org.organizationId, ...options });
  contexts.push(context);
  return context;
}

beforeAll(async () => {
  pool = testPool();
  org = await createOrganization(pool);
  agentId = await createAgent(pool, org.organizationId, org.ownerId, 'research assistant');
  writeFileSync(path.join(scratch, 'notes.txt'), 'hello from the filesystem server\n');
  [servers.everything, servers.memory, servers.filesystem] = await Promise.all([
    deployServer(pool, org, { catalog: 'everything', priority: 300 }),
    deployServer(pool, org, { catalog: 'memory', priority: 200, configuration: { env: { MEMORY_FILE_PATH: path.join(scratch, 'memory.jsonl') } } }),
    deployServer(pool, org, { catalog: 'filesystem', priority: 100, configuration: { args: [scratch] } }),
  ]);
  await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers.everything, p_permission_scope: 'full_access' });
  await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers.memory, p_permission_scope: 'read_only' });
  await org.owner.grant_agent_mcp_access({
    p_agent_id: agentId,
    p_server_instance_id: servers.filesystem,
    p_permission_scope: 'custom',
    p_allowed_tools: ['read_text_file', 'list_directory'],
  });
  const { token } = dtma();
  chat = createMcpChat({
    transport: org.ownerTransport,
    endpointHeaders: () => ({ Authorization: `Bearer ${token}` }),
    onBackgroundError: (error) => backgroundErrors.push(error),
  });
});

afterAll(async () => {
  await Promise.all(contexts.map((c) => chat?.closeMCPContext(c)));
  if (org) await removeServers(pool, org, Object.values(servers).filter(Boolean));
  await pool?.end();
  rmSync(scratch, { recursive: true, force: true });
});

describe('an agent with three grants', () => {
  it('sees exactly the tools each grant allows, highest priority first', async () => {
    const context = await prepare();
    expect(context.servers.map((s) => [s.serverId, s.status])).toEqual([
      [servers.everything, 'ok'],
      [servers.memory, 'ok'],
      [servers.filesystem, 'ok'],
    ]);

    // full_access: every tool of the pinned manifest.
    expect(toolNames(server(context, servers.everything))).toEqual(await pinnedNames(servers.everything));
    // read_only: the tools annotated readOnlyHint.
    const memory = server(context, servers.memory);
    expect(toolNames(memory)).toEqual(['open_nodes', 'read_graph', 'search_nodes']);
    expect(toolNames(memory)).toEqual(await pinnedNames(servers.memory, true));
    expect(memory.deniedTools).toContainEqual({ name: 'create_entities', reason: 'not_read_only' });
    // custom: the two tools granted.
    const filesystem = server(context, servers.filesystem);
    expect(toolNames(filesystem)).toEqual(['list_directory', 'read_text_file']);
    expect(filesystem.deniedTools).toContainEqual({ name: 'write_file', reason: 'not_in_allowed_tools' });

    // The merged list: every allowed tool once, qualified names unique, weights by priority.
    const merged = context.tools.map((t) => t.qualifiedName);
    expect(new Set(merged).size).toBe(merged.length);
    expect(merged.length).toBe(context.servers.reduce((n, s) => n + s.tools.length, 0));
    expect(context.servers.reduce((sum, s) => sum + s.weight, 0)).toBeCloseTo(1, 6);
    expect(server(context, servers.everything).weight).toBeCloseTo(300 / 600, 6);
    expect(context.resources.some((r) => r.serverId === servers.everything)).toBe(true);
    expect(context.prompts.some((p) => p.serverId === servers.everything)).toBe(true);

    // Each server's context request is in the interaction log, under the context's request id.
    expect(await logRows(context.requestId)).toEqual(
      [servers.everything, servers.memory, servers.filesystem].map((id) =>
        expect.objectContaining({ interaction_type: 'context_request', outcome: 'success', server_instance_id: id }),
      ),
    );
  });

  it('lists only tools when the caller leaves resources and prompts out', async () => {
    const context = await chat.prepareMCPContextWithAccessControl({ agentId, keepConnections: false, lists: { resources: false, prompts: false } });
    contexts.push(context);
    expect(toolNames(server(context, servers.everything))).toEqual(await pinnedNames(servers.everything));
    expect(server(context, servers.everything).resources).toEqual([]);
    expect([context.resources, context.prompts]).toEqual([[], []]);
  });

  it('keeps getMCPConfigurations in the shape of the system it replaces', async () => {
    const configs = await chat.getMCPConfigurations(agentId);
    expect(configs.map((c) => Object.keys(c).sort())).toEqual(Array(3).fill(['endpoint', 'name', 'tools', 'transport']));
    const filesystem = configs.find((c) => c.tools.includes('read_text_file'));
    expect(filesystem?.tools).toEqual(['list_directory', 'read_text_file']);
    expect(filesystem?.endpoint).toMatch(/^http:\/\/.+\/mcp$/);
  });

  it('gathers the same without the organization, with default connection settings', async () => {
    const context = await chat.prepareMCPContextWithAccessControl({ agentId, keepConnections: false });
    contexts.push(context);
    expect(context.organizationId).toBeNull();
    expect(context.servers.map((s) => [s.status, s.timeoutMs, s.maxRetries])).toEqual(Array(3).fill(['ok', 10_000, 1]));
    expect(toolNames(server(context, servers.filesystem))).toEqual(['list_directory', 'read_text_file']);
    // Without kept connections, a call connects again.
    const tool = context.tools.find((t) => t.tool.name === 'list_directory');
    const found = tool && findContextTool(context, tool.qualifiedName);
    expect(found?.serverId).toBe(servers.filesystem);
    const listing = await chat.callTool(context, servers.filesystem, 'list_directory', { path: scratch });
    expect(JSON.stringify(listing.content)).toContain('notes.txt');
  });

  it('gathers the same through supabase-js (PostgREST’s wire format), as an edge function would', async () => {
    const postgrest = await servePostgrest(pool, JWT_SECRET);
    try {
      const jwt = await userJwt(org.ownerId);
      const supabase = createClient(postgrest.url, jwt, { auth: { persistSession: false }, global: { headers: { Authorization: `Bearer ${jwt}` } } });
      const viaSupabase = createMcpChat({
        transport: supabaseTransport(supabase),
        endpointHeaders: () => ({ Authorization: `Bearer ${dtma().token}` }),
        onBackgroundError: (error) => backgroundErrors.push(error),
      });
      const context = await viaSupabase.prepareMCPContextWithAccessControl({ agentId, organizationId: org.organizationId });
      contexts.push(context);
      expect(context.servers.map((s) => [s.serverId, s.status, toolNames(s).length])).toEqual([
        [servers.everything, 'ok', (await pinnedNames(servers.everything)).length],
        [servers.memory, 'ok', 3],
        [servers.filesystem, 'ok', 2],
      ]);
      const graph = await viaSupabase.callTool(context, servers.memory, 'read_graph', {});
      expect(graph.isError).not.toBe(true);
      await viaSupabase.closeMCPContext(context);
    } finally {
      await postgrest.close();
    }
  });

  it('skips a connection its owner disabled', async () => {
    const disable = (enabled: boolean) =>
      org.owner.upsert_agent_mcp_connection({ p_agent_id: agentId, p_server_instance_id: servers.filesystem, p_connection_config: { enabled } });
    await disable(false);
    try {
      const context = await prepare();
      expect(server(context, servers.filesystem)).toMatchObject({ status: 'disabled', attempts: 0, tools: [], weight: 0 });
      expect(context.tools.some((t) => t.serverId === servers.filesystem)).toBe(false);
    } finally {
      await disable(true);
    }
  });

  it('answers validateAgentMCPAccess per server and per tool', async () => {
    expect(await chat.validateAgentMCPAccess(agentId, servers.memory)).toBe(true);
    expect(await chat.validateAgentMCPAccess(agentId, servers.memory, 'read_graph')).toBe(true);
    expect(await chat.validateAgentMCPAccess(agentId, servers.memory, 'create_entities')).toBe(false);
  });
});

describe('tool calls', () => {
  it('calls an allowed tool, counts it in the connection statistics and logs it', async () => {
    const context = await prepare();
    const before = await pool.query<{ total: string }>(
      'select total_requests::text as total from public.agent_mcp_connections where agent_id = $1 and server_instance_id = $2',
      [agentId, servers.filesystem],
    );
    const result = await chat.callTool(context, servers.filesystem, 'read_text_file', { path: path.join(scratch, 'notes.txt') });
    expect(result.isError).not.toBe(true);
    expect(JSON.stringify(result.content)).toContain('hello from the filesystem server');

    const after = await pool.query<{ total: string; failed: string }>(
      'select total_requests::text as total, failed_requests::text as failed from public.agent_mcp_connections where agent_id = $1 and server_instance_id = $2',
      [agentId, servers.filesystem],
    );
    expect(Number(after.rows[0]?.total)).toBe(Number(before.rows[0]?.total ?? 0) + 1);

    const calls = (await logRows(context.requestId)).filter((row) => row.interaction_type === 'tool_call');
    expect(calls).toEqual([
      expect.objectContaining({ outcome: 'success', server_instance_id: servers.filesystem, tool_name: 'read_text_file', error_message: null }),
    ]);
    // The arguments are kept as their hash only.
    expect(calls[0]?.arguments_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a tool outside the grant before anything reaches the server', async () => {
    const context = await prepare();
    await expect(chat.callTool(context, servers.memory, 'create_entities', { entities: [] })).rejects.toBeInstanceOf(NotAllowedError);
    await expect(chat.callTool(context, servers.memory, 'create_entities', { entities: [] })).rejects.toMatchObject({ code: '42501', status: 403 });
    const refusals = (await logRows(context.requestId)).filter((row) => row.interaction_type === 'tool_call');
    expect(refusals).toEqual(Array(2).fill(expect.objectContaining({ outcome: 'denied', tool_name: 'create_entities', server_instance_id: servers.memory })));
  });
});

describe('tool pinning', () => {
  it('drops a tool whose definition changed since it was approved, audits it, and serves it again once approved', async () => {
    // The server now presents `echo` with another description than the one approved: simulate
    // it by pinning an older description (with its hash, as approval would have).
    await pool.query(
      `update public.account_tool_instances i
          set pinned_manifest = (select jsonb_agg(case when t ->> 'name' = 'echo'
                                   then private.tool_definition(t || '{"description": "Echoes back the input (approved in 2025)"}')
                                        || jsonb_build_object('sha256', private.tool_sha256(t || '{"description": "Echoes back the input (approved in 2025)"}'))
                                   else t end)
                                 from jsonb_array_elements(i.pinned_manifest) t)
        where i.id = $1`,
      [servers.everything],
    );
    const context = await prepare();
    const everything = server(context, servers.everything);
    expect(toolNames(everything)).not.toContain('echo');
    expect(everything.deniedTools).toContainEqual({ name: 'echo', reason: 'definition_changed' });
    expect(everything.tools.length).toBe((await pinnedNames(servers.everything)).length - 1);

    const drifts = async () =>
      (
        await pool.query<{ after: { tool: string; sha256: string; agent_id: string } }>(
          `select after from public.audit_log where action = 'tool.drift_denied' and entity_id = $1 order by id`,
          [servers.everything],
        )
      ).rows;
    // A user's session plants no drift (a member could present any definition); the platform,
    // which reads the server itself (the gateway, here a service_role chat), records it.
    expect(await drifts()).toEqual([]);
    const platform = createMcpChat({ transport: directTransport({ pool, claims: { role: 'service_role' } }), endpointHeaders: () => ({ Authorization: `Bearer ${dtma().token}` }) });
    contexts.push(await platform.prepareMCPContextWithAccessControl({ agentId, organizationId: org.organizationId }));
    const audit = { rows: await drifts() };
    expect(audit.rows.map((r) => r.after.tool)).toEqual(['echo']);
    expect(audit.rows[0]?.after.agent_id).toBe(agentId);

    // Checked again at call time, with the definition the server presents.
    await expect(chat.callTool(context, servers.everything, 'echo', { message: 'hi' })).rejects.toBeInstanceOf(NotAllowedError);

    // An admin approves what the server presents now: the tool is back.
    const drift = await pool.query<{ presented_sha256: string }>(
      `select presented_sha256 from public.mcp_tool_drift where server_instance_id = $1 and tool_name = 'echo'`,
      [servers.everything],
    );
    await org.owner.approve_mcp_tool_definition({
      p_server_instance_id: servers.everything,
      p_tool_name: 'echo',
      p_presented_sha256: drift.rows[0]?.presented_sha256 ?? '',
    });
    const approved = await prepare();
    expect(toolNames(server(approved, servers.everything))).toContain('echo');
    const echoed = await chat.callTool(approved, servers.everything, 'echo', { message: 'hi' });
    expect(JSON.stringify(echoed.content)).toContain('hi');
  });
});

describe('slow and broken servers', () => {
  let faults: FaultDriver;
  let faultDtma: DtmaServer;
  let faultOrgToolbox: string;
  const hung: string[] = [];

  beforeAll(async () => {
    // A second toolbox whose DTMA (in this process, with the fault driver) answers its control
    // routes but can be told to hang or fail its MCP endpoints.
    const { token } = dtma();
    faults = createFaultDriver(createProcessDriver({ startTimeoutMs: 20_000 }));
    faultDtma = createDtmaServer({ token, driver: faults, port: 0 });
    const url = await faultDtma.listen();
    faultOrgToolbox = await registerToolbox(pool, org.organizationId, 'faulty-toolbox', { url, token });
    hung.push(
      ...(await Promise.all([
        deployServer(pool, org, { catalog: 'memory', priority: 50, toolboxId: faultOrgToolbox, configuration: { env: { MEMORY_FILE_PATH: path.join(scratch, 'h1.jsonl') } } }),
        deployServer(pool, org, { catalog: 'memory', priority: 40, toolboxId: faultOrgToolbox, configuration: { env: { MEMORY_FILE_PATH: path.join(scratch, 'h2.jsonl') } } }),
      ])),
    );
    for (const [index, id] of hung.entries()) {
      await org.owner.grant_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: id, p_permission_scope: 'read_only' });
      await org.owner.upsert_agent_mcp_connection({
        p_agent_id: agentId,
        p_server_instance_id: id,
        p_connection_config: { timeoutMs: index === 0 ? 1500 : 2000, maxRetries: 2 },
      });
    }
  }, 90_000);

  afterAll(async () => {
    faults?.setFault(null);
    if (hung.length > 0) await removeServers(pool, org, hung);
    await faultDtma?.close();
  });

  it('cuts a server that never answers at its timeout while the others answer', async () => {
    faults.setFault({ hang: true, routes: ['/mcp/servers'] });
    const started = performance.now();
    const context = await prepare();
    const elapsed = performance.now() - started;
    faults.setFault(null);

    expect(context.servers.map((s) => [s.serverId, s.status])).toEqual([
      [servers.everything, 'ok'],
      [servers.memory, 'ok'],
      [servers.filesystem, 'ok'],
      [hung[0], 'timeout'],
      [hung[1], 'timeout'],
    ]);
    expect(server(context, hung[0] as string).error?.message).toBe('timed out after 1500 ms');
    expect(server(context, hung[1] as string).error?.message).toBe('timed out after 2000 ms');
    // Close to the slowest timeout (2 s), far from the sum (3.5 s).
    expect(elapsed).toBeGreaterThanOrEqual(2000);
    expect(elapsed).toBeLessThan(2800);
    // The servers that answered keep their tools and share the weight.
    expect(server(context, servers.memory).tools.length).toBe(3);
    expect(context.servers.filter((s) => s.status === 'ok').reduce((sum, s) => sum + s.weight, 0)).toBeCloseTo(1, 6);
    expect(server(context, hung[0] as string).weight).toBe(0);
    expect((await logRows(context.requestId)).filter((row) => row.outcome === 'timeout').map((row) => row.server_instance_id)).toEqual(hung);
  });

  it('retries a failing server with backoff, then reports the error without failing the context', async () => {
    faults.setFault({ status: 503, routes: ['/mcp/servers'] });
    const context = await prepare();
    faults.setFault(null);
    const broken = server(context, hung[0] as string);
    expect(broken.status).toBe('error');
    expect(broken.attempts).toBe(3);
    expect(broken.error?.message).toMatch(/503/);
    expect(broken.durationMs).toBeLessThan(1500);
    expect(server(context, servers.everything).status).toBe('ok');
    await expect(chat.callTool(context, hung[0] as string, 'read_graph', {})).rejects.toBeInstanceOf(IllegalStateError);
  });

  it('cuts a tool call at the server’s timeout, and logs it as a timeout', async () => {
    const context = await prepare();
    expect(server(context, hung[0] as string).status).toBe('ok');
    faults.setFault({ hang: true, routes: ['/mcp/servers'] });
    const started = performance.now();
    const error = await chat.callTool(context, hung[0] as string, 'read_graph', {}).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    faults.setFault(null);
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ code: 'SDK_UPSTREAM', status: 502 });
    expect(elapsed).toBeGreaterThanOrEqual(1500);
    expect(elapsed).toBeLessThan(2000);
    expect((await logRows(context.requestId)).filter((row) => row.interaction_type === 'tool_call')).toEqual([
      expect.objectContaining({ outcome: 'timeout', tool_name: 'read_graph', server_instance_id: hung[0], error_message: 'timed out after 1500 ms' }),
    ]);
  });

  it('caps every server at the caller’s latency budget', async () => {
    faults.setFault({ hang: true, routes: ['/mcp/servers'] });
    const started = performance.now();
    const context = await prepare({ maxTimeoutMs: 700 });
    faults.setFault(null);
    expect(performance.now() - started).toBeLessThan(1500);
    expect(server(context, hung[1] as string).error?.message).toBe('timed out after 700 ms');
  });
});

describe('revocation', () => {
  it('takes effect on the next call, in a context gathered before it', async () => {
    const context = await prepare();
    const first = await chat.callTool(context, servers.memory, 'read_graph', {});
    expect(first.isError).not.toBe(true);

    expect(await org.owner.revoke_agent_mcp_access({ p_agent_id: agentId, p_server_instance_id: servers.memory })).toBe(true);
    await expect(chat.callTool(context, servers.memory, 'read_graph', {})).rejects.toBeInstanceOf(NotAllowedError);

    const after = await prepare();
    expect(after.servers.map((s) => s.serverId)).not.toContain(servers.memory);
  });
});
