/**
 * Reads HTTP/1.1 requests from a connection's bytes as they come, one after the other, for the
 * raw server of http1-serve.ts. It is a public surface, so it reads strictly: what RFC 9112
 * allows a server to refuse, and what another reader (a proxy in front) might frame otherwise,
 * is refused with its status rather than guessed at:
 *
 * - the request line is `METHOD SP /target SP HTTP/1.1`: GET, HEAD, POST, PUT, DELETE, OPTIONS
 *   or PATCH (another token: 501), an origin-form target of visible characters, version 1.1 only
 *   (another version: 505);
 * - every line ends with CRLF (a bare CR or LF: 400); no line folding; a header's name is a
 *   token followed at once by its colon; a value has no control character;
 * - exactly one Host, a host name or address and an optional port;
 * - the body is framed by one Content-Length (digits only) or by `Transfer-Encoding: chunked`
 *   alone; both: 400; another coding: 501; over maxBodyBytes: 413 (a declared length at once);
 * - a head over maxHeaderBytes, or with more than maxHeaders lines, is refused with 431 before
 *   it ends; an Expect other than 100-continue with 417.
 *
 * Empty lines before a request line are skipped (RFC 9112, 2.2).
 */
import { Http1Reader, TOKEN, headerField } from './http1-framing.ts';

/** A request the server refuses, with the status it answers. */
export class RequestFramingError extends Error {
  override name = 'RequestFramingError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A request's head as read. */
export interface RequestHead {
  method: string;
  /** The origin-form target (`/path?query`). */
  target: string;
  host: string;
  /** Headers by lower-case name; a repeated header's values joined with ", ". */
  headers: Map<string, string>;
  /** The body's length when declared (Content-Length), else undefined (chunked, or none). */
  length: number | undefined;
  chunked: boolean;
  /** The client waits for 100 (Continue) before it sends the body. */
  expectContinue: boolean;
  /** The client asked that the connection close after the answer. */
  close: boolean;
}

export interface RequestLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  maxBodyBytes: number;
}

interface RequestEvents {
  head(head: RequestHead): void;
  body(chunk: Buffer): void;
  done(): void;
}

const REQUEST_LINE = /^([^ ]+) ([^ ]+) (HTTP\/\d\.\d)$/;
/** The methods read; another token is answered 501 (RFC 9110, 9.1). */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']);
/** An absolute path and query: visible characters, no fragment (RFC 9112, 3.2.1). */
const TARGET = /^\/[\x21\x22\x24-\x7e]*$/;
const HOST = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const LENGTH = /^\d{1,15}$/;
const EMPTY_LINE = 0x0a0d; // "\r\n" read as a little-endian 16-bit number

export class RequestParser extends Http1Reader {
  private received = 0;

  constructor(
    private readonly events: RequestEvents,
    private readonly limits: RequestLimits,
  ) {
    super(limits.maxHeaderBytes);
  }

  protected fail(message: string, status = 400): never {
    throw new RequestFramingError(status, message);
  }

  /** After a request's end, reads the next one from the bytes already held (and those to come). */
  next(): void {
    if (this.state !== 'done') return;
    this.state = 'head';
    this.received = 0;
    while (this.step());
  }

  /** While a request is being answered, bytes are only held: the next request is read by `next`. */
  override feed(data: Buffer): void {
    if (this.state === 'done') {
      this.buffer = this.buffer.length === 0 ? data : this.appended(data);
      return;
    }
    super.feed(data);
  }

  protected body(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.received > this.limits.maxBodyBytes) this.fail(`a request body larger than ${this.limits.maxBodyBytes} bytes`, 413);
    this.events.body(chunk);
  }

  protected ended(): void {
    this.events.done();
  }

  protected head(): boolean {
    while (this.buffer.length >= 2 && this.buffer.readUInt16LE(0) === EMPTY_LINE) this.buffer = this.buffer.subarray(2);
    const lines = this.headLines('a request head');
    if (lines === undefined) return false;
    if (lines.length - 1 > this.limits.maxHeaders) this.fail(`more than ${this.limits.maxHeaders} header lines`, 431);
    const requestLine = lines[0] as string;
    const parts = REQUEST_LINE.exec(requestLine);
    if (!parts || !TOKEN.test(parts[1] as string)) this.fail(`a malformed request line: ${JSON.stringify(requestLine.slice(0, 60))}`);
    if (parts[3] !== 'HTTP/1.1') this.fail(`HTTP version ${(parts[3] as string).slice(5)} is not supported: HTTP/1.1 only`, 505);
    if (!METHODS.has(parts[1] as string)) this.fail(`the method ${JSON.stringify(parts[1])} is not implemented`, 501);
    const target = parts[2] as string;
    if (!TARGET.test(target)) this.fail(`not an origin-form target (a path that starts with /): ${JSON.stringify(target.slice(0, 60))}`);
    const headers = new Map<string, string>();
    const count = new Map<string, number>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const field = headerField(line);
      if (field === undefined) this.fail(`a malformed header line: ${JSON.stringify(line.slice(0, 60))}`);
      const [name, value] = field;
      // llhttp (node:http) refuses a framing header with a tab after its value: so does this reader, whatever a proxy in front might make of it.
      if ((name === 'content-length' || name === 'transfer-encoding') && line.includes('\t')) this.fail(`a tab in ${name}`);
      const before = headers.get(name);
      headers.set(name, before === undefined ? value : `${before}, ${value}`);
      count.set(name, (count.get(name) ?? 0) + 1);
    }
    const host = headers.get('host');
    if (host === undefined || count.get('host') !== 1 || !HOST.test(host)) this.fail(host === undefined ? 'no Host header' : `an invalid Host: ${JSON.stringify(host.slice(0, 60))}`);
    const coding = headers.get('transfer-encoding');
    const declared = headers.get('content-length');
    if (coding !== undefined && declared !== undefined) this.fail('both Content-Length and Transfer-Encoding');
    if (coding !== undefined && (count.get('transfer-encoding') !== 1 || coding.toLowerCase() !== 'chunked')) this.fail(`an unsupported Transfer-Encoding: ${JSON.stringify(coding.slice(0, 60))} (chunked alone is)`, 501);
    if (declared !== undefined && (count.get('content-length') !== 1 || !LENGTH.test(declared))) this.fail(`an invalid Content-Length: ${JSON.stringify(declared.slice(0, 60))}`);
    const length = declared === undefined ? undefined : Number(declared);
    if (length !== undefined && length > this.limits.maxBodyBytes) this.fail(`a request body larger than ${this.limits.maxBodyBytes} bytes`, 413);
    const expect = headers.get('expect');
    if (expect !== undefined && expect.toLowerCase() !== '100-continue') this.fail(`an unsupported expectation: ${JSON.stringify(expect.slice(0, 60))}`, 417);
    const connection = headers.get('connection');
    this.events.head({
      method: parts[1] as string,
      target,
      host,
      headers,
      length,
      chunked: coding !== undefined,
      expectContinue: expect !== undefined,
      close: connection !== undefined && connection.toLowerCase().split(',').some((token) => token.trim() === 'close'),
    });
    if (coding !== undefined) this.state = 'size';
    else if (length) {
      this.left = length;
      this.state = 'length';
    } else this.finish();
    return !this.finished;
  }
}
