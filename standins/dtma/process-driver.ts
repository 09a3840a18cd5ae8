/**
 * The default DTMA driver: each MCP server is an npm package (npm-image.ts)
 * run as a stdio child process (stdio-child.ts, launch.ts), reached through one upstream
 * SDK `Client` (one initialize) and served over Streamable HTTP by a relay
 * (mcp-relay.ts); the desired groups survive restarts in a state file
 * (state-file.ts). This file holds the lifecycle: deploy, restart, remove,
 * health, and the order of operations on one instance.
 */
import os from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GroupOptions, GroupStatus, InstanceStatus, RefreshCredentialsRequest, ServerSpec } from './contract.js';
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
import { launchServer, type LaunchSettings, type RunningChild } from './launch.js';
import { createMcpRelay, replyJsonRpcError, type McpRelay } from './mcp-relay.js';
import { REPOSITORY_ROOT } from './npm-image.js';
import { createStateWriter, readState, type StateFile } from './state-file.js';
import { groupStatus, instanceStatus, type InstanceView } from './status-report.js';
import type { StdioChild } from './stdio-child.js';

export { resolveNpmImage, type ResolvedPackage } from './npm-image.js';

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

interface Instance extends InstanceView {
  readonly groupId: string;
  spec: ServerSpec;
  running: RunningChild | null;
  /** Lifecycle operations of one instance run one after another. */
  lock: Promise<unknown>;
  removed: boolean;
  readonly relay: McpRelay;
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

/** Key order does not matter: the same spec sent twice is the same deployment. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function createProcessDriver(options: ProcessDriverOptions = {}): Driver {
  const settings: LaunchSettings = {
    packageRoot: options.packageRoot ?? REPOSITORY_ROOT,
    cwd: options.cwd ?? os.tmpdir(),
    startTimeoutMs: options.startTimeoutMs ?? 20_000,
    pingTimeoutMs: options.pingTimeoutMs ?? 5000,
  };
  const healthIntervalMs = options.healthIntervalMs ?? 15_000;
  const { pingTimeoutMs } = settings;
  const requestTimeoutMs = options.requestTimeoutMs ?? 300_000;
  const sessionIdleMs = options.sessionIdleMs ?? 30 * 60_000;
  const defaultGracefulTimeoutMs = options.defaultGracefulTimeoutMs ?? 10_000;
  const log = options.log ?? (() => undefined);

  const groups = new Map<string, Group>();
  const instances = new Map<string, Instance>();
  const children = new Set<StdioChild>();
  const background = new Set<Promise<unknown>>();
  const timers: NodeJS.Timeout[] = [];
  let baseUrl: string | null = null;
  let closed = false;

  const state = createStateWriter(options.stateFile, (): StateFile => {
    const snapshot: StateFile = { version: 1, groups: {} };
    for (const [groupId, group] of groups) {
      snapshot.groups[groupId] = { sharedNetworking: group.sharedNetworking, servers: membersOf(group).map((instance) => instance.spec) };
    }
    return snapshot;
  });

  function membersOf(group: Group): Instance[] {
    return group.names.flatMap((name) => {
      const instance = instances.get(name);
      return instance ? [instance] : [];
    });
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
      relay: createMcpRelay({
        requestTimeoutMs,
        upstream: () =>
          instance.running?.upstream && instance.status === 'running'
            ? instance.running.upstream
            : `MCP server '${instance.name}' is not running (status: ${instance.status})`,
      }),
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

  /** A crash stays visible as `error` until someone restarts or removes the server: restarting it silently would hide a broken server. */
  function onChildExit(instance: Instance, running: RunningChild): void {
    children.delete(running.child);
    const exit = running.child.exited();
    if (!exit || running.child.stopping || instance.running !== running) return;
    instance.running = null;
    instance.status = 'error';
    instance.health = 'unhealthy';
    instance.errorMessage = running.child.describeExit(exit);
    log(`[process] ${instance.name} (${instance.containerId}) ${instance.errorMessage}`);
  }

  /** Starts the instance's server; call under the instance lock. */
  async function launch(instance: Instance): Promise<void> {
    if (closed) throw new DriverError('failed', 'the DTMA is shutting down');
    instance.launches += 1;
    if (instance.launches > 1) instance.lastRestartTime = new Date();
    instance.status = 'pulling';
    instance.health = 'unknown';
    instance.errorMessage = null;
    instance.containerId = null;
    instance.startTime = null;
    let started: RunningChild | undefined;
    try {
      const running = await launchServer(instance.spec, settings, {
        resolved: () => {
          instance.status = 'starting';
        },
        spawned: (spawned) => {
          started = spawned;
          children.add(spawned.child);
          instance.running = spawned;
          instance.containerId = `proc-${spawned.child.pid ?? 'unknown'}`;
          instance.startTime = new Date();
        },
        exited: (exited) => onChildExit(instance, exited),
        notification: (notification) => instance.relay.broadcast(notification),
        log: (line) => log(`[process] ${instance.name} ${line}`),
      });
      instance.status = 'running';
      instance.health = 'healthy';
      instance.lastHealthCheck = new Date();
      log(`[process] ${instance.name} running ${running.package.packageName}@${running.package.version} as ${instance.containerId}`);
    } catch (error) {
      if (started && instance.running === started) instance.running = null;
      return fail(instance, errorMessage(error));
    }
  }

