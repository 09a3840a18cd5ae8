/**
 * The PostgREST stand-in against the real database: supabase-js (unmodified) reads tables
 * under RLS and calls RPCs through it; every refusal comes back with PostgREST's status and
 * the database's SQLSTATE; the per-request identity stays inside its transaction; the URL
 * grammar refuses what it does not understand instead of guessing.
 */
import { createClient } from '@supabase/supabase-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signJwt } from '../../client/src/jwt.ts';
import { JWT_SECRET, createAgent, createOrganization, createUser, testPool, userJwt, type Organization } from '../../test/support/stack.ts';
import { databaseUrl } from '../../test/support/db.ts';
import { serveStandin } from './server.ts';
import type { ServedHandler } from '../../client/src/manager/serve.ts';

let pool: pg.Pool;
let api: ServedHandler;
let ana: Organization;
let ben: Organization;
let anaJwt: string;
let anonKey: string;

function clientAs(jwt: string) {
  return createClient(api.url, anonKey, { auth: { persistSession: false, autoRefreshToken: false }, global: { headers: { Authorization: `Bearer ${jwt}` } } });
}

async function get(path: string, jwt?: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${api.url}${path}`, { headers: { ...(jwt ? { authorization: `Bearer ${jwt}` } : {}), ...headers } });
  return { status: res.status, headers: res.headers, body: (await res.json()) as unknown };
}

async function post(fn: string, body: unknown, jwt?: string) {
  const res = await fetch(`${api.url}/rest/v1/rpc/${fn}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(jwt ? { authorization: `Bearer ${jwt}` } : {}) }, body: JSON.stringify(body) });
  return { status: res.status, body: res.status === 204 ? null : ((await res.json()) as { code?: string }) };
}

beforeAll(async () => {
  pool = testPool();
  api = await serveStandin({ pool, jwtSecret: JWT_SECRET });
  [ana, ben] = await Promise.all([createOrganization(pool), createOrganization(pool)]);
  await createAgent(pool, ana.organizationId, ana.ownerId, 'ana-agent');
  await createAgent(pool, ana.organizationId, ana.ownerId, 'ana-second');
  anaJwt = await userJwt(ana.ownerId);
  anonKey = await signJwt({ role: 'anon' }, JWT_SECRET);
});

afterAll(async () => {
  await api?.close();
  await pool?.end();
});

describe('table reads (GET /rest/v1/<table>)', () => {
  it('answers supabase-js with the rows RLS lets the user see, and nothing of another organization', async () => {
    const { data, error } = await clientAs(anaJwt).from('organizations').select('id').in('id', [ana.organizationId, ben.organizationId]);
    expect(error).toBeNull();
    expect(data).toEqual([{ id: ana.organizationId }]);
    const agents = await clientAs(anaJwt).from('agents').select('name').eq('organization_id', ben.organizationId);
    expect(agents).toMatchObject({ data: [], error: null });
  });

  it('filters, orders, limits and counts as PostgREST does', async () => {
    const q = `/rest/v1/agents?select=name&organization_id=eq.${ana.organizationId}&order=name.desc&limit=1`;
    const res = await get(q, anaJwt, { prefer: 'count=exact' });
    expect(res).toMatchObject({ status: 200, body: [{ name: 'ana-second' }] });
    expect(res.headers.get('content-range')).toBe('0-0/2');
    expect((await get(`/rest/v1/agents?select=name&organization_id=eq.${ana.organizationId}&name=in.(ana-agent,"x,y")`, anaJwt)).body).toEqual([{ name: 'ana-agent' }]);
    expect((await get(`/rest/v1/agents?select=name&organization_id=eq.${ana.organizationId}&name=not.like.*second&description=eq.`, anaJwt)).body).toEqual([{ name: 'ana-agent' }]);
    expect((await get(`/rest/v1/agents?select=name&organization_id=eq.${ana.organizationId}&is_active=is.false`, anaJwt)).body).toEqual([]);
  });

  it('answers a single-object request with the row, and 406 PGRST116 when there is not exactly one', async () => {
    const { data } = await clientAs(anaJwt).from('organizations').select('id').eq('id', ana.organizationId).single();
    expect(data).toEqual({ id: ana.organizationId });
    const many = await get(`/rest/v1/agents?organization_id=eq.${ana.organizationId}`, anaJwt, { accept: 'application/vnd.pgrst.object+json' });
    expect(many).toMatchObject({ status: 406, body: { code: 'PGRST116' } });
  });

  it('refuses anon with 401 and the database’s 42501; a bad token with 401 PGRST301', async () => {
    expect(await get('/rest/v1/organizations?select=id')).toMatchObject({ status: 401, body: { code: '42501' } });
    const forged = await signJwt({ sub: ana.ownerId, role: 'authenticated' }, 'another-secret-of-at-least-32-characters!');
    expect(await get('/rest/v1/organizations?select=id', forged)).toMatchObject({ status: 401, body: { code: 'PGRST301' } });
  });

  it('keeps URL text out of the SQL: identifiers are checked, values are parameters', async () => {
    expect(await get('/rest/v1/agents?select=name;drop table x', anaJwt)).toMatchObject({ status: 400, body: { code: 'PGRST100' } });
    expect(await get(`/rest/v1/agents?select=name&name=eq.' or 1=1 --`, anaJwt)).toMatchObject({ status: 200, body: [] });
    expect(await get('/rest/v1/agents?select=agent(name)', anaJwt)).toMatchObject({ status: 400, body: { code: 'PGRST100' } });
    expect(await get('/rest/v1/agents?select=no_such_column', anaJwt)).toMatchObject({ status: 400, body: { code: '42703' } });
    expect(await get('/rest/v1/no_such_table', anaJwt)).toMatchObject({ status: 404, body: { code: '42P01' } });
    // Private helpers are not exposed: the relation is looked up in public only.
    expect(await get('/rest/v1/valid_grants', anaJwt)).toMatchObject({ status: 404, body: { code: '42P01' } });
  });

  it('runs each request in its own transaction: role and claims do not outlive it', async () => {
    const single = new pg.Pool({ connectionString: databaseUrl(), max: 1 });
    const solo = await serveStandin({ pool: single, jwtSecret: JWT_SECRET });
    try {
      const res = await fetch(`${solo.url}/rest/v1/organizations?select=id`, { headers: { authorization: `Bearer ${anaJwt}` } });
      expect(res.status).toBe(200);
      const { rows } = await single.query("select current_user as role, current_setting('request.jwt.claims', true) as claims");
      expect(rows[0]).toEqual({ role: 'postgres', claims: '' });
    } finally {
      await solo.close();
      await single.end();
    }
  });
});

