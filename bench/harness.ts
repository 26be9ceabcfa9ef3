/**
 * Helpers of the benchmark runner (bench/main.ts): finding and loading suite modules, run metadata,
 * and the Markdown table. Kept apart from main.ts so tests can use them without running anything.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, statfsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchRow, BenchSuite } from './report.js';

/**
 * The suites, in the order they run. `reference` comes first: later suites look its rows up in
 * `context.previous` to print ratios against the machine. `compare` (Spillway and the peers side by
 * side) comes last: it is the longest, and bench/main.ts runs `reference` with it whenever it runs.
 */
export const suiteNames = [
  'reference',
  'crc32c',
  'record-batch',
  'micro',
  'append',
  'embedded',
  'read',
  'recovery',
  'state',
  'queues',
  'dedup',
  'transactions',
  'delay',
  'delay-firing',
  'scrub',
  'broker',
  'idempotent',
  'security',
  'groups',
  'drain',
  'consume-pool',
  'idempotency',
  'replication',
  'failover',
  'queue-cluster',
  'peers',
  'compare',
] as const;
export type SuiteName = (typeof suiteNames)[number];

export function isSuiteName(name: string): name is SuiteName {
  return (suiteNames as readonly string[]).includes(name);
}

/** The directory holding this file's sibling `suites/` (bench/ when run from source, dist/bench/ when built). */
export const defaultSuiteDirectory: string = fileURLToPath(new URL('./suites/', import.meta.url));

export type LoadedSuite = { status: 'loaded'; suite: BenchSuite } | { status: 'missing'; note: string };

/**
 * Loads `<directory>/<name>.js` (or `.ts` when running from source under vitest). A module that does
 * not exist is reported as missing (colleagues may not have written it yet); every other failure —
 * a syntax error, a failing import inside the module, no valid `suite` export, a name mismatch —
 * throws, because hiding it would silently drop figures.
 */
export async function loadSuite(
  name: string,
  directory: string = defaultSuiteDirectory,
): Promise<LoadedSuite> {
  const candidates = ['.js', '.ts'].map((extension) => path.join(directory, `${name}${extension}`));
  const file = candidates.find((candidate) => existsSync(candidate));
  if (file === undefined) {
    return { status: 'missing', note: `suite '${name}' skipped: no module ${candidates[0]}` };
  }
  const loaded: unknown = await import(pathToFileURL(file).href);
  const suite = (loaded as { suite?: unknown }).suite;
  if (!isBenchSuite(suite)) {
    throw new Error(`${file} does not export 'suite: BenchSuite' (an object with 'name' and 'run')`);
  }
  if (suite.name !== name) {
    throw new Error(`${file} exports a suite named '${suite.name}', expected '${name}'`);
  }
  return { status: 'loaded', suite };
}

function isBenchSuite(value: unknown): value is BenchSuite {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as { name?: unknown; run?: unknown };
  return typeof candidate.name === 'string' && typeof candidate.run === 'function';
}

/** Walks up from this file to the directory holding package.json (works from bench/ and dist/bench/). */
export function findRepositoryRoot(start: string = path.dirname(fileURLToPath(import.meta.url))): string {
  let directory = start;
  for (;;) {
    if (existsSync(path.join(directory, 'package.json'))) return directory;
    const parent = path.dirname(directory);
    if (parent === directory) throw new Error(`no package.json above ${start}`);
    directory = parent;
  }
}

/** A timestamp usable as a directory name on every filesystem: 2025-01-31T12-34-56Z. */
export function timestampForPath(date: Date): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replaceAll(':', '-');
}