  /** Stops the child, if any; call under the instance lock. */
  async function stop(instance: Instance, gracefulTimeoutMs: number): Promise<void> {
    const running = instance.running;
    if (!running) return;
    instance.status = 'stopping';
    await running.child.terminate(gracefulTimeoutMs);
    await running.client.close().catch(() => undefined);
    if (instance.running === running) instance.running = null;
    instance.status = 'stopped';
    instance.health = 'unknown';
  }

  /** Stop then launch, under the lock; for a re-deploy, a restart and new credentials. */
  async function relaunch(instance: Instance): Promise<void> {
    await stop(instance, defaultGracefulTimeoutMs);
    await launch(instance);
  }

  async function checkHealth(): Promise<void> {
    await Promise.allSettled(
      [...instances.values()].map(async (instance) => {
        const running = instance.running;
        if (!running || instance.status !== 'running') return;
        let health: InstanceView['health'];
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

  /** The instance of a live name, for the routes that name one. */
  function lookup(instanceName: string): Instance {
    const instance = instances.get(instanceName);
    if (!instance || instance.removed) throw new DriverError('not_found', `MCP server '${instanceName}' not found`);
    return instance;
  }

  /** Runs `operation` under the instance's lock, refusing once the instance was removed meanwhile. */
  function underLock<T>(instanceName: string, operation: (instance: Instance) => Promise<T>): Promise<T> {
    const instance = lookup(instanceName);
    return withLock(instance, async () => {
      if (instance.removed) throw new DriverError('not_found', `MCP server '${instanceName}' not found`);
      return operation(instance);
    });
  }

  return {
    name: 'process',

    async start(context: DriverContext): Promise<void> {
      baseUrl = context.baseUrl;
      const healthTimer = setInterval(() => void checkHealth(), healthIntervalMs);
      const sweepTimer = setInterval(() => {
        const cutoff = Date.now() - sessionIdleMs;
        for (const instance of instances.values()) void instance.relay.closeIdleSessions(cutoff);
      }, Math.min(60_000, sessionIdleMs));
      healthTimer.unref();
      sweepTimer.unref();
      timers.push(healthTimer, sweepTimer);

      if (!options.stateFile) return;
      const saved = await readState(options.stateFile);
      if (!saved) return;
      for (const [groupId, group] of Object.entries(saved.groups)) {
        for (const spec of group.servers) {
          if (instances.has(spec.instanceNameOnToolbox)) continue;
          const instance = register(groupId, spec, group.sharedNetworking);
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
        await state.save();
        await relaunch(instance);
        return { alreadyDeployed: false };
      });
    },

    async removeGroup(groupId: string, removeOptions: RemoveOptions): Promise<RemoveGroupResult> {
      const group = groups.get(groupId);
      if (!group) throw new DriverError('not_found', `MCP group '${groupId}' not found`);
      // Forgotten first and persisted, so that a crash during the stops
      // cannot bring the group back on the next start.
      const members = membersOf(group);
      groups.delete(groupId);
      for (const instance of members) {
        instance.removed = true;
        instances.delete(instance.name);
      }
      await state.save();
      const removedServers: string[] = [];
      const errors: Record<string, string> = {};
      const grace = removeOptions.forceRemove ? 0 : removeOptions.gracefulTimeoutMs;
      await Promise.all(
        members.map(async (instance) => {
          try {
            await instance.relay.closeSessions();
            // Killed outside the lock: a launch that is still waiting for
            // initialize would otherwise hold the removal for startTimeoutMs.
            if (instance.running) await instance.running.child.terminate(grace);
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

    restartServer(instanceName: string): Promise<InstanceStatus> {
      return underLock(instanceName, async (instance) => {
        await relaunch(instance);
        return instanceStatus(instance, baseUrl);
      });
    },

    refreshCredentials(instanceName: string, request: RefreshCredentialsRequest): Promise<RefreshCredentialsResult> {
      return underLock(instanceName, async (instance) => {
        if (request.environmentVariables) {
          instance.spec = { ...instance.spec, environmentVariables: { ...instance.spec.environmentVariables, ...request.environmentVariables } };
          await state.save();
        }
        if (!request.restart) return { restarted: false };
        await relaunch(instance);
        return { restarted: true };
      });
    },

    status(): Record<string, GroupStatus> {
      return Object.fromEntries([...groups].map(([groupId, group]) => [groupId, groupStatus(membersOf(group), group.sharedNetworking, baseUrl)]));
    },

    async handleMcpRequest(instanceName: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
      const instance = instances.get(instanceName);
      if (!instance) {
        replyJsonRpcError(res, 404, -32601, `MCP server '${instanceName}' not found`);
        return;
      }
      await instance.relay.handle(req, res);
    },

    async close(): Promise<void> {
      closed = true;
      for (const timer of timers) clearInterval(timer);
      await Promise.allSettled([...instances.values()].map((instance) => instance.relay.closeSessions()));
      await Promise.allSettled([...children].map((child) => child.terminate(2000)));
      await Promise.allSettled([...background]);
      // Children spawned by launches that were already past the `closed` check.
      await Promise.allSettled([...children].map((child) => child.terminate(0)));
      await state.settled();
    },
  };
}
