// Regenerates db/schema/21_catalog_seed.sql from the real MCP servers: each one is started over
// stdio with the official SDK, and its initialize capabilities and complete tools/list are
// written as one upsert into public.mcp_server_catalog. The catalog therefore pins what the
// servers really present, never a hand-copied manifest.
//
//   npx tsx scripts/catalog-snapshot.ts
//
// The servers are data, in scripts/catalog-servers.json (read by this script only). To add or
// upgrade one: edit that file, re-run, review the diff of the SQL file.
// Same versions in, byte-identical file out (no timestamps; servers, tools and JSON keys sorted).
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { ServerCapabilities, Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUTPUT = path.join(ROOT, 'db', 'schema', '21_catalog_seed.sql');
const SERVERS_FILE = path.join(ROOT, 'scripts', 'catalog-servers.json');
// Servers that are not dev dependencies of the project are installed here, never in the project.
const INSTALL_DIR = '/tmp/catalog-servers';
const TIMEOUT_MS = 30_000;
// Every fake credential or URL given to a server for the snapshot contains this marker, so that
// a server which echoes its configuration into a tool definition is caught, not pinned.
const PLACEHOLDER = 'catalog-snapshot-placeholder';

// The configuration an admin gives when creating an instance, checked by the database. Only this
// draft-07 subset is allowed, because only this subset is enforced there.
const JSON_TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
const ConfigSchemaNode = z.strictObject({
  type: z.enum(JSON_TYPES).optional(),
  description: z.string().optional(),
  get properties() {
    return z.record(z.string(), ConfigSchemaNode).optional();
  },
  required: z.array(z.string()).optional(),
  get additionalProperties() {
    return z.union([z.boolean(), ConfigSchemaNode]).optional();
  },
  get items() {
    return ConfigSchemaNode.optional();
  },
  enum: z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])).min(1).optional(),
  minLength: z.int().nonnegative().optional(),
  maxLength: z.int().nonnegative().optional(),
  minimum: z.number().optional(),
  maximum: z.number().optional(),
  pattern: z.string().optional(),
  minItems: z.int().nonnegative().optional(),
  maxItems: z.int().nonnegative().optional(),
  default: z.unknown().optional(),
  // A secret (an API key, a token, a URL with a password): marked here, kept out of reach by the database.
  writeOnly: z.literal(true).optional(),
});
type ConfigSchemaNode = z.infer<typeof ConfigSchemaNode>;

const CatalogServer = z.strictObject({
  slug: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  packageName: z.string().regex(/^(@[a-z0-9-]+\/)?[a-z0-9][a-z0-9._-]*$/),
  // Exact versions only: a range would make the snapshot, and the pinned hashes, drift.
  version: z.string().regex(/^\d+\.\d+\.\d+$/),
  displayName: z.string().min(1),
  description: z.string().min(1),
  configSchema: ConfigSchemaNode,
  requiredOauthProviders: z.array(z.enum(['github', 'google', 'microsoft', 'slack'])),
  // The OCI image a Docker toolbox (the upstream DTMA) pulls: the official mcp/ image where one exists.
  ociImage: z.string().regex(/^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?$/).nullable(),
  // How to start the server for the snapshot only (never stored): in every string, ${scratch} is
  // a temporary directory and ${placeholder} the marker below; `files` are written into scratch.
  snapshotLaunch: z.strictObject({
    args: z.array(z.string()),
    env: z.record(z.string(), z.string()),
    files: z.record(z.string(), z.string()).optional(),
  }),
});
type CatalogServer = z.infer<typeof CatalogServer>;

// Candidates tried and left out (checked against npm and run here):
// - @modelcontextprotocol/server-puppeteer@2025.5.12: its install script downloads Chrome from
//   googlechromelabs.github.io, which fails without network beyond the npm registry, and every
//   tool needs that browser. (With --ignore-scripts it does list its 7 tools, browser-less.)
// - @modelcontextprotocol/server-redis@2025.4.25: connects to Redis before it answers
//   initialize; with none reachable it retries for about 30 s, then exits.
// - @modelcontextprotocol/server-google-maps, -everart, -aws-kb-retrieval: API-key servers like
//   brave-search; left out to keep the catalog to the most useful nine.
// - server-fetch, server-time, server-git, server-sqlite, server-sentry: Python servers, not on npm.
// The launch of one server for the snapshot, with ${scratch} and ${placeholder} filled in.
function launchOf(server: CatalogServer, scratch: string): CatalogServer['snapshotLaunch'] {
  const fill = (text: string) => text.split('${scratch}').join(scratch).split('${placeholder}').join(PLACEHOLDER);
  const { args, env, files } = server.snapshotLaunch;
  return {
    args: args.map(fill),
    env: Object.fromEntries(Object.entries(env).map(([name, value]) => [name, fill(value)])),
    ...(files ? { files: Object.fromEntries(Object.entries(files).map(([name, content]) => [fill(name), content])) } : {}),
  };
}

