/**
 * One segment of a partition log: `<baseOffset, 20 digits>.log` plus its sparse indexes
 * (`.index`, `.timeindex`, see offset-index.ts and time-index.ts).
 *
 * The .log file is a sequence of record batches (docs/FORMAT.md) starting at position 0, with no
 * gaps; batch offsets are contiguous from the segment's base offset. Every segment, the active one
 * too, is mapped read-only: reads are zero-copy views of the map, and appends are one `pwritev` of
 * the new 8-byte baseOffset plus the rest of the batch into the file (the page cache is shared, so
 * the map sees the bytes as soon as the write returns). Appending by `pwrite` rather than by copying
 * into a writable map: no page fault per new page (the kernel copies into the page cache directly,
 * with no zeros written ahead), and no writable page-table entries, so writing pages back never
 * has to write-protect them (one TLB-shootdown interrupt per page in this VM). Bytes past
 * `sizeBytes` are zero.
 *
 * Disk in proportion to use: a writable segment's file is sized to its capacity (`segmentBytes`) as
 * a sparse file (ftruncate: no disk blocks) and mapped once, whole; disk blocks are preallocated in
 * steps (`grow`, fallocate) ahead of the appends, so a full disk fails there, as a StorageFullError
 * to the appender (before any byte of the batch is written). Invariants: the map never reaches past
 * the end of the file (`mappedBytes` = file size), and no batch is written past `allocatedBytes`
 * (the prefix known to have disk blocks). Steps start at `segmentGrowthBytesMin`, double, and are at most
 * `segmentGrowthBytesMax`; so an active segment holds at most max(2 × its data, data + the largest
 * step) of disk. Opening an existing segment allocates nothing (opening on a full disk works; the
 * segment grows at its first append, or the append fails with STORAGE_FULL). Mapping once: no remap
 * as the segment grows.
 *
 * When sealed (rolled) or closed, the indexes are written, the file is remapped read-only at its
 * real size and then trimmed to it: the old map is only dropped, and no view ever reaches
 * past `sizeBytes`, so trimming never cuts a region anyone reads (that would raise SIGBUS).
 *
 * With durability `always` (the log decides, `setZeroWriteBytes`), pages are written with zeros
 * before data is written into them, so an fdatasync after an append finds written extents and has
 * no unwritten extent to convert (zero-fill.ts). A segment made by `adopt` from a spare
 * (spare-segment.ts) was zero-filled in the background. Every other writable segment (the first
 * one after an open, one created by `create` when no spare was ready at a roll, one reopened by a
 * truncation) is then zero-filled synchronously, on the event loop, one step at a time. It is not
 * done in the background because an append must never write into a region a zero-write is still in
 * flight for, and appends cannot wait. The first segment of a new log is prepared before any append
 * (`prepareHead`, called by the log at its creation: `preparedHeadBytes` preallocated, zeroed and
 * fdatasync'd), so a fresh topic's first appends overwrite zeros already on disk. To keep the rest
 * off the append → ack path, an append that leaves less than `durableZeroAheadBytes` -
 * `durableZeroSyncStepBytes` zero-filled ahead schedules a zero-write of one `durableZeroStepBytes`
 * step for the following turn of the event loop (`zeroAheadLater`), after the appends of the
 * current turn, and again each turn until `durableZeroAheadBytes` lie ahead; the zeros ahead are
 * fdatasync'd by a sync of their own in the background (`maybeSyncZeros`), so the data's fdatasync
 * finds their extents converted and committed. That turn also grows the
 * file ahead of the data when the margin reaches the end of what is allocated (once the segment
 * holds at least `zeroAheadBytes` of data, so a small log stays small on disk). An append zero-fills
 * inline (one step past its end, once written) only when it outruns the zeros (a large batch, many appends in
 * one turn); the first appends into a segment that was not prepared write their data into
 * allocated, unwritten pages (what an fdatasync converts, as without zero-fill) rather than wait.
 *
 * Buffer ownership: `view()` returns subarrays of the map. They stay valid while referenced, also
 * after the segment is deleted (unlinked files stay mapped), but a `truncateTo` zeroes what it cuts.
 * Not thread safe; all calls come from the log's event loop.
 */
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { join } from 'node:path';
import { assert, unreachable } from '../assert.js';
import { CorruptLogError, type SpillwayError, StorageIoError, storageErrorFrom } from '../errors.js';
import {
  BatchHeader,
  batchLengthAt,
  batchMaxTimestampAt,
  batchRecordCountAt,
  checkBatchHeader,
  setBatchBaseOffset,
} from '../format/batch-header.js';
import { readInt64LE } from '../format/int64.js';
import { segmentGrowthBytesMax, segmentGrowthBytesMin } from '../limits.js';
import { fallocate, pageSize, punchHole } from '../native.js';
import { fileModes } from './file-modes.js';
import { dropPageTableEntries, mapFile } from './memory-map.js';
import { OffsetIndex } from './offset-index.js';
import { TimeIndex } from './time-index.js';
import { writeZerosSync, zeroWriteBytesLarge } from './zero-fill.js';

export function segmentFileName(baseOffset: number, suffix: '.log' | '.index' | '.timeindex'): string {
  return `${String(baseOffset).padStart(20, '0')}${suffix}`;
}

/** Base offset from a segment file name, or null when the name is not one of ours. */
export function parseSegmentFileName(name: string): number | null {
  const match = /^(\d{20})\.log$/.exec(name);
  if (!match) return null;
  const value = Number(match[1]);
  return Number.isSafeInteger(value) ? value : null;
}

