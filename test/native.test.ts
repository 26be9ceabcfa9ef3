import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32c as crc32cTypeScript } from '../src/format/crc32c.js';
import {
  crc32c,
  crc32cImplementation,
  crc32cSoftware,
  fadvise,
  fallocate,
  pageSize,
  populateWrite,
  punchHole,
  SYNC_FILE_RANGE_WAIT_AFTER,
  SYNC_FILE_RANGE_WAIT_BEFORE,
  SYNC_FILE_RANGE_WRITE,
  syncFileRange,
} from '../src/native.js';

interface MmapIo {
  map(size: number, protection: number, flags: number, fd: number, offset?: number): Buffer;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly MAP_SHARED: number;
}

const mmap = createRequire(import.meta.url)('@riaskov/mmap-io') as MmapIo;

/** MADV_POPULATE_WRITE exists from Linux 5.14. */
function kernelHasPopulateWrite(): boolean {
  const [major = 0, minor = 0] = release().split('.').map(Number);
  return process.platform === 'linux' && (major > 5 || (major === 5 && minor >= 14));
}

type Crc32cFunction = (bytes: Uint8Array, previous?: number, start?: number, end?: number) => number;

const implementations: [string, Crc32cFunction][] = [
  ['native default', crc32c],
  ['native software', crc32cSoftware],
  ['typescript', crc32cTypeScript],
];

/** xorshift32: reproducible random numbers, so a failure can be replayed. */
function randomSource(seed: number): (limit: number) => number {
  let state = seed >>> 0 || 1;
  return (limit) => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % limit;
  };
}

function randomBytes(random: (limit: number) => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = random(256);
  return bytes;
}

