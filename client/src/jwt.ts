/**
 * JWTs as Supabase issues them (HS256 with the project's JWT secret) and as PostgREST reads
 * them: the `role` claim picks the database role (anon when absent), the whole claim set
 * becomes `request.jwt.claims`. jose runs unchanged under Node, Deno and the browser.
 */
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
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

function key(secret: string | Uint8Array): Uint8Array {
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
  return jwt.sign(key(secret));
}

/** Verifies an HS256 JWT (signature, expiry) and returns its claims; UnauthorizedError (401) otherwise. */
export async function verifyJwt(token: string, secret: string | Uint8Array): Promise<JwtClaims> {
  try {
    const { payload } = await jwtVerify(token, key(secret), { algorithms: ['HS256'] });
    return parseClaims(payload);
  } catch (error) {
    if (error instanceof UnauthorizedError) throw error;
    const expired = error instanceof joseErrors.JWTExpired;
    throw new UnauthorizedError(
      {
        code: SdkErrorCode.unauthorized,
        message: expired ? 'JWT expired' : 'JWT invalid',
        details: error instanceof Error ? error.message : String(error),
        hint: expired ? 'sign in again' : 'send the access token of a session, signed with the project JWT secret',
      },
      { cause: error },
    );
  }
}
