/**
 * Both transports against the real database: the per-request identity PostgREST would set, the
 * errors the database raises mapped to typed errors (the same through either transport), JWTs
 * refused as PostgREST refuses them, and arguments checked before anything is sent.
 *
 * There is no PostgREST here (no Docker): supabase-js talks to test/support/postgrest.ts, a real
 * HTTP server speaking PostgREST's RPC wire format (arguments as JSON, errors as
 * {code, message, details, hint} with PostgREST's status), which runs each call through the
 * direct transport. supabase-js is unmodified; fromPostgrestError is also checked on
 * postgrest-js's own PostgrestError.
 */
import { PostgrestError } from '@supabase/postgrest-js';
import { createClient } from '@supabase/supabase-js';
import { SignJWT } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrl } from '../../test/support/db.ts';
import { directTransport } from './direct-transport.ts';
import { ConflictError, InvalidArgumentError, McpControlPlaneError, NotAllowedError, UnauthorizedError, UnavailableError } from './errors.ts';
import { signJwt, verifyJwt } from './jwt.ts';
import { createRpc } from './rpc.ts';
import { fromPostgrestError, supabaseTransport } from './supabase-transport.ts';
import { JWT_SECRET, createUser, testPool, userJwt, userTransport } from '../../test/support/stack.ts';
import { servePostgrest } from '../../test/support/postgrest.ts';
import type { RpcTransport } from './transport.ts';
import type { ServedHandler } from './manager/serve.ts';

let pool: pg.Pool;
let postgrest: ServedHandler;
let alice: string;
let bob: string;

function supabaseAs(jwt: string): RpcTransport {
  const anonKey = jwt; // the apikey header; PostgREST reads the role from Authorization
  const client = createClient(postgrest.url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    global: { headers: { Authorization: `Bearer ${jwt}` } },
  });
  return supabaseTransport(client);
}

beforeAll(async () => {
  pool = testPool();
  postgrest = await servePostgrest(pool, JWT_SECRET);
  [alice, bob] = await Promise.all([createUser(pool, 'alice'), createUser(pool, 'bob')]);
});

afterAll(async () => {
  await postgrest?.close();
  await pool?.end();
});

describe('the per-request context', () => {
  it('acts as the JWT’s user: auth.uid() is its sub', async () => {
    const rpc = createRpc(await userTransport(pool, alice));
    const slug = `ctx-${Date.now()}`;
    const organizationId = await rpc.create_organization({ p_name: 'Context', p_slug: slug });
    const { rows } = await pool.query('select o.created_by, m.role from public.organizations o join public.organization_members m on m.organization_id = o.id where o.id = $1', [
      organizationId,
    ]);
    expect(rows).toEqual([{ created_by: alice, role: 'owner' }]);
  });

  it('switches to the role claim, transaction-local: the pooled connection is postgres again afterwards', async () => {
    const single = new pg.Pool({ connectionString: databaseUrl(), max: 1 });
    try {
      const service = createRpc(directTransport({ pool: single, claims: { role: 'service_role' } }));
      expect(await service.poll_dtma_status({})).toBeGreaterThanOrEqual(0);
      const user = createRpc(directTransport({ pool: single, claims: { role: 'authenticated', sub: alice } }));
      await expect(user.poll_dtma_status({})).rejects.toMatchObject({ code: '42501' });
      const { rows } = await single.query("select current_user as role, current_setting('request.jwt.claims', true) as claims");
      expect(rows[0]).toEqual({ role: 'postgres', claims: '' });
    } finally {
      await single.end();
    }
  });

  it('is anon without a JWT (the database refuses the role itself, not the function body)', async () => {
    const anon = createRpc(directTransport({ pool }));
    await expect(anon.create_organization({ p_name: 'x', p_slug: 'anon-org' })).rejects.toMatchObject({
      code: '42501',
      message: 'permission denied for function create_organization',
    });
  });
});

