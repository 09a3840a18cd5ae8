/**
 * The admin console in headless Chromium, end to end, on the stack of scripts/test.sh: the
 * real database with the demo of scripts/demo.sql, the real pg_net worker and local DTMA, the
 * PostgREST stand-in, and the console's production build. Mia is the demo user (owner of the
 * demo organization); Vic is a viewer of it.
 *
 * Screenshots go to .local/screenshots, or to the folder CONSOLE_SCREENSHOTS names
 * (`npm run screenshots` refreshes docs/screenshots).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directTransport } from '../../client/src/direct-transport.ts';
import { createRpc } from '../../client/src/rpc.ts';
import { JWT_SECRET, dtma, requiredEnv, suffix, testPool, waitForStatus } from '../../test/support/stack.ts';
import type { Tool } from '../src/types.ts';
import { ROOT, openScreen, startConsoleStack, type ConsoleStack } from './stack.ts';

const shots = path.resolve(ROOT, process.env.CONSOLE_SCREENSHOTS ?? path.join(process.env.MCP_LOCAL_DIR ?? '.local', 'screenshots'));

let pool: pg.Pool;
let stack: ConsoleStack;
let demo: { id: string; email: string };
let orgId: string;
let instanceId: string;
let agentId: string;
let mia: Page;

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`) });
}

async function one<T>(sql: string, params: unknown[] = []): Promise<T> {
  const { rows } = await pool.query(sql, params);
  if (!rows[0]) throw new Error(`no row for ${sql}`);
  return rows[0] as T;
}

/** Asks the point-in-time question through the Audit screen; the agents named in the answer. */
async function whoCouldCall(page: Page, tool: string, at: Date): Promise<string[]> {
  await openScreen(page, stack.url, 'audit');
  const form = page.locator('form[data-form="point-in-time"]');
  await form.locator('select[aria-label="Server"]').selectOption(instanceId);
  await form.locator(`select[aria-label="Tool"] option[value="${tool}"]`).waitFor({ state: 'attached' });
  await form.locator('select[aria-label="Tool"]').selectOption(tool);
  await form.locator('input[aria-label="At"]').fill(at.toISOString());
  await form.locator('button[type="submit"]').click();
  await page.waitForSelector('[data-answer]');
  return page.locator('[data-answer="agents"] tr[data-agent]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-agent') ?? ''));
}

