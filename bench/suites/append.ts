/**
 * PartitionLog append throughput per durability mode (`none`, `interval` with the default
 * flushIntervalMs, `always`), with 1 and 8 concurrent appenders, 64 KiB and 1 KiB batches.
 *
 * An appender is an async loop awaiting each of its own appends; 8 of them share one log, which is
 * what lets `always` fold the appends made while an fdatasync runs into the next one (group
 * commit). A few distinct batches are encoded before the timed loop (the log copies them into the
 * map). Each run opens a fresh log (segmentBytes 256 MiB, the default, so segments roll), times the
 * appends until the last one is acknowledged, then closes (untimed), deletes it and collects garbage
 * once the log is unreachable, so its maps are unmapped before the next run. Rows of runs that
 * rolled say at how many rolls a spare segment (prepared in the background) was ready.
 *
 * `none` and `interval` append a fixed amount (1 GiB of 64 KiB batches, 256 MiB of 1 KiB batches;
 * 64 MiB and 8 MiB in quick mode); `always` runs for a fixed time (3 s with 64 KiB batches, 2 s with
 * 1 KiB; 0.3 s in quick mode). Rows are medians of 3 runs (1 in quick mode); MB/s is decimal.
 *
 * Extra rows, the storage issue's targets:
 *  - `none` 64 KiB, 1 appender, MB/s ÷ the reference suite's 'page-cache write 64KiB chunks'
 *    (target >= 0.70; only when the reference suite ran earlier in the same process);
 *  - `always` with 8 appenders ÷ `always` with 1 appender (one fdatasync per batch), both measured
 *    here (target >= 5), with the fdatasync rounds per append of the 8-appender case;
 *  - append-to-ack latency percentiles of `always` (hdr-histogram-js, µs).
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import * as hdr from 'hdr-histogram-js';
import { BatchHeader, batchRecordCountAt } from '../../src/format/batch-header.js';
import { encodeBatch, type RecordInput } from '../../src/format/record-batch.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import type { Durability } from '../../src/storage/sync-scheduler.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';
import { referenceRowNames, referenceValue } from './reference.js';

const suiteName = 'append';
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const timestampBase = 1_700_000_000_000;
/** Value bytes of the records the bench batches are made of (the last record of a batch is padded). */
export const benchRecordValueBytes = 100;

/**
 * One batch of exactly `batchBytes` bytes (header included): records with a 10-byte key and a
 * `benchRecordValueBytes` random value, the last record's value sized so the batch is exact.
 */
export function makeBatch(batchBytes: number, seed: number): Uint8Array {
  const random = randomFillSync(Buffer.allocUnsafe(batchBytes));
  const record = (index: number, valueBytes: number): RecordInput => ({
    key: `k-${String(seed * 100_000 + index).padStart(8, '0')}`,
    value: random.subarray(index % 64, (index % 64) + valueBytes),
    timestamp: timestampBase + seed * 100_000 + index,
  });
  const one = encodeBatch([record(0, benchRecordValueBytes)]).length;
  const headerBytes = BatchHeader.size;
  const perRecord = one - headerBytes;
  let count = Math.max(1, Math.floor((batchBytes - headerBytes) / perRecord));
  for (;;) {
    const records = Array.from({ length: count - 1 }, (_, i) => record(i, benchRecordValueBytes));
    let lastValueBytes = benchRecordValueBytes;
    for (let attempt = 0; attempt < 8 && lastValueBytes >= 0; attempt++) {
      const batch = encodeBatch([...records, record(count - 1, lastValueBytes)], {
        maxBatchBytes: Math.max(batchBytes * 2, 64 * KiB),
      });
      const difference = batchBytes - batch.length;
      if (difference === 0) return batch;
      lastValueBytes += difference;
    }
    count -= 1; // the varint lengths would not settle (or the last value went negative): one fewer
    if (count < 1) throw new Error(`cannot make a batch of exactly ${batchBytes} bytes`);
  }
}

let gc: (() => void) | null = null;

/**
 * Runs a full garbage collection. Segment maps are unmapped only when their Buffers are collected,
 * so without this the pages (and disk blocks) of deleted logs would pile up from run to run.
 */
