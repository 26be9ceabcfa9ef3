/**
 * The native addon `spillway_native` (binding.gyp, native/*.cc): the ONLY module that loads it.
 *
 * It is loaded when this module is first imported; if that fails (not built, built for another Node
 * ABI, stale build) the import throws a `SpillwayError` with code 'NATIVE_UNAVAILABLE'. Code that must
 * run without the addon (the client) does not import this module: it uses src/format/crc32c.ts.
 *
 * Every function is synchronous. Bad arguments throw a TypeError (wrong kind) or a RangeError (out of
 * range) and never reach native code. Operating-system failures throw an Error shaped like Node's own
 * system errors (`NativeSystemError`): `code` is the errno name ('ENOSPC', 'EIO', 'EBADF',
 * 'EOPNOTSUPP', ...), `errno` is the negated errno value (as in Node), `syscall` names the call;
 * `storageErrorFrom` in src/errors.ts maps them to typed storage errors.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpillwayError } from './errors.js';

/** Which CRC32C code `crc32c` runs, chosen once at load time from what the CPU supports. */
export type Crc32cImplementation = 'sse4.2-3way' | 'armv8' | 'software';

/** Advice for `fadvise` (POSIX_FADV_*). */
export type FileAdvice = 'normal' | 'sequential' | 'random' | 'willneed' | 'dontneed' | 'noreuse';

/** One flag of `syncFileRange` (SYNC_FILE_RANGE_*). */
export type SyncFileRangeFlag = 'wait_before' | 'write' | 'wait_after';

/** The error thrown when a system call fails, like Node's own fs errors. */
export interface NativeSystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

/** The addon's exports, as native/addon.cc defines them. */
interface NativeBinding {
  crc32c(bytes: Uint8Array, previous?: number, start?: number, end?: number): number;
  crc32cSoftware(bytes: Uint8Array, previous?: number, start?: number, end?: number): number;
  crc32cImplementation(): string;
  fallocate(fd: number, offset: number, length: number): void;
  punchHole(fd: number, offset: number, length: number): void;
  fadvise(fd: number, offset: number, length: number, advice: FileAdvice): void;
  syncFileRange(
    fd: number,
    offset: number,
    length: number,
    flags: readonly SyncFileRangeFlag[] | number,
  ): void;
  populateWrite(buffer: Uint8Array, offset: number, length: number): boolean;
  populateWriteAsync(
    buffer: Uint8Array,
    offset: number,
    length: number,
    callback: (error: Error | null, supported: boolean) => void,
  ): void;
  tryLockFile(fd: number): boolean;
  pageSize(): number;
  SYNC_FILE_RANGE_WAIT_BEFORE: number;
  SYNC_FILE_RANGE_WRITE: number;
  SYNC_FILE_RANGE_WAIT_AFTER: number;
}

const expectedFunctions = [
  'crc32c',
  'crc32cSoftware',
  'crc32cImplementation',
  'fallocate',
  'punchHole',
  'fadvise',
  'syncFileRange',
  'populateWrite',
  'populateWriteAsync',
  'tryLockFile',
  'pageSize',
] as const;

const packageName = 'spillway';
const addonRelativePath = join('build', 'Release', 'spillway_native.node');
const rebuildAdvice = 'run `npm install` (or `npm run build:native`) in the spillway package to build it';

/** Walks up from this file to the directory whose package.json is named 'spillway' (src/ or dist/src/). */
function findPackageRoot(start: string): string | undefined {
  let directory = start;
  for (;;) {
    try {
      const manifest: unknown = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8'));
      if (typeof manifest === 'object' && manifest !== null && 'name' in manifest) {
        if (manifest.name === packageName) return directory;
      }
    } catch {
      // No package.json here, or an unreadable one: keep walking up.
    }
    const parent = dirname(directory);
    if (parent === directory) return undefined;
    directory = parent;
  }
}

function loadBinding(): { binding: NativeBinding; path: string } {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = findPackageRoot(here);
  if (root === undefined) {
    throw new SpillwayError(
      'NATIVE_UNAVAILABLE',
      `native addon unavailable: no package.json named '${packageName}' above ${here}; ${rebuildAdvice}`,
    );
  }
  const path = join(root, addonRelativePath);
  let loaded: unknown;
  try {
    loaded = createRequire(import.meta.url)(path);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new SpillwayError(
      'NATIVE_UNAVAILABLE',
      `native addon unavailable: cannot load ${path} (${detail}); ${rebuildAdvice}`,
      { cause: error },
    );
  }
  const missing = expectedFunctions.filter(
    (name) => typeof (loaded as Record<string, unknown> | null)?.[name] !== 'function',
  );
  if (missing.length > 0) {
    throw new SpillwayError(
      'NATIVE_UNAVAILABLE',
      `native addon at ${path} is stale (missing ${missing.join(', ')}); ${rebuildAdvice}`,
    );
  }
  return { binding: loaded as NativeBinding, path };
}

