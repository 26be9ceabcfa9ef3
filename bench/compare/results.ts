/**
 * The shape of a comparison's results (compare.json), and the ratios every throughput and latency
 * figure is also given as: to the machine's physical reference (the 'reference' suite) and to the
 * best peer at equal durability, size, client and partition count.
 */
import type { Durability } from '../../src/protocol/types.js';
import type { BenchRow } from '../report.js';
import { referenceRowNames, referenceValue } from '../suites/reference.js';
import type { CompareOptions, SystemName } from './options.js';

/** The reference figures the ratios divide by (undefined when the reference suite did not run). */
export interface ReferenceFigures {
  /** MB/s, 'page-cache write 1MiB chunks': the ceiling of an append acknowledged before any fsync. */
  pageCacheWriteMegabytesPerSecond: number | undefined;
  /** MB/s, 'page-cache write + fdatasync': the ceiling of bytes that must reach the disk. */
  syncedWriteMegabytesPerSecond: number | undefined;
  /**
   * MB/s, 'write 1MiB + fdatasync each': the ceiling of `always`, every acknowledgement after its own
   * fdatasync (a group-committed log approaches it). Optional: results of older runs lack it.
   */
  syncedEachMegabytesPerSecond?: number | undefined;
  /** GB/s, 'memcpy': the ceiling of reading from the page cache. */
  memcpyGigabytesPerSecond: number | undefined;
  /** µs, one fdatasync of a 4 KiB append, p50 and p99: the floor of an `always` latency. */
  fdatasyncP50Us: number | undefined;
  fdatasyncP99Us: number | undefined;
}

export function referenceFiguresOf(rows: readonly BenchRow[]): ReferenceFigures {
  return {
    pageCacheWriteMegabytesPerSecond: referenceValue(rows, referenceRowNames.pageCacheWrite1MiB),
    syncedWriteMegabytesPerSecond: referenceValue(rows, referenceRowNames.pageCacheWriteFdatasync),
    syncedEachMegabytesPerSecond: referenceValue(rows, referenceRowNames.write1MiBFdatasyncEach),
    memcpyGigabytesPerSecond: referenceValue(rows, referenceRowNames.memcpy),
    fdatasyncP50Us: referenceValue(rows, referenceRowNames.fdatasyncP50),
    fdatasyncP99Us: referenceValue(rows, referenceRowNames.fdatasyncP99),
  };
}

/** Per system and mode: what ran, at which setting, and what it guarantees. */
export interface TargetReport {
  system: SystemName;
  durability: Durability;
  setting: string;
  guarantee: string;
  /** measured: ran (some cells may still have failed, see `failures`); unavailable: could not start here; n/a: no such setting. */
  status: 'measured' | 'unavailable' | 'n/a' | 'failed';
  reason?: string;
  version?: string;
}

/** The cell of a throughput figure: everything that must be equal for two figures to be compared. */
export interface ThroughputCell {
  /** 'queue': consume in queue mode, every message acknowledged on its own (at 100 B). */
  scenario: 'produce' | 'consume' | 'queue';
  durability: Durability;
  messageBytes: number;
  /** Producer connections (produce) or consumer connections (consume). */
  clients: number;
  partitions: number;
}

export interface ThroughputMeasurement extends ThroughputCell {
  system: SystemName;
  /** Median over the runs. */
  messagesPerSecond: number;
  /** Payload bytes only, decimal MB/s, median over the runs. */
  megabytesPerSecond: number;
  /** Messages acknowledged (produce) or read back (consume), per run. */
  messages: number[];
  /** msg/s of each run. */
  perRun: number[];
  /** MB/s ÷ the reference figure named in `referenceName`. */
  ratioToReference?: number;
  referenceName?: string;
  /** msg/s ÷ the best peer's (not Spillway) msg/s in the same cell; absent when no peer has the cell. */
  ratioToBestPeer?: number;
  bestPeer?: SystemName;
  note?: string;
}

export interface LatencyCell {
  /** 'latency': the fixed rate of the run; 'sweep': one step of ascending rates. */
  scenario: 'latency' | 'sweep';
  durability: Durability;
  messageBytes: number;
  ratePerSecond: number;
}

export interface LatencyMeasurement extends LatencyCell {
  system: SystemName;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  measured: number;
  lost: number;
  producerLagMaxMs: number;
  /** Why this rate is past what the system sustains (the sweep stops here); absent when sustained. */
  saturated?: string;
  /** With --runs > 1 (latency cells): each run's p99, µs; the percentiles above are medians. */
  perRunP99Us?: number[];
  /** p99 ÷ the best (lowest) peer p99 in the same cell: below 1 is better. */
  p99RatioToBestPeer?: number;
  bestPeer?: SystemName;
}

