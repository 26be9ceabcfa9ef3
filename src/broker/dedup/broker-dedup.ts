/**
 * Msg-id dedup (docs/STATE.md "Msg-id dedup", docs/PROTOCOL.md): on a topic with dedupWindowMs > 0,
 * a record whose msgId (header `sw-msg-id`) was written to the topic within the window is not
 * written again; the produce answers it with the first copy's partition and offset. Ids are unique
 * per topic, across its partitions. Records without a msgId are written as always, and a batch with
 * none is appended untouched (plain topics never come here: broker-messages.ts checks the window).
 *
 * Contracts:
 *  - An acknowledged record is never written again within the window, across restarts and crashes.
 *    Its id is committed to `__dedup` (durability `always`) after the data append; the answer does
 *    not wait for that commit, but the id stays claimed until it is applied. A crash before the
 *    entry is durable leaves the data unindexed: at open (`reconcileDedup`) every partition is scanned
 *    from its mark (how far it is known indexed: raised only by the sweep every dedupSweepIntervalMs,
 *    to the log end of a partition with no claim in flight) to its end, and the ids found are
 *    indexed before the broker serves, so even a copy whose answer was lost is folded. Ids at
 *    offsets the data log lost in a crash (a topic with durability `none`/`interval`) are forgotten.
 *    A failed `__dedup` append (its state log fails closed) fails every later msgId produce.
 *  - Concurrency: a new id is claimed (in memory) from the check until its entry is applied; a
 *    produce meeting an id claimed by another waits for that claim to end, then checks again (the
 *    other may have failed). A produce holding claims never waits for another's, so there is no
 *    deadlock: two copies in flight at once are written once.
 *  - A batch mixing new and duplicate ids is re-encoded with the records to write (batch-msg-ids.ts)
 *    and answered per record (ProduceResult.recordPartitions/recordOffsets); a batch with nothing
 *    new is not appended (baseOffset = lastOffset = -1).
 *  - Bounded: ids held plus ids claimed stay under `idsMax` (BACKPRESSURE past it). An id is kept
 *    for at least the window and at most window + window/16 (its time bucket), then dropped with
 *    its bucket (lazily before a produce to the topic, and by the sweep).
 *
 *  - Cluster mode (`joinCluster`): the index is per partition, kept by its leader in memory and
 *    rebuilt from the replicated data log by each new leadership (cluster-dedup-index.ts); nothing
 *    is written to `__dedup`, and a msgId is recognised within its partition only.
 *
 * Single event loop; every produce is counted in the broker's Lifecycle so close() waits for it.
 */
import type { Clock, ClockTimer } from '../../clock.js';
import { BackpressureError } from '../../errors.js';
import type { BatchHeaderFields } from '../../format/batch-header.js';
import { dedupEntryIdsMax, dedupSweepIntervalMs } from '../../limits.js';
import type { DedupStats, ProduceResult } from '../../protocol/broker-api.js';
import type { LogStore } from '../../storage/log-store.js';
import type { BrokerTopics } from '../broker-topics.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Topic } from '../topic.js';
import { isInternalTopicName } from '../topic-name.js';
import { batchMsgIds, forEachMsgId, keepRecords } from './batch-msg-ids.js';
import { ClusterDedupIndex, type DedupScope } from './cluster-dedup-index.js';
import { dedupOffsetMax, positionOffset, positionPartition, type TopicIds } from './dedup-state.js';
import type { DedupStore } from './dedup-store.js';

/** Buckets per window: an id is dropped at most window/16 after the window ends. */
const bucketsPerWindow = 16;

/** Width of a topic's time buckets. */
export function dedupBucketMs(windowMs: number): number {
  return Math.max(1, Math.ceil(windowMs / bucketsPerWindow));
}

interface Claim {
  readonly ended: Promise<void>;
  end: () => void;
}

/** What a produce reports per record when some were duplicates. */
interface RecordPositions {
  partitions: number[];
  offsets: number[];
}

export interface BrokerDedupOptions {
  store: DedupStore;
  topics: BrokerTopics;
  clock: Clock;
  lifecycle: Lifecycle;
  /** Ids held and claimed at most (limits.ts dedupIdsMaxDefault). */
  idsMax: number;
}

