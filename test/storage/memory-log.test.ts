import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { batchBaseOffset, batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../src/format/record-batch.js';
import { MemoryLog } from '../../src/storage/memory-log.js';
import { makeBatch } from './helpers.js';

/** Offset and value of every record in a read result. */
function recordsOf(bytes: Uint8Array): Array<[number, string]> {
  const records: Array<[number, string]> = [];
  let position = 0;
  while (position < bytes.length) {
    const length = batchLengthAt(bytes, position);
    for (const record of decodeRecords(bytes.subarray(position, position + length))) {
      records.push([record.offset, Buffer.from(record.value!).toString()]);
    }
    position += length;
  }
  return records;
}

/** A batch of `count` records, 1 ms apart from `timestamp`. */
const batch = (tag: string, count = 1, timestamp = 1000) => makeBatch(tag, count, timestamp);

describe('MemoryLog', () => {
  it('assigns consecutive offsets to copies, leaving the caller batch as it is', async () => {
    const log = new MemoryLog({ durability: 'always' });
    const first = batch('a', 3);
    const untouched = Buffer.from(first);
    expect(await log.append(first)).toEqual({ baseOffset: 0, lastOffset: 2, durability: 'always' });
    expect(await log.append(batch('b', 2))).toEqual({ baseOffset: 3, lastOffset: 4, durability: 'always' });
    expect(Buffer.from(first).equals(untouched)).toBe(true);
    expect(log.logEndOffset).toBe(5);
    expect(log.batchBaseOffsets()).toEqual([0, 3]);
    const all = log.read(0, 1 << 20);
    expect(all).toMatchObject({
      batchCount: 2,
      firstOffset: 0,
      nextOffset: 5,
      logStartOffset: 0,
      logEndOffset: 5,
    });
    expect(recordsOf(all.bytes)).toEqual([
      [0, 'a/0'],
      [1, 'a/1'],
      [2, 'a/2'],
      [3, 'b/0'],
      [4, 'b/1'],
    ]);
    // Read results are copies: changing one changes nothing in the log.
    all.bytes.fill(0);
    expect(recordsOf(log.read(0, 1 << 20).bytes)[4]).toEqual([4, 'b/1']);
  });

  it('reads whole batches from the one holding the offset, within maxBytes and before maxOffset', async () => {
    const log = new MemoryLog();
    for (const tag of ['a', 'b', 'c']) await log.append(batch(tag, 2));
    const oneBatchBytes = log.read(0, 1).bytes.length;
    // From inside a batch: that whole batch; at least one batch even when larger than maxBytes.
    const middle = log.read(3, 1);
    expect(middle).toMatchObject({ batchCount: 1, firstOffset: 2, nextOffset: 4 });
    expect(batchBaseOffset(middle.bytes)).toBe(2);
    expect(log.read(0, 2 * oneBatchBytes).batchCount).toBe(2);
    expect(log.read(0, 2 * oneBatchBytes - 1).batchCount).toBe(1);
    // maxOffset: no batch holding an offset >= maxOffset, even the first one.
    expect(log.read(0, 1 << 20, 4)).toMatchObject({ batchCount: 2, nextOffset: 4 });
    expect(log.read(0, 1 << 20, 3)).toMatchObject({ batchCount: 1, nextOffset: 2 });
    expect(log.read(1, 1 << 20, 1)).toMatchObject({ batchCount: 0, firstOffset: 1, nextOffset: 1 });
    // At the end: nothing yet. Outside [start, end]: out of range.
    expect(log.read(6, 100)).toMatchObject({ batchCount: 0, firstOffset: 6, nextOffset: 6 });
    expect(log.read(6, 100).bytes.length).toBe(0);
    expect(() => log.read(7, 100)).toThrow(expect.objectContaining({ code: 'OFFSET_OUT_OF_RANGE' }));
    expect(() => log.read(-1, 100)).toThrow(expect.objectContaining({ code: 'OFFSET_OUT_OF_RANGE' }));
    expect(() => log.read(0, 0)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => log.read(0.5, 10)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('finds the first batch whose max timestamp reaches a time, also when timestamps go back', async () => {
    const log = new MemoryLog();
    await log.append(batch('a', 2, 5000)); // offsets 0-1, max 5001
    await log.append(batch('b', 1, 1000)); // offset 2, max 1000
    await log.append(
      encodeBatch([
        { value: 'c', timestamp: 9000 },
        { value: 'd', timestamp: 2000 },
      ]),
    ); // 3-4, max 9000
    expect(log.offsetForTime(0)).toBe(0);
    expect(log.offsetForTime(5001)).toBe(0);
    expect(log.offsetForTime(5002)).toBe(3);
    expect(log.offsetForTime(9000)).toBe(3);
    expect(log.offsetForTime(9001)).toBeNull();
  });

  it('truncates at batch boundaries only, then appends from there', async () => {
    const log = new MemoryLog();
    for (const tag of ['a', 'b', 'c']) await log.append(batch(tag, 2));
    expect(() => log.truncateTo(3)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => log.truncateTo(7)).toThrow(expect.objectContaining({ code: 'OFFSET_OUT_OF_RANGE' }));
    log.truncateTo(6); // The end: nothing to do.
    log.truncateTo(2);
    expect(log.logEndOffset).toBe(2);
    expect(log.offsetForTime(0)).toBe(0);
    expect((await log.append(batch('new'))).baseOffset).toBe(2);
    expect(recordsOf(log.read(0, 1 << 20).bytes).map(([, value]) => value)).toEqual(['a/0', 'a/1', 'new/0']);
    log.truncateTo(0);
    expect([log.logStartOffset, log.logEndOffset, log.batchCount]).toEqual([0, 0, 0]);
  });

  it('moves the log start with deleteBefore and with its batch retention rule', async () => {
    const log = new MemoryLog({ retentionMs: 100, retentionBytes: -1 });
    for (let i = 0; i < 4; i++) await log.append(batch(`r${i}`, 2, 1000 * (i + 1)));
    expect(() => log.deleteBefore(1)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    log.deleteBefore(2);
    expect(log.logStartOffset).toBe(2);
    expect(() => log.read(1, 100)).toThrow(expect.objectContaining({ code: 'OFFSET_OUT_OF_RANGE' }));
    expect(() => log.truncateTo(0)).toThrow(expect.objectContaining({ code: 'OFFSET_OUT_OF_RANGE' }));
    expect(log.read(2, 1)).toMatchObject({ firstOffset: 2, logStartOffset: 2 });
    // Batch r1 (max 2001) is older than 2102 - 100; r2 (max 3001) is not.
    const oneBatchBytes = log.read(2, 1).bytes.length;
    expect(log.applyRetention(2102)).toEqual({
      deletedBatches: 1,
      deletedSegments: 1,
      deletedBytes: oneBatchBytes,
      logStartOffset: 4,
    });
    // Everything expired: the newest batch stays.
    expect(log.applyRetention(1_000_000)).toMatchObject({ deletedBatches: 1, logStartOffset: 6 });
    expect(log.batchCount).toBe(1);
    // By size: keeps the newest batches that fit.
    const bySize = new MemoryLog({ retentionBytes: 2 * oneBatchBytes });
    for (let i = 0; i < 5; i++) await bySize.append(batch(`s${i}`, 2, 1000 * (i + 1)));
    expect(bySize.applyRetention(0)).toMatchObject({ deletedBatches: 3, logStartOffset: 6 });
    // Deleting up to the end leaves an empty log that starts (and ends) there.
    bySize.deleteBefore(10);
    expect([bySize.logStartOffset, bySize.logEndOffset, bySize.batchCount]).toEqual([10, 10, 0]);
    expect((await bySize.append(batch('t'))).baseOffset).toBe(10);
  });

  it('rejects bad batches and bad options, and everything once closed', async () => {
    const log = new MemoryLog();
    await expect(log.append(new Uint8Array(10))).rejects.toMatchObject({ code: 'INVALID_BATCH' });
    const good = batch('z');
    await expect(log.append(good.subarray(0, good.length - 1))).rejects.toMatchObject({
      code: 'INVALID_BATCH',
    });
    const padded = new Uint8Array(good.length + 1);
    padded.set(good);
    await expect(log.append(padded)).rejects.toMatchObject({ code: 'INVALID_BATCH' });
    expect(log.logEndOffset).toBe(0);
    expect(() => new MemoryLog({ retentionMs: -2 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    await log.close();
    await log.close();
    await expect(log.append(good)).rejects.toMatchObject({ code: 'LOG_CLOSED' });
    expect(() => log.read(0, 1)).toThrow(expect.objectContaining({ code: 'LOG_CLOSED' }));
    expect(() => log.offsetForTime(0)).toThrow(expect.objectContaining({ code: 'LOG_CLOSED' }));
    expect(() => log.truncateTo(0)).toThrow(expect.objectContaining({ code: 'LOG_CLOSED' }));
  });

  it('answers what the broker asks of a LogStore', async () => {
    const clock = new ManualClock(10_000);
    const log = new MemoryLog({ durability: 'always', retentionMs: 1_000, clock });
    expect([log.durableOffset, log.segmentCount, log.sizeBytes]).toEqual([0, 1, 0]);
    expect(log.recovery).toMatchObject({ cleanShutdown: true, truncation: null, segmentsScanned: 0 });
    await log.append(makeBatch('a', 2, 8_000));
    await log.append(makeBatch('b', 1, 9_500));
    // Syncs complete at once in the model: everything appended is durable.
    expect([log.durableOffset, log.segmentCount]).toEqual([3, 2]);
    await log.flush();
    // Retention without an argument uses the clock's wall time: at 10 000, `a` (8 001) is expired.
    expect(log.applyRetention()).toMatchObject({ deletedSegments: 1, deletedBatches: 1, logStartOffset: 2 });
    clock.advance(60_000);
    // The newest batch always stays.
    expect(log.applyRetention()).toMatchObject({ deletedSegments: 0, logStartOffset: 2 });
    await log.close();
    await expect(log.flush()).rejects.toMatchObject({ code: 'LOG_CLOSED' });
  });
});