describe('RPCs (POST /rest/v1/rpc/<fn>)', () => {
  it('maps the database’s refusals to PostgREST’s statuses', async () => {
    const benServer = { action: 'stop', organization_id: ben.organizationId, server_config: {}, server_id: ana.organizationId };
    expect(await post('manage_mcp_servers', benServer, anaJwt)).toMatchObject({ status: 403, body: { code: '42501' } });
    expect(await post('manage_mcp_servers', benServer)).toMatchObject({ status: 401, body: { code: '42501' } });
    const slug = `dup-${Date.now()}`;
    expect(await post('create_organization', { p_name: 'Dup', p_slug: slug }, anaJwt)).toMatchObject({ status: 200 });
    expect(await post('create_organization', { p_name: 'Dup', p_slug: slug }, anaJwt)).toMatchObject({ status: 409, body: { code: '23505' } });
    expect(await post('no_such_function', {}, anaJwt)).toMatchObject({ status: 404, body: { code: 'PGRST202' } });
    expect(await post('add_organization_member', { p_organization_id: ana.organizationId, p_user_id: ana.organizationId }, anaJwt)).toMatchObject({ status: 500, body: { code: 'P0002' } });
  });

  it('answers supabase-js’s rpc() with the result, and void with 204', async () => {
    const member = await createUser(pool, 'member');
    const { data, error } = await clientAs(anaJwt).rpc('add_organization_member', { p_organization_id: ana.organizationId, p_user_id: member, p_role: 'viewer' });
    expect({ data, error }).toEqual({ data: null, error: null });
    const servers = await clientAs(anaJwt).rpc('get_available_mcp_servers', { p_user_id: ana.ownerId });
    expect(servers).toMatchObject({ data: [], error: null });
  });
});

describe('Auth (GET /auth/v1/user)', () => {
  it('names the user of a valid token, and refuses a token without a user', async () => {
    expect(await get('/auth/v1/user', anaJwt)).toMatchObject({ status: 200, body: { id: ana.ownerId, role: 'authenticated' } });
    expect(await get('/auth/v1/user', anonKey)).toMatchObject({ status: 401 });
    const ghost = await signJwt({ sub: '00000000-0000-4000-8000-000000000000', role: 'authenticated' }, JWT_SECRET);
    expect(await get('/auth/v1/user', ghost)).toMatchObject({ status: 403 });
  });
});
