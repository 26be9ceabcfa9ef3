/**
 * PartitionLog with durability `always` syncs the rounds of a lightly loaded log on the event loop
 * (inline-sync.ts), under the budget it is given; `inlineSync: null`, `interval` and `none` never do.
 * Real files and real fdatasync: each acknowledged append is on disk either way (the durable offset).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { syncPipelineWaitersMax } from '../../src/limits.js';
import { InlineSyncBudget } from '../../src/storage/inline-sync.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { nodeSpareFileSystem } from '../../src/storage/spare-segment.js';
import { makeBatch, temporaryDirectory } from './helpers.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function openLog(options: Partial<Parameters<typeof PartitionLog.open>[0]>): Promise<PartitionLog> {
  const dir = temporaryDirectory();
  cleanups.push(dir.remove);
  return PartitionLog.open({ directory: dir.path, ...options });
}

/** A budget that never turns itself off, so only the log's own rules decide (slow disks aside). */
function generousBudget(): InlineSyncBudget {
  return new InlineSyncBudget({ shareMax: 1, slowMs: 60_000 });
}

describe('PartitionLog inline fdatasync (durability always)', () => {
  it('acknowledges one append at a time after an inline fdatasync each (the first round in the pool), counted by its budget', async () => {
    const budget = generousBudget();
    const log = await openLog({ durability: 'always', inlineSync: budget });
    try {
      for (let i = 0; i < 5; i++) {
        const result = await log.append(makeBatch(`one-${i}`, 1, 1_700_000_000_000, 100));
        expect(log.durableOffset).toBeGreaterThan(result.lastOffset);
      }
      expect([log.syncCount, log.inlineSyncCount, budget.calls]).toEqual([5, 4, 4]);
    } finally {
      await log.close();
    }
  });

  it('many appends at once go to the pool (group commit), then a lone one is inline again', async () => {
    const log = await openLog({ durability: 'always', inlineSync: generousBudget() });
    try {
      // The first round covers them all (the first round of a log is never inline); it
      // acknowledged many appends, so the next round runs in the pool while more arrive.
      const first = Array.from({ length: 4 * syncPipelineWaitersMax }, (_, i) =>
        log.append(makeBatch(`burst-${i}`, 1, 1_700_000_000_000, 100)),
      );
      await Promise.all(first);
      const inlineAfterBurst = log.inlineSyncCount;
      const second = Array.from({ length: 4 * syncPipelineWaitersMax }, (_, i) =>
        log.append(makeBatch(`more-${i}`, 1, 1_700_000_000_000, 100)),
      );
      await Promise.all(second);
      expect(log.inlineSyncCount).toBe(inlineAfterBurst);
      expect(log.syncCount).toBeGreaterThan(inlineAfterBurst);
      const syncsBefore = log.syncCount;
      await log.append(makeBatch('alone', 1, 1_700_000_000_000, 100));
      // The round before acknowledged a burst: this one runs in the pool, and the next is inline.
      await log.append(makeBatch('alone-again', 1, 1_700_000_000_000, 100));
      expect(log.syncCount).toBeGreaterThanOrEqual(syncsBefore + 2);
      expect(log.inlineSyncCount).toBeGreaterThan(inlineAfterBurst);
      expect(log.durableOffset).toBe(log.logEndOffset);
    } finally {
      await log.close();
    }
  });

  it('never inline for a segment whose zeros ahead are being synced (that sync is held here)', async () => {
    const held: Array<(error: NodeJS.ErrnoException | null) => void> = [];
    const log = await openLog({
      durability: 'always',
      inlineSync: generousBudget(),
      spareFileSystem: { ...nodeSpareFileSystem, datasync: (_fd, callback) => held.push(callback) },
    });
    try {
      // Lone 16 KiB appends (inline after the first) until the segment syncs zeros ahead of them.
      let appended = 0;
      while (held.length === 0 && appended < 512) {
        await log.append(makeBatch(`z-${appended}`, 1, 1_700_000_000_000, 16 * 1024));
        appended++;
      }
      expect(held).toHaveLength(1);
      const inlineBefore = log.inlineSyncCount;
      const syncsBefore = log.syncCount;
      expect(inlineBefore).toBeGreaterThan(0);
      await log.append(makeBatch('during', 1, 1_700_000_000_000, 100));
      expect([log.syncCount, log.inlineSyncCount]).toEqual([syncsBefore + 1, inlineBefore]);
      held.shift()!(null);
      await log.append(makeBatch('after', 1, 1_700_000_000_000, 100));
      expect(log.inlineSyncCount).toBe(inlineBefore + 1);
    } finally {
      for (const release of held.splice(0)) release(null);
      await log.close();
    }
  });

  it('never inline with inlineSync null, or with durability interval or none', async () => {
    for (const options of [
      { durability: 'always' as const, inlineSync: null },
      { durability: 'interval' as const, inlineSync: generousBudget() },
      { durability: 'none' as const, inlineSync: generousBudget() },
    ]) {
      const log = await openLog(options);
      try {
        for (let i = 0; i < 3; i++) await log.append(makeBatch(`x-${i}`, 1, 1_700_000_000_000, 100));
        await log.flush();
        expect(log.inlineSyncCount, options.durability).toBe(0);
        expect(log.durableOffset).toBe(log.logEndOffset);
      } finally {
        await log.close();
      }
    }
  });
});
