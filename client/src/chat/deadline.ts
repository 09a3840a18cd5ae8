/**
 * Time limits for talking to MCP servers: a promise raced against an AbortSignal (so a server
 * that never answers cannot hold the caller past its deadline), abortable sleeps, and the
 * exponential backoff between attempts.
 */

/** Rejects with the signal's reason as soon as it aborts; `onLate` cleans up a result that arrives after. */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal, onLate?: (value: T) => void): Promise<T> {
  if (signal.aborted) {
    work.then((value) => onLate?.(value), () => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      work.then((value) => onLate?.(value), () => undefined);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) onLate?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(signal.aborted ? signal.reason : error);
      },
    );
  });
}

/** Waits ms, or rejects when the signal aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return raceAbort(new Promise<void>((resolve) => setTimeout(resolve, ms)), signal);
}

/** Delay before retry n (0-based): base·2ⁿ with ±25 % jitter, capped. */
export function backoffDelay(retry: number, baseMs: number, maxMs = 5_000): number {
  const exact = Math.min(maxMs, baseMs * 2 ** retry);
  return Math.round(exact * (0.75 + Math.random() * 0.5));
}

/** The reason a deadline signal aborts with. */
export class DeadlineError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms`);
    this.name = 'DeadlineError';
  }
}

/**
 * A signal that aborts after timeoutMs (with a DeadlineError) or when the parent aborts.
 * Call dispose() when done, so that the timer does not outlive the work.
 */
export function deadline(timeoutMs: number, parent?: AbortSignal): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DeadlineError(timeoutMs)), timeoutMs);
  const onParentAbort = (): void => controller.abort(parent?.reason);
  if (parent?.aborted) onParentAbort();
  else parent?.addEventListener('abort', onParentAbort, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParentAbort);
    },
  };
}
