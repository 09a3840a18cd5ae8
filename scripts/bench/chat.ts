/**
 * The chat function end to end, under load: the entry supabase/functions/chat run by real Deno
 * (direct transport to the database, as without PostgREST), reaching its tools through the
 * agent MCP gateway (the entry supabase/functions/mcp-gateway, also under Deno) with the
 * caller's JWT, the scripted OpenAI-compatible model (answers at once unless MODEL_LATENCY_MS),
 * and 5 real MCP servers from npm on the local DTMA. Each chat request: the agent's context
 * through one gateway session, one model turn asking for one tool call on each server (in
 * parallel), one model turn answering. Not a test: it prints figures.
 *
 *   npm start    # or any stack: DATABASE_URL, DTMA_URL, DTMA_TOKEN
 *   npx tsx scripts/bench/chat.ts            # LEVELS=1,10,100 MIN_REQUESTS=20 MODEL_LATENCY_MS=0
 *
 * The entries run with their own database pool sizes (GATEWAY_DB_POOL, DB_POOL_SIZE: set them to
 * try others). After one warm-up request, per level: a first wave of <level> concurrent requests,
 * during which the pools open their connections up to that concurrency (reported apart: what a
 * burst costs a cold function), then waves of <level> until at least MIN_REQUESTS were made (20
 * waves of 1, 2 of 10, 1 of 100): the steady state. Per request:
 * end-to-end time (the client's, to the end of the stream); model time (what the model server
 * spent on its two turns); server time (the slowest of the request's tool calls, as the
 * gateway's interaction log measured it around the upstream call); outside = the rest: the
 * chat function, the gateway (its session, the database's decisions), Deno, connection set-up.
 * Each request acts for an agent of its own (all granted the same 5 servers), so that the
 * gateway's log rows are the request's. A request refused or failed before its stream (a JSON
 * error), or whose stream ends in an error event, counts as failed; the reasons are printed.
 */
import os from 'node:os';
import { databaseUrl, deployBench, levels, minRequests, passedOn, percentile, requestsPerRun, waves } from './deployment.ts';

const modelLatencyMs = Number(process.env.MODEL_LATENCY_MS ?? 0);

const { JWT_SECRET, userJwt } = await import('../../test/support/stack.ts');
const { startEdgeFunction } = await import('../../test/support/edge-function.ts');
const { parseSse, startScriptedModel } = await import('../../test/support/scripted-model.ts');

const bench = await deployBench();
const { pool, org } = bench;
const specs = bench.servers;
const jwt = await userJwt(org.ownerId);
// One agent per request (the warm-up's included), each granted the 5 servers.
const agents = await bench.createAgents(requestsPerRun, 'bench chat agent');

const model = await startScriptedModel((request) => {
  if (request.messages.at(-1)?.role === 'tool') return { text: 'All five tools answered.' };
  const names = (request.tools ?? []).map((t) => t.function.name);
  const seen = new Map<string, number>();
  return {
    toolCalls: specs.map((spec) => {
      const nth = seen.get(spec.tool) ?? 0;
      seen.set(spec.tool, nth + 1);
      return { name: names.filter((n) => n.endsWith(`__${spec.tool}`))[nth] ?? `missing__${spec.tool}`, arguments: spec.args };
    }),
  };
});
model.setLatency(modelLatencyMs);
// The gateway acts on the database as the platform and verifies the users' JWTs with the secret.
const gateway = await startEdgeFunction('mcp-gateway', { SUPABASE_DB_URL: databaseUrl, JWT_SECRET, GATEWAY_LOG_FLUSH_MS: '100', ...passedOn('GATEWAY_DB_POOL') });
const entry = await startEdgeFunction('chat', {
  SUPABASE_DB_URL: databaseUrl,
  JWT_SECRET,
  ...passedOn('DB_POOL_SIZE'),
  OPENAI_BASE_URL: model.baseUrl,
  OPENAI_MODEL: 'scripted-model',
  MCP_GATEWAY_URL: gateway.url,
  CHAT_SERVER_TIMEOUT_MS: '10000',
});

/** Why requests failed, each reason once. */
const failures = new Set<string>();

interface Sample {
  e2e: number;
  model: number;
  agentId: string;
  ok: boolean;
}

