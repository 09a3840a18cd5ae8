#!/usr/bin/env node
// Builds supabase/migrations from db/ — the one source of the project's SQL.
// Order: every db/schema file (numbered), then db/functions, then db/policies; a functions or
// policies file takes the number of the schema file with the same stem (access.sql -> 30_access.sql).
// The output is generated (git-ignored): edit db/, never supabase/migrations.
import { readdirSync, readFileSync, writeFileSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'supabase', 'migrations');
const sqlFiles = (dir) =>
  existsSync(join(root, dir)) ? readdirSync(join(root, dir)).filter((f) => f.endsWith('.sql')).sort() : [];

const schemaFiles = sqlFiles('db/schema');
const orderOf = new Map();
for (const f of schemaFiles) {
  const m = /^(\d+)_(.+)\.sql$/.exec(f);
  if (!m) throw new Error(`db/schema/${f}: name must be <number>_<domain>.sql`);
  if (!orderOf.has(m[2])) orderOf.set(m[2], Number(m[1]));
}
const byDomainOrder = (dir) =>
  sqlFiles(dir)
    .map((f) => {
      const stem = f.replace(/\.sql$/, '');
      if (!orderOf.has(stem)) throw new Error(`${dir}/${f}: no db/schema/<n>_${stem}.sql gives it a place in the order`);
      return { f, n: orderOf.get(stem) };
    })
    .sort((a, b) => a.n - b.n || a.f.localeCompare(b.f))
    .map(({ f }) => f);

const plan = [
  ...schemaFiles.map((f) => ['schema', f, Number(/^(\d+)_/.exec(f)[1])]),
  ...byDomainOrder('db/functions').map((f) => ['functions', f, orderOf.get(f.replace(/\.sql$/, ''))]),
  ...byDomainOrder('db/policies').map((f) => ['policies', f, orderOf.get(f.replace(/\.sql$/, ''))]),
];

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
// Stable versions: kind (1 schema, 2 functions, 3 policies), the domain's number, then a tie-break;
// adding a domain never renames the migrations of the others.
const kindDigit = { schema: 1, functions: 2, policies: 3 };
const seen = new Map();
for (const [kind, f, n] of plan) {
  const key = `${kind}:${n}`;
  const tie = seen.get(key) ?? 0;
  seen.set(key, tie + 1);
  const version = `20260101${kindDigit[kind]}${String(n).padStart(3, '0')}${String(tie).padStart(2, '0')}`;
  const name = `${version}_${kind}_${f.replace(/^\d+_/, '').replace(/\.sql$/, '')}.sql`;
  const body = readFileSync(join(root, 'db', kind, f), 'utf8');
  writeFileSync(join(out, name), `-- generated from db/${kind}/${f} by scripts/build-migrations.mjs: edit that file, not this one\n${body}`);
}
console.log(`built ${plan.length} migrations in supabase/migrations from db/`);
