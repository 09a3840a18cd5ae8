/**
 * Reads one HTTP/1.1 answer from a connection's bytes as they come (socket-post.ts writes the
 * requests): its status line and headers (1xx answers skipped, 101 refused), then its body,
 * delimited by Content-Length, by chunks (extensions and trailers read and dropped), or by the
 * connection's end, and whether the connection may carry another request after it. Malformed or
 * oversized framing throws AnswerFramingError. Every step costs time in proportion to the bytes
 * it reads, whatever their pace (a hostile upstream sending a byte at a time, or a long run of
 * whitespace, holds the event loop no longer than a well-behaved one).
 */
/** A malformed answer, or a connection that ended before its answer did. */
export class AnswerFramingError extends Error {
  override name = 'AnswerFramingError';
}

/** An HTTP token (a header's name). */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,8})[ \t]*(?:;.*)?$/;
const CRLF = Buffer.from('\r\n');
const BARE_CR_LF = /[\r\n]/;
const HEAD_END = Buffer.from('\r\n\r\n');
const isBlank = (code: number): boolean => code === 32 || code === 9;
/**
 * `line` from `from` on, without the spaces and tabs around it: found by walking, in one pass (a
 * pattern such as /(.*?)[ \t]*$/ backtracks over a run of whitespace at each of its positions,
 * which a hostile upstream's 64 KiB head made seconds of the event loop).
 */
function trimmed(line: string, from: number): string {
  let start = from;
  let end = line.length;
  while (start < end && isBlank(line.charCodeAt(start))) start++;
  while (end > start && isBlank(line.charCodeAt(end - 1))) end--;
  return line.slice(start, end);
}

interface ParserEvents {
  head(status: number, contentType: string | null): void;
  body(chunk: Buffer): void;
  done(): void;
}

/**
 * Reads one answer from the bytes of a connection: its final head (a 1xx is skipped), then its
 * body. `reusable` says whether the connection may carry another request after it.
 */
export class AnswerParser {
  reusable = true;
  private buffer: Buffer = Buffer.alloc(0);
  /** The buffer `buffer` lies in when it holds bytes kept across reads, with room after them. */
  private store: Buffer | undefined;
  /** How many unread bytes the last search for a delimiter saw without finding it. */
  private scanned = 0;
  private state: 'head' | 'length' | 'size' | 'data' | 'data-end' | 'trailers' | 'until-close' | 'done' = 'head';
  private left = 0;
  private trailerBytes = 0;

  constructor(
    private readonly events: ParserEvents,
    private readonly maxHeaderBytes = 64 * 1024,
  ) {}

  get finished(): boolean {
    return this.state === 'done';
  }

  /** Reads what came; throws AnswerFramingError on a malformed answer. */
  feed(data: Buffer): void {
    if (this.state === 'done') {
      // Bytes after the answer: the connection is not in a state to be reused.
      if (data.length > 0) this.reusable = false;
      return;
    }
    this.buffer = this.buffer.length === 0 ? data : this.appended(data);
    while (this.step());
  }

  /**
   * The unread bytes followed by `data`, copied into room kept after them (which doubles when it
   * runs out): a head or a line sent a byte at a time costs time in proportion to its length,
   * not to its square. Nothing before the unread bytes (chunks already given out) is written.
   */
  private appended(data: Buffer): Buffer {
    const kept = this.buffer;
    const store = this.store;
    const at = store && kept.buffer === store.buffer ? kept.byteOffset - store.byteOffset : -1;
    const length = kept.length + data.length;
    if (store && at >= 0 && at + length <= store.length) {
      data.copy(store, at + kept.length);
      return store.subarray(at, at + length);
    }
    const grown = Buffer.allocUnsafe(Math.max(2 * length, 4096));
    kept.copy(grown, 0);
    data.copy(grown, kept.length);
    this.store = grown;
    return grown.subarray(0, length);
  }

  /** Where `delimiter` starts in the unread bytes, searching only what the last search did not see. */
  private find(delimiter: Buffer): number {
    const end = this.buffer.indexOf(delimiter, Math.max(0, this.scanned - delimiter.length + 1));
    this.scanned = end === -1 ? this.buffer.length : 0;
    return end;
  }

  /** The connection ended: the end of a body delimited by it, else an answer cut off. */
  closed(): void {
    if (this.state === 'done') return;
    if (this.state === 'until-close') {
      this.state = 'done';
      this.events.done();
      return;
    }
    throw new AnswerFramingError('the connection ended before the answer did');
  }

