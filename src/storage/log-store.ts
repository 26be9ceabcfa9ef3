/**
 * What a partition log offers to the broker. Two implementations: PartitionLog (segment files,
 * the real one) and MemoryLog (an in-memory model, used by property tests as the reference and by
 * tests of higher layers that do not need files). Both must give the same answers.
 */
import type { Durability } from './sync-scheduler.js';

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
  /** The guarantee that held when the append was acknowledged. */
  durability: Durability;
}

export interface ReadResult {
  /**
   * Whole batches, back to back (a zero-copy view into a mapped segment for PartitionLog: valid
   * while referenced; see LogSegment). Empty when there is nothing at or after the offset yet.
   */
  bytes: Uint8Array;
  batchCount: number;
  /** Base offset of the first batch returned (may be below the offset asked for). */
  firstOffset: number;
  /** Offset after the last record returned: where the next read continues. */
  nextOffset: number;
  logStartOffset: number;
  logEndOffset: number;
}

export interface RetentionResult {
  deletedSegments: number;
  deletedBytes: number;
  logStartOffset: number;
}

export interface LogStore {
  readonly logStartOffset: number;
  readonly logEndOffset: number;
  /** Append one batch (its baseOffset field is ignored and set by the log). */
  append(batch: Uint8Array): Promise<AppendResult>;
  /**
   * Whole batches starting with the one that holds `offset`, up to `maxBytes` (at least one batch
   * even when larger), none holding an offset >= `maxOffset` when given.
   */
  read(offset: number, maxBytes: number, maxOffset?: number): ReadResult;
  /** Offset of the first batch whose max timestamp is >= `timestamp`, or null when none is. */
  offsetForTime(timestamp: number): number | null;
  /** Removes every batch at or after `offset`, which must be a batch boundary. */
  truncateTo(offset: number): void;
  close(): Promise<void>;
}
