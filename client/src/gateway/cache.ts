/**
 * What the gateway may remember between requests, and how the database takes it back.
 *
 * Remembered: who a credential stands for (an API key, or a verified user acting for an agent),
 * and the tool calls the database allowed (per agent, server and the very definition the
 * gateway read upstream, so a changed definition is never covered). A denial is never
 * remembered: it is asked again, with its reason.
 *
 * Taken back: the database announces, on the channel `mcp_gateway`, every committed change
 * that can take a permission away (private.notify_gateway: keys, agents, members, grants,
 * servers); each announcement drops everything remembered. An answer that was being asked
 * while an announcement arrived is not remembered. What expires by time is remembered only as
 * long as the database said it holds (the key's or the grant's expiry, counted from when the
 * gateway asked, on its own clock), and a credential at most `credentialTtlMs` (so the key's
 * last use is recorded at that pace).
 *
 * Nothing is remembered while the listener is down (not yet connected, a lost connection, a
 * missed heartbeat: every second a ping on a channel of its own must come back as a
 * notification, so a connection that delivers none, such as one through a transaction pooler,
 * never counts as live): every request is asked then, exactly as without a cache; the listener
 * reconnects with backoff, and what was remembered before is dropped when it is back (an
 * announcement may have been missed meanwhile). And whatever happens, an allowed call is
 * remembered at most `maxAgeMs` (default 60 s).
 */
import type { GatewayPrincipal } from '../schemas.ts';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';

/** The database connection the listener holds (a pg.Client, connected). */
export interface ListenConnection {
  query(sql: string): Promise<unknown>;
  on(event: 'notification', listener: (message: { channel: string; payload?: string | undefined }) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  end(): Promise<void>;
}

export interface ChangeListener {
  /** Whether announcements are being received now: only then may anything be remembered. */
  live(): boolean;
  /** Changes with every announcement, and whenever the listener goes down or comes back. */
  generation(): number;
  /** Resolves once the listener is live (or at once if it is), or after `timeoutMs`: whether it is live. */
  ready(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

export const GATEWAY_CHANNEL = 'mcp_gateway';

export interface ChangeListenerOptions {
  /** Opens a new connection to the database (a pg.Client, connected). */
  connect: () => Promise<ListenConnection>;
  /** How often the listener checks that notifications reach it (a ping on a channel of its own that must come back within the same time). Default 1 s. */
  heartbeatMs?: number;
  /** Longest wait between reconnection attempts. Default 5 s. */
  maxBackoffMs?: number;
  onError?: (error: unknown) => void;
}

/** Listens on `mcp_gateway` over a connection of its own, and keeps listening. */
export function listenForChanges(options: ChangeListenerOptions): ChangeListener {
  const heartbeatMs = options.heartbeatMs ?? 1_000;
  const maxBackoffMs = options.maxBackoffMs ?? 5_000;
  let generation = 0;
  let live = false;
  let closed = false;
  let connection: ListenConnection | undefined;
  let down: ((error?: unknown) => void) | undefined;
  let waiters: (() => void)[] = [];
  let wake: (() => void) | undefined;

  function setLive(value: boolean): void {
    live = value;
    generation++;
    if (value) for (const waiter of waiters.splice(0)) waiter();
  }

  async function session(): Promise<void> {
    const ended = new Promise<unknown>((resolve) => {
      down = resolve;
    });
    const current = await options.connect();
    connection = current;
    // A channel of this listener's own, for its heartbeat: a ping sent on the connection must
    // come back as a notification. A connection that answers queries but delivers nothing (a
    // transaction pooler in front of the database, a listener registered on another backend)
    // never goes live, so nothing is remembered through it.
    const own = `${GATEWAY_CHANNEL}_${Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('')}`;
    let sent = 0;
    let pong: (() => void) | undefined;
    current.on('notification', (message) => {
      if (message.channel === GATEWAY_CHANNEL) generation++;
      else if (message.channel === own && Number(message.payload) === sent) pong?.();
    });
    current.on('error', (error) => down?.(error));
    current.on('end', () => down?.(new Error('the listener connection ended')));
    await current.query(`listen ${GATEWAY_CHANNEL}; listen ${own}`);
    /** Sends a ping; resolves when it came back, rejects when it did not within heartbeatMs. */
    const ping = (): Promise<void> => {
      sent++;
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the listener missed a heartbeat: notifications are not coming back')), heartbeatMs);
        pong = () => {
          clearTimeout(timer);
          resolve();
        };
        current.query(`select pg_catalog.pg_notify('${own}', '${sent}')`).catch((error: unknown) => {
          clearTimeout(timer);
          reject(error);
        });
      });
    };
    await ping();
    setLive(true);
    let beating = false;
    const heartbeat = setInterval(() => {
      if (beating) return;
      beating = true;
      ping().then(
        () => {
          beating = false;
        },
        (error: unknown) => down?.(error),
      );
    }, heartbeatMs);
    const error = await ended;
    clearInterval(heartbeat);
    if (live) setLive(false);
    if (!closed && error) options.onError?.(error);
  }

