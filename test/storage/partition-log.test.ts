import { cpSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { batchBaseOffset, batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords } from '../../src/format/record-batch.js';
import { CheckpointFile } from '../../src/storage/checkpoint-file.js';
import { type RecoveryCheckpoint, recoveryCheckpointFileName } from '../../src/storage/log-loader.js';
import { PartitionLog, type PartitionLogOptions } from '../../src/storage/partition-log.js';
import { nodeSpareFileSystem, spareSegmentFileName } from '../../src/storage/spare-segment.js';
import { heldWriteFileSystem, makeBatch, systemError, temporaryDirectory, waitUntil } from './helpers.js';

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

  it('records the recovery point as soon as the data an unclean open kept is synced', async () => {
    const dir = directory();
    const log = await PartitionLog.open({
      directory: dir,
      durability: 'none',
      checkpointIntervalMs: 3_600_000,
    });
    for (let i = 0; i < 10; i++) await log.append(makeBatch(`c${i}`, 3));
    const crashed = directory();
    cpSync(dir, crashed, { recursive: true }); // checkpoint: recovery point 0, not clean
    await log.close();
    const reopened = await PartitionLog.open({
      directory: crashed,
      durability: 'none',
      checkpointIntervalMs: 3_600_000, // no checkpoint tick during the test
    });
    expect(reopened.recovery.cleanShutdown).toBe(false);
    expect(reopened.logEndOffset).toBe(30);
    const checkpoint = new CheckpointFile<RecoveryCheckpoint>(join(crashed, recoveryCheckpointFileName));
    await waitUntil(() => {
      const read = checkpoint.read();
      return read.status === 'ok' && read.value.recoveryPoint === 30;
    });
    expect(reopened.durableOffset).toBe(30);
    await reopened.close();
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

describe('PartitionLog spare segment', () => {
  const segmentBytes = 64 * 1024;
  // A spare is the default with `always` only; `none` keeps these tests fast (no fdatasync per append).
  const base = (dir: string): PartitionLogOptions => ({
    directory: dir,
    durability: 'none',
    segmentBytes,
    indexIntervalBytes: 1024,
    spareSegment: true,
  });
  /** Values of every record from offset 0, without the padding. */
  const allValues = (log: PartitionLog): string[] => {
    const values: string[] = [];
    let offset = log.logStartOffset;
    while (offset < log.logEndOffset) {
      const result = log.read(offset, 1 << 20);
      values.push(...valuesOf(result.bytes).map((v) => v.replace(/x+$/, '')));
      offset = result.nextOffset;
    }
    return values;
  };
  const expectedValues = (batches: number): string[] =>
    Array.from({ length: batches }, (_, i) => [`s${i}/0`, `s${i}/1`]).flat();
  /** Appends batch `i` (2 records, ~4 KiB) and lets the spare preparation run. */
  const appendAndYield = async (log: PartitionLog, i: number): Promise<void> => {
    await log.append(makeBatch(`s${i}`, 2, 1_700_000_000_000 + i, 2000));
    await waitUntil(() => log.spareSegmentStats.state !== 'filling');
  };

  it('prepares a spare once the log rolls often and adopts one at every later roll', async () => {
    const dir = directory();
    const log = await PartitionLog.open(base(dir));
    expect(log.spareSegmentStats.state).toBe('none'); // an idle log writes no spare
    expect(existsSync(join(dir, spareSegmentFileName))).toBe(false);
    const batches = 200;
    for (let i = 0; i < batches; i++) await appendAndYield(log, i);
    const stats = log.spareSegmentStats;
    const rolls = log.segmentCount - 1;
    expect(rolls).toBeGreaterThan(10);
    // The first segment filled up within spareSegmentFillMsMax: from its roll on, a spare each time.
    expect(stats.adopted).toBe(rolls - 1);
    expect(stats.fallbacks).toBe(1);
    expect(stats.failures).toBe(0);
    expect(stats.prepared).toBe(rolls);
    expect(stats.state).toBe('ready');
    const spare = join(dir, spareSegmentFileName);
    expect(statSync(spare).size).toBe(segmentBytes);
    const logs = readdirSync(dir).filter((name) => name.endsWith('.log'));
    expect(logs.length).toBe(log.segmentCount);
    for (const name of logs) expect(name).toMatch(/^\d{20}\.log$/);
    expect(allValues(log)).toEqual(expectedValues(batches));
    expect(log.verify()).toBe(batches);
    await log.close();
    expect(existsSync(spare)).toBe(false);
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);

    const reopened = await PartitionLog.open(base(dir));
    expect(reopened.recovery.cleanShutdown).toBe(true);
    expect(reopened.logEndOffset).toBe(2 * batches);
    expect(reopened.verify()).toBe(batches);
    expect(allValues(reopened)).toEqual(expectedValues(batches));
    await reopened.close();
  });

  it('a crash while a spare exists loses nothing: the open deletes the spare', async () => {
    const dir = directory();
    const held = heldWriteFileSystem();
    const log = await PartitionLog.open({ ...base(dir), spareFileSystem: held.fileSystem });
    for (let i = 0; i < 40; i++) {
      await log.append(makeBatch(`s${i}`, 2, 1_700_000_000_000 + i, 2000));
      held.releaseOne();
      await waitUntil(() => log.spareSegmentStats.state !== 'filling' || held.heldCount() > 0);
    }
    await log.flush();
    // One copy with a complete spare, one with a half-written one.
    await waitUntil(() => log.spareSegmentStats.state === 'ready' || held.heldCount() > 0);
    if (log.spareSegmentStats.state !== 'ready') {
      while (log.spareSegmentStats.state === 'filling') {
        held.releaseOne();
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
    const withReadySpare = directory();
    cpSync(dir, withReadySpare, { recursive: true });
    await log.append(makeBatch('roll', 1, 0, segmentBytes - 200)); // adopts the spare
    await log.append(makeBatch('after', 1)); // starts the next one: its first write is held
    await log.flush();
    expect(log.spareSegmentStats.state).toBe('filling');
    const withPartialSpare = directory();
    cpSync(dir, withPartialSpare, { recursive: true });
    const endOffset = log.logEndOffset;
    const closing = log.close();
    while (held.heldCount() > 0) held.releaseOne();
    await closing;

    for (const [copy, end] of [
      [withReadySpare, 80],
      [withPartialSpare, endOffset],
    ] as const) {
      expect(existsSync(join(copy, spareSegmentFileName))).toBe(true);
      const reopened = await PartitionLog.open(base(copy));
      expect(reopened.recovery.cleanShutdown).toBe(false);
      expect(existsSync(join(copy, spareSegmentFileName))).toBe(false);
      expect(reopened.logEndOffset).toBe(end);
      expect(reopened.verify()).toBe(copy === withReadySpare ? 40 : 42);
      expect(allValues(reopened).slice(0, 80)).toEqual(expectedValues(40));
      await reopened.close();
    }
  });

  it('falls back to creating the segment when the spare is not ready, and adopts it at the next roll', async () => {
    const dir = directory();
    const held = heldWriteFileSystem();
    const log = await PartitionLog.open({ ...base(dir), spareFileSystem: held.fileSystem });
    let i = 0;
    while (log.segmentCount < 3) await log.append(makeBatch(`s${i++}`, 2, 1_700_000_000_000, 2000));
    // Two rolls while the only spare waited for its first write.
    expect(log.spareSegmentStats).toMatchObject({ prepared: 1, adopted: 0, fallbacks: 2, state: 'filling' });
    while (log.spareSegmentStats.state === 'filling') {
      held.releaseOne();
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(log.spareSegmentStats.state).toBe('ready');
    while (log.segmentCount < 4) await log.append(makeBatch(`s${i++}`, 2, 1_700_000_000_000, 2000));
    expect(log.spareSegmentStats).toMatchObject({ prepared: 2, adopted: 1, fallbacks: 2, state: 'filling' });
    expect(allValues(log)).toEqual(expectedValues(i));
    expect(log.verify()).toBe(i);
    const closing = log.close();
    while (held.heldCount() > 0) held.releaseOne();
    await closing;
  });

  it('close waits for the zero-write in flight, issues no more and deletes the spare', async () => {
    const dir = directory();
    const held = heldWriteFileSystem();
    const log = await PartitionLog.open({ ...base(dir), spareFileSystem: held.fileSystem });
    let appended = 0;
    while (log.segmentCount < 2) await log.append(makeBatch(`s${appended++}`, 1, 0, 2000));
    expect(held.heldCount()).toBe(1);
    let closed = false;
    const closing = log.close().then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(closed).toBe(false);
    held.releaseOne();
    await closing;
    expect(held.writes.length).toBe(1);
    expect(existsSync(join(dir, spareSegmentFileName))).toBe(false);
    const reopened = await PartitionLog.open(base(dir));
    expect(reopened.logEndOffset).toBe(appended);
    await reopened.close();
  });

  it('records ENOSPC and EIO while preparing, deletes the spare and keeps appending', async () => {
    const dir = directory();
    let allocations = 0;
    let writes = 0;
    const log = await PartitionLog.open({
      ...base(dir),
      spareFileSystem: {
        ...nodeSpareFileSystem,
        allocate: (fd, offset, length) => {
          allocations++;
          if (allocations === 1) throw systemError('ENOSPC', 'fallocate');
          nodeSpareFileSystem.allocate(fd, offset, length);
        },
        write: (fd, buffer, length, position, callback) => {
          writes++;
          if (writes === 1) setImmediate(() => callback(systemError('EIO', 'write'), 0));
          else nodeSpareFileSystem.write(fd, buffer, length, position, callback);
        },
      },
    });
    let i = 0;
    // No spare before the first roll; the roll (a fallback) starts one, whose preallocation fails.
    while (log.segmentCount < 2) await log.append(makeBatch(`s${i++}`, 2, 0, 2000));
    expect(log.spareSegmentStats).toMatchObject({ prepared: 1, failures: 1, fallbacks: 1, state: 'none' });
    expect(log.spareSegmentStats.lastFailure?.code).toBe('STORAGE_FULL');
    expect(existsSync(join(dir, spareSegmentFileName))).toBe(false);
    while (log.segmentCount < 3) await log.append(makeBatch(`s${i++}`, 2, 0, 2000));
    // The roll fell back and started the next preparation, whose first write fails.
    await waitUntil(() => log.spareSegmentStats.state !== 'filling');
    expect(log.spareSegmentStats).toMatchObject({ prepared: 2, fallbacks: 2, state: 'failed' });
    while (log.segmentCount < 4) await log.append(makeBatch(`s${i++}`, 2, 0, 2000));
    expect(log.spareSegmentStats).toMatchObject({ prepared: 3, failures: 2, fallbacks: 3 });
    expect(log.spareSegmentStats.lastFailure?.code).toBe('STORAGE_IO');
    await waitUntil(() => log.spareSegmentStats.state === 'ready');
    while (log.segmentCount < 5) await log.append(makeBatch(`s${i++}`, 2, 0, 2000));
    expect(log.spareSegmentStats).toMatchObject({ adopted: 1, fallbacks: 3 });
    expect(allValues(log)).toEqual(expectedValues(i));
    expect(log.verify()).toBe(i);
    await log.close();
  });

  it('truncation and retention leave the spare alone; it serves the next roll', async () => {
    const dir = directory();
    const log = await PartitionLog.open({ ...base(dir), retentionBytes: 3 * segmentBytes });
    let i = 0;
    while (log.segmentCount < 6) await appendAndYield(log, i++);
    expect(log.applyRetention().deletedSegments).toBeGreaterThan(0);
    expect(log.spareSegmentStats.state).toBe('ready');
    const start = log.logStartOffset;
    log.truncateTo(start + 2); // into the oldest remaining segment, reopened writable
    expect(log.segmentCount).toBe(1);
    expect(log.spareSegmentStats.state).toBe('ready');
    const adopted = log.spareSegmentStats.adopted;
    let j = 0;
    while (log.segmentCount < 2) await appendAndYield(log, 1000 + j++);
    expect(log.spareSegmentStats.adopted).toBe(adopted + 1);
    expect(log.logStartOffset).toBe(start);
    expect(log.logEndOffset).toBe(start + 2 + 2 * j);
    expect(log.verify()).toBe(1 + j);
    await log.close();
    const reopened = await PartitionLog.open(base(dir));
    expect(reopened.logEndOffset).toBe(start + 2 + 2 * j);
    await reopened.close();
  });

  it('works without a spare (spareSegment: false)', async () => {
    const dir = directory();
    const log = await PartitionLog.open({ ...base(dir), spareSegment: false });
    for (let i = 0; i < 60; i++) await appendAndYield(log, i);
    expect(log.segmentCount).toBeGreaterThan(2);
    expect(log.spareSegmentStats).toMatchObject({ prepared: 0, adopted: 0, fallbacks: 0, state: 'none' });
    expect(existsSync(join(dir, spareSegmentFileName))).toBe(false);
    expect(log.verify()).toBe(60);
    await log.close();
  });

  it('prepares spares by default with `always` only (`none` and `interval` append by pwrite, no zeros)', async () => {
    for (const durability of ['none', 'interval', 'always'] as const) {
      const dir = directory();
      const { spareSegment: _omitted, ...defaults } = base(dir);
      const log = await PartitionLog.open({ ...defaults, durability });
      for (let i = 0; i < 40; i++) await appendAndYield(log, i);
      expect(log.segmentCount).toBeGreaterThan(2);
      if (durability === 'always') expect(log.spareSegmentStats.prepared).toBeGreaterThan(0);
      else expect(log.spareSegmentStats).toMatchObject({ prepared: 0, fallbacks: 0, state: 'none' });
      expect(log.verify()).toBe(40);
      await log.close();
    }
  });

  it('the sync a roll starts covers the sealed segments only', async () => {
    const log = await PartitionLog.open({ ...base(directory()), durability: 'none' });
    let i = 0;
    while (log.segmentCount < 2) await appendAndYield(log, i++);
    await log.append(makeBatch('more', 3));
    const activeBase = log.logEndOffset - 3 - 2;
    await waitUntil(() => log.durableOffset === activeBase);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(log.durableOffset).toBe(activeBase);
    await log.flush();
    expect(log.durableOffset).toBe(log.logEndOffset);
    await log.close();
  });
});