/** Calls `fn` and returns what it threw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

describe('crc32c', () => {
  it('names the implementation chosen for this CPU', () => {
    expect(['sse4.2-3way', 'armv8', 'software']).toContain(crc32cImplementation());
    if (process.arch === 'x64') expect(crc32cImplementation()).toBe('sse4.2-3way'); // this machine has SSE4.2
  });

  describe.each(implementations)('%s', (_name, fn) => {
    it('gives the check value of "123456789"', () => {
      expect(fn(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    });

    it('gives the RFC 3720 B.4 test vectors', () => {
      expect(fn(new Uint8Array(32))).toBe(0x8a9136aa);
      expect(fn(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
      expect(fn(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
      expect(fn(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
      // iSCSI SCSI Read (10) command PDU.
      const readCommand = Uint8Array.from([
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      ]);
      expect(readCommand.length).toBe(48);
      expect(fn(readCommand)).toBe(0xd9963a56);
    });

    it('gives 0 for no bytes and returns `previous` unchanged for an empty range', () => {
      expect(fn(new Uint8Array(0))).toBe(0);
      expect(fn(new Uint8Array(10), 0x12345678, 5, 5)).toBe(0x12345678);
    });
  });

  it('agrees across implementations on random inputs, offsets and alignments', () => {
    const random = randomSource(0x5eed);
    const pool = randomBytes(random, 200 * 1024);
    for (let round = 0; round < 2000; round++) {
      // Mostly short inputs, some up to 100 KiB.
      const length = round % 10 === 0 ? random(100 * 1024 + 1) : random(2048);
      const viewOffset = random(pool.length - length - 64);
      const view = pool.subarray(viewOffset, viewOffset + length + 64); // unaligned sub-array
      const start = random(33);
      const end = start + random(length - start + 32 + 1);
      const previous = random(2) === 0 ? 0 : random(0x100000000);
      const expected = crc32cTypeScript(view, previous, start, end);
      expect(crc32c(view, previous, start, end)).toBe(expected);
      expect(crc32cSoftware(view, previous, start, end)).toBe(expected);
      // Whole-view calls, with defaults.
      const whole = crc32cTypeScript(view);
      expect(crc32c(view)).toBe(whole);
      expect(crc32cSoftware(view)).toBe(whole);
    }
  });

  it('continues a running checksum across chained calls', () => {
    const random = randomSource(42);
    const bytes = randomBytes(random, 300 * 1024);
    const whole = crc32cTypeScript(bytes);
    for (let round = 0; round < 50; round++) {
      for (const [, fn] of implementations) {
        let running = 0;
        let position = 0;
        while (position < bytes.length) {
          const next = Math.min(bytes.length, position + random(40 * 1024));
          running =
            round % 2 === 0
              ? fn(bytes, running, position, next)
              : fn(bytes.subarray(position, next), running);
          position = next;
        }
        expect(running).toBe(whole);
      }
    }
  });

  it('agrees on lengths around the 3-lane block boundaries', () => {
    const random = randomSource(7);
    const pool = randomBytes(random, 3 * 8192 * 5 + 4096);
    const lengths = new Set<number>();
    for (const block of [8192, 256]) {
      for (let k = 1; k <= 4; k++) {
        for (const delta of [-9, -8, -7, -1, 0, 1, 7, 8, 9]) lengths.add(3 * block * k + delta);
      }
    }
    for (const extra of [0, 1, 255, 256, 257, 767, 768, 769]) lengths.add(3 * 8192 + extra);
    for (const length of lengths) {
      for (const alignment of [0, 1, 3, 7, 8]) {
        const previous = random(0x100000000);
        const expected = crc32cTypeScript(pool, previous, alignment, alignment + length);
        expect(
          crc32c(pool, previous, alignment, alignment + length),
          `length ${length} at +${alignment}`,
        ).toBe(expected);
        expect(crc32cSoftware(pool, previous, alignment, alignment + length)).toBe(expected);
      }
    }
  });

  it('accepts a signed 32-bit running checksum', () => {
    const bytes = new TextEncoder().encode('hello');
    const previous = crc32c(new TextEncoder().encode('spillway'));
    expect(crc32c(bytes, previous | 0)).toBe(crc32c(bytes, previous));
  });

  it('accepts Buffers', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  describe.each([
    ['native default', crc32c],
    ['native software', crc32cSoftware],
  ] as [string, Crc32cFunction][])('%s rejects bad arguments without crashing', (_name, fn) => {
    const bytes = new Uint8Array(16);
    type Loose = (...args: unknown[]) => number;
    const loose = fn as unknown as Loose;

    it('throws TypeError for a non-buffer', () => {
      for (const value of [
        undefined,
        null,
        'abc',
        123,
        {},
        [1, 2, 3],
        new ArrayBuffer(8),
        new Uint16Array(4),
      ]) {
        expect(() => loose(value)).toThrow(TypeError);
      }
      expect(() => loose()).toThrow(TypeError);
    });

    it('throws TypeError for non-number previous/start/end', () => {
      expect(() => loose(bytes, '1')).toThrow(TypeError);
      expect(() => loose(bytes, 0, '1')).toThrow(TypeError);
      expect(() => loose(bytes, 0, 0, 1n)).toThrow(TypeError);
    });

    it('throws RangeError for bad previous/start/end', () => {
      expect(() => fn(bytes, 1.5)).toThrow(RangeError);
      expect(() => fn(bytes, 2 ** 32)).toThrow(RangeError);
      expect(() => fn(bytes, Number.NaN)).toThrow(RangeError);
      expect(() => fn(bytes, 0, -1)).toThrow(RangeError);
      expect(() => fn(bytes, 0, 0, 17)).toThrow(RangeError);
      expect(() => fn(bytes, 0, 10, 5)).toThrow(RangeError);
      expect(() => fn(bytes, 0, 0.5, 5)).toThrow(RangeError);
      expect(() => fn(bytes, 0, 0, Number.POSITIVE_INFINITY)).toThrow(RangeError);
    });
  });
});

describe('file calls', () => {
  let directory: string;

  beforeAll(() => {
    directory = mkdtempSync(join(tmpdir(), 'spillway-native-'));
  });

  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  function withFile<T>(name: string, body: (fd: number) => T): T {
    const fd = openSync(join(directory, name), 'w+');
    try {
      return body(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** An fd that is certainly not open. */
  function closedFd(): number {
    const fd = openSync(join(directory, 'closed'), 'w');
    closeSync(fd);
    return fd;
  }

  function expectSystemError(error: unknown, code: string, syscall: string): void {
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ code, syscall });
    const errnoValue = (error as { errno: unknown }).errno;
    expect(typeof errnoValue === 'number' && errnoValue < 0).toBe(true);
    expect((error as Error).message).toMatch(new RegExp(`^${code}: .+, ${syscall}$`));
  }

  it('pageSize is a power of two of at least 4 KiB', () => {
    const page = pageSize();
    expect(page).toBeGreaterThanOrEqual(4096);
    expect(page & (page - 1)).toBe(0);
  });

  it('fallocate grows a file and allocates its blocks', () => {
    withFile('allocate', (fd) => {
      fallocate(fd, 0, 1024 * 1024);
      const stat = fstatSync(fd);
      expect(stat.size).toBe(1024 * 1024);
      expect(stat.blocks * 512).toBeGreaterThanOrEqual(1024 * 1024);
      fallocate(fd, 1024 * 1024, 4096);
      expect(fstatSync(fd).size).toBe(1024 * 1024 + 4096);
      fallocate(fd, 0, 0); // length 0 does nothing
      expect(fstatSync(fd).size).toBe(1024 * 1024 + 4096);
    });
  });

  it('fallocate keeps existing data', () => {
    withFile('allocate-keeps', (fd) => {
      writeSync(fd, Buffer.from('spillway'), 0, 8, 0);
      fallocate(fd, 0, 65536);
      const read = Buffer.alloc(8);
      readSync(fd, read, 0, 8, 0);
      expect(read.toString()).toBe('spillway');
    });
  });

  it('reports errno codes like Node: EBADF for a closed fd', () => {
    const fd = closedFd();
    expectSystemError(
      thrown(() => fallocate(fd, 0, 4096)),
      'EBADF',
      'fallocate',
    );
    expectSystemError(
      thrown(() => punchHole(fd, 0, 4096)),
      'EBADF',
      'fallocate',
    );
    expectSystemError(
      thrown(() => fadvise(fd, 0, 0, 'sequential')),
      'EBADF',
      'posix_fadvise',
    );
    expectSystemError(
      thrown(() => syncFileRange(fd, 0, 0, ['write'])),
      'EBADF',
      'sync_file_range',
    );
  });

  it('punchHole zeroes a range and keeps the size', () => {
    withFile('punch', (fd) => {
      const size = 64 * 1024;
      writeSync(fd, Buffer.alloc(size, 0xab), 0, size, 0);
      punchHole(fd, 8192, 20000); // whole blocks deallocated, partial ones zeroed
      expect(fstatSync(fd).size).toBe(size);
      const read = Buffer.alloc(size);
      readSync(fd, read, 0, size, 0);
      expect(read.subarray(0, 8192).every((byte) => byte === 0xab)).toBe(true);
      expect(read.subarray(8192, 28192).every((byte) => byte === 0)).toBe(true);
      expect(read.subarray(28192).every((byte) => byte === 0xab)).toBe(true);
    });
  });

  it('fadvise accepts every advice name and rejects others', () => {
    withFile('advise', (fd) => {
      writeSync(fd, Buffer.alloc(8192), 0, 8192, 0);
      for (const advice of ['normal', 'sequential', 'random', 'willneed', 'dontneed', 'noreuse'] as const) {
        fadvise(fd, 0, 8192, advice);
      }
      const loose = fadvise as unknown as (...args: unknown[]) => void;
      expect(() => loose(fd, 0, 0, 'fast')).toThrow(RangeError);
      expect(() => loose(fd, 0, 0, 'SEQUENTIAL')).toThrow(RangeError);
      expect(() => loose(fd, 0, 0, 2)).toThrow(TypeError);
      expect(() => loose(fd, 0, 0)).toThrow(TypeError);
    });
  });

  it('syncFileRange accepts names and bitmasks and rejects others', () => {
    withFile('sync', (fd) => {
      writeSync(fd, Buffer.alloc(8192, 1), 0, 8192, 0);
      syncFileRange(fd, 0, 8192, ['write']);
      syncFileRange(fd, 0, 0, ['wait_before', 'write', 'wait_after']);
      syncFileRange(fd, 0, 0, []);
      syncFileRange(
        fd,
        0,
        8192,
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER,
      );
      expect([SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER]).toEqual([
        1, 2, 4,
      ]);
      const loose = syncFileRange as unknown as (...args: unknown[]) => void;
      expect(() => loose(fd, 0, 0, ['flush'])).toThrow(RangeError);
      expect(() => loose(fd, 0, 0, [2])).toThrow(RangeError);
      expect(() => loose(fd, 0, 0, 8)).toThrow(RangeError);
      expect(() => loose(fd, 0, 0, 'write')).toThrow(TypeError);
    });
  });

  it('rejects bad fds, offsets and lengths with TypeError/RangeError', () => {
    const loose = fallocate as unknown as (...args: unknown[]) => void;
    expect(() => loose()).toThrow(TypeError);
    expect(() => loose('3', 0, 1)).toThrow(TypeError);
    expect(() => loose(-1, 0, 1)).toThrow(RangeError);
    expect(() => loose(1.5, 0, 1)).toThrow(RangeError);
    expect(() => loose(3, -1, 1)).toThrow(RangeError);
    expect(() => loose(3, 0, -1)).toThrow(RangeError);
    expect(() => loose(3, 0, Number.NaN)).toThrow(RangeError);
    expect(() => loose(3, 2 ** 53, 1)).toThrow(RangeError);
    expect(() => loose(3, 2 ** 52, 2 ** 52)).toThrow(RangeError);
    const loosePunch = punchHole as unknown as (...args: unknown[]) => void;
    expect(() => loosePunch(3, 0)).toThrow(TypeError);
  });

  it('populateWrite prefaults a range of a buffer', () => {
    const page = pageSize();
    const buffer = Buffer.alloc(16 * page);
    const supported = populateWrite(buffer, page + 1, 3 * page);
    expect(typeof supported).toBe('boolean');
    expect(populateWrite(buffer, 0, 0)).toBe(true);
    expect(buffer.every((byte) => byte === 0)).toBe(true); // population does not change bytes
    const loose = populateWrite as unknown as (...args: unknown[]) => boolean;
    expect(() => loose(buffer, 0, buffer.length + 1)).toThrow(RangeError);
    expect(() => loose(buffer, -1, 1)).toThrow(RangeError);
    expect(() => loose('buffer', 0, 1)).toThrow(TypeError);
  });

  it.runIf(kernelHasPopulateWrite())('populateWrite prefaults a mapped file, and fails past its end', () => {
    withFile('mapped', (fd) => {
      const page = pageSize();
      fallocate(fd, 0, 64 * page);
      const map = mmap.map(128 * page, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0);
      expect(populateWrite(map, 0, 64 * page)).toBe(true);
      expect(populateWrite(map, 10 * page + 100, 5)).toBe(true); // widened to the page
      map[0] = 7; // still writable, no fault
      // Pages past the end of the file would raise SIGBUS on access: EFAULT instead.
      expectSystemError(
        thrown(() => populateWrite(map, 64 * page, page)),
        'EFAULT',
        'madvise',
      );
      const readOnly = mmap.map(64 * page, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0);
      expect(populateWrite(readOnly, 0, page)).toBe(false); // EINVAL: not writable
      expect(populateWrite(Buffer.alloc(4 * page), 0, 4 * page)).toBe(true);
    });
  });
});
