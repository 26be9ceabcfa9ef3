/**
 * MemoryLog: the reference model of a partition log. An array of batch copies in offset order, with
 * the same observable semantics as PartitionLog (same checks, same errors, same read results byte for
 * byte) and none of its machinery: no segments, no indexes, no recovery, nothing on disk. Property
 * tests run random operation sequences against both and require the same answers
 * (test/storage/log-model.property.test.ts); tests of higher layers may use it where files do not matter.
 * Kept small and linear on purpose: when it and PartitionLog disagree, this one is meant to be right.
 *
 * Differences from PartitionLog, by design:
 *  - `read` may return batches of the whole log in one result; PartitionLog returns at most the rest
 *    of one segment (a zero-copy view of one map). Both stay within `maxBytes` (except a first batch
 *    larger than it) and both return at least one batch when there is one that `maxOffset` allows.
 *  - Retention works on batches, not segments (see `applyRetention`); `deleteBefore` moves the log
 *    start to any batch boundary, so a test can follow PartitionLog's segment deletions exactly.
 *  - Nothing is on disk, but the model behaves as a log whose syncs complete at once: the
 *    durability given to the constructor is only reported in AppendResult, and `durableOffset` is
 *    always the log end, so the model can stand in for a log of any durability (with `always`, the
 *    broker shows a consumer everything appended). `flush` does nothing. No batch size limit beyond
 *    the batch format's own (PartitionLog also rejects a batch larger than its segment size).
 *  - For the broker (LogStore), each batch counts as one retention unit: `segmentCount` is the
 *    number of batches (at least 1, as PartitionLog always has an active segment) and
 *    `applyRetention` reports deleted batches as `deletedSegments`. `recovery` reports a clean,
 *    empty open.
 *
 * Buffer ownership: `append` copies the batch (the caller's bytes are never modified); `read` returns
 * a fresh copy the caller owns. Single-threaded like PartitionLog; `append` may be called without
 * awaiting, and offsets are assigned in call order.
 */

import { type Clock, systemClock } from '../clock.js';
import { InvalidArgumentError, InvalidBatchError, LogClosedError, OffsetOutOfRangeError } from '../errors.js';
import {
  batchLengthAt,
  batchMaxTimestampAt,
  batchRecordCountAt,
  checkBatchHeader,
  setBatchBaseOffset,
} from '../format/batch-header.js';
import type { RecoveryReport } from './log-loader.js';
import type { AppendResult, LogFactory, LogStore, ReadResult, RetentionResult } from './log-store.js';
import { type Durability, durabilities } from './sync-scheduler.js';

export interface MemoryLogOptions {
  /** Reported in every AppendResult. Default 'none' (memory holds nothing durably). */
  durability?: Durability;
  /** Batches whose max timestamp is older than this are deleted by `applyRetention`. -1: keep forever. */
  retentionMs?: number;
  /** Oldest batches are deleted by `applyRetention` while the log is larger than this. -1: no limit. */
  retentionBytes?: number;
  /** Wall time for `applyRetention` without an argument. Default `systemClock`. */
  clock?: Clock;
}

/** RetentionResult with `deletedSegments` equal to `deletedBatches` (a batch is the unit here). */
export interface MemoryRetentionResult extends RetentionResult {
  deletedBatches: number;
}

interface StoredBatch {
  baseOffset: number;
  recordCount: number;
  maxTimestamp: number;
  /** A copy of the appended batch with its baseOffset set. */
  bytes: Uint8Array;
}

function retentionOption(name: string, value: number | undefined): number {
  if (value === undefined) return -1;
  if (!Number.isSafeInteger(value) || value < -1) {
    throw new InvalidArgumentError(`${name} must be an integer >= -1, got ${value}`);
  }
  return value;
}

export class MemoryLog implements LogStore {
  readonly durability: Durability;
  readonly retentionMs: number;
  readonly retentionBytes: number;
  readonly recovery: RecoveryReport = {
    cleanShutdown: true,
    recoveryPoint: 0,
    checkpointProblem: null,
    segmentCount: 1,
    segmentsScanned: 0,
    bytesVerified: 0,
    indexesRebuilt: [],
    truncation: null,
    quarantinedOffsets: 0,
    quarantineProblem: null,
    retentionLeftovers: [],
    created: true,
    durationMs: 0,
  };
  private readonly clock: Clock;