export async function collectGarbage(): Promise<void> {
  if (gc === null) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
  await yieldToEventLoop();
  gc();
}

/** `count` distinct batches of `batchBytes` each. */
export function makeBatches(batchBytes: number, count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, seed) => makeBatch(batchBytes, seed + 1));
}

interface Case {
  durability: Durability;
  appenders: number;
  batchBytes: number;
  /** Bytes to append per run (count-bounded), or null for a time-bounded run. */
  totalBytes: number | null;
  /** Time bound of a run, when totalBytes is null. */
  durationMs: number;
}

interface RunResult {
  appends: number;
  bytes: number;
  seconds: number;
  syncs: number;
  /** Append-to-ack latency, µs (recorded only for `always`). */
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  /** Rolls that took a spare segment prepared in the background, and rolls that created one. */
  spareAdopted: number;
  spareFallbacks: number;
}

interface Parameters {
  runs: number;
  bytes64KiB: number;
  bytes1KiB: number;
  always64KiBMs: number;
  always1KiBMs: number;
}

const fullParameters: Parameters = {
  runs: 3,
  bytes64KiB: 1 * GiB,
  bytes1KiB: 256 * MiB,
  always64KiBMs: 3000,
  always1KiBMs: 2000,
};

const quickParameters: Parameters = {
  runs: 1,
  bytes64KiB: 64 * MiB,
  bytes1KiB: 8 * MiB,
  always64KiBMs: 300,
  always1KiBMs: 300,
};

/**
 * One timed run on a fresh log in `directory`, then a full garbage collection. The collection runs
 * here, after `runLog` returned, because only then is the log unreachable: collected inside it (as
 * before 2026-11-25) the maps of the run's segments stayed mapped until some GC during the next
 * run, which then paid for unmapping ~1 GiB and got fresh (slow, in this VM) pages for its own.
 */
async function runCase(
  directory: string,
  testCase: Case,
  batches: readonly Uint8Array[],
): Promise<RunResult> {
  const result = await runLog(directory, testCase, batches);
  await collectGarbage();
  return result;
}

async function runLog(directory: string, testCase: Case, batches: readonly Uint8Array[]): Promise<RunResult> {
  mkdirSync(directory, { recursive: true });
  const log = await PartitionLog.open({ directory, durability: testCase.durability });
  const recordLatency = testCase.durability === 'always';
  // µs, 1 µs to 100 s; a longer stall is clamped, not lost.
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 100_000_000 });
  try {
    const syncsBefore = log.syncCount;
    const batchCount = batches.length;
    let remaining =
      testCase.totalBytes === null
        ? Number.POSITIVE_INFINITY
        : Math.ceil(testCase.totalBytes / testCase.batchBytes);
    let appends = 0;
    let bytes = 0;
    const start = process.hrtime.bigint();
    const deadline = start + BigInt(testCase.durationMs) * 1_000_000n;
    const timeBounded = testCase.totalBytes === null;
    // Appends acknowledged at once (`none`, `interval`) never leave the microtask queue: yield to the
    // event loop every ~1 MiB of each appender, as a server does between socket reads, so the flush timer and the
    // completions of background fdatasyncs run during the test as they would in the broker.
    const yieldEvery = Math.max(1, Math.floor(MiB / testCase.batchBytes));
    const appender = async (id: number): Promise<void> => {
      let next = id;
      while (remaining > 0) {
        if (timeBounded && process.hrtime.bigint() >= deadline) break;
        if (!recordLatency && (next - id) % yieldEvery === yieldEvery - 1) await yieldToEventLoop();
        remaining -= 1;
        const batch = batches[next % batchCount]!;
        next += 1;
        if (recordLatency) {
          const sent = process.hrtime.bigint();
          await log.append(batch);
          const latencyUs = Number((process.hrtime.bigint() - sent) / 1000n);
          histogram.recordValue(Math.min(100_000_000, Math.max(1, latencyUs)));
        } else {
          await log.append(batch);
        }
        appends += 1;
        bytes += batch.length;
      }
    };
    await Promise.all(Array.from({ length: testCase.appenders }, (_, id) => appender(id)));
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const spare = log.spareSegmentStats;
    return {
      spareAdopted: spare.adopted,
      spareFallbacks: spare.fallbacks,
      appends,
      bytes,
      seconds,
      syncs: log.syncCount - syncsBefore,
      p50Us: histogram.getValueAtPercentile(50),
      // Percentiles are bucket bounds and may exceed the recorded maximum by a rounding step.
      p99Us: Math.min(histogram.maxValue, histogram.getValueAtPercentile(99)),
      p999Us: Math.min(histogram.maxValue, histogram.getValueAtPercentile(99.9)),
      maxUs: histogram.maxValue,
    };
  } finally {
    histogram.destroy();
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  }
}

