/**
 * PartitionLog sequential read throughput with a warm page cache: `read(offset, 1 MiB)` from the
 * start to the end of a 1 GiB log (64 MiB in quick mode) of 64 KiB batches (~100-byte record
 * values, as in the append suite), written with durability `none`, closed, and reopened cleanly.
 *
 * Rows (medians of 3 passes, 1 in quick mode; MB/s is decimal, of batch bytes returned):
 *  - read only: the zero-copy views `read` returns, bytes not touched (the cost of finding batches);
 *  - first touching pass after the reopen: the page cache is warm but the new map is not
 *    (minor page faults), verifying every batch's CRC32C with the native code;
 *  - read + CRC32C of every batch (what a careful consumer does), map warm;
 *  - read + decode of every record with decodeRecords (one object per record) and with
 *    RecordCursor (no allocation per record), in MB/s and records/s: the cost of decoding
 *    compared with the zero-copy read.
 */
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords, RecordCursor, verifyBatchCrc } from '../../src/format/record-batch.js';
import { crc32c } from '../../src/native.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';
import { collectGarbage, makeBatches } from './append.js';

const suiteName = 'read';
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const readBytes = 1 * MiB;
const batchBytes = 64 * KiB;

interface Parameters {
  runs: number;
  logBytes: number;
  /** A pass of the read-only loop repeats until at least this long (it is very fast). */
  minimumPassMs: number;
}

const fullParameters: Parameters = { runs: 3, logBytes: 1 * GiB, minimumPassMs: 200 };
const quickParameters: Parameters = { runs: 1, logBytes: 64 * MiB, minimumPassMs: 20 };

interface PassResult {
  bytes: number;
  records: number;
  reads: number;
  seconds: number;
}

/** Per batch of a read result: what the pass does with it. Returns records handled. */
type BatchVisitor = (bytes: Uint8Array, position: number) => number;