async function oneChat(): Promise<Sample> {
  const agentId = agents.pop() as string;
  const first = model.requests.length;
  const started = performance.now();
  const response = await fetch(`${entry.url}/functions/v1/chat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
    body: JSON.stringify({ agent_id: agentId, organization_id: org.organizationId, messages: [{ role: 'user', content: 'Use every tool once.' }] }),
  });
  const text = await response.text();
  const e2e = performance.now() - started;
  // A refusal or failure before the stream is a JSON error, not events: a failed request, with its reason kept.
  const streamed = response.ok && (response.headers.get('content-type') ?? '').startsWith('text/event-stream');
  if (!streamed) failures.add(`HTTP ${response.status}: ${text.slice(0, 300)}`);
  const events = (streamed ? parseSse(text) : []) as { event: string; data: Record<string, unknown> }[];
  const error = events.find((e) => e.event === 'error');
  if (error) failures.add(`error event: ${JSON.stringify(error.data).slice(0, 300)}`);
  const results = events.filter((e) => e.event === 'tool_result');
  const ok = events.at(-1)?.event === 'done' && results.length === specs.length && results.every((r) => r.data.outcome === 'success');
  // This chat's model turns: the requests whose conversation is this one (the model server is shared, so match by position is unsafe).
  let modelMs = 0;
  for (let i = first; i < model.requests.length; i++) {
    const calls = model.requests[i]?.messages.flatMap((m) => m.tool_calls ?? []) ?? [];
    if (calls.length === 0 || events.some((e) => e.event === 'tool_call' && calls.some((c) => c.id === e.data.id))) modelMs += model.durations[i] ?? 0;
  }
  return { e2e, model: modelMs, agentId, ok };
}

/** The slowest tool call of each agent's request, as the gateway logged it (its batch written within GATEWAY_LOG_FLUSH_MS). */
async function serverTimes(agentIds: string[]): Promise<Map<string, number>> {
  await new Promise((resolve) => setTimeout(resolve, 500));
  const { rows } = await pool.query<{ agent_id: string; ms: number }>(
    `select agent_id, max(duration_ms) as ms from public.mcp_interaction_logs
      where agent_id = any($1) and interaction_type = 'tool_call' group by agent_id`,
    [agentIds],
  );
  return new Map(rows.map((r) => [r.agent_id, Number(r.ms)]));
}

const table: string[] = [];
const firstWaves: string[] = [];
/** A table row of one level's samples. */
async function row(level: number, samples: Sample[], wall: number): Promise<string> {
  const servers = await serverTimes(samples.map((s) => s.agentId));
  const outside = samples.map((s) => Math.max(0, s.e2e - s.model - (servers.get(s.agentId) ?? 0)) / s.e2e);
  const failed = samples.filter((s) => !s.ok).length;
  const e2e = samples.map((s) => s.e2e);
  return (
    `| ${level} | ${samples.length} | ${failed} | ${percentile(e2e, 50).toFixed(0)} | ${percentile(e2e, 95).toFixed(0)} | ` +
    `${percentile(samples.map((s) => s.model), 50).toFixed(0)} | ${percentile(samples.map((s) => servers.get(s.agentId) ?? 0), 50).toFixed(0)} | ` +
    `${(percentile(outside, 50) * 100).toFixed(0)}% | ${((samples.length / wall) * 1000).toFixed(1)} |`
  );
}
try {
  await oneChat(); // warm-up: Deno compiles, the pools connect
  console.log(`measuring ${levels.join(', ')} concurrent requests ...`);
  for (const level of levels) {
    const { first, samples, wallMs } = await waves(level, oneChat);
    firstWaves.push(await row(level, first.samples, first.wallMs));
    table.push(await row(level, samples, wallMs));
    console.log(`${table.at(-1)}   (first wave: ${firstWaves.at(-1)})`);
  }
} finally {
  await entry.stop();
  await gateway.stop();
  await model.close();
  await bench.close();
}
console.log(`\nchat through the gateway, 5 servers, one tool call each, model latency ${modelLatencyMs} ms, at least ${minRequests} requests per level (${os.cpus().length} cores)`);
console.log('| concurrent | requests | failed | p50 ms | p95 ms | model p50 ms | servers p50 ms | outside model and servers (p50) | requests/s |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const line of table) console.log(line);
console.log('\nthe first wave of each level, while the pools open their connections:');
for (const line of firstWaves) console.log(line);
if (failures.size > 0) console.log(`\nfailures:\n${[...failures].map((f) => `  ${f}`).join('\n')}`);
