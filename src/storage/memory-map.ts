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
  readonly MADV_DONTNEED: number;
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

/**
 * Drops this process's page-table entries for `map` (madvise MADV_DONTNEED), keeping the map valid.
 * For a MAP_SHARED file mapping the data stays in the page cache (dirty pages stay dirty and are
 * written back as usual) and a later access faults the page in again from the file. Used when a
 * segment is sealed: its old writable map is no longer written, and while its pages are mapped
 * writable, writing them back (fdatasync) has to write-protect each one with a TLB shootdown
 * (an inter-processor interrupt per page, costly in a VM); unmapped pages need none.
 */
export function dropPageTableEntries(map: Buffer): void {
  if (map.length === 0) return;
  mmap.advise(map, 0, map.length, mmap.MADV_DONTNEED);
}