/**
 * Zero-fill ahead (`always`): `zeroAheadBytes` is how much data a segment holds before the turns
 * after its appends grow it ahead of the data (a small log stays small on disk), and the margin of
 * an append that outran the zeros; `zeroAheadStepBytes` the step such an append writes inline past
 * its end (its own fdatasync writes those zeros back: a small step bounds what it pays).
 */
export const zeroAheadBytes = 256 * 1024;
export const zeroAheadStepBytes = 64 * 1024;
/**
 * Durable zeros ahead (`always`): once a segment holds `zeroAheadBytes` of data, the turns after the
 * appends keep up to `durableZeroAheadBytes` past the data zero-filled, and each zero-filled range
 * of at least `durableZeroSyncStepBytes` that lies that far ahead of the data is fdatasync'd by a
 * sync of its own, in the background (one at a time per segment). The appends then overwrite zeros
 * whose extents were converted and committed by that sync, so the fdatasync an acknowledgement
 * waits for writes back data (and the inode) only: no zero pages, and no extent conversion to
 * write (a journal commit, or on a journal-less ext4 such as this VM's a synchronous write of the
 * extent blocks). The session 7 `always` tail was one data fdatasync in every few carrying a step
 * of zeros and its conversion. A refill starts when less than `durableZeroAheadBytes` - `durableZeroSyncStepBytes`
 * is left, one `durableZeroStepBytes` write per turn. Appends that outrun the zeros (throughput)
 * work as before: an inline step past their end, synced by their own fdatasync; no background sync
 * starts while fewer than `durableZeroSyncStepBytes` of zeros lie ahead of the data.
 */
export const durableZeroAheadBytes = 2 * 1024 * 1024;
export const durableZeroSyncStepBytes = 1024 * 1024;
export const durableZeroStepBytes = 256 * 1024;
/**
 * Zeros are kept durable ahead only while the segment is appended to at most this fast (bytes per
 * second, measured over `appendRateWindowMs`): faster appends (a throughput run) overwrite the zeros
 * within milliseconds, and zeros synced ahead of them would be written to disk twice (zeros, then
 * data), so they keep the small inline margin. 1,000 appends/s of 16 KiB are ~17 MB/s.
 */
export const durableZeroAppendBytesPerSecondMax = 64 * 1024 * 1024;
const appendRateWindowMs = 20;

/** fdatasync with a callback (Node's by default; tests hold or fail it). */
export type ZeroSyncFunction = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => void;

export interface SegmentState {
  /** Valid bytes: the end of the last whole batch. */
  sizeBytes: number;
  /** Offset after the last record of the segment (= baseOffset when empty). */
  nextOffset: number;
  /** Largest batch max timestamp in the segment, -1 when empty. */
  maxTimestamp: number;
  offsetIndex: OffsetIndex;
  timeIndex: TimeIndex;
  /** Bytes appended since the last index entry. */
  bytesSinceIndexEntry: number;
}

export class LogSegment {
  readonly directory: string;
  readonly baseOffset: number;
  readonly logPath: string;
  readonly indexPath: string;
  readonly timeIndexPath: string;
  readonly indexIntervalBytes: number;
  /** Size of the .log file when it was opened, before any preallocation (0 for a new segment). */
  readonly fileBytesAtOpen: number;

  private fd: number;
  private map: Buffer;
  private writable: boolean;
  /** Bytes the map covers; while writable, also the size of the file. */
  private capacityBytes: number;
  /** While writable: bytes from position 0 known to have disk blocks (writable by appends). */
  private allocatedBytes: number;
  /** While writable: the size the segment may grow to (`segmentBytes`). */
  private maxCapacityBytes: number;
  private state: SegmentState;
  /**
   * Inline zero-fill (zero-fill.ts): size of the zero-writes, 0 when off. Bytes in
   * `[sizeBytes, zeroedUpTo)` (whole pages past the data) were written with zeros through `write()`.
   */
  private zeroWriteBytes = 0;
  private zeroedUpTo = 0;
  /** A zero-fill after the appends is scheduled (`zeroAheadLater`). */
  private zeroAheadScheduled = false;
  /**
   * Bytes from position 0 whose zeros (written through `zeroAhead`, `prepareHead` or a spare) were
   * fdatasync'd (`durableZeroAheadBytes`): appends below it overwrite committed, written extents.
   */
  private zerosSyncedUpTo = 0;
  /** An append outran the zeros since the last turn after the appends (`zeroAheadLater`). */
  private outran = false;
  /** Append rate (`durableZeroAppendBytesPerSecondMax`): bytes since `rateWindowStartMs`, and the last window's rate. */
  private rateWindowBytes = 0;
  private rateWindowStartMs = 0;
  private fastAppends = false;
  /** A background fdatasync of zeros is in flight (at most one). */
  private zeroSyncInFlight = false;
  /** Told about a failed background zero sync: the log fails its appends (the error is the file's). */
  private onZeroSyncFailure: ((error: SpillwayError) => void) | null = null;
  private zeroSyncFailure: SpillwayError | null = null;
  /** The fdatasync of the zeros ahead (TEST-ONLY replaceable: `setZeroWriteBytes`). */
  private syncZeros: ZeroSyncFunction = fdatasync;
  /** Bumped when zeros are cut (truncation, reopen): a background sync started before counts for nothing. */
  private zeroGeneration = 0;
  /** fdatasync calls in flight on this segment's fd: the fd is closed only when none are. */
  private syncsInFlight = 0;
  private closeWhenIdle = false;
  /** Older descriptors of this file replaced while a sync was in flight on them. */
  private retiredFds: number[] = [];
  private closed = false;
  /** The base offset of the batch being written (`writeBatch`); reused, appends are synchronous. */
  private readonly baseOffsetBytes = Buffer.alloc(8);

