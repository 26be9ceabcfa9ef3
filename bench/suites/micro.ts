/**
 * Micro-benchmarks of the hot path with the `benchmark` package (Benchmark.js: calibrated cycles,
 * statistically significant sample counts, relative margin of error reported per row). What runs
 * per message or per batch on the broker and in the client: CRC32C (native and TypeScript) of a
 * batch, encoding a batch, walking its records, validating it as the broker does, the murmur2
 * partitioner, and the wire frame codec.
 */
import { createRequire } from 'node:module';
import type BenchmarkNamespace from 'benchmark';
import { crc32c as crc32cTypeScript } from '../../src/format/crc32c.js';
import { BatchBuilder, RecordCursor, validateBatch } from '../../src/format/record-batch.js';
import { crc32c as crc32cNative } from '../../src/native.js';
import { decodeFrame, encodeFrame } from '../../src/protocol/frame.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import { murmur2 } from '../../src/protocol/partitioner.js';
import type { BenchContext, BenchRow, BenchSuite } from '../report.js';

const Benchmark = createRequire(import.meta.url)('benchmark') as typeof BenchmarkNamespace;

interface Case {
  name: string;
  /** Units of work per call (records, bytes...) to turn calls/s into the row's unit. */
  perCall: number;
  unit: string;
  run: () => void;
}

function makeBatch(records: number, valueBytes: number): Uint8Array {
  const builder = new BatchBuilder({ initialBytes: 1 << 20 });
  const value = new Uint8Array(valueBytes).fill(97);
  for (let i = 0; i < records; i++)
    builder.append({ key: `key-${i}`, value, timestamp: 1_700_000_000_000 + i });
  return builder.finishCopy({ crc32c: crc32cNative });
}

function cases(): Case[] {
  const batch100 = makeBatch(100, 100);
  const batch64k = new Uint8Array(64 * 1024).fill(7);
  const builder = new BatchBuilder({ initialBytes: 64 * 1024 });
  const value100 = new Uint8Array(100).fill(98);
  const keys = Array.from({ length: 100 }, (_, i) => Buffer.from(`user-${i}`));
  const frame = encodeFrame({
    opcode: Opcode.produce,
    flags: 0,
    correlationId: 7,
    header: { topic: 'orders', partition: 3 },
    body: batch100,
  });
  let sink = 0;
  return [
    {
      name: 'crc32c native, 64 KiB',
      perCall: 64 * 1024,
      unit: 'bytes/s',
      run: () => {
        sink ^= crc32cNative(batch64k);
      },
    },
    {
      name: 'crc32c TypeScript, 64 KiB',
      perCall: 64 * 1024,
      unit: 'bytes/s',
      run: () => {
        sink ^= crc32cTypeScript(batch64k);
      },
    },
    {
      name: 'encode batch of 100 x 100 B records',
      perCall: 100,
      unit: 'records/s',
      run: () => {
        builder.reset();
        for (let i = 0; i < 100; i++)
          builder.append({ key: keys[i]!, value: value100, timestamp: 1_700_000_000_000 });
        sink ^= builder.finish({ crc32c: crc32cNative }).length;
      },
    },
    {
      name: 'walk records (RecordCursor), 100 x 100 B',
      perCall: 100,
      unit: 'records/s',
      run: () => {
        const cursor = new RecordCursor(batch100);
        while (cursor.next()) sink ^= cursor.valueLength;
      },
    },
    {
      name: 'validateBatch with native CRC, 100 x 100 B (broker produce path)',
      perCall: 100,
      unit: 'records/s',
      run: () => {
        sink ^= validateBatch(batch100, { crc32c: crc32cNative, baseOffset: 0 }).recordCount;
      },
    },
    {
      name: 'murmur2 partitioner, 6-byte key',
      perCall: 1,
      unit: 'keys/s',
      run: () => {
        sink ^= murmur2(keys[sink & 63]!);
      },
    },
    {
      name: 'decode PRODUCE frame (msgpack header + raw batch view)',
      perCall: 1,
      unit: 'frames/s',
      run: () => {
        sink ^= decodeFrame(frame).body.length;
      },
    },
  ];
}

function runCase(entry: Case, quick: boolean): Promise<BenchRow> {
  return new Promise((resolve, reject) => {
    const benchmark = new Benchmark(entry.name, entry.run, {
      maxTime: quick ? 0.2 : 1.5,
      minSamples: quick ? 5 : 20,
      onComplete: () => {
        if (benchmark.error) {
          reject(benchmark.error);
          return;
        }
        const hz = benchmark.hz;
        resolve({
          suite: 'micro',
          name: entry.name,
          value: entry.unit === 'bytes/s' ? (hz * entry.perCall) / 1e9 : hz * entry.perCall,
          unit: entry.unit === 'bytes/s' ? 'GB/s' : entry.unit,
          detail: `Benchmark.js: ${Math.round(hz).toLocaleString('en-US')} calls/s ±${benchmark.stats.rme.toFixed(1)}% (${benchmark.stats.sample.length} samples)`,
        });
      },
    });
    benchmark.run({ async: true });
  });
}

export const suite: BenchSuite = {
  name: 'micro',
  async run(context: BenchContext): Promise<BenchRow[]> {
    const rows: BenchRow[] = [];
    for (const entry of cases()) {
      const row = await runCase(entry, context.quick);
      context.log(`micro: ${row.name}: ${row.value.toPrecision(4)} ${row.unit}`);
      rows.push(row);
    }
    return rows;
  },
};
