/**
 * How long the console's main screens take to load for a large organization: 200 MCP servers,
 * 200 agents, 2,000 live grants (10 per agent), 2,000 usage rows and the audit trail those
 * writes leave. A script that prints figures, not a timed test.
 *
 *   npm start            # the database (DATABASE_URL defaults to npm start's)
 *   npx tsx scripts/bench/console.ts [--rounds 5]
 *
 * It loads the dataset as the platform (postgres), starts its own PostgREST stand-in and a
 * production build of the console, signs the organization's owner in with headless Chromium,
 * and opens each screen `rounds` times. A load is timed from navigation to the moment the
 * screen says its data is in (data-ready) and no API request is in flight any more, so every
 * section's reads count. The organization is deleted at the end.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { openScreen, startConsoleStack } from '../../console/e2e/stack.ts';

const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1] || 5) || 5;
const databaseUrl = process.env.DATABASE_URL ?? 'postgresql://postgres:postgres@127.0.0.1:54322/postgres';
const SERVERS = 200;
const AGENTS = 200;
const GRANTS_PER_AGENT = 10;

async function loadDataset(pool: pg.Pool, tag: string): Promise<{ orgId: string; owner: { id: string; email: string } }> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const owner = (await client.query<{ id: string; email: string }>("insert into auth.users (email) values ($1) returning id, email", [`bench-owner-${tag}@example.com`])).rows[0] as { id: string; email: string };
    const members = (await client.query<{ id: string }>("insert into auth.users (email) select 'bench-' || $1 || '-' || g || '@example.com' from generate_series(1, 20) g returning id", [tag])).rows.map((r) => r.id);
    // As the owner, the way the app creates an organization; the toolbox is registered by the platform.
    await client.query("select set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)", [JSON.stringify({ sub: owner.id, role: 'authenticated' })]);
    const orgId = (await client.query<{ id: string }>('select public.create_organization($1, $2) as id', [`Bench ${tag}`, `bench-${tag}`])).rows[0]?.id as string;
    await client.query("select set_config('role', 'postgres', true), set_config('request.jwt.claims', '', true)");
    const toolbox = (await client.query<{ id: string }>("select public.create_toolbox($1, 'bench-box', 'http://127.0.0.1:9', 'bench-token-never-used') as id", [orgId])).rows[0]?.id as string;
    await client.query("select public.add_organization_member($1, m, 'member') from unnest($2::uuid[]) m", [orgId, members]);
    await client.query(
      `insert into public.account_tool_instances (organization_id, account_tool_environment_id, catalog_id, instance_name_on_toolbox, display_name, created_by)
       select $1, $2, c.id, 'bench-' || g, 'Bench server ' || lpad(g::text, 3, '0'), $3
         from generate_series(1, $4::int) g
         join lateral (select id from public.mcp_server_catalog where name = (array['memory', 'everything', 'sequential-thinking'])[1 + g % 3]) c on true`,
      [orgId, toolbox, owner.id, SERVERS],
    );
    await client.query(
      `insert into public.agents (organization_id, user_id, name) select $1, ($2::uuid[])[1 + g % 20], 'bench-agent-' || lpad(g::text, 3, '0') from generate_series(1, $3::int) g`,
      [orgId, members, AGENTS],
    );
    await client.query(
      `insert into public.agent_mcp_server_access (organization_id, agent_id, server_instance_id, permission_scope, granted_by)
       select $1, a.id, s.id, (array['read_only', 'full_access']::public.mcp_permission_scope[])[1 + (a.n + k) % 2], $2
         from (select id, row_number() over (order by name) as n from public.agents where organization_id = $1) a
         cross join generate_series(0, $3::int - 1) k
         join (select id, row_number() over (order by display_name) as n from public.account_tool_instances where organization_id = $1) s
           on s.n = 1 + (a.n * 7 + k * 13) % $4`,
      [orgId, owner.id, GRANTS_PER_AGENT, SERVERS],
    );
    await client.query(
      `insert into public.agent_mcp_connections (organization_id, agent_id, server_instance_id, status, total_requests, failed_requests, total_duration_ms, last_used_at)
       select organization_id, agent_id, server_instance_id, 'connected', 100 + (hashtext(id::text) & 255), hashtext(id::text) & 7, 40 * (100 + (hashtext(id::text) & 255)), now()
         from public.agent_mcp_server_access where organization_id = $1`,
      [orgId],
    );
    await client.query('commit');
    return { orgId, owner };
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}

async function main(): Promise<void> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  const tag = randomBytes(3).toString('hex');
  const jwtSecret = randomBytes(32).toString('hex');
  let orgId: string | undefined;
  let stack: Awaited<ReturnType<typeof startConsoleStack>> | undefined;
  try {
    const started = performance.now();
    const dataset = await loadDataset(pool, tag);
    orgId = dataset.orgId;
    const counts = (await pool.query('select (select count(*) from public.account_tool_instances where organization_id = $1) as servers, (select count(*) from public.agent_mcp_server_access where organization_id = $1 and revoked_at is null) as grants, (select count(*) from public.audit_log where organization_id = $1) as audit_rows', [orgId])).rows[0];
    console.log(`dataset: ${counts.servers} servers, ${counts.grants} live grants, ${counts.audit_rows} audit rows (${Math.round(performance.now() - started)} ms to load)`);
    stack = await startConsoleStack(pool, jwtSecret);
    const { page } = await stack.signIn(dataset.owner);
    let inFlight = 0;
    let lastDone = 0;
    page.on('request', (r) => { if (r.url().startsWith(stack!.apiUrl)) inFlight++; });
    const done = (r: { url(): string }) => { if (r.url().startsWith(stack!.apiUrl)) { inFlight--; lastDone = performance.now(); } };
    page.on('requestfinished', done);
    if (process.env.BENCH_VERBOSE) {
      page.on('requestfinished', (r) => { const t = r.timing(); console.log(`  ${(t.responseEnd).toFixed(0).padStart(5)} ms  ${r.method()} ${r.url().replace(stack!.url, '').replace(stack!.apiUrl, 'api').slice(0, 110)}`); });
    }
    page.on('requestfailed', done);
    // The renderer's own CPU time (Chrome's TaskDuration): what the page costs, whatever else runs on the machine.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const taskSeconds = async () => ((await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration')?.value ?? 0);
    const cpu: Record<string, number[]> = {};
    let cpuStart = 0;
    const settle = async (t0: number, screen: string) => {
      await page.waitForSelector(`[data-screen="${screen}"][data-ready]`, { timeout: 20_000 });
      const ready = performance.now();
      while (inFlight > 0) await new Promise((r) => setTimeout(r, 2));
      return Math.max(ready, lastDone) - t0;
    };
    const screens = ['organization', 'servers', 'agents', 'audit'] as const;
    const labels = { organization: 'Organization', servers: 'MCP servers', agents: 'Agents and access', audit: 'Audit and usage' };
    const cold: Record<string, number[]> = {};
    const inApp: Record<string, number[]> = {};
    for (let i = 0; i < rounds; i++) {
      for (const screen of screens) {
        // A full page load: the bundle, the session, the organization, the screen's reads.
        let t0 = performance.now();
        await page.goto(`${stack.url}/${screen}`);
        (cold[screen] ??= []).push(await settle(t0, screen));
        // Switching screens inside the page, as a user does with the tabs.
        const next = screens[(screens.indexOf(screen) + 1) % screens.length] as (typeof screens)[number];
        cpuStart = await taskSeconds();
        t0 = performance.now();
        await page.locator('nav button', { hasText: labels[next] }).click();
        (inApp[next] ??= []).push(await settle(t0, next));
        (cpu[next] ??= []).push(((await taskSeconds()) - cpuStart) * 1000);
      }
    }
    const stats = (ms: number[]) => {
      const sorted = [...ms].sort((a, b) => a - b);
      return `${(sorted[Math.floor(sorted.length / 2)] as number).toFixed(0).padStart(9)} ${Math.max(...ms).toFixed(0).padStart(7)}`;
    };
    console.log(`\nscreen load times, ${rounds} rounds, headless Chromium, production build (load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} cores):`);
    console.log('screen          full load: median ms  max ms   switching tabs: median ms  max ms   renderer CPU: median ms  max ms');
    for (const screen of screens) console.log(`${screen.padEnd(16)}${stats(cold[screen] as number[]).padStart(22)}${stats(inApp[screen] as number[]).padStart(33)}${stats(cpu[screen] as number[]).padStart(31)}`);
    await openScreen(page, stack.url, 'servers');
    console.log(`\n(the servers screen renders ${await page.locator("table.instances tbody tr").count()} rows at first, of ${SERVERS}; target: every screen under 1000 ms)`);
  } finally {
    await stack?.close();
    if (orgId) await pool.query('delete from public.organizations where id = $1', [orgId]).catch((e: Error) => console.error(`cleanup: ${e.message}`));
    await pool.query("delete from auth.users where email like $1", [`bench-%${tag}%@example.com`]).catch((e: Error) => console.error(`cleanup: ${e.message}`));
    await pool.end();
  }
}

await main();
