/**
 * A partition log: an ordered list of segments (log-segment.ts) in one directory, the last one
 * active. Appends go to the active segment, which rolls when full or old; reads find the segment by
 * base offset and the position by the sparse index. Durability per log (sync-scheduler.ts).
 * Recovery lives in log-loader.ts; this file is the running log.
 *
 * Directory layout: `<20-digit base offset>.log|.index|.timeindex` per segment, plus
 * `recovery-point.checkpoint` (checkpoint-file.ts): the offset below which everything was synced,
 * and whether the log was closed cleanly. It is rewritten at open, once the data an unclean open
 * kept is synced, every `checkpointIntervalMs` when the synced offset moved, after a truncation and
 * at close. And, with durability `always` (or `spareSegment: true`), while the log is in use by a
 * log that rolls often (its last segment filled up
 * within `spareSegmentFillMsMax`), `spare-segment.tmp` (spare-segment.ts): the next segment,
 * zero-filled in the background from the first append after such a roll on, renamed to its
 * segment name at the roll that takes it (a roll that finds it not ready yet creates its segment
 * itself and leaves the spare to the next roll). It never holds data; close deletes it, and so does
 * the next open after a crash. Segments that were not spares start empty and grow in steps; with
 * `always` they are zero-filled inline by their appends (log-segment.ts, zero-fill.ts), and a new
 * log's first segment has its head (`preparedHeadBytes`) preallocated, zeroed and fdatasync'd at
 * creation (`LogSegment.prepareHead`): its first appends pay a plain data fdatasync. Past the head,
 * segments keep zeros ahead of appends that keep pace and fdatasync them in the background
 * (log-segment.ts, `durableZeroAheadBytes`); a failure of such a sync fails the log like a failed
 * round (the error was reported on the descriptor the rounds use).
 *
 * Disk: a log holds its data, plus the growth step of its active segment, plus a spare only while
 * it rolls often. Opening writes nothing but the checkpoint; when even that fails for a full disk,
 * the log opens read-only for appends (they fail with STORAGE_FULL until the checkpoint can be
 * written) and serves reads.
 *
 * Concurrency: single-threaded (one event loop); `append` may be called many times without awaiting
 * (that is how `always` gets group commit). Views returned by `read` stay valid while referenced.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { type Clock, type ClockTimer, systemClock } from '../clock.js';
import {
  CorruptLogError,
  InvalidArgumentError,
  InvalidBatchError,
  LogClosedError,
  OffsetOutOfRangeError,
  type SpillwayError,
  storageErrorFrom,
} from '../errors.js';
import {
  BatchHeader,
  batchMaxTimestampAt,
  batchRecordCountAt,
  checkBatchHeader,
} from '../format/batch-header.js';
import {
  checkpointIntervalMsDefault,
  checkpointIntervalMsMax,
  flushIntervalMsDefault,
  flushIntervalMsMax,
  indexIntervalBytesDefault,
  indexIntervalBytesMax,
  preparedHeadBytes,
  segmentBytesDefault,
  segmentBytesMax,
  segmentBytesMin,
  segmentMsDefault,
  spareSegmentFillMsMax,
} from '../limits.js';
import { crc32c as nativeCrc32c } from '../native.js';
import { CheckpointFile } from './checkpoint-file.js';
import { fileModes } from './file-modes.js';
import { type InlineSyncBudget, inlineSyncBudget } from './inline-sync.js';
import {
  loadLog,
  type RecoveryCheckpoint,
  type RecoveryReport,
  recoveryCheckpointFileName,
} from './log-loader.js';
import { LogSegment } from './log-segment.js';
import type { AppendResult, LogStore, ReadResult, RetentionResult } from './log-store.js';
import type { Crc32cFunction } from './segment-scan.js';
import { nodeSpareFileSystem, type SpareFileSystem, SpareSegment, type SpareState } from './spare-segment.js';
import { type Durability, durabilities, type SyncFile, SyncScheduler } from './sync-scheduler.js';
import { inlineZeroWriteBytesFor, zeroWriteBytesFor } from './zero-fill.js';

export interface PartitionLogOptions {
  directory: string;
  durability?: Durability;
  /** With `interval`: time between two fdatasync calls. */
  flushIntervalMs?: number;
  /** Preallocated size of a segment; a batch must fit in one. */
  segmentBytes?: number;
  /** The active segment rolls once it is this old (and not empty). */
  segmentMs?: number;
  indexIntervalBytes?: number;
  /** Whole sealed segments whose newest record is older than this are deleted. -1: keep forever. */
  retentionMs?: number;
  /** Oldest sealed segments are deleted while the log is larger than this. -1: no limit. */
  retentionBytes?: number;
  checkpointIntervalMs?: number;
  /**
   * Time for the flush and checkpoint timers, segment age and retention (`systemClock` by default).
   * The broker passes its own clock, so one ManualClock drives every log in a test.
   */
  clock?: Clock;
  /** CRC32C used to verify batches in recovery and `verify` (the native one by default). */
  crc32c?: Crc32cFunction;
  /**
   * Prepare the next segment in the background (spare-segment.ts) when the log rolls often (a
   * segment filled up within `spareSegmentFillMsMax`); default true with durability `always`
   * (its fdatasyncs then find written extents: nothing to convert), false otherwise (appends are
   * `pwrite`s, which need no zeros ahead; the zeros would only double the bytes written). Costs, per such log: one more
   * `segmentBytes` of disk and page cache while a spare exists, and `segmentBytes` of zeros written
   * per segment (with `interval` and `always` also fdatasync'd, in the background; with `none` they
   * reach the disk only if written back before data overwrites them).
   */
  spareSegment?: boolean;
  /**
   * TEST-ONLY: replaces the file-system calls of the spare segment preparation, and the fdatasync of
   * the zeros a segment syncs ahead of its data with `always` (log-segment.ts), for fault injection.
   */
  spareFileSystem?: SpareFileSystem;
  /**
   * With durability `always`: the budget under which a round of a lightly loaded log runs its
   * fdatasync on the event loop instead of the thread pool (inline-sync.ts); default the process's
   * `inlineSyncBudget`, null for the pool always. Ignored with `none` and `interval`.
   */
  inlineSync?: InlineSyncBudget | null;
}

