/**
 * The background scrub (src/broker/scrubber.ts): how fast it re-verifies sealed segments when
 * unthrottled (native CRC32C over the segments' maps, page cache warm; target >= 2 GB/s), and what
 * it costs produce throughput while it runs.
 *
 * Setup: an embedded broker (durability none, 64 MiB segments, 8 MiB in quick mode), topic `data`
 * with 4 partitions filled with 1 GiB of 64 KiB batches (128 MiB in quick mode), most of it sealed.
 * Scrub rate: 3 passes of `scrubPass(Infinity)`, the median GB/s (decimal) reported.
 * Produce: 8 concurrent producers append 64 KiB batches to topic `load` (8 partitions) through
 * `broker.messages.produce` (CRC check, append) for 512 MiB per run (64 MiB quick): without a scrub,
 * with the scrub at its default rate (16 MiB/s) and with the scrub unthrottled, passes looping, in
 * the same event loop. Medians of 3 runs, the three conditions interleaved.
 */
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { encodeBatch } from '../../src/format/record-batch.js';
import { scrubBytesPerSecondDefault } from '../../src/limits.js';
import { Broker } from '../../src/spillway-broker.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'scrub';
const MiB = 1024 * 1024;

function batchOf(bytes: number): Uint8Array {
  const value = Buffer.alloc(bytes - 100);
  randomFillSync(value);
  return encodeBatch([{ value }]);
}

async function produce(
  broker: Broker,
  topic: string,
  partitions: number,
  totalBytes: number,
): Promise<number> {
  const batch = batchOf(64 * 1024);
  const count = Math.ceil(totalBytes / batch.length);
  let next = 0;
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async (_, producer) => {
      while (next < count) {
        next++;
        await broker.messages.produce(topic, (producer + next) % partitions, batch);
      }
    }),
  );
  const seconds = (performance.now() - startedAt) / 1000;
  return (count * batch.length) / seconds / 1e6;
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const rows: BenchRow[] = [];
    const dataBytes = (context.quick ? 128 : 1024) * MiB;
    const loadBytes = (context.quick ? 64 : 512) * MiB;
    const dataDir = mkdtempSync(join(context.scratchDir, 'scrub-'));
    const broker = await Broker.open({
      dataDir,
      durability: 'none',
      segmentBytes: (context.quick ? 8 : 64) * MiB,
      scrubBytesPerSecond: 0,
    });
    try {
      await broker.topics.create('data', { partitions: 4 });
      context.log(`scrub: writing ${dataBytes / MiB} MiB`);
      await produce(broker, 'data', 4, dataBytes);
      await broker.scrubber.scrubPass(Number.POSITIVE_INFINITY); // warm-up: page cache, JIT
      const rates: number[] = [];
      let scrubbed = 0;
      let segments = 0;
      for (let run = 0; run < 3; run++) {
        const pass = await broker.scrubber.scrubPass(Number.POSITIVE_INFINITY);
        if (pass.damage.length > 0) throw new Error('the scrub found damage in fresh data');
        scrubbed = pass.bytes;
        segments = pass.segments;
        rates.push(pass.bytes / (pass.durationMs / 1000) / 1e9);
        await yieldToEventLoop();
      }
      rows.push({
        suite: suiteName,
        name: 'scrub rate, unthrottled (native CRC32C, page cache warm)',
        value: Number(median(rates).toFixed(2)),
        unit: 'GB/s',
        detail: `${(scrubbed / MiB).toFixed(0)} MiB in ${segments} sealed segments per pass, median of 3 (${Math.min(...rates).toFixed(2)}–${Math.max(...rates).toFixed(2)}); target >= 2`,
      });

      await broker.topics.create('load', { partitions: 8 });
      const conditions = [
        'no scrub',
        `scrub at ${scrubBytesPerSecondDefault / MiB} MiB/s`,
        'scrub unthrottled',
      ];
      const results = new Map<string, number[]>(conditions.map((name) => [name, []]));
      await produce(broker, 'load', 8, loadBytes / 4); // warm-up
      for (let run = 0; run < 3; run++) {
        for (const [index, name] of conditions.entries()) {
          const rate = index === 1 ? scrubBytesPerSecondDefault : Number.POSITIVE_INFINITY;
          const stop = new AbortController();
          const loop = (async () => {
            while (index > 0 && !stop.signal.aborted) await broker.scrubber.scrubPass(rate, stop.signal);
          })();
          const megabytesPerSecond = await produce(broker, 'load', 8, loadBytes);
          stop.abort();
          await loop;
          results.get(name)!.push(megabytesPerSecond);
          context.log(`scrub: produce with ${name}: ${megabytesPerSecond.toFixed(0)} MB/s`);
        }
      }
      const baseline = median(results.get(conditions[0]!)!);
      for (const name of conditions) {
        const values = results.get(name)!;
        const value = median(values);
        rows.push({
          suite: suiteName,
          name: `produce 64 KiB batches, 8 producers, none, with ${name}`,
          value: Math.round(value),
          unit: 'MB/s',
          detail: `${loadBytes / MiB} MiB per run, median of 3 (${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)})${name === conditions[0] ? '' : `; ${((value / baseline) * 100).toFixed(0)}% of no scrub`}`,
        });
      }
    } finally {
      await broker.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
    return rows;
  },
};
