/**
 * The `npm:` image convention of the local DTMA: `npm:<package>[@<version>]`
 * names a package already installed in node_modules, whose bin runs as a stdio
 * MCP server. Never downloads: an unpinned download at deploy time would run
 * code nobody reviewed.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { DriverError } from './driver.js';

/** The checkout this DTMA runs from; its node_modules holds the runnable packages by default. */
export const REPOSITORY_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// npm's own naming rules, minus the legacy upper-case names; a name that
// passes cannot climb out of node_modules.
const NPM_IMAGE = /^npm:((?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*)(?:@([A-Za-z0-9._+-]+))?$/;

const PackageJsonSchema = z.object({
  name: z.string(),
  version: z.string(),
  bin: z.union([z.string(), z.record(z.string(), z.string())]).optional(),
});
type PackageJson = z.infer<typeof PackageJsonSchema>;

export interface ResolvedPackage {
  packageName: string;
  version: string;
  /** Absolute path of the bin script, run with this Node binary. */
  binPath: string;
}

/** Maps `npm:<package>[@<version>]` to an installed bin; throws DriverError('invalid') otherwise. */
export function resolveNpmImage(image: string, packageRoot: string = REPOSITORY_ROOT, binName?: string): ResolvedPackage {
  const match = NPM_IMAGE.exec(image);
  if (!match) {
    throw new DriverError('invalid', `unsupported image '${image}': the process driver runs 'npm:<package>' or 'npm:<package>@<version>'`);
  }
  const packageName = match[1] ?? '';
  const wantedVersion = match[2];
  const packageDir = path.join(packageRoot, 'node_modules', packageName);
  const manifestPath = path.join(packageDir, 'package.json');
  if (!existsSync(manifestPath)) {
    throw new DriverError(
      'invalid',
      `npm package '${packageName}' is not installed in ${path.join(packageRoot, 'node_modules')} (the DTMA never downloads at run time)`,
    );
  }
  const manifest = PackageJsonSchema.parse(JSON.parse(readFileSync(manifestPath, 'utf8')));
  if (wantedVersion !== undefined && wantedVersion !== 'latest' && wantedVersion !== manifest.version) {
    throw new DriverError('invalid', `npm package '${packageName}' is installed at version ${manifest.version}, not ${wantedVersion}`);
  }
  const binRelative = pickBin(manifest, binName);
  const binPath = path.resolve(packageDir, binRelative);
  if (!binPath.startsWith(packageDir + path.sep) || !existsSync(binPath)) {
    throw new DriverError('invalid', `npm package '${packageName}' declares bin '${binRelative}', which does not exist inside the package`);
  }
  return { packageName, version: manifest.version, binPath };
}

/** The bin named by the caller, else the only one, else the one named like the package, else the first `mcp-server*`. */
function pickBin(manifest: PackageJson, binName: string | undefined): string {
  const bin = manifest.bin;
  if (bin === undefined) throw new DriverError('invalid', `npm package '${manifest.name}' has no bin to run`);
  if (typeof bin === 'string') return bin;
  const names = Object.keys(bin);
  const unscoped = manifest.name.replace(/^@[^/]+\//, '');
  const chosen =
    binName ?? (names.length === 1 ? names[0] : names.find((name) => name === unscoped) ?? names.find((name) => name.startsWith('mcp-server')));
  const target = chosen === undefined ? undefined : bin[chosen];
  if (target === undefined) {
    throw new DriverError(
      'invalid',
      `npm package '${manifest.name}' has bins ${names.join(', ')}: name one with baseConfigOverrideJson.bin`,
    );
  }
  return target;
}
