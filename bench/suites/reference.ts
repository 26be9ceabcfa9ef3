/**
 * The physical reference of this machine, measured in the scratch directory (the disk under test):
 * what the page cache, fdatasync and memory can do at best. Later suites look these rows up in
 * `context.previous` (use `referenceValue`) to print how close Spillway comes to the hardware.
 *
 * Every figure is the median of 3 runs (1 in quick mode); files are deleted between runs.
 * MB/s and GB/s are decimal (10^6 and 10^9 bytes per second). Full mode takes ~15–20 s on a
 * local SSD, quick mode < 1 s; the synced loops stop early at a time cap (5 s per run) so a slow
 * disk cannot stretch the suite past ~40 s.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import * as hdr from 'hdr-histogram-js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

/** Row names are an API: other suites find reference figures by them. Never rename one. */
export const referenceRowNames = {
  /** MB/s: 1 GiB (64 MiB quick) written in 1 MiB `writeSync` chunks, no sync. */
  pageCacheWrite1MiB: 'page-cache write 1MiB chunks',
  /** MB/s: the same in 64 KiB chunks. */
  pageCacheWrite64KiB: 'page-cache write 64KiB chunks',
  /** MB/s: 1 MiB chunks then one fdatasync, the sync included in the time. */
  pageCacheWriteFdatasync: 'page-cache write + fdatasync',
  /** writes/s: append 64 KiB, fdatasync, one at a time. */
  write64KiBFdatasyncEach: 'write 64KiB + fdatasync each',
  /** MB/s: the same loop as bandwidth. */
  write64KiBFdatasyncEachBandwidth: 'write 64KiB + fdatasync each, bandwidth',
  /**
   * MB/s: append 1 MiB, fdatasync, one at a time: what a group-committed log (durability `always`)
   * can approach, every acknowledgement after its own fdatasync.
   */
  write1MiBFdatasyncEach: 'write 1MiB + fdatasync each',
  /** ops/s: append 4 KiB, fdatasync, one at a time. */
  append4KiBFdatasync: '4KiB append + fdatasync',
  /** µs: latency of the fdatasync call in the 4 KiB append loop, 50th percentile. */
  fdatasyncP50: 'fdatasync p50',
  /** µs: the same, 99th percentile. */
  fdatasyncP99: 'fdatasync p99',
  /** GB/s: Buffer.copy of 64 MiB. */
  memcpy: 'memcpy',
} as const;

export type ReferenceRowName = (typeof referenceRowNames)[keyof typeof referenceRowNames];

export const referenceSuiteName = 'reference';

/** The value of a reference row among the rows already gathered, or undefined if the suite did not run. */
export function referenceValue(previous: readonly BenchRow[], name: ReferenceRowName): number | undefined {
  return previous.find((row) => row.suite === referenceSuiteName && row.name === name)?.value;
}

