/**
 * Writing zeros over the preallocated part of a segment file before any data is written into it.
 *
 * Why, with durability `always` only: a segment is preallocated with fallocate (so a full disk fails
 * there, before a batch is written), which leaves unwritten extents. An fdatasync after data landed
 * in an unwritten extent has to convert it on top of writing the data: it also writes the changed
 * extent tree and inode (through a journal commit on ext4 with a journal; as synchronous writes of
 * those blocks on ext4 without one, as on this VM). 64 KiB write + fdatasync took ~0.79 ms into a
 * fallocated file and ~0.18 ms into a zero-filled, synced one (one appender, measured on this
 * machine); 16 KiB batches, one appender awaiting each, ran at 5 MB/s without zero-fill and 22 MB/s
 * with it (2026-12-06, PartitionLog with pwrite appends). Zeros written ahead are synced once, and
 * later fdatasyncs overwrite written extents: by a background fdatasync of their own ahead of appends
 * that keep pace, by the data's fdatasync behind appends that outrun them (log-segment.ts,
 * `durableZeroAheadBytes`).
 *
 * With `none` and `interval` no zeros are written ahead: appends are `pwrite`s (log-segment.ts),
 * which need no page in the cache beforehand, and no acknowledgement waits for their syncs. (Until
 * 2026-12 appends copied into a writable map, where the first touch of an unwritten page faulted on
 * the event loop at ~1.2 GB/s; the zeros were written ahead for every mode then.)
 *
 * The size of the zero `write()` calls matters because the page cache keeps the folio size the write
 * created (ext4 with large folios), and each fdatasync writes whole dirty folios back: with 4 MiB
 * zero-writes a 1 KiB append + fdatasync took 1.3 ms instead of 0.1 ms; with 16 KiB writes 0.11 ms,
 * as into a fallocated file. Hence 16 KiB for `always`; a spare segment of a `none` or `interval`
 * log (only when asked for, `spareSegment: true`) is zero-filled in 4 MiB writes.
 */
import { writeSync } from 'node:fs';
import { assert } from '../assert.js';
import { StorageIoError } from '../errors.js';
import type { Durability } from './sync-scheduler.js';

/** Zero-write size for `none` and `interval`: large folios, fastest copies. Also the buffer size. */
export const zeroWriteBytesLarge = 4 * 1024 * 1024;
/** Zero-write size for `always`: small folios, so an fdatasync writes back little beyond the data. */
export const zeroWriteBytesSmall = 16 * 1024;

/**
 * Inline zero-fill of segments that were not prepared as spares (LogSegment.setZeroWriteBytes):
 * `always` only, in small writes; 0 (off) for `none` and `interval`, whose appends are `pwrite`s
 * that need no zeros ahead and whose syncs are not waited for by an acknowledgement.
 */
export function inlineZeroWriteBytesFor(durability: Durability): number {
  return durability === 'always' ? zeroWriteBytesSmall : 0;
}

export function zeroWriteBytesFor(durability: Durability): number {
  return durability === 'always' ? zeroWriteBytesSmall : zeroWriteBytesLarge;
}

let zeroChunk: Buffer | null = null;

/** The shared zero buffer (`zeroWriteBytesLarge` bytes): only ever read by writes, never handed out. */
export function zeroBuffer(): Buffer {
  zeroChunk ??= Buffer.alloc(zeroWriteBytesLarge);
  return zeroChunk;
}

/**
 * Writes zeros over `[start, end)` of `fd` synchronously, in writes of `writeBytes` (at most
 * `zeroWriteBytesLarge`). The caller guarantees that the range holds no data.
 */
export function writeZerosSync(fd: number, start: number, end: number, writeBytes: number): void {
  assert(writeBytes > 0 && writeBytes <= zeroWriteBytesLarge, () => `bad zero-write size ${writeBytes}`);
  const zeros = zeroBuffer();
  let position = start;
  while (position < end) {
    const written = writeSync(fd, zeros, 0, Math.min(writeBytes, end - position), position);
    // The file system refused to make progress: an operating error, not a bug of ours.
    if (written <= 0) throw new StorageIoError(`zero-write at ${position} wrote nothing`);
    position += written;
  }
}
