/**
 * The default DTMA driver: each MCP server is an npm package run as a stdio
 * child process, bridged to Streamable HTTP with the official MCP SDK.
 *
 * Per instance: one child, one upstream SDK `Client` (one initialize), and one
 * SDK `Server` per HTTP session that relays requests to that client, so that
 * many MCP clients can each do their own initialize against one process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { AnySchema, SchemaOutput } from '@modelcontextprotocol/sdk/server/zod-compat.js';
import type { RequestHandlerExtra, RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  CompleteRequestSchema,
  CompleteResultSchema,
  EmptyResultSchema,
  GetPromptRequestSchema,
  GetPromptResultSchema,
  ListPromptsRequestSchema,
  ListPromptsResultSchema,
  ListResourcesRequestSchema,
  ListResourcesResultSchema,
  ListResourceTemplatesRequestSchema,
  ListResourceTemplatesResultSchema,
  ListToolsRequestSchema,
  ListToolsResultSchema,
  ReadResourceRequestSchema,
  ReadResourceResultSchema,
  ServerNotificationSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type ClientRequest,
  type Implementation,
  type JSONRPCMessage,
  type Notification,
  type ServerCapabilities,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import {
  GroupIdSchema,
  ServerSpecSchema,
  describeZodError,
  mcpEndpointPath,
  mcpEndpointUrl,
  type GroupOptions,
  type GroupStatus,
  type HealthStatus,
  type InstanceStatus,
  type InstanceStatusValue,
  type RefreshCredentialsRequest,
  type ServerSpec,
} from './contract.js';
import {
  DriverError,
  errorMessage,
  type DeployServerResult,
  type Driver,
  type DriverContext,
  type RefreshCredentialsResult,
  type RemoveGroupResult,
  type RemoveOptions,
} from './driver.js';

export interface ProcessDriverOptions {
  /** JSON file holding the desired groups; without it a restart forgets everything. */
  stateFile?: string;
  /** Directory whose node_modules holds the runnable packages (default: this repository). */
  packageRoot?: string;
  /** Working directory of the children (default: the OS temp directory). */
  cwd?: string;
  /** Spawn to answered initialize (default 20 s). */
  startTimeoutMs?: number;
  /** Period of the MCP ping that sets healthStatus (default 15 s). */
  healthIntervalMs?: number;
  /** A ping unanswered this long makes the server `unhealthy` (default 5 s). */
  pingTimeoutMs?: number;
  /** Upstream timeout of one relayed request, reset by progress (default 5 min). */
  requestTimeoutMs?: number;
  /** An HTTP session unused this long is closed (default 30 min). */
  sessionIdleMs?: number;
  /** SIGTERM-to-SIGKILL delay when a caller gives none (default 10 s). */
  defaultGracefulTimeoutMs?: number;
  log?: (line: string) => void;
}

const REPOSITORY_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const STDERR_TAIL_CHARS = 2000;

// ---------------------------------------------------------------- npm image resolution