interface Parameters {
  runs: number;
  sequentialFileBytes: number;
  write64KiBCount: number;
  write1MiBCount: number;
  append4KiBCount: number;
  memcpyRepetitions: number;
  /** Per run of a synced loop: stop early past this, so a slow disk cannot stretch the suite. */
  syncedLoopTimeCapMs: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const fullParameters: Parameters = {
  runs: 3,
  sequentialFileBytes: 1 * GiB,
  write64KiBCount: 3000,
  write1MiBCount: 256,
  append4KiBCount: 20_000,
  memcpyRepetitions: 16,
  syncedLoopTimeCapMs: 5000,
};

const quickParameters: Parameters = {
  runs: 1,
  sequentialFileBytes: 64 * MiB,
  write64KiBCount: 300,
  write1MiBCount: 16,
  append4KiBCount: 2000,
  memcpyRepetitions: 2,
  syncedLoopTimeCapMs: 500,
};

const memcpyBytes = 64 * MiB;

export const suite: BenchSuite = {
  name: referenceSuiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const file = path.join(context.scratchDir, 'reference.data');
    // Random bytes, so no layer below can cheat on zeroes or repetition within a chunk.
    const source = randomFillSync(Buffer.allocUnsafe(MiB));
    const rows: BenchRow[] = [];
    const row = (name: ReferenceRowName, value: number, unit: string, detail: string): void => {
      rows.push({ suite: referenceSuiteName, name, value, unit, detail });
    };
    const runs = async <T>(what: string, measure: () => T): Promise<T[]> => {
      const results: T[] = [];
      for (let run = 0; run < parameters.runs; run += 1) {
        results.push(measure());
        rmSync(file, { force: true });
        context.log(`${what}: run ${run + 1}/${parameters.runs}`);
        await yieldToEventLoop(); // the measurements are synchronous: let SIGINT cleanup run
      }
      return results;
    };
    const fileSize = formatBytes(parameters.sequentialFileBytes);

    // The first pass of a process is often several times slower here (1.1 GB/s, then 5.5–6.5 GB/s;
    // likely first touch of page-cache memory in the VM), which is not the steady state: warm up.
    const warmUp = writeSequential(file, source, parameters.sequentialFileBytes, MiB, false);
    rmSync(file, { force: true });
    context.log(`warm-up write: ${Math.round(warmUp)} MB/s (not reported)`);

    const write1MiB = await runs('page-cache write 1 MiB chunks', () =>
      writeSequential(file, source, parameters.sequentialFileBytes, MiB, false),
    );
    row(
      referenceRowNames.pageCacheWrite1MiB,
      median(write1MiB),
      'MB/s',
      `${fileSize} file, ${spread(write1MiB)}, after an unmeasured warm-up pass (${Math.round(warmUp)} MB/s)`,
    );

    const write64KiB = await runs('page-cache write 64 KiB chunks', () =>
      writeSequential(file, source, parameters.sequentialFileBytes, 64 * KiB, false),
    );
    row(
      referenceRowNames.pageCacheWrite64KiB,
      median(write64KiB),
      'MB/s',
      `${fileSize} file, ${spread(write64KiB)}`,
    );

    const writeSynced = await runs('page-cache write + fdatasync', () =>
      writeSequential(file, source, parameters.sequentialFileBytes, MiB, true),
    );
    row(
      referenceRowNames.pageCacheWriteFdatasync,
      median(writeSynced),
      'MB/s',
      `${fileSize} file in 1 MiB chunks, one fdatasync at the end (timed), ${spread(writeSynced)}`,
    );

    const each64KiB = await runs('write 64 KiB + fdatasync each', () =>
      appendSynced(
        file,
        source.subarray(0, 64 * KiB),
        parameters.write64KiBCount,
        parameters.syncedLoopTimeCapMs,
      ),
    );
    const writesPerSecond = each64KiB.map((result) => result.operationsPerSecond);
    const count64KiB = each64KiB.map((result) => result.operations).join('/');
    row(
      referenceRowNames.write64KiBFdatasyncEach,
      median(writesPerSecond),
      'writes/s',
      `${count64KiB} appends per run, ${spread(writesPerSecond)}`,
    );
    const bandwidth64KiB = writesPerSecond.map((rate) => (rate * 64 * KiB) / 1e6);
    row(
      referenceRowNames.write64KiBFdatasyncEachBandwidth,
      median(bandwidth64KiB),
      'MB/s',
      `${count64KiB} appends per run, ${spread(bandwidth64KiB)}`,
    );

    const each1MiB = await runs('write 1 MiB + fdatasync each', () =>
      appendSynced(file, source.subarray(0, MiB), parameters.write1MiBCount, parameters.syncedLoopTimeCapMs),
    );
    const bandwidth1MiB = each1MiB.map((result) => (result.operationsPerSecond * MiB) / 1e6);
    row(
      referenceRowNames.write1MiBFdatasyncEach,
      median(bandwidth1MiB),
      'MB/s',
      `${each1MiB.map((result) => result.operations).join('/')} appends of 1 MiB per run, ${spread(bandwidth1MiB)}; the ceiling of \`always\``,
    );

    const append4KiB = await runs('4 KiB append + fdatasync', () =>
      appendSynced(
        file,
        source.subarray(0, 4 * KiB),
        parameters.append4KiBCount,
        parameters.syncedLoopTimeCapMs,
      ),
    );
    const appendsPerSecond = append4KiB.map((result) => result.operationsPerSecond);
    const count4KiB = append4KiB.map((result) => result.operations).join('/');
    row(
      referenceRowNames.append4KiBFdatasync,
      median(appendsPerSecond),
      'ops/s',
      `${count4KiB} appends per run, ${spread(appendsPerSecond)}`,
    );
    const p50 = append4KiB.map((result) => result.syncP50Us);
    const p99 = append4KiB.map((result) => result.syncP99Us);
    const p999 = median(append4KiB.map((result) => result.syncP999Us));
    const maxUs = Math.max(...append4KiB.map((result) => result.syncMaxUs));
    row(
      referenceRowNames.fdatasyncP50,
      median(p50),
      'µs',
      `4 KiB appends, ${count4KiB} per run, ${spread(p50)}`,
    );
    row(
      referenceRowNames.fdatasyncP99,
      median(p99),
      'µs',
      `4 KiB appends, ${spread(p99)}; p99.9 ${Math.round(p999)} µs, max ${Math.round(maxUs)} µs`,
    );

    const copies = measureMemcpy(parameters);
    context.log(`memcpy: ${copies.length} run(s)`);
    row(
      referenceRowNames.memcpy,
      median(copies),
      'GB/s',
      `Buffer.copy of 64 MiB (beyond the caches: DRAM) x${parameters.memcpyRepetitions} per run, ${spread(copies)}`,
    );
    return rows;
  },
};

