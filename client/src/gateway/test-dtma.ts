/**
 * Test support (never imported by product code): a local DTMA of a test file's own, in the test
 * process, running real MCP servers from npm. One toolbox per DTMA: two toolboxes on one DTMA
 * sweep each other's servers away as orphans on the health poll (a known defect being fixed
 * elsewhere), which the gateway's longer suites would otherwise run into.
 */
import { createProcessDriver } from '../../../scripts/dtma/process-driver.ts';
import { createDtmaServer } from '../../../scripts/dtma/server.ts';
import { dtma } from '../testing/stack.ts';

export async function ownDtma(): Promise<{ url: string; token: string; close: () => Promise<void> }> {
  const { token } = dtma();
  const server = createDtmaServer({ token, driver: createProcessDriver({ startTimeoutMs: 20_000 }), port: 0 });
  const url = await server.listen();
  return { url, token, close: () => server.close() };
}
