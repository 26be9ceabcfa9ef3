/**
 * The benchmark runner: `npm run bench [-- --quick] [--suite NAME]... [--out DIR] [--scratch DIR]`
 * [comparison flags: --systems, --durability, --sizes, --producers, --partitions, --scenarios,
 * --duration-ms, --runs, --sweep-rates; see bench/compare/options.ts].
 *
 * Loads the suites of bench/suites/ in a fixed order (see `suiteNames`), runs them one after another,
 * prints each suite's rows as a Markdown table on stdout as soon as the suite completes, logs progress
 * on stderr, and writes results.json and results.md into the out directory after every suite (so a
 * crash keeps what was gathered). Exit code 0 when every suite ran, 1 when a suite threw, 2 on a usage
 * error. Selecting the 'compare' suite also runs 'reference' (its ratios need it); a comparison
 * flag without --suite selects exactly these two. The 'compare' suite gets its options and the
 * results directory through the context and writes compare.json, compare.md and charts/*.svg there.
 *
 * Scratch files live under the repository's `.bench-scratch/` (not /tmp, which may be tmpfs: we measure
 * the disk). Each run makes a fresh directory there and removes it at the end, also after a failure
 * and on SIGINT/SIGTERM when run from the command line. A signal is handled only when the running
 * suite yields to the event loop (an `await`), so suites should yield between measurements; a
 * directory left behind by a dead run (its pid is in the name) is removed by the next run.
 */
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type CompareContextExtras,
  type CompareFlags,
  type CompareOptions,
  CompareUsageError,
  compareFlagNames,
  compareUsage,
  hasCompareFlags,
  resolveCompareOptions,
} from './compare/options.js';
import {
  type BenchMetadata,
  defaultSuiteDirectory,
  filesystemOf,
  findRepositoryRoot,
  gitDescription,
  isSuiteName,
  loadSuite,
  machineDescription,
  markdownTable,
  metadataMarkdown,
  suiteNames,
  tableHeader,
  tableRow,
  timestampForPath,
} from './harness.js';
import type { BenchContext, BenchRow, BenchSuite } from './report.js';

export interface RunBenchOptions {
  /** Short run: fewer iterations, smaller files. Default false. */
  quick?: boolean;
  /** Suites to run (run in the fixed order whatever the order given). Default: all that exist. */
  suites?: readonly string[];
  /** Where results.json and results.md go. Default `<repo>/bench/results/<timestamp>`. */
  out?: string;
  /** Parent of the run's scratch directory (a fresh one is made inside and removed). Default `<repo>/.bench-scratch`. */
  scratch?: string;
  /** Recorded in the metadata. Default `process.argv`. */
  commandLine?: readonly string[];
  /** Data directory size of the recovery suite's start-up case (default 1 GiB, quick 256 MiB). */
  recoveryDataBytes?: number;
  /** Receives the Markdown table as it grows. Default: stdout. */
  write?: (text: string) => void;
  /** Receives progress lines. Default: stderr. */
  log?: (line: string) => void;
  /** Remove the scratch directory and exit on SIGINT/SIGTERM. For the command line only. Default false. */
  handleSignals?: boolean;
  /** Where the suite modules live. Default bench/suites/ next to this file. For tests. */
  suiteDirectory?: string;
  /** Flags of the comparison (suite 'compare'), as given on the command line. Default: none. */
  compare?: CompareFlags;
}

export interface RunBenchResult {
  rows: BenchRow[];
  metadata: BenchMetadata;
  /** Absolute path of the directory holding results.json and results.md. */
  outDirectory: string;
  /** 0 when every suite ran, 1 when at least one threw. */
  exitCode: 0 | 1;
}

/** The shape of results.json. */
export interface BenchResults {
  metadata: BenchMetadata;
  rows: BenchRow[];
}

/** Invalid options (an unknown or missing suite name). Thrown before anything runs or is written. */
export class BenchUsageError extends Error {
  override readonly name = 'BenchUsageError';
}

