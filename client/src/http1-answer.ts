/**
 * Reads one HTTP/1.1 answer from a connection's bytes as they come (socket-post.ts writes the
 * requests): its status line and headers (1xx answers skipped, 101 refused), then its body
 * (http1-framing.ts: delimited by Content-Length, by chunks, or by the connection's end), and
 * whether the connection may carry another request after it. Malformed or oversized framing
 * throws AnswerFramingError.
 */
import { Http1Reader, headerField } from './http1-framing.ts';

/** A malformed answer, or a connection that ended before its answer did. */
export class AnswerFramingError extends Error {
  override name = 'AnswerFramingError';
}

const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?$/;

interface ParserEvents {
  head(status: number, contentType: string | null): void;
  body(chunk: Buffer): void;
  done(): void;
}

/**
 * Reads one answer from the bytes of a connection: its final head (a 1xx is skipped), then its
 * body. `reusable` says whether the connection may carry another request after it.
 */
export class AnswerParser extends Http1Reader {
  reusable = true;

  constructor(
    private readonly events: ParserEvents,
    maxHeaderBytes = 64 * 1024,
  ) {
    super(maxHeaderBytes);
  }

  protected fail(message: string): never {
    throw new AnswerFramingError(message);
  }

  /** Reads what came; throws AnswerFramingError on a malformed answer. */
  override feed(data: Buffer): void {
    if (this.finished) {
      // Bytes after the answer: the connection is not in a state to be reused.
      if (data.length > 0) this.reusable = false;
      return;
    }
    super.feed(data);
  }

  /** The connection ended: the end of a body delimited by it, else an answer cut off. */
  closed(): void {
    if (this.finished) return;
    if (this.state === 'until-close') {
      this.finish();
      return;
    }
    throw new AnswerFramingError('the connection ended before the answer did');
  }

  protected body(chunk: Buffer): void {
    this.events.body(chunk);
  }

  protected ended(): void {
    if (this.buffer.length > 0) this.reusable = false;
    this.buffer = Buffer.alloc(0);
    this.events.done();
  }

  protected head(): boolean {
    const lines = this.headLines('an answer head');
    if (lines === undefined) return false;
    const statusLine = STATUS_LINE.exec(lines[0] as string);
    if (!statusLine) throw new AnswerFramingError(`not an HTTP/1.1 status line: ${JSON.stringify((lines[0] as string).slice(0, 40))}`);
    const status = Number(statusLine[2]);
    let contentType: string | null = null;
    let length: string | undefined;
    let codings: string[] | undefined;
    let close = statusLine[1] === '0';
    for (const line of lines.slice(1)) {
      const field = headerField(line);
      // A bare CR or LF in a line is refused (another reader might end the line there), and any other control character.
      if (field === undefined) throw new AnswerFramingError(`a malformed header line: ${JSON.stringify(line.slice(0, 40))}`);
      const [name, value] = field;
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
