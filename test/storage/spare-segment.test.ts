import { closeSync, existsSync, fstatSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeSpareFileSystem, SpareSegment, spareSegmentFileName } from '../../src/storage/spare-segment.js';
import { heldWriteFileSystem, systemError, temporaryDirectory, waitUntil } from './helpers.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function directory(): string {
  const dir = temporaryDirectory();
  cleanups.push(dir.remove);
  return dir.path;
}

const KiB = 1024;

/** Releases held writes one at a time until the spare leaves the filling state. */
async function releaseUntilFilled(spare: SpareSegment, releaseOne: () => void): Promise<void> {
  while (spare.state === 'filling') {
    releaseOne();
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function readAll(fd: number): Buffer {
  const bytes = Buffer.alloc(fstatSync(fd).size);
  let position = 0;
  while (position < bytes.length)
    position += readSync(fd, bytes, position, bytes.length - position, position);
  return bytes;
}

describe('SpareSegment', () => {
  it('creates, preallocates and zero-fills the file, then hands over its descriptor', async () => {
    const dir = directory();
    const held = heldWriteFileSystem();
    const spare = SpareSegment.prepare(
      dir,
      100 * KiB,
      { syncWhenFilled: false, zeroWriteBytes: 16 * KiB },
      held.fileSystem,
    );
    expect(spare.path).toBe(join(dir, spareSegmentFileName));
    expect(spare.state).toBe('filling');
    expect(spare.isReady).toBe(false);
    // take() now would be a programmer error: it aborts (test/assert.test.ts).
    // One write in flight at a time.
    expect(held.heldCount()).toBe(1);
    await releaseUntilFilled(spare, held.releaseOne);
    expect(spare.state).toBe('ready');
    // 100 KiB in writes of 16 KiB: six whole ones and 4 KiB.
    const expected = [0, 1, 2, 3, 4, 5].map((i) => ({ position: i * 16 * KiB, length: 16 * KiB }));
    expect(held.writes).toEqual([...expected, { position: 96 * KiB, length: 4 * KiB }]);
    expect(held.datasyncs()).toBe(0);
    const fd = spare.take();
    try {
      expect(spare.state).toBe('taken');
      const bytes = readAll(fd);
      expect(bytes.length).toBe(100 * KiB);
      expect(bytes.every((byte) => byte === 0)).toBe(true);
      // The file stays where it is: renaming it is the caller's job.
      expect(existsSync(spare.path)).toBe(true);
      await spare.close();
      expect(existsSync(spare.path)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('fdatasyncs the filled file when asked (durability always)', async () => {
    const held = heldWriteFileSystem();
    const spare = SpareSegment.prepare(
      directory(),
      64 * KiB,
      { syncWhenFilled: true, zeroWriteBytes: 64 * KiB },
      held.fileSystem,
    );
    await releaseUntilFilled(spare, held.releaseOne);
    await waitUntil(() => spare.state !== 'syncing');
    expect(spare.state).toBe('ready');
    expect(held.datasyncs()).toBe(1);
    await spare.close();
    expect(existsSync(spare.path)).toBe(false);
  });

  it('close stops between writes, waits for the write in flight and deletes the file', async () => {
    const held = heldWriteFileSystem();
    const spare = SpareSegment.prepare(
      directory(),
      256 * KiB,
      { syncWhenFilled: false, zeroWriteBytes: 16 * KiB },
      held.fileSystem,
    );
    held.releaseOne();
    await waitUntil(() => held.heldCount() === 1 && held.writes.length === 2);
    let closed = false;
    const closing = spare.close().then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(closed).toBe(false); // the second write is still in flight
    held.releaseOne();
    await closing;
    expect(spare.state).toBe('closed');
    expect(held.writes.length).toBe(2); // nothing written after close was called
    expect(existsSync(spare.path)).toBe(false);
    await spare.close(); // idempotent
  });

  it('records ENOSPC from the preallocation, deletes the file and is never ready', async () => {
    const dir = directory();
    const spare = SpareSegment.prepare(
      dir,
      64 * KiB,
      { syncWhenFilled: false, zeroWriteBytes: 64 * KiB },
      {
        ...nodeSpareFileSystem,
        allocate: () => {
          throw systemError('ENOSPC', 'fallocate');
        },
      },
    );
    expect(spare.state).toBe('failed');
    expect(spare.failure?.code).toBe('STORAGE_FULL');
    expect(existsSync(spare.path)).toBe(false);
    // take() of a failed spare would be a programmer error: it aborts (test/assert.test.ts).
    await spare.close();
  });

  it('records EIO from a zero-write and deletes the file', async () => {
    let writes = 0;
    const spare = SpareSegment.prepare(
      directory(),
      256 * KiB,
      { syncWhenFilled: false, zeroWriteBytes: 64 * KiB },
      {
        ...nodeSpareFileSystem,
        write: (fd, buffer, length, position, callback) => {
          writes++;
          if (writes === 3) setImmediate(() => callback(systemError('EIO', 'write'), 0));
          else nodeSpareFileSystem.write(fd, buffer, length, position, callback);
        },
      },
    );
    await waitUntil(() => spare.state !== 'filling');
    expect(spare.state).toBe('failed');
    expect(spare.failure?.code).toBe('STORAGE_IO');
    expect(writes).toBe(3);
    expect(existsSync(spare.path)).toBe(false);
  });

  it('never shares a file: a preparation beside an existing spare fails without deleting it', async () => {
    const dir = directory();
    const held = heldWriteFileSystem();
    const first = SpareSegment.prepare(
      dir,
      64 * KiB,
      { syncWhenFilled: false, zeroWriteBytes: 64 * KiB },
      held.fileSystem,
    );
    const second = SpareSegment.prepare(dir, 64 * KiB, { syncWhenFilled: false, zeroWriteBytes: 64 * KiB });
    expect(second.state).toBe('failed');
    expect(second.failure?.code).toBe('STORAGE_IO');
    expect(existsSync(first.path)).toBe(true);
    await releaseUntilFilled(first, held.releaseOne);
    expect(first.state).toBe('ready');
    await first.close();
    expect(existsSync(first.path)).toBe(false);
  });

  // Bad sizes are programmer errors: they abort the process (tested in a child, test/assert.test.ts).

  it('leaves a stale file alone when it did not create it', () => {
    const dir = directory();
    writeFileSync(join(dir, spareSegmentFileName), 'not ours');
    const spare = SpareSegment.prepare(dir, 64 * KiB, { syncWhenFilled: false, zeroWriteBytes: 64 * KiB });
    expect(spare.state).toBe('failed');
    expect(readFileSync(join(dir, spareSegmentFileName), 'utf8')).toBe('not ours');
  });
});
