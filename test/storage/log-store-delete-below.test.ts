/**
 * `LogStore.deleteBelow` (src/storage/log-store.ts) on every implementation: PartitionLog (segments),
 * MemoryLog (batches) and FaultyLog (passing it on, or failing it at the 'retention' point). Only
 * units holding nothing at or above the offset go, never the newest one; the log start moves to the
 * first unit kept; bad offsets and closed logs get typed errors.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FaultyLog } from '../../src/storage/faulty-log.js';
import type { LogStore } from '../../src/storage/log-store.js';
import { MemoryLog } from '../../src/storage/memory-log.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { makeBatch, temporaryDirectory } from './helpers.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A log of several units and the base offset of each unit, oldest first. */
interface Subject {
  log: LogStore;
  units: () => number[];
}

/** Batches of 2 records (so an offset can fall inside a batch) of ~`valueBytes` each. */
async function fill(log: LogStore, batches: number, valueBytes: number): Promise<void> {
  for (let i = 0; i < batches; i++) await log.append(makeBatch(`b${i}`, 2, 1000 + i, valueBytes));
}

const subjects: Record<string, () => Promise<Subject>> = {
  PartitionLog: async () => {
    const directory = temporaryDirectory();
    cleanups.push(directory.remove);
    const log = await PartitionLog.open({
      directory: directory.path,
      durability: 'none',
      segmentBytes: 64 * 1024,
      checkpointIntervalMs: 3_600_000,
    });
    await fill(log, 120, 1000);
    return { log, units: () => log.segmentBaseOffsets() };
  },
  MemoryLog: async () => {
    const log = new MemoryLog();
    await fill(log, 6, 10);
    return { log, units: () => log.batchBaseOffsets() };
  },
  'FaultyLog around a MemoryLog': async () => {
    const inner = new MemoryLog();
    const log = new FaultyLog(inner);
    await fill(log, 6, 10);
    return { log, units: () => inner.batchBaseOffsets() };
  },
};

describe.each(Object.keys(subjects))('LogStore.deleteBelow on %s', (name) => {
  it('deletes only the oldest units wholly below the offset, never the newest one', async () => {
    const { log, units } = await subjects[name]!();
    const bases = units();
    expect(bases.length).toBeGreaterThanOrEqual(4);
    const end = log.logEndOffset;

    // At or below the log start: nothing.
    expect(log.deleteBelow(0)).toEqual(expect.objectContaining({ deletedSegments: 0, logStartOffset: 0 }));
    // Inside the third unit: the two before it go, the third stays (it holds offsets at and above).
    const size = log.sizeBytes;
    const inside = log.deleteBelow(bases[2]! + 1);
    expect(inside).toEqual(expect.objectContaining({ deletedSegments: 2, logStartOffset: bases[2] }));
    expect(inside.deletedBytes).toBe(size - log.sizeBytes);
    expect(units()).toEqual(bases.slice(2));
    expect(log.logStartOffset).toBe(bases[2]);
    expect(log.read(bases[2]!, 1).firstOffset).toBe(bases[2]);
    expect(() => log.read(bases[2]! - 1, 1)).toThrow(
      expect.objectContaining({ code: 'OFFSET_OUT_OF_RANGE' }),
    );
    // At a unit's base: the unit before it holds only offsets below, so it goes.
    expect(log.deleteBelow(bases[3]!)).toEqual(
      expect.objectContaining({ deletedSegments: 1, logStartOffset: bases[3] }),
    );
    // Past the end: everything but the newest unit; the end and later appends are unchanged.
    const last = bases[bases.length - 1]!;
    expect(log.deleteBelow(end + 100).logStartOffset).toBe(last);
    expect(units()).toEqual([last]);
    expect(log.logEndOffset).toBe(end);
    expect((await log.append(makeBatch('after'))).baseOffset).toBe(end);
    // The appended batch holds `end`: it stays, whatever unit it went into.
    expect(log.deleteBelow(end).logStartOffset).toBeLessThanOrEqual(end);
    expect(log.read(end, 1).firstOffset).toBe(end);
    await log.close();
  });

  it('refuses offsets that are not non-negative integers, and any call once closed', async () => {
    const { log, units } = await subjects[name]!();
    const bases = units();
    for (const offset of [-1, 1.5, Number.NaN]) {
      expect(() => log.deleteBelow(offset)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    expect(units()).toEqual(bases);
    await log.close();
    expect(() => log.deleteBelow(bases[1]!)).toThrow(expect.objectContaining({ code: 'LOG_CLOSED' }));
  });
});

describe('FaultyLog.deleteBelow', () => {
  it("fails at the 'retention' point as a failed unlink, deleting nothing; then passes on", async () => {
    const inner = new MemoryLog();
    const log = new FaultyLog(inner);
    await fill(log, 4, 10);
    const bases = inner.batchBaseOffsets();
    log.fail('retention', 'EIO');
    expect(() => log.deleteBelow(bases[2]!)).toThrow(expect.objectContaining({ code: 'STORAGE_IO' }));
    expect(inner.batchBaseOffsets()).toEqual(bases);
    expect(log.injectedCount).toBe(1);
    expect(log.deleteBelow(bases[2]!)).toEqual(
      expect.objectContaining({ deletedSegments: 2, logStartOffset: bases[2] }),
    );
    expect(log.logStartOffset).toBe(bases[2]);
    await log.close();
  });
});
