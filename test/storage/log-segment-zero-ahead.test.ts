import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  LogSegment,
  segmentFileName,
  smallAppendBytesMax,
  zeroAheadBytes,
  zeroAheadStepBytes,
  zeroAheadStepBytesLarge,
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

describe('LogSegment zero-fill after the appends', () => {
  it('zero-fills ahead after the appends, one step per turn of the event loop, up to the margin', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const segment = LogSegment.create(dir.path, 0, 64 * MiB, 4 * KiB);
    segment.setZeroWriteBytes(16 * KiB);
    const batch = makeBatch('a', 50, 1_700_000_000_000, 1000); // ~50 KiB
    // The first append writes its data without waiting for zeros.
    segment.append(batch);
    expect(segment.zeroFilledAheadBytes).toBe(0);
    // A segment that holds little stays small on disk: zeros only as far as it is allocated.
    for (let turn = 0; turn < 8; turn++) await nextTurn();
    expect(segment.preallocatedBytes).toBe(64 * KiB);
    expect(segment.zeroFilledAheadBytes).toBe(64 * KiB - segment.sizeBytes);
    // Once it holds a margin's worth of data, the turns after the appends grow it ahead of them.
    while (segment.sizeBytes < zeroAheadBytes) segment.append(batch);
    // Each later turn writes at most one step, and they go on until the margin is there, growing
    // the file ahead of the data as needed.
    let turns = 0;
    while (segment.zeroFilledAheadBytes < zeroAheadBytes) {
      const before = segment.zeroFilledAheadBytes;
      await nextTurn();
      turns++;
      // (The first step also counts the unwritten rest of the data's last page.)
      expect(segment.zeroFilledAheadBytes - before).toBeLessThanOrEqual(zeroAheadStepBytes + 4 * KiB);
      expect(segment.zeroFilledAheadBytes).toBeGreaterThan(before);
    }
    expect(turns).toBeGreaterThanOrEqual(2); // step by step, not all at once
    expect(segment.preallocatedBytes).toBeGreaterThanOrEqual(segment.sizeBytes + zeroAheadBytes);
    // Appends that eat into the zero-filled region do not refill it inline...
    while (segment.zeroFilledAheadBytes >= zeroAheadStepBytes) segment.append(batch);
    const before = segment.zeroFilledAheadBytes;
    // ...the next turns do.
    await nextTurn();
    expect(segment.zeroFilledAheadBytes).toBeGreaterThan(before);
    for (let turn = 0; turn < 8; turn++) await nextTurn();
    expect(segment.zeroFilledAheadBytes).toBeGreaterThanOrEqual(zeroAheadBytes);
    // An append that outruns the zeros writes at most one step past its end inline.
    const many = makeBatch('c', 300, 1_700_000_000_000, 1000); // ~300 KiB
    segment.append(many);
    expect(segment.zeroFilledAheadBytes).toBeLessThanOrEqual(zeroAheadStepBytes + 4 * KiB);
    // The data is intact: the zero-writes only ever covered bytes past it.
    const size = segment.sizeBytes;
    const view = Buffer.from(segment.view(0, size));
    segment.close();
    const file = readFileSync(join(dir.path, segmentFileName(0, '.log')));
    expect(file.subarray(0, size).equals(view)).toBe(true);
  });

  it('zero-fills ahead of small appends in one large step at a time, written whole in one turn', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const segment = LogSegment.create(dir.path, 0, 64 * MiB, 4 * KiB);
    segment.setZeroWriteBytes(16 * KiB);
    const batch = makeBatch('s', 1, 1_700_000_000_000, 100); // ~200 bytes
    expect(batch.length).toBeLessThanOrEqual(smallAppendBytesMax);
    while (segment.sizeBytes < zeroAheadBytes) {
      segment.append(batch);
      if (segment.sizeBytes % (16 * KiB) < batch.length) await nextTurn();
    }
    // The margin is reached in one turn, with one step of up to zeroAheadStepBytesLarge.
    const lowWater = zeroAheadBytes - zeroAheadStepBytes;
    while (segment.zeroFilledAheadBytes > lowWater) segment.append(batch);
    await nextTurn();
    const margin = lowWater + zeroAheadStepBytesLarge;
    expect(segment.zeroFilledAheadBytes).toBeGreaterThan(margin - 8 * KiB);
    expect(segment.zeroFilledAheadBytes).toBeLessThanOrEqual(margin);
    // No zero-write in the turns after appends while more than the low-water mark is ahead.
    const zeroedEnd = segment.sizeBytes + segment.zeroFilledAheadBytes;
    for (let i = 0; i < 100; i++) {
      segment.append(batch);
      await nextTurn();
    }
    expect(segment.sizeBytes + segment.zeroFilledAheadBytes).toBe(zeroedEnd);
    const size = segment.sizeBytes;
    const view = Buffer.from(segment.view(0, size));
    segment.close();
    const file = readFileSync(join(dir.path, segmentFileName(0, '.log')));
    expect(file.subarray(0, size).equals(view)).toBe(true);
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
