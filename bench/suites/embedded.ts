/**
 * The embedded engine in one process, no network: 100 B records encoded into batches of 1,000 with
 * one reused BatchBuilder (its batch path `appendValues`, native CRC32C) and appended, to show what the engine itself can do
 * (issue 15's target: >= 5M msg/s with durability `none`). Two paths:
 *  - `PartitionLog.append`: the storage engine alone (a fresh log, durability none);
 *  - `broker.messages.produce`: the embedded Broker's batch API (a fresh topic, 1 partition,
 *    durability none), which validates each batch (structure and CRC32C, natively) and assigns offsets
 *    as for a network client.
 * Each run encodes and appends `records` records (8M; quick 400k), one append awaited at a time;
 * msg/s from the first encode to the last ack, median of 3 runs (1 in quick mode) after an unreported
 * warm-up run. Values: one 100-byte random buffer, no key, no headers.
 */
import { randomFillSync } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { BatchBuilder } from '../../src/format/record-batch.js';
import { crc32c } from '../../src/native.js';
import { Broker } from '../../src/spillway-broker.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';
import { collectGarbage } from './append.js';

const suiteName = 'embedded';
const valueBytes = 100;
const recordsPerBatch = 1000;

type Append = (batch: Uint8Array) => Promise<unknown>;

/** Encodes and appends `records` records; returns msg/s. */
async function run(append: Append, records: number): Promise<number> {
  const builder = new BatchBuilder({ initialBytes: 256 * 1024, crc32c });
  const value = randomFillSync(Buffer.allocUnsafe(valueBytes));
  const values = new Array<Uint8Array>(recordsPerBatch).fill(value);
  const started = performance.now();
  for (let done = 0; done < records; done += recordsPerBatch) {
    builder.reset();
    const count = Math.min(recordsPerBatch, records - done);
    const appended = builder.appendValues(
      count === recordsPerBatch ? values : values.slice(0, count),
      Date.now(),
    );
    if (appended !== count) throw new Error(`a batch took ${appended} of ${count} records`);
    await append(builder.finish());
  }
  return records / ((performance.now() - started) / 1000);
}

async function measure(
  context: BenchContext,
  label: string,
  records: number,
  runs: number,
  open: (directory: string) => Promise<{ append: Append; close: () => Promise<void> }>,
): Promise<BenchRow> {
  const rates: number[] = [];
  for (let index = -1; index < runs; index++) {
    const directory = path.join(context.scratchDir, `embedded-${label.replace(/\W+/g, '-')}-${index + 1}`);
    mkdirSync(directory, { recursive: true });
    const target = await open(directory);
    try {
      const rate = await run(target.append, index < 0 ? Math.min(records, 1_000_000) : records);
      if (index >= 0) rates.push(rate);
      context.log(
        `${label}: ${Math.round(rate).toLocaleString('en-US')} msg/s${index < 0 ? ' (warm-up)' : ''}`,
      );
    } finally {
      await target.close();
      rmSync(directory, { recursive: true, force: true });
      await collectGarbage();
    }
  }
  const sorted = [...rates].sort((a, b) => a - b);
  return {
    suite: suiteName,
    name: `${label}, 100 B records, batches of ${recordsPerBatch}, durability none`,
    value: median(rates),
    unit: 'msg/s',
    detail: `${records.toLocaleString('en-US')} records per run, median of ${runs} (${sorted
      .map((rate) => Math.round(rate).toLocaleString('en-US'))
      .join(
        ' – ',
      )}); reused BatchBuilder.appendValues, native CRC32C, one append awaited at a time; target >= 5M msg/s`,
  };
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const records = context.quick ? 400_000 : 8_000_000;
    const runs = context.quick ? 1 : 3;
    const rows: BenchRow[] = [];
    rows.push(
      await measure(context, 'PartitionLog.append', records, runs, async (directory) => {
        const log = await PartitionLog.open({ directory, durability: 'none' });
        return { append: (batch) => log.append(batch), close: () => log.close() };
      }),
    );
    rows.push(
      await measure(context, 'Broker messages.produce', records, runs, async (directory) => {
        const broker = await Broker.open({ dataDir: directory, durability: 'none' });
        await broker.topics.create('embedded', { partitions: 1 });
        return {
          append: (batch) => broker.messages.produce('embedded', 0, batch),
          close: () => broker.close(),
        };
      }),
    );
    return rows;
  },
};
