/**
 * The RPC transport over a Postgres connection pool (node-postgres), for servers, workers and
 * tests that reach the database directly. Each call reproduces what PostgREST does for
 * `POST /rpc/<fn>`, so that the database sees the same request either way:
 *
 *   begin [read only, when the function is stable or immutable];
 *   the impersonated role's own settings (ALTER ROLE ... SET, e.g. statement_timeout);
 *   select set_config('role', <role claim>, true), set_config('request.jwt.claims', <claims>, true),
 *          set_config('request.method', 'POST', true), set_config('request.path', '/rpc/<fn>', true);
 *   select ... from public.<fn>(p_x => $1::<type>, ...);   -- named arguments, PostgREST's overload choice
 *   commit;
 *
 * The identity comes from a JWT verified with the project's keys (JWKS or secret), or from claims the server
 * trusts; the role must be anon, authenticated or service_role. Only types from `pg` are
 * used, structurally, so this module loads under Deno as well.
 */
import { McpControlPlaneError, SdkErrorCode, UnavailableError, controlPlaneError } from './errors.ts';
import { parseClaims, verifyJwt, type JwtClaims, type JwtClaimsInput, type JwtKeyInput } from './jwt.ts';
import type { RpcTransport } from './transport.ts';

/** The part of a pg.PoolClient this transport uses. */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  release(destroy?: boolean | Error): void;
}

/** The part of a pg.Pool this transport uses. */
export interface PgPoolLike {
  connect(): Promise<PgClientLike>;
}

export type DirectTransportOptions =
  /** `jwtSecret`: the HS256 secret, or the project's keys (`{ secret?, jwks?, jwksUrl? }`, see jwt.ts). */
  | { pool: PgPoolLike; jwt: string; jwtSecret: JwtKeyInput; claims?: never }
  /** Claims the caller vouches for (a server acting for a user it authenticated); anon when omitted. */
  | { pool: PgPoolLike; claims?: JwtClaimsInput; jwt?: never; jwtSecret?: never };

interface FunctionMeta {
  name: string;
  argNames: string[];
  argTypes: string[];
  requiredArgs: number;
  returnsSet: boolean;
  returnsVoid: boolean;
  returnsComposite: boolean;
  readOnly: boolean;
}

// The schema cache, as PostgREST keeps one: the exposed functions with their argument names
// and types (fully qualified: read with an empty search_path).
const FUNCTIONS_SQL = `
select p.proname as name,
       p.pronargs - p.pronargdefaults as required_args,
       p.proretset as returns_set,
       p.prorettype = 'pg_catalog.void'::pg_catalog.regtype as returns_void,
       (t.typtype = 'c' or p.prorettype = 'pg_catalog.record'::pg_catalog.regtype) as returns_composite,
       p.provolatile <> 'v' as read_only,
       coalesce((select pg_catalog.array_agg(x.name order by x.ord)
                   from rows from (pg_catalog.unnest(coalesce(p.proargnames, pg_catalog.array_fill(''::text, array[p.pronargs]))),
                                   pg_catalog.unnest(coalesce(p.proargmodes, pg_catalog.array_fill('i'::"char", array[p.pronargs]))))
                        with ordinality as x(name, mode, ord)
                  where x.mode in ('i', 'b')), '{}') as arg_names,
       coalesce((select pg_catalog.array_agg(pg_catalog.format_type(a.type, null) order by a.ord)
                   from pg_catalog.unnest(p.proargtypes::pg_catalog.oid[]) with ordinality as a(type, ord)), '{}') as arg_types
  from pg_catalog.pg_proc p
  join pg_catalog.pg_type t on t.oid = p.prorettype
 where p.pronamespace = 'public'::pg_catalog.regnamespace and p.prokind = 'f'
   and not coalesce('v' = any (p.proargmodes), false)`;

