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
 * Single event loop; every produce is counted in the broker's Lifecycle so close() waits for it.
 */
import type { Clock, ClockTimer } from '../../clock.js';
import { BackpressureError, type SpillwayError } from '../../errors.js';
import { type BatchHeaderFields, batchBaseOffset, batchLengthAt } from '../../format/batch-header.js';
import { dedupEntryIdsMax, dedupSweepIntervalMs } from '../../limits.js';
import type { DedupStats, ProduceResult } from '../../protocol/broker-api.js';
import type { LogStore } from '../../storage/log-store.js';
import type { BrokerTopics } from '../broker-topics.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Topic } from '../topic.js';
import { isInternalTopicName } from '../topic-name.js';
import { batchMsgIds, keepRecords } from './batch-msg-ids.js';
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

  constructor(options: BrokerDedupOptions) {
    this.store = options.store;
    this.topics = options.topics;
    this.clock = options.clock;
    this.lifecycle = options.lifecycle;
    this.idsMax = options.idsMax;
    this.sweepTimer = this.clock.setInterval(() => this.sweep(), dedupSweepIntervalMs, { unref: true });
    this.topics.onTopicDeleted((topic) => {
      // Committed after any ids of the topic still on their way: applied after them.
      if (topic.config.dedupWindowMs === 0 && this.store.machine.topic(topic.name) === undefined) return;
      this.store.state.commit({ type: 'drop', topic: topic.name }).catch(() => undefined);
    });
  }

  get stats(): DedupStats {
    return {
      ids: this.store.machine.size,
      claimed: this.claimed,
      topics: this.store.machine.topicNames().length,
      duplicates: this.duplicates,
    };
  }

  /**
   * Set in cluster mode (src/cluster/state-services/): batches with msgIds are refused with it, since
   * the `__dedup` index is not replicated yet. Null: served (a single broker).
   */
  refusal: SpillwayError | null = null;

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
    if (this.refusal !== null) throw this.refusal;
    if (this.failure !== null) throw this.failure;
    this.lifecycle.begin();
    try {
      const windowMs = topic.config.dedupWindowMs;
      for (;;) {
        // Again after each wait: the ids a claim held may have landed in a bucket now due.
        await this.expireDue(topic.name, windowMs);
        const waits = this.claimedElsewhere(topic.name, ids);
        if (waits === null) break;
        await Promise.all(waits);
        this.lifecycle.assertOpen();
        if (this.failure !== null) throw this.failure;
      }
      return await this.produceClaimed(topic, partition, batch, fields, ids, append);
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
    topic: Topic,
    partition: number,
    batch: Uint8Array,
    fields: BatchHeaderFields,
    ids: ReadonlyArray<string | null>,
    append: (batch: Uint8Array) => Promise<ProduceResult>,
  ): Promise<ProduceResult> {
    const name = topic.name;
    const index: TopicIds | undefined = this.store.machine.topic(name);
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
    if (newIds > 0 && this.store.machine.size + this.claimed + newIds > this.idsMax) {
      throw new BackpressureError(
        `the dedup index holds ${this.store.machine.size + this.claimed} msgIds (dedupIdsMax ${this.idsMax}): retry once older ids expire`,
      );
    }
    const claim = newIds > 0 ? this.claim(name, partition, firstInBatch.keys()) : null;
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
        const recorded = Promise.all(commitIds(this.store, name, bucketMs, partition, newList, offsets));
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
        const durability = this.topics.partitionOf(name, partition).durability;
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

  /** Commits (and waits for) the expiry of `topic`'s buckets wholly older than its window. */
  private expireDue(topic: string, windowMs: number): Promise<void> | undefined {
    const oldest = this.store.machine.topic(topic)?.oldestBucketMs ?? null;
    if (oldest === null) return undefined;
    const beforeMs = this.clock.nowMs() - windowMs - dedupBucketMs(windowMs) + 1;
    if (oldest >= beforeMs) return undefined;
    let expiring = this.expiring.get(topic);
    if (expiring === undefined) {
      expiring = this.store.state.commit({ type: 'expire', topic, beforeMs }).then(
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
      this.expireDue(name, topic.config.dedupWindowMs)?.catch(failed);
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
      await Promise.all(commitIds(store, topic.name, bucketMs, partition.index, ids, offsets));
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
  store: DedupStore,
  topic: string,
  bucketMs: number,
  partition: number,
  ids: string[],
  offsets: number[],
): Array<Promise<number>> {
  const commits: Array<Promise<number>> = [];
  for (let start = 0; start < ids.length; start += dedupEntryIdsMax) {
    const chunk = ids.slice(start, start + dedupEntryIdsMax);
    commits.push(
      store.state.commit({
        type: 'ids',
        topic,
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
    let position = 0;
    const bytes = read.bytes;
    for (let batch = 0; batch < read.batchCount; batch++) {
      const length = batchLengthAt(bytes, position);
      const one = bytes.subarray(position, position + length);
      position += length;
      const base = batchBaseOffset(one);
      let ids: Array<string | null> | null = null;
      try {
        ids = batchMsgIds(one);
      } catch {
        continue; // a control batch or a record the produce path would refuse: not a msgId
      }
      if (ids === null) continue;
      for (let record = 0; record < ids.length; record++) {
        const id = ids[record];
        const at = base + record;
        if (id === null || id === undefined || at < from || at >= end || found.has(id)) continue;
        found.set(id, at);
      }
    }
    if (read.nextOffset <= offset) break;
    offset = read.nextOffset;
  }
  return found;
}