export async function runBench(options: RunBenchOptions = {}): Promise<RunBenchResult> {
  const startedAt = new Date();
  const startMs = performance.now();
  const quick = options.quick ?? false;
  const write = options.write ?? ((text: string) => void process.stdout.write(text));
  const logLine = options.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const log = (source: string, message: string): void => {
    const elapsedSeconds = ((performance.now() - startMs) / 1000).toFixed(1).padStart(6);
    logLine(`[${elapsedSeconds}s] ${source}: ${message}`);
  };

  const requested = options.suites ?? suiteNames;
  const unknown = requested.filter((name) => !isSuiteName(name));
  if (unknown.length > 0) {
    throw new BenchUsageError(`unknown suite ${unknown.join(', ')}; known: ${suiteNames.join(', ')}`);
  }
  let compareOptions: CompareOptions;
  try {
    compareOptions = resolveCompareOptions(options.compare ?? {}, quick);
  } catch (error) {
    if (error instanceof CompareUsageError) throw new BenchUsageError(error.message);
    throw error;
  }
  // The comparison's ratios need the physical reference of this run.
  const withReference = requested.includes('compare') ? [...requested, 'reference'] : requested;
  const selected = suiteNames.filter((name) => withReference.includes(name));

  // Load every module before running anything: a broken module fails the run at once.
  const suites: BenchSuite[] = [];
  const skipped: string[] = [];
  for (const name of selected) {
    const loaded = await loadSuite(name, options.suiteDirectory ?? defaultSuiteDirectory);
    if (loaded.status === 'loaded') {
      suites.push(loaded.suite);
    } else if (options.suites !== undefined) {
      throw new BenchUsageError(`${loaded.note} (it was asked for with --suite)`);
    } else {
      skipped.push(name);
      log('bench', loaded.note);
    }
  }

  const repositoryRoot = findRepositoryRoot();
  const outDirectory = path.resolve(
    options.out ?? path.join(repositoryRoot, 'bench', 'results', timestampForPath(startedAt)),
  );
  const scratchParent = path.resolve(options.scratch ?? path.join(repositoryRoot, '.bench-scratch'));
  mkdirSync(outDirectory, { recursive: true });
  mkdirSync(scratchParent, { recursive: true });
  for (const stale of removeStaleScratch(scratchParent)) log('bench', `removed ${stale}, left by a dead run`);
  const scratchDirectory = mkdtempSync(
    path.join(scratchParent, `run-${timestampForPath(startedAt)}-pid${process.pid}-`),
  );

  const git = gitDescription(repositoryRoot);
  const metadata: BenchMetadata = {
    date: startedAt.toISOString(),
    durationSeconds: 0,
    ...machineDescription(),
    gitCommit: git.commit,
    gitDirty: git.dirty,
    commandLine: [...(options.commandLine ?? process.argv)],
    quick,
    scratchFilesystem: filesystemOf(scratchDirectory),
    suitesRequested: [...selected],
    suitesSkipped: skipped,
    suitesFailed: [],
  };
  const rows: BenchRow[] = [];
  const saveResults = (): void => {
    metadata.durationSeconds = (performance.now() - startMs) / 1000;
    const results: BenchResults = { metadata, rows };
    writeFileAtomically(path.join(outDirectory, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    const markdown = `# Spillway benchmarks\n\n${metadataMarkdown(metadata)}\n\n${markdownTable(rows)}\n`;
    writeFileAtomically(path.join(outDirectory, 'results.md'), markdown);
  };

  const removeScratch = (): void => rmSync(scratchDirectory, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals): void => {
    removeScratch();
    logLine(`bench: ${signal}, scratch directory removed`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  if (options.handleSignals) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }

  log(
    'bench',
    `${quick ? 'quick' : 'full'} run of ${suites.map((suite) => suite.name).join(', ') || 'nothing'}`,
  );
  log('bench', `scratch ${scratchDirectory} (${metadata.scratchFilesystem}), results to ${outDirectory}`);
  if (metadata.scratchFilesystem === 'tmpfs')
    log('bench', 'WARNING: scratch is on tmpfs, disk figures are memory');
  try {
    write(`${tableHeader}\n`);
    for (const suite of suites) {
      const suiteScratch = path.join(scratchDirectory, suite.name);
      mkdirSync(suiteScratch);
      const context: BenchContext & CompareContextExtras = {
        quick,
        ...(options.recoveryDataBytes !== undefined ? { recoveryDataBytes: options.recoveryDataBytes } : {}),
        scratchDir: suiteScratch,
        previous: Object.freeze([...rows]),
        log: (message) => log(suite.name, message),
        compareOptions,
        outDirectory,
      };
      const suiteStartMs = performance.now();
      try {
        const suiteRows = await suite.run(context);
        checkRows(suite.name, suiteRows);
        rows.push(...suiteRows);
        write(suiteRows.map((row) => `${tableRow(row)}\n`).join(''));
        const seconds = ((performance.now() - suiteStartMs) / 1000).toFixed(1);
        log('bench', `${suite.name} done in ${seconds} s, ${suiteRows.length} rows`);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        metadata.suitesFailed.push({ suite: suite.name, error: message });
        log('bench', `${suite.name} FAILED: ${error instanceof Error ? (error.stack ?? message) : message}`);
      } finally {
        rmSync(suiteScratch, { recursive: true, force: true });
      }
      saveResults();
    }
  } finally {
    removeScratch();
    if (options.handleSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
  saveResults();
  log('bench', `done in ${metadata.durationSeconds.toFixed(1)} s; ${path.join(outDirectory, 'results.md')}`);
  return { rows, metadata, outDirectory, exitCode: metadata.suitesFailed.length > 0 ? 1 : 0 };
}

/** A suite's rows must name it and carry a finite value: a NaN in results.json helps nobody. */
function checkRows(suiteName: string, rows: readonly BenchRow[]): void {
  if (!Array.isArray(rows))
    throw new Error(`suite ${suiteName} returned ${typeof rows}, not an array of rows`);
  const seen = new Set<string>();
  for (const row of rows) {
    if (row.suite !== suiteName) throw new Error(`row '${row.name}' claims suite '${row.suite}'`);
    if (!Number.isFinite(row.value)) throw new Error(`row '${row.name}' has value ${row.value}`);
    if (seen.has(row.name)) throw new Error(`row name '${row.name}' repeated`);
    seen.add(row.name);
  }
}

/**
 * Removes scratch directories of runs whose process is gone (killed with SIGKILL, or by SIGINT while
 * a suite held the event loop so the signal handler never ran). Returns their paths.
 */
function removeStaleScratch(scratchParent: string): string[] {
  const removed: string[] = [];
  for (const entry of readdirSync(scratchParent)) {
    const pid = /^run-.*-pid(\d+)-[^-]+$/.exec(entry)?.[1];
    if (pid === undefined || isProcessAlive(Number(pid))) continue;
    rmSync(path.join(scratchParent, entry), { recursive: true, force: true });
    removed.push(path.join(scratchParent, entry));
  }
  return removed;
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function writeFileAtomically(file: string, text: string): void {
  const temporary = `${file}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, file);
}

const usage = `usage: node dist/bench/main.js [--quick] [--suite NAME]... [--out DIR] [--scratch DIR] [comparison flags]
  --quick         short run (small files, one repetition)
  --suite NAME    run only this suite (repeatable): ${suiteNames.join(', ')}
  --out DIR       results directory (default bench/results/<date-time>)
  --scratch DIR   where the run's scratch directory is made (default .bench-scratch/; not /tmp)
  --recovery-gib N  data directory size of the recovery suite's start-up case (default 1; quick 0.25)
${compareUsage}`;

/** The command line of the bench runner (`node dist/bench/main.js ...` and `spillway bench ...`). Returns the exit code. */
export async function runBenchFromCommandLine(argv: string[]): Promise<number> {
  let values: {
    quick?: boolean;
    suite?: string[];
    out?: string;
    scratch?: string;
    help?: boolean;
    'recovery-gib'?: string;
  } & Partial<Record<keyof typeof compareFlagNames, string>>;
  try {
    values = parseArgs({
      options: {
        quick: { type: 'boolean' },
        suite: { type: 'string', multiple: true },
        out: { type: 'string' },
        scratch: { type: 'string' },
        'recovery-gib': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        systems: { type: 'string' },
        durability: { type: 'string' },
        sizes: { type: 'string' },
        producers: { type: 'string' },
        partitions: { type: 'string' },
        scenarios: { type: 'string' },
        'duration-ms': { type: 'string' },
        runs: { type: 'string' },
        'sweep-rates': { type: 'string' },
        'warm-up-ms': { type: 'string' },
      },
      args: argv,
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${usage}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  let recoveryDataBytes: number | undefined;
  if (values['recovery-gib'] !== undefined) {
    const gib = Number(values['recovery-gib']);
    if (!Number.isFinite(gib) || gib <= 0 || gib > 1024) {
      process.stderr.write(`--recovery-gib must be a number in (0, 1024]\n${usage}\n`);
      return 2;
    }
    recoveryDataBytes = Math.round(gib * 1024 * 1024 * 1024);
  }
  const compare: CompareFlags = {};
  for (const [flag, field] of Object.entries(compareFlagNames)) {
    const value = values[flag as keyof typeof compareFlagNames];
    if (value !== undefined) compare[field] = value;
  }
  try {
    const result = await runBench({
      quick: values.quick ?? false,
      // A comparison flag alone means: run the comparison (and the reference it needs).
      suites: values.suite ?? (hasCompareFlags(compare) ? ['compare'] : undefined),
      compare,
      out: values.out,
      scratch: values.scratch,
      ...(recoveryDataBytes !== undefined ? { recoveryDataBytes } : {}),
      commandLine: process.argv,
      handleSignals: true,
    });
    return result.exitCode;
  } catch (error) {
    if (error instanceof BenchUsageError) {
      process.stderr.write(`${error.message}\n${usage}\n`);
      return 2;
    }
    process.stderr.write(
      `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    return 1;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) process.exitCode = await runBenchFromCommandLine(process.argv.slice(2));
