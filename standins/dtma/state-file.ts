/**
 * The DTMA's desired state on disk (DTMA_STATE_FILE): which groups and server
 * specs it was asked to run, so that a restarted DTMA brings them back.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { GroupIdSchema, ServerSpecSchema, describeZodError } from './contract.js';
import { errorMessage } from './driver.js';

export const StateFileSchema = z.object({
  version: z.literal(1),
  groups: z.record(
    GroupIdSchema,
    z.object({
      sharedNetworking: z.boolean(),
      servers: z.array(ServerSpecSchema),
    }),
  ),
});
export type StateFile = z.infer<typeof StateFileSchema>;

// Temp file + fsync + rename: a crash leaves the old file or the new one,
// never half of one. Mode 0600 because environmentVariables carry secrets.
export async function writeFileAtomic(file: string, contents: string): Promise<void> {
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

/** The saved state, null when there is no file; throws on a file that does not parse. */
export async function readState(file: string): Promise<StateFile | null> {
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

export interface StateWriter {
  /** Writes the snapshot `current()` returns at write time; resolves once it is on disk. */
  save(): Promise<void>;
  /** Resolves when every write asked for so far has finished. */
  settled(): Promise<void>;
}

/** Serialises writes of one state file; without a file, saving does nothing. */
export function createStateWriter(file: string | undefined, current: () => StateFile): StateWriter {
  let writes: Promise<void> = Promise.resolve();
  return {
    save(): Promise<void> {
      if (!file) return Promise.resolve();
      const write = (): Promise<void> => writeFileAtomic(file, `${JSON.stringify(current(), null, 2)}\n`);
      // Chained so that renames land in call order; each write snapshots the
      // latest state, so the last one always wins.
      writes = writes.then(write, write);
      return writes;
    },
    settled: () => writes.catch(() => undefined),
  };
}
