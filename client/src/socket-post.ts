/**
 * The call lane's POST (gateway/upstream.ts: LanePost) written straight on Node's net and tls
 * sockets, for the gateway's Node entry: the request leaves in one write, and its answer is read
 * by a small parser of HTTP/1.1 response framing (http1-answer.ts: status line, headers, then a
 * body delimited by Content-Length, by chunks, or by the connection's end). Connections are kept alive and reused
 * per origin. On the lane's path node:http's request and response objects cost more CPU than
 * the rest of a call (README, Performance); this costs a few string operations.
 *
 * Only what the lane needs: a POST of a string body over HTTP/1.1, with or without TLS. A
 * redirect is handed back as it came (never followed), no proxy, no HTTP/2, no retry (a POST is
 * not repeated: a connection that breaks fails its request). A malformed answer (bad framing,
 * headers over `maxHeaderBytes`, a body cut off) fails the request and closes the connection.
 * Node-only; not exported by index.ts.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { LanePost, PostAnswer } from './gateway/upstream.ts';
import { ChunkQueue } from './chunk-queue.ts';
import { AnswerParser } from './http1-answer.ts';
import { headerLines } from './http1-framing.ts';

export interface SocketPostOptions {
  /** Connections per origin at most (default 256); requests beyond wait for one to be free. */
  maxSockets?: number;
  /** An idle connection is closed after this long (default 4 s, under the 5 s Node's servers keep one open). */
  idleMs?: number;
  /** The most bytes an answer's status line and headers (or its trailers) may have (default 64 KiB). */
  maxHeaderBytes?: number;
  /** Certificates trusted for https instead of the system's (tests with a certificate of their own). */
  ca?: string | Buffer;
}

/** Framing headers are this module's to write. */
const OWN_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection']);
/** Bytes on a connection no request is waiting for: it is out of step, and closed. */
function unexpected(this: net.Socket): void {
  this.destroy();
}
interface Origin {
  idle: net.Socket[];
  open: number;
  waiting: ((socket: net.Socket | undefined) => void)[];
}

/** The request's head: the lane's headers (validated: no CR, LF or other control byte), then Host and Content-Length. */
function requestHead(url: URL, headers: Record<string, string>, length: number): string {
  return `POST ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n${headerLines(Object.entries(headers), OWN_HEADERS, 'socketPost')}content-length: ${length}\r\n\r\n`;
}

export function socketPost(options: SocketPostOptions = {}): LanePost {
  const maxSockets = options.maxSockets ?? 256;
  const idleMs = options.idleMs ?? 4_000;
  const maxHeaderBytes = options.maxHeaderBytes ?? 64 * 1024;
  const origins = new Map<string, Origin>();

  function connect(url: URL): net.Socket {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const secure = url.protocol === 'https:';
    const port = Number(url.port || (secure ? 443 : 80));
    const socket = secure
      ? tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), ALPNProtocols: ['http/1.1'], ...(options.ca ? { ca: options.ca } : {}) })
      : net.connect({ host, port });
    socket.setNoDelay(true);
    return socket;
  }

  /** A connection to the origin: an idle one, a new one, or the next one freed (when maxSockets are open). */
  function acquire(key: string, url: URL): Promise<net.Socket> {
    let origin = origins.get(key);
    if (!origin) {
      origin = { idle: [], open: 0, waiting: [] };
      origins.set(key, origin);
    }
    const pool = origin;
    for (let socket = pool.idle.pop(); socket; socket = pool.idle.pop()) {
      if (!socket.destroyed) {
        socket.setTimeout(0);
        socket.off('data', unexpected);
        return Promise.resolve(socket);
      }
    }
    const fresh = (): net.Socket => {
      const socket = connect(url);
      pool.open++;
      // An idle connection's error is its close; a busy one's is its request's.
      socket.on('error', () => undefined);
      socket.once('close', () => {
        pool.open--;
        const at = pool.idle.indexOf(socket);
        if (at !== -1) pool.idle.splice(at, 1);
        // A slot is free: the next waiting request opens a connection of its own.
        pool.waiting.shift()?.(undefined);
      });
      socket.on('timeout', () => socket.destroy());
      return socket;
    };
    if (pool.open < maxSockets) return Promise.resolve(fresh());
    return new Promise((resolve) => pool.waiting.push((socket) => resolve(socket ?? fresh())));
  }

  function release(key: string, socket: net.Socket, reusable: boolean): void {
    const pool = origins.get(key);
    if (!pool || !reusable || socket.destroyed) {
      socket.destroy();
      return;
    }
    const next = pool.waiting.shift();
    if (next) return next(socket);
    socket.setTimeout(idleMs);
    socket.on('data', unexpected);
    pool.idle.push(socket);
  }

  return (url, init) => {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return { answer: Promise.reject(new TypeError(`socketPost: unsupported protocol ${url.protocol}`)), cancel: () => undefined };
    let head: string;
    try {
      head = requestHead(url, init.headers, Buffer.byteLength(init.body, 'utf8'));
    } catch (error) {
      return { answer: Promise.reject(error), cancel: () => undefined };
    }
    const key = `${url.protocol}//${url.host}`;
    let settled = false;
    let cancelled = false;
    let fail: (error: unknown) => void = () => undefined;
    const chunks = new ChunkQueue(() => fail(Object.assign(new Error('the answer was left unread'), { name: 'AbortError' })));
    const answer = new Promise<PostAnswer>((resolve, reject) => {
      // Cancelled before it has a connection (one may be opening, or none free): it fails at once.
      fail = (error) => {
        settled = true;
        reject(error);
      };
      acquire(key, url).then((acquired) => {
        if (cancelled) {
          release(key, acquired, true);
          return;
        }
        const held = acquired;
        let answered = false;
        const detach = (): void => {
          held.off('data', onData);
          held.off('error', onError);
          held.off('close', onClose);
        };
        fail = (error) => {
          if (settled) return;
          settled = true;
          detach();
          held.destroy();
          if (answered) chunks.fail(error);
          else reject(error);
        };
        const parser = new AnswerParser(
          {
            head(status, contentType) {
              answered = true;
              resolve({ status, contentType, chunks });
            },
            body: (chunk) => chunks.push(chunk),
            done() {
              settled = true;
              detach();
              chunks.end();
              // Released once the parser is back from its step (it may still judge the bytes after the answer).
              queueMicrotask(() => release(key, held, parser.reusable));
            },
          },
          maxHeaderBytes,
        );
        const onData = (data: Buffer): void => {
          try {
            parser.feed(data);
          } catch (error) {
            fail(error);
          }
        };
        const onError = (error: Error): void => fail(error);
        const onClose = (): void => {
          try {
            parser.closed();
          } catch (error) {
            fail(error);
          }
        };
        held.on('data', onData);
        held.on('error', onError);
        held.once('close', onClose);
        // One write: the head is ASCII (checked), the body UTF-8.
        held.write(head + init.body, 'utf8');
      }, reject);
    });
    return {
      answer,
      cancel() {
        cancelled = true;
        fail(Object.assign(new Error('cancelled'), { name: 'AbortError' }));
      },
    };
  };
}
