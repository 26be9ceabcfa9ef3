/**
 * Where a queue partition (partition-queue.ts) reads its topic partition's batches: the one seam
 * between the queue service and the data. On a single broker it is the local `Partition` itself
 * (`localQueueSources`); in a cluster (docs/CLUSTER.md "Built: shared and key_shared queues") it is
 * the local partition while this broker leads it, otherwise a remote reader that fetches from the
 * partition's leader (src/cluster/remote-reads/).
 *
 * Contract of a source:
 * - `read(offset, maxBytes)`: whole batches from the one holding `offset`, all below
 *   `visibleEndOffset` (never past a high watermark: nothing read can be truncated away later). It
 *   never blocks and never reads remotely in the call: `batchCount` 0 means "not available now" (a
 *   remote cache miss); the offset simply waits, the source fetches it and calls `onData` of
 *   `QueueSources.open` once new batches are there.
 * - `visibleEndOffset`: offset after the last record a consumer may read, as known now.
 * - `logStartOffset`: the first offset the partition still holds, as known now (retention moves it):
 *   everything below is gone, the queue partition skips it (partition-queue.ts `skipGone`). A read
 *   below it is never asked.
 * - `damage`: non-null while the partition cannot be read (a damaged local partition).
 */
import { UnknownPartitionError } from '../../errors.js';
import type { Partition } from '../partition.js';

export interface QueuePartitionSource {
  readonly index: number;
  readonly visibleEndOffset: number;
  readonly logStartOffset: number;
  readonly damage: unknown;
  read(offset: number, maxBytes: number): { records: Uint8Array; batchCount: number };
}

/** One queue partition's source; `close` (when there is one) is called when the queue partition is dropped. */
export interface OpenedQueueSource extends QueuePartitionSource {
  close?(): void;
  /** The queue partition settled offsets (its ack floor may have moved): a cache may drop batches. */
  settled?(): void;
}

export interface QueueSources {
  /**
   * The `createdAtMs` of `topic` where it is decided (a cluster: its record in etcd), undefined when
   * it does not exist there; absent: the local topic's counts (a single broker).
   */
  topicCreatedAtMs?(topic: string): number | undefined;
  /**
   * The partition count of `topic` where it is decided (a cluster: its record in etcd, whether or not
   * this broker holds a replica); undefined: the local topic's count counts (a single broker).
   */
  partitionCount?(topic: string): number | undefined;
  /**
   * The source of partition `index` of `topic` for one queue partition; `local()` is this broker's
   * partition now (undefined while it holds no replica of the topic). `floor()` is the queue partition's
   * ack floor now (a cache keeps nothing below it); `onData()` is called when batches arrive that a
   * waiting receive may want. Throws TOO_MANY_REQUESTS past the sources' bound.
   */
  open(
    topic: string,
    index: number,
    local: () => Partition | undefined,
    floor: () => number,
    onData: () => void,
  ): OpenedQueueSource;
}

/** A local partition as a source (its log start from its log; 0 while it is stopped). */
export class LocalQueueSource implements QueuePartitionSource {
  constructor(readonly partition: Partition) {}

  get index(): number {
    return this.partition.index;
  }

  get visibleEndOffset(): number {
    return this.partition.visibleEndOffset;
  }

  /** The first offset the partition still holds (0 while it is stopped: nothing is read then). */
  get logStartOffset(): number {
    return this.partition.openLog?.logStartOffset ?? 0;
  }

  get damage(): unknown {
    return this.partition.damage;
  }

  read(offset: number, maxBytes: number): { records: Uint8Array; batchCount: number } {
    return this.partition.read(offset, maxBytes);
  }
}

/** A single broker: every queue partition reads its local partition. */
export const localQueueSources: QueueSources = {
  open: (topic, index, local) => {
    const partition = local();
    if (partition === undefined) throw new UnknownPartitionError(topic, index, 0);
    return new LocalQueueSource(partition);
  },
};
