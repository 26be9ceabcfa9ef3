/**
 * Writing zeros over the preallocated part of a segment file before any data is copied into it.
 *
 * Why: a segment is preallocated with fallocate (so a full disk fails there and not as SIGBUS in a
 * copy into the map), which leaves unwritten extents. The first write through the map to each page
 * of such an extent faults, and the kernel allocates and zeroes a page and does the ext4 work for an
 * unwritten block inside the fault, on the event loop: ~1.2 GB/s measured here. When the pages were
 * first written with zeros through `write()`, they are in the page cache and the copy runs at
 * ~9 GB/s; with `always`, an fdatasync then also has no extent to convert: 64 KiB copy + fdatasync
 * took ~0.79 ms into a fallocated file and ~0.18 ms into a zero-filled, synced one (one appender,
 * measured on this machine).
 *
 * The size of the zero `write()` calls matters because the page cache keeps the folio size the write
 * created (ext4 with large folios): a copy into large folios is faster (9 GB/s with 256 KiB or more
 * per write, 5.5–6 GB/s with 16 KiB), but a write through the map marks its whole folio dirty, so each
 * fdatasync writes whole folios back. With 4 MiB writes, 1 KiB copy + fdatasync took 1.3 ms instead of
 * 0.1 ms; with 16 KiB writes 0.11 ms, as into a fallocated file, and a 64 KiB one 0.17–0.19 ms. Hence
 * large writes for `none` and `interval` (whose syncs cover many pages anyway), 16 KiB for `always`.
 */
import { writeSync } from 'node:fs';
import { assert } from '../assert.js';
import { StorageIoError } from '../errors.js';
import type { Durability } from './sync-scheduler.js';

/** Zero-write size for `none` and `interval`: large folios, fastest copies. Also the buffer size. */
export const zeroWriteBytesLarge = 4 * 1024 * 1024;
/** Zero-write size for `always`: small folios, so an fdatasync writes back little beyond the data. */
export const zeroWriteBytesSmall = 16 * 1024;

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
