/**
 * One partition of a topic as the broker serves it: its log (a LogStore: PartitionLog, or in tests
 * MemoryLog or FaultyLog) plus what the broker adds on top, namely what a consumer may see. With
 * durability `always` a consumer sees only what is on disk (below the log's durableOffset), so
 * nothing it read can vanish in a crash; with `interval` and `none` it sees everything appended (the
 * ack did not promise more either).
 *
 * Buffer ownership: `read` returns what the log's read returns (views of mapped segments for
 * PartitionLog), valid while referenced.
 */
import type { FetchResult, PartitionDescription } from '../protocol/broker-api.js';
import type { Durability } from '../protocol/types.js';
import type { LogStore } from '../storage/log-store.js';

export class Partition {
  readonly topic: string;
  readonly index: number;
  readonly log: LogStore;
  readonly durability: Durability;

  constructor(topic: string, index: number, log: LogStore, durability: Durability) {
    this.topic = topic;
    this.index = index;
    this.log = log;
    this.durability = durability;
  }

  /** Offset after the last record a consumer may read (the high watermark). */
  get visibleEndOffset(): number {
    const end = this.log.logEndOffset;
    return this.durability === 'always' ? Math.min(end, this.log.durableOffset) : end;
  }

  /**
   * Whole batches from the one holding `offset`, up to `maxBytes` (at least one batch), all below the
   * visible end. Throws OffsetOutOfRangeError before the log start or past the log end.
   */
  read(offset: number, maxBytes: number): FetchResult {
    const visibleEnd = this.visibleEndOffset;
    const limited = visibleEnd < this.log.logEndOffset;
    const result = this.log.read(offset, maxBytes, limited ? visibleEnd : undefined);
    return {
      topic: this.topic,
      partition: this.index,
      records: result.bytes,
      batchCount: result.batchCount,
      firstOffset: result.firstOffset,
      nextOffset: result.nextOffset,
      logStartOffset: result.logStartOffset,
      highWatermark: visibleEnd,
    };
  }

  describe(): PartitionDescription {
    const log = this.log;
    return {
      partition: this.index,
      logStartOffset: log.logStartOffset,
      logEndOffset: log.logEndOffset,
      durableOffset: log.durableOffset,
      sizeBytes: log.sizeBytes,
      segmentCount: log.segmentCount,
    };
  }
}