export class BrokerDedup {
  private readonly store: DedupStore;
  private readonly topics: BrokerTopics;
  private readonly clock: Clock;
  private readonly lifecycle: Lifecycle;
  private readonly idsMax: number;
  /** topic -> msgId -> the claim of the produce writing it. */
  private readonly claims = new Map<string, Map<string, Claim>>();
  private claimed = 0;
  /** `topic NUL partition` -> produces holding claims on it (no mark is recorded meanwhile). */
  private readonly busyPartitions = new Map<string, number>();
  /** Expire entries being committed, per topic. */
  private readonly expiring = new Map<string, Promise<void>>();
  private sweepTimer: ClockTimer | null;
  /** Topics whose drop is being committed. */
  private readonly dropping = new Set<string>();
  private duplicates = 0;
  /** Why recording ids in `__dedup` failed (the state log fails closed): every later msgId produce fails. */
  private failure: unknown = null;
  /** Cluster mode: the per-partition indexes of the partitions this broker leads (null: single broker). */
  private cluster: ClusterDedupIndex | null = null;

  constructor(options: BrokerDedupOptions) {
    this.store = options.store;
    this.topics = options.topics;
    this.clock = options.clock;
    this.lifecycle = options.lifecycle;
    this.idsMax = options.idsMax;
    this.sweepTimer = this.clock.setInterval(() => this.sweep(), dedupSweepIntervalMs, { unref: true });
    this.topics.onTopicDeleted((topic) => {
      if (this.cluster !== null) {
        for (const key of this.cluster.keys()) {
          if (ClusterDedupIndex.parseKey(key).topic === topic.name) this.cluster.drop(key);
        }
        return;
      }
      // Committed after any ids of the topic still on their way: applied after them.
      if (topic.config.dedupWindowMs === 0 && this.store.machine.topic(topic.name) === undefined) return;
      this.store.state.commit({ type: 'drop', topic: topic.name }).catch(() => undefined);
    });
  }

  /** `topics`: topics indexed on a single broker, partitions indexed in a cluster. */
  get stats(): DedupStats {
    return {
      ids: this.heldIds,
      claimed: this.claimed,
      topics: (this.cluster?.machine ?? this.store.machine).topicNames().length,
      duplicates: this.duplicates,
    };
  }

  /** Ids held by the index (the local `__dedup` one, or the cluster's per-partition ones). */
  private get heldIds(): number {
    return this.store.machine.size + (this.cluster?.machine.size ?? 0);
  }

  /**
   * Cluster mode (src/cluster/state-services/service-leadership.ts): from now on the index is kept
   * per partition by its leader and rebuilt from the data log (cluster-dedup-index.ts); `__dedup`
   * is not written. Called before the broker serves.
   */
  joinCluster(): void {
    this.cluster ??= new ClusterDedupIndex(dedupBucketMs, () => this.clock.nowMs());
  }

  /** Rebuilds by new leaderships so far (cluster mode; tests and metrics). */
  get clusterRebuilds(): { partitions: number; ids: number; batches: number } | null {
    return this.cluster === null ? null : { ...this.cluster.rebuilt };
  }

  private logScope(topic: string): DedupScope {
    return logScope(this.store, topic);
  }

  /**
   * Produces `batch` (validated, `fields` its header) to `topic`/`partition` through `append`
   * (the plain append of broker-messages.ts), writing only the records whose msgId is new to the
   * topic within its window. Throws INVALID_BATCH for a bad msgId, BACKPRESSURE past idsMax.
   */
  async produce(
    topic: Topic,
    partition: number,
    batch: Uint8Array,
    fields: BatchHeaderFields,
    append: (batch: Uint8Array) => Promise<ProduceResult>,
  ): Promise<ProduceResult> {
    const ids = batchMsgIds(batch);
    if (ids === null) return append(batch);
    if (this.failure !== null) throw this.failure;
    this.lifecycle.begin();
    try {
      const scope =
        this.cluster === null
          ? this.logScope(topic.name)
          : await this.cluster.scope(topic, this.topics.partitionOf(topic.name, partition));
      const windowMs = topic.config.dedupWindowMs;
      for (;;) {
        // Again after each wait: the ids a claim held may have landed in a bucket now due.
        await this.expireDue(scope, windowMs);
        const waits = this.claimedElsewhere(scope.key, ids);
        if (waits === null) break;
        await Promise.all(waits);
        this.lifecycle.assertOpen();
        if (this.failure !== null) throw this.failure;
      }
      return await this.produceClaimed(scope, topic, partition, batch, fields, ids, append);
    } finally {
      this.lifecycle.settled();
    }
  }

