import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { batchBaseOffset, batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords } from '../../src/format/record-batch.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { makeBatch, temporaryDirectory } from './helpers.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function directory(): string {
  const dir = temporaryDirectory();
  cleanups.push(dir.remove);
  return dir.path;
}

/** The values of every record in a read result. */
function valuesOf(bytes: Uint8Array): string[] {
  const values: string[] = [];
  let position = 0;
  while (position < bytes.length) {
    const length = batchLengthAt(bytes, position);
    for (const record of decodeRecords(bytes.subarray(position, position + length))) {
      values.push(Buffer.from(record.value!).toString());
    }
    position += length;
  }
  return values;
}

describe('PartitionLog', () => {
  it('appends batches with consecutive offsets and reads them back', async () => {
    const log = await PartitionLog.open({ directory: directory(), durability: 'none' });
    const first = await log.append(makeBatch('a', 3));
    const second = await log.append(makeBatch('b', 2));
    expect(first).toEqual({ baseOffset: 0, lastOffset: 2, durability: 'none' });
    expect(second).toEqual({ baseOffset: 3, lastOffset: 4, durability: 'none' });
    expect(log.logEndOffset).toBe(5);
    const all = log.read(0, 1 << 20);
    expect(all.batchCount).toBe(2);
    expect(all.nextOffset).toBe(5);
    expect(valuesOf(all.bytes)).toEqual(['a/0', 'a/1', 'a/2', 'b/0', 'b/1']);
    // A read from inside a batch starts at that batch.
    const middle = log.read(4, 1);
    expect(middle.firstOffset).toBe(3);
    expect(middle.batchCount).toBe(1);
    expect(batchBaseOffset(middle.bytes)).toBe(3);
    // At the end: nothing yet. Past the end: out of range.
    expect(log.read(5, 100).bytes.length).toBe(0);
    expect(() => log.read(6, 100)).toThrow(/out of range/);
    await log.close();
  });

  it('does not modify the caller batch when assigning offsets', async () => {
    const log = await PartitionLog.open({ directory: directory(), durability: 'none' });
    await log.append(makeBatch('a'));
    const batch = makeBatch('b');
    const copy = Buffer.from(batch);
    await log.append(batch);
    expect(Buffer.from(batch).equals(copy)).toBe(true);
    await log.close();
  });

  it('rolls segments when full, reads across them, and keeps everything after reopen', async () => {
    const dir = directory();
    let log = await PartitionLog.open({
      directory: dir,
      durability: 'none',
      segmentBytes: 64 * 1024,
      indexIntervalBytes: 512,
    });
    for (let i = 0; i < 300; i++) await log.append(makeBatch(`b${i}`, 2, 1_700_000_000_000 + i * 10, 300));
    expect(log.segmentCount).toBeGreaterThan(3);
    const values: string[] = [];
    let offset = 0;
    while (offset < log.logEndOffset) {
      const result = log.read(offset, 4096);
      values.push(...valuesOf(result.bytes).map((v) => v.slice(0, v.indexOf('x'))));
      offset = result.nextOffset;
    }
    expect(values.length).toBe(600);
    expect(values[599]).toBe('b299/1');
    await log.close();
    const files = readdirSync(dir);
    expect(files.filter((f) => f.endsWith('.index')).length).toBe(
      files.filter((f) => f.endsWith('.log')).length,
    );

    log = await PartitionLog.open({
      directory: dir,
      durability: 'none',
      segmentBytes: 64 * 1024,
      indexIntervalBytes: 512,
    });
    expect(log.recovery.cleanShutdown).toBe(true);
    expect(log.recovery.segmentsScanned).toBe(0);
    expect(log.logEndOffset).toBe(600);
    expect(valuesOf(log.read(598, 10).bytes).map((v) => v.slice(0, v.indexOf('x')))).toEqual([
      'b299/0',
      'b299/1',
    ]);
    expect((await log.append(makeBatch('after'))).baseOffset).toBe(600);
    expect(log.verify()).toBe(301);
    await log.close();
  });

  it('finds offsets by time', async () => {
    const log = await PartitionLog.open({
      directory: directory(),
      durability: 'none',
      segmentBytes: 64 * 1024,
      indexIntervalBytes: 256,
    });
    for (let i = 0; i < 200; i++) await log.append(makeBatch(`t${i}`, 1, 1000 + i * 100, 400));
    expect(log.offsetForTime(0)).toBe(0);
    expect(log.offsetForTime(1000)).toBe(0);
    expect(log.offsetForTime(1001)).toBe(1);
    expect(log.offsetForTime(1000 + 150 * 100)).toBe(150);
    expect(log.offsetForTime(1000 + 199 * 100)).toBe(199);
    expect(log.offsetForTime(1000 + 199 * 100 + 1)).toBeNull();
    await log.close();
  });

  it('deletes whole old segments by size and by time, never the active one', async () => {
    const dir = directory();
    const log = await PartitionLog.open({
      directory: dir,
      durability: 'none',
      segmentBytes: 64 * 1024,
      retentionBytes: 150 * 1024,
      retentionMs: 60_000,
    });
    for (let i = 0; i < 400; i++) await log.append(makeBatch(`r${i}`, 1, 1_000_000 + i, 1000));
    const before = log.segmentCount;
    const bySize = log.applyRetention(1_000_000);
    expect(bySize.deletedSegments).toBeGreaterThan(0);
    expect(log.sizeBytes).toBeLessThan(150 * 1024 + 64 * 1024);
    expect(log.segmentCount).toBe(before - bySize.deletedSegments);
    expect(log.logStartOffset).toBe(bySize.logStartOffset);
    expect(() => log.read(0, 100)).toThrow(/out of range/);
    expect(log.read(log.logStartOffset, 100).firstOffset).toBe(log.logStartOffset);
    const byTime = log.applyRetention(1_000_000 + 400 + 60_001);
    expect(log.segmentCount).toBe(1);
    expect(byTime.logStartOffset).toBe(log.logStartOffset);
    expect(readdirSync(dir).filter((f) => f.endsWith('.log')).length).toBe(1);
    await log.close();
  });

  it('truncates to a batch boundary, also into an earlier segment', async () => {
    const dir = directory();
    const log = await PartitionLog.open({ directory: dir, durability: 'none', segmentBytes: 64 * 1024 });
    for (let i = 0; i < 200; i++) await log.append(makeBatch(`x${i}`, 2, 1000 + i, 600));
    expect(log.segmentCount).toBeGreaterThan(2);
    expect(() => log.truncateTo(11)).toThrow(/inside a batch/);
    log.truncateTo(10);
    expect(log.logEndOffset).toBe(10);
    expect(log.segmentCount).toBe(1);
    expect((await log.append(makeBatch('new'))).baseOffset).toBe(10);
    expect(valuesOf(log.read(10, 100).bytes)).toEqual(['new/0']);
    await log.close();
    const reopened = await PartitionLog.open({ directory: dir, durability: 'none', segmentBytes: 64 * 1024 });
    expect(reopened.logEndOffset).toBe(11);
    expect(reopened.verify()).toBe(6);
    await reopened.close();
  });

  it('acknowledges `always` appends only after a sync, sharing syncs between concurrent appends', async () => {
    const log = await PartitionLog.open({ directory: directory(), durability: 'always' });
    const appends = Array.from({ length: 64 }, (_, i) => log.append(makeBatch(`c${i}`)));
    const results = await Promise.all(appends);
    expect(results.map((r) => r.baseOffset)).toEqual(Array.from({ length: 64 }, (_, i) => i));
    expect(results.every((r) => r.durability === 'always')).toBe(true);
    expect(log.durableOffset).toBe(64);
    // Group commit: far fewer fdatasync rounds than appends.
    expect(log.syncCount).toBeLessThan(16);
    await log.close();
  });

  it('syncs in the background with `interval`', async () => {
    const log = await PartitionLog.open({
      directory: directory(),
      durability: 'interval',
      flushIntervalMs: 5,
    });
    await log.append(makeBatch('i'));
    expect(log.durableOffset).toBe(0);
    await vi_waitFor(() => log.durableOffset === 1);
    await log.close();
  });

  it('rejects bad batches and bad arguments with typed errors', async () => {
    const log = await PartitionLog.open({
      directory: directory(),
      durability: 'none',
      segmentBytes: 64 * 1024,
    });
    await expect(log.append(new Uint8Array(10))).rejects.toMatchObject({ code: 'INVALID_BATCH' });
    const batch = makeBatch('z');
    await expect(log.append(batch.subarray(0, batch.length - 1))).rejects.toMatchObject({
      code: 'INVALID_BATCH',
    });
    await expect(log.append(makeBatch('big', 1, 0, 70 * 1024))).rejects.toMatchObject({
      code: 'INVALID_BATCH',
    });
    expect(() => log.read(-1, 10)).toThrow(/out of range/);
    expect(() => log.read(0, 0)).toThrow(/maxBytes/);
    expect(log.logEndOffset).toBe(0);
    await log.close();
    await expect(log.append(batch)).rejects.toMatchObject({ code: 'LOG_CLOSED' });
    await expect(PartitionLog.open({ directory: directory(), segmentBytes: 10 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('names segment files by their 20-digit base offset', async () => {
    const dir = directory();
    const log = await PartitionLog.open({ directory: dir, durability: 'none', segmentBytes: 64 * 1024 });
    for (let i = 0; i < 100; i++) await log.append(makeBatch(`n${i}`, 1, 0, 1000));
    await log.close();
    expect(existsSync(join(dir, '00000000000000000000.log'))).toBe(true);
    const logs = readdirSync(dir).filter((f) => f.endsWith('.log'));
    for (const name of logs) expect(name).toMatch(/^\d{20}\.log$/);
  });
});

async function vi_waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