// Settings the role was given with ALTER ROLE ... SET (database-specific ones last, so they win).
const ROLE_SETTINGS_SQL = `
select pg_catalog.split_part(c, '=', 1) as name, pg_catalog.substr(c, pg_catalog.strpos(c, '=') + 1) as value
  from pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c
 where s.setrole = (select r.oid from pg_catalog.pg_roles r where r.rolname = $1)
   and s.setdatabase in (0, (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()))
 order by s.setdatabase`;

interface PoolCache {
  functions?: Promise<Map<string, FunctionMeta[]>>;
  roleSettings: Map<string, Promise<{ names: string[]; values: string[] }>>;
}

const caches = new WeakMap<PgPoolLike, PoolCache>();

function cacheOf(pool: PgPoolLike): PoolCache {
  let cache = caches.get(pool);
  if (!cache) {
    cache = { roleSettings: new Map() };
    caches.set(pool, cache);
  }
  return cache;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

async function withClient<T>(pool: PgPoolLike, work: (client: PgClientLike) => Promise<T>): Promise<T> {
  let client: PgClientLike;
  try {
    client = await pool.connect();
  } catch (error) {
    throw toControlPlaneError(error);
  }
  let broken: Error | undefined;
  try {
    return await work(client);
  } catch (error) {
    try {
      await client.query('rollback');
    } catch (rollbackError) {
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    }
    throw toControlPlaneError(error);
  } finally {
    client.release(broken);
  }
}

async function loadFunctions(pool: PgPoolLike): Promise<Map<string, FunctionMeta[]>> {
  return withClient(pool, async (client) => {
    await client.query("begin read only; set local search_path = ''");
    const { rows } = await client.query(FUNCTIONS_SQL);
    await client.query('commit');
    const byName = new Map<string, FunctionMeta[]>();
    for (const row of rows) {
      const meta: FunctionMeta = {
        name: String(row.name),
        argNames: (row.arg_names as string[]) ?? [],
        argTypes: (row.arg_types as string[]) ?? [],
        requiredArgs: Number(row.required_args),
        returnsSet: row.returns_set === true,
        returnsVoid: row.returns_void === true,
        returnsComposite: row.returns_composite === true,
        readOnly: row.read_only === true,
      };
      if (meta.argNames.some((name) => name === '')) continue; // unnamed arguments: not callable by name
      byName.set(meta.name, [...(byName.get(meta.name) ?? []), meta]);
    }
    return byName;
  });
}

/** PostgREST's choice among overloads: every key names a parameter, every required parameter is given. */
function chooseOverload(candidates: FunctionMeta[], keys: string[]): FunctionMeta[] {
  return candidates.filter(
    (meta) => keys.every((key) => meta.argNames.includes(key)) && meta.argNames.slice(0, meta.requiredArgs).every((name) => keys.includes(name)),
  );
}

async function resolveFunction(pool: PgPoolLike, name: string, keys: string[]): Promise<FunctionMeta> {
  const cache = cacheOf(pool);
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!cache.functions || attempt === 1) {
      cache.functions = loadFunctions(pool);
      cache.functions.catch(() => {
        cache.functions = undefined;
      });
    }
    const matches = chooseOverload((await cache.functions).get(name) ?? [], keys);
    if (matches.length === 1) return matches[0] as FunctionMeta;
    if (matches.length > 1) {
      throw controlPlaneError({
        code: 'PGRST203',
        message: `Could not choose the best candidate function between: ${matches.map((m) => `public.${name}(${m.argNames.join(', ')})`).join(', ')}`,
        hint: 'pass the arguments that tell the overloads apart',
      });
    }
  }
  throw controlPlaneError({
    code: 'PGRST202',
    message: `Could not find the function public.${name}(${[...keys].sort().join(', ')}) in the schema cache`,
    hint: 'check the function name and the names of its arguments',
  });
}

