/**
 * What a partition log offers to the broker: the broker's Partition depends on this interface only.
 * Implementations: PartitionLog (segment files, the real one), MemoryLog (an in-memory model, used by
 * property tests as the reference and by tests of higher layers that do not need files) and FaultyLog
 * (a wrapper that injects storage faults and delays into any of them). PartitionLog and MemoryLog
 * must give the same answers.
 *
 * `LogFactory` is how the broker opens its logs (`BrokerOptions.logFactory`): PartitionLog.open by
 * default; tests and embedders may hand in another.
 */
import type { Clock } from '../clock.js';
import type { RecoveryReport } from './log-loader.js';
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
  /** Offset below which everything is durable (synced); at most `logEndOffset`. */
  readonly durableOffset: number;
  /** Bytes of log data held. */
  readonly sizeBytes: number;
  /** Units retention deletes (segments for PartitionLog); at least 1. */
  readonly segmentCount: number;
  /** What opening the log found and did (a log with nothing to recover reports a clean, empty open). */
  readonly recovery: RecoveryReport;
  /**
   * Append one batch (its baseOffset field is ignored and set by the log). The log reads `batch` only
   * during the call and keeps no reference to it (a log that needs the bytes later copies them).
   */
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
  /**
   * Deletes the oldest data past the log's retention limits (never the newest unit); `nowMs` is wall
   * time, compared with record timestamps.
   */
  applyRetention(nowMs: number): RetentionResult;
  /**
   * Deletes the oldest units (segments for PartitionLog, batches for MemoryLog) that hold only
   * offsets below `offset`, and never the newest unit (the active segment, the last batch): nothing
   * at or above `offset` goes, and the log end stays. The log start moves to the first unit kept; an
   * `offset` at or below the log start deletes nothing. For logs whose owner knows what is no longer needed (a
   * state log behind its snapshot, `__delay` behind its handled messages, a follower behind its
   * leader's log start). PartitionLog may defer (delete nothing) while a checkpoint write is in
   * flight: callers look again later. Returns what was deleted and the log start after it.
   * INVALID_ARGUMENT for an `offset` that is not a non-negative integer; LOG_CLOSED once closed.
   */
  deleteBelow(offset: number): RetentionResult;
  /** Makes everything appended so far durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** What the broker asks for when it opens the log of one partition (`LogFactory`). */
export interface LogOpenRequest {
  topic: string;
  partition: number;
  /** The partition's directory; the broker created it (a log need not put anything in it). */
  directory: string;
  durability: Durability;
  flushIntervalMs: number;
  segmentBytes: number;
  segmentMs: number;
  indexIntervalBytes: number;
  retentionMs: number;
  retentionBytes: number;
  checkpointIntervalMs: number;
  /** The broker's clock: every timer and time the log uses. */
  clock: Clock;
}

/**
 * Opens (creating or recovering) the log of one partition. Rejects with a SpillwayError (or a
 * system error, which the broker turns into STORAGE_FULL / STORAGE_IO) when it cannot.
 */
export type LogFactory = (request: LogOpenRequest) => Promise<LogStore>;