  /** Takes one step; false when it needs more bytes (or is done). */
  private step(): boolean {
    switch (this.state) {
      case 'head':
        return this.head();
      case 'length': {
        if (this.buffer.length === 0) return false;
        const take = Math.min(this.left, this.buffer.length);
        this.emit(take);
        this.left -= take;
        if (this.left === 0) this.finish();
        return !this.finished;
      }
      case 'until-close':
        if (this.buffer.length > 0) this.emit(this.buffer.length);
        return false;
      case 'size': {
        const line = this.line(4096, 'a chunk size line');
        if (line === undefined) return false;
        const size = CHUNK_SIZE.exec(line);
        if (!size) throw new AnswerFramingError(`a malformed chunk size: ${JSON.stringify(line.slice(0, 40))}`);
        this.left = Number.parseInt(size[1] as string, 16);
        this.state = this.left === 0 ? 'trailers' : 'data';
        return true;
      }
      case 'data': {
        if (this.buffer.length === 0) return false;
        const take = Math.min(this.left, this.buffer.length);
        this.emit(take);
        this.left -= take;
        if (this.left === 0) this.state = 'data-end';
        return true;
      }
      case 'data-end': {
        if (this.buffer.length < 2) return false;
        if (this.buffer[0] !== 13 || this.buffer[1] !== 10) throw new AnswerFramingError('a chunk not followed by CRLF');
        this.buffer = this.buffer.subarray(2);
        this.state = 'size';
        return true;
      }
      case 'trailers': {
        const line = this.line(this.maxHeaderBytes - this.trailerBytes, 'trailers');
        if (line === undefined) return false;
        this.trailerBytes += line.length + 2;
        if (line === '') this.finish();
        return !this.finished;
      }
      default:
        return false;
    }
  }

  private emit(length: number): void {
    const chunk = this.buffer.subarray(0, length);
    this.buffer = this.buffer.subarray(length);
    this.events.body(chunk);
  }

  private finish(): void {
    this.state = 'done';
    if (this.buffer.length > 0) this.reusable = false;
    this.buffer = Buffer.alloc(0);
    this.events.done();
  }

  /** The next CRLF-ended line (latin1), or undefined until it has come; one longer than `limit` throws. */
  private line(limit: number, what: string): string | undefined {
    const end = this.find(CRLF);
    if (end === -1) {
      if (this.buffer.length > limit) throw new AnswerFramingError(`${what} longer than ${limit} bytes`);
      return undefined;
    }
    if (end > limit) throw new AnswerFramingError(`${what} longer than ${limit} bytes`);
    const text = this.buffer.toString('latin1', 0, end);
    this.buffer = this.buffer.subarray(end + 2);
    return text;
  }

  private head(): boolean {
    const end = this.find(HEAD_END);
    if (end === -1 || end + 4 > this.maxHeaderBytes) {
      if (this.buffer.length > this.maxHeaderBytes || end !== -1) throw new AnswerFramingError(`an answer head longer than ${this.maxHeaderBytes} bytes`);
      return false;
    }
    const lines = this.buffer.toString('latin1', 0, end).split('\r\n');
    this.buffer = this.buffer.subarray(end + 4);
    const statusLine = STATUS_LINE.exec(lines[0] as string);
    if (!statusLine) throw new AnswerFramingError(`not an HTTP/1.1 status line: ${JSON.stringify((lines[0] as string).slice(0, 40))}`);
    const status = Number(statusLine[2]);
    let contentType: string | null = null;
    let length: string | undefined;
    let codings: string[] | undefined;
    let close = statusLine[1] === '0';
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      // A bare CR or LF in a line is refused: another reader might end the line there.
      if (colon === -1 || !TOKEN.test(line.slice(0, colon)) || BARE_CR_LF.test(line)) throw new AnswerFramingError(`a malformed header line: ${JSON.stringify(line.slice(0, 40))}`);
      const name = line.slice(0, colon).toLowerCase();
      const value = trimmed(line, colon + 1);
      if (name === 'content-type') contentType = value;
      else if (name === 'content-length') {
        // Repeated (or listed) lengths must agree (RFC 9110, 8.6).
        for (const each of value.split(',').map((v) => v.trim())) {
          if (!/^\d{1,15}$/.test(each) || (length !== undefined && length !== each)) throw new AnswerFramingError(`an invalid Content-Length: ${JSON.stringify(value.slice(0, 40))}`);
          length = each;
        }
      } else if (name === 'transfer-encoding') codings = [...(codings ?? []), ...value.toLowerCase().split(',').map((v) => v.trim()).filter(Boolean)];
      else if (name === 'connection' && value.toLowerCase().split(',').some((v) => v.trim() === 'close')) close = true;
    }
    if (status >= 100 && status < 200) {
      if (status === 101) throw new AnswerFramingError('the upstream switched protocols');
      return true; // informational: the final answer follows
    }
    if (close) this.reusable = false;
    const bodiless = status === 204 || status === 304;
    // Judged before the head is told: an answer whose body cannot be read fails whole.
    if (!bodiless && codings !== undefined && (codings.length > 1 || codings[0] !== 'chunked')) throw new AnswerFramingError(`an unsupported Transfer-Encoding: ${codings.join(', ')}`);
    this.events.head(status, contentType);
    if (bodiless) {
      this.finish();
      return false;
    }
    if (codings !== undefined) {
      // Both framings: the chunks count, and the connection is not reused (RFC 9112, 6.3).
      if (length !== undefined) this.reusable = false;
      this.state = 'size';
    } else if (length !== undefined) {
      this.left = Number(length);
      this.state = 'length';
      if (this.left === 0) this.finish();
    } else {
      this.reusable = false;
      this.state = 'until-close';
    }
    return !this.finished;
  }
}
