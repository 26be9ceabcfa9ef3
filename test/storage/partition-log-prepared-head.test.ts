import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { preparedHeadBytes } from '../../src/limits.js';
import { segmentFileName, zeroAheadBytes } from '../../src/storage/log-segment.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { nodeSpareFileSystem } from '../../src/storage/spare-segment.js';
import { makeBatch, temporaryDirectory } from './helpers.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function nextTurns(count: number): Promise<void> {
  return (async () => {
    for (let turn = 0; turn < count; turn++) await new Promise((resolve) => setImmediate(resolve));
  })();
}

/** Disk blocks of the first segment's file (st_blocks of 512 bytes). */
function allocatedFileBytes(directory: string): number {
  return statSync(join(directory, segmentFileName(0, '.log'))).blocks * 512;
}

describe('PartitionLog prepared head (durability always)', () => {
  it('opens a fresh log with its first preparedHeadBytes allocated and zero-filled, and appends into it grow nothing', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const log = await PartitionLog.open({ directory: dir.path, durability: 'always' });
    try {
      expect(log.preallocatedBytes).toBe(preparedHeadBytes);
      expect(allocatedFileBytes(dir.path)).toBeGreaterThanOrEqual(preparedHeadBytes);
      // Appends into the head until the log holds `zeroAheadBytes` (from then on it grows ahead by
      // the durable zero margin, log-segment.ts): no growth, no zero-writes after them (what is
      // preallocated ahead only shrinks by what was appended).
      let appended = 0;
      while (appended < zeroAheadBytes - 16 * 1024) {
        const batch = makeBatch(`b${appended}`, 10, 1_700_000_000_000, 100);
        await log.append(batch);
        appended += batch.length;
        await nextTurns(2);
        expect(log.preallocatedBytes).toBe(preparedHeadBytes - log.sizeBytes);
      }
      expect(log.sizeBytes).toBe(appended);
    } finally {
      await log.close();
    }
    // The data is intact after a clean close and reopen; the head of a non-empty log is not prepared again.
    const reopened = await PartitionLog.open({ directory: dir.path, durability: 'always' });
    try {
      expect(reopened.logEndOffset).toBeGreaterThan(0);
      expect(reopened.verify()).toBeGreaterThan(0);
      expect(reopened.preallocatedBytes).toBe(0);
    } finally {
      await reopened.close();
    }
  });

  it('prepares nothing with durability none or interval (their appends need no zeros ahead)', async () => {
    for (const durability of ['none', 'interval'] as const) {
      const dir = temporaryDirectory();
      cleanups.push(dir.remove);
      const log = await PartitionLog.open({ directory: dir.path, durability });
      try {
        expect(log.preallocatedBytes).toBe(0);
        expect(allocatedFileBytes(dir.path)).toBe(0);
      } finally {
        await log.close();
      }
    }
  });

  it('prepares nothing when an existing log is opened again, even an empty one (opening preallocates nothing)', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const fresh = await PartitionLog.open({ directory: dir.path, durability: 'always' });
    expect(fresh.recovery.created).toBe(true);
    await fresh.close(); // the empty active segment is trimmed to 0 bytes
    const reopened = await PartitionLog.open({ directory: dir.path, durability: 'always' });
    try {
      expect(reopened.recovery.created).toBe(false);
      expect(reopened.preallocatedBytes).toBe(0);
      expect(allocatedFileBytes(dir.path)).toBe(0);
      await reopened.append(makeBatch('a', 2));
      expect(reopened.logEndOffset).toBe(2);
    } finally {
      await reopened.close();
    }
  });

  it('prepares at most the segment size', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const log = await PartitionLog.open({
      directory: dir.path,
      durability: 'always',
      segmentBytes: 256 * 1024,
    });
    try {
      expect(log.preallocatedBytes).toBe(256 * 1024);
      await log.append(makeBatch('a', 3));
      expect(log.logEndOffset).toBe(3);
    } finally {
      await log.close();
    }
  });
});

describe('PartitionLog zeros synced ahead (durability always)', () => {
  it('fails its appends when a background fdatasync of the zeros ahead fails', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    let failNext = false;
    let zeroSyncs = 0;
    const log = await PartitionLog.open({
      directory: dir.path,
      durability: 'always',
      spareSegment: false,
      // The background syncs of the log's files go through this seam (TEST-ONLY).
      spareFileSystem: {
        ...nodeSpareFileSystem,
        datasync: (fd, callback) => {
          zeroSyncs++;
          if (!failNext) {
            nodeSpareFileSystem.datasync(fd, callback);
            return;
          }
          const error: NodeJS.ErrnoException = new Error('EIO: i/o error, fdatasync');
          error.code = 'EIO';
          setImmediate(() => callback(error));
        },
      },
    });
    try {
      const batch = makeBatch('z', 1, 1_700_000_000_000, 16 * 1024);
      // Past the prepared head, so the turns after the appends keep zeros ahead and sync them.
      // Paced at one append per millisecond (a latency run's pace, below the rate at which zeros
      // are no longer synced ahead: log-segment.ts durableZeroAppendBytesPerSecondMax).
      const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1));
      while (zeroSyncs === 0 && log.logEndOffset < 1000) {
        await log.append(batch);
        await pause();
      }
      expect(zeroSyncs).toBeGreaterThan(0);
      failNext = true;
      const before = zeroSyncs;
      // Keep appending until a background sync ran (and failed): every later append must fail.
      let failure: unknown = null;
      for (let i = 0; i < 1000 && failure === null; i++) {
        try {
          await log.append(batch);
          await pause();
        } catch (error) {
          failure = error;
        }
      }
      expect(zeroSyncs).toBeGreaterThan(before);
      expect((failure as { code?: string } | null)?.code).toBe('STORAGE_IO');
      await expect(log.append(batch)).rejects.toMatchObject({ code: 'STORAGE_IO' });
    } finally {
      await log.close().catch(() => undefined);
    }
  });
});
