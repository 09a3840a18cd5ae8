#!/usr/bin/env node
// The lint and advisors gates: `supabase db lint` (plpgsql_check) and `supabase db advisors`
// (Supabase's splinter lints) against a database URL. Any ERROR or WARN finding on the
// project's schemas fails the run; INFO findings are listed for the reader.
import { execFileSync } from 'node:child_process';

const url = process.argv[2];
if (!url) {
  console.error('usage: node scripts/gates.mjs <database url>');
  process.exit(2);
}
const projectSchemas = (process.env.PROJECT_SCHEMAS ?? 'public,private').split(',');
// Platform schemas that db/compat stands in for are Supabase's, not the project's.
const platformSchemas = new Set(['auth', 'vault', 'net', 'extensions', 'cron', 'tests', 'storage', 'graphql', 'realtime', 'supabase_migrations']);

function supabase(args) {
  try {
    return JSON.parse(execFileSync('npx', ['--no-install', 'supabase', ...args, `--remote=${url}`, '--output-format', 'json'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (err) {
    const out = `${err.stdout ?? ''}`.trim();
    if (out.startsWith('{')) return JSON.parse(out);
    console.error(`supabase ${args.join(' ')} failed:\n${err.stderr ?? err.message}`);
    process.exit(1);
  }
}

let failures = 0;
const lint = supabase(['db', 'lint', '--schema', projectSchemas.join(','), '--level', 'warning']);
for (const fn of lint.results ?? []) {
  for (const issue of fn.issues ?? []) {
    failures++;
    console.log(`  lint ${issue.level.toUpperCase()} ${fn.function}: ${issue.message}` +
      (issue.query?.text ? ` (in: ${issue.query.text})` : '') + (issue.sqlState ? ` [${issue.sqlState}]` : ''));
  }
}
console.log(`==> supabase db lint (${projectSchemas.join(', ')}): ${failures} finding(s)`);

const advisors = supabase(['db', 'advisors', '--type', 'all', '--level', 'info']);
const counts = { ERROR: 0, WARN: 0, INFO: 0 };
for (const r of advisors.results ?? []) {
  const schema = r.metadata?.schema;
  if (schema && platformSchemas.has(schema)) continue;
  counts[r.level] = (counts[r.level] ?? 0) + 1;
  const line = `  advisors ${r.level} ${r.name}: ${r.detail}`;
  if (r.level === 'ERROR' || r.level === 'WARN') { failures++; console.log(line); }
  else if (process.env.GATES_VERBOSE) console.log(line);
}
console.log(`==> supabase db advisors: ${counts.ERROR} error, ${counts.WARN} warn, ${counts.INFO} info` +
  (counts.INFO && !process.env.GATES_VERBOSE ? ' (GATES_VERBOSE=1 lists the info findings)' : ''));

if (failures > 0) {
  console.error(`gates failed: ${failures} finding(s) at WARN or above; fix them in db/`);
  process.exit(1);
}