  private constructor(
    directory: string,
    baseOffset: number,
    fd: number,
    map: Buffer,
    writable: boolean,
    capacityBytes: number,
    state: SegmentState,
    indexIntervalBytes: number,
    fileBytesAtOpen: number,
  ) {
    this.directory = directory;
    this.baseOffset = baseOffset;
    this.logPath = join(directory, segmentFileName(baseOffset, '.log'));
    this.indexPath = join(directory, segmentFileName(baseOffset, '.index'));
    this.timeIndexPath = join(directory, segmentFileName(baseOffset, '.timeindex'));
    this.fd = fd;
    this.map = map;
    this.writable = writable;
    this.capacityBytes = capacityBytes;
    this.allocatedBytes = 0;
    this.maxCapacityBytes = capacityBytes;
    this.state = state;
    this.indexIntervalBytes = indexIntervalBytes;
    this.fileBytesAtOpen = fileBytesAtOpen;
  }

  /**
   * A new, empty, writable segment on `fd` (`allocatedBytes` long and preallocated), extended to
   * `maxCapacityBytes` as a sparse file and mapped (read-only), whole.
   */
  private static empty(
    directory: string,
    baseOffset: number,
    fd: number,
    allocatedBytes: number,
    maxCapacityBytes: number,
    indexIntervalBytes: number,
  ): LogSegment {
    const fileBytes = Math.max(maxCapacityBytes, allocatedBytes);
    if (fileBytes > allocatedBytes) ftruncateSync(fd, fileBytes);
    const map = mapFile(fd, fileBytes, false);
    const segment = new LogSegment(
      directory,
      baseOffset,
      fd,
      map,
      true,
      fileBytes,
      emptyState(baseOffset),
      indexIntervalBytes,
      0,
    );
    segment.allocatedBytes = allocatedBytes;
    return segment;
  }

