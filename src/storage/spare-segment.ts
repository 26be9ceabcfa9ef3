/**
 * A spare segment file prepared in the background, so that a roll finds the next segment already
 * written with zeros (the design RocketMQ uses for its mapped files). Why zeros: zero-fill.ts.
 *
 * File: `spare-segment.tmp` in the log directory. The preparation creates it (O_EXCL: each
 * preparation has its own file), preallocates `capacityBytes` synchronously (so a full disk shows
 * up as ENOSPC here, not in a later append), writes zeros over the whole file
 * with asynchronous `write()` calls in libuv's thread pool (one in flight at a time, from the shared
 * zero buffer, `zeroWriteBytes` each), and, with `syncWhenFilled` (durability `interval` or
 * `always`), fdatasyncs it in the background, so the first sync after the roll does not flush
 * hundreds of MiB of zero pages and later syncs overwrite written extents (no extent conversion to
 * write with each one). The log then takes it over with `take()` and `LogSegment.adopt` (rename to
 * `<base offset>.log`, map).
 *
 * Invariant: no zero-write can ever land in a file that holds data. Zeros are written only through
 * this object's descriptor, to the file this object created, only in the `filling` state; `take()`
 * is refused unless the state is `ready`, which is entered only from the callback of the last write
 * (or of the fdatasync after it), so no write is in flight then; after `take()` this object never
 * touches the file again. Until `take()` the file has its temporary name, which recovery never reads
 * (the loader deletes `*.tmp` files when it opens a log).
 *
 * A failure (ENOSPC, EIO) is recorded in `failure`, the file is closed and deleted, and the spare is
 * never ready: the log falls back to creating its next segment the slow way, which reports the
 * error to the appender if it persists. `close()` stops between writes, waits for the write or
 * fdatasync in flight, and deletes the file.
 *
 * Concurrency: every call and callback runs on the event loop; only the writes and the fdatasync
 * run in the thread pool.
 */
import { closeSync, fdatasync, openSync, unlinkSync, write } from 'node:fs';
import { join } from 'node:path';
import { assert } from '../assert.js';
import { type SpillwayError, StorageIoError, storageErrorFrom } from '../errors.js';
import { fallocate } from '../native.js';
import { fileModes } from './file-modes.js';
import { zeroBuffer, zeroWriteBytesLarge } from './zero-fill.js';

export const spareSegmentFileName = 'spare-segment.tmp';

/**
 * The file-system calls a preparation makes. The default is Node's fs and the native fallocate;
 * tests replace some of them (TEST-ONLY: to inject ENOSPC or EIO, or to hold a write in flight).
 */
export interface SpareFileSystem {
  /** Creates the file, read-write; fails when it exists. */
  open(path: string): number;
  allocate(fd: number, offset: number, length: number): void;
  write(
    fd: number,
    buffer: Buffer,
    length: number,
    position: number,
    callback: (error: NodeJS.ErrnoException | null, bytesWritten: number) => void,
  ): void;
  datasync(fd: number, callback: (error: NodeJS.ErrnoException | null) => void): void;
  close(fd: number): void;
  unlink(path: string): void;
}

export const nodeSpareFileSystem: SpareFileSystem = {
  // O_EXCL: every preparation creates its own file, so two spares can never share one.
  open: (path) => openSync(path, 'wx+', fileModes.file),
  allocate: (fd, offset, length) => fallocate(fd, offset, length),
  write: (fd, buffer, length, position, callback) => write(fd, buffer, 0, length, position, callback),
  datasync: (fd, callback) => fdatasync(fd, callback),
  close: (fd) => closeSync(fd),
  unlink: (path) => unlinkSync(path),
};

export interface SpareOptions {
  /** fdatasync the file once filled (durability `interval` and `always`). */
  syncWhenFilled: boolean;
  /** Bytes per zero-write (zero-fill.ts: the folio size the pages keep). */
  zeroWriteBytes: number;
}

export type SpareState = 'filling' | 'syncing' | 'ready' | 'failed' | 'taken' | 'closed';

/** With a sync when filled, the spare is also fdatasync'd every this many bytes while filling. */
const spareSyncStepBytes = 8 * 1024 * 1024;

export class SpareSegment {
  readonly path: string;
  readonly capacityBytes: number;
  private readonly fileSystem: SpareFileSystem;
  private readonly syncWhenFilled: boolean;
  private readonly zeroWriteBytes: number;
  private fd = -1;
  /** Whether this preparation created the file at `path` (only then does it delete it). */
  private created = false;
  private currentState: SpareState = 'filling';
  /** Bytes from position 0 known to hold zeros written by this preparation. */
  private filledBytes = 0;
  /** Bytes written since the last intermediate fdatasync. */
  private unsyncedBytes = 0;
  private currentFailure: SpillwayError | null = null;
  private cancelled = false;
  /** Resolves when no write or fdatasync is in flight any more (the preparation ended). */
  private readonly settled: Promise<void>;
  private settle!: () => void;

