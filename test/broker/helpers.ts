import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { BrokerOptions } from '../../src/broker/index.js';
import { batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../src/format/record-batch.js';
import { Broker } from '../../src/spillway-broker.js';

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A fresh temporary directory, removed after the test. */
export function temporaryDirectory(): string {
  const path = mkdtempSync(join(tmpdir(), 'spillway-broker-'));
  cleanups.push(() => rmSync(path, { recursive: true, force: true }));
  return path;
}

/** Small segments and durability `none` unless asked otherwise, so tests stay fast; closed after the test. */
export async function openBroker(dataDir: string, options: BrokerOptions = {}): Promise<Broker> {
  const broker = await Broker.open({ dataDir, durability: 'none', segmentBytes: 64 * 1024, ...options });
  cleanups.push(() => broker.close().catch(() => undefined));
  return broker;
}

/** One batch whose record values are `${tag}/0`, `${tag}/1`, ... */
export function batchOf(tag: string, count = 1, timestamp = 1_700_000_000_000): Uint8Array {
  return encodeBatch(
    Array.from({ length: count }, (_, i) => ({
      key: `k${i}`,
      value: `${tag}/${i}`,
      timestamp: timestamp + i,
    })),
  );
}

/** The values of every record of the batches in `bytes`, with their offsets. */
export function recordsOf(bytes: Uint8Array): Array<{ offset: number; value: string }> {
  const records: Array<{ offset: number; value: string }> = [];
  let position = 0;
  while (position < bytes.length) {
    const length = batchLengthAt(bytes, position);
    for (const record of decodeRecords(bytes.subarray(position, position + length))) {
      records.push({ offset: record.offset, value: Buffer.from(record.value!).toString() });
    }
    position += length;
  }
  return records;
}

export function valuesOf(bytes: Uint8Array): string[] {
  return recordsOf(bytes).map((record) => record.value);
}

/** The `code` of what `action` throws (synchronously), or 'none'. */
export function thrownCode(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return (error as { code?: string }).code ?? `not a SpillwayError: ${String(error)}`;
  }
  return 'none';
}

/** The `code` of what `promise` rejects with, or 'none'. */
export async function rejectedCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: string }).code ?? `not a SpillwayError: ${String(error)}`;
  }
  return 'none';
}

/** Every record value of a partition from `offset` on, fetching until the high watermark. */
export async function readAll(
  broker: Broker,
  topic: string,
  partition: number,
  offset = 0,
): Promise<string[]> {
  const values: string[] = [];
  for (;;) {
    const result = await broker.messages.fetch(topic, partition, offset, { maxBytes: 1 << 20, maxWaitMs: 0 });
    if (result.batchCount === 0) return values;
    // A fetch starts at the batch holding `offset`; keep only records from `offset` on.
    for (const record of recordsOf(result.records)) if (record.offset >= offset) values.push(record.value);
    offset = result.nextOffset;
  }
}