  /** Claims of other produces this batch's ids must wait for; null when there are none. */
  private claimedElsewhere(topic: string, ids: ReadonlyArray<string | null>): Array<Promise<void>> | null {
    const claims = this.claims.get(topic);
    if (claims === undefined) return null;
    let waits: Array<Promise<void>> | null = null;
    for (const id of ids) {
      if (id === null) continue;
      const claim = claims.get(id);
      if (claim === undefined) continue;
      waits ??= [];
      waits.push(claim.ended);
    }
    return waits;
  }

  /** Synchronously from the check to the claims, then the append and the record of the new ids. */
  private async produceClaimed(
    scope: DedupScope,
    topic: Topic,
    partition: number,
    batch: Uint8Array,
    fields: BatchHeaderFields,
    ids: ReadonlyArray<string | null>,
    append: (batch: Uint8Array) => Promise<ProduceResult>,
  ): Promise<ProduceResult> {
    const index: TopicIds | undefined = scope.machine.topic(scope.key);
    const count = ids.length;
    /** Per record: -1 written by this batch, else the packed position of its first copy, or -2 - i
     * for a copy of record i of this batch. */
    const source = new Array<number>(count).fill(-1);
    const firstInBatch = new Map<string, number>();
    let duplicates = 0;
    for (let record = 0; record < count; record++) {
      const id = ids[record]!;
      if (id === null) continue;
      const known = index?.positions.get(id);
      if (known !== undefined) {
        source[record] = known;
        duplicates++;
        continue;
      }
      const first = firstInBatch.get(id);
      if (first !== undefined) {
        source[record] = -2 - first;
        duplicates++;
        continue;
      }
      firstInBatch.set(id, record);
    }
    const newIds = firstInBatch.size;
    if (newIds > 0 && this.heldIds + this.claimed + newIds > this.idsMax) {
      throw new BackpressureError(
        `the dedup index holds ${this.heldIds + this.claimed} msgIds (dedupIdsMax ${this.idsMax}): retry once older ids expire`,
      );
    }
    const claim = newIds > 0 ? this.claim(scope.key, partition, firstInBatch.keys()) : null;
    let releaseLater = false;
    try {
      const written = count - duplicates;
      let result: ProduceResult | null = null;
      if (written > 0) {
        const keep = duplicates === 0 ? null : source.map((value) => value === -1);
        result = await append(keep === null ? batch : keepRecords(batch, fields, keep));
      }
      let positions: RecordPositions | null = null;
      if (duplicates > 0) {
        positions = { partitions: new Array<number>(count), offsets: new Array<number>(count) };
        let nextOffset = result?.baseOffset ?? -1;
        for (let record = 0; record < count; record++) {
          const value = source[record]!;
          if (value === -1) {
            positions.partitions[record] = partition;
            positions.offsets[record] = nextOffset++;
          } else if (value >= 0) {
            positions.partitions[record] = positionPartition(value);
            positions.offsets[record] = positionOffset(value);
          } else {
            const first = -2 - value;
            positions.partitions[record] = positions.partitions[first]!;
            positions.offsets[record] = positions.offsets[first]!;
          }
        }
        this.duplicates += duplicates;
      }
      if (newIds > 0 && result !== null) {
        const newList: string[] = [];
        const offsets: number[] = [];
        let offset = result.baseOffset;
        for (let record = 0; record < count; record++) {
          if (source[record] !== -1) continue;
          const id = ids[record]!;
          if (id !== null && offset <= dedupOffsetMax) {
            newList.push(id);
            offsets.push(offset);
          }
          offset++;
        }
        const bucketMs = bucketStart(this.clock.nowMs(), dedupBucketMs(topic.config.dedupWindowMs));
        // Not awaited: the answer goes once the data is appended. The claim holds copies back until
        // the ids are applied; a crash before they are durable is covered by the scan at open (the
        // partition's mark cannot pass them: the sweep skips partitions with claims).
        const recorded = Promise.all(commitIds(scope, bucketMs, partition, newList, offsets));
        const held = claim!;
        releaseLater = true;
        recorded.then(
          () => this.release(held),
          (error: unknown) => {
            this.failure ??= error;
            this.release(held);
          },
        );
      }
      if (result === null) {
        const durability = this.topics.partitionOf(topic.name, partition).durability;
        return { partition, baseOffset: -1, lastOffset: -1, durability, ...positionsOf(positions!) };
      }
      return positions === null ? result : { ...result, ...positionsOf(positions) };
    } finally {
      if (claim !== null && !releaseLater) this.release(claim);
    }
  }

