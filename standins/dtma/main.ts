/**
 * The local DTMA, from the command line:
 *
 *   DTMA_TOKEN=secret npx tsx standins/dtma/main.ts
 *
 * Environment: DTMA_TOKEN (required), DTMA_PORT (30000), DTMA_HOST
 * (127.0.0.1), DTMA_DRIVER (`process` or `fault`), DTMA_STATE_FILE (optional),
 * DTMA_PUBLIC_URL (optional), DTMA_MCP_AUTH (`bearer` or `none`),
 * DTMA_ALLOWED_HOSTS and DTMA_ALLOWED_ORIGINS (comma-separated, optional),
 * DTMA_INSTANCE_ID (optional, echoed by GET /health).
 */
import { createFaultDriver } from './fault-driver.js';
import { createProcessDriver } from './process-driver.js';
import { createDtmaServer } from './server.js';

function usage(message: string): never {
  process.stderr.write(`dtma: ${message}\n`);
  process.exit(2);
}

const token = process.env.DTMA_TOKEN;
if (!token) usage('DTMA_TOKEN is required (the bearer token callers must send)');
// Children get a minimal environment anyway; dropping it here also keeps it
// out of anything else this process might spawn.
delete process.env.DTMA_TOKEN;

const portText = process.env.DTMA_PORT ?? '30000';
const port = Number(portText);
if (!/^\d+$/.test(portText) || port > 65535) usage(`DTMA_PORT must be a port number, got '${portText}'`);

const host = process.env.DTMA_HOST ?? '127.0.0.1';
const driverName = process.env.DTMA_DRIVER ?? 'process';
if (driverName !== 'process' && driverName !== 'fault') usage(`DTMA_DRIVER must be 'process' or 'fault', got '${driverName}'`);
const mcpAuth = process.env.DTMA_MCP_AUTH ?? 'bearer';
if (mcpAuth !== 'bearer' && mcpAuth !== 'none') usage(`DTMA_MCP_AUTH must be 'bearer' or 'none', got '${mcpAuth}'`);

const log = (line: string): void => {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
};

const list = (value: string | undefined): string[] =>
  (value ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
const instanceId = process.env.DTMA_INSTANCE_ID;
const stateFile = process.env.DTMA_STATE_FILE;
const publicUrl = process.env.DTMA_PUBLIC_URL;
const processDriver = createProcessDriver({ ...(stateFile ? { stateFile } : {}), log });
const driver = driverName === 'fault' ? createFaultDriver(processDriver) : processDriver;
const server = createDtmaServer({
  token,
  driver,
  host,
  port,
  ...(publicUrl ? { publicUrl } : {}),
  mcpEndpointAuth: mcpAuth,
  allowedHosts: list(process.env.DTMA_ALLOWED_HOSTS),
  allowedOrigins: list(process.env.DTMA_ALLOWED_ORIGINS),
  ...(instanceId ? { instanceId } : {}),
  log,
});

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    // A second signal means "now": the exit hook SIGKILLs the children.
    process.exit(1);
  }
  stopping = true;
  log(`dtma: ${signal} received, stopping every MCP server`);
  try {
    await server.close();
    process.exit(0);
  } catch (error) {
    log(`dtma: shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));

try {
  const url = await server.listen();
  process.stdout.write(`dtma listening on ${url} (driver: ${driver.name})\n`);
} catch (error) {
  process.stderr.write(`dtma: could not start: ${error instanceof Error ? error.message : String(error)}\n`);
  await processDriver.close();
  process.exit(1);
}
