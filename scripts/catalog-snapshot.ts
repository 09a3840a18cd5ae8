// Regenerates db/schema/21_catalog_seed.sql from the real MCP servers: each one is started over
// stdio with the official SDK, and its initialize capabilities and complete tools/list are
// written as one upsert into public.mcp_server_catalog. The catalog therefore pins what the
// servers really present, never a hand-copied manifest.
//
//   npx tsx scripts/catalog-snapshot.ts
//
// To add or upgrade a server: edit SERVERS below, re-run, review the diff of the SQL file.
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
  // How to start the server for the snapshot only (never stored): `scratch` is a temporary
  // directory, and `files` are written into it before the server starts.
  snapshotLaunch: z.function({
    input: [z.string()],
    output: z.strictObject({
      args: z.array(z.string()),
      env: z.record(z.string(), z.string()),
      files: z.record(z.string(), z.string()).optional(),
    }),
  }),
});
type CatalogServer = z.infer<typeof CatalogServer>;

// Reusable pieces of the configuration schemas.
const NO_ARGS: ConfigSchemaNode = {
  type: 'array',
  description: 'The server takes no command-line arguments.',
  maxItems: 0,
  default: [],
};
const envObject = (properties: Record<string, ConfigSchemaNode>, required: string[] = []): ConfigSchemaNode => ({
  type: 'object',
  description: 'Environment variables of the server process.',
  properties,
  ...(required.length > 0 ? { required } : {}),
  additionalProperties: false,
  ...(required.length > 0 ? {} : { default: {} }),
});
const NO_ENV = envObject({});
const configSchema = (args: ConfigSchemaNode, env: ConfigSchemaNode, required: string[] = []): ConfigSchemaNode => ({
  type: 'object',
  properties: { args, env },
  ...(required.length > 0 ? { required } : {}),
  additionalProperties: false,
});
const ABSOLUTE_PATH = '^/';
const POSITIVE_INTEGER = '^[1-9][0-9]*$';
const noLaunch = () => ({ args: [], env: {} });

