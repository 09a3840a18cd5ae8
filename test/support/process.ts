/**
 * Test support (never imported by product code): a script of this repository run in a process
 * of its own (and its own process group, so a signal reaches it even behind a wrapper), ready
 * once it prints the URL it serves.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** Starts `command args` and waits (60 s at most) for a line that `ready` matches; its first group is the URL. */
export async function startListening(
  command: string,
  args: string[],
  env: Record<string, string | undefined>,
  ready: RegExp = /listening on (http:\/\/127\.0\.0\.1:\d+)/,
): Promise<Started> {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL printed in 60 s:\n${output}`)), 60_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = ready.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited with ${code}:\n${output}`)));
  });
  return { child, url, output: () => output };
}

/** Signals the process group and waits for the process to exit. */
export async function stopStarted(started: Started | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!started || started.child.exitCode !== null) return;
  const exited = new Promise((resolve) => started.child.once('exit', resolve));
  process.kill(-(started.child.pid as number), signal);
  await exited;
}
