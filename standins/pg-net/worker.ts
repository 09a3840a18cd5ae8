// The pg_net stand-in's sender: takes committed requests from net.http_request_queue, sends
// them concurrently, each with its own timeout, and records the outcome in net._http_response
// the way pg_net does. A request is deleted from the queue in the same statement that claims
// it, so no request is ever sent twice, even with several workers or after a restart; a
// worker killed mid-flight loses what it had claimed, as pg_net loses work on a crash. Like
// pg_net (libcurl), it accepts any URL at enqueue and fails a non-HTTP one at send
// ("Unsupported protocol"), follows redirects, words connection errors as curl does, and
// survives a database restart: it reconnects with backoff, as pg_net's worker restarts with Postgres.
import pg from 'pg';

export interface WorkerOptions {
  databaseUrl: string;
  /** Most requests in flight at once. */
  concurrency?: number;
  /** Poll interval; NOTIFY wakes the worker sooner. */
  pollMs?: number;
  log?: (line: string) => void;
  /**
   * Local convenience: SQL run (at most every afterMs) once responses were recorded, e.g. the
   * DTMA harvest, so the local stack reacts within a second where pg_cron 1.4 ticks by the minute.
   */
  afterResponsesSql?: string;
  afterMs?: number;
}

export interface PgNetWorker {
  stop(): Promise<void>;
  /** Requests sent since start. */
  readonly sent: number;
}

interface QueuedRequest {
  id: string;
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  headers: Record<string, string>;
  body: Buffer | null;
  timeout_milliseconds: number;
  server_started: string;
}

interface Outcome {
  status_code: number | null;
  content_type: string | null;
  headers: Record<string, string> | null;
  content: string | null;
  timed_out: boolean;
  error_msg: string | null;
}

// Each claim notes the server's start time: a request claimed before a database restart is lost
// with it, as pg_net's in-flight requests die with its worker; its late answer is not recorded
// (the ids start again after a crash, so it would land on another request's id).
const CLAIM_SQL = `
  delete from net.http_request_queue q
   where q.id in (select id from net.http_request_queue order by id limit $1 for update skip locked)
  returning q.id::text, q.method::text, q.url, q.headers, q.body, q.timeout_milliseconds, pg_postmaster_start_time()::text as server_started`;

const RECORD_SQL = `
  insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
  select $1, $2, $3, $4, $5, $6, $7 where pg_postmaster_start_time()::text = $8`;

const TTL_SQL = `
  delete from net._http_response
   where created < now() - coalesce(nullif(current_setting('pg_net.ttl', true), ''), '6 hours')::interval`;

// libcurl's words for what fetch reports by code, so that nothing downstream sees Node's wording.
const CURL_ERRORS: Record<string, string> = {
  ECONNREFUSED: "Couldn't connect to server",
  EHOSTUNREACH: "Couldn't connect to server",
  ENETUNREACH: "Couldn't connect to server",
  EADDRNOTAVAIL: "Couldn't connect to server",
  ENOTFOUND: "Couldn't resolve host name",
  EAI_AGAIN: "Couldn't resolve host name",
  ECONNRESET: 'Failure when receiving data from the peer',
  UND_ERR_SOCKET: 'Failure when receiving data from the peer',
};

const failure = (error_msg: string, timed_out = false): Outcome =>
  ({ status_code: null, content_type: null, headers: null, content: null, timed_out, error_msg });

export async function send(req: QueuedRequest): Promise<Outcome> {
  const started = Date.now();
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return failure('URL using bad/illegal format or missing URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return failure('Unsupported protocol');
  try {
    const res = await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body ? new Uint8Array(req.body) : undefined,
      signal: AbortSignal.timeout(req.timeout_milliseconds),
      redirect: 'follow',
    });
    const content = await res.text();
    return {
      status_code: res.status,
      content_type: res.headers.get('content-type'),
      headers: Object.fromEntries(res.headers.entries()),
      content,
      timed_out: false,
      error_msg: null,
    };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    if (e.name === 'TimeoutError' || e.name === 'AbortError') {
      return failure(`Timeout of ${req.timeout_milliseconds} ms reached. Total time: ${Date.now() - started} ms`, true);
    }
    const code = e.cause?.code ?? '';
    return failure(CURL_ERRORS[code] ?? `${code || e.name}: ${e.cause?.message ?? e.message}`);
  }
}

