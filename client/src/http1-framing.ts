/**
 * What reading an HTTP/1.1 message from a connection's bytes takes whichever way it goes: the
 * bytes kept until a head or a line has come, and a body delimited by Content-Length, by chunks
 * (extensions and trailers read and dropped) or by the connection's end. The head is the
 * subclass's: an answer's (http1-answer.ts, read by socket-post.ts) or a request's
 * (http1-request.ts, read by http1-serve.ts). Every step costs time in proportion to the bytes it
 * reads, whatever their pace (a hostile peer sending a byte at a time, or a long run of
 * whitespace, holds the event loop no longer than a well-behaved one).
 */

/** An HTTP token (a method, a header's name). */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/**
 * A chunk's size (at most 8 hex digits) and its extensions, each `;name` or `;name=value` (a
 * token, or a quoted string), without whitespace: what every reader frames alike.
 */
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,8})(?:;[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:=(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+|"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?)*$/;
const CRLF = Buffer.from('\r\n');
export const HEAD_END = Buffer.from('\r\n\r\n');
const isBlank = (code: number): boolean => code === 32 || code === 9;
/** A field value: no control character but the tab (obs-text, bytes 0x80 to 0xff read as latin1, allowed). */
const VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * `line` from `from` on, without the spaces and tabs around it: found by walking, in one pass (a
 * pattern such as /(.*?)[ \t]*$/ backtracks over a run of whitespace at each of its positions,
 * which a hostile peer's 64 KiB head made seconds of the event loop).
 */
export function trimmed(line: string, from: number): string {
  let start = from;
  let end = line.length;
  while (start < end && isBlank(line.charCodeAt(start))) start++;
  while (end > start && isBlank(line.charCodeAt(end - 1))) end--;
  return line.slice(start, end);
}

/** A value this code writes: visible ASCII, spaces and tabs (no CR or LF that could split the message). */
const WRITTEN_VALUE = /^[\t\x20-\x7e]*$/;

/**
 * The header lines a writer sends (`name: value` and CRLF each), leaving out the names in `own`
 * (lower case: the framing the writer writes itself). A name that is not a token, or a value
 * with a control character or a byte outside ASCII, throws TypeError: nothing is written.
 */
export function headerLines(headers: Iterable<[string, string]>, own: ReadonlySet<string>, what: string): string {
  let lines = '';
  for (const [name, value] of headers) {
    if (!TOKEN.test(name) || !WRITTEN_VALUE.test(value)) throw new TypeError(`${what}: an invalid header ${JSON.stringify(name)}`);
    if (!own.has(name.toLowerCase())) lines += `${name}: ${value}\r\n`;
  }
  return lines;
}

/**
 * A header (or trailer) line's name, in lower case, and value; undefined when the line is
 * malformed: no colon, a name that is not a token (a space before the colon, a line folded onto
 * the one before), or a control character (a bare CR or LF among them) in the value.
 */
export function headerField(line: string): [string, string] | undefined {
  const colon = line.indexOf(':');
  if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) return undefined;
  const value = trimmed(line, colon + 1);
  return VALUE.test(value) ? [line.slice(0, colon).toLowerCase(), value] : undefined;
}

export type ReaderState = 'head' | 'length' | 'size' | 'data' | 'data-end' | 'trailers' | 'until-close' | 'done';

/**
 * One message at a time from a connection's bytes. A subclass reads the head (`head`, which sets
 * the body's state and `left`) and says how a failure is thrown (`fail`); the body's bytes go to
 * `body`, and `ended` is called once at the message's end.
 */
export abstract class Http1Reader {
  protected buffer: Buffer = Buffer.alloc(0);
  /** The buffer `buffer` lies in when it holds bytes kept across reads, with room after them. */
  private store: Buffer | undefined;
  /** How many unread bytes the last search for a delimiter saw without finding it. */
  private scanned = 0;
  protected state: ReaderState = 'head';
  protected left = 0;
  private trailerBytes = 0;

  constructor(protected readonly maxHeaderBytes: number) {}

  get finished(): boolean {
    return this.state === 'done';
  }

  /** Throws the subclass's error (`status`: the HTTP status a server answers it with). */
  protected abstract fail(message: string, status?: number): never;
  /** Reads the head from `buffer` once it has come; false until then (or when the message has ended). */
  protected abstract head(): boolean;
  protected abstract body(chunk: Buffer): void;
  protected abstract ended(): void;

  /** Reads what came; throws (`fail`) on a malformed message. Bytes after the message's end are kept, unread. */
  feed(data: Buffer): void {
    this.buffer = this.buffer.length === 0 ? data : this.appended(data);
    while (this.step());
  }

  /** Unread bytes held. */
  get buffered(): number {
    return this.buffer.length;
  }

  /**
   * The unread bytes followed by `data`, copied into room kept after them (which doubles when it
   * runs out): a head or a line sent a byte at a time costs time in proportion to its length,
   * not to its square. Nothing before the unread bytes (chunks already given out) is written.
   */
  protected appended(data: Buffer): Buffer {
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
  protected find(delimiter: Buffer): number {
    const end = this.buffer.indexOf(delimiter, Math.max(0, this.scanned - delimiter.length + 1));
    this.scanned = end === -1 ? this.buffer.length : 0;
    return end;
  }

  /** Takes one step; false when it needs more bytes (or the message has ended). */
  protected step(): boolean {
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
        if (!size) this.fail(`a malformed chunk size: ${JSON.stringify(line.slice(0, 40))}`);
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
        if (this.buffer[0] !== 13 || this.buffer[1] !== 10) this.fail('a chunk not followed by CRLF');
        this.buffer = this.buffer.subarray(2);
        this.state = 'size';
        return true;
      }
      case 'trailers': {
        const line = this.line(this.maxHeaderBytes - this.trailerBytes, 'trailers', 431);
        if (line === undefined) return false;
        if (line !== '') {
          // A framing field among the trailers is refused: it comes too late to frame anything, and a reader might act on it.
          const name = headerField(line)?.[0];
          if (name === undefined || name === 'content-length' || name === 'transfer-encoding') this.fail(`a malformed trailer line: ${JSON.stringify(line.slice(0, 60))}`);
        }
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
    this.body(chunk);
  }

  protected finish(): void {
    this.state = 'done';
    this.trailerBytes = 0;
    this.ended();
  }

  /** The next CRLF-ended line (latin1), or undefined until it has come; one longer than `limit` fails. */
  private line(limit: number, what: string, status = 400): string | undefined {
    const end = this.find(CRLF);
    if (end === -1 ? this.buffer.length > limit : end > limit) this.fail(`${what} longer than ${limit} bytes`, status);
    if (end === -1) return undefined;
    const text = this.buffer.toString('latin1', 0, end);
    this.buffer = this.buffer.subarray(end + 2);
    return text;
  }

  /**
   * The head's lines once it has come whole (CRLF CRLF), taken from the buffer; undefined until
   * then. A head longer than maxHeaderBytes fails with 431, whether or not it has ended.
   */
  protected headLines(what: string): string[] | undefined {
    const end = this.find(HEAD_END);
    if (end === -1 ? this.buffer.length > this.maxHeaderBytes : end + 4 > this.maxHeaderBytes) this.fail(`${what} longer than ${this.maxHeaderBytes} bytes`, 431);
    if (end === -1) return undefined;
    const lines = this.buffer.toString('latin1', 0, end).split('\r\n');
    this.buffer = this.buffer.subarray(end + 4);
    return lines;
  }
}