/** MB/s of writing `totalBytes` to a new file in `writeSync` calls of the given batches (the file is removed). */
function writeSequential(file: string, chunks: readonly Uint8Array[], totalBytes: number): number {
  const descriptor = openSync(file, 'w');
  let written = 0;
  try {
    const start = process.hrtime.bigint();
    for (let i = 0; written < totalBytes; i++) {
      const chunk = chunks[i % chunks.length]!;
      let offset = 0;
      while (offset < chunk.length) offset += writeSync(descriptor, chunk, offset, chunk.length - offset);
      written += chunk.length;
    }
    return written / 1e6 / (Number(process.hrtime.bigint() - start) / 1e9);
  } finally {
    closeSync(descriptor);
    rmSync(file, { force: true });
  }
}

function sizeLabel(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  return `${bytes / KiB} KiB`;
}

function caseLabel(testCase: Case): string {
  const durability = testCase.durability === 'interval' ? 'interval (200 ms)' : testCase.durability;
  const appenders = testCase.appenders === 1 ? '1 appender' : `${testCase.appenders} appenders`;
  return `${durability}, ${sizeLabel(testCase.batchBytes)} batches, ${appenders}`;
}

function formatNumber(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toPrecision(3);
}

/** 'median of 3 (1,200–1,400)' or '1 run'. */
function spread(values: readonly number[]): string {
  if (values.length === 1) return '1 run';
  return `median of ${values.length} (${formatNumber(Math.min(...values))}–${formatNumber(Math.max(...values))})`;
}

function round(value: number, digits = 0): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

interface CaseSummary {
  testCase: Case;
  runs: RunResult[];
  megabytesPerSecond: number;
  batchesPerSecond: number;
  syncsPerAppend: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const batchesBySize = new Map<number, Uint8Array[]>([
      [64 * KiB, makeBatches(64 * KiB, 4)],
      [1 * KiB, makeBatches(1 * KiB, 16)],
    ]);
    const recordsPer = (batchBytes: number): number => {
      return batchRecordCountAt(batchesBySize.get(batchBytes)![0]!, 0);
    };
    context.log(
      `batches: 64 KiB = ${recordsPer(64 * KiB)} records, 1 KiB = ${recordsPer(KiB)} records of ~${benchRecordValueBytes} B values`,
    );

    const cases: Case[] = [];
    for (const batchBytes of [64 * KiB, 1 * KiB]) {
      for (const durability of ['none', 'interval', 'always'] as const) {
        for (const appenders of [1, 8]) {
          const always = durability === 'always';
          cases.push({
            durability,
            appenders,
            batchBytes,
            totalBytes: always ? null : batchBytes === KiB ? parameters.bytes1KiB : parameters.bytes64KiB,
            durationMs: batchBytes === KiB ? parameters.always1KiBMs : parameters.always64KiBMs,
          });
        }
      }
    }

    // The first pass over fresh page-cache memory is often much slower here (see the reference
    // suite), and the append path needs JIT warm-up: one unreported `none` run per batch size.
    let runNumber = 0;
    for (const [batchBytes, batches] of batchesBySize) {
      const warmUp: Case = {
        durability: 'none',
        appenders: 1,
        batchBytes,
        totalBytes: batchBytes === KiB ? parameters.bytes1KiB : parameters.bytes64KiB / 4,
        durationMs: 0,
      };
      const result = await runCase(path.join(context.scratchDir, `log-${runNumber++}`), warmUp, batches);
      context.log(
        `warm-up ${caseLabel(warmUp)}: ${formatNumber(result.bytes / 1e6 / result.seconds)} MB/s (not reported)`,
      );
    }