// npm's own naming rules, minus the legacy upper-case names; a name that
// passes cannot climb out of node_modules.
const NPM_IMAGE = /^npm:((?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*)(?:@([A-Za-z0-9._+-]+))?$/;

const PackageJsonSchema = z.object({
  name: z.string(),
  version: z.string(),
  bin: z.union([z.string(), z.record(z.string(), z.string())]).optional(),
});

export interface ResolvedPackage {
  packageName: string;
  version: string;
  /** Absolute path of the bin script, run with this Node binary. */
  binPath: string;
}

/**
 * Maps `npm:<package>[@<version>]` to an installed bin. Never downloads: an
 * unpinned download at deploy time would run code nobody reviewed.
 */
export function resolveNpmImage(image: string, packageRoot: string = REPOSITORY_ROOT, binName?: string): ResolvedPackage {
  const match = NPM_IMAGE.exec(image);
  if (!match) {
    throw new DriverError('invalid', `unsupported image '${image}': the process driver runs 'npm:<package>' or 'npm:<package>@<version>'`);
  }
  const packageName = match[1] ?? '';
  const wantedVersion = match[2];
  const packageDir = path.join(packageRoot, 'node_modules', packageName);
  const manifestPath = path.join(packageDir, 'package.json');
  if (!existsSync(manifestPath)) {
    throw new DriverError(
      'invalid',
      `npm package '${packageName}' is not installed in ${path.join(packageRoot, 'node_modules')} (the DTMA never downloads at run time)`,
    );
  }
  const manifest = PackageJsonSchema.parse(JSON.parse(readFileSync(manifestPath, 'utf8')));
  if (wantedVersion !== undefined && wantedVersion !== 'latest' && wantedVersion !== manifest.version) {
    throw new DriverError('invalid', `npm package '${packageName}' is installed at version ${manifest.version}, not ${wantedVersion}`);
  }
  const binRelative = pickBin(manifest, binName);
  const binPath = path.resolve(packageDir, binRelative);
  if (!binPath.startsWith(packageDir + path.sep) || !existsSync(binPath)) {
    throw new DriverError('invalid', `npm package '${packageName}' declares bin '${binRelative}', which does not exist inside the package`);
  }
  return { packageName, version: manifest.version, binPath };
}

function pickBin(manifest: z.infer<typeof PackageJsonSchema>, binName: string | undefined): string {
  const bin = manifest.bin;
  if (bin === undefined) throw new DriverError('invalid', `npm package '${manifest.name}' has no bin to run`);
  if (typeof bin === 'string') return bin;
  const names = Object.keys(bin);
  const unscoped = manifest.name.replace(/^@[^/]+\//, '');
  const chosen =
    binName ?? (names.length === 1 ? names[0] : names.find((name) => name === unscoped) ?? names.find((name) => name.startsWith('mcp-server')));
  const target = chosen === undefined ? undefined : bin[chosen];
  if (target === undefined) {
    throw new DriverError(
      'invalid',
      `npm package '${manifest.name}' has bins ${names.join(', ')}: name one with baseConfigOverrideJson.bin`,
    );
  }
  return target;
}

// ---------------------------------------------------------------- child processes

interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
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

/**
 * stdio transport over a child the driver spawned itself. The SDK's
 * StdioClientTransport hides the exit code and signal (needed for
 * errorMessage) and stops on a fixed 2 s + 2 s schedule (we owe callers
 * gracefulTimeoutMs); framing and parsing stay the SDK's (ReadBuffer).
 */
class ChildProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private readonly buffer = new ReadBuffer();

  constructor(private readonly child: ChildProcess) {}

  async start(): Promise<void> {
    const { stdout, stdin } = this.child;
    if (!stdout || !stdin) throw new Error('child has no stdio pipes');
    stdout.on('data', (chunk: Buffer) => {
      try {
        this.buffer.append(chunk);
      } catch (error) {
        this.onerror?.(asError(error));
        return;
      }
      this.drain();
    });
    stdout.on('error', (error) => this.onerror?.(error));
    stdin.on('error', (error) => this.onerror?.(error));
    this.child.once('close', () => this.onclose?.());
  }

  private drain(): void {
    for (;;) {
      try {
        const message = this.buffer.readMessage();
        if (message === null) return;
        this.onmessage?.(message);
      } catch (error) {
        // A line that is not JSON-RPC (a server logging to stdout) is
        // reported and skipped; the buffer already moved past it.
        this.onerror?.(asError(error));
      }
    }
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      const stdin = this.child.stdin;
      if (!stdin || stdin.destroyed || this.child.exitCode !== null) {
        reject(new Error('MCP server process is not running'));
        return;
      }
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once('drain', resolve);
    });
  }

  // Termination belongs to the driver (signals, grace period); closing the
  // protocol only closes the child's stdin.
  async close(): Promise<void> {
    this.child.stdin?.end();
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function spawnChild(command: string, args: string[], env: Record<string, string>, cwd: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    child.once('spawn', () => resolve(child));
    child.once('error', reject);
  });
}

interface RunningChild {
  child: ChildProcess;
  client: Client;
  exit: Promise<ChildExit>;
  exited: ChildExit | null;
  stderrTail: string;
  /** Set before any intended stop, so the exit is not reported as a crash. */
  stopping: boolean;
  upstream: UpstreamInfo | null;
}

