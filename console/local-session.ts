/**
 * A local-only sign-in link: the console's URL with a session for one user in its fragment,
 * in the shape Supabase Auth's implicit flow redirects with (#access_token=...&refresh_token=
 * ...&expires_in=...&token_type=bearer). supabase-js reads it on load (detectSessionInUrl),
 * asks /auth/v1/user who it is, and stores the session. The token is signed with the local
 * JWT secret, so it works only against the local stand-in; a real project signs users in with
 * Supabase Auth (see console/README.md).
 *
 *   DATABASE_URL=... JWT_SECRET=... npx tsx console/local-session.ts <console url> <email> [hours]
 */
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { signJwt } from '../client/src/jwt.ts';

export async function sessionLink(consoleUrl: string, user: { id: string; email: string }, jwtSecret: string, hours = 12): Promise<string> {
  const seconds = Math.round(hours * 3600);
  const token = await signJwt({ sub: user.id, email: user.email, role: 'authenticated', aud: 'authenticated' }, jwtSecret, seconds ? `${seconds}s` : '1h');
  const fragment = new URLSearchParams({ access_token: token, refresh_token: 'local-only', expires_in: String(seconds), token_type: 'bearer', type: 'magiclink' });
  return `${consoleUrl.replace(/\/$/, '')}/#${fragment.toString()}`;
}

async function main(): Promise<void> {
  const [consoleUrl, email, hours] = process.argv.slice(2);
  const jwtSecret = process.env.JWT_SECRET;
  if (!consoleUrl || !email || !jwtSecret) {
    console.error('usage: DATABASE_URL=... JWT_SECRET=... npx tsx console/local-session.ts <console url> <email> [hours]');
    process.exit(2);
  }
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
  try {
    const { rows } = await pool.query<{ id: string; email: string }>('select id, email from auth.users where email = $1', [email]);
    if (!rows[0]) throw new Error(`no user ${email} in auth.users`);
    console.log(await sessionLink(consoleUrl, rows[0], jwtSecret, hours ? Number(hours) : undefined));
  } finally {
    await pool.end();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
