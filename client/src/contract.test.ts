/**
 * The contract between the database and the SDK, held together by a test rather than by care:
 * - every function of schema `public` has its zod schema in rpcSchemas (schemas.ts), or is
 *   listed in NOT_WRAPPED with the reason; every schema names a function that exists;
 * - each overload's argument names match one strict object of the schema, optional exactly
 *   where the SQL argument has a default;
 * - a function that returns rows has its columns, all of them and no other, in the row schema;
 *   a scalar result parses what that SQL type serialises to;
 * - each JSON Schema the database validates with (private.json_schema_error) gives the same
 *   verdict as its zod twin on the same samples.
 * A function added later fails here until it has its schema or its NOT_WRAPPED entry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type pg from 'pg';
import { newPool } from '../../test/support/db.ts';
import * as sdk from './index.ts';
import {
  ConnectionConfigSchema,
  CreateServerConfigSchema,
  InteractionSchema,
  UpdateServerConfigSchema,
  rpcSchemas,
} from './schemas.ts';

/** Public functions the SDK deliberately does not wrap, each with its reason. */
const NOT_WRAPPED: Record<string, string> = {};

interface SqlFunction {
  name: string;
  signature: string;
  /** Input argument names, in order. */
  inputs: string[];
  /** How many of the last inputs have a default. */
  defaults: number;
  /** Output columns of a function returning rows (TABLE or OUT arguments); null for a scalar. */
  columns: string[] | null;
  returnsSet: boolean;
  /** The result type, e.g. uuid, boolean, jsonb, void. */
  resultType: string;
}

let pool: pg.Pool;
let functions: SqlFunction[];

beforeAll(async () => {
  pool = newPool(2);
  const { rows } = await pool.query<{
    name: string;
    signature: string;
    arg_names: string[] | null;
    arg_modes: string[] | null;
    defaults: number;
    returns_set: boolean;
    result_type: string;
  }>(`
    select p.proname as name, p.oid::regprocedure::text as signature, p.proargnames as arg_names,
           p.proargmodes::text[] as arg_modes, p.pronargdefaults as defaults, p.proretset as returns_set,
           p.prorettype::regtype::text as result_type
      from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'public' and p.prokind = 'f'
       and not exists (select from pg_catalog.pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
     order by 1, 2`);
  functions = rows.map((row) => {
    const names = row.arg_names ?? [];
    const modes = row.arg_modes ?? names.map(() => 'i');
    const inputs = names.filter((_, i) => ['i', 'b', 'v'].includes(modes[i] ?? 'i'));
    const outputs = names.filter((_, i) => ['o', 'b', 't'].includes(modes[i] ?? 'i'));
    return {
      name: row.name,
      signature: row.signature,
      inputs,
      defaults: row.defaults,
      columns: outputs.length > 0 ? outputs : null,
      returnsSet: row.returns_set,
      resultType: row.result_type,
    };
  });
});

afterAll(async () => {
  await pool.end();
});

// ---------------------------------------------------------------- reading the zod schemas

/** The strict objects an args schema accepts: one, or one per member of a union. */
function argShapes(schema: z.ZodType): Array<Record<string, z.ZodType>> {
  if (schema instanceof z.ZodObject) return [schema.shape as Record<string, z.ZodType>];
  if (schema instanceof z.ZodUnion) return (schema.options as z.ZodType[]).flatMap(argShapes);
  throw new Error(`an args schema must be an object or a union of objects, not ${schema.constructor.name}`);
}

/** `name` and `name?` for each key, optional when the schema accepts its absence. */
function describeShape(shape: Record<string, z.ZodType>): string[] {
  return Object.entries(shape).map(([key, value]) => (value.safeParse(undefined).success ? `${key}?` : key));
}

function describeSql(fn: SqlFunction): string[] {
  return fn.inputs.map((name, i) => (i >= fn.inputs.length - fn.defaults ? `${name}?` : name));
}

/** The column names a row schema declares: an object's keys, or the same keys in every member of a union. */
function rowColumns(schema: z.ZodType): string[] {
  if (schema instanceof z.ZodObject) return Object.keys(schema.shape);
  if (schema instanceof z.ZodUnion) {
    const each = (schema.options as z.ZodType[]).map((option) => rowColumns(option).sort().join(','));
    expect(new Set(each).size, 'every member of a row union declares the same columns').toBe(1);
    return rowColumns(schema.options[0] as z.ZodType);
  }
  throw new Error(`a row schema must be an object or a union of objects, not ${schema.constructor.name}`);
}

