/**
 * The one place that calls @riaskov/mmap-io. Maps a file MAP_SHARED; the mapping is released when
 * the returned Buffer (and every view of it) is garbage-collected: there is no explicit unmap, so
 * callers must never shrink a file below what a live view covers.
 */
import { createRequire } from 'node:module';

interface MmapIo {
  map(size: number, protection: number, flags: number, fd: number, offset?: number, advise?: number): Buffer;
  advise(buffer: Buffer, offset: number, length: number, advise: number): void;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly MAP_SHARED: number;
  readonly MADV_NORMAL: number;
  readonly MADV_SEQUENTIAL: number;
  readonly MADV_WILLNEED: number;
}

const mmap = createRequire(import.meta.url)('@riaskov/mmap-io') as MmapIo;

/** Maps `[0, bytes)` of `fd`; read-write maps need the fd opened read-write. */
export function mapFile(fd: number, bytes: number, writable: boolean): Buffer {
  if (bytes === 0) return Buffer.alloc(0);
  const protection = writable ? mmap.PROT_READ | mmap.PROT_WRITE : mmap.PROT_READ;
  return mmap.map(
    bytes,
    protection,
    mmap.MAP_SHARED,
    fd,
    0,
    writable ? mmap.MADV_SEQUENTIAL : mmap.MADV_NORMAL,
  );
}
