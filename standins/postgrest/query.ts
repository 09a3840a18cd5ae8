/**
 * PostgREST's read grammar, the part supabase-js's `from(table).select(...)` uses for flat
 * reads: `select=a,b` (or `*`), horizontal filters `col=op.value` with eq, neq, gt, gte, lt,
 * lte, like, ilike, is, in and their `not.` forms, `order=col.desc.nullslast,...`, `limit`,
 * `offset`. Everything else (embedding, `or=`, aggregates, JSON paths) is refused with
 * PGRST100 rather than half-understood. Identifiers are quoted and values are bound
 * parameters, so nothing from the URL reaches the SQL text unquoted.
 */

export interface ReadQuery {
  sql: string;
  countSql: string;
  values: unknown[];
}

export class QueryError extends Error {
  readonly code = 'PGRST100';
  constructor(message: string, readonly details: string | null = null) {
    super(message);
  }
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function ident(name: string, what: string): string {
  if (!IDENT.test(name)) throw new QueryError(`"${name}" is not a ${what} this stand-in understands`, 'plain identifiers only: no embedding, casts or JSON paths');
  return `"${name}"`;
}

const OPERATORS: Record<string, string> = { eq: '=', neq: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=', like: 'like', ilike: 'ilike' };

/** `(a,"b,c",d)` as PostgREST reads an in-list. */
function parseList(text: string): string[] {
  if (!text.startsWith('(') || !text.endsWith(')')) throw new QueryError(`in needs a parenthesised list, not ${text}`);
  const items: string[] = [];
  const body = text.slice(1, -1);
  let current = '';
  let quoted = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c === '"') quoted = !quoted;
    else if (c === '\\' && quoted) current += body[++i] ?? '';
    else if (c === ',' && !quoted) {
      items.push(current);
      current = '';
    } else current += c;
  }
  if (body.length > 0) items.push(current);
  return items;
}

function filter(column: string, expression: string, values: unknown[]): string {
  const col = ident(column, 'column');
  let negate = false;
  let rest = expression;
  if (rest.startsWith('not.')) {
    negate = true;
    rest = rest.slice(4);
  }
  const dot = rest.indexOf('.');
  if (dot < 0) throw new QueryError(`"${expression}" is not an operator.value filter`);
  const op = rest.slice(0, dot);
  const operand = rest.slice(dot + 1);
  let condition: string;
  if (op === 'is') {
    const literal = { null: 'null', true: 'true', false: 'false', unknown: 'unknown' }[operand.toLowerCase()];
    if (!literal) throw new QueryError(`is takes null, true, false or unknown, not ${operand}`);
    condition = `${col} is ${literal}`;
  } else if (op === 'in') {
    values.push(parseList(operand));
    condition = `${col} = any ($${values.length})`;
  } else if (OPERATORS[op]) {
    values.push(op === 'like' || op === 'ilike' ? operand.replace(/\*/g, '%') : operand);
    condition = `${col} ${OPERATORS[op]} $${values.length}`;
  } else {
    throw new QueryError(`the operator ${op} is not supported by this stand-in`);
  }
  return negate ? `not (${condition})` : condition;
}

function orderBy(text: string): string {
  return text
    .split(',')
    .map((term) => {
      const [column = '', ...modifiers] = term.split('.');
      const parts = [ident(column, 'column')];
      for (const modifier of modifiers) {
        const sql = { asc: 'asc', desc: 'desc', nullsfirst: 'nulls first', nullslast: 'nulls last' }[modifier];
        if (!sql) throw new QueryError(`unknown order modifier ${modifier}`);
        parts.push(sql);
      }
      return parts.join(' ');
    })
    .join(', ');
}

function nonNegative(name: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new QueryError(`${name} must be a non-negative integer`);
  return Number(text);
}

/** The SQL of `GET /rest/v1/<relation>?<params>`, in PostgREST's shape: one JSON array of rows. */
export function buildRead(relation: string, params: URLSearchParams): ReadQuery {
  const from = `public.${ident(relation, 'relation')}`;
  const values: unknown[] = [];
  const where: string[] = [];
  let columns = '*';
  let order = '';
  let limit = '';
  let offset = '';
  for (const [key, value] of params) {
    if (key === 'select') {
      const list = value.split(',').map((c) => c.trim()).filter(Boolean);
      columns = list.length === 0 || list.includes('*') ? '*' : list.map((c) => ident(c, 'column')).join(', ');
    } else if (key === 'order') order = ` order by ${orderBy(value)}`;
    else if (key === 'limit') limit = ` limit ${nonNegative('limit', value)}`;
    else if (key === 'offset') offset = ` offset ${nonNegative('offset', value)}`;
    else if (key === 'or' || key === 'and' || key === 'columns' || key === 'on_conflict') throw new QueryError(`${key}= is not supported by this stand-in`);
    else where.push(filter(key, value, values));
  }
  const whereSql = where.length > 0 ? ` where ${where.join(' and ')}` : '';
  return {
    sql: `select coalesce(pg_catalog.json_agg(t), '[]'::json) as body from (select ${columns} from ${from}${whereSql}${order}${limit}${offset}) t`,
    countSql: `select pg_catalog.count(*)::bigint as total from ${from}${whereSql}`,
    values,
  };
}
