/**
 * The gateway's interaction log: every tools/call (allowed, denied, failed, timed out) with its
 * duration goes to audit_mcp_interactions, in batches per agent. A batch is written when it holds
 * `maxBatch` rows or `flushMs` after its first row, and on close (the Node entry closes on SIGTERM
 * and SIGINT). Denials are written at once, before the caller learns of them.
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

export interface InteractionLogOptions {
  write: (agentId: string, interactions: Interaction[]) => Promise<void>;
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
    const writes = [...batch].flatMap(([agentId, rows]) => {
      const chunks: Interaction[][] = [];
      for (let i = 0; i < rows.length; i += 1000) chunks.push(rows.slice(i, i + 1000));
      return chunks.map((chunk) => options.write(agentId, chunk).catch((error: unknown) => options.onError?.(error)));
    });
    const all = Promise.all(writes).then(() => undefined);
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
