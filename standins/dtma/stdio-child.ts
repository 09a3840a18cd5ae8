/**
 * One MCP server as a child process speaking MCP over its stdio: spawning it,
 * the transport the SDK's Client talks through, its stderr tail, and stopping
 * it (SIGTERM, a grace period, SIGKILL).
 *
 * The SDK's StdioClientTransport is not used because it hides the exit code
 * and signal (needed to explain a crash) and stops on a fixed 2 s + 2 s
 * schedule (callers are owed their gracefulTimeoutMs). Framing is its own:
 * one JSON document per line, parsed once; telling requests, responses and
 * notifications apart (and refusing what is none) stays the SDK Protocol's,
 * which checks every message anyway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

const STDERR_TAIL_CHARS = 2000;

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  command: string;
  args: string[];
  /** The whole environment of the child: nothing else is inherited. */
  env: Record<string, string>;
  cwd: string;
  /** Called once when the child exits, whatever the cause. */
  onExit?: (exit: ChildExit) => void;
  /** A process-level error (a failed kill, EPERM); without a listener it would crash the DTMA. */
  onError?: (error: Error) => void;
}

export interface StdioChild {
  readonly pid: number | undefined;
  /** Resolves when the child has exited. */
  readonly exit: Promise<ChildExit>;
  /** The exit, once it happened. */
  exited(): ChildExit | null;
  /** The last characters the child wrote to stderr. */
  stderrTail(): string;
  /** True once terminate() was called: an exit after that is not a crash. */
  readonly stopping: boolean;
  /** The MCP transport over the child's stdin and stdout (one per child). */
  readonly transport: Transport;
  /** SIGTERM (SIGKILL when gracefulTimeoutMs is 0), then SIGKILL after the grace period. */
  terminate(gracefulTimeoutMs: number): Promise<void>;
  /** Whether the child exits within `ms`. */
  exitsWithin(ms: number): Promise<boolean>;
  /** `process exited with code 1; stderr: ...`. */
  describeExit(exit: ChildExit): string;
}

// Backstop for an exit that skips close() (uncaught exception, process.exit):
// 'exit' handlers may only do synchronous work, and kill() is synchronous.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const live of liveChildren) live.kill('SIGKILL');
    });
  }
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** JSON-RPC over newline-delimited stdio of a child this module spawned. */
class ChildProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  /** The start of a line whose end has not arrived yet. */
  private partial = '';
  private readonly queue: JSONRPCMessage[] = [];
  private corked = false;
  private delivering = false;
  private delivery: Promise<void> = Promise.resolve();

  constructor(private readonly child: ChildProcess) {}

  async start(): Promise<void> {
    const { stdout, stdin } = this.child;
    if (!stdout || !stdin) throw new Error('child has no stdio pipes');
    // Decoded as UTF-8 across chunk boundaries.
    stdout.setEncoding('utf8');
    stdout.on('data', (text: string) => this.receive(text));
    stdout.on('error', (error) => this.onerror?.(error));
    stdin.on('error', (error) => this.onerror?.(error));
    // Messages still queued are delivered before the close, so that a last
    // answer is not lost to "Connection closed".
    this.child.once('close', () => void this.delivery.then(() => this.onclose?.()));
  }

  private receive(text: string): void {
    const data = this.partial + text;
    let start = 0;
    for (let end = data.indexOf('\n'); end !== -1; end = data.indexOf('\n', start)) {
      const line = data.slice(start, data.charCodeAt(end - 1) === 13 ? end - 1 : end);
      start = end + 1;
      if (line.trim() === '') continue;
      // A line that is not JSON-RPC (a server logging to stdout) is reported and skipped.
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch (error) {
        this.onerror?.(asError(error));
        continue;
      }
      if (typeof message === 'object' && message !== null && (message as { jsonrpc?: unknown }).jsonrpc === '2.0') this.queue.push(message as JSONRPCMessage);
      else this.onerror?.(new Error(`not a JSON-RPC message: ${line.slice(0, 200)}`));
    }
    this.partial = start === 0 ? data : data.slice(start);
    if (this.queue.length > 0 && !this.delivering) this.delivery = this.deliver();
  }

  /**
   * Hands messages over in order, with a turn of the event loop after each
   * notification: the SDK's Protocol runs notification handlers a microtask
   * later but responses at once, so a progress notification followed by its
   * result in the same chunk would otherwise reach a request that was already
   * settled, and be dropped as "unknown token".
   */
  private async deliver(): Promise<void> {
    this.delivering = true;
    try {
      for (let message = this.queue.shift(); message !== undefined; message = this.queue.shift()) {
        this.onmessage?.(message);
        if ('method' in message && !('id' in message)) await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.delivering = false;
    }
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      const stdin = this.child.stdin;
      if (!stdin || stdin.destroyed || this.child.exitCode !== null) {
        reject(new Error('MCP server process is not running'));
        return;
      }
      // Held until the end of the event-loop turn: the messages of concurrent requests leave
      // in one write (one system call, one wake-up of the child) instead of one each.
      if (!this.corked) {
        this.corked = true;
        stdin.cork();
        setImmediate(() => {
          this.corked = false;
          stdin.uncork();
        });
      }
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once('drain', resolve);
    });
  }

  // Termination belongs to terminate() (signals, grace period); closing the
  // protocol only closes the child's stdin.
  async close(): Promise<void> {
    this.child.stdin?.end();
  }
}

/** Spawns the child; resolves once it runs, rejects when it cannot be spawned at all. */
export async function spawnStdioChild(options: SpawnOptions): Promise<StdioChild> {
  const child = await new Promise<ChildProcess>((resolve, reject) => {
    const spawned = spawn(options.command, options.args, {
      env: options.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    spawned.once('spawn', () => resolve(spawned));
    spawned.once('error', reject);
  });
  track(child);
  child.on('error', (error) => options.onError?.(error));

  let exited: ChildExit | null = null;
  let stopping = false;
  let stderrTail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderrTail = (stderrTail + text).slice(-STDERR_TAIL_CHARS);
  });
  const exit = new Promise<ChildExit>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
      options.onExit?.(exited);
    });
  });

  async function exitsWithin(ms: number): Promise<boolean> {
    if (exited) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const result = await Promise.race([exit.then(() => true as const), timeout]);
    clearTimeout(timer);
    return result;
  }

  return {
    pid: child.pid,
    exit,
    exited: () => exited,
    stderrTail: () => stderrTail,
    get stopping() {
      return stopping;
    },
    transport: new ChildProcessTransport(child),
    async terminate(gracefulTimeoutMs: number): Promise<void> {
      stopping = true;
      if (exited) return;
      child.stdin?.end();
      child.kill(gracefulTimeoutMs > 0 ? 'SIGTERM' : 'SIGKILL');
      if (await exitsWithin(gracefulTimeoutMs)) return;
      child.kill('SIGKILL');
      await exitsWithin(5000);
    },
    exitsWithin,
    describeExit(what: ChildExit): string {
      const how = what.signal ? `was killed by signal ${what.signal}` : `exited with code ${what.code ?? 'unknown'}`;
      const tail = stderrTail.trim();
      return tail ? `process ${how}; stderr: ${tail}` : `process ${how}`;
    },
  };
}
