/**
 * The layout rules a newcomer relies on, as a test:
 * - product code (the SDK in client/src, the Edge Functions in supabase/functions, the console
 *   in console/src) never imports test code, directly or through another module;
 * - test helpers live in one home, test/support, with one createUser;
 * - a source file longer than 400 lines says why at its top.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PRODUCT_ROOTS = ['client/src', 'supabase/functions', 'console/src'];
const TEST_HOME = 'test/support';
const SOURCE = /\.(ts|tsx|mts|js|mjs)$/;
const MAX_LINES = 400;
/** The phrase a long file's header uses to say why it is long. */
const LONG_FILE_REASON = /longer than 400 lines because/i;
/** Long files whose reason lives here, because they are not this branch's to edit. */
const LONG_FILES_ELSEWHERE: Record<string, string> = {
  'scripts/catalog-snapshot.ts': 'being rewritten with the catalog list as data (issue 13); drop this entry with that change',
};

function walk(dir: string): string[] {
  const absolute = path.join(ROOT, dir);
  if (!existsSync(absolute)) return [];
  return readdirSync(absolute).flatMap((entry) => {
    if (entry === 'node_modules' || entry.startsWith('.')) return [];
    const relative = path.join(dir, entry);
    return statSync(path.join(ROOT, relative)).isDirectory() ? walk(relative) : SOURCE.test(entry) ? [relative] : [];
  });
}

/** Every text file of the project under `dir` (sources, SQL, Markdown, shell). */
function walkAll(dir: string): string[] {
  const absolute = path.join(ROOT, dir);
  if (!existsSync(absolute)) return [];
  return readdirSync(absolute).flatMap((entry) => {
    if (entry === 'node_modules' || entry === 'migrations' || entry.startsWith('.')) return [];
    const relative = path.join(dir, entry);
    if (statSync(path.join(ROOT, relative)).isDirectory()) return walkAll(relative);
    return /\.(ts|tsx|js|mjs|sql|md|sh)$/.test(entry) ? [relative] : [];
  });
}

const isTestCode = (file: string): boolean => /\.test\.[a-z]+$/.test(file) || file.startsWith('test/');

/** The relative module specifiers a file imports or re-exports, statically or dynamically. */
export function importsOf(text: string): string[] {
  const specifiers: string[] = [];
  const patterns = [/\b(?:import|export)\s[^'"]*?\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const pattern of patterns) for (const match of text.matchAll(pattern)) if (match[1]?.startsWith('.')) specifiers.push(match[1]);
  return specifiers;
}

/** The repository file a relative specifier names (`./x.js` may be `./x.ts`), or null. */
function resolve(from: string, specifier: string): string | null {
  const base = path.join(path.dirname(from), specifier);
  const candidates = [base, base.replace(/\.js$/, '.ts'), base.replace(/\.mjs$/, '.mts'), `${base}.ts`, path.join(base, 'index.ts')];
  return candidates.find((candidate) => existsSync(path.join(ROOT, candidate)) && statSync(path.join(ROOT, candidate)).isFile()) ?? null;
}

describe('the layout', () => {
  it('keeps product code away from test code, through every import', () => {
    const offences: string[] = [];
    const seen = new Set<string>();
    const visit = (file: string, chain: string[]): void => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const specifier of importsOf(readFileSync(path.join(ROOT, file), 'utf8'))) {
        const target = resolve(file, specifier);
        if (target === null) continue;
        if (isTestCode(target)) offences.push([...chain, file, target].join(' -> '));
        else visit(target, [...chain, file]);
      }
    };
    const roots = PRODUCT_ROOTS.flatMap(walk).filter((file) => !isTestCode(file));
    expect(roots.length).toBeGreaterThan(10);
    for (const file of roots) visit(file, []);
    expect(offences).toEqual([]);
  });

  it('finds what the walker must find: an import of a test helper, static or dynamic', () => {
    const text = `import { a } from '../../test/support/db.ts';\nexport * from './x.js';\nconst m = await import('./y.ts');\nimport 'node:fs';`;
    expect(importsOf(text)).toEqual(['../../test/support/db.ts', './x.js', './y.ts']);
  });

  it('keeps every test helper in test/support, with one createUser', () => {
    const everywhere = ['client', 'scripts', 'test', 'supabase', 'console'].flatMap(walk);
    const definers = everywhere.filter((file) => /export\s+(async\s+)?function\s+createUser\b/.test(readFileSync(path.join(ROOT, file), 'utf8')));
    expect(definers).toEqual([`${TEST_HOME}/db.ts`]);
    const helpersElsewhere = everywhere.filter((file) => /(^|\/)(testing|test-support|fixtures?)(\/|\.ts$)/.test(file) && !file.startsWith(TEST_HOME));
    expect(helpersElsewhere).toEqual([]);
  });

  it("cites the project's own documents, never a design file that is not in the repository", () => {
    const files = ['client', 'scripts', 'test', 'db', 'docs', 'supabase', 'console'].flatMap((dir) => walkAll(dir)).concat(['README.md']);
    const citing = files.filter((file) => readFileSync(path.join(ROOT, file), 'utf8').includes('DESIGN' + '.md'));
    expect(citing).toEqual([]);
  });

  it('says at the top of every source file longer than 400 lines why it is long', () => {
    const sources = ['client', 'scripts', 'test', 'supabase/functions', 'console/src'].flatMap(walk).filter((file) => !isTestCode(file));
    const unexplained = sources.filter((file) => {
      const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n');
      if (lines.length <= MAX_LINES || file in LONG_FILES_ELSEWHERE) return false;
      return !LONG_FILE_REASON.test(lines.slice(0, 20).join('\n'));
    });
    expect(unexplained, `say "longer than 400 lines because ..." in the header, or split the file`).toEqual([]);
  });
});
