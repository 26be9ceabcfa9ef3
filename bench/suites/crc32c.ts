/**
 * CRC32C throughput: the native default path (on x86-64 with SSE4.2, three interleaved crc32q lanes),
 * the native software path (slicing-by-8) and the pure-TypeScript code the client uses, on 1 MiB and
 * 64 KiB buffers.
 *
 * Each run checksums one buffer over and over, chaining the result (as a caller continuing a running
 * checksum would, and so the calls cannot be skipped), until a fixed total of bytes: 1 GiB for the
 * native default path, 256 MiB for native software, 128 MiB for TypeScript (a sixteenth in quick mode).
 * The buffer stays in the CPU caches, as a batch just received or encoded does. Figures are the median
 * of 5 runs (3 in quick mode) after a warm-up run; GB/s is decimal (10^9 bytes per second).
 */
import { randomFillSync } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { crc32c as crc32cTypeScript } from '../../src/format/crc32c.js';
import { crc32c, crc32cImplementation, crc32cSoftware } from '../../src/native.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

type Crc32cFunction = (bytes: Uint8Array, previous?: number, start?: number, end?: number) => number;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

interface Implementation {
  name: string;
  checksum: Crc32cFunction;
  /** Bytes checksummed per timed run in full mode. */
  totalBytes: number;
}

interface Parameters {
  runs: number;
  /** Totals are divided by this. */
  totalDivisor: number;
}

const fullParameters: Parameters = { runs: 5, totalDivisor: 1 };
const quickParameters: Parameters = { runs: 3, totalDivisor: 16 };

const bufferSizes = [
  { label: '1 MiB', bytes: 1 * MiB },
  { label: '64 KiB', bytes: 64 * KiB },
] as const;

/**
 * One timed run: `calls` checksums of `buffer`, chained. Returns GB/s and the final checksum (the
 * same for every run with the same arguments; checked, which also keeps the loop from being skipped).
 */
function timeRun(
  checksum: Crc32cFunction,
  buffer: Uint8Array,
  calls: number,
): { gigabytesPerSecond: number; checksum: number } {
  let running = 0;
  const startNs = process.hrtime.bigint();
  for (let call = 0; call < calls; call++) running = checksum(buffer, running);
  const elapsedNs = Number(process.hrtime.bigint() - startNs);
  return { gigabytesPerSecond: (calls * buffer.length) / elapsedNs, checksum: running };
}

async function measure(
  implementation: Implementation,
  buffer: Uint8Array,
  parameters: Parameters,
): Promise<{ median: number; min: number; max: number; totalBytes: number }> {
  const totalBytes = implementation.totalBytes / parameters.totalDivisor;
  const calls = Math.max(1, Math.round(totalBytes / buffer.length));
  timeRun(implementation.checksum, buffer, Math.max(1, calls >> 2)); // warm-up: JIT, caches, clocks
  const results: number[] = [];
  let firstChecksum: number | undefined;
  for (let run = 0; run < parameters.runs; run++) {
    await yieldToEventLoop(); // let the runner handle a signal between runs
    const result = timeRun(implementation.checksum, buffer, calls);
    firstChecksum ??= result.checksum;
    if (result.checksum !== firstChecksum) {
      throw new Error(`${implementation.name}: the same input gave different checksums in two runs`);
    }
    results.push(result.gigabytesPerSecond);
  }
  return {
    median: median(results),
    min: Math.min(...results),
    max: Math.max(...results),
    totalBytes: calls * buffer.length,
  };
}

function formatBytes(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  return `${bytes / KiB} KiB`;
}

export const suite: BenchSuite = {
  name: 'crc32c',
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const implementations: Implementation[] = [
      { name: `native ${crc32cImplementation()} (default)`, checksum: crc32c, totalBytes: 1 * GiB },
      { name: 'native software slicing-by-8', checksum: crc32cSoftware, totalBytes: 256 * MiB },
      { name: 'TypeScript slicing-by-8', checksum: crc32cTypeScript, totalBytes: 128 * MiB },
    ];
    const rows: BenchRow[] = [];
    for (const size of bufferSizes) {
      const buffer = randomFillSync(new Uint8Array(size.bytes));
      for (const implementation of implementations) {
        context.log(`crc32c: ${implementation.name}, ${size.label} buffers`);
        const result = await measure(implementation, buffer, parameters);
        rows.push({
          suite: 'crc32c',
          name: `${implementation.name}, ${size.label} buffers`,
          value: Number(result.median.toFixed(3)),
          unit: 'GB/s',
          detail:
            `median of ${parameters.runs} runs of ${formatBytes(result.totalBytes)}, ` +
            `min ${result.min.toFixed(2)}, max ${result.max.toFixed(2)}; buffer hot in cache`,
        });
      }
    }
    return rows;
  },
};