/** Writes `totalBytes` to a new file in `chunkBytes` writes; returns MB/s, optionally including one fdatasync. */
function writeSequential(
  file: string,
  source: Buffer,
  totalBytes: number,
  chunkBytes: number,
  sync: boolean,
): number {
  const chunk = source.subarray(0, chunkBytes);
  const descriptor = openSync(file, 'w');
  try {
    const start = process.hrtime.bigint();
    for (let written = 0; written < totalBytes; written += chunkBytes) writeFully(descriptor, chunk);
    if (sync) fdatasyncSync(descriptor);
    return totalBytes / 1e6 / secondsSince(start);
  } finally {
    closeSync(descriptor);
  }
}

interface SyncedLoopResult {
  operations: number;
  operationsPerSecond: number;
  syncP50Us: number;
  syncP99Us: number;
  syncP999Us: number;
  syncMaxUs: number;
}

/** Appends `chunk` to a new file `count` times (fewer past the time cap), each followed by fdatasync. */
function appendSynced(file: string, chunk: Buffer, count: number, timeCapMs: number): SyncedLoopResult {
  // µs, 1 µs to 100 s at 3 significant digits; a longer stall would be clamped, not lost.
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 100_000_000 });
  const descriptor = openSync(file, 'w');
  try {
    const start = process.hrtime.bigint();
    const deadline = start + BigInt(timeCapMs) * 1_000_000n;
    let operations = 0;
    while (operations < count) {
      writeFully(descriptor, chunk);
      const syncStart = process.hrtime.bigint();
      fdatasyncSync(descriptor);
      const syncEnd = process.hrtime.bigint();
      histogram.recordValue(Math.min(100_000_000, Math.max(1, Number((syncEnd - syncStart) / 1000n))));
      operations += 1;
      if (syncEnd > deadline) break;
    }
    const seconds = secondsSince(start);
    return {
      operations,
      operationsPerSecond: operations / seconds,
      syncP50Us: histogram.getValueAtPercentile(50),
      syncP99Us: histogram.getValueAtPercentile(99),
      syncP999Us: histogram.getValueAtPercentile(99.9),
      syncMaxUs: histogram.maxValue,
    };
  } finally {
    closeSync(descriptor);
    histogram.destroy();
  }
}

/** GB/s of Buffer.copy between two 64 MiB buffers whose pages are already faulted in. */
function measureMemcpy(parameters: Parameters): number[] {
  const source = Buffer.allocUnsafeSlow(memcpyBytes).fill(0xa5);
  const target = Buffer.allocUnsafeSlow(memcpyBytes).fill(0);
  source.copy(target); // warm-up
  const results: number[] = [];
  for (let run = 0; run < parameters.runs; run += 1) {
    const start = process.hrtime.bigint();
    for (let repetition = 0; repetition < parameters.memcpyRepetitions; repetition += 1) source.copy(target);
    results.push((memcpyBytes * parameters.memcpyRepetitions) / 1e9 / secondsSince(start));
  }
  if (target[memcpyBytes - 1] !== 0xa5) throw new Error('memcpy did not copy');
  return results;
}

function writeFully(descriptor: number, chunk: Buffer): void {
  let offset = 0;
  while (offset < chunk.length) offset += writeSync(descriptor, chunk, offset, chunk.length - offset);
}

function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function formatBytes(bytes: number): string {
  return bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`;
}

/** 'median of 3 (3,100–3,500)' or '1 run'. */
function spread(values: readonly number[]): string {
  if (values.length === 1) return '1 run';
  const format = (value: number): string =>
    value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toPrecision(3);
  return `median of ${values.length} (${format(Math.min(...values))}–${format(Math.max(...values))})`;
}
