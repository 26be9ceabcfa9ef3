import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogSegment, segmentFileName } from '../../src/storage/log-segment.js';
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
  it('zero-fills ahead in the next turn of the event loop, within what is allocated', async () => {
    const dir = temporaryDirectory();
    cleanups.push(dir.remove);
    const segment = LogSegment.create(dir.path, 0, 64 * MiB, 4 * KiB);
    segment.setZeroWriteBytes(16 * KiB);
    const batch = makeBatch('a', 50, 1_700_000_000_000, 1000); // ~50 KiB
    // Past the 4 MiB growth step, 8 MiB are allocated: room for more than a zero-fill's reach.
    while (segment.sizeBytes < 4.2 * MiB) segment.append(batch);
    expect(segment.preallocatedBytes).toBeGreaterThanOrEqual(8 * MiB);
    await nextTurn();
    expect(segment.zeroFilledAheadBytes).toBeGreaterThanOrEqual(512 * KiB);
    // Appends that eat into the zero-filled region do not refill it inline...
    while (segment.zeroFilledAheadBytes >= 512 * KiB) segment.append(batch);
    const before = segment.zeroFilledAheadBytes;
    // ...the next turn does.
    await nextTurn();
    expect(segment.zeroFilledAheadBytes).toBeGreaterThan(before);
    expect(segment.zeroFilledAheadBytes).toBeGreaterThanOrEqual(512 * KiB);
    // The data is intact: the zero-writes only ever covered bytes past it.
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