  /** Batches in offset order, contiguous from `startOffset`. */
  private readonly batches: StoredBatch[] = [];
  private startOffset = 0;
  private endOffset = 0;
  private closed = false;

  constructor(options: MemoryLogOptions = {}) {
    const durability = options.durability ?? 'none';
    if (!durabilities.includes(durability)) {
      throw new InvalidArgumentError(
        `durability must be one of ${durabilities.join(', ')}, got ${String(durability)}`,
      );
    }
    this.durability = durability;
    this.retentionMs = retentionOption('retentionMs', options.retentionMs);
    this.retentionBytes = retentionOption('retentionBytes', options.retentionBytes);
    this.clock = options.clock ?? systemClock;
  }

  get logStartOffset(): number {
    return this.startOffset;
  }

  get logEndOffset(): number {
    return this.endOffset;
  }

  /** Sum of the lengths of the batches held. */
  get sizeBytes(): number {
    let total = 0;
    for (const batch of this.batches) total += batch.bytes.length;
    return total;
  }

  get batchCount(): number {
    return this.batches.length;
  }

  /** Always the log end: the model's syncs complete at once (see the header). */
  get durableOffset(): number {
    return this.endOffset;
  }

  /** The number of batches held, at least 1 (see the header). */
  get segmentCount(): number {
    return Math.max(1, this.batches.length);
  }

  /** Base offsets of the batches held, in order: the offsets `truncateTo` and `deleteBefore` accept, with the log end. */
  batchBaseOffsets(): number[] {
    return this.batches.map((batch) => batch.baseOffset);
  }

  append(batch: Uint8Array): Promise<AppendResult> {
    try {
      return Promise.resolve(this.appendNow(batch));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private appendNow(batch: Uint8Array): AppendResult {
    this.checkOpen();
    const problem = checkBatchHeader(batch, 0, batch.length);
    if (problem !== null) throw new InvalidBatchError(problem);
    if (batchLengthAt(batch, 0) !== batch.length) {
      throw new InvalidBatchError(`batch length field differs from the ${batch.length} bytes given`);
    }
    const bytes = new Uint8Array(batch); // A copy: the caller's batch is left as it is.
    const baseOffset = this.endOffset;
    setBatchBaseOffset(bytes, baseOffset);
    const recordCount = batchRecordCountAt(bytes, 0);
    this.batches.push({ baseOffset, recordCount, maxTimestamp: batchMaxTimestampAt(bytes, 0), bytes });
    this.endOffset = baseOffset + recordCount;
    return { baseOffset, lastOffset: baseOffset + recordCount - 1, durability: this.durability };
  }

  read(offset: number, maxBytes: number, maxOffset?: number): ReadResult {
    this.checkOpen();
    if (!Number.isSafeInteger(offset))
      throw new InvalidArgumentError(`offset must be an integer, got ${offset}`);
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
      throw new InvalidArgumentError(`maxBytes must be a positive integer, got ${maxBytes}`);
    }
    const start = this.startOffset;
    const end = this.endOffset;
    if (offset < start || offset > end) throw new OffsetOutOfRangeError(offset, start, end);
    const limit = maxOffset ?? Number.POSITIVE_INFINITY;
    const chosen: StoredBatch[] = [];
    let totalBytes = 0;
    // Linear on purpose (obviously right): from the batch holding `offset` on.
    for (const batch of this.batches) {
      const batchEnd = batch.baseOffset + batch.recordCount;
      if (batchEnd <= offset) continue;
      if (chosen.length > 0 && totalBytes + batch.bytes.length > maxBytes) break;
      if (batchEnd > limit) break;
      chosen.push(batch);
      totalBytes += batch.bytes.length;
    }
    const last = chosen[chosen.length - 1];
    if (last === undefined) {
      return {
        bytes: new Uint8Array(0),
        batchCount: 0,
        firstOffset: offset,
        nextOffset: offset,
        logStartOffset: start,
        logEndOffset: end,
      };
    }
    const bytes = new Uint8Array(totalBytes);
    let position = 0;
    for (const batch of chosen) {
      bytes.set(batch.bytes, position);
      position += batch.bytes.length;
    }
    return {
      bytes,
      batchCount: chosen.length,
      firstOffset: chosen[0]!.baseOffset,
      nextOffset: last.baseOffset + last.recordCount,
      logStartOffset: start,
      logEndOffset: end,
    };
  }

  offsetForTime(timestamp: number): number | null {
    this.checkOpen();
    for (const batch of this.batches) {
      if (batch.maxTimestamp >= timestamp) return batch.baseOffset;
    }
    return null;
  }

  truncateTo(offset: number): void {
    this.checkOpen();
    const end = this.endOffset;
    if (!Number.isSafeInteger(offset) || offset < this.startOffset || offset > end) {
      throw new OffsetOutOfRangeError(offset, this.startOffset, end);
    }
    if (offset === end) return;
    const index = this.boundaryIndex(offset);
    this.batches.splice(index);
    this.endOffset = offset;
  }

  /**
   * Removes every batch before `offset`, which must be a batch boundary (a base offset or the log
   * end): the log then starts there. Lets a test follow PartitionLog's retention, which deletes whole
   * segments and so moves the start to a segment's base offset.
   */
  deleteBefore(offset: number): void {
    this.checkOpen();
    const end = this.endOffset;
    if (!Number.isSafeInteger(offset) || offset < this.startOffset || offset > end) {
      throw new OffsetOutOfRangeError(offset, this.startOffset, end);
    }
    const index = offset === end ? this.batches.length : this.boundaryIndex(offset);
    this.batches.splice(0, index);
    this.startOffset = offset;
  }

  /**
   * LogStore.deleteBelow with the batch as the unit: deletes the batches that hold only offsets
   * below `offset` (never the newest one).
   */
  deleteBelow(offset: number): MemoryRetentionResult {
    this.checkOpen();
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidArgumentError(`offset must be a non-negative integer, got ${offset}`);
    }
    let deletedBatches = 0;
    let deletedBytes = 0;
    while (this.batches.length > 1) {
      const oldest = this.batches[0]!;
      if (oldest.baseOffset + oldest.recordCount > offset) break;
      this.batches.shift();
      this.startOffset = this.batches[0]!.baseOffset;
      deletedBatches++;
      deletedBytes += oldest.bytes.length;
    }
    return {
      deletedBatches,
      deletedSegments: deletedBatches,
      deletedBytes,
      logStartOffset: this.startOffset,
    };
  }

