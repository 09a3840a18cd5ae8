/**
 * The gateway's interaction log against the real database, through the store the entries use
 * (sqlGatewayStore over a service_role pool): every agent's batch of a flush goes in one write,
 * and a batch the database refuses costs no other agent its rows.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrl } from '../../../test/support/db.ts';
import { createAgent, createOrganization, testPool, type Organization } from '../../../test/support/stack.ts';
import { McpControlPlaneError } from '../errors.ts';
import { interactionLog, type AgentInteractions } from './interaction-log.ts';
import { directTransport } from '../direct-transport.ts';
import { gatewayStore, SERVICE_ROLE_OPTIONS, sqlGatewayStore } from './store.ts';

let pool: pg.Pool;
let servicePool: pg.Pool;
let org: Organization;

beforeAll(async () => {
  pool = testPool();
  servicePool = new pg.Pool({ connectionString: databaseUrl(), max: 4, options: SERVICE_ROLE_OPTIONS });
  org = await createOrganization(pool);
});

afterAll(async () => {
  await servicePool?.end();
  await pool?.end();
});

async function logged(agentId: string): Promise<{ tool_name: string; outcome: string; duration_ms: number }[]> {
  const { rows } = await pool.query('select tool_name, outcome::text, duration_ms from public.mcp_interaction_logs where agent_id = $1 order by id', [agentId]);
  return rows as never;
}

describe('the interaction log', () => {
  it('writes every agent’s batch of a flush in one write; a refused batch loses no other agent’s rows', async () => {
    const store = sqlGatewayStore(servicePool);
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => createAgent(pool, org.organizationId, org.ownerId, `log-${n}-${randomUUID().slice(0, 6)}`)));
    const writes: AgentInteractions[][] = [];
    const errors: unknown[] = [];
    const log = interactionLog({
      write: (batches) => {
        writes.push(batches);
        return store.log(batches);
      },
      onError: (error) => errors.push(error),
      flushMs: 60_000,
    });
    log.add(a as string, { interaction_type: 'tool_call', tool_name: 'first', outcome: 'success', duration_ms: 3 });
    log.add(b as string, { interaction_type: 'tool_call', tool_name: 'second', outcome: 'denied', duration_ms: 0, error: 'denied: no_live_grant' });
    log.add(a as string, { interaction_type: 'tool_call', tool_name: 'third', outcome: 'error', duration_ms: 7 });
    await log.flush();
    expect(writes).toHaveLength(1);
    expect(writes[0]?.map((w) => [w.agentId, w.interactions.length])).toEqual([[a, 2], [b, 1]]);
    expect(await logged(a as string)).toEqual([
      { tool_name: 'first', outcome: 'success', duration_ms: 3 },
      { tool_name: 'third', outcome: 'error', duration_ms: 7 },
    ]);
    expect(await logged(b as string)).toEqual([{ tool_name: 'second', outcome: 'denied', duration_ms: 0 }]);

    // c names a server outside its organization: refused (42501), alone.
    writes.length = 0;
    log.add(c as string, { interaction_type: 'tool_call', tool_name: 'foreign', server_instance_id: randomUUID(), outcome: 'success', duration_ms: 1 });
    log.add(a as string, { interaction_type: 'tool_call', tool_name: 'fourth', outcome: 'success', duration_ms: 2 });
    await log.flush();
    expect(writes.map((w) => w.map((one) => one.agentId))).toEqual([[c, a], [c], [a]]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(McpControlPlaneError);
    expect((errors[0] as McpControlPlaneError).code).toBe('42501');
    expect(await logged(c as string)).toEqual([]);
    expect((await logged(a as string)).map((r) => r.tool_name)).toEqual(['first', 'third', 'fourth']);
    await log.close();
  });

  it('through the RPC store (one call per batch): a refused batch is reported and no other agent’s rows are written twice', async () => {
    const store = gatewayStore(directTransport({ pool: servicePool, claims: { role: 'service_role' } }));
    const [a, c] = await Promise.all(['a', 'c'].map((n) => createAgent(pool, org.organizationId, org.ownerId, `rpc-log-${n}-${randomUUID().slice(0, 6)}`)));
    const errors: unknown[] = [];
    const log = interactionLog({ write: (batches) => store.log(batches), onError: (error) => errors.push(error), flushMs: 60_000 });
    log.add(c as string, { interaction_type: 'tool_call', tool_name: 'foreign', server_instance_id: randomUUID(), outcome: 'success', duration_ms: 1 });
    log.add(a as string, { interaction_type: 'tool_call', tool_name: 'once', outcome: 'success', duration_ms: 2 });
    await log.flush();
    expect(errors).toHaveLength(1);
    expect((errors[0] as McpControlPlaneError).code).toBe('42501');
    expect(await logged(c as string)).toEqual([]);
    expect((await logged(a as string)).map((r) => r.tool_name)).toEqual(['once']);
    await log.close();
  });
});