export interface CompareFailure {
  system: SystemName;
  durability: Durability;
  what: string;
  error: string;
}

export interface CompareResults {
  options: CompareOptions;
  reference: ReferenceFigures;
  targets: TargetReport[];
  throughput: ThroughputMeasurement[];
  latency: LatencyMeasurement[];
  failures: CompareFailure[];
  /** Steps of the run as planned, and seconds it took. */
  steps: number;
  durationSeconds: number;
}

/** The reference figure a throughput result is divided by, with its row name; undefined if not measured. */
export function referenceFor(
  cell: Pick<ThroughputCell, 'scenario' | 'durability'>,
  reference: ReferenceFigures,
): { megabytesPerSecond: number; name: string } | undefined {
  if (cell.scenario === 'queue') return undefined; // per-message work, not bandwidth: no physical bound to divide by
  if (cell.scenario === 'consume') {
    const gigabytes = reference.memcpyGigabytesPerSecond;
    return gigabytes === undefined
      ? undefined
      : { megabytesPerSecond: gigabytes * 1000, name: referenceRowNames.memcpy };
  }
  if (cell.durability === 'none') {
    const value = reference.pageCacheWriteMegabytesPerSecond;
    return value === undefined
      ? undefined
      : { megabytesPerSecond: value, name: referenceRowNames.pageCacheWrite1MiB };
  }
  const each = reference.syncedEachMegabytesPerSecond;
  if (cell.durability === 'always' && each !== undefined) {
    return { megabytesPerSecond: each, name: referenceRowNames.write1MiBFdatasyncEach };
  }
  const value = reference.syncedWriteMegabytesPerSecond;
  return value === undefined
    ? undefined
    : { megabytesPerSecond: value, name: referenceRowNames.pageCacheWriteFdatasync };
}

function sameThroughputCell(a: ThroughputCell, b: ThroughputCell): boolean {
  return (
    a.scenario === b.scenario &&
    a.durability === b.durability &&
    a.messageBytes === b.messageBytes &&
    a.clients === b.clients &&
    a.partitions === b.partitions
  );
}

function sameLatencyCell(a: LatencyCell, b: LatencyCell): boolean {
  return (
    a.scenario === b.scenario &&
    a.durability === b.durability &&
    a.messageBytes === b.messageBytes &&
    a.ratePerSecond === b.ratePerSecond
  );
}

/**
 * Fills the ratio fields in place: to the reference (MB/s ÷ page-cache write MB/s for `none`, ÷
 * page-cache write + fdatasync MB/s for `interval` and `always`, ÷ memcpy for consume) and to the best
 * peer in the same cell (peers are every system but Spillway; a peer's own ratio is ≤ 1). Latency:
 * p99 ÷ the lowest peer p99 in the same cell, for sustained rates only.
 */
export function computeRatios(results: Pick<CompareResults, 'throughput' | 'latency' | 'reference'>): void {
  for (const measurement of results.throughput) {
    const reference = referenceFor(measurement, results.reference);
    if (reference !== undefined && reference.megabytesPerSecond > 0) {
      measurement.ratioToReference = measurement.megabytesPerSecond / reference.megabytesPerSecond;
      measurement.referenceName = reference.name;
    }
    const peers = results.throughput.filter(
      (other) => other.system !== 'spillway' && sameThroughputCell(other, measurement),
    );
    const best = peers.reduce<ThroughputMeasurement | undefined>(
      (top, other) => (top === undefined || other.messagesPerSecond > top.messagesPerSecond ? other : top),
      undefined,
    );
    if (best !== undefined && best.messagesPerSecond > 0) {
      measurement.ratioToBestPeer = measurement.messagesPerSecond / best.messagesPerSecond;
      measurement.bestPeer = best.system;
    }
  }
  for (const measurement of results.latency) {
    const peers = results.latency.filter(
      (other) =>
        other.system !== 'spillway' && other.saturated === undefined && sameLatencyCell(other, measurement),
    );
    const best = peers.reduce<LatencyMeasurement | undefined>(
      (top, other) => (top === undefined || other.p99Us < top.p99Us ? other : top),
      undefined,
    );
    if (best !== undefined && best.p99Us > 0 && measurement.saturated === undefined) {
      measurement.p99RatioToBestPeer = measurement.p99Us / best.p99Us;
      measurement.bestPeer = best.system;
    }
  }
}