  /**
   * A simplified retention rule, with the batch as the unit where PartitionLog uses the segment:
   * while more than one batch is left, the oldest is deleted when its max timestamp is before
   * `nowMs - retentionMs`, or when the batches after it hold at least `retentionBytes`. The newest
   * batch is always kept (as PartitionLog always keeps its active segment).
   */
  applyRetention(nowMs = this.clock.nowMs()): MemoryRetentionResult {
    this.checkOpen();
    let deletedBatches = 0;
    let deletedBytes = 0;
    let total = this.sizeBytes;
    while (this.batches.length > 1) {
      const oldest = this.batches[0]!;
      const expired = this.retentionMs >= 0 && oldest.maxTimestamp < nowMs - this.retentionMs;
      const oversize = this.retentionBytes >= 0 && total - oldest.bytes.length >= this.retentionBytes;
      if (!expired && !oversize) break;
      this.batches.shift();
      total -= oldest.bytes.length;
      deletedBytes += oldest.bytes.length;
      deletedBatches++;
      this.startOffset = oldest.baseOffset + oldest.recordCount;
    }
    return {
      deletedBatches,
      deletedSegments: deletedBatches,
      deletedBytes,
      logStartOffset: this.startOffset,
    };
  }

  /** Nothing to sync (see the header); fails like PartitionLog once closed. */
  async flush(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new LogClosedError('memory log');
  }

  /** Index of the batch whose base offset is `offset`; InvalidArgumentError when inside a batch. */
  private boundaryIndex(offset: number): number {
    const index = this.batches.findIndex((batch) => batch.baseOffset + batch.recordCount > offset);
    if (index < 0 || this.batches[index]!.baseOffset !== offset) {
      throw new InvalidArgumentError(`offset ${offset} is inside a batch; truncate to a batch base offset`);
    }
    return index;
  }
}

/**
 * A LogFactory (`BrokerOptions.logFactory`) that gives every partition a MemoryLog with the
 * request's durability, retention and clock: a broker whose logs live in memory (tests, embedding).
 */
export const memoryLogFactory: LogFactory = (request) =>
  Promise.resolve(
    new MemoryLog({
      durability: request.durability,
      retentionMs: request.retentionMs,
      retentionBytes: request.retentionBytes,
      clock: request.clock,
    }),
  );
