/**
 * A body's chunks as they arrive, for a reader that awaits them one by one (the lane's
 * readLaneAnswer): the source pushes chunks, then ends or fails; `stop` is called when the reader
 * leaves before the end (the source is then closed). Costs less per answer than a web stream or a
 * Node stream's async iterator. Runs under Node and Deno.
 */
export class ChunkQueue implements AsyncIterator<Uint8Array> {
  private readonly queue: Uint8Array[] = [];
  private ended = false;
  private failure: unknown;
  private wake: (() => void) | undefined;

  constructor(private readonly stop: () => void) {}

  push(chunk: Uint8Array): void {
    this.queue.push(chunk);
    this.woken();
  }

  end(): void {
    this.ended = true;
    this.woken();
  }

  fail(error: unknown): void {
    this.failure ??= error;
    this.woken();
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    while (this.queue.length === 0 && !this.ended && this.failure === undefined) await new Promise<void>((resolve) => (this.wake = resolve));
    const chunk = this.queue.shift();
    if (chunk) return { done: false, value: chunk };
    if (this.failure !== undefined) throw this.failure;
    return { done: true, value: undefined };
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    if (!this.ended) this.stop();
    this.ended = true;
    return { done: true, value: undefined };
  }

  private woken(): void {
    this.wake?.();
    this.wake = undefined;
  }
}
