/**
 * The DTMA contract's routes (contract.ts; docs/ARCHITECTURE.md, "DTMA"):
 * each parses its input, asks the driver, and answers the contract's shape.
 * Authentication, the fault hooks and the MCP endpoints are the server's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  DeployGroupRequestSchema,
  RefreshCredentialsRequestSchema,
  RemoveGroupQuerySchema,
  describeZodError,
  type DeployGroupRequest,
  type DeployGroupResponse,
  type GroupHealthResponse,
  type RefreshCredentialsResponse,
  type RemoveGroupResponse,
  type RestartServerResponse,
  type ServerSpec,
  type StatusResponse,
} from './contract.js';
import { errorMessage, type Driver } from './driver.js';
import { HttpError, decodeParam, readJson, sendJson } from './http-util.js';

const DEFAULT_GRACEFUL_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONCURRENT_DEPLOYMENTS = 3;

/** A route parses its body first, so that the fault hooks see it, then runs with it typed. */
export interface Prepared {
  body: unknown;
  run: () => Promise<void>;
}

export interface Route {
  method: string;
  pattern: RegExp;
  prepare: (params: string[], req: IncomingMessage, res: ServerResponse, url: URL) => Promise<Prepared>;
}

function withoutBody(run: (params: string[], res: ServerResponse, url: URL) => Promise<void>): Route['prepare'] {
  return async (params, _req, res, url) => ({ body: undefined, run: () => run(params, res, url) });
}

/** Servers named in dependencyOrder first, in that order; the others after, as sent. */
export function ordered(servers: ServerSpec[], dependencyOrder: string[] | undefined): ServerSpec[] {
  if (!dependencyOrder?.length) return servers;
  const rank = (spec: ServerSpec): number => {
    const index = dependencyOrder.indexOf(spec.instanceNameOnToolbox);
    return index === -1 ? dependencyOrder.length : index;
  };
  return [...servers].sort((a, b) => rank(a) - rank(b));
}

/** Runs `work` over `items`, at most `limit` at a time, starting them in order. */
export async function runPool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Deploys each server of a request and gathers per-server outcomes; never throws. */
export async function deployGroup(driver: Driver, request: DeployGroupRequest): Promise<DeployGroupResponse> {
  const { groupId, servers, options } = request;
  // A dependency order means "one after the other"; without one, a bounded
  // number of servers start together.
  const limit = options.dependencyOrder?.length ? 1 : (options.maxConcurrentDeployments ?? DEFAULT_MAX_CONCURRENT_DEPLOYMENTS);
  const outcomes = new Map<string, string | null>();
  await runPool(ordered(servers, options.dependencyOrder), limit, async (spec) => {
    try {
      await driver.deployServer(groupId, spec, options);
      outcomes.set(spec.instanceNameOnToolbox, null);
    } catch (error) {
      outcomes.set(spec.instanceNameOnToolbox, errorMessage(error));
    }
  });
  const deployedServers = servers.map((spec) => spec.instanceNameOnToolbox).filter((name) => outcomes.get(name) === null);
  const errors: Record<string, string> = {};
  for (const [name, message] of outcomes) if (message !== null) errors[name] = message;
  const success = deployedServers.length > 0;
  return {
    success,
    message: `MCP group '${groupId}' deployment ${success ? 'completed' : 'failed'}: ${deployedServers.length}/${servers.length} servers deployed`,
    data: { groupId, deployedServers, errors, totalServers: servers.length, successfulDeployments: deployedServers.length },
  };
}

function statusResponse(driver: Driver): StatusResponse {
  const groups = driver.status();
  const all = Object.values(groups);
  const sum = (pick: (group: (typeof all)[number]) => number): number => all.reduce((total, group) => total + pick(group), 0);
  return {
    success: true,
    data: {
      summary: {
        totalGroups: all.length,
        totalServers: sum((group) => group.totalInstances),
        runningServers: sum((group) => group.runningInstances),
        healthyServers: sum((group) => group.healthyInstances),
        timestamp: new Date().toISOString(),
      },
      groups,
    },
  };
}

export function contractRoutes(driver: Driver, maxBodyBytes: number): Route[] {
  return [
    {
      method: 'POST',
      pattern: /^\/mcp\/groups$/,
      prepare: async (_params, req, res) => {
        const request = await readJson(req, DeployGroupRequestSchema, maxBodyBytes);
        return { body: request, run: async () => sendJson(res, 201, await deployGroup(driver, request)) };
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/mcp\/groups\/([^/]+)$/,
      prepare: withoutBody(async ([rawGroupId], res, url) => {
        const groupId = decodeParam(rawGroupId);
        const query = RemoveGroupQuerySchema.safeParse(Object.fromEntries(url.searchParams));
        if (!query.success) throw new HttpError(400, describeZodError(query.error));
        const result = await driver.removeGroup(groupId, {
          forceRemove: query.data.forceRemove,
          gracefulTimeoutMs: query.data.gracefulTimeoutMs ?? DEFAULT_GRACEFUL_TIMEOUT_MS,
        });
        const success = Object.keys(result.errors).length === 0;
        const body: RemoveGroupResponse = {
          success,
          message: `MCP group '${groupId}' removal ${success ? 'completed' : 'failed'}`,
          data: { groupId, removedServers: result.removedServers, errors: result.errors },
        };
        sendJson(res, 200, body);
      }),
    },
    {
      method: 'GET',
      pattern: /^\/mcp\/status$/,
      prepare: withoutBody(async (_params, res) => sendJson(res, 200, statusResponse(driver))),
    },
    {
      method: 'GET',
      pattern: /^\/mcp\/health\/([^/]+)$/,
      prepare: withoutBody(async ([rawGroupId], res) => {
        const groupId = decodeParam(rawGroupId);
        const health = driver.status()[groupId];
        if (!health) throw new HttpError(404, `MCP group '${groupId}' not found`);
        const body: GroupHealthResponse = { success: true, data: { groupId, health, timestamp: new Date().toISOString() } };
        sendJson(res, 200, body);
      }),
    },
    {
      method: 'POST',
      pattern: /^\/mcp\/servers\/([^/]+)\/restart$/,
      prepare: withoutBody(async ([rawName], res) => {
        const instanceName = decodeParam(rawName);
        const status = await driver.restartServer(instanceName);
        const body: RestartServerResponse = {
          success: true,
          message: `MCP server '${instanceName}' restarted`,
          data: { instanceName, status: status.status, containerId: status.containerId, restartCount: status.restartCount },
        };
        sendJson(res, 200, body);
      }),
    },
    {
      method: 'POST',
      pattern: /^\/mcp\/credentials\/refresh\/([^/]+)$/,
      prepare: async ([rawName], req, res) => {
        const instanceName = decodeParam(rawName);
        const request = await readJson(req, RefreshCredentialsRequestSchema, maxBodyBytes, {});
        const run = async (): Promise<void> => {
          const result = await driver.refreshCredentials(instanceName, request);
          const body: RefreshCredentialsResponse = {
            success: true,
            message: `credentials of MCP server '${instanceName}' ${result.restarted ? 'refreshed' : 'stored'}`,
            data: { instanceName, status: result.restarted ? 'refreshed' : 'stored', restarted: result.restarted, timestamp: new Date().toISOString() },
          };
          sendJson(res, 200, body);
        };
        return { body: request, run };
      },
    },
  ];
}
