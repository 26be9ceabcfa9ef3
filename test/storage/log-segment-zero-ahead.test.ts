import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  durableZeroAheadBytes,
  durableZeroStepBytes,
  durableZeroSyncStepBytes,
  LogSegment,
  segmentFileName,
  type ZeroSyncFunction,
  zeroAheadBytes,
  zeroAheadStepBytes,
} from '../../src/storage/log-segment.js';
import { makeBatch, temporaryDirectory } from './helpers.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

const KiB = 1024;
const MiB = 1024 * KiB;

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A 1 ms pause: appends paced by it run at most one batch per millisecond (~16 MB/s of 16 KiB
 * batches), below `durableZeroAppendBytesPerSecondMax`, as in a latency run.
 */
function pause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}

/** Turns of the event loop (with a 1 ms pause each) until `done()`, at most `turns` of them. */
async function turnsUntil(done: () => boolean, turns = 5000): Promise<void> {
  for (let turn = 0; turn < turns && !done(); turn++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** The data of the segment as the file holds it equals what the map shows (zeros never hit it). */
function expectDataIntact(segment: LogSegment, path: string): void {
  const size = segment.sizeBytes;
  const view = Buffer.from(segment.view(0, size));
  segment.close();
  const file = readFileSync(join(path, segmentFileName(0, '.log')));
  expect(file.subarray(0, size).equals(view)).toBe(true);
}

describe('LogSegment zero-fill after the appends', () => {
  it('keeps zeros ahead of appends that keep pace, one step per turn, synced in the background', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const segment = LogSegment.create(dir.path, 0, 64 * MiB, 4 * KiB);
    segment.setZeroWriteBytes(16 * KiB);
    const batch = makeBatch('a', 1, 1_700_000_000_000, 16 * KiB); // ~16 KiB
    // The first append writes its data without waiting for zeros.
    segment.append(batch);
    expect(segment.zeroFilledAheadBytes).toBe(0);
    // A segment that holds little stays small on disk: zeros only as far as it is allocated.
    for (let turn = 0; turn < 8; turn++) await nextTurn();
    expect(segment.preallocatedBytes).toBe(64 * KiB);
    expect(segment.zeroFilledAheadBytes).toBe(64 * KiB - segment.sizeBytes);
    expect(segment.zeroSyncedAheadBytes).toBe(0); // less than a sync step ahead: no sync of its own
    // One append per millisecond (the pace of a latency run) until the segment holds `zeroAheadBytes`;
    // no pause after the append that gets there: under load a 1 ms timer fires many turns late, and
    // the steps below must be counted from that append on.
    for (;;) {
      segment.append(batch);
      if (segment.sizeBytes >= zeroAheadBytes) break;
      await pause();
    }
    // From then on the turns after the appends grow the file ahead of the data and zero-fill
    // towards the durable margin, at most one step per turn.
    let turns = 0;
    while (segment.zeroFilledAheadBytes < durableZeroAheadBytes - 4 * KiB && turns < 100) {
      const before = segment.zeroFilledAheadBytes;
      await nextTurn();
      turns++;
      expect(segment.zeroFilledAheadBytes - before).toBeLessThanOrEqual(durableZeroStepBytes + 4 * KiB);
    }
    expect(turns).toBeGreaterThanOrEqual(2); // step by step, not all at once
    expect(segment.zeroFilledAheadBytes).toBeLessThanOrEqual(durableZeroAheadBytes + 4 * KiB);
    expect(segment.preallocatedBytes).toBeGreaterThanOrEqual(
      segment.sizeBytes + durableZeroAheadBytes - 4 * KiB,
    );
    // The zeros ahead are fdatasync'd by a sync of their own (no append waits for it).
    await turnsUntil(() => segment.zeroSyncedAheadBytes >= durableZeroSyncStepBytes);
    expect(segment.zeroSyncedAheadBytes).toBeGreaterThanOrEqual(durableZeroSyncStepBytes);
    // Appends that eat into the zeros: the refill starts once less than margin - sync step is left,
    // and the synced zeros stay ahead of the data across refills.
    const end = segment.sizeBytes + 3 * durableZeroAheadBytes;
    while (segment.sizeBytes < end) {
      segment.append(batch);
      await pause();
      expect(segment.zeroFilledAheadBytes).toBeGreaterThan(0);
    }
    // Synced zeros are still ahead of the data (each refill's sync covers up to ~2 MiB ahead).
    await turnsUntil(() => segment.zeroSyncedAheadBytes > 0);
    expect(segment.zeroSyncedAheadBytes).toBeGreaterThan(0);
    expectDataIntact(segment, dir.path);
  });

  it('keeps the small margin and step, and no sync of its own, behind appends that outrun the zeros', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const segment = LogSegment.create(dir.path, 0, 64 * MiB, 4 * KiB);
    const syncs: number[] = [];
    const counting: ZeroSyncFunction = (fd, callback) => {
      syncs.push(fd);
      callback(null);
    };
    segment.setZeroWriteBytes(16 * KiB, undefined, counting);
    const batch = makeBatch('b', 50, 1_700_000_000_000, 1000); // ~50 KiB
    segment.append(batch);
    for (let turn = 0; turn < 8; turn++) await nextTurn();
    // Many appends in each turn (throughput): every turn outruns the zeros.
    for (let round = 0; round < 20; round++) {
      // ~400 KiB in one turn, more than the small margin: the last appends outrun the zeros, and
      // one that outruns them writes at most one step past its end inline.
      for (let i = 0; i < 8; i++) segment.append(batch);
      expect(segment.zeroFilledAheadBytes).toBeLessThanOrEqual(zeroAheadStepBytes + 4 * KiB);
      const before = segment.zeroFilledAheadBytes;
      await nextTurn();
      // The turn after outrunning appends writes one small step towards the small margin.
      expect(segment.zeroFilledAheadBytes - before).toBeLessThanOrEqual(zeroAheadStepBytes + 4 * KiB);
      expect(segment.zeroFilledAheadBytes).toBeLessThanOrEqual(zeroAheadBytes + 4 * KiB);
    }
    expect(syncs).toHaveLength(0);
    expectDataIntact(segment, dir.path);
  });

  it('counts a prepared head as synced zeros, and a truncation cuts them, also under a sync in flight', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const segment = LogSegment.create(dir.path, 0, 64 * MiB, 4 * KiB);
    const held: Array<(error: NodeJS.ErrnoException | null) => void> = [];
    segment.setZeroWriteBytes(16 * KiB, undefined, (_fd, callback) => held.push(callback));
    expect(segment.prepareHead(MiB)).toBe(MiB);
    expect(segment.zeroSyncedAheadBytes).toBe(MiB);
    const batch = makeBatch('c', 1, 1_700_000_000_000, 16 * KiB);
    while (segment.sizeBytes < zeroAheadBytes) {
      segment.append(batch);
      await pause();
    }
    await turnsUntil(() => held.length > 0, 200);
    expect(held).toHaveLength(1); // one background sync in flight, held
    const zeroedEnd = segment.sizeBytes + segment.zeroFilledAheadBytes;
    expect(zeroedEnd).toBeGreaterThanOrEqual(MiB + durableZeroSyncStepBytes);
    // Cut the segment back to its first batch while the sync is in flight: the punched range holds
    // no zeros any more, so the sync ending afterwards must not count it as synced.
    const firstLength = batch.length;
    segment.truncateTo(firstLength, 1, 1_700_000_000_000);
    const syncedAfterCut = segment.zeroSyncedAheadBytes;
    held.shift()!(null);
    expect(segment.zeroSyncedAheadBytes).toBe(syncedAfterCut);
    expect(segment.zeroSyncedAheadBytes).toBeLessThan(zeroedEnd - firstLength);
    expectDataIntact(segment, dir.path);
  });

  it('reports a failed background sync of zeros and stops zero-filling', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const segment = LogSegment.create(dir.path, 0, 64 * MiB, 4 * KiB);
    const failures: Error[] = [];
    const failing: ZeroSyncFunction = (_fd, callback) => {
      const error: NodeJS.ErrnoException = new Error('EIO: i/o error, fdatasync');
      error.code = 'EIO';
      callback(error);
    };
    segment.setZeroWriteBytes(16 * KiB, (error) => failures.push(error), failing);
    const batch = makeBatch('d', 1, 1_700_000_000_000, 16 * KiB);
    while (segment.sizeBytes < zeroAheadBytes) {
      segment.append(batch);
      await pause();
    }
    await turnsUntil(() => failures.length > 0, 200);
    expect(failures).toHaveLength(1);
    expect(segment.backgroundSyncFailure).toBe(failures[0]);
    expect((failures[0] as { code?: string }).code).toBe('STORAGE_IO');
    const zeroedEnd = segment.sizeBytes + segment.zeroFilledAheadBytes;
    for (let i = 0; i < 8; i++) await nextTurn();
    expect(segment.sizeBytes + segment.zeroFilledAheadBytes).toBe(zeroedEnd);
    expectDataIntact(segment, dir.path);
  });

  it('does nothing after the segment was sealed or closed', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const segment = LogSegment.create(dir.path, 0, 64 * MiB, 4 * KiB);
    segment.setZeroWriteBytes(16 * KiB);
    segment.append(makeBatch('b', 10));
    segment.close(); // the scheduled zero-fill runs after this and must not touch the closed fd
    await nextTurn();
    expect(segment.zeroFilledAheadBytes).toBe(0);
  });
});