  private claim(topic: string, partition: number, ids: Iterable<string>): ClaimSet {
    let claims = this.claims.get(topic);
    if (claims === undefined) {
      claims = new Map();
      this.claims.set(topic, claims);
    }
    let end!: () => void;
    const ended = new Promise<void>((resolve) => {
      end = resolve;
    });
    const claim: Claim = { ended, end };
    const list: string[] = [];
    for (const id of ids) {
      claims.set(id, claim);
      list.push(id);
    }
    this.claimed += list.length;
    const busyKey = `${topic}\0${partition}`;
    this.busyPartitions.set(busyKey, (this.busyPartitions.get(busyKey) ?? 0) + 1);
    return { topic, busyKey, ids: list, claim };
  }

  private release(set: ClaimSet): void {
    const claims = this.claims.get(set.topic);
    if (claims !== undefined) {
      for (const id of set.ids) claims.delete(id);
      if (claims.size === 0) this.claims.delete(set.topic);
    }
    this.claimed -= set.ids.length;
    const busy = (this.busyPartitions.get(set.busyKey) ?? 1) - 1;
    if (busy === 0) this.busyPartitions.delete(set.busyKey);
    else this.busyPartitions.set(set.busyKey, busy);
    set.claim.end();
  }

  /** Commits (and waits for) the expiry of the scope's buckets wholly older than its window. */
  private expireDue(scope: DedupScope, windowMs: number): Promise<void> | undefined {
    const topic = scope.key;
    const oldest = scope.machine.topic(topic)?.oldestBucketMs ?? null;
    if (oldest === null) return undefined;
    const beforeMs = this.clock.nowMs() - windowMs - dedupBucketMs(windowMs) + 1;
    if (oldest >= beforeMs) return undefined;
    let expiring = this.expiring.get(topic);
    if (expiring === undefined) {
      expiring = scope.commit({ type: 'expire', topic, beforeMs }).then(
        () => {
          this.expiring.delete(topic);
        },
        (error: unknown) => {
          this.expiring.delete(topic);
          throw error;
        },
      );
      this.expiring.set(topic, expiring);
    }
    return expiring;
  }

  /**
   * Every dedupSweepIntervalMs: expires old buckets, drops topics gone or without dedup, and raises
   * the mark of each partition with nothing in flight to its log end (bounding the scan at open).
   */
  private sweep(): void {
    if (this.lifecycle.closing) return;
    // A failed state log fails the produces that need it; the sweep has nothing to add.
    const failed = (): void => undefined;
    if (this.cluster !== null) {
      this.sweepCluster(this.cluster);
      return;
    }
    const machine = this.store.machine;
    for (const name of machine.topicNames()) {
      const topic = this.liveTopic(name);
      if (topic === null || topic.config.dedupWindowMs === 0) {
        if (this.claims.has(name) || this.dropping.has(name)) continue;
        this.dropping.add(name);
        const dropped = (): void => {
          this.dropping.delete(name);
        };
        this.store.state.commit({ type: 'drop', topic: name }).then(dropped, dropped);
        continue;
      }
      this.expireDue(this.logScope(name), topic.config.dedupWindowMs)?.catch(failed);
    }
    for (const topic of this.topics.all()) {
      if (topic.deleted || isInternalTopicName(topic.name) || topic.config.dedupWindowMs === 0) continue;
      const ids = machine.topic(topic.name);
      for (const partition of topic.partitions) {
        const log = partition.openLog;
        if (log === null || this.busyPartitions.has(`${topic.name}\0${partition.index}`)) continue;
        const end = log.logEndOffset;
        if (end > (ids?.mark(partition.index) ?? 0)) {
          const entry = { type: 'mark', topic: topic.name, partition: partition.index, offset: end } as const;
          this.store.state.commit(entry).catch(failed);
        }
      }
    }
  }

  /**
   * Cluster mode: drops the indexes of partitions gone, without dedup or no longer led under the
   * leadership they were built for (nothing claimed on them), and expires the others' old buckets.
   */
  private sweepCluster(cluster: ClusterDedupIndex): void {
    for (const key of cluster.keys()) {
      if (this.claims.has(key)) continue;
      const { topic: name, partition } = ClusterDedupIndex.parseKey(key);
      const topic = this.liveTopic(name);
      const target =
        topic === null || partition >= topic.partitions.length ? null : topic.partitions[partition]!;
      if (topic === null || topic.config.dedupWindowMs === 0 || !cluster.current(key, target)) {
        cluster.drop(key);
        continue;
      }
      const scope = { key, machine: cluster.machine, commit: cluster.commit.bind(cluster) };
      this.expireDue(scope, topic.config.dedupWindowMs)?.catch(() => undefined);
    }
  }

