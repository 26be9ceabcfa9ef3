/**
 * What the 'compare' suite runs: systems, durability modes, message sizes, client counts, partition
 * counts, scenarios, and the bounds of every phase. Defaults keep a full run near 6 minutes on the
 * 2-core machine of docs/BENCHMARKS-COMPARE.md and a quick run under half a minute; flags of the bench
 * command line (`--systems`, `--durability`, ...) override them (see `compareFlagNames`).
 */
import { type Durability, durabilities } from '../../src/protocol/types.js';

export const systemNames = ['spillway', 'nats', 'redis', 'rabbitmq'] as const;
export type SystemName = (typeof systemNames)[number];

/** 'queue': queue mode, 100 B messages each acknowledged on its own (bench/compare/runner.ts). */
export const scenarioNames = ['produce', 'consume', 'queue', 'latency', 'sweep'] as const;
export type ScenarioName = (typeof scenarioNames)[number];

export interface CompareOptions {
  systems: SystemName[];
  durabilities: Durability[];
  /** Payload bytes per message. */
  sizes: number[];
  /** Producer connections in produce, consumer connections in consume (the same count). */
  clients: number[];
  /** Partitions of the topic (Spillway); peers drive one stream or queue, so only 1 applies to them. */
  partitions: number[];
  scenarios: ScenarioName[];
  /** Repetitions of each produce + consume cell; the median is reported. */
  runs: number;
  /** Cap of each produce phase and each consume phase; the sending time of each latency run. */
  durationMs: number;
  /** A produce phase sends at most this many messages... */
  messagesMax: number;
  /** ...and at most this many payload bytes (so 16 KiB runs stay within the disk and memory). */
  bytesMax: number;
  /** Offered rate of the latency scenario (open loop: well below every system's capacity). */
  latencyRatePerSecond: number;
  /** Offered rates of the sweep, ascending; stops at the first rate a system cannot sustain. */
  sweepRatesPerSecond: number[];
  /** Sending time of each sweep step. */
  sweepStepDurationMs: number;
  /**
   * Before the first produce/consume cell of each message size on each system and mode: unmeasured
   * rounds of that cell's workload (produce, then consume what was acknowledged; 1 client, 1
   * partition) for at least this long, every system alike; 0: none (runner.ts, `throughputWarmUp`).
   */
  throughputWarmUpMs: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** The default comparison (about 6 minutes here) and the quick one (well under a minute). */
export function compareDefaults(quick: boolean): CompareOptions {
  return quick
    ? {
        systems: [...systemNames],
        durabilities: [...durabilities],
        sizes: [KiB],
        clients: [1],
        partitions: [1],
        scenarios: [...scenarioNames],
        runs: 1,
        durationMs: 400,
        messagesMax: 50_000,
        bytesMax: 16 * MiB,
        latencyRatePerSecond: 500,
        sweepRatesPerSecond: [2000],
        sweepStepDurationMs: 300,
        throughputWarmUpMs: 0,
      }
    : {
        systems: [...systemNames],
        durabilities: [...durabilities],
        sizes: [100, KiB, 16 * KiB],
        clients: [1, 4],
        partitions: [1, 8],
        scenarios: [...scenarioNames],
        runs: 1,
        durationMs: 2000,
        messagesMax: 1_000_000,
        bytesMax: 256 * MiB,
        latencyRatePerSecond: 1000,
        sweepRatesPerSecond: [1000, 4000, 16_000, 64_000],
        sweepStepDurationMs: 1500,
        throughputWarmUpMs: 2000,
      };
}

/** The command-line flags of the comparison, as given (strings, unparsed). */
export interface CompareFlags {
  systems?: string;
  durability?: string;
  sizes?: string;
  producers?: string;
  partitions?: string;
  scenarios?: string;
  durationMs?: string;
  runs?: string;
  sweepRates?: string;
  warmUpMs?: string;
}

/** Flag spelling on the command line → field of CompareFlags. */
export const compareFlagNames = {
  systems: 'systems',
  durability: 'durability',
  sizes: 'sizes',
  producers: 'producers',
  partitions: 'partitions',
  scenarios: 'scenarios',
  'duration-ms': 'durationMs',
  runs: 'runs',
  'sweep-rates': 'sweepRates',
  'warm-up-ms': 'warmUpMs',
} as const satisfies Record<string, keyof CompareFlags>;

export const compareUsage = `comparison flags (suite 'compare'; any of them runs reference + compare unless --suite is given):
  --systems LIST      ${systemNames.join(',')} (default: all; one that cannot start is reported)
  --durability LIST   ${durabilities.join(',')} (default: all; each peer at its closest setting)
  --sizes LIST        message sizes: 100,1KiB,16KiB (B, KiB, MiB suffixes; default 100,1KiB,16KiB)
  --producers LIST    producer (and consumer) connections: 1,4 (default 1,4)
  --partitions LIST   Spillway topic partitions: 1,8 (default 1,8; peers: 1 only, others n/a)
  --scenarios LIST    ${scenarioNames.join(',')} (default: all)
  --duration-ms N     cap of each produce/consume phase and latency run (default 2000, quick 400)
  --runs N            repetitions of each produce/consume and latency cell, medians reported (default 1)
  --sweep-rates LIST  offered msg/s of the latency sweep (default 1000,4000,16000,64000)
  --warm-up-ms N      unmeasured produce/consume rounds before each size's first throughput cell,
                      per system and mode, at least this long (default 2000, quick 0; 0: none)
  full matrix with medians (roughly 30–40 min): --runs 3 --duration-ms 5000`;

/** A flag value that makes no sense. Reported as a usage error (exit 2) before anything runs. */
export class CompareUsageError extends Error {
  override readonly name = 'CompareUsageError';
}

/** Bounds on the flags, so a typo cannot start an hour-long or a disk-filling run. */
const limits = {
  sizeBytesMax: 4 * MiB,
  clientsMax: 64,
  partitionsMax: 256,
  durationMsMax: 600_000,
  runsMax: 20,
  warmUpMsMax: 60_000,
  rateMax: 1_000_000,
} as const;

/** True when any comparison flag was given. */
export function hasCompareFlags(flags: CompareFlags): boolean {
  return Object.values(flags).some((value) => value !== undefined);
}

/** The options of a run: the defaults with the given flags applied. Throws CompareUsageError. */
export function resolveCompareOptions(flags: CompareFlags, quick: boolean): CompareOptions {
  const options = compareDefaults(quick);
  if (flags.systems !== undefined) options.systems = namesOf('--systems', flags.systems, systemNames);
  if (flags.durability !== undefined)
    options.durabilities = namesOf('--durability', flags.durability, durabilities);
  if (flags.scenarios !== undefined)
    options.scenarios = namesOf('--scenarios', flags.scenarios, scenarioNames);
  if (flags.sizes !== undefined)
    options.sizes = listOf('--sizes', flags.sizes, parseSize, 4, limits.sizeBytesMax);
  if (flags.producers !== undefined)
    options.clients = listOf('--producers', flags.producers, parseInteger, 1, limits.clientsMax);
  if (flags.partitions !== undefined)
    options.partitions = listOf('--partitions', flags.partitions, parseInteger, 1, limits.partitionsMax);
  if (flags.durationMs !== undefined) {
    options.durationMs = single('--duration-ms', flags.durationMs, 50, limits.durationMsMax);
    options.sweepStepDurationMs = Math.max(50, Math.round((options.durationMs * 3) / 4));
  }
  if (flags.runs !== undefined) options.runs = single('--runs', flags.runs, 1, limits.runsMax);
  if (flags.warmUpMs !== undefined)
    options.throughputWarmUpMs = single('--warm-up-ms', flags.warmUpMs, 0, limits.warmUpMsMax);
  if (flags.sweepRates !== undefined)
    options.sweepRatesPerSecond = listOf('--sweep-rates', flags.sweepRates, parseInteger, 1, limits.rateMax);
  return options;
}

/** 100 → '100B', 1024 → '1KiB', 16384 → '16KiB', 1536 → '1536B'. */
export function formatSize(bytes: number): string {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB}MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB}KiB`;
  return `${bytes}B`;
}

/** '100', '100B', '1KiB', '1k', '16KiB', '1MiB' → bytes; NaN when not a size. */
export function parseSize(text: string): number {
  const match = /^(\d+)\s*(b|k|kb|kib|m|mb|mib)?$/i.exec(text.trim());
  if (match === null) return Number.NaN;
  const unit = (match[2] ?? 'b').toLowerCase();
  const factor = unit === 'b' ? 1 : unit.startsWith('k') ? KiB : MiB;
  return Number(match[1]) * factor;
}

function parseInteger(text: string): number {
  return /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
}

function items(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
}

/** Known names in their canonical order, deduplicated; throws on an unknown or empty list. */
function namesOf<T extends string>(flag: string, text: string, known: readonly T[]): T[] {
  const given = items(text);
  const unknown = given.filter((name) => !(known as readonly string[]).includes(name));
  if (unknown.length > 0)
    throw new CompareUsageError(`${flag}: unknown ${unknown.join(', ')}; known: ${known.join(', ')}`);
  if (given.length === 0) throw new CompareUsageError(`${flag}: empty list`);
  return known.filter((name) => given.includes(name));
}

/** Numbers ascending, deduplicated, each within [min, max]; throws otherwise. */
function listOf(
  flag: string,
  text: string,
  parse: (item: string) => number,
  min: number,
  max: number,
): number[] {
  const given = items(text);
  if (given.length === 0) throw new CompareUsageError(`${flag}: empty list`);
  const values = given.map((item) => {
    const value = parse(item);
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new CompareUsageError(`${flag}: '${item}' is not a whole number in [${min}, ${max}]`);
    }
    return value;
  });
  return [...new Set(values)].sort((a, b) => a - b);
}

function single(flag: string, text: string, min: number, max: number): number {
  const value = parseInteger(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new CompareUsageError(`${flag}: '${text}' is not a whole number in [${min}, ${max}]`);
  }
  return value;
}

/**
 * What bench/main.ts gives the 'compare' suite beyond the BenchContext: the resolved options and
 * the results directory (for compare.json, compare.md and the charts).
 */
export interface CompareContextExtras {
  compareOptions?: CompareOptions;
  /** The run's results directory; the suite writes its files there when given. */
  outDirectory?: string;
}
