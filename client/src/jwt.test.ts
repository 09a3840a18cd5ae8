/**
 * JWTs signed the way Supabase signs them now (ES256 or RS256, public keys in a JWKS) and the
 * way it used to (HS256 with the shared secret), verified by the direct transport and by an
 * HTTP handler (mcp-server-manager) against the real database; a token signed by a key the
 * project does not hold is refused with 401 everywhere, whatever its algorithm.
 */
import { SignJWT, exportJWK, generateKeyPair, type JSONWebKeySet, type JWK } from 'jose';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordingServer } from '../../test/support/http.ts';
import { directTransport } from './direct-transport.ts';
import { UnauthorizedError } from './errors.ts';
import { rememberingJwtVerifier, signJwt, verifyJwt, type JwtKeys } from './jwt.ts';
import { serveHandler, managerForPool, type ServedHandler } from './manager/serve.ts';
import { createRpc } from './rpc.ts';
import { JWT_SECRET, createUser, testPool } from '../../test/support/stack.ts';

type Signer = { kid: string; alg: 'ES256' | 'RS256'; privateKey: CryptoKey; publicJwk: JWK };

async function signer(alg: 'ES256' | 'RS256', kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

function sign(with_: Signer, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: with_.alg, kid: with_.kid, typ: 'JWT' }).setIssuedAt().setExpirationTime('1h').sign(with_.privateKey);
}

let pool: pg.Pool;
let userId: string;
let es: Signer;
let rs: Signer;
let foreignEs: Signer;
let jwks: JSONWebKeySet;
let jwksServer: Awaited<ReturnType<typeof recordingServer>>;
let manager: ServedHandler;

beforeAll(async () => {
  pool = testPool();
  userId = await createUser(pool, 'jwks');
  es = await signer('ES256', 'project-es');
  rs = await signer('RS256', 'project-rs');
  // Same key id and algorithm as the project's key: only the signature tells them apart.
  foreignEs = await signer('ES256', 'project-es');
  jwks = { keys: [es.publicJwk, rs.publicJwk] };
  jwksServer = await recordingServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(jwks));
  });
  manager = await serveHandler(managerForPool(pool, { jwksUrl: `${jwksServer.url}/auth/v1/.well-known/jwks.json`, secret: JWT_SECRET }));
});

afterAll(async () => {
  await manager?.close();
  await jwksServer?.close();
  await pool?.end();
});

const claims = (): Record<string, unknown> => ({ sub: userId, role: 'authenticated', aud: 'authenticated' });

async function callsAs(jwt: string, keys: JwtKeys): Promise<unknown> {
  return createRpc(directTransport({ pool, jwt, jwtSecret: keys })).get_available_mcp_servers({ p_user_id: userId });
}

describe('direct transport', () => {
  it('accepts ES256 and RS256 tokens through a local JWKS, and acts as their subject', async () => {
    for (const key of [es, rs]) {
      await expect(callsAs(await sign(key, claims()), { jwks })).resolves.toEqual(expect.any(Array));
      expect(await verifyJwt(await sign(key, claims()), { jwks })).toMatchObject({ sub: userId, role: 'authenticated' });
    }
  });

  it('accepts tokens through a remote JWKS, fetched from the project’s URL', async () => {
    const before = jwksServer.received.length;
    const jwksUrl = `${jwksServer.url}/remote-only/jwks.json`;
    await expect(callsAs(await sign(rs, claims()), { jwksUrl })).resolves.toEqual(expect.any(Array));
    await expect(callsAs(await sign(es, claims()), { jwksUrl })).resolves.toEqual(expect.any(Array));
    const fetched = jwksServer.received.slice(before).filter((r) => r.url === '/remote-only/jwks.json');
    expect(fetched.length).toBe(1); // cached across tokens and transports
  });

  it('keeps accepting the legacy HS256 secret next to the key set', async () => {
    await expect(callsAs(await signJwt(claims(), JWT_SECRET), { jwks, secret: JWT_SECRET })).resolves.toEqual(expect.any(Array));
  });

  it('refuses a token signed by a foreign key, whatever the algorithm, with 401', async () => {
    const foreignRs = await signer('RS256', 'project-rs');
    const cases: [string, JwtKeys][] = [
      [await sign(foreignEs, claims()), { jwks, secret: JWT_SECRET }],
      [await sign(foreignRs, claims()), { jwks }],
      // An asymmetric token where only the secret is trusted, and an HS256 token where only the key set is.
      [await sign(es, claims()), { secret: JWT_SECRET }],
      [await signJwt(claims(), JWT_SECRET), { jwks }],
      // The public key used as an HMAC secret (algorithm confusion).
      [await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: 'project-es' }).setExpirationTime('1h').sign(new TextEncoder().encode(JSON.stringify(es.publicJwk))), { jwks }],
    ];
    for (const [jwt, keys] of cases) {
      const error = await callsAs(jwt, keys).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnauthorizedError);
      expect(error).toMatchObject({ code: 'PGRST301', status: 401, message: 'JWT invalid' });
    }
  });

  it('refuses an expired ES256 token as expired', async () => {
    const expired = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: es.kid }).setExpirationTime(Math.floor(Date.now() / 1000) - 10).sign(es.privateKey);
    await expect(callsAs(expired, { jwks })).rejects.toMatchObject({ constructor: UnauthorizedError, message: 'JWT expired' });
  });
});

describe('a verifier that remembers the tokens it accepted (the gateway’s)', () => {
  it('remembers accepted tokens only, the oldest forgotten first', async () => {
    const verify = rememberingJwtVerifier({ jwks }, { maxEntries: 2 });
    const first = await sign(es, claims());
    await expect(verify(first)).resolves.toMatchObject({ sub: userId, role: 'authenticated' });
    await expect(verify(first)).resolves.toMatchObject({ sub: userId });
    expect(verify.size()).toBe(1);
    // Same key id and algorithm, another key; and the accepted token with its signature altered.
    await expect(verify(await sign(foreignEs, claims()))).rejects.toMatchObject({ constructor: UnauthorizedError, message: 'JWT invalid' });
    const altered = `${first.slice(0, -4)}${first.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    await expect(verify(altered)).rejects.toMatchObject({ constructor: UnauthorizedError });
    expect(verify.size()).toBe(1);
    await verify(await sign(rs, claims()));
    await verify(await sign(es, { ...claims(), n: 3 }));
    expect(verify.size()).toBe(2);
  });

  it('refuses a remembered token from its expiry on, as jose does', async () => {
    const verify = rememberingJwtVerifier({ jwks });
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: es.kid }).setExpirationTime(exp).sign(es.privateKey);
    await expect(verify(token)).resolves.toMatchObject({ exp });
    expect(verify.size()).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 20));
    await expect(verify(token)).rejects.toMatchObject({ constructor: UnauthorizedError, message: 'JWT expired' });
    expect(verify.size()).toBe(0);
  });
});

describe('mcp-server-manager over the project’s JWKS', () => {
  it('serves ES256, RS256 and HS256 tokens, and refuses a foreign key with 401', async () => {
    for (const jwt of [await sign(es, claims()), await sign(rs, claims()), await signJwt(claims(), JWT_SECRET)]) {
      const response = await fetch(`${manager.url}/status`, { headers: { authorization: `Bearer ${jwt}` } });
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ data: expect.any(Array) });
    }
    const refused = await fetch(`${manager.url}/status`, { headers: { authorization: `Bearer ${await sign(foreignEs, claims())}` } });
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ error: { code: 'PGRST301', message: 'JWT invalid' } });
  });
});