/** What each scalar SQL type looks like once serialised (PostgREST, or the direct transport). */
const SCALAR_SAMPLES: Record<string, { accepts: unknown[]; refuses: unknown[] }> = {
  uuid: { accepts: ['3f0c8a57-2b1e-4c3d-9a8b-7c6d5e4f3a2b'], refuses: ['not-a-uuid', 1] },
  boolean: { accepts: [true, false], refuses: ['true', 1] },
  integer: { accepts: [0, 42], refuses: [1.5, '42'] },
  bigint: { accepts: [0, 42], refuses: [1.5] },
  text: { accepts: ['x'], refuses: [1] },
  'timestamp with time zone': { accepts: ['2026-11-29T12:00:00.123456+00:00'], refuses: ['yesterday'] },
  'bigint[]': { accepts: [[], [1, 42]], refuses: [[1.5], 1] },
};

const wrapped = Object.keys(rpcSchemas) as Array<keyof typeof rpcSchemas>;

describe('the SQL-to-TypeScript contract', () => {
  it('has a schema for every public function, and no schema without its function', () => {
    const sqlNames = new Set(functions.map((fn) => fn.name));
    const missing = [...sqlNames].filter((name) => !(name in rpcSchemas) && !(name in NOT_WRAPPED));
    expect(missing, 'public functions with no schema in client/src/schemas.ts (add one, or list them in NOT_WRAPPED with the reason)').toEqual([]);
    expect(wrapped.filter((name) => !sqlNames.has(name)), 'schemas naming no public function').toEqual([]);
    expect(Object.keys(NOT_WRAPPED).filter((name) => !sqlNames.has(name) || name in rpcSchemas), 'stale NOT_WRAPPED entries').toEqual([]);
  });

  it('names the arguments as SQL does, optional exactly where SQL has a default', () => {
    for (const name of wrapped) {
      const overloads = functions.filter((fn) => fn.name === name).map((fn) => describeSql(fn).sort().join(', '));
      const shapes = argShapes(rpcSchemas[name].args).map((shape) => describeShape(shape).sort().join(', '));
      expect(shapes.sort(), `${name}: zod arguments vs SQL overloads`).toEqual(overloads.sort());
    }
  });

  it('declares every column of a function that returns rows, and parses the scalar a function returns', () => {
    for (const name of wrapped) {
      const overloads = functions.filter((fn) => fn.name === name);
      const result: z.ZodType = rpcSchemas[name].result;
      for (const fn of overloads) {
        if (fn.columns) {
          expect(result, `${fn.signature} returns rows: its schema is an array`).toBeInstanceOf(z.ZodArray);
          const row = (result as z.ZodArray<z.ZodType>).element;
          expect(rowColumns(row).sort(), `${fn.signature}: columns`).toEqual([...fn.columns].sort());
        } else if (fn.resultType === 'void') {
          expect(result, `${fn.signature} returns void`).toBe(sdk.VoidResultSchema);
        } else if (fn.resultType === 'jsonb') {
          // A jsonb result is built in SQL (jsonb_build_object, to_jsonb): its shape is checked by
          // the suites that call it through the SDK, which parse every answer with this schema.
          expect(result.safeParse('a string').success, `${fn.signature} returns a JSON document`).toBe(false);
        } else {
          const samples = SCALAR_SAMPLES[fn.resultType];
          expect(samples, `${fn.signature} returns ${fn.resultType}: add its samples to SCALAR_SAMPLES`).toBeDefined();
          for (const value of samples?.accepts ?? []) expect(result.safeParse(value).success, `${fn.signature} accepts ${JSON.stringify(value)}`).toBe(true);
          for (const value of samples?.refuses ?? []) expect(result.safeParse(value).success, `${fn.signature} refuses ${JSON.stringify(value)}`).toBe(false);
        }
      }
    }
  });
});

// ---------------------------------------------------------------- JSON Schemas and their zod twins

const UUID = '3f0c8a57-2b1e-4c3d-9a8b-7c6d5e4f3a2b';
const long = (n: number): string => 'x'.repeat(n);

interface Twin {
  /** The SQL expression that yields the JSON Schema the database validates with. */
  sql: string;
  zod: z.ZodType;
  samples: unknown[];
}

