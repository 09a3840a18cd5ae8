/**
 * The gateway's interaction log: every tools/call (allowed, denied, failed, timed out) with its
 * duration goes to audit_mcp_interactions, in batches per agent, every agent's batch of a flush in
 * one write (one statement over a pool). A flush happens when `maxBatch` rows are pending or
 * `flushMs` after the first, and on close (the Node entry closes on SIGTERM and SIGINT). Denials
 * are written at once, before the caller learns of them. When the write of all fails, each
 * agent's batch is written on its own, so that one refused batch loses no other agent's rows.
 *
 * If the gateway process dies without closing (SIGKILL, a crash, an Edge Function's isolate torn
 * down), the rows still in memory are lost: at most `flushMs` worth of completed calls. The
 * calls themselves already happened; the log says so for every call older than that.
 */
import type { Interaction } from '../schemas.ts';

export interface InteractionLog {
  add(agentId: string, interaction: Interaction): void;
  /** Writes now what is pending, and waits for it. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** One agent's interactions (at most 1000, what audit_mcp_interactions takes at once). */
export interface AgentInteractions {
  agentId: string;
  interactions: Interaction[];
}

/**
 * Thrown by a write that wrote its batches one by one and could not write some (the RPC store):
 * the others are in the log, so nothing is written again; each failure is reported.
 */
export class BatchesNotWritten extends Error {
  constructor(readonly errors: unknown[]) {
    super(`${errors.length} interaction batch(es) not written`);
  }
}

export interface InteractionLogOptions {
  /** Writes all the batches, or none of them and throws; or throws BatchesNotWritten for those it could not write. */
  write: (batches: AgentInteractions[]) => Promise<void>;
  flushMs?: number;
  maxBatch?: number;
  onError?: (error: unknown) => void;
}

export function interactionLog(options: InteractionLogOptions): InteractionLog {
  const flushMs = options.flushMs ?? 100;
  const maxBatch = Math.min(options.maxBatch ?? 200, 1000);
  let pending = new Map<string, Interaction[]>();
  let count = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const inFlight = new Set<Promise<void>>();

  const writeAll = (): Promise<void> => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const batch = pending;
    pending = new Map();
    count = 0;
    const batches = [...batch].flatMap(([agentId, rows]) => {
      const chunks: AgentInteractions[] = [];
      for (let i = 0; i < rows.length; i += 1000) chunks.push({ agentId, interactions: rows.slice(i, i + 1000) });
      return chunks;
    });
    const all: Promise<void> =
      batches.length === 0
        ? Promise.resolve()
        : options.write(batches).catch(async (error: unknown): Promise<void> => {
            if (error instanceof BatchesNotWritten) for (const each of error.errors) options.onError?.(each);
            else if (batches.length === 1) options.onError?.(error);
            else await Promise.all(batches.map((one) => options.write([one]).catch((each: unknown) => options.onError?.(each))));
          });
    inFlight.add(all);
    void all.finally(() => inFlight.delete(all));
    return all;
  };

  return {
    add(agentId, interaction) {
      const rows = pending.get(agentId) ?? [];
      rows.push(interaction);
      pending.set(agentId, rows);
      count++;
      if (count >= maxBatch) void writeAll();
      else if (!timer) timer = setTimeout(() => void writeAll(), flushMs);
    },
    async flush() {
      await writeAll();
      await Promise.all([...inFlight]);
    },
    async close() {
      await this.flush();
    },
  };
}