beforeAll(async () => {
  pool = testPool();
  const { url, token } = dtma();
  const psql = spawnSync('psql', [requiredEnv('DATABASE_URL'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', `dtma_url=${url}`, '-v', `dtma_token=${token}`, '-f', path.join(ROOT, 'scripts/demo.sql')], { encoding: 'utf8' });
  if (psql.status !== 0) throw new Error(`scripts/demo.sql failed: ${psql.stderr}`);
  demo = await one("select id, email from auth.users where email = 'demo@example.com'");
  ({ id: orgId } = await one<{ id: string }>("select id from public.organizations where slug = 'demo'"));
  ({ id: instanceId } = await one<{ id: string }>("select id from public.account_tool_instances where instance_name_on_toolbox = 'demo-memory' and status <> 'removed'"));
  ({ id: agentId } = await one<{ id: string }>("select id from public.agents where name = 'demo-agent' and organization_id = $1", [orgId]));
  stack = await startConsoleStack(pool, JWT_SECRET);
}, 240_000);

afterAll(async () => {
  await stack?.close();
  // Leave the demo server as the suites leave theirs: removed through the control plane.
  if (instanceId) {
    await pool.query("select public.manage_mcp_servers('delete', $1, '{}', $2)", [orgId, instanceId]).catch(() => undefined);
    await waitForStatus(pool, instanceId, 'removed', 20_000).catch(() => undefined);
  }
  await pool?.end();
});

describe('the console, signed in as the demo user (owner)', () => {
  it('signs in through the local session link and shows the demo organization with the owner role', async () => {
    ({ page: mia } = await stack.signIn(demo));
    await expect(mia.locator('header.top .who').textContent()).resolves.toBe('demo@example.com');
    await expect(mia.locator('header.top .role').getAttribute('data-role')).resolves.toBe('owner');
    await openScreen(mia, stack.url, 'organization');
    // The demo has one owner: the page says the last-owner rule before anyone tries.
    await expect(mia.locator(`tr[data-member="${demo.id}"] [data-last-owner]`).count()).resolves.toBe(1);
    await expect(mia.locator(`tr[data-member="${demo.id}"] button[data-mutates]`).count()).resolves.toBe(0);
    await screenshot(mia, 'organization');
  });

  it('deploys the demo server, showing progress until it is running', async () => {
    await openScreen(mia, stack.url, 'servers');
    const row = mia.locator('tr[data-instance="demo-memory"]');
    await expect(row.getAttribute('data-status')).resolves.toBe('pending');
    await row.locator('button[data-action="deploy"]').click();
    await row.locator('[data-progress]').waitFor({ state: 'visible' });
    await mia.locator('tr[data-instance="demo-memory"][data-status="running"]').waitFor({ timeout: 30_000 });
    await row.locator('[data-progress]').waitFor({ state: 'detached', timeout: 10_000 });
    await expect(one<{ status: string }>('select status from public.account_tool_instances where id = $1', [instanceId])).resolves.toEqual({ status: 'running' });
    // Running, the state machine offers restart, stop and remove, not deploy.
    const actions = await row.locator('button[data-action]').evaluateAll((bs) => bs.map((b) => b.getAttribute('data-action')));
    expect(actions).toEqual(['restart', 'stop', 'delete', 'configure']);
    await screenshot(mia, 'servers');
  });

  it('creates a server from the catalog’s configuration schema; a writeOnly secret is set, never shown, replaced', async () => {
    const catalogName = `console-secrets-${suffix()}`;
    const schema = {
      type: 'object', additionalProperties: false, required: ['env'],
      properties: { env: { type: 'object', additionalProperties: false, required: ['API_KEY'], properties: {
        API_KEY: { type: 'string', minLength: 1, writeOnly: true, description: 'a secret' },
        REGION: { type: 'string', enum: ['eu', 'us'] } } } },
    };
    await pool.query(
      `insert into public.mcp_server_catalog (name, display_name, docker_image_url, version, transport_type, config_schema)
       values ($1, 'Console secrets check', 'npm:@modelcontextprotocol/server-memory', '1', 'streamable_http', $2)`,
      [catalogName, schema],
    );
    try {
      await openScreen(mia, stack.url, 'servers');
      await mia.locator('button[data-action="open-create"]').click();
      const form = mia.locator('form[data-form="create-server"]');
      await form.locator('select').first().selectOption(catalogName);
      await form.locator('label', { hasText: 'Name on the toolbox' }).locator('input').fill(catalogName);
      await form.locator('[data-field="env.REGION"] select').selectOption('eu');
      const secret = form.locator('[data-field="env.API_KEY"] input');
      await expect(secret.getAttribute('type')).resolves.toBe('password');
      await secret.fill('sk-first-secret');
      await form.locator('button[type="submit"]').click();
      const row = mia.locator(`tr[data-instance="${catalogName}"]`);
      await row.waitFor();
      const stored = async () => (await one<{ configuration: { env: Record<string, unknown> } }>('select configuration from public.account_tool_instances where instance_name_on_toolbox = $1', [catalogName])).configuration.env;
      // The secret is in Vault (read here as the platform), never in the configuration column.
      const vaulted = async () => (await one<{ value: string | null }>(
        "select private.instance_configuration(id) -> 'env' ->> 'API_KEY' as value from public.account_tool_instances where instance_name_on_toolbox = $1 and status <> 'removed'",
        [catalogName])).value;
      const first = await stored();
      expect(first).toEqual({ REGION: 'eu' });
      await expect(vaulted()).resolves.toBe('sk-first-secret');

      // Configure: the secret says it is set, its input is empty, the value is nowhere on the page.
      await row.locator('button[data-action="configure"]').click();
      const edit = mia.locator('form[data-form="configure"]');
      await expect(edit.locator('[data-field="env.API_KEY"] .badge').textContent()).resolves.toBe('secret set');
      await expect(edit.locator('[data-field="env.API_KEY"] input').inputValue()).resolves.toBe('');
      await expect(edit.locator('[data-field="env.REGION"] select').inputValue()).resolves.toBe('eu');
      expect(await mia.content()).not.toContain('sk-first-secret');
      // Saving without typing keeps the stored secret; typing replaces it.
      await edit.locator('[data-field="env.REGION"] select').selectOption('us');
      await edit.locator('button[type="submit"]').click();
      await edit.waitFor({ state: 'detached' });
      expect(await stored()).toEqual({ REGION: 'us' });
      await expect(vaulted()).resolves.toBe('sk-first-secret');
      await row.locator('button[data-action="configure"]').click();
      await edit.locator('[data-field="env.API_KEY"] input').fill('sk-second-secret');
      await edit.locator('button[type="submit"]').click();
      await edit.waitFor({ state: 'detached' });
      expect(await stored()).toEqual({ REGION: 'us' });
      await expect(vaulted()).resolves.toBe('sk-second-secret');
      expect(await mia.content()).not.toContain('sk-second-secret');
    } finally {
      await pool.query("select public.manage_mcp_servers('delete', i.organization_id, '{}', i.id) from public.account_tool_instances i where i.instance_name_on_toolbox = $1 and i.status <> 'removed'", [catalogName]);
      await pool.query('update public.mcp_server_catalog set is_active = false where name = $1', [catalogName]);
    }
  });

  let grantedAt: Date;
  let grantId: string;
  it('grants the demo agent read-only access and shows exactly its read-only tools', async () => {
    await openScreen(mia, stack.url, 'agents');
    await mia.locator('button[data-action="open-grant"]').click();
    const dialog = mia.locator('[role="dialog"]');
    await dialog.locator('select[aria-label="Server"]').selectOption(instanceId);
    await dialog.locator('input[name="scope"][value="read_only"]').check();
    await dialog.locator('[data-picker] label[data-tool]').first().waitFor();
    await screenshot(mia, 'grant-dialog');
    await dialog.locator('button[type="submit"]').click();
    const tools = mia.locator('tr[data-state="live"] [data-tools] code');
    await tools.first().waitFor();
    const shown = await tools.allTextContents();
    const { pinned_read_only_tool_names: readOnly, pinned_tool_names: all } = await one<{ pinned_read_only_tool_names: string[]; pinned_tool_names: string[] }>(
      'select pinned_read_only_tool_names, pinned_tool_names from public.account_tool_instances where id = $1',
      [instanceId],
    );
    expect(shown).toEqual(readOnly);
    expect(readOnly.length).toBeGreaterThan(0);
    expect(readOnly.length).toBeLessThan(all.length);
    ({ granted_at: grantedAt, id: grantId } = await one<{ granted_at: Date; id: string }>('select id, granted_at from public.agent_mcp_server_access where agent_id = $1 and server_instance_id = $2 and revoked_at is null and permission_scope = $3', [agentId, instanceId, 'read_only']));
    await screenshot(mia, 'agents');
  });

  it('answers the point-in-time question after the grant', async () => {
    expect(await whoCouldCall(mia, 'read_graph', new Date())).toEqual(['demo-agent']);
    // Not a read-only tool: the read-only grant never allowed it.
    expect(await whoCouldCall(mia, 'create_entities', new Date())).toEqual([]);
  });

  it('revokes the grant, and the point-in-time question answers for before and after', async () => {
    await openScreen(mia, stack.url, 'agents');
    await mia.locator('tr[data-state="live"] button[data-action="revoke"]').click();
    await mia.locator('tr[data-state="live"]').waitFor({ state: 'detached' });
    const { revoked_at: revokedAt } = await one<{ revoked_at: Date }>('select revoked_at from public.agent_mcp_server_access where id = $1', [grantId]);
    expect(revokedAt).toBeInstanceOf(Date);
    const between = new Date((grantedAt.getTime() + revokedAt.getTime()) / 2);
    expect(await whoCouldCall(mia, 'read_graph', between)).toEqual(['demo-agent']);
    await mia.locator('form[data-form="point-in-time"]').scrollIntoViewIfNeeded();
    await screenshot(mia, 'point-in-time');
    expect(await whoCouldCall(mia, 'read_graph', new Date(revokedAt.getTime() + 1))).toEqual([]);
    expect(await whoCouldCall(mia, 'read_graph', new Date(grantedAt.getTime() - 1000))).toEqual([]);
  });

  it('shows a drifted tool side by side and approves it', async () => {
    // The gateway (the platform, service_role) sees the server present a changed definition of
    // read_graph: only what the platform read upstream is recorded as drift.
    const { pinned_manifest: manifest } = await one<{ pinned_manifest: Tool[] }>('select pinned_manifest from public.account_tool_instances where id = $1', [instanceId]);
    const pinned = manifest.find((t) => t.name === 'read_graph') as Tool;
    const { sha256: _sha, ...definition } = pinned;
    const changed = { ...definition, description: `${pinned.description ?? ''} Also sends the graph to a third party.` };
    const gateway = createRpc(directTransport({ pool, claims: { role: 'service_role' } }));
    const filtered = await gateway.filter_agent_mcp_tools({ p_agent_id: agentId, p_server_instance_id: instanceId, p_tools: [changed] });
    expect(filtered[0]).toMatchObject({ tool_name: 'read_graph', allowed: false });
    const presented = filtered[0]?.presented_sha256 as string;

    await openScreen(mia, stack.url, 'agents');
    const card = mia.locator(`[data-drift="read_graph"][data-server="${instanceId}"]`);
    await card.waitFor();
    await expect(card.locator('[data-diff] td.added').count()).resolves.toBeGreaterThan(0);
    await expect(card.locator('[data-diff] td.added').first().textContent()).resolves.toContain('third party');
    await card.scrollIntoViewIfNeeded();
    await screenshot(mia, 'drift');
    await card.locator('button[data-action="approve"]').click();
    await card.waitFor({ state: 'detached' });
    await mia.locator('[data-drift-empty]').waitFor();
    const after = await one<{ approved: boolean; sha: string }>(
      `select d.approved_at is not null as approved, (select t ->> 'sha256' from jsonb_array_elements(i.pinned_manifest) t where t ->> 'name' = 'read_graph') as sha
         from public.mcp_tool_drift d join public.account_tool_instances i on i.id = d.server_instance_id
        where d.server_instance_id = $1 and d.presented_sha256 = $2`,
      [instanceId, presented],
    );
    expect(after).toEqual({ approved: true, sha: presented });
  });

  it('shows the audit trail and usage charts', async () => {
    const runtime = createRpc(directTransport({ pool, claims: { role: 'authenticated', sub: demo.id } }));
    for (const [ok, ms] of [[true, 40], [true, 55], [false, 300], [true, 35]] as const) {
      await runtime.record_agent_mcp_connection_usage({ p_agent_id: agentId, p_server_instance_id: instanceId, p_success: ok, p_duration_ms: ms });
    }
    await openScreen(mia, stack.url, 'audit');
    await mia.locator('table.audit tr[data-action="mcp_grant.insert"]').first().waitFor();
    await mia.locator('[data-chart="Calls per agent"]').waitFor();
    const usage = await one<{ calls: string; failed: string }>('select sum(total_requests) as calls, sum(failed_requests) as failed from public.agent_mcp_connections where agent_id = $1', [agentId]);
    expect(Number(usage.calls)).toBeGreaterThanOrEqual(4);
    await expect(mia.locator('[data-chart="Calls per agent"] text').allTextContents()).resolves.toContain(`${usage.calls} calls, ${usage.failed} failed`);
    // Filtering by what happened asks the database again.
    await mia.locator('form.filters select').selectOption('tool.');
    await mia.locator('form.filters button[type="submit"]').click();
    await mia.locator('table.audit tr[data-action="mcp_grant.insert"]').first().waitFor({ state: 'detached' });
    const actions = await mia.locator('table.audit tr[data-action]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-action')));
    expect(actions.length).toBeGreaterThan(0);
    expect(actions.every((a) => a?.startsWith('tool.'))).toBe(true);
    await mia.locator('form.filters select').selectOption('');
    await mia.locator('form.filters button[type="submit"]').click();
    await mia.locator('table.audit tr[data-action="mcp_grant.insert"]').first().waitFor();
    await screenshot(mia, 'audit');
    await mia.locator('[data-chart="Calls per server"]').scrollIntoViewIfNeeded();
    await screenshot(mia, 'usage');
  });
});

describe('screens that need other issues’ work', () => {
  it('lists the user’s OAuth connections from the database, tokens never on the page', async () => {
    const user = createRpc(directTransport({ pool, claims: { role: 'authenticated', sub: demo.id } }));
    await user.store_user_oauth_connection({ p_provider: 'github', p_access_token: 'gho_console_secret_token', p_scopes: ['repo', 'read:user'], p_account_label: 'demo-on-github', p_expires_in: 3600 });
    await openScreen(mia, stack.url, 'connections');
    const row = mia.locator('tr[data-connection="github"][data-status="active"]');
    await row.waitFor();
    await expect(row.locator('code.tool').allTextContents()).resolves.toEqual(['read:user', 'repo']);
    expect(await mia.content()).not.toContain('gho_console_secret_token');
    // Connecting goes through mcp-auth-manager; GitHub is connected already, the others are offered.
    await expect(mia.locator('button[data-action="connect"][data-provider="github"]').count()).resolves.toBe(0);
    await expect(mia.locator('button[data-action="connect"][data-provider="google"]').count()).resolves.toBe(1);
    await screenshot(mia, 'connections');
  });

  it('creates an agent API key, shows it once, and revokes it (with the gateway’s RPCs)', async (ctx) => {
    const { exists } = await one<{ exists: boolean }>("select to_regprocedure('public.create_agent_api_key(uuid, text, timestamptz)') is not null as exists");
    if (!exists) ctx.skip();
    await openScreen(mia, stack.url, 'agents');
    const name = `console-key-${suffix()}`;
    await mia.locator('label', { hasText: 'Key name' }).locator('input').fill(name);
    await mia.locator('button', { hasText: 'Create a key' }).click();
    const shown = await mia.locator('[data-new-key] code.key').textContent();
    expect(shown).toMatch(/^mcpk_[0-9a-f]{12}_/);
    await mia.locator('[data-new-key] button').click();
    await mia.locator(`tr[data-key="${(shown as string).slice(0, 17)}"][data-state="active"]`).waitFor();
    await openScreen(mia, stack.url, 'agents');
    expect(await mia.content()).not.toContain(shown as string);
    await mia.locator(`tr[data-key="${(shown as string).slice(0, 17)}"] button[data-action="revoke-key"]`).click();
    await mia.locator(`tr[data-key="${(shown as string).slice(0, 17)}"][data-state="revoked"]`).waitFor();
  });
});

describe('a viewer of the demo organization', () => {
  let vic: Page;
  beforeAll(async () => {
    const viewer = await one<{ id: string; email: string }>("insert into auth.users (email) values ($1) returning id, email", [`vic-${suffix()}@example.com`]);
    await pool.query("select public.add_organization_member($1, $2, 'viewer')", [orgId, viewer.id]);
    ({ page: vic } = await stack.signIn(viewer));
  });

  it('is offered no button that changes anything, on any screen', async () => {
    for (const screen of ['organization', 'servers', 'agents', 'audit', 'connections'] as const) {
      await openScreen(vic, stack.url, screen);
      await expect(vic.locator('[data-mutates]').count(), screen).resolves.toBe(0);
      // Every button is one of the two kinds: none slipped through unmarked.
      const unmarked = await vic.locator('button:not([data-safe])').count();
      expect(unmarked, screen).toBe(0);
      if (screen === 'servers') await screenshot(vic, 'viewer-servers');
    }
    // The same screens offer the owner changes: the check above can fail.
    await openScreen(mia, stack.url, 'servers');
    await expect(mia.locator('[data-mutates]').count()).resolves.toBeGreaterThan(0);
  });

  it('is refused by the database when a request is forged from the page', async () => {
    await openScreen(vic, stack.url, 'servers');
    const answers = await vic.evaluate(
      async ({ api, org, server, self }) => {
        const key = Object.keys(localStorage).find((k) => k.endsWith('-auth-token')) as string;
        const token = (JSON.parse(localStorage.getItem(key) as string) as { access_token: string }).access_token;
        const call = async (fn: string, body: unknown) => {
          const res = await fetch(`${api}/rest/v1/rpc/${fn}`, { method: 'POST', headers: { 'content-type': 'application/json', apikey: token, authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
          return { status: res.status, body: (await res.json()) as { code: string } };
        };
        return [
          await call('manage_mcp_servers', { action: 'stop', organization_id: org, server_config: {}, server_id: server }),
          await call('change_organization_member_role', { p_organization_id: org, p_user_id: self, p_role: 'owner' }),
        ];
      },
      { api: stack.apiUrl, org: orgId, server: instanceId, self: (await one<{ user_id: string }>("select user_id from public.organization_members where organization_id = $1 and role = 'viewer' order by created_at desc limit 1", [orgId])).user_id },
    );
    expect(answers.map((a) => [a.status, a.body.code])).toEqual([[403, '42501'], [403, '42501']]);
    await expect(one<{ status: string }>('select status from public.account_tool_instances where id = $1', [instanceId])).resolves.toEqual({ status: 'running' });
  });
});

