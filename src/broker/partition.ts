/**
 * One partition of a topic as the broker serves it: its log (a LogStore: PartitionLog, or in tests
 * MemoryLog or FaultyLog) plus what the broker adds on top, namely what a consumer may see. With
 * durability `always` a consumer sees only what is on disk (below the log's durableOffset), so
 * nothing it read can vanish in a crash; with `interval` and `none` it sees everything appended (the
 * ack did not promise more either).
 *
 * A partition whose log could not be opened because its data is damaged or missing is **stopped**
 * (`damage` set, no log): every use of `log` throws PartitionDamagedError (PARTITION_DAMAGED), so
 * produce, fetch and offset lookups on it fail with that code while every other partition serves.
 * `resume` puts a repaired log in place (partition-repair in broker-integrity.ts).
 *
 * With replication (`replica` set, src/cluster/replication/), a consumer sees only up to the high
 * watermark: what every in-sync replica has.
 *
 * Buffer ownership: `read` returns what the log's read returns (views of mapped segments for
 * PartitionLog), valid while referenced.
 */
import { PartitionDamagedError } from '../errors.js';
import type { FetchResult, PartitionDescription } from '../protocol/broker-api.js';
import type { Durability } from '../protocol/types.js';
import type { LogStore } from '../storage/log-store.js';
import type { PartitionDamage } from './partition-damage.js';
import type { PartitionReplica } from './partition-replica.js';

export class Partition {
  readonly topic: string;
  readonly index: number;
  readonly durability: Durability;
  private current: LogStore | null;
  private stoppedBy: PartitionDamage | null;
  /**
   * Visibility holds (transactions/commit-rounds.ts): while any is taken, consumers see nothing at
   * or after the lowest held offset, so a transaction's batches in several partitions become visible
   * in the same instant. Empty almost always.
   */
  private readonly holds: number[] = [];
  /**
   * Replication (src/cluster/replication/): the partition's role as leader or follower, which bounds
   * what consumers see by the high watermark. Null on a broker without replication.
   */
  replica: PartitionReplica | null = null;

  constructor(topic: string, index: number, log: LogStore | PartitionDamage, durability: Durability) {
    this.topic = topic;
    this.index = index;
    this.durability = durability;
    const damaged = 'summary' in log;
    this.current = damaged ? null : log;
    this.stoppedBy = damaged ? log : null;
  }

  /** The log; throws PartitionDamagedError while the partition is stopped. */
  get log(): LogStore {
    if (this.current === null) {
      throw new PartitionDamagedError(this.topic, this.index, this.stoppedBy!.summary);
    }
    return this.current;
  }

  /** The log, or null while the partition is stopped (for close, retention, metrics). */
  get openLog(): LogStore | null {
    return this.current;
  }

  /** Why the partition is stopped, or null while it serves. */
  get damage(): PartitionDamage | null {
    return this.stoppedBy;
  }

  /** Serves `log` (a repaired one) from now on. */
  resume(log: LogStore): void {
    this.current = log;
    this.stoppedBy = null;
  }

  /** Offset after the last record a consumer may read (the high watermark). */
  get visibleEndOffset(): number {
    const log = this.log;
    const end = log.logEndOffset;
    let visible = this.durability === 'always' ? Math.min(end, log.durableOffset) : end;
    if (this.replica !== null) visible = Math.min(visible, this.replica.highWatermark);
    return this.holds.length === 0 ? visible : Math.min(visible, ...this.holds);
  }

  /** Hides from consumers what is appended from `offset` on, until `release(offset)`. */
  hold(offset: number): void {
    this.holds.push(offset);
  }

  /** Ends one hold taken at `offset`. */
  release(offset: number): void {
    const index = this.holds.indexOf(offset);
    if (index >= 0) this.holds.splice(index, 1);
  }

  /**
   * Whole batches from the one holding `offset`, up to `maxBytes` (at least one batch), all below the
   * visible end. Throws OffsetOutOfRangeError before the log start or past the log end.
   */
  read(offset: number, maxBytes: number): FetchResult {
    const log = this.log;
    const visibleEnd = this.visibleEndOffset;
    const limited = visibleEnd < log.logEndOffset;
    const result = log.read(offset, maxBytes, limited ? visibleEnd : undefined);
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
    const log = this.current;
    if (log === null) {
      return {
        partition: this.index,
        logStartOffset: 0,
        logEndOffset: 0,
        durableOffset: 0,
        sizeBytes: 0,
        segmentCount: 0,
        damaged: this.stoppedBy!.summary,
      };
    }
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
