/**
 * The shape every benchmark suite reports in. A suite is a module in bench/suites/ exporting
 * `export const suite: BenchSuite`. bench/main.ts runs the suites, prints a table and writes JSON +
 * Markdown to bench/results/.
 */
export interface BenchRow {
  /** Suite name, e.g. 'crc32c', 'record-batch', 'append', 'reference'. */
  suite: string;
  /** What was measured, e.g. 'native sse4.2 3-way, 1 MiB buffers'. */
  name: string;
  /** The figure, in `unit`. Medians where repeated. */
  value: number;
  /** e.g. 'GB/s', 'MB/s', 'records/s', 'batches/s', 'ms', 'µs'. */
  unit: string;
  /** Free-form detail: sample count, spread, parameters. */
  detail?: string;
}

export interface BenchContext {
  /** Short run for tests and smoke checks: fewer iterations, smaller files. */
  quick: boolean;
  /** A scratch directory on the disk under test, removed after the run. */
  scratchDir: string;
  /** Rows of suites that already ran in this process (a suite may report ratios against them). */
  previous: readonly BenchRow[];
  log(message: string): void;
  /** Size of the data directory of the recovery suite's start-up case (--recovery-gib). */
  recoveryDataBytes?: number;
}

export interface BenchSuite {
  name: string;
  run(context: BenchContext): Promise<BenchRow[]>;
}

/** Median of a non-empty list of numbers. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The `fraction` (0..1) quantile of a non-empty list, interpolated between the nearest ranks. */
export function percentile(values: readonly number[], fraction: number): number {
  if (values.length === 0) throw new Error('percentile of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(1, Math.max(0, fraction)) * (sorted.length - 1);
  const below = Math.floor(rank);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (rank - below);
}
