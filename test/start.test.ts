/**
 * `npm start` says the stack is up only when the DTMA answering on its port is the one it
 * started: the check (health_instance_id in scripts/lib.sh) against a real DTMA started with an
 * instance id, and against another process that holds a port and answers 200 to anything.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createProcessDriver } from '../standins/dtma/process-driver.ts';
import { createDtmaServer } from '../standins/dtma/server.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function instanceIdAt(url: string): Promise<string> {
  const { stdout } = await promisify(execFile)('bash', ['-c', 'source scripts/lib.sh && health_instance_id "$1"', 'check', url], {
    cwd: ROOT,
    env: { ...process.env, MCP_LOCAL_DIR: path.join(ROOT, '.local', 'start-check') },
  });
  return stdout.trim();
}

describe("npm start's readiness check", () => {
  it('recognises the DTMA it started, and not another process on a port', async () => {
    const dtma = createDtmaServer({ token: 't', driver: createProcessDriver(), port: 0, instanceId: 'started-here-1234' });
    const foreign = http.createServer((_req, res) => res.end('{"status":"ok"}'));
    await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
    try {
      const foreignUrl = `http://127.0.0.1:${(foreign.address() as AddressInfo).port}`;
      expect(await instanceIdAt(await dtma.listen())).toBe('started-here-1234');
      expect(await instanceIdAt(foreignUrl)).toBe('');
      await new Promise<void>((resolve) => foreign.close(() => resolve()));
      // Nothing on the port: no id either.
      expect(await instanceIdAt(foreignUrl)).toBe('');
    } finally {
      if (foreign.listening) foreign.close();
      await dtma.close();
    }
  });
});