  private liveTopic(name: string): Topic | null {
    try {
      const topic = this.topics.topicNamed(name);
      return topic.deleted ? null : topic;
    } catch {
      return null;
    }
  }

  /** Stops the sweep (the broker is closing; the store closes after the produces drained). */
  close(): void {
    this.clock.clearTimer(this.sweepTimer);
    this.sweepTimer = null;
  }
}

/**
 * At open, before anything is served: drops the ids of topics gone or without dedup, forgets ids at
 * offsets a crash took from the data log, and indexes the msgIds of every partition from its mark to
 * its end (what was appended but not recorded when the broker stopped). `topics`: every topic served.
 */
export async function reconcileDedup(
  store: DedupStore,
  topics: readonly Topic[],
  nowMs: number,
): Promise<void> {
  const machine = store.machine;
  const byName = new Map(topics.map((topic) => [topic.name, topic]));
  await Promise.all(
    machine
      .topicNames()
      .filter((name) => (byName.get(name)?.config.dedupWindowMs ?? 0) === 0)
      .map((name) => store.state.commit({ type: 'drop', topic: name })),
  );
  for (const topic of topics) {
    if (isInternalTopicName(topic.name) || topic.config.dedupWindowMs === 0) continue;
    const bucketMs = bucketStart(nowMs, dedupBucketMs(topic.config.dedupWindowMs));
    for (const partition of topic.partitions) {
      const log = partition.openLog;
      if (log === null) continue;
      const end = log.logEndOffset;
      let mark = machine.topic(topic.name)?.mark(partition.index) ?? 0;
      if (mark > end) {
        await store.state.commit({
          type: 'forget',
          topic: topic.name,
          partition: partition.index,
          fromOffset: end,
        });
        mark = end;
      }
      const found = scanMsgIds(log, Math.max(mark, log.logStartOffset), end);
      const known = machine.topic(topic.name);
      const ids: string[] = [];
      const offsets: number[] = [];
      for (const [id, offset] of found) {
        if (known?.positions.has(id) || offset > dedupOffsetMax) continue;
        ids.push(id);
        offsets.push(offset);
      }
      await Promise.all(commitIds(logScope(store, topic.name), bucketMs, partition.index, ids, offsets));
      if (end > mark) {
        await store.state.commit({
          type: 'mark',
          topic: topic.name,
          partition: partition.index,
          offset: end,
        });
      }
    }
  }
}

/** Commits `ids` (at `offsets` of `partition`) in entries of at most dedupEntryIdsMax ids. */
function commitIds(
  scope: DedupScope,
  bucketMs: number,
  partition: number,
  ids: string[],
  offsets: number[],
): Array<Promise<unknown>> {
  const commits: Array<Promise<unknown>> = [];
  for (let start = 0; start < ids.length; start += dedupEntryIdsMax) {
    const chunk = ids.slice(start, start + dedupEntryIdsMax);
    commits.push(
      scope.commit({
        type: 'ids',
        topic: scope.key,
        bucketMs,
        ids: chunk,
        partitions: new Array<number>(chunk.length).fill(partition),
        offsets: offsets.slice(start, start + dedupEntryIdsMax),
      }),
    );
  }
  return commits;
}

interface ClaimSet {
  topic: string;
  busyKey: string;
  ids: string[];
  claim: Claim;
}

function bucketStart(nowMs: number, bucketMs: number): number {
  return Math.floor(nowMs / bucketMs) * bucketMs;
}

function positionsOf(positions: RecordPositions): Pick<ProduceResult, 'recordPartitions' | 'recordOffsets'> {
  return { recordPartitions: positions.partitions, recordOffsets: positions.offsets };
}

/** msgId -> offset of its first copy in [from, end) of `log` (records without a valid msgId skipped). */
function scanMsgIds(log: LogStore, from: number, end: number): Map<string, number> {
  const found = new Map<string, number>();
  let offset = from;
  while (offset < end) {
    const read = log.read(offset, 1024 * 1024);
    if (read.batchCount === 0) break;
    forEachMsgId(read.bytes, read.batchCount, (id, at) => {
      if (at >= from && at < end && !found.has(id)) found.set(id, at);
    });
    if (read.nextOffset <= offset) break;
    offset = read.nextOffset;
  }
  return found;
}

/** The scope of a single broker: `topic`'s index in `__dedup`. */
function logScope(store: DedupStore, topic: string): DedupScope {
  return { key: topic, machine: store.machine, commit: (entry) => store.state.commit(entry) };
}