/** Reads the whole log sequentially in `readBytes` steps, calling `visit` on every batch (if given). */
function readPass(log: PartitionLog, visit: BatchVisitor | null): PassResult {
  let offset = log.logStartOffset;
  const end = log.logEndOffset;
  let bytes = 0;
  let records = 0;
  let reads = 0;
  const start = process.hrtime.bigint();
  while (offset < end) {
    const result = log.read(offset, readBytes);
    reads++;
    if (result.batchCount === 0) throw new Error(`read at ${offset} returned nothing before the end ${end}`);
    const view = result.bytes;
    if (visit !== null) {
      let position = 0;
      while (position < view.length) {
        records += visit(view, position);
        position += batchLengthAt(view, position);
      }
    }
    bytes += view.length;
    offset = result.nextOffset;
  }
  return { bytes, records, reads, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

const verifyCrc: BatchVisitor = (bytes, position) => {
  if (!verifyBatchCrc(bytes, position, crc32c)) throw new Error(`CRC32C mismatch at ${position}`);
  return 0;
};

let checksum = 0;

const decodeWithIterator: BatchVisitor = (bytes, position) => {
  let records = 0;
  for (const record of decodeRecords(bytes, position)) {
    records++;
    checksum += record.value === null ? 0 : record.value.length;
  }
  return records;
};

const decodeWithCursor: BatchVisitor = (bytes, position) => {
  const cursor = new RecordCursor(bytes, position);
  let records = 0;
  while (cursor.next()) {
    records++;
    checksum += cursor.valueLength;
  }
  return records;
};

function formatNumber(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toPrecision(3);
}

function spread(values: readonly number[]): string {
  if (values.length === 1) return '1 pass';
  return `median of ${values.length} passes (${formatNumber(Math.min(...values))}–${formatNumber(Math.max(...values))})`;
}

function sizeLabel(bytes: number): string {
  return bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`;
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const directory = path.join(context.scratchDir, 'log');
    mkdirSync(directory, { recursive: true });

    // Write the log, close it (clean), reopen it: reads go through fresh read-only maps.
    const batches = makeBatches(batchBytes, 4);
    const writer = await PartitionLog.open({ directory, durability: 'none' });
    const batchCount = Math.ceil(parameters.logBytes / batchBytes);
    for (let i = 0; i < batchCount; i++) await writer.append(batches[i % batches.length]!);
    await writer.close();
    await collectGarbage(); // drop the writer's maps
    context.log(`wrote ${sizeLabel(parameters.logBytes)} (${batchCount} batches of 64 KiB), closed`);
    await yieldToEventLoop();

    const log = await PartitionLog.open({ directory, durability: 'none' });
    const rows: BenchRow[] = [];
    try {
      const logBytes = log.sizeBytes;
      const recordCount = log.logEndOffset - log.logStartOffset;
      const row = (name: string, value: number, unit: string, detail: string): void => {
        rows.push({ suite: suiteName, name, value, unit, detail });
      };
      const shape = `${sizeLabel(logBytes)} log, ${log.segmentCount} segments, ${recordCount.toLocaleString('en-US')} records, read(offset, 1 MiB)`;

      // Read only: very fast, so a pass repeats the walk until minimumPassMs.
      const readOnly: number[] = [];
      let readsPerWalk = 0;
      for (let run = 0; run < parameters.runs + 1; run++) {
        let bytes = 0;
        let seconds = 0;
        while (seconds * 1000 < parameters.minimumPassMs) {
          const pass = readPass(log, null);
          bytes += pass.bytes;
          seconds += pass.seconds;
          readsPerWalk = pass.reads;
        }
        if (run > 0) readOnly.push(bytes / 1e6 / seconds); // the first pass warms the JIT
        await yieldToEventLoop();
      }
      row(
        'sequential read 1 MiB, zero-copy views only',
        Math.round(median(readOnly)),
        'MB/s',
        `${shape} (${readsPerWalk} reads per walk, ${formatNumber((median(readOnly) * 1e6) / readBytes)} reads/s), ` +
          `bytes not touched: measures finding batches, not moving bytes; ${spread(readOnly)}`,
      );

      // First touching pass: page cache warm (just written), the reopened map not yet faulted in.
      const first = readPass(log, verifyCrc);
      row(
        'first pass after reopen: read + CRC32C per batch (map faults in)',
        Math.round(first.bytes / 1e6 / first.seconds),
        'MB/s',
        `${shape}, native CRC32C of every batch, page cache warm, new read-only map; 1 pass`,
      );
      await yieldToEventLoop();

      const measure = async (visit: BatchVisitor): Promise<PassResult[]> => {
        const passes: PassResult[] = [];
        for (let run = 0; run < parameters.runs; run++) {
          passes.push(readPass(log, visit));
          await yieldToEventLoop();
        }
        return passes;
      };
      const crcPasses = await measure(verifyCrc);
      const crcRates = crcPasses.map((pass) => pass.bytes / 1e6 / pass.seconds);
      row(
        'sequential read 1 MiB + CRC32C per batch',
        Math.round(median(crcRates)),
        'MB/s',
        `${shape}, native CRC32C of every batch, map warm, ${spread(crcRates)}`,
      );

      for (const [label, visit] of [
        ['decodeRecords (object per record)', decodeWithIterator],
        ['RecordCursor (no allocation)', decodeWithCursor],
      ] as const) {
        readPass(log, visit); // warm-up (JIT)
        const passes = await measure(visit);
        for (const pass of passes) {
          if (pass.records !== recordCount)
            throw new Error(`decoded ${pass.records} of ${recordCount} records`);
        }
        const megabytes = passes.map((pass) => pass.bytes / 1e6 / pass.seconds);
        const recordRates = passes.map((pass) => pass.records / pass.seconds);
        row(
          `sequential read 1 MiB + ${label}, records/s`,
          Math.round(median(recordRates)),
          'records/s',
          `${shape}, every record decoded (no CRC), ${spread(recordRates)}`,
        );
        row(
          `sequential read 1 MiB + ${label}, MB/s`,
          Math.round(median(megabytes)),
          'MB/s',
          `${spread(megabytes)}; ${(median(crcRates) / median(megabytes)).toFixed(1)}x slower than read + CRC32C`,
        );
        context.log(`${label}: ${formatNumber(median(recordRates))} records/s`);
      }
      if (checksum < 0) context.log('unreachable'); // keeps the decode loops observable
    } finally {
      await log.close();
    }
    return rows;
  },
};
