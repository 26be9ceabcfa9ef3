/**
 * Record batch codec throughput: encode (BatchBuilder, reused buffer), decode (RecordIterator and
 * RecordCursor), validateBatch with the TypeScript CRC32C, and building 64 KiB batches until full.
 * Timed loops: each case runs `samples` times for about `sampleMs`; the row is the median rate and
 * the detail gives min-max. Timestamps are passed explicitly (no Date.now() in the loop).
 */
import { crc32c } from '../../src/format/crc32c.js';
import {
  BatchBuilder,
  decodeRecords,
  RecordCursor,
  type RecordInput,
  validateBatch,
} from '../../src/format/record-batch.js';
import type { BenchContext, BenchRow, BenchSuite } from '../report.js';
import { median } from '../report.js';

const suiteName = 'record-batch';
const timestampBase = 1_700_000_000_000;

interface Rate {
  median: number;
  min: number;
  max: number;
}

/** Runs `step` (which processes `unitsPerStep` units) repeatedly; returns units per second. */
function measure(step: () => void, unitsPerStep: number, samples: number, sampleMs: number): Rate {
  // Warm up so the measured code is optimized.
  const warmUntil = performance.now() + sampleMs;
  while (performance.now() < warmUntil) step();
  const rates: number[] = [];
  for (let sample = 0; sample < samples; sample++) {
    let steps = 0;
    const start = performance.now();
    let now = start;
    const until = start + sampleMs;
    while (now < until) {
      for (let i = 0; i < 16; i++) step();
      steps += 16;
      now = performance.now();
    }
    rates.push((steps * unitsPerStep) / ((now - start) / 1000));
  }
  return { median: median(rates), min: Math.min(...rates), max: Math.max(...rates) };
}

function makeValue(bytes: number, seed: number): Uint8Array {
  const value = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) value[i] = (seed * 31 + i * 7) & 0xff;
  return value;
}

function makeRecords(count: number, valueBytes: number, stringValues: boolean): RecordInput[] {
  const records: RecordInput[] = [];
  for (let i = 0; i < count; i++) {
    records.push({
      key: `key-${i % 1000}`,
      value: stringValues ? 'v'.repeat(valueBytes - 6) + String(100_000 + i) : makeValue(valueBytes, i),
      timestamp: timestampBase + i,
    });
  }
  return records;
}

/** Stands in for the CRC to measure the codec alone (the broker and storage use the native CRC32C). */
const noCrc = (): number => 0;

function encodeAll(builder: BatchBuilder, records: readonly RecordInput[], withCrc = true): Uint8Array {
  builder.reset();
  for (let i = 0; i < records.length; i++) {
    if (!builder.append(records[i]!)) throw new Error('bench batch overflowed');
  }
  return withCrc ? builder.finish() : builder.finish({ crc32c: noCrc });
}

function row(name: string, rate: Rate, unit: string, detail: string): BenchRow {
  const digits = rate.median >= 1000 ? 0 : 2;
  return {
    suite: suiteName,
    name,
    value: Number(rate.median.toFixed(digits)),
    unit,
    detail: `${detail}; min ${rate.min.toFixed(digits)}, max ${rate.max.toFixed(digits)}`,
  };
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const samples = context.quick ? 3 : 7;
    const sampleMs = context.quick ? 50 : 300;
    const sampling = `${samples} samples of ${sampleMs} ms`;
    const rows: BenchRow[] = [];
    const builder = new BatchBuilder({ initialBytes: 256 * 1024 });
    let sink = 0;

    const cases = [
      { label: '100 B bytes values', records: makeRecords(100, 100, false) },
      { label: '100 B string values', records: makeRecords(100, 100, true) },
      { label: '1 KiB bytes values', records: makeRecords(100, 1024, false) },
    ];
    for (const { label, records } of cases) {
      const batch = encodeAll(builder, records).slice();
      const detail = `100 records/batch, ${batch.length} B batches, string keys; ${sampling}`;

      const encode = measure(
        () => {
          sink += encodeAll(builder, records).length;
        },
        records.length,
        samples,
        sampleMs,
      );
      rows.push(row(`encode, ${label}`, encode, 'records/s', `${detail}; TS CRC32C in finish()`));
      context.log(`encode ${label}: ${Math.round(encode.median)} records/s`);

      const encodeOnly = measure(
        () => {
          sink += encodeAll(builder, records, false).length;
        },
        records.length,
        samples,
        sampleMs,
      );
      rows.push(row(`encode without CRC, ${label}`, encodeOnly, 'records/s', `${detail}; codec alone`));
      context.log(`encode without CRC ${label}: ${Math.round(encodeOnly.median)} records/s`);

      const iterate = measure(
        () => {
          for (const record of decodeRecords(batch)) sink += record.offset;
        },
        records.length,
        samples,
        sampleMs,
      );
      rows.push(
        row(`decode iterator, ${label}`, iterate, 'records/s', `${detail}; key/value views, headers []`),
      );
      context.log(`decode iterator ${label}: ${Math.round(iterate.median)} records/s`);

      const cursorRate = measure(
        () => {
          const cursor = new RecordCursor(batch);
          while (cursor.next()) sink += cursor.valueLength;
        },
        records.length,
        samples,
        sampleMs,
      );
      rows.push(
        row(`decode cursor, ${label}`, cursorRate, 'records/s', `${detail}; no per-record allocation`),
      );
      context.log(`decode cursor ${label}: ${Math.round(cursorRate.median)} records/s`);

      const validate = measure(
        () => {
          sink += validateBatch(batch, { crc32c }).recordCount;
        },
        records.length,
        samples,
        sampleMs,
      );
      rows.push(row(`validateBatch, ${label}`, validate, 'records/s', `${detail}; TS CRC32C`));
      context.log(`validateBatch ${label}: ${Math.round(validate.median)} records/s`);
    }

    // A 64 KiB batch built from 100 B values until append returns false.
    const fillBuilder = new BatchBuilder({ initialBytes: 64 * 1024, maxBatchBytes: 64 * 1024 });
    const fillRecords = makeRecords(1000, 100, false);
    let recordsPerBatch = 0;
    let bytesPerBatch = 0;
    const fill = (): void => {
      fillBuilder.reset();
      let i = 0;
      while (fillBuilder.append(fillRecords[i % fillRecords.length]!)) i++;
      recordsPerBatch = i;
      bytesPerBatch = fillBuilder.finish().length;
    };
    fill();
    const perBatch = recordsPerBatch;
    const batchBytes = bytesPerBatch;
    const fillRate = measure(fill, 1, samples, sampleMs);
    const fillDetail = `${perBatch} records of 100 B, ${batchBytes} B per batch; ${sampling}`;
    rows.push(row('build 64 KiB batch', fillRate, 'batches/s', fillDetail));
    rows.push(
      row(
        'build 64 KiB batch, records',
        { median: fillRate.median * perBatch, min: fillRate.min * perBatch, max: fillRate.max * perBatch },
        'records/s',
        fillDetail,
      ),
    );
    rows.push(
      row(
        'build 64 KiB batch, bytes',
        {
          median: (fillRate.median * batchBytes) / 1e6,
          min: (fillRate.min * batchBytes) / 1e6,
          max: (fillRate.max * batchBytes) / 1e6,
        },
        'MB/s',
        fillDetail,
      ),
    );
    context.log(`build 64 KiB batch: ${Math.round(fillRate.median)} batches/s (${perBatch} records each)`);
    if (sink === 0.5) context.log('unreachable');
    return rows;
  },
};