// Candidates tried and left out (checked against npm and run here):
// - @modelcontextprotocol/server-puppeteer@2025.5.12: its install script downloads Chrome from
//   googlechromelabs.github.io, which fails without network beyond the npm registry, and every
//   tool needs that browser. (With --ignore-scripts it does list its 7 tools, browser-less.)
// - @modelcontextprotocol/server-redis@2025.4.25: connects to Redis before it answers
//   initialize; with none reachable it retries for about 30 s, then exits.
// - @modelcontextprotocol/server-google-maps, -everart, -aws-kb-retrieval: API-key servers like
//   brave-search; left out to keep the catalog to the most useful nine.
// - server-fetch, server-time, server-git, server-sqlite, server-sentry: Python servers, not on npm.
const SERVERS: CatalogServer[] = [
  {
    slug: 'brave-search',
    packageName: '@modelcontextprotocol/server-brave-search',
    version: '0.6.2',
    displayName: 'Brave Search',
    description: 'Web and local business search through the Brave Search API (archived reference server).',
    configSchema: configSchema(
      NO_ARGS,
      envObject(
        {
          BRAVE_API_KEY: {
            type: 'string',
            description: 'Brave Search API key (a secret: the server exits at start without it).',
            minLength: 1,
          },
        },
        ['BRAVE_API_KEY'],
      ),
      ['env'],
    ),
    requiredOauthProviders: [],
    // The key is only checked for presence at start; listing needs no network.
    snapshotLaunch: () => ({ args: [], env: { BRAVE_API_KEY: PLACEHOLDER } }),
  },
  {
    slug: 'everything',
    packageName: '@modelcontextprotocol/server-everything',
    version: '2026.8.31',
    displayName: 'Everything (MCP test server)',
    description:
      'Reference server that exercises every MCP feature: tools, resources, prompts, logging, sampling, elicitation. For testing clients, not for production agents.',
    configSchema: configSchema(
      {
        type: 'array',
        description: 'The only argument would pick the transport; the catalog runs it over stdio, the default.',
        maxItems: 0,
        default: [],
      },
      envObject({
        GZIP_ALLOWED_DOMAINS: {
          type: 'string',
          description:
            'Comma-separated host names that the gzip-file-as-resource tool may fetch from; unset or empty allows every host.',
        },
        GZIP_MAX_FETCH_SIZE: {
          type: 'string',
          description: 'Largest file, in bytes, that gzip-file-as-resource fetches (default 10485760).',
          pattern: POSITIVE_INTEGER,
        },
        GZIP_MAX_FETCH_TIME_MILLIS: {
          type: 'string',
          description: 'Time limit, in milliseconds, of a gzip-file-as-resource fetch (default 30000).',
          pattern: POSITIVE_INTEGER,
        },
      }),
    ),
    requiredOauthProviders: [],
    snapshotLaunch: noLaunch,
  },
  {
    slug: 'filesystem',
    packageName: '@modelcontextprotocol/server-filesystem',
    version: '2026.8.31',
    displayName: 'Filesystem',
    description: 'Reads, writes, edits, moves and searches files, confined to the directories it is given.',
    configSchema: configSchema(
      {
        type: 'array',
        description:
          'Absolute paths of the directories the server may use, on the toolbox. The server also accepts MCP roots, but the control plane does not send any, so at least one directory is needed.',
        items: { type: 'string', minLength: 2, pattern: ABSOLUTE_PATH },
        minItems: 1,
      },
      NO_ENV,
      ['args'],
    ),
    requiredOauthProviders: [],
    snapshotLaunch: (scratch) => ({ args: [path.join(scratch, 'files')], env: {}, files: { 'files/.keep': '' } }),
  },
  {
    slug: 'gdrive',
    packageName: '@modelcontextprotocol/server-gdrive',
    version: '2025.1.14',
    displayName: 'Google Drive',
    description: 'Searches Google Drive and reads its files, exporting Google Docs, Sheets and Slides to text (archived reference server).',
    configSchema: configSchema(
      NO_ARGS,
      envObject({
        GDRIVE_CREDENTIALS_PATH: {
          type: 'string',
          description:
            "Absolute path, on the toolbox, of the authorized-user credentials JSON written from the user's Google connection (scope drive.readonly). The server exits at start if the file is missing.",
          minLength: 2,
          pattern: ABSOLUTE_PATH,
        },
      }),
    ),
    requiredOauthProviders: ['google'],
    // The credentials file is only parsed at start; an empty one lets it list its tools offline.
    snapshotLaunch: (scratch) => ({
      args: [],
      env: { GDRIVE_CREDENTIALS_PATH: path.join(scratch, 'gdrive-credentials.json') },
      files: { 'gdrive-credentials.json': '{}' },
    }),
  },
  {
    slug: 'github',
    packageName: '@modelcontextprotocol/server-github',
    version: '2025.4.8',
    displayName: 'GitHub',
    description:
      'Repositories, files, branches, issues, pull requests and code search on GitHub (archived reference server; GitHub now publishes its own).',
    // The token (GITHUB_PERSONAL_ACCESS_TOKEN) comes from the GitHub connection, never from the config.
    configSchema: configSchema(NO_ARGS, NO_ENV),
    requiredOauthProviders: ['github'],
    // The token is read per call, so the server lists its tools without one.
    snapshotLaunch: noLaunch,
  },
  {
    slug: 'memory',
    packageName: '@modelcontextprotocol/server-memory',
    version: '2026.8.31',
    displayName: 'Knowledge Graph Memory',
    description: 'Persistent memory as a knowledge graph of entities, relations and observations, kept in a JSON-lines file.',
    configSchema: configSchema(
      NO_ARGS,
      envObject({
        MEMORY_FILE_PATH: {
          type: 'string',
          description:
            'Absolute path, on the toolbox, of the knowledge graph file. Unset, the server keeps it inside its own package directory, which a reinstall wipes.',
          minLength: 2,
          pattern: ABSOLUTE_PATH,
        },
      }),
    ),
    requiredOauthProviders: [],
    snapshotLaunch: (scratch) => ({ args: [], env: { MEMORY_FILE_PATH: path.join(scratch, 'memory.jsonl') } }),
  },
  {
    slug: 'postgres',
    packageName: '@modelcontextprotocol/server-postgres',
    version: '0.6.2',
    displayName: 'PostgreSQL (read-only)',
    description: 'Runs read-only SQL queries against one PostgreSQL database and exposes its table schemas (archived reference server).',
    configSchema: configSchema(
      {
        type: 'array',
        description:
          'Exactly one argument: the connection URL of the database. It carries the password, so it should name a role with read-only rights.',
        items: { type: 'string', pattern: '^postgres(ql)?://' },
        minItems: 1,
        maxItems: 1,
      },
      NO_ENV,
      ['args'],
    ),
    requiredOauthProviders: [],
    // The pool connects lazily: listing tools never reaches this (unroutable) database.
    snapshotLaunch: () => ({ args: [`postgresql://${PLACEHOLDER}@127.0.0.1:9/${PLACEHOLDER}`], env: {} }),
  },
  {
    slug: 'sequential-thinking',
    packageName: '@modelcontextprotocol/server-sequential-thinking',
    version: '2026.8.31',
    displayName: 'Sequential Thinking',
    description: 'A single tool for step-by-step problem solving: numbered thoughts that can be revised or branched.',
    configSchema: configSchema(
      NO_ARGS,
      envObject({
        DISABLE_THOUGHT_LOGGING: {
          type: 'string',
          description: 'Set to "true" to stop the server from printing each thought to its stderr log.',
          enum: ['true', 'false'],
          default: 'false',
        },
      }),
    ),
    requiredOauthProviders: [],
    snapshotLaunch: noLaunch,
  },
  {
    slug: 'slack',
    packageName: '@modelcontextprotocol/server-slack',
    version: '2025.4.25',
    displayName: 'Slack',
    description: 'Lists channels and users, reads history and threads, posts messages, replies and reactions in one Slack workspace (archived reference server).',
    // The bot token (SLACK_BOT_TOKEN) comes from the Slack connection, never from the config.
    configSchema: configSchema(
      NO_ARGS,
      envObject(
        {
          SLACK_TEAM_ID: {
            type: 'string',
            description: 'ID of the Slack workspace (starts with T).',
            pattern: '^T[A-Z0-9]+$',
          },
          SLACK_CHANNEL_IDS: {
            type: 'string',
            description: 'Comma-separated channel IDs that slack_list_channels returns; unset, it lists every public channel.',
            pattern: '^[A-Z0-9]+( *, *[A-Z0-9]+)*$',
          },
        },
        ['SLACK_TEAM_ID'],
      ),
      ['env'],
    ),
    requiredOauthProviders: ['slack'],
    // Token and team are only checked for presence at start; listing needs no network.
    snapshotLaunch: () => ({ args: [], env: { SLACK_BOT_TOKEN: PLACEHOLDER, SLACK_TEAM_ID: PLACEHOLDER } }),
  },
];

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
  const launch = server.snapshotLaunch(scratch);
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
  const servers = SERVERS.map((s) => CatalogServer.parse(s)).sort((a, b) => compareCodePoints(a.slug, b.slug));
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
