/**
 * Msg-id dedup (src/broker/dedup/): what a msgId costs per message on a dedup topic, and what the
 * index holds in memory per million ids.
 *
 * Produce cost: one broker (engine, in process: no network), topics of 1 partition with durability
 * `none` (the data append costs little, so the dedup work shows), batches of 100 records of 100 B,
 * 16 batches in flight. Side by side in one run, each case `runs` times in turn (medians):
 *   - plain: a topic without a window; the records carry the same `sw-msg-id` headers (same bytes);
 *   - new ids: a topic with a 10-minute window, every msgId new (decode, lookup, claim, and the
 *     record of the ids in `__dedup`, durability `always`, group-committed behind the answers);
 *   - duplicates: the same batches again (decode and lookup; nothing appended).
 * The cost per message is 1/rate(case) - 1/rate(plain).
 *
 * Memory: a DedupState holding N ids (24-character ids like `order-000000000000000001`, 1M; 200k
 * quick), applied as the produce path records them (entries of 2048 ids, buckets of the window),
 * measured as the heap growth after a full GC, per million ids.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BrokerEngine } from '../../src/broker/broker-engine.js';
import { DedupState } from '../../src/broker/dedup/dedup-state.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { dedupEntryIdsMax } from '../../src/limits.js';
import { msgIdHeader } from '../../src/protocol/reserved-headers.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'dedup';
const recordsPerBatch = 100;
const inFlight = 16;
const value = 'v'.repeat(100);

interface Parameters {
  runs: number;
  batches: number;
  memoryIds: number;
}
const fullParameters: Parameters = { runs: 3, batches: 2000, memoryIds: 1_000_000 };
const quickParameters: Parameters = { runs: 1, batches: 200, memoryIds: 200_000 };

/** A flat string, as the broker reads ids from batches (a template literal would make a rope). */
function msgId(n: number): string {
  return Buffer.from(`order-${String(n).padStart(18, '0')}`, 'latin1').toString('latin1');
}

function batches(count: number, firstId: number): Uint8Array[] {
  return Array.from({ length: count }, (_, b) =>
    encodeBatch(
      Array.from({ length: recordsPerBatch }, (_, r) => ({
        value,
        headers: [[msgIdHeader, msgId(firstId + b * recordsPerBatch + r)]] as Array<[string, string]>,
      })),
    ),
  );
}

/** Messages per second producing `all` to topic/0, `inFlight` batches at a time. */
async function produceRate(broker: BrokerEngine, topic: string, all: Uint8Array[]): Promise<number> {
  let next = 0;
  const startedAt = performance.now();
  const worker = async (): Promise<void> => {
    while (next < all.length) {
      const batch = all[next++]!;
      await broker.messages.produce(topic, 0, batch);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, () => worker()));
  return (all.length * recordsPerBatch) / ((performance.now() - startedAt) / 1000);
}

function collector(): () => void {
  setFlagsFromString('--expose_gc');
  return runInNewContext('gc') as () => void;
}

function heapAfterGc(gc: () => void): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