interface UpstreamInfo {
  serverInfo: Implementation;
  capabilities: ServerCapabilities;
  instructions: string | undefined;
}

function describeExit(exit: ChildExit, stderrTail: string): string {
  const how = exit.signal ? `was killed by signal ${exit.signal}` : `exited with code ${exit.code ?? 'unknown'}`;
  const tail = stderrTail.trim();
  return tail ? `process ${how}; stderr: ${tail}` : `process ${how}`;
}

async function terminate(running: RunningChild, gracefulTimeoutMs: number): Promise<void> {
  running.stopping = true;
  if (running.exited) return;
  running.child.stdin?.end();
  running.child.kill(gracefulTimeoutMs > 0 ? 'SIGTERM' : 'SIGKILL');
  if (await exitsWithin(running, gracefulTimeoutMs)) return;
  running.child.kill('SIGKILL');
  await exitsWithin(running, 5000);
}

async function exitsWithin(running: RunningChild, ms: number): Promise<boolean> {
  if (running.exited) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const exited = await Promise.race([running.exit.then(() => true as const), timeout]);
  clearTimeout(timer);
  return exited;
}

// ---------------------------------------------------------------- instances and sessions

interface Session {
  transport: StreamableHTTPServerTransport;
  server: Server;
  lastSeen: number;
}

interface Instance {
  readonly name: string;
  readonly groupId: string;
  spec: ServerSpec;
  status: InstanceStatusValue;
  health: HealthStatus;
  containerId: string | null;
  startTime: Date | null;
  lastRestartTime: Date | null;
  lastHealthCheck: Date | null;
  errorMessage: string | null;
  launches: number;
  running: RunningChild | null;
  /** Lifecycle operations of one instance run one after another. */
  lock: Promise<unknown>;
  removed: boolean;
  sessions: Map<string, Session>;
}

interface Group {
  sharedNetworking: boolean;
  names: string[];
}

function withLock<T>(instance: Instance, operation: () => Promise<T>): Promise<T> {
  const run = instance.lock.then(operation, operation);
  instance.lock = run.catch(() => undefined);
  return run;
}

// The capabilities a relay can honour. `tasks` and `experimental` are dropped:
// relaying them needs per-session state the upstream server cannot see.
function relayedCapabilities(upstream: ServerCapabilities): ServerCapabilities {
  const { logging, completions, prompts, resources, tools } = upstream;
  return {
    ...(logging ? { logging } : {}),
    ...(completions ? { completions } : {}),
    ...(prompts ? { prompts } : {}),
    ...(resources ? { resources } : {}),
    ...(tools ? { tools } : {}),
  };
}

type RelayExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function isoOrNull(date: Date | null): string | null {
  return date ? date.toISOString() : null;
}