export async function startPgNetWorker(opts: WorkerOptions): Promise<PgNetWorker> {
  const concurrency = opts.concurrency ?? 64;
  const pollMs = opts.pollMs ?? 250;
  const log = opts.log ?? (() => {});
  const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: 4 });
  // An idle client that loses its server (a database restart) must not take the worker down.
  pool.on('error', (err) => log(`pg_net: idle connection lost: ${err.message}`));
  let listener: pg.Client | null = null;
  let stopping = false;
  let inFlight = 0;
  let sent = 0;
  let claiming: Promise<void> | null = null;
  let again = false;
  const idle: Array<() => void> = [];

  let afterTimer: NodeJS.Timeout | null = null;
  const runAfter = () => {
    if (!opts.afterResponsesSql || afterTimer || stopping) return;
    afterTimer = setTimeout(() => {
      afterTimer = null;
      pool.query(opts.afterResponsesSql!).catch((err: Error) => log(`pg_net: after-responses SQL failed: ${err.message}`));
    }, opts.afterMs ?? 100);
  };
  const record = async (req: QueuedRequest, o: Outcome) => {
    const { rowCount } = await pool.query(RECORD_SQL,
      [req.id, o.status_code, o.content_type, o.headers, o.content, o.timed_out, o.error_msg, req.server_started]);
    if (rowCount === 0) log(`pg_net ${req.id}: claimed before a database restart, its answer is dropped`);
    runAfter();
  };

  const dispatch = (req: QueuedRequest) => {
    inFlight++;
    sent++;
    void send(req)
      .then((o) => record(req, o).then(() =>
        log(`pg_net ${req.id} ${req.method} ${req.url} -> ${o.status_code ?? (o.timed_out ? 'timeout' : o.error_msg)}`)))
      .catch((err: Error) => log(`pg_net ${req.id}: could not record the response: ${err.message}`))
      .finally(() => {
        inFlight--;
        if (inFlight === 0) idle.splice(0).forEach((f) => f());
        void claim();
      });
  };

  // One claimer at a time; a wake-up during a claim triggers another pass afterwards.
  const claimPass = async (): Promise<void> => {
    try {
      do {
        again = false;
        const free = concurrency - inFlight;
        if (free <= 0) break;
        const { rows } = await pool.query<QueuedRequest>(CLAIM_SQL, [free]);
        // Claimed rows are gone from the queue: send them even when stopping, or they are lost.
        rows.forEach(dispatch);
        if (rows.length === free) again = true;
      } while (again && !stopping);
    } catch (err) {
      log(`pg_net: claim failed: ${(err as Error).message}`);
    }
  };
  const claim = (): Promise<void> => {
    if (stopping) return Promise.resolve();
    if (claiming) { again = true; return claiming; }
    claiming = claimPass().finally(() => { claiming = null; });
    return claiming;
  };

  // LISTEN for wake-ups; when the connection is lost (a database restart), reconnect with
  // backoff. Polling keeps the worker sending meanwhile.
  let listenerRetry: NodeJS.Timeout | null = null;
  const connectListener = async (delayMs = 250): Promise<void> => {
    const client = new pg.Client({ connectionString: opts.databaseUrl });
    const lost = (err?: Error) => {
      if (listener !== client) return;
      listener = null;
      client.end().catch(() => {});
      if (stopping) return;
      log(`pg_net: listener lost${err ? `: ${err.message}` : ''}; reconnecting in ${delayMs} ms`);
      listenerRetry = setTimeout(() => {
        listenerRetry = null;
        connectListener(Math.min(delayMs * 2, 5_000)).catch(() => {});
      }, delayMs);
    };
    listener = client;
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', () => void claim());
    try {
      await client.connect();
      await client.query('listen pg_net_request');
      if (delayMs > 250) log('pg_net: listener reconnected');
      void claim();
    } catch (err) {
      lost(err as Error);
      throw err;
    }
  };
  try {
    await connectListener();
  } catch (err) {
    // At start a database that does not answer is the caller's error, not something to wait for.
    stopping = true;
    if (listenerRetry) clearTimeout(listenerRetry);
    await pool.end();
    throw err;
  }

  const poll = setInterval(() => void claim(), pollMs);
  const ttl = setInterval(() => {
    pool.query(TTL_SQL).catch((err: Error) => log(`pg_net: ttl clean-up failed: ${err.message}`));
  }, 60_000);
  await pool.query(TTL_SQL);
  void claim();

  return {
    get sent() { return sent; },
    async stop() {
      stopping = true;
      clearInterval(poll);
      clearInterval(ttl);
      if (afterTimer) clearTimeout(afterTimer);
      if (listenerRetry) clearTimeout(listenerRetry);
      if (claiming) await claiming;
      if (inFlight > 0) await new Promise<void>((resolve) => idle.push(resolve));
      const last = listener;
      listener = null;
      await last?.end().catch(() => {});
      await pool.end();
    },
  };
}