function memoryPerMillion(ids: number): { bytesPerId: number; seconds: number } {
  const gc = collector();
  const before = heapAfterGc(gc);
  const machine = new DedupState();
  const startedAt = performance.now();
  const windowMs = 600_000;
  const bucketMs = windowMs / 16;
  for (let start = 0; start < ids; start += dedupEntryIdsMax) {
    const count = Math.min(dedupEntryIdsMax, ids - start);
    const list = Array.from({ length: count }, (_, i) => msgId(start + i));
    machine.apply({
      type: 'ids',
      topic: 'orders',
      // Spread over the buckets of one window, as a steady rate would.
      bucketMs: Math.floor((start / ids) * 16) * bucketMs,
      ids: list,
      partitions: list.map((_, i) => (start + i) % 8),
      offsets: list.map((_, i) => Math.floor((start + i) / 8)),
    });
  }
  const seconds = (performance.now() - startedAt) / 1000;
  const after = heapAfterGc(gc);
  if (machine.size !== ids) throw new Error(`the index holds ${machine.size} ids, expected ${ids}`);
  return { bytesPerId: (after - before) / ids, seconds };
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const rows: BenchRow[] = [];
    const rates = { plain: [] as number[], fresh: [] as number[], duplicates: [] as number[] };
    for (let run = 0; run < parameters.runs; run++) {
      const broker = await BrokerEngine.open({
        dataDir: `${context.scratchDir}/run-${run}`,
        durability: 'none',
        segmentBytes: 256 * 1024 * 1024,
      });
      try {
        await broker.topics.create('plain');
        await broker.topics.create('deduped', { dedupWindowMs: 600_000 });
        const work = batches(parameters.batches, run * parameters.batches * recordsPerBatch);
        await yieldToEventLoop();
        rates.plain.push(await produceRate(broker, 'plain', work));
        await yieldToEventLoop();
        rates.fresh.push(await produceRate(broker, 'deduped', work));
        // The ids are recorded behind the answers: let them land, so the duplicates find them indexed.
        while (broker.dedup.stats.claimed > 0) await new Promise((resolve) => setTimeout(resolve, 1));
        rates.duplicates.push(await produceRate(broker, 'deduped', work));
        context.log(
          `run ${run}: plain ${Math.round(rates.plain.at(-1)!)}, new ids ${Math.round(rates.fresh.at(-1)!)}, duplicates ${Math.round(rates.duplicates.at(-1)!)} msg/s`,
        );
      } finally {
        await broker.close();
      }
    }
    const plain = median(rates.plain);
    const shown = (list: number[]): string => list.map((rate) => Math.round(rate)).join('/');
    const overheadUs = (rate: number): string => (1e6 / rate - 1e6 / plain).toFixed(2);
    const setting = `${recordsPerBatch} x 100 B records per batch, ${inFlight} batches in flight, durability none, in process`;
    rows.push({
      suite: suiteName,
      name: 'produce, plain topic (records with msgId headers, no window)',
      value: Math.round(plain),
      unit: 'msg/s',
      detail: `runs ${shown(rates.plain)}; ${setting}`,
    });
    const fresh = median(rates.fresh);
    rows.push({
      suite: suiteName,
      name: 'produce, dedup topic, every msgId new',
      value: Math.round(fresh),
      unit: 'msg/s',
      detail: `runs ${shown(rates.fresh)}; ${overheadUs(fresh)} µs per message over plain (decode, lookup, claim, record in __dedup behind the answer)`,
    });
    const duplicates = median(rates.duplicates);
    rows.push({
      suite: suiteName,
      name: 'produce, dedup topic, every msgId a duplicate',
      value: Math.round(duplicates),
      unit: 'msg/s',
      detail: `runs ${shown(rates.duplicates)}; ${overheadUs(duplicates)} µs per message vs plain (decode + lookup; nothing appended)`,
    });
    await yieldToEventLoop();
    const memory: Array<{ bytesPerId: number; seconds: number }> = [];
    for (let run = 0; run < parameters.runs; run++) {
      memory.push(memoryPerMillion(parameters.memoryIds));
      await yieldToEventLoop();
    }
    const bytesPerId = median(memory.map((run) => run.bytesPerId));
    rows.push({
      suite: suiteName,
      name: 'index memory per million msgIds (24-character ids)',
      value: Math.round((bytesPerId * 1e6) / (1024 * 1024)),
      unit: 'MiB',
      detail: `${Math.round(bytesPerId)} B per id, heap growth after GC with ${parameters.memoryIds} ids, runs ${memory.map((run) => Math.round(run.bytesPerId)).join('/')} B; applied at ${Math.round(parameters.memoryIds / median(memory.map((run) => run.seconds)))} ids/s`,
    });
    return rows;
  },
};