function replyJsonRpcError(res: ServerResponse, httpStatus: number, code: number, message: string): void {
  if (res.headersSent) return;
  res.writeHead(httpStatus, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

// ---------------------------------------------------------------- persisted state

const StateFileSchema = z.object({
  version: z.literal(1),
  groups: z.record(
    GroupIdSchema,
    z.object({
      sharedNetworking: z.boolean(),
      servers: z.array(ServerSpecSchema),
    }),
  ),
});
type StateFile = z.infer<typeof StateFileSchema>;

// Temp file + fsync + rename: a crash leaves the old file or the new one,
// never half of one. Mode 0600 because environmentVariables carry secrets.
async function writeFileAtomic(file: string, contents: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.${randomUUID()}.tmp`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(contents);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

async function readState(file: string): Promise<StateFile | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return null;
    throw error;
  }
  // Refusing to start beats starting empty: forgetting groups is the bug
  // this state file exists to fix.
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`state file ${file} is not valid JSON: ${errorMessage(error)}`);
  }
  const parsed = StateFileSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`state file ${file} is not valid: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

// ---------------------------------------------------------------- the driver

export function createProcessDriver(options: ProcessDriverOptions = {}): Driver {
  const packageRoot = options.packageRoot ?? REPOSITORY_ROOT;
  const cwd = options.cwd ?? os.tmpdir();
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const healthIntervalMs = options.healthIntervalMs ?? 15_000;
  const pingTimeoutMs = options.pingTimeoutMs ?? 5000;
  const requestTimeoutMs = options.requestTimeoutMs ?? 300_000;
  const sessionIdleMs = options.sessionIdleMs ?? 30 * 60_000;
  const defaultGracefulTimeoutMs = options.defaultGracefulTimeoutMs ?? 10_000;
  const log = options.log ?? (() => undefined);

  const groups = new Map<string, Group>();
  const instances = new Map<string, Instance>();
  const children = new Set<RunningChild>();
  const background = new Set<Promise<unknown>>();
  const timers: NodeJS.Timeout[] = [];
  let baseUrl: string | null = null;
  let closed = false;
  let stateWrites: Promise<void> = Promise.resolve();

  function persist(): Promise<void> {
    const file = options.stateFile;
    if (!file) return Promise.resolve();
    const write = async (): Promise<void> => {
      const state: StateFile = { version: 1, groups: {} };
      for (const [groupId, group] of groups) {
        const servers = group.names.flatMap((name) => {
          const instance = instances.get(name);
          return instance ? [instance.spec] : [];
        });
        state.groups[groupId] = { sharedNetworking: group.sharedNetworking, servers };
      }
      await writeFileAtomic(file, `${JSON.stringify(state, null, 2)}\n`);
    };
    // Chained so that renames land in call order; each write snapshots the
    // latest state, so the last one always wins.
    stateWrites = stateWrites.then(write, write);
    return stateWrites;
  }

  function runInBackground(promise: Promise<unknown>): void {
    const settled = promise.catch(() => undefined);
    background.add(settled);
    void settled.finally(() => background.delete(settled));
  }

  function register(groupId: string, spec: ServerSpec, sharedNetworking: boolean): Instance {
    const instance: Instance = {
      name: spec.instanceNameOnToolbox,
      groupId,
      spec,
      status: 'pending',
      health: 'unknown',
      containerId: null,
      startTime: null,
      lastRestartTime: null,
      lastHealthCheck: null,
      errorMessage: null,
      launches: 0,
      running: null,
      lock: Promise.resolve(),
      removed: false,
      sessions: new Map(),
    };
    const group = groups.get(groupId) ?? { sharedNetworking, names: [] };
    group.names.push(instance.name);
    groups.set(groupId, group);
    instances.set(instance.name, instance);
    return instance;
  }

  function fail(instance: Instance, message: string): never {
    instance.status = 'error';
    instance.health = 'unhealthy';
    instance.errorMessage = message;
    log(`[process] ${instance.name} failed: ${message}`);
    throw new DriverError('failed', message);
  }

  /** Spawns the child, initializes it and pings it; call under the instance lock. */
  async function launch(instance: Instance): Promise<void> {
    if (closed) throw new DriverError('failed', 'the DTMA is shutting down');
    instance.launches += 1;
    if (instance.launches > 1) instance.lastRestartTime = new Date();
    instance.status = 'pulling';
    instance.health = 'unknown';
    instance.errorMessage = null;
    instance.containerId = null;
    instance.startTime = null;

    const spec = instance.spec;
    const override = spec.baseConfigOverrideJson;
    let resolved: ResolvedPackage;
    try {
      resolved = resolveNpmImage(spec.dockerImageUrl, packageRoot, override.bin);
    } catch (error) {
      return fail(instance, errorMessage(error));
    }

    instance.status = 'starting';
    // Only what the server was given: the DTMA's own environment (its token
    // first of all) never reaches a child.
    const env: Record<string, string> = { ...getDefaultEnvironment(), ...override.env, ...spec.environmentVariables };
    let child: ChildProcess;
    try {
      child = await spawnChild(process.execPath, [resolved.binPath, ...(override.args ?? [])], env, cwd);
    } catch (error) {
      return fail(instance, `could not start ${resolved.packageName}: ${errorMessage(error)}`);
    }
    track(child);
    // Without a listener, a failed kill() (EPERM) would crash the DTMA.
    child.on('error', (error) => log(`[process] ${instance.name} process error: ${error.message}`));

    const client = new Client({ name: 'dtma-local', version: '1.0.0' }, { capabilities: {} });
    let resolveExit: (exit: ChildExit) => void = () => undefined;
    const running: RunningChild = {
      child,
      client,
      exit: new Promise((resolve) => {
        resolveExit = resolve;
      }),
      exited: null,
      stderrTail: '',
      stopping: false,
      upstream: null,
    };
    children.add(running);
    instance.running = running;
    instance.containerId = `proc-${child.pid ?? 'unknown'}`;
    instance.startTime = new Date();

    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      running.stderrTail = (running.stderrTail + text).slice(-STDERR_TAIL_CHARS);
    });
    child.once('exit', (code, signal) => {
      running.exited = { code, signal };
      children.delete(running);
      resolveExit(running.exited);
      if (!running.stopping && instance.running === running) {
        // A crash stays visible as `error` until someone restarts or removes
        // the server; restarting it silently would hide a broken server.
        instance.running = null;
        instance.status = 'error';
        instance.health = 'unhealthy';
        instance.errorMessage = describeExit(running.exited, running.stderrTail);
        log(`[process] ${instance.name} (${instance.containerId}) ${instance.errorMessage}`);
      }
    });

    client.onerror = (error) => log(`[process] ${instance.name} protocol error: ${error.message}`);
    client.fallbackNotificationHandler = async (notification) => broadcast(instance, notification);

    try {
      await client.connect(new ChildProcessTransport(child), { timeout: startTimeoutMs });
      running.upstream = {
        serverInfo: client.getServerVersion() ?? { name: instance.name, version: '0.0.0' },
        capabilities: client.getServerCapabilities() ?? {},
        instructions: client.getInstructions(),
      };
      // `running` only once a ping came back, so that a group is never
      // reported usable before it is.
      await client.ping({ timeout: pingTimeoutMs });
      instance.status = 'running';
      instance.health = 'healthy';
      instance.lastHealthCheck = new Date();
    } catch (error) {
      // The exit, when there is one, explains more than "Connection closed".
      const exited = (await exitsWithin(running, 500)) ? running.exited : null;
      const message = exited
        ? describeExit(exited, running.stderrTail)
        : `MCP initialize failed: ${errorMessage(error)}${running.stderrTail.trim() ? `; stderr: ${running.stderrTail.trim()}` : ''}`;
      await terminate(running, 2000);
      await client.close().catch(() => undefined);
      if (instance.running === running) instance.running = null;
      return fail(instance, message);
    }
    log(`[process] ${instance.name} running ${resolved.packageName}@${resolved.version} as ${instance.containerId}`);
  }

  /** Stops the child, if any; call under the instance lock. */
  async function stop(instance: Instance, gracefulTimeoutMs: number): Promise<void> {
    const running = instance.running;
    if (!running) return;
    instance.status = 'stopping';
    await terminate(running, gracefulTimeoutMs);
    await running.client.close().catch(() => undefined);
    if (instance.running === running) instance.running = null;
    instance.status = 'stopped';
    instance.health = 'unknown';
  }

  function broadcast(instance: Instance, notification: Notification): void {
    const parsed = ServerNotificationSchema.safeParse(notification);
    if (!parsed.success) return;
    for (const session of instance.sessions.values()) {
      session.server.notification(parsed.data).catch(() => undefined);
    }
  }

  async function closeSessions(instance: Instance): Promise<void> {
    const sessions = [...instance.sessions.values()];
    instance.sessions.clear();
    await Promise.allSettled(sessions.map((session) => session.server.close()));
  }

  /** Relays one request of an HTTP session to the instance's current child. */
  async function relay<S extends AnySchema>(
    instance: Instance,
    request: ClientRequest,
    extra: RelayExtra,
    resultSchema: S,
  ): Promise<SchemaOutput<S>> {
    const running = instance.running;
    if (!running?.upstream || instance.status !== 'running') {
      throw new Error(`MCP server '${instance.name}' is not running (status: ${instance.status})`);
    }
    const progressToken = request.params?._meta?.progressToken;
    const options: RequestOptions = { signal: extra.signal, timeout: requestTimeoutMs, resetTimeoutOnProgress: true };
    if (progressToken !== undefined) {
      // The child gets a token of the relay's own; its progress is re-sent
      // under the token this session's client chose.
      options.onprogress = (progress) => {
        void extra.sendNotification({ method: 'notifications/progress', params: { ...progress, progressToken } }).catch(() => undefined);
      };
    }
    return running.client.request(request, resultSchema, options);
  }

  function createRelayServer(instance: Instance, upstream: UpstreamInfo): Server {
    const capabilities = relayedCapabilities(upstream.capabilities);
    const server = new Server(upstream.serverInfo, {
      capabilities,
      ...(upstream.instructions === undefined ? {} : { instructions: upstream.instructions }),
    });
    if (capabilities.tools) {
      server.setRequestHandler(ListToolsRequestSchema, (request, extra) => relay(instance, request, extra, ListToolsResultSchema));
      server.setRequestHandler(CallToolRequestSchema, (request, extra) => relay(instance, request, extra, CallToolResultSchema));
    }
    if (capabilities.resources) {
      server.setRequestHandler(ListResourcesRequestSchema, (request, extra) => relay(instance, request, extra, ListResourcesResultSchema));
      server.setRequestHandler(ListResourceTemplatesRequestSchema, (request, extra) =>
        relay(instance, request, extra, ListResourceTemplatesResultSchema),
      );
      server.setRequestHandler(ReadResourceRequestSchema, (request, extra) => relay(instance, request, extra, ReadResourceResultSchema));
      if (capabilities.resources.subscribe) {
        server.setRequestHandler(SubscribeRequestSchema, (request, extra) => relay(instance, request, extra, EmptyResultSchema));
        server.setRequestHandler(UnsubscribeRequestSchema, (request, extra) => relay(instance, request, extra, EmptyResultSchema));
      }
    }
    if (capabilities.prompts) {
      server.setRequestHandler(ListPromptsRequestSchema, (request, extra) => relay(instance, request, extra, ListPromptsResultSchema));
      server.setRequestHandler(GetPromptRequestSchema, (request, extra) => relay(instance, request, extra, GetPromptResultSchema));
    }
    if (capabilities.completions) {
      server.setRequestHandler(CompleteRequestSchema, (request, extra) => relay(instance, request, extra, CompleteResultSchema));
    }
    if (capabilities.logging) {
      // One process serves every session: the last level set wins for all.
      server.setRequestHandler(SetLevelRequestSchema, (request, extra) => relay(instance, request, extra, EmptyResultSchema));
    }
    return server;
  }

  function instanceStatus(instance: Instance): InstanceStatus {
    return {
      accountToolInstanceId: instance.spec.accountToolInstanceId,
      status: instance.status,
      healthStatus: instance.health,
      containerId: instance.containerId,
      startTime: isoOrNull(instance.startTime),
      restartCount: Math.max(0, instance.launches - 1),
      lastRestartTime: isoOrNull(instance.lastRestartTime),
      lastHealthCheck: isoOrNull(instance.lastHealthCheck),
      errorMessage: instance.errorMessage,
      mcpEndpoint: baseUrl ? mcpEndpointUrl(baseUrl, instance.name) : mcpEndpointPath(instance.name),
      transportType: 'streamable_http',
    };
  }

  function groupStatus(group: Group): GroupStatus {
    const members = group.names.flatMap((name) => {
      const instance = instances.get(name);
      return instance ? [instance] : [];
    });
    const running = members.filter((instance) => instance.status === 'running');
    const healthy = running.filter((instance) => instance.health === 'healthy');
    // As the old DTMA: `failed` means nothing in the group is usable, even
    // when a process is still alive but no longer answers.
    const collectiveStatus: GroupStatus['collectiveStatus'] = members.some((instance) =>
      ['pending', 'pulling', 'starting'].includes(instance.status),
    )
      ? 'initializing'
      : members.length > 0 && healthy.length === members.length
        ? 'healthy'
        : healthy.length > 0
          ? 'degraded'
          : 'failed';
    return {
      collectiveStatus,
      totalInstances: members.length,
      runningInstances: running.length,
      healthyInstances: healthy.length,
      sharedNetworking: group.sharedNetworking,
      instances: Object.fromEntries(members.map((instance) => [instance.name, instanceStatus(instance)])),
    };
  }

  async function checkHealth(): Promise<void> {
    await Promise.allSettled(
      [...instances.values()].map(async (instance) => {
        const running = instance.running;
        if (!running || instance.status !== 'running') return;
        let health: HealthStatus;
        try {
          await running.client.ping({ timeout: pingTimeoutMs });
          health = 'healthy';
        } catch {
          health = 'unhealthy';
        }
        // The child may have been replaced while the ping was in flight.
        if (instance.running === running && instance.status === 'running') {
          instance.health = health;
          instance.lastHealthCheck = new Date();
        }
      }),
    );
  }

  async function closeIdleSessions(): Promise<void> {
    const cutoff = Date.now() - sessionIdleMs;
    for (const instance of instances.values()) {
      for (const [id, session] of instance.sessions) {
        if (session.lastSeen < cutoff) {
          instance.sessions.delete(id);
          await session.server.close().catch(() => undefined);
        }
      }
    }
  }

  function lookup(instanceName: string): Instance {
    const instance = instances.get(instanceName);
    if (!instance) throw new DriverError('not_found', `MCP server '${instanceName}' not found`);
    return instance;
  }

  return {
    name: 'process',

    async start(context: DriverContext): Promise<void> {
      baseUrl = context.baseUrl;
      const healthTimer = setInterval(() => void checkHealth(), healthIntervalMs);
      const sweepTimer = setInterval(() => void closeIdleSessions(), Math.min(60_000, sessionIdleMs));
      healthTimer.unref();
      sweepTimer.unref();
      timers.push(healthTimer, sweepTimer);

      if (!options.stateFile) return;
      const state = await readState(options.stateFile);
      if (!state) return;
      for (const [groupId, saved] of Object.entries(state.groups)) {
        for (const spec of saved.servers) {
          if (instances.has(spec.instanceNameOnToolbox)) continue;
          const instance = register(groupId, spec, saved.sharedNetworking);
          // Restored groups show up at once as `pending`; the children start
          // in the background so the DTMA answers status while they do.
          runInBackground(withLock(instance, () => launch(instance)));
        }
      }
      log(`[process] restored ${instances.size} server(s) in ${groups.size} group(s) from ${options.stateFile}`);
    },

    async deployServer(groupId: string, spec: ServerSpec, groupOptions: GroupOptions): Promise<DeployServerResult> {
      const name = spec.instanceNameOnToolbox;
      const existing = instances.get(name);
      if (existing && existing.groupId !== groupId) {
        throw new DriverError('conflict', `instance name '${name}' is already deployed in group '${existing.groupId}'`);
      }
      const instance = existing ?? register(groupId, spec, groupOptions.sharedNetworking ?? false);
      return withLock(instance, async () => {
        if (instance.removed) throw new DriverError('failed', `group '${groupId}' was removed while '${name}' was deploying`);
        const sameSpec = canonicalJson(instance.spec) === canonicalJson(spec);
        if (existing && sameSpec && instance.running && instance.status === 'running') {
          return { alreadyDeployed: true };
        }
        instance.spec = spec;
        await persist();
        await stop(instance, defaultGracefulTimeoutMs);
        await launch(instance);
        return { alreadyDeployed: false };
      });
    },

    async removeGroup(groupId: string, removeOptions: RemoveOptions): Promise<RemoveGroupResult> {
      const group = groups.get(groupId);
      if (!group) throw new DriverError('not_found', `MCP group '${groupId}' not found`);
      // Forgotten first and persisted, so that a crash during the stops
      // cannot bring the group back on the next start.
      groups.delete(groupId);
      const members = group.names.flatMap((name) => {
        const instance = instances.get(name);
        return instance ? [instance] : [];
      });
      for (const instance of members) {
        instance.removed = true;
        instances.delete(instance.name);
      }
      await persist();
      const removedServers: string[] = [];
      const errors: Record<string, string> = {};
      const grace = removeOptions.forceRemove ? 0 : removeOptions.gracefulTimeoutMs;
      await Promise.all(
        members.map(async (instance) => {
          try {
            await closeSessions(instance);
            // Killed outside the lock: a launch that is still waiting for
            // initialize would otherwise hold the removal for startTimeoutMs.
            if (instance.running) await terminate(instance.running, grace);
            await withLock(instance, () => stop(instance, grace));
            removedServers.push(instance.name);
          } catch (error) {
            errors[instance.name] = errorMessage(error);
          }
        }),
      );
      log(`[process] removed group ${groupId} (${removedServers.join(', ') || 'no servers'})`);
      return { removedServers, errors };
    },

    async restartServer(instanceName: string): Promise<InstanceStatus> {
      const instance = lookup(instanceName);
      return withLock(instance, async () => {
        if (instance.removed) throw new DriverError('not_found', `MCP server '${instanceName}' not found`);
        await stop(instance, defaultGracefulTimeoutMs);
        await launch(instance);
        return instanceStatus(instance);
      });
    },

    async refreshCredentials(instanceName: string, request: RefreshCredentialsRequest): Promise<RefreshCredentialsResult> {
      const instance = lookup(instanceName);
      return withLock(instance, async () => {
        if (instance.removed) throw new DriverError('not_found', `MCP server '${instanceName}' not found`);
        if (request.environmentVariables) {
          instance.spec = {
            ...instance.spec,
            environmentVariables: { ...instance.spec.environmentVariables, ...request.environmentVariables },
          };
          await persist();
        }
        if (!request.restart) return { restarted: false };
        await stop(instance, defaultGracefulTimeoutMs);
        await launch(instance);
        return { restarted: true };
      });
    },

    status(): Record<string, GroupStatus> {
      return Object.fromEntries([...groups].map(([groupId, group]) => [groupId, groupStatus(group)]));
    },

    async handleMcpRequest(instanceName: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
      const instance = instances.get(instanceName);
      if (!instance) {
        replyJsonRpcError(res, 404, -32601, `MCP server '${instanceName}' not found`);
        return;
      }
      const sessionHeader = req.headers['mcp-session-id'];
      const sessionId = Array.isArray(sessionHeader) ? sessionHeader[0] : sessionHeader;
      if (sessionId !== undefined) {
        const session = instance.sessions.get(sessionId);
        if (!session) {
          // 404 tells a conforming client to start a new session.
          replyJsonRpcError(res, 404, -32001, 'Session not found');
          return;
        }
        session.lastSeen = Date.now();
        await session.transport.handleRequest(req, res);
        return;
      }
      if (req.method !== 'POST') {
        replyJsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
        return;
      }
      const upstream = instance.running?.upstream;
      if (!upstream || instance.status !== 'running') {
        replyJsonRpcError(res, 503, -32000, `MCP server '${instanceName}' is not running (status: ${instance.status})`);
        return;
      }
      const server = createRelayServer(instance, upstream);
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          instance.sessions.set(id, { transport, server, lastSeen: Date.now() });
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) instance.sessions.delete(transport.sessionId);
      };
      await server.connect(transport);
      await transport.handleRequest(req, res);
      // Anything but an initialize was refused by the transport: no session to keep.
      if (!transport.sessionId) await server.close();
    },

    async close(): Promise<void> {
      closed = true;
      for (const timer of timers) clearInterval(timer);
      await Promise.allSettled([...instances.values()].map((instance) => closeSessions(instance)));
      await Promise.allSettled([...children].map((running) => terminate(running, 2000)));
      await Promise.allSettled([...background]);
      // Children spawned by launches that were already past the `closed` check.
      await Promise.allSettled([...children].map((running) => terminate(running, 0)));
      await stateWrites.catch(() => undefined);
    },
  };
}