/** What the spare segment preparation did since the log was opened (for tests and benchmarks). */
export interface SpareSegmentStats {
  /** Preparations started. */
  prepared: number;
  /** Rolls that took a ready spare. */
  adopted: number;
  /** Rolls that created their segment the slow way (the spare was still being prepared, or none). */
  fallbacks: number;
  /** Preparations that failed (the spare file was deleted). */
  failures: number;
  lastFailure: SpillwayError | null;
  /** State of the current spare, 'none' when there is none. */
  state: SpareState | 'none';
}

interface ResolvedOptions {
  directory: string;
  durability: Durability;
  flushIntervalMs: number;
  segmentBytes: number;
  segmentMs: number;
  indexIntervalBytes: number;
  retentionMs: number;
  retentionBytes: number;
  checkpointIntervalMs: number;
  clock: Clock;
  crc32c: Crc32cFunction;
  spareSegment: boolean;
  spareFileSystem: SpareFileSystem;
  inlineSync: InlineSyncBudget | null;
}

function integerOption(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

function resolveOptions(options: PartitionLogOptions): ResolvedOptions {
  if (typeof options.directory !== 'string' || options.directory.length === 0) {
    throw new InvalidArgumentError('directory is required');
  }
  const durability = options.durability ?? 'interval';
  if (!durabilities.includes(durability)) {
    throw new InvalidArgumentError(
      `durability must be one of ${durabilities.join(', ')}, got ${String(durability)}`,
    );
  }
  const forever = Number.MAX_SAFE_INTEGER;
  return {
    directory: options.directory,
    durability,
    flushIntervalMs: integerOption(
      'flushIntervalMs',
      options.flushIntervalMs,
      flushIntervalMsDefault,
      1,
      flushIntervalMsMax,
    ),
    segmentBytes: integerOption(
      'segmentBytes',
      options.segmentBytes,
      segmentBytesDefault,
      segmentBytesMin,
      segmentBytesMax,
    ),
    segmentMs: integerOption('segmentMs', options.segmentMs, segmentMsDefault, 1, forever),
    indexIntervalBytes: integerOption(
      'indexIntervalBytes',
      options.indexIntervalBytes,
      indexIntervalBytesDefault,
      1,
      indexIntervalBytesMax,
    ),
    retentionMs: integerOption('retentionMs', options.retentionMs, -1, -1, forever),
    retentionBytes: integerOption('retentionBytes', options.retentionBytes, -1, -1, forever),
    checkpointIntervalMs: integerOption(
      'checkpointIntervalMs',
      options.checkpointIntervalMs,
      checkpointIntervalMsDefault,
      1,
      checkpointIntervalMsMax,
    ),
    clock: options.clock ?? systemClock,
    crc32c: options.crc32c ?? nativeCrc32c,
    spareSegment: options.spareSegment ?? durability === 'always',
    spareFileSystem: options.spareFileSystem ?? nodeSpareFileSystem,
    inlineSync: options.inlineSync === undefined ? inlineSyncBudget : options.inlineSync,
  };
}

export class PartitionLog implements LogStore {
  readonly directory: string;
  readonly durability: Durability;
  /** What opening the log found and did. */
  readonly recovery: RecoveryReport;

  private readonly options: ResolvedOptions;
  private readonly segments: LogSegment[];
  private readonly checkpoint: CheckpointFile<RecoveryCheckpoint>;
  private readonly directoryFd: number;
  private readonly syncer: SyncScheduler;
  /** Segments written since the last sync started. */
  private readonly dirty = new Set<LogSegment>();
  private checkpointedOffset: number;
  private readonly clock: Clock;
  private flushTimer: ClockTimer | null = null;
  private checkpointTimer: ClockTimer | null = null;
  /** When the active segment became active (clock's monotonic time): it rolls `segmentMs` later. */
  private activeSinceMs: number;
  /** Background checkpoint writes not finished yet (retention waits for none). */
  private checkpointWritesInFlight = 0;
  private closed = false;
  /** The next segment being prepared or ready (spare-segment.ts), or null. */
  private spare: SpareSegment | null = null;
  /** Whether the active segment still has to start a spare preparation at its first append. */
  private spareWanted = false;
  /** The checkpoint of the open could not be written (a full disk): appends wait until it is. */
  private openCheckpoint: RecoveryCheckpoint | null = null;
  /** Inline zero-fill of segments that were not prepared as spares (zero-fill.ts). */
  private readonly zeroWriteBytes: number;
  private readonly spareStats: Omit<SpareSegmentStats, 'state'> = {
    prepared: 0,
    adopted: 0,
    fallbacks: 0,
    failures: 0,
    lastFailure: null,
  };

  /** A background fdatasync of zeros failed (log-segment.ts): its error is the file's, so the log fails. */
  private readonly zeroSyncFailed = (error: SpillwayError): void => {
    this.syncer.fail(error);
  };

  private constructor(options: ResolvedOptions) {
    this.options = options;
    this.clock = options.clock;
    this.activeSinceMs = options.clock.monotonicMs();
    this.directory = options.directory;
    this.durability = options.durability;
    mkdirSync(options.directory, { recursive: true, mode: fileModes.directory });
    this.checkpoint = new CheckpointFile(join(options.directory, recoveryCheckpointFileName));
    const loaded = loadLog(
      {
        directory: options.directory,
        segmentBytes: options.segmentBytes,
        indexIntervalBytes: options.indexIntervalBytes,
        crc32c: options.crc32c,
      },
      this.checkpoint,
    );
    this.segments = loaded.segments;
    this.recovery = loaded.report;
    this.zeroWriteBytes = inlineZeroWriteBytesFor(options.durability);
    this.active.setZeroWriteBytes(
      this.zeroWriteBytes,
      this.zeroSyncFailed,
      this.options.spareFileSystem.datasync,
    );
    // `always`: a new log's first appends overwrite zeros already on disk (log-segment.ts). Only
    // at creation: opening an existing log preallocates nothing (it works on a full disk).
    if (this.zeroWriteBytes > 0 && loaded.report.created) this.active.prepareHead(preparedHeadBytes);
    try {
      this.directoryFd = openSync(options.directory, 'r');
    } catch (error) {
      // Out of file descriptors, typically: close what the loader opened, change nothing.
      for (const segment of this.segments) segment.abandon();
      throw storageErrorFrom(`opening log directory ${options.directory}`, error);
    }
    // What recovery kept may only be in the page cache (a process crash): it is synced in the
    // background, and until that sync ends the durable offset stays at the old recovery point.
    // The checkpoint says the log is open (not cleanly closed) before anything is appended.
    const end = this.logEndOffset;
    const recoveryPoint = Math.min(loaded.report.recoveryPoint, end);
    for (const segment of this.segments) {
      if (segment.nextOffset > recoveryPoint) this.dirty.add(segment);
    }
    const openCheckpoint: RecoveryCheckpoint = this.checkpointValue(recoveryPoint, false);
    try {
      this.checkpoint.writeSync(openCheckpoint);
    } catch (error) {
      // A full disk: serve reads; appends retry the checkpoint first (`appendNow`).
      const typed = storageErrorFrom(`writing ${this.checkpoint.path}`, error);
      if (typed.code !== 'STORAGE_FULL') {
        for (const segment of this.segments) segment.abandon();
        closeSync(this.directoryFd);
        throw typed;
      }
      this.openCheckpoint = openCheckpoint;
    }
    this.checkpointedOffset = recoveryPoint;
    let recoveredPending = recoveryPoint < end;
    this.syncer = new SyncScheduler(
      {
        endOffset: () => this.logEndOffset,
        takeRound: (neededOffset) => this.takeSyncRound(neededOffset),
        onSynced: (offset) => {
          // The data recovery kept is on disk: record that at once rather than at the next
          // checkpoint tick, so a crash right after it does not make the next open scan it again.
          if (recoveredPending && offset >= end) {
            recoveredPending = false;
            this.backgroundCheckpoint();
          }
        },
      },
      this.directoryFd,
      recoveryPoint,
      undefined,
      this.durability === 'always' && options.inlineSync !== null ? { budget: options.inlineSync } : null,
    );
    if (this.dirty.size > 0) this.backgroundSync();
    if (this.durability === 'interval') {
      this.flushTimer = this.clock.setInterval(() => this.backgroundSync(), options.flushIntervalMs, {
        unref: true,
      });
    }
    this.checkpointTimer = this.clock.setInterval(
      () => this.backgroundCheckpoint(),
      options.checkpointIntervalMs,
      { unref: true },
    );
  }

  /** Opens (creating or recovering) the log in `options.directory`. */
  static async open(options: PartitionLogOptions): Promise<PartitionLog> {
    return new PartitionLog(resolveOptions(options));
  }

  get logStartOffset(): number {
    return this.segments[0]!.baseOffset;
  }

  get logEndOffset(): number {
    return this.active.nextOffset;
  }

  /** Offset below which everything has been synced to disk. */
  get durableOffset(): number {
    return this.syncer.durableOffset;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  get sizeBytes(): number {
    let total = 0;
    for (const segment of this.segments) total += segment.sizeBytes;
    return total;
  }

  /** fdatasync rounds completed since open (group commit: fewer than appends under load). */
  get syncCount(): number {
    return this.syncer.syncCount;
  }

  /** Of `syncCount`, the rounds whose fdatasync ran on the event loop (`always`, lightly loaded: inline-sync.ts). */
  get inlineSyncCount(): number {
    return this.syncer.inlineSyncCount;
  }

  /** Disk preallocated ahead of the data: the active segment's growth step plus a spare's file. */
  get preallocatedBytes(): number {
    const active = this.active;
    const spare = this.spare;
    const spareBytes =
      spare !== null && spare.state !== 'closed' && spare.state !== 'taken' ? spare.capacityBytes : 0;
    return Math.max(0, active.preallocatedBytes - active.sizeBytes) + spareBytes;
  }

  /**
   * The sealed segments (every one but the active), oldest first, for a scrub (read-only): `bytes()`
   * is a view of the segment's valid bytes, valid while referenced, also after the segment is
   * deleted by retention.
   */
  sealedSegments(): Array<{
    baseOffset: number;
    nextOffset: number;
    logPath: string;
    bytes: () => Buffer;
    /** Drops the segment's pages from the resident set (LogSegment.releaseResidentPages). */
    releaseResidentPages: () => void;
  }> {
    if (this.closed) return [];
    return this.segments
      .filter((segment) => !segment.isWritable)
      .map((segment) => ({
        baseOffset: segment.baseOffset,
        nextOffset: segment.nextOffset,
        logPath: segment.logPath,
        bytes: () => segment.view(0, segment.sizeBytes),
        releaseResidentPages: () => segment.releaseResidentPages(),
      }));
  }

  /** What the spare segment preparation did so far (a copy). */
  get spareSegmentStats(): SpareSegmentStats {
    return { ...this.spareStats, state: this.spare?.state ?? 'none' };
  }

  private get active(): LogSegment {
    return this.segments[this.segments.length - 1]!;
  }

  append(batch: Uint8Array): Promise<AppendResult> {
    try {
      return this.appendNow(batch);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private appendNow(batch: Uint8Array): Promise<AppendResult> {
    if (this.closed) throw new LogClosedError(`log ${this.directory}`);
    const failure = this.syncer.failed;
    if (failure) throw failure;
    if (this.openCheckpoint !== null) {
      try {
        this.checkpoint.writeSync(this.openCheckpoint);
      } catch (error) {
        throw storageErrorFrom(`writing ${this.checkpoint.path}`, error); // STORAGE_FULL: still full
      }
      this.openCheckpoint = null;
    }
    const problem = checkBatchHeader(batch, 0, batch.length);
    if (problem !== null) throw new InvalidBatchError(problem);
    const length = batch.length;
    if (length !== (batch[8]! | (batch[9]! << 8) | (batch[10]! << 16) | (batch[11]! << 24))) {
      throw new InvalidBatchError(`batch length field differs from the ${length} bytes given`);
    }
    if (length > this.options.segmentBytes) {
      throw new InvalidBatchError(
        `batch of ${length} bytes exceeds the segment size ${this.options.segmentBytes}`,
      );
    }
    let segment = this.active;
    const full = segment.remainingBytes() < length;
    if (
      full ||
      (!segment.isEmpty && this.clock.monotonicMs() - this.activeSinceMs >= this.options.segmentMs)
    ) {
      segment = this.roll(full);
    }
    const baseOffset = segment.nextOffset;
    try {
      segment.append(batch);
    } catch (error) {
      // The segment could not grow (a full disk): a spare being prepared holds disk; give it back.
      void this.spare?.close();
      throw error;
    }
    this.dirty.add(segment);
    if (this.spareWanted) this.startSpare();
    const lastOffset = baseOffset + batchRecordCountAt(batch, 0) - 1;
    const result: AppendResult = { baseOffset, lastOffset, durability: this.durability };
    if (this.durability !== 'always') return Promise.resolve(result);
    return this.syncer.waitFor(lastOffset + 1).then(() => result);
  }

  /**
   * Seals the active segment and starts a new one at the log end: the spare when it is ready,
   * otherwise a new empty file that grows as appended to (`LogSegment.create`, which throws
   * StorageIoError). A spare still being prepared is left to finish: it serves the next roll.
   * `full`: the active segment is full (not just old); when it filled up quickly, the log rolls
   * often and prepares a spare for the next roll.
   */
  private roll(full: boolean): LogSegment {
    const old = this.active;
    const baseOffset = old.nextOffset;
    const { segmentBytes, indexIntervalBytes } = this.options;
    let fresh: LogSegment | null = null;
    const spare = this.spare;
    switch (spare?.state) {
      case 'ready':
        this.spare = null;
        try {
          fresh = LogSegment.adopt(
            this.directory,
            baseOffset,
            spare!.take(),
            spare!.path,
            segmentBytes,
            indexIntervalBytes,
          );
          this.spareStats.adopted++;
        } catch (error) {
          this.recordSpareFailure(error as SpillwayError);
        }
        break;
      case 'failed':
        this.spare = null;
        this.recordSpareFailure(spare!.failure!);
        break;
      case 'closed':
        this.spare = null;
        break;
      default:
        // None, or still filling or syncing: it serves a later roll.
        break;
    }
    if (fresh === null) {
      if (this.options.spareSegment) this.spareStats.fallbacks++;
      try {
        fresh = LogSegment.create(this.directory, baseOffset, segmentBytes, indexIntervalBytes);
      } catch (error) {
        // A spare still being prepared may hold segmentBytes of a full disk. Give that back so a
        // retry can succeed (its file is deleted once its write in flight ends; until then it stays
        // in `this.spare`, so no new preparation starts beside it).
        void this.spare?.close();
        throw error;
      }
    }
    fresh.setZeroWriteBytes(this.zeroWriteBytes, this.zeroSyncFailed, this.options.spareFileSystem.datasync);
    // The active segment became active at activeSinceMs (the clock's monotonic time).
    const filledQuickly = full && this.clock.monotonicMs() - this.activeSinceMs <= spareSegmentFillMsMax;
    old.seal();
    this.segments.push(fresh);
    this.activeSinceMs = this.clock.monotonicMs();
    this.syncer.markDirectoryDirty();
    this.spareWanted = this.options.spareSegment && filledQuickly;
    // Sealed data goes to disk soon whatever the durability, so the recovery point can pass it.
    // Only the sealed segments: the new active one is synced by `always` appends, the interval
    // timer or a flush.
    if (!this.syncer.failed) this.syncer.waitFor(baseOffset).catch(() => undefined);
    return fresh;
  }

  /**
   * Starts preparing a spare segment unless one exists (still being prepared, or ready). Called at
   * the first append after a roll of a log that rolls often, so an idle log never writes a spare.
   */
  private startSpare(): void {
    this.spareWanted = false;
    if (this.closed || this.spare !== null) return;
    const spare = SpareSegment.prepare(
      this.directory,
      this.options.segmentBytes,
      // With `none` the zeros stay dirty (data overwrites them in the page cache if the segment
      // fills before writeback); `interval` and `always` sync the active segment, which would then
      // write all its zero pages in the foreground sync after the roll.
      { syncWhenFilled: this.durability !== 'none', zeroWriteBytes: zeroWriteBytesFor(this.durability) },
      this.options.spareFileSystem,
    );
    this.spareStats.prepared++;
    if (spare.failure !== null) this.recordSpareFailure(spare.failure);
    else this.spare = spare;
  }

  private recordSpareFailure(error: SpillwayError): void {
    this.spareStats.failures++;
    this.spareStats.lastFailure = error;
  }

  read(offset: number, maxBytes: number, maxOffset?: number): ReadResult {
    if (this.closed) throw new LogClosedError(`log ${this.directory}`);
    if (!Number.isSafeInteger(offset))
      throw new InvalidArgumentError(`offset must be an integer, got ${offset}`);
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
      throw new InvalidArgumentError(`maxBytes must be a positive integer, got ${maxBytes}`);
    }
    const start = this.logStartOffset;
    const end = this.logEndOffset;
    if (offset < start || offset > end) throw new OffsetOutOfRangeError(offset, start, end);
    const empty: ReadResult = {
      bytes: new Uint8Array(0),
      batchCount: 0,
      firstOffset: offset,
      nextOffset: offset,
      logStartOffset: start,
      logEndOffset: end,
    };
    if (offset === end) return empty;
    let index = this.segmentIndexFor(offset);
    let segment = this.segments[index]!;
    let position = this.findBatch(segment, offset);
    while (position === null) {
      // The offset is the end of this segment: continue with the next one. Offsets a repair set
      // aside (quarantine.ts) are a gap before it: the read continues after the gap.
      index++;
      segment = this.segments[index]!;
      position = segment.isEmpty ? null : 0;
      if (index === this.segments.length - 1 && position === null) {
        return { ...empty, nextOffset: Math.max(offset, segment.baseOffset) };
      }
    }
    const limit = maxOffset ?? Number.POSITIVE_INFINITY;
    const firstOffset = segment.batchBaseOffsetAt(position);
    let cursor = position;
    let nextOffset = offset;
    let batchCount = 0;
    const sizeBytes = segment.sizeBytes;
    while (cursor < sizeBytes) {
      const bytes = segment.mappedView();
      const problem = checkBatchHeader(bytes, cursor, sizeBytes - cursor);
      if (problem !== null) throw new CorruptLogError(segment.logPath, cursor, problem);
      const length = segment.batchLengthAt(cursor);
      const batchEnd = segment.batchBaseOffsetAt(cursor) + batchRecordCountAt(bytes, cursor);
      if (batchCount > 0 && cursor - position + length > maxBytes) break;
      if (batchEnd > limit) break;
      cursor += length;
      nextOffset = batchEnd;
      batchCount++;
    }
    if (batchCount === 0) return empty;
    return {
      bytes: segment.view(position, cursor),
      batchCount,
      firstOffset,
      nextOffset,
      logStartOffset: start,
      logEndOffset: end,
    };
  }

  offsetForTime(timestamp: number): number | null {
    if (this.closed) throw new LogClosedError(`log ${this.directory}`);
    for (const segment of this.segments) {
      if (segment.isEmpty || segment.maxTimestamp < timestamp) continue;
      let position = segment.lookupTimePosition(timestamp);
      const bytes = segment.mappedView();
      while (position < segment.sizeBytes) {
        if (batchMaxTimestampAt(bytes, position) >= timestamp) return segment.batchBaseOffsetAt(position);
        position += segment.batchLengthAt(position);
      }
    }
    return null;
  }

  truncateTo(offset: number): void {
    if (this.closed) throw new LogClosedError(`log ${this.directory}`);
    const end = this.logEndOffset;
    if (!Number.isSafeInteger(offset) || offset < this.logStartOffset || offset > end) {
      throw new OffsetOutOfRangeError(offset, this.logStartOffset, end);
    }
    if (offset === end) return;
    const index = this.segmentIndexFor(offset);
    const segment = this.segments[index]!;
    // Find the batch boundary at `offset` and the max timestamp of what stays.
    let position = 0;
    let maxTimestamp = -1;
    const bytes = segment.mappedView();
    while (position < segment.sizeBytes && segment.batchBaseOffsetAt(position) < offset) {
      maxTimestamp = Math.max(maxTimestamp, batchMaxTimestampAt(bytes, position));
      position += segment.batchLengthAt(position);
    }
    const boundary = position < segment.sizeBytes ? segment.batchBaseOffsetAt(position) : segment.nextOffset;
    if (boundary !== offset) {
      throw new InvalidArgumentError(`offset ${offset} is inside a batch; truncate to a batch base offset`);
    }
    // An older segment that becomes active again counts its age for rolling from now.
    if (index < this.segments.length - 1) this.activeSinceMs = this.clock.monotonicMs();
    for (const later of this.segments.splice(index + 1)) {
      this.dirty.delete(later);
      later.delete();
    }
    segment.reopenWritable(this.options.segmentBytes);
    segment.setZeroWriteBytes(
      this.zeroWriteBytes,
      this.zeroSyncFailed,
      this.options.spareFileSystem.datasync,
    );
    segment.truncateTo(position, offset, maxTimestamp);
    this.dirty.add(segment);
    this.syncer.truncatedTo(offset);
    this.syncer.markDirectoryDirty();
    // The recovery point must not stay past data that no longer exists.
    this.checkpointedOffset = Math.min(this.checkpointedOffset, offset);
    this.checkpoint.writeSync(this.checkpointValue(this.syncer.durableOffset, false));
  }

  /**
   * Deletes whole sealed segments past the retention limits (never the active one).
   * `nowMs` is wall time (compared with record timestamps), the clock's by default.
   * The broker calls this periodically.
   */
  applyRetention(nowMs = this.clock.nowMs()): RetentionResult {
    if (this.closed) throw new LogClosedError(`log ${this.directory}`);
    const { retentionMs, retentionBytes } = this.options;
    let total = this.sizeBytes;
    /** Oldest segments to delete. */
    let count = 0;
    while (count < this.segments.length - 1) {
      const oldest = this.segments[count]!;
      const expired = retentionMs >= 0 && oldest.maxTimestamp < nowMs - retentionMs;
      const oversize = retentionBytes >= 0 && total - oldest.sizeBytes >= retentionBytes;
      if (!expired && !oversize) break;
      total -= oldest.sizeBytes;
      count++;
    }
    return this.deleteOldest(count);
  }

  /**
   * Deletes the `count` oldest segments (never the active one), recording the new log start in the
   * checkpoint first. A background checkpoint write in flight carries the old log start and could
   * land after that write: then nothing is deleted now (the caller's next pass does it).
   */
  private deleteOldest(count: number): RetentionResult {
    if (count === 0 || this.checkpointWritesInFlight > 0) {
      return { deletedSegments: 0, deletedBytes: 0, logStartOffset: this.logStartOffset };
    }
    // The checkpoint records the new log start before any file goes: a crash in between leaves
    // segments below it (kept by the next open), never a start the files do not reach (which
    // the next open would take for a lost segment).
    const recoveryPoint = this.syncer.durableOffset;
    this.checkpoint.writeSync({
      ...this.checkpointValue(recoveryPoint, false),
      logStartOffset: this.segments[count]!.baseOffset,
    });
    this.checkpointedOffset = recoveryPoint;
    let deletedSegments = 0;
    let deletedBytes = 0;
    while (deletedSegments < count) {
      const oldest = this.segments.shift()!;
      this.dirty.delete(oldest);
      deletedBytes += oldest.sizeBytes;
      deletedSegments++;
      oldest.delete();
    }
    this.syncer.markDirectoryDirty();
    return { deletedSegments, deletedBytes, logStartOffset: this.logStartOffset };
  }

  /**
   * LogStore.deleteBelow: the sealed segments that hold only offsets below `offset`. Like retention,
   * it records the new log start in the checkpoint before deleting, and defers (deletes nothing)
   * while a background checkpoint write is in flight.
   */
  deleteBelow(offset: number): RetentionResult {
    if (this.closed) throw new LogClosedError(`log ${this.directory}`);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidArgumentError(`offset must be a non-negative integer, got ${offset}`);
    }
    let count = 0;
    while (count < this.segments.length - 1 && this.segments[count]!.nextOffset <= offset) count++;
    return this.deleteOldest(count);
  }

  /** The base offset of each segment, oldest first (the last one is the active segment's). */
  segmentBaseOffsets(): number[] {
    return this.segments.map((segment) => segment.baseOffset);
  }

  /** Syncs everything appended so far to disk (whatever the durability mode). */
  async flush(): Promise<void> {
    if (this.closed) throw new LogClosedError(`log ${this.directory}`);
    await this.syncer.syncAll();
  }

  /**
   * Takes the mapped pages of every segment out of this process's resident set (they stay in the page
   * cache; maps and views stay valid). For logs read rarely but kept long, such as `__delay`.
   */
  releaseResidentPages(): void {
    if (this.closed) return;
    for (const segment of this.segments) segment.releaseResidentPages();
  }

  /**
   * Deep check: walks every batch of every segment and verifies its CRC32C. Throws CorruptLogError
   * naming the file and position of the first damaged batch. Returns the number of batches checked.
   */
  verify(): number {
    if (this.closed) throw new LogClosedError(`log ${this.directory}`);
    let batches = 0;
    for (const segment of this.segments) {
      const bytes = segment.mappedView();
      let position = 0;
      let expected = segment.baseOffset;
      while (position < segment.sizeBytes) {
        const problem = checkBatchHeader(bytes, position, segment.sizeBytes - position);
        if (problem !== null) throw new CorruptLogError(segment.logPath, position, problem);
        const length = segment.batchLengthAt(position);
        const baseOffset = segment.batchBaseOffsetAt(position);
        if (baseOffset !== expected) {
          throw new CorruptLogError(
            segment.logPath,
            position,
            `base offset ${baseOffset}, expected ${expected}`,
          );
        }
        const crc = this.options.crc32c(bytes, 0, position + BatchHeader.crcStart, position + length);
        const stored = bytes.readUInt32LE(position + BatchHeader.crc);
        if (crc !== stored) throw new CorruptLogError(segment.logPath, position, 'CRC32C mismatch');
        expected = baseOffset + batchRecordCountAt(bytes, position);
        position += length;
        batches++;
      }
    }
    return batches;
  }

  /** Syncs, writes the indexes, trims the active segment and records a clean shutdown. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.clock.clearTimer(this.flushTimer);
    this.clock.clearTimer(this.checkpointTimer);
    this.flushTimer = null;
    this.checkpointTimer = null;
    let syncError: unknown = null;
    try {
      await this.syncer.syncAll();
    } catch (error) {
      syncError = error;
    }
    await this.syncer.idle();
    await this.checkpoint.idle();
    this.closed = true;
    if (this.spare !== null) {
      await this.spare.close();
      this.spare = null;
    }
    for (const segment of this.segments) segment.close();
    if (syncError === null) {
      this.checkpoint.writeSync(this.checkpointValue(this.logEndOffset, true));
    }
    closeSync(this.directoryFd);
    if (syncError !== null) throw syncError;
  }

  private segmentIndexFor(offset: number): number {
    let low = 0;
    let high = this.segments.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.segments[middle]!.baseOffset <= offset) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  /** Position of the batch of `segment` holding `offset`, or null when the offset is past its end. */
  private findBatch(segment: LogSegment, offset: number): number | null {
    let position = segment.lookupPosition(offset);
    const bytes = segment.mappedView();
    while (position < segment.sizeBytes) {
      const problem = checkBatchHeader(bytes, position, segment.sizeBytes - position);
      if (problem !== null) throw new CorruptLogError(segment.logPath, position, problem);
      if (segment.batchBaseOffsetAt(position) + batchRecordCountAt(bytes, position) > offset) return position;
      position += segment.batchLengthAt(position);
    }
    return null;
  }

  /**
   * The files of a sync round. When no waiter needs data of the active segment (the sync a roll
   * starts for the sealed segments), the active segment is left out: a segment adopted from a spare
   * is all dirty zero pages with `none`, and syncing it would write hundreds of MiB of zeros to disk
   * while appends write into it.
   */
  private takeSyncRound(neededOffset: number): {
    offset: number;
    files: SyncFile[];
  } {
    const active = this.active;
    const sealedOnly = neededOffset <= active.baseOffset;
    const files: SyncFile[] = [];
    for (const segment of this.dirty) {
      if (sealedOnly && segment === active) continue;
      files.push({ fd: segment.beginSync(), done: () => segment.endSync(), busy: segment.zerosSyncing });
      this.dirty.delete(segment);
    }
    return { offset: sealedOnly ? active.baseOffset : this.logEndOffset, files };
  }

  private backgroundSync(): void {
    if (this.closed || this.syncer.failed) return;
    if (this.syncer.durableOffset >= this.logEndOffset && this.dirty.size === 0) return;
    // Errors poison the syncer and reach appenders; nothing to do with them here.
    this.syncer.syncAll().catch(() => undefined);
  }

  /** The checkpoint content: the recovery point, the clean-shutdown flag and the log start. */
  private checkpointValue(recoveryPoint: number, cleanShutdown: boolean): RecoveryCheckpoint {
    return { version: 1, recoveryPoint, cleanShutdown, logStartOffset: this.logStartOffset };
  }

  private backgroundCheckpoint(): void {
    const offset = this.syncer.durableOffset;
    if (this.closed || offset === this.checkpointedOffset) return;
    this.checkpointedOffset = offset;
    this.checkpointWritesInFlight++;
    this.checkpoint
      .write(this.checkpointValue(offset, false))
      .catch(() => {
        this.checkpointedOffset = -1; // Try again at the next tick.
      })
      .finally(() => {
        this.checkpointWritesInFlight--;
      });
  }
}