  /**
   * Creates a new, empty, writable segment of `capacityBytes`: a sparse file, no disk blocks
   * preallocated before the first append (`grow`).
   */
  static create(
    directory: string,
    baseOffset: number,
    capacityBytes: number,
    indexIntervalBytes: number,
  ): LogSegment {
    const path = join(directory, segmentFileName(baseOffset, '.log'));
    let fd = -1;
    try {
      fd = openSync(path, 'w+', fileModes.file);
      return LogSegment.empty(directory, baseOffset, fd, 0, capacityBytes, indexIntervalBytes);
    } catch (error) {
      if (fd >= 0) closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // The file may not exist; nothing else to undo.
      }
      throw storageErrorFrom(`creating segment ${path}`, error);
    }
  }

  /**
   * Makes a prepared spare file (spare-segment.ts: `capacityBytes` long, preallocated, every byte
   * written with zeros, open read-write on `fd`) the new, empty, writable segment at `baseOffset`:
   * renames it from `sparePath` to the segment's name (atomic; the caller marks the directory dirty)
   * and maps it. Takes ownership of `fd`: on failure it is closed and the file deleted, and the error
   * is thrown as a typed storage error (the caller can then fall back to `create`).
   */
  static adopt(
    directory: string,
    baseOffset: number,
    fd: number,
    sparePath: string,
    capacityBytes: number,
    indexIntervalBytes: number,
  ): LogSegment {
    const path = join(directory, segmentFileName(baseOffset, '.log'));
    let renamed = false;
    try {
      const fileBytes = fstatSync(fd).size;
      if (fileBytes !== capacityBytes) {
        // Changed behind our back (the spare code only ever hands over a full file): operating error.
        throw new StorageIoError(
          `spare file ${sparePath} holds ${fileBytes} bytes, expected ${capacityBytes}`,
        );
      }
      renameSync(sparePath, path);
      renamed = true;
      const segment = LogSegment.empty(
        directory,
        baseOffset,
        fd,
        capacityBytes,
        capacityBytes,
        indexIntervalBytes,
      );
      segment.zeroedUpTo = capacityBytes;
      segment.zerosSyncedUpTo = capacityBytes;
      return segment;
    } catch (error) {
      closeSync(fd);
      try {
        unlinkSync(renamed ? path : sparePath);
      } catch {
        // Already gone; a leftover spare is deleted by the next open, an empty segment is harmless.
      }
      throw storageErrorFrom(`adopting spare segment ${sparePath} as ${path}`, error);
    }
  }

  /**
   * Opens an existing segment file. The caller (log recovery) then fills in its state with
   * `restore`, from the index files or from a scan of `bytes()`.
   * A writable segment is extended to `capacityBytes` as a sparse file and mapped (read-only); no
   * disk block is allocated here (an open works on a full disk), appends allocate from its data on.
   */
  static open(
    directory: string,
    baseOffset: number,
    writable: boolean,
    capacityBytes: number,
    indexIntervalBytes: number,
  ): LogSegment {
    const path = join(directory, segmentFileName(baseOffset, '.log'));
    const fd = openSync(path, writable ? 'r+' : 'r');
    try {
      const fileBytes = fstatSync(fd).size;
      const mappedBytes = writable ? Math.max(fileBytes, capacityBytes) : fileBytes;
      if (mappedBytes > fileBytes) ftruncateSync(fd, mappedBytes);
      const map = mapFile(fd, mappedBytes, false);
      const segment = new LogSegment(
        directory,
        baseOffset,
        fd,
        map,
        writable,
        mappedBytes,
        emptyState(baseOffset),
        indexIntervalBytes,
        fileBytes,
      );
      // Unknown until the data's end is known: appends allocate from there (`grow`).
      segment.allocatedBytes = 0;
      return segment;
    } catch (error) {
      closeSync(fd);
      throw storageErrorFrom(`opening segment ${path}`, error);
    }
  }

  get sizeBytes(): number {
    return this.state.sizeBytes;
  }

  get nextOffset(): number {
    return this.state.nextOffset;
  }

  get maxTimestamp(): number {
    return this.state.maxTimestamp;
  }

  get isWritable(): boolean {
    return this.writable;
  }

  get isEmpty(): boolean {
    return this.state.sizeBytes === 0;
  }

  /** Bytes of file that the map covers (the whole file while the segment is writable). */
  get mappedBytes(): number {
    return this.capacityBytes;
  }

  /** Bytes of disk preallocated for the active segment (0 once sealed). */
  get preallocatedBytes(): number {
    return this.writable ? this.allocatedBytes : 0;
  }

  get fileDescriptor(): number {
    return this.fd;
  }

  /** The whole mapped file (for recovery scans). Only bytes before `sizeBytes` are log data. */
  mappedView(): Buffer {
    return this.map;
  }

  /** Installs the state found by recovery or loaded from the index files. */
  restore(state: SegmentState): void {
    assert(state.sizeBytes <= this.capacityBytes, 'restored size exceeds the file');
    this.state = state;
  }

  /**
   * Turns on inline zero-fill for this writable segment (0 turns it off): before a batch is written
   * into pages past `zeroedUpTo`, the next `zeroAheadBytes` are written with zeros through `write()`
   * in writes of `zeroWriteBytes` (zero-fill.ts explains why and the sizes). Synchronous, on the
   * event loop, so no zero-write is ever in flight while an append writes: each covers whole pages
   * past the valid bytes only, and completes before the append that needed it writes. A segment adopted from a spare is
   * already zero-filled and writes nothing. The zeros kept ahead are fdatasync'd in the background
   * with `syncZeros`; a failure of that sync goes to `onZeroSyncFailure` (the log fails its appends).
   */
  setZeroWriteBytes(
    zeroWriteBytes: number,
    onZeroSyncFailure?: (error: SpillwayError) => void,
    syncZeros: ZeroSyncFunction = fdatasync,
  ): void {
    if (onZeroSyncFailure !== undefined) this.onZeroSyncFailure = onZeroSyncFailure;
    this.syncZeros = syncZeros;
    assert(
      Number.isSafeInteger(zeroWriteBytes) && zeroWriteBytes >= 0 && zeroWriteBytes <= zeroWriteBytesLarge,
      () => `zero-write size must be in [0, ${zeroWriteBytesLarge}], got ${zeroWriteBytes}`,
    );
    this.zeroWriteBytes = zeroWriteBytes;
  }

  /**
   * Prepares the head of an empty writable segment with inline zero-fill on (`always`) before any
   * append: preallocates `[0, bytes)` (at most the capacity), writes zeros over it (in writes of
   * `zeroWriteBytes`) and fdatasyncs the file, synchronously. The appends into that range then
   * overwrite written extents that are on disk: their fdatasyncs write back data only (no extent to
   * convert, no zero pages), from the first append on. The zero-fill after the appends takes over
   * past it. Only an optimisation: a full disk or an I/O error leaves the segment as it was (or with
   * part of the range allocated and zeroed), the appends then grow and fail as usual.
   * Returns the bytes prepared (0 when nothing was done).
   */
  prepareHead(bytes: number): number {
    if (!this.writable || this.closed || !this.isEmpty || this.zeroWriteBytes === 0) return 0;
    const page = pageSize();
    const end = Math.min(this.maxCapacityBytes, Math.ceil(bytes / page) * page);
    if (end <= this.zeroedUpTo) return 0;
    try {
      if (end > this.allocatedBytes) {
        fallocate(this.fd, this.allocatedBytes, end - this.allocatedBytes);
        this.allocatedBytes = end;
      }
      writeZerosSync(this.fd, this.zeroedUpTo, end, this.zeroWriteBytes);
      this.zeroedUpTo = end;
      fdatasyncSync(this.fd);
      this.zerosSyncedUpTo = end;
    } catch {
      // Near a full disk, or a failing one: the appends report it (grow, fdatasync).
      return 0;
    }
    return end;
  }

  /** Bytes that may still be appended before the segment is full (it grows as needed up to there). */
  remainingBytes(): number {
    return this.writable ? this.maxCapacityBytes - this.state.sizeBytes : 0;
  }

  /**
   * Makes `[0, end)` appendable: preallocates the next growth step (or, when the disk
   * cannot hold that, just what is needed). Throws StorageFullError (ENOSPC) or StorageIoError,
   * leaving the segment as it was.
   */
  private grow(end: number): void {
    if (end > this.maxCapacityBytes || this.maxCapacityBytes > this.capacityBytes) {
      throw new Error('append past the segment capacity or the map');
    }
    const page = pageSize();
    const needed = Math.min(this.maxCapacityBytes, Math.ceil(end / page) * page);
    const step = Math.min(
      segmentGrowthBytesMax,
      Math.max(segmentGrowthBytesMin, this.allocatedBytes, needed - this.allocatedBytes),
    );
    const wanted = Math.min(this.maxCapacityBytes, Math.max(needed, this.allocatedBytes + step));
    // What lies before the page holding the end of the data is data: it has its blocks.
    const from = Math.max(this.allocatedBytes, Math.floor(this.state.sizeBytes / page) * page);
    let target = wanted;
    try {
      fallocate(this.fd, from, target - from);
    } catch (error) {
      if (needed === wanted) throw storageErrorFrom(`growing segment ${this.logPath}`, error);
      // Near a full disk: the whole step may not fit while what this append needs does.
      target = needed;
      try {
        fallocate(this.fd, from, target - from);
      } catch (retryError) {
        throw storageErrorFrom(`growing segment ${this.logPath}`, retryError);
      }
    }
    this.allocatedBytes = target;
  }

  /**
   * Writes `batch` (a whole, validated batch) at the end of the segment with its base offset set
   * to the segment's next offset. Returns the position it was written at.
   */
  append(batch: Uint8Array): number {
    if (!this.writable) unreachable(`append to segment ${this.logPath}, which is not writable`);
    const position = this.state.sizeBytes;
    const length = batch.length;
    if (position + length > this.allocatedBytes) this.grow(position + length);
    const baseOffset = this.state.nextOffset;
    this.writeBatch(batch, baseOffset, position);
    if (this.zeroWriteBytes > 0) this.countAppendRate(length);
    this.recordBatch(
      position,
      baseOffset,
      length,
      batchRecordCountAt(batch, 0),
      batchMaxTimestampAt(batch, 0),
    );
    // Outrun (the batch went past the zeros): one step of zeros past it now, for the appends that
    // follow in this turn. Zeros under the batch itself would be no use: the fdatasync that writes
    // the data back converts those pages either way. Not for a new segment's first append.
    if (position + length > this.zeroedUpTo && this.zeroWriteBytes > 0 && this.zeroedUpTo > 0) {
      this.outran = true;
      this.zeroAhead(position + length, zeroAheadStepBytes, zeroAheadBytes);
    }
    // Once a step is missing from the margin (so most fdatasyncs write back no zeros at all).
    if (this.zeroWriteBytes > 0 && !this.zeroAheadScheduled && this.zeroedUpTo <= this.refillBelow()) {
      this.zeroAheadScheduled = true;
      setImmediate(this.zeroAheadLater);
    }
    return position;
  }

  /**
   * The zero-fill ahead of the appends, after them: run in the next turn of the event loop (after
   * the appends of this turn were answered), it writes one `durableZeroStepBytes` step of zeros
   * towards `durableZeroAheadBytes` past the data, starts a background fdatasync of the zeros once
   * enough lie ahead (`maybeSyncZeros`), and schedules itself again until the margin is there. When
   * the margin reaches the end of what is allocated it grows the file first (the growth step the
   * next appends would take inline otherwise; a full disk leaves that to them, which report it).
   * The zero-writes are synchronous, so never in flight while an append writes; only their
   * fdatasync runs in the background, and an fdatasync changes no byte.
   */
  private readonly zeroAheadLater = (): void => {
    this.zeroAheadScheduled = false;
    if (!this.writable || this.closed || this.zeroWriteBytes === 0) return;
    // Appends that outran the zeros since the last turn (throughput): the small margin and step of
    // before, synced by the data's fdatasync; otherwise the durable margin, synced in the background.
    const durable = !this.outran && !this.fastAppends;
    this.outran = false;
    const margin = durable ? durableZeroAheadBytes : zeroAheadBytes;
    const wanted = Math.min(this.maxCapacityBytes, this.state.sizeBytes + margin);
    // Only once the segment holds `zeroAheadBytes` of data: a log that holds little keeps holding
    // little on disk (the growth steps of its appends), zero-filled as far as it is allocated.
    if (wanted > this.allocatedBytes && this.state.sizeBytes >= zeroAheadBytes) {
      try {
        this.grow(wanted);
      } catch {
        // Near a full disk: the appends grow (or fail with STORAGE_FULL) when they need to.
      }
    }
    this.zeroAhead(this.state.sizeBytes, durable ? durableZeroStepBytes : zeroAheadStepBytes, margin);
    if (durable) this.maybeSyncZeros(this.zeroedUpTo >= Math.min(this.allocatedBytes, wanted));
    if (this.zeroWriteBytes > 0 && this.zeroedUpTo < Math.min(this.allocatedBytes, wanted)) {
      this.zeroAheadScheduled = true;
      setImmediate(this.zeroAheadLater);
    }
  };

  /** Measures the append rate over windows of `appendRateWindowMs` (`fastAppends`). */
  private countAppendRate(length: number): void {
    this.rateWindowBytes += length;
    const now = performance.now();
    const elapsedMs = now - this.rateWindowStartMs;
    if (elapsedMs < appendRateWindowMs) return;
    this.fastAppends = (this.rateWindowBytes * 1000) / elapsedMs > durableZeroAppendBytesPerSecondMax;
    this.rateWindowBytes = 0;
    this.rateWindowStartMs = now;
  }

  /** Below this end of the zeros, the turn after the appends refills them. */
  private refillBelow(): number {
    return this.state.sizeBytes + durableZeroAheadBytes - durableZeroSyncStepBytes;
  }

  /**
   * Starts the background fdatasync of the zeros written ahead when none is in flight, at least
   * `durableZeroSyncStepBytes` of zeros lie ahead of the data, and either that much is unsynced or
   * a refill just ended (`fillEnded`) with some unsynced. A failure goes to the log (`onZeroSyncFailure`):
   * the error was reported on this file's descriptor, which the data's fdatasync shares, so the log
   * must fail its appends rather than let a later fdatasync of the same descriptor report success.
   */
  private maybeSyncZeros(fillEnded: boolean): void {
    if (this.zeroSyncInFlight || this.closed || !this.writable) return;
    const ahead = this.zeroedUpTo - this.state.sizeBytes;
    const unsynced = this.zeroedUpTo - Math.max(this.zerosSyncedUpTo, this.state.sizeBytes);
    if (ahead < durableZeroSyncStepBytes || unsynced <= 0) return;
    if (unsynced < durableZeroSyncStepBytes && !fillEnded) return;
    const upTo = this.zeroedUpTo;
    const generation = this.zeroGeneration;
    this.zeroSyncInFlight = true;
    const fd = this.beginSync();
    this.syncZeros(fd, (error) => {
      this.zeroSyncInFlight = false;
      this.endSync();
      if (error !== null) {
        this.zeroSyncFailure = storageErrorFrom(`fdatasync of zeros ahead in segment ${this.logPath}`, error);
        this.zeroWriteBytes = 0;
        this.onZeroSyncFailure?.(this.zeroSyncFailure);
        return;
      }
      // A truncation meanwhile may have punched the range: only the same generation of zeros counts.
      if (generation === this.zeroGeneration) this.zerosSyncedUpTo = Math.max(this.zerosSyncedUpTo, upTo);
      if (
        !this.zeroAheadScheduled &&
        this.writable &&
        !this.closed &&
        this.zeroedUpTo <= this.refillBelow()
      ) {
        this.zeroAheadScheduled = true;
        setImmediate(this.zeroAheadLater);
      } else {
        this.maybeSyncZeros(false);
      }
    });
  }

  /** Bytes past the data whose zeros were fdatasync'd (`durableZeroAheadBytes`). */
  get zeroSyncedAheadBytes(): number {
    return this.writable
      ? Math.max(0, Math.min(this.zerosSyncedUpTo, this.zeroedUpTo) - this.state.sizeBytes)
      : 0;
  }

  /** The failure of a background fdatasync of zeros, or null (the log is told at once). */
  get backgroundSyncFailure(): SpillwayError | null {
    return this.zeroSyncFailure;
  }

  /** Bytes past the data known to be written with zeros (what the next appends copy into at full speed). */
  get zeroFilledAheadBytes(): number {
    return this.writable ? Math.max(0, this.zeroedUpTo - this.state.sizeBytes) : 0;
  }

  /**
   * Accounts for a batch at `position` in the state and the indexes. Used by append and by
   * recovery, so both index the same batches.
   */
  recordBatch(
    position: number,
    baseOffset: number,
    length: number,
    recordCount: number,
    maxTimestamp: number,
  ): void {
    const state = this.state;
    if (state.bytesSinceIndexEntry >= this.indexIntervalBytes) {
      state.offsetIndex.append(baseOffset - this.baseOffset, position);
      state.timeIndex.append(state.maxTimestamp, position);
      state.bytesSinceIndexEntry = 0;
    }
    state.bytesSinceIndexEntry += length;
    state.sizeBytes = position + length;
    state.nextOffset = baseOffset + recordCount;
    if (maxTimestamp > state.maxTimestamp) state.maxTimestamp = maxTimestamp;
  }

  /** A zero-copy view of `[start, end)`; the range must be within the valid bytes. */
  view(start: number, end: number): Buffer {
    if (start < 0 || end > this.state.sizeBytes || start > end) {
      unreachable(`view [${start}, ${end}) outside [0, ${this.state.sizeBytes})`);
    }
    return this.map.subarray(start, end);
  }

  /**
   * Position of an indexed batch at or before `offset` to start a scan from. The entry is checked
   * against the log (the batch there must have the indexed base offset); a wrong index is rebuilt
   * from the log rather than believed, so a damaged index file can never make a read skip records.
   */
  lookupPosition(offset: number): number {
    const entry = this.state.offsetIndex.lookupEntry(offset - this.baseOffset);
    if (entry === null) return 0;
    if (this.isBatchAt(entry.position, this.baseOffset + entry.relativeOffset)) return entry.position;
    this.rebuildIndexes();
    return this.state.offsetIndex.lookup(offset - this.baseOffset);
  }

  /** Whether a structurally valid batch with base offset `baseOffset` starts at `position`. */
  private isBatchAt(position: number, baseOffset: number): boolean {
    const size = this.state.sizeBytes;
    if (position < 0 || position + BatchHeader.size > size) return false;
    if (checkBatchHeader(this.map, position, size - position) !== null) return false;
    return readInt64LE(this.map, position + BatchHeader.baseOffset) === baseOffset;
  }

  /**
   * Rebuilds both indexes by walking the batch headers of the valid bytes (no CRC), and rewrites the
   * index files of a sealed segment. Throws CorruptLogError when a header is damaged.
   */
  rebuildIndexes(): void {
    const previous = this.state;
    const sizeBytes = previous.sizeBytes;
    const bytes = this.map;
    this.state = emptyState(this.baseOffset);
    let position = 0;
    while (position < sizeBytes) {
      const problem = checkBatchHeader(bytes, position, sizeBytes - position);
      if (problem !== null) {
        this.state = previous; // Unchanged: the damage is reported, not turned into a shorter segment.
        throw new CorruptLogError(this.logPath, position, problem);
      }
      const length = batchLengthAt(bytes, position);
      this.recordBatch(
        position,
        readInt64LE(bytes, position + BatchHeader.baseOffset),
        length,
        batchRecordCountAt(bytes, position),
        batchMaxTimestampAt(bytes, position),
      );
      position += length;
    }
    if (!this.writable) this.writeIndexes();
  }

  lookupTimePosition(timestamp: number): number {
    return this.state.timeIndex.lookup(timestamp);
  }

  /** Base offset of the batch at `position` (which must be a batch start within the valid bytes). */
  batchBaseOffsetAt(position: number): number {
    return readInt64LE(this.map, position + BatchHeader.baseOffset);
  }

  batchLengthAt(position: number): number {
    return batchLengthAt(this.map, position);
  }

  /**
   * Cuts the segment at `position` (a batch boundary): drops index entries from there, zeroes the
   * cut bytes (punching a hole where the file system allows, then preallocating again) so no
   * stale batch can be mistaken for data after a later crash. `nextOffset` becomes `offset`.
   */
  truncateTo(position: number, offset: number, maxTimestamp: number): void {
    assert(this.writable, 'truncate a sealed segment: reopen it writable first');
    const oldSize = this.state.sizeBytes;
    this.zeroRange(position, oldSize);
    this.state.offsetIndex.truncateToPosition(position);
    this.state.timeIndex.truncateToPosition(position);
    this.state.sizeBytes = position;
    this.state.nextOffset = offset;
    this.state.maxTimestamp = maxTimestamp;
    // Recount the bytes since the last surviving index entry.
    const last = this.state.offsetIndex.lastEntry();
    this.state.bytesSinceIndexEntry = position - (last ? last.position : 0);
  }

  /** Zeroes `[start, end)` of the file with zero-writes (punching a hole for whole pages). */
  zeroRange(start: number, end: number): void {
    if (end <= start) return;
    const page = pageSize();
    const firstWholePage = Math.ceil(start / page) * page;
    const lastWholePage = Math.floor(end / page) * page;
    try {
      if (lastWholePage - firstWholePage >= 16 * page) {
        writeZerosSync(this.fd, start, firstWholePage, zeroWriteBytesLarge);
        try {
          // A hole reads as zeros and gives the disk back; appends preallocate it again (`grow`),
          // so a full disk fails there.
          punchHole(this.fd, firstWholePage, lastWholePage - firstWholePage);
          this.allocatedBytes = Math.min(this.allocatedBytes, firstWholePage);
        } catch {
          writeZerosSync(this.fd, firstWholePage, lastWholePage, zeroWriteBytesLarge);
        }
        writeZerosSync(this.fd, lastWholePage, end, zeroWriteBytesLarge);
      } else {
        writeZerosSync(this.fd, start, end, zeroWriteBytesLarge);
      }
    } catch (error) {
      throw storageErrorFrom(`zeroing [${start}, ${end}) of segment ${this.logPath}`, error);
    }
    // Punched pages are unwritten extents again.
    this.zeroedUpTo = Math.min(this.zeroedUpTo, firstWholePage);
    this.zerosSyncedUpTo = Math.min(this.zerosSyncedUpTo, this.zeroedUpTo);
    this.zeroGeneration++;
  }

  /** Writes the index files (derived data; a crash mid-write only costs a rebuild). */
  writeIndexes(): void {
    writeAtomically(this.indexPath, this.state.offsetIndex.toBytes());
    writeAtomically(this.timeIndexPath, this.state.timeIndex.toBytes());
  }

  /** Loads the index files, or returns why they cannot be used. */
  loadIndexes(sizeBytes: number): { offsetIndex: OffsetIndex; timeIndex: TimeIndex } | string {
    try {
      const offsetIndex = OffsetIndex.fromBytes(readFileSync(this.indexPath), Math.max(sizeBytes, 1));
      if (typeof offsetIndex === 'string') return offsetIndex;
      const timeIndex = TimeIndex.fromBytes(readFileSync(this.timeIndexPath), Math.max(sizeBytes, 1));
      if (typeof timeIndex === 'string') return timeIndex;
      // Both indexes are taken at the same batches: their positions must agree entry for entry.
      if (timeIndex.entryCount !== offsetIndex.entryCount) return 'offset and time indexes differ in length';
      for (let i = 0; i < offsetIndex.entryCount; i++) {
        if (timeIndex.positionAt(i) !== offsetIndex.entry(i).position)
          return `indexes disagree at entry ${i}`;
      }
      return { offsetIndex, timeIndex };
    } catch (error) {
      return `index files unreadable: ${(error as Error).message}`;
    }
  }

  /**
   * Drops this process's page-table entries for the segment's map (dropPageTableEntries): the pages
   * stay in the page cache and the map stays valid (views too); the next access faults them in.
   */
  releaseResidentPages(): void {
    dropPageTableEntries(this.map);
  }

  /**
   * Seals the segment: writes its indexes, remaps it read-only at its real size, trims the file.
   * The data must already be on disk when the caller needs it durable (sealing does not fsync).
   */
  seal(): void {
    if (!this.writable) return;
    this.writeIndexes();
    const size = this.state.sizeBytes;
    // A map of the real size (views of the old one stay valid: they cover only data).
    this.map = size > 0 ? mapFile(this.fd, size, false) : Buffer.alloc(0);
    this.writable = false;
    this.capacityBytes = size;
    try {
      ftruncateSync(this.fd, size);
    } catch (error) {
      throw storageErrorFrom(`trimming segment ${this.logPath}`, error);
    }
  }

  /**
   * For a sealed segment whose state was rebuilt by recovery: writes its indexes and, when the file
   * is still preallocated past its data (a crash during a roll), remaps it at its real size and
   * trims it, as `seal` would have.
   */
  completeRecoveredSeal(): void {
    assert(!this.writable, 'completeRecoveredSeal is for sealed segments');
    this.writeIndexes();
    const size = this.state.sizeBytes;
    if (this.capacityBytes === size) return;
    this.map = size > 0 ? mapFile(this.fd, size, false) : Buffer.alloc(0);
    this.capacityBytes = size;
    const fd = openSync(this.logPath, 'r+');
    try {
      ftruncateSync(fd, size);
    } catch (error) {
      throw storageErrorFrom(`trimming segment ${this.logPath}`, error);
    } finally {
      closeSync(fd);
    }
  }

  /** Closes the file without sealing, trimming or writing anything (an open that failed). */
  abandon(): void {
    this.writable = false;
    if (this.syncsInFlight > 0) this.closeWhenIdle = true;
    else this.closeNow();
  }

  /**
   * Makes a sealed segment writable again (truncation of the log into it): extended to
   * `capacityBytes` as a sparse file and mapped whole; appends allocate from the data on.
   */
  reopenWritable(capacityBytes: number): void {
    if (this.writable) return;
    if (this.syncsInFlight > 0) this.retiredFds.push(this.fd);
    else closeSync(this.fd);
    this.fd = openSync(this.logPath, 'r+');
    const fileBytes = fstatSync(this.fd).size;
    const mappedBytes = Math.max(capacityBytes, fileBytes, this.state.sizeBytes);
    if (mappedBytes > fileBytes) ftruncateSync(this.fd, mappedBytes);
    this.map = mapFile(this.fd, mappedBytes, false);
    this.capacityBytes = mappedBytes;
    this.allocatedBytes = 0;
    this.maxCapacityBytes = mappedBytes;
    this.writable = true;
    this.zeroedUpTo = 0;
    this.zerosSyncedUpTo = 0;
    this.zeroGeneration++;
  }

  /** A background fdatasync of the zeros ahead of the data is in flight (`maybeSyncZeros`). */
  get zerosSyncing(): boolean {
    return this.zeroSyncInFlight;
  }

  /** Marks an fdatasync as started on this segment's fd (the fd stays open until it ends). */
  beginSync(): number {
    this.syncsInFlight++;
    return this.fd;
  }

  endSync(): void {
    this.syncsInFlight--;
    if (this.syncsInFlight > 0) return;
    for (const fd of this.retiredFds.splice(0)) closeSync(fd);
    if (this.closeWhenIdle) this.closeNow();
  }

  /** Closes the file (trimming a writable segment first). Deferred while an fdatasync is in flight. */
  close(): void {
    if (this.closed) return;
    if (this.writable) this.seal();
    if (this.syncsInFlight > 0) {
      this.closeWhenIdle = true;
      return;
    }
    this.closeNow();
  }

  /** Closes and removes the segment's files. Existing views stay readable. */
  delete(): void {
    if (this.writable) {
      this.writable = false;
      this.map = Buffer.alloc(0);
    }
    this.state = emptyState(this.baseOffset);
    if (this.syncsInFlight > 0) this.closeWhenIdle = true;
    else this.closeNow();
    for (const path of [this.logPath, this.indexPath, this.timeIndexPath]) {
      try {
        unlinkSync(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
          throw storageErrorFrom(`deleting ${path}`, error);
      }
    }
  }

  private closeNow(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  /**
   * Writes `batch` at `position` with its base offset set to `baseOffset`: one `pwritev` of the new
   * 8 bytes and the rest of the caller's batch (left unchanged). The caller made sure the range is
   * preallocated (`grow`). Throws a typed storage error; a failed write leaves the state as it was
   * (the next append writes over whatever part landed; recovery cuts a torn tail by its CRC).
   */
  private writeBatch(batch: Uint8Array, baseOffset: number, position: number): void {
    const head = this.baseOffsetBytes;
    setBatchBaseOffset(head, baseOffset);
    const length = batch.length;
    try {
      let written = writevSync(this.fd, [head, batch.subarray(BatchHeader.batchLength)], position);
      // A regular file takes a whole write unless the disk fails or fills; finish a short one.
      while (written < length) {
        const more =
          written < 8
            ? writeSync(this.fd, head, written, 8 - written, position + written)
            : writeSync(this.fd, batch, written, length - written, position + written);
        if (more <= 0) throw new StorageIoError(`write at ${position + written} wrote nothing`);
        written += more;
      }
    } catch (error) {
      throw storageErrorFrom(`appending to segment ${this.logPath}`, error);
    }
  }

  /** Inline zero-fill up to `end` plus `marginBytes`, at most `stepBytes` (see `setZeroWriteBytes`). */
  private zeroAhead(end: number, stepBytes: number, marginBytes: number): void {
    const page = pageSize();
    // Whole pages past the valid bytes only: the page holding the end of the data is never written.
    const start = Math.max(this.zeroedUpTo, Math.ceil(this.state.sizeBytes / page) * page);
    const stop = Math.min(
      this.allocatedBytes,
      Math.ceil(end / page) * page + marginBytes,
      Math.max(start, Math.ceil(end / page) * page) + stepBytes,
    );
    if (stop <= start) return;
    try {
      writeZerosSync(this.fd, start, stop, this.zeroWriteBytes);
      this.zeroedUpTo = stop;
    } catch {
      // Only an optimisation: appends work without it (slower fdatasyncs). A real I/O error
      // shows up again in the next fdatasync, which reports it.
      this.zeroWriteBytes = 0;
    }
  }
}

export function emptyState(baseOffset: number): SegmentState {
  return {
    sizeBytes: 0,
    nextOffset: baseOffset,
    maxTimestamp: -1,
    offsetIndex: new OffsetIndex(),
    timeIndex: new TimeIndex(),
    bytesSinceIndexEntry: 0,
  };
}

function writeAtomically(path: string, bytes: Uint8Array): void {
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, bytes, { mode: fileModes.file });
  renameSync(temporary, path);
}