const TWINS: Record<string, Twin> = {
  'manage_mcp_servers create server_config': {
    sql: `select private.server_config_schema('create') as schema`,
    zod: CreateServerConfigSchema,
    samples: [
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1' },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'm', display_name: 'Memory', configuration: { a: 1 }, priority: 1000 },
      { toolbox_id: UUID, catalog_name: 'memory' },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1', extra: true },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'Memory 1' },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: '-memory' },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: long(63) },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: long(64) },
      { toolbox_id: 'not-a-uuid', catalog_name: 'memory', instance_name: 'memory-1' },
      { toolbox_id: UUID, catalog_name: '', instance_name: 'memory-1' },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1', display_name: '' },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1', display_name: long(201) },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1', configuration: [] },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1', priority: -1 },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1', priority: 1001 },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1', priority: 1.5 },
      { toolbox_id: UUID, catalog_name: 'memory', instance_name: 'memory-1', priority: '5' },
      [],
      'memory',
    ],
  },
  'manage_mcp_servers update server_config': {
    sql: `select private.server_config_schema('update') as schema`,
    zod: UpdateServerConfigSchema,
    samples: [
      {},
      { display_name: 'Memory', configuration: {}, priority: 0 },
      { instance_name: 'renamed' },
      { toolbox_id: UUID },
      { display_name: '' },
      { priority: 2000 },
      { configuration: 'x' },
    ],
  },
  'agent_mcp_connections.connection_config': {
    sql: `select private.connection_config_schema() as schema`,
    zod: ConnectionConfigSchema,
    samples: [
      {},
      { timeoutMs: 100, maxRetries: 0, priority: 0, enabled: true },
      { timeoutMs: 120_000, maxRetries: 5, priority: 1000, enabled: false },
      { timeoutMs: 99 },
      { timeoutMs: 120_001 },
      { timeoutMs: 1000.5 },
      { maxRetries: 6 },
      { priority: -1 },
      { enabled: 'yes' },
      { retries: 1 },
      null,
    ],
  },
  'audit_mcp_interactions interaction': {
    sql: `select private.interaction_schema() as schema`,
    zod: InteractionSchema,
    samples: [
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: 12, tool_name: 'read_graph', server_instance_id: UUID },
      { interaction_type: 'context_request', outcome: 'timeout', duration_ms: 0, arguments: { any: ['thing'] }, request_id: 'r1', error: 'slow' },
      { interaction_type: 'error', outcome: 'denied', duration_ms: 86_400_000 },
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: 86_400_001 },
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: -1 },
      { interaction_type: 'tool_call', outcome: 'success' },
      { interaction_type: 'resource_read', outcome: 'success', duration_ms: 1 },
      { interaction_type: 'tool_call', outcome: 'maybe', duration_ms: 1 },
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: 1, tool_name: '' },
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: 1, tool_name: long(201) },
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: 1, error: long(2001) },
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: 1, request_id: long(201) },
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: 1, server_instance_id: 'nope' },
      { interaction_type: 'tool_call', outcome: 'success', duration_ms: 1, who: 'me' },
    ],
  },
};

describe('JSON Schemas of the database and their zod twins', () => {
  for (const [what, twin] of Object.entries(TWINS)) {
    it(`give the same verdict on every sample: ${what}`, async () => {
      const { rows } = await pool.query<{ schema: unknown }>(twin.sql);
      const schema = rows[0]?.schema;
      for (const sample of twin.samples) {
        const { rows: verdict } = await pool.query<{ error: string | null }>('select private.json_schema_error($1::jsonb, $2::jsonb) as error', [
          JSON.stringify(schema),
          JSON.stringify(sample),
        ]);
        const sqlAccepts = verdict[0]?.error === null;
        expect(twin.zod.safeParse(sample).success, `${JSON.stringify(sample)}: the database says ${verdict[0]?.error ?? 'valid'}`).toBe(sqlAccepts);
      }
    });
  }
});

describe("the SDK's entry", () => {
  it('exports what a user needs', () => {
    for (const name of [
      'createRpc',
      'callRpc',
      'directTransport',
      'supabaseTransport',
      'createMcpChat',
      'createManagerHandler',
      'getAgentOAuthToken',
      'OAuthRefreshError',
      'rpcSchemas',
      'McpControlPlaneError',
    ]) {
      expect((sdk as Record<string, unknown>)[name], name).toBeDefined();
    }
  });
});
