/**
 * Builds the console for one Supabase URL and anon key, and serves the build (Vite's preview
 * server: static files with the single-page fallback). What `npm start` runs locally, against
 * the PostgREST stand-in; a real deployment builds with its project's URL and anon key and
 * serves console/dist from any static host.
 *
 *   SUPABASE_URL=http://127.0.0.1:54321 JWT_SECRET=... CONSOLE_PORT=54323 npx tsx console/serve.ts [build|serve]
 *
 * `build` only builds, `serve` only serves what was built; without an argument, both.
 *
 * Locally the anon key is a JWT with role anon signed with the local JWT_SECRET, as a Supabase
 * project's anon key is signed with the project's secret.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, preview } from 'vite';
import { signJwt } from '../client/src/jwt.ts';

const config = fileURLToPath(new URL('./vite.config.ts', import.meta.url));

export async function anonKey(jwtSecret: string): Promise<string> {
  return signJwt({ role: 'anon' }, jwtSecret, '3650d');
}

/** Builds the console into outDir for this project URL and key. */
export async function buildConsole(outDir: string, supabaseUrl: string, key: string): Promise<void> {
  process.env.VITE_SUPABASE_URL = supabaseUrl;
  process.env.VITE_SUPABASE_ANON_KEY = key;
  await build({ configFile: config, build: { outDir }, logLevel: 'error' });
}

/** Serves a build; port 0 picks a free one. */
export async function serveConsole(outDir: string, port: number): Promise<{ url: string; close: () => Promise<void> }> {
  const server = await preview({ configFile: config, build: { outDir }, preview: { port, strictPort: port !== 0, host: '127.0.0.1' }, logLevel: 'error' });
  const url = server.resolvedUrls?.local[0]?.replace(/\/$/, '');
  if (!url) throw new Error('the console preview server did not report its URL');
  return { url, close: () => server.close() };
}

async function main(): Promise<void> {
  const supabaseUrl = process.env.SUPABASE_URL;
  const jwtSecret = process.env.JWT_SECRET;
  if (!supabaseUrl || !jwtSecret) {
    console.error('console: SUPABASE_URL and JWT_SECRET are required');
    process.exit(2);
  }
  const mode = process.argv[2];
  const outDir = process.env.CONSOLE_OUT_DIR ?? fileURLToPath(new URL('../.local/console-dist', import.meta.url));
  if (mode !== 'serve') await buildConsole(outDir, supabaseUrl, process.env.SUPABASE_ANON_KEY ?? (await anonKey(jwtSecret)));
  if (mode === 'build') return;
  const served = await serveConsole(outDir, Number(process.env.CONSOLE_PORT ?? 54323));
  console.log(`console listening on ${served.url}`);
  const stop = (): void => void served.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
