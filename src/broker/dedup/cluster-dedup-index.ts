/**
 * Msg-id dedup in cluster mode (docs/CLUSTER.md "Built: msg-id dedup"): the index is kept per data
 * partition by the partition's leader, in memory, and rebuilt by each new leadership from the
 * partition's own replicated log: the data log is the state, so nothing is written to `__dedup`
 * (a local state log the followers would not have) and a failover needs no copy of any index.
 *
 * Contracts:
 *  - Scope: a msgId is recognised within its partition (index key `topic NUL partition`). The
 *    single broker recognises it across the topic's partitions; in a cluster the partitions of a
 *    topic are led by different brokers, and a per-topic index would need a round trip per produce
 *    to one owner. A producer's resends go to the partition of the first attempt, so its retries
 *    are folded either way; an application resending a message to another partition is not.
 *  - Leadership: the index of a partition belongs to one leadership (`Partition.replica`, a new
 *    object per leadership). The first msgId produce of a new leadership drops what an earlier one
 *    left and rebuilds from the log: every batch whose max timestamp is within window + one bucket
 *    of now (`LogStore.offsetForTime`) up to the log end as it is then, read in slices of
 *    `dedupRebuildSliceBytes` with the event loop free between slices; produces with msgIds to the
 *    partition wait for the rebuild (the index must be whole before a check). Everything in the
 *    new leader's log counts, acknowledged by the old leader or not: a copy of it is folded.
 *  - Time: a rebuilt id lands in the bucket of its batch's max timestamp, clamped to [now - window,
 *    now], so it expires about when it would have on the old leader. Record timestamps are the
 *    producer's: a producer whose clock lags the broker's by more than the window loses its ids at a
 *    leader change (they are outside the scanned range).
 *  - Bounded as the single broker's index: ids held + claimed ≤ dedupIdsMax (BrokerDedup checks);
 *    a rebuild adds what the window holds even past it, and produces with new ids then get
 *    BACKPRESSURE until ids expire. Indexes of partitions no longer led here are dropped by the sweep.
 */
import { dedupRebuildSliceBytes } from '../../limits.js';
import type { LogStore } from '../../storage/log-store.js';
import type { Partition } from '../partition.js';
import type { PartitionReplica } from '../partition-replica.js';
import type { Topic } from '../topic.js';
import { forEachMsgId } from './batch-msg-ids.js';
import { type DedupEntry, DedupState, dedupOffsetMax } from './dedup-state.js';

/** Where one produce looks its msgIds up and records the new ones. */
export interface DedupScope {
  /** Key of the index (and of the claims): the topic on a single broker, topic NUL partition in a cluster. */
  readonly key: string;
  readonly machine: DedupState;
  commit(entry: DedupEntry): Promise<unknown>;
}

interface Leadership {
  readonly replica: PartitionReplica | null;
  /** Resolves once the index holds the log's msgIds (rejects if the rebuild failed). */
  readonly ready: Promise<void>;
}

export class ClusterDedupIndex {
  /** Keys `topic NUL partition`. */
  readonly machine = new DedupState();
  private readonly leaderships = new Map<string, Leadership>();
  /** Ids indexed by rebuilds, batches read (metrics, tests). */
  readonly rebuilt = { partitions: 0, ids: 0, batches: 0 };

  constructor(
    private readonly bucketMsOf: (windowMs: number) => number,
    private readonly nowMs: () => number,
  ) {}

  static key(topic: string, partition: number): string {
    return `${topic}\0${partition}`;
  }

  static parseKey(key: string): { topic: string; partition: number } {
    const cut = key.lastIndexOf('\0');
    return { topic: key.slice(0, cut), partition: Number(key.slice(cut + 1)) };
  }

  /**
   * The scope of `target` (this broker leads it: the produce path admitted the batch), once its
   * index was rebuilt for the leadership it has now.
   */
  async scope(topic: Topic, target: Partition): Promise<DedupScope> {
    const key = ClusterDedupIndex.key(topic.name, target.index);
    let leadership = this.leaderships.get(key);
    if (leadership === undefined || leadership.replica !== target.replica) {
      this.machine.apply({ type: 'drop', topic: key });
      leadership = { replica: target.replica, ready: this.rebuild(key, topic, target.log) };
      this.leaderships.set(key, leadership);
      // A failed rebuild is retried by the next produce (a new leadership entry).
      leadership.ready.catch(() => {
        if (this.leaderships.get(key) === leadership) this.leaderships.delete(key);
      });
    }
    await leadership.ready;
    return { key, machine: this.machine, commit: (entry) => this.commit(entry) };
  }

  /** Applied at once: the cluster index is memory, rebuilt from the data log. */
  commit(entry: DedupEntry): Promise<void> {
    this.machine.apply(entry);
    return Promise.resolve();
  }

  /** True when the index of `key` belongs to the leadership `target` has now. */
  current(key: string, target: Partition | null): boolean {
    const leadership = this.leaderships.get(key);
    return leadership !== undefined && target !== null && leadership.replica === target.replica;
  }

  /** Forgets `key` (its topic is gone, or this broker no longer leads it). */
  drop(key: string): void {
    this.leaderships.delete(key);
    this.machine.apply({ type: 'drop', topic: key });
  }

  /** Every key with an index or a rebuild. */
  keys(): string[] {
    const keys = new Set(this.machine.topicNames());
    for (const key of this.leaderships.keys()) keys.add(key);
    return [...keys];
  }

  private async rebuild(key: string, topic: Topic, log: LogStore): Promise<void> {
    const windowMs = topic.config.dedupWindowMs;
    const bucketMs = this.bucketMsOf(windowMs);
    const now = this.nowMs();
    const end = log.logEndOffset;
    const from = Math.max(log.logStartOffset, log.offsetForTime(now - windowMs - bucketMs) ?? end);
    const { partition } = ClusterDedupIndex.parseKey(key);
    let offset = from;
    const ids: string[] = [];
    const offsets: number[] = [];
    const buckets: number[] = [];
    while (offset < end) {
      const sliceNow = this.nowMs();
      const read = log.read(offset, dedupRebuildSliceBytes);
      if (read.batchCount === 0) break;
      this.rebuilt.batches += read.batchCount;
      forEachMsgId(read.bytes, read.batchCount, (id, at, maxTimestamp) => {
        if (at < from || at >= end || at > dedupOffsetMax) return;
        const clamped = Math.min(sliceNow, Math.max(sliceNow - windowMs, maxTimestamp));
        ids.push(id);
        offsets.push(at);
        buckets.push(Math.floor(clamped / bucketMs) * bucketMs);
      });
      this.addRebuilt(key, partition, ids, offsets, buckets);
      ids.length = 0;
      offsets.length = 0;
      buckets.length = 0;
      if (read.nextOffset <= offset) break;
      offset = read.nextOffset;
      if (offset < end) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.rebuilt.partitions++;
  }

  /** Applies a slice's ids, one `ids` entry per bucket (the first copy of an id wins). */
  private addRebuilt(
    key: string,
    partition: number,
    ids: string[],
    offsets: number[],
    buckets: number[],
  ): void {
    let start = 0;
    while (start < ids.length) {
      const bucket = buckets[start]!;
      let stop = start + 1;
      while (stop < ids.length && buckets[stop] === bucket) stop++;
      const before = this.machine.size;
      this.machine.apply({
        type: 'ids',
        topic: key,
        bucketMs: bucket,
        ids: ids.slice(start, stop),
        partitions: new Array<number>(stop - start).fill(partition),
        offsets: offsets.slice(start, stop),
      });
      this.rebuilt.ids += this.machine.size - before;
      start = stop;
    }
  }
}