describe('errors, through both transports', () => {
  // A real refusal with a hint: Alice passes Bob's id as hers (db/functions/tenancy.sql require_self).
  const expected = {
    code: '42501',
    message: "the user id passed is not the caller's",
    hint: 'pass your own user id, or call as service_role',
    details: null,
    status: 403,
  };

  it('direct: a 42501 from a real RPC is a NotAllowedError with its code and hint', async () => {
    const rpc = createRpc(await userTransport(pool, alice));
    const error = await rpc.get_available_mcp_servers({ p_user_id: bob }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotAllowedError);
    expect(error).toBeInstanceOf(McpControlPlaneError);
    expect(error).toMatchObject(expected);
  });

  it('supabase-js: the same refusal, over PostgREST’s wire format, is the same NotAllowedError', async () => {
    const rpc = createRpc(supabaseAs(await userJwt(alice)));
    const error = await rpc.get_available_mcp_servers({ p_user_id: bob }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotAllowedError);
    expect(error).toMatchObject(expected);
  });

  it('supabase-js: results match the direct transport’s', async () => {
    const jwt = await userJwt(alice);
    const viaSupabase = createRpc(supabaseAs(jwt));
    const viaDirect = createRpc(await userTransport(pool, alice));
    const organizationId = await viaSupabase.create_organization({ p_name: 'Wire', p_slug: `wire-${Date.now()}` });
    expect(organizationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await viaSupabase.get_available_mcp_servers({ p_user_id: alice })).toEqual(await viaDirect.get_available_mcp_servers({ p_user_id: alice }));
    // A duplicate slug: 23505 -> ConflictError (409) through either transport.
    const slug = `dup-${Date.now()}`;
    await viaDirect.create_organization({ p_name: 'Dup', p_slug: slug });
    for (const rpc of [viaSupabase, viaDirect]) {
      await expect(rpc.create_organization({ p_name: 'Dup', p_slug: slug })).rejects.toMatchObject({ constructor: ConflictError, code: '23505', status: 409 });
    }
  });

  it('maps postgrest-js’s PostgrestError by code, and a network failure to UnavailableError', () => {
    const cases: [string, new (...args: never[]) => McpControlPlaneError, number][] = [
      ['42501', NotAllowedError, 403],
      ['23505', ConflictError, 409],
      ['PGRST301', UnauthorizedError, 401],
      ['', UnavailableError, 503],
      ['P0001', McpControlPlaneError, 400],
    ];
    for (const [code, type, status] of cases) {
      const mapped = fromPostgrestError(new PostgrestError({ message: 'm', details: 'd', hint: 'h', code }));
      expect(mapped).toBeInstanceOf(type);
      expect(mapped).toMatchObject({ message: 'm', details: 'd', hint: 'h', status });
    }
  });

  it('maps a database that cannot be reached to UnavailableError', async () => {
    const nowhere = new pg.Pool({ connectionString: 'postgresql://postgres:postgres@127.0.0.1:1/postgres', connectionTimeoutMillis: 1000 });
    try {
      await expect(createRpc(directTransport({ pool: nowhere, claims: { role: 'anon' } })).poll_dtma_status({})).rejects.toBeInstanceOf(UnavailableError);
    } finally {
      await nowhere.end();
    }
  });

  it('answers an unknown function as PostgREST does (PGRST202, 404)', async () => {
    const transport = await userTransport(pool, alice);
    await expect(transport.rpc('no_such_function', { p_x: 1 })).rejects.toMatchObject({ code: 'PGRST202', status: 404 });
  });
});

describe('JWTs', () => {
  it('signs and verifies HS256 tokens with an expiry', async () => {
    const token = await signJwt({ sub: alice, role: 'authenticated' }, JWT_SECRET);
    const claims = await verifyJwt(token, JWT_SECRET);
    expect(claims).toMatchObject({ sub: alice, role: 'authenticated' });
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(3600);
  });

  it('checks expiry on every call, as PostgREST does per request', async () => {
    const shortLived = await signJwt({ sub: alice, role: 'authenticated', exp: Math.floor(Date.now() / 1000) + 1 }, JWT_SECRET);
    const rpc = createRpc(directTransport({ pool, jwt: shortLived, jwtSecret: JWT_SECRET }));
    expect(await rpc.get_available_mcp_servers({ p_user_id: alice })).toEqual(expect.any(Array));
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await expect(rpc.get_available_mcp_servers({ p_user_id: alice })).rejects.toMatchObject({ constructor: UnauthorizedError, message: 'JWT expired' });
  });

  it('refuses a wrong signature, an expired token and a role PostgREST would not switch to', async () => {
    const forged = await signJwt({ sub: alice, role: 'authenticated' }, 'another-secret-of-at-least-32-characters');
    const expired = await signJwt({ sub: alice, role: 'authenticated', exp: Math.floor(Date.now() / 1000) - 10 }, JWT_SECRET);
    // Signed by hand: signJwt itself refuses the role.
    const superuser = await new SignJWT({ sub: alice, role: 'postgres' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(JWT_SECRET));
    for (const jwt of [forged, expired, superuser]) {
      const rpc = createRpc(directTransport({ pool, jwt, jwtSecret: JWT_SECRET }));
      await expect(rpc.get_available_mcp_servers({ p_user_id: alice })).rejects.toMatchObject({ constructor: UnauthorizedError, code: 'PGRST301', status: 401 });
    }
    await expect(verifyJwt(expired, JWT_SECRET)).rejects.toThrow('JWT expired');
    await expect(signJwt({ role: 'postgres' as 'anon' }, JWT_SECRET)).rejects.toBeInstanceOf(UnauthorizedError);
  });
});

describe('typed calls', () => {
  it('check the arguments before anything is sent', async () => {
    const real = await userTransport(pool, alice);
    const sent: string[] = [];
    const recording: RpcTransport = { rpc: (name, args) => (sent.push(name), real.rpc(name, args)) };
    const rpc = createRpc(recording);
    const error = await rpc.grant_agent_mcp_access({ p_agent_id: 'not-a-uuid', p_server_instance_id: alice, p_permission_scope: 'custom' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error).toMatchObject({ code: '22023', status: 422 });
    expect((error as InvalidArgumentError).details).toMatch(/^p_agent_id: /);
    // An argument the function does not take: refused here, as PostgREST would not find the function.
    await expect(rpc.revoke_agent_mcp_access({ p_agent_id: alice, p_server_instance_id: alice, p_reason: 'x' } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(sent).toEqual([]);
  });
});