export interface BenchMetadata {
  /** ISO 8601 start of the run. */
  date: string;
  durationSeconds: number;
  nodeVersion: string;
  cpuModel: string;
  cpuCores: number;
  totalMemoryBytes: number;
  /** `os.type() os.release()`, plus os.version() (the kernel build string). */
  kernel: string;
  /** `git rev-parse --short HEAD`, or null outside a repository / without git. */
  gitCommit: string | null;
  /** True when the working tree had uncommitted changes: the figures may not match gitCommit. */
  gitDirty: boolean | null;
  commandLine: string[];
  quick: boolean;
  /** The filesystem the scratch directory lives on (tmpfs would measure memory, not the disk). */
  scratchFilesystem: string;
  suitesRequested: string[];
  suitesSkipped: string[];
  suitesFailed: { suite: string; error: string }[];
}

export function gitDescription(repositoryRoot: string): { commit: string | null; dirty: boolean | null } {
  const git = (...args: string[]): string =>
    execFileSync('git', args, { cwd: repositoryRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const commit = git('rev-parse', '--short', 'HEAD').trim();
    const dirty = git('status', '--porcelain', '--untracked-files=no').trim().length > 0;
    return { commit, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}

export function machineDescription(): Pick<
  BenchMetadata,
  'nodeVersion' | 'cpuModel' | 'cpuCores' | 'totalMemoryBytes' | 'kernel'
> {
  const cpus = os.cpus();
  return {
    nodeVersion: process.version,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCores: cpus.length,
    totalMemoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()} (${os.version()})`,
  };
}

/** statfs magic numbers of the filesystems we are likely to meet (linux/magic.h). */
const filesystemMagic: ReadonlyMap<number, string> = new Map([
  [0xef53, 'ext4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x01021994, 'tmpfs'],
  [0x794c7630, 'overlayfs'],
  [0x2fc12fc1, 'zfs'],
  [0x6969, 'nfs'],
  [0xf2f52010, 'f2fs'],
]);

export function filesystemOf(directory: string): string {
  try {
    const type = statfsSync(directory).type;
    return filesystemMagic.get(type) ?? `unknown (statfs type 0x${type.toString(16)})`;
  } catch {
    return 'unknown';
  }
}

export const tableHeader = '| suite | name | value | unit | detail |\n| --- | --- | ---: | --- | --- |';

export function tableRow(row: BenchRow): string {
  const cells = [row.suite, row.name, formatValue(row.value), row.unit, row.detail ?? ''];
  return `| ${cells.map(escapeCell).join(' | ')} |`;
}

export function markdownTable(rows: readonly BenchRow[]): string {
  return [tableHeader, ...rows.map(tableRow)].join('\n');
}

/** Three significant digits at least, no exponent, thousands separated: 3,412 · 237 · 15.2 · 0.0421. */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude >= 100) return Math.round(value).toLocaleString('en-US');
  if (magnitude === 0) return '0';
  return value
    .toPrecision(3)
    .replace(/(\.\d*?)0+$/, '$1')
    .replace(/\.$/, '');
}

function escapeCell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function metadataMarkdown(metadata: BenchMetadata): string {
  const gib = (metadata.totalMemoryBytes / 2 ** 30).toFixed(1);
  const commit =
    metadata.gitCommit === null
      ? 'unknown'
      : `${metadata.gitCommit}${metadata.gitDirty ? ' (dirty tree)' : ''}`;
  const lines = [
    `- date: ${metadata.date} (${metadata.durationSeconds.toFixed(1)} s)`,
    `- node: ${metadata.nodeVersion}`,
    `- cpu: ${metadata.cpuModel}, ${metadata.cpuCores} cores`,
    `- memory: ${gib} GiB`,
    `- kernel: ${metadata.kernel}`,
    `- commit: ${commit}`,
    `- scratch filesystem: ${metadata.scratchFilesystem}`,
    `- mode: ${metadata.quick ? 'quick' : 'full'}`,
    `- command: \`${metadata.commandLine.join(' ')}\``,
  ];
  if (metadata.suitesSkipped.length > 0)
    lines.push(`- skipped (no module): ${metadata.suitesSkipped.join(', ')}`);
  for (const failure of metadata.suitesFailed) {
    lines.push(`- FAILED ${failure.suite}: ${escapeCell(failure.error)}`);
  }
  return lines.join('\n');
}
