/**
 * The broker-wide disk reserve: while the free space of the data directory's file system is below
 * `reserveBytes`, writes are refused early and cleanly with STORAGE_FULL (produce, topic creation,
 * adding partitions), before any segment has to grow into the last bytes of the disk. Reads,
 * deletions and everything that frees space keep working, and so does opening the broker.
 *
 * Free space is what an unprivileged process may use (statfs `bavail`). It is read with one statfs
 * call at most every `diskCheckIntervalMs`, and sooner when `recheckBytes` were admitted since the
 * last reading (so a burst cannot run far past the reserve between two readings); the hot path
 * only compares numbers. The default reserve is `diskReserveFractionDefault` of the file system,
 * at most `diskReserveBytesDefaultMax`.
 *
 * Concurrency: one event loop; `admit` is called for every produce.
 */
import { statfsSync } from 'node:fs';
import { StorageFullError, storageErrorFrom } from '../errors.js';
import { diskCheckIntervalMs, diskReserveBytesDefaultMax, diskReserveFractionDefault } from '../limits.js';

/** What a statfs says of a file system, in bytes. */
export interface DiskSpace {
  freeBytes: number;
  totalBytes: number;
}

/** Reads the free and total bytes of the file system holding `path`. */
export type DiskSpaceReader = (path: string) => DiskSpace;

export const statfsDiskSpace: DiskSpaceReader = (path) => {
  const stats = statfsSync(path);
  return { freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize };
};

export interface DiskReserveStats {
  reserveBytes: number;
  freeBytes: number;
  totalBytes: number;
  /** Writes refused because the free space was below the reserve. */
  refusals: number;
}

export class DiskReserve {
  readonly directory: string;
  readonly reserveBytes: number;
  private readonly read: DiskSpaceReader;
  private readonly recheckBytes: number;
  private space: DiskSpace;
  private checkedAtMs: number;
  private bytesSinceCheck = 0;
  private refusals = 0;

  /** `reserveBytes` undefined: the default for this file system; 0 turns the reserve off. */
  constructor(directory: string, reserveBytes: number | undefined, read: DiskSpaceReader = statfsDiskSpace) {
    this.directory = directory;
    this.read = read;
    this.space = this.readSpace();
    this.checkedAtMs = performance.now();
    this.reserveBytes =
      reserveBytes ??
      Math.min(diskReserveBytesDefaultMax, Math.floor(this.space.totalBytes * diskReserveFractionDefault));
    this.recheckBytes = Math.max(1024 * 1024, Math.min(64 * 1024 * 1024, Math.floor(this.reserveBytes / 4)));
  }

  /** True when the free space (as last read) is below the reserve. */
  get belowReserve(): boolean {
    return this.reserveBytes > 0 && this.space.freeBytes < this.reserveBytes;
  }

  get stats(): DiskReserveStats {
    return {
      reserveBytes: this.reserveBytes,
      freeBytes: this.space.freeBytes,
      totalBytes: this.space.totalBytes,
      refusals: this.refusals,
    };
  }

  /**
   * Admits a write of `bytes`, or throws StorageFullError when the free space is below the reserve.
   * `what` names the write in the error message.
   */
  admit(bytes: number, what: string): void {
    if (this.reserveBytes === 0) return;
    this.bytesSinceCheck += bytes;
    const now = performance.now();
    if (this.bytesSinceCheck >= this.recheckBytes || now - this.checkedAtMs >= diskCheckIntervalMs) {
      this.refresh(now);
    }
    if (this.space.freeBytes >= this.reserveBytes) return;
    this.refusals++;
    throw new StorageFullError(
      `${what} refused: ${this.space.freeBytes} bytes free on the file system of ${this.directory}, below the disk reserve of ${this.reserveBytes} bytes (free space, e.g. delete a topic or lower retention)`,
    );
  }

  /** Reads the free space now. */
  refresh(now = performance.now()): void {
    this.space = this.readSpace();
    this.checkedAtMs = now;
    this.bytesSinceCheck = 0;
  }

  private readSpace(): DiskSpace {
    try {
      return this.read(this.directory);
    } catch (error) {
      throw storageErrorFrom(`reading the free space of ${this.directory}`, error);
    }
  }
}
