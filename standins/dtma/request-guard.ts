/**
 * Who may talk to the DTMA: the bearer token of the toolbox, and, against DNS
 * rebinding (a web page whose host name suddenly resolves to 127.0.0.1), a
 * Host header naming this DTMA and no Origin but an allowed one. A browser
 * always sends both, and a page cannot forge either; other clients (pg_net,
 * the gateway, the SDK) send no Origin.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export interface GuardRefusal {
  status: number;
  message: string;
  headers?: Record<string, string>;
}

/** Host names (`host` or `host:port`) a request may name. */
export function allowedHostsFor(listenHost: string, port: number, publicUrl: string | undefined, extra: readonly string[] = []): Set<string> {
  const hosts = new Set<string>();
  const add = (host: string, hostPort: number | string): void => {
    const name = host.toLowerCase();
    hosts.add(`${name}:${hostPort}`);
    if (String(hostPort) === '80') hosts.add(name);
  };
  const loopback = ['127.0.0.1', 'localhost', '[::1]'];
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::';
  for (const host of wildcard || loopback.includes(listenHost) || listenHost === '::1' ? loopback : []) add(host, port);
  if (!wildcard) add(listenHost.includes(':') && !listenHost.startsWith('[') ? `[${listenHost}]` : listenHost, port);
  if (publicUrl) {
    const url = new URL(publicUrl);
    const defaultPort = url.protocol === 'https:' ? '443' : '80';
    hosts.add(url.host.toLowerCase());
    if (!url.port) hosts.add(`${url.hostname.toLowerCase()}:${defaultPort}`);
  }
  for (const host of extra) hosts.add(host.toLowerCase());
  return hosts;
}

export interface RequestGuardOptions {
  token: string;
  allowedHosts: ReadonlySet<string>;
  /** Exact origins (`http://localhost:6274`) a browser page may call from; none by default. */
  allowedOrigins: ReadonlySet<string>;
}

export interface RequestGuard {
  /** Host and Origin; null when the request may go on. */
  checkOrigin(req: IncomingMessage): GuardRefusal | null;
  /** The bearer token; null when it is the DTMA's. */
  checkToken(req: IncomingMessage): GuardRefusal | null;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function createRequestGuard(options: RequestGuardOptions): RequestGuard {
  if (!options.token) throw new Error('the DTMA token must be a non-empty string');
  // Comparing digests keeps the comparison constant-time whatever the lengths.
  const tokenDigest = createHash('sha256').update(options.token).digest();
  return {
    checkOrigin(req) {
      const host = single(req.headers.host)?.toLowerCase();
      if (!host || !options.allowedHosts.has(host)) {
        return { status: 403, message: `Host '${host ?? ''}' is not this DTMA (DNS rebinding protection; see DTMA_ALLOWED_HOSTS)` };
      }
      const origin = single(req.headers.origin);
      if (origin !== undefined && !options.allowedOrigins.has(origin)) {
        return { status: 403, message: `Origin '${origin}' is not allowed (see DTMA_ALLOWED_ORIGINS)` };
      }
      return null;
    },
    checkToken(req) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
      if (!match?.[1]) return { status: 401, message: 'missing bearer token', headers: { 'www-authenticate': 'Bearer realm="dtma"' } };
      const given = createHash('sha256').update(match[1]).digest();
      if (!timingSafeEqual(given, tokenDigest)) {
        return { status: 401, message: 'invalid bearer token', headers: { 'www-authenticate': 'Bearer realm="dtma", error="invalid_token"' } };
      }
      return null;
    },
  };
}