    const summaries: CaseSummary[] = [];
    // write() of 64 KiB chunks to a fresh file, timed right before each `none` 64 KiB 1-appender run:
    // the reference suite's measure under this suite's conditions (page-cache memory state, load).
    const baseline: number[] = [];
    for (const testCase of cases) {
      const batches = batchesBySize.get(testCase.batchBytes)!;
      const runs: RunResult[] = [];
      for (let run = 0; run < parameters.runs; run++) {
        await yieldToEventLoop(); // let the runner handle a signal between runs
        const directory = path.join(context.scratchDir, `log-${runNumber++}`);
        if (testCase.durability === 'none' && testCase.appenders === 1 && testCase.batchBytes === 64 * KiB) {
          baseline.push(writeSequential(`${directory}.data`, batches, testCase.totalBytes!));
        }
        const result = await runCase(directory, testCase, batches);
        runs.push(result);
        context.log(
          `${caseLabel(testCase)}: run ${run + 1}/${parameters.runs}: ` +
            `${formatNumber(result.bytes / 1e6 / result.seconds)} MB/s, ` +
            `${formatNumber(result.appends / result.seconds)} batches/s, ${result.syncs} syncs, ` +
            `spare adopted at ${result.spareAdopted}/${result.spareAdopted + result.spareFallbacks} rolls`,
        );
      }
      summaries.push({
        testCase,
        runs,
        megabytesPerSecond: median(runs.map((r) => r.bytes / 1e6 / r.seconds)),
        batchesPerSecond: median(runs.map((r) => r.appends / r.seconds)),
        syncsPerAppend: median(runs.map((r) => r.syncs / r.appends)),
        p50Us: median(runs.map((r) => r.p50Us)),
        p99Us: median(runs.map((r) => r.p99Us)),
        p999Us: median(runs.map((r) => r.p999Us)),
        maxUs: Math.max(...runs.map((r) => r.maxUs)),
      });
    }

    const rows: BenchRow[] = [];
    const row = (name: string, value: number, unit: string, detail: string): void => {
      rows.push({ suite: suiteName, name, value, unit, detail });
    };
    const find = (durability: Durability, appenders: number, batchBytes: number): CaseSummary =>
      summaries.find(
        (s) =>
          s.testCase.durability === durability &&
          s.testCase.appenders === appenders &&
          s.testCase.batchBytes === batchBytes,
      )!;
    const reference64KiB = referenceValue(context.previous, referenceRowNames.pageCacheWrite64KiB);

    for (const summary of summaries) {
      const { testCase, runs } = summary;
      const amount =
        testCase.totalBytes === null
          ? `${testCase.durationMs / 1000} s per run (${runs.map((r) => r.appends).join('/')} appends)`
          : `${sizeLabel(testCase.totalBytes)} per run`;
      const rolls = runs.map((r) => r.spareAdopted + r.spareFallbacks);
      const spares = rolls.some((count) => count > 0)
        ? `, spare segment adopted at ${runs.map((r) => `${r.spareAdopted}/${r.spareAdopted + r.spareFallbacks}`).join(', ')} rolls`
        : '';
      const syncs = `${runs.map((r) => r.syncs).join('/')} fdatasync rounds${spares}`;
      const label = caseLabel(testCase);
      if (testCase.batchBytes === 64 * KiB) {
        let ratio = '';
        if (testCase.durability === 'none') {
          ratio =
            reference64KiB === undefined
              ? '; ratio to page-cache write 64KiB: not computed, the reference suite did not run first'
              : `; ${(summary.megabytesPerSecond / reference64KiB).toFixed(2)}x the page-cache write 64KiB reference`;
        }
        row(
          `${label}, MB/s`,
          round(summary.megabytesPerSecond),
          'MB/s',
          `${amount}, ${spread(runs.map((r) => r.bytes / 1e6 / r.seconds))}, ${syncs}${ratio}`,
        );
        row(
          `${label}, batches/s`,
          round(summary.batchesPerSecond),
          'batches/s',
          `${amount}, ${spread(runs.map((r) => r.appends / r.seconds))}`,
        );
      } else {
        row(
          `${label}, batches/s`,
          round(summary.batchesPerSecond),
          'batches/s',
          `${amount}, ${spread(runs.map((r) => r.appends / r.seconds))}, ` +
            `${summary.megabytesPerSecond.toFixed(1)} MB/s, ${syncs}`,
        );
      }
    }