// What the catalog pins of one tool: what the model is shown and what the grant scopes read.
// title, outputSchema, execution, icons and _meta are left out: they change no call's meaning.
// A tool without a description gets null, without annotations {}: the runtime check of a
// presented tool must project it the same way before hashing.
function pinnedTool(tool: Tool) {
  return {
    name: tool.name,
    description: tool.description ?? null,
    inputSchema: tool.inputSchema,
    annotations: tool.annotations ?? {},
  };
}

interface Snapshot {
  server: CatalogServer;
  capabilities: ServerCapabilities;
  tools: ReturnType<typeof pinnedTool>[];
}

function installedVersion(prefix: string, packageName: string): string | undefined {
  const manifest = path.join(prefix, 'node_modules', packageName, 'package.json');
  if (!existsSync(manifest)) return undefined;
  return z.object({ version: z.string() }).parse(JSON.parse(readFileSync(manifest, 'utf8'))).version;
}

// The prefix whose node_modules holds the exact version: the project's own, else INSTALL_DIR,
// where missing servers are installed (scripts off: listing tools needs none of them).
function resolvePrefixes(servers: CatalogServer[]): Map<string, string> {
  const prefixes = new Map<string, string>();
  const missing: CatalogServer[] = [];
  for (const server of servers) {
    const prefix = [ROOT, INSTALL_DIR].find((p) => installedVersion(p, server.packageName) === server.version);
    if (prefix) prefixes.set(server.slug, prefix);
    else missing.push(server);
  }
  if (missing.length > 0) {
    const specs = missing.map((s) => `${s.packageName}@${s.version}`);
    console.log(`installing into ${INSTALL_DIR}: ${specs.join(' ')}`);
    execFileSync(
      'npm',
      ['install', '--prefix', INSTALL_DIR, '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', ...specs],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    for (const server of missing) {
      const found = installedVersion(INSTALL_DIR, server.packageName);
      if (found !== server.version) {
        throw new Error(`${server.slug}: npm installed ${server.packageName}@${found ?? 'nothing'}, not ${server.version}`);
      }
      prefixes.set(server.slug, INSTALL_DIR);
    }
  }
  return prefixes;
}

function binPath(prefix: string, packageName: string): string {
  const packageDir = path.join(prefix, 'node_modules', packageName);
  const { bin } = z
    .object({ bin: z.union([z.string(), z.record(z.string(), z.string())]) })
    .parse(JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')));
  const entries = typeof bin === 'string' ? [bin] : Object.values(bin);
  if (entries.length !== 1) throw new Error(`${packageName} has ${entries.length} bins; say which one to run`);
  return path.join(packageDir, entries[0]);
}

async function snapshot(server: CatalogServer, prefix: string, scratchRoot: string): Promise<Snapshot> {
  const scratch = await mkdtemp(path.join(scratchRoot, `${server.slug}-`));
  const launch = launchOf(server, scratch);
  for (const [name, content] of Object.entries(launch.files ?? {})) {
    const file = path.join(scratch, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [binPath(prefix, server.packageName), ...launch.args],
    env: launch.env,
    cwd: scratch,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  // No client capabilities: like the control plane's own client, so that a server which offers
  // tools only to clients with roots, sampling or elicitation is pinned as the agents will see it.
  const client = new Client({ name: 'catalog-snapshot', version: '1.0.0' }, { capabilities: {} });
  try {
    await client.connect(transport, { timeout: TIMEOUT_MS });
    const tools: Tool[] = [];
    const seenCursors = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor === undefined ? undefined : { cursor }, { timeout: TIMEOUT_MS });
      tools.push(...page.tools);
      cursor = page.nextCursor;
      if (cursor !== undefined && seenCursors.has(cursor)) throw new Error(`tools/list repeats cursor ${cursor}`);
      if (cursor !== undefined) seenCursors.add(cursor);
    } while (cursor !== undefined);
    const names = tools.map((t) => t.name);
    const duplicate = names.find((n, i) => names.indexOf(n) !== i);
    if (duplicate !== undefined) throw new Error(`tools/list returns tool ${duplicate} twice`);
    const result: Snapshot = {
      server,
      capabilities: client.getServerCapabilities() ?? {},
      tools: tools.map(pinnedTool).sort((a, b) => compareCodePoints(a.name, b.name)),
    };
    const text = JSON.stringify([result.capabilities, result.tools]);
    if (text.includes(scratch) || text.includes(PLACEHOLDER)) {
      throw new Error('its tool definitions echo the snapshot launch configuration; they would pin it');
    }
    return result;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const log = stderr.trim() === '' ? '' : `\n--- its stderr (last lines) ---\n${stderr.trim()}`;
    throw new Error(
      `catalog-snapshot: server "${server.slug}" (${server.packageName}@${server.version}) could not be listed: ${reason}${log}`,
    );
  } finally {
    await client.close().catch(() => undefined);
  }
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// Keys sorted at every depth: jsonb keeps no key order anyway, and a sorted file diffs only on
// real changes, whatever order a server or a zod version happens to emit.
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort(compareCodePoints)
        .map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}

// A '$' can only occur inside a JSON string, where \u0024 means the same to jsonb: escaping every
// '$' that would open the $json$ delimiter makes the text unable to close the literal early.
// Postgres refuses \u0000 in jsonb.
function jsonbLiteral(value: unknown): string {
  const text = JSON.stringify(value, null, 2).replace(/\$(?=json\$)/g, '\\u0024');
  if (text.includes('\\u0000')) throw new Error('a JSON value contains a NUL character, which jsonb refuses');
  return `$json$${text}$json$::jsonb`;
}

function textLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('a text value contains a NUL character');
  return `'${value.replaceAll("'", "''")}'`;
}

function textArrayLiteral(values: string[]): string {
  return `array[${values.map(textLiteral).join(', ')}]::text[]`;
}

const COLUMNS = [
  'name',
  'display_name',
  'description',
  'docker_image_url',
  'oci_image',
  'version',
  'transport_type',
  'capabilities',
  'tool_manifest',
  'config_schema',
  'required_oauth_providers',
] as const;

function upsert({ server, capabilities, tools }: Snapshot): string {
  const manifest = tools.map((tool) => ({ ...tool, inputSchema: sortKeys(tool.inputSchema), annotations: sortKeys(tool.annotations) }));
  const values = [
    textLiteral(server.slug),
    textLiteral(server.displayName),
    textLiteral(server.description),
    textLiteral(`npm:${server.packageName}@${server.version}`),
    server.ociImage === null ? 'null' : textLiteral(server.ociImage),
    textLiteral(server.version),
    textLiteral('stdio'),
    jsonbLiteral(sortKeys(capabilities)),
    jsonbLiteral(manifest),
    jsonbLiteral(sortKeys(server.configSchema)),
    textArrayLiteral(server.requiredOauthProviders),
  ];
  return [
    `-- ${server.slug}: ${server.packageName}@${server.version}, ${tools.length} tools`,
    `insert into public.mcp_server_catalog (${COLUMNS.join(', ')})`,
    `values (`,
    values.map((v) => `  ${v}`).join(',\n'),
    `)`,
    `on conflict (name) do update set`,
    COLUMNS.filter((c) => c !== 'name')
      .map((c) => `  ${c} = excluded.${c}`)
      .join(',\n') + ';',
  ].join('\n');
}

function seedFile(snapshots: Snapshot[]): string {
  const header = [
    '-- generated by scripts/catalog-snapshot.ts: do not edit by hand; change that script and re-run it',
    '-- (npx tsx scripts/catalog-snapshot.ts).',
    '-- Each row is what the real server presented over stdio to a client declaring no capabilities:',
    '-- its initialize capabilities and its complete tools/list. The database hashes each tool itself.',
  ];
  return `${[header.join('\n'), ...snapshots.map(upsert)].join('\n\n')}\n`;
}

async function main(): Promise<void> {
  const servers = z.array(CatalogServer).parse(JSON.parse(readFileSync(SERVERS_FILE, 'utf8'))).sort((a, b) => compareCodePoints(a.slug, b.slug));
  const slugs = servers.map((s) => s.slug);
  const duplicate = slugs.find((s, i) => slugs.indexOf(s) !== i);
  if (duplicate !== undefined) throw new Error(`catalog-snapshot: slug ${duplicate} is listed twice`);

  const prefixes = resolvePrefixes(servers);
  const scratchRoot = await mkdtemp(path.join(tmpdir(), 'catalog-snapshot-'));
  try {
    const snapshots: Snapshot[] = [];
    for (const server of servers) {
      const result = await snapshot(server, prefixes.get(server.slug) ?? ROOT, scratchRoot);
      console.log(`${server.slug}: ${result.tools.length} tool${result.tools.length === 1 ? '' : 's'}`);
      snapshots.push(result);
    }
    const temporary = `${OUTPUT}.tmp`;
    await writeFile(temporary, seedFile(snapshots));
    await rename(temporary, OUTPUT);
    console.log(`wrote ${path.relative(ROOT, OUTPUT)} (${snapshots.length} servers)`);
  } finally {
    await rm(scratchRoot, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
