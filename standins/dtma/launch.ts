/**
 * Starting one MCP server: resolve its npm image, spawn it with only the
 * environment it was given, initialize it over stdio and wait for a ping.
 * The process driver decides what the steps mean for the instance's status.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Notification } from '@modelcontextprotocol/sdk/types.js';
import type { ServerSpec } from './contract.js';
import { DriverError, errorMessage } from './driver.js';
import type { Upstream } from './mcp-relay.js';
import { resolveNpmImage, type ResolvedPackage } from './npm-image.js';
import { spawnStdioChild, type StdioChild } from './stdio-child.js';

/** A started child and the client that talks to it. */
export interface RunningChild {
  child: StdioChild;
  client: Client;
  /** What it answered to initialize; null until then. */
  upstream: Upstream | null;
  package: ResolvedPackage;
}

export interface LaunchSettings {
  packageRoot: string;
  cwd: string;
  /** Spawn to answered initialize. */
  startTimeoutMs: number;
  pingTimeoutMs: number;
}

/** What the driver hears while a server starts, and afterwards. */
export interface LaunchEvents {
  /** The image resolved: a process is about to start. */
  resolved(): void;
  /** The process runs (not yet initialized). */
  spawned(running: RunningChild): void;
  /** The process exited, at any time, for any reason. */
  exited(running: RunningChild): void;
  /** A notification of the server that belongs to no request. */
  notification(notification: Notification): void;
  log(line: string): void;
}

/** Resolves once the server answered initialize and a ping; throws DriverError('failed') with the reason otherwise. */
export async function launchServer(spec: ServerSpec, settings: LaunchSettings, events: LaunchEvents): Promise<RunningChild> {
  const override = spec.baseConfigOverrideJson;
  let resolved: ResolvedPackage;
  try {
    resolved = resolveNpmImage(spec.dockerImageUrl, settings.packageRoot, override.bin);
  } catch (error) {
    throw new DriverError('failed', errorMessage(error));
  }
  events.resolved();

  let running: RunningChild | undefined;
  let child: StdioChild;
  try {
    child = await spawnStdioChild({
      command: process.execPath,
      args: [resolved.binPath, ...(override.args ?? [])],
      // Only what the server was given: the DTMA's own environment (its
      // token first of all) never reaches a child.
      env: { ...getDefaultEnvironment(), ...override.env, ...spec.environmentVariables },
      cwd: settings.cwd,
      onExit: () => {
        if (running) events.exited(running);
      },
      onError: (error) => events.log(`process error: ${error.message}`),
    });
  } catch (error) {
    throw new DriverError('failed', `could not start ${resolved.packageName}: ${errorMessage(error)}`);
  }
  const client = new Client({ name: 'dtma-local', version: '1.0.0' }, { capabilities: {} });
  running = { child, client, upstream: null, package: resolved };
  events.spawned(running);
  // An exit between spawn and here was not reported yet.
  if (child.exited()) events.exited(running);

  client.onerror = (error) => events.log(`protocol error: ${error.message}`);
  client.fallbackNotificationHandler = async (notification) => events.notification(notification);
  try {
    await client.connect(child.transport, { timeout: settings.startTimeoutMs });
    running.upstream = {
      client,
      serverInfo: client.getServerVersion() ?? { name: spec.instanceNameOnToolbox, version: '0.0.0' },
      capabilities: client.getServerCapabilities() ?? {},
      instructions: client.getInstructions(),
    };
    // Usable only once a ping came back, so that a group is never reported
    // usable before it is.
    await client.ping({ timeout: settings.pingTimeoutMs });
    return running;
  } catch (error) {
    // The exit, when there is one, explains more than "Connection closed".
    const exit = (await child.exitsWithin(500)) ? child.exited() : null;
    const tail = child.stderrTail().trim();
    const message = exit ? child.describeExit(exit) : `MCP initialize failed: ${errorMessage(error)}${tail ? `; stderr: ${tail}` : ''}`;
    await child.terminate(2000);
    await client.close().catch(() => undefined);
    throw new DriverError('failed', message);
  }
}