    // Target (a): `none` with 64 KiB batches >= 70% of the page-cache write of 64 KiB chunks.
    const none64 = find('none', 1, 64 * KiB);
    if (reference64KiB === undefined) {
      context.log('reference suite not run first: no ratio to the page-cache write reference');
    } else {
      row(
        'target: none 64KiB append ÷ page-cache write 64KiB',
        round(none64.megabytesPerSecond / reference64KiB, 3),
        'ratio',
        `${Math.round(none64.megabytesPerSecond)} MB/s (1 appender) ÷ ${Math.round(reference64KiB)} MB/s ` +
          `(reference '${referenceRowNames.pageCacheWrite64KiB}', same process); target >= 0.70`,
      );
    }

    if (baseline.length > 0) {
      const baselineMedian = median(baseline);
      row(
        'write() 64KiB chunks, same conditions (baseline)',
        round(baselineMedian),
        'MB/s',
        `${sizeLabel(parameters.bytes64KiB)} to a fresh file with writeSync, timed right before each none 64 KiB ` +
          `1-appender run, ${spread(baseline)}; the reference suite's measure in this suite's conditions`,
      );
      row(
        'none 64KiB append ÷ write() baseline, same conditions',
        round(none64.megabytesPerSecond / baselineMedian, 3),
        'ratio',
        `${Math.round(none64.megabytesPerSecond)} ÷ ${Math.round(baselineMedian)} MB/s (not the issue's target, which uses the reference row)`,
      );
    }

    // Target (b): `always` with 8 appenders >= 5x one fdatasync per batch (`always`, 1 appender).
    for (const batchBytes of [64 * KiB, KiB]) {
      const one = find('always', 1, batchBytes);
      const eight = find('always', 8, batchBytes);
      const label = sizeLabel(batchBytes).replace(' ', '');
      row(
        `target: always 8 appenders ÷ 1 appender, ${label} batches`,
        round(eight.batchesPerSecond / one.batchesPerSecond, 2),
        'ratio',
        `${formatNumber(eight.batchesPerSecond)} ÷ ${formatNumber(one.batchesPerSecond)} batches/s ` +
          `(${eight.megabytesPerSecond.toFixed(1)} ÷ ${one.megabytesPerSecond.toFixed(1)} MB/s), same suite run; target >= 5`,
      );
      row(
        `always ${label}, 8 appenders: fdatasync rounds per append`,
        round(eight.syncsPerAppend, 3),
        'syncs/append',
        `${eight.runs.map((r) => `${r.syncs}/${r.appends}`).join(', ')} (1 appender: ` +
          `${one.syncsPerAppend.toFixed(3)}); 1/8 = 0.125 would be every round carrying all 8 appenders`,
      );
    }

    for (const [appenders, batchBytes] of [
      [1, 64 * KiB],
      [8, 64 * KiB],
      [1, KiB],
    ] as const) {
      const summary = find('always', appenders, batchBytes);
      const label = `always ${sizeLabel(batchBytes).replace(' ', '')}, ${appenders} appender${appenders > 1 ? 's' : ''}`;
      row(
        `${label}: append-ack p50`,
        summary.p50Us,
        'µs',
        `append call to acknowledgement, ${spread(summary.runs.map((r) => r.p50Us))}`,
      );
      row(
        `${label}: append-ack p99`,
        summary.p99Us,
        'µs',
        `${spread(summary.runs.map((r) => r.p99Us))}; p99.9 ${Math.round(summary.p999Us)} µs, max ${Math.round(summary.maxUs)} µs`,
      );
    }
    return rows;
  },
};
