/**
 * How the process driver reports its instances and groups in `GET /mcp/status`
 * (contract.ts): pure functions of what the driver knows, so that the rules
 * (restartCount, collectiveStatus) can be tested without a process.
 */
import { mcpEndpointPath, mcpEndpointUrl, type GroupStatus, type HealthStatus, type InstanceStatus, type InstanceStatusValue } from './contract.js';

/** What the driver tracks of one instance, as far as reporting goes. */
export interface InstanceView {
  readonly name: string;
  readonly spec: { readonly accountToolInstanceId: string };
  status: InstanceStatusValue;
  health: HealthStatus;
  containerId: string | null;
  startTime: Date | null;
  lastRestartTime: Date | null;
  lastHealthCheck: Date | null;
  errorMessage: string | null;
  /** How many times a child was started for it (the first start is not a restart). */
  launches: number;
}

function isoOrNull(date: Date | null): string | null {
  return date ? date.toISOString() : null;
}

export function instanceStatus(instance: InstanceView, baseUrl: string | null): InstanceStatus {
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

/**
 * As the old DTMA: `initializing` while one is starting, `healthy` when all
 * run and answer, `degraded` when some do, `failed` when none is usable (also
 * when a process is still alive but no longer answers).
 */
export function collectiveStatus(members: readonly InstanceView[]): GroupStatus['collectiveStatus'] {
  if (members.some((instance) => ['pending', 'pulling', 'starting'].includes(instance.status))) return 'initializing';
  const healthy = members.filter((instance) => instance.status === 'running' && instance.health === 'healthy').length;
  if (members.length > 0 && healthy === members.length) return 'healthy';
  return healthy > 0 ? 'degraded' : 'failed';
}

export function groupStatus(members: readonly InstanceView[], sharedNetworking: boolean, baseUrl: string | null): GroupStatus {
  const running = members.filter((instance) => instance.status === 'running');
  const healthy = running.filter((instance) => instance.health === 'healthy');
  return {
    collectiveStatus: collectiveStatus(members),
    totalInstances: members.length,
    runningInstances: running.length,
    healthyInstances: healthy.length,
    sharedNetworking,
    instances: Object.fromEntries(members.map((instance) => [instance.name, instanceStatus(instance, baseUrl)])),
  };
}