const { binding, path: loadedPath } = loadBinding();

/** Absolute path of the loaded addon file (for diagnostics). */
export const nativeAddonPath: string = loadedPath;

/**
 * CRC32C (Castagnoli) of `bytes[start, end)`, continuing the running checksum `previous` (0 to
 * start): crc32c(a ++ b) === crc32c(b, crc32c(a)). Same signature and results as
 * src/format/crc32c.ts. Returns an unsigned 32-bit integer. `previous` may also be a signed 32-bit
 * integer; 0 <= start <= end <= bytes.length or a RangeError is thrown.
 */
export const crc32c: (bytes: Uint8Array, previous?: number, start?: number, end?: number) => number =
  binding.crc32c;

/** `crc32c` forced onto the portable slicing-by-8 code (for tests and benchmarks). */
export const crc32cSoftware: (bytes: Uint8Array, previous?: number, start?: number, end?: number) => number =
  binding.crc32cSoftware;

/** The implementation `crc32c` uses on this CPU. */
export function crc32cImplementation(): Crc32cImplementation {
  return binding.crc32cImplementation() as Crc32cImplementation;
}

/**
 * Allocates disk blocks for [offset, offset + length) (fallocate mode 0; the file grows if needed, data
 * already there is kept), so a full disk fails here with ENOSPC/EDQUOT rather than as SIGBUS on a
 * write through a memory map. Falls back to posix_fallocate where fallocate gives EOPNOTSUPP (then
 * `syscall` is 'posix_fallocate'). Length 0 does nothing.
 */
export const fallocate: (fd: number, offset: number, length: number) => void = binding.fallocate;

/**
 * Deallocates [offset, offset + length) keeping the file size (FALLOC_FL_PUNCH_HOLE |
 * FALLOC_FL_KEEP_SIZE); the range then reads as zeros. Partial blocks at the ends are zeroed in place.
 * Throws EOPNOTSUPP on file systems without hole punching (write zeros instead). Length 0 does nothing.
 */
export const punchHole: (fd: number, offset: number, length: number) => void = binding.punchHole;

/** posix_fadvise over [offset, offset + length); length 0 means to the end of the file. */
export const fadvise: (fd: number, offset: number, length: number, advice: FileAdvice) => void =
  binding.fadvise;

/** Bitmask values for `syncFileRange` (Linux's SYNC_FILE_RANGE_*). */
export const SYNC_FILE_RANGE_WAIT_BEFORE: number = binding.SYNC_FILE_RANGE_WAIT_BEFORE;
export const SYNC_FILE_RANGE_WRITE: number = binding.SYNC_FILE_RANGE_WRITE;
export const SYNC_FILE_RANGE_WAIT_AFTER: number = binding.SYNC_FILE_RANGE_WAIT_AFTER;

/**
 * sync_file_range over [offset, offset + length) (length 0: to the end of the file) with flags given
 * as names (['write'], ['wait_before', 'write', 'wait_after']) or a bitmask of the constants above.
 * Note that it does not flush metadata or the disk cache: it is no substitute for fdatasync.
 */
export const syncFileRange: (
  fd: number,
  offset: number,
  length: number,
  flags: readonly SyncFileRangeFlag[] | number,
) => void = binding.syncFileRange;

/**
 * Prefaults the pages holding `buffer[offset, offset + length)` writable (madvise
 * MADV_POPULATE_WRITE, Linux 5.14+), e.g. the next region of a memory-mapped segment before copying
 * into it. Returns false when the kernel or the mapping does not support it (EINVAL), true when done.
 * Throws EFAULT if a page lies beyond the end of a mapped file, ENOMEM if memory runs out. The range is
 * widened to whole pages, which is harmless: population does not change the bytes.
 */
export const populateWrite: (buffer: Uint8Array, offset: number, length: number) => boolean =
  binding.populateWrite;

/**
 * `populateWrite` in libuv's thread pool: the kernel allocates and zeroes the pages off the event
 * loop. The callback gets `supported: false` when MADV_POPULATE_WRITE is unavailable (EINVAL); other
 * failures come as the error. The buffer stays referenced until the callback.
 */
export const populateWriteAsync: (
  buffer: Uint8Array,
  offset: number,
  length: number,
  callback: (error: Error | null, supported: boolean) => void,
) => void = binding.populateWriteAsync;

/**
 * Takes the exclusive advisory lock (flock) of an open file without waiting: true when this process
 * now holds it, false when another holds it. It is released when the descriptor is closed or the
 * process dies (so a crashed broker never leaves a stale lock).
 */
export const tryLockFile: (fd: number) => boolean = binding.tryLockFile;

/** The size of a memory page in bytes. */
export const pageSize: () => number = binding.pageSize;
