/**
 * Runs an Edge Function entry (supabase/functions/<name>/index.ts) under real Deno, the binary
 * of the npm package `deno`, exactly as Supabase runs it: the entry calls Deno.serve, reads its
 * environment, and answers HTTP; the import map is supabase/functions/deno.json, the one the
 * functions deploy with. DENO_SERVE_ADDRESS puts it on an ephemeral loopback port, which the
 * entry announces on stdout. An entry with its own deno.json uses it, as Supabase would.
 * Node-only; tests and benchmarks only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { signJwt } from '../../client/src/jwt.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DENO_BIN = path.join(ROOT, 'node_modules/.bin/deno');
/** Deno's module cache, inside the work tree's git-ignored .local (filled by scripts/test.sh). */
export const DENO_DIR = process.env.DENO_DIR ?? path.join(ROOT, '.local/deno');

export interface EdgeFunction {
  url: string;
  /** Everything the entry wrote, stdout and stderr. */
  output(): string;
  stop(): Promise<void>;
}

/** The arguments of `deno run` for an entry: its own deno.json when it has one, else the shared import map. */
export function denoRunArgs(name: string): string[] {
  const own = path.join(ROOT, 'supabase/functions', name, 'deno.json');
  const config = existsSync(own) ? own : path.join(ROOT, 'supabase/functions/deno.json');
  return [
    'run',
    '--allow-net',
    '--allow-env',
    '--allow-read',
    '--allow-sys',
    '--no-prompt',
    `--config=${config}`,
    path.join(ROOT, 'supabase/functions', name, 'index.ts'),
  ];
}

export async function startEdgeFunction(name: string, env: Record<string, string>, timeoutMs = 60_000): Promise<EdgeFunction> {
  const child: ChildProcess = spawn(DENO_BIN, denoRunArgs(name), {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DENO_DIR, NO_COLOR: '1', DENO_SERVE_ADDRESS: 'tcp:127.0.0.1:0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not listen within ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      const match = /Listening on (http:\/\/[^\s/]+)\//.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before listening:\n${output}`));
    });
  });
  return {
    url,
    output: () => output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * The environment Supabase gives a deployed function, pointed at the local stack: SUPABASE_URL
 * is a PostgREST (here the stand-in of testing/postgrest.ts, which supabase-js talks to
 * unmodified), SUPABASE_ANON_KEY an anon JWT signed with the project's secret.
 */
export async function supabaseEnv(postgrestUrl: string, jwtSecret: string): Promise<Record<string, string>> {
  return { SUPABASE_URL: postgrestUrl, SUPABASE_ANON_KEY: await signJwt({ role: 'anon' }, jwtSecret, '10y') };
}
