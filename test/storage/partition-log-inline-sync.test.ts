/**
 * PartitionLog with durability `always` syncs the rounds of a lightly loaded log on the event loop
 * (inline-sync.ts), under the budget it is given; `inlineSync: null`, `interval` and `none` never do.
 * Real files and real fdatasync: each acknowledged append is on disk either way (the durable offset).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { syncPipelineWaitersMax } from '../../src/limits.js';
import { InlineSyncBudget } from '../../src/storage/inline-sync.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
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
  it('acknowledges one append at a time after an inline fdatasync each, counted by its budget', async () => {
    const budget = generousBudget();
    const log = await openLog({ durability: 'always', inlineSync: budget });
    try {
      for (let i = 0; i < 5; i++) {
        const result = await log.append(makeBatch(`one-${i}`, 1, 1_700_000_000_000, 100));
        expect(log.durableOffset).toBeGreaterThan(result.lastOffset);
      }
      expect(log.inlineSyncCount).toBe(5);
      expect(budget.calls).toBe(5);
      expect(log.syncCount).toBeGreaterThanOrEqual(5);
    } finally {
      await log.close();
    }
  });

  it('many appends at once go to the pool (group commit), then a lone one is inline again', async () => {
    const log = await openLog({ durability: 'always', inlineSync: generousBudget() });
    try {
      // The first round covers them all (lightly loaded so far: inline); it acknowledged many
      // appends, so the next round runs in the pool while more arrive.
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