  private constructor(
    directory: string,
    capacityBytes: number,
    options: SpareOptions,
    fileSystem: SpareFileSystem,
  ) {
    this.path = join(directory, spareSegmentFileName);
    this.capacityBytes = capacityBytes;
    this.syncWhenFilled = options.syncWhenFilled;
    this.zeroWriteBytes = options.zeroWriteBytes;
    this.fileSystem = fileSystem;
    this.settled = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  /**
   * Starts preparing `spare-segment.tmp` in `directory`. Never throws for an operating error: a
   * failure to create or preallocate the file is returned as a spare in the `failed` state.
   */
  static prepare(
    directory: string,
    capacityBytes: number,
    options: SpareOptions,
    fileSystem: SpareFileSystem = nodeSpareFileSystem,
  ): SpareSegment {
    assert(
      Number.isSafeInteger(capacityBytes) && capacityBytes > 0,
      () => `spare segment capacity must be a positive integer, got ${capacityBytes}`,
    );
    const { zeroWriteBytes } = options;
    assert(
      Number.isSafeInteger(zeroWriteBytes) && zeroWriteBytes > 0 && zeroWriteBytes <= zeroWriteBytesLarge,
      () => `zero-write size must be in [1, ${zeroWriteBytesLarge}], got ${zeroWriteBytes}`,
    );
    const spare = new SpareSegment(directory, capacityBytes, options, fileSystem);
    try {
      spare.fd = fileSystem.open(spare.path);
      spare.created = true;
      fileSystem.allocate(spare.fd, 0, capacityBytes);
    } catch (error) {
      spare.fail(error);
      return spare;
    }
    spare.writeNext();
    return spare;
  }

  get state(): SpareState {
    return this.currentState;
  }

  get isReady(): boolean {
    return this.currentState === 'ready';
  }

  /** Why the preparation failed, or null. */
  get failure(): SpillwayError | null {
    return this.currentFailure;
  }

  /**
   * Hands the prepared file over: returns its descriptor (open read-write, `capacityBytes` long, all
   * zeros) and forgets it. The caller renames the file (`LogSegment.adopt`) and owns the descriptor.
   */
  take(): number {
    assert(this.currentState === 'ready', () => `take() of a spare segment in state ${this.currentState}`);
    this.currentState = 'taken';
    this.created = false;
    const fd = this.fd;
    this.fd = -1;
    this.settle();
    return fd;
  }

  /**
   * Stops the preparation and deletes the file; resolves once no write or fdatasync is in flight and
   * the file is gone. Idempotent; a taken spare is not touched.
   */
  async close(): Promise<void> {
    this.cancelled = true;
    if (this.currentState === 'ready') this.dispose('closed');
    await this.settled;
  }

  private writeNext(): void {
    if (this.cancelled) {
      this.dispose('closed');
      return;
    }
    const position = this.filledBytes;
    if (position >= this.capacityBytes) {
      this.filled();
      return;
    }
    const length = Math.min(this.zeroWriteBytes, this.capacityBytes - position);
    // The invariant of the class header: only the spare's own file, only while filling.
    assert(this.currentState === 'filling' && this.fd >= 0, 'zero-write outside the filling state');
    this.fileSystem.write(this.fd, zeroBuffer(), length, position, (error, bytesWritten) => {
      if (error !== null) {
        this.fail(error);
        return;
      }
      if (bytesWritten <= 0) {
        this.fail(new StorageIoError(`writing zeros to ${this.path}: wrote nothing at position ${position}`));
        return;
      }
      this.filledBytes = position + bytesWritten;
      this.unsyncedBytes += bytesWritten;
      if (!this.syncWhenFilled || this.unsyncedBytes < spareSyncStepBytes) {
        this.writeNext();
        return;
      }
      // Sync in steps while filling: one fdatasync of the whole file at the end would write back
      // hundreds of MiB at once, and the active segment's next fdatasync would wait behind it (in the
      // disk's queue; on ext4 with a journal also in the journal commit both need).
      this.unsyncedBytes = 0;
      this.fileSystem.datasync(this.fd, (syncError) => {
        if (syncError !== null) this.fail(syncError);
        else this.writeNext();
      });
    });
  }

  private filled(): void {
    if (!this.syncWhenFilled) {
      this.becomeReady();
      return;
    }
    this.currentState = 'syncing';
    this.fileSystem.datasync(this.fd, (error) => {
      if (error !== null) this.fail(error);
      else if (this.cancelled) this.dispose('closed');
      else this.becomeReady();
    });
  }

  private becomeReady(): void {
    this.currentState = 'ready';
    this.settle();
  }

  private fail(error: unknown): void {
    this.currentFailure = storageErrorFrom(`preparing spare segment ${this.path}`, error);
    this.dispose('failed');
  }

  /** Closes and deletes the file (errors here change nothing: the loader deletes `*.tmp` on open). */
  private dispose(state: 'failed' | 'closed'): void {
    this.currentState = state;
    if (this.fd >= 0) {
      try {
        this.fileSystem.close(this.fd);
      } catch {
        // Nothing left to do with a descriptor that will not close.
      }
      this.fd = -1;
    }
    if (this.created) {
      this.created = false;
      try {
        this.fileSystem.unlink(this.path);
      } catch {
        // Already gone; a leftover is deleted by the next open.
      }
    }
    this.settle();
  }
}
