/**
 * JWTs as Supabase issues them and as PostgREST reads them: the `role` claim picks the database
 * role (anon when absent), the whole claim set becomes `request.jwt.claims`.
 *
 * Supabase signs with the project's asymmetric keys (ES256 or RS256, public keys served as a
 * JWKS at `<project>/auth/v1/.well-known/jwks.json`) or, on older projects, with the shared
 * HS256 secret. A verifier takes either or both (`JwtKeys`): the token's `alg` header picks the
 * key, and an algorithm the verifier has no key for is refused. jose runs unchanged under Node,
 * Deno and the browser.
 */
import { SignJWT, createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { z } from 'zod';
import { SdkErrorCode, UnauthorizedError } from './errors.ts';

/** The database roles a JWT may name: PostgREST switches to them, and to nothing else. */
export const ApiRoleSchema = z.enum(['anon', 'authenticated', 'service_role']);
export type ApiRole = z.infer<typeof ApiRoleSchema>;

/** Claims as the database reads them; `role` defaults to anon, as PostgREST's db-anon-role. */
export const JwtClaimsSchema = z.looseObject({
  role: ApiRoleSchema.default('anon'),
  sub: z.string().optional(),
  email: z.string().optional(),
  aud: z.union([z.string(), z.array(z.string())]).optional(),
  exp: z.number().optional(),
  iat: z.number().optional(),
});
export type JwtClaims = z.infer<typeof JwtClaimsSchema>;
export type JwtClaimsInput = z.input<typeof JwtClaimsSchema>;

/** The asymmetric algorithms Supabase signs with; the JWKS says which key has which. */
export const ASYMMETRIC_ALGORITHMS = ['ES256', 'RS256'] as const;

/**
 * The keys a verifier trusts. `secret`: the legacy shared HS256 secret. `jwks`: a key set held
 * locally (JSON, e.g. from an environment variable). `jwksUrl`: a key set fetched and cached by
 * jose (refetched when a token names a key id it has not seen, at most every 30 s).
 */
export interface JwtKeys {
  secret?: string | Uint8Array;
  jwks?: JSONWebKeySet;
  jwksUrl?: string | URL;
}

/** A shared secret alone, or any combination of keys. */
export type JwtKeyInput = string | Uint8Array | JwtKeys;

function secretBytes(secret: string | Uint8Array): Uint8Array {
  return typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
}

/** Parses claims, refusing a role other than anon, authenticated and service_role (401). */
export function parseClaims(claims: unknown): JwtClaims {
  const parsed = JwtClaimsSchema.safeParse(claims);
  if (!parsed.success) {
    throw new UnauthorizedError({
      code: SdkErrorCode.unauthorized,
      message: 'JWT claims are not valid',
      details: parsed.error.issues.map((issue) => `${issue.path.join('.') || '(claims)'}: ${issue.message}`).join('; '),
      hint: 'the role claim must be anon, authenticated or service_role',
    });
  }
  return parsed.data;
}

/**
 * Signs claims with HS256. `iat` is set, and `exp` one hour ahead unless the claims carry one
 * (Supabase's default session length).
 */
export async function signJwt(claims: JwtClaimsInput, secret: string | Uint8Array, expiresIn: string | number = '1h'): Promise<string> {
  const parsed = parseClaims(claims);
  const jwt = new SignJWT(parsed).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt();
  if (parsed.exp === undefined) jwt.setExpirationTime(expiresIn);
  return jwt.sign(secretBytes(secret));
}

type KeySet = ReturnType<typeof createLocalJWKSet> | ReturnType<typeof createRemoteJWKSet>;

// jose's remote set caches the keys it fetched: one per URL for the life of the process.
const remoteSets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
const localSets = new WeakMap<JSONWebKeySet, ReturnType<typeof createLocalJWKSet>>();

function keySet(keys: JwtKeys): KeySet | undefined {
  if (keys.jwksUrl !== undefined) {
    const url = new URL(keys.jwksUrl);
    let set = remoteSets.get(url.href);
    if (!set) {
      set = createRemoteJWKSet(url, { cooldownDuration: 30_000 });
      remoteSets.set(url.href, set);
    }
    return set;
  }
  if (keys.jwks !== undefined) {
    let set = localSets.get(keys.jwks);
    if (!set) {
      set = createLocalJWKSet(keys.jwks);
      localSets.set(keys.jwks, set);
    }
    return set;
  }
  return undefined;
}

function normalize(keys: JwtKeyInput): JwtKeys {
  return typeof keys === 'string' || keys instanceof Uint8Array ? { secret: keys } : keys;
}

/** The keys from the environment as the Edge Functions and Node entries read it: JWT_SECRET, JWT_JWKS (JSON), JWT_JWKS_URL. */
export function jwtKeysFromEnv(env: (name: string) => string | undefined): JwtKeys {
  const keys: JwtKeys = {};
  const secret = env('JWT_SECRET');
  const jwks = env('JWT_JWKS');
  const jwksUrl = env('JWT_JWKS_URL');
  if (secret) keys.secret = secret;
  if (jwks) keys.jwks = JSON.parse(jwks) as JSONWebKeySet;
  if (jwksUrl) keys.jwksUrl = jwksUrl;
  return keys;
}

function refuse(message: string, hint: string, error?: unknown): UnauthorizedError {
  return new UnauthorizedError(
    {
      code: SdkErrorCode.unauthorized,
      message,
      details: error instanceof Error ? error.message : error === undefined ? null : String(error),
      hint,
    },
    error === undefined ? undefined : { cause: error },
  );
}

/**
 * Verifies a JWT (signature with the key its algorithm calls for, expiry) and returns its
 * claims; UnauthorizedError (401) otherwise, including for a token signed by a key the
 * verifier does not hold.
 */
export async function verifyJwt(token: string, keys: JwtKeyInput): Promise<JwtClaims> {
  const trusted = normalize(keys);
  let payload: JWTPayload;
  try {
    const { alg } = decodeProtectedHeader(token);
    if (alg === 'HS256' && trusted.secret !== undefined) {
      ({ payload } = await jwtVerify(token, secretBytes(trusted.secret), { algorithms: ['HS256'] }));
    } else {
      const set = keySet(trusted);
      if (!set || !(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(String(alg))) {
        throw new joseErrors.JOSEAlgNotAllowed(`no trusted key for a token signed with ${String(alg)}`);
      }
      ({ payload } = await jwtVerify(token, set, { algorithms: [...ASYMMETRIC_ALGORITHMS] }));
    }
  } catch (error) {
    const expired = error instanceof joseErrors.JWTExpired;
    throw refuse(expired ? 'JWT expired' : 'JWT invalid', expired ? 'sign in again' : 'send the access token of a session of this project', error);
  }
  return parseClaims(payload);
}

/** A verifier that remembers the tokens it accepted (see rememberingJwtVerifier). */
export interface JwtVerifier {
  (token: string): Promise<JwtClaims>;
  /** How many accepted tokens are remembered now. */
  size(): number;
}

/**
 * verifyJwt for a server that sees the same token on every request of a session (the gateway):
 * a token it accepted is answered again without its signature being checked, until the earlier
 * of its expiry (`exp`, as jose would refuse it) and `maxAgeMs` after it was checked, so a key
 * withdrawn from a JWKS stops being honoured within `maxAgeMs` at the latest, as jose's own key
 * cache already allows. Refusals are never remembered; the oldest token is forgotten first past
 * `maxEntries`.
 */
export function rememberingJwtVerifier(keys: JwtKeyInput, options: { maxAgeMs?: number; maxEntries?: number } = {}): JwtVerifier {
  const maxAgeMs = options.maxAgeMs ?? 60_000;
  const maxEntries = options.maxEntries ?? 10_000;
  const remembered = new Map<string, { claims: JwtClaims; until: number }>();
  const verify = async (token: string): Promise<JwtClaims> => {
    const known = remembered.get(token);
    if (known && known.until > Date.now()) return known.claims;
    remembered.delete(token);
    const claims = await verifyJwt(token, keys);
    const now = Date.now();
    const until = Math.min(now + maxAgeMs, claims.exp === undefined ? Infinity : claims.exp * 1000);
    if (until > now) {
      if (remembered.size >= maxEntries) remembered.delete(remembered.keys().next().value as string);
      remembered.set(token, { claims, until });
    }
    return claims;
  };
  return Object.assign(verify, { size: () => remembered.size });
}