async function roleSettings(pool: PgPoolLike, client: PgClientLike, role: string): Promise<{ names: string[]; values: string[] }> {
  const cache = cacheOf(pool).roleSettings;
  let settings = cache.get(role);
  if (!settings) {
    settings = client.query(ROLE_SETTINGS_SQL, [role]).then(({ rows }) => ({
      names: rows.map((row) => String(row.name)),
      values: rows.map((row) => String(row.value)),
    }));
    settings.catch(() => cache.delete(role));
    cache.set(role, settings);
  }
  return settings;
}

function callSql(meta: FunctionMeta, keys: string[]): string {
  const args = keys
    .map((key) => {
      const index = meta.argNames.indexOf(key);
      return `${quoteIdent(key)} => $${keys.indexOf(key) + 1}::${meta.argTypes[index]}`;
    })
    .join(', ');
  const call = `public.${quoteIdent(meta.name)}(${args})`;
  if (meta.returnsVoid) return `select ${call}`;
  if (meta.returnsSet) return `select coalesce(pg_catalog.json_agg(r), '[]'::json) as result from ${call} as r`;
  if (meta.returnsComposite) return `select pg_catalog.to_json(r) as result from ${call} as r`;
  return `select pg_catalog.to_json(${call}) as result`;
}

function encodeArgument(meta: FunctionMeta, key: string, value: unknown): unknown {
  if (value === null) return null;
  const type = meta.argTypes[meta.argNames.indexOf(key)];
  return type === 'json' || type === 'jsonb' ? JSON.stringify(value) : value;
}

function isSqlState(code: unknown): code is string {
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

/** A pg error (SQLSTATE, detail, hint) as the SDK's typed error; anything else as UnavailableError. */
export function toControlPlaneError(error: unknown): McpControlPlaneError {
  if (error instanceof McpControlPlaneError) return error;
  const fields = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; message?: unknown; detail?: unknown; hint?: unknown };
  const message = typeof fields.message === 'string' ? fields.message : String(error);
  if (isSqlState(fields.code)) {
    return controlPlaneError(
      {
        code: fields.code,
        message,
        details: typeof fields.detail === 'string' ? fields.detail : null,
        hint: typeof fields.hint === 'string' ? fields.hint : null,
      },
      { cause: error },
    );
  }
  return new UnavailableError({ code: SdkErrorCode.unavailable, message: `database unavailable: ${message}` }, { cause: error });
}

export function directTransport(options: DirectTransportOptions): RpcTransport {
  const { pool } = options;
  // Verified on every call, as PostgREST does per request: a token that expires meanwhile stops working.
  const claims = (): Promise<JwtClaims> =>
    options.jwt !== undefined ? verifyJwt(options.jwt, options.jwtSecret) : Promise.resolve().then(() => parseClaims(options.claims ?? {}));

  return {
    async rpc(name, args) {
      const verified = await claims();
      const keys = Object.keys(args).filter((key) => args[key] !== undefined);
      const meta = await resolveFunction(pool, name, keys);
      const values = keys.map((key) => encodeArgument(meta, key, args[key]));
      return withClient(pool, async (client) => {
        const settings = await roleSettings(pool, client, verified.role);
        await client.query(meta.readOnly ? 'begin isolation level read committed read only' : 'begin isolation level read committed');
        if (settings.names.length > 0) {
          await client.query('select pg_catalog.set_config(s.name, s.value, true) from rows from (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) as s(name, value)', [
            settings.names,
            settings.values,
          ]);
        }
        await client.query(
          `select pg_catalog.set_config('role', $1, true), pg_catalog.set_config('request.jwt.claims', $2, true),
                  pg_catalog.set_config('request.method', 'POST', true), pg_catalog.set_config('request.path', $3, true)`,
          [verified.role, JSON.stringify(verified), `/rpc/${name}`],
        );
        const { rows } = await client.query(callSql(meta, keys), values);
        await client.query('commit');
        if (meta.returnsVoid) return null;
        return rows[0]?.result ?? null;
      });
    },
  };
}