  const running = (async () => {
    let backoff = 100;
    while (!closed) {
      try {
        await session();
        backoff = 100;
      } catch (error) {
        if (live) setLive(false);
        if (!closed) options.onError?.(error);
      }
      const last = connection;
      connection = undefined;
      down = undefined;
      await last?.end().catch(() => undefined);
      if (closed) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      backoff = Math.min(backoff * 2, maxBackoffMs);
    }
  })();

  return {
    live: () => live,
    generation: () => generation,
    ready(timeoutMs = 5_000) {
      if (live) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(live), timeoutMs);
        waiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
    async close() {
      closed = true;
      if (live) setLive(false);
      waiters = [];
      down?.();
      wake?.();
      await running;
    },
  };
}

interface Remembered<T> {
  value: T;
  until: number;
}

/** When a question was asked: an answer is remembered only if nothing changed since. */
export interface Asked {
  generation: number;
  at: number;
}

export interface GatewayCache {
  /** Taken just before asking the database; passed back to remember the answer. */
  asking(): Asked;
  principal(token: string): GatewayPrincipal | undefined;
  rememberPrincipal(token: string, principal: GatewayPrincipal, asked: Asked): void;
  /** Whether the database allowed this call (this agent, server and definition object) and it still holds. */
  allowed(agentId: string, serverId: string, tool: Tool): boolean;
  /** An allowed call, for `validForMs` from when it was asked (null: until a change). */
  rememberAllowed(agentId: string, serverId: string, tool: Tool, validForMs: number | null, asked: Asked): void;
}

export interface GatewayCacheOptions {
  /** How long a credential is remembered at most (default 10 s: the pace of last_used_at). */
  credentialTtlMs?: number;
  /** How long an allowed call is remembered at most, whatever else holds (default 60 s). */
  maxAgeMs?: number;
  /** Credentials remembered at most (the oldest are dropped first). Default 10,000. */
  maxCredentials?: number;
  now?: () => number;
}

/** The gateway's cache over a change listener; without one, it remembers nothing. */
export function gatewayCache(listener: ChangeListener | undefined, options: GatewayCacheOptions = {}): GatewayCache {
  const ttl = options.credentialTtlMs ?? 10_000;
  const maxCredentials = options.maxCredentials ?? 10_000;
  const maxAge = options.maxAgeMs ?? 60_000;
  const now = options.now ?? Date.now;
  let seen = -1;
  let principals = new Map<string, Remembered<GatewayPrincipal>>();
  // Keyed by the definition object the upstream session holds: a re-read definition is a new
  // object, asked again. Entries go with the objects.
  let calls = new WeakMap<Tool, Map<string, number>>();

  /** Whether anything may be remembered or answered from memory now; drops it all after a change. */
  function current(): boolean {
    if (!listener?.live()) return false;
    const generation = listener.generation();
    if (generation !== seen) {
      seen = generation;
      principals = new Map();
      calls = new WeakMap();
    }
    return true;
  }

  const keep = (asked: Asked): boolean => current() && listener?.generation() === asked.generation;

  return {
    asking: () => ({ generation: listener?.generation() ?? -1, at: now() }),
    principal(token) {
      if (!current()) return undefined;
      const hit = principals.get(token);
      if (!hit) return undefined;
      if (hit.until > now()) return hit.value;
      principals.delete(token);
      return undefined;
    },
    rememberPrincipal(token, principal, asked) {
      if (!keep(asked)) return;
      if (principals.size >= maxCredentials) principals.delete(principals.keys().next().value as string);
      const until = Math.min(asked.at + ttl, principal.valid_for_ms === null ? Infinity : asked.at + principal.valid_for_ms);
      principals.set(token, { value: principal, until });
    },
    allowed(agentId, serverId, tool) {
      if (!current()) return false;
      const until = calls.get(tool)?.get(`${agentId} ${serverId}`);
      return until !== undefined && until > now();
    },
    rememberAllowed(agentId, serverId, tool, validForMs, asked) {
      if (!keep(asked)) return;
      let byAgent = calls.get(tool);
      if (!byAgent) calls.set(tool, (byAgent = new Map()));
      byAgent.set(`${agentId} ${serverId}`, asked.at + Math.min(maxAge, validForMs ?? Infinity));
    },
  };
}
