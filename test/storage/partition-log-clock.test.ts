/**
 * PartitionLog's timed behaviour on a ManualClock: segment roll by age, the flush and checkpoint
 * intervals, retention by time. Time moves only when the test says so; nothing waits for real time
 * to pass (the waits below are for real fdatasync and file writes to finish, never for a timer).
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { CheckpointFile } from '../../src/storage/checkpoint-file.js';
import { type RecoveryCheckpoint, recoveryCheckpointFileName } from '../../src/storage/log-loader.js';
import { PartitionLog, type PartitionLogOptions } from '../../src/storage/partition-log.js';
import { makeBatch, temporaryDirectory, waitUntil } from './helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function openLog(clock: ManualClock, options: Omit<PartitionLogOptions, 'directory'>) {
  const dir = temporaryDirectory();
  cleanups.push(dir.remove);
  const log = await PartitionLog.open({ directory: dir.path, spareSegment: false, clock, ...options });
  cleanups.push(() => log.close());
  return { log, directory: dir.path };
}

/** Lets pending I/O callbacks and promise continuations run (no timer of the log can fire: they are on the clock). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('PartitionLog on a ManualClock', () => {
  it('rolls the active segment once it is segmentMs old, and not before', async () => {
    const clock = new ManualClock();
    const { log } = await openLog(clock, { durability: 'none', segmentMs: 10_000 });
    await log.append(makeBatch('a'));
    clock.advance(9_999);
    await log.append(makeBatch('b'));
    expect(log.segmentCount).toBe(1);
    clock.advance(1);
    await log.append(makeBatch('c'));
    expect(log.segmentCount).toBe(2);
    // The new segment's age counts from the roll.
    clock.advance(9_999);
    await log.append(makeBatch('d'));
    expect(log.segmentCount).toBe(2);
    clock.advance(1);
    await log.append(makeBatch('e'));
    expect(log.segmentCount).toBe(3);
    expect(log.read(0, 1 << 20).nextOffset).toBe(2);
  });

  it('does not roll an empty segment however old it is', async () => {
    const clock = new ManualClock();
    const { log } = await openLog(clock, { durability: 'none', segmentMs: 1_000 });
    clock.advance(60_000);
    await log.append(makeBatch('a'));
    expect(log.segmentCount).toBe(1);
  });

  it('syncs with `interval` when the flush timer fires on the clock', async () => {
    const clock = new ManualClock();
    // Ten minutes: a timer on real time would not fire within this test.
    const { log } = await openLog(clock, { durability: 'interval', flushIntervalMs: 600_000 });
    await log.append(makeBatch('a', 3));
    await settle();
    expect([log.durableOffset, log.syncCount]).toEqual([0, 0]);
    clock.advance(599_999);
    await settle();
    expect([log.durableOffset, log.syncCount]).toEqual([0, 0]);
    clock.advance(1);
    await waitUntil(() => log.durableOffset === 3);
    expect(log.syncCount).toBe(1);
    // Nothing new: the next tick syncs nothing.
    clock.advance(600_000);
    await settle();
    expect(log.syncCount).toBe(1);
  });

  it('writes the recovery-point checkpoint when the checkpoint timer fires on the clock', async () => {
    const clock = new ManualClock();
    const { log, directory } = await openLog(clock, {
      durability: 'interval',
      flushIntervalMs: 100_000,
      checkpointIntervalMs: 1_000_000,
    });
    const checkpoint = new CheckpointFile<RecoveryCheckpoint>(join(directory, recoveryCheckpointFileName));
    const recoveryPoint = (): number => {
      const read = checkpoint.read();
      return read.status === 'ok' ? read.value.recoveryPoint : -1;
    };
    await log.append(makeBatch('a', 2));
    clock.advance(100_000); // flush
    await waitUntil(() => log.durableOffset === 2);
    await settle();
    expect(recoveryPoint()).toBe(0);
    clock.advance(899_999);
    await settle();
    expect(recoveryPoint()).toBe(0);
    clock.advance(1);
    await waitUntil(() => recoveryPoint() === 2);
  });

  it('applies retention by time at the clock wall time', async () => {
    const clock = new ManualClock();
    const segmentBytes = 64 * 1024;
    const { log } = await openLog(clock, { durability: 'none', segmentBytes, retentionMs: 60_000 });
    // Four segments of records stamped with the clock's time, one minute apart.
    for (let i = 0; i < 4; i++) {
      await log.append(makeBatch(`s${i}`, 1, clock.nowMs(), segmentBytes - 1024));
      clock.advance(60_000);
    }
    expect(log.segmentCount).toBe(4);
    // Now: the newest record is 60 s old, the oldest 240 s; the active segment always stays.
    expect(log.applyRetention()).toMatchObject({ deletedSegments: 3, logStartOffset: 3 });
    // Wall time jumping back makes nothing expire.
    await log.append(makeBatch('t', 1, clock.nowMs(), segmentBytes - 1024));
    clock.set(0);
    expect(log.applyRetention()).toMatchObject({ deletedSegments: 0, logStartOffset: 3 });
  });
});
